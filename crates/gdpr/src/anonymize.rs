use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use mailbaar_store::schema::{
    consent_records, person_profile_totals, person_profiles, persons, transactions,
};
use mailbaar_store::{now, DbConnection};
use serde::Serialize;
use utoipa::ToSchema;

use crate::GdprError;
use mailbaar_audit::record as record_audit;

/// What replaces free text that may identify a person.
pub const ANONYMIZED_TEXT: &str = "(anonymized)";

/// The outcome of an anonymization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"person_id": 42, "anonymized_at": "2026-11-23T10:02:11Z",
    "already_anonymized": false, "transactions_kept": 3, "consent_records_kept": 5}))]
pub struct Anonymized {
    pub person_id: i64,
    /// When the person was anonymized (the first time).
    pub anonymized_at: DateTime<Utc>,
    /// `true`: nothing was done now, the person was anonymized before.
    pub already_anonymized: bool,
    /// Transactions kept with their kinds, amounts and dates, without description.
    pub transactions_kept: i64,
    /// Consent records kept with the person link, without description.
    pub consent_records_kept: i64,
}

/// Removes every identifying value of a person in one transaction, keeping the figures:
/// names, address, e-mail, phones, IBAN, BSN, birth date and the bouncer diagnostic are
/// cleared; transaction and consent descriptions are stripped; the calculated profile is
/// deleted. Counts, amounts, dates and the existence of consent records stay. The person
/// is no longer mailable and leaves every selection. A second call changes nothing and
/// says so. The action is audited in the same transaction.
pub fn anonymize(
    conn: &mut DbConnection,
    person_id: i64,
    actor: &str,
) -> Result<Anonymized, GdprError> {
    mailbaar_store::write_transaction(conn, |conn| {
        // Locked on PostgreSQL until the end of the transaction, so two runs (two
        // retention rules, or a rule and a request) never anonymize the same person twice.
        mailbaar_store::lock_rows(conn, "persons", &[person_id])?;
        let before: Option<Option<NaiveDateTime>> = persons::table
            .find(person_id)
            .select(persons::anonymized_at)
            .first(conn)
            .optional()?;
        let Some(before) = before else {
            return Err(GdprError::PersonNotFound(person_id));
        };
        let transactions_kept: i64 = transactions::table
            .filter(transactions::person_id.eq(person_id))
            .count()
            .get_result(conn)?;
        let consent_records_kept: i64 = consent_records::table
            .filter(consent_records::person_id.eq(person_id))
            .count()
            .get_result(conn)?;
        if let Some(at) = before {
            return Ok(Anonymized {
                person_id,
                anonymized_at: at.and_utc(),
                already_anonymized: true,
                transactions_kept,
                consent_records_kept,
            });
        }
        let t = now();
        let none = None::<String>;
        // Every field the person-field registry marks as personal data is emptied; the
        // names are the registry's own (compiled in, never input).
        let cleared: String = mailbaar_people::fields::personal_data()
            .map(|column| format!("{column} = NULL, "))
            .collect();
        diesel::sql_query(format!(
            "UPDATE persons SET {cleared}anonymized_at = $1, updated_at = $1 WHERE id = $2"
        ))
        .bind::<diesel::sql_types::Timestamp, _>(t)
        .bind::<diesel::sql_types::BigInt, _>(person_id)
        .execute(conn)?;
        diesel::update(transactions::table.filter(transactions::person_id.eq(person_id)))
            .set(transactions::description.eq(&none))
            .execute(conn)?;
        // Allowed by the ledger's trigger only for an anonymized person, only this column.
        diesel::update(
            consent_records::table
                .filter(consent_records::person_id.eq(person_id))
                .filter(consent_records::description.ne(ANONYMIZED_TEXT)),
        )
        .set(consent_records::description.eq(ANONYMIZED_TEXT))
        .execute(conn)?;
        diesel::delete(
            person_profile_totals::table.filter(person_profile_totals::person_id.eq(person_id)),
        )
        .execute(conn)?;
        diesel::delete(person_profiles::table.find(person_id)).execute(conn)?;
        record_audit(
            conn,
            actor,
            "person.anonymized",
            Some(person_id),
            &format!(
                "{transactions_kept} transactions and {consent_records_kept} consent records kept without identifying text"
            ),
        )?;
        Ok(Anonymized {
            person_id,
            anonymized_at: t.and_utc(),
            already_anonymized: false,
            transactions_kept,
            consent_records_kept,
        })
    })
}

/// After anonymizations, makes the engine drop the old row versions: on SQLite the WAL is
/// checkpointed and truncated (`secure_delete` has zeroed the freed cells); on PostgreSQL
/// the touched tables are vacuumed, which frees the old versions for reuse (PostgreSQL
/// does not promise to overwrite freed space on disk).
pub fn scrub_free_space(conn: &mut DbConnection) -> Result<(), GdprError> {
    match conn {
        DbConnection::Sqlite(c) => c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?,
        DbConnection::Pg(c) => {
            c.batch_execute("VACUUM persons, transactions, consent_records, person_profiles")?
        }
    }
    Ok(())
}
