//! The one place where domain errors become HTTP responses: RFC 9457 problem documents
//! with a stable `type` per kind of failure.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use mailbaar_access::AccessError;
use mailbaar_consent::ConsentError;
use mailbaar_gdpr::GdprError;
use mailbaar_people::{FieldError, PeopleError};
use mailbaar_profiles::ProfileError;
use mailbaar_query::QueryError;
use mailbaar_settings::SettingsError;
use mailbaar_store::StoreError;
use mailbaar_tasks::TaskError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer (RFC 9457, `application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"type": "/problems/validation", "title": "Invalid input",
    "status": 422, "detail": "email: not a valid e-mail address",
    "errors": [{"field": "email", "reason": "not a valid e-mail address"}]}))]
pub struct Problem {
    /// Stable identifier of the kind of problem; clients branch on this.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong in this case, for people.
    pub detail: String,
    /// Per-field reasons, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Every way a request can fail, as the API reports it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("the role {0} may not do this")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.reason)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid input",
            ),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Body too large"),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Unavailable",
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// A single-field validation problem.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, reason)])
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, slug, title) = self.parts();
        let problem = Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: match self {
                ApiError::Invalid(e) => Some(e.clone()),
                _ => None,
            },
        };
        let mut res = HttpResponse::build(status);
        res.content_type("application/problem+json");
        if matches!(self, ApiError::Unauthorized) {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(%error, "{context}");
    ApiError::Internal
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        internal("database query failed", &e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Connect(err) => {
                tracing::error!(error = %err, "no database connection");
                ApiError::Unavailable
            }
            StoreError::Query(err) => err.into(),
            other => internal("storage failed", &other),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        internal("blocking task failed", &e)
    }
}

impl From<PeopleError> for ApiError {
    fn from(e: PeopleError) -> Self {
        match e {
            PeopleError::NotFound(_) => ApiError::NotFound(e.to_string()),
            PeopleError::DuplicateEmail(_) | PeopleError::Anonymized(_) => {
                ApiError::Conflict(e.to_string())
            }
            PeopleError::Invalid(errors) => ApiError::Invalid(errors),
            PeopleError::Consent(err) => err.into(),
            PeopleError::Settings(err) => err.into(),
            PeopleError::Profile(err) => err.into(),
            PeopleError::Database(err) => err.into(),
        }
    }
}

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> Self {
        use ConsentError::*;
        match e {
            PersonNotFound(_) | TypeNotFound(_) | RecordNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            Anonymized(_) | TypeInactive(_) | DuplicateName(_) | TypeInUse(_) | NoSoftQuery(_)
            | Selection(_) => ApiError::Conflict(e.to_string()),
            Invalid { field, reason } => ApiError::invalid(field, reason),
            Database(err) => err.into(),
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::InvalidName => ApiError::invalid("name", e.to_string()),
            AccessError::NotFound(_) => ApiError::NotFound(e.to_string()),
            AccessError::AlreadyRevoked(_) => ApiError::Conflict(e.to_string()),
            AccessError::Database(err) => err.into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidConditions(issues) => ApiError::Invalid(
                issues
                    .into_iter()
                    .map(|i| FieldError::new(&i.path, i.reason))
                    .collect(),
            ),
            QueryError::Invalid { field, reason } => ApiError::invalid(field, reason),
            QueryError::NotFound(_) => ApiError::NotFound(e.to_string()),
            QueryError::DuplicateName(_) | QueryError::InUse { .. } => {
                ApiError::Conflict(e.to_string())
            }
            QueryError::People(err) => err.into(),
            QueryError::Settings(err) => err.into(),
            QueryError::Database(err) => err.into(),
        }
    }
}

impl From<GdprError> for ApiError {
    fn from(e: GdprError) -> Self {
        match e {
            GdprError::PersonNotFound(_) | GdprError::RuleNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            GdprError::Invalid { field, reason } => ApiError::invalid(field, reason),
            GdprError::Conflict(_) => ApiError::Conflict(e.to_string()),
            GdprError::Pdf(err) => internal("making a PDF failed", &err),
            GdprError::Query(err) => err.into(),
            GdprError::People(err) => err.into(),
            GdprError::Consent(err) => err.into(),
            GdprError::Settings(err) => err.into(),
            GdprError::Profile(err) => err.into(),
            GdprError::Task(err) => err.into(),
            GdprError::Store(err) => err.into(),
            GdprError::Database(err) => err.into(),
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Database(err) => err.into(),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound(_) => ApiError::NotFound(e.to_string()),
            TaskError::AlreadyActive { .. } => ApiError::Conflict(e.to_string()),
            TaskError::UnknownState { .. } | TaskError::Payload { .. } => {
                internal("a stored task cannot be read", &e)
            }
            TaskError::Database(err) => err.into(),
            TaskError::Store(err) => err.into(),
        }
    }
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Invalid { field, reason } => ApiError::invalid(field, reason),
            SettingsError::Database(err) => err.into(),
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

    pub fn path(err: PathError, _req: &HttpRequest) -> actix_web::Error {
        ApiError::NotFound(format!("no such resource: {err}")).into()
    }
}
