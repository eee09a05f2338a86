use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};

use crate::StoreError;

/// The one connection type of the project: a SQLite or a PostgreSQL connection behind a
/// single diesel `Connection`, so domain code is written once for both engines.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl DbConnection {
    /// Which engine this connection talks to, for the rare backend-specific statement.
    pub fn backend(&self) -> Backend {
        match self {
            DbConnection::Pg(_) => Backend::Postgres,
            DbConnection::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Runs `f` in a transaction that, on SQLite, takes the write lock at its start
/// (`BEGIN IMMEDIATE`). SQLite's default transaction starts as a reader and fails with
/// "database is locked" when it later writes after another writer committed (its snapshot
/// cannot be upgraded, so `busy_timeout` does not help); taking the lock first makes
/// concurrent writers wait instead. On PostgreSQL, and inside a transaction that is already
/// open, it is an ordinary (nested) diesel transaction. Every write transaction of the
/// domain crates goes through this.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let top_level_sqlite = match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c)
            .transaction_depth()?
            .is_none(),
        DbConnection::Pg(_) => false,
    };
    if !top_level_sqlite {
        return conn.transaction(f);
    }
    if let DbConnection::Sqlite(c) = conn {
        AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
    }
    let result = f(conn);
    let DbConnection::Sqlite(c) = conn else {
        unreachable!("checked above")
    };
    match result {
        Ok(value) => match AnsiTransactionManager::commit_transaction(c) {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = AnsiTransactionManager::rollback_transaction(c);
                Err(e.into())
            }
        },
        Err(e) => {
            AnsiTransactionManager::rollback_transaction(c)?;
            Err(e)
        }
    }
}

/// The two supported engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A parsed `MAILBAAR_DATABASE_URL`: the scheme picks the engine, never a trial connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// For SQLite the file path, for PostgreSQL the whole URL.
    target: String,
}

impl DatabaseUrl {
    /// Accepts `sqlite://relative.db`, `sqlite:///absolute.db`, `postgres://…` and
    /// `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::InvalidUrl(url.to_owned()));
            }
            return Ok(Self {
                backend: Backend::Sqlite,
                target: path.to_owned(),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self {
                backend: Backend::Postgres,
                target: url.to_owned(),
            });
        }
        Err(StoreError::InvalidUrl(url.to_owned()))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite file path or the PostgreSQL URL.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Opens one connection with the per-connection settings every engine needs.
    pub fn establish(&self) -> Result<DbConnection, diesel::r2d2::Error> {
        use diesel::r2d2::Error;
        match self.backend {
            Backend::Sqlite => {
                let mut conn =
                    SqliteConnection::establish(&self.target).map_err(Error::ConnectionError)?;
                crate::register_sqlite_functions(&mut conn).map_err(Error::QueryError)?;
                // WAL lets readers run beside the writer; busy_timeout makes writers wait
                // instead of failing; secure_delete zeroes erased personal data on disk.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA busy_timeout = 10000;
                     PRAGMA secure_delete = ON;",
                )
                .map_err(Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            Backend::Postgres => {
                let mut conn =
                    PgConnection::establish(&self.target).map_err(Error::ConnectionError)?;
                // JIT compilation costs ~60 ms on a selection over a million persons and
                // saves nothing at that size (measured with the newsletter benchmark).
                conn.batch_execute("SET TIME ZONE 'UTC'; SET jit = off")
                    .map_err(Error::QueryError)?;
                Ok(DbConnection::Pg(conn))
            }
        }
    }
}

/// The r2d2 manager: opens connections of the engine the URL names.
#[derive(Debug)]
pub struct Manager {
    url: DatabaseUrl,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        self.url.establish()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        match conn {
            DbConnection::Pg(c) => c.is_broken(),
            DbConnection::Sqlite(c) => c.is_broken(),
        }
    }
}

/// The shared connection pool; diesel is synchronous, so callers use it from a blocking
/// thread, never from an async executor thread.
#[derive(Clone)]
pub struct Pool {
    inner: r2d2::Pool<Manager>,
    backend: Backend,
    checkouts: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Counts connections taken from the pool.
#[derive(Debug)]
struct CountCheckouts(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl r2d2::HandleEvent for CountCheckouts {
    fn handle_checkout(&self, _: r2d2::event::CheckoutEvent) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A connection borrowed from the [`Pool`].
pub type PooledConnection = r2d2::PooledConnection<Manager>;

impl Pool {
    pub fn get(&self) -> Result<PooledConnection, StoreError> {
        Ok(self.inner.get()?)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many times a connection was taken from the pool since it was made; tests use
    /// it to show that a request takes one.
    pub fn checkouts(&self) -> u64 {
        self.checkouts.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Builds the pool for a database URL and checks that one connection can be opened.
pub fn connect(url: &DatabaseUrl, max_size: u32) -> Result<Pool, StoreError> {
    let checkouts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let inner = r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        .event_handler(Box::new(CountCheckouts(checkouts.clone())))
        .build(Manager { url: url.clone() })?;
    Ok(Pool {
        inner,
        backend: url.backend(),
        checkouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_picks_the_backend() {
        let s = DatabaseUrl::parse("sqlite://mailbaar.db").unwrap();
        assert_eq!(s.backend(), Backend::Sqlite);
        assert_eq!(s.target(), "mailbaar.db");
        let a = DatabaseUrl::parse("sqlite:///var/lib/m.db").unwrap();
        assert_eq!(a.target(), "/var/lib/m.db");
        let p = DatabaseUrl::parse("postgres://u@h/db").unwrap();
        assert_eq!(p.backend(), Backend::Postgres);
        assert!(DatabaseUrl::parse("postgresql://u@h/db").is_ok());
        assert!(DatabaseUrl::parse("mysql://u@h/db").is_err());
        assert!(DatabaseUrl::parse("mailbaar.db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }
}
