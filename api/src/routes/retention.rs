use actix_web::{get, post, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_gdpr::{DryRun, NewRetentionRule, RetentionRule, RetentionRun};
use mailbaar_tasks::Task;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Json;

/// Every retention rule.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    responses(
        (status = 200, description = "The rules", body = Vec<RetentionRule>),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins manage retention"),
    ))]
#[get("/retention-rules")]
pub async fn list_rules(auth: Auth) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::Anonymize)?;
    let rules = auth.db(mailbaar_gdpr::list_rules).await?;
    Ok(HttpResponse::Ok().json(rules))
}

/// Creates a retention rule: a saved query and the action for its persons (anonymize),
/// run by hand or daily.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    request_body = NewRetentionRule,
    responses(
        (status = 201, description = "The rule", body = RetentionRule),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins manage retention"),
        (status = 409, description = "The name is in use"),
        (status = 422, description = "Invalid name, action, schedule or query"),
    ))]
#[post("/retention-rules")]
pub async fn create_rule(
    auth: Auth,
    body: Json<NewRetentionRule>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::Anonymize)?.label();
    let new = body.into_inner();
    let rule = auth
        .db(move |conn| mailbaar_gdpr::create_rule(conn, new, &by))
        .await?;
    Ok(HttpResponse::Created().json(rule))
}

/// Counts the persons a rule selects now and shows a sample of them; changes nothing.
/// The dry run is recorded.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Rule id", example = 2)),
    responses(
        (status = 200, description = "The count and a sample", body = DryRun),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins manage retention"),
        (status = 404, description = "No such rule"),
        (status = 409, description = "The rule's query no longer runs"),
    ))]
#[post("/retention-rules/{id}/dry-run")]
pub async fn dry_run(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::Anonymize)?.label();
    let id = id.into_inner();
    let dry = auth
        .db(move |conn| mailbaar_gdpr::dry_run(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(dry))
}

/// Runs a rule: queues a task that anonymizes the persons it selects in batches; follow it
/// at `GET /api/v1/tasks/{id}`. The run is recorded and audited.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Rule id", example = 2)),
    responses(
        (status = 202, description = "The task, queued", body = Task),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins manage retention"),
        (status = 404, description = "No such rule"),
        (status = 409, description = "The rule is inactive, or a run of it is already queued or running"),
    ))]
#[post("/retention-rules/{id}/run")]
pub async fn run_rule(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::Anonymize)?.label();
    let id = id.into_inner();
    let task = auth
        .db(move |conn| mailbaar_gdpr::run_task(conn, id, &by, mailbaar_store::now()))
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/tasks/{}", task.id)))
        .json(task))
}

/// A rule's runs, dry and real, newest first.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Rule id", example = 2)),
    responses(
        (status = 200, description = "The runs", body = Vec<RetentionRun>),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins manage retention"),
        (status = 404, description = "No such rule"),
    ))]
#[get("/retention-rules/{id}/runs")]
pub async fn list_runs(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::Anonymize)?;
    let id = id.into_inner();
    let runs = auth
        .db(move |conn| mailbaar_gdpr::list_runs(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(runs))
}
