//! The send engine on both engines, without HTTP: a scripted transport answers per
//! recipient (accept; 4xx or 5xx at `MAIL FROM`, at `RCPT TO` or after `DATA`; a refusal of
//! *us*; no reply before the end of data; the reply lost after the end of data; a slow
//! reply; 4xx once and then accept) and the database queue records each verdict, under
//! both in-doubt policies. Only a refusal of the recipient's address marks a bouncer, 4xx
//! and no reply before the end of data are tried again until the attempts run out, a
//! message that may have arrived is never resent blindly (at most once, or one retry with
//! the same Message-ID), a refusal of us costs no attempt, and every copy's links work
//! whatever state its recipient ends in. A relay that keeps refusing us pauses the job
//! with the reason; resume after the fix delivers everyone exactly once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use mailbaar_campaigns::{MailJobStatus, NewCampaign, NewStep, RecipientState, SendRequest};
use mailbaar_consent::ConsentChange;
use mailbaar_delivery::{
    Delivery, Handover, HandoverDone, InDoubtPolicy, Links, OutgoingMessage, Reply, Retry,
    SendOutcome, SendWork, SmtpPhase, TokenPurpose, Transport,
};
use mailbaar_people::NewPerson;
use mailbaar_query::SavedQueryInput;
use mailbaar_store::schema::{contact_moments, mail_job_recipients, persons};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{Backend, DbConnection};
use mailbaar_tasks::{Registry, Runner, RunnerOptions};
use serde_json::json;

/// The SMTP phase a scripted answer comes at.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The greeting, EHLO or AUTH.
    Connect,
    Mail,
    Rcpt,
    Data,
}

/// What the scripted server does with one recipient's message, every attempt.
#[derive(Debug, Clone, Copy)]
enum Script {
    Accept,
    Transient(Phase),
    Permanent(Phase),
    NoReply,
    /// Accepts after this long.
    Slow(Duration),
    /// 4xx at `RCPT TO` on the first attempt, then accepts.
    TransientOnce,
    /// The relay refuses us (535 at `AUTH`) on the first attempt, then accepts.
    RefusesUsOnce,
    /// The whole message is sent, then the connection closes without a final reply.
    LostReply,
    /// As [`Script::LostReply`] on the first attempt, then accepts.
    LostReplyOnce,
}

/// The local parts of the recipients and what the server does with each.
const RECIPIENTS: [(&str, Script); 14] = [
    ("accept", Script::Accept),
    ("accept.too", Script::Accept),
    ("connect.4xx", Script::Transient(Phase::Connect)),
    ("connect.5xx", Script::RefusesUsOnce),
    ("lost.reply", Script::LostReply),
    ("lost.once", Script::LostReplyOnce),
    ("mail.4xx", Script::Transient(Phase::Mail)),
    ("mail.5xx", Script::Permanent(Phase::Mail)),
    ("rcpt.4xx", Script::Transient(Phase::Rcpt)),
    ("rcpt.5xx", Script::Permanent(Phase::Rcpt)),
    ("data.5xx", Script::Permanent(Phase::Data)),
    ("no.reply", Script::NoReply),
    ("slow", Script::Slow(Duration::from_millis(300))),
    ("once.4xx", Script::TransientOnce),
];

/// Attempts in all before a deferred recipient fails.
const ATTEMPTS: i32 = 3;

/// A copy that may have reached its person: its Message-ID and the message.
type Arrived = (String, Vec<u8>);

/// Answers as an SMTP server following [`RECIPIENTS`] would, through the hand-overs the
/// SMTP transport gives (classified by `mailbaar_delivery::classify`). Counts every attempt
/// per address, and keeps every copy that may have reached the person (accepted, or sent
/// to its end before the reply was lost). While `refusing`, it refuses us (535 at `AUTH`)
/// whatever the recipient; with `accept_all`, it accepts every message.
#[derive(Debug, Default)]
struct ScriptedTransport {
    attempts: Mutex<BTreeMap<String, u32>>,
    accepted: Mutex<BTreeMap<String, Vec<String>>>,
    /// Copies that may have arrived, per address: (Message-ID, the message).
    copies: Mutex<BTreeMap<String, Vec<Arrived>>>,
    refusing: AtomicBool,
    accept_all: bool,
}

