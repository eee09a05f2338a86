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

use mailbaar_store::{ErrorCode, ErrorKind};
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
    /// Another retention rule has this name.
    #[error("a retention rule named {0:?} already exists")]
    DuplicateRuleName(String),
    /// The rule is switched off; it does not run.
    #[error("retention rule {0} is inactive")]
    RuleInactive(i64),
    /// A run of the rule is queued or running already.
    #[error("a run of retention rule {rule_id} is already queued or running (task {task_id})")]
    RunUnderWay { rule_id: i64, task_id: i64 },
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

impl ErrorCode for GdprError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("person_not_found", ErrorKind::NotFound),
        ("retention_rule_not_found", ErrorKind::NotFound),
        ("invalid_retention_rule", ErrorKind::Invalid),
        ("duplicate_retention_rule_name", ErrorKind::Conflict),
        ("retention_rule_inactive", ErrorKind::Conflict),
        ("retention_run_under_way", ErrorKind::Conflict),
        ("stored_value_unknown", ErrorKind::Internal),
        ("pdf_failed", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        use GdprError::*;
        match self {
            PersonNotFound(_) | RuleNotFound(_) => ErrorKind::NotFound,
            Invalid { .. } => ErrorKind::Invalid,
            DuplicateRuleName(_) | RuleInactive(_) | RunUnderWay { .. } => ErrorKind::Conflict,
            UnknownStored { .. } | Pdf(_) => ErrorKind::Internal,
            Query(e) => e.kind(),
            People(e) => e.kind(),
            Consent(e) => e.kind(),
            Settings(e) => e.kind(),
            Profile(e) => e.kind(),
            Task(e) => e.kind(),
            Store(e) => e.kind(),
            Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        use GdprError::*;
        match self {
            PersonNotFound(_) => "person_not_found",
            RuleNotFound(_) => "retention_rule_not_found",
            Invalid { .. } => "invalid_retention_rule",
            DuplicateRuleName(_) => "duplicate_retention_rule_name",
            RuleInactive(_) => "retention_rule_inactive",
            RunUnderWay { .. } => "retention_run_under_way",
            UnknownStored { .. } => "stored_value_unknown",
            Pdf(_) => "pdf_failed",
            Query(e) => e.code(),
            People(e) => e.code(),
            Consent(e) => e.code(),
            Settings(e) => e.code(),
            Profile(e) => e.code(),
            Task(e) => e.code(),
            Store(e) => e.code(),
            Database(e) => e.code(),
        }
    }
}
