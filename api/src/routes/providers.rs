//! The e-mail providers' own webhooks, one route each at `/webhooks/{provider}`: the body
//! as the provider sends it, authenticated as the provider documents (its signature, or for
//! Postmark the secret in its basic auth), no bearer token. They stand outside `/api/v1`,
//! whose every operation a client calls with a bearer token: a provider holds none, and
//! its URL is set once in its console. A provider this service is not configured for answers
//! 404 (`provider_not_configured`): to the provider the URL is wrong, and it stops rather
//! than retrying a 503 for days. A body that is not authentic answers 403, one that cannot
//! be read 422 naming the event, and nothing of it is recorded.

use actix_web::http::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{post, web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use mailbaar_delivery::providers::{self, SesReceived, SesSettings, SnsFetch};
use mailbaar_delivery::{Notice, NoticeOutcome};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;
use crate::MAX_JSON_BODY;

/// What a provider's webhook came to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"outcomes": [{"outcome": "hard", "person_id": 42,
    "contact_moment_id": 881, "bouncer": true, "soft_bounces": 0,
    "reason": "smtp; 550 5.1.1 <jane@example.com>... User"}]}))]
pub struct WebhookReceipt {
    /// What each notice of the body changed, in the body's order; empty for events that
    /// say nothing of delivery (opens, clicks, "processed").
    pub outcomes: Vec<NoticeOutcome>,
    /// For an Amazon SNS subscription confirmation: the topic now confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_confirmed: Option<String>,
}

/// Reads the body up to [`MAX_JSON_BODY`] bytes; a larger one is a 413 problem.
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "a webhook body may have at most {MAX_JSON_BODY} bytes"
        ))
    };
    let announced = header(req.headers(), CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if announced > MAX_JSON_BODY {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(announced);
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > MAX_JSON_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses a body whose media type is none of `accepted` (415).
fn media_type(req: &HttpRequest, accepted: &[&str]) -> Result<(), ApiError> {
    let essence = header(req.headers(), CONTENT_TYPE.as_str())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if accepted.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "send the body as the provider does: {}",
            accepted.join(" or ")
        )))
    }
}

/// Records the notices (none: nothing to record) and answers what they changed.
async fn record(
    state: &AppState,
    notices: Vec<Notice>,
    by: &'static str,
) -> Result<HttpResponse, ApiError> {
    let outcomes = if notices.is_empty() {
        Vec::new()
    } else {
        state
            .db(move |conn| {
                mailbaar_delivery::record_notices(conn, &notices, by, mailbaar_store::now())
            })
            .await?
    };
    Ok(HttpResponse::Ok().json(WebhookReceipt {
        outcomes,
        subscription_confirmed: None,
    }))
}

/// GETs Amazon SNS URLs over HTTPS (rustls, the web PKI's roots).
struct HttpsFetch(awc::Client);

impl SnsFetch for HttpsFetch {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut res = self.0.get(url).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("answered {}", res.status()));
        }
        let body = res
            .body()
            .limit(64 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        Ok(body.to_vec())
    }
}

/// Takes Amazon SES notifications through an Amazon SNS subscription (HTTPS protocol):
/// confirms the subscription of an allowed topic, and records the bounces, complaints,
/// deliveries and delivery delays of SES notifications (`notificationType`) and published
/// events (`eventType`). Authenticated by the SNS signature (SignatureVersion 1 or 2) with
/// the certificate fetched from `https://sns.<region>.amazonaws.com`, the topic among
/// `MAILBAAR_SES_TOPIC_ARNS`, and a `Timestamp` at most an hour old.
#[utoipa::path(tag = "gdpr",
    request_body(content(
        (String = "application/json", example = json!("{\"Type\":\"Notification\",\"MessageId\":\"…\",\"TopicArn\":\"arn:aws:sns:us-east-1:123456789012:ses\",\"Message\":\"{\\\"notificationType\\\":\\\"Bounce\\\",…}\",\"Timestamp\":\"2026-12-05T12:00:00.000Z\",\"SignatureVersion\":\"2\",\"Signature\":\"…\",\"SigningCertURL\":\"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-….pem\"}"))),
        description = "An Amazon SNS message (its `Message` a JSON string); SNS posts it as `text/plain`, which is taken too"),
    responses(
        (status = 200, description = "What the notification changed, or the subscription confirmed", body = WebhookReceipt),
        (status = 403, description = "Not signed by SNS, a topic not configured, a URL not of SNS, or a stale `Timestamp`; nothing changed"),
        (status = 404, description = "`MAILBAAR_SES_TOPIC_ARNS` is not set"),
        (status = 413, description = "The body is larger than 1048576 bytes (1024 KiB)"),
        (status = 415, description = "Not `text/plain` or `application/json`"),
        (status = 422, description = "Not an SNS message or SES notification (the error says what); nothing changed"),
        (status = 500, description = "Internal error; the service log has the cause"),
        (status = 503, description = "The signing certificate or the confirmation URL could not be reached, or the database is unavailable; SNS delivers again"),
    ))]
