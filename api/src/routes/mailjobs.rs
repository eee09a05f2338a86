//! Mail jobs: scheduled and sent mailings (manual §4.2), their progress, a new time, cancel.

use actix_web::{get, patch, post, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_campaigns::{MailJob, MailJobChanges, MailJobFilter};
use mailbaar_store::{Page, PageRequest};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Paging};

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
