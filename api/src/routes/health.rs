use actix_web::{get, web, HttpResponse};
use diesel::connection::SimpleConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// Liveness and database reachability.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "database": "sqlite"}))]
pub struct Health {
    /// `ok` when the database answers.
    pub status: &'static str,
    /// The engine in use: `sqlite` or `postgres`.
    pub database: &'static str,
}

/// Liveness and database check, for load balancers and monitoring. No token needed.
#[utoipa::path(tag = "service",
    responses(
        (status = 200, description = "The service runs and its database answers", body = Health),
        (status = 503, description = "The database does not answer"),
    ))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let backend = state.pool.backend().name();
    state
        .db(|conn| conn.batch_execute("SELECT 1"))
        .await
        .map_err(|e| match e {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => {
                ApiError::Unavailable(cause)
            }
            other => other,
        })?;
    Ok(HttpResponse::Ok().json(Health {
        status: "ok",
        database: backend,
    }))
}
