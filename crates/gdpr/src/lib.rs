//! GDPR operations organisations are audited on: anonymizing a person (the right to be
//! forgotten), retention rules that anonymize continuously, and the append-only audit log
//! of who did what to whom.

mod anonymize;
mod audit;
mod pdf;
mod retention;

pub use anonymize::{anonymize, scrub_free_space, Anonymized, ANONYMIZED_TEXT};
pub use audit::{list_audit, record_audit, AuditEntry, AuditFilter};
pub use pdf::personal_data_pdf;
pub use retention::{
    create_rule, dry_run, get_rule, list_rules, list_runs, run_rule, DryRun, NewRetentionRule,
    RetentionRule, RetentionRun, SamplePerson, RETENTION_BATCH, RETENTION_JOB_KIND,
};

use thiserror::Error;

/// Errors of the GDPR operations.
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
    #[error("selecting persons failed: {0}")]
    Selection(String),
    #[error("making the PDF failed: {0}")]
    Pdf(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}
