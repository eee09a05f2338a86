//! SendGrid's Event Webhook (Twilio SendGrid docs, "Event Webhook Reference" and "Getting
//! Started with the Event Webhook Security Features").
//!
//! SendGrid posts a JSON array of events, signed: ECDSA P-256 with SHA-256 over the
//! `X-Twilio-Email-Event-Webhook-Timestamp` header's value followed by the raw body, the
//! signature (ASN.1 DER, base64) in `X-Twilio-Email-Event-Webhook-Signature`, verified with
//! the public key the console shows ("Verification Key", base64 of its DER
//! `SubjectPublicKeyInfo`). Custom arguments appear as extra fields of an event and are
//! ignored.
//!
//! The test key (`tests/fixtures/providers/sendgrid-test-*`) was made once with
//! `openssl ecparam -name prime256v1 -genkey -noout -out sendgrid-test-key.pem`,
//! `openssl pkcs8 -topk8 -nocrypt -in sendgrid-test-key.pem -outform DER -out
//! sendgrid-test-key.pk8` and `openssl ec -in sendgrid-test-key.pem -pubout -outform DER |
//! base64 -w0 > sendgrid-test-public-key.b64`.

use base64::Engine as _;
use chrono::NaiveDateTime;
use serde::Deserialize;
use x509_cert::der::Decode;
use x509_cert::spki::SubjectPublicKeyInfoRef;

use super::{
    address, check_fresh, class_by_status, digest_key, event_name, message_id, unix_seconds,
};
use crate::{DeliveryError, Notice, NoticeClass, NoticeSource};

/// A SendGrid signed-webhook verification key: an uncompressed P-256 point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey(Vec<u8>);

impl VerificationKey {
    /// Reads the key as SendGrid's console shows it: the base64 of a DER
    /// `SubjectPublicKeyInfo` of an EC key on P-256. Errors: why it is not one.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
        const P256: &str = "1.2.840.10045.3.1.7";
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| "not base64".to_owned())?;
        let spki = SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|e| format!("not a DER public key: {e}"))?;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok());
        if spki.algorithm.oid.to_string() != EC_PUBLIC_KEY
            || curve.map(|c| c.to_string()).as_deref() != Some(P256)
        {
            return Err("not an ECDSA P-256 public key".into());
        }
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| "a malformed public key".to_owned())?;
        if point.len() != 65 || point[0] != 4 {
            return Err("not an uncompressed P-256 point".into());
        }
        Ok(VerificationKey(point.to_vec()))
    }
}

/// Checks a SendGrid body's signature and age, then reads its events. `signature` and
/// `timestamp` are the `X-Twilio-Email-Event-Webhook-Signature` and `-Timestamp` headers.
/// Errors: `NotAuthentic` for a missing, stale or wrong signature; `InvalidReport` naming
/// the first event that cannot be read (nothing of the body is taken then).
pub fn receive(
    body: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    key: &VerificationKey,
    now: NaiveDateTime,
) -> Result<Vec<Notice>, DeliveryError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(DeliveryError::not_authentic(
            "SendGrid: the X-Twilio-Email-Event-Webhook-Signature and -Timestamp headers are required",
        ));
    };
    check_fresh("SendGrid", unix_seconds("SendGrid", timestamp)?, now)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| DeliveryError::not_authentic("SendGrid: the signature is not base64"))?;
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &key.0)
        .verify(&signed, &signature)
        .map_err(|_| DeliveryError::not_authentic("SendGrid: the signature does not verify"))?;
    notices(body)
}

/// One event as SendGrid sends it; only what a notice needs is read.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default, rename = "smtp-id")]
    smtp_id: Option<String>,
    #[serde(default)]
    sg_event_id: Option<String>,
    #[serde(default)]
    sg_message_id: Option<String>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "type")]
    bounce_type: Option<String>,
}

/// The notices of a SendGrid batch (a JSON array of events), all or none.
pub fn notices(body: &[u8]) -> Result<Vec<Notice>, DeliveryError> {
    let events: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|e| {
        DeliveryError::invalid_report("body", format!("not a JSON array of SendGrid events: {e}"))
    })?;
    let mut out = Vec::new();
    for (index, value) in events.into_iter().enumerate() {
        let id = value
            .get("sg_event_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let name = event_name(index, &id);
        let event: Event = serde_json::from_value(value)
            .map_err(|e| DeliveryError::invalid_report("body", format!("{name}: {e}")))?;
        if let Some(notice) = notice(&event)
            .map_err(|e| DeliveryError::invalid_report("body", format!("{name}: {e}")))?
        {
            out.push(notice);
        }
    }
    Ok(out)
}

/// The class of an event (the table in [`super`]), or `None` for events that say nothing
/// of delivery (processed, open, click, unsubscribes).
fn class(event: &Event) -> Option<NoticeClass> {
    let reason = event.reason.as_deref().unwrap_or_default();
    Some(match event.event.as_deref()? {
        "bounce" if event.bounce_type.as_deref() == Some("blocked") => NoticeClass::Policy,
        "bounce" => match class_by_status(event.status.as_deref(), reason) {
            Some(NoticeClass::Delivered) | None => NoticeClass::Hard,
            Some(c) => c,
        },
        "dropped" => match reason {
            "Bounced Address" | "Invalid" => NoticeClass::Hard,
            _ => NoticeClass::Policy,
        },
        "deferred" => NoticeClass::Delayed,
        "delivered" => NoticeClass::Delivered,
        "spamreport" => NoticeClass::Complaint,
        _ => return None,
    })
}

