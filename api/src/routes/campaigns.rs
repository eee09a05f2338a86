//! Campaigns and campaign steps: the mailing manual's chapters 2–5 over HTTP.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_campaigns::{
    Campaign, CampaignChanges, CampaignStep, MailJob, NameSearch, NewCampaign, NewStep, Preview,
    PreviewRequest, Readiness, SendRequest, StepChanges, StepFilter, StepResults,
};
use mailbaar_delivery::{TestMailOutcome, TestMailRequest};
use mailbaar_store::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, OptionalJson, Paging};
use crate::state::AppState;

/// Campaigns, newest first; `q` finds a part of the name or an id.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(NameSearch, PageRequest),
    responses(
        (status = 200, description = "A page of campaigns", body = Page<Campaign>),
        (status = 401, description = "No valid bearer token"),
        (status = 422, description = "`q`, `page` or `per_page` out of range"),
    ))]
#[get("/campaigns")]
pub async fn list_campaigns(
    auth: Auth,
    search: web::Query<NameSearch>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let (search, page) = (search.into_inner(), page.into_inner());
    let list = auth
        .db(move |conn| mailbaar_campaigns::list_campaigns(conn, &search, page))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Creates a campaign.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    request_body = NewCampaign,
    responses(
        (status = 201, description = "The campaign", body = Campaign),
        (status = 403, description = "Only marketers and admins manage campaigns"),
        (status = 409, description = "The name is in use"),
        (status = 422, description = "Invalid name or description"),
    ))]
#[post("/campaigns")]
pub async fn create_campaign(
    auth: Auth,
    body: Json<NewCampaign>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let new = body.into_inner();
    let campaign = auth
        .db(move |conn| mailbaar_campaigns::create_campaign(conn, new, &by))
        .await?;
    Ok(HttpResponse::Created().json(campaign))
}

/// One campaign.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Campaign id", example = 3)),
    responses(
        (status = 200, description = "The campaign", body = Campaign),
        (status = 404, description = "No such campaign"),
    ))]
#[get("/campaigns/{id}")]
pub async fn get_campaign(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let id = id.into_inner();
    let campaign = auth
        .db(move |conn| mailbaar_campaigns::get_campaign(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(campaign))
}

/// Changes a campaign's name or description.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Campaign id", example = 3)),
    request_body = CampaignChanges,
    responses(
        (status = 200, description = "The campaign", body = Campaign),
        (status = 403, description = "Only marketers and admins manage campaigns"),
        (status = 404, description = "No such campaign"),
        (status = 409, description = "The name is in use"),
    ))]
#[patch("/campaigns/{id}")]
pub async fn update_campaign(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<CampaignChanges>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageCampaigns)?;
    let (id, changes) = (id.into_inner(), body.into_inner());
    let campaign = auth
        .db(move |conn| mailbaar_campaigns::update_campaign(conn, id, changes))
        .await?;
    Ok(HttpResponse::Ok().json(campaign))
}

/// Deletes a campaign that has no steps.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Campaign id", example = 3)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Only marketers and admins manage campaigns"),
        (status = 404, description = "No such campaign"),
        (status = 409, description = "The campaign still has steps"),
    ))]
#[delete("/campaigns/{id}")]
pub async fn delete_campaign(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageCampaigns)?;
    let id = id.into_inner();
    auth.db(move |conn| mailbaar_campaigns::delete_campaign(conn, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Campaign steps, newest first; of one campaign, and `q` finds a part of the name or an id.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(StepFilter, PageRequest),
    responses(
        (status = 200, description = "A page of steps", body = Page<CampaignStep>),
        (status = 422, description = "`q`, `page` or `per_page` out of range"),
    ))]
