use actix_web::{get, post, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_jobs::Job;

use crate::auth::Auth;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Starts a recalculation of every profile (only persons with a current profiling opt-in
/// get one) and answers at once with the job; follow it at `/api/v1/jobs/{id}`.
#[utoipa::path(post, path = "/api/v1/profiles/recalculate", tag = "profiles", security(("bearer" = [])),
    responses(
        (status = 202, description = "The job, queued", body = Job),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The role may not recalculate profiles", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A recalculation is already running", body = Problem, content_type = "application/problem+json"),
    ))]
#[post("/profiles/recalculate")]
pub async fn recalculate(auth: Auth, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::RecalculateProfiles)?.label();
    let job = crate::schedule::start_recalculation(&state.pool, by).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/jobs/{}", job.id)))
        .json(job))
}

/// Reads a job: its status, progress and outcome.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Job id", example = 4)),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ))]
#[get("/jobs/{id}")]
pub async fn get_job(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let job = state.db(move |conn| mailbaar_jobs::get(conn, id)).await?;
    Ok(HttpResponse::Ok().json(job))
}
