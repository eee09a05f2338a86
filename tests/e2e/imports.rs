//! Imports and exports over HTTP, on both engines: a CSV body streamed in, 202 at once,
//! progress and row errors, the errors as CSV, refusals that write nothing, an export
//! streamed out in the column names the import takes, and who may do what.

use mailbaar_e2e::mailing::ok;
use mailbaar_e2e::TestApp;
use serde_json::{json, Value};

mailbaar_store::both_engines!(async with mailbaar_e2e::on: import_and_export_over_http);

fn encoded(mapping: &Value) -> String {
    url::form_urlencoded::byte_serialize(mapping.to_string().as_bytes()).collect()
}

async fn upload(app: &TestApp, token: &str, mapping: &Value, body: &[u8]) -> mailbaar_e2e::Reply {
    app.send(
        "POST",
        &format!("/api/v1/imports?mapping={}", encoded(mapping)),
        Some(token),
        Some(("text/csv", body.to_vec())),
    )
    .await
}

async fn wait(app: &TestApp, id: i64) -> Value {
    for _ in 0..1500 {
        let r = ok(
            app.admin("GET", &format!("/api/v1/imports/{id}"), None)
                .await,
            200,
        )
        .await;
        if matches!(r["status"].as_str(), Some("done" | "failed")) {
            return r;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("import {id} did not end");
}

async fn import_and_export_over_http(app: TestApp) {
    let persons_before =
        ok(app.admin("GET", "/api/v1/persons", None).await, 200).await["total"].clone();
    let mapping = json!({"columns": {"E-mail": "email", "Voornaam": "first_name", "Nieuwsbrief": "consent.1",
        "Sinds": "consent.1.captured_at"}, "consent_description": "Nieuwsbrief (oud systeem)"});
    // Refused, nothing written: not CSV, a missing column, a bad mapping, a viewer.
    let admin = app.admin_token.clone();
    upload(&app, &admin, &mapping, b"\x00\x01\x02binary")
        .await
        .assert_problem(422);
    upload(&app, &admin, &mapping, b"Mail;Voornaam\nx@example.nl;X\n")
        .await
        .assert_problem(422);
    let r = app
        .send(
            "POST",
            "/api/v1/imports?mapping=%7Bnot%20json",
            Some(&admin),
            Some(("text/csv", b"E-mail\n".to_vec())),
        )
        .await;
    r.assert_problem(422);
    let viewer = app.token("viewer").await;
    upload(&app, &viewer, &mapping, b"E-mail\nv@example.nl\n")
        .await
        .assert_problem(403);
    assert_eq!(
        ok(app.admin("GET", "/api/v1/persons", None).await, 200).await["total"],
        persons_before
    );

    // A file with a BOM, semicolons, a bad row and a duplicate in another case.
    let body = "\u{feff}E-mail;Voornaam;Nieuwsbrief;Sinds\n\
        anna@example.nl;Anna;ja;2019-03-01\n\
        bram@example.nl;Bram;nee;\n\
        kapot@;Kapot;ja;\n\
        ANNA@EXAMPLE.NL;Anna;ja;2019-03-01\n\
        cor@example.nl;Cor;misschien;\n";
    let marketer = app.token("marketer").await;
    let r = upload(&app, &marketer, &mapping, body.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(r
        .location
        .as_deref()
        .unwrap()
        .starts_with("/api/v1/imports/"));
    let id = r.body["id"].as_i64().unwrap();
    let done = wait(&app, id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        done["counts"],
        json!({"rows_read": 5, "created": 2, "updated": 0, "unchanged": 1, "skipped": 0, "failed": 2})
    );
    let errors: Vec<(i64, String)> = done["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["column"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [(4, "E-mail".to_owned()), (6, "Nieuwsbrief".to_owned())]
    );
    let csv = app
        .send(
            "GET",
            &format!("/api/v1/imports/{id}/errors.csv"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(csv.status, 200);
    assert!(csv.content_type.starts_with("text/csv"));
    assert!(
        csv.text.starts_with("row,column,reason\n4,E-mail,"),
        "{}",
        csv.text
    );

    // The export streams the persons of a query in the import's column names.
    let query = ok(
        app.admin(
            "POST",
            "/api/v1/queries",
            Some(json!({"name": "imported newsletter", "conditions": {"field": "consent.1", "op": "eq", "value": true}})),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/queries/{query}/export.csv?columns=email,first_name,consent.1,consent.1.captured_at");
    app.send("GET", &path, Some(&viewer), None)
        .await
        .assert_problem(403);
    let export = app.send("GET", &path, Some(&marketer), None).await;
    assert_eq!(export.status, 200, "{}", export.text);
    assert!(export.content_type.starts_with("text/csv"));
    assert_eq!(
        export.text,
        "email,first_name,consent.1,consent.1.captured_at\nanna@example.nl,Anna,yes,2019-03-01T00:00:00+00:00\n"
    );
    app.send(
        "GET",
        &format!("/api/v1/queries/{query}/export.csv?columns=shoe_size"),
        Some(&marketer),
        None,
    )
    .await
    .assert_problem(422);
    app.send(
        "GET",
        "/api/v1/queries/9999/export.csv",
        Some(&marketer),
        None,
    )
    .await
    .assert_problem(404);
    // Other content types are refused; columns an import would refuse are refused too.
    let r = app
        .send(
            "POST",
            &format!("/api/v1/imports?mapping={}", encoded(&mapping)),
            Some(&admin),
            Some(("application/json", b"{}".to_vec())),
        )
        .await;
    r.assert_problem(415);
    app.send(
        "GET",
        &format!("/api/v1/queries/{query}/export.csv?columns=email,email"),
        Some(&marketer),
        None,
    )
    .await
    .assert_problem(422);
    app.send(
        "GET",
        &format!("/api/v1/queries/{query}/export.csv?columns=email,consent.999"),
        Some(&marketer),
        None,
    )
    .await
    .assert_problem(422);
    // A cell a spreadsheet would run is exported as text, and imports back as it was.
    let formula =
        "E-mail;Voornaam;Nieuwsbrief\nformule@example.nl;=HYPERLINK(\"http://evil.example\");ja\n";
    let plain = json!({"columns": {"E-mail": "email", "Voornaam": "first_name", "Nieuwsbrief": "consent.1"}});
    let r = upload(&app, &marketer, &plain, formula.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let done = wait(&app, r.body["id"].as_i64().unwrap()).await;
    assert_eq!(done["counts"]["created"], 1, "{done}");
    let export = app
        .send(
            "GET",
            &format!("/api/v1/queries/{query}/export.csv?columns=email,first_name"),
            Some(&marketer),
            None,
        )
        .await;
    assert!(
        export
            .text
            .contains("formule@example.nl,\"'=HYPERLINK(\"\"http://evil.example\"\")\""),
        "{}",
        export.text
    );
    let back = upload(
        &app,
        &marketer,
        &json!({"mode": "update_existing"}),
        export.text.as_bytes(),
    )
    .await;
    let done = wait(&app, back.body["id"].as_i64().unwrap()).await;
    assert_eq!(done["counts"]["unchanged"], 2, "{done}");

    // The export is in the audit log with its count.
    let audit = ok(app.admin("GET", "/api/v1/audit-log", None).await, 200).await;
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "persons.exported"
            && e["detail"].as_str().unwrap().ends_with(": 1 persons")));
}
