//! Ranges that hold: on every paged route, `page` and `per_page` are taken from the lower
//! to the upper bound the contract declares, and refused (422 naming the parameter) just
//! outside them, for huge numbers and for anything that is not a whole number; on both
//! engines. An optional body that is there is read, never ignored.

use std::collections::BTreeMap;

use mailbaar_e2e::{Reply, TestApp};
use serde_json::{json, Value};

mailbaar_store::both_engines!(async with mailbaar_e2e::on:
    paging_out_of_range_is_refused_on_every_list_route,
    optional_bodies_are_read_never_ignored,
);

/// Where a route takes its paging.
#[derive(Clone, Copy, Debug)]
enum Takes {
    Query,
    Body,
}

/// Every paged route: method, path (with ids to fill in) and where paging goes.
const ROUTES: [(&str, &str, Takes); 11] = [
    ("GET", "/api/v1/campaigns", Takes::Query),
    ("GET", "/api/v1/campaign-steps", Takes::Query),
    ("GET", "/api/v1/mailjobs", Takes::Query),
    ("GET", "/api/v1/persons", Takes::Query),
    ("GET", "/api/v1/persons/{id}/transactions", Takes::Query),
    ("GET", "/api/v1/queries", Takes::Query),
    ("GET", "/api/v1/audit-log", Takes::Query),
    ("GET", "/api/v1/mailjobs/{id}/recipients", Takes::Query),
    ("GET", "/api/v1/unreadable-reports", Takes::Query),
    ("POST", "/api/v1/queries/run", Takes::Body),
    ("POST", "/api/v1/queries/{id}/run", Takes::Body),
];

/// Query-string values that are never a page or a page size.
const BAD_TEXT: [&str; 9] = [
    "0",
    "-1",
    "99999999999999999999",
    "-99999999999999999999",
    "abc",
    "1.5",
    "1e3",
    "",
    "%20",
];

/// JSON values that are never a page or a page size.
fn bad_json() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e20),
        json!(2.5),
        json!("50"),
        json!(true),
        json!([1]),
        json!({"n": 1}),
    ]
}

/// `(minimum, maximum)` of `page` and `per_page` as the contract declares them.
type Ranges = [(i64, i64); 2];

/// The declared paging ranges of every operation in the contract that pages, so that the
/// table cannot miss a route and the bounds tested are the documented ones.
fn declared_paging() -> BTreeMap<(String, String), Ranges> {
    let doc: Value = serde_json::from_str(mailbaar_api::openapi::document_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let bound = |schema: &Value, key: &str| {
        schema[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} is declared: {schema}"))
    };
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut found: BTreeMap<&str, Value> = BTreeMap::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if let Some(name @ ("page" | "per_page")) = p["name"].as_str() {
                    assert_eq!(p["in"], "query", "{method} {path} {name}");
                    found.insert(name, p["schema"].clone());
                }
            }
            let body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .and_then(|r| r.rsplit('/').next());
            if let Some(name) = body {
                for key in ["page", "per_page"] {
                    if let Some(s) = schemas[name]["properties"].get(key) {
                        found.insert(key, s.clone());
                    }
                }
            }
            if found.is_empty() {
                continue;
            }
            assert_eq!(found.len(), 2, "{method} {path} pages with both");
            let range = |k: &str| (bound(&found[k], "minimum"), bound(&found[k], "maximum"));
            out.insert(
                (method.to_uppercase(), path.clone()),
                [range("page"), range("per_page")],
            );
        }
    }
    out
}

fn assert_refused(r: &Reply, field: &str, what: &str) {
    assert_eq!(r.status, 422, "{what}: {}", r.text);
    r.assert_problem(422);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, [field], "{what}: {}", r.text);
}

/// One request with one paging value: in the query string as given, or in the body.
async fn with_value(
    app: &TestApp,
    takes: Takes,
    method: &str,
    path: &str,
    name: &str,
    value: Value,
) -> Reply {
    match takes {
        Takes::Query => {
            let text = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or(value.to_string());
            app.admin(method, &format!("{path}?{name}={text}"), None)
                .await
        }
        Takes::Body => {
            let mut body = json!({});
            if path == "/api/v1/queries/run" {
                body["conditions"] = json!({"all": []});
            }
            body[name] = value;
            app.admin(method, path, Some(body)).await
        }
    }
}

