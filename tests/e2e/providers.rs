//! The providers' own webhooks over HTTP, on both engines: each provider's documented
//! example payloads, addressed to the people a sent job mailed, posted as the provider
//! posts them (signed with the test keys of `crates/delivery/tests/fixtures/providers`),
//! and what they did to those people: a hard bounce makes a bouncer, a soft one is
//! counted (once, however often it is retried), a block by policy and a delivery leave the
//! person untouched, a complaint is an opt-out with channel `complaint`. A body that is
//! not authentic is a 403 and changes nothing; a provider not configured is a 404.

use base64::Engine as _;
use diesel::prelude::*;
use mailbaar_e2e::mailing::{message_to, ready_step, send_and_wait, world, World};
use mailbaar_e2e::{Backend, TestApp};
use mailbaar_store::schema::{consent_records, persons};
use serde_json::{json, Value};

mailbaar_store::both_engines!(async backend:
    ses_notifications_through_sns,
    sendgrid_event_batches,
    mailgun_events,
    postmark_records,
    unconfigured_providers_answer_404,
);

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/delivery/tests/fixtures/providers"
);
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:mailbaar-ses";
const CERT_URL: &str =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";
const MAILGUN_KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
const POSTMARK_SECRET: &str = "pm-webhook-secret-0123456789";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// A service with every provider configured with the test keys.
async fn configured(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |config| {
        let p = &mut config.providers;
        p.ses_topic_arns = vec![TOPIC.into()];
        p.ses_certificates
            .insert_pem(CERT_URL, fixture("sns-test-cert.pem").as_bytes())
            .expect("the test certificate");
        p.sendgrid_key = Some(
            mailbaar_delivery::providers::sendgrid::VerificationKey::from_base64(&fixture(
                "sendgrid-test-public-key.b64",
            ))
            .unwrap(),
        );
        p.mailgun_signing_key = Some(MAILGUN_KEY.into());
        p.postmark_secret = Some(POSTMARK_SECRET.into());
    })
    .await
}

/// One person a job mailed: id, address and the Message-ID of their message (without
/// angle brackets).
struct Mailed {
    id: i64,
    email: String,
    message_id: String,
}

/// A sent job over the world's five mailable persons; them, as mailed.
async fn mailed(app: &TestApp) -> (World, Vec<Mailed>) {
    let w = world(app).await;
    let step = ready_step(app, &w).await;
    let job = send_and_wait(app, step).await;
    let mut out = Vec::new();
    for &id in &w.real {
        let email: String = {
            let mut conn = app.pool.get().unwrap();
            persons::table
                .find(id)
                .select(persons::email)
                .first::<Option<String>>(&mut conn)
                .unwrap()
                .unwrap()
        };
        let message = message_to(app, job, &email);
        let parsed = mail_parser::MessageParser::default()
            .parse(message.as_bytes())
            .unwrap();
        let message_id = parsed.message_id().expect("a Message-ID").to_owned();
        out.push(Mailed {
            id,
            email,
            message_id,
        });
    }
    (w, out)
}

/// What the intake can have changed about a person: bouncer, soft bounces, and their
/// latest consent record for the opt-in type (opt-in, channel).
#[derive(Debug, PartialEq)]
struct Standing {
    bouncer: bool,
    soft_bounces: i32,
    consent: Option<(bool, String)>,
}

fn standing(app: &TestApp, person: i64, type_id: i64) -> Standing {
    let mut conn = app.pool.get().unwrap();
    let (bouncer, soft_bounces) = persons::table
        .find(person)
        .select((persons::bouncer, persons::soft_bounces))
        .first::<(bool, i32)>(&mut conn)
        .unwrap();
    let consent = consent_records::table
        .filter(consent_records::person_id.eq(person))
        .filter(consent_records::opt_in_type_id.eq(type_id))
        .order(consent_records::id.desc())
        .select((consent_records::opt_in, consent_records::channel))
        .first::<(bool, String)>(&mut conn)
        .optional()
        .unwrap();
    Standing {
        bouncer,
        soft_bounces,
        consent,
    }
}

