//! The OpenAPI document, derived from the handlers and types. `openapi/openapi.json` in
//! the repository is this document, kept equal by a test.

use std::sync::OnceLock;

use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mailbaar",
        description = "Headless CRM and e-mail marketing with a GDPR consent ledger. \
            Every `/api/v1` route takes `Authorization: Bearer <token>`; errors are \
            `application/problem+json` (RFC 9457) with a stable `type`.",
        license(name = "AGPL-3.0-or-later")
    ),
    paths(
        routes::health::healthz,
        routes::docs::openapi_json,
        routes::docs::docs_index,
        routes::tokens::list_tokens,
        routes::tokens::create_token,
        routes::tokens::revoke_token,
        routes::persons::list_persons,
        routes::persons::create_person,
        routes::persons::get_person,
        routes::persons::update_person,
        routes::persons::person_card,
        routes::persons::anonymize_person,
        routes::persons::personal_data_pdf,
        routes::persons::clear_bouncer,
        routes::audit::list_audit,
        routes::retention::list_rules,
        routes::retention::create_rule,
        routes::retention::dry_run,
        routes::retention::run_rule,
        routes::retention::list_runs,
        routes::transactions::list_transactions,
        routes::transactions::add_transaction,
        routes::consents::list_consents,
        routes::consents::record_consent,
        routes::consents::get_consent,
        routes::consents::unsubscribe_all,
        routes::opt_in_types::list_types,
        routes::opt_in_types::create_type,
        routes::opt_in_types::get_type,
        routes::opt_in_types::update_type,
        routes::opt_in_types::delete_type,
        routes::opt_in_types::soft_opt_ins,
        routes::queries::query_fields,
        routes::queries::run_conditions,
        routes::queries::list_queries,
        routes::queries::create_query,
        routes::queries::name_suggestion,
        routes::queries::get_query,
        routes::queries::replace_query,
        routes::queries::delete_query,
        routes::queries::copy_query,
        routes::queries::run_query,
        routes::profiles::recalculate,
        routes::tasks::get_task,
        routes::settings::get_settings,
        routes::settings::update_settings,
    ),
    modifiers(&BearerAuth, &OptionalBodies),
    tags(
        (name = "service", description = "Health and the contract itself"),
        (name = "tokens", description = "API tokens and their roles (admins only)"),
        (name = "persons", description = "Persons and their transactions"),
        (name = "consent", description = "Opt-in types and the append-only consent ledger"),
        (name = "queries", description = "Condition trees over persons, the field registry and saved queries"),
        (name = "gdpr", description = "Anonymization, bouncers and the audit log"),
        (name = "profiles", description = "Profile recalculation"),
        (name = "tasks", description = "Background tasks: progress and outcome of long work"),
        (name = "settings", description = "Organisation-wide settings"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `POST /api/v1/tokens` or `mailbaar token create`",
                    ))
                    .build(),
            ),
        );
    }
}

/// A request body the client may leave out is declared `required: false` with the plain
/// schema of what it holds. utoipa writes an `Option<T>` body as `oneOf [null, T]`, which
/// generators turn into "send `null` when left out"; the service reads a missing body and
/// `null` alike (`extract::OptionalJson`), and the contract names the missing one.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let Some(body) = operation.request_body.as_mut() else {
                    continue;
                };
                if matches!(body.required, Some(Required::True)) {
                    continue;
                }
                for content in body.content.values_mut() {
                    let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
                        continue;
                    };
                    let rest: Vec<&RefOr<Schema>> =
                        one_of.items.iter().filter(|s| !is_null(s)).collect();
                    if let [only] = rest[..] {
                        content.schema = Some(only.clone());
                    }
                }
            }
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

/// The document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a trailing newline, built once per process.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut s = document().to_pretty_json().expect("serializable document");
        s.push('\n');
        s
    })
}
