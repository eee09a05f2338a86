//! Bounces, complaints and auto-replies as mail servers write them: one classification
//! table (RFC 3463), the DSNs of Postfix, Exim, Exchange Online, Gmail and Sendmail (CRLF
//! and LF, fixtures under `tests/fixtures/dsn/`) read and applied on both engines, each
//! notice counted once also when 20 identical ones arrive at the same moment, and an
//! unreadable report kept for a person to look at.

use std::sync::{Arc, Barrier};

use diesel::prelude::*;
use mailbaar_campaigns::{NewCampaign, NewStep};
use mailbaar_consent::ConsentChange;
use mailbaar_delivery::{
    classify_notice, read_report, report_message, report_webhook, BounceWebhook, DeliveryError,
    Evidence, NoticeClass, ReportKind,
};
use mailbaar_people::NewPerson;
use mailbaar_store::schema::{
    consent_records, contact_moments, notices, persons, unreadable_reports,
};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{Backend, DbConnection};

const BY: &str = "test:bounce mailbox";

fn status(action: &str, status: Option<&str>, diagnostic: &str) -> NoticeClass {
    classify_notice(&Evidence::Status {
        action,
        status,
        diagnostic,
    })
}

#[test]
fn one_classification_table() {
    use NoticeClass::*;
    let rows: &[(&str, Option<&str>, &str, NoticeClass)] = &[
        // The address does not exist (X.1.x).
        ("failed", Some("5.1.1"), "550 5.1.1 user unknown", Hard),
        (
            "failed",
            Some("5.1.10"),
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound",
            Hard,
        ),
        // A generic status: the diagnostic's enhanced code decides.
        (
            "failed",
            Some("5.0.0"),
            "550 5.1.1 <a@b.nl>: Recipient address rejected",
            Hard,
        ),
        (
            "failed",
            Some("5.0.0"),
            "552-5.2.2 The recipient's mailbox is full",
            Soft,
        ),
        (
            "failed",
            Some("5.0.0"),
            "550 5.7.1 client host [192.0.2.25] is on a block list",
            Policy,
        ),
        // The issue's case 1: a full mailbox is a soft bounce (RFC 3463 §3.3).
        (
            "failed",
            Some("5.2.2"),
            "552-5.2.2 The recipient's mailbox is full",
            Soft,
        ),
        ("failed", Some("4.2.2"), "452 4.2.2 over quota", Soft),
        ("failed", Some("5.3.4"), "552 5.3.4 message too big", Soft),
        ("failed", Some("5.4.4"), "550 5.4.4 unable to route", Soft),
        // An MTA that gave up on a 4.x.x.
        ("failed", Some("4.4.7"), "421 4.4.2 timeout exceeded", Soft),
        // The issue's case 2: the receiver refused our IP, not the mailbox.
        (
            "failed",
            Some("5.7.1"),
            "550 5.7.1 client host [192.0.2.25] is on a block list",
            Policy,
        ),
        (
            "failed",
            Some("5.7.26"),
            "550 5.7.26 unauthenticated email is not accepted",
            Policy,
        ),
        (
            "failed",
            Some("5.1.8"),
            "553 5.1.8 sender address domain does not exist",
            Policy,
        ),
        // Block lists, spam and reputation named with a generic or no status.
        (
            "failed",
            Some("5.0.0"),
            "554 rejected: listed at zen.spamhaus.org",
            Policy,
        ),
        ("failed", None, "550 Message rejected as spam", Policy),
        (
            "failed",
            Some("5.0.0"),
            "550 poor sender reputation",
            Policy,
        ),
        (
            "failed",
            Some("5.0.0"),
            "550 Sorry, no such user here",
            Hard,
        ),
        ("failed", Some("4.0.0"), "451 try again later", Soft),
        ("failed", Some("5.0.0"), "", Hard),
        ("failed", None, "", Soft),
        // Not a bounce.
        ("delayed", Some("4.4.1"), "451 4.4.1 no answer", Delayed),
        ("delayed", Some("4.7.1"), "451 4.7.1 Greylisted", Delayed),
        ("delivered", Some("2.0.0"), "250 2.0.0 Ok", Delivered),
        ("relayed", Some("2.0.0"), "", Delivered),
        ("expanded", Some("2.0.0"), "", Delivered),
        ("FAILED", Some("5.1.1"), "", Hard),
    ];
    for (action, st, diagnostic, want) in rows {
        assert_eq!(
            status(action, *st, diagnostic),
            *want,
            "{action} {st:?} {diagnostic:?}"
        );
    }
    assert_eq!(classify_notice(&Evidence::AutoReply), AutoReply);
    assert_eq!(classify_notice(&Evidence::Complaint), Complaint);
}

