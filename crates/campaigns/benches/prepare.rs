//! Preparing a mail job for the manual's newsletter selection (newsletter opt-in, mailable,
//! contact pressure below 3): freezing its recipients with one `INSERT … SELECT`, beside
//! counting the same selection in the same run, on each engine; and the process's peak
//! memory before and after, which must not grow with the number of recipients.
//!
//! Data: the newsletter query's benchmark data (`store::testing::newsletter_data`).
//! `cargo bench -p mailbaar-campaigns --bench prepare` (PostgreSQL through
//! `MAILBAAR_TEST_POSTGRES_URL`; `MAILBAAR_BENCH_PERSONS` changes the size, default
//! 1,000,000; `MAILBAAR_BENCH_BACKENDS=sqlite` or `postgres` runs one engine).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime};
use mailbaar_campaigns::{NewCampaign, NewStep, SendKind, SendRequest};
use mailbaar_query::{Node, SavedQueryInput, Selection};
use mailbaar_store::testing::{newsletter_data, peak_memory_mb, TestDatabase};
use mailbaar_store::Backend;
use mailbaar_tasks::{Registry, Runner, RunnerOptions};
use serde_json::json;

const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn base() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

struct Row {
    backend: Backend,
    prepare: Duration,
    count: Duration,
    recipients: i64,
    peak_before: f64,
    peak_after: f64,
}

fn bench(backend: Backend, persons: i64) -> Option<Row> {
    let db = TestDatabase::new(backend)?;
    let pool = db.pool();
    let mut conn = pool.get().expect("connection");
    let t = Instant::now();
    newsletter_data(&mut conn, persons, base());
    eprintln!(
        "{}: data built in {:.1} s",
        backend.name(),
        t.elapsed().as_secs_f64()
    );
    let conditions = json!({"all": [
        {"field": "consent.1", "op": "eq", "value": true},
        {"field": "mailable", "op": "eq", "value": true},
        {"field": "contact_pressure", "op": "lt", "value": 3},
    ]});
    let query = mailbaar_query::create_query(
        &mut conn,
        SavedQueryInput {
            name: "newsletter".into(),
            description: String::new(),
            conditions: conditions.clone(),
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
    // The data's contact moments belong to steps 1 to 5: earlier mailings. The measured
    // step comes after them, so preparation's "not received before" check runs over all of
    // them, as in production.
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
    let step = mailbaar_campaigns::create_step(
        &mut conn,
        NewStep {
            campaign_id: campaign.id,
            name: "newsletter".into(),
            from_email: Some("news@example.org".into()),
            subject: Some("Hello {{ person.first_name }}".into()),
            html: Some("<p>Hi</p><a href=\"{{ preferences_url }}\">preferences</a>".into()),
            query_id: Some(query.id),
            opt_in_type_id: Some(1),
            send_kind: Some(SendKind::Repeatable),
            ..Default::default()
        },
        "bench",
    )
    .expect("step");
    let mut registry = Registry::new();
    registry.register(
        mailbaar_campaigns::PREPARE,
        mailbaar_campaigns::preparation_work,
    );
    let runner = Runner::new(pool.clone(), Arc::new(registry), RunnerOptions::default());
    let tree = Node::parse(&conditions).expect("tree");
    let peak_before = peak_memory_mb();
    let (mut prepare, mut count) = (Vec::new(), Vec::new());
    let mut recipients = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let selection = Selection::prepare(&mut conn, &tree).expect("selection");
        let counted = selection.count(&mut conn).expect("count");
        count.push(t.elapsed());
        let job =
            mailbaar_campaigns::send_step(&mut conn, step.id, &SendRequest::default(), "bench")
                .expect("mail job");
        let t = Instant::now();
        runner
            .run_next()
            .expect("preparation")
            .expect("a task was due");
        prepare.push(t.elapsed());
        let job = mailbaar_campaigns::get_mail_job(&mut conn, job.id).expect("job");
        recipients = job.progress.recipients;
        assert_eq!(
            recipients, counted,
            "preparation froze what the selection counts"
        );
        // Leave the job prepared (its send is never run).
    }
    Some(Row {
        backend,
        prepare: median(prepare),
        count: median(count),
        recipients,
        peak_before,
        peak_after: peak_memory_mb(),
    })
}

fn main() {
    let persons: i64 = std::env::var("MAILBAAR_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("MAILBAAR_BENCH_BACKENDS").unwrap_or_default();
    let mut rows = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if !only.is_empty() && !only.contains(backend.name()) {
            continue;
        }
        match bench(backend, persons) {
            Some(row) => rows.push(row),
            None => eprintln!("{}: skipped (no database)", backend.name()),
        }
    }
    println!();
    println!(
        "mail-job preparation of the newsletter selection: {persons} persons; median of {RUNS}"
    );
    println!("| engine | preparation | counting the selection | ratio | recipients frozen | peak memory before → after |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.2}× | {} | {:.0} MB → {:.0} MB |",
            r.backend.name(),
            r.prepare.as_secs_f64() * 1000.0,
            r.count.as_secs_f64() * 1000.0,
            r.prepare.as_secs_f64() / r.count.as_secs_f64(),
            r.recipients,
            r.peak_before,
            r.peak_after
        );
    }
    for r in &rows {
        println!(
            "bench-row\tmail-job preparation (freeze recipients)\t{}\t{:.0} ms\t{:.0} ms (count of the selection)\t{:.2}×",
            r.backend.name(),
            r.prepare.as_secs_f64() * 1000.0,
            r.count.as_secs_f64() * 1000.0,
            r.prepare.as_secs_f64() / r.count.as_secs_f64()
        );
    }
}