#[post("/webhooks/ses")]
pub async fn ses(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let config = &state.config.providers;
    if config.ses_topic_arns.is_empty() {
        return Err(ApiError::provider_not_configured(
            "Amazon SES",
            "MAILBAAR_SES_TOPIC_ARNS",
        ));
    }
    media_type(&req, &["text/plain", "application/json"])?;
    let body = read_body(&req, payload).await?;
    let settings = SesSettings {
        topic_arns: config.ses_topic_arns.clone(),
    };
    let fetch = HttpsFetch(
        awc::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .finish(),
    );
    let received = providers::ses::receive(
        &body,
        &settings,
        &config.ses_certificates,
        &fetch,
        mailbaar_store::now(),
    )
    .await?;
    match received {
        SesReceived::Notices(notices) => record(&state, notices, "Amazon SES webhook").await,
        SesReceived::Confirmed { topic_arn } => Ok(HttpResponse::Ok().json(WebhookReceipt {
            outcomes: Vec::new(),
            subscription_confirmed: Some(topic_arn),
        })),
        SesReceived::Unsubscribed { .. } => Ok(HttpResponse::Ok().json(WebhookReceipt {
            outcomes: Vec::new(),
            subscription_confirmed: None,
        })),
    }
}

/// Takes a batch of SendGrid Event Webhook events (bounce, blocked, dropped, deferred,
/// delivered, spamreport; others are ignored), all or nothing. Authenticated by the
/// signed event webhook: ECDSA P-256 over the `X-Twilio-Email-Event-Webhook-Timestamp`
/// and the raw body, verified with `MAILBAAR_SENDGRID_VERIFICATION_KEY`; a timestamp more
/// than an hour old is refused.
#[utoipa::path(tag = "gdpr",
    params(
        ("X-Twilio-Email-Event-Webhook-Signature" = String, Header, description = "The ECDSA signature, base64"),
        ("X-Twilio-Email-Event-Webhook-Timestamp" = String, Header, description = "Unix seconds, signed with the body"),
    ),
    request_body(content((Vec<serde_json::Value> = "application/json",
        example = json!([{"email": "example@test.com", "timestamp": 1513299569,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "event": "bounce",
            "category": "cat facts", "sg_event_id": "sg_event_id", "sg_message_id": "sg_message_id",
            "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"}]))),
        description = "The events as SendGrid posts them"),
    responses(
        (status = 200, description = "What each event changed", body = WebhookReceipt),
        (status = 403, description = "Unsigned, wrongly signed, or a stale timestamp; nothing changed"),
        (status = 404, description = "`MAILBAAR_SENDGRID_VERIFICATION_KEY` is not set"),
        (status = 413, description = "The body is larger than 1048576 bytes (1024 KiB)"),
        (status = 422, description = "An event that cannot be read (the error names it); nothing of the batch changed"),
        (status = 500, description = "Internal error; the service log has the cause"),
        (status = 503, description = "The database is unavailable; the provider delivers again"),
    ))]
#[post("/webhooks/sendgrid")]
pub async fn sendgrid(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(key) = state.config.providers.sendgrid_key.clone() else {
        return Err(ApiError::provider_not_configured(
            "SendGrid",
            "MAILBAAR_SENDGRID_VERIFICATION_KEY",
        ));
    };
    media_type(&req, &["application/json"])?;
    let body = read_body(&req, payload).await?;
    let headers = req.headers();
    let notices = providers::sendgrid::receive(
        &body,
        header(headers, "x-twilio-email-event-webhook-signature"),
        header(headers, "x-twilio-email-event-webhook-timestamp"),
        &key,
        mailbaar_store::now(),
    )?;
    record(&state, notices, "SendGrid webhook").await
}

