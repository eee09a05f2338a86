use actix_web::{get, patch, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_settings::{Settings, SettingsChanges};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Json;

/// The organisation's settings, with defaults for those never set.
#[utoipa::path(tag = "settings", security(("bearer" = [])),
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = 401, description = "No valid bearer token"),
    ))]
#[get("/settings")]
pub async fn get_settings(auth: Auth) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let settings = auth.db(mailbaar_settings::load).await?;
    Ok(HttpResponse::Ok().json(settings))
}

/// Changes some settings; fields left out keep their value. Admins only.
#[utoipa::path(tag = "settings", security(("bearer" = [])),
    request_body = SettingsChanges,
    responses(
        (status = 200, description = "The settings after the change", body = Settings),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only admins change settings"),
        (status = 422, description = "A value out of range, or an unknown setting"),
    ))]
#[patch("/settings")]
pub async fn update_settings(
    auth: Auth,
    body: Json<SettingsChanges>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageSettings)?;
    let changes = body.into_inner();
    let settings = auth
        .db(move |conn| mailbaar_settings::update(conn, changes))
        .await?;
    Ok(HttpResponse::Ok().json(settings))
}
