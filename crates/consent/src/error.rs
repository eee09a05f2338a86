use mailbaar_store::{ErrorCode, ErrorKind};
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

impl ErrorCode for ConsentError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("person_not_found", ErrorKind::NotFound),
        ("opt_in_type_not_found", ErrorKind::NotFound),
        ("consent_record_not_found", ErrorKind::NotFound),
        ("person_anonymized", ErrorKind::Conflict),
        ("opt_in_type_inactive", ErrorKind::Conflict),
        ("duplicate_opt_in_type_name", ErrorKind::Conflict),
        ("opt_in_type_has_records", ErrorKind::Conflict),
        ("opt_in_type_in_use", ErrorKind::Conflict),
        ("no_soft_opt_in_query", ErrorKind::Conflict),
        ("invalid_consent", ErrorKind::Invalid),
        ("selection_failed", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        use ConsentError::*;
        match self {
            PersonNotFound(_) | TypeNotFound(_) | RecordNotFound(_) => ErrorKind::NotFound,
            Anonymized(_)
            | TypeInactive(_)
            | DuplicateName(_)
            | TypeInUse(_)
            | TypeReferenced { .. }
            | NoSoftQuery(_) => ErrorKind::Conflict,
            Invalid { .. } => ErrorKind::Invalid,
            Selection(_) => ErrorKind::Internal,
            Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        use ConsentError::*;
        match self {
            PersonNotFound(_) => "person_not_found",
            TypeNotFound(_) => "opt_in_type_not_found",
            RecordNotFound(_) => "consent_record_not_found",
            Anonymized(_) => "person_anonymized",
            TypeInactive(_) => "opt_in_type_inactive",
            DuplicateName(_) => "duplicate_opt_in_type_name",
            TypeInUse(_) => "opt_in_type_has_records",
            TypeReferenced { .. } => "opt_in_type_in_use",
            NoSoftQuery(_) => "no_soft_opt_in_query",
            Invalid { .. } => "invalid_consent",
            Selection(_) => "selection_failed",
            Database(e) => e.code(),
        }
    }
}
