//! Persons, transactions, tokens and error documents over HTTP, on both engines.

use mailbaar_e2e::TestApp;
use serde_json::json;

mailbaar_store::both_engines!(async with mailbaar_e2e::on:
    create_read_update_list_search,
    duplicate_email_in_any_case_is_a_conflict,
    bad_input_is_refused_and_writes_nothing,
    tokens_and_roles,
    transactions_are_added_and_listed,
    health_and_contract,
);

async fn person_count(app: &TestApp) -> i64 {
    let r = app.admin("GET", "/api/v1/persons?per_page=1", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["total"].as_i64().expect("total")
}

async fn create_read_update_list_search(app: TestApp) {
    let r = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(
                json!({"email": "Anna.deVries@Example.nl", "first_name": "Anna", "infix": "de",
                "last_name": "Vries", "city": "Amsterdam", "iban": "NL91 ABNA 0417 1643 00",
                "bsn": "111222333", "birth_date": "1984-03-07"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["mailable"], true);
    assert_eq!(r.body["iban"], "NL91ABNA0417164300");
    assert_eq!(r.body["anonymized_at"], serde_json::Value::Null);

    let r = app
        .admin("GET", &format!("/api/v1/persons/{id}"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["email"], "Anna.deVries@Example.nl");
    assert_eq!(r.body["birth_date"], "1984-03-07");

    // PATCH: absent stays, null clears, the bouncer-free deceased person is not mailable.
    let r = app
        .admin(
            "PATCH",
            &format!("/api/v1/persons/{id}"),
            Some(json!({"city": null, "deceased": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["city"], serde_json::Value::Null);
    assert_eq!(r.body["first_name"], "Anna");
    assert_eq!(r.body["mailable"], false);

    for (email, first, last) in [
        ("jan@example.nl", "Jan", "Jansen"),
        ("piet@example.nl", "Piet", "de Boer"),
        ("no-mail", "", ""),
    ] {
        let body = if email == "no-mail" {
            json!({"first_name": "Zonder", "last_name": "Mail"})
        } else {
            json!({"email": email, "first_name": first, "last_name": last})
        };
        let r = app.admin("POST", "/api/v1/persons", Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = app
        .admin("GET", "/api/v1/persons?per_page=2&page=1", None)
        .await;
    assert_eq!(r.body["total"], 4);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["items"][0]["first_name"], "Zonder", "newest first");
    assert_eq!(
        r.body["items"][0]["mailable"], false,
        "no e-mail, not mailable"
    );
    let r = app
        .admin("GET", "/api/v1/persons?per_page=2&page=2", None)
        .await;
    assert_eq!(r.body["items"][1]["first_name"], "Anna");

    let r = app
        .admin("GET", "/api/v1/persons?q=ANNA%20vries", None)
        .await;
    assert_eq!(r.body["total"], 1, "{}", r.text);
    assert_eq!(r.body["items"][0]["id"], id);
    let r = app.admin("GET", "/api/v1/persons?q=example.nl", None).await;
    assert_eq!(r.body["total"], 3);
    let r = app.admin("GET", "/api/v1/persons?q=%25", None).await;
    assert_eq!(
        r.body["total"], 0,
        "a % in the search is a character, not a wildcard"
    );

    let r = app.admin("GET", "/api/v1/persons/999999", None).await;
    r.assert_problem(404);
}

async fn duplicate_email_in_any_case_is_a_conflict(app: TestApp) {
    let r = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "kees@example.nl"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let other = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "bob@example.nl"})),
        )
        .await;
    let r = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "KEES@Example.NL"})),
        )
        .await;
    r.assert_problem(409);
    let r = app
        .admin(
            "PATCH",
            &format!("/api/v1/persons/{}", other.body["id"]),
            Some(json!({"email": "Kees@example.nl"})),
        )
        .await;
    r.assert_problem(409);
    assert_eq!(person_count(&app).await, 2);
}

