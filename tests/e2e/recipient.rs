//! The recipient side over HTTP, on both engines, from messages the service really sent:
//! signed links (tampered and expired ones refused, nothing recorded), the unsubscribe
//! confirm page and RFC 8058 one-click, open pixel and click redirect, the web version,
//! and bounce reports (DSN and webhook).

use diesel::prelude::*;
use mailbaar_e2e::mailing::{links_in, message_to, ok, ready_step, send_and_wait, world};
use mailbaar_e2e::TestApp;
use mailbaar_store::schema::{consent_records, contact_moments, persons};
use serde_json::json;

mailbaar_store::both_engines!(async with mailbaar_e2e::on: links_pages_and_tracking, bounce_reports);

fn records(app: &TestApp) -> i64 {
    let mut conn = app.pool.get().unwrap();
    consent_records::table
        .count()
        .get_result(&mut conn)
        .unwrap()
}

fn moment_of(app: &TestApp, person: i64) -> (i64, Option<String>, i32, i32, bool, bool) {
    let mut conn = app.pool.get().unwrap();
    let (id, message_id, opens, clicks, opened, clicked): (
        i64,
        Option<String>,
        i32,
        i32,
        Option<chrono::NaiveDateTime>,
        Option<chrono::NaiveDateTime>,
    ) = contact_moments::table
        .filter(contact_moments::person_id.eq(person))
        .filter(contact_moments::mail_job_id.is_not_null())
        .select((
            contact_moments::id,
            contact_moments::message_id,
            contact_moments::open_count,
            contact_moments::click_count,
            contact_moments::opened_at,
            contact_moments::clicked_at,
        ))
        .first(&mut conn)
        .unwrap();
    (
        id,
        message_id,
        opens,
        clicks,
        opened.is_some(),
        clicked.is_some(),
    )
}

/// A path with one character of its token changed.
fn tampered(path: &str) -> String {
    let mut chars: Vec<char> = path.chars().collect();
    // The token follows `/r/{page}/` (a click path ends in `/{index}` after it).
    let i = path.match_indices('/').nth(2).unwrap().0 + 3;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn find<'a>(links: &'a [String], prefix: &str) -> &'a str {
    links
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} link in {links:?}"))
}

