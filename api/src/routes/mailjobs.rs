//! Mail jobs: scheduled and sent mailings (manual §4.2), their progress, a new time, cancel,
//! pause and resume, resending the recipients in doubt, and who got what and why.

use std::io::Write;

use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_campaigns::{MailJob, MailJobChanges, MailJobFilter};
use mailbaar_delivery::{JobRecipient, RecipientFilter};
use mailbaar_store::{Page, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Paging};
use crate::routes::imports::Sink;
use crate::state::AppState;

/// Scheduled and sent mail jobs, latest send time first, with progress; local times in
/// the organisation's time zone.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(MailJobFilter, PageRequest),
    responses(
        (status = 200, description = "A page of mail jobs", body = Page<MailJob>),
        (status = 422, description = "An unknown status, or `page`/`per_page` out of range"),
    ))]
#[get("/mailjobs")]
pub async fn list_mail_jobs(
    auth: Auth,
    filter: web::Query<MailJobFilter>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let (filter, page) = (filter.into_inner(), page.into_inner());
    let list = auth
        .db(move |conn| mailbaar_campaigns::list_mail_jobs(conn, &filter, page))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One mail job with its progress.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Mail job id", example = 21)),
    responses(
        (status = 200, description = "The mail job", body = MailJob),
        (status = 404, description = "No such mail job"),
    ))]
#[get("/mailjobs/{id}")]
pub async fn get_mail_job(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let id = id.into_inner();
    let job = auth
        .db(move |conn| mailbaar_campaigns::get_mail_job(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Moves a scheduled job to a new time, until its preparation starts.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Mail job id", example = 21)),
    request_body = MailJobChanges,
    responses(
        (status = 200, description = "The mail job", body = MailJob),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such mail job"),
        (status = 409, description = "Its preparation started, or it ended or was cancelled"),
        (status = 422, description = "`scheduled_at` in the past or out of range"),
    ))]
#[patch("/mailjobs/{id}")]
pub async fn reschedule(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<MailJobChanges>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let (id, changes) = (id.into_inner(), body.into_inner());
    let job = auth
        .db(move |conn| mailbaar_campaigns::reschedule_mail_job(conn, id, &changes, &by))
        .await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Cancels a job that is scheduled, prepared or sending: no message is started after this
/// (those being handed over finish). What was sent stays sent; a one-time step that sent
/// nothing is free again.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Mail job id", example = 21)),
    responses(
        (status = 200, description = "The cancelled job", body = MailJob),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such mail job"),
        (status = 409, description = "It is being prepared, or it ended"),
    ))]
#[post("/mailjobs/{id}/cancel")]
pub async fn cancel(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let id = id.into_inner();
    let job = auth
        .db(move |conn| mailbaar_campaigns::cancel_mail_job(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Pauses a job that has not ended: no message is started until it is resumed; those
/// being handed over finish and are recorded. The progress stays readable.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Mail job id", example = 21)),
    responses(
        (status = 200, description = "The paused job", body = MailJob),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such mail job"),
        (status = 409, description = "It ended, or is paused already"),
    ))]
#[post("/mailjobs/{id}/pause")]
pub async fn pause(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let id = id.into_inner();
    let job = auth
        .db(move |conn| mailbaar_campaigns::pause_mail_job(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Resumes a paused job: it sends to exactly the recipients not yet handled.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Mail job id", example = 21)),
    responses(
        (status = 200, description = "The resumed job", body = MailJob),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such mail job"),
        (status = 409, description = "It is not paused, or it ended"),
    ))]
#[post("/mailjobs/{id}/resume")]
pub async fn resume(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let id = id.into_inner();
    let job = auth
        .db(move |conn| mailbaar_campaigns::resume_mail_job(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(job))
}

/// Resends the job's recipients in doubt (state `in_doubt`: their message was sent to its
/// end without a valid final reply, or its worker stopped, so it may have arrived) with
/// their same contact moment and Message-ID. Under the `at-most-once` in-doubt policy
/// this is the only way they are sent again. A job that had ended sends again; a paused
/// one sends them once resumed.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Mail job id", example = 21)),
    responses(
        (status = 200, description = "The job, sending its in-doubt recipients again", body = MailJob),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such mail job"),
        (status = 409, description = "It was cancelled, or no recipient is in doubt"),
    ))]
#[post("/mailjobs/{id}/resend-in-doubt")]
pub async fn resend_in_doubt(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let id = id.into_inner();
    let job = auth
        .db(move |conn| mailbaar_campaigns::resend_in_doubt(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(job))
}

/// How the recipient list is answered.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFormat {
    /// `csv` for every matching recipient as CSV (also with `Accept: text/csv`), unpaged;
    /// otherwise a JSON page.
    #[param(example = "csv")]
    pub format: Option<String>,
}

/// Who got what, and why: the job's recipients in person order, each with its state (the
/// states the job's progress counts), attempts, in-doubt flag, the last reply of its
/// hand-over (phase, code, enhanced code, text) and its contact moment and Message-ID.
/// Filter by `state`, search the address with `q`. As CSV (`?format=csv` or
/// `Accept: text/csv`) every matching recipient is streamed, `page`/`per_page` ignored.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Mail job id", example = 21),
        RecipientFilter, ListFormat, PageRequest),
    responses(
        (status = 200, description = "A page of the job's recipients (JSON), or every matching recipient (CSV)",
            content(
                (Page<JobRecipient> = "application/json"),
                (String = "text/csv", example = "person_id,email,state,attempts,in_doubt,reply_phase,reply_code,reply_enhanced,reply_text,note,contact_moment_id,message_id\n5,anna@example.nl,bounced,1,false,rcpt_to,550,5.1.1,550 5.1.1 Recipient address rejected,RCPT TO: 550 5.1.1 Recipient address rejected,88,3f2a9c0d1e@example.org\n"),
            )),
        (status = 403, description = "The role may not read mail jobs"),
        (status = 404, description = "No such mail job"),
        (status = 422, description = "An unknown state, a search with control characters, an unknown format, or `page`/`per_page` out of range"),
    ))]
#[get("/mailjobs/{id}/recipients")]
pub async fn list_recipients(
    auth: Auth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<i64>,
    filter: web::Query<RecipientFilter>,
    format: web::Query<ListFormat>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let (id, filter, page) = (id.into_inner(), filter.into_inner(), page.into_inner());
    let csv = match format.into_inner().format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "format",
                format!("expected csv or json, not {other:?}"),
            ))
        }
        None => req
            .headers()
            .get(actix_web::http::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
    };
    if !csv {
        let list = auth
            .db(move |conn| mailbaar_delivery::list_recipients(conn, id, &filter, page))
            .await?;
        return Ok(HttpResponse::Ok().json(list));
    }
    let check = filter.clone();
    auth.db(move |conn| mailbaar_delivery::check_recipients_csv(conn, id, &check))
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<web::Bytes>(16);
    let pool = state.pool.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let mut sink = std::io::BufWriter::with_capacity(64 * 1024, Sink(tx));
        let result = mailbaar_delivery::write_recipients_csv(&pool, id, &filter, &mut sink)
            .map_err(|e| e.to_string())
            .and_then(|_| sink.flush().map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::warn!(error = %e, mail_job = id, "a recipient list stopped");
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"mailjob-{id}-recipients.csv\""),
        ))
        .streaming(stream))
}
