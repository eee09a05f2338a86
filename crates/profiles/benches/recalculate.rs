//! Recalculating every profile, on each engine: 1,000,000 persons (nine in ten with a
//! profiling opt-in), 3,000,000 transactions and 2,000,000 contact moments. The reference,
//! measured in the same run, is reading the same figures (the grouped passes over
//! transactions and contact moments) without ranking or writing anything.
//!
//! `cargo bench -p mailbaar-profiles --bench recalculate` (PostgreSQL through
//! `MAILBAAR_TEST_POSTGRES_URL`; `MAILBAAR_BENCH_PERSONS` changes the size;
//! `MAILBAAR_BENCH_BACKENDS=sqlite` or `postgres` runs one engine).

use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use mailbaar_profiles::recalculate;
use mailbaar_store::testing::{days_before_sql, numbers_cte, TestDatabase};
use mailbaar_store::{Backend, DbConnection};

const RUNS: usize = 3;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn base() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

fn fill(conn: &mut DbConnection, n: i64) {
    let b = conn.backend();
    let g = numbers_cte(b, n);
    let t0 = days_before_sql(b, base(), "0");
    conn.batch_execute(&format!(
        "{g} INSERT INTO persons (email, created_at, updated_at)
         SELECT 'p' || i || '@example.nl', {t0}, {t0} FROM g"
    ))
    .expect("persons");
    conn.batch_execute(&format!(
        "{g} INSERT INTO consent_records (person_id, opt_in_type_id, opt_in, channel,
             description, recorded_by, recorded_at)
         SELECT i, 3, i % 10 <> 0, 'system', 'automatic profiling opt-in on registration',
             'system', {t0} FROM g"
    ))
    .expect("consent");
    for (k, kind) in ["donation", "ticket", "purchase"].iter().enumerate() {
        let at = days_before_sql(b, base(), &format!("(i * 13 + {k} * 101) % 900"));
        conn.batch_execute(&format!(
            "{g} INSERT INTO transactions (person_id, kind, amount_cents, currency, occurred_at,
                 created_at)
             SELECT i, '{kind}', (i * 7 + {k}) % 10000, 'EUR', {at}, {at} FROM g"
        ))
        .expect("transactions");
    }
    for k in 0..2 {
        let at = days_before_sql(b, base(), &format!("(i * 17 + {k} * 53) % 200"));
        conn.batch_execute(&format!(
            "{g} INSERT INTO contact_moments (person_id, channel, step_id, is_test, occurred_at,
                 opened_at, clicked_at)
             SELECT i, 'email', {k}, FALSE, {at},
                 CASE WHEN i % 3 = 0 THEN {at} END, CASE WHEN i % 7 = 0 THEN {at} END
             FROM g"
        ))
        .expect("contact moments");
    }
    conn.batch_execute(match b {
        Backend::Postgres => "VACUUM ANALYZE",
        Backend::Sqlite => "ANALYZE",
    })
    .expect("analyze");
}

/// Every figure is summed so that no engine can skip reading it.
const READ_ONLY: &str = "SELECT COUNT(*) AS n,
        SUM(LENGTH(CAST(s.last_at AS TEXT))) AS l, SUM(s.total) AS t, SUM(s.opens) AS o FROM (
    SELECT p.id, tx.last_at, tx.total, cm.opens
    FROM persons p
    LEFT JOIN (SELECT person_id, MAX(occurred_at) AS last_at, SUM(amount_cents) AS total
               FROM transactions GROUP BY person_id) tx ON tx.person_id = p.id
    LEFT JOIN (SELECT person_id, COUNT(opened_at) AS opens FROM contact_moments
               GROUP BY person_id) cm ON cm.person_id = p.id
    WHERE EXISTS (SELECT 1 FROM consent_current cc
                  WHERE cc.person_id = p.id AND cc.opt_in_type_id = 3 AND cc.opt_in)) s";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let persons: i64 = std::env::var("MAILBAAR_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("MAILBAAR_BENCH_BACKENDS").unwrap_or_default();
    let (mut lines, mut rows) = (Vec::new(), Vec::new());
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if !only.is_empty() && !only.contains(backend.name()) {
            continue;
        }
        let Some(db) = TestDatabase::new(backend) else {
            eprintln!("{}: skipped (no database)", backend.name());
            continue;
        };
        let mut conn = db.pool().get().expect("connection");
        let t = Instant::now();
        fill(&mut conn, persons);
        eprintln!(
            "{}: data built in {:.1} s",
            backend.name(),
            t.elapsed().as_secs_f64()
        );
        let (mut full, mut reference) = (Vec::new(), Vec::new());
        let (mut profiles, mut read) = (0, 0);
        for _ in 0..RUNS {
            let t = Instant::now();
            profiles = recalculate(&mut conn, base(), &mut |_, _| Ok(()))
                .expect("recalculate")
                .profiles;
            full.push(t.elapsed());
            let t = Instant::now();
            read = diesel::sql_query(READ_ONLY)
                .get_result::<Count>(&mut conn)
                .expect("reference")
                .n;
            reference.push(t.elapsed());
        }
        assert_eq!(profiles, read, "both select the profiled persons");
        let (full, reference) = (median(full), median(reference));
        lines.push(format!(
            "| {} | {:.2} s | {:.2} s | {:.2}× | {} |",
            backend.name(),
            full.as_secs_f64(),
            reference.as_secs_f64(),
            full.as_secs_f64() / reference.as_secs_f64(),
            profiles
        ));
        rows.push(format!(
            "bench-row\tprofile recalculation (all persons)\t{}\t{:.2} s\t{:.2} s (reading the figures only)\t{:.2}×",
            backend.name(),
            full.as_secs_f64(),
            reference.as_secs_f64(),
            full.as_secs_f64() / reference.as_secs_f64()
        ));
    }
    println!();
    println!(
        "profile recalculation: {persons} persons, {} transactions, {} contact moments; median of {RUNS}",
        persons * 3,
        persons * 2
    );
    println!("| engine | recalculation | reading the figures only | ratio | profiles |");
    println!("|---|---|---|---|---|");
    for l in lines {
        println!("{l}");
    }
    // For bench/run.sh: figure, engine, median, reference, ratio.
    for r in rows {
        println!("{r}");
    }
}
