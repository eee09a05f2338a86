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
