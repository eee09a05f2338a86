//! The one error type of the campaigns crate.

use mailbaar_store::{ErrorCode, ErrorKind};
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

impl ErrorCode for CampaignError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("campaign_not_found", ErrorKind::NotFound),
        ("campaign_step_not_found", ErrorKind::NotFound),
        ("mail_job_not_found", ErrorKind::NotFound),
        ("invalid_campaign", ErrorKind::Invalid),
        ("duplicate_campaign_name", ErrorKind::Conflict),
        ("campaign_change_refused", ErrorKind::Conflict),
        ("step_not_ready", ErrorKind::Conflict),
    ];

    fn kind(&self) -> ErrorKind {
        use CampaignError::*;
        match self {
            NotFound { .. } => ErrorKind::NotFound,
            Invalid { .. } => ErrorKind::Invalid,
            DuplicateName(_) | Refused(_) | NotReady(_) => ErrorKind::Conflict,
            Query(e) => e.kind(),
            People(e) => e.kind(),
            Settings(e) => e.kind(),
            Task(e) => e.kind(),
            Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        use CampaignError::*;
        match self {
            NotFound {
                what: "campaign", ..
            } => "campaign_not_found",
            NotFound {
                what: "campaign step",
                ..
            } => "campaign_step_not_found",
            NotFound { .. } => "mail_job_not_found",
            Invalid { .. } => "invalid_campaign",
            DuplicateName(_) => "duplicate_campaign_name",
            Refused(_) => "campaign_change_refused",
            NotReady(_) => "step_not_ready",
            Query(e) => e.code(),
            People(e) => e.code(),
            Settings(e) => e.code(),
            Task(e) => e.code(),
            Database(e) => e.code(),
        }
    }
}
