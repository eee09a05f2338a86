use thiserror::Error;

/// Errors of the consent domain.
#[derive(Debug, Error)]
pub enum ConsentError {
    #[error("person {0} does not exist")]
    PersonNotFound(i64),
    #[error("opt-in type {0} does not exist")]
    TypeNotFound(i64),
    #[error("consent record {0} does not exist")]
    RecordNotFound(i64),
    #[error("person {0} is anonymized; no consent can be recorded")]
    Anonymized(i64),
    #[error("opt-in type {0} is not active")]
    TypeInactive(i64),
    #[error("an opt-in type named {0:?} already exists")]
    DuplicateName(String),
    #[error("opt-in type {0} has consent records and cannot be deleted; set it inactive instead")]
    TypeInUse(i64),
    /// Campaign steps mail for the type (their unsubscribe links withdraw it), or saved
    /// queries select on it.
    #[error("opt-in type {id} is still used: {}", .uses.join("; "))]
    TypeReferenced { id: i64, uses: Vec<String> },
    #[error("opt-in type {0} has no soft opt-in query")]
    NoSoftQuery(i64),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The type's saved query could not be run; the selector's error is the source.
    #[error("selecting persons failed")]
    Selection(#[source] crate::SelectionError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ConsentError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConsentError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
