//! Postmark's webhooks (Postmark developer docs, "Webhooks": Bounce, Spam complaint and
//! Delivery webhooks; "Bounce types").
//!
//! Postmark posts one record as JSON and signs nothing; it authenticates with HTTP basic
//! auth, which its console takes as part of the webhook URL
//! (`https://postmark:SECRET@host/…`). The password must be the configured secret,
//! compared in constant time; the user name is free. A bounce's `ID` can exceed 2^53: it
//! is read as an unsigned 64-bit integer or a string, never as a float. Postmark's
//! `MessageID` is its own id, not the message's Message-ID header, so a Postmark notice is
//! matched by the recipient's address.

use base64::Engine as _;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{address, digest_key};
use crate::{DeliveryError, Notice, NoticeClass, NoticeSource};

/// Checks the `Authorization` header's basic credentials against `secret` (the password;
/// any user name). Errors: `NotAuthentic` when missing, malformed or wrong.
pub fn authenticate(authorization: Option<&str>, secret: &str) -> Result<(), DeliveryError> {
    let refuse = || {
        DeliveryError::not_authentic(
            "Postmark: HTTP basic auth with the webhook secret is required",
        )
    };
    let header = authorization.ok_or_else(refuse)?.trim();
    let (scheme, encoded) = header.split_once(' ').ok_or_else(refuse)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refuse());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| refuse())?;
    let password = match decoded.iter().position(|b| *b == b':') {
        Some(i) => &decoded[i + 1..],
        None => return Err(refuse()),
    };
    // Digests of equal length, so neither the content nor the length leaks by timing.
    let digest = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
    let same = digest(password)
        .as_ref()
        .ct_eq(digest(secret.as_bytes()).as_ref());
    if bool::from(same) && !secret.is_empty() {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// A record's id as Postmark sends it: a number up to 2^64 or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    fn text(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Text(t) => t.trim().to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Record {
    record_type: String,
    #[serde(default, rename = "ID")]
    id: Option<Id>,
    #[serde(default, rename = "Type")]
    bounce_type: Option<String>,
    #[serde(default, rename = "MessageID")]
    message_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    bounced_at: Option<String>,
    #[serde(default)]
    delivered_at: Option<String>,
}

/// The class of a bounce record's `Type` (the table in [`super`]).
fn bounce_class(kind: &str) -> NoticeClass {
    match kind {
        "HardBounce" | "BadEmailAddress" => NoticeClass::Hard,
        "SoftBounce" | "DnsError" => NoticeClass::Soft,
        // Postmark still tries.
        "Transient" => NoticeClass::Delayed,
        "AutoResponder" | "ChallengeVerification" => NoticeClass::AutoReply,
        "SpamComplaint" => NoticeClass::Complaint,
        // Blocked, SpamNotification, DMARCPolicy, ManuallyDeactivated, VirusNotification,
        // Unknown and the rest: recorded, the person untouched.
        _ => NoticeClass::Policy,
    }
}

