//! Amazon SES notifications through Amazon SNS (SES Developer Guide, "Amazon SNS
//! notification contents" and "event publishing"; SNS Developer Guide, "Verifying the
//! signatures of Amazon SNS messages" and "Parsing message formats").
//!
//! SNS posts a JSON document as `text/plain`: a `SubscriptionConfirmation` (confirmed by
//! GETting its `SubscribeURL`), a `Notification` whose `Message` is the SES notification
//! as a JSON *string*, or an `UnsubscribeConfirmation`. Every one is signed: RSA over a
//! canonical string of its fields, SHA-1 for `SignatureVersion` 1 and SHA-256 for 2, with
//! the key of the X.509 certificate at `SigningCertURL`. That URL, like `SubscribeURL`,
//! must be `https://sns.<region>.amazonaws.com[.cn]/…`; the topic must be one of the
//! configured ones; a `Timestamp` older than [`super::MAX_AGE`] is refused.
//!
//! The test certificate (`tests/fixtures/providers/sns-test-*.pem`) was made once with
//! `openssl req -x509 -newkey rsa:2048 -nodes -keyout sns-test-key.pem -out
//! sns-test-cert.pem -days 36500 -subj "/CN=sns.us-east-1.amazonaws.com"` and
//! `openssl pkcs8 -topk8 -nocrypt -in sns-test-key.pem -outform DER -out sns-test-key.pk8`;
//! the `SignatureVersion` 1 fixture was signed with `openssl dgst -sha1 -sign
//! sns-test-key.pem` over its canonical string.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use chrono::NaiveDateTime;
use serde::Deserialize;
use x509_cert::der::DecodePem;

use super::{address, check_fresh, class_by_status, digest_key, message_id};
use crate::{DeliveryError, Notice, NoticeClass, NoticeSource};

/// What the SES intake is configured with.
#[derive(Debug, Clone, Default)]
pub struct SesSettings {
    /// The ARNs of the SNS topics whose messages are taken (`MAILBAAR_SES_TOPIC_ARNS`);
    /// a message from any other topic is refused, and its subscription never confirmed.
    pub topic_arns: Vec<String>,
}

/// GETs an Amazon SNS URL over HTTPS (a signing certificate, or a subscription's
/// confirmation) and gives its body, or why it could not. The service fetches with an
/// HTTPS client; tests supply the certificate.
pub trait SnsFetch {
    /// GETs `url` (already checked to be an SNS URL); the body of a 2xx answer.
    fn get(&self, url: &str) -> impl Future<Output = Result<Vec<u8>, String>>;
}

/// SNS signing certificates' RSA keys by their URL, so each is fetched once (SNS changes
/// the URL when it changes the certificate). At most [`CertificateCache::CAPACITY`] are
/// kept.
#[derive(Debug, Default)]
pub struct CertificateCache {
    keys: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl CertificateCache {
    /// How many certificates are kept; the cache starts over when it is full.
    pub const CAPACITY: usize = 32;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a certificate (PEM) as the one at `url` without fetching it. Errors:
    /// `NotAuthentic` when the URL is not an SNS certificate URL or the PEM holds no
    /// usable RSA certificate.
    pub fn insert_pem(&self, url: &str, pem: &[u8]) -> Result<(), DeliveryError> {
        check_sns_url("SigningCertURL", url, true)?;
        let key = rsa_key_of(pem)?;
        self.put(url, Arc::new(key));
        Ok(())
    }

    fn put(&self, url: &str, key: Arc<Vec<u8>>) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= Self::CAPACITY {
            keys.clear();
        }
        keys.insert(url.to_owned(), key);
    }

    /// The RSA public key (PKCS#1 DER) of the certificate at `url`, fetched when not yet
    /// known.
    async fn key(&self, url: &str, fetch: &impl SnsFetch) -> Result<Arc<Vec<u8>>, DeliveryError> {
        if let Some(key) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(key.clone());
        }
        let pem = fetch.get(url).await.map_err(|e| {
            DeliveryError::ProviderUnreachable(format!(
                "SES: the signing certificate {url} could not be fetched: {e}"
            ))
        })?;
        let key = Arc::new(rsa_key_of(&pem)?);
        self.put(url, key.clone());
        Ok(key)
    }
}

