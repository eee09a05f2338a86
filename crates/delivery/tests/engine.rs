//! The send engine on both engines, without HTTP: a scripted transport answers per
//! recipient (accept; 4xx or 5xx while connecting, at `MAIL FROM`, at `RCPT TO` or after
//! `DATA`; no reply; a slow reply; 4xx once and then accept) and the database queue
//! records each verdict. Only a refusal at `RCPT TO` marks a bouncer, 4xx and no reply
//! are tried again until the attempts run out, and nobody is sent to twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use mailbaar_campaigns::{MailJobStatus, NewCampaign, NewStep, RecipientState, SendRequest};
use mailbaar_consent::ConsentChange;
use mailbaar_delivery::{
    Delivery, Handover, HandoverDone, Links, OutgoingMessage, Reply, Retry, SendOutcome, SendWork,
    SmtpPhase, Transport,
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
}

/// The local parts of the recipients and what the server does with each.
const RECIPIENTS: [(&str, Script); 12] = [
    ("accept", Script::Accept),
    ("accept.too", Script::Accept),
    ("connect.4xx", Script::Transient(Phase::Connect)),
    ("connect.5xx", Script::Permanent(Phase::Connect)),
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

/// Answers as an SMTP server following [`RECIPIENTS`] would, through the verdicts the SMTP
/// transport gives: 5xx at `RCPT TO` is a rejection of the recipient, 5xx elsewhere a
/// refusal that bounces nobody, 4xx a deferral, no reply no verdict. Counts every attempt
/// and every accepted message per address.
#[derive(Debug, Default)]
struct ScriptedTransport {
    attempts: Mutex<BTreeMap<String, u32>>,
    accepted: Mutex<BTreeMap<String, Vec<String>>>,
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
        let answer = match script_of(&message.to) {
            Script::Accept => Handover::accepted("ok"),
            Script::Slow(wait) => {
                std::thread::sleep(wait);
                Handover::accepted("ok")
            }
            Script::TransientOnce if attempt == 1 => reply(451, Phase::Rcpt),
            Script::TransientOnce => Handover::accepted("ok"),
            Script::Transient(phase) => reply(421, phase),
            Script::Permanent(Phase::Rcpt) => reply(550, Phase::Rcpt),
            // A refusal of the message (not of us, which would pause the job).
            Script::Permanent(Phase::Mail) => Handover::of(Reply::new(
                SmtpPhase::MailFrom,
                552,
                "552 5.3.4 message too big",
            )),
            Script::Permanent(Phase::Connect) => Handover::of(Reply::new(
                SmtpPhase::EndOfData,
                554,
                "554 5.6.0 content refused",
            )),
            Script::Permanent(phase) => reply(554, phase),
            Script::NoReply => Handover::of(Reply::none(
                SmtpPhase::RcptTo,
                "timed out waiting for a reply",
            )),
        };
        if answer.outcome == SendOutcome::Accepted {
            self.accepted
                .lock()
                .unwrap()
                .entry(message.to.clone())
                .or_default()
                .push(message.message_id.clone());
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
    bouncer: bool,
    /// The job's contact moments of the person that were sent.
    sent_moments: i64,
}

fn outcomes(conn: &mut DbConnection, job: i64) -> BTreeMap<String, Outcome> {
    let rows: Vec<(i64, String, i32, Option<String>, bool)> = mail_job_recipients::table
        .inner_join(persons::table)
        .filter(mail_job_recipients::mail_job_id.eq(job))
        .select((
            persons::id,
            mail_job_recipients::state,
            mail_job_recipients::attempts,
            persons::email,
            persons::bouncer,
        ))
        .load(conn)
        .expect("recipients");
    rows.into_iter()
        .map(|(person, state, attempts, email, bouncer)| {
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
                    bouncer,
                    sent_moments,
                },
            )
        })
        .collect()
}

fn scripted_send(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    let mut conn = pool.get().expect("connection");
    let step = mailing(&mut conn);
    let transport = Arc::new(ScriptedTransport::default());
    let delivery = Delivery::new(
        Arc::new(Shared(transport.clone())),
        Links::new(b"engine test key", "https://mail.example.org"),
    )
    .with_batch_size(5)
    .with_retry(Retry {
        max_attempts: ATTEMPTS,
        first_delay: Duration::from_millis(50),
    })
    .with_parallel_runs(2);
    let mut registry = Registry::new();
    registry
        .register(
            mailbaar_campaigns::PREPARE,
            mailbaar_campaigns::preparation_work,
        )
        .register(mailbaar_campaigns::SEND, SendWork::new(Arc::new(delivery)));
    let runner = Runner::new(pool.clone(), Arc::new(registry), RunnerOptions::default());
    let job = mailbaar_campaigns::send_step(&mut conn, step, &SendRequest::default(), "test")
        .expect("mail job");
    let started = Instant::now();
    let job = loop {
        runner.run_until_idle().expect("tasks run");
        let job = mailbaar_campaigns::get_mail_job(&mut conn, job.id).expect("job");
        if !job.status.is_active() {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job ends: {job:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(job.status, MailJobStatus::Sent, "{}", job.message);

    let outcomes = outcomes(&mut conn, job.id);
    assert_eq!(outcomes.len(), RECIPIENTS.len());
    let accepted = transport.accepted.lock().unwrap().clone();
    for (local, script) in RECIPIENTS {
        let address = format!("{local}@example.org");
        let o = &outcomes[&address];
        let (state, attempts) = match script {
            Script::Accept | Script::Slow(_) => (RecipientState::Sent, 1),
            Script::TransientOnce => (RecipientState::Sent, 2),
            Script::Permanent(Phase::Rcpt) => (RecipientState::Bounced, 1),
            Script::Permanent(_) => (RecipientState::Failed, 1),
            Script::Transient(_) | Script::NoReply => (RecipientState::Failed, ATTEMPTS),
        };
        assert_eq!((o.state, o.attempts), (state, attempts), "{address}: {o:?}");
        assert_eq!(
            o.bouncer,
            matches!(script, Script::Permanent(Phase::Rcpt)),
            "{address}: only a refusal at RCPT TO marks a bouncer"
        );
        // Nobody is sent to twice: one accepted message per address, under the one
        // Message-ID of its contact moment.
        let sent = state == RecipientState::Sent;
        assert_eq!(
            accepted.get(&address).map_or(0, Vec::len),
            usize::from(sent),
            "{address}"
        );
        assert_eq!(o.sent_moments, i64::from(sent), "{address}");
    }
    assert_eq!(job.progress.sent, 4);
    assert_eq!(job.progress.bounced, 1);
    assert_eq!(job.progress.failed, 7);
    assert_eq!(job.progress.remaining, 0);
}

mailbaar_store::both_engines!(backend: scripted_send);