/// A fixture with the original's Message-ID and the recipient filled in.
fn fixture(name: &str, message_id: &str, recipient: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/dsn/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("@@MSGID@@", message_id)
        .replace("@@RCPT@@", recipient)
        .into_bytes()
}

/// Every fixture: the MTA that wrote it, the class its recipient's notice has, and what
/// must have happened to the person.
const FIXTURES: [(&str, NoticeClass); 10] = [
    ("postfix_blocklist_policy.eml", NoticeClass::Policy),
    ("gmail_mailbox_full_soft.eml", NoticeClass::Soft),
    ("exchange_online_unknown_hard.eml", NoticeClass::Hard),
    ("exim_delayed.eml", NoticeClass::Delayed),
    ("exim_generic_status_hard.eml", NoticeClass::Hard),
    ("sendmail_gave_up_soft.eml", NoticeClass::Soft),
    ("postfix_delivered.eml", NoticeClass::Delivered),
    ("exchange_online_auto_reply.eml", NoticeClass::AutoReply),
    ("arf_feedback_complaint.eml", NoticeClass::Complaint),
    ("postfix_multi_recipient_global.eml", NoticeClass::Soft),
];

#[test]
fn reports_read_as_mail_servers_write_them() {
    for (name, class) in FIXTURES {
        let raw = fixture(name, "m-1@mail.example.org", "anna@example.nl");
        let report = read_report(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.message_ids[0], "m-1@mail.example.org", "{name}");
        let ours = report
            .recipients
            .iter()
            .find(|g| {
                [&g.final_recipient, &g.original_recipient]
                    .into_iter()
                    .flatten()
                    .any(|r| r == "anna@example.nl")
            })
            .or(report.recipients.first())
            .unwrap();
        assert_eq!(ours.class, class, "{name}: {ours:?}");
        let kind = match class {
            NoticeClass::AutoReply => ReportKind::AutoReply,
            NoticeClass::Complaint => ReportKind::Feedback,
            _ => ReportKind::DeliveryStatus,
        };
        assert_eq!(report.kind, kind, "{name}");
    }
    // Several groups, one a utf-8 address with RFC 6533 escapes, the other with folded,
    // lower- and upper-case fields whose Original-Recipient is ours.
    let raw = fixture(
        "postfix_multi_recipient_global.eml",
        "m-1@mail.example.org",
        "anna@example.nl",
    );
    let report = read_report(&raw).unwrap();
    assert_eq!(report.recipients.len(), 2);
    assert_eq!(
        report.recipients[0].final_recipient.as_deref(),
        Some("jörg@bücher.example")
    );
    assert_eq!(report.recipients[0].class, NoticeClass::Hard);
    assert_eq!(
        report.recipients[1].original_recipient.as_deref(),
        Some("anna@example.nl")
    );
    assert!(report.recipients[1].diagnostic.contains("over quota"));
}

