use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mailbaar_store::schema::persons;
use mailbaar_store::{escape_like, fold, now, DbConnection, Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use mailbaar_consent::{record_automatic_opt_in, CurrentConsent, OptInKind};

use crate::mailable::{is_mailable, MailFacts};
use crate::validate::Checker;
use crate::PeopleError;

/// Someone the organisation knows, as every endpoint returns them.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 42, "email": "anna.devries@example.nl", "first_name": "Anna", "infix": "de",
    "last_name": "Vries", "street": "Kerkstraat", "house_number": "12a",
    "postal_code": "1017 GC", "city": "Amsterdam", "country": "NL", "phone": "020-1234567",
    "mobile": "06-12345678", "birth_date": "1984-03-07", "iban": "NL91ABNA0417164300",
    "bsn": "111222333", "deceased": false, "bouncer": false, "bouncer_at": null, "bouncer_reason": null,
    "is_test_person": false,
    "mailable": true, "anonymized_at": null, "full_unsubscribed_at": null,
    "consents": [{"opt_in_type_id": 1, "opt_in": true, "recorded_at": "2026-11-23T09:00:00Z"}],
    "created_at": "2026-11-23T09:00:00Z", "updated_at": "2026-11-23T09:00:00Z"}))]
pub struct Person {
    pub id: i64,
    pub email: Option<String>,
    pub first_name: Option<String>,
    /// The Dutch "tussenvoegsel" (de, van der, …) between first and last name.
    pub infix: Option<String>,
    pub last_name: Option<String>,
    pub street: Option<String>,
    pub house_number: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub iban: Option<String>,
    /// Dutch citizen service number.
    pub bsn: Option<String>,
    pub deceased: bool,
    /// Set when mail to the address bounces hard; no mail is sent while it is set.
    pub bouncer: bool,
    /// When the bouncer flag was set.
    pub bouncer_at: Option<DateTime<Utc>>,
    /// Why the bouncer flag was set (the bounce's diagnostic, or "set by hand").
    pub bouncer_reason: Option<String>,
    /// Internal person who may receive test mails.
    pub is_test_person: bool,
    /// Derived: an e-mail address, not a bouncer, not deceased and not anonymized.
    pub mailable: bool,
    /// When the person was anonymized; identifying fields are empty from then on.
    pub anonymized_at: Option<DateTime<Utc>>,
    /// When every opt-in was withdrawn at once; profile calculations stopped then.
    pub full_unsubscribed_at: Option<DateTime<Utc>>,
    /// Current consent per opt-in type (the latest ledger record of each).
    pub consents: Vec<CurrentConsent>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of `persons` as stored: every column, in table order (so it also reads
/// `RETURNING` rows). The one form in which persons are read and written in bulk
/// ([`crate::write_persons`]); single changes go through the validated forms.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = persons, treat_none_as_default_value = false)]
pub struct PersonRow {
    pub id: i64,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub infix: Option<String>,
    pub last_name: Option<String>,
    pub street: Option<String>,
    pub house_number: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub iban: Option<String>,
    pub bsn: Option<String>,
    pub deceased: bool,
    pub bouncer: bool,
    pub bouncer_at: Option<NaiveDateTime>,
    pub bouncer_reason: Option<String>,
    pub is_test_person: bool,
    pub anonymized_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub full_unsubscribed_at: Option<NaiveDateTime>,
    /// Soft bounces in a row, kept by bounce handling; not part of the person as the API
    /// shows it.
    pub soft_bounces: i32,
}

impl PersonRow {
    /// A new person's row: no fields, no flags, created and updated at `at`; the caller
    /// fills in what it knows.
    pub fn new(id: i64, at: NaiveDateTime) -> Self {
        PersonRow {
            id,
            email: None,
            first_name: None,
            infix: None,
            last_name: None,
            street: None,
            house_number: None,
            postal_code: None,
            city: None,
            country: None,
            phone: None,
            mobile: None,
            birth_date: None,
            iban: None,
            bsn: None,
            deceased: false,
            bouncer: false,
            bouncer_at: None,
            bouncer_reason: None,
            is_test_person: false,
            anonymized_at: None,
            created_at: at,
            updated_at: at,
            full_unsubscribed_at: None,
            soft_bounces: 0,
        }
    }
}

impl From<PersonRow> for Person {
    fn from(r: PersonRow) -> Self {
        let mailable = is_mailable(&MailFacts {
            email: r.email.as_deref(),
            bouncer: r.bouncer,
            deceased: r.deceased,
            anonymized: r.anonymized_at.is_some(),
        });
        Person {
            id: r.id,
            email: r.email,
            first_name: r.first_name,
            infix: r.infix,
            last_name: r.last_name,
            street: r.street,
            house_number: r.house_number,
            postal_code: r.postal_code,
            city: r.city,
            country: r.country,
            phone: r.phone,
            mobile: r.mobile,
            birth_date: r.birth_date,
            iban: r.iban,
            bsn: r.bsn,
            deceased: r.deceased,
            bouncer: r.bouncer,
            bouncer_at: r.bouncer_at.map(|t| t.and_utc()),
            bouncer_reason: r.bouncer_reason,
            is_test_person: r.is_test_person,
            mailable,
            anonymized_at: r.anonymized_at.map(|t| t.and_utc()),
            full_unsubscribed_at: r.full_unsubscribed_at.map(|t| t.and_utc()),
            consents: Vec::new(),
            created_at: r.created_at.and_utc(),
            updated_at: r.updated_at.and_utc(),
        }
    }
}

/// A person to create. Unknown fields are refused.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "anna.devries@example.nl", "first_name": "Anna",
    "infix": "de", "last_name": "Vries", "city": "Amsterdam", "country": "NL"}))]
