//! The consent ledger over HTTP, on both engines.

use mailbaar_e2e::TestApp;
use serde_json::{json, Value};

mailbaar_store::both_engines!(async with mailbaar_e2e::on:
    history_and_current_state_after_flips,
    ledger_records_cannot_be_changed,
    unsubscribe_all_over_http,
    bad_consent_input_writes_nothing,
    first_transaction_gives_service_mail_opt_in,
    opt_in_types_and_soft_opt_in_route,
    automatic_profiling_opt_in_on_registration,
);

async fn automatic_profiling_opt_in_on_registration(app: TestApp) {
    // On by default, as the manual describes.
    let r = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "new@example.nl"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["consents"][0]["opt_in_type_id"], 3);
    assert_eq!(r.body["consents"][0]["opt_in"], true);
    let p = r.body["id"].as_i64().unwrap();
    let r = app
        .admin("GET", &format!("/api/v1/persons/{p}/consents"), None)
        .await;
    let records = r.body.as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["channel"], "system");
    assert_eq!(
        records[0]["description"],
        "automatic profiling opt-in on registration"
    );
    // Off by setting.
    let q = new_person(&app, "quiet@example.nl").await;
    assert_eq!(history_len(&app, q).await, 0);
}

/// A person without the automatic profiling opt-in, so the ledger holds only what a test
/// writes.
async fn new_person(app: &TestApp, email: &str) -> i64 {
    let r = app
        .admin(
            "PATCH",
            "/api/v1/settings",
            Some(json!({"profiling_opt_in_on_registration": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .admin("POST", "/api/v1/persons", Some(json!({"email": email})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_i64().unwrap()
}

async fn consent(app: &TestApp, person: i64, type_id: i64, opt_in: bool) -> Value {
    let r = app
        .admin(
            "POST",
            &format!("/api/v1/persons/{person}/consents"),
            Some(
                json!({"opt_in_type_id": type_id, "opt_in": opt_in, "channel": "web_form",
                "description": "Yes, send me the newsletter"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

async fn history_len(app: &TestApp, person: i64) -> usize {
    let r = app
        .admin("GET", &format!("/api/v1/persons/{person}/consents"), None)
        .await;
    r.body.as_array().unwrap().len()
}

async fn history_and_current_state_after_flips(app: TestApp) {
    let p = new_person(&app, "flip@example.nl").await;
    let a = consent(&app, p, 1, true).await;
    assert_eq!(a["recorded_by"], "token:1:MAILBAAR_ADMIN_TOKEN");
    assert_eq!(a["channel"], "web_form");
    consent(&app, p, 1, false).await;
    let c = consent(&app, p, 1, true).await;
    consent(&app, p, 3, false).await;
    let r = app
        .admin("GET", &format!("/api/v1/persons/{p}/consents"), None)
        .await;
    let ids: Vec<i64> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(
        ids[0],
        c["id"].as_i64().unwrap(),
        "newest first within the type"
    );
    assert!(ids[0] > ids[1] && ids[1] > ids[2]);
    let r = app
        .admin(
            "GET",
            &format!("/api/v1/persons/{p}/consents?opt_in_type_id=3"),
            None,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);

    let person = app
        .admin("GET", &format!("/api/v1/persons/{p}"), None)
        .await
        .body;
    let consents = person["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 2);
    assert_eq!(consents[0]["opt_in_type_id"], 1);
    assert_eq!(consents[0]["opt_in"], true);
    assert_eq!(consents[1]["opt_in"], false);
    consent(&app, p, 1, false).await;
    let list = app.admin("GET", "/api/v1/persons?q=flip", None).await.body;
    assert_eq!(
        list["items"][0]["consents"][0]["opt_in"], false,
        "lists carry the current state too"
    );
}

async fn ledger_records_cannot_be_changed(app: TestApp) {
    let p = new_person(&app, "fixed@example.nl").await;
    let rec = consent(&app, p, 1, true).await;
    let one = format!("/api/v1/persons/{p}/consents/{}", rec["id"]);
    let r = app.admin("GET", &one, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], rec["id"]);
    for method in ["PUT", "PATCH", "DELETE"] {
        app.admin(method, &one, Some(json!({"opt_in": false})))
            .await
            .assert_problem(405);
        app.admin(
            method,
            &format!("/api/v1/persons/{p}/consents"),
            Some(json!({})),
        )
        .await
        .assert_problem(405);
    }
    let r = app.admin("GET", &one, None).await;
    assert_eq!(r.body["opt_in"], true);
    assert_eq!(history_len(&app, p).await, 1);
}

async fn unsubscribe_all_over_http(app: TestApp) {
    let p = new_person(&app, "all@example.nl").await;
    consent(&app, p, 1, true).await;
    consent(&app, p, 2, false).await;
    consent(&app, p, 3, true).await;
    let path = format!("/api/v1/persons/{p}/unsubscribe-all");
    let viewer = app.token("viewer").await;
    app.as_token(
        &viewer,
        "POST",
        &path,
        Some(json!({"channel": "telephone", "description": "x"})),
    )
    .await
    .assert_problem(403);
    app.admin("POST", &path, Some(json!({"channel": "telephone"})))
        .await
        .assert_problem(422);
    assert_eq!(history_len(&app, p).await, 3);
    let r = app
        .admin(
            "POST",
            &path,
            Some(json!({"channel": "telephone", "description": "Called: nothing any more"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let types: Vec<i64> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["opt_in_type_id"].as_i64().unwrap())
        .collect();
    assert_eq!(types, [1, 3]);
    assert_eq!(history_len(&app, p).await, 5);
    let person = app
        .admin("GET", &format!("/api/v1/persons/{p}"), None)
        .await
        .body;
    assert!(person["full_unsubscribed_at"].is_string());
    assert!(person["consents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["opt_in"] == false));
}

async fn bad_consent_input_writes_nothing(app: TestApp) {
    let p = new_person(&app, "bad@example.nl").await;
    let path = format!("/api/v1/persons/{p}/consents");
    let cases = [
        (
            json!({"opt_in_type_id": 1, "opt_in": true, "channel": "Carrier Pigeon", "description": "x"}),
            422,
        ),
        (
            json!({"opt_in_type_id": 1, "opt_in": true, "channel": "manual", "description": ""}),
            422,
        ),
        (
            json!({"opt_in_type_id": 1, "opt_in": true, "channel": "manual"}),
            422,
        ),
        (
            json!({"opt_in_type_id": 1, "channel": "manual", "description": "x"}),
            422,
        ),
        (
            json!({"opt_in_type_id": 1, "opt_in": "yes", "channel": "manual", "description": "x"}),
            422,
        ),
        (
            json!({"opt_in_type_id": 99, "opt_in": true, "channel": "manual", "description": "x"}),
            404,
        ),
    ];
    for (body, status) in cases {
        app.admin("POST", &path, Some(body))
            .await
            .assert_problem(status);
    }
    app.admin(
        "POST",
        "/api/v1/persons/987654/consents",
        Some(json!({"opt_in_type_id": 1, "opt_in": true, "channel": "manual", "description": "x"})),
    )
    .await
    .assert_problem(404);
    assert_eq!(history_len(&app, p).await, 0);
}

async fn first_transaction_gives_service_mail_opt_in(app: TestApp) {
    let p = new_person(&app, "buyer@example.nl").await;
    let tx =
        json!({"kind": "purchase", "amount_cents": 1000, "occurred_at": "2026-11-01T10:00:00Z"});
    let path = format!("/api/v1/persons/{p}/transactions");
    assert_eq!(app.admin("POST", &path, Some(tx.clone())).await.status, 201);
    assert_eq!(app.admin("POST", &path, Some(tx)).await.status, 201);
    let r = app
        .admin("GET", &format!("/api/v1/persons/{p}/consents"), None)
        .await;
    let records = r.body.as_array().unwrap();
    assert_eq!(records.len(), 1, "one soft opt-in, not one per transaction");
    assert_eq!(records[0]["opt_in_type_id"], 2);
    assert_eq!(records[0]["channel"], "system");
    assert_eq!(records[0]["description"], "soft service mail opt-in");
}

async fn opt_in_types_and_soft_opt_in_route(app: TestApp) {
    let r = app.admin("GET", "/api/v1/opt-in-types", None).await;
    let kinds: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["newsletter", "service_mail", "profiling"]);
    let r = app
        .admin(
            "POST",
            "/api/v1/opt-in-types",
            Some(json!({"kind": "newsletter", "name": "Kids newsletter"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    app.admin(
        "POST",
        "/api/v1/opt-in-types",
        Some(json!({"kind": "custom", "name": "Kids newsletter"})),
    )
    .await
    .assert_problem(409);
    app.admin(
        "POST",
        "/api/v1/opt-in-types",
        Some(json!({"kind": "fax", "name": "Fax"})),
    )
    .await
    .assert_problem(422);
    let viewer = app.token("viewer").await;
    app.as_token(
        &viewer,
        "POST",
        "/api/v1/opt-in-types",
        Some(json!({"kind": "custom", "name": "V"})),
    )
    .await
    .assert_problem(403);
    let r = app
        .admin(
            "PATCH",
            &format!("/api/v1/opt-in-types/{id}"),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(r.body["active"], false);
    let soft = format!("/api/v1/opt-in-types/{id}/soft-opt-ins?dry_run=true");
    app.admin("POST", &soft, None).await.assert_problem(409);
    let r = app
        .admin("DELETE", &format!("/api/v1/opt-in-types/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    app.admin("GET", &format!("/api/v1/opt-in-types/{id}"), None)
        .await
        .assert_problem(404);
    let p = new_person(&app, "kept@example.nl").await;
    consent(&app, p, 1, true).await;
    app.admin("DELETE", "/api/v1/opt-in-types/1", None)
        .await
        .assert_problem(409);
}
