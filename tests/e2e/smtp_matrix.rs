//! The delivery promises through the whole service, against a scripted SMTP server over
//! real TCP, on both engines: every phase × {2xx, 4xx, 5xx, close, reset, silence past
//! the timeout, unparsable reply} once, after which the server behaves. Whatever the
//! server did, nobody is marked bouncing except by a refusal of their address, nobody
//! gets more copies than the in-doubt policy allows (one under `at-most-once`, two under
//! `retry-once`), every copy carries the recipient's one Message-ID, and every link in
//! every copy still answers 200 whatever state the recipient ended in.
//!
//! The transport's own matrix (`crates/delivery/tests/smtp_matrix.rs`) checks each
//! reply's phase and outcome; this one checks what the people on the other side see.

use std::collections::BTreeMap;
use std::time::Duration;

use mailbaar_delivery::testing::{Answer, Command, Script, ScriptedSmtp};
use mailbaar_delivery::{InDoubtPolicy, PhaseTimeouts};
use mailbaar_e2e::mailing::{links_in, ok, opt_in, person, HTML};
use mailbaar_e2e::{Backend, TestApp};
use serde_json::{json, Value};

mailbaar_store::both_engines!(async backend:
    every_phase_and_reply_keeps_the_delivery_promises,
    in_doubt_gets_one_retry_with_the_same_message_id_under_retry_once
);

/// Every phase waits this long; "silence" outlasts it.
const TIMEOUT: Duration = Duration::from_millis(400);

/// The seven kinds of answer of the matrix, for `phase`.
fn answers(phase: Command) -> Vec<(&'static str, Answer)> {
    let good = match phase {
        Command::Greeting => "220 mx.example.net ESMTP",
        Command::Ehlo => "250 mx.example.net",
        // Not the 354 DATA asks for: a 2xx where the transaction would go on.
        Command::Data => "250 2.0.0 OK",
        Command::RcptTo => "250 2.1.5 OK",
        _ => "250 2.0.0 OK",
    };
    let refusal = match phase {
        Command::Greeting => "554 5.7.1 mx.example.net: no SMTP service for you",
        Command::Ehlo => "550 5.7.1 EHLO refused",
        Command::MailFrom => "553 5.7.1 Sender address rejected",
        Command::RcptTo => "550 5.1.1 <user@example.nl>: Recipient address rejected: User unknown",
        Command::Data => "554 5.3.0 Transaction failed",
        _ => "554 5.6.0 Message content rejected",
    };
    vec![
        ("2xx", Answer::reply(good)),
        ("4xx", Answer::reply("451 4.3.0 Temporary local problem")),
        ("5xx", Answer::reply(refusal)),
        ("close", Answer::Close),
        ("reset", Answer::Reset),
        ("silence", Answer::Silence),
        ("unparsable", Answer::Raw(b"this is not SMTP\r\n".to_vec())),
    ]
}

/// What a recipient whose message met `answer` in `phase` (once) ends as, under
/// `at-most-once`: its state and how many copies the server received.
fn expected(phase: Command, answer: &str) -> (&'static str, usize) {
    match (phase, answer) {
        // The address refused: a bounce, nothing sent.
        (Command::RcptTo, "5xx") => ("bounced", 0),
        // The message refused for good (not the address): failed; at the end of data the
        // server had read it before refusing.
        (Command::Data, "5xx") => ("failed", 0),
        (Command::EndOfData, "5xx") => ("failed", 1),
        (Command::EndOfData, "2xx") => ("sent", 1),
        // Refused for now after reading it: the refused copy, then the accepted one.
        (Command::EndOfData, "4xx") => ("sent", 2),
        // Sent to its end without a valid reply: may have arrived, never resent blindly.
        (Command::EndOfData, _) => ("in_doubt", 1),
        // Everything else before the end of data is tried again (a refusal of us once does
        // not pause: it takes three in a row) and then accepted.
        _ => ("sent", 1),
    }
}

