//! Unexpected errors over HTTP: a 500 names its request id in the problem document, in
//! the `X-Request-Id` header and in the service's log line, and never shows its cause; an
//! unreadable stored setting or role is such an error, never a silent default.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::prelude::*;
use mailbaar_e2e::TestApp;

mailbaar_store::both_engines!(async with mailbaar_e2e::on:
    unreadable_settings_are_a_500_with_its_request_id_in_the_log,
    unknown_stored_role_is_refused_not_downgraded,
    an_authenticated_request_takes_one_connection,
    undeclared_methods_are_405_with_allow,
);

/// Every path of the contract answers a method it does not declare with 405, a problem
/// document and `Allow` listing exactly the declared methods.
async fn undeclared_methods_are_405_with_allow(app: TestApp) {
    let doc = app.send("GET", "/openapi.json", None, None).await.body;
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path: String = template
            .split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let declared: Vec<&str> = ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .into_iter()
            .filter(|m| item.get(m.to_lowercase()).is_some())
            .collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if declared.contains(&method) {
                continue;
            }
            let r = app
                .send(
                    method,
                    &path,
                    Some(&app.admin_token),
                    Some(("application/json", b"{}".to_vec())),
                )
                .await;
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
            r.assert_problem(405);
            assert_eq!(
                r.allow.as_deref(),
                Some(declared.join(", ").as_str()),
                "{method} {path}"
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} undeclared methods checked");
    // A trailing slash names no resource of the contract: 404, not a 405 whose `Allow`
    // lists the very method asked.
    for path in [
        "/api/v1/persons/",
        "/api/v1/persons/1/",
        "/healthz/",
        "/openapi.json/",
    ] {
        let r = app.send("GET", path, Some(&app.admin_token), None).await;
        assert_eq!(r.status, 404, "GET {path}: {}", r.text);
        assert_eq!(r.allow, None, "GET {path}");
    }
}

/// The token is checked on the connection the handler then works on.
async fn an_authenticated_request_takes_one_connection(mut app: TestApp) {
    app.stop_task_runners();
    let person = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(serde_json::json!({"email": "one@example.nl"})),
        )
        .await;
    assert_eq!(person.status, 201, "{}", person.text);
    let id = person.body["id"].as_i64().unwrap();
    for (method, path, body) in [
        ("GET", format!("/api/v1/persons/{id}"), None),
        ("GET", format!("/api/v1/persons/{id}/card"), None),
        ("GET", "/api/v1/persons?q=one".to_owned(), None),
        (
            "PATCH",
            format!("/api/v1/persons/{id}"),
            Some(serde_json::json!({"city": "Utrecht"})),
        ),
        (
            "POST",
            "/api/v1/queries/run".to_owned(),
            Some(
                serde_json::json!({"conditions": {"field": "mailable", "op": "eq", "value": true}}),
            ),
        ),
    ] {
        let before = app.pool.checkouts();
        let r = app.admin(method, &path, body).await;
        assert!(r.status < 300, "{method} {path}: {}", r.text);
        assert_eq!(app.pool.checkouts() - before, 1, "{method} {path}");
    }
}

/// Everything the service logs in this test binary.
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        log
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn execute(app: &TestApp, sql: &str) {
    let pool = mailbaar_store::connect(app.db.url(), 1).expect("pool");
    diesel::sql_query(sql)
        .execute(&mut *pool.get().expect("connection"))
        .expect(sql);
}

async fn unreadable_settings_are_a_500_with_its_request_id_in_the_log(app: TestApp) {
    let log = captured();
    let r = app.admin("GET", "/api/v1/settings", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    execute(
        &app,
        "INSERT INTO settings (key, value, updated_at) VALUES ('language', 'not json at all', '2026-12-01 08:00:00')",
    );
    // The daily profile schedule reads the settings too, and fails the same way.
    app.allow_failed_tasks();
    let r = app.admin("GET", "/api/v1/settings", None).await;
    r.assert_problem(500);
    let id = r.body["request_id"]
        .as_str()
        .expect("a request id")
        .to_owned();
    assert!(
        !r.text.contains("not json"),
        "the cause stays in the log: {}",
        r.text
    );
    let logged = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let line = logged
        .lines()
        .find(|l| l.contains(&id) && l.contains("request failed"))
        .unwrap_or_else(|| panic!("no log line with {id} in:\n{logged}"));
    assert!(line.contains("language"), "the log names the row: {line}");
    // Every other read that needs the settings fails the same way; none takes defaults.
    let r = app
        .admin(
            "POST",
            "/api/v1/queries/run",
            Some(serde_json::json!({"conditions": {"field": "contact_pressure", "op": "lt", "value": 3}})),
        )
        .await;
    r.assert_problem(500);
}

async fn unknown_stored_role_is_refused_not_downgraded(app: TestApp) {
    captured();
    let secret = "mb_test_unknown_role_secret";
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    // The CHECK on roles keeps this version from writing one; a newer version (or a
    // downgrade) may have. Simulate that past the constraint.
    let pool = mailbaar_store::connect(app.db.url(), 1).expect("pool");
    let mut conn = pool.get().expect("connection");
    let lift = match app.backend {
        mailbaar_e2e::Backend::Sqlite => "PRAGMA ignore_check_constraints = ON",
        mailbaar_e2e::Backend::Postgres => {
            "ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check"
        }
    };
    diesel::sql_query(lift).execute(&mut *conn).expect(lift);
    diesel::sql_query(
        format!(
            "INSERT INTO api_tokens (name, role, secret_hash, created_at) VALUES ('odd', 'superuser', '{digest}', '2026-12-01 08:00:00')"
        ),
    )
    .execute(&mut *conn)
    .expect("insert");
    drop(conn);
    let r = app.as_token(secret, "GET", "/api/v1/persons", None).await;
    r.assert_problem(500);
    assert!(r.body["request_id"].is_string());
    assert!(!r.text.contains("superuser"), "{}", r.text);
    let r = app.admin("GET", "/api/v1/tokens", None).await;
    r.assert_problem(500);
}
