use chrono::SubsecRound;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use mailbaar_store::schema::{persons, transactions};
use mailbaar_store::{now, DbConnection, Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::Checker;
use crate::PeopleError;

/// One purchase, ticket, loan, donation or other exchange with a person.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "person_id": 42, "kind": "donation", "amount_cents": 2500,
    "currency": "EUR", "occurred_at": "2026-11-20T14:30:00Z",
    "description": "Year-end appeal", "created_at": "2026-11-20T14:31:02Z"}))]
pub struct Transaction {
    pub id: i64,
    pub person_id: i64,
    /// `purchase`, `ticket`, `loan`, `donation`, or an organisation's own kind.
    pub kind: String,
    /// Amount in the currency's minor unit (cents); negative for refunds.
    pub amount_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = transactions)]
pub(crate) struct TransactionRow {
    id: i64,
    person_id: i64,
    kind: String,
    amount_cents: i64,
    currency: String,
    occurred_at: NaiveDateTime,
    description: Option<String>,
    created_at: NaiveDateTime,
}

impl From<TransactionRow> for Transaction {
    fn from(r: TransactionRow) -> Self {
        Transaction {
            id: r.id,
            person_id: r.person_id,
            kind: r.kind,
            amount_cents: r.amount_cents,
            currency: r.currency,
            occurred_at: r.occurred_at.and_utc(),
            description: r.description,
            created_at: r.created_at.and_utc(),
        }
    }
}

/// A transaction as written in bulk by [`write_transactions`]: the stored columns but
/// the id, unchecked (the program made them, e.g. demo data).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = transactions, treat_none_as_default_value = false)]
pub struct TransactionRecord<'a> {
    pub person_id: i64,
    pub kind: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub occurred_at: NaiveDateTime,
    pub description: Option<&'a str>,
    pub created_at: NaiveDateTime,
}

/// Rows per multi-row INSERT on SQLite (7 columns each).
const ROWS_PER_INSERT: usize = 2_000;

/// Writes many transactions at once (`mailbaar_store::bulk_insert!`), without the checks
/// and the service-mail opt-in of [`add_transaction`]: for data the program made, whose
/// consent it writes itself. The number written. Errors: `Database`.
pub fn write_transactions(
    conn: &mut DbConnection,
    rows: &[TransactionRecord<'_>],
) -> Result<usize, PeopleError> {
    Ok(mailbaar_store::bulk_insert!(
        conn,
        transactions::table,
        rows,
        ROWS_PER_INSERT
    )?)
}

/// The largest amount of one transaction, either way, in cents (one billion in the
/// currency). Bounded so that sums over a person's transactions stay far inside 64 bits.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000_000;

/// A transaction to record. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "donation", "amount_cents": 2500, "currency": "EUR",
    "occurred_at": "2026-11-20T14:30:00+01:00", "description": "Year-end appeal"}))]
pub struct NewTransaction {
    /// Lower-case letters, digits and underscores, e.g. `purchase` or `membership_fee`.
    #[schema(pattern = "^[a-z0-9_]{1,64}$")]
    pub kind: String,
    /// The amount in cents (negative for a refund), at most 100,000,000,000 either way
    /// (one billion in the currency).
    #[schema(minimum = -100_000_000_000_i64, maximum = 100_000_000_000_i64)]
    pub amount_cents: i64,
    /// ISO 4217 code; `EUR` when left out.
    #[serde(default = "euro")]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// When it happened, in the years 1900–2200; any offset is accepted and stored in UTC
    /// (to the microsecond).
    pub occurred_at: DateTime<chrono::FixedOffset>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

fn euro() -> String {
    "EUR".to_owned()
}

/// Records a transaction for an existing, non-anonymized person, and gives a new customer
/// the service-mail soft opt-in.
pub fn add_transaction(
    conn: &mut DbConnection,
    person_id: i64,
    new: NewTransaction,
) -> Result<Transaction, PeopleError> {
    let mut ck = Checker::default();
    let kind = new.kind.trim().to_owned();
    if kind.is_empty()
        || kind.len() > 64
        || !kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        ck.fail("kind", "1 to 64 lower-case letters, digits or underscores");
    }
    let currency = new.currency.trim().to_owned();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        ck.fail("currency", "an ISO 4217 code of three capital letters");
    }
    if !(-MAX_AMOUNT_CENTS..=MAX_AMOUNT_CENTS).contains(&new.amount_cents) {
        ck.fail(
            "amount_cents",
            format!("between -{MAX_AMOUNT_CENTS} and {MAX_AMOUNT_CENTS} cents"),
        );
    }
    let occurred_at = new.occurred_at.naive_utc().trunc_subsecs(6);
    if !mailbaar_store::time_in_range(occurred_at) {
        ck.fail(
            "occurred_at",
            format!(
                "a time in the years {}–{}, not a leap second",
                mailbaar_store::TIME_YEARS.start(),
                mailbaar_store::TIME_YEARS.end()
            ),
        );
    }
    let description = ck.text("description", new.description.as_deref(), 500);
    ck.finish()?;

    mailbaar_store::write_transaction(conn, |conn| {
        mailbaar_store::living_person(conn, person_id)?
            .map_err(|why| PeopleError::not_living(person_id, why))?;
        // A person's first transaction makes them a customer: the service-mail soft
        // opt-in is written in the same transaction when they have no such record yet.
        mailbaar_consent::record_service_mail_opt_in(conn, person_id)?;
        Ok(diesel::insert_into(transactions::table)
            .values((
                transactions::person_id.eq(person_id),
                transactions::kind.eq(&kind),
                transactions::amount_cents.eq(new.amount_cents),
                transactions::currency.eq(&currency),
                transactions::occurred_at.eq(occurred_at),
                transactions::description.eq(&description),
                transactions::created_at.eq(now()),
            ))
            .returning(transactions::all_columns)
            .get_result::<TransactionRow>(conn)?
            .into())
    })
}

/// A person's transactions, latest first.
pub fn list_transactions(
    conn: &mut DbConnection,
    person_id: i64,
    page: PageRequest,
) -> Result<Page<Transaction>, PeopleError> {
    let exists: i64 = persons::table
        .filter(persons::id.eq(person_id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Err(PeopleError::NotFound(person_id));
    }
    let base = transactions::table.filter(transactions::person_id.eq(person_id));
    let total: i64 = base.count().get_result(conn)?;
    let items = base
        .order((transactions::occurred_at.desc(), transactions::id.desc()))
        .limit(page.limit())
        .offset(page.offset())
        .select(TransactionRow::as_select())
        .load::<TransactionRow>(conn)?
        .into_iter()
        .map(Transaction::from)
        .collect();
    Ok(Page::new(items, total, page))
}
