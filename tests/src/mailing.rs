//! What the mailing tests share: a small world of persons with consent, the advised
//! selection and a campaign, and helpers to follow sends.

use diesel::prelude::*;
use mailbaar_store::schema::{persons, tasks};
use serde_json::{json, Value};

use crate::{Reply, TestApp};

/// Asserts the status and returns the body.
pub async fn ok(r: Reply, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    r.body
}

/// Creates a person; their id.
pub async fn person(app: &TestApp, body: Value) -> i64 {
    ok(app.admin("POST", "/api/v1/persons", Some(body)).await, 201).await["id"]
        .as_i64()
        .unwrap()
}

/// Records an opt-in through a web form.
pub async fn opt_in(app: &TestApp, person: i64, type_id: i64) {
    ok(
        app.admin(
            "POST",
            &format!("/api/v1/persons/{person}/consents"),
            Some(
                json!({"opt_in_type_id": type_id, "opt_in": true, "channel": "web_form",
                "description": "Ja, stuur mij de nieuwsbrief"}),
            ),
        )
        .await,
        201,
    )
    .await;
}

/// The ids of what [`world`] made.
pub struct World {
    pub type_id: i64,
    pub query_id: i64,
    pub campaign_id: i64,
    pub anna: i64,
    pub real: Vec<i64>,
    pub tester: i64,
}