/// The person's standing before anything was reported, with the channel of their opt-in
/// as the world recorded it.
fn opted_in(app: &TestApp, person: i64, type_id: i64) -> Standing {
    let s = standing(app, person, type_id);
    assert_eq!((s.bouncer, s.soft_bounces), (false, 0));
    assert_eq!(s.consent.as_ref().map(|c| c.0), Some(true));
    s
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---- Amazon SES through SNS ------------------------------------------------------------

/// An SNS notification carrying `message`, signed with the test key (SignatureVersion 2,
/// SHA256withRSA over SNS's canonical string).
fn sns_notification(message: &str, message_id: &str) -> Vec<u8> {
    let timestamp = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let canonical = format!(
        "Message\n{message}\nMessageId\n{message_id}\nTimestamp\n{timestamp}\nTopicArn\n{TOPIC}\nType\nNotification\n"
    );
    let pk8 = std::fs::read(format!("{FIXTURES}/sns-test-key.pk8")).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&pk8).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        canonical.as_bytes(),
        &mut sig,
    )
    .unwrap();
    serde_json::to_vec(&json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": "2",
        "Signature": base64::engine::general_purpose::STANDARD.encode(sig),
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:eu-west-1:123456789012:mailbaar-ses:c9135db0"
    }))
    .unwrap()
}

/// A documented SES example addressed to `to` (its example addresses replaced by theirs,
/// its `custom-message-ID` by their message's).
fn ses_example(name: &str, example_address: &str, to: &Mailed) -> String {
    fixture(name)
        .replace(example_address, &to.email)
        .replace("custom-message-ID", &to.message_id)
}

async fn post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> mailbaar_e2e::Reply {
    app.send_with_headers("POST", path, content_type, body, headers)
        .await
}