#[get("/campaign-steps")]
pub async fn list_steps(
    auth: Auth,
    filter: web::Query<StepFilter>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let (filter, page) = (filter.into_inner(), page.into_inner());
    let list = auth
        .db(move |conn| mailbaar_campaigns::list_steps(conn, &filter, page))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Creates a step in a campaign; it may be unfinished (see its readiness).
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    request_body = NewStep,
    responses(
        (status = 201, description = "The step", body = CampaignStep),
        (status = 403, description = "Only marketers and admins manage campaigns"),
        (status = 422, description = "An invalid field, or an unknown campaign, query or opt-in type"),
    ))]
#[post("/campaign-steps")]
pub async fn create_step(auth: Auth, body: Json<NewStep>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let new = body.into_inner();
    let step = auth
        .db(move |conn| mailbaar_campaigns::create_step(conn, new, &by))
        .await?;
    Ok(HttpResponse::Created().json(step))
}

/// One step.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    responses(
        (status = 200, description = "The step", body = CampaignStep),
        (status = 404, description = "No such step"),
    ))]
#[get("/campaign-steps/{id}")]
pub async fn get_step(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let id = id.into_inner();
    let step = auth
        .db(move |conn| mailbaar_campaigns::get_step(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(step))
}

/// Changes a step; a field left out stays, `null` clears a field that may be empty. A mail
/// job whose preparation started keeps the content it froze.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    request_body = StepChanges,
    responses(
        (status = 200, description = "The step", body = CampaignStep),
        (status = 403, description = "Only marketers and admins manage campaigns"),
        (status = 404, description = "No such step"),
        (status = 409, description = "The send kind cannot change while the step's send blocks it or a mail job is under way (`send_kind_locked`)"),
        (status = 422, description = "An invalid field, or an unknown query or opt-in type"),
    ))]
#[patch("/campaign-steps/{id}")]
pub async fn update_step(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<StepChanges>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageCampaigns)?;
    let (id, changes) = (id.into_inner(), body.into_inner());
    let step = auth
        .db(move |conn| mailbaar_campaigns::update_step(conn, id, changes))
        .await?;
    Ok(HttpResponse::Ok().json(step))
}

/// Deletes a step that was never sent or scheduled.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Only marketers and admins manage campaigns"),
        (status = 404, description = "No such step"),
        (status = 409, description = "The step has mail jobs (its results stay)"),
    ))]
#[delete("/campaign-steps/{id}")]
pub async fn delete_step(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageCampaigns)?;
    let id = id.into_inner();
    auth.db(move |conn| mailbaar_campaigns::delete_step(conn, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Whether a count should include earlier recipients of the step.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct IncludePrevious {
    /// Count as a send with `include_previous_recipients` would.
    #[serde(default)]
    pub include_previous_recipients: bool,
}

/// What the step still needs before it can be sent, with warnings that do not block, and
/// how many persons a send now reaches.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7), IncludePrevious),
    responses(
        (status = 200, description = "The readiness", body = Readiness),
        (status = 404, description = "No such step"),
    ))]
#[get("/campaign-steps/{id}/readiness")]
pub async fn readiness(
    auth: Auth,
    id: web::Path<i64>,
    query: web::Query<IncludePrevious>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let (id, include) = (id.into_inner(), query.include_previous_recipients);
    let r = auth
        .db(move |conn| mailbaar_campaigns::readiness(conn, id, include))
        .await?;
    Ok(HttpResponse::Ok().json(r))
}

/// Recipient `index` of the step's audience (person-id order), rendered exactly as it will
/// be sent, with the total to page previous/next.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7), PreviewRequest),
    responses(
        (status = 200, description = "The rendered message", body = Preview),
        (status = 403, description = "Previews show personal data: persons' readers only"),
        (status = 404, description = "No such step"),
        (status = 409, description = "The content does not compile, or there is no selection"),
        (status = 422, description = "`index` outside 1 to the audience's size"),
    ))]
#[get("/campaign-steps/{id}/preview")]
pub async fn preview(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    query: web::Query<PreviewRequest>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    auth.require(Permission::ReadPersons)?;
    let (id, request) = (id.into_inner(), query.into_inner());
    let delivery = state.delivery.clone();
    let p = auth
        .db(move |conn| mailbaar_campaigns::preview(conn, delivery.links(), id, &request))
        .await?;
    Ok(HttpResponse::Ok().json(p))
}