/// Takes a Mailgun webhook event (failed, complained, delivered; others are ignored).
/// Authenticated by its `signature`: HMAC-SHA256 with `MAILBAAR_MAILGUN_SIGNING_KEY` over
/// `timestamp` and `token`, at most an hour old; a token that comes back with another
/// event is refused (the signature does not cover the event), the same event again is
/// counted once.
#[utoipa::path(tag = "gdpr",
    request_body(content((serde_json::Value = "application/json",
        example = json!({"signature": {"timestamp": "1529006854",
            "token": "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
            "signature": "d2271d12299f6592d9d44cd9d250f0704e4674c30d79d07c47a66f95ce71cf55"},
            "event-data": {"event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "severity": "permanent",
            "reason": "suppress-bounce", "recipient": "joan@example.com",
            "message": {"headers": {"message-id": "20130503182626.18666.16540@example.com"}}}}))),
        description = "The event as Mailgun posts it"),
    responses(
        (status = 200, description = "What the event changed", body = WebhookReceipt),
        (status = 403, description = "Wrongly signed, a stale timestamp, or a token used for another event; nothing changed"),
        (status = 404, description = "`MAILBAAR_MAILGUN_SIGNING_KEY` is not set"),
        (status = 413, description = "The body is larger than 1048576 bytes (1024 KiB)"),
        (status = 422, description = "Not a Mailgun webhook, or an event that cannot be read; nothing changed"),
        (status = 500, description = "Internal error; the service log has the cause"),
        (status = 503, description = "The database is unavailable; the provider delivers again"),
    ))]
#[post("/webhooks/mailgun")]
pub async fn mailgun(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(key) = state.config.providers.mailgun_signing_key.clone() else {
        return Err(ApiError::provider_not_configured(
            "Mailgun",
            "MAILBAAR_MAILGUN_SIGNING_KEY",
        ));
    };
    media_type(&req, &["application/json"])?;
    let body = read_body(&req, payload).await?;
    let notices = providers::mailgun::receive(
        &body,
        &key,
        &state.config.providers.mailgun_tokens,
        mailbaar_store::now(),
    )?;
    record(&state, notices, "Mailgun webhook").await
}

/// Takes a Postmark webhook record (Bounce, SpamComplaint, Delivery; others are ignored),
/// matched by the recipient's address. Authenticated by HTTP basic auth whose password is
/// `MAILBAAR_POSTMARK_WEBHOOK_SECRET` (put it in the webhook URL in Postmark's console:
/// `https://postmark:SECRET@host/api/v1/bounces/postmark`).
#[utoipa::path(tag = "gdpr",
    request_body(content((serde_json::Value = "application/json",
        example = json!({"RecordType": "Bounce", "MessageStream": "outbound",
            "ID": 4323372036854775807u64, "Type": "HardBounce", "TypeCode": 1,
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Email": "john@example.com",
            "Details": "Test bounce details", "BouncedAt": "2019-11-05T16:33:54.9070259Z"}))),
        description = "The record as Postmark posts it"),
    responses(
        (status = 200, description = "What the record changed", body = WebhookReceipt),
        (status = 403, description = "No basic auth, or not the webhook secret; nothing changed"),
        (status = 404, description = "`MAILBAAR_POSTMARK_WEBHOOK_SECRET` is not set"),
        (status = 413, description = "The body is larger than 1048576 bytes (1024 KiB)"),
        (status = 422, description = "Not a Postmark record, or one without its address; nothing changed"),
        (status = 500, description = "Internal error; the service log has the cause"),
        (status = 503, description = "The database is unavailable; the provider delivers again"),
    ))]
#[post("/webhooks/postmark")]
pub async fn postmark(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = state.config.providers.postmark_secret.clone() else {
        return Err(ApiError::provider_not_configured(
            "Postmark",
            "MAILBAAR_POSTMARK_WEBHOOK_SECRET",
        ));
    };
    providers::postmark::authenticate(header(req.headers(), AUTHORIZATION.as_str()), &secret)?;
    media_type(&req, &["application/json"])?;
    let body = read_body(&req, payload).await?;
    let notices = providers::postmark::notices(&body)?;
    record(&state, notices, "Postmark webhook").await
}
