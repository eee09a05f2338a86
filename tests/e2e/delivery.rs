//! The delivery engine against a real SMTP server process (`tests/smtp/sink.py`), on both
//! engines: one message per recipient with the right headers, 4xx retried, 5xx a hard
//! bounce, a dropped connection nobody's bounce; pause and resume; `mailbaar worker`
//! processes killed with SIGKILL mid-job lose nobody and double only what was in flight;
//! two workers at once share a job on PostgreSQL with exactly one message each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use mailbaar_e2e::mailing::{ok, opt_in, person, ready_step, world};
use mailbaar_e2e::smtp::{start_worker, Received, SmtpSink};
use mailbaar_e2e::{Backend, TestApp};
use mailbaar_store::schema::{contact_moments, mail_job_recipients, persons};
use serde_json::{json, Value};

mailbaar_store::both_engines!(async backend:
    smtp_delivers_once_retries_4xx_bounces_5xx_and_never_bounces_a_dropped_connection,
    pause_stops_starting_messages_and_resume_sends_exactly_the_rest,
    cancel_while_sending_stops_starting_messages_at_once,
    a_refused_message_fails_and_a_refused_sender_pauses_the_job_without_making_anyone_a_bouncer,
    the_recipient_list_says_who_got_what_and_why_and_test_mails_report_each_result,
    a_server_that_never_answers_times_out_and_bounces_nobody,
    dkim_signs_test_mails_and_sends_when_a_key_is_configured,
    killed_workers_lose_nobody_and_double_only_what_was_in_flight_at_most_once,
    killed_workers_lose_nobody_and_double_only_what_was_in_flight_retry_once
);

async fn smtp_app(backend: Backend, sink: &SmtpSink, connections: usize) -> Option<TestApp> {
    let url = sink.url();
    TestApp::spawn_with(backend, move |c| {
        c.delivery.smtp_url = Some(url);
        c.delivery.smtp_connections = connections;
        c.delivery.retry_first = Duration::from_millis(300);
        c.delivery.batch = 4;
    })
    .await
}

