//! GDPR operations organisations are audited on: anonymizing a person (the right to be
//! forgotten), retention rules that anonymize continuously, and the personal-data PDF;
//! each writes its own entry in the audit log (`mailbaar_audit`)
//! of who did what to whom.

mod anonymize;
mod pdf;
mod retention;

pub use anonymize::{anonymize, scrub_free_space, Anonymized, ANONYMIZED_TEXT};
pub use pdf::personal_data_pdf;
pub use retention::{
    create_rule, dry_run, get_rule, list_rules, list_runs, retention_run_work,
    retention_schedule_work, run_rule, run_task, schedule_task, DryRun, NewRetentionRule,
    RetentionAction, RetentionRule, RetentionRun, RetentionSchedule, SamplePerson, RETENTION_BATCH,
    RETENTION_RUN, RETENTION_SCHEDULE,
};

use thiserror::Error;

/// Errors of the GDPR operations. Errors of the crates it builds on keep their kind and
/// their source, so the API maps each to its own status and logs the cause.
#[derive(Debug, Error)]
pub enum GdprError {
    #[error("person {0} does not exist")]
    PersonNotFound(i64),
    #[error("retention rule {0} does not exist")]
    RuleNotFound(i64),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    Conflict(String),
    /// A stored value this version does not know (written by a newer one).
    #[error("{table} row {id} holds a value this version does not know: {value:?}")]
    UnknownStored {
        table: &'static str,
        id: i64,
        value: String,
    },
    #[error("making the PDF failed")]
    Pdf(#[source] genpdf::error::Error),
    #[error(transparent)]
    Query(#[from] mailbaar_query::QueryError),
    #[error(transparent)]
    People(#[from] mailbaar_people::PeopleError),
    #[error(transparent)]
    Consent(#[from] mailbaar_consent::ConsentError),
    #[error(transparent)]
    Settings(#[from] mailbaar_settings::SettingsError),
    #[error(transparent)]
    Profile(#[from] mailbaar_profiles::ProfileError),
    #[error(transparent)]
    Task(#[from] mailbaar_tasks::TaskError),
    #[error(transparent)]
    Store(#[from] mailbaar_store::StoreError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}
