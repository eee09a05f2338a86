//! GDPR operations organisations are audited on: anonymizing a person (the right to be
//! forgotten) and the append-only audit log of who did what to whom.

mod anonymize;
mod audit;

pub use anonymize::{anonymize, scrub_free_space, Anonymized, ANONYMIZED_TEXT};
pub use audit::{list_audit, record_audit, AuditEntry, AuditFilter};

use thiserror::Error;

/// Errors of the GDPR operations.
#[derive(Debug, Error)]
pub enum GdprError {
    #[error("person {0} does not exist")]
    PersonNotFound(i64),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}
