//! Demo data on both engines: the same seed makes the same data, and the data is what the
//! service would have written (current consent kept, saved queries valid).

use chrono::NaiveDate;
use diesel::prelude::*;
use mailbaar_demo::{fill, DemoOptions};
use mailbaar_query::{get_query, list_queries, Selection};
use mailbaar_store::schema::{consent_current, consent_records, contact_moments, persons};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{Backend, DbConnection};

fn options(persons: u64) -> DemoOptions {
    DemoOptions {
        persons,
        seed: 7,
        now: NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap(),
    }
}

/// Counts of persons, records and contact moments, and the first persons' id, e-mail, city.
type Fingerprint = (i64, i64, i64, Vec<(i64, Option<String>, Option<String>)>);

/// A fingerprint of the data: counts and a few values.
fn fingerprint(conn: &mut DbConnection) -> Fingerprint {
    let persons_n = persons::table.count().get_result(conn).unwrap();
    let records = consent_records::table.count().get_result(conn).unwrap();
    let moments = contact_moments::table.count().get_result(conn).unwrap();
    let sample = persons::table
        .order(persons::id)
        .limit(20)
        .select((persons::id, persons::email, persons::city))
        .load(conn)
        .unwrap();
    (persons_n, records, moments, sample)
}

fn demo(backend: Backend) {
    let (Some(a), Some(b)) = (TestDatabase::new(backend), TestDatabase::new(backend)) else {
        return;
    };
    let mut conn_a = a.pool().get().unwrap();
    let mut conn_b = b.pool().get().unwrap();
    let mut seen = Vec::new();
    let summary = fill(&mut conn_a, options(12_000), &mut |n| seen.push(n)).unwrap();
    fill(&mut conn_b, options(12_000), &mut |_| {}).unwrap();
    assert_eq!(seen, [5_000, 10_000, 12_000], "progress per chunk");
    assert_eq!(summary.persons, 12_000);
    assert_eq!(summary.saved_queries, 3);
    assert_eq!(
        fingerprint(&mut conn_a),
        fingerprint(&mut conn_b),
        "same seed, same data"
    );

    // Every person with a record has a current state, from the ledger's own trigger.
    let with_records: i64 = consent_records::table
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COUNT(DISTINCT person_id)",
        ))
        .first(&mut conn_a)
        .unwrap();
    let current: i64 = consent_current::table
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COUNT(DISTINCT person_id)",
        ))
        .first(&mut conn_a)
        .unwrap();
    assert_eq!(with_records, current);
    assert!(
        summary.consent_records > summary.persons,
        "histories, not single rows"
    );

    // The saved queries run; the newsletter query selects a real share of the persons.
    let queries = list_queries(&mut conn_a, &Default::default(), Default::default()).unwrap();
    let newsletter = queries
        .items
        .iter()
        .find(|q| q.name.ends_with("newsletter"))
        .unwrap();
    let q = get_query(&mut conn_a, newsletter.id).unwrap();
    let n = Selection::prepare(&mut conn_a, &q.conditions)
        .unwrap()
        .count(&mut conn_a)
        .unwrap();
    assert!(n > 3_000 && n < 12_000, "{n} newsletter recipients");

    // The weekly newsletter: a step per week, each with its sent job, and results that add
    // up from the contact moments that became its messages.
    assert_eq!(summary.campaign_steps, 104);
    let steps =
        mailbaar_campaigns::list_steps(&mut conn_a, &Default::default(), Default::default())
            .unwrap();
    assert_eq!(steps.total, 104);
    let latest = &steps.items[0];
    assert!(latest.blocked);
    let results = mailbaar_campaigns::step_results(&mut conn_a, latest.id).unwrap();
    assert_eq!(results.mail_jobs, 1);
    assert!(results.recipients > 100, "{results:?}");
    assert_eq!(results.sent.count, results.recipients);
    assert_eq!(results.delivered.count, results.sent.count);
    assert!(results.unique_opens.count > 0 && results.unique_opens.count < results.sent.count);
    let placeholders: i64 = contact_moments::table
        .filter(contact_moments::step_id.lt(0))
        .count()
        .get_result(&mut conn_a)
        .unwrap();
    assert_eq!(placeholders, 0, "every demo message belongs to a real step");

    // A second run adds persons after the existing ones.
    fill(&mut conn_a, options(10), &mut |_| {}).unwrap();
    let max: Option<i64> = persons::table
        .select(diesel::dsl::max(persons::id))
        .first(&mut conn_a)
        .unwrap();
    assert_eq!(max, Some(12_010));
}

mailbaar_store::both_engines!(backend: demo);
