use actix_web::{delete, get, patch, post, web, HttpResponse};
use mailbaar_access::Permission;
use mailbaar_gdpr::Anonymized;
use mailbaar_people::{NewPerson, Person, PersonCard, PersonChanges, PersonFilter};
use mailbaar_store::{Page, PageRequest};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::extract::{Json, Paging};

/// Lists persons, newest first; `q` searches names and e-mail addresses.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(PersonFilter, PageRequest),
    responses(
        (status = 200, description = "A page of persons", body = Page<Person>),
        (status = 401, description = "No valid bearer token"),
        (status = 422, description = "Malformed query parameters, or `page`/`per_page` out of range"),
    ))]
#[get("/persons")]
pub async fn list_persons(
    auth: Auth,
    filter: web::Query<PersonFilter>,
    page: Paging,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let (filter, page) = (filter.into_inner(), page.into_inner());
    let list = auth
        .db(move |conn| mailbaar_people::list_persons(conn, &filter, page))
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Creates a person. The e-mail address must be valid and not in use (in any case).
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    request_body = NewPerson,
    responses(
        (status = 201, description = "The new person", body = Person),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not write"),
        (status = 409, description = "The e-mail address is in use"),
        (status = 413, description = "Body too large"),
        (status = 422, description = "Invalid or unknown fields"),
    ))]
#[post("/persons")]
pub async fn create_person(auth: Auth, body: Json<NewPerson>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::WritePersons)?;
    let new = body.into_inner();
    let person = auth
        .db(move |conn| mailbaar_people::create_person(conn, new))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/persons/{}", person.id)))
        .json(person))
}

/// Reads one person.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    responses(
        (status = 200, description = "The person", body = Person),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such person"),
    ))]
#[get("/persons/{id}")]
pub async fn get_person(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::ReadPersons)?;
    let id = id.into_inner();
    let person = auth
        .db(move |conn| mailbaar_people::get_person(conn, id))
        .await?;
    Ok(HttpResponse::Ok().json(person))
}

/// Changes some fields of a person: absent fields stay, `null` clears a field.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    request_body = PersonChanges,
    responses(
        (status = 200, description = "The changed person", body = Person),
        (status = 400, description = "Malformed JSON"),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not write"),
        (status = 404, description = "No such person"),
        (status = 409, description = "E-mail in use, or the person is anonymized"),
        (status = 422, description = "Invalid or unknown fields"),
    ))]
#[patch("/persons/{id}")]
pub async fn update_person(
    auth: Auth,
    id: web::Path<i64>,
    body: Json<PersonChanges>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::WritePersons)?;
    let (id, changes) = (id.into_inner(), body.into_inner());
    let person = auth
        .db(move |conn| mailbaar_people::update_person(conn, id, changes))
        .await?;
    Ok(HttpResponse::Ok().json(person))
}

/// The person card: details, preferences (current state and history per opt-in type),
/// contact moments, transactions, profile, and administration with every reason the
/// person cannot be mailed. Read in a fixed number of queries, whatever the history.
#[utoipa::path(tag = "persons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    responses(
        (status = 200, description = "The person card", body = PersonCard),
        (status = 401, description = "No valid bearer token"),
        (status = 404, description = "No such person"),
    ))]
#[get("/persons/{id}/card")]
pub async fn person_card(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ReadPersons)?.label();
    let id = id.into_inner();
    let card = auth
        .db(move |conn| mailbaar_people::person_card(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(card))
}

/// Anonymizes a person: every identifying value is removed in one transaction, the
/// figures (counts, amounts, dates, consent records) are kept, and the person leaves every
/// selection. A second call changes nothing and says so (`already_anonymized`).
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    responses(
        (status = 200, description = "Anonymized now, or before", body = Anonymized),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins anonymize"),
        (status = 404, description = "No such person"),
    ))]
#[post("/persons/{id}/anonymize")]
pub async fn anonymize_person(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::Anonymize)?.label();
    let id = id.into_inner();
    let done = auth
        .db(move |conn| {
            let done = mailbaar_gdpr::anonymize(conn, id, &by)?;
            if !done.already_anonymized {
                mailbaar_gdpr::scrub_free_space(conn)?;
            }
            Ok::<_, ApiError>(done)
        })
        .await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Clears a person's bouncer flag (with its date and reason), e.g. after they gave a
/// working address; audited.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    responses(
        (status = 200, description = "The person, no longer a bouncer", body = Person),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "The role may not write"),
        (status = 404, description = "No such person"),
        (status = 409, description = "The person is anonymized"),
    ))]
#[delete("/persons/{id}/bouncer")]
pub async fn clear_bouncer(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::WritePersons)?.label();
    let id = id.into_inner();
    let (person, _) = auth
        .db(move |conn| mailbaar_people::clear_bouncer(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok().json(person))
}

/// The bytes of a PDF document, as the contract describes a binary answer.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct PdfFile(Vec<u8>);

/// The personal-data export (right of access) as a PDF: every field, the profile, the
/// consent history, contact moments, transactions and stored documents, with the
/// organisation's name and the date; Dutch or English by setting. Audited.
#[utoipa::path(tag = "gdpr", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Person id", example = 42)),
    responses(
        (status = 200, description = "The PDF", content_type = "application/pdf", body = inline(PdfFile)),
        (status = 401, description = "No valid bearer token"),
        (status = 403, description = "Only privacy officers and admins export personal data"),
        (status = 404, description = "No such person"),
    ))]
#[get("/persons/{id}/personal-data.pdf")]
pub async fn personal_data_pdf(auth: Auth, id: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let by = auth.require(Permission::ExportPersonalData)?.label();
    let id = id.into_inner();
    let pdf = auth
        .db(move |conn| mailbaar_gdpr::personal_data_pdf(conn, id, &by))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"personal-data-{id}.pdf\""),
        ))
        .body(pdf))
}
