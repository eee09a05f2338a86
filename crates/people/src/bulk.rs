//! Many persons at once, for imports: validated with the same rules as one person, written
//! in multi-row statements.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use mailbaar_store::schema::persons;
use mailbaar_store::DbConnection;

use crate::error::FieldError;
use crate::person::{parse_values, PersonValues};
use crate::{PeopleError, Person, PersonChanges};

/// Person flags an older system may hold, brought over by an import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportedFlags {
    /// `Some(true)` marks the person a bouncer, with the date and reason when given.
    pub bouncer: Option<bool>,
    pub bouncer_at: Option<NaiveDateTime>,
    pub bouncer_reason: Option<String>,
}

/// The fields of one import row, checked by the rules of [`crate::create_person`]; only the
/// fields the row gives are set.
pub struct CheckedFields {
    values: PersonValues,
    flags: ImportedFlags,
}

/// Checks an import row's fields. Errors: every invalid field, as [`FieldError`]s.
pub fn check_fields(
    changes: PersonChanges,
    flags: ImportedFlags,
) -> Result<CheckedFields, Vec<FieldError>> {
    match parse_values(changes) {
        Ok(values) => Ok(CheckedFields { values, flags }),
        Err(PeopleError::Invalid(errors)) => Err(errors),
        Err(other) => Err(vec![FieldError::new("row", other.to_string())]),
    }
}

impl CheckedFields {
    /// The e-mail address the row gives.
    pub fn email(&self) -> Option<&str> {
        self.values.email.as_ref().and_then(|e| e.as_deref())
    }

    /// Whether the row's address is another than the person's: the same address in another
    /// case is the match, not a change (the person keeps theirs).
    fn email_differs(&self, p: &Person) -> bool {
        match (&self.values.email, &p.email) {
            (Some(Some(given)), Some(current)) => {
                mailbaar_store::fold(given) != mailbaar_store::fold(current)
            }
            (Some(given), current) => given != current,
            (None, _) => false,
        }
    }

    /// Whether writing these fields would change the person.
    pub fn differs_from(&self, p: &Person) -> bool {
        let v = &self.values;
        fn differs<T: PartialEq>(given: &Option<Option<T>>, current: &Option<T>) -> bool {
            given.as_ref().is_some_and(|g| g != current)
        }
        self.email_differs(p)
            || differs(&v.first_name, &p.first_name)
            || differs(&v.infix, &p.infix)
            || differs(&v.last_name, &p.last_name)
            || differs(&v.street, &p.street)
            || differs(&v.house_number, &p.house_number)
            || differs(&v.postal_code, &p.postal_code)
            || differs(&v.city, &p.city)
            || differs(&v.country, &p.country)
            || differs(&v.phone, &p.phone)
            || differs(&v.mobile, &p.mobile)
            || differs(&v.birth_date, &p.birth_date)
            || differs(&v.iban, &p.iban)
            || differs(&v.bsn, &p.bsn)
            || v.deceased.is_some_and(|d| d != p.deceased)
            || v.is_test_person.is_some_and(|t| t != p.is_test_person)
            || (self.flags.bouncer == Some(true) && !p.bouncer)
    }
}