async fn send(app: &TestApp, step: i64) -> i64 {
    ok(
        app.admin("POST", &format!("/api/v1/campaign-steps/{step}/send"), None)
            .await,
        202,
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

async fn job(app: &TestApp, id: i64) -> Value {
    ok(
        app.admin("GET", &format!("/api/v1/mailjobs/{id}"), None)
            .await,
        200,
    )
    .await
}

fn by_recipient(received: &[Received]) -> BTreeMap<String, Vec<Received>> {
    let mut out: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for r in received {
        out.entry(r.to.clone()).or_default().push(r.clone());
    }
    out
}

/// Who got what, and why: after a send where one address is refused (550 5.1.1 at
/// `RCPT TO`) and one deferred once (451), the recipient list shows each recipient's state,
/// attempts and last reply, filters by state, searches the address folded, pages, and
/// answers CSV (by `?format=csv` and by `Accept: text/csv`); its counts are the job's
/// progress. A test mail to a refused test person is that person's `refused` result, not
/// a 500, and the other test person still gets theirs.
async fn the_recipient_list_says_who_got_what_and_why_and_test_mails_report_each_result(
    backend: Backend,
) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some(app) = smtp_app(backend, &sink, 2).await else {
        return;
    };
    let w = world(&app).await;
    let mut special = BTreeMap::new();
    for (first, email) in [
        ("Frits", "defer.frits@example.nl"),
        ("Rob", "reject.rob@example.nl"),
    ] {
        let id = person(
            &app,
            json!({"email": email, "first_name": first, "last_name": "Smit"}),
        )
        .await;
        opt_in(&app, id, w.type_id).await;
        special.insert(first, id);
    }
    let step = ready_step(&app, &w).await;

    // Test mails: one refused test person does not stop the other, and is no 500.
    let refused_tester = person(
        &app,
        json!({"email": "reject.tim@example.nl", "first_name": "Tim", "is_test_person": true}),
    )
    .await;
    let results = ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{step}/test-mail"),
            Some(json!({"person_ids": [refused_tester, w.tester]})),
        )
        .await,
        200,
    )
    .await;
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    let of = |id: i64| results.iter().find(|r| r["person_id"] == id).unwrap();
    assert_eq!(of(w.tester)["result"], "sent");
    assert!(of(w.tester)["contact_moment_id"].is_i64());
    let tim = of(refused_tester);
    assert_eq!(tim["result"], "refused", "{tim}");
    assert_eq!(tim["reply"]["phase"], "rcpt_to");
    assert_eq!(tim["reply"]["code"], 550);
    assert!(tim["contact_moment_id"].is_null(), "nothing arrived: {tim}");
    let tested: Vec<String> = sink.received().iter().map(|m| m.to.clone()).collect();
    assert_eq!(tested, ["test@example.org"], "the other test mail went out");

    let id = send(&app, step).await;
    let done = app.wait_for_mail_job(id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    let list = |query: String| {
        let app = &app;
        async move {
            ok(
                app.admin(
                    "GET",
                    &format!("/api/v1/mailjobs/{id}/recipients{query}"),
                    None,
                )
                .await,
                200,
            )
            .await
        }
    };
    let all = list(String::new()).await;
    let total = all["total"].as_i64().unwrap();
    assert_eq!(total, 7, "{all}");
    let items = all["items"].as_array().unwrap();
    let row = |pid: i64| {
        items
            .iter()
            .find(|r| r["person_id"] == pid)
            .unwrap()
            .clone()
    };
    let rob = row(special["Rob"]);
    assert_eq!(rob["state"], "bounced", "{rob}");
    assert_eq!(rob["attempts"], 1);
    assert_eq!(rob["last_reply"]["phase"], "rcpt_to");
    assert_eq!(rob["last_reply"]["code"], 550);
    assert!(rob["last_reply"]["text"]
        .as_str()
        .unwrap()
        .contains("User unknown"));
    assert!(
        rob["contact_moment_id"].is_i64(),
        "a handed-over message keeps its moment"
    );
    let frits = row(special["Frits"]);
    assert_eq!(frits["state"], "sent", "{frits}");
    assert_eq!(frits["attempts"], 2);
    assert_eq!(frits["in_doubt"], false);
    assert_eq!(frits["last_reply"]["phase"], "end_of_data");
    assert_eq!(frits["last_reply"]["code"], 250);
    let message_id = frits["message_id"].as_str().unwrap().to_owned();
    let received = by_recipient(&sink.received());
    assert_eq!(
        received["defer.frits@example.nl"][0]
            .message_id
            .trim_matches(['<', '>']),
        message_id.trim_matches(['<', '>'])
    );

    // The same states as the progress, one source.
    let p = &done["progress"];
    for state in [
        "sent", "bounced", "failed", "deferred", "skipped", "in_doubt",
    ] {
        let n = list(format!("?state={state}")).await["total"]
            .as_i64()
            .unwrap();
        assert_eq!(Some(n), p[state].as_i64(), "{state}: {done}");
    }
    let bounced = list("?state=bounced".into()).await;
    assert_eq!(bounced["items"][0]["person_id"], special["Rob"]);
    // The address search folds case.
    let found = list("?q=DEFER.FRITS".into()).await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["person_id"], special["Frits"]);
    let paged = list("?per_page=3&page=3".into()).await;
    assert_eq!(paged["total"], 7);
    assert_eq!(paged["items"].as_array().unwrap().len(), 1);

    let csv = app
        .admin(
            "GET",
            &format!("/api/v1/mailjobs/{id}/recipients?format=csv&state=bounced"),
            None,
        )
        .await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert!(
        csv.content_type.starts_with("text/csv"),
        "{}",
        csv.content_type
    );
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.text);
    assert!(lines[0].starts_with(
        "person_id,email,state,attempts,in_doubt,reply_phase,reply_code,reply_enhanced,reply_text"
    ));
    assert!(
        lines[1].starts_with(&format!(
            "{},reject.rob@example.nl,bounced,1,false,rcpt_to,550,",
            special["Rob"]
        )),
        "{}",
        lines[1]
    );
    let mut by_accept = awc::Client::default()
        .get(format!("{}/api/v1/mailjobs/{id}/recipients", app.base))
        .insert_header(("Authorization", format!("Bearer {}", app.admin_token)))
        .insert_header(("Accept", "text/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_accept.status().as_u16(), 200);
    let body = by_accept.body().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&body).lines().count(),
        8,
        "a header and 7 rows"
    );

    app.admin("GET", "/api/v1/mailjobs/999999/recipients", None)
        .await
        .assert_problem(404);
    app.admin(
        "GET",
        &format!("/api/v1/mailjobs/{id}/recipients?state=lost"),
        None,
    )
    .await
    .assert_problem(422);
    app.admin(
        "GET",
        &format!("/api/v1/mailjobs/{id}/recipients?format=xml"),
        None,
    )
    .await
    .assert_problem(422);
    app.admin(
        "GET",
        &format!("/api/v1/mailjobs/{id}/recipients?per_page=501"),
        None,
    )
    .await
    .assert_problem(422);
    app.admin(
        "POST",
        &format!("/api/v1/mailjobs/{id}/resend-in-doubt"),
        None,
    )
    .await
    .assert_problem(409);
}

