use actix_web::{delete, get, post, put, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_query::{
    FieldInfo, Node, QueryCopy, QueryError, RunOptions, RunResult, SavedQuery, SavedQueryFilter,
    SavedQueryInput,
};
use mailbaar_store::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{check_body_paging, from_body, Json, OptionalJson, Paging};

/// Every field a condition may use, with its value type and operators, for condition
/// editors. `consent.<id>` fields follow the opt-in types.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    responses(
        (status = 200, description = "The field registry", body = Vec<FieldInfo>),
        (status = 401, description = "No valid bearer token"),
    ))]
#[get("/query-fields")]
pub async fn query_fields(auth: Auth) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let fields = auth.db(mailbaar_query::fields).await?;
    Ok(HttpResponse::Ok().json(fields))
}

/// An unsaved condition tree to run, with the page and columns to return.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"conditions": {"all": [
    {"field": "consent.1", "op": "eq", "value": true},
    {"field": "mailable", "op": "eq", "value": true},
    {"field": "contact_pressure", "op": "lt", "value": 3}]},
    "page": 1, "per_page": 50, "columns": ["id", "email", "city"]}))]
pub struct RunRequest {
    /// The condition tree.
    #[schema(value_type = Node)]
    pub conditions: Value,
    /// 1-based page number (default 1).
    // The literals are `PageRequest::MAX_PAGE` and `MAX_PER_PAGE`, as on `RunOptions`.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub page: Option<i64>,
    /// Persons per page, 1 to 500 (default 50).
    #[schema(minimum = 1, maximum = 500)]
    pub per_page: Option<i64>,
    /// Person fields to return; `id` is always included. Default: id, email, first_name,
    /// infix, last_name, city, mailable.
    pub columns: Option<Vec<String>>,
}

/// Points a tree's problems into the request body's `conditions`.
fn under_conditions(e: QueryError) -> QueryError {
    match e {
        QueryError::InvalidConditions(issues) => QueryError::InvalidConditions(
            issues
                .into_iter()
                .map(|i| mailbaar_query::Issue::new(&format!("/conditions{}", i.path), i.reason))
                .collect(),
        ),
        other => other,
    }
}

/// Runs a condition tree without saving it: how many persons it selects and one page of
/// them (in id order) with the chosen columns. Anonymized persons are never selected.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    request_body = RunRequest,
    responses(
        (status = 200, description = "The count and a page of persons", body = RunResult),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 413, description = "Body too large"),
        (status = 415, description = "The body is not sent as application/json"),
        (status = 422, description = "Invalid conditions (each error names the path of the offending node), unknown columns, or `page`/`per_page` out of range"),
    ))]
#[post("/queries/run")]
pub async fn run_conditions(auth: Auth, body: Json<Value>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let body = body.into_inner();
    check_body_paging(&body)?;
    let body: RunRequest = from_body(body)?;
    let tree = Node::parse(&body.conditions)
        .map_err(|issues| under_conditions(QueryError::InvalidConditions(issues)))?;
    let options = RunOptions {
        page: body.page,
        per_page: body.per_page,
        columns: body.columns,
    };
    let result = auth
        .db(move |conn| mailbaar_query::run(conn, &tree, &options).map_err(under_conditions))
        .await?;
    Ok(HttpResponse::Ok().json(result))
}

/// Saved queries by name; `name` finds those whose name contains it (ignoring case).
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(SavedQueryFilter, PageRequest),
    responses(
        (status = 200, description = "A page of saved queries, by name", body = Page<SavedQuery>),
        (status = 401, description = "No valid bearer token"),
        (status = 422, description = "`page` or `per_page` out of range"),
    ))]
#[get("/queries")]
pub async fn list_queries(
    auth: Auth,
    filter: web::Query<SavedQueryFilter>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let (filter, page) = (filter.into_inner(), page.into_inner());
    let list = auth
        .db(move |conn| mailbaar_query::list_queries(conn, &filter, page))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Saves a query. The tree is checked in full, including the saved queries it includes.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    request_body = SavedQueryInput,
    responses(
        (status = 201, description = "The saved query", body = SavedQuery),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not save queries"),
        (status = 409, description = "The name is in use"),
        (status = 422, description = "Invalid name or conditions"),
    ))]
#[post("/queries")]
pub async fn create_query(
    auth: Auth,
    body: Json<SavedQueryInput>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageQueries)?.label();
    let input = body.into_inner();
    let query = auth
        .db(move |conn| mailbaar_query::create_query(conn, input, &by))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/queries/{}", query.id)))
        .json(query))
}

