//! Sending a mailing as the mailing manual walks it (chapters 2–5), over HTTP, on both
//! engines: selection, step, readiness, preview, test mail, schedule, move, preparation
//! freezing the list, the send, the `.eml` files, blocking, reset, a second send skipping
//! earlier recipients, test moments and results.

use diesel::prelude::*;
use mail_parser::MessageParser;
use mailbaar_e2e::mailing::{codes, local, ok, opt_in, person, send_now, world, HTML};
use mailbaar_e2e::TestApp;
use serde_json::json;

mailbaar_store::both_engines!(async with mailbaar_e2e::on: manual_walkthrough, refusals_change_nothing);

async fn manual_walkthrough(app: TestApp) {
    let w = world(&app).await;
    ok(
        app.admin(
            "PATCH",
            "/api/v1/settings",
            Some(json!({"preparation_lead_minutes": 60, "preparation_minutes_per_100k": 0})),
        )
        .await,
        200,
    )
    .await;

    // §2: a step, unfinished: readiness names what is missing.
    let step = ok(
        app.admin(
            "POST",
            "/api/v1/campaign-steps",
            Some(json!({"campaign_id": w.campaign_id, "name": "December", "html": "<p>Hoi</p>"})),
        )
        .await,
        201,
    )
    .await;
    let id = step["id"].as_i64().unwrap();
    assert_eq!(step["status"], "draft");
    let r = ok(
        app.admin(
            "GET",
            &format!("/api/v1/campaign-steps/{id}/readiness"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(r["ready"], false);
    let missing = codes(&r["missing"]);
    for code in ["sender_address", "subject", "selection"] {
        assert!(missing.contains(&code.to_owned()), "{missing:?}");
    }
    // Sending it now is refused with the same list.
    let refused = app
        .admin("POST", &format!("/api/v1/campaign-steps/{id}/send"), None)
        .await;
    refused.assert_problem(409);
    assert_eq!(codes(&refused.body["missing"]), missing);

    // Finish it: sender, subject, content with the preference link, blocks, selection.
    let step = ok(
        app.admin(
            "PATCH",
            &format!("/api/v1/campaign-steps/{id}"),
            Some(
                json!({"from_name": "Stichting Voorbeeld", "from_email": "nieuws@example.org",
                "subject": "Hallo {{ person.first_name }}", "preheader": "Nieuws van december",
                "html": HTML, "query_id": w.query_id, "opt_in_type_id": w.type_id,
                "blocks": [{"name": "donors", "condition":
                    {"field": "transactions.count", "op": "ge", "value": 1, "kind": "donation"}}]}),
            ),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(step["blocks"][0]["name"], "donors");
    let r = ok(
        app.admin(
            "GET",
            &format!("/api/v1/campaign-steps/{id}/readiness"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(r["recipients"], 5);
    assert!(r["warnings"].as_array().unwrap().is_empty(), "{r}");

    // §3.2: preview recipients 1..3, each with their own personalisation and blocks.
    for (index, first) in [(1, "Anna"), (2, "Bram"), (3, "Cor")] {
        let p = ok(
            app.admin(
                "GET",
                &format!("/api/v1/campaign-steps/{id}/preview?index={index}"),
                None,
            )
            .await,
            200,
        )
        .await;
        assert_eq!(p["total"], 5);
        assert_eq!(p["subject"], format!("Hallo {first}"));
        assert!(p["html"]
            .as_str()
            .unwrap()
            .contains(&format!("Beste {first}")));
        let thanked = p["html"].as_str().unwrap().contains("Dank voor uw gift");
        assert_eq!(thanked, first == "Anna", "{first}: block donors");
        assert!(p["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "List-Unsubscribe"));
    }
    for bad in ["0", "6", "-1", "x"] {
        let r = app
            .admin(
                "GET",
                &format!("/api/v1/campaign-steps/{id}/preview?index={bad}"),
                None,
            )
            .await;
        assert!(matches!(r.status, 400 | 422), "index {bad}: {}", r.text);
    }

    // §3.3: test mail only to test persons.
    app.admin(
        "POST",
        &format!("/api/v1/campaign-steps/{id}/test-mail"),
        Some(json!({"person_ids": [w.tester, w.real[1]]})),
    )
    .await
    .assert_problem(422);
    assert!(
        app.messages("test").is_empty(),
        "nothing sent when one is refused"
    );
    let sent = ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{id}/test-mail"),
            Some(json!({"person_ids": [w.tester]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(sent.as_array().unwrap().len(), 1);
    let test_messages = app.messages("test");
    assert_eq!(test_messages.len(), 1);
    let parsed = MessageParser::default()
        .parse(test_messages[0].as_bytes())
        .unwrap();
    assert_eq!(parsed.subject(), Some("Hallo Tessa"));

    // §4: schedule in two hours (Amsterdam time); preparation would start an hour ahead.
    let job = ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{id}/send"),
            Some(json!({"scheduled_at": local(120)})),
        )
        .await,
        202,
    )
    .await;
    let job_id = job["id"].as_i64().unwrap();
    assert_eq!(job["status"], "scheduled");
    assert_eq!(job["time_zone"], "Europe/Amsterdam");
    assert!(
        job["scheduled_at_local"]
            .as_str()
            .unwrap()
            .ends_with("+01:00"),
        "{job}"
    );
    let jobs = ok(
        app.admin(
            "GET",
            &format!("/api/v1/mailjobs?step_id={id}&status=scheduled"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(jobs["total"], 1);

    // Move it to half an hour from now: preparation (an hour ahead) starts at once and
    // freezes the list.
    let moved = ok(
        app.admin(
            "PATCH",
            &format!("/api/v1/mailjobs/{job_id}"),
            Some(json!({"scheduled_at": local(30)})),
        )
        .await,
        200,
    )
    .await;
    assert_ne!(moved["scheduled_at"], job["scheduled_at"]);
    let prepared = app.wait_for_mail_job(job_id, &["prepared"]).await;
    assert_eq!(prepared["progress"]["recipients"], 5);
    // Now the time is fixed, and later edits do not reach the job.
    app.admin(
        "PATCH",
        &format!("/api/v1/mailjobs/{job_id}"),
        Some(json!({"scheduled_at": local(45)})),
    )
    .await
    .assert_problem(409);
    // (A prepared or sending job can still be cancelled: the delivery issue's "cancel
    // stops claiming at once"; see tests/e2e/delivery.rs.)
    ok(
        app.admin(
            "PATCH",
            &format!("/api/v1/campaign-steps/{id}"),
            Some(json!({"subject": "Gewijzigd na de voorbereiding"})),
        )
        .await,
        200,
    )
    .await;
    // A person who opts in now is not on the frozen list.
    let late = person(
        &app,
        json!({"email": "fleur@example.nl", "first_name": "Fleur"}),
    )
    .await;
    opt_in(&app, late, w.type_id).await;

    // The send time comes: the job runs in batches and writes one .eml per recipient.
    send_now(&app);
    let done = app.wait_for_mail_job(job_id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["progress"]["sent"], 5);
    assert_eq!(done["progress"]["remaining"], 0);
    let messages = app.messages(&format!("job-{job_id}"));
    assert_eq!(messages.len(), 5);
    let mut to: Vec<String> = Vec::new();
    let mut message_ids = std::collections::BTreeSet::new();
    for m in &messages {
        let parsed = MessageParser::default().parse(m.as_bytes()).unwrap();
        let address = parsed
            .to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_owned();
        let first = address.split('@').next().unwrap();
        let subject = parsed.subject().unwrap();
        assert!(subject.starts_with("Hallo "), "frozen content: {subject}");
        assert!(
            subject.to_lowercase().ends_with(first),
            "{subject} to {address}"
        );
        let html = parsed.body_html(0).unwrap();
        assert_eq!(
            html.contains("Dank voor uw gift"),
            address == "anna@example.nl"
        );
        assert!(html.contains("/r/preferences/") || html.contains("/r/c/"));
        assert!(parsed.header_raw("List-Unsubscribe").is_some());
        message_ids.insert(parsed.message_id().unwrap().to_owned());
        to.push(address);
    }
    to.sort();
    assert_eq!(
        to,
        [
            "anna@example.nl",
            "bram@example.nl",
            "cor@example.nl",
            "dirk@example.nl",
            "eva@example.nl"
        ]
    );
    assert_eq!(message_ids.len(), 5);
    // Each message is a contact moment on the person's card, with its Message-ID.
    let card = ok(
        app.admin("GET", &format!("/api/v1/persons/{}/card", w.anna), None)
            .await,
        200,
    )
    .await;
    let moment = &card["contact_moments"]["latest"][0];
    assert_eq!(moment["mail_job_id"], job_id);
    assert!(message_ids.contains(moment["message_id"].as_str().unwrap()));
    assert!(moment["sent_at"].is_string());

    // §4.3: the one-time step is blocked after its send.
    let step = ok(
        app.admin("GET", &format!("/api/v1/campaign-steps/{id}"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(step["blocked"], true);
    assert_eq!(step["status"], "sent");
    let refused = app
        .admin("POST", &format!("/api/v1/campaign-steps/{id}/send"), None)
        .await;
    refused.assert_problem(409);
    assert!(codes(&refused.body["missing"]).contains(&"already_sent".to_owned()));
    let step = ok(
        app.admin("POST", &format!("/api/v1/campaign-steps/{id}/reset"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(step["blocked"], false);

    // Sent again after the reset: earlier recipients are skipped, Fleur gets it.
    let r = ok(
        app.admin(
            "GET",
            &format!("/api/v1/campaign-steps/{id}/readiness"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(r["recipients"], 1, "{r}");
    assert_eq!(r["skipped_previous"], 5);
    let p = ok(
        app.admin(
            "GET",
            &format!("/api/v1/campaign-steps/{id}/preview?index=1"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (p["total"].as_i64(), p["skipped_previous"].as_i64()),
        (Some(1), Some(5))
    );
    let second = ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{id}/send"),
            Some(json!({})),
        )
        .await,
        202,
    )
    .await;
    let second_id = second["id"].as_i64().unwrap();
    let done = app.wait_for_mail_job(second_id, &["sent", "failed"]).await;
    assert_eq!(
        (
            done["progress"]["sent"].as_i64(),
            done["skipped_previous"].as_i64()
        ),
        (Some(1), Some(5)),
        "{done}"
    );
    let messages = app.messages(&format!("job-{second_id}"));
    assert_eq!(messages.len(), 1);
    let parsed = MessageParser::default()
        .parse(messages[0].as_bytes())
        .unwrap();
    assert_eq!(parsed.subject(), Some("Gewijzigd na de voorbereiding"));
    assert_eq!(
        parsed.to().unwrap().first().unwrap().address(),
        Some("fleur@example.nl")
    );

    // §5: results, tests apart until deleted; they add up.
    let results = ok(
        app.admin("GET", &format!("/api/v1/campaign-steps/{id}/results"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(results["tests"]["sent"], 1);
    assert_eq!(results["recipients"], 6);
    let deleted = ok(
        app.admin(
            "DELETE",
            &format!("/api/v1/campaign-steps/{id}/test-contact-moments"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(deleted["deleted"], 1);
    let results = ok(
        app.admin("GET", &format!("/api/v1/campaign-steps/{id}/results"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(results["tests"]["sent"], 0);
    assert_eq!(results["mail_jobs"], 2);
    assert_eq!(results["recipients"], 6);
    assert_eq!(results["sent"], json!({"count": 6, "rate": 1.0}));
    assert_eq!(results["delivered"]["count"], 6);
    assert_eq!(results["bounced"]["count"], 0);
    assert_eq!(results["unique_opens"]["count"], 0);
    assert_eq!(results["hourly"].as_array().unwrap().len(), 168);
    let jobs = ok(
        app.admin("GET", &format!("/api/v1/mailjobs?step_id={id}"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(jobs["total"], 2);
}

/// Every refused change is a 409 with a reason, and leaves the data as it was.
async fn refusals_change_nothing(app: TestApp) {
    let w = world(&app).await;
    let step = ok(
        app.admin(
            "POST",
            "/api/v1/campaign-steps",
            Some(
                json!({"campaign_id": w.campaign_id, "name": "Welkom", "send_kind": "repeatable",
                "from_email": "nieuws@example.org", "subject": "Welkom",
                "html": "<p><a href=\"{{ preferences_url }}\">Voorkeuren</a></p>",
                "query_id": w.query_id, "opt_in_type_id": w.type_id}),
            ),
        )
        .await,
        201,
    )
    .await;
    let id = step["id"].as_i64().unwrap();
    let snapshot = |app: &TestApp| {
        let app_pool = app.pool.clone();
        move || {
            let mut conn = app_pool.get().unwrap();
            let count = |sql: &str, conn: &mut mailbaar_store::DbConnection| -> i64 {
                #[derive(QueryableByName)]
                struct N {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
            };
            (
                count("SELECT COUNT(*) AS n FROM mail_jobs", &mut conn),
                count("SELECT COUNT(*) AS n FROM saved_queries", &mut conn),
                count("SELECT COUNT(*) AS n FROM opt_in_types", &mut conn),
                count("SELECT COUNT(*) AS n FROM campaign_steps", &mut conn),
                count("SELECT COUNT(*) AS n FROM campaigns", &mut conn),
            )
        }
    };
    let counts = snapshot(&app);
    let before = counts();
    // In use: the query, the opt-in type, the campaign with steps; a repeatable step needs
    // no reset. Each refusal has its own code.
    for (method, path, code) in [
        (
            "DELETE",
            format!("/api/v1/queries/{}", w.query_id),
            "query_in_use",
        ),
        (
            "DELETE",
            format!("/api/v1/opt-in-types/{}", w.type_id),
            "opt_in_type_in_use",
        ),
        (
            "DELETE",
            format!("/api/v1/campaigns/{}", w.campaign_id),
            "campaign_has_steps",
        ),
        (
            "POST",
            format!("/api/v1/campaign-steps/{id}/reset"),
            "step_repeatable",
        ),
    ] {
        let r = app.admin(method, &path, None).await;
        r.assert_problem(409);
        assert_eq!(r.body["code"], code, "{path}: {}", r.text);
        assert_eq!(
            r.body["type"],
            format!("/problems/{code}"),
            "{path}: {}",
            r.text
        );
    }
    assert_eq!(counts(), before);
    // A scheduled job is cancelled; then it can be neither moved nor cancelled again.
    let job = ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{id}/send"),
            Some(json!({"scheduled_at": local(600)})),
        )
        .await,
        202,
    )
    .await;
    let job_id = job["id"].as_i64().unwrap();
    let cancelled = ok(
        app.admin("POST", &format!("/api/v1/mailjobs/{job_id}/cancel"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled");
    // Its preparation task stays queued until the job's time, then ends finding it cancelled.
    app.expect_leftover_tasks();
    for (method, body) in [
        ("PATCH", Some(json!({"scheduled_at": local(700)}))),
        ("POST", None),
    ] {
        let path = if method == "PATCH" {
            format!("/api/v1/mailjobs/{job_id}")
        } else {
            format!("/api/v1/mailjobs/{job_id}/cancel")
        };
        let r = app.admin(method, &path, body).await;
        r.assert_problem(409);
        assert_eq!(r.body["code"], "mail_job_cancelled", "{}", r.text);
    }
    let after = ok(
        app.admin("GET", &format!("/api/v1/mailjobs/{job_id}"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(after["scheduled_at"], cancelled["scheduled_at"]);
    // A step with a mail job keeps its results: it cannot be deleted.
    let r = app
        .admin("DELETE", &format!("/api/v1/campaign-steps/{id}"), None)
        .await;
    r.assert_problem(409);
    // Bad times: in the past, without an offset, beyond 2200.
    for bad in [
        json!(local(-30)),
        json!("2026-12-24T10:00:00"),
        json!("2301-01-01T00:00:00+00:00"),
    ] {
        let r = app
            .admin(
                "POST",
                &format!("/api/v1/campaign-steps/{id}/send"),
                Some(json!({"scheduled_at": bad})),
            )
            .await;
        assert!(matches!(r.status, 400 | 422), "{bad}: {}", r.text);
    }
    // Viewers read but do not send.
    let viewer = app.token("viewer").await;
    app.as_token(
        &viewer,
        "POST",
        &format!("/api/v1/campaign-steps/{id}/send"),
        None,
    )
    .await
    .assert_problem(403);
    let total_jobs = counts().0;
    assert_eq!(
        total_jobs,
        before.0 + 1,
        "only the cancelled job was created"
    );
    let _ = w.anna;
}
