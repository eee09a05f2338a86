//! Anonymization, bouncers and the audit log over HTTP, on both engines.

use diesel::prelude::*;
use mailbaar_e2e::TestApp;
use mailbaar_store::schema::persons;
use serde_json::{json, Value};

mailbaar_store::both_engines!(async with mailbaar_e2e::on:
    anonymize_over_http,
    bouncer_and_audit_log,
    retention_over_http
);

async fn person(app: &TestApp) -> i64 {
    let r = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(
                json!({"email": "gone@example.nl", "first_name": "Gerda", "last_name": "Gone",
                "city": "Utrecht"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_i64().unwrap()
}

fn actions(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn anonymize_over_http(app: TestApp) {
    let p = person(&app).await;
    let path = format!("/api/v1/persons/{p}/anonymize");
    for role in ["marketer", "viewer"] {
        let token = app.token(role).await;
        app.as_token(&token, "POST", &path, None)
            .await
            .assert_problem(403);
    }
    let officer = app.token("privacy_officer").await;
    let r = app.as_token(&officer, "POST", &path, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["already_anonymized"], false);
    let again = app.as_token(&officer, "POST", &path, None).await;
    assert_eq!(again.body["already_anonymized"], true);
    assert_eq!(again.body["anonymized_at"], r.body["anonymized_at"]);

    let card = app
        .admin("GET", &format!("/api/v1/persons/{p}/card"), None)
        .await;
    assert_eq!(card.body["details"]["first_name"], Value::Null);
    assert_eq!(card.body["details"]["email"], Value::Null);
    assert_eq!(
        card.body["details"]["anonymized_at"],
        r.body["anonymized_at"]
    );
    let codes: Vec<&str> = card.body["administration"]["not_mailable_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().or(r["code"].as_str()).unwrap())
        .collect();
    assert!(codes.contains(&"anonymized"), "{codes:?}");
    // The person leaves every selection.
    let r = app
        .admin(
            "POST",
            "/api/v1/queries/run",
            Some(json!({"conditions": {"all": []}})),
        )
        .await;
    assert_eq!(r.body["count"], 0);
    // Nothing can be changed any more.
    app.admin(
        "PATCH",
        &format!("/api/v1/persons/{p}"),
        Some(json!({"city": "Ede"})),
    )
    .await
    .assert_problem(409);
    app.admin("POST", "/api/v1/persons/999999/anonymize", None)
        .await
        .assert_problem(404);
    // The export of an anonymized person; marketers may not export.
    let marketer = app.token("marketer").await;
    app.as_token(
        &marketer,
        "GET",
        &format!("/api/v1/persons/{p}/personal-data.pdf"),
        None,
    )
    .await
    .assert_problem(403);
    let r = app
        .as_token(
            &officer,
            "GET",
            &format!("/api/v1/persons/{p}/personal-data.pdf"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/pdf");
    assert!(r.text.starts_with("%PDF-"), "a PDF");
    let log = app
        .admin(
            "GET",
            &format!("/api/v1/audit-log?person_id={p}&action=person.pdf_exported"),
            None,
        )
        .await;
    assert_eq!(log.body["total"], 1);
}

async fn bouncer_and_audit_log(app: TestApp) {
    let p = person(&app).await;
    let viewer = app.token("viewer").await;
    app.as_token(&viewer, "GET", &format!("/api/v1/persons/{p}/card"), None)
        .await;
    let r = app
        .admin(
            "POST",
            &format!("/api/v1/persons/{p}/consents"),
            Some(
                json!({"opt_in_type_id": 1, "opt_in": true, "channel": "telephone",
                "description": "Wants the newsletter"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Mark the person a bouncer, as delivery will.
    let pool = app.db.pool();
    diesel::update(persons::table.find(p))
        .set((
            persons::bouncer.eq(true),
            persons::bouncer_at.eq(Some(mailbaar_store::now())),
            persons::bouncer_reason.eq(Some("550 5.1.1 user unknown")),
        ))
        .execute(&mut pool.get().unwrap())
        .unwrap();
    let card = app
        .admin("GET", &format!("/api/v1/persons/{p}/card"), None)
        .await;
    assert_eq!(
        card.body["administration"]["bouncer_reason"],
        "550 5.1.1 user unknown"
    );
    assert_eq!(
        card.body["administration"]["not_mailable_reasons"][0]["code"],
        "bouncer"
    );
    app.as_token(
        &viewer,
        "DELETE",
        &format!("/api/v1/persons/{p}/bouncer"),
        None,
    )
    .await
    .assert_problem(403);
    let r = app
        .admin("DELETE", &format!("/api/v1/persons/{p}/bouncer"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["bouncer"], false);
    assert_eq!(r.body["bouncer_at"], Value::Null);
    assert_eq!(r.body["mailable"], true);
    let r = app
        .admin(
            "POST",
            &format!("/api/v1/persons/{p}/unsubscribe-all"),
            Some(json!({"channel": "telephone", "description": "Wants nothing"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Only privacy officers and admins read the log.
    app.as_token(&viewer, "GET", "/api/v1/audit-log", None)
        .await
        .assert_problem(403);
    let officer = app.token("privacy_officer").await;
    let r = app
        .as_token(
            &officer,
            "GET",
            &format!("/api/v1/audit-log?person_id={p}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        actions(&r.body),
        [
            "person.unsubscribed_all",
            "person.bouncer_cleared",
            "person.card_read",
            "consent.recorded",
            "person.card_read",
        ]
    );
    let r = app
        .as_token(
            &officer,
            "GET",
            "/api/v1/audit-log?action=token.created",
            None,
        )
        .await;
    assert_eq!(r.body["total"], 2, "viewer and privacy officer tokens");
    let actor = r.body["items"][0]["actor"].as_str().unwrap().to_owned();
    let r = app
        .as_token(
            &officer,
            "GET",
            &format!(
                "/api/v1/audit-log?actor={}&from=2000-01-01T00:00:00Z",
                actor.replace(' ', "%20").replace(':', "%3A")
            ),
            None,
        )
        .await;
    assert!(r.body["total"].as_i64().unwrap() >= 2, "{}", r.text);
    app.as_token(
        &officer,
        "GET",
        "/api/v1/audit-log?from=2026-12-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        None,
    )
    .await
    .assert_problem(422);
    // The log holds no personal data.
    let r = app
        .as_token(&officer, "GET", "/api/v1/audit-log?per_page=500", None)
        .await;
    assert!(
        !r.text.contains("gone@example.nl") && !r.text.contains("Gerda"),
        "{}",
        r.text
    );
}

async fn retention_over_http(app: TestApp) {
    let p = person(&app).await;
    let r = app
        .admin(
            "POST",
            "/api/v1/queries",
            Some(json!({"name": "Utrecht", "conditions": {"field": "city", "op": "eq", "value": "Utrecht"}})),
        )
        .await;
    let query = r.body["id"].as_i64().unwrap();
    let marketer = app.token("marketer").await;
    let rule = json!({"name": "Utrecht leaves", "query_id": query});
    app.as_token(
        &marketer,
        "POST",
        "/api/v1/retention-rules",
        Some(rule.clone()),
    )
    .await
    .assert_problem(403);
    let officer = app.token("privacy_officer").await;
    app.as_token(
        &officer,
        "POST",
        "/api/v1/retention-rules",
        Some(json!({"name": "x", "query_id": query, "schedule": "weekly"})),
    )
    .await
    .assert_problem(422);
    let r = app
        .as_token(&officer, "POST", "/api/v1/retention-rules", Some(rule))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    let r = app
        .as_token(
            &officer,
            "POST",
            &format!("/api/v1/retention-rules/{id}/dry-run"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["matched"], 1);
    assert_eq!(r.body["sample"][0]["person_id"], p);
    let card = app
        .admin("GET", &format!("/api/v1/persons/{p}/card"), None)
        .await;
    assert_eq!(
        card.body["details"]["anonymized_at"],
        Value::Null,
        "a dry run changes nothing"
    );

    let r = app
        .as_token(
            &officer,
            "POST",
            &format!("/api/v1/retention-rules/{id}/run"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let task = app.wait_for_task(r.body["id"].as_i64().unwrap()).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["message"], "1 of 1 persons anonymized", "{task}");
    let card = app
        .admin("GET", &format!("/api/v1/persons/{p}/card"), None)
        .await;
    assert_ne!(card.body["details"]["anonymized_at"], Value::Null);
    let r = app
        .as_token(
            &officer,
            "GET",
            &format!("/api/v1/retention-rules/{id}/runs"),
            None,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = app
        .as_token(
            &officer,
            "GET",
            "/api/v1/audit-log?action=retention.run",
            None,
        )
        .await;
    assert_eq!(r.body["total"], 1);
    // The query is in use by the rule.
    app.admin("DELETE", &format!("/api/v1/queries/{query}"), None)
        .await
        .assert_problem(409);
}
