//! The one error type of the campaigns crate.

use mailbaar_store::{ErrorCode, ErrorKind};
use thiserror::Error;

use crate::requirement::Requirement;
use crate::status::MailJobStatus;

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
    /// A campaign that still has steps cannot be deleted.
    #[error("campaign {id} still has {steps} step(s); delete them first")]
    CampaignHasSteps { id: i64, steps: i64 },
    /// A step that has (or had) a mail job keeps its results and cannot be deleted.
    #[error("campaign step {id} has {jobs} mail job(s); a step that was sent or scheduled keeps its results and cannot be deleted")]
    StepHasJobs { id: i64, jobs: i64 },
    /// A step's send kind cannot change while its send blocks it or a job is under way.
    #[error("campaign step {id} is blocked by its send or has a mail job under way; its send kind can change after a reset")]
    SendKindLocked { id: i64 },
    /// Only a one-time step is blocked by its send; a repeatable one needs no reset.
    #[error("campaign step {id} is repeatable; it is never blocked and needs no reset")]
    StepRepeatable { id: i64 },
    /// A reset of a step that was not sent since its last reset.
    #[error("campaign step {id} is not blocked: it was not sent since its last reset")]
    StepNotBlocked { id: i64 },
    /// A reset while a mail job of the step is under way.
    #[error("campaign step {id} has mail job {job} under way ({}); cancel it or let it finish first", .status.as_str())]
    StepHasActiveJob {
        id: i64,
        job: i64,
        status: MailJobStatus,
    },
    /// A mail job that was cancelled can no longer be changed (`action`: rescheduled,
    /// cancelled, paused, resumed).
    #[error("mail job {id} can no longer be {action}: it was cancelled")]
    JobCancelled { id: i64, action: &'static str },
    /// A mail job that has ended (sent or failed) can no longer be changed.
    #[error("mail job {id} can no longer be {action}: it has ended ({})", .status.as_str())]
    JobEnded {
        id: i64,
        action: &'static str,
        status: MailJobStatus,
    },
    /// A mail job whose preparation started can no longer be rescheduled or cancelled
    /// before it: its content and recipients are frozen.
    #[error("mail job {id} can no longer be {action}: its preparation started (status {}); the content and recipients are frozen", .status.as_str())]
    JobFrozen {
        id: i64,
        action: &'static str,
        status: MailJobStatus,
    },
    /// Pausing a job that is paused already.
    #[error("mail job {id} is paused already; resume it first")]
    JobAlreadyPaused { id: i64 },
    /// Resuming a job that is not paused.
    #[error("mail job {id} is not paused")]
    JobNotPaused { id: i64 },
    /// Resending the in-doubt recipients of a job that has none in doubt now.
    #[error("mail job {id} has no recipient in doubt; nothing to resend")]
    NothingInDoubt { id: i64 },
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
        ("campaign_has_steps", ErrorKind::Conflict),
        ("step_has_jobs", ErrorKind::Conflict),
        ("send_kind_locked", ErrorKind::Conflict),
        ("step_repeatable", ErrorKind::Conflict),
        ("step_not_blocked", ErrorKind::Conflict),
        ("step_has_active_job", ErrorKind::Conflict),
        ("mail_job_cancelled", ErrorKind::Conflict),
        ("mail_job_ended", ErrorKind::Conflict),
        ("mail_job_frozen", ErrorKind::Conflict),
        ("mail_job_already_paused", ErrorKind::Conflict),
        ("mail_job_not_paused", ErrorKind::Conflict),
        ("nothing_in_doubt", ErrorKind::Conflict),
        ("step_not_ready", ErrorKind::Conflict),
    ];

    fn kind(&self) -> ErrorKind {
        use CampaignError::*;
        match self {
            NotFound { .. } => ErrorKind::NotFound,
            Invalid { .. } => ErrorKind::Invalid,
            DuplicateName(_)
            | CampaignHasSteps { .. }
            | StepHasJobs { .. }
            | SendKindLocked { .. }
            | StepRepeatable { .. }
            | StepNotBlocked { .. }
            | StepHasActiveJob { .. }
            | JobCancelled { .. }
            | JobEnded { .. }
            | JobFrozen { .. }
            | JobAlreadyPaused { .. }
            | JobNotPaused { .. }
            | NothingInDoubt { .. }
            | NotReady(_) => ErrorKind::Conflict,
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
            CampaignHasSteps { .. } => "campaign_has_steps",
            StepHasJobs { .. } => "step_has_jobs",
            SendKindLocked { .. } => "send_kind_locked",
            StepRepeatable { .. } => "step_repeatable",
            StepNotBlocked { .. } => "step_not_blocked",
            StepHasActiveJob { .. } => "step_has_active_job",
            JobCancelled { .. } => "mail_job_cancelled",
            JobEnded { .. } => "mail_job_ended",
            JobFrozen { .. } => "mail_job_frozen",
            JobAlreadyPaused { .. } => "mail_job_already_paused",
            JobNotPaused { .. } => "mail_job_not_paused",
            NothingInDoubt { .. } => "nothing_in_doubt",
            NotReady(_) => "step_not_ready",
            Query(e) => e.code(),
            People(e) => e.code(),
            Settings(e) => e.code(),
            Task(e) => e.code(),
            Database(e) => e.code(),
        }
    }
}
