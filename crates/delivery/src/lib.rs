//! Delivery for Mailbaar: everything after a mail job's preparation, and what comes back.
//!
//! - The send engine ([`SendWork`], the work of [`mailbaar_campaigns::SEND`]): a run
//!   claims batches of recipients from a [`RecipientQueue`] ([`DbQueue`] over the
//!   database), hands their messages to a [`Transport`] ([`SmtpTransport`] or the `.eml`
//!   [`EmlTransport`]) under this process's [`Delivery`] (pace, retries, leases) and
//!   records each verdict, classified by SMTP phase and reply ([`classify`]). Only a refusal of the recipient's address marks a bouncer; 4xx
//!   and no answer before the end of data are tried again ([`Retry`]); a message that may
//!   have arrived is in doubt ([`InDoubtPolicy`]); repeated refusals of us pause the job.
//! - [`list_recipients`]: who got what, and why (state, attempts, last reply).
//! - [`send_test_mail`]: a step's current content to test persons.
//! - The bounce intake: messages from the bounce mailbox ([`report_message`]: DSNs,
//!   complaints, auto-replies) and the generic webhook ([`report_webhook`]) become
//!   [`Notice`]s, classified by [`classify_notice`] and counted once by
//!   [`record_notices`].
//! - The providers' own webhooks ([`providers`]: Amazon SES through SNS, SendGrid,
//!   Mailgun, Postmark), read into the same notices.
//! - The recipient pages' domain logic: the preference centre, unsubscribe, the web
//!   version and open and click tracking behind the signed links of every message.
//!
//! It stands above `mailbaar_campaigns` (jobs, their content and their states), which
//! never depends on it.

mod bounce;
mod delivery;
mod engine;
mod error;
mod job_recipients;
mod notice;
mod pace;
pub mod providers;
mod queue;
mod recipient;
mod reply;
mod smtp;
mod test_mail;
#[cfg(feature = "testing")]
pub mod testing;
mod transport;

pub use bounce::{
    keep_unreadable, list_unreadable, read_report, report_message, report_webhook, unreadable_body,
    BounceWebhook, Report, ReportKind, ReportedRecipient, UnreadableReport,
};
pub use delivery::{Delivery, InDoubtPolicy, Retry};
pub use engine::{run_job, JobContent, RunEnd, SendWork, REFUSALS_TO_PAUSE};
pub use error::DeliveryError;
pub use job_recipients::{
    check_recipients_csv, list_recipients, write_recipients_csv, JobRecipient, RecipientFilter,
    RECIPIENT_CSV_COLUMNS,
};
pub use mailbaar_render::{LinkError, Links, TokenPurpose, TrackedLink, LINK_LIFETIME_DAYS};
pub use notice::{
    classify_notice, record_notices, Evidence, Notice, NoticeClass, NoticeOutcome, NoticeSource,
};
pub use queue::{Addressees, Claimed, DbQueue, Marked, RecipientQueue, Verdict};
pub use recipient::{
    choice_label, preferences, reach, save_preferences, track, track_click, unsubscribe,
    unsubscribe_target, view_online, LinkRefusal, PreferenceChoice, Preferences, Reached,
    Unsubscribed, RECIPIENT,
};
pub use reply::{classify, Handover, Reply, SendOutcome, SmtpPhase};
pub use smtp::{
    check_smtp_url, dkim_signing, PhaseTimeouts, SmtpSettings, SmtpSettingsError, SmtpTransport,
};
pub use test_mail::{send_test_mail, TestMailOutcome, TestMailRequest, TestMailResult};
pub use transport::{EmlTransport, HandoverDone, OutgoingMessage, Transport, TransportError};
