use std::fmt;

use mailbaar_store::{ErrorCode, ErrorKind};
use thiserror::Error;

/// One problem in a condition tree, at a JSON-pointer path into the tree (`/all/0/op`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub reason: String,
}

impl Issue {
    pub fn new(path: &str, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.reason)
    }
}

/// Errors of the query engine.
#[derive(Debug, Error)]
pub enum QueryError {
    #[error("invalid conditions: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConditions(Vec<Issue>),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("saved query {0} does not exist")]
    NotFound(i64),
    #[error("a saved query named {0:?} already exists")]
    DuplicateName(String),
    #[error("saved query {id} is still used: {}", .uses.join("; "))]
    InUse { id: i64, uses: Vec<String> },
    #[error(transparent)]
    People(#[from] mailbaar_people::PeopleError),
    #[error(transparent)]
    Settings(#[from] mailbaar_settings::SettingsError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ErrorCode for QueryError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("invalid_conditions", ErrorKind::Invalid),
        ("invalid_query", ErrorKind::Invalid),
        ("query_not_found", ErrorKind::NotFound),
        ("duplicate_query_name", ErrorKind::Conflict),
        ("query_in_use", ErrorKind::Conflict),
    ];

    fn kind(&self) -> ErrorKind {
        match self {
            QueryError::InvalidConditions(_) | QueryError::Invalid { .. } => ErrorKind::Invalid,
            QueryError::NotFound(_) => ErrorKind::NotFound,
            QueryError::DuplicateName(_) | QueryError::InUse { .. } => ErrorKind::Conflict,
            QueryError::People(e) => e.kind(),
            QueryError::Settings(e) => e.kind(),
            QueryError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            QueryError::InvalidConditions(_) => "invalid_conditions",
            QueryError::Invalid { .. } => "invalid_query",
            QueryError::NotFound(_) => "query_not_found",
            QueryError::DuplicateName(_) => "duplicate_query_name",
            QueryError::InUse { .. } => "query_in_use",
            QueryError::People(e) => e.code(),
            QueryError::Settings(e) => e.code(),
            QueryError::Database(e) => e.code(),
        }
    }
}