#[test]
fn malformed_reports_name_what_is_missing() {
    let cases: [(&[u8], &str); 4] = [
        (b"this is not a message", "body"),
        (b"From: a@b.nl\r\nSubject: hi\r\n\r\nno report here", "body"),
        (
            b"From: a@b.nl\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b.nl\r\nStatus: 5.1.1\r\n\r\n--x--\r\n",
            "delivery-status",
        ),
        (
            b"From: a@b.nl\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b.nl\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--x--\r\n",
            "original",
        ),
    ];
    for (raw, want) in cases {
        match read_report(raw) {
            Err(DeliveryError::InvalidReport { field, reason }) => {
                assert_eq!(field, want, "{reason}")
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }
}

/// A step mailing for the newsletter (opt-in type 1); its id.
fn step(conn: &mut DbConnection) -> i64 {
    let campaign = mailbaar_campaigns::create_campaign(
        conn,
        NewCampaign {
            name: "bounces".into(),
            description: String::new(),
        },
        "test",
    )
    .expect("campaign");
    mailbaar_campaigns::create_step(
        conn,
        NewStep {
            campaign_id: campaign.id,
            name: "newsletter".into(),
            opt_in_type_id: Some(1),
            ..Default::default()
        },
        "test",
    )
    .expect("step")
    .id
}

/// A person opted in to the newsletter with one sent message of `step`: (person, contact
/// moment, Message-ID).
fn recipient(conn: &mut DbConnection, step: i64, email: &str) -> (i64, i64, String) {
    let person = mailbaar_people::create_person(
        conn,
        NewPerson {
            email: Some(email.into()),
            ..Default::default()
        },
    )
    .expect("person");
    mailbaar_consent::record(
        conn,
        person.id,
        ConsentChange {
            opt_in_type_id: 1,
            opt_in: true,
            channel: "web_form".into(),
            description: "Yes, send me the newsletter".into(),
        },
        "test",
    )
    .expect("consent");
    let message_id = format!("{}@mail.example.org", uuid::Uuid::new_v4());
    let now = mailbaar_store::now();
    let moment: i64 = diesel::insert_into(contact_moments::table)
        .values((
            contact_moments::person_id.eq(person.id),
            contact_moments::channel.eq("email"),
            contact_moments::step_id.eq(Some(step)),
            contact_moments::is_test.eq(false),
            contact_moments::occurred_at.eq(now),
            contact_moments::message_id.eq(Some(&message_id)),
            contact_moments::sent_at.eq(Some(now)),
        ))
        .returning(contact_moments::id)
        .get_result(conn)
        .expect("contact moment");
    (person.id, moment, message_id)
}

/// (bouncer, soft bounces) of a person.
fn bounce_state(conn: &mut DbConnection, person: i64) -> (bool, i32) {
    persons::table
        .find(person)
        .select((persons::bouncer, persons::soft_bounces))
        .first(conn)
        .unwrap()
}

/// The person's latest newsletter consent: (opt_in, channel, contact moment).
fn newsletter(conn: &mut DbConnection, person: i64) -> (bool, String, Option<i64>) {
    consent_records::table
        .filter(consent_records::person_id.eq(person))
        .filter(consent_records::opt_in_type_id.eq(1))
        .order(consent_records::id.desc())
        .select((
            consent_records::opt_in,
            consent_records::channel,
            consent_records::contact_moment_id,
        ))
        .first(conn)
        .unwrap()
}

fn every_fixture_applied_by_its_class(conn: &mut DbConnection) {
    let step = step(conn);
    for (i, (name, class)) in FIXTURES.into_iter().enumerate() {
        let email = format!("person.{i}@example.nl");
        let (person, moment, message_id) = recipient(conn, step, &email);
        // Addresses compare by the one folding rule.
        let raw = fixture(name, &message_id, &email.to_uppercase());
        let now = mailbaar_store::now();
        let out = report_message(conn, &raw, "message/rfc822", BY, now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].outcome, class.as_str(), "{name}: {:?}", out[0]);
        assert_eq!(out[0].person_id, Some(person), "{name}");
        assert_eq!(out[0].contact_moment_id, Some(moment), "{name}");
        let (bouncer, soft) = bounce_state(conn, person);
        let bounced_at: Option<chrono::NaiveDateTime> = contact_moments::table
            .find(moment)
            .select(contact_moments::bounced_at)
            .first(conn)
            .unwrap();
        match class {
            NoticeClass::Hard => {
                assert!(bouncer && bounced_at.is_some(), "{name}: a bouncer");
            }
            NoticeClass::Soft => {
                assert_eq!((bouncer, soft), (false, 1), "{name}: one soft bounce");
                assert!(bounced_at.is_none(), "{name}");
            }
            _ => {
                assert_eq!((bouncer, soft), (false, 0), "{name}: the person untouched");
                assert!(bounced_at.is_none(), "{name}");
            }
        }
        let (opt_in, channel, from) = newsletter(conn, person);
        if class == NoticeClass::Complaint {
            assert_eq!(
                (opt_in, channel.as_str(), from),
                (false, "complaint", Some(moment)),
                "{name}: an opt-out naming the message"
            );
        } else {
            assert!(opt_in, "{name}: consent untouched");
        }
        // The notice is kept on the message with its class and diagnostic.
        let (kept_class, diagnostic): (String, String) = notices::table
            .filter(notices::contact_moment_id.eq(moment))
            .select((notices::class, notices::diagnostic))
            .first(conn)
            .unwrap();
        assert_eq!(kept_class, class.as_str(), "{name}");
        assert!(!diagnostic.is_empty(), "{name}");
        // The same report again (an MTA or script retrying) changes nothing.
        let again = report_message(conn, &raw, "message/rfc822", BY, now).unwrap();
        assert_eq!(again[0].outcome, "duplicate", "{name}");
        assert_eq!(bounce_state(conn, person), (bouncer, soft), "{name}");
        let kept: i64 = notices::table
            .filter(notices::contact_moment_id.eq(moment))
            .count()
            .get_result(conn)
            .unwrap();
        assert_eq!(kept, 1, "{name}: recorded once");
    }
}

fn reports_about_someone_else_change_no_one(conn: &mut DbConnection) {
    let step = step(conn);
    let (anna, _, anna_message) = recipient(conn, step, "anna@example.nl");
    let (bram, ..) = recipient(conn, step, "bram@example.nl");
    let now = mailbaar_store::now();
    // A hard DSN for Anna's message naming Bram: no one changes.
    let raw = fixture(
        "exchange_online_unknown_hard.eml",
        &anna_message,
        "bram@example.nl",
    );
    let out = report_message(conn, &raw, "message/rfc822", BY, now).unwrap();
    assert_eq!(out[0].outcome, "unmatched");
    // A DSN about a message that is not ours.
    let raw = fixture(
        "exchange_online_unknown_hard.eml",
        "elsewhere@other.example",
        "anna@example.nl",
    );
    let out = report_message(conn, &raw, "message/rfc822", BY, now).unwrap();
    assert_eq!(out[0].outcome, "unmatched");
    assert_eq!(bounce_state(conn, anna), (false, 0));
    assert_eq!(bounce_state(conn, bram), (false, 0));
}

fn an_unreadable_report_is_kept(conn: &mut DbConnection) {
    let raw = b"From: a@b.nl\r\nSubject: hi\r\n\r\nno report here".to_vec();
    let now = mailbaar_store::now();
    let err = report_message(conn, &raw, "message/rfc822", BY, now).unwrap_err();
    let DeliveryError::UnreadableReport { id, field, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(field, "body");
    let (body, by): (Vec<u8>, String) = unreadable_reports::table
        .find(id)
        .select((unreadable_reports::body, unreadable_reports::reported_by))
        .first(conn)
        .unwrap();
    assert_eq!((body, by.as_str()), (raw, BY));
    let listed = mailbaar_delivery::list_unreadable(
        conn,
        mailbaar_store::PageRequest::checked(None, None).unwrap(),
    )
    .unwrap();
    assert_eq!(listed.total, 1);
}

/// Soft bounces of the generic webhook: retried posts of the same body count once;
/// different events count up to the limit (3), which makes a bouncer.
fn webhook_retries_count_once(conn: &mut DbConnection) {
    let step = step(conn);
    let (dirk, ..) = recipient(conn, step, "dirk@example.nl");
    let post = |conn: &mut DbConnection, body: &str| {
        let webhook: BounceWebhook = serde_json::from_str(body).unwrap();
        report_webhook(conn, &webhook, body.as_bytes(), BY, mailbaar_store::now()).unwrap()
    };
    let body =
        r#"{"email":"dirk@example.nl","kind":"soft","reason":"421 4.4.2 connection dropped"}"#;
    for n in 0..3 {
        let out = post(conn, body);
        assert_eq!(
            out[0].outcome,
            if n == 0 { "soft" } else { "duplicate" },
            "post {n}"
        );
    }
    assert_eq!(bounce_state(conn, dirk), (false, 1), "the issue's case 3");
    for n in 2..=3 {
        let body = format!(
            r#"{{"email":"dirk@example.nl","kind":"soft","reason":"452 4.2.2 over quota","event_id":"e{n}"}}"#
        );
        post(conn, &body);
    }
    assert!(bounce_state(conn, dirk).0, "the third soft bounce");
    // A provider's "hard" that is a block list is a policy refusal: no bouncer.
    let (eva, ..) = recipient(conn, step, "eva@example.nl");
    let out = post(
        conn,
        r#"{"email":"eva@example.nl","kind":"hard","reason":"550 5.7.1 client host [192.0.2.25] is on a block list"}"#,
    );
    assert_eq!(out[0].outcome, "policy");
    assert_eq!(bounce_state(conn, eva), (false, 0));
}

mailbaar_store::both_engines!(
    every_fixture_applied_by_its_class,
    reports_about_someone_else_change_no_one,
    an_unreadable_report_is_kept,
    webhook_retries_count_once,
);

/// 20 identical DSNs and 20 identical webhooks, each set let go at the same moment from
/// 20 connections: each counted once.
fn twenty_identical_notices_count_once(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = mailbaar_store::connect(db.url(), 21).expect("pool");
    mailbaar_store::run_migrations(&mut pool.get().unwrap()).unwrap();
    let (ria, raw, sam) = {
        let mut conn = pool.get().unwrap();
        let step = step(&mut conn);
        let (ria, _, message) = recipient(&mut conn, step, "ria@example.nl");
        let (sam, ..) = recipient(&mut conn, step, "sam@example.nl");
        (
            ria,
            fixture("gmail_mailbox_full_soft.eml", &message, "ria@example.nl"),
            sam,
        )
    };
    let webhook = r#"{"email":"sam@example.nl","kind":"soft","reason":"421 4.4.2 timeout"}"#;
    for dsn in [true, false] {
        let barrier = Arc::new(Barrier::new(20));
        let outcomes: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|_| {
                    let (pool, barrier, raw) = (pool.clone(), barrier.clone(), raw.clone());
                    s.spawn(move || {
                        let mut conn = pool.get().unwrap();
                        barrier.wait();
                        let now = mailbaar_store::now();
                        let out = if dsn {
                            report_message(&mut conn, &raw, "message/rfc822", BY, now)
                        } else {
                            let w: BounceWebhook = serde_json::from_str(webhook).unwrap();
                            report_webhook(&mut conn, &w, webhook.as_bytes(), BY, now)
                        };
                        out.unwrap().remove(0).outcome
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let counted = outcomes.iter().filter(|o| *o == "soft").count();
        let duplicates = outcomes.iter().filter(|o| *o == "duplicate").count();
        assert_eq!((counted, duplicates), (1, 19), "{outcomes:?}");
    }
    let mut conn = pool.get().unwrap();
    assert_eq!(bounce_state(&mut conn, ria), (false, 1));
    assert_eq!(bounce_state(&mut conn, sam), (false, 1));
    let recorded: i64 = notices::table.count().get_result(&mut conn).unwrap();
    assert_eq!(recorded, 2);
}

mailbaar_store::both_engines!(backend: twenty_identical_notices_count_once);
