//! The end-to-end harness: each test starts its own service on port 0 over its own fresh
//! database and talks to it over real HTTP.
//!
//! `mailbaar_store::both_engines!(async with mailbaar_e2e::on: NAME, …)` turns each
//! `async fn NAME(TestApp)` into a SQLite and a PostgreSQL test; a test that starts its
//! service itself takes the engine instead (`both_engines!(async backend: NAME, …)`).
//!
//! A test ends with a look at the service's `tasks` table: a failed task, or one still
//! queued or running (other than the recurring schedules), fails the test unless the test
//! said it expects that ([`TestApp::allow_failed_tasks`],
//! [`TestApp::expect_leftover_tasks`]).

pub mod mailing;
pub mod smtp;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::dev::ServerHandle;
use diesel::prelude::*;
use mailbaar_api::{Application, Config};
use mailbaar_store::testing::TestDatabase;
pub use mailbaar_store::Backend;
use serde_json::Value;

/// A running service with an admin token, over a database that is dropped afterwards.
pub struct TestApp {
    pub base: String,
    pub admin_token: String,
    pub backend: Backend,
    pub db: TestDatabase,
    client: awc::Client,
    handle: ServerHandle,
    runners: Vec<mailbaar_tasks::RunnerHandle>,
    /// The service's own pool, to count the connections requests take.
    pub pool: mailbaar_store::Pool,
    /// Where the `.eml` transport writes this service's messages.
    pub outbox: tempfile::TempDir,
    /// Whether the test expects failed tasks when it ends (see [`TestApp::allow_failed_tasks`]).
    failed_tasks_allowed: AtomicBool,
    /// Whether the test expects unfinished tasks when it ends.
    leftover_tasks_expected: AtomicBool,
}

/// The kinds of the recurring schedules every service queues at start: always queued, so
/// never a leftover.
const RECURRING_KINDS: [&str; 2] = [
    mailbaar_profiles::SCHEDULE,
    mailbaar_gdpr::RETENTION_SCHEDULE,
];

/// Starts a service on the engine and runs a test against it; what
/// `both_engines!(async with mailbaar_e2e::on: …)` calls for each engine. Does nothing when
/// PostgreSQL is not configured (outside CI), where the test is ignored.
pub async fn on<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(app) = TestApp::spawn(backend).await {
        test(app).await;
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
    /// The `Location` header, for redirects (the client does not follow them).
    pub location: Option<String>,
    /// The `Allow` header, for 405 answers.
    pub allow: Option<String>,
}

