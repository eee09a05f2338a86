//! The bounce intake over HTTP, on both engines, with a bounce-mailbox script's token
//! (role `bounce_reporter`) and messages written the way Gmail, Postfix, Exchange Online
//! and a feedback loop write them, about messages the service really sent: a full mailbox
//! is a soft bounce, a block list a policy refusal that leaves the person alone, an unknown
//! address a bouncer, a complaint an opt-out; the card, the job's progress and the step's
//! results say so; an unreadable report is kept; a body over the limit is a 413.

use diesel::prelude::*;
use mailbaar_e2e::mailing::{ok, ready_step, send_and_wait, world};
use mailbaar_e2e::TestApp;
use mailbaar_store::schema::{consent_records, contact_moments, persons};
use serde_json::json;

mailbaar_store::both_engines!(async with mailbaar_e2e::on: bounce_mailbox_as_mail_servers_write_it);

fn fixture(name: &str, message_id: &str, recipient: &str) -> Vec<u8> {
    let path = format!(
        "{}/../crates/delivery/tests/fixtures/dsn/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("@@MSGID@@", message_id)
        .replace("@@RCPT@@", recipient)
        .into_bytes()
}

fn message_of(app: &TestApp, person: i64) -> String {
    let mut conn = app.pool.get().unwrap();
    contact_moments::table
        .filter(contact_moments::person_id.eq(person))
        .filter(contact_moments::mail_job_id.is_not_null())
        .select(contact_moments::message_id.assume_not_null())
        .first(&mut conn)
        .unwrap()
}

fn is_bouncer(app: &TestApp, person: i64) -> bool {
    let mut conn = app.pool.get().unwrap();
    persons::table
        .find(person)
        .select(persons::bouncer)
        .first(&mut conn)
        .unwrap()
}

async fn bounce_mailbox_as_mail_servers_write_it(app: TestApp) {
    let w = world(&app).await;
    let step = ready_step(&app, &w).await;
    let job = send_and_wait(&app, step).await;
    let (anna, bram, cor, dirk, eva) = (w.real[0], w.real[1], w.real[2], w.real[3], w.real[4]);
    let reporter = app.token("bounce_reporter").await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        let (app, reporter) = (&app, reporter.clone());
        async move {
            app.send(
                "POST",
                "/api/v1/bounces",
                Some(&reporter),
                Some((content_type, body)),
            )
            .await
        }
    };

    // Gmail: Bram's mailbox is full (5.2.2) — a soft bounce, not a bouncer.
    let r = post(
        fixture(
            "gmail_mailbox_full_soft.eml",
            &message_of(&app, bram),
            "bram@example.nl",
        ),
        "message/rfc822",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["outcome"].as_str(), r.body["soft_bounces"].as_i64()),
        (Some("soft"), Some(1))
    );
    assert!(!is_bouncer(&app, bram));
    let card = ok(
        app.admin("GET", &format!("/api/v1/persons/{bram}/card"), None)
            .await,
        200,
    )
    .await;
    let admin = &card["administration"];
    assert_eq!(admin["soft_bounces"], 1, "{admin}");
    assert_eq!(admin["last_bounce"]["class"], "soft", "{admin}");
    assert_eq!(admin["last_bounce"]["status"], "5.2.2", "{admin}");
    assert!(admin["last_bounce"]["diagnostic"]
        .as_str()
        .unwrap()
        .contains("mailbox is full"));
    assert_eq!(admin["mailable"], true);

    // Postfix: Cor's server refused our IP (a block list) — a policy refusal.
    let r = post(
        fixture(
            "postfix_blocklist_policy.eml",
            &message_of(&app, cor),
            "cor@example.nl",
        ),
        "message/rfc822",
    )
    .await;
    assert_eq!(r.body["outcome"], "policy", "{}", r.text);
    assert!(!is_bouncer(&app, cor));

    // Exchange Online: Dirk's address does not exist — a bouncer, posted twice.
    let hard = fixture(
        "exchange_online_unknown_hard.eml",
        &message_of(&app, dirk),
        "dirk@example.nl",
    );
    let r = post(hard.clone(), "message/rfc822").await;
    assert_eq!(r.body["outcome"], "hard", "{}", r.text);
    assert!(is_bouncer(&app, dirk));
    let r = post(hard, "message/rfc822").await;
    assert_eq!(r.body["outcome"], "duplicate", "{}", r.text);

    // A feedback loop: Eva marked the message as spam — an opt-out with channel
    // `complaint`, naming the message; never a bounce.
    let r = post(
        fixture(
            "arf_feedback_complaint.eml",
            &message_of(&app, eva),
            "eva@example.nl",
        ),
        "message/rfc822",
    )
    .await;
    assert_eq!(r.body["outcome"], "complaint", "{}", r.text);
    assert!(!is_bouncer(&app, eva));
    {
        let mut conn = app.pool.get().unwrap();
        let (opt_in, channel, moment): (bool, String, Option<i64>) = consent_records::table
            .filter(consent_records::person_id.eq(eva))
            .filter(consent_records::opt_in_type_id.eq(w.type_id))
            .order(consent_records::id.desc())
            .select((
                consent_records::opt_in,
                consent_records::channel,
                consent_records::contact_moment_id,
            ))
            .first(&mut conn)
            .unwrap();
        assert_eq!((opt_in, channel.as_str()), (false, "complaint"));
        assert!(moment.is_some());
    }

    // The generic webhook retried three times (issue case 3): counted once.
    for _ in 0..3 {
        let r = post(
            serde_json::to_vec(&json!({"email": "anna@example.nl", "kind": "soft",
                "reason": "421 4.4.2 connection dropped"}))
            .unwrap(),
            "application/json",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["soft_bounces"], 1, "{}", r.text);
    }
    assert!(!is_bouncer(&app, anna));

    // The job's progress and the step's results count the same bounce (Dirk's), and the
    // step's results the soft bounce, the policy refusal and the complaint.
    let progress = ok(
        app.admin("GET", &format!("/api/v1/mailjobs/{job}"), None)
            .await,
        200,
    )
    .await["progress"]
        .clone();
    let results = ok(
        app.admin(
            "GET",
            &format!("/api/v1/campaign-steps/{step}/results"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(progress["bounced"], 1, "{progress}");
    assert_eq!(results["bounced"]["count"], 1, "{results}");
    assert_eq!(results["soft_bounced"]["count"], 1, "{results}");
    assert_eq!(results["policy_refused"]["count"], 1, "{results}");
    assert_eq!(results["complaints"]["count"], 1, "{results}");
    assert_eq!(results["unsubscribes"]["count"], 1, "{results}");

    // An unreadable report: a 422 naming what is missing, kept for the admin to read.
    let unreadable = b"From: MAILER-DAEMON@mx.example.net\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; bram@example.nl\r\nStatus: 5.1.1\r\n\r\n--x--\r\n".to_vec();
    let r = post(unreadable.clone(), "message/rfc822").await;
    r.assert_problem(422);
    assert!(r.text.contains("Action"), "{}", r.text);
    let list = ok(
        app.admin("GET", "/api/v1/unreadable-reports", None).await,
        200,
    )
    .await;
    assert_eq!(list["total"], 1, "{list}");
    let id = list["items"][0]["id"].as_i64().unwrap();
    let kept = app
        .send(
            "GET",
            &format!("/api/v1/unreadable-reports/{id}"),
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.text.as_bytes(), unreadable.as_slice());
    assert!(!is_bouncer(&app, bram));

    // Over the contract's limit (10 MiB): a 413 problem document.
    let mut big = b"From: a@b.nl\r\n\r\n".to_vec();
    big.resize(10 * 1024 * 1024 + 1, b'x');
    post(big, "message/rfc822").await.assert_problem(413);

    // The reporter's token reports bounces and does nothing else.
    for (method, path) in [
        ("GET", "/api/v1/persons".to_owned()),
        ("GET", format!("/api/v1/persons/{bram}/card")),
        ("GET", format!("/api/v1/campaign-steps/{step}/results")),
        ("GET", "/api/v1/tokens".to_owned()),
        ("GET", "/api/v1/unreadable-reports".to_owned()),
        ("DELETE", format!("/api/v1/persons/{dirk}/bouncer")),
    ] {
        app.send(method, &path, Some(&reporter), None)
            .await
            .assert_problem(403);
    }
    assert!(is_bouncer(&app, dirk), "the reporter cleared no bouncer");
}
