use actix_web::{delete, get, post, web, HttpResponse};
use mailbaar_access::{IssuedToken, Permission, Role, Token};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::Json;

/// A token to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "newsletter team", "role": "marketer"}))]
pub struct NewToken {
    /// Who or what uses the token; shown in audit trails.
    pub name: String,
    pub role: Role,
}

/// All API tokens, newest first; secrets are never listed. Admins only.
#[utoipa::path(tag = "tokens", security(("bearer" = [])),
    responses(
        (status = 200, description = "The tokens", body = Vec<Token>),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The caller is not an admin"),
    ))]
#[get("/tokens")]
pub async fn list_tokens(auth: Auth) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageTokens)?;
    let tokens = auth.db(mailbaar_access::list).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Creates a token with a role; the answer holds the secret, shown this once. Admins only.
#[utoipa::path(tag = "tokens", security(("bearer" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, with its secret in `token`", body = IssuedToken),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The caller is not an admin"),
        (status = 422, description = "Missing name or unknown role"),
    ))]
#[post("/tokens")]
pub async fn create_token(auth: Auth, body: Json<NewToken>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageTokens)?.label();
    let NewToken { name, role } = body.into_inner();
    let issued = auth
        .db(move |conn| mailbaar_access::issue(conn, &name, role, &by))
        .await?;
    Ok(HttpResponse::Created().json(issued))
}

/// Revokes a token; it stops working at once. Admins only.
#[utoipa::path(tag = "tokens", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Token id", example = 3)),
    responses(
        (status = 200, description = "The revoked token", body = Token),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The caller is not an admin"),
        (status = 404, description = "No such token"),
        (status = 409, description = "Already revoked"),
    ))]
#[delete("/tokens/{id}")]
pub async fn revoke_token(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageTokens)?;
    let id = id.into_inner();
    let token = auth
        .db(move |conn| mailbaar_access::revoke(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(token))
}
