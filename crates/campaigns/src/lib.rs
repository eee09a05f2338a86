//! Campaigns for Mailbaar: the product's main job, sending a mailing as the mailing
//! manual walks it (chapters 2–5), up to the point where messages go out.
//!
//! - A [`Campaign`] groups [`CampaignStep`]s; a step is one e-mail: sender, content
//!   (templates with blocks, see `mailbaar_render`), selection (a saved query) and the
//!   opt-in type it mails for.
//! - [`readiness`] says what a step still needs; [`preview`] renders recipient N exactly
//!   as the send will ([`render_message`], the one path of previews and sends).
//! - [`send_step`] creates a [`MailJob`], now or at a set time. A [`PREPARE`] task a lead
//!   time ahead freezes its content ([`FrozenContent`]) and recipients (one
//!   `INSERT … SELECT`) and queues a [`SEND`] task, whose work the delivery crate
//!   provides; [`start_sending`] and [`finish_sending`] are the job's side of it. A
//!   one-time step is blocked after its send until [`reset_step`].
//! - [`step_results`] counts what the sends reached.
//!
//! Modules depend one way: `status`, `requirement` and `step` below `audience`,
//! `message` and `job`; `readiness` above those; `preview`, `current`, `preparation` and
//! `sending` on top.

mod audience;
mod campaign;
mod current;
mod error;
mod job;
mod message;
mod preparation;
mod preview;
mod readiness;
mod requirement;
mod results;
mod search;
mod sending;
mod status;
mod step;

pub use campaign::{
    create_campaign, delete_campaign, get_campaign, list_campaigns, update_campaign, Campaign,
    CampaignChanges, NameSearch, NewCampaign,
};
pub use current::{CurrentContent, TestMailContent};
pub use error::CampaignError;
pub use job::{
    cancel_mail_job, get_mail_job, list_mail_jobs, pause_mail_job, reschedule_mail_job,
    resend_in_doubt, reset_step, resume_mail_job, send_step, FrozenContent, MailJob,
    MailJobChanges, MailJobFilter, MailJobPayload, MailJobProgress, SendRequest, PREPARE, SEND,
};
pub use message::{new_message_id, render_message, PERSON_FIELDS};
pub use preparation::preparation_work;
pub use preview::{preview, Header, Preview, PreviewRequest};
pub use readiness::readiness;
pub use readiness::Readiness;
pub use requirement::{Requirement, RequirementCode};
pub use results::{
    delete_test_contact_moments, step_results, HourBucket, Rate, StepResults, TestResults,
    CURVE_HOURS,
};
pub use sending::{
    fail_sending, finish_sending, pause_for_refusal, sending_stop_reason, start_sending,
    store_sending_counts, SendEnd, SendStart, SendingJob,
};
pub use status::{MailJobStatus, RecipientState};
pub use step::{
    create_step, delete_step, get_step, list_steps, update_step, CampaignStep, NewStep, SendKind,
    StepBlock, StepChanges, StepFilter, StepStatus, MAX_BLOCKS, MAX_TEMPLATE_CHARS,
};