async fn smtp_delivers_once_retries_4xx_bounces_5xx_and_never_bounces_a_dropped_connection(
    backend: Backend,
) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some(app) = smtp_app(backend, &sink, 3).await else {
        return;
    };
    let w = world(&app).await;
    let mut special = BTreeMap::new();
    for (first, email) in [
        ("Frits", "defer.frits@example.nl"),
        ("Rob", "reject.rob@example.nl"),
        ("Dora", "drop.dora@example.nl"),
    ] {
        let id = person(
            &app,
            json!({"email": email, "first_name": first, "last_name": "Smit"}),
        )
        .await;
        opt_in(&app, id, w.type_id).await;
        special.insert(email, id);
    }
    let step = ready_step(&app, &w).await;
    let id = send(&app, step).await;
    let done = app.wait_for_mail_job(id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    let p = &done["progress"];
    assert_eq!(
        (
            p["sent"].as_i64(),
            p["bounced"].as_i64(),
            p["deferred"].as_i64()
        ),
        (Some(7), Some(1), Some(0)),
        "{done}"
    );
    assert_eq!(p["failed"], 0);
    assert_eq!(p["in_doubt"], 0);
    assert_eq!(p["remaining"], 0);

    let received = by_recipient(&sink.received());
    let expected: BTreeSet<&str> = [
        "anna@example.nl",
        "bram@example.nl",
        "cor@example.nl",
        "dirk@example.nl",
        "eva@example.nl",
        "defer.frits@example.nl",
        "drop.dora@example.nl",
    ]
    .into();
    assert_eq!(
        received.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected,
        "every recipient but the rejected one, and no one else"
    );
    let mut conn = app.pool.get().unwrap();
    let moments: BTreeMap<i64, (String, Option<String>)> = contact_moments::table
        .filter(contact_moments::mail_job_id.eq(id))
        .select((
            contact_moments::person_id,
            contact_moments::message_id,
            contact_moments::bounce_reason,
        ))
        .load::<(i64, Option<String>, Option<String>)>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(p, m, b)| (p, (m.unwrap_or_default(), b)))
        .collect();
    for (to, messages) in &received {
        assert_eq!(messages.len(), 1, "exactly one message to {to}");
        let m = &messages[0];
        let parsed = mail_parser::MessageParser::default()
            .parse(m.raw.as_bytes())
            .expect("a message");
        assert_eq!(
            parsed
                .to()
                .and_then(|t| t.first())
                .and_then(|a| a.address()),
            Some(to.as_str())
        );
        let from = parsed.from().and_then(|f| f.first()).unwrap();
        assert_eq!(from.address(), Some("nieuws@example.org"));
        assert_eq!(from.name(), Some("Stichting Voorbeeld"));
        assert!(parsed.subject().unwrap().starts_with("Hallo "), "{}", m.raw);
        assert!(parsed.date().is_some());
        assert!(parsed.header("List-Unsubscribe").is_some(), "{}", m.raw);
        assert!(
            moments.values().any(|(mid, _)| *mid == m.message_id),
            "the Message-ID of {to} is its contact moment's"
        );
    }

    // 5xx: the person is a bouncer with the server's reply as the reason, and the contact
    // moment says so. 4xx and the dropped connection: tried again, nobody bounced.
    let rob = special["reject.rob@example.nl"];
    let card = ok(
        app.admin("GET", &format!("/api/v1/persons/{rob}"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(card["bouncer"], true, "{card}");
    let reason: Option<String> = persons::table
        .find(rob)
        .select(persons::bouncer_reason)
        .first(&mut conn)
        .unwrap();
    assert!(
        reason.as_deref().unwrap_or("").contains("550"),
        "{reason:?}"
    );
    assert!(moments[&rob]
        .1
        .as_deref()
        .unwrap_or("")
        .contains("User unknown"));
    for email in ["defer.frits@example.nl", "drop.dora@example.nl"] {
        let pid = special[email];
        let (bouncer, attempts): (bool, i32) = persons::table
            .inner_join(
                mail_job_recipients::table.on(mail_job_recipients::person_id.eq(persons::id)),
            )
            .filter(persons::id.eq(pid))
            .filter(mail_job_recipients::mail_job_id.eq(id))
            .select((persons::bouncer, mail_job_recipients::attempts))
            .first(&mut conn)
            .unwrap();
        assert!(!bouncer, "{email} is not a bouncer");
        assert_eq!(attempts, 2, "{email} was tried twice");
    }
}

/// A service sending at 25 messages a second to 40 recipients (the world's five and 35
/// members) of a one-time step; the sink, the service, the step and the job, once the
/// first 5 messages arrived.
async fn paced_job_under_way(backend: Backend) -> Option<(SmtpSink, TestApp, i64, i64)> {
    let sink = SmtpSink::start()?;
    let url = sink.url();
    let app = TestApp::spawn_with(backend, move |c| {
        c.delivery.smtp_url = Some(url);
        c.delivery.smtp_connections = 2;
        c.delivery.batch = 5;
        // 25 a second: 40 recipients take well over a second.
        c.delivery.rate = Some(25.0);
    })
    .await?;
    let w = world(&app).await;
    for i in 0..35 {
        let id = person(
            &app,
            json!({"email": format!("lid{i}@example.nl"), "first_name": format!("Lid{i}")}),
        )
        .await;
        opt_in(&app, id, w.type_id).await;
    }
    let step = ready_step(&app, &w).await;
    let id = send(&app, step).await;
    let started = Instant::now();
    while sink.received().len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sending starts"
        );
        tokio_sleep(20).await;
    }
    Some((sink, app, step, id))
}

