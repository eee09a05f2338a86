//! The e-mail providers' own webhooks, one module per provider: each takes the body
//! *exactly as the provider sends it*, checks that the provider sent it (a signature, or
//! for Postmark, which signs nothing, a shared secret), and turns it into [`Notice`]s for
//! [`crate::record_notices`]. Pure functions: no HTTP types and no database; the only
//! outside call is Amazon SNS's certificate and confirmation fetch, behind [`SnsFetch`].
//!
//! A body is all or nothing: one event that cannot be read refuses the whole body
//! ([`DeliveryError::InvalidReport`] naming the event), so nothing of it is recorded and the
//! provider, which retries a refused delivery, can be told what is wrong. Events that say
//! nothing about delivery (opens, clicks, "processed", "sent") give no notice; unknown
//! fields are ignored and empty provider ids accepted (the notice's key then is a digest of
//! the event's own fields).
//!
//! # How each provider's events are classed
//!
//! The enhanced status code (RFC 3463) decides where a provider gives one: X.7.x (refused
//! by policy, a block list, authentication) is `policy`, X.1.x (no such address) is
//! `hard`, X.2.2 and X.2.3 (mailbox full, message too large for it) and 4.x.x are `soft`
//! (RFC 3463 §3.3: "persistent transient"). Otherwise the provider's own words decide:
//!
//! | provider | event | class |
//! |---|---|---|
//! | SES | `Bounce`, `bounceType` `Permanent` (`General`, `NoEmail`, `Suppressed`, `OnAccountSuppressionList`) | by status, else `hard` |
//! | SES | `Bounce`, `Permanent`/`Transient` `MailboxFull`, `MessageTooLarge` | `soft` |
//! | SES | `Bounce`, `ContentRejected`, `AttachmentRejected` | `policy` |
//! | SES | `Bounce`, `Transient` (other), `Undetermined` | `soft` |
//! | SES | `Complaint` (not `not-spam`) | `complaint` |
//! | SES | `Delivery` / `DeliveryDelay` | `delivered` / `delayed` |
//! | SendGrid | `bounce` with `type` `blocked` | `policy` |
//! | SendGrid | `bounce` with `type` `bounce` | by status, else `hard` |
//! | SendGrid | `dropped`, reason `Bounced Address` or `Invalid` | `hard` |
//! | SendGrid | `dropped`, other reasons (unsubscribed, spam reporting, …) | `policy` |
//! | SendGrid | `deferred` / `delivered` / `spamreport` | `delayed` / `delivered` / `complaint` |
//! | Mailgun | `failed`, `severity` `temporary` (Mailgun tries again) | `delayed` |
//! | Mailgun | `failed`, `permanent`, `reason` `suppress-bounce` | `hard` |
//! | Mailgun | `failed`, `permanent`, `reason` `old` (given up after retrying) | `soft` |
//! | Mailgun | `failed`, `permanent`, `reason` `espblock`, `suppress-complaint`, `suppress-unsubscribe` | `policy` |
//! | Mailgun | `failed`, `permanent`, other reasons | by status, else `hard` |
//! | Mailgun | `complained` / `delivered` | `complaint` / `delivered` |
//! | Postmark | `Bounce`, `Type` `HardBounce`, `BadEmailAddress` | `hard` |
//! | Postmark | `Bounce`, `SoftBounce`, `DnsError` | `soft` |
//! | Postmark | `Bounce`, `Transient` (Postmark tries again) | `delayed` |
//! | Postmark | `Bounce`, `Blocked`, `SpamNotification`, `DMARCPolicy`, `ManuallyDeactivated`, `VirusNotification`, others | `policy` |
//! | Postmark | `Bounce`, `AutoResponder`, `ChallengeVerification` | `auto_reply` |
//! | Postmark | `Bounce`, `SpamComplaint`; `SpamComplaint` record | `complaint` |
//! | Postmark | `Delivery` record | `delivered` |

pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

pub use ses::{CertificateCache, SesReceived, SesSettings, SnsFetch};

use chrono::{NaiveDateTime, TimeDelta};

use crate::{DeliveryError, NoticeClass};

/// How old a signed timestamp may be: SNS retries a delivery for up to an hour with the
/// signature it made at publishing; older ones are refused as replays.
pub const MAX_AGE: TimeDelta = TimeDelta::hours(1);

/// How far in the future a signed timestamp may lie (clocks differ a little).
pub const MAX_SKEW: TimeDelta = TimeDelta::minutes(5);