/// The RSA public key of a PEM certificate, as PKCS#1 DER (what `ring` verifies with).
fn rsa_key_of(pem: &[u8]) -> Result<Vec<u8>, DeliveryError> {
    const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
    let cert = x509_cert::Certificate::from_pem(pem).map_err(|e| {
        DeliveryError::not_authentic(format!(
            "SES: the signing certificate is not a PEM X.509 certificate: {e}"
        ))
    })?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid.to_string() != RSA_ENCRYPTION {
        return Err(DeliveryError::not_authentic(
            "SES: the signing certificate's key is not an RSA key",
        ));
    }
    // Its validity is checked too: an expired certificate signs nothing.
    let validity = &cert.tbs_certificate.validity;
    let now = std::time::SystemTime::now();
    if validity.not_before.to_system_time() > now || validity.not_after.to_system_time() < now {
        return Err(DeliveryError::not_authentic(
            "SES: the signing certificate is not valid now",
        ));
    }
    // The BIT STRING's content is the PKCS#1 RSAPublicKey.
    spki.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            DeliveryError::not_authentic("SES: the signing certificate's key is malformed")
        })
}

/// Refuses a URL that is not `https://sns.<region>.amazonaws.com[.cn]/…` (with a `.pem`
/// path for a certificate): only Amazon SNS is fetched from or confirmed with.
fn check_sns_url(field: &str, raw: &str, certificate: bool) -> Result<(), DeliveryError> {
    let refuse =
        || DeliveryError::not_authentic(format!("SES: {field} {raw:?} is not an Amazon SNS URL"));
    let url = url::Url::parse(raw).map_err(|_| refuse())?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let region = host
        .strip_prefix("sns.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .unwrap_or_default();
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if url.scheme() != "https"
        || !region_ok
        || url.port().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || (certificate && !url.path().ends_with(".pem"))
    {
        return Err(refuse());
    }
    Ok(())
}

/// An SNS message as posted (SNS Developer Guide, "Parsing message formats").
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SnsMessage {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    #[serde(default)]
    token: Option<String>,
    topic_arn: String,
    #[serde(default)]
    subject: Option<String>,
    message: String,
    #[serde(default, rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: String,
}

impl SnsMessage {
    /// The string SNS signs: each field's name and value on lines of their own, in this
    /// order, `Subject` only when present (SNS Developer Guide, "Verifying the signatures
    /// of Amazon SNS messages").
    fn canonical(&self) -> Result<String, DeliveryError> {
        let mut fields: Vec<(&str, &str)> = vec![
            ("Message", self.message.as_str()),
            ("MessageId", self.message_id.as_str()),
        ];
        match self.kind.as_str() {
            "Notification" => {
                if let Some(subject) = &self.subject {
                    fields.push(("Subject", subject.as_str()));
                }
                fields.push(("Timestamp", self.timestamp.as_str()));
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                let url = self.subscribe_url.as_deref().ok_or_else(|| {
                    DeliveryError::invalid_report(
                        "SubscribeURL",
                        "missing from a subscription message",
                    )
                })?;
                let token = self.token.as_deref().ok_or_else(|| {
                    DeliveryError::invalid_report("Token", "missing from a subscription message")
                })?;
                fields.push(("SubscribeURL", url));
                fields.push(("Timestamp", self.timestamp.as_str()));
                fields.push(("Token", token));
            }
            other => {
                return Err(DeliveryError::invalid_report(
                    "Type",
                    format!("{other:?} is not an SNS message type"),
                ))
            }
        }
        fields.push(("TopicArn", self.topic_arn.as_str()));
        fields.push(("Type", self.kind.as_str()));
        Ok(fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect())
    }
}

/// What an SNS message came to.
#[derive(Debug, PartialEq, Eq)]
pub enum SesReceived {
    /// A subscription to an allowed topic, now confirmed with SNS.
    Confirmed { topic_arn: String },
    /// A topic's subscription ended: nothing to do.
    Unsubscribed { topic_arn: String },
    /// An SES notification, as notices (none for events that say nothing of delivery).
    Notices(Vec<Notice>),
}

/// Takes one SNS message as SNS posts it: checks its topic, signature and age, confirms a
/// subscription (GETting its `SubscribeURL` through `fetch`), or reads the SES
/// notification it carries. Errors: `InvalidReport` for a body that is not an SNS
/// message or an SES notification that cannot be read; `NotAuthentic` for a topic not
/// configured, a URL not of SNS, a stale timestamp or a signature that does not verify;
/// `ProviderUnreachable` when the certificate or the confirmation could not be fetched.
pub async fn receive(
    body: &[u8],
    settings: &SesSettings,
    certificates: &CertificateCache,
    fetch: &impl SnsFetch,
    now: NaiveDateTime,
) -> Result<SesReceived, DeliveryError> {
    let message: SnsMessage = serde_json::from_slice(body).map_err(|e| {
        DeliveryError::invalid_report("body", format!("not an Amazon SNS message: {e}"))
    })?;
    if !settings.topic_arns.contains(&message.topic_arn) {
        return Err(DeliveryError::not_authentic(format!(
            "SES: the topic {} is not one of MAILBAAR_SES_TOPIC_ARNS",
            message.topic_arn
        )));
    }
    verify(&message, certificates, fetch, now).await?;
    match message.kind.as_str() {
        "SubscriptionConfirmation" => {
            let url = message.subscribe_url.as_deref().unwrap_or_default();
            check_sns_url("SubscribeURL", url, false)?;
            fetch.get(url).await.map_err(|e| {
                DeliveryError::ProviderUnreachable(format!(
                    "SES: the subscription could not be confirmed at {url}: {e}"
                ))
            })?;
            Ok(SesReceived::Confirmed {
                topic_arn: message.topic_arn,
            })
        }
        "UnsubscribeConfirmation" => Ok(SesReceived::Unsubscribed {
            topic_arn: message.topic_arn,
        }),
        _ => Ok(SesReceived::Notices(notices(&message.message)?)),
    }
}

/// Checks the message's signature with its certificate's key, and its age.
async fn verify(
    message: &SnsMessage,
    certificates: &CertificateCache,
    fetch: &impl SnsFetch,
    now: NaiveDateTime,
) -> Result<(), DeliveryError> {
    let signed_at = chrono::DateTime::parse_from_rfc3339(&message.timestamp)
        .map_err(|_| {
            DeliveryError::not_authentic(format!(
                "SES: Timestamp {:?} is not a date",
                message.timestamp
            ))
        })?
        .naive_utc();
    check_fresh("SES", signed_at, now)?;
    let algorithm: &'static dyn ring::signature::VerificationAlgorithm =
        match message.signature_version.as_str() {
            "1" => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(DeliveryError::not_authentic(format!(
                    "SES: SignatureVersion {other:?} is not 1 or 2"
                )))
            }
        };
    check_sns_url("SigningCertURL", &message.signing_cert_url, true)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(message.signature.trim())
        .map_err(|_| DeliveryError::not_authentic("SES: Signature is not base64"))?;
    let canonical = message.canonical()?;
    let key = certificates.key(&message.signing_cert_url, fetch).await?;
    ring::signature::UnparsedPublicKey::new(algorithm, key.as_slice())
        .verify(canonical.as_bytes(), &signature)
        .map_err(|_| DeliveryError::not_authentic("SES: the SNS signature does not verify"))
}

