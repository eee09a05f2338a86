//! The committed contract (`openapi/openapi.json`) must equal the document the code
//! derives, and every operation and schema in it must carry a description and an example.
//!
//! After a deliberate change: `MAILBAAR_UPDATE_OPENAPI=1 cargo test -p mailbaar-api --test contract`.

use std::path::PathBuf;

use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json")
}

#[test]
fn committed_document_matches_the_code() {
    let generated = mailbaar_api::openapi::document_json();
    let path = committed_path();
    if std::env::var_os("MAILBAAR_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale; regenerate it with MAILBAAR_UPDATE_OPENAPI=1 cargo test -p mailbaar-api --test contract"
    );
}

#[test]
fn every_operation_and_schema_is_described_with_an_example() {
    let doc: Value = serde_json::from_str(mailbaar_api::openapi::document_json()).unwrap();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let described = op
                .get("summary")
                .or(op.get("description"))
                .and_then(Value::as_str);
            if described.is_none_or(str::is_empty) {
                missing.push(format!("{method} {path}: no description"));
            }
            for (status, res) in op["responses"].as_object().unwrap() {
                if res
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    missing.push(format!("{method} {path} {status}: no description"));
                }
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if schema
            .get("description")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            missing.push(format!("schema {name}: no description"));
        }
        if schema.get("example").is_none() && schema.get("examples").is_none() {
            missing.push(format!("schema {name}: no example"));
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented parts of the contract:\n{}",
        missing.join("\n")
    );
}

