use actix_web::{delete, get, patch, post, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_consent::{NewOptInType, OptInType, OptInTypeChanges, SoftConsentOutcome};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, OptionalJson};

/// All opt-in types, in creation order.
#[utoipa::path(tag = "consent", security(("bearer" = [])),
    responses(
        (status = 200, description = "The opt-in types", body = Vec<OptInType>),
        (status = 401, description = "No valid bearer token"),
    ))]
#[get("/opt-in-types")]
pub async fn list_types(auth: Auth) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let types = auth.db(mailbaar_consent::list_types).await?;
    Ok(HttpResponse::Ok().json(types))
}

/// Creates an opt-in type (a purpose people can consent to).
#[utoipa::path(tag = "consent", security(("bearer" = [])),
    request_body = NewOptInType,
    responses(
        (status = 201, description = "The new type", body = OptInType),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not manage opt-in types"),
        (status = 409, description = "The name is in use"),
        (status = 422, description = "Invalid fields"),
    ))]
#[post("/opt-in-types")]
pub async fn create_type(auth: Auth, body: Json<NewOptInType>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageOptInTypes)?;
    let new = body.into_inner();
    let t = auth
        .db(move |conn| mailbaar_consent::create_type(conn, new))
        .await?;
    Ok(HttpResponse::Created().json(t))
}

/// Reads one opt-in type.
#[utoipa::path(tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Opt-in type id", example = 1)),
    responses(
        (status = 200, description = "The type", body = OptInType),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such type"),
    ))]
#[get("/opt-in-types/{id}")]
pub async fn get_type(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let t = auth
        .db(move |conn| mailbaar_consent::get_type(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(t))
}

/// Changes an opt-in type's name, description, active flag or soft opt-in query.
#[utoipa::path(tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Opt-in type id", example = 1)),
    request_body = OptInTypeChanges,
    responses(
        (status = 200, description = "The changed type", body = OptInType),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not manage opt-in types"),
        (status = 404, description = "No such type"),
        (status = 409, description = "The name is in use"),
        (status = 422, description = "Invalid fields"),
    ))]
#[patch("/opt-in-types/{id}")]
pub async fn update_type(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<OptInTypeChanges>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageOptInTypes)?;
    let (id, changes) = (id.into_inner(), body.into_inner());
    let t = auth
        .db(move |conn| mailbaar_consent::update_type(conn, id, changes))
        .await?;
    Ok(HttpResponse::Ok().json(t))
}

/// Deletes an opt-in type that has no consent records; a type with history can only be
/// set inactive.
#[utoipa::path(tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Opt-in type id", example = 4)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not manage opt-in types"),
        (status = 404, description = "No such type"),
        (status = 409, description = "The type has consent records"),
    ))]
#[delete("/opt-in-types/{id}")]
pub async fn delete_type(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageOptInTypes)?;
    let id = id.into_inner();
    auth.db(move |conn| mailbaar_consent::delete_type(conn, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Options of a soft opt-in run.
#[derive(Deserialize, IntoParams)]
pub struct SoftRunParams {
    /// Count only; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Which soft consent to assign.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"opt_in": true}))]
pub struct SoftRunBody {
    /// `true` (default) for soft opt-ins, `false` for soft opt-outs.
    #[serde(default = "yes")]
    pub opt_in: bool,
}

fn yes() -> bool {
    true
}

/// Gives every person selected by the type's saved query a soft opt-in (channel `system`),
/// except persons who already have a record for the type. Idempotent; `dry_run=true`
/// only counts.
#[utoipa::path(tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Opt-in type id", example = 2), SoftRunParams),
    request_body(content = Option<SoftRunBody>, description = "Optional; soft opt-ins when left out"),
    responses(
        (status = 200, description = "What was (or would be) assigned", body = SoftConsentOutcome),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not manage opt-in types"),
        (status = 404, description = "No such type"),
        (status = 409, description = "The type has no (existing) soft query, or is inactive"),
        (status = 415, description = "A body is sent, but not as application/json"),
        (status = 422, description = "A body that is not a `SoftRunBody`, or a malformed `dry_run`"),
    ))]
#[post("/opt-in-types/{id}/soft-opt-ins")]
pub async fn soft_opt_ins(
    auth: Auth,
    id: web::Path<i64>,
    params: web::Query<SoftRunParams>,
    body: OptionalJson<SoftRunBody>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageOptInTypes)?;
    let (id, dry_run) = (id.into_inner(), params.dry_run);
    let opt_in = body.into_inner().map(|b| b.opt_in).unwrap_or(true);
    let outcome = auth
        .db(move |conn| {
            mailbaar_consent::assign_soft_consent(
                conn,
                id,
                opt_in,
                dry_run,
                &mailbaar_query::SavedQuerySelector,
            )
        })
        .await?;
    Ok(HttpResponse::Ok().json(outcome))
}