/// An SES notification (`notificationType`) or published event (`eventType`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesNotification {
    notification_type: Option<String>,
    event_type: Option<String>,
    #[serde(default)]
    mail: Mail,
    bounce: Option<Bounce>,
    complaint: Option<Complaint>,
    delivery: Option<Delivery>,
    delivery_delay: Option<DeliveryDelay>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    headers: Vec<Header>,
    common_headers: Option<CommonHeaders>,
}

impl Mail {
    /// The Message-ID the message was sent with: SES gives its own id in `messageId` and
    /// keeps the original headers in `commonHeaders` and `headers` (when the notification
    /// includes them).
    fn original_message_id(&self) -> Option<String> {
        self.common_headers
            .as_ref()
            .and_then(|h| message_id(h.message_id.as_deref()))
            .or_else(|| {
                self.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("message-id"))
                    .and_then(|h| message_id(Some(&h.value)))
            })
    }
}

#[derive(Debug, Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommonHeaders {
    message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    #[serde(default)]
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: String,
    bounced_recipients: Vec<Recipient>,
    #[serde(default)]
    feedback_id: String,
    #[serde(default)]
    timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: Option<String>,
    status: Option<String>,
    diagnostic_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    complained_recipients: Vec<Recipient>,
    complaint_feedback_type: Option<String>,
    #[serde(default)]
    feedback_id: String,
    #[serde(default)]
    timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    recipients: Vec<String>,
    #[serde(default)]
    smtp_response: String,
    #[serde(default)]
    timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryDelay {
    delayed_recipients: Vec<Recipient>,
    #[serde(default)]
    delay_type: String,
    #[serde(default)]
    timestamp: String,
}

