//! Fresh databases for tests: every test gets its own SQLite file or its own PostgreSQL
//! database, created here and dropped when the value goes out of scope; and
//! [`both_engines!`](crate::both_engines), which makes one test function a SQLite and a
//! PostgreSQL test.
//!
//! PostgreSQL is reached through `MAILBAAR_TEST_POSTGRES_URL` (a URL to a server where the
//! user may create databases). When it is unset, the PostgreSQL tests report as ignored
//! (decided when they are built, by `crates/store/build.rs`); when `CI` is set, a missing
//! or unreachable server fails them instead. Benchmarks, which are never ignored, skip
//! PostgreSQL with a message when the variable is unset.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::{connect, run_migrations, Backend, DatabaseUrl, DbConnection, Pool};

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
        // A test server on loopback needs no TLS, and libpq's TLS state torn down at process
        // exit while a pool thread still holds a connection can abort the test process.
        let admin = if admin.contains("sslmode=") {
            admin
        } else {
            let sep = if admin.contains('?') { '&' } else { '?' };
            format!("{admin}{sep}sslmode=disable")
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

/// Runs a test on a fresh, migrated database of the engine, with one connection of its
/// pool: what [`both_engines!`](crate::both_engines) calls for each engine by default.
/// Does nothing when PostgreSQL is not configured (outside CI), where the test is ignored.
pub fn on(backend: Backend, test: impl FnOnce(&mut DbConnection)) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    test(&mut pool.get().expect("connection"));
}

/// Declares each named test function as two tests, `NAME::sqlite` and `NAME::postgres`;
/// the PostgreSQL one is `#[ignore]`d when `MAILBAAR_TEST_POSTGRES_URL` was unset (and
/// `CI` was not) at build time. A crate that uses it builds with `crates/store/build.rs`
/// (`build = "../store/build.rs"` in its `Cargo.toml`), which sets that cfg.
///
/// - `both_engines!(a, b)`: `fn a(&mut DbConnection)`, run through [`testing::on`](on).
/// - `both_engines!(backend: a, b)`: `fn a(Backend)`, which makes its own databases.
/// - `both_engines!(with run: a, b)`: `run(Backend, a)` for any other signature (`run` is
///   a function of the test file or a path).
/// - `async backend:` and `async with run:`: the same for `async fn` tests, run on
///   actix's runtime (`actix_rt` must be a dependency of the crate).
#[macro_export]
macro_rules! both_engines {
    (backend: $($name:ident),+ $(,)?) => {
        $($crate::both_engines!(@pair $name #[test] [] backend => super::$name(backend));)+
    };
    (async backend: $($name:ident),+ $(,)?) => {
        $($crate::both_engines!(@pair $name #[actix_rt::test] [async] backend => super::$name(backend).await);)+
    };
    (with $run:path: $($name:ident),+ $(,)?) => {
        $($crate::both_engines!(@pair $name #[test] [] backend => $run(backend, super::$name));)+
    };
    (async with $run:path: $($name:ident),+ $(,)?) => {
        $($crate::both_engines!(@pair $name #[actix_rt::test] [async] backend => $run(backend, super::$name).await);)+
    };
    (@pair $name:ident #[$test:meta] [$($async:tt)?] $backend:ident => $call:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[$test]
            $($async)? fn sqlite() {
                let $backend = $crate::Backend::Sqlite;
                $call
            }

            #[$test]
            #[cfg_attr(mailbaar_no_postgres, ignore = "MAILBAAR_TEST_POSTGRES_URL is not set")]
            $($async)? fn postgres() {
                let $backend = $crate::Backend::Postgres;
                $call
            }
        }
    };
    ($($name:ident),+ $(,)?) => {
        $crate::both_engines!(with $crate::testing::on: $($name),+);
    };
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

/// The benchmark data of the newsletter query and the mail-job preparation, made
/// deterministically in SQL: `n` persons (1 in 20 without an address, 1 in 50 bouncers,
/// 1 in 100 deceased), three consent records each (standard types 1 and 3; about 6 in 7
/// currently opted in to the newsletter) and five e-mail contact moments each over two
/// years before `base` (1 in 40 got all five in the last five days); then ANALYZE.
pub fn newsletter_data(conn: &mut DbConnection, n: i64, base: chrono::NaiveDateTime) {
    let b = conn.backend();
    let g = numbers_cte(b, n);
    let t0 = days_before_sql(b, base, "0");
    conn.batch_execute(&format!(
        "{g} INSERT INTO persons (email, first_name, last_name, city, deceased, bouncer,
             is_test_person, created_at, updated_at)
         SELECT CASE WHEN i % 20 = 0 THEN NULL ELSE 'p' || i || '@example.nl' END,
             'Name' || (i % 997), 'Last' || (i % 1009),
             CASE i % 10 WHEN 0 THEN 'Utrecht' WHEN 1 THEN 'Amsterdam' WHEN 2 THEN 'Rotterdam'
                 WHEN 3 THEN 'Den Haag' WHEN 4 THEN 'Eindhoven' WHEN 5 THEN 'Groningen'
                 WHEN 6 THEN 'Tilburg' WHEN 7 THEN 'Almere' WHEN 8 THEN 'Breda' ELSE 'Zwolle' END,
             i % 100 = 2, i % 50 = 1, i % 1000 = 3, {t0}, {t0}
         FROM g"
    ))
    .expect("persons");
    // Three records per person: an old newsletter choice, a profiling opt-in, and a newer
    // newsletter choice that decides the current state (about 6 in 7 opted in).
    for (type_id, opt_in, days) in [
        (1, "i % 3 <> 0", "400"),
        (3, "1 = 1", "400"),
        (1, "i % 7 <> 0", "i % 300"),
    ] {
        let at = days_before_sql(b, base, days);
        conn.batch_execute(&format!(
            "{g} INSERT INTO consent_records (person_id, opt_in_type_id, opt_in, channel,
                 description, recorded_by, recorded_at)
             SELECT i, {type_id}, {opt_in}, 'import', 'benchmark', 'bench', {at} FROM g"
        ))
        .expect("consent records");
    }
    // Five e-mails per person over two years; one person in 40 got all five in the last
    // five days (contact pressure 5), the rest are spread out.
    for k in 1..=5 {
        let at = days_before_sql(
            b,
            base,
            &format!(
                "CASE WHEN i % 40 = 0 THEN {} ELSE (i * 37 + {k} * 101) % 730 END",
                k - 1
            ),
        );
        conn.batch_execute(&format!(
            "{g} INSERT INTO contact_moments (person_id, channel, step_id, is_test, occurred_at,
                 opened_at)
             SELECT i, 'email', {k}, (i + {k}) % 97 = 0, {at},
                 CASE WHEN (i + {k}) % 3 = 0 THEN {at} ELSE NULL END
             FROM g"
        ))
        .expect("contact moments");
    }
    conn.batch_execute(match b {
        Backend::Postgres => "VACUUM ANALYZE",
        Backend::Sqlite => "ANALYZE",
    })
    .expect("analyze");
}

/// The process's peak resident memory (Linux `VmHWM`) in MB, for benchmarks that show
/// memory does not grow with the work; 0 where `/proc` is missing.
pub fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