/// Copies the server received that it may have delivered: those not answered with a
/// refusal at the end of data.
fn deliverable_copies(phase: Command, answer: &str, received: usize) -> usize {
    match (phase, answer) {
        (Command::EndOfData, "4xx" | "5xx") => received - 1,
        _ => received,
    }
}

async fn app_for(backend: Backend, smtp: &ScriptedSmtp, policy: InDoubtPolicy) -> Option<TestApp> {
    let url = smtp.url();
    TestApp::spawn_with(backend, move |c| {
        c.delivery.smtp_url = Some(url);
        c.delivery.smtp_connections = 2;
        c.delivery.smtp_timeouts = PhaseTimeouts::all(TIMEOUT);
        c.delivery.retry_first = Duration::from_millis(300);
        c.delivery.max_attempts = 4;
        c.delivery.in_doubt = policy;
        c.delivery.batch = 20;
    })
    .await
}

/// The newsletter opt-in type and a campaign; their ids.
async fn newsletter(app: &TestApp) -> (i64, i64) {
    let type_id = ok(
        app.admin(
            "POST",
            "/api/v1/opt-in-types",
            Some(
                json!({"kind": "newsletter", "name": "Nieuwsbrief", "description": "Maandelijks"}),
            ),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let campaign = ok(
        app.admin("POST", "/api/v1/campaigns", Some(json!({"name": "Matrix"})))
            .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    (type_id, campaign)
}

/// Opted-in persons with these addresses; their ids by address.
async fn persons(app: &TestApp, type_id: i64, emails: &[String]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for email in emails {
        let id = person(
            app,
            json!({"email": email, "first_name": "Lid", "last_name": "Matrix"}),
        )
        .await;
        opt_in(app, id, type_id).await;
        out.insert(email.clone(), id);
    }
    out
}

/// Sends a one-time step to the persons whose address starts with `prefix` and waits for
/// its job to end; the job's recipient list by address.
async fn send_to(
    app: &TestApp,
    type_id: i64,
    campaign: i64,
    prefix: &str,
) -> (Value, BTreeMap<String, Value>) {
    let query = ok(
        app.admin(
            "POST",
            "/api/v1/queries",
            Some(
                json!({"name": format!("matrix {prefix}"), "conditions": {"all": [
                {"field": format!("consent.{type_id}"), "op": "eq", "value": true},
                {"field": "email", "op": "starts_with", "value": prefix}]}}),
            ),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let step = ok(
        app.admin(
            "POST",
            "/api/v1/campaign-steps",
            Some(
                json!({"campaign_id": campaign, "name": format!("matrix {prefix}"),
                "from_name": "Stichting Voorbeeld", "from_email": "nieuws@example.org",
                "subject": "Hallo {{ person.first_name }}", "html": HTML,
                "query_id": query, "opt_in_type_id": type_id,
                "blocks": [{"name": "donors", "condition":
                    {"field": "transactions.count", "op": "ge", "value": 1, "kind": "donation"}}]}),
            ),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let id = ok(
        app.admin("POST", &format!("/api/v1/campaign-steps/{step}/send"), None)
            .await,
        202,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let done = app
        .wait_for_mail_job(id, &["sent", "failed", "cancelled"])
        .await;
    assert_eq!(done["status"], "sent", "{prefix}: {done}");
    let list = ok(
        app.admin(
            "GET",
            &format!("/api/v1/mailjobs/{id}/recipients?per_page=100"),
            None,
        )
        .await,
        200,
    )
    .await;
    let rows = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["email"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    (done, rows)
}

/// Every copy the server received for `email` carries `message_id`, and each of its
/// recipient links answers 200.
async fn copies_hold(
    app: &TestApp,
    smtp: &ScriptedSmtp,
    email: &str,
    message_id: &str,
    case: &str,
) {
    for copy in smtp
        .received()
        .iter()
        .filter(|r| r.to.iter().any(|t| t.eq_ignore_ascii_case(email)))
    {
        assert_eq!(
            copy.message_id,
            message_id.trim_matches(['<', '>']),
            "{case}: every copy carries the recipient's one Message-ID"
        );
        let text = String::from_utf8_lossy(&copy.bytes).into_owned();
        let links: Vec<String> = links_in(&text)
            .into_iter()
            .filter(|l| {
                ["/r/preferences/", "/r/unsubscribe/", "/r/view/"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .collect();
        assert!(
            links.len() >= 2,
            "{case}: the copy has its links: {links:?}"
        );
        for link in links {
            let page = app.send("GET", &link, None, None).await;
            assert_eq!(
                page.status, 200,
                "{case}: {link} of a received copy: {}",
                page.text
            );
        }
    }
}

fn bouncers(app: &TestApp) -> Vec<String> {
    use diesel::prelude::*;
    use mailbaar_store::schema::persons;
    let mut conn = app.pool.get().unwrap();
    persons::table
        .filter(persons::bouncer.eq(true))
        .select(persons::email)
        .load::<Option<String>>(&mut conn)
        .unwrap()
        .into_iter()
        .flatten()
        .collect()
}

/// The matrix under `at-most-once`. `RCPT TO` and the end of data are scripted per
/// recipient in one job; the phases before them hold for a whole session, so each of
/// their answers gets a job of its own, answered so to its first command of that kind.
async fn every_phase_and_reply_keeps_the_delivery_promises(backend: Backend) {
    let smtp = ScriptedSmtp::start(Script::new());
    let Some(app) = app_for(backend, &smtp, InDoubtPolicy::AtMostOnce).await else {
        return;
    };
    let (type_id, campaign) = newsletter(&app).await;

    // The recipient's phases: one job, one recipient per (phase, answer).
    let mut cases: Vec<(String, Command, &'static str)> = Vec::new();
    let mut script = Script::new();
    for phase in [Command::RcptTo, Command::EndOfData] {
        for (name, answer) in answers(phase) {
            let email = format!(
                "r.{}.{name}@example.nl",
                format!("{phase:?}").to_lowercase()
            );
            script = script.on_address(phase, &email, Some(1), answer);
            cases.push((email, phase, name));
        }
    }
    smtp.set_script(script);
    let emails: Vec<String> = cases.iter().map(|(e, _, _)| e.clone()).collect();
    persons(&app, type_id, &emails).await;
    let (_, rows) = send_to(&app, type_id, campaign, "r.").await;
    for (email, phase, answer) in &cases {
        let case = format!("{phase:?} {answer}");
        let row = &rows[email];
        let (state, copies) = expected(*phase, answer);
        assert_eq!(row["state"], state, "{case}: {row}");
        let received = smtp.copies_to(email);
        assert_eq!(received, copies, "{case}: copies received");
        assert!(
            deliverable_copies(*phase, answer, received) <= 1,
            "{case}: at most once"
        );
        if received > 0 {
            assert!(
                row["contact_moment_id"].is_i64(),
                "{case}: a copy went out, so its contact moment stays: {row}"
            );
        }
        assert_eq!(row["in_doubt"], state == "in_doubt", "{case}: {row}");
        copies_hold(
            &app,
            &smtp,
            email,
            row["message_id"].as_str().unwrap(),
            &case,
        )
        .await;
    }

    // The session's phases: a job of two recipients per (phase, answer); the first such
    // command of the job gets the answer.
    for phase in [
        Command::Greeting,
        Command::Ehlo,
        Command::MailFrom,
        Command::Data,
    ] {
        for (name, answer) in answers(phase) {
            let case = format!("{phase:?} {name}");
            let prefix = format!("s.{}.{name}.", format!("{phase:?}").to_lowercase());
            let emails = vec![
                format!("{prefix}1@example.nl"),
                format!("{prefix}2@example.nl"),
            ];
            persons(&app, type_id, &emails).await;
            let seen = seen_so_far(&smtp, phase);
            smtp.set_script(Script::new().on_attempt(phase, seen + 1, answer));
            let (_, rows) = send_to(&app, type_id, campaign, &prefix).await;
            let states: Vec<&str> = emails
                .iter()
                .map(|e| rows[e]["state"].as_str().unwrap())
                .collect();
            let refused_for_good = phase == Command::Data && name == "5xx";
            if refused_for_good {
                // The one message whose DATA was refused fails; the other is sent.
                let mut sorted = states.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, ["failed", "sent"], "{case}");
            } else {
                assert_eq!(states, ["sent", "sent"], "{case}: {rows:?}");
            }
            for email in &emails {
                let received = smtp.copies_to(email);
                let sent = rows[email]["state"] == "sent";
                assert_eq!(received, usize::from(sent), "{case}: {email} copies");
                copies_hold(
                    &app,
                    &smtp,
                    email,
                    rows[email]["message_id"].as_str().unwrap(),
                    &case,
                )
                .await;
            }
        }
    }

    // Nobody was marked bouncing but the addresses refused at RCPT TO.
    assert_eq!(bouncers(&app), ["r.rcptto.5xx@example.nl"]);
}

/// How often the server has met `phase` so far (sessions for the greeting).
fn seen_so_far(smtp: &ScriptedSmtp, phase: Command) -> usize {
    let verb = match phase {
        Command::Greeting => return smtp.sessions(),
        Command::Ehlo => "EHLO",
        Command::MailFrom => "MAIL FROM",
        Command::Data => "DATA",
        other => panic!("not a session phase: {other:?}"),
    };
    smtp.commands()
        .iter()
        .filter(|(_, line)| line.to_ascii_uppercase().starts_with(verb))
        .count()
}

/// Under `retry-once` a message in doubt gets one delayed retry with the same Message-ID:
/// delivered then (two copies, one Message-ID), or, in doubt again, it stays in doubt
/// with two copies — never a third.
async fn in_doubt_gets_one_retry_with_the_same_message_id_under_retry_once(backend: Backend) {
    let smtp = ScriptedSmtp::start(Script::new());
    let Some(app) = app_for(backend, &smtp, InDoubtPolicy::RetryOnce).await else {
        return;
    };
    let (type_id, campaign) = newsletter(&app).await;
    let mut script = Script::new();
    let mut cases = Vec::new();
    for (name, answer) in answers(Command::EndOfData)
        .into_iter()
        .filter(|(n, _)| ["close", "reset", "silence", "unparsable"].contains(n))
    {
        let once = format!("d.once.{name}@example.nl");
        let twice = format!("d.twice.{name}@example.nl");
        script = script
            .on_address(Command::EndOfData, &once, Some(1), answer.clone())
            .on_address(Command::EndOfData, &twice, Some(1), answer.clone())
            .on_address(Command::EndOfData, &twice, Some(2), answer.clone())
            .on_address(Command::EndOfData, &twice, Some(3), answer);
        cases.push((once, "sent"));
        cases.push((twice, "in_doubt"));
    }
    smtp.set_script(script);
    let emails: Vec<String> = cases.iter().map(|(e, _)| e.clone()).collect();
    persons(&app, type_id, &emails).await;
    let (done, rows) = send_to(&app, type_id, campaign, "d.").await;
    for (email, state) in &cases {
        let row = &rows[email];
        assert_eq!(row["state"], *state, "{email}: {row}");
        assert_eq!(
            row["in_doubt"], true,
            "{email}: once in doubt, flagged: {row}"
        );
        assert_eq!(
            smtp.copies_to(email),
            2,
            "{email}: one retry, never a third copy"
        );
        copies_hold(
            &app,
            &smtp,
            email,
            row["message_id"].as_str().unwrap(),
            email,
        )
        .await;
    }
    assert_eq!(done["progress"]["in_doubt"], 4, "{done}");
    assert!(bouncers(&app).is_empty());
}