pub struct NewPerson {
    #[schema(max_length = 254)]
    pub email: Option<String>,
    #[schema(max_length = 200)]
    pub first_name: Option<String>,
    #[schema(max_length = 50)]
    pub infix: Option<String>,
    #[schema(max_length = 200)]
    pub last_name: Option<String>,
    #[schema(max_length = 200)]
    pub street: Option<String>,
    #[schema(max_length = 20)]
    pub house_number: Option<String>,
    #[schema(max_length = 20)]
    pub postal_code: Option<String>,
    #[schema(max_length = 100)]
    pub city: Option<String>,
    #[schema(max_length = 100)]
    pub country: Option<String>,
    #[schema(max_length = 50)]
    pub phone: Option<String>,
    #[schema(max_length = 50)]
    pub mobile: Option<String>,
    pub birth_date: Option<NaiveDate>,
    #[schema(max_length = 42)]
    pub iban: Option<String>,
    #[schema(max_length = 9)]
    pub bsn: Option<String>,
    #[serde(default)]
    pub deceased: bool,
    #[serde(default)]
    pub is_test_person: bool,
}

/// A partial update: an absent field is left as it is, `null` clears it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"city": "Utrecht", "mobile": null, "deceased": false}))]
pub struct PersonChanges {
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 254)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 50)]
    pub infix: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub street: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 20)]
    pub house_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 20)]
    pub postal_code: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub country: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 50)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 50)]
    pub mobile: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<NaiveDate>)]
    pub birth_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 42)]
    pub iban: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 9)]
    pub bsn: Option<Option<String>>,
    pub deceased: Option<bool>,
    pub is_test_person: Option<bool>,
}

/// Filters for the person list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct PersonFilter {
    /// Words that must each occur in the first name, last name or e-mail address
    /// (case-insensitive).
    #[param(example = "anna vries")]
    pub q: Option<String>,
    /// Only test persons (`true`) or only real persons (`false`).
    pub is_test_person: Option<bool>,
}