fn notice(event: &Event) -> Result<Option<Notice>, String> {
    let Some(kind) = event.event.as_deref() else {
        return Err("no \"event\"".into());
    };
    let Some(class) = class(event) else {
        return Ok(None);
    };
    let to = address(event.email.as_deref())
        .ok_or_else(|| format!("a {kind} event without \"email\""))?;
    let stamp = event
        .timestamp
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let sg_message = event.sg_message_id.as_deref().unwrap_or_default();
    let event_key = match event.sg_event_id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => format!("{kind}/{id}"),
        _ => digest_key("sendgrid", &[kind, &to, sg_message, &stamp]),
    };
    let diagnostic = event
        .reason
        .clone()
        .or_else(|| event.response.clone())
        .unwrap_or_else(|| kind.to_owned());
    Ok(Some(Notice {
        source: NoticeSource::Sendgrid,
        event_key,
        message_id: message_id(event.smtp_id.as_deref()),
        recipient: Some(to),
        class,
        status: event.status.clone().filter(|s| !s.trim().is_empty()),
        diagnostic,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn key() -> VerificationKey {
        VerificationKey::from_base64(
            &String::from_utf8(fixture("sendgrid-test-public-key.b64")).unwrap(),
        )
        .unwrap()
    }

    /// The signature SendGrid would send for `body` at `timestamp`, made with the test key.
    fn sign(timestamp: &str, body: &[u8]) -> String {
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &fixture("sendgrid-test-key.pk8"),
            &rng,
        )
        .unwrap();
        let mut signed = timestamp.as_bytes().to_vec();
        signed.extend_from_slice(body);
        base64::engine::general_purpose::STANDARD.encode(pair.sign(&rng, &signed).unwrap())
    }

    fn now() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_764_936_000, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn a_signed_batch_is_taken_and_a_tampered_or_stale_one_refused() {
        let body = fixture("sendgrid-events.json");
        let ts = "1764935990";
        let sig = sign(ts, &body);
        let n = receive(&body, Some(&sig), Some(ts), &key(), now()).unwrap();
        assert!(!n.is_empty());

        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("5.0.0", "4.0.0");
        assert!(matches!(
            receive(tampered.as_bytes(), Some(&sig), Some(ts), &key(), now()),
            Err(DeliveryError::NotAuthentic(_))
        ));
        // The signature of another timestamp.
        let other = sign("1764935991", &body);
        assert!(matches!(
            receive(&body, Some(&other), Some(ts), &key(), now()),
            Err(DeliveryError::NotAuthentic(_))
        ));
        // Signed and sent more than an hour ago.
        let old = "1764932000";
        assert!(matches!(
            receive(&body, Some(&sign(old, &body)), Some(old), &key(), now()),
            Err(DeliveryError::NotAuthentic(e)) if e.contains("hour")
        ));
        assert!(matches!(
            receive(&body, None, Some(ts), &key(), now()),
            Err(DeliveryError::NotAuthentic(_))
        ));
    }

    #[test]
    fn the_documented_events_class_as_the_table_says() {
        let n = notices(&fixture("sendgrid-events.json")).unwrap();
        let got: Vec<(NoticeClass, Option<&str>)> = n
            .iter()
            .map(|n| (n.class, n.message_id.as_deref()))
            .collect();
        let id = Some("14c5d75ce93.dfd.64b469@ismtpd-555");
        assert_eq!(
            got,
            vec![
                (NoticeClass::Delayed, id),
                (NoticeClass::Delivered, id),
                (NoticeClass::Hard, id),
                (NoticeClass::Hard, id),
                (NoticeClass::Complaint, id),
            ]
        );
        let n = notices(&fixture("sendgrid-bounces.json")).unwrap();
        let got: Vec<NoticeClass> = n.iter().map(|n| n.class).collect();
        assert_eq!(
            got,
            vec![
                NoticeClass::Hard,
                NoticeClass::Policy,
                NoticeClass::Policy,
                NoticeClass::Soft
            ]
        );
        assert!(n
            .iter()
            .all(|n| n.recipient.is_some() && !n.event_key.is_empty()));
    }

    #[test]
    fn a_batch_with_one_bad_event_is_refused_whole_naming_it() {
        let body =
            br#"[{"email":"a@example.org","event":"delivered","sg_event_id":"ok1","timestamp":1},
                        {"event":"bounce","sg_event_id":"bad2","timestamp":1}]"#;
        let err = notices(body).unwrap_err();
        assert!(err.to_string().contains("event 1 (bad2)"), "{err}");
        assert!(notices(b"{\"email\":\"a@b\"}").is_err());
        // Empty ids and custom arguments are fine.
        let n = notices(br#"[{"email":"a@example.org","event":"bounce","sg_event_id":"","timestamp":1,"status":"5.1.1","reason":"550 5.1.1 no such user","customer":"x","smtp-id":""}]"#).unwrap();
        assert!(n[0].event_key.starts_with("sendgrid:"));
        assert_eq!(n[0].message_id, None);
        assert_eq!(n[0].class, NoticeClass::Hard);
    }

    #[test]
    fn only_a_p256_key_is_a_verification_key() {
        assert!(VerificationKey::from_base64("not base64!").is_err());
        assert!(VerificationKey::from_base64("AAAA").is_err());
    }
}
