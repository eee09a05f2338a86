use actix_web::{get, post, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_people::{NewTransaction, Transaction};
use mailbaar_store::{Page, PageRequest};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Paging};

/// A person's transactions, latest first.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42), PageRequest),
    responses(
        (status = 200, description = "A page of transactions", body = Page<Transaction>),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such person"),
        (status = 422, description = "`page` or `per_page` out of range"),
    ))]
#[get("/persons/{id}/transactions")]
pub async fn list_transactions(
    auth: Auth,
    id: web::Path<i64>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let (id, page) = (id.into_inner(), page.into_inner());
    let list = auth
        .db(move |conn| mailbaar_people::list_transactions(conn, id, page))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Records a transaction for a person.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    request_body = NewTransaction,
    responses(
        (status = 201, description = "The recorded transaction", body = Transaction),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not write"),
        (status = 404, description = "No such person"),
        (status = 409, description = "The person is anonymized"),
        (status = 422, description = "Invalid kind, currency or fields"),
    ))]
#[post("/persons/{id}/transactions")]
pub async fn add_transaction(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<NewTransaction>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::WritePersons)?;
    let (id, new) = (id.into_inner(), body.into_inner());
    let tx = auth
        .db(move |conn| mailbaar_people::add_transaction(conn, id, new))
        .await?;
    Ok(HttpResponse::Created().json(tx))
}
