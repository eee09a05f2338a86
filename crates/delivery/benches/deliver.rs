//! Delivering a mail job over SMTP to Postfix's `smtp-sink` on loopback, beside Postfix's
//! `smtp-source` sending as many messages of the same size to the same sink in the same
//! run: the machine's SMTP limit. The job is personalised (first name, city, id), has three
//! blocks (two of them conditional) and click and open tracking, over the ~30 KB newsletter
//! of the render bench (45 links). Prints messages per second, the ratio against
//! `smtp-source`, and the process's peak memory before and after the send, which must not
//! grow with the size of the job.
//!
//! `cargo bench -p mailbaar-delivery --bench deliver` (needs `smtp-sink` and
//! `smtp-source`, Debian package `postfix`; PostgreSQL through
//! `MAILBAAR_TEST_POSTGRES_URL`). `MAILBAAR_BENCH_RECIPIENTS` sets the size (default
//! 100,000), `MAILBAAR_BENCH_BACKENDS=sqlite` or `postgres` runs one engine,
//! `MAILBAAR_BENCH_CONNECTIONS` the SMTP connections (default 8, as `smtp-source -s`),
//! `MAILBAAR_BENCH_RUNNERS` the runner threads sharing them (default 1, as one
//! `mailbaar worker`).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailbaar_campaigns::{NewCampaign, NewStep, SendKind, SendRequest, StepBlock};
use mailbaar_delivery::{
    Delivery, Handover, HandoverDone, Links, OutgoingMessage, PhaseTimeouts, SendOutcome, SendWork,
    SmtpSettings, SmtpTransport, Transport,
};
use mailbaar_query::SavedQueryInput;
use mailbaar_store::testing::{newsletter_data, peak_memory_mb, TestDatabase};
use mailbaar_store::Backend;
use mailbaar_tasks::{Registry, Runner, RunnerOptions};
use serde_json::json;

const NEWSLETTER: &str = include_str!("../../render/tests/fixtures/newsletter.html");
const FROM: &str = "news@example.org";

/// The SMTP transport, counting the bytes it hands over.
#[derive(Debug)]
struct Counting {
    inner: SmtpTransport,
    bytes: Arc<AtomicU64>,
    messages: Arc<AtomicU64>,
}

impl Transport for Counting {
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }

    fn start(&self, message: OutgoingMessage, done: HandoverDone) {
        self.bytes
            .fetch_add(message.bytes.len() as u64, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.inner.start(
            message,
            Box::new(move |h: Handover| {
                assert_eq!(
                    h.outcome,
                    SendOutcome::Accepted,
                    "smtp-sink accepts everything"
                );
                done(h)
            }),
        )
    }
}

struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn sink() -> Option<(Sink, u16)> {
    let port = free_port();
    let child = Command::new("smtp-sink")
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(5) {
            return None;
        }
        // As a user interface would: a progress read counts the job's recipients by state.
        std::thread::sleep(Duration::from_millis(1000));
    }
    Some((Sink(child), port))
}

/// `smtp-source` sending `n` messages of `size` bytes over `sessions` connections.
fn smtp_source(port: u16, n: u64, size: u64, sessions: usize) -> Duration {
    let t = Instant::now();
    let status = Command::new("smtp-source")
        .args([
            "-s",
            &sessions.to_string(),
            "-m",
            &n.to_string(),
            "-l",
            &size.to_string(),
            "-f",
            FROM,
            "-t",
            "reader@example.net",
            &format!("127.0.0.1:{port}"),
        ])
        .status()
        .expect("smtp-source runs");
    assert!(status.success(), "smtp-source");
    t.elapsed()
}

struct Row {
    backend: Backend,
    sent: i64,
    send: Duration,
    reference: Duration,
    average_size: u64,
    peak_before: f64,
    peak_after: f64,
}

