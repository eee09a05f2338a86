//! Campaigns for Mailbaar: the product's main job, sending a mailing as the mailing
//! manual walks it (chapters 2–5).
//!
//! - A [`Campaign`] groups [`CampaignStep`]s; a step is one e-mail: sender, content
//!   (templates with blocks, see `mailbaar_render`), selection (a saved query) and the
//!   opt-in type it mails for.
//! - [`readiness`] says what a step still needs; [`preview`] renders recipient N exactly
//!   as the send will; [`send_test_mail`] mails test persons (test contact moments).
//! - [`send_step`] creates a [`MailJob`], now or at a set time. A [`PREPARE`] task a lead
//!   time ahead freezes its content and recipients (one `INSERT … SELECT`); a [`SEND`]
//!   task delivers them in batches through a [`Transport`], one contact moment (with its
//!   Message-ID) per message. A one-time step is blocked after its send until
//!   [`reset_step`].
//! - [`step_results`] counts what the sends reached.

mod audience;
mod bounce;
mod campaign;
mod error;
mod job;
mod links;
mod mailing;
mod pace;
mod readiness;
mod recipient;
mod results;
mod search;
mod sending;
mod smtp;
mod step;
mod transport;

pub use bounce::{
    parse_dsn, report_bounce, BounceKind, BounceOutcome, BounceReport, BounceWebhook, Dsn,
};
pub use campaign::{
    create_campaign, delete_campaign, get_campaign, list_campaigns, update_campaign, Campaign,
    CampaignChanges, NameSearch, NewCampaign,
};
pub use error::CampaignError;
pub use job::{
    cancel_mail_job, get_mail_job, list_mail_jobs, pause_mail_job, reschedule_mail_job, reset_step,
    resume_mail_job, send_step, MailJob, MailJobChanges, MailJobFilter, MailJobProgress,
    MailJobStatus, SendRequest, PREPARE, SEND,
};
pub use links::{LinkError, LinkPurpose, Links, LINK_LIFETIME_DAYS};
pub use mailbaar_render::TrackedLink;
pub use mailing::{
    preview, send_test_mail, Delivery, Header, Preview, PreviewRequest, Retry, TestMailRequest,
    TestMailSent,
};
pub use readiness::{readiness, Readiness, Requirement, RequirementCode, PERSON_FIELDS};
pub use recipient::{
    choice_label, preferences, reach, save_preferences, track, track_click, unsubscribe,
    unsubscribe_target, view_online, LinkRefusal, PreferenceChoice, Preferences, Reached,
    Unsubscribed, RECIPIENT,
};
pub use results::{
    delete_test_contact_moments, step_results, HourBucket, Rate, StepResults, TestResults,
    CURVE_HOURS,
};
pub use sending::{preparation_work, SendWork};
pub use smtp::{dkim_signing, SmtpSettings, SmtpSettingsError, SmtpTransport};
pub use step::{
    create_step, delete_step, get_step, list_steps, update_step, CampaignStep, NewStep, SendKind,
    StepBlock, StepChanges, StepFilter, StepStatus, MAX_BLOCKS, MAX_TEMPLATE_CHARS,
};
pub use transport::{
    EmlTransport, Handover, HandoverDone, OutgoingMessage, Transport, TransportError,
};
