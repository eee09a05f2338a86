use mailbaar_store::{ErrorCode, ErrorKind};
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

/// Why a field's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"field": "email", "reason": "not a valid e-mail address"}))]
pub struct FieldError {
    /// The field as named in the request.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Errors of the people domain.
#[derive(Debug, Error)]
pub enum PeopleError {
    #[error("person {0} does not exist")]
    NotFound(i64),
    #[error("another person already has the e-mail address {0}")]
    DuplicateEmail(String),
    #[error("person {0} is anonymized and can no longer be changed")]
    Anonymized(i64),
    #[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.reason)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Consent(#[from] mailbaar_consent::ConsentError),
    #[error(transparent)]
    Profile(#[from] mailbaar_profiles::ProfileError),
    #[error(transparent)]
    Settings(#[from] mailbaar_settings::SettingsError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl PeopleError {
    /// The error for a person that [`mailbaar_store::living_person`] refused.
    pub(crate) fn not_living(id: i64, why: mailbaar_store::NotLiving) -> Self {
        match why {
            mailbaar_store::NotLiving::Missing => PeopleError::NotFound(id),
            mailbaar_store::NotLiving::Anonymized => PeopleError::Anonymized(id),
        }
    }
}

impl ErrorCode for PeopleError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("person_not_found", ErrorKind::NotFound),
        ("duplicate_email", ErrorKind::Conflict),
        ("person_anonymized", ErrorKind::Conflict),
        ("invalid_person", ErrorKind::Invalid),
    ];

    fn kind(&self) -> ErrorKind {
        match self {
            PeopleError::NotFound(_) => ErrorKind::NotFound,
            PeopleError::DuplicateEmail(_) | PeopleError::Anonymized(_) => ErrorKind::Conflict,
            PeopleError::Invalid(_) => ErrorKind::Invalid,
            PeopleError::Consent(e) => e.kind(),
            PeopleError::Profile(e) => e.kind(),
            PeopleError::Settings(e) => e.kind(),
            PeopleError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PeopleError::NotFound(_) => "person_not_found",
            PeopleError::DuplicateEmail(_) => "duplicate_email",
            PeopleError::Anonymized(_) => "person_anonymized",
            PeopleError::Invalid(_) => "invalid_person",
            PeopleError::Consent(e) => e.code(),
            PeopleError::Profile(e) => e.code(),
            PeopleError::Settings(e) => e.code(),
            PeopleError::Database(e) => e.code(),
        }
    }
}