#[derive(Insertable, AsChangeset, Default, Clone)]
#[diesel(table_name = persons)]
pub(crate) struct PersonValues {
    pub(crate) email: Option<Option<String>>,
    pub(crate) first_name: Option<Option<String>>,
    pub(crate) infix: Option<Option<String>>,
    pub(crate) last_name: Option<Option<String>>,
    pub(crate) street: Option<Option<String>>,
    pub(crate) house_number: Option<Option<String>>,
    pub(crate) postal_code: Option<Option<String>>,
    pub(crate) city: Option<Option<String>>,
    pub(crate) country: Option<Option<String>>,
    pub(crate) phone: Option<Option<String>>,
    pub(crate) mobile: Option<Option<String>>,
    pub(crate) birth_date: Option<Option<NaiveDate>>,
    pub(crate) iban: Option<Option<String>>,
    pub(crate) bsn: Option<Option<String>>,
    pub(crate) deceased: Option<bool>,
    pub(crate) is_test_person: Option<bool>,
    pub(crate) updated_at: Option<NaiveDateTime>,
}

/// Validates every field of a change set; each `Some` field is parsed, `None` left alone.
pub(crate) fn parse_values(c: PersonChanges) -> Result<PersonValues, PeopleError> {
    let mut ck = Checker::default();
    let today = Utc::now().date_naive();
    macro_rules! text {
        ($f:ident, $max:expr) => {
            c.$f.map(|v| ck.text(stringify!($f), v.as_deref(), $max))
        };
    }
    let values = PersonValues {
        email: c.email.map(|v| ck.email(v.as_deref())),
        first_name: text!(first_name, 200),
        infix: text!(infix, 50),
        last_name: text!(last_name, 200),
        street: text!(street, 200),
        house_number: text!(house_number, 20),
        postal_code: text!(postal_code, 20),
        city: text!(city, 100),
        country: text!(country, 100),
        phone: text!(phone, 50),
        mobile: text!(mobile, 50),
        birth_date: c.birth_date.map(|v| ck.birth_date(v, today)),
        iban: c.iban.map(|v| ck.iban(v.as_deref())),
        bsn: c.bsn.map(|v| ck.bsn(v.as_deref())),
        deceased: c.deceased,
        is_test_person: c.is_test_person,
        updated_at: None,
    };
    ck.finish()?;
    Ok(values)
}

fn map_unique(e: DieselError, email: Option<&Option<String>>) -> PeopleError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            PeopleError::DuplicateEmail(email.cloned().flatten().unwrap_or_default())
        }
        other => PeopleError::Database(other),
    }
}

/// Creates a person after validating every field.
pub fn create_person(conn: &mut DbConnection, new: NewPerson) -> Result<Person, PeopleError> {
    let changes = PersonChanges {
        email: Some(new.email),
        first_name: Some(new.first_name),
        infix: Some(new.infix),
        last_name: Some(new.last_name),
        street: Some(new.street),
        house_number: Some(new.house_number),
        postal_code: Some(new.postal_code),
        city: Some(new.city),
        country: Some(new.country),
        phone: Some(new.phone),
        mobile: Some(new.mobile),
        birth_date: Some(new.birth_date),
        iban: Some(new.iban),
        bsn: Some(new.bsn),
        deceased: Some(new.deceased),
        is_test_person: Some(new.is_test_person),
    };
    let mut values = parse_values(changes)?;
    let t = now();
    values.updated_at = Some(t);
    let email = values.email.clone();
    mailbaar_store::write_transaction(conn, |conn| {
        let row = diesel::insert_into(persons::table)
            .values((values, persons::created_at.eq(t)))
            .returning(persons::all_columns)
            .get_result::<PersonRow>(conn)
            .map_err(|e| map_unique(e, email.as_ref()))?;
        let mut person = Person::from(row);
        if mailbaar_settings::load(conn)?.profiling_opt_in_on_registration {
            let recorded = record_automatic_opt_in(
                conn,
                person.id,
                OptInKind::Profiling,
                "automatic profiling opt-in on registration",
            )?;
            if recorded.is_some() {
                person.consents = mailbaar_consent::current_for_person(conn, person.id)?;
            }
        }
        Ok(person)
    })
}