fn script_of(address: &str) -> Script {
    let local = address.split('@').next().unwrap_or_default();
    RECIPIENTS
        .iter()
        .find(|(name, _)| *name == local)
        .map(|(_, s)| *s)
        .expect("a scripted recipient")
}

impl ScriptedTransport {
    fn answer(&self, message: &OutgoingMessage) -> Handover {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts.entry(message.to.clone()).or_default();
            *n += 1;
            *n
        };
        let reply = |code: u16, phase: Phase| {
            let phase = match phase {
                Phase::Connect => SmtpPhase::Greeting,
                Phase::Mail => SmtpPhase::MailFrom,
                Phase::Rcpt => SmtpPhase::RcptTo,
                Phase::Data => SmtpPhase::EndOfData,
            };
            Handover::of(Reply::new(
                phase,
                code,
                format!("{code} scripted at {phase}"),
            ))
        };
        let lost = || {
            Handover::of(Reply::none(
                SmtpPhase::EndOfData,
                "the connection closed after the final dot",
            ))
        };
        let script = if self.accept_all {
            Script::Accept
        } else {
            script_of(&message.to)
        };
        let answer = if self.refusing.load(Ordering::SeqCst) {
            Handover::of(Reply::new(
                SmtpPhase::Auth,
                535,
                "535 5.7.8 Authentication credentials invalid",
            ))
        } else {
            match script {
                Script::Accept => Handover::accepted("ok"),
                Script::Slow(wait) => {
                    std::thread::sleep(wait);
                    Handover::accepted("ok")
                }
                Script::TransientOnce if attempt == 1 => reply(451, Phase::Rcpt),
                Script::TransientOnce => Handover::accepted("ok"),
                Script::RefusesUsOnce if attempt == 1 => Handover::of(Reply::new(
                    SmtpPhase::Auth,
                    535,
                    "535 5.7.8 Authentication credentials invalid",
                )),
                Script::RefusesUsOnce => Handover::accepted("ok"),
                Script::LostReply => lost(),
                Script::LostReplyOnce if attempt == 1 => lost(),
                Script::LostReplyOnce => Handover::accepted("ok"),
                Script::Transient(phase) => reply(421, phase),
                Script::Permanent(Phase::Rcpt) => reply(550, Phase::Rcpt),
                // A refusal of the message (not of us, which would pause the job).
                Script::Permanent(Phase::Mail) => Handover::of(Reply::new(
                    SmtpPhase::MailFrom,
                    552,
                    "552 5.3.4 message too big",
                )),
                Script::Permanent(phase) => reply(554, phase),
                Script::NoReply => Handover::of(Reply::none(
                    SmtpPhase::RcptTo,
                    "timed out waiting for a reply",
                )),
            }
        };
        if answer.outcome == SendOutcome::Accepted {
            self.accepted
                .lock()
                .unwrap()
                .entry(message.to.clone())
                .or_default()
                .push(message.message_id.clone());
        }
        if matches!(answer.outcome, SendOutcome::Accepted | SendOutcome::InDoubt) {
            self.copies
                .lock()
                .unwrap()
                .entry(message.to.clone())
                .or_default()
                .push((message.message_id.clone(), message.bytes.clone()));
        }
        answer
    }
}

/// A shared handle, so the test reads what the engine's transport saw.
#[derive(Debug, Clone)]
struct Shared(Arc<ScriptedTransport>);

impl Transport for Shared {
    fn concurrency(&self) -> usize {
        4
    }

