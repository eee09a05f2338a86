//! HTTP routes: each handler parses, authorises, calls one domain function and maps the
//! result. Nothing here decides a business rule.

pub mod docs;
pub mod health;
pub mod persons;
pub mod tokens;
pub mod transactions;

use actix_web::web;

use crate::error::ApiError;

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz)
        .service(docs::openapi_json)
        .service(docs::docs_index)
        .service(docs::docs_asset)
        .service(
            web::scope("/api/v1")
                .service(tokens::list_tokens)
                .service(tokens::create_token)
                .service(tokens::revoke_token)
                .service(persons::list_persons)
                .service(persons::create_person)
                .service(persons::get_person)
                .service(persons::update_person)
                .service(transactions::list_transactions)
                .service(transactions::add_transaction),
        );
}

/// The answer for paths that exist under no route.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such resource".into()))
}
