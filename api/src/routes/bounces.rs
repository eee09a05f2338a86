//! Bounce reports: delivery status notifications and provider webhooks (AVG manual §1.10).

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{post, web, HttpRequest, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_delivery::{BounceOutcome, BounceReport, BounceWebhook};

use crate::auth::Auth;
use crate::error::ApiError;

/// Reports a bounce: a raw DSN (RFC 3464; `message/rfc822` or `multipart/report`),
/// matched to its message by the original Message-ID, or a provider's JSON webhook
/// matched by address. A hard bounce sets the person's bouncer flag with the server's
/// reply and marks the contact moment; soft bounces are counted and turn hard at the
/// setting `soft_bounce_limit`. A malformed report changes nothing.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    request_body(content(
        (BounceWebhook = "application/json"),
        (String = "message/rfc822", example = "From: MAILER-DAEMON@mx.example.net\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n…"),
        (String = "multipart/report")),
        description = "A DSN message, or a webhook"),
    responses(
        (status = 200, description = "What the report changed", body = BounceOutcome),
        (status = 403, description = "Admins only"),
        (status = 415, description = "Not JSON, message/rfc822 or multipart/report"),
        (status = 422, description = "Not a DSN, or an invalid webhook; nothing changed"),
    ))]
#[post("/bounces")]
pub async fn report(
    auth: Auth,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ReportBounces)?.label();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // The parameters keep their case: a multipart boundary is case-sensitive.
    let essence = content_type
        .to_ascii_lowercase()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let report = match essence.as_str() {
        "application/json" => {
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
            BounceReport::Webhook(crate::extract::from_body::<BounceWebhook>(value)?)
        }
        "message/rfc822" | "multipart/report" => {
            // A multipart/report posted alone has its boundary in the request's header:
            // put that header back in front so the body reads as a message.
            let raw = if essence == "multipart/report" && !starts_with_headers(&body) {
                let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
                raw.extend_from_slice(&body);
                raw
            } else {
                body.to_vec()
            };
            BounceReport::Dsn(raw)
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send application/json, message/rfc822 or multipart/report".into(),
            ))
        }
    };
    let outcome = auth
        .db(move |conn| mailbaar_delivery::report_bounce(conn, report, &by, mailbaar_store::now()))
        .await?;
    Ok(HttpResponse::Ok().json(outcome))
}

fn starts_with_headers(body: &[u8]) -> bool {
    let head = &body[..body.len().min(200)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.starts_with("content-type:")
        || text.starts_with("from:")
        || text.starts_with("mime-version:")
        || text.starts_with("received:")
        || text.starts_with("return-path:")
        || text.starts_with("date:")
        || text.starts_with("subject:")
        || text.starts_with("to:")
        || text.starts_with("message-id:")
}
