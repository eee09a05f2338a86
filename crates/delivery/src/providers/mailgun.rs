//! Mailgun's webhooks (Mailgun docs, "Webhooks", "Webhook Payloads" and "Securing
//! webhooks").
//!
//! Mailgun posts one event as JSON: `{"signature": {"timestamp", "token", "signature"},
//! "event-data": {…}}`, where `signature` is the hex HMAC-SHA256, keyed with the account's
//! HTTP webhook signing key, of `timestamp` followed by `token`. The signature does not
//! cover the event, so a token may serve one event only: [`TokenMemory`] remembers each
//! token with a digest of its event for [`super::MAX_AGE`], and a token that comes back
//! with another event is refused (the same event again is a retry, counted once by its
//! notice key, the event's `id`). A timestamp older than that is refused. The memory is
//! per process: several processes behind one URL each keep their own. Message-IDs come
//! without angle brackets in `message.headers.message-id`.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDateTime;
use serde::Deserialize;

use super::{address, check_fresh, class_by_status, digest_key, message_id, unix_seconds};
use crate::{DeliveryError, Notice, NoticeClass, NoticeSource};

/// The tokens of the signatures taken in the last [`super::MAX_AGE`], each with a digest
/// of the event it came with, so that a signature cannot be reused for another event.
#[derive(Debug, Default)]
pub struct TokenMemory {
    seen: Mutex<HashMap<String, (NaiveDateTime, Vec<u8>)>>,
}

impl TokenMemory {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers `token` with `event`'s digest; refuses a token already seen with another
    /// event. Tokens older than [`super::MAX_AGE`] are forgotten (their signatures are
    /// stale by then).
    fn check(&self, token: &str, event: &[u8], now: NaiveDateTime) -> Result<(), DeliveryError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, event)
            .as_ref()
            .to_vec();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, (at, _)| *at >= now - super::MAX_AGE - super::MAX_SKEW);
        match seen.get(token) {
            Some((_, known)) if *known != digest => Err(DeliveryError::not_authentic(
                "Mailgun: this signature's token came with another event before (a replay?)",
            )),
            Some(_) => Ok(()),
            None => {
                seen.insert(token.to_owned(), (now, digest));
                Ok(())
            }
        }
    }
}

/// Checks a Mailgun body's signature and age, and that its token served no other event,
/// then reads its event. `signing_key` is the HTTP webhook signing key. Errors:
/// `NotAuthentic` for a missing, stale, wrong or reused signature; `InvalidReport` for an
/// event that cannot be read.
pub fn receive(
    body: &[u8],
    signing_key: &str,
    tokens: &TokenMemory,
    now: NaiveDateTime,
) -> Result<Vec<Notice>, DeliveryError> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| {
        DeliveryError::invalid_report("body", format!("not a Mailgun webhook: {e}"))
    })?;
    let s = &payload.signature;
    let timestamp = match &s.timestamp {
        serde_json::Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    check_fresh("Mailgun", unix_seconds("Mailgun", &timestamp)?, now)?;
    let signature = hex::decode(s.signature.trim())
        .map_err(|_| DeliveryError::not_authentic("Mailgun: the signature is not hex"))?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, signing_key.as_bytes());
    ring::hmac::verify(
        &key,
        format!("{timestamp}{}", s.token).as_bytes(),
        &signature,
    )
    .map_err(|_| DeliveryError::not_authentic("Mailgun: the signature does not verify"))?;
    tokens.check(&s.token, payload.event_data.to_string().as_bytes(), now)?;
    notices(&payload.event_data)
}

#[derive(Debug, Deserialize)]
struct Payload {
    signature: Signature,
    #[serde(rename = "event-data")]
    event_data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Signature {
    timestamp: serde_json::Value,
    token: String,
    signature: String,
}

#[derive(Debug, Deserialize)]
struct EventData {
    event: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default, rename = "delivery-status")]
    delivery_status: Option<DeliveryStatus>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct DeliveryStatus {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "enhanced-code")]
    enhanced_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    headers: Headers,
}