async fn links_pages_and_tracking(app: TestApp) {
    let w = world(&app).await;
    let step = ready_step(&app, &w).await;
    let job = send_and_wait(&app, step).await;
    let message = message_to(&app, job, "anna@example.nl");
    let links = links_in(&message);
    let preferences = find(&links, "/r/preferences/");
    let unsubscribe = find(&links, "/r/unsubscribe/");
    let pixel = find(&links, "/r/o/");
    let click = links
        .iter()
        .find(|l| l.starts_with("/r/c/"))
        .expect("a tracked link");
    let (moment, _, _, _, _, _) = moment_of(&app, w.anna);

    // The preference centre: the person's name, the language, the opt-in type ticked.
    let page = app.send("GET", preferences, None, None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.text.contains("lang=\"nl\""));
    assert!(page.text.contains("Beste Anna"));
    assert!(page.text.contains("Nieuwsbrief"));
    assert!(page.text.contains("checked"));

    // Tampered or expired links: a friendly page, 404 or 410, and nothing recorded.
    let before = records(&app);
    for path in [preferences, unsubscribe] {
        let r = app.send("GET", &tampered(path), None, None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert!(r.content_type.starts_with("text/html"));
        let r = app
            .send(
                "POST",
                &tampered(path),
                None,
                Some((
                    "application/x-www-form-urlencoded",
                    b"List-Unsubscribe=One-Click".to_vec(),
                )),
            )
            .await;
        assert_eq!(r.status, 404);
    }
    let key = {
        let mut conn = app.pool.get().unwrap();
        mailbaar_store::secret(&mut conn, "recipient_links").unwrap()
    };
    let links_signer = mailbaar_delivery::Links::new(&key, "http://127.0.0.1");
    let long_ago = chrono::NaiveDate::from_ymd_opt(2020, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let expired = links_signer.token(
        mailbaar_delivery::TokenPurpose::Unsubscribe,
        moment,
        long_ago,
    );
    let r = app
        .send(
            "POST",
            &format!("/r/unsubscribe/{expired}"),
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"List-Unsubscribe=One-Click".to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.text);
    // A token for another page is not a token for this one.
    let other = unsubscribe.rsplit('/').next().unwrap();
    let r = app
        .send("GET", &format!("/r/preferences/{other}"), None, None)
        .await;
    assert_eq!(r.status, 404);
    // A form posted without the page's key is refused.
    let r = app
        .send(
            "POST",
            preferences,
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"action=unsubscribe_all".to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(records(&app), before, "refused links record nothing");

    // GET on the unsubscribe link only asks; the one-click POST (no cookie) withdraws
    // the step's opt-in type, naming the contact moment.
    let r = app.send("GET", unsubscribe, None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("Nieuwsbrief"));
    assert_eq!(records(&app), before, "a GET changes nothing");
    let r = app
        .send(
            "POST",
            unsubscribe,
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"List-Unsubscribe=One-Click".to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(records(&app), before + 1);
    let history = ok(
        app.admin("GET", &format!("/api/v1/persons/{}/consents", w.anna), None)
            .await,
        200,
    )
    .await;
    let latest = history
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["id"].as_i64())
        .unwrap();
    assert_eq!(latest["opt_in"], false);
    assert_eq!(latest["channel"], "unsubscribe_link");
    assert_eq!(latest["contact_moment_id"], moment);
    assert_eq!(latest["opt_in_type_id"], w.type_id);
    // Again: nothing more to withdraw, nothing written.
    app.send(
        "POST",
        unsubscribe,
        None,
        Some((
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click".to_vec(),
        )),
    )
    .await;
    assert_eq!(records(&app), before + 1);

    // The open pixel: always an image; first open and count on the contact moment.
    for _ in 0..2 {
        let r = app.send("GET", pixel, None, None).await;
        assert_eq!((r.status, r.content_type.as_str()), (200, "image/gif"));
    }
    let r = app.send("GET", &tampered(pixel), None, None).await;
    assert_eq!(
        (r.status, r.content_type.as_str()),
        (200, "image/gif"),
        "a bad token still gets the pixel"
    );
    let (_, _, opens, clicks, opened, _) = moment_of(&app, w.anna);
    assert_eq!((opens, clicks, opened), (2, 0, true));

    // The click redirect goes to the link's own target; a changed token goes nowhere.
    let r = app.send("GET", click, None, None).await;
    assert_eq!(r.status, 302, "{}", r.text);
    let target = r.location.clone().unwrap();
    assert!(
        target == "https://example.org/nieuws" || target.contains("/r/preferences/"),
        "{target}"
    );
    let r = app.send("GET", &tampered(click), None, None).await;
    assert_eq!(r.status, 404);
    // One signature per message, the link by its place in the job's link table: an index
    // outside the table, or not a number, redirects nowhere.
    let (prefix, _) = click.rsplit_once('/').expect("/r/c/{token}/{index}");
    for index in ["999", "-1", "x", "1e3"] {
        let r = app
            .send("GET", &format!("{prefix}/{index}"), None, None)
            .await;
        assert_eq!(r.status, 404, "index {index}: {}", r.text);
        assert!(r.location.is_none());
    }
    assert!(
        r.location.is_none(),
        "no redirect for a foreign or changed target"
    );
    let (_, _, _, clicks, _, clicked) = moment_of(&app, w.anna);
    assert_eq!((clicks, clicked), (1, true));

    // A token counts only on its own path; other methods get 405 with Allow, as a page.
    let pixel_token = pixel.rsplit('/').next().unwrap();
    let click_token = click.rsplit('/').next().unwrap();
    app.send("GET", &format!("/r/c/{pixel_token}"), None, None)
        .await;
    app.send("GET", &format!("/r/o/{click_token}"), None, None)
        .await;
    let (_, _, opens_now, clicks_now, _, _) = moment_of(&app, w.anna);
    assert_eq!(
        (opens_now, clicks_now),
        (2, 1),
        "a token on the wrong path records nothing"
    );
    for (method, path, allow) in [
        ("PUT", preferences, "GET, POST"),
        ("DELETE", click.as_str(), "GET"),
        ("POST", pixel, "GET"),
    ] {
        let r = app
            .send(method, path, None, Some(("text/plain", b"x".to_vec())))
            .await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert!(r.content_type.starts_with("text/html"));
        assert_eq!(r.allow.as_deref(), Some(allow));
    }
    // A one-click body must be exactly the RFC 8058 field.
    let before_bad = records(&app);
    let r = app
        .send(
            "POST",
            unsubscribe,
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"foo=One-Click-NOT".to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(records(&app), before_bad);

    // The web version: the message as Anna got it.
    let view = find(&links, "/r/view/");
    let r = app.send("GET", view, None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("Beste Anna"));

    // Results count the open, the click and the unsubscribe.
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
    assert_eq!(results["unique_opens"]["count"], 1);
    assert_eq!(results["unique_clicks"]["count"], 1);
    assert_eq!(results["unsubscribes"]["count"], 1);
    assert_eq!(results["hourly"][0]["opens"], 1);

    // English by setting.
    ok(
        app.admin("PATCH", "/api/v1/settings", Some(json!({"language": "en"})))
            .await,
        200,
    )
    .await;
    let page = app.send("GET", preferences, None, None).await;
    assert!(page.text.contains("lang=\"en\""));
    assert!(page.text.contains("Your preferences"));
    let r = app.send("GET", &tampered(preferences), None, None).await;
    assert!(r.text.contains("This link does not work"));

    // An anonymized person's link shows nothing personal.
    ok(
        app.admin(
            "POST",
            &format!("/api/v1/persons/{}/anonymize", w.anna),
            None,
        )
        .await,
        200,
    )
    .await;
    let page = app.send("GET", preferences, None, None).await;
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("Anna"));
    assert!(!page.text.contains("type=\"checkbox\""));
}

fn dsn(
    original_message_id: &str,
    recipient: &str,
    action: &str,
    status: &str,
    diagnostic: &str,
) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\n\
To: nieuws@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <dsn.{status}@mx.example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is the mail system at host mx.example.net.\r\n\
\r\n\
--b1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
\r\n\
Final-Recipient: rfc822; {recipient}\r\n\
Action: {action}\r\n\
Status: {status}\r\n\
Diagnostic-Code: smtp; {diagnostic}\r\n\
\r\n\
--b1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Stichting Voorbeeld <nieuws@example.org>\r\n\
To: {recipient}\r\n\
Subject: Hallo\r\n\
Message-ID: <{original_message_id}>\r\n\
\r\n\
--b1--\r\n"
    )
    .into_bytes()
}

fn bouncer(app: &TestApp, person: i64) -> (bool, Option<String>, i32) {
    let mut conn = app.pool.get().unwrap();
    persons::table
        .find(person)
        .select((
            persons::bouncer,
            persons::bouncer_reason,
            persons::soft_bounces,
        ))
        .first(&mut conn)
        .unwrap()
}

async fn bounce_reports(app: TestApp) {
    let w = world(&app).await;
    let step = ready_step(&app, &w).await;
    send_and_wait(&app, step).await;
    let (bram, cor, dirk) = (w.real[1], w.real[2], w.real[3]);
    let (bram_moment, bram_message, ..) = moment_of(&app, bram);
    let (_, dirk_message, ..) = moment_of(&app, dirk);
    let post = |body: Vec<u8>, content_type: &'static str| {
        let app = &app;
        async move {
            app.send(
                "POST",
                "/api/v1/bounces",
                Some(&app.admin_token),
                Some((content_type, body)),
            )
            .await
        }
    };

    // Malformed reports: 422 (or 415 for another type), and nothing changes.
    for (body, ct) in [
        (b"this is not a message".to_vec(), "message/rfc822"),
        (
            b"From: a@b.nl\r\nSubject: hi\r\n\r\nno report here".to_vec(),
            "message/rfc822",
        ),
        (
            br#"{"email": "not an address", "kind": "hard", "reason": "x"}"#.to_vec(),
            "application/json",
        ),
        (
            br#"{"email": "bram@example.nl", "kind": "permanent", "reason": "x"}"#.to_vec(),
            "application/json",
        ),
        (
            br#"{"email": "bram@example.nl", "kind": "hard", "reason": ""}"#.to_vec(),
            "application/json",
        ),
    ] {
        let r = post(body, ct).await;
        r.assert_problem(422);
    }
    post(b"x".to_vec(), "text/plain").await.assert_problem(415);
    assert_eq!(bouncer(&app, bram), (false, None, 0));

    // A delay warning changes nothing.
    let r = post(
        dsn(
            bram_message.as_deref().unwrap(),
            "bram@example.nl",
            "delayed",
            "4.4.1",
            "451 try again later",
        ),
        "message/rfc822",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["outcome"], "delayed");
    assert_eq!(bouncer(&app, bram), (false, None, 0));

    // A hard DSN for a sent message: bouncer with the server's reply, moment marked.
    let r = post(
        dsn(
            bram_message.as_deref().unwrap(),
            "bram@example.nl",
            "failed",
            "5.1.1",
            "550 5.1.1 user unknown",
        ),
        "message/rfc822",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["outcome"], "hard");
    assert_eq!(r.body["contact_moment_id"], bram_moment);
    let (flag, reason, _) = bouncer(&app, bram);
    assert!(flag);
    assert!(reason.unwrap().contains("550 5.1.1 user unknown"));

    // A soft DSN posted as multipart/report is counted; the limit (3) turns it hard.
    // Dirk's mailbox is full: one soft DSN for his message (posted as multipart/report,
    // its boundary in the request's header), then a provider's soft webhooks; the limit
    // (3) turns them hard.
    let body = dsn(
        dirk_message.as_deref().unwrap(),
        "dirk@example.nl",
        "failed",
        "4.2.2",
        "452 mailbox full",
    );
    let text = String::from_utf8(body).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let content_type: &'static str = Box::leak(
        head.lines()
            .find(|l| l.starts_with("Content-Type:"))
            .unwrap()
            .trim_start_matches("Content-Type: ")
            .replace("\"b1\"", "\"B1\"")
            .into_boxed_str(),
    );
    let rest = rest.replace("--b1", "--B1");
    let r = app
        .send(
            "POST",
            "/api/v1/bounces",
            Some(&app.admin_token),
            Some((content_type, rest.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["outcome"].as_str(), r.body["bouncer"].as_bool()),
        (Some("soft"), Some(false))
    );
    for n in 2..=3 {
        let r = post(
            serde_json::to_vec(
                &json!({"email": "dirk@example.nl", "kind": "soft", "reason": "452 mailbox full",
                    "event_id": format!("dirk-{n}")}),
            )
            .unwrap(),
            "application/json",
        )
        .await;
        assert_eq!(r.body["outcome"], "soft", "{}", r.text);
        assert_eq!(r.body["bouncer"], n == 3, "after {n} soft bounces");
    }
    assert!(bouncer(&app, dirk).0);

    // The same notice again counts once; a report about someone else, or about a message
    // that is not ours, changes no one.
    let eva = w.real[4];
    let (_, eva_message, ..) = moment_of(&app, eva);
    let soft_eva = dsn(
        eva_message.as_deref().unwrap(),
        "eva@example.nl",
        "failed",
        "4.2.2",
        "452 mailbox full",
    );
    let first = post(soft_eva.clone(), "message/rfc822").await;
    assert_eq!(
        (
            first.body["outcome"].as_str(),
            first.body["soft_bounces"].as_i64()
        ),
        (Some("soft"), Some(1))
    );
    let again = post(soft_eva, "message/rfc822").await;
    assert_eq!(
        (
            again.body["outcome"].as_str(),
            again.body["soft_bounces"].as_i64()
        ),
        (Some("duplicate"), Some(1))
    );
    let r = post(
        dsn(
            eva_message.as_deref().unwrap(),
            "anna@example.nl",
            "failed",
            "5.1.1",
            "550 unknown",
        ),
        "message/rfc822",
    )
    .await;
    assert_eq!(r.body["outcome"], "unmatched");
    let r = post(
        dsn(
            "not-ours@elsewhere.example",
            "anna@example.nl",
            "failed",
            "5.1.1",
            "550 unknown",
        ),
        "message/rfc822",
    )
    .await;
    assert_eq!(r.body["outcome"], "unmatched");
    assert!(
        !bouncer(&app, w.anna).0,
        "no one is flagged by a report that is not about them"
    );

    // A provider's webhook by address.
    let r = post(
        serde_json::to_vec(
            &json!({"email": "COR@example.nl", "kind": "hard", "reason": "550 no such user"}),
        )
        .unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["person_id"], cor);
    assert!(bouncer(&app, cor).0);
    // An unknown address changes nothing.
    let r = post(
        serde_json::to_vec(&json!({"email": "nobody@example.nl", "kind": "hard", "reason": "550"}))
            .unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(r.body["outcome"], "unmatched");

    // Only admins and bounce reporters report bounces.
    let marketer = app.token("marketer").await;
    app.send(
        "POST",
        "/api/v1/bounces",
        Some(&marketer),
        Some((
            "application/json",
            br#"{"email": "eva@example.nl", "kind": "hard", "reason": "x"}"#.to_vec(),
        )),
    )
    .await
    .assert_problem(403);

    // The step's results show the bounces; Bram, Cor and Dirk are no longer mailable.
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
    // Bram's message bounced hard; Dirk turned hard through webhooks and Cor's webhook
    // named no message, so those flag the person but no message of the step.
    assert_eq!(results["bounced"]["count"], 1, "{}", results["bounced"]);
    assert_eq!(results["delivered"]["count"], 4);
    let card = ok(
        app.admin("GET", &format!("/api/v1/persons/{bram}/card"), None)
            .await,
        200,
    )
    .await;
    assert!(card["contact_moments"]["latest"][0]["bounced_at"].is_string());
}