/// The statuses every operation of a kind can answer, whatever its handler: the rule
/// `openapi::StandardResponses` applies, checked on the document as published.
fn standard_statuses(path: &str, op: &Value) -> Vec<(&'static str, &'static str)> {
    let mut statuses = Vec::new();
    let params = op["parameters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let given = |place: &str| params.iter().any(|p| p["in"] == place);
    if op.get("requestBody").is_some() {
        for status in ["400", "413", "415", "422"] {
            statuses.push((
                status,
                "a request body (malformed, too large, wrong media type, invalid)",
            ));
        }
    }
    if given("query") {
        statuses.push(("422", "query parameters (malformed or out of range)"));
    }
    if given("path") {
        statuses.push(("404", "path parameters (no such resource, or not a number)"));
    }
    if op.get("security").is_some() || path.starts_with("/api/v1/") {
        statuses.push(("401", "a bearer token"));
    }
    if path.starts_with("/api/v1/") {
        statuses.push(("500", "the API (internal error)"));
        statuses.push(("503", "the API (database unavailable)"));
    }
    statuses
}

#[test]
fn every_operation_declares_the_standard_answers_as_problems() {
    let doc: Value = serde_json::from_str(mailbaar_api::openapi::document_json()).unwrap();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for (status, why) in standard_statuses(path, op) {
                if !responses.contains_key(status) {
                    missing.push(format!(
                        "{method} {path}: no {status}, which {why} can answer"
                    ));
                }
            }
            if path.starts_with("/api/v1/") && op["security"].as_array().is_none_or(Vec::is_empty) {
                missing.push(format!("{method} {path}: no bearer security requirement"));
            }
            for (status, res) in responses {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let content = res["content"].as_object();
                let problem = content
                    .filter(|c| c.len() == 1)
                    .and_then(|c| c.get("application/problem+json"))
                    .map(|c| &c["schema"]["$ref"]);
                if problem.and_then(Value::as_str) != Some("#/components/schemas/Problem") {
                    missing.push(format!(
                        "{method} {path} {status}: not an application/problem+json Problem"
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "statuses the service answers but the contract does not declare:\n{}",
        missing.join("\n")
    );
}

/// Where a declared limit of a string property refuses a value (`None`: it fits).
fn refusal(limits: &Value, value: &Value) -> Option<String> {
    if let Some(allowed) = limits["enum"].as_array() {
        if !allowed.contains(value) {
            return Some(format!("{value} is not one of {allowed:?}"));
        }
    }
    let text = value.as_str()?;
    let chars = text.chars().count() as u64;
    if limits["maxLength"].as_u64().is_some_and(|max| chars > max) {
        return Some(format!("{text:?} is longer than maxLength"));
    }
    if limits["minLength"].as_u64().is_some_and(|min| chars < min) {
        return Some(format!("{text:?} is shorter than minLength"));
    }
    None
}

#[test]
fn examples_keep_the_declared_limits() {
    let doc: Value = serde_json::from_str(mailbaar_api::openapi::document_json()).unwrap();
    let mut refused = Vec::new();
    let mut limited = 0;
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let Some(properties) = schema["properties"].as_object() else {
            continue;
        };
        for (field, limits) in properties {
            let has_limit = ["enum", "maxLength", "minLength"]
                .iter()
                .any(|k| limits.get(*k).is_some());
            if !has_limit {
                continue;
            }
            limited += 1;
            if let Some(value) = schema["example"].get(field) {
                if let Some(why) = refusal(limits, value) {
                    refused.push(format!("schema {name}, example {field}: {why}"));
                }
            }
        }
    }
    // Which limits must be there is `enforced_input_limits_are_declared`'s concern.
    assert!(limited > 0, "no property declares a limit");
    assert!(
        refused.is_empty(),
        "examples the service would refuse:\n{}",
        refused.join("\n")
    );
}

/// The limits the service enforces on input text, as the contract must state them.
#[test]
fn enforced_input_limits_are_declared() {
    let doc: Value = serde_json::from_str(mailbaar_api::openapi::document_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut wrong = Vec::new();
    let mut expect = |schema: &str, field: &str, key: &str, want: Value| {
        let got = &schemas[schema]["properties"][field][key];
        if *got != want {
            wrong.push(format!("{schema}.{field} {key}: {got}, not {want}"));
        }
    };
    for schema in ["NewPerson", "PersonChanges"] {
        for (field, max) in [
            ("email", 254),
            ("first_name", 200),
            ("infix", 50),
            ("last_name", 200),
            ("street", 200),
            ("house_number", 20),
            ("postal_code", 20),
            ("city", 100),
            ("country", 100),
            ("phone", 50),
            ("mobile", 50),
            ("iban", 42),
            ("bsn", 9),
        ] {
            expect(schema, field, "maxLength", max.into());
        }
    }
    expect(
        "NewTransaction",
        "kind",
        "pattern",
        "^[a-z0-9_]{1,64}$".into(),
    );
    expect("NewTransaction", "currency", "pattern", "^[A-Z]{3}$".into());
    expect("NewTransaction", "description", "maxLength", 500.into());
    for schema in ["ConsentChange", "Unsubscribe"] {
        expect(
            schema,
            "channel",
            "pattern",
            "^[a-z][a-z0-9_]{0,63}$".into(),
        );
        expect(schema, "description", "minLength", 1.into());
        expect(schema, "description", "maxLength", 500.into());
    }
    for schema in ["NewOptInType", "OptInTypeChanges"] {
        expect(schema, "name", "minLength", 1.into());
        expect(schema, "name", "maxLength", 100.into());
        expect(schema, "description", "maxLength", 500.into());
    }
    for schema in ["SavedQueryInput", "QueryCopy"] {
        expect(schema, "name", "minLength", 1.into());
        expect(schema, "name", "maxLength", 200.into());
        expect(schema, "description", "maxLength", 2000.into());
    }
    expect("NewToken", "name", "minLength", 1.into());
    expect("NewToken", "name", "maxLength", 100.into());
    expect("NewRetentionRule", "name", "minLength", 1.into());
    expect("NewRetentionRule", "name", "maxLength", 200.into());
    expect(
        "SettingsChanges",
        "organisation_name",
        "minLength",
        1.into(),
    );
    expect(
        "SettingsChanges",
        "organisation_name",
        "maxLength",
        200.into(),
    );
    let mut states = Vec::new();
    // Stored states are enums of their own, referred to by the fields that take them.
    for (schema, field, name, values) in [
        (
            "NewRetentionRule",
            "action",
            "RetentionAction",
            serde_json::json!(["anonymize"]),
        ),
        (
            "NewRetentionRule",
            "schedule",
            "RetentionSchedule",
            serde_json::json!(["manual", "daily"]),
        ),
        (
            "Settings",
            "language",
            "Language",
            serde_json::json!(["nl", "en"]),
        ),
    ] {
        let field_schema = schemas[schema]["properties"][field].to_string();
        if !field_schema.contains(&format!("#/components/schemas/{name}")) {
            states.push(format!(
                "{schema}.{field}: {field_schema} does not refer to {name}"
            ));
        }
        if schemas[name]["enum"] != values {
            states.push(format!("{name}: {}, not enum {values}", schemas[name]));
        }
    }
    // Optional and nullable: `null` or one of the languages.
    let language = &schemas["SettingsChanges"]["properties"]["language"];
    if language["oneOf"][0] != serde_json::json!({"type": "null"})
        || language["oneOf"][1]["$ref"] != "#/components/schemas/Language"
    {
        states.push(format!("SettingsChanges.language: {language}"));
    }
    wrong.extend(states);
    assert!(
        wrong.is_empty(),
        "limits not declared as enforced:\n{}",
        wrong.join("\n")
    );
}