async fn pause_stops_starting_messages_and_resume_sends_exactly_the_rest(backend: Backend) {
    let Some((sink, app, _step, id)) = paced_job_under_way(backend).await else {
        return;
    };
    let paused = ok(
        app.admin("POST", &format!("/api/v1/mailjobs/{id}/pause"), None)
            .await,
        200,
    )
    .await;
    assert!(paused["paused_at"].is_string(), "{paused}");
    let again = app
        .admin("POST", &format!("/api/v1/mailjobs/{id}/pause"), None)
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
    again.assert_problem(409);
    // In-flight messages finish; then nothing more arrives.
    tokio_sleep(700).await;
    let at_pause = sink.received().len();
    tokio_sleep(800).await;
    assert_eq!(
        sink.received().len(),
        at_pause,
        "a paused job starts no message"
    );
    let halfway = job(&app, id).await;
    assert_eq!(halfway["status"], "sending", "{halfway}");
    assert_eq!(halfway["progress"]["sent"].as_i64(), Some(at_pause as i64));
    assert!(at_pause < 40, "paused before the end ({at_pause})");
    ok(
        app.admin("POST", &format!("/api/v1/mailjobs/{id}/resume"), None)
            .await,
        200,
    )
    .await;
    let done = app.wait_for_mail_job(id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(done["progress"]["sent"], 40, "{done}");
    assert!(done["progress"]["messages_per_second"].as_f64().unwrap() > 0.0);
    let received = by_recipient(&sink.received());
    assert_eq!(received.len(), 40);
    assert!(received.values().all(|m| m.len() == 1), "exactly one each");
    let not_paused = app
        .admin("POST", &format!("/api/v1/mailjobs/{id}/resume"), None)
        .await;
    assert_eq!(not_paused.status, 409, "{}", not_paused.text);
    let ended = app
        .admin("POST", &format!("/api/v1/mailjobs/{id}/pause"), None)
        .await;
    assert_eq!(ended.status, 409, "{}", ended.text);
}

async fn cancel_while_sending_stops_starting_messages_at_once(backend: Backend) {
    let Some((sink, app, step, id)) = paced_job_under_way(backend).await else {
        return;
    };
    let cancelled = ok(
        app.admin("POST", &format!("/api/v1/mailjobs/{id}/cancel"), None)
            .await,
        200,
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    tokio_sleep(700).await;
    let at_cancel = sink.received().len();
    tokio_sleep(800).await;
    assert_eq!(
        sink.received().len(),
        at_cancel,
        "a cancelled job starts no message"
    );
    let after = job(&app, id).await;
    assert_eq!(
        after["progress"]["sent"].as_i64(),
        Some(at_cancel as i64),
        "{after}"
    );
    assert!(
        after["progress"]["remaining"].as_i64().unwrap() > 0,
        "{after}"
    );
    // What was sent stays sent: the one-time step stays blocked.
    let again = app
        .admin("POST", &format!("/api/v1/campaign-steps/{step}/send"), None)
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
    let resumed = app
        .admin("POST", &format!("/api/v1/mailjobs/{id}/resume"), None)
        .await;
    assert_eq!(resumed.status, 409, "{}", resumed.text);
}

async fn dkim_signs_test_mails_and_sends_when_a_key_is_configured(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    // An Ed25519 key: the base64 of its 32 bytes.
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("dkim.key");
    std::fs::write(&key_file, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
    let url = sink.url();
    let Some(app) = TestApp::spawn_with(backend, move |c| {
        c.delivery.smtp_url = Some(url);
        c.delivery.dkim = Some(mailbaar_api::config::DkimConfig {
            key_file,
            selector: "mb2026".into(),
            domain: "example.org".into(),
        });
    })
    .await
    else {
        return;
    };
    let w = world(&app).await;
    let step = ready_step(&app, &w).await;
    ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{step}/test-mail"),
            Some(json!({"person_ids": [w.tester]})),
        )
        .await,
        200,
    )
    .await;
    let id = send(&app, step).await;
    let done = app.wait_for_mail_job(id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    let received = sink.received();
    assert_eq!(received.len(), 6, "a test mail and five recipients");
    for m in &received {
        let head = m.raw.split("\r\n\r\n").next().unwrap();
        let dkim = head
            .split("\r\n")
            .position(|l| l.to_ascii_lowercase().starts_with("dkim-signature:"))
            .map(|i| {
                head.split("\r\n")
                    .skip(i)
                    .take(8)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| panic!("no DKIM-Signature: {head}"));
        for tag in ["a=ed25519-sha256", "d=example.org", "s=mb2026", "bh="] {
            assert!(dkim.contains(tag), "{tag} in {dkim}");
        }
    }
}

async fn a_refused_message_fails_and_a_refused_sender_pauses_the_job_without_making_anyone_a_bouncer(
    backend: Backend,
) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    // One send run: with several runs on one job (PostgreSQL), a run's hand-over in flight
    // when another run pauses the job can still spend its attempt (a known gap, in the
    // closing note of the delivery issue).
    let url = sink.url();
    let Some(app) = TestApp::spawn_with(backend, move |c| {
        c.delivery.smtp_url = Some(url);
        c.delivery.smtp_connections = 2;
        c.delivery.retry_first = Duration::from_millis(300);
        c.delivery.batch = 4;
        c.delivery.runs = 1;
    })
    .await
    else {
        return;
    };
    let w = world(&app).await;
    let spam = person(
        &app,
        json!({"email": "spam.sander@example.nl", "first_name": "Sander"}),
    )
    .await;
    opt_in(&app, spam, w.type_id).await;
    // 554 at the end of DATA for one recipient: that recipient fails, is no bouncer.
    let step = ready_step(&app, &w).await;
    let id = send(&app, step).await;
    let done = app.wait_for_mail_job(id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    assert_eq!(
        (
            done["progress"]["sent"].as_i64(),
            done["progress"]["failed"].as_i64()
        ),
        (Some(5), Some(1)),
        "{done}"
    );
    assert_eq!(done["progress"]["bounced"], 0);
    // 550 at MAIL FROM, for everyone: the job fails, and nobody becomes a bouncer.
    ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{step}/reset"),
            None,
        )
        .await,
        200,
    )
    .await;
    ok(
        app.admin(
            "PATCH",
            &format!("/api/v1/campaign-steps/{step}"),
            Some(json!({"from_email": "blocked@example.org"})),
        )
        .await,
        200,
    )
    .await;
    let again = ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{step}/send"),
            Some(json!({"include_previous_recipients": true})),
        )
        .await,
        202,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    // The relay refuses our address (550 5.7.1 at MAIL FROM): that is about us, not the
    // recipients, so the job pauses with the reason instead of failing everyone.
    let started = Instant::now();
    let refused = loop {
        let j = job(&app, again).await;
        if !j["paused_at"].is_null() {
            break j;
        }
        assert!(
            ["scheduled", "preparing", "prepared", "sending"]
                .contains(&j["status"].as_str().unwrap()),
            "the job pauses, never ends: {j}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job pauses: {j}"
        );
        tokio_sleep(50).await;
    };
    let reason = refused["pause_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("MAIL FROM") && reason.contains("5.7.1"),
        "{refused}"
    );
    assert_eq!(refused["progress"]["bounced"], 0, "{refused}");
    assert_eq!(refused["progress"]["failed"], 0, "{refused}");
    assert_eq!(refused["progress"]["sent"], 0, "{refused}");
    let mut conn = app.pool.get().unwrap();
    let bouncers: i64 = persons::table
        .filter(persons::bouncer.eq(true))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(bouncers, 1, "only the world's own bouncer");
    let attempts: Vec<i32> = mail_job_recipients::table
        .filter(mail_job_recipients::mail_job_id.eq(again))
        .select(mail_job_recipients::attempts)
        .load(&mut conn)
        .unwrap();
    assert!(
        attempts.iter().all(|a| *a == 0),
        "no attempt spent: {attempts:?}"
    );
    ok(
        app.admin("POST", &format!("/api/v1/mailjobs/{again}/cancel"), None)
            .await,
        200,
    )
    .await;
}

