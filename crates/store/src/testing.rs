//! Fresh databases for tests: every test gets its own SQLite file or its own PostgreSQL
//! database, created here and dropped when the value goes out of scope.
//!
//! PostgreSQL is reached through `MAILBAAR_TEST_POSTGRES_URL` (a URL to a server where the
//! user may create databases). When it is unset, PostgreSQL tests say they were skipped;
//! when `CI` is set, a missing or unreachable server fails the test instead.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::{connect, run_migrations, Backend, DatabaseUrl, Pool};

/// The environment variable that points tests at a PostgreSQL server.
pub const POSTGRES_ENV: &str = "MAILBAAR_TEST_POSTGRES_URL";

/// A database that exists for one test only.
pub struct TestDatabase {
    url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A database on the given engine, or `None` when PostgreSQL is not configured outside CI.
    pub fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres(),
        }
    }

    /// A new SQLite file in its own temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("mailbaar.db");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display())).expect("url");
        Self {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A new PostgreSQL database with a random name on the configured server.
    pub fn postgres() -> Option<Self> {
        let in_ci = std::env::var_os("CI").is_some();
        let admin = match std::env::var(POSTGRES_ENV) {
            Ok(url) if !url.trim().is_empty() => url,
            _ if in_ci => panic!("{POSTGRES_ENV} must be set when CI is set"),
            _ => {
                eprintln!("skipped: PostgreSQL test ({POSTGRES_ENV} is not set)");
                return None;
            }
        };
        let name = format!("mailbaar_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(&admin).unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {POSTGRES_ENV}: {e}");
        });
        conn.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create test database");
        let mut parsed = url::Url::parse(&admin).expect("a valid PostgreSQL URL");
        parsed.set_path(&format!("/{name}"));
        let url = DatabaseUrl::parse(parsed.as_str()).expect("url");
        Some(Self {
            url,
            _dir: None,
            postgres: Some((admin, name)),
        })
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The URL as `MAILBAAR_DATABASE_URL` would spell it.
    pub fn url_string(&self) -> String {
        match self.url.backend() {
            Backend::Sqlite => format!("sqlite://{}", self.url.target()),
            Backend::Postgres => self.url.target().to_owned(),
        }
    }

    /// A small pool over the migrated database.
    pub fn pool(&self) -> Pool {
        let pool = connect(&self.url, 4).expect("pool");
        run_migrations(&mut pool.get().expect("connection")).expect("migrations");
        pool
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            if let Ok(mut conn) = PgConnection::establish(admin) {
                let _ =
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}

/// For benchmarks that make their data in SQL: a `WITH g(i)` of the numbers `1..=n`, the
/// one place where the two engines need different text.
pub fn numbers_cte(backend: Backend, n: i64) -> String {
    match backend {
        Backend::Postgres => format!("WITH g(i) AS (SELECT generate_series(1, {n}))"),
        Backend::Sqlite => {
            format!("WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n})")
        }
    }
}

/// For benchmarks that make their data in SQL: `base` minus an SQL expression of days.
pub fn days_before_sql(backend: Backend, base: chrono::NaiveDateTime, days: &str) -> String {
    match backend {
        Backend::Postgres => {
            format!("(TIMESTAMP '{base}' - make_interval(days => ({days})::int))")
        }
        Backend::Sqlite => format!("datetime('{base}', '-' || ({days}) || ' days')"),
    }
}
