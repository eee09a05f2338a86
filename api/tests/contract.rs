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
