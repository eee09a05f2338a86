//! HTTP routes: each handler parses, authorises, calls one domain function and maps the
//! result. Nothing here decides a business rule.

pub mod audit;
pub mod bounces;
pub mod campaigns;
pub mod consents;
pub mod docs;
pub mod health;
pub mod imports;
pub mod mailjobs;
pub mod opt_in_types;
pub mod persons;
pub mod profiles;
pub mod providers;
pub mod queries;
pub mod recipient;
pub mod retention;
pub mod settings;
pub mod tasks;
pub mod tokens;
pub mod transactions;

use actix_web::dev::HttpServiceFactory;
use actix_web::web;
use utoipa::openapi::path::Paths;
use utoipa::openapi::{RefOr, Schema};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{scope, OpenApiFactory};

use crate::error::ApiError;

/// Registers every route of the service, and so declares the contract: each handler
/// registered with `service` brings its `#[utoipa::path]` operation into the OpenAPI
/// document ([`crate::openapi::document`]), which also answers which methods a path takes
/// ([`allowed_methods`]). Routes outside the contract (the UI's assets, the recipient
/// pages) are registered through `map`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health::healthz)
        .service(docs::openapi_json)
        .service(docs::docs_index)
        .service(providers::ses)
        .service(providers::sendgrid)
        .service(providers::mailgun)
        .service(providers::postmark)
        .map(|cfg| {
            cfg.service(docs::docs_asset)
                .service(recipient::preferences)
                .service(recipient::save_preferences)
                .service(recipient::unsubscribe_page)
                .service(recipient::unsubscribe)
                .service(recipient::open_pixel)
                .service(recipient::click)
                .service(recipient::table_click)
                .service(recipient::view_online)
        })
        .service(
            scope("/api/v1")
                .service(tokens::list_tokens)
                .service(tokens::create_token)
                .service(tokens::revoke_token)
                .service(persons::list_persons)
                .service(persons::create_person)
                .service(persons::get_person)
                .service(persons::person_card)
                .service(persons::anonymize_person)
                .service(persons::personal_data_pdf)
                .service(persons::clear_bouncer)
                .service(audit::list_audit)
                .service(retention::list_rules)
                .service(retention::create_rule)
                .service(retention::dry_run)
                .service(retention::run_rule)
                .service(retention::list_runs)
                .service(persons::update_person)
                .service(transactions::list_transactions)
                .service(transactions::add_transaction)
                .service(opt_in_types::list_types)
                .service(opt_in_types::create_type)
                .service(opt_in_types::get_type)
                .service(opt_in_types::update_type)
                .service(opt_in_types::delete_type)
                .service(opt_in_types::soft_opt_ins)
                .service(queries::query_fields)
                .service(queries::run_conditions)
                .service(queries::name_suggestion)
                .service(queries::list_queries)
                .service(queries::create_query)
                .service(queries::get_query)
                .service(queries::replace_query)
                .service(queries::delete_query)
                .service(queries::copy_query)
                .service(queries::run_query)
                .service(profiles::recalculate)
                .service(tasks::get_task)
                .service(campaigns::list_campaigns)
                .service(campaigns::create_campaign)
                .service(campaigns::get_campaign)
                .service(campaigns::update_campaign)
                .service(campaigns::delete_campaign)
                .service(campaigns::list_steps)
                .service(campaigns::create_step)
                .service(campaigns::get_step)
                .service(campaigns::update_step)
                .service(campaigns::delete_step)
                .service(campaigns::readiness)
                .service(campaigns::preview)
                .service(campaigns::test_mail)
                .service(campaigns::send)
                .service(campaigns::reset)
                .service(campaigns::delete_test_moments)
                .service(campaigns::results)
                .service(mailjobs::list_mail_jobs)
                .service(mailjobs::get_mail_job)
                .service(mailjobs::reschedule)
                .service(mailjobs::cancel)
                .service(mailjobs::pause)
                .service(mailjobs::resume)
                .service(mailjobs::resend_in_doubt)
                .service(mailjobs::list_recipients)
                .service(bounces::report)
                .service(bounces::list_unreadable)
                .service(bounces::get_unreadable)
                .service(imports::create_import)
                .service(imports::get_import)
                .service(imports::import_errors)
                .service(imports::export)
                .service(settings::get_settings)
                .service(settings::update_settings)
                // The ledger answers 405 to every method that would change a record.
                .service(Documented::new(
                    web::resource("/persons/{id}/consents")
                        .route(web::get().to(consents::list_consents))
                        .route(web::post().to(consents::record_consent))
                        .default_service(web::to(consents::append_only)),
                    &[
                        &consents::__path_list_consents,
                        &consents::__path_record_consent,
                    ],
                ))
                .service(Documented::new(
                    web::resource("/persons/{id}/consents/{record_id}")
                        .route(web::get().to(consents::get_consent))
                        .default_service(web::to(consents::append_only)),
                    &[&consents::__path_get_consent],
                ))
                .service(Documented::new(
                    web::resource("/persons/{id}/unsubscribe-all")
                        .route(web::post().to(consents::unsubscribe_all))
                        .default_service(web::to(not_found)),
                    &[&consents::__path_unsubscribe_all],
                )),
        );
}