async fn ses_notifications_through_sns(backend: Backend) {
    let Some(app) = configured(backend).await else {
        return;
    };
    let (w, people) = mailed(&app).await;
    let [anna, bram, cor, dirk, ..] = &people[..] else {
        unreachable!()
    };
    let before = opted_in(&app, cor.id, w.type_id);

    // A hard bounce with its DSN (notificationType), sent as SNS sends it: text/plain.
    let bounce = ses_example("ses-bounce.json", "jane@example.com", anna);
    let r = post(
        &app,
        "/webhooks/ses",
        "text/plain; charset=UTF-8",
        sns_notification(&bounce, "m-1"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        standing(&app, anna.id, w.type_id).bouncer,
        "a 5.1.1 makes a bouncer"
    );

    // The same notification delivered again by SNS: counted once (nothing more changes).
    let r = post(
        &app,
        "/webhooks/ses",
        "text/plain; charset=UTF-8",
        sns_notification(&bounce, "m-1"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["outcomes"][0]["outcome"], "duplicate", "{}", r.text);

    // A complaint: an opt-out with channel complaint, never a bounce.
    let complaint = ses_example("ses-complaint.json", "richard@example.com", bram);
    let r = post(
        &app,
        "/webhooks/ses",
        "text/plain",
        sns_notification(&complaint, "m-2"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = standing(&app, bram.id, w.type_id);
    assert_eq!(b.consent, Some((false, "complaint".into())));
    assert!(!b.bouncer);

    // A delivery: nothing changes.
    let delivery = ses_example("ses-delivery.json", "jane@example.com", cor);
    let r = post(
        &app,
        "/webhooks/ses",
        "text/plain",
        sns_notification(&delivery, "m-3"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(standing(&app, cor.id, w.type_id), before);

    // An event-publishing delay (eventType) for Dirk: nothing changes; then a block by
    // policy (5.7.1): recorded, Dirk untouched.
    let delay =
        fixture("ses-event-delivery-delay.json").replace("recipient@example.com", &dirk.email);
    let r = post(
        &app,
        "/webhooks/ses",
        "text/plain",
        sns_notification(&delay, "m-4"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let policy = ses_example("ses-bounce.json", "jane@example.com", dirk)
        .replace("\"5.1.1\"", "\"5.7.1\"")
        .replace("550 5.1.1 <", "550 5.7.1 blocked using a block list <")
        .replace("ddddaaaa068a", "ddddaaaa068b");
    let r = post(
        &app,
        "/webhooks/ses",
        "text/plain",
        sns_notification(&policy, "m-5"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = standing(&app, dirk.id, w.type_id);
    assert_eq!((d.bouncer, d.soft_bounces), (false, 0));

    // Tampered after signing: 403, and Cor is untouched.
    let mut tampered: Value = serde_json::from_slice(&sns_notification(
        &ses_example("ses-bounce.json", "jane@example.com", cor),
        "m-6",
    ))
    .unwrap();
    tampered["Message"] = ses_example("ses-bounce.json", "jane@example.com", cor)
        .replace("General", "Suppressed")
        .into();
    let r = post(
        &app,
        "/webhooks/ses",
        "text/plain",
        serde_json::to_vec(&tampered).unwrap(),
        &[],
    )
    .await;
    r.assert_problem(403);
    assert_eq!(standing(&app, cor.id, w.type_id), before);
}

// ---- SendGrid -------------------------------------------------------------------------

fn sendgrid_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = now_unix().to_string();
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &std::fs::read(format!("{FIXTURES}/sendgrid-test-key.pk8")).unwrap(),
        &rng,
    )
    .unwrap();
    let mut signed = ts.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(pair.sign(&rng, &signed).unwrap());
    vec![
        ("X-Twilio-Email-Event-Webhook-Signature", sig),
        ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
    ]
}

/// The documented event `index` of a SendGrid fixture, addressed to `to`.
fn sendgrid_event(name: &str, index: usize, to: &Mailed, event_id: &str) -> Value {
    let events: Vec<Value> = serde_json::from_str(&fixture(name)).unwrap();
    let mut e = events[index].clone();
    e["email"] = to.email.clone().into();
    e["smtp-id"] = format!("<{}>", to.message_id).into();
    e["sg_event_id"] = event_id.into();
    e
}

async fn sendgrid_event_batches(backend: Backend) {
    let Some(app) = configured(backend).await else {
        return;
    };
    let (w, people) = mailed(&app).await;
    let [anna, bram, cor, dirk, eva] = &people[..] else {
        unreachable!()
    };
    let before_cor = opted_in(&app, cor.id, w.type_id);
    let before_dirk = opted_in(&app, dirk.id, w.type_id);

    // One batch: Anna bounces hard (the documented 5.1.1 "Invalid Address"), Dirk is
    // blocked by policy, Eva's mailbox is full (soft), Bram complains, Cor is delivered
    // (and opened: ignored).
    let batch = json!([
        sendgrid_event("sendgrid-bounces.json", 0, anna, "ev-anna"),
        sendgrid_event("sendgrid-bounces.json", 1, dirk, "ev-dirk"),
        sendgrid_event("sendgrid-bounces.json", 3, eva, "ev-eva"),
        sendgrid_event("sendgrid-events.json", 7, bram, "ev-bram"),
        sendgrid_event("sendgrid-events.json", 2, cor, "ev-cor"),
        sendgrid_event("sendgrid-events.json", 3, cor, "ev-cor-open"),
    ]);
    let body = serde_json::to_vec(&batch).unwrap();
    let r = post(
        &app,
        "/webhooks/sendgrid",
        "application/json",
        body.clone(),
        &sendgrid_headers(&body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(standing(&app, anna.id, w.type_id).bouncer);
    assert_eq!(
        standing(&app, dirk.id, w.type_id),
        before_dirk,
        "a block by policy leaves Dirk as he was"
    );
    let e = standing(&app, eva.id, w.type_id);
    assert_eq!((e.bouncer, e.soft_bounces), (false, 1));
    assert_eq!(
        standing(&app, bram.id, w.type_id).consent,
        Some((false, "complaint".into()))
    );
    assert_eq!(standing(&app, cor.id, w.type_id), before_cor);

    // SendGrid retries the batch (a timeout on its side): signed anew, counted once.
    for _ in 0..2 {
        let r = post(
            &app,
            "/webhooks/sendgrid",
            "application/json",
            body.clone(),
            &sendgrid_headers(&body),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let e = standing(&app, eva.id, w.type_id);
    assert_eq!(
        (e.bouncer, e.soft_bounces),
        (false, 1),
        "a retried soft bounce is counted once"
    );

    // A batch with one unreadable event is refused whole: Cor's bounce in it changes nothing.
    let bad = serde_json::to_vec(&json!([
        sendgrid_event("sendgrid-bounces.json", 0, cor, "ev-cor-bounce"),
        {"event": "bounce", "sg_event_id": "ev-no-email", "timestamp": 1},
    ]))
    .unwrap();
    let r = post(
        &app,
        "/webhooks/sendgrid",
        "application/json",
        bad.clone(),
        &sendgrid_headers(&bad),
    )
    .await;
    r.assert_problem(422);
    assert!(r.text.contains("ev-no-email"), "{}", r.text);
    assert_eq!(standing(&app, cor.id, w.type_id), before_cor);

    // Tampered, unsigned, or signed an hour and more ago: 403, nothing changes.
    let cor_bounce = serde_json::to_vec(&json!([sendgrid_event(
        "sendgrid-bounces.json",
        0,
        cor,
        "ev-cor-2"
    )]))
    .unwrap();
    let mut headers = sendgrid_headers(&cor_bounce);
    let tampered = String::from_utf8(cor_bounce.clone())
        .unwrap()
        .replace("5.1.1", "5.1.2")
        .into_bytes();
    post(
        &app,
        "/webhooks/sendgrid",
        "application/json",
        tampered,
        &headers,
    )
    .await
    .assert_problem(403);
    post(
        &app,
        "/webhooks/sendgrid",
        "application/json",
        cor_bounce.clone(),
        &[],
    )
    .await
    .assert_problem(403);
    headers[1].1 = (now_unix() - 3700).to_string();
    post(
        &app,
        "/webhooks/sendgrid",
        "application/json",
        cor_bounce,
        &headers,
    )
    .await
    .assert_problem(403);
    assert_eq!(standing(&app, cor.id, w.type_id), before_cor);
}

// ---- Mailgun --------------------------------------------------------------------------

/// A documented Mailgun example addressed to `to`, signed with the test signing key now.
fn mailgun_body(name: &str, to: &Mailed, event_id: &str, token: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(&fixture(name)).unwrap();
    body["event-data"]["recipient"] = to.email.clone().into();
    body["event-data"]["id"] = event_id.into();
    body["event-data"]["message"]["headers"]["message-id"] = to.message_id.clone().into();
    let ts = now_unix().to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, MAILGUN_KEY.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{ts}{token}").as_bytes());
    body["signature"] =
        json!({"timestamp": ts, "token": token, "signature": hex::encode(tag.as_ref())});
    serde_json::to_vec(&body).unwrap()
}

async fn mailgun_events(backend: Backend) {
    let Some(app) = configured(backend).await else {
        return;
    };
    let (w, people) = mailed(&app).await;
    let [anna, bram, cor, dirk, eva] = &people[..] else {
        unreachable!()
    };
    let before_cor = opted_in(&app, cor.id, w.type_id);
    let before_dirk = opted_in(&app, dirk.id, w.type_id);
    let before_eva = opted_in(&app, eva.id, w.type_id);

    let ok = |r: mailbaar_e2e::Reply| assert_eq!(r.status, 200, "{}", r.text);
    // A permanent failure (the documented suppress-bounce): Anna is a bouncer.
    ok(post(
        &app,
        "/webhooks/mailgun",
        "application/json",
        mailgun_body("mailgun-failed-permanent.json", anna, "mg-1", "t1"),
        &[],
    )
    .await);
    assert!(standing(&app, anna.id, w.type_id).bouncer);
    // A complaint: Bram opted out with channel complaint.
    ok(post(
        &app,
        "/webhooks/mailgun",
        "application/json",
        mailgun_body("mailgun-complained.json", bram, "mg-2", "t2"),
        &[],
    )
    .await);
    assert_eq!(
        standing(&app, bram.id, w.type_id).consent,
        Some((false, "complaint".into()))
    );
    // Delivered, and a temporary failure Mailgun still retries: nothing changes.
    ok(post(
        &app,
        "/webhooks/mailgun",
        "application/json",
        mailgun_body("mailgun-delivered.json", cor, "mg-3", "t3"),
        &[],
    )
    .await);
    ok(post(
        &app,
        "/webhooks/mailgun",
        "application/json",
        mailgun_body("mailgun-failed-temporary.json", eva, "mg-4", "t4"),
        &[],
    )
    .await);
    assert_eq!(standing(&app, cor.id, w.type_id), before_cor);
    assert_eq!(standing(&app, eva.id, w.type_id), before_eva);
    // A permanent failure blocked by the receiver's policy (espblock): Dirk untouched.
    let mut espblock: Value = serde_json::from_slice(&mailgun_body(
        "mailgun-failed-permanent.json",
        dirk,
        "mg-5",
        "t5",
    ))
    .unwrap();
    espblock["event-data"]["reason"] = "espblock".into();
    let token = espblock["signature"]["token"].as_str().unwrap().to_owned();
    let ts = espblock["signature"]["timestamp"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, MAILGUN_KEY.as_bytes()),
        format!("{ts}{token}").as_bytes(),
    );
    espblock["signature"]["signature"] = hex::encode(tag.as_ref()).into();
    ok(post(
        &app,
        "/webhooks/mailgun",
        "application/json",
        serde_json::to_vec(&espblock).unwrap(),
        &[],
    )
    .await);
    assert_eq!(standing(&app, dirk.id, w.type_id), before_dirk);

    // Mailgun signs the timestamp and token only, not the event: a tampered event is
    // caught when its token comes back with another event (Anna's token `t1` with Cor's
    // bounce), a forged signature, a stale timestamp: 403, Cor untouched.
    let replayed = mailgun_body("mailgun-failed-permanent.json", cor, "mg-6", "t1");
    post(&app, "/webhooks/mailgun", "application/json", replayed, &[])
        .await
        .assert_problem(403);
    let signed = mailgun_body("mailgun-failed-permanent.json", cor, "mg-7", "t7");
    let mut forged: Value = serde_json::from_slice(&signed).unwrap();
    let signature = forged["signature"]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    forged["signature"]["signature"] = format!("{flipped}{}", &signature[1..]).into();
    post(
        &app,
        "/webhooks/mailgun",
        "application/json",
        serde_json::to_vec(&forged).unwrap(),
        &[],
    )
    .await
    .assert_problem(403);
    let mut stale: Value = serde_json::from_slice(&signed).unwrap();
    stale["signature"]["timestamp"] = (now_unix() - 3700).to_string().into();
    post(
        &app,
        "/webhooks/mailgun",
        "application/json",
        serde_json::to_vec(&stale).unwrap(),
        &[],
    )
    .await
    .assert_problem(403);
    assert_eq!(standing(&app, cor.id, w.type_id), before_cor);
}

// ---- Postmark -------------------------------------------------------------------------

fn postmark_auth(secret: &str) -> Vec<(&'static str, String)> {
    vec![(
        "Authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("postmark:{secret}"))
        ),
    )]
}

fn postmark_body(name: &str, to: &Mailed, field: &str, id: Option<Value>) -> Vec<u8> {
    let mut body: Value = serde_json::from_str(&fixture(name)).unwrap();
    body[field] = to.email.clone().into();
    if let Some(id) = id {
        body["ID"] = id;
    }
    serde_json::to_vec(&body).unwrap()
}

async fn postmark_records(backend: Backend) {
    let Some(app) = configured(backend).await else {
        return;
    };
    let (w, people) = mailed(&app).await;
    let [anna, bram, cor, dirk, eva] = &people[..] else {
        unreachable!()
    };
    let before_cor = opted_in(&app, cor.id, w.type_id);
    let before_dirk = opted_in(&app, dirk.id, w.type_id);
    let auth = postmark_auth(POSTMARK_SECRET);
    let ok = |r: mailbaar_e2e::Reply| assert_eq!(r.status, 200, "{}", r.text);

    // The documented hard bounce, its ID above 2^53: Anna is a bouncer.
    ok(post(
        &app,
        "/webhooks/postmark",
        "application/json",
        postmark_body("postmark-bounce.json", anna, "Email", None),
        &auth,
    )
    .await);
    assert!(standing(&app, anna.id, w.type_id).bouncer);
    // The documented spam complaint: Bram opted out with channel complaint.
    ok(post(
        &app,
        "/webhooks/postmark",
        "application/json",
        postmark_body("postmark-spam-complaint.json", bram, "Email", None),
        &auth,
    )
    .await);
    assert_eq!(
        standing(&app, bram.id, w.type_id).consent,
        Some((false, "complaint".into()))
    );
    // A delivery: Cor untouched.
    ok(post(
        &app,
        "/webhooks/postmark",
        "application/json",
        postmark_body("postmark-delivery.json", cor, "Recipient", None),
        &auth,
    )
    .await);
    assert_eq!(standing(&app, cor.id, w.type_id), before_cor);
    // Blocked and an auto-responder: Dirk untouched.
    let mut blocked: Value = serde_json::from_slice(&postmark_body(
        "postmark-bounce.json",
        dirk,
        "Email",
        Some(json!(4323372036854775808u64)),
    ))
    .unwrap();
    blocked["Type"] = "Blocked".into();
    ok(post(
        &app,
        "/webhooks/postmark",
        "application/json",
        serde_json::to_vec(&blocked).unwrap(),
        &auth,
    )
    .await);
    blocked["Type"] = "AutoResponder".into();
    blocked["ID"] = json!(4323372036854775809u64);
    ok(post(
        &app,
        "/webhooks/postmark",
        "application/json",
        serde_json::to_vec(&blocked).unwrap(),
        &auth,
    )
    .await);
    assert_eq!(standing(&app, dirk.id, w.type_id), before_dirk);
    // A soft bounce posted three times (Postmark retries): counted once.
    let mut soft: Value = serde_json::from_slice(&postmark_body(
        "postmark-bounce.json",
        eva,
        "Email",
        Some(json!(77)),
    ))
    .unwrap();
    soft["Type"] = "SoftBounce".into();
    for _ in 0..3 {
        ok(post(
            &app,
            "/webhooks/postmark",
            "application/json",
            serde_json::to_vec(&soft).unwrap(),
            &auth,
        )
        .await);
    }
    let e = standing(&app, eva.id, w.type_id);
    assert_eq!((e.bouncer, e.soft_bounces), (false, 1));

    // Without the secret, or with another: 403, Cor untouched.
    let cor_bounce = postmark_body("postmark-bounce.json", cor, "Email", Some(json!(99)));
    post(
        &app,
        "/webhooks/postmark",
        "application/json",
        cor_bounce.clone(),
        &[],
    )
    .await
    .assert_problem(403);
    post(
        &app,
        "/webhooks/postmark",
        "application/json",
        cor_bounce,
        &postmark_auth("not-the-secret-at-all"),
    )
    .await
    .assert_problem(403);
    assert_eq!(standing(&app, cor.id, w.type_id), before_cor);
}

async fn unconfigured_providers_answer_404(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for provider in ["ses", "sendgrid", "mailgun", "postmark"] {
        let r = post(
            &app,
            &format!("/webhooks/{provider}"),
            "application/json",
            b"{}".to_vec(),
            &[],
        )
        .await;
        r.assert_problem(404);
        assert_eq!(r.body["code"], "provider_not_configured", "{}", r.text);
    }
}
