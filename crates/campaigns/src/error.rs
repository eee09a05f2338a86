//! The one error type of the campaigns crate.

use thiserror::Error;

use crate::readiness::Requirement;

/// What a campaign, step or mail-job operation can fail with.
#[derive(Debug, Error)]
pub enum CampaignError {
    /// The campaign, step, mail job or person does not exist.
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: i64 },
    /// A field of the request is invalid (a 422 naming the field).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A name that must be unique (ignoring case) is taken.
    #[error("a campaign named {0:?} already exists")]
    DuplicateName(String),
    /// A state change that is not allowed now; the text says why.
    #[error("{0}")]
    Refused(String),
    /// The step may not be sent yet: every missing requirement.
    #[error("the step is not ready to send: {}", .0.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; "))]
    NotReady(Vec<Requirement>),
    #[error(transparent)]
    Query(#[from] mailbaar_query::QueryError),
    #[error(transparent)]
    People(#[from] mailbaar_people::PeopleError),
    #[error(transparent)]
    Settings(#[from] mailbaar_settings::SettingsError),
    #[error(transparent)]
    Task(#[from] mailbaar_tasks::TaskError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl CampaignError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        CampaignError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