    fn start(&self, message: OutgoingMessage, done: HandoverDone) {
        let transport = self.0.clone();
        std::thread::spawn(move || done(transport.answer(&message)));
    }
}

/// Persons for every scripted recipient, opted in to the newsletter (type 1), and a step
/// that mails them; its id.
fn mailing(conn: &mut DbConnection) -> i64 {
    for (local, _) in RECIPIENTS {
        let person = mailbaar_people::create_person(
            conn,
            NewPerson {
                email: Some(format!("{local}@example.org")),
                first_name: Some(local.into()),
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
    }
    let query = mailbaar_query::create_query(
        conn,
        SavedQueryInput {
            name: "newsletter".into(),
            description: String::new(),
            conditions: json!({"all": [
                {"field": "consent.1", "op": "eq", "value": true},
                {"field": "mailable", "op": "eq", "value": true},
            ]}),
        },
        "test",
    )
    .expect("saved query");
    let campaign = mailbaar_campaigns::create_campaign(
        conn,
        NewCampaign {
            name: "engine".into(),
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
            from_name: Some("Stichting Voorbeeld".into()),
            from_email: Some("nieuws@example.org".into()),
            subject: Some("Nieuws voor {{ person.first_name }}".into()),
            html: Some(
                "<p>Beste {{ person.first_name }},</p>\
                 <p><a href=\"{{ preferences_url }}\">Voorkeuren</a></p>"
                    .into(),
            ),
            query_id: Some(query.id),
            opt_in_type_id: Some(1),
            ..Default::default()
        },
        "test",
    )
    .expect("step")
    .id
}

/// One recipient's row after the send.
#[derive(Debug)]
struct Outcome {
    state: RecipientState,
    attempts: i32,
    in_doubt: bool,
    bouncer: bool,
    /// The job's contact moments of the person that were sent.
    sent_moments: i64,
    /// The last reply's phase and code, as stored.
    reply: (Option<String>, Option<i32>),
}

fn outcomes(conn: &mut DbConnection, job: i64) -> BTreeMap<String, Outcome> {
    type Row = (
        i64,
        String,
        i32,
        bool,
        Option<String>,
        bool,
        Option<String>,
        Option<i32>,
    );
    let rows: Vec<Row> = mail_job_recipients::table
        .inner_join(persons::table)
        .filter(mail_job_recipients::mail_job_id.eq(job))
        .select((
            persons::id,
            mail_job_recipients::state,
            mail_job_recipients::attempts,
            mail_job_recipients::in_doubt,
            persons::email,
            persons::bouncer,
            mail_job_recipients::reply_phase,
            mail_job_recipients::reply_code,
        ))
        .load(conn)
        .expect("recipients");
    rows.into_iter()
        .map(
            |(person, state, attempts, in_doubt, email, bouncer, phase, code)| {
                let sent_moments: i64 = contact_moments::table
                    .filter(contact_moments::mail_job_id.eq(job))
                    .filter(contact_moments::person_id.eq(person))
                    .filter(contact_moments::sent_at.is_not_null())
                    .count()
                    .get_result(conn)
                    .expect("contact moments");
                (
                    email.unwrap_or_default(),
                    Outcome {
                        state: state.parse().expect("a known state"),
                        attempts,
                        in_doubt,
                        bouncer,
                        sent_moments,
                        reply: (phase, code),
                    },
                )
            },
        )
        .collect()
}

/// The one-click unsubscribe token in a message's `List-Unsubscribe` header.
fn unsubscribe_token(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let at = text
        .find("/r/unsubscribe/")
        .expect("an unsubscribe link in the message")
        + "/r/unsubscribe/".len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.~".contains(*c))
        .collect()
}

/// Every copy that may have reached a person still leads to its preference centre (and,
/// with `unsubscribe`, its unsubscribe works), through the token in the copy itself.
fn every_copy_links_work(
    conn: &mut DbConnection,
    delivery: &Delivery,
    t: &ScriptedTransport,
    unsubscribe: bool,
) {
    let copies = t.copies.lock().unwrap().clone();
    assert!(!copies.is_empty());
    for (address, copies) in copies {
        for (message_id, bytes) in copies {
            let token = unsubscribe_token(&bytes);
            let reached = mailbaar_delivery::reach(
                conn,
                delivery,
                TokenPurpose::Unsubscribe,
                &token,
                mailbaar_store::now(),
            )
            .unwrap_or_else(|e| panic!("{address} ({message_id}): the link answers {e}"));
            assert_eq!(reached.message_id.as_deref(), Some(message_id.as_str()));
            mailbaar_delivery::preferences(conn, &reached).expect("the preference centre");
            if unsubscribe {
                mailbaar_delivery::unsubscribe(conn, &reached, "Afmelden").expect("unsubscribe");
            }
        }
    }
}

/// Runs the job's tasks until it is no longer active (or, with `until_paused`, until it
/// is paused); the job then.
fn run_until(
    runner: &Runner,
    conn: &mut DbConnection,
    job: i64,
    until_paused: bool,
) -> mailbaar_campaigns::MailJob {
    let started = Instant::now();
    loop {
        runner.run_until_idle().expect("tasks run");
        let job = mailbaar_campaigns::get_mail_job(conn, job).expect("job");
        if !job.status.is_active() || (until_paused && job.paused_at.is_some()) {
            return job;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let tasks: Vec<(String, String, String)> = mailbaar_store::schema::tasks::table
                .select((
                    mailbaar_store::schema::tasks::kind,
                    mailbaar_store::schema::tasks::state,
                    mailbaar_store::schema::tasks::message,
                ))
                .load(conn)
                .expect("tasks");
            panic!("the job ends: {job:?}; tasks: {tasks:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A delivery through `transport` under `policy`, and a runner of the mail job tasks.
fn engine(
    pool: &mailbaar_store::Pool,
    transport: &Arc<ScriptedTransport>,
    policy: InDoubtPolicy,
) -> (Arc<Delivery>, Runner) {
    let delivery = Arc::new(
        Delivery::new(
            Arc::new(Shared(transport.clone())),
            Links::new(b"engine test key", "https://mail.example.org"),
        )
        .with_batch_size(5)
        .with_retry(Retry {
            max_attempts: ATTEMPTS,
            first_delay: Duration::from_millis(50),
        })
        .with_parallel_runs(2)
        .with_in_doubt(policy),
    );
    let mut registry = Registry::new();
    registry
        .register(
            mailbaar_campaigns::PREPARE,
            mailbaar_campaigns::preparation_work,
        )
        .register(mailbaar_campaigns::SEND, SendWork::new(delivery.clone()));
    let runner = Runner::new(pool.clone(), Arc::new(registry), RunnerOptions::default());
    (delivery, runner)
}

fn scripted_send(backend: Backend, policy: InDoubtPolicy) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    let mut conn = pool.get().expect("connection");
    let step = mailing(&mut conn);
    let transport = Arc::new(ScriptedTransport::default());
    let (delivery, runner) = engine(&pool, &transport, policy);
    let job = mailbaar_campaigns::send_step(&mut conn, step, &SendRequest::default(), "test")
        .expect("mail job");
    let job = run_until(&runner, &mut conn, job.id, false);
    assert_eq!(job.status, MailJobStatus::Sent, "{}", job.message);
    assert_eq!(job.pause_reason, None, "one refusal of us does not pause");

    let outcomes = outcomes(&mut conn, job.id);
    assert_eq!(outcomes.len(), RECIPIENTS.len());
    let accepted = transport.accepted.lock().unwrap().clone();
    let copies = transport.copies.lock().unwrap().clone();
    let retry = policy == InDoubtPolicy::RetryOnce;
    for (local, script) in RECIPIENTS {
        let address = format!("{local}@example.org");
        let o = &outcomes[&address];
        let (state, attempts) = match script {
            Script::Accept | Script::Slow(_) => (RecipientState::Sent, 1),
            Script::TransientOnce => (RecipientState::Sent, 2),
            // The refusal of us was not the recipient's attempt.
            Script::RefusesUsOnce => (RecipientState::Sent, 1),
            Script::Permanent(Phase::Rcpt) => (RecipientState::Bounced, 1),
            Script::Permanent(_) => (RecipientState::Failed, 1),
            Script::Transient(_) | Script::NoReply => (RecipientState::Failed, ATTEMPTS),
            Script::LostReply if retry => (RecipientState::InDoubt, 2),
            Script::LostReplyOnce if retry => (RecipientState::Sent, 2),
            Script::LostReply | Script::LostReplyOnce => (RecipientState::InDoubt, 1),
        };
        assert_eq!((o.state, o.attempts), (state, attempts), "{address}: {o:?}");
        assert_eq!(
            o.bouncer,
            matches!(script, Script::Permanent(Phase::Rcpt)),
            "{address}: only a refusal at RCPT TO marks a bouncer"
        );
        let lost = matches!(script, Script::LostReply | Script::LostReplyOnce);
        assert_eq!(o.in_doubt, lost, "{address}: {o:?}");
        // At most once: one copy at most; one retry: two at most, under one Message-ID.
        let got = copies.get(&address).map_or(0, Vec::len);
        let most = if lost && retry { 2 } else { 1 };
        assert!(got <= most, "{address}: {got} copies");
        let ids: std::collections::BTreeSet<&String> = copies
            .get(&address)
            .map(|c| c.iter().map(|(id, _)| id).collect())
            .unwrap_or_default();
        assert!(ids.len() <= 1, "{address}: one Message-ID for every copy");
        let sent = state == RecipientState::Sent;
        assert_eq!(
            accepted.get(&address).map_or(0, Vec::len),
            usize::from(sent),
            "{address}"
        );
        assert_eq!(o.sent_moments, i64::from(sent), "{address}");
        // The last reply is kept with the recipient.
        let phase = o.reply.0.as_deref();
        match script {
            Script::Permanent(Phase::Rcpt) => {
                assert_eq!(o.reply, (Some("rcpt_to".into()), Some(550)))
            }
            Script::LostReply => assert_eq!(o.reply, (Some("end_of_data".into()), None)),
            _ => assert!(phase.is_some(), "{address}: a last reply"),
        }
    }
    let in_doubt = if retry { 1 } else { 2 };
    assert_eq!(
        job.progress.sent,
        5 + i64::from(retry),
        "{:?}",
        job.progress
    );
    assert_eq!(job.progress.bounced, 1);
    assert_eq!(job.progress.failed, 6);
    assert_eq!(job.progress.in_doubt, in_doubt);
    assert_eq!(job.progress.in_doubt_handovers, if retry { 3 } else { 2 });
    assert_eq!(job.progress.remaining, 0);
    // Unsubscribing now would leave those resent below out.
    every_copy_links_work(&mut conn, &delivery, &transport, retry);

    if retry {
        return;
    }
    // At most once: the operator resends those in doubt, with their Message-IDs.
    let before: BTreeMap<String, String> = copies
        .iter()
        .map(|(a, c)| (a.clone(), c[0].0.clone()))
        .collect();
    let resent = mailbaar_campaigns::resend_in_doubt(&mut conn, job.id, "test").expect("resend");
    assert_eq!(resent.status, MailJobStatus::Sending);
    let job = run_until(&runner, &mut conn, job.id, false);
    assert_eq!(job.status, MailJobStatus::Sent, "{}", job.message);
    let outcomes = self::outcomes(&mut conn, job.id);
    assert_eq!(
        outcomes["lost.once@example.org"].state,
        RecipientState::Sent
    );
    assert_eq!(
        outcomes["lost.reply@example.org"].state,
        RecipientState::InDoubt
    );
    let copies = transport.copies.lock().unwrap().clone();
    for local in ["lost.once", "lost.reply"] {
        let address = format!("{local}@example.org");
        assert_eq!(copies[&address].len(), 2, "{address}: resent once");
        assert!(
            copies[&address]
                .iter()
                .all(|(id, _)| *id == before[&address]),
            "{address}: resent with its Message-ID"
        );
    }
    assert_eq!(job.progress.in_doubt, 1, "in doubt again: stays in doubt");
    every_copy_links_work(&mut conn, &delivery, &transport, true);
}

fn scripted_send_at_most_once(backend: Backend) {
    scripted_send(backend, InDoubtPolicy::AtMostOnce);
}

fn scripted_send_retry_once(backend: Backend) {
    scripted_send(backend, InDoubtPolicy::RetryOnce);
}

/// A relay that refuses us (535 at `AUTH`) for every message: the job pauses with the
/// reason after [`mailbaar_delivery::REFUSALS_TO_PAUSE`] refusals, nobody is bounced or
/// failed and no attempt is spent; once the relay is fixed, resume delivers everyone
/// exactly once.
fn a_relay_refusing_us_pauses_the_job_and_resume_sends_everyone_once(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    let mut conn = pool.get().expect("connection");
    let step = mailing(&mut conn);
    let transport = Arc::new(ScriptedTransport {
        accept_all: true,
        refusing: AtomicBool::new(true),
        ..Default::default()
    });
    let (_delivery, runner) = engine(&pool, &transport, InDoubtPolicy::AtMostOnce);
    let job = mailbaar_campaigns::send_step(&mut conn, step, &SendRequest::default(), "test")
        .expect("mail job");
    let paused = run_until(&runner, &mut conn, job.id, true);
    assert_eq!(paused.status, MailJobStatus::Sending, "{}", paused.message);
    let reason = paused.pause_reason.clone().expect("a pause reason");
    assert!(reason.contains("535"), "{reason}");
    // Nothing more is tried while paused.
    let tried: u32 = transport.attempts.lock().unwrap().values().sum();
    runner.run_until_idle().expect("tasks run");
    assert_eq!(
        transport.attempts.lock().unwrap().values().sum::<u32>(),
        tried
    );
    assert!(tried >= mailbaar_delivery::REFUSALS_TO_PAUSE);
    assert!(
        tried < RECIPIENTS.len() as u32,
        "the run stopped early: {tried}"
    );
    for (address, o) in outcomes(&mut conn, job.id) {
        assert!(
            !o.bouncer,
            "{address}: nobody is marked for a refusal of us"
        );
        assert_eq!(o.attempts, 0, "{address}: no attempt spent");
        assert!(
            matches!(o.state, RecipientState::Pending | RecipientState::Deferred),
            "{address}: {o:?}"
        );
    }
    assert_eq!(paused.progress.failed + paused.progress.bounced, 0);

    transport.refusing.store(false, Ordering::SeqCst);
    let resumed = mailbaar_campaigns::resume_mail_job(&mut conn, job.id, "test").expect("resume");
    assert_eq!(resumed.pause_reason, None);
    let done = run_until(&runner, &mut conn, job.id, false);
    assert_eq!(done.status, MailJobStatus::Sent, "{}", done.message);
    assert_eq!(done.progress.sent, RECIPIENTS.len() as i64);
    let accepted = transport.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), RECIPIENTS.len());
    for (address, ids) in accepted {
        assert_eq!(ids.len(), 1, "{address}: exactly once");
    }
}

mailbaar_store::both_engines!(backend:
    scripted_send_at_most_once,
    scripted_send_retry_once,
    a_relay_refusing_us_pauses_the_job_and_resume_sends_everyone_once
);