/// Five opted-in mailable persons (Anna a donor), one not opted in, one bouncer, one test
/// person; the newsletter opt-in type; the advised selection saved.
pub async fn world(app: &TestApp) -> World {
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
    let mut real = Vec::new();
    for (first, email) in [
        ("Anna", "anna@example.nl"),
        ("Bram", "bram@example.nl"),
        ("Cor", "cor@example.nl"),
        ("Dirk", "dirk@example.nl"),
        ("Eva", "eva@example.nl"),
    ] {
        let id = person(
            app,
            json!({"email": email, "first_name": first, "last_name": "Jansen"}),
        )
        .await;
        opt_in(app, id, type_id).await;
        real.push(id);
    }
    let anna = real[0];
    ok(
        app.admin(
            "POST",
            &format!("/api/v1/persons/{anna}/transactions"),
            Some(
                json!({"kind": "donation", "amount_cents": 2500, "currency": "EUR",
                "occurred_at": "2026-11-01T10:00:00+01:00"}),
            ),
        )
        .await,
        201,
    )
    .await;
    person(
        app,
        json!({"email": "geen@example.nl", "first_name": "Geen"}),
    )
    .await;
    let bouncer = person(
        app,
        json!({"email": "bounce@example.nl", "first_name": "Bo"}),
    )
    .await;
    opt_in(app, bouncer, type_id).await;
    let mut conn = app.pool.get().unwrap();
    diesel::update(persons::table.find(bouncer))
        .set(persons::bouncer.eq(true))
        .execute(&mut conn)
        .unwrap();
    let tester = person(
        app,
        json!({"email": "test@example.org", "first_name": "Tessa", "is_test_person": true}),
    )
    .await;
    // The manual's advised selection: the opt-in type, mailable, contact pressure.
    let query_id = ok(
        app.admin(
            "POST",
            "/api/v1/queries",
            Some(
                json!({"name": "AB – 20261201 – nieuwsbrief", "conditions": {"all": [
                {"field": format!("consent.{type_id}"), "op": "eq", "value": true},
                {"field": "mailable", "op": "eq", "value": true},
                {"field": "contact_pressure", "op": "lt", "value": 3}]}}),
            ),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let campaign_id = ok(
        app.admin(
            "POST",
            "/api/v1/campaigns",
            Some(json!({"name": "Nieuwsbrief 2026"})),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    World {
        type_id,
        query_id,
        campaign_id,
        anna,
        real,
        tester,
    }
}

/// A newsletter body with a block and the preference link.
pub const HTML: &str = r#"<html><head><style>p { color: #333; }</style></head><body>
<p>Beste {{ person.first_name }},</p>
{% if blocks.donors %}<p>Dank voor uw gift!</p>{% endif %}
<p><a href="https://example.org/nieuws">Lees meer</a></p>
<p><a href="{{ preferences_url }}">Voorkeuren</a> · <a href="{{ view_online_url }}">Online bekijken</a></p></body></html>"#;

/// The `code`s of a list of requirements.
pub fn codes(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

/// Moves the clock on for the send: the mail job's send task runs now.
pub fn send_now(app: &TestApp) {
    // A job's further send tasks are queued for its real send time, which has not come.
    app.expect_leftover_tasks();
    let mut conn = app.pool.get().unwrap();
    diesel::update(
        tasks::table
            .filter(tasks::kind.eq("mailjob.send"))
            .filter(tasks::state.eq("queued")),
    )
    .set(tasks::run_at.eq(mailbaar_store::now()))
    .execute(&mut conn)
    .unwrap();
}

/// Now plus `offset_minutes`, in Amsterdam winter time (RFC 3339).
pub fn local(offset_minutes: i64) -> String {
    let amsterdam = chrono::FixedOffset::east_opt(3600).unwrap();
    (chrono::Utc::now() + chrono::TimeDelta::minutes(offset_minutes))
        .with_timezone(&amsterdam)
        .to_rfc3339()
}

/// A ready one-time step over the world's selection, mailing for its opt-in type; its id.
pub async fn ready_step(app: &TestApp, w: &World) -> i64 {
    let step = ok(
        app.admin(
            "POST",
            "/api/v1/campaign-steps",
            Some(json!({"campaign_id": w.campaign_id, "name": "Nieuwsbrief",
                "from_name": "Stichting Voorbeeld", "from_email": "nieuws@example.org",
                "subject": "Hallo {{ person.first_name }}", "html": HTML,
                "query_id": w.query_id, "opt_in_type_id": w.type_id,
                "blocks": [{"name": "donors", "condition":
                    {"field": "transactions.count", "op": "ge", "value": 1, "kind": "donation"}}]})),
        )
        .await,
        201,
    )
    .await;
    step["id"].as_i64().unwrap()
}

/// Sends a step now and waits until its job has sent; the job's id.
pub async fn send_and_wait(app: &TestApp, step_id: i64) -> i64 {
    let job = ok(
        app.admin(
            "POST",
            &format!("/api/v1/campaign-steps/{step_id}/send"),
            None,
        )
        .await,
        202,
    )
    .await;
    let id = job["id"].as_i64().unwrap();
    let done = app.wait_for_mail_job(id, &["sent", "failed"]).await;
    assert_eq!(done["status"], "sent", "{done}");
    id
}

/// The message a job sent to `email`, parsed.
pub fn message_to(app: &TestApp, job_id: i64, email: &str) -> String {
    app.messages(&format!("job-{job_id}"))
        .into_iter()
        .find(|m| {
            mail_parser::MessageParser::default()
                .parse(m.as_bytes())
                .and_then(|p| {
                    p.to()
                        .and_then(|t| t.first())
                        .and_then(|a| a.address())
                        .map(|a| a == email)
                })
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no message to {email} in job {job_id}"))
}

/// The recipient links in a message (`/r/preferences/…`, `/r/unsubscribe/…`, `/r/view/…`,
/// `/r/c/…`, `/r/o/…`), as paths to request from the test service.
pub fn links_in(message: &str) -> Vec<String> {
    let parsed = mail_parser::MessageParser::default()
        .parse(message.as_bytes())
        .expect("a message");
    let mut text = parsed
        .body_html(0)
        .map(|h| h.into_owned())
        .unwrap_or_default();
    if let Some(h) = parsed.header_raw("List-Unsubscribe") {
        text.push_str(h);
    }
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("/r/") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| c == '"' || c == '>' || c == '<' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        let link = tail[..end].replace("&amp;", "&");
        if !out.contains(&link) {
            out.push(link);
        }
        rest = &tail[end..];
    }
    out
}
