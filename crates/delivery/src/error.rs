//! The one error type of the delivery crate.

use mailbaar_store::{ErrorCode, ErrorKind};
use thiserror::Error;

use crate::transport::TransportError;

/// What sending, a test mail, the bounce intake or a recipient page can fail with.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The transport did not take a message.
    #[error("the message could not be handed over: {0}")]
    Transport(#[from] TransportError),
    /// A bounce report (a DSN or a provider's webhook) that cannot be read; the field
    /// names what is wrong (a 422, nothing changed).
    #[error("{field}: {reason}")]
    InvalidReport { field: &'static str, reason: String },
    /// A recipient list's filter that cannot be used (a 422).
    #[error("{field}: {reason}")]
    InvalidRecipientFilter { field: &'static str, reason: String },
    /// Writing a CSV answer failed (the client went away).
    #[error("writing the CSV failed: {0}")]
    Csv(#[from] csv::Error),
    /// A message for the bounce mailbox that cannot be read: kept as unreadable report
    /// `id` for a person to look at (a 422; nothing else changed).
    #[error("{field}: {reason} (kept as unreadable report {id})")]
    UnreadableReport {
        id: i64,
        field: &'static str,
        reason: String,
    },
    /// No kept unreadable report has this id.
    #[error("unreadable report {0} does not exist")]
    UnreadableReportNotFound(i64),
    /// A provider's webhook that the provider did not demonstrably send: a signature that
    /// does not verify, a stale signed timestamp, a wrong secret, a topic or certificate
    /// not allowed (answered 403; nothing changed).
    #[error("{0}")]
    NotAuthentic(String),
    /// What a provider's webhook needs from the provider could not be fetched (Amazon SNS's
    /// signing certificate, or a subscription's confirmation): answered 503, so the
    /// provider delivers it again later; nothing changed.
    #[error("{0}")]
    ProviderUnreachable(String),
    /// A test-mail request with an invalid field (a 422, nothing sent).
    #[error("{field}: {reason}")]
    InvalidTestMail { field: &'static str, reason: String },
    /// A test mail names persons that are not test persons (nothing was sent).
    #[error("only test persons receive test mails; not a test person: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    NotTestPersons(Vec<i64>),
    /// The transport ended without answering for messages it took: the run stops, their
    /// recipients stay `sending` and are taken over when their lease runs out.
    #[error("the transport stopped before answering")]
    TransportGone,
    /// What the campaigns crate refused or failed with (not found, invalid, not ready).
    #[error(transparent)]
    Campaign(#[from] mailbaar_campaigns::CampaignError),
    /// The ledger refused a recipient's choice (an inactive or unknown opt-in type).
    #[error(transparent)]
    Consent(mailbaar_consent::ConsentError),
    #[error(transparent)]
    People(#[from] mailbaar_people::PeopleError),
    #[error(transparent)]
    Settings(#[from] mailbaar_settings::SettingsError),
    #[error(transparent)]
    Task(#[from] mailbaar_tasks::TaskError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl DeliveryError {
    /// A field of a bounce report is missing or invalid.
    pub(crate) fn invalid_report(field: &'static str, reason: impl Into<String>) -> Self {
        DeliveryError::InvalidReport {
            field,
            reason: reason.into(),
        }
    }

    /// A provider's webhook failed its authenticity check.
    pub(crate) fn not_authentic(reason: impl Into<String>) -> Self {
        DeliveryError::NotAuthentic(reason.into())
    }

    /// A field of a test-mail request is invalid.
    pub(crate) fn invalid_test_mail(field: &'static str, reason: impl Into<String>) -> Self {
        DeliveryError::InvalidTestMail {
            field,
            reason: reason.into(),
        }
    }
}

impl From<mailbaar_store::StoreError> for DeliveryError {
    fn from(e: mailbaar_store::StoreError) -> Self {
        DeliveryError::Task(mailbaar_tasks::TaskError::from(e))
    }
}

impl ErrorCode for DeliveryError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("invalid_bounce_report", ErrorKind::Invalid),
        ("unreadable_bounce_report", ErrorKind::Invalid),
        ("unreadable_report_not_found", ErrorKind::NotFound),
        ("invalid_test_mail", ErrorKind::Invalid),
        ("invalid_recipient_filter", ErrorKind::Invalid),
        ("csv_write_failed", ErrorKind::Internal),
        ("webhook_not_authentic", ErrorKind::Invalid),
        ("not_test_persons", ErrorKind::Invalid),
        ("transport_failed", ErrorKind::Internal),
        ("transport_gone", ErrorKind::Internal),
        ("provider_unreachable", ErrorKind::Unavailable),
    ];

    fn kind(&self) -> ErrorKind {
        use DeliveryError::*;
        match self {
            InvalidReport { .. }
            | UnreadableReport { .. }
            | InvalidTestMail { .. }
            | InvalidRecipientFilter { .. }
            | NotTestPersons(_)
            | NotAuthentic(_) => ErrorKind::Invalid,
            UnreadableReportNotFound(_) => ErrorKind::NotFound,
            Transport(_) | TransportGone | Csv(_) => ErrorKind::Internal,
            ProviderUnreachable(_) => ErrorKind::Unavailable,
            Campaign(e) => e.kind(),
            Consent(e) => e.kind(),
            People(e) => e.kind(),
            Settings(e) => e.kind(),
            Task(e) => e.kind(),
            Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        use DeliveryError::*;
        match self {
            InvalidReport { .. } => "invalid_bounce_report",
            UnreadableReport { .. } => "unreadable_bounce_report",
            UnreadableReportNotFound(_) => "unreadable_report_not_found",
            InvalidTestMail { .. } => "invalid_test_mail",
            InvalidRecipientFilter { .. } => "invalid_recipient_filter",
            Csv(_) => "csv_write_failed",
            NotTestPersons(_) => "not_test_persons",
            NotAuthentic(_) => "webhook_not_authentic",
            Transport(_) => "transport_failed",
            TransportGone => "transport_gone",
            ProviderUnreachable(_) => "provider_unreachable",
            Campaign(e) => e.code(),
            Consent(e) => e.code(),
            People(e) => e.code(),
            Settings(e) => e.code(),
            Task(e) => e.code(),
            Database(e) => e.code(),
        }
    }
}
