//! How long "the current state of one opt-in type for all persons" takes, on each engine,
//! over 1,000,000 ledger records of 200,000 persons: through the maintained
//! `consent_current` table (what Mailbaar does) against the reference of finding each
//! person's latest record in the ledger itself, measured in the same run.
//!
//! `cargo bench -p mailbaar-consent --bench current_state` (PostgreSQL through
//! `MAILBAAR_TEST_POSTGRES_URL`; `MAILBAAR_BENCH_PERSONS` changes the size).

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use mailbaar_consent::{append_records, count_current, NewRecord};
use mailbaar_store::testing::{numbers_cte, TestDatabase};
use mailbaar_store::{now, Backend, DbConnection};

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

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    (median(times), last.expect("at least one run"))
}

fn fill(conn: &mut DbConnection, persons: i64) {
    let g = numbers_cte(conn.backend(), persons);
    let sql = format!(
        "{g} INSERT INTO persons (email, created_at, updated_at)
         SELECT 'p' || i || '@example.nl', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM g"
    );
    conn.batch_execute(&sql).expect("persons");
    // Five records per person over the three standard types, flipping, deterministic.
    let t = now();
    let mut batch = Vec::with_capacity(100_000);
    for person in 1..=persons {
        for k in 0..5i64 {
            batch.push(NewRecord {
                person_id: person,
                opt_in_type_id: 1 + (k % 3),
                opt_in: (person * 7 + k * 13) % 5 != 0,
                channel: "import".into(),
                description: "benchmark".into(),
                contact_moment_id: None,
                recorded_by: "bench".into(),
                recorded_at: t,
                captured_at: None,
            });
        }
        if batch.len() >= 100_000 {
            append_records(conn, &batch).expect("records");
            batch.clear();
        }
    }
    append_records(conn, &batch).expect("records");
    conn.batch_execute("ANALYZE").expect("analyze");
}

/// The reference: each person's latest ledger record of the type, found at query time.
const LEDGER_SQL: &str = "SELECT count(*) AS n FROM consent_records r
    WHERE r.opt_in_type_id = 1 AND r.opt_in
      AND NOT EXISTS (SELECT 1 FROM consent_records later
                      WHERE later.person_id = r.person_id AND later.opt_in_type_id = 1
                        AND later.id > r.id)";

fn run(backend: Backend, persons: i64) {
    let Some(db) = TestDatabase::new(backend) else {
        println!("{:<9} skipped (no PostgreSQL configured)", backend.name());
        return;
    };
    let pool = db.pool();
    let mut conn = pool.get().expect("connection");
    let t = Instant::now();
    fill(&mut conn, persons);
    let build = t.elapsed();
    let (ours, n_ours) = time(|| count_current(&mut conn, 1, true).expect("count"));
    let (reference, n_ref) = time(|| {
        diesel::sql_query(LEDGER_SQL)
            .get_result::<Count>(&mut *conn)
            .expect("reference")
            .n
    });
    assert_eq!(n_ours, n_ref, "both ways must give the same answer");
    println!(
        "{:<9} {:>9} persons {:>10} records  build {:>7.1} s  current-state table {:>8.2} ms  ledger scan (reference) {:>8.2} ms  ratio {:>5.2}x  ({} opted in)",
        backend.name(),
        persons,
        persons * 5,
        build.as_secs_f64(),
        ours.as_secs_f64() * 1e3,
        reference.as_secs_f64() * 1e3,
        ours.as_secs_f64() / reference.as_secs_f64(),
        n_ours
    );
    // For bench/run.sh: figure, engine, median, reference, ratio.
    println!(
        "bench-row\tconsent current state (one type, all persons)\t{}\t{:.2} ms\t{:.2} ms (ledger scan)\t{:.2}×",
        backend.name(),
        ours.as_secs_f64() * 1e3,
        reference.as_secs_f64() * 1e3,
        ours.as_secs_f64() / reference.as_secs_f64()
    );
}

fn main() {
    let persons: i64 = std::env::var("MAILBAAR_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    println!("current state of one opt-in type for all persons (median of {RUNS} runs)");
    let only = std::env::var("MAILBAAR_BENCH_BACKENDS").unwrap_or_default();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if only.is_empty() || only.contains(backend.name()) {
            run(backend, persons);
        }
    }
}
