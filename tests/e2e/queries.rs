//! The query engine over HTTP, on both engines: registry, runs, saved queries, settings.

use mailbaar_e2e::TestApp;
use serde_json::{json, Value};

mailbaar_store::both_engines!(async with mailbaar_e2e::on:
    registry_lists_fields_with_operators,
    run_counts_and_pages_with_columns,
    invalid_trees_answer_422_with_paths,
    saved_query_lifecycle_over_http,
    settings_change_contact_pressure_period,
    soft_opt_ins_run_on_saved_queries,
);

async fn person(app: &TestApp, body: Value) -> i64 {
    let r = app.admin("POST", "/api/v1/persons", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_i64().unwrap()
}

async fn opt_in(app: &TestApp, person: i64, type_id: i64) {
    let r = app
        .admin(
            "POST",
            &format!("/api/v1/persons/{person}/consents"),
            Some(
                json!({"opt_in_type_id": type_id, "opt_in": true, "channel": "web_form",
                "description": "Yes, send me the newsletter"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn save(app: &TestApp, name: &str, conditions: Value) -> i64 {
    let r = app
        .admin(
            "POST",
            "/api/v1/queries",
            Some(json!({"name": name, "conditions": conditions})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_i64().unwrap()
}

async fn registry_lists_fields_with_operators(app: TestApp) {
    let viewer = app.token("viewer").await;
    let r = app
        .as_token(&viewer, "GET", "/api/v1/query-fields", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fields = r.body.as_array().unwrap();
    let find = |name: &str| fields.iter().find(|f| f["name"] == name).cloned();
    let consent = find("consent.1").expect("newsletter consent field");
    assert_eq!(consent["value_type"], "boolean");
    let pressure = find("contact_pressure").unwrap();
    assert!(pressure["operators"]
        .as_array()
        .unwrap()
        .contains(&json!("lt")));
    let count = find("transactions.count").unwrap();
    assert_eq!(count["parameters"], json!(["kind", "within_days"]));
    assert!(find("in_query").is_some() && find("not_in_query").is_some());
    assert!(
        find("anonymized_at").is_none(),
        "anonymized persons are never selected"
    );
}

async fn run_counts_and_pages_with_columns(app: TestApp) {
    let mut ids = Vec::new();
    for (i, city) in ["Utrecht", "Amsterdam", "Utrecht", "Utrecht"]
        .iter()
        .enumerate()
    {
        ids.push(
            person(
                &app,
                json!({"email": format!("p{i}@example.nl"), "city": city, "first_name": format!("P{i}")}),
            )
            .await,
        );
    }
    opt_in(&app, ids[0], 1).await;
    opt_in(&app, ids[2], 1).await;
    let viewer = app.token("viewer").await;
    let tree = json!({"all": [
        {"field": "city", "op": "eq", "value": "utrecht"},
        {"field": "consent.1", "op": "ne", "value": true}
    ]});
    let r = app
        .as_token(
            &viewer,
            "POST",
            "/api/v1/queries/run",
            Some(json!({"conditions": tree, "columns": ["city", "consents"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["items"][0]["id"], ids[3]);
    assert_eq!(r.body["items"][0]["city"], "Utrecht");
    assert!(r.body["items"][0].get("email").is_none());

    let r = app
        .admin(
            "POST",
            "/api/v1/queries/run",
            Some(
                json!({"conditions": {"field": "city", "op": "eq", "value": "Utrecht"},
                "page": 2, "per_page": 2}),
            ),
        )
        .await;
    assert_eq!(r.body["count"], 3);
    let page: Vec<i64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page, [ids[3]], "stable id order across pages");
    assert_eq!(r.body["items"][0]["mailable"], true, "default columns");
}

async fn invalid_trees_answer_422_with_paths(app: TestApp) {
    let r = app
        .admin(
            "POST",
            "/api/v1/queries/run",
            Some(json!({"conditions": {"all": [
                {"field": "city", "op": "gt", "value": "A"},
                {"any": [{"field": "shoe_size", "op": "eq", "value": 42}]},
                {"field": "transactions.count", "op": "ge", "value": "two"}
            ]}})),
        )
        .await;
    r.assert_problem(422);
    let paths: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/conditions/all/0/op",
            "/conditions/all/1/any/0/field",
            "/conditions/all/2/value"
        ]
    );
    app.admin(
        "POST",
        "/api/v1/queries/run",
        Some(json!({"conditions": {"all": "no"}})),
    )
    .await
    .assert_problem(422);
    app.admin(
        "POST",
        "/api/v1/queries/run",
        Some(json!({"conditions": {"all": []}, "columns": ["password"]})),
    )
    .await
    .assert_problem(422);
    let r = app
        .send(
            "POST",
            "/api/v1/queries/run",
            Some(&app.admin_token),
            Some(("application/json", b"{\"conditions\": ".to_vec())),
        )
        .await;
    r.assert_problem(400);
    // A refused save writes nothing.
    app.admin(
        "POST",
        "/api/v1/queries",
        Some(
            json!({"name": "broken", "conditions": {"field": "in_query", "op": "eq", "value": 77}}),
        ),
    )
    .await
    .assert_problem(422);
    let r = app.admin("GET", "/api/v1/queries", None).await;
    assert_eq!(r.body["total"], 0);
}

async fn saved_query_lifecycle_over_http(app: TestApp) {
    let a = person(&app, json!({"email": "a@example.nl", "city": "Zwolle"})).await;
    person(&app, json!({"email": "b@example.nl", "city": "Delft"})).await;
    let zwolle = save(
        &app,
        "AB – 20261123 – Zwolle",
        json!({"field": "city", "op": "eq", "value": "Zwolle"}),
    )
    .await;
    let r = app
        .admin("GET", &format!("/api/v1/queries/{zwolle}"), None)
        .await;
    assert_eq!(r.body["created_by"], "token:1:MAILBAAR_ADMIN_TOKEN");
    assert_eq!(r.body["conditions"]["value"], "Zwolle");

    // Duplicate names (ignoring case) are refused.
    app.admin(
        "POST",
        "/api/v1/queries",
        Some(json!({"name": "ab – 20261123 – zwolle", "conditions": {"all": []}})),
    )
    .await
    .assert_problem(409);
    // The viewer reads and runs but does not save.
    let viewer = app.token("viewer").await;
    app.as_token(
        &viewer,
        "POST",
        "/api/v1/queries",
        Some(json!({"name": "v", "conditions": {"all": []}})),
    )
    .await
    .assert_problem(403);
    let r = app
        .as_token(
            &viewer,
            "POST",
            &format!("/api/v1/queries/{zwolle}/run"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["items"][0]["id"], a);

    // Save as, find by name, overwrite.
    let r = app
        .admin(
            "POST",
            &format!("/api/v1/queries/{zwolle}/copy"),
            Some(json!({"name": "AB – 20261124 – not Zwolle"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let copy = r.body["id"].as_i64().unwrap();
    let r = app
        .admin(
            "PUT",
            &format!("/api/v1/queries/{copy}"),
            Some(json!({"name": "AB – 20261124 – not Zwolle",
                "conditions": {"field": "not_in_query", "op": "eq", "value": zwolle}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .admin(
            "POST",
            &format!("/api/v1/queries/{copy}/run"),
            Some(json!({"columns": ["city"]})),
        )
        .await;
    assert_eq!(r.body["count"], 1);
    assert_eq!(r.body["items"][0]["city"], "Delft");
    let r = app
        .admin("GET", "/api/v1/queries?name=NOT%20zwolle", None)
        .await;
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["items"][0]["id"], copy);

    // A cycle is refused with the path of the reference.
    let r = app
        .admin(
            "PUT",
            &format!("/api/v1/queries/{zwolle}"),
            Some(json!({"name": "AB – 20261123 – Zwolle",
                "conditions": {"any": [{"field": "in_query", "op": "eq", "value": copy}]}})),
        )
        .await;
    r.assert_problem(422);
    assert_eq!(r.body["errors"][0]["field"], "/conditions/any/0/value");
    assert_eq!(r.body["code"], "invalid_conditions", "{}", r.text);

    // In use: the answer says by what.
    let r = app
        .admin("DELETE", &format!("/api/v1/queries/{zwolle}"), None)
        .await;
    r.assert_problem(409);
    assert_eq!(r.body["code"], "query_in_use", "{}", r.text);
    let r = app
        .admin("DELETE", &format!("/api/v1/queries/{copy}"), None)
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .admin("DELETE", &format!("/api/v1/queries/{zwolle}"), None)
        .await;
    assert_eq!(r.status, 204);
    app.admin("GET", &format!("/api/v1/queries/{zwolle}"), None)
        .await
        .assert_problem(404);

    let r = app
        .admin(
            "GET",
            "/api/v1/queries/name-suggestion?initials=ab&purpose=newsletter",
            None,
        )
        .await;
    let name = r.body["name"].as_str().unwrap();
    assert!(
        name.starts_with("AB – 20") && name.ends_with(" – newsletter"),
        "{name}"
    );
}

async fn settings_change_contact_pressure_period(app: TestApp) {
    let r = app.admin("GET", "/api/v1/settings", None).await;
    assert_eq!(r.body["contact_pressure_days"], 7);
    let marketer = app.token("marketer").await;
    app.as_token(
        &marketer,
        "PATCH",
        "/api/v1/settings",
        Some(json!({"contact_pressure_days": 14})),
    )
    .await
    .assert_problem(403);
    app.admin(
        "PATCH",
        "/api/v1/settings",
        Some(json!({"contact_pressure_days": 0})),
    )
    .await
    .assert_problem(422);
    app.admin("PATCH", "/api/v1/settings", Some(json!({"colour": "red"})))
        .await
        .assert_problem(422);
    let r = app
        .admin(
            "PATCH",
            "/api/v1/settings",
            Some(json!({"contact_pressure_days": 14})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["contact_pressure_days"], 14);
    let r = app.admin("GET", "/api/v1/settings", None).await;
    assert_eq!(r.body["contact_pressure_days"], 14);
}

async fn soft_opt_ins_run_on_saved_queries(app: TestApp) {
    let a = person(&app, json!({"email": "a@example.nl", "city": "Ede"})).await;
    person(&app, json!({"email": "b@example.nl", "city": "Ede"})).await;
    person(&app, json!({"email": "c@example.nl", "city": "Epe"})).await;
    opt_in(&app, a, 2).await;
    let ede = save(
        &app,
        "Ede",
        json!({"field": "city", "op": "eq", "value": "Ede"}),
    )
    .await;
    app.admin(
        "PATCH",
        "/api/v1/opt-in-types/2",
        Some(json!({"soft_query_id": 9999})),
    )
    .await
    .assert_problem(422);
    let r = app
        .admin(
            "PATCH",
            "/api/v1/opt-in-types/2",
            Some(json!({"soft_query_id": ede})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .admin("POST", "/api/v1/opt-in-types/2/soft-opt-ins", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["matched"], 2);
    assert_eq!(r.body["already_recorded"], 1);
    assert_eq!(r.body["assigned"], 1);
    let r = app
        .admin("POST", "/api/v1/opt-in-types/2/soft-opt-ins", None)
        .await;
    assert_eq!(r.body["assigned"], 0, "idempotent");
    // The type's query cannot be deleted while the type uses it.
    let r = app
        .admin("DELETE", &format!("/api/v1/queries/{ede}"), None)
        .await;
    r.assert_problem(409);
    assert_eq!(r.body["code"], "query_in_use", "{}", r.text);
}
