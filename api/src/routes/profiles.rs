use actix_web::{post, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_tasks::{Task, TaskError};

use crate::auth::Auth;
use crate::error::ApiError;

/// Starts a recalculation of every profile (only persons with a current profiling opt-in
/// get one) and answers at once with its task; follow it at `/api/v1/tasks/{id}`.
#[utoipa::path(tag = "profiles", security(("bearer" = [])),
    responses(
        (status = 202, description = "The task, queued", body = Task),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not recalculate profiles"),
        (status = 409, description = "A recalculation is already queued or running"),
    ))]
#[post("/profiles/recalculate")]
pub async fn recalculate(auth: Auth) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::RecalculateProfiles)?.label();
    let task = auth
        .db(move |conn| -> Result<Task, TaskError> {
            mailbaar_tasks::enqueue(conn, &mailbaar_profiles::recalculation_task(&by))
        })
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/tasks/{}", task.id)))
        .json(task))
}
