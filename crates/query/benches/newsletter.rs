//! The manual's newsletter query — newsletter opt-in, mailable, contact pressure below 3,
//! not in another saved query — counted by the query engine, against the same query
//! hand-written in SQL, measured in the same run on each engine.
//!
//! Data: 1,000,000 persons, 3,000,000 consent records, 5,000,000 contact moments, made
//! deterministically in SQL. `cargo bench -p mailbaar-query --bench newsletter`
//! (PostgreSQL through `MAILBAAR_TEST_POSTGRES_URL`; `MAILBAAR_BENCH_PERSONS` changes the
//! size; `MAILBAAR_BENCH_BACKENDS=sqlite` or `postgres` runs one engine).

use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use mailbaar_query::{create_query, Node, SavedQueryInput, Selection};
use mailbaar_store::testing::{newsletter_data, TestDatabase};
use mailbaar_store::Backend;
use serde_json::json;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

const RUNS: usize = 7;

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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn hand_written(excluded_city: &str, cutoff: NaiveDateTime) -> String {
    format!(
        "SELECT COUNT(*) AS n FROM persons p
         JOIN consent_current cc
           ON cc.person_id = p.id AND cc.opt_in_type_id = 1 AND cc.opt_in
         WHERE p.email IS NOT NULL AND NOT p.bouncer AND NOT p.deceased
           AND p.anonymized_at IS NULL
           AND p.id NOT IN (
               SELECT person_id FROM contact_moments
               WHERE channel = 'email' AND NOT is_test AND occurred_at >= '{cutoff}'
               GROUP BY person_id HAVING COUNT(*) >= 3)
           AND (p.city IS NULL OR lower(p.city) <> '{excluded_city}')"
    )
}

struct Row {
    backend: Backend,
    engine: Duration,
    reference: Duration,
    count: i64,
    build: Duration,
}

fn bench(backend: Backend, persons: i64) -> Option<Row> {
    let db = TestDatabase::new(backend)?;
    let pool = db.pool();
    let mut conn = pool.get().expect("connection");
    let t = Instant::now();
    newsletter_data(&mut conn, persons, base());
    let build = t.elapsed();
    eprintln!(
        "{}: data built in {:.1} s",
        backend.name(),
        build.as_secs_f64()
    );

    let excluded = create_query(
        &mut conn,
        SavedQueryInput {
            name: "Utrecht region".into(),
            description: "excluded from this newsletter".into(),
            conditions: json!({"field": "city", "op": "eq", "value": "Utrecht"}),
        },
        "bench",
    )
    .expect("saved query")
    .id;
    let tree = Node::parse(&json!({"all": [
        {"field": "consent.1", "op": "eq", "value": true},
        {"field": "mailable", "op": "eq", "value": true},
        {"field": "contact_pressure", "op": "lt", "value": 3},
        {"field": "not_in_query", "op": "eq", "value": excluded},
    ]}))
    .expect("tree");
    let cutoff = base().checked_sub_days(Days::new(7)).unwrap();
    let reference_sql = hand_written("utrecht", cutoff);

    let (mut engine, mut reference) = (Vec::new(), Vec::new());
    let (mut counted, mut expected) = (0, 0);
    // Alternate the two so that caches favour neither.
    for _ in 0..RUNS {
        let t = Instant::now();
        let selection = Selection::prepare_at(&mut conn, &tree, base()).expect("prepare");
        counted = selection.count(&mut conn).expect("count");
        engine.push(t.elapsed());
        let t = Instant::now();
        expected = diesel::sql_query(&reference_sql)
            .get_result::<Count>(&mut conn)
            .expect("reference")
            .n;
        reference.push(t.elapsed());
    }
    assert_eq!(
        counted, expected,
        "the engine and the hand-written SQL disagree"
    );
    Some(Row {
        backend,
        engine: median(engine),
        reference: median(reference),
        count: counted,
        build,
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
        "newsletter query: {persons} persons, {} consent records, {} contact moments; median of {RUNS}",
        persons * 3,
        persons * 5
    );
    println!("| engine | query engine | hand-written SQL | ratio | persons selected | building the data |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.2}× | {} | {:.1} s |",
            r.backend.name(),
            ms(r.engine),
            ms(r.reference),
            r.engine.as_secs_f64() / r.reference.as_secs_f64(),
            r.count,
            r.build.as_secs_f64()
        );
    }
    // For bench/run.sh: figure, engine, median, reference, ratio.
    for r in &rows {
        println!(
            "bench-row\tnewsletter query (count)\t{}\t{:.1} ms\t{:.1} ms (hand-written SQL)\t{:.2}×",
            r.backend.name(),
            ms(r.engine),
            ms(r.reference),
            r.engine.as_secs_f64() / r.reference.as_secs_f64()
        );
    }
}