async fn a_server_that_never_answers_times_out_and_bounces_nobody(backend: Backend) {
    // Takes connections and never greets.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let Some(app) = TestApp::spawn_with(backend, move |c| {
        c.delivery.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.delivery.smtp_timeouts = mailbaar_delivery::PhaseTimeouts::all(Duration::from_secs(1));
        c.delivery.max_attempts = 2;
        c.delivery.retry_first = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let w = world(&app).await;
    let step = ready_step(&app, &w).await;
    let id = send(&app, step).await;
    let started = Instant::now();
    let done = app.wait_for_mail_job(id, &["sent", "failed"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "timeouts end the attempts"
    );
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["progress"]["failed"], 5, "{done}");
    assert_eq!(done["progress"]["bounced"], 0, "{done}");
    let mut conn = app.pool.get().unwrap();
    let bouncers: i64 = persons::table
        .filter(persons::bouncer.eq(true))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(bouncers, 1, "only the world's own bouncer");
}

async fn tokio_sleep(ms: u64) {
    actix_rt::time::sleep(Duration::from_millis(ms)).await;
}

/// A service that runs no tasks (the workers do), and a step over `n` persons of the
/// newsletter benchmark data; the step's id.
async fn worker_world(backend: Backend, n: i64) -> Option<(TestApp, i64)> {
    let app = TestApp::spawn_with(backend, |c| c.tasks.run = false).await?;
    // Its tasks are run by `mailbaar worker` processes that the tests kill, holding them.
    app.expect_leftover_tasks();
    {
        let mut conn = app.pool.get().unwrap();
        mailbaar_store::testing::newsletter_data(&mut conn, n, mailbaar_store::now());
    }
    let query = ok(
        app.admin(
            "POST",
            "/api/v1/queries",
            Some(json!({"name": "nieuwsbrief", "conditions": {"all": [
                {"field": "consent.1", "op": "eq", "value": true},
                {"field": "mailable", "op": "eq", "value": true}]}})),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let campaign = ok(
        app.admin("POST", "/api/v1/campaigns", Some(json!({"name": "Crash"})))
            .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    // The data's contact moments belong to steps 1 to 5 (earlier mailings).
    for i in 1..=5 {
        ok(
            app.admin(
                "POST",
                "/api/v1/campaign-steps",
                Some(json!({"campaign_id": campaign, "name": format!("eerder {i}")})),
            )
            .await,
            201,
        )
        .await;
    }
    let step = ok(
        app.admin(
            "POST",
            "/api/v1/campaign-steps",
            Some(json!({"campaign_id": campaign, "name": "Nieuwsbrief",
                "from_name": "Stichting Voorbeeld", "from_email": "nieuws@example.org",
                "subject": "Hallo {{ person.first_name }}",
                "html": mailbaar_e2e::mailing::HTML, "query_id": query, "opt_in_type_id": 1,
                "blocks": [{"name": "donors", "condition":
                    {"field": "city", "op": "eq", "value": "Utrecht"}}]})),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    Some((app, step))
}

fn worker_env(
    sink: &SmtpSink,
    ehlo: &str,
    connections: usize,
    rate: f64,
) -> Vec<(&'static str, String)> {
    vec![
        ("MAILBAAR_SMTP_URL", format!("{}/{ehlo}", sink.url())),
        ("MAILBAAR_SMTP_CONNECTIONS", connections.to_string()),
        ("MAILBAAR_SMTP_RATE", rate.to_string()),
        ("MAILBAAR_SEND_BATCH", "25".into()),
        ("MAILBAAR_SEND_LEASE_SECONDS", "2".into()),
        ("MAILBAAR_SMTP_TIMEOUT_SECONDS", "1".into()),
        ("MAILBAAR_TASK_LEASE_SECONDS", "2".into()),
        ("MAILBAAR_TASK_POLL_MS", "50".into()),
        ("MAILBAAR_PUBLIC_URL", "http://127.0.0.1".into()),
        ("MAILBAAR_DB_POOL_SIZE", "4".into()),
    ]
}

struct Recipients {
    /// person id → (address, in doubt)
    rows: BTreeMap<i64, (String, bool)>,
}

fn recipients(app: &TestApp, job: i64) -> Recipients {
    let mut conn = app.pool.get().unwrap();
    let rows = mail_job_recipients::table
        .inner_join(persons::table.on(persons::id.eq(mail_job_recipients::person_id)))
        .filter(mail_job_recipients::mail_job_id.eq(job))
        .select((persons::id, persons::email, mail_job_recipients::in_doubt))
        .load::<(i64, Option<String>, bool)>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(id, email, doubt)| (id, (email.unwrap_or_default(), doubt)))
        .collect();
    Recipients { rows }
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting: {what}");
        tokio_sleep(25).await;
    }
}

/// Waits until job `id` is no longer sending; the job then.
async fn wait_for_end(app: &TestApp, id: i64) -> Value {
    let started = Instant::now();
    loop {
        let j = job(app, id).await;
        if j["status"] != "sending" && j["status"] != "prepared" {
            return j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job ends: {j}"
        );
        tokio_sleep(100).await;
    }
}

async fn killed_workers_lose_nobody_and_double_only_what_was_in_flight_at_most_once(
    backend: Backend,
) {
    killed_workers(backend, "at-most-once").await;
}

async fn killed_workers_lose_nobody_and_double_only_what_was_in_flight_retry_once(
    backend: Backend,
) {
    killed_workers(backend, "retry-once").await;
}

/// Five `mailbaar worker` processes killed with SIGKILL mid-job, under the in-doubt
/// `policy`. The hand-overs each kill cuts off are in doubt: under `at-most-once` they
/// are not resent (nobody has two copies) until the operator resends them; under
/// `retry-once` they are sent once more with the same Message-ID. Either way, after
/// resending what is still in doubt nobody is lost, the extra copies are at most the
/// hand-overs in doubt, and those at most the connections in flight per kill.
async fn killed_workers(backend: Backend, policy: &str) {
    const KILLS: usize = 5;
    const CONNECTIONS: usize = 4;
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some((app, step)) = worker_world(backend, 400).await else {
        return;
    };
    let id = send(&app, step).await;
    let mut env = worker_env(&sink, "crash", CONNECTIONS, 150.0);
    env.push(("MAILBAAR_IN_DOUBT", policy.into()));
    let url = app.db.url_string();
    let mut worker = start_worker(&url, &env);
    for kill in 0..KILLS {
        let before = sink.received().len();
        // Kill once a few more messages arrived: mid-job, with hand-overs in flight.
        wait_until("messages arrive", Duration::from_secs(60), || {
            sink.received().len() >= before + 25
        })
        .await;
        let status = job(&app, id).await;
        assert_eq!(
            status["status"], "sending",
            "kill {kill} is mid-job: {status}"
        );
        worker.kill();
        worker = start_worker(&url, &env);
    }
    let first = wait_for_end(&app, id).await;
    assert_eq!(first["status"], "sent", "{first}");
    let total = recipients(&app, id).rows.len() as i64;
    let left_in_doubt = first["progress"]["in_doubt"].as_i64().unwrap();
    assert_eq!(
        first["progress"]["sent"].as_i64().unwrap() + left_in_doubt,
        total,
        "every recipient sent or in doubt: {first}"
    );
    if policy == "at-most-once" {
        let by_to = by_recipient(&sink.received());
        assert!(
            by_to.values().all(|m| m.len() == 1),
            "at most once: nobody has two copies before a resend"
        );
    }
    let done = if left_in_doubt > 0 {
        ok(
            app.admin(
                "POST",
                &format!("/api/v1/mailjobs/{id}/resend-in-doubt"),
                None,
            )
            .await,
            200,
        )
        .await;
        wait_for_end(&app, id).await
    } else {
        first.clone()
    };
    worker.kill();
    assert_eq!(done["status"], "sent", "{done}");
    let r = recipients(&app, id);
    let received = sink.received();
    let total = r.rows.len();
    assert!(total > 200, "a job of some size ({total})");
    assert_eq!(
        done["progress"]["sent"].as_i64(),
        Some(total as i64),
        "{done}"
    );
    let by_to = by_recipient(&received);
    let mut duplicated = 0;
    for (person, (email, doubt)) in &r.rows {
        let got = by_to.get(email).map_or(0, Vec::len);
        assert!(got >= 1, "recipient {person} ({email}) got nothing");
        if got > 1 {
            duplicated += got - 1;
            assert!(doubt, "{email} got {got} copies but was never in doubt");
            let ids: BTreeSet<&str> = by_to[email].iter().map(|m| m.message_id.as_str()).collect();
            assert_eq!(ids.len(), 1, "a resend carries the same Message-ID");
        }
    }
    let distinct: BTreeSet<&str> = received.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(distinct.len(), total, "one Message-ID per recipient");
    let flagged = r.rows.values().filter(|(_, d)| *d).count();
    let in_doubt = done["progress"]["in_doubt_handovers"].as_i64().unwrap() as usize;
    // Each extra copy is a hand-over cut off by a kill and resent; each kill cuts off at
    // most the connections in flight.
    assert!(
        duplicated <= in_doubt,
        "{duplicated} extra copies, {in_doubt} hand-overs in doubt"
    );
    assert!(
        flagged <= in_doubt,
        "{flagged} recipients flagged, {in_doubt} in doubt"
    );
    assert!(
        in_doubt <= KILLS * CONNECTIONS,
        "at most the connections in flight per kill are in doubt: {in_doubt}"
    );
    eprintln!(
        "{} ({policy}): {total} recipients, {} messages received, {duplicated} duplicates, {in_doubt} hand-overs in doubt after {KILLS} kills, {left_in_doubt} left in doubt when the job first ended",
        backend.name(),
        received.len()
    );
}

#[actix_rt::test]
#[cfg_attr(mailbaar_no_postgres, ignore = "MAILBAAR_TEST_POSTGRES_URL is not set")]
async fn two_workers_share_a_job_on_postgres_with_exactly_one_message_each() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let Some((app, step)) = worker_world(Backend::Postgres, 400).await else {
        return;
    };
    let id = send(&app, step).await;
    let url = app.db.url_string();
    let mut a = start_worker(&url, &worker_env(&sink, "worker-a", 4, 200.0));
    let mut b = start_worker(&url, &worker_env(&sink, "worker-b", 4, 200.0));
    let started = Instant::now();
    let done = loop {
        let j = job(&app, id).await;
        if j["status"] == "sent" || j["status"] == "failed" {
            break j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job ends: {j}"
        );
        tokio_sleep(100).await;
    };
    a.kill();
    b.kill();
    assert_eq!(done["status"], "sent", "{done}");
    let r = recipients(&app, id);
    let received = sink.received();
    assert_eq!(
        received.len(),
        r.rows.len(),
        "exactly one message per recipient"
    );
    let by_to = by_recipient(&received);
    for (email, _) in r.rows.values() {
        assert_eq!(by_to.get(email).map_or(0, Vec::len), 1, "{email}");
    }
    let senders: BTreeSet<&str> = received.iter().map(|m| m.ehlo.as_str()).collect();
    assert_eq!(
        senders,
        BTreeSet::from(["worker-a", "worker-b"]),
        "both workers sent part of the job"
    );
    assert_eq!(done["progress"]["in_doubt"], 0);
}