#[derive(Debug, Default, Deserialize)]
struct Headers {
    #[serde(default, rename = "message-id")]
    message_id: Option<String>,
}

/// The notice of one Mailgun event (none for accepted, opened, clicked, unsubscribed and
/// what Mailgun adds later). Errors: `InvalidReport` naming what is missing.
pub fn notices(event_data: &serde_json::Value) -> Result<Vec<Notice>, DeliveryError> {
    let e: EventData = serde_json::from_value(event_data.clone())
        .map_err(|err| DeliveryError::invalid_report("event-data", err.to_string()))?;
    let status = e.delivery_status.as_ref();
    let text = status
        .map(|s| {
            let code = s.code.as_ref().map(|c| c.to_string()).unwrap_or_default();
            let words = [s.message.as_deref(), s.description.as_deref()]
                .into_iter()
                .flatten()
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            format!("{code} {words}").trim().to_owned()
        })
        .unwrap_or_default();
    let enhanced = status
        .and_then(|s| s.enhanced_code.clone())
        .filter(|c| !c.trim().is_empty());
    let reason = e.reason.as_deref().unwrap_or_default();
    let class = match e.event.as_str() {
        "failed" => match e.severity.as_deref() {
            // Mailgun tries again: a delay, not yet a bounce.
            Some("temporary") => NoticeClass::Delayed,
            _ => match reason {
                "suppress-bounce" => NoticeClass::Hard,
                "suppress-complaint" | "suppress-unsubscribe" | "espblock" => NoticeClass::Policy,
                // Given up after retrying a temporary failure.
                "old" => NoticeClass::Soft,
                _ => match class_by_status(enhanced.as_deref(), &text) {
                    Some(NoticeClass::Delivered) | None => NoticeClass::Hard,
                    Some(c) => c,
                },
            },
        },
        "complained" => NoticeClass::Complaint,
        "delivered" => NoticeClass::Delivered,
        _ => return Ok(Vec::new()),
    };
    let to = address(e.recipient.as_deref()).ok_or_else(|| {
        DeliveryError::invalid_report(
            "event-data",
            format!("a {} event without \"recipient\"", e.event),
        )
    })?;
    let message_id = message_id(
        e.message
            .as_ref()
            .and_then(|m| m.headers.message_id.as_deref()),
    );
    let event_key = if e.id.trim().is_empty() {
        let stamp = e
            .timestamp
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default();
        digest_key(
            "mailgun",
            &[
                &e.event,
                &to,
                message_id.as_deref().unwrap_or_default(),
                &stamp,
            ],
        )
    } else {
        e.id.trim().to_owned()
    };
    let diagnostic = if text.is_empty() {
        format!("{} {reason}", e.event).trim().to_owned()
    } else {
        text
    };
    Ok(vec![Notice {
        source: NoticeSource::Mailgun,
        event_key,
        message_id,
        recipient: Some(to),
        class,
        status: enhanced.or_else(|| super::enhanced_code(&diagnostic)),
        diagnostic,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers");
    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";

    fn fixture(name: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap())
            .unwrap()
    }

    /// The documented body with its signature made again with [`KEY`] at `timestamp`.
    fn signed(name: &str, timestamp: &str) -> Vec<u8> {
        let mut body = fixture(name);
        let token = body["signature"]["token"].as_str().unwrap().to_owned();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY.as_bytes());
        let tag = ring::hmac::sign(&key, format!("{timestamp}{token}").as_bytes());
        body["signature"]["timestamp"] = timestamp.into();
        body["signature"]["signature"] = hex::encode(tag.as_ref()).into();
        serde_json::to_vec(&body).unwrap()
    }

    fn now() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_764_936_000, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn a_signed_event_is_taken_and_a_tampered_or_stale_one_refused() {
        let tokens = TokenMemory::new();
        let body = signed("mailgun-failed-permanent.json", "1764935990");
        let n = receive(&body, KEY, &tokens, now()).unwrap();
        assert_eq!(n[0].class, NoticeClass::Hard);
        // The same delivery again (a retry) is taken: its notice is counted once.
        assert_eq!(receive(&body, KEY, &tokens, now()).unwrap(), n);

        // Mailgun signs the timestamp and token only: the signature reused for another
        // event is refused by its token.
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("joan@example.com", "jane@example.com");
        assert!(matches!(
            receive(tampered.as_bytes(), KEY, &tokens, now()),
            Err(DeliveryError::NotAuthentic(e)) if e.contains("token")
        ));
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["signature"]["signature"] = hex::encode([7u8; 32]).into();
        assert!(matches!(
            receive(&serde_json::to_vec(&v).unwrap(), KEY, &tokens, now()),
            Err(DeliveryError::NotAuthentic(_))
        ));
        assert!(matches!(
            receive(&body, "another-key", &tokens, now()),
            Err(DeliveryError::NotAuthentic(_))
        ));
        let old = signed("mailgun-failed-permanent.json", "1764932000");
        assert!(matches!(
            receive(&old, KEY, &TokenMemory::new(), now()),
            Err(DeliveryError::NotAuthentic(e)) if e.contains("hour")
        ));
    }

    #[test]
    fn the_documented_events_class_as_the_table_says() {
        for (name, class, to, id) in [
            (
                "mailgun-failed-permanent.json",
                Some(NoticeClass::Hard),
                "joan@example.com",
                "20130503182626.18666.16540@example.com",
            ),
            (
                "mailgun-failed-temporary.json",
                Some(NoticeClass::Delayed),
                "alice@example.com",
                "20130503192659.13651.20287@sandbox.mailgun.org",
            ),
            (
                "mailgun-complained.json",
                Some(NoticeClass::Complaint),
                "alice@example.com",
                "20110215055645.25246.63817@sandbox.mailgun.org",
            ),
            (
                "mailgun-delivered.json",
                Some(NoticeClass::Delivered),
                "alice@example.com",
                "20130503182626.18666.16540@sandbox.mailgun.org",
            ),
            ("mailgun-opened.json", None, "", ""),
        ] {
            let n = notices(&fixture(name)["event-data"]).unwrap();
            assert_eq!(n.first().map(|n| n.class), class, "{name}");
            if let Some(n) = n.first() {
                assert_eq!(n.recipient.as_deref(), Some(to), "{name}");
                assert_eq!(n.message_id.as_deref(), Some(id), "{name}");
                assert!(!n.event_key.is_empty());
            }
        }
    }

    #[test]
    fn permanent_failures_class_by_reason_and_status() {
        let mk = |reason: &str, message: &str| {
            serde_json::json!({"event": "failed", "id": "", "severity": "permanent", "reason": reason,
                "recipient": "a@example.org", "delivery-status": {"code": 550, "message": message},
                "message": {"headers": {"message-id": "<x@y>"}}, "new-field": true})
        };
        for (reason, message, class) in [
            (
                "bounce",
                "5.1.1 The email account that you tried to reach does not exist",
                NoticeClass::Hard,
            ),
            (
                "bounce",
                "5.7.1 Our system has detected an unusual rate of mail",
                NoticeClass::Policy,
            ),
            ("generic", "5.2.2 mailbox full", NoticeClass::Soft),
            ("espblock", "", NoticeClass::Policy),
            ("suppress-unsubscribe", "", NoticeClass::Policy),
            ("old", "", NoticeClass::Soft),
        ] {
            let n = notices(&mk(reason, message)).unwrap();
            assert_eq!(n[0].class, class, "{reason} {message}");
            assert!(n[0].event_key.starts_with("mailgun:"));
            assert_eq!(n[0].message_id.as_deref(), Some("x@y"));
        }
        assert!(notices(&serde_json::json!({"event": "failed", "severity": "permanent"})).is_err());
    }
}