impl TestApp {
    /// Starts a service on the engine, or `None` when PostgreSQL is not configured (outside CI).
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// The same with the configuration changed by `adjust` first (an SMTP server, short
    /// leases, no task runners).
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let db = TestDatabase::new(backend)?;
        let admin_token = format!("mb_test_{}", uuid::Uuid::new_v4().simple());
        let outbox = tempfile::tempdir().expect("outbox directory");
        let config = Config {
            database_url: db.url_string(),
            listen: "127.0.0.1:0".into(),
            admin_token: Some(admin_token.clone()),
            public_url: "http://127.0.0.1".into(),
            pool_size: 4,
            workers: Some(2),
            tasks: mailbaar_api::config::TaskConfig {
                poll: std::time::Duration::from_millis(20),
                ..Default::default()
            },
            outbox: outbox.path().to_owned(),
            import_dir: outbox.path().join("imports"),
            providers: Default::default(),
            delivery: mailbaar_api::config::DeliveryConfig {
                batch: 2,
                ..Default::default()
            },
        };
        let mut config = config;
        adjust(&mut config);
        let mut app = Application::build(config).expect("service starts");
        let runners = app.take_task_runners();
        let pool = app.pool().clone();
        let base = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        actix_rt::spawn(app.run_until_stopped());
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .disable_redirects()
            .finish();
        Some(TestApp {
            base,
            admin_token,
            backend,
            db,
            client,
            handle,
            runners,
            pool,
            outbox,
            failed_tasks_allowed: AtomicBool::new(false),
            leftover_tasks_expected: AtomicBool::new(false),
        })
    }

    /// Sends a request with an optional bearer token and an optional raw body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res = match body {
            Some((content_type, bytes)) => req
                .insert_header(("Content-Type", content_type))
                .send_body(bytes)
                .await
                .expect("request"),
            None => req.send().await.expect("request"),
        };
        Self::reply(&mut res).await
    }

    /// Sends a body with the given headers and no bearer token, as an outside system
    /// (an e-mail provider's webhook) does.
    pub async fn send_with_headers(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Reply {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .insert_header(("Content-Type", content_type));
        for (name, value) in headers {
            req = req.insert_header((*name, value.as_str()));
        }
        let mut res = req.send_body(body).await.expect("request");
        Self::reply(&mut res).await
    }

    /// Reads a response to the end.
    async fn reply(res: &mut awc::ClientResponse) -> Reply {
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = res.body().limit(32 * 1024 * 1024).await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            body,
            text,
            location,
            allow,
        }
    }

    /// A JSON request as the admin.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.as_token(&self.admin_token, method, path, body).await
    }

    /// A JSON request with the given token.
    pub async fn as_token(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).expect("json")));
        self.send(method, path, Some(token), body).await
    }

    /// Follows a task at `/api/v1/tasks/{id}` until it has ended (at most 30 s), and
    /// returns it as last read.
    pub async fn wait_for_task(&self, id: i64) -> Value {
        for _ in 0..1500 {
            let r = self
                .admin("GET", &format!("/api/v1/tasks/{id}"), None)
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            if matches!(r.body["state"].as_str(), Some("succeeded" | "failed")) {
                return r.body;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("task {id} did not end within 30 s");
    }

    /// Follows a mail job until its status is one of `statuses` (at most 30 s); returns it.
    pub async fn wait_for_mail_job(&self, id: i64, statuses: &[&str]) -> Value {
        for _ in 0..1500 {
            let r = self
                .admin("GET", &format!("/api/v1/mailjobs/{id}"), None)
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            if statuses.contains(&r.body["status"].as_str().unwrap_or_default()) {
                return r.body;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("mail job {id} did not reach {statuses:?} within 30 s");
    }

    /// The messages the `.eml` transport wrote into one folder (`job-N` or `test`), as
    /// text, in file-name order.
    pub fn messages(&self, folder: &str) -> Vec<String> {
        let dir = self.outbox.path().join(folder);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| std::fs::read_to_string(p).expect("a message reads"))
            .collect()
    }

    /// Stops the service's task runners (each finishes what it holds), for tests that count
    /// what requests alone do with the pool.
    pub fn stop_task_runners(&mut self) {
        self.runners
            .drain(..)
            .for_each(mailbaar_tasks::RunnerHandle::stop);
    }

    /// Says that this test leaves failed tasks on purpose (a fault it provokes), so they
    /// do not fail it when it ends.
    pub fn allow_failed_tasks(&self) {
        self.failed_tasks_allowed.store(true, Ordering::Relaxed);
    }

    /// Says that this test ends with tasks still queued or running on purpose (a paused
    /// job, a task for a process it killed), so they do not fail it when it ends.
    pub fn expect_leftover_tasks(&self) {
        self.leftover_tasks_expected.store(true, Ordering::Relaxed);
    }

    /// Lets the task runners finish the tasks that are due (a send task looking again at an
    /// ended job a moment later), for at most 10 s, as a service left running would; what
    /// is due later stays and is judged by [`TestApp::unexpected_tasks`].
    fn finish_due_tasks(&self) {
        use mailbaar_store::schema::tasks;
        if self.runners.is_empty() {
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let Ok(mut conn) = self.pool.get() else {
                return;
            };
            let soon = chrono::Utc::now().naive_utc() + chrono::Duration::seconds(2);
            let due: i64 = tasks::table
                .filter(tasks::state.eq_any(["queued", "running"]))
                .filter(tasks::kind.ne_all(RECURRING_KINDS))
                .filter(tasks::run_at.le(soon))
                .count()
                .get_result(&mut conn)
                .unwrap_or(0);
            if due == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The tasks that fail the test when it ends: failed ones, and ones still queued or
    /// running other than the recurring schedules, unless the test said it expects them.
    /// Each is described as `task ID (KIND) STATE, due RUN_AT UTC: MESSAGE`.
    fn unexpected_tasks(&self) -> Vec<String> {
        use mailbaar_store::schema::tasks;
        let mut states = Vec::new();
        if !self.failed_tasks_allowed.load(Ordering::Relaxed) {
            states.push("failed");
        }
        if !self.leftover_tasks_expected.load(Ordering::Relaxed) {
            states.extend(["queued", "running"]);
        }
        let Ok(mut conn) = self.pool.get() else {
            return vec!["the tasks table could not be read: no database connection".into()];
        };
        let rows: Vec<(i64, String, String, chrono::NaiveDateTime, String)> = match tasks::table
            .filter(tasks::state.eq_any(&states))
            .order(tasks::id)
            .select((
                tasks::id,
                tasks::kind,
                tasks::state,
                tasks::run_at,
                tasks::message,
            ))
            .load(&mut conn)
        {
            Ok(rows) => rows,
            Err(e) => return vec![format!("the tasks table could not be read: {e}")],
        };
        rows.into_iter()
            .filter(|(_, kind, state, _, _)| {
                state == "failed" || !RECURRING_KINDS.contains(&kind.as_str())
            })
            .map(|(id, kind, state, run_at, message)| {
                format!("task {id} ({kind}) {state}, due {run_at} UTC: {message}")
            })
            .collect()
    }

    /// Creates a token with the role and returns its secret.
    pub async fn token(&self, role: &str) -> String {
        let r = self
            .admin(
                "POST",
                "/api/v1/tokens",
                Some(serde_json::json!({"name": role, "role": role})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["token"].as_str().expect("secret").to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.leftover_tasks_expected.load(Ordering::Relaxed) {
            self.finish_due_tasks();
        }
        // Stop accepting work, and stop the task runners (each finishes what it holds)
        // before the database is dropped.
        drop(self.handle.stop(false));
        self.runners
            .drain(..)
            .for_each(mailbaar_tasks::RunnerHandle::stop);
        if std::thread::panicking() {
            return;
        }
        let unexpected = self.unexpected_tasks();
        assert!(
            unexpected.is_empty(),
            "the test ended with tasks it did not expect (call allow_failed_tasks or \
             expect_leftover_tasks if it leaves them on purpose):\n{}",
            unexpected.join("\n")
        );
    }
}

impl Reply {
    /// Asserts a problem document with the status.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.text);
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "content type {:?} for {}",
            self.content_type,
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["type"]
            .as_str()
            .unwrap_or("")
            .starts_with("/problems/"));
    }
}
