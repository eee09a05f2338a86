//! Bounce reports (AVG manual §1.10): messages from the bounce mailbox (DSNs, complaints,
//! auto-replies) and the generic JSON webhook; and the reports that could not be read,
//! kept for a person to look at.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use mailbaar_access::Permission;
use mailbaar_delivery::{BounceWebhook, NoticeOutcome, UnreadableReport};
use mailbaar_store::{Page, PageRequest};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Paging;

/// The largest report body taken, in bytes (10 MiB): a DSN that returns the whole
/// original with attachments fits; a larger body is a 413 problem document.
pub const MAX_REPORT_BODY: usize = 10 * 1024 * 1024;

/// Reports a bounce, a complaint or an automatic reply.
///
/// - A message from the bounce mailbox (`message/rfc822`, or `multipart/report` posted
///   alone with its boundary in the header): a DSN (RFC 3464/6522/6533, several recipient
///   groups), an ARF complaint (RFC 5965) or an automatic reply (RFC 3834), matched to its
///   message by the original's Message-ID (or `In-Reply-To`, `References`,
///   `X-Original-Message-ID`) and to the group of that message's recipient.
/// - The generic JSON webhook, matched by `message_id` or else by address; keyed by
///   `event_id` or else the body's digest.
///
/// Each notice is classified (hard, soft, policy, delayed, delivered, auto_reply,
/// complaint; the README's table) and counted once: the same notice again answers
/// `duplicate` and changes nothing. A message that cannot be read is a 422 naming what is
/// missing and is kept as an unreadable report (`GET /api/v1/unreadable-reports`).
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    request_body(content(
        (BounceWebhook = "application/json"),
        (String = "message/rfc822", example = "From: MAILER-DAEMON@mx.example.net\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n…"),
        (String = "multipart/report")),
        description = "A message from the bounce mailbox, or the generic webhook; at most 10 MiB"),
    responses(
        (status = 200, description = "What the report changed", body = NoticeOutcome),
        (status = 403, description = "Only admins and bounce reporters report bounces"),
        (status = 413, description = "The body is larger than 10485760 bytes (10 MiB)"),
        (status = 415, description = "Not JSON, message/rfc822 or multipart/report"),
        (status = 422, description = "Not a report (what is missing is named; a message is kept as an unreadable report), or an invalid webhook; nothing changed"),
    ))]
#[post("/bounces")]
pub async fn report(
    auth: Auth,
    req: HttpRequest,
    mut payload: web::Payload,
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
    if !matches!(
        essence.as_str(),
        "application/json" | "message/rfc822" | "multipart/report"
    ) {
        return Err(ApiError::UnsupportedMediaType(
            "send application/json, message/rfc822 or multipart/report".into(),
        ));
    }
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "a report is at most {MAX_REPORT_BODY} bytes (10 MiB)"
        ))
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_REPORT_BODY) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > MAX_REPORT_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let now = mailbaar_store::now();
    let outcomes = if essence == "application/json" {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        let webhook = crate::extract::from_body::<BounceWebhook>(value)?;
        auth.db(move |conn| mailbaar_delivery::report_webhook(conn, &webhook, &body, &by, now))
            .await?
    } else {
        // A multipart/report posted alone has its boundary in the request's header: put
        // that header back in front so the body reads as a message.
        let raw = if essence == "multipart/report" && !starts_with_headers(&body) {
            let mut raw = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
            raw.extend_from_slice(&body);
            raw
        } else {
            body
        };
        auth.db(move |conn| mailbaar_delivery::report_message(conn, &raw, &content_type, &by, now))
            .await?
    };
    // One notice per report: its outcome.
    let outcome = outcomes
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal("a report recorded no notice".into()))?;
    Ok(HttpResponse::Ok().json(outcome))
}

fn starts_with_headers(body: &[u8]) -> bool {
    let head = &body[..body.len().min(200)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    [
        "content-type:",
        "from:",
        "mime-version:",
        "received:",
        "return-path:",
        "date:",
        "subject:",
        "to:",
        "message-id:",
    ]
    .iter()
    .any(|h| text.starts_with(h))
}

/// The reports the intake could not read, newest first, each with what was missing; the
/// body itself at `GET /api/v1/unreadable-reports/{id}`.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(PageRequest),
    responses(
        (status = 200, description = "A page of unreadable reports", body = Page<UnreadableReport>),
        (status = 403, description = "Admins only"),
    ))]
#[get("/unreadable-reports")]
pub async fn list_unreadable(auth: Auth, page: Paging) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReviewUnreadableReports)?;
    let page = page.into_inner();
    let list = auth
        .db(move |conn| mailbaar_delivery::list_unreadable(conn, page))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One unreadable report's body exactly as it was received, with its content type.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The unreadable report's id")),
    responses(
        (status = 200, description = "The body as received", content(
            (String = "message/rfc822"), (String = "multipart/report"))),
        (status = 403, description = "Admins only"),
        (status = 404, description = "No such unreadable report"),
    ))]
#[get("/unreadable-reports/{id}")]
pub async fn get_unreadable(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReviewUnreadableReports)?;
    let id = id.into_inner();
    let (content_type, body) = auth
        .db(move |conn| mailbaar_delivery::unreadable_body(conn, id))
        .await?;
    let content_type = if content_type.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        content_type
    };
    Ok(HttpResponse::Ok().content_type(content_type).body(body))
}
