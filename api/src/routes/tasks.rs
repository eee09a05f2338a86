use actix_web::{get, web, HttpResponse};
use mailbaar_access::Permission;

use crate::auth::Auth;
use crate::error::ApiError;

/// Reads a background task (recalculation, retention run, and later preparation and
/// sending): its state, progress and outcome.
#[utoipa::path(tag = "tasks", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Task id", example = 4)),
    responses(
        (status = 200, description = "The task", body = mailbaar_tasks::Task),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such task"),
    ))]
#[get("/tasks/{id}")]
pub async fn get_task(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let task = auth.db(move |conn| mailbaar_tasks::get(conn, id)).await?;
    Ok(HttpResponse::Ok().json(task))
}
