//! The OpenAPI document, derived from the routes as registered and from the handlers'
//! types. `openapi/openapi.json` in the repository is this document, kept equal by a test.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{Object, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::{routes, MAX_JSON_BODY};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mailbaar",
        description = "Headless CRM and e-mail marketing with a GDPR consent ledger. \
            Every `/api/v1` route takes `Authorization: Bearer <token>`; errors are \
            `application/problem+json` (RFC 9457) with a `type` per kind of problem and a \
            stable `code` per cause.",
        license(name = "AGPL-3.0-or-later")
    ),
    // The import's mapping travels as JSON in a query parameter; the problem document is
    // the body of every error answer (`ProblemBodies`). Their schemas are named here.
    components(schemas(
        mailbaar_imports::ImportMapping,
        mailbaar_imports::ImportMode,
        crate::error::Problem
    )),
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
        (name = "campaigns", description = "Campaigns, campaign steps and mail jobs: sending a mailing"),
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
            for operation in operations(item) {
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

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Input rules the service enforces that a field attribute cannot state: string fields
/// that take a closed set of values (utoipa has no per-field `enum`; `Problem.code` lists
/// every code of [`crate::error::problem_codes`]), and the name of a new token, which
/// `mailbaar_access::register` checks (1 to 100 characters, trimmed). A field that is no
/// longer there is a bug here, not a rule to drop silently.
struct InputRules;

impl Modify for InputRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schemas = &mut openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas;
        let name = property(schemas, "NewToken", "name");
        name.min_length = Some(1);
        name.max_length = Some(100);
        let codes = crate::error::problem_codes();
        property(schemas, "Problem", "code").enum_values =
            Some(codes.iter().map(|c| serde_json::Value::from(*c)).collect());
        property(schemas, "Problem", "type").enum_values = Some(
            codes
                .iter()
                .map(|c| serde_json::Value::from(format!("/problems/{c}")))
                .collect(),
        );
    }
}

fn slot<'a>(
    schemas: &'a mut BTreeMap<String, RefOr<Schema>>,
    schema: &str,
    name: &str,
) -> &'a mut RefOr<Schema> {
    let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema) else {
        panic!("the contract has no object schema {schema}");
    };
    object
        .properties
        .get_mut(name)
        .unwrap_or_else(|| panic!("schema {schema} has no property {name}"))
}

fn property<'a>(
    schemas: &'a mut BTreeMap<String, RefOr<Schema>>,
    schema: &str,
    name: &str,
) -> &'a mut Object {
    match slot(schemas, schema, name) {
        RefOr::T(Schema::Object(field)) => field,
        _ => panic!("property {name} of schema {schema} is not a plain one"),
    }
}

/// The answers every operation of a kind can give, whatever its handler, declared here
/// once so that none is left out (`tests/contract.rs` checks the rule): an operation with a
/// request body can answer 400 (malformed JSON), 413 (larger than [`MAX_JSON_BODY`]), 415
/// (not sent as `application/json`) and 422 (a value that does not fit); one with query
/// parameters 422 (`error::extract::query`, `extract::Paging`); one with path parameters
/// 404 (`error::extract::path`); one behind a bearer token 401; and every `/api/v1`
/// operation 500 and 503 (`ApiError::Unavailable`: no database connection). Each is a
/// problem document; a description the operation gives itself is kept.
struct StandardResponses;

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let too_large = format!(
            "The body is larger than {MAX_JSON_BODY} bytes ({} KiB)",
            MAX_JSON_BODY / 1024
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/api/v1/");
            for operation in operations(item) {
                let given = |place: ParameterIn| {
                    operation
                        .parameters
                        .iter()
                        .flatten()
                        .any(|p| p.parameter_in == place)
                };
                let (query, in_path) = (given(ParameterIn::Query), given(ParameterIn::Path));
                let mut standard: Vec<(&str, &str)> = Vec::new();
                if operation.request_body.is_some() {
                    standard.extend([
                        ("400", "Malformed JSON"),
                        ("413", too_large.as_str()),
                        ("415", "The body is not sent as `application/json`"),
                        (
                            "422",
                            "A body field is missing, unknown or invalid (the error names it)",
                        ),
                    ]);
                }
                if query {
                    standard.push((
                        "422",
                        "A query parameter is malformed or out of range (the error names it)",
                    ));
                }
                if in_path {
                    standard.push((
                        "404",
                        "No such resource, or a path parameter that is not a number",
                    ));
                }
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    standard.push(("401", "No valid bearer token"));
                }
                if api {
                    standard.extend([
                        ("500", "Internal error; the service log has the cause"),
                        ("503", "The database is unavailable; try again later"),
                    ]);
                }
                let responses = &mut operation.responses.responses;
                for (status, description) in standard {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description));
                }
            }
        }
    }
}

/// Every error answer (4xx, 5xx) is a problem document: an operation declares an error
/// response by its status and description alone (`(status = 409, description = "…")`),
/// and its body is set here, once.
struct ProblemBodies;

impl Modify for ProblemBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.starts_with(['4', '5']) && response.content.is_empty() {
                        response
                            .content
                            .insert("application/problem+json".to_owned(), problem_content());
                    }
                }
            }
        }
    }
}

/// The body of an error answer: a `Problem` as `application/problem+json`.
fn problem_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", problem_content())
        .build()
        .into()
}

/// The document as a value: the operations of the handlers [`routes::configure`]
/// registers (the same declaration the router is built from), within this file's
/// description, tags and schemas, completed by the rules above.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut document) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes::configure)
        .split_for_parts();
    let rules: [&dyn Modify; 5] = [
        &BearerAuth,
        &OptionalBodies,
        &InputRules,
        &StandardResponses,
        &ProblemBodies,
    ];
    for rule in rules {
        rule.modify(&mut document);
    }
    document
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