/// Sends the step's current content to test persons (only persons flagged
/// `is_test_person`); each gets a test contact moment. The answer gives each one's result
/// (`sent`, `refused` with the server's reply, `deferred`, `in_doubt`): a refusal of one
/// test person is reported there and does not stop the others.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    request_body = TestMailRequest,
    responses(
        (status = 200, description = "Each test person's result, with the server's reply", body = Vec<TestMailOutcome>),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such step"),
        (status = 409, description = "The content has no sender or subject or does not compile"),
        (status = 422, description = "A person who does not exist, is not a test person or has no address; nothing was sent"),
    ))]
#[post("/campaign-steps/{id}/test-mail")]
pub async fn test_mail(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Json<TestMailRequest>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageCampaigns)?;
    let (id, request) = (id.into_inner(), body.into_inner());
    let delivery = state.delivery.clone();
    let sent = auth
        .db(move |conn| mailbaar_delivery::send_test_mail(conn, &delivery, id, &request))
        .await?;
    Ok(HttpResponse::Ok().json(sent))
}

/// Sends the step now, or schedules it (`scheduled_at` with an explicit offset): creates a
/// mail job. Follow it at `GET /api/v1/mailjobs/{id}`.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    request_body(content = Option<SendRequest>, description = "Left out: send now"),
    responses(
        (status = 202, description = "The mail job", body = MailJob),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such step"),
        (status = 409, description = "Not ready (`missing` lists every requirement), or a one-time step already sent"),
        (status = 422, description = "`scheduled_at` in the past or out of range"),
    ))]
#[post("/campaign-steps/{id}/send")]
pub async fn send(
    auth: Auth,
    id: web::Path<i64>,
    body: OptionalJson<SendRequest>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let (id, request) = (id.into_inner(), body.into_inner().unwrap_or_default());
    let job = auth
        .db(move |conn| mailbaar_campaigns::send_step(conn, id, &request, &by))
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/mailjobs/{}", job.id)))
        .json(job))
}

/// Releases a sent one-time step so it can be sent again; every result stays.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    responses(
        (status = 200, description = "The step, no longer blocked", body = CampaignStep),
        (status = 403, description = "Only marketers and admins send"),
        (status = 404, description = "No such step"),
        (status = 409, description = "Repeatable, not blocked, or a job still under way"),
    ))]
#[post("/campaign-steps/{id}/reset")]
pub async fn reset(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let id = id.into_inner();
    let step = auth
        .db(move |conn| mailbaar_campaigns::reset_step(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(step))
}

/// How many test contact moments were deleted.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"deleted": 2}))]
pub struct Deleted {
    pub deleted: i64,
}

/// Deletes the step's test contact moments, so results count real sends only.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    responses(
        (status = 200, description = "How many were deleted", body = Deleted),
        (status = 403, description = "Only marketers and admins manage campaigns"),
        (status = 404, description = "No such step"),
    ))]
#[delete("/campaign-steps/{id}/test-contact-moments")]
pub async fn delete_test_moments(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageCampaigns)?.label();
    let id = id.into_inner();
    let n = auth
        .db(move |conn| mailbaar_campaigns::delete_test_contact_moments(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(Deleted { deleted: n as i64 }))
}

/// What the step's sends reached: counts and rates, tests apart, and the first week's
/// opens and clicks per hour.
#[utoipa::path(tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Step id", example = 7)),
    responses(
        (status = 200, description = "The results", body = StepResults),
        (status = 404, description = "No such step"),
    ))]
#[get("/campaign-steps/{id}/results")]
pub async fn results(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadCampaigns)?;
    let id = id.into_inner();
    let r = auth
        .db(move |conn| mailbaar_campaigns::step_results(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(r))
}