/// Refuses a signed timestamp outside [`MAX_AGE`] before `now` and [`MAX_SKEW`] after it.
pub(crate) fn check_fresh(
    provider: &str,
    signed_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<(), DeliveryError> {
    if signed_at < now - MAX_AGE {
        return Err(DeliveryError::not_authentic(format!(
            "{provider}: the signed timestamp {signed_at} is more than an hour old (a replay?)"
        )));
    }
    if signed_at > now + MAX_SKEW {
        return Err(DeliveryError::not_authentic(format!(
            "{provider}: the signed timestamp {signed_at} lies in the future"
        )));
    }
    Ok(())
}

/// A signed Unix time in seconds, as a date.
pub(crate) fn unix_seconds(provider: &str, text: &str) -> Result<NaiveDateTime, DeliveryError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|d| d.naive_utc())
        .ok_or_else(|| {
            DeliveryError::not_authentic(format!(
                "{provider}: the timestamp {text:?} is not Unix seconds"
            ))
        })
}

/// A Message-ID without its angle brackets and spaces; `None` when empty.
pub(crate) fn message_id(raw: Option<&str>) -> Option<String> {
    let id = raw?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// A recipient address as given, trimmed; `None` when empty.
pub(crate) fn address(raw: Option<&str>) -> Option<String> {
    let a = raw?.trim();
    (!a.is_empty()).then(|| a.to_owned())
}

/// A key for an event whose provider id is empty: a digest of the fields that make it
/// the event it is, so a retry of it gets the same key.
pub(crate) fn digest_key(provider: &str, parts: &[&str]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, parts.join("\u{1f}").as_bytes());
    format!("{provider}:{}", hex::encode(&digest.as_ref()[..16]))
}

/// The first enhanced status code (RFC 3463 `class.subject.detail`) in a text, such as a
/// diagnostic `smtp; 550 5.1.1 <a@b>... User unknown`.
pub(crate) fn enhanced_code(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '(' | ')' | '[' | ']' | '-'))
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// The class an enhanced status code gives (see the module's table), or `None` when the
/// code alone does not decide (then the provider's own words do). A generic `5.0.0` in
/// `status` gives way to a more telling code in `diagnostic`.
pub(crate) fn class_by_status(status: Option<&str>, diagnostic: &str) -> Option<NoticeClass> {
    let given = status.map(str::trim).filter(|s| enhanced_code(s).is_some());
    let code = match given {
        Some(s) if !s.ends_with(".0.0") => s.to_owned(),
        other => enhanced_code(diagnostic)
            .filter(|c| !c.ends_with(".0.0"))
            .or(other.map(str::to_owned))?,
    };
    let mut parts = code.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    Some(match (class, subject, detail) {
        (_, "7", _) => NoticeClass::Policy,
        ("4", _, _) => NoticeClass::Soft,
        ("5", "2", "2") | ("5", "2", "3") | ("5", "3", "4") => NoticeClass::Soft,
        ("5", "1", _) => NoticeClass::Hard,
        ("2", _, _) => NoticeClass::Delivered,
        _ => return None,
    })
}

/// What one event of a body is called in an error: its position and, when it has one,
/// the provider's id.
pub(crate) fn event_name(index: usize, id: &str) -> String {
    if id.is_empty() {
        format!("event {index}")
    } else {
        format!("event {index} ({id})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_class_by_rfc_3463() {
        use NoticeClass::*;
        for (status, diagnostic, class) in [
            (Some("5.1.1"), "smtp; 550 5.1.1 user unknown", Some(Hard)),
            (
                Some("5.2.2"),
                "552-5.2.2 The recipient's mailbox is full",
                Some(Soft),
            ),
            (
                Some("5.7.1"),
                "550 5.7.1 client host [192.0.2.25] is on a block list",
                Some(Policy),
            ),
            (
                Some("5.0.0"),
                "smtp; 550 5.1.1 <jane@example.com>... User",
                Some(Hard),
            ),
            (
                Some("5.0.0"),
                "smtp; 554 5.7.1 rejected by policy",
                Some(Policy),
            ),
            (
                Some("4.4.1"),
                "smtp; 421 4.4.1 Unable to connect",
                Some(Soft),
            ),
            (
                None,
                "550 5.1.1 The email account that you tried to reach does not exist",
                Some(Hard),
            ),
            (None, "550 Requested action not taken", None),
            (Some("5.0.0"), "no code here", None),
            (Some("5.3.0"), "", None),
        ] {
            assert_eq!(
                class_by_status(status, diagnostic),
                class,
                "{status:?} {diagnostic}"
            );
        }
    }

    #[test]
    fn message_ids_lose_their_angle_brackets() {
        assert_eq!(message_id(Some(" <a.b@c> ")).as_deref(), Some("a.b@c"));
        assert_eq!(message_id(Some("a.b@c")).as_deref(), Some("a.b@c"));
        assert_eq!(message_id(Some("<>")), None);
        assert_eq!(message_id(Some("")), None);
        assert_eq!(message_id(None), None);
    }
}
