use thiserror::Error;

/// What can go wrong below the domain: configuration, connecting, migrating, querying.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    InvalidUrl(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::r2d2::PoolError),
    /// The migration harness failed; its error is the source.
    #[error("migrations failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// The kind of a failure, which decides how it is answered (the API maps each kind to one
/// HTTP status): the same kind from any crate means the same thing to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// What the request names does not exist.
    NotFound,
    /// The request is understood and valid, but the current state refuses it.
    Conflict,
    /// A value in the request is not acceptable.
    Invalid,
    /// The database is out of reach or busy past its wait; worth a retry.
    Unavailable,
    /// A fault of the service (a stored value it cannot read, a failed query).
    Internal,
}

/// An error with a kind and a stable code per variant: the code (snake_case, e.g.
/// `duplicate_email`) is published to clients, who branch on it instead of on the text,
/// so a code never changes once released. An error that wraps another crate's error
/// answers with the wrapped one's kind and code.
pub trait ErrorCode {
    /// Every code this type's own variants give (not those of the errors it wraps), with
    /// its kind, for the list of codes in the contract.
    const CODES: &'static [(&'static str, ErrorKind)];

    /// How the failure is answered.
    fn kind(&self) -> ErrorKind;

    /// The stable code of this variant; one of [`Self::CODES`] or a wrapped error's code.
    fn code(&self) -> &'static str;
}

/// Whether a database error means the database is out of reach (the connection broke or
/// could not be used) or busy past its wait (SQLite's write lock held by another process
/// beyond `busy_timeout`), rather than that this statement failed: worth a retry.
fn unreachable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().starts_with("database is locked")
        }
        _ => false,
    }
}

impl ErrorCode for diesel::result::Error {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("database_unavailable", ErrorKind::Unavailable),
        ("database_failed", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        if unreachable(self) {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        }
    }

    fn code(&self) -> &'static str {
        if unreachable(self) {
            "database_unavailable"
        } else {
            "database_failed"
        }
    }
}

impl ErrorCode for StoreError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("invalid_database_url", ErrorKind::Internal),
        ("database_unavailable", ErrorKind::Unavailable),
        ("migration_failed", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::InvalidUrl(_) | StoreError::Migration(_) => ErrorKind::Internal,
            StoreError::Connect(_) => ErrorKind::Unavailable,
            StoreError::Query(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StoreError::InvalidUrl(_) => "invalid_database_url",
            StoreError::Connect(_) => "database_unavailable",
            StoreError::Migration(_) => "migration_failed",
            StoreError::Query(e) => e.code(),
        }
    }
}
