//! Importing a 1,000,000-row CSV file per engine: rows per second and the process's peak
//! memory before and after (it must not grow with the file). The file has persons with a
//! newsletter consent and its original date; every row creates a person and a record.
//!
//! `cargo bench -p mailbaar-imports --bench import` (PostgreSQL through
//! `MAILBAAR_TEST_POSTGRES_URL`; `MAILBAAR_BENCH_PERSONS` sets the rows, default
//! 1,000,000; `MAILBAAR_BENCH_BACKENDS=sqlite` or `postgres` runs one engine).

use std::io::Write;
use std::time::Instant;

use mailbaar_imports::ImportMapping;
use mailbaar_store::testing::{peak_memory_mb, TestDatabase};
use mailbaar_store::Backend;
use serde_json::json;

fn main() {
    let rows: usize = std::env::var("MAILBAAR_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("MAILBAAR_BENCH_BACKENDS").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("persons.csv");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(
            out,
            "email;first_name;last_name;city;birth_date;consent.1;consent.1.captured_at"
        )
        .unwrap();
        for i in 0..rows {
            writeln!(
                out,
                "p{i}@example.nl;Naam{};Achternaam{};Utrecht;19{:02}-{:02}-{:02};{};2019-{:02}-{:02}",
                i % 997,
                i % 1009,
                i % 90 + 10,
                i % 12 + 1,
                i % 28 + 1,
                if i % 7 == 0 { "nee" } else { "ja" },
                i % 12 + 1,
                i % 28 + 1
            )
            .unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    let mapping: ImportMapping =
        serde_json::from_value(json!({"consent_description": "benchmark"})).unwrap();
    let mut results = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if !only.is_empty() && !only.contains(backend.name()) {
            continue;
        }
        let Some(db) = TestDatabase::new(backend) else {
            eprintln!("{}: skipped (no database)", backend.name());
            continue;
        };
        let mut conn = db.pool().get().unwrap();
        let import =
            mailbaar_imports::create_import(&mut conn, &path, &mapping, "bench", false).unwrap();
        let before = peak_memory_mb();
        let t = Instant::now();
        let counts =
            mailbaar_imports::run_import(&mut conn, import.id, "bench", &mut |_, _| Ok(()))
                .unwrap();
        let took = t.elapsed();
        assert_eq!(counts.created, rows as i64, "{counts:?}");
        results.push((
            backend,
            rows as f64 / took.as_secs_f64(),
            took,
            before,
            peak_memory_mb(),
        ));
    }
    println!();
    println!(
        "import of {rows} CSV rows ({:.0} MB), each a new person with a consent record",
        size as f64 / 1e6
    );
    println!("| engine | rows per second | time | peak memory before → after |");
    println!("|---|---|---|---|");
    for (b, rate, took, before, after) in &results {
        println!(
            "| {} | {:.0} | {:.1} s | {before:.0} MB → {after:.0} MB |",
            b.name(),
            rate,
            took.as_secs_f64()
        );
    }
    for (b, rate, _, before, after) in &results {
        println!(
            "bench-row\tCSV import ({rows} rows, person and consent record each)\t{}\t{rate:.0} rows/s\t-\tpeak memory {before:.0} → {after:.0} MB",
            b.name()
        );
    }
}