async fn paging_out_of_range_is_refused_on_every_list_route(app: TestApp) {
    let declared = declared_paging();
    let table: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        {
            let mut t = table.clone();
            t.sort();
            t
        },
        declared.keys().cloned().collect::<Vec<_>>(),
        "the table names every paged route of the contract"
    );

    let person = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "paging@example.nl"})),
        )
        .await;
    assert_eq!(person.status, 201, "{}", person.text);
    let person = person.body["id"].as_i64().unwrap();
    let query = app
        .admin(
            "POST",
            "/api/v1/queries",
            Some(json!({"name": "paging", "conditions": {"all": []}})),
        )
        .await;
    assert_eq!(query.status, 201, "{}", query.text);
    let query = query.body["id"].as_i64().unwrap();

    // A mail job, for its recipient list.
    let job = {
        let w = mailbaar_e2e::mailing::world(&app).await;
        let step = mailbaar_e2e::mailing::ready_step(&app, &w).await;
        mailbaar_e2e::mailing::send_and_wait(&app, step).await
    };

    let mut refused = 0;
    for (method, template, takes) in ROUTES {
        let ranges = declared[&(method.to_owned(), template.to_owned())];
        let id = if template.starts_with("/api/v1/queries") {
            query
        } else if template.starts_with("/api/v1/mailjobs") {
            job
        } else {
            person
        };
        let path = template.replace("{id}", &id.to_string());
        for (name, (min, max)) in ["page", "per_page"].into_iter().zip(ranges) {
            assert_eq!(min, 1, "{method} {path} {name}");
            let what = |v: &Value| format!("{method} {path} {name}={v}");
            // The declared bounds are taken and answered back.
            for good in [min, max] {
                let r = with_value(&app, takes, method, &path, name, json!(good)).await;
                assert_eq!(r.status, 200, "{}: {}", what(&json!(good)), r.text);
                assert_eq!(r.body[name], good, "{}", r.text);
            }
            // Just outside them, and what is never a number of the range, is refused.
            let mut bad = vec![json!(min - 1), json!(max + 1)];
            match takes {
                Takes::Query => bad.extend(BAD_TEXT.map(Value::from)),
                Takes::Body => bad.extend(bad_json()),
            }
            for value in bad {
                let r = with_value(&app, takes, method, &path, name, value.clone()).await;
                assert_refused(&r, name, &what(&value));
                refused += 1;
            }
            match takes {
                Takes::Query => {
                    let r = app
                        .admin(method, &format!("{path}?{name}=1&{name}=2"), None)
                        .await;
                    assert_refused(&r, name, &format!("{method} {path} with {name} twice"));
                }
                Takes::Body => {
                    let r = with_value(&app, takes, method, &path, name, Value::Null).await;
                    assert_eq!(r.status, 200, "null is left out: {}", r.text);
                    assert_eq!(r.body[name], if name == "page" { 1 } else { 50 });
                }
            }
        }
    }
    // Both wrong at once: both named.
    let r = app
        .admin("GET", "/api/v1/persons?page=0&per_page=0", None)
        .await;
    r.assert_problem(422);
    let fields: Vec<&Value> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["field"])
        .collect();
    assert_eq!(fields, [&json!("page"), &json!("per_page")], "{}", r.text);
    eprintln!("{}: {refused} paging values refused", app.backend.name());
}

async fn optional_bodies_are_read_never_ignored(app: TestApp) {
    let query = app
        .admin(
            "POST",
            "/api/v1/queries",
            Some(json!({"name": "bodies", "conditions": {"all": []}})),
        )
        .await;
    assert_eq!(query.status, 201, "{}", query.text);
    let run = format!("/api/v1/queries/{}/run", query.body["id"]);
    // Left out, or null: the defaults.
    let r = app.send("POST", &run, Some(&app.admin_token), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["per_page"], 50);
    let r = app.admin("POST", &run, Some(Value::Null)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // There, but wrong: refused, not taken for left out.
    let r = app.admin("POST", &run, Some(json!({"perpage": 5}))).await;
    r.assert_problem(422);
    let r = app
        .send(
            "POST",
            &run,
            Some(&app.admin_token),
            Some(("application/json", b"{\"per_page\":".to_vec())),
        )
        .await;
    r.assert_problem(400);
    let r = app
        .send(
            "POST",
            &run,
            Some(&app.admin_token),
            Some(("text/plain", b"{}".to_vec())),
        )
        .await;
    r.assert_problem(415);
    // The soft opt-in run: a misspelt or mistyped choice must not become "opt in".
    let soft = "/api/v1/opt-in-types/1/soft-opt-ins?dry_run=true";
    for (body, field) in [
        (json!({"opt_in": "false"}), "opt_in"),
        (json!({"optin": false}), "optin"),
    ] {
        let r = app.admin("POST", soft, Some(body.clone())).await;
        r.assert_problem(422);
        assert_eq!(r.body["errors"][0]["field"], field, "{body}: {}", r.text);
    }
}