async fn bad_input_is_refused_and_writes_nothing(app: TestApp) {
    let before = person_count(&app).await;
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (br#"{"email": "not-an-address"}"#.to_vec(), 422),
        (br#"{"email": "a@b.nl", "shoe_size": 44}"#.to_vec(), 422),
        (br#"{"email": "a@b.nl", "deceased": "yes"}"#.to_vec(), 422),
        (br#"{"bsn": "123456789"}"#.to_vec(), 422),
        (br#"{"iban": "NL00ABNA0417164300"}"#.to_vec(), 422),
        (br#"{"birth_date": "2999-01-01"}"#.to_vec(), 422),
        (br#"{"email": "a@b.nl""#.to_vec(), 400),
        (b"not json at all".to_vec(), 400),
    ];
    for (body, status) in cases {
        let r = app
            .send(
                "POST",
                "/api/v1/persons",
                Some(&app.admin_token),
                Some(("application/json", body.clone())),
            )
            .await;
        r.assert_problem(status);
        assert!(
            !r.body["detail"].as_str().unwrap().is_empty(),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    // Several field errors come back together.
    let r = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "x", "bsn": "1", "first_name": "A"})),
        )
        .await;
    r.assert_problem(422);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "bsn"]);

    let huge = json!({"first_name": "x".repeat(1100 * 1024)});
    let r = app.admin("POST", "/api/v1/persons", Some(huge)).await;
    r.assert_problem(413);
    let r = app
        .send(
            "POST",
            "/api/v1/persons",
            Some(&app.admin_token),
            Some(("text/plain", b"{}".to_vec())),
        )
        .await;
    r.assert_problem(415);
    assert_eq!(person_count(&app).await, before);
}

async fn tokens_and_roles(app: TestApp) {
    let r = app.send("GET", "/api/v1/persons", None, None).await;
    r.assert_problem(401);
    let r = app
        .send("GET", "/api/v1/persons", Some("mb_unknown"), None)
        .await;
    r.assert_problem(401);

    let viewer = app.token("viewer").await;
    let r = app.as_token(&viewer, "GET", "/api/v1/persons", None).await;
    assert_eq!(r.status, 200);
    let r = app
        .as_token(
            &viewer,
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "v@example.nl"})),
        )
        .await;
    r.assert_problem(403);
    assert_eq!(person_count(&app).await, 0);
    let r = app.as_token(&viewer, "GET", "/api/v1/tokens", None).await;
    r.assert_problem(403);

    let marketer = app.token("marketer").await;
    let r = app
        .as_token(
            &marketer,
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "m@example.nl"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app
        .as_token(
            &marketer,
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    r.assert_problem(403);

    let r = app
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "overlord"})),
        )
        .await;
    r.assert_problem(422);
    let r = app
        .admin(
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": " ", "role": "viewer"})),
        )
        .await;
    r.assert_problem(422);

    let r = app.admin("GET", "/api/v1/tokens", None).await;
    assert_eq!(r.status, 200);
    let list = r.body.as_array().unwrap();
    assert_eq!(
        list.len(),
        3,
        "admin from the environment, viewer, marketer"
    );
    assert!(list
        .iter()
        .all(|t| t.get("token").is_none() && t.get("secret_hash").is_none()));
    let viewer_id = list.iter().find(|t| t["role"] == "viewer").unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = app
        .admin("DELETE", &format!("/api/v1/tokens/{viewer_id}"), None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["revoked_at"].is_string());
    let r = app.as_token(&viewer, "GET", "/api/v1/persons", None).await;
    r.assert_problem(401);
    let r = app
        .admin("DELETE", &format!("/api/v1/tokens/{viewer_id}"), None)
        .await;
    r.assert_problem(409);
}

async fn transactions_are_added_and_listed(app: TestApp) {
    let p = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "t@example.nl"})),
        )
        .await;
    let id = p.body["id"].as_i64().unwrap();
    let path = format!("/api/v1/persons/{id}/transactions");
    for (kind, cents, at) in [
        ("purchase", 1999, "2026-01-05T10:00:00+01:00"),
        ("donation", 2500, "2026-03-01T12:00:00Z"),
        ("membership_fee", 4500, "2025-12-31T23:30:00-02:00"),
    ] {
        let r = app
            .admin(
                "POST",
                &path,
                Some(json!({"kind": kind, "amount_cents": cents, "occurred_at": at})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["currency"], "EUR");
    }
    let r = app.admin("GET", &path, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["total"], 3);
    let kinds: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["donation", "purchase", "membership_fee"],
        "latest first"
    );
    assert_eq!(
        r.body["items"][2]["occurred_at"], "2026-01-01T01:30:00Z",
        "stored in UTC"
    );

    for bad in [
        json!({"kind": "Purchase!", "amount_cents": 1, "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"kind": "purchase", "amount_cents": 1, "currency": "euro", "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"kind": "purchase", "amount_cents": 1, "occurred_at": "yesterday"}),
        json!({"kind": "purchase", "amount_cents": 1.5, "occurred_at": "2026-01-01T00:00:00Z"}),
    ] {
        app.admin("POST", &path, Some(bad))
            .await
            .assert_problem(422);
    }
    let r = app
        .admin("POST", "/api/v1/persons/424242/transactions", Some(json!({"kind": "purchase", "amount_cents": 1, "occurred_at": "2026-01-01T00:00:00Z"})))
        .await;
    r.assert_problem(404);
    assert_eq!(app.admin("GET", &path, None).await.body["total"], 3);
}

async fn health_and_contract(app: TestApp) {
    let r = app.send("GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["database"], app.backend.name());
    let r = app.send("GET", "/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    let committed = include_str!("../../openapi/openapi.json");
    assert!(r.text == committed, "the served document differs from openapi/openapi.json; run `MAILBAAR_UPDATE_OPENAPI=1 cargo test -p mailbaar-api --test contract`");
    let r = app.send("GET", "/docs", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("/docs/swagger-ui-bundle.js"));
    let r = app
        .send("GET", "/docs/swagger-ui-bundle.js", None, None)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text.len() > 100_000);
    let r = app.send("GET", "/no/such/path", None, None).await;
    r.assert_problem(404);
}