/// A resource registered with its own routes (and its own answer to other methods),
/// documented by the `#[utoipa::path]` operations of its handlers: `service` collects
/// only handlers declared with a method macro (`#[get(…)]`).
struct Documented {
    resource: actix_web::Resource,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Documented {
    fn new(resource: actix_web::Resource, operations: &[&dyn OpenApiFactory]) -> Self {
        let mut paths = Paths::new();
        let mut schemas = Vec::new();
        for operation in operations {
            paths.merge(operation.paths());
            operation.schemas(&mut schemas);
        }
        Documented {
            resource,
            paths,
            schemas,
        }
    }
}

impl HttpServiceFactory for Documented {
    fn register(self, config: &mut actix_web::dev::AppService) {
        self.resource.register(config);
    }
}

impl OpenApiFactory for Documented {
    fn paths(&self) -> Paths {
        self.paths.clone()
    }

    fn schemas(&self, schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.extend(self.schemas.iter().cloned());
    }
}

/// The answer for requests no route takes: 405 with `Allow` when the path is a resource
/// of the contract under another method, else 404.
pub async fn not_found(
    req: actix_web::HttpRequest,
    state: web::Data<crate::state::AppState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    if req.path().starts_with("/r/") {
        return Ok(recipient::elsewhere(&state, req.path()).await);
    }
    match allowed_methods(req.path()) {
        Some(allow) => Err(ApiError::MethodNotAllowed {
            detail: format!(
                "{} is not a method of this resource; it takes {allow}",
                req.method()
            ),
            allow,
        }),
        None => Err(ApiError::no_such_resource("no such resource")),
    }
}

/// The methods the contract declares for a request path (`GET, POST`), from the one
/// OpenAPI document, so a new route needs no entry here.
pub fn allowed_methods(path: &str) -> Option<String> {
    use std::sync::OnceLock;
    type Template = (Vec<String>, String);
    static PATHS: OnceLock<Vec<Template>> = OnceLock::new();
    let paths = PATHS.get_or_init(|| {
        crate::openapi::document()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let methods: Vec<&str> = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, has)| has.then_some(m))
                .collect();
                (
                    template
                        .trim_matches('/')
                        .split('/')
                        .map(str::to_owned)
                        .collect(),
                    methods.join(", "),
                )
            })
            .collect()
    });
    // A path with a trailing slash (`/api/v1/persons/`) is another resource, which no
    // route takes: a 404, not a 405 naming the methods of the path without it.
    if path.len() > 1 && path.ends_with('/') {
        return None;
    }
    let asked: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    paths
        .iter()
        .find(|(template, _)| {
            template.len() == asked.len()
                && template.iter().zip(&asked).all(|(t, a)| {
                    (t.starts_with('{') && t.ends_with('}') && !a.is_empty()) || t == a
                })
        })
        .map(|(_, allow)| allow.clone())
}
