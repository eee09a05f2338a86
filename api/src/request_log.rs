//! One log line per request: method, path (without the query string, which may hold
//! personal data), status, duration and a request id that is also sent back to the client.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("request", id = %request_id);
    let method = req.method().clone();
    let path = redacted(req.path());
    let started = Instant::now();
    let mut res = crate::error::REQUEST_ID
        .scope(request_id.clone(), next.call(req).instrument(span.clone()))
        .await?;
    let status = res.status().as_u16();
    span.in_scope(|| {
        tracing::info!(%method, %path, status, ms = started.elapsed().as_millis() as u64, "handled");
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}

/// The path as logged: the token of a recipient link (`/r/KIND/TOKEN`) is a capability that
/// can change a person's consent, so only its kind is kept.
fn redacted(path: &str) -> String {
    match path
        .strip_prefix("/r/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((kind, _)) => format!("/r/{kind}/…"),
        None => path.to_owned(),
    }
}
