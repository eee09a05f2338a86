//! Delivery for Mailbaar: everything after a mail job's preparation, and what comes back.
//!
//! - The send engine ([`SendWork`], the work of [`mailbaar_campaigns::SEND`]): a run
//!   claims batches of recipients from a [`RecipientQueue`] ([`DbQueue`] over the
//!   database), hands their messages to a [`Transport`] ([`SmtpTransport`] or the `.eml`
//!   [`EmlTransport`]) under this process's [`Delivery`] (pace, retries, leases) and
//!   records each verdict. Only a refusal of the recipient (5xx at `RCPT TO`) marks a
//!   bouncer; 4xx and no answer are tried again ([`Retry`]).
//! - [`send_test_mail`]: a step's current content to test persons.
//! - The bounce intake ([`report_bounce`], [`parse_dsn`]) and the providers' own webhooks
//!   ([`providers`]: Amazon SES through SNS, SendGrid, Mailgun, Postmark).
//! - The recipient pages' domain logic: the preference centre, unsubscribe, the web
//!   version and open and click tracking behind the signed links of every message.
//!
//! It stands above `mailbaar_campaigns` (jobs, their content and their states), which
//! never depends on it.

mod bounce;
mod delivery;
mod engine;
mod error;
mod notice;
mod pace;
pub mod providers;
mod queue;
mod recipient;
mod reply;
mod smtp;
mod test_mail;
mod transport;

pub use bounce::{
    parse_dsn, report_bounce, BounceKind, BounceOutcome, BounceReport, BounceWebhook, Dsn,
};
pub use delivery::{Delivery, Retry};
pub use engine::{run_job, JobContent, RunEnd, SendWork};
pub use error::DeliveryError;
pub use mailbaar_render::{LinkError, Links, TokenPurpose, TrackedLink, LINK_LIFETIME_DAYS};
pub use notice::{record_notices, Notice, NoticeClass, NoticeOutcome, NoticeSource};
pub use queue::{Addressees, Claimed, DbQueue, Marked, RecipientQueue, Verdict};
pub use recipient::{
    choice_label, preferences, reach, save_preferences, track, track_click, unsubscribe,
    unsubscribe_target, view_online, LinkRefusal, PreferenceChoice, Preferences, Reached,
    Unsubscribed, RECIPIENT,
};
pub use reply::{classify, Handover, Reply, SendOutcome, SmtpPhase};
pub use smtp::{check_smtp_url, dkim_signing, SmtpSettings, SmtpSettingsError, SmtpTransport};
pub use test_mail::{send_test_mail, TestMailRequest, TestMailSent};
pub use transport::{EmlTransport, HandoverDone, OutgoingMessage, Transport, TransportError};