#[derive(Insertable)]
#[diesel(table_name = persons, treat_none_as_default_value = false)]
struct NewRow {
    email: Option<String>,
    first_name: Option<String>,
    infix: Option<String>,
    last_name: Option<String>,
    street: Option<String>,
    house_number: Option<String>,
    postal_code: Option<String>,
    city: Option<String>,
    country: Option<String>,
    phone: Option<String>,
    mobile: Option<String>,
    birth_date: Option<NaiveDate>,
    iban: Option<String>,
    bsn: Option<String>,
    deceased: bool,
    is_test_person: bool,
    bouncer: bool,
    bouncer_at: Option<NaiveDateTime>,
    bouncer_reason: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

fn bouncer_parts(
    flags: &ImportedFlags,
    at: NaiveDateTime,
) -> (bool, Option<NaiveDateTime>, Option<String>) {
    if flags.bouncer == Some(true) {
        (
            true,
            Some(flags.bouncer_at.unwrap_or(at)),
            Some(
                flags
                    .bouncer_reason
                    .clone()
                    .unwrap_or_else(|| "imported as a bouncer".into()),
            ),
        )
    } else {
        (false, None, None)
    }
}

/// Inserts persons in one multi-row statement per 500, in order; their ids. No automatic
/// opt-in is given: an import brings the consent the file holds. Errors: `Database` (a
/// duplicate address included; callers match on e-mail first).
pub fn insert_persons(
    conn: &mut DbConnection,
    rows: &[&CheckedFields],
    at: NaiveDateTime,
) -> Result<Vec<i64>, PeopleError> {
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(500) {
        let values: Vec<NewRow> = chunk
            .iter()
            .map(|r| {
                let v = &r.values;
                let (bouncer, bouncer_at, bouncer_reason) = bouncer_parts(&r.flags, at);
                NewRow {
                    email: v.email.clone().flatten(),
                    first_name: v.first_name.clone().flatten(),
                    infix: v.infix.clone().flatten(),
                    last_name: v.last_name.clone().flatten(),
                    street: v.street.clone().flatten(),
                    house_number: v.house_number.clone().flatten(),
                    postal_code: v.postal_code.clone().flatten(),
                    city: v.city.clone().flatten(),
                    country: v.country.clone().flatten(),
                    phone: v.phone.clone().flatten(),
                    mobile: v.mobile.clone().flatten(),
                    birth_date: v.birth_date.flatten(),
                    iban: v.iban.clone().flatten(),
                    bsn: v.bsn.clone().flatten(),
                    deceased: v.deceased.unwrap_or(false),
                    is_test_person: v.is_test_person.unwrap_or(false),
                    bouncer,
                    bouncer_at,
                    bouncer_reason,
                    created_at: at,
                    updated_at: at,
                }
            })
            .collect();
        let insert = diesel::insert_into(persons::table)
            .values(&values)
            .returning(persons::id);
        let mut got: Vec<i64> = match conn {
            DbConnection::Pg(c) => insert.get_results(c)?,
            DbConnection::Sqlite(c) => insert.get_results(c)?,
        };
        ids.append(&mut got);
    }
    Ok(ids)
}

/// Writes an import row's fields over an existing, living person (the address it was
/// matched by stays as the person wrote it). Errors: `Database`.
pub fn update_fields(
    conn: &mut DbConnection,
    person: &Person,
    row: &CheckedFields,
    at: NaiveDateTime,
) -> Result<(), PeopleError> {
    let id = person.id;
    let mut values = PersonValues {
        updated_at: Some(at),
        ..row.values.clone()
    };
    if !row.email_differs(person) {
        values.email = None;
    }
    diesel::update(
        persons::table
            .find(id)
            .filter(persons::anonymized_at.is_null()),
    )
    .set(&values)
    .execute(conn)?;
    // An import marks bouncers; it never clears one (that is `DELETE …/bouncer`, audited).
    if row.flags.bouncer == Some(true) {
        let (bouncer, bouncer_at, bouncer_reason) = bouncer_parts(&row.flags, at);
        diesel::update(persons::table.find(id).filter(persons::bouncer.eq(false)))
            .set((
                persons::bouncer.eq(bouncer),
                persons::bouncer_at.eq(bouncer_at),
                persons::bouncer_reason.eq(bouncer_reason),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Living persons by e-mail address, compared by the database's own folding rule (the one
/// its unique index holds, so a match found here is the row an insert would collide with):
/// `(address as given, person)`.
pub fn persons_by_emails(
    conn: &mut DbConnection,
    emails: &[String],
) -> Result<Vec<(String, Person)>, PeopleError> {
    if emails.is_empty() {
        return Ok(Vec::new());
    }
    let mut hits: Vec<(String, i64)> = Vec::new();
    for chunk in emails.chunks(1000) {
        match conn {
            // Folded by the same SQL function as the index: the inputs once, then one index
            // scan for the array of them (a join would let the planner scan every person).
            DbConnection::Pg(c) => {
                #[derive(QueryableByName)]
                struct Folded {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    input: String,
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    folded: String,
                }
                let inputs: Vec<Folded> = diesel::sql_query(
                    "SELECT x AS input, mailbaar_fold(x) AS folded FROM unnest($1::text[]) AS x",
                )
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(chunk)
                .load(c)?;
                let keys: Vec<&str> = inputs.iter().map(|f| f.folded.as_str()).collect();
                let found: Vec<Folded> = diesel::sql_query(
                    "SELECT id::text AS input, mailbaar_fold(email) AS folded FROM persons \
                     WHERE email IS NOT NULL AND mailbaar_fold(email) = ANY($1)",
                )
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&keys)
                .load(c)?;
                for person in found {
                    let Ok(id) = person.input.parse::<i64>() else {
                        continue;
                    };
                    for input in inputs.iter().filter(|i| i.folded == person.folded) {
                        hits.push((input.input.clone(), id));
                    }
                }
            }
            // SQLite's mailbaar_fold is the Rust rule itself.
            DbConnection::Sqlite(_) => {
                let folded: Vec<String> = chunk.iter().map(|e| mailbaar_store::fold(e)).collect();
                let found: Vec<(i64, Option<String>)> = persons::table
                    .filter(persons::email.is_not_null())
                    .filter(
                        diesel::dsl::sql::<diesel::sql_types::Text>("mailbaar_fold(persons.email)")
                            .eq_any(folded),
                    )
                    .select((persons::id, persons::email))
                    .load(conn)?;
                for (id, email) in found {
                    let key = mailbaar_store::fold(email.as_deref().unwrap_or_default());
                    for input in chunk.iter().filter(|e| mailbaar_store::fold(e) == key) {
                        hits.push((input.clone(), id));
                    }
                }
            }
        }
    }
    let ids: Vec<i64> = hits.iter().map(|h| h.1).collect();
    let found: std::collections::HashMap<i64, Person> = crate::persons_by_ids(conn, &ids)?
        .into_iter()
        .filter(|p| p.anonymized_at.is_none())
        .map(|p| (p.id, p))
        .collect();
    Ok(hits
        .into_iter()
        .filter_map(|(input, id)| Some((input, found.get(&id)?.clone())))
        .collect())
}
