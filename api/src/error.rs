//! The one place where errors become HTTP responses: RFC 9457 problem documents with a
//! coarse `type` per kind of failure and a stable `code` per cause. A domain error is
//! answered by its [`ErrorKind`] and published by its [`ErrorCode::code`].

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use mailbaar_access::AccessError;
use mailbaar_campaigns::CampaignError;
use mailbaar_consent::ConsentError;
use mailbaar_delivery::DeliveryError;
use mailbaar_gdpr::GdprError;
use mailbaar_people::{FieldError, PeopleError};
use mailbaar_profiles::ProfileError;
use mailbaar_query::QueryError;
use mailbaar_settings::SettingsError;
use mailbaar_store::{ErrorCode, ErrorKind, StoreError};
use mailbaar_tasks::TaskError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer (RFC 9457, `application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"type": "/problems/invalid_person", "code": "invalid_person",
    "title": "Invalid input", "status": 422, "detail": "email: not a valid e-mail address",
    "errors": [{"field": "email", "reason": "not a valid e-mail address"}]}))]
pub struct Problem {
    /// The problem type (RFC 9457 §3.1.1): `/problems/` and the stable [`Problem::code`]
    /// (`/problems/duplicate_email`, `/problems/step_not_ready`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Stable identifier of the cause (`duplicate_email`, `step_not_ready`, …); clients
    /// branch on this, never on `detail`. 500 answers `internal`, 503 `unavailable`.
    pub code: String,
    pub title: String,
    pub status: u16,
    /// What went wrong in this case, for people.
    pub detail: String,
    /// Per-field reasons, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// For `/problems/not-ready`: every requirement the step still misses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<mailbaar_campaigns::Requirement>>,
    /// For 500 and 503: the request's id (also in `X-Request-Id` and in the service's log
    /// line about it), to quote to the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The codes the API gives itself, for failures no domain error describes.
mod codes {
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NO_SUCH_RESOURCE: &str = "no_such_resource";
    pub const INVALID_INPUT: &str = "invalid_input";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const PROVIDER_NOT_CONFIGURED: &str = "provider_not_configured";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";
}

/// Every `code` a problem document can carry, sorted: the API's own and those of the
/// domain errors a client is told (not found, conflict, invalid; an internal or
/// unavailable cause answers `internal` or `unavailable`). The contract lists them as the
/// enum of `Problem.code`.
pub fn problem_codes() -> Vec<&'static str> {
    use codes::*;
    let domain: [&[(&'static str, ErrorKind)]; 12] = [
        AccessError::CODES,
        mailbaar_audit::AuditError::CODES,
        CampaignError::CODES,
        DeliveryError::CODES,
        ConsentError::CODES,
        GdprError::CODES,
        mailbaar_imports::ImportError::CODES,
        PeopleError::CODES,
        ProfileError::CODES,
        QueryError::CODES,
        SettingsError::CODES,
        TaskError::CODES,
    ];
    let told = domain.into_iter().flatten().filter_map(|(code, kind)| {
        matches!(
            kind,
            ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Invalid
        )
        .then_some(*code)
    });
    let mut all: Vec<&'static str> = [
        UNAUTHORIZED,
        FORBIDDEN,
        NO_SUCH_RESOURCE,
        INVALID_INPUT,
        BAD_REQUEST,
        BODY_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        METHOD_NOT_ALLOWED,
        PROVIDER_NOT_CONFIGURED,
        UNAVAILABLE,
        INTERNAL,
    ]
    .into_iter()
    .chain(told)
    .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Every way a request can fail, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("the role {0} may not do this")]
    Forbidden(&'static str),
    /// What the request names does not exist (404).
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// The current state refuses the request (409).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// A step that may not be sent yet (409), with every missing requirement.
    #[error("{}", .0.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; "))]
    NotReady(Vec<mailbaar_campaigns::Requirement>),
    /// Values that do not fit (422), each with its field.
    #[error("{}", .errors.iter().map(|e| format!("{}: {}", e.field, e.reason)).collect::<Vec<_>>().join("; "))]
    Invalid {
        code: &'static str,
        errors: Vec<FieldError>,
    },
    /// A provider's webhook that the provider did not demonstrably send (403): a bad
    /// signature or secret, a stale timestamp, a topic not allowed.
    #[error("{0}")]
    NotAuthentic(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A method the resource does not take (405); `allow` lists those it takes.
    #[error("{detail}")]
    MethodNotAllowed { detail: String, allow: String },
    /// The database cannot be reached; the client may retry (503 with `Retry-After`).
    #[error("the database is unavailable; try again shortly")]
    Unavailable(#[source] Cause),
    /// Anything else unexpected (500). The cause goes to the log with the request id,
    /// never to the client.
    #[error("internal error")]
    Internal(#[source] Cause),
}

/// The cause of a 500 or 503, for the log line only.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    /// The id of the request being answered, set by the request log middleware, so a 500
    /// carries the same id in its problem document as in its log line.
    pub static REQUEST_ID: String;
}

impl ApiError {
    /// Status, title and code (the problem `type` is `/problems/{code}`).
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                codes::UNAUTHORIZED,
            ),
            Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden", codes::FORBIDDEN),
            NotFound { code, .. } => (StatusCode::NOT_FOUND, "Not found", code),
            Conflict { code, .. } => (StatusCode::CONFLICT, "Conflict", code),
            NotReady(_) => (StatusCode::CONFLICT, "Not ready to send", "step_not_ready"),
            Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid input", code),
            NotAuthentic(_) => (
                StatusCode::FORBIDDEN,
                "Not authentic",
                "webhook_not_authentic",
            ),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request", codes::BAD_REQUEST),
            PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                codes::BODY_TOO_LARGE,
            ),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                codes::UNSUPPORTED_MEDIA_TYPE,
            ),
            MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                codes::METHOD_NOT_ALLOWED,
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                codes::UNAVAILABLE,
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                codes::INTERNAL,
            ),
        }
    }

    /// A single-field validation problem of the request itself (a body, query or path
    /// value the handler refuses).
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ApiError::invalid_input(vec![FieldError::new(field, reason)])
    }

    /// Validation problems of the request itself, each with its field.
    pub fn invalid_input(errors: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            code: codes::INVALID_INPUT,
            errors,
        }
    }

    /// A provider's webhook route whose provider this service is not configured for (404).
    pub fn provider_not_configured(provider: &str, variable: &str) -> Self {
        ApiError::NotFound {
            code: codes::PROVIDER_NOT_CONFIGURED,
            detail: format!("{provider} webhooks are not taken here: {variable} is not set"),
        }
    }

    /// A path that names no resource (404).
    pub fn no_such_resource(detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            code: codes::NO_SUCH_RESOURCE,
            detail: detail.into(),
        }
    }

    /// The one mapping from a domain error to its answer, by its kind; its code is
    /// published, its text is the detail. `field` names the request field an invalid
    /// value came from, with the reason; an internal or unavailable cause is only logged.
    fn by_kind<E>(e: E, field: Option<(&str, String)>) -> Self
    where
        E: ErrorCode + std::error::Error + Send + Sync + 'static,
    {
        let code = e.code();
        match e.kind() {
            ErrorKind::NotFound => ApiError::NotFound {
                code,
                detail: e.to_string(),
            },
            ErrorKind::Conflict => ApiError::Conflict {
                code,
                detail: e.to_string(),
            },
            ErrorKind::Invalid => {
                let (field, reason) = field.unwrap_or(("body", e.to_string()));
                ApiError::Invalid {
                    code,
                    errors: vec![FieldError::new(field, reason)],
                }
            }
            ErrorKind::Unavailable => ApiError::Unavailable(Box::new(e)),
            ErrorKind::Internal => ApiError::Internal(Box::new(Context {
                context: code,
                source: Box::new(e),
            })),
        }
    }

    /// [`Self::by_kind`] for an error that names no field.
    fn domain<E>(e: E) -> Self
    where
        E: ErrorCode + std::error::Error + Send + Sync + 'static,
    {
        ApiError::by_kind(e, None)
    }

    /// Several invalid fields of one domain error, published under its code.
    fn invalid_fields(code: &'static str, errors: Vec<FieldError>) -> Self {
        ApiError::Invalid { code, errors }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, title, code) = self.parts();
        let request_id = match self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => {
                let id = REQUEST_ID.try_with(Clone::clone).ok();
                let mut chain = Vec::new();
                let mut source = cause.source();
                while let Some(s) = source {
                    chain.push(s.to_string());
                    source = s.source();
                }
                tracing::error!(request_id = id.as_deref().unwrap_or("-"), error = %cause,
                    causes = ?chain, status = status.as_u16(), "request failed");
                id
            }
            _ => None,
        };
        let problem = Problem {
            kind: format!("/problems/{code}"),
            code: code.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                ApiError::Invalid { errors, .. } => Some(errors.clone()),
                _ => None,
            },
            missing: match self {
                ApiError::NotReady(m) => Some(m.clone()),
                _ => None,
            },
            request_id,
        };
        let mut res = HttpResponse::build(status);
        res.content_type("application/problem+json");
        if matches!(self, ApiError::Unauthorized) {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            res.insert_header((header::ALLOW, allow.as_str()));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            res.insert_header((header::RETRY_AFTER, "5"));
        }
        res.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

/// An error with what was being done when it happened.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
struct Context {
    context: &'static str,
    #[source]
    source: Cause,
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::domain(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Query(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(Box::new(Context {
            context: "blocking task failed",
            source: Box::new(e),
        }))
    }
}

impl From<PeopleError> for ApiError {
    fn from(e: PeopleError) -> Self {
        match e {
            PeopleError::Invalid(errors) => ApiError::invalid_fields("invalid_person", errors),
            PeopleError::Consent(err) => err.into(),
            PeopleError::Settings(err) => err.into(),
            PeopleError::Profile(err) => err.into(),
            PeopleError::Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> Self {
        match e {
            ConsentError::Selection(cause) => match cause.downcast::<QueryError>() {
                Ok(query) => (*query).into(),
                Err(other) => ApiError::Internal(other),
            },
            ConsentError::Invalid { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            ConsentError::Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::InvalidName => {
                let reason = e.to_string();
                ApiError::by_kind(e, Some(("name", reason)))
            }
            AccessError::Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidConditions(issues) => ApiError::invalid_fields(
                "invalid_conditions",
                issues
                    .into_iter()
                    .map(|i| FieldError::new(&i.path, i.reason))
                    .collect(),
            ),
            QueryError::Invalid { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            QueryError::People(err) => err.into(),
            QueryError::Settings(err) => err.into(),
            QueryError::Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<mailbaar_audit::AuditError> for ApiError {
    fn from(e: mailbaar_audit::AuditError) -> Self {
        match e {
            mailbaar_audit::AuditError::Invalid { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            mailbaar_audit::AuditError::Database(err) => err.into(),
        }
    }
}

impl From<GdprError> for ApiError {
    fn from(e: GdprError) -> Self {
        match e {
            GdprError::Invalid { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            GdprError::Query(err) => err.into(),
            GdprError::People(err) => err.into(),
            GdprError::Consent(err) => err.into(),
            GdprError::Settings(err) => err.into(),
            GdprError::Profile(err) => err.into(),
            GdprError::Task(err) => err.into(),
            GdprError::Store(err) => err.into(),
            GdprError::Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Stopped(err) => err.into(),
            ProfileError::Database(err) => err.into(),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Database(err) => err.into(),
            TaskError::Store(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        use CampaignError::*;
        match e {
            Invalid { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            NotReady(missing) => ApiError::NotReady(missing),
            Query(err) => err.into(),
            People(err) => err.into(),
            Settings(err) => err.into(),
            Task(err) => err.into(),
            Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<DeliveryError> for ApiError {
    fn from(e: DeliveryError) -> Self {
        use DeliveryError::*;
        match e {
            InvalidReport { field, ref reason }
            | InvalidTestMail { field, ref reason }
            | InvalidRecipientFilter { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            UnreadableReport {
                id,
                field,
                ref reason,
            } => {
                let reason = format!("{reason} (kept as unreadable report {id})");
                ApiError::by_kind(e, Some((field, reason)))
            }
            NotAuthentic(reason) => ApiError::NotAuthentic(reason),
            NotTestPersons(ref ids) => ApiError::invalid_fields(
                e.code(),
                ids.iter()
                    .map(|id| {
                        FieldError::new("person_ids", format!("person {id} is not a test person"))
                    })
                    .collect(),
            ),
            Campaign(err) => err.into(),
            Consent(err) => err.into(),
            People(err) => err.into(),
            Settings(err) => err.into(),
            Task(err) => err.into(),
            Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<mailbaar_imports::ImportError> for ApiError {
    fn from(e: mailbaar_imports::ImportError) -> Self {
        use mailbaar_imports::ImportError::*;
        match e {
            Invalid { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            Query(err) => err.into(),
            People(err) => err.into(),
            Consent(err) => err.into(),
            Task(err) => err.into(),
            Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Invalid { field, ref reason } => {
                let reason = reason.clone();
                ApiError::by_kind(e, Some((field, reason)))
            }
            SettingsError::Database(err) => err.into(),
            other => ApiError::domain(other),
        }
    }
}

/// Turns body, query and path parsing failures into problem documents.
pub mod extract {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::HttpRequest;

    use super::ApiError;

    pub fn json(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
        let api = match &err {
            JsonPayloadError::Overflow { limit }
            | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                ApiError::PayloadTooLarge(format!("the body is larger than {limit} bytes"))
            }
            JsonPayloadError::ContentType => {
                ApiError::UnsupportedMediaType("send the body as application/json".into())
            }
            JsonPayloadError::Deserialize(e) if e.is_data() => {
                ApiError::invalid("body", e.to_string())
            }
            JsonPayloadError::Deserialize(e) => {
                ApiError::BadRequest(format!("malformed JSON: {e}"))
            }
            other => ApiError::BadRequest(other.to_string()),
        };
        api.into()
    }

    pub fn query(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
        ApiError::invalid("query", err.to_string()).into()
    }

    /// A path parameter that does not parse: the path names no resource of this method —
    /// 405 when a resource of the contract takes the path under other methods (`GET
    /// /queries/run`), else 404.
    pub fn path(err: PathError, req: &HttpRequest) -> actix_web::Error {
        let method = req.method().as_str();
        match crate::routes::allowed_methods(req.path()) {
            Some(allow) if !allow.split(", ").any(|m| m == method) => ApiError::MethodNotAllowed {
                detail: format!("{method} is not a method of this resource; it takes {allow}"),
                allow,
            }
            .into(),
            _ => ApiError::no_such_resource(format!("no such resource: {err}")).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;

    fn db(kind: DatabaseErrorKind) -> DieselError {
        DieselError::DatabaseError(kind, Box::new("relation \"persons\" is broken".to_owned()))
    }

    fn status(e: impl Into<ApiError>) -> u16 {
        e.into().status_code().as_u16()
    }

    /// Every domain error lands on its own status, also when it arrives wrapped in another
    /// crate's error.
    #[test]
    fn each_error_maps_to_its_status() {
        use mailbaar_consent::ConsentError as C;
        use mailbaar_gdpr::GdprError as G;
        use mailbaar_tasks::TaskError as T;
        let cases: Vec<(ApiError, u16)> = vec![
            (PeopleError::NotFound(1).into(), 404),
            (PeopleError::DuplicateEmail("a@b.nl".into()).into(), 409),
            (PeopleError::Anonymized(1).into(), 409),
            (
                PeopleError::Invalid(vec![FieldError::new("email", "bad")]).into(),
                422,
            ),
            (C::PersonNotFound(1).into(), 404),
            (C::TypeInactive(1).into(), 409),
            (C::Selection(Box::new(QueryError::NotFound(3))).into(), 404),
            (
                C::Selection(Box::new(QueryError::InvalidConditions(vec![]))).into(),
                422,
            ),
            (
                C::Selection(Box::new(QueryError::Database(db(
                    DatabaseErrorKind::Unknown,
                ))))
                .into(),
                500,
            ),
            (C::Selection(Box::new(std::fmt::Error)).into(), 500),
            (QueryError::DuplicateName("x".into()).into(), 409),
            (
                QueryError::InUse {
                    id: 1,
                    uses: vec![],
                }
                .into(),
                409,
            ),
            (QueryError::People(PeopleError::NotFound(2)).into(), 404),
            (G::Query(QueryError::NotFound(4)).into(), 404),
            (G::People(PeopleError::Anonymized(4)).into(), 409),
            (G::RuleNotFound(1).into(), 404),
            (G::RuleInactive(1).into(), 409),
            (T::NotFound(9).into(), 404),
            (
                CampaignError::NotFound {
                    what: "mail job",
                    id: 3,
                }
                .into(),
                404,
            ),
            (CampaignError::JobNotPaused { id: 1 }.into(), 409),
            (CampaignError::NotReady(vec![]).into(), 409),
            (DeliveryError::NotTestPersons(vec![4]).into(), 422),
            (
                DeliveryError::UnreadableReport {
                    id: 1,
                    field: "delivery-status",
                    reason: "no Action".into(),
                }
                .into(),
                422,
            ),
            (DeliveryError::UnreadableReportNotFound(3).into(), 404),
            (CampaignError::Query(QueryError::NotFound(4)).into(), 404),
            (
                CampaignError::Task(T::AlreadyActive {
                    kind: "k".into(),
                    task_id: 1,
                })
                .into(),
                409,
            ),
            (
                T::AlreadyActive {
                    kind: "k".into(),
                    task_id: 1,
                }
                .into(),
                409,
            ),
            (
                T::UnknownState {
                    id: 1,
                    state: "odd".into(),
                }
                .into(),
                500,
            ),
            (
                SettingsError::Unreadable {
                    key: "language".into(),
                    reason: "not JSON".into(),
                }
                .into(),
                500,
            ),
            (
                AccessError::UnknownRole {
                    token_id: 1,
                    role: "root".into(),
                }
                .into(),
                500,
            ),
            (db(DatabaseErrorKind::ClosedConnection).into(), 503),
            (db(DatabaseErrorKind::UnableToSendCommand).into(), 503),
            (db(DatabaseErrorKind::SerializationFailure).into(), 500),
            (
                DieselError::DatabaseError(
                    DatabaseErrorKind::Unknown,
                    Box::new("database is locked".to_owned()),
                )
                .into(),
                503,
            ),
            (
                SettingsError::Unreadable {
                    key: "profiles_daily_hour".into(),
                    reason: "99".into(),
                }
                .into(),
                500,
            ),
            (DieselError::NotFound.into(), 500),
        ];
        let codes = problem_codes();
        for (i, (error, expected)) in cases.into_iter().enumerate() {
            let code = error.parts().2;
            assert!(
                codes.contains(&code),
                "case {i}: {code} is not in the contract"
            );
            assert_eq!(status(error), expected, "case {i}");
        }
    }

    /// A domain error publishes its own code, also when it arrives wrapped.
    #[test]
    fn each_error_publishes_its_code() {
        let cases: Vec<(ApiError, &str)> = vec![
            (
                PeopleError::DuplicateEmail("a@b.nl".into()).into(),
                "duplicate_email",
            ),
            (
                QueryError::People(PeopleError::Anonymized(1)).into(),
                "person_anonymized",
            ),
            (GdprError::RuleInactive(2).into(), "retention_rule_inactive"),
            (
                CampaignError::NotFound {
                    what: "campaign step",
                    id: 3,
                }
                .into(),
                "campaign_step_not_found",
            ),
            (CampaignError::NotReady(vec![]).into(), "step_not_ready"),
            (
                ConsentError::Selection(Box::new(QueryError::NotFound(3))).into(),
                "query_not_found",
            ),
            (ApiError::invalid("page", "not a number"), "invalid_input"),
        ];
        for (error, code) in cases {
            let doc = body(error.error_response());
            assert_eq!(doc["code"], code, "{doc}");
        }
    }

    /// A variant's code is listed with the kind the variant has.
    #[test]
    fn codes_are_listed_with_their_kind() {
        fn listed<E: ErrorCode>(e: E) {
            let entry = (e.code(), e.kind());
            assert!(E::CODES.contains(&entry), "{entry:?} is not listed");
        }
        listed(PeopleError::DuplicateEmail("a@b.nl".into()));
        listed(PeopleError::Invalid(vec![]));
        listed(ConsentError::TypeReferenced {
            id: 1,
            uses: vec![],
        });
        listed(QueryError::InUse {
            id: 1,
            uses: vec![],
        });
        listed(GdprError::RunUnderWay {
            rule_id: 1,
            task_id: 2,
        });
        listed(DeliveryError::NotTestPersons(vec![1]));
        listed(DeliveryError::UnreadableReport {
            id: 1,
            field: "body",
            reason: "r".into(),
        });
        listed(DeliveryError::UnreadableReportNotFound(1));
        listed(TaskError::LeaseLost(1));
        listed(AccessError::UnknownRole {
            token_id: 1,
            role: "root".into(),
        });
        listed(SettingsError::Unreadable {
            key: "k".into(),
            reason: "r".into(),
        });
    }

    fn body(res: HttpResponse) -> serde_json::Value {
        let bytes = res.into_body().try_into_bytes().expect("a complete body");
        serde_json::from_slice(&bytes).expect("a problem document")
    }

    /// A 500 or 503 never shows its cause; a 503 says when to retry.
    #[test]
    fn unexpected_errors_hide_their_cause() {
        let internal: ApiError = db(DatabaseErrorKind::Unknown).into();
        let res = internal.error_response();
        assert_eq!(res.status().as_u16(), 500);
        let doc = body(res);
        assert_eq!(doc["type"], "/problems/internal");
        assert!(!doc.to_string().contains("persons"), "{doc}");

        let down: ApiError = db(DatabaseErrorKind::ClosedConnection).into();
        let res = down.error_response();
        assert_eq!(res.status().as_u16(), 503);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "5");
        let doc = body(res);
        assert_eq!(doc["type"], "/problems/unavailable");
        assert!(!doc.to_string().contains("persons"), "{doc}");
    }
}