/// A name suggestion in the manual's convention.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "AB – 20261123 – newsletter"}))]
pub struct NameSuggestion {
    pub name: String,
}

/// What a suggested name is made of.
#[derive(Deserialize, IntoParams)]
pub struct NameParams {
    /// The initials of the person saving the query.
    #[param(example = "AB")]
    pub initials: String,
    /// What the query is for.
    #[param(example = "newsletter")]
    pub purpose: String,
}

/// Suggests a name as `<initials> – <yyyymmdd> – <purpose>` (today's date); names are not
/// required to follow it.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(NameParams),
    responses(
        (status = 200, description = "The suggested name", body = NameSuggestion),
        (status = 401, description = "No valid bearer token"),
        (status = 422, description = "Missing initials or purpose"),
    ))]
#[get("/queries/name-suggestion")]
pub async fn name_suggestion(
    auth: Auth,
    params: web::Query<NameParams>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let today = mailbaar_store::now().date();
    Ok(HttpResponse::Ok().json(NameSuggestion {
        name: mailbaar_query::suggest_name(&params.initials, &params.purpose, today),
    }))
}

/// Reads one saved query.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Saved query id", example = 12)),
    responses(
        (status = 200, description = "The saved query", body = SavedQuery),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such query"),
    ))]
#[get("/queries/{id}")]
pub async fn get_query(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let query = auth
        .db(move |conn| mailbaar_query::get_query(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(query))
}

/// Overwrites a saved query's name, description and conditions. A tree that would include
/// the query itself, directly or through other queries, is refused.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Saved query id", example = 12)),
    request_body = SavedQueryInput,
    responses(
        (status = 200, description = "The overwritten query", body = SavedQuery),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not save queries"),
        (status = 404, description = "No such query"),
        (status = 409, description = "The name is in use"),
        (status = 422, description = "Invalid name or conditions, or a cycle of saved queries"),
    ))]
#[put("/queries/{id}")]
pub async fn replace_query(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<SavedQueryInput>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageQueries)?;
    let (id, input) = (id.into_inner(), body.into_inner());
    let query = auth
        .db(move |conn| mailbaar_query::replace_query(conn, id, input))
        .await?;
    Ok(HttpResponse::Ok().json(query))
}

/// Deletes a saved query, unless another saved query or an opt-in type uses it; the
/// answer then says which.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Saved query id", example = 12)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not delete queries"),
        (status = 404, description = "No such query"),
        (status = 409, description = "The query is in use"),
    ))]
#[delete("/queries/{id}")]
pub async fn delete_query(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ManageQueries)?;
    let id = id.into_inner();
    auth.db(move |conn| mailbaar_query::delete_query(conn, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Saves a copy of a query under a new name ("save as").
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Saved query id", example = 12)),
    request_body = QueryCopy,
    responses(
        (status = 201, description = "The copy", body = SavedQuery),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not save queries"),
        (status = 404, description = "No such query"),
        (status = 409, description = "The name is in use"),
        (status = 422, description = "Invalid name"),
    ))]
#[post("/queries/{id}/copy")]
pub async fn copy_query(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<QueryCopy>,
) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ManageQueries)?.label();
    let (id, copy) = (id.into_inner(), body.into_inner());
    let query = auth
        .db(move |conn| mailbaar_query::copy_query(conn, id, copy, &by))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/queries/{}", query.id)))
        .json(query))
}

/// Runs a saved query: the count and one page of persons with the chosen columns.
#[utoipa::path(tag = "queries", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Saved query id", example = 12)),
    request_body(content = Option<RunOptions>, description = "Optional; page 1 of 50 with the default columns when left out"),
    responses(
        (status = 200, description = "The count and a page of persons", body = RunResult),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such query"),
        (status = 415, description = "A body is sent, but not as application/json"),
        (status = 422, description = "Unknown columns or body fields, `page`/`per_page` out of range, or the query no longer validates (e.g. an opt-in type it names was deleted)"),
    ))]
#[post("/queries/{id}/run")]
pub async fn run_query(
    auth: Auth,
    id: web::Path<i64>,
    body: OptionalJson<Value>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let options: RunOptions = match body.into_inner() {
        Some(body) => {
            check_body_paging(&body)?;
            from_body(body)?
        }
        None => RunOptions::default(),
    };
    let result = auth
        .db(move |conn| {
            let query = mailbaar_query::get_query(conn, id)?;
            mailbaar_query::run(conn, &query.conditions, &options)
        })
        .await?;
    Ok(HttpResponse::Ok().json(result))
}