/// The notice of one Postmark record (none for opens, clicks, subscription changes and
/// what Postmark adds later). Errors: `InvalidReport` naming what is missing or wrong.
pub fn notices(body: &[u8]) -> Result<Vec<Notice>, DeliveryError> {
    let r: Record = serde_json::from_slice(body).map_err(|e| {
        DeliveryError::invalid_report("body", format!("not a Postmark webhook record: {e}"))
    })?;
    let (class, to, stamp) = match r.record_type.as_str() {
        "Bounce" => (
            bounce_class(r.bounce_type.as_deref().unwrap_or_default()),
            r.email.as_deref(),
            r.bounced_at.as_deref(),
        ),
        "SpamComplaint" => (
            NoticeClass::Complaint,
            r.email.as_deref(),
            r.bounced_at.as_deref(),
        ),
        "Delivery" => (
            NoticeClass::Delivered,
            r.recipient.as_deref(),
            r.delivered_at.as_deref(),
        ),
        _ => return Ok(Vec::new()),
    };
    let to = address(to).ok_or_else(|| {
        DeliveryError::invalid_report(
            "body",
            format!("a {} record without its address", r.record_type),
        )
    })?;
    let id = r.id.as_ref().map(Id::text).unwrap_or_default();
    let postmark_message = r.message_id.as_deref().unwrap_or_default().trim();
    let event_key = if !id.is_empty() {
        format!("{}/{id}", r.record_type)
    } else if !postmark_message.is_empty() {
        format!("{}/{postmark_message}/{to}", r.record_type)
    } else {
        digest_key(
            "postmark",
            &[&r.record_type, &to, stamp.unwrap_or_default()],
        )
    };
    let diagnostic = [
        r.bounce_type.as_deref(),
        r.details.as_deref(),
        r.description.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|t| !t.trim().is_empty())
    .collect::<Vec<_>>()
    .join(": ");
    Ok(vec![Notice {
        source: NoticeSource::Postmark,
        event_key,
        message_id: None,
        recipient: Some(to),
        class,
        status: super::enhanced_code(&diagnostic),
        diagnostic: if diagnostic.is_empty() {
            r.record_type.clone()
        } else {
            diagnostic
        },
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn only_the_secret_as_password_authenticates() {
        let secret = "s3cret-with-entropy";
        assert!(authenticate(Some(&basic("postmark:s3cret-with-entropy")), secret).is_ok());
        assert!(authenticate(Some(&basic("anyone:s3cret-with-entropy")), secret).is_ok());
        for bad in [
            None,
            Some(basic("postmark:s3cret-with-entropY")),
            Some(basic("postmark:")),
            Some(basic("s3cret-with-entropy")),
            Some("Bearer s3cret-with-entropy".to_owned()),
            Some("Basic !!!".to_owned()),
        ] {
            assert!(
                matches!(
                    authenticate(bad.as_deref(), secret),
                    Err(DeliveryError::NotAuthentic(_))
                ),
                "{bad:?}"
            );
        }
        assert!(authenticate(Some(&basic("postmark:")), "").is_err());
    }

    #[test]
    fn the_documented_records_class_as_the_table_says() {
        let n = notices(&fixture("postmark-bounce.json")).unwrap();
        assert_eq!(n[0].class, NoticeClass::Hard);
        assert_eq!(n[0].recipient.as_deref(), Some("john@example.com"));
        // 4323372036854775807 is above 2^53: kept exactly.
        assert_eq!(n[0].event_key, "Bounce/4323372036854775807");
        let n = notices(&fixture("postmark-spam-complaint.json")).unwrap();
        assert_eq!(n[0].class, NoticeClass::Complaint);
        let n = notices(&fixture("postmark-delivery.json")).unwrap();
        assert_eq!(n[0].class, NoticeClass::Delivered);
        assert_eq!(n[0].recipient.as_deref(), Some("john@example.com"));
        assert!(notices(&fixture("postmark-open.json")).unwrap().is_empty());
    }

    #[test]
    fn bounce_types_class_as_the_table_says() {
        for (kind, class) in [
            ("HardBounce", NoticeClass::Hard),
            ("SoftBounce", NoticeClass::Soft),
            ("Transient", NoticeClass::Delayed),
            ("Blocked", NoticeClass::Policy),
            ("SpamNotification", NoticeClass::Policy),
            ("DMARCPolicy", NoticeClass::Policy),
            ("AutoResponder", NoticeClass::AutoReply),
            ("SpamComplaint", NoticeClass::Complaint),
            ("SomethingNew", NoticeClass::Policy),
        ] {
            let body = serde_json::json!({"RecordType": "Bounce", "ID": "", "Type": kind,
                "Email": "a@example.org", "BouncedAt": "2026-12-05T12:00:00Z", "NewField": [1]});
            let n = notices(&serde_json::to_vec(&body).unwrap()).unwrap();
            assert_eq!(n[0].class, class, "{kind}");
            assert!(
                n[0].event_key.starts_with("postmark:"),
                "an empty ID gets a digest key"
            );
        }
        for bad in [
            &br#"{"RecordType":"Bounce","Type":"HardBounce"}"#[..],
            br#"{"RecordType":"Bounce","ID":1.5e300,"Email":"a@b.nl"}"#,
            br#"[]"#,
        ] {
            assert!(notices(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