/// The class of one bounced recipient (the table in [`super`]).
fn bounce_class(bounce: &Bounce, status: Option<&str>, diagnostic: &str) -> NoticeClass {
    match bounce.bounce_sub_type.as_str() {
        "ContentRejected" | "AttachmentRejected" => return NoticeClass::Policy,
        "MailboxFull" | "MessageTooLarge" => return NoticeClass::Soft,
        _ => {}
    }
    let by_status = class_by_status(status, diagnostic).filter(|c| *c != NoticeClass::Delivered);
    match bounce.bounce_type.as_str() {
        "Permanent" => by_status.unwrap_or(NoticeClass::Hard),
        // Transient or Undetermined: never a reason to take a person out.
        _ => match by_status {
            Some(NoticeClass::Policy) => NoticeClass::Policy,
            _ => NoticeClass::Soft,
        },
    }
}

/// The notices of an SES notification (the `Message` of an SNS notification).
pub fn notices(message: &str) -> Result<Vec<Notice>, DeliveryError> {
    let n: SesNotification = serde_json::from_str(message).map_err(|e| {
        DeliveryError::invalid_report("Message", format!("not an SES notification: {e}"))
    })?;
    let kind = n
        .notification_type
        .as_deref()
        .or(n.event_type.as_deref())
        .ok_or_else(|| {
            DeliveryError::invalid_report("Message", "has neither notificationType nor eventType")
        })?;
    let message_id = n.mail.original_message_id();
    let ses_id = n.mail.message_id.as_str();
    let missing = |what: &'static str| {
        DeliveryError::invalid_report(
            "Message",
            format!("a {kind} notification without its {what} object"),
        )
    };
    let recipient = |r: Option<&str>| {
        address(r).ok_or_else(|| {
            DeliveryError::invalid_report(
                "Message",
                format!("a {kind} recipient without emailAddress"),
            )
        })
    };
    let key = |id: &str, what: &str, stamp: &str, to: &str| {
        if id.is_empty() {
            digest_key("ses", &[ses_id, what, stamp, to])
        } else {
            format!("{id}/{to}")
        }
    };
    let notice =
        |event_key: String, to: String, class, status: Option<String>, diagnostic: String| Notice {
            source: NoticeSource::Ses,
            event_key,
            message_id: message_id.clone(),
            recipient: Some(to),
            class,
            status,
            diagnostic,
        };
    let mut out = Vec::new();
    match kind {
        "Bounce" => {
            let bounce = n.bounce.as_ref().ok_or_else(|| missing("bounce"))?;
            for r in &bounce.bounced_recipients {
                let to = recipient(r.email_address.as_deref())?;
                let diagnostic = r.diagnostic_code.clone().unwrap_or_else(|| {
                    format!("{} bounce ({})", bounce.bounce_type, bounce.bounce_sub_type)
                });
                let class = bounce_class(bounce, r.status.as_deref(), &diagnostic);
                let k = key(&bounce.feedback_id, "bounce", &bounce.timestamp, &to);
                out.push(notice(k, to, class, r.status.clone(), diagnostic));
            }
        }
        "Complaint" => {
            let complaint = n.complaint.as_ref().ok_or_else(|| missing("complaint"))?;
            // A feedback report saying "not spam" is no complaint.
            if complaint.complaint_feedback_type.as_deref() == Some("not-spam") {
                return Ok(out);
            }
            for r in &complaint.complained_recipients {
                let to = recipient(r.email_address.as_deref())?;
                let k = key(
                    &complaint.feedback_id,
                    "complaint",
                    &complaint.timestamp,
                    &to,
                );
                let why = complaint
                    .complaint_feedback_type
                    .as_deref()
                    .unwrap_or("abuse");
                out.push(notice(
                    k,
                    to,
                    NoticeClass::Complaint,
                    None,
                    format!("complaint: {why}"),
                ));
            }
        }
        "Delivery" => {
            let delivery = n.delivery.as_ref().ok_or_else(|| missing("delivery"))?;
            for r in &delivery.recipients {
                let to = recipient(Some(r))?;
                let k = digest_key("ses", &[ses_id, "delivery", &delivery.timestamp, &to]);
                out.push(notice(
                    k,
                    to,
                    NoticeClass::Delivered,
                    None,
                    delivery.smtp_response.clone(),
                ));
            }
        }
        "DeliveryDelay" => {
            let delay = n
                .delivery_delay
                .as_ref()
                .ok_or_else(|| missing("deliveryDelay"))?;
            for r in &delay.delayed_recipients {
                let to = recipient(r.email_address.as_deref())?;
                let k = digest_key("ses", &[ses_id, "delay", &delay.timestamp, &to]);
                let diagnostic = r
                    .diagnostic_code
                    .clone()
                    .unwrap_or_else(|| delay.delay_type.clone());
                out.push(notice(
                    k,
                    to,
                    NoticeClass::Delayed,
                    r.status.clone(),
                    diagnostic,
                ));
            }
        }
        // Send, Reject, Open, Click, Rendering Failure, Subscription and what SES adds
        // later say nothing of a recipient's delivery.
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers");
    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-notifications";
    const CERT_URL: &str =
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
    }

    /// Serves the test certificate for the one certificate URL and records every GET.
    struct Fake {
        gets: RefCell<Vec<String>>,
    }

    impl SnsFetch for Fake {
        async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
            self.gets.borrow_mut().push(url.to_owned());
            if url == CERT_URL {
                Ok(fixture("sns-test-cert.pem").into_bytes())
            } else if url.contains("Action=ConfirmSubscription") {
                Ok(b"<ConfirmSubscriptionResponse/>".to_vec())
            } else {
                Err("404".into())
            }
        }
    }

    fn fake() -> Fake {
        Fake {
            gets: RefCell::new(Vec::new()),
        }
    }

    fn settings() -> SesSettings {
        SesSettings {
            topic_arns: vec![TOPIC.into()],
        }
    }

    fn at(stamp: &str) -> NaiveDateTime {
        chrono::DateTime::parse_from_rfc3339(stamp)
            .unwrap()
            .naive_utc()
    }

    /// An SNS notification of `message`, signed with the test key (SignatureVersion 2).
    pub(crate) fn signed(message: &str, timestamp: &str) -> String {
        let mut m = serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC,
            "Subject": "Amazon SES Email Event Notification",
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": "2",
            "Signature": "",
            "SigningCertURL": CERT_URL,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:ses-notifications:c9135db0-26c4-47ec-8998-413945fb5a96"
        });
        sign(&mut m);
        m.to_string()
    }

    fn sign(m: &mut serde_json::Value) {
        let parsed: SnsMessage = serde_json::from_value(m.clone()).unwrap();
        let pk8 = std::fs::read(format!("{FIXTURES}/sns-test-key.pk8")).unwrap();
        let key = ring::signature::RsaKeyPair::from_pkcs8(&pk8).unwrap();
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            parsed.canonical().unwrap().as_bytes(),
            &mut sig,
        )
        .unwrap();
        m["Signature"] = base64::engine::general_purpose::STANDARD.encode(sig).into();
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn take(body: &str, now: &str) -> Result<SesReceived, DeliveryError> {
        let fetch = fake();
        run(receive(
            body.as_bytes(),
            &settings(),
            &CertificateCache::new(),
            &fetch,
            at(now),
        ))
    }

    #[test]
    fn a_signed_bounce_is_taken_and_a_tampered_or_stale_one_refused() {
        let now = "2026-12-05T12:00:30Z";
        let body = signed(&fixture("ses-bounce.json"), "2026-12-05T12:00:00.000Z");
        let SesReceived::Notices(n) = take(&body, now).unwrap() else {
            panic!("notices expected")
        };
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].class, NoticeClass::Hard);
        assert_eq!(n[0].recipient.as_deref(), Some("jane@example.com"));
        assert_eq!(n[0].message_id.as_deref(), Some("custom-message-ID"));
        assert_eq!(n[0].status.as_deref(), Some("5.1.1"));

        // The message changed after signing.
        let tampered = body.replace("5.1.1", "5.2.2");
        assert!(matches!(
            take(&tampered, now),
            Err(DeliveryError::NotAuthentic(_))
        ));
        // The signature changed.
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let sig = v["Signature"].as_str().unwrap().to_owned();
        v["Signature"] = format!(
            "{}{}",
            if sig.starts_with('A') { "B" } else { "A" },
            &sig[1..]
        )
        .into();
        assert!(matches!(
            take(&v.to_string(), now),
            Err(DeliveryError::NotAuthentic(_))
        ));
        // Signed more than an hour before now.
        assert!(matches!(
            take(&body, "2026-12-05T13:00:01Z"),
            Err(DeliveryError::NotAuthentic(e)) if e.contains("hour")
        ));
        // Another topic, even signed.
        let mut other: serde_json::Value = serde_json::from_str(&body).unwrap();
        other["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:theirs".into();
        sign(&mut other);
        assert!(
            matches!(take(&other.to_string(), now), Err(DeliveryError::NotAuthentic(e)) if e.contains("topic"))
        );
    }

    #[test]
    fn signature_version_1_is_sha1_as_openssl_signed_it() {
        // Signed once with `openssl dgst -sha1 -sign sns-test-key.pem`.
        let body = fixture("sns-v1-notification.json");
        let SesReceived::Notices(n) = take(&body, "2026-12-05T12:00:10Z").unwrap() else {
            panic!("notices expected")
        };
        assert_eq!(n[0].class, NoticeClass::Complaint);
        let tampered = body.replace("richard@example.com", "mallory@example.com");
        assert!(matches!(
            take(&tampered, "2026-12-05T12:00:10Z"),
            Err(DeliveryError::NotAuthentic(_))
        ));
    }

    #[test]
    fn a_certificate_from_elsewhere_is_never_fetched() {
        let now = "2026-12-05T12:00:30Z";
        for url in [
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
            "https://sns.us-east-1.amazonaws.com/not-a-certificate",
        ] {
            let mut v: serde_json::Value =
                serde_json::from_str(&signed(&fixture("ses-bounce.json"), "2026-12-05T12:00:00Z"))
                    .unwrap();
            v["SigningCertURL"] = url.into();
            let fetch = fake();
            let r = run(receive(
                v.to_string().as_bytes(),
                &settings(),
                &CertificateCache::new(),
                &fetch,
                at(now),
            ));
            assert!(matches!(r, Err(DeliveryError::NotAuthentic(_))), "{url}");
            assert!(fetch.gets.borrow().is_empty(), "{url} was fetched");
        }
        assert!(check_sns_url(
            "x",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
            true
        )
        .is_ok());
    }

    #[test]
    fn a_subscription_is_confirmed_only_for_an_allowed_topic_at_sns() {
        let now = "2026-12-05T12:00:30Z";
        let confirm = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-east-1:123456789012:ses-notifications&Token=2336412f37f";
        let mut m = serde_json::json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37f",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-east-1:123456789012:ses-notifications.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": confirm,
            "Timestamp": "2026-12-05T12:00:00.000Z",
            "SignatureVersion": "2",
            "Signature": "",
            "SigningCertURL": CERT_URL
        });
        sign(&mut m);
        let fetch = fake();
        let cache = CertificateCache::new();
        let r = run(receive(
            m.to_string().as_bytes(),
            &settings(),
            &cache,
            &fetch,
            at(now),
        ))
        .unwrap();
        assert_eq!(
            r,
            SesReceived::Confirmed {
                topic_arn: TOPIC.into()
            }
        );
        assert_eq!(
            *fetch.gets.borrow(),
            vec![CERT_URL.to_owned(), confirm.to_owned()]
        );

        // A second message fetches no certificate again.
        let fetch = fake();
        run(receive(
            m.to_string().as_bytes(),
            &settings(),
            &cache,
            &fetch,
            at(now),
        ))
        .unwrap();
        assert_eq!(*fetch.gets.borrow(), vec![confirm.to_owned()]);

        // A confirmation URL elsewhere is not visited, even when signed.
        m["SubscribeURL"] = "https://evil.example/?Action=ConfirmSubscription".into();
        sign(&mut m);
        let fetch = fake();
        let r = run(receive(
            m.to_string().as_bytes(),
            &settings(),
            &cache,
            &fetch,
            at(now),
        ));
        assert!(matches!(r, Err(DeliveryError::NotAuthentic(_))));
        assert!(fetch.gets.borrow().iter().all(|u| !u.contains("evil")));
    }

    #[test]
    fn the_documented_notifications_class_as_the_table_says() {
        let cases = [
            (
                "ses-bounce.json",
                vec![("jane@example.com", NoticeClass::Hard)],
            ),
            (
                "ses-bounce-no-dsn.json",
                vec![
                    ("jane@example.com", NoticeClass::Hard),
                    ("richard@example.com", NoticeClass::Hard),
                ],
            ),
            (
                "ses-complaint.json",
                vec![("richard@example.com", NoticeClass::Complaint)],
            ),
            (
                "ses-delivery.json",
                vec![("jane@example.com", NoticeClass::Delivered)],
            ),
            (
                "ses-event-bounce.json",
                vec![("recipient@example.com", NoticeClass::Hard)],
            ),
            (
                "ses-event-delivery-delay.json",
                vec![("recipient@example.com", NoticeClass::Delayed)],
            ),
        ];
        for (name, expected) in cases {
            let n = notices(&fixture(name)).unwrap();
            let got: Vec<(&str, NoticeClass)> = n
                .iter()
                .map(|n| (n.recipient.as_deref().unwrap(), n.class))
                .collect();
            assert_eq!(got, expected, "{name}");
            assert!(n.iter().all(|n| !n.event_key.is_empty()), "{name}");
        }
        // The same notification twice gives the same keys (a retry is counted once).
        assert_eq!(
            notices(&fixture("ses-delivery.json")).unwrap(),
            notices(&fixture("ses-delivery.json")).unwrap()
        );
    }

    #[test]
    fn transient_and_policy_bounces_never_make_a_bouncer() {
        let mk = |kind: &str, sub: &str, status: &str, diag: &str| {
            format!(
                r#"{{"notificationType":"Bounce","bounce":{{"bounceType":"{kind}","bounceSubType":"{sub}",
                "bouncedRecipients":[{{"emailAddress":"a@example.org","status":"{status}","diagnosticCode":"{diag}"}}],
                "timestamp":"2026-12-05T12:00:00Z","feedbackId":""}},"mail":{{"messageId":"x"}},"someNewField":1}}"#
            )
        };
        for (kind, sub, status, diag, class) in [
            (
                "Permanent",
                "General",
                "5.7.1",
                "smtp; 550 5.7.1 listed at a block list",
                NoticeClass::Policy,
            ),
            (
                "Permanent",
                "General",
                "5.2.2",
                "smtp; 552 5.2.2 mailbox full",
                NoticeClass::Soft,
            ),
            ("Transient", "MailboxFull", "5.2.2", "", NoticeClass::Soft),
            (
                "Transient",
                "General",
                "4.4.7",
                "smtp; 421 timeout",
                NoticeClass::Soft,
            ),
            (
                "Transient",
                "ContentRejected",
                "5.7.1",
                "",
                NoticeClass::Policy,
            ),
            ("Undetermined", "Undetermined", "", "", NoticeClass::Soft),
            ("Permanent", "Suppressed", "", "", NoticeClass::Hard),
        ] {
            let n = notices(&mk(kind, sub, status, diag)).unwrap();
            assert_eq!(n[0].class, class, "{kind} {sub} {status}");
            assert!(
                n[0].event_key.starts_with("ses:"),
                "an empty feedbackId gets a digest key"
            );
        }
    }

    #[test]
    fn malformed_notifications_are_refused_whole() {
        for bad in [
            "not json",
            r#"{"mail":{}}"#,
            r#"{"notificationType":"Bounce","mail":{}}"#,
            r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"a@b.nl"},{"emailAddress":""}]},"mail":{}}"#,
        ] {
            assert!(
                matches!(notices(bad), Err(DeliveryError::InvalidReport { .. })),
                "{bad}"
            );
        }
        assert!(notices(r#"{"eventType":"Open","mail":{},"open":{}}"#)
            .unwrap()
            .is_empty());
    }
}