/// Reads one person with their current consent.
pub fn get_person(conn: &mut DbConnection, id: i64) -> Result<Person, PeopleError> {
    let mut person: Person = persons::table
        .find(id)
        .select(PersonRow::as_select())
        .first::<PersonRow>(conn)
        .optional()?
        .ok_or(PeopleError::NotFound(id))?
        .into();
    person.consents = mailbaar_consent::current_for_person(conn, id)?;
    Ok(person)
}

/// Reads several persons with their current consent, in the order of `ids` (missing ids
/// are skipped), in two queries whatever the number.
pub fn persons_by_ids(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<Person>, PeopleError> {
    let mut found: std::collections::HashMap<i64, Person> = persons::table
        .filter(persons::id.eq_any(ids))
        .select(PersonRow::as_select())
        .load::<PersonRow>(conn)?
        .into_iter()
        .map(|r| (r.id, Person::from(r)))
        .collect();
    let mut consents = mailbaar_consent::current_for_persons(conn, ids)?;
    Ok(ids
        .iter()
        .filter_map(|id| found.remove(id))
        .map(|mut p| {
            p.consents = consents.remove(&p.id).unwrap_or_default();
            p
        })
        .collect())
}

/// Applies a partial update; anonymized persons cannot be changed.
pub fn update_person(
    conn: &mut DbConnection,
    id: i64,
    changes: PersonChanges,
) -> Result<Person, PeopleError> {
    let mut values = parse_values(changes)?;
    mailbaar_store::write_transaction(conn, |conn| {
        // The full person (with consents) is read once, after the update.
        mailbaar_store::living_person(conn, id)?.map_err(|why| PeopleError::not_living(id, why))?;
        values.updated_at = Some(now());
        let email = values.email.clone();
        let row = diesel::update(persons::table.find(id))
            .set(&values)
            .returning(persons::all_columns)
            .get_result::<PersonRow>(conn)
            .map_err(|e| map_unique(e, email.as_ref()))?;
        let mut person = Person::from(row);
        person.consents = mailbaar_consent::current_for_person(conn, id)?;
        Ok(person)
    })
}

/// Lists persons, newest first, with optional word search and test-person filter.
pub fn list_persons(
    conn: &mut DbConnection,
    filter: &PersonFilter,
    page: PageRequest,
) -> Result<Page<Person>, PeopleError> {
    if let Some(q) = filter.q.as_deref() {
        mailbaar_store::check_search_text(q)
            .map_err(|p| PeopleError::Invalid(vec![crate::FieldError::new("q", p.to_string())]))?;
    }
    let build = || {
        let mut q = persons::table.into_boxed();
        if let Some(words) = filter.q.as_deref() {
            for word in words.split_whitespace().take(5) {
                let pattern = format!("%{}%", escape_like(&fold(word)));
                q = q.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>("(")
                        .sql("coalesce(mailbaar_fold(persons.first_name), '') LIKE ")
                        .bind::<diesel::sql_types::Text, _>(pattern.clone())
                        .sql(" ESCAPE '\\' OR coalesce(mailbaar_fold(persons.last_name), '') LIKE ")
                        .bind::<diesel::sql_types::Text, _>(pattern.clone())
                        .sql(" ESCAPE '\\' OR coalesce(mailbaar_fold(persons.email), '') LIKE ")
                        .bind::<diesel::sql_types::Text, _>(pattern)
                        .sql(" ESCAPE '\\')"),
                );
            }
        }
        if let Some(test) = filter.is_test_person {
            q = q.filter(persons::is_test_person.eq(test));
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let mut items: Vec<Person> = build()
        .order(persons::id.desc())
        .limit(page.limit())
        .offset(page.offset())
        .select(PersonRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Person::from)
        .collect();
    let ids: Vec<i64> = items.iter().map(|p| p.id).collect();
    let mut consents = mailbaar_consent::current_for_persons(conn, &ids)?;
    for p in &mut items {
        p.consents = consents.remove(&p.id).unwrap_or_default();
    }
    Ok(Page::new(items, total, page))
}

/// Clears the bouncer flag with its date and reason, audited (`person.bouncer_cleared`, by
/// `actor`) when it was set. Returns the person and whether the flag was set; anonymized
/// persons cannot be changed.
pub fn clear_bouncer(
    conn: &mut DbConnection,
    id: i64,
    actor: &str,
) -> Result<(Person, bool), PeopleError> {
    mailbaar_store::write_transaction(conn, |conn| {
        mailbaar_store::living_person(conn, id)?.map_err(|why| PeopleError::not_living(id, why))?;
        let person = get_person(conn, id)?;
        let was = person.bouncer || person.bouncer_at.is_some();
        if was {
            diesel::update(persons::table.find(id))
                .set((
                    persons::bouncer.eq(false),
                    persons::bouncer_at.eq(None::<NaiveDateTime>),
                    persons::bouncer_reason.eq(None::<String>),
                    persons::soft_bounces.eq(0),
                    persons::updated_at.eq(now()),
                ))
                .execute(conn)?;
            mailbaar_audit::record(conn, actor, "person.bouncer_cleared", Some(id), "")?;
        }
        Ok((get_person(conn, id)?, was))
    })
}

/// What a bounce did to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BounceEffect {
    /// The bouncer flag is set now (by this bounce or before).
    pub bouncer: bool,
    /// Soft bounces counted since the last hard bounce or clear.
    pub soft_bounces: i64,
}

/// Records a bounce of mail to a person (AVG manual §1.10): a hard one sets the bouncer
/// flag with `reason` (the receiving server's reply); a soft one is counted, and the
/// `soft_limit`-th turns hard. An anonymized or unknown person is left alone (`None`).
/// Audited (`person.bounced`).
pub fn record_bounce(
    conn: &mut DbConnection,
    id: i64,
    hard: bool,
    reason: &str,
    soft_limit: i64,
    actor: &str,
) -> Result<Option<BounceEffect>, PeopleError> {
    let reason: String = reason.chars().take(500).collect();
    mailbaar_store::write_transaction(conn, |conn| {
        if mailbaar_store::living_person(conn, id)?.is_err() {
            return Ok(None);
        }
        let (bouncer, soft): (bool, i32) = persons::table
            .find(id)
            .select((persons::bouncer, persons::soft_bounces))
            .first(conn)?;
        let soft = if hard { soft } else { soft.saturating_add(1) };
        let turns_hard = !bouncer && (hard || i64::from(soft) >= soft_limit);
        let t = now();
        if turns_hard {
            let why = if hard {
                reason.clone()
            } else {
                format!("{soft} soft bounces; last: {reason}")
            };
            diesel::update(persons::table.find(id))
                .set((
                    persons::bouncer.eq(true),
                    persons::bouncer_at.eq(t),
                    persons::bouncer_reason.eq(why.chars().take(500).collect::<String>()),
                    persons::soft_bounces.eq(0),
                    persons::updated_at.eq(t),
                ))
                .execute(conn)?;
        } else if !hard {
            diesel::update(persons::table.find(id))
                .set(persons::soft_bounces.eq(soft))
                .execute(conn)?;
        }
        mailbaar_audit::record(
            conn,
            actor,
            "person.bounced",
            Some(id),
            if turns_hard {
                "bouncer flag set"
            } else if hard {
                "hard, already a bouncer"
            } else {
                "soft"
            },
        )?;
        Ok(Some(BounceEffect {
            bouncer: bouncer || turns_hard,
            soft_bounces: if turns_hard { 0 } else { i64::from(soft) },
        }))
    })
}
