//! The person card and profile recalculation over HTTP, on both engines.

use mailbaar_e2e::TestApp;
use serde_json::json;

mailbaar_store::both_engines!(async with mailbaar_e2e::on: card_and_recalculation_job, card_refusals);

async fn card_and_recalculation_job(app: TestApp) {
    let r = app
        .admin(
            "POST",
            "/api/v1/persons",
            Some(json!({"email": "donor@example.nl", "first_name": "Dora"})),
        )
        .await;
    let p = r.body["id"].as_i64().unwrap();
    for (kind, cents) in [("donation", 2500), ("donation", 1000), ("ticket", 1750)] {
        let r = app
            .admin(
                "POST",
                &format!("/api/v1/persons/{p}/transactions"),
                Some(json!({"kind": kind, "amount_cents": cents,
                    "occurred_at": "2026-11-01T10:00:00Z"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let viewer = app.token("viewer").await;
    let card = app
        .as_token(&viewer, "GET", &format!("/api/v1/persons/{p}/card"), None)
        .await;
    assert_eq!(card.status, 200, "{}", card.text);
    assert_eq!(card.body["details"]["first_name"], "Dora");
    assert_eq!(card.body["transactions"]["count"], 3);
    assert_eq!(
        card.body["transactions"]["per_kind"],
        json!([{"kind": "donation", "count": 2, "sum_cents": 3500},
               {"kind": "ticket", "count": 1, "sum_cents": 1750}])
    );
    assert_eq!(card.body["contact_moments"]["total"], 0);
    assert_eq!(card.body["profile"]["status"], "not_calculated_yet");
    assert_eq!(card.body["administration"]["mailable"], true);
    // service mail (first transaction) and profiling (registration) are opted in
    assert_eq!(card.body["preferences"][1]["opt_in"], true);
    assert_eq!(card.body["preferences"][2]["opt_in"], true);

    // The viewer may not start a recalculation; the admin may.
    app.as_token(&viewer, "POST", "/api/v1/profiles/recalculate", None)
        .await
        .assert_problem(403);
    let r = app
        .admin("POST", "/api/v1/profiles/recalculate", None)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["state"], "queued", "{}", r.text);
    let task = app.wait_for_task(r.body["id"].as_i64().unwrap()).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    assert_eq!(task["progress"], task["total"]);
    assert_eq!(task["message"], "1 profiles calculated");
    let card = app
        .admin("GET", &format!("/api/v1/persons/{p}/card"), None)
        .await;
    assert_eq!(card.body["profile"]["status"], "calculated");
    assert_eq!(
        card.body["profile"]["figures"]["totals"][0]["sum_cents"],
        3500
    );

    // A query on a profile field selects the profiled person.
    let r = app
        .admin(
            "POST",
            "/api/v1/queries/run",
            Some(json!({"conditions": {"field": "profile.rfm_score", "op": "ge", "value": 3}})),
        )
        .await;
    assert_eq!(r.body["count"], 1, "{}", r.text);
}

async fn card_refusals(app: TestApp) {
    app.admin("GET", "/api/v1/persons/424242/card", None)
        .await
        .assert_problem(404);
    app.send("GET", "/api/v1/persons/1/card", None, None)
        .await
        .assert_problem(401);
    app.admin("GET", "/api/v1/tasks/999", None)
        .await
        .assert_problem(404);
}