fn bench(backend: Backend, recipients: i64, connections: usize, runners: usize) -> Option<Row> {
    let db = TestDatabase::new(backend)?;
    let Some((_sink, port)) = sink() else {
        eprintln!("smtp-sink is not installed (Debian package postfix): skipped");
        return None;
    };
    let pool = db.pool();
    let mut conn = pool.get().expect("connection");
    // About 4 in 5 of the data's persons are mailable and opted in.
    let persons = recipients * 5 / 4 + 100;
    let t = Instant::now();
    newsletter_data(&mut conn, persons, mailbaar_store::now());
    eprintln!(
        "{}: {persons} persons built in {:.1} s",
        backend.name(),
        t.elapsed().as_secs_f64()
    );
    let query = mailbaar_query::create_query(
        &mut conn,
        SavedQueryInput {
            name: "newsletter".into(),
            description: String::new(),
            conditions: json!({"all": [
                {"field": "consent.1", "op": "eq", "value": true},
                {"field": "mailable", "op": "eq", "value": true},
            ]}),
        },
        "bench",
    )
    .expect("saved query");
    let campaign = mailbaar_campaigns::create_campaign(
        &mut conn,
        NewCampaign {
            name: "bench".into(),
            description: String::new(),
        },
        "bench",
    )
    .expect("campaign");
    // The data's contact moments belong to steps 1 to 5: earlier mailings.
    for i in 1..=5 {
        mailbaar_campaigns::create_step(
            &mut conn,
            NewStep {
                campaign_id: campaign.id,
                name: format!("earlier mailing {i}"),
                ..Default::default()
            },
            "bench",
        )
        .expect("earlier step");
    }
    let html = NEWSLETTER
        .replace("person.member_number", "person.id")
        .replace("person.member_since | date_nl", "person.city");
    let step = mailbaar_campaigns::create_step(
        &mut conn,
        NewStep {
            campaign_id: campaign.id,
            name: "newsletter".into(),
            from_name: Some("Stichting Voorbeeld".into()),
            from_email: Some(FROM.into()),
            subject: Some("Nieuws voor {{ person.first_name }}".into()),
            html: Some(html),
            query_id: Some(query.id),
            opt_in_type_id: Some(1),
            send_kind: Some(SendKind::Repeatable),
            track_clicks: Some(true),
            track_opens: Some(true),
            blocks: Some(vec![
                StepBlock {
                    name: "kids".into(),
                    condition: Some(json!({"field": "city", "op": "eq", "value": "Utrecht"})),
                },
                StepBlock {
                    name: "members".into(),
                    condition: None,
                },
                StepBlock {
                    name: "donors".into(),
                    condition: Some(
                        json!({"field": "city", "op": "in", "value": ["Amsterdam", "Breda"]}),
                    ),
                },
            ]),
            ..Default::default()
        },
        "bench",
    )
    .expect("step");
    let bytes = Arc::new(AtomicU64::new(0));
    let messages = Arc::new(AtomicU64::new(0));
    let transport = Counting {
        inner: SmtpTransport::new(&SmtpSettings {
            url: format!("smtp://127.0.0.1:{port}"),
            connections,
            timeouts: PhaseTimeouts::default(),
        })
        .expect("SMTP transport"),
        bytes: bytes.clone(),
        messages: messages.clone(),
    };
    let key = mailbaar_store::secret(&mut conn, "recipient_links").expect("key");
    let delivery = Arc::new(Delivery::new(
        Arc::new(transport),
        Links::new(&key, "https://mail.example.org"),
    ));
    let mut registry = Registry::new();
    registry
        .register(
            mailbaar_campaigns::PREPARE,
            mailbaar_campaigns::preparation_work,
        )
        .register(mailbaar_campaigns::SEND, SendWork::new(delivery));
    let registry = Arc::new(registry);
    let runner = Runner::new(pool.clone(), registry.clone(), RunnerOptions::default());
    let job = mailbaar_campaigns::send_step(&mut conn, step.id, &SendRequest::default(), "bench")
        .expect("mail job");
    runner.run_next().expect("preparation").expect("due");
    let frozen = mailbaar_campaigns::get_mail_job(&mut conn, job.id).expect("job");
    eprintln!(
        "{}: {} recipients frozen",
        backend.name(),
        frozen.progress.recipients
    );
    let peak_before = peak_memory_mb();
    let t = Instant::now();
    // As a `mailbaar worker` with `runners` runner threads: on PostgreSQL each takes one of
    // the job's send runs, sharing the transport's connections.
    let handles: Vec<_> = (0..runners)
        .map(|_| {
            Runner::new(
                pool.clone(),
                registry.clone(),
                RunnerOptions {
                    poll: Duration::from_millis(20),
                    ..RunnerOptions::default()
                },
            )
            .spawn()
            .expect("runner")
        })
        .collect();
    loop {
        let j = mailbaar_campaigns::get_mail_job(&mut conn, job.id).expect("job");
        if !j.status.is_active() {
            break;
        }
        // As a user interface would: a progress read counts the job's recipients by state.
        std::thread::sleep(Duration::from_millis(1000));
    }
    let send = t.elapsed();
    for h in handles {
        h.stop();
    }
    let done = mailbaar_campaigns::get_mail_job(&mut conn, job.id).expect("job");
    assert_eq!(done.progress.sent, frozen.progress.recipients, "all sent");
    let n = messages.load(Ordering::Relaxed).max(1);
    let average_size = bytes.load(Ordering::Relaxed) / n;
    let reference = smtp_source(port, n, average_size, connections);
    Some(Row {
        backend,
        sent: done.progress.sent,
        send,
        reference,
        average_size,
        peak_before,
        peak_after: peak_memory_mb(),
    })
}

fn main() {
    let recipients: i64 = std::env::var("MAILBAAR_BENCH_RECIPIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let connections: usize = std::env::var("MAILBAAR_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let runners: usize = std::env::var("MAILBAAR_BENCH_RUNNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let only = std::env::var("MAILBAAR_BENCH_BACKENDS").unwrap_or_default();
    let mut rows = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if !only.is_empty() && !only.contains(backend.name()) {
            continue;
        }
        match bench(backend, recipients, connections, runners) {
            Some(row) => rows.push(row),
            None => eprintln!("{}: skipped", backend.name()),
        }
    }
    println!();
    println!(
        "SMTP delivery of a tracked, personalised newsletter with blocks to smtp-sink on loopback, {connections} connections, {runners} runner threads; reference: smtp-source, same count, size and sessions, same run"
    );
    println!("| engine | messages | average size | mailbaar | smtp-source | ratio | peak memory before → after |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        let ours = r.sent as f64 / r.send.as_secs_f64();
        let theirs = r.sent as f64 / r.reference.as_secs_f64();
        println!(
            "| {} | {} | {} B | {:.0} msg/s | {:.0} msg/s | {:.2}× | {:.0} MB → {:.0} MB |",
            r.backend.name(),
            r.sent,
            r.average_size,
            ours,
            theirs,
            ours / theirs,
            r.peak_before,
            r.peak_after
        );
    }
    for r in &rows {
        let ours = r.sent as f64 / r.send.as_secs_f64();
        let theirs = r.sent as f64 / r.reference.as_secs_f64();
        println!(
            "bench-row\tSMTP delivery ({} recipients)\t{}\t{:.0} msg/s\t{:.0} msg/s (smtp-source)\t{:.2}×",
            r.sent,
            r.backend.name(),
            ours,
            theirs,
            ours / theirs
        );
    }
}
