use actix_web::{web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_consent::{ConsentChange, ConsentRecord, Unsubscribe};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Json;

/// Narrows a consent history to one opt-in type.
#[derive(Deserialize, IntoParams)]
pub struct HistoryFilter {
    /// Only records of this opt-in type.
    #[param(example = 1)]
    pub opt_in_type_id: Option<i64>,
}

/// A person's consent history, per opt-in type, newest first.
#[utoipa::path(get, path = "/persons/{id}/consents", tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42), HistoryFilter),
    responses(
        (status = 200, description = "The ledger records of the person", body = Vec<ConsentRecord>),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such person"),
    ))]
pub async fn list_consents(
    auth: Auth,
    id: web::Path<i64>,
    filter: web::Query<HistoryFilter>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let (id, type_id) = (id.into_inner(), filter.opt_in_type_id);
    let records = auth
        .db(move |conn| mailbaar_consent::history(conn, id, type_id))
        .await?;
    Ok(HttpResponse::Ok().json(records))
}

/// Records a subscribe (`opt_in: true`) or unsubscribe given by staff on the person's
/// behalf. Channel, description, type and opt_in are all required.
#[utoipa::path(post, path = "/persons/{id}/consents", tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    request_body = ConsentChange,
    responses(
        (status = 201, description = "The new ledger record", body = ConsentRecord),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not record consent"),
        (status = 404, description = "No such person or opt-in type"),
        (status = 409, description = "The person is anonymized or the type inactive"),
        (status = 422, description = "Missing or invalid channel, description or fields"),
    ))]
pub async fn record_consent(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<ConsentChange>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::WriteConsent)?.label();
    let (id, change) = (id.into_inner(), body.into_inner());
    let record = auth
        .db(move |conn| mailbaar_consent::record(conn, id, change, &by))
        .await?;
    Ok(HttpResponse::Created().json(record))
}

/// One ledger record of a person. Records are append-only: they cannot be changed or deleted.
#[utoipa::path(get, path = "/persons/{id}/consents/{record_id}", tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42),
           ("record_id" = i64, Path, description = "Consent record id", example = 901)),
    responses(
        (status = 200, description = "The record", body = ConsentRecord),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such record for this person"),
    ))]
pub async fn get_consent(
    auth: Auth,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let (id, record_id) = path.into_inner();
    let record = auth
        .db(move |conn| mailbaar_consent::get_record(conn, id, record_id))
        .await?;
    Ok(HttpResponse::Ok().json(record))
}

/// Withdraws every opt-in of the person at once, profiling included: one opt-out record
/// per type that is currently opted in, in one transaction. Profile calculations stop.
#[utoipa::path(post, path = "/persons/{id}/unsubscribe-all", tag = "consent", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    request_body = Unsubscribe,
    responses(
        (status = 200, description = "The opt-out records written (empty when nothing was opted in)", body = Vec<ConsentRecord>),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not record consent"),
        (status = 404, description = "No such person"),
        (status = 409, description = "The person is anonymized"),
        (status = 422, description = "Missing or invalid channel or description"),
    ))]
pub async fn unsubscribe_all(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<Unsubscribe>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::WriteConsent)?.label();
    let (id, request) = (id.into_inner(), body.into_inner());
    let records = auth
        .db(move |conn| mailbaar_consent::unsubscribe_all(conn, id, request, &by))
        .await?;
    Ok(HttpResponse::Ok().json(records))
}

/// The answer to PUT, PATCH and DELETE on the ledger.
pub async fn append_only(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        detail: "consent records are append-only: record a new opt-in or opt-out instead".into(),
        allow: super::allowed_methods(req.path()).unwrap_or_else(|| "GET".into()),
    })
}
