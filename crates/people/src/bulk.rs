//! Many persons at once, for imports: validated with the same rules as one person, written
//! in multi-row statements.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_store::schema::persons;
use mailbaar_store::DbConnection;

use crate::error::FieldError;
use crate::person::{parse_values, PersonValues};
use crate::PersonRow;
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

/// Rows per multi-row INSERT on SQLite: 25 columns each, well under its 32,766 bound
/// parameters.
const ROWS_PER_INSERT: usize = 1_000;

/// Ids for `count` new persons, in order, that no other writer will take: drawn from
/// the table's sequence on PostgreSQL; on SQLite the ones after the highest id ever
/// given, so call it in the [`mailbaar_store::write_transaction`] that writes them.
pub fn reserve_person_ids(conn: &mut DbConnection, count: usize) -> Result<Vec<i64>, PeopleError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    match conn {
        DbConnection::Pg(c) => {
            #[derive(QueryableByName)]
            struct Reserved {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                id: i64,
            }
            let ids: Vec<Reserved> = diesel::sql_query(
                "SELECT nextval(pg_get_serial_sequence('persons', 'id')) AS id \
                 FROM generate_series(1, $1) ORDER BY 1",
            )
            .bind::<diesel::sql_types::BigInt, _>(count as i64)
            .load(c)?;
            Ok(ids.into_iter().map(|r| r.id).collect())
        }
        DbConnection::Sqlite(_) => {
            // AUTOINCREMENT never gives an id twice: after the highest id ever given, which
            // `sqlite_sequence` keeps (and an explicit id above it moves forward).
            #[derive(QueryableByName)]
            struct Highest {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                id: i64,
            }
            let highest = diesel::sql_query(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'persons'), 0), \
                     COALESCE((SELECT MAX(id) FROM persons), 0)) AS id",
            )
            .get_result::<Highest>(conn)?
            .id;
            Ok((1..=count as i64).map(|k| highest + k).collect())
        }
    }
}

/// Writes persons as they are (ids included) in bulk: PostgreSQL `COPY` (binary), SQLite
/// multi-row inserts. No automatic opt-in is given and nothing is validated: the rows
/// come from checked fields ([`insert_persons`]) or are made by the program (demo data).
/// Errors: `Database` (a duplicate address or id).
pub fn write_persons(conn: &mut DbConnection, rows: &[PersonRow]) -> Result<usize, PeopleError> {
    Ok(mailbaar_store::bulk_insert!(
        conn,
        persons::table,
        rows,
        ROWS_PER_INSERT
    )?)
}

/// Inserts persons from checked import rows, in order; their ids. No automatic opt-in is
/// given: an import brings the consent the file holds. Call it in a write transaction.
/// Errors: `Database` (a duplicate address included; callers match on e-mail first).
pub fn insert_persons(
    conn: &mut DbConnection,
    rows: &[&CheckedFields],
    at: NaiveDateTime,
) -> Result<Vec<i64>, PeopleError> {
    let ids = reserve_person_ids(conn, rows.len())?;
    let values: Vec<PersonRow> = rows
        .iter()
        .zip(&ids)
        .map(|(r, &id)| {
            let v = &r.values;
            let (bouncer, bouncer_at, bouncer_reason) = bouncer_parts(&r.flags, at);
            PersonRow {
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
                ..PersonRow::new(id, at)
            }
        })
        .collect();
    write_persons(conn, &values)?;
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
