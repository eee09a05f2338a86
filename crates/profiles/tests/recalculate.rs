//! Profiles on both engines: exact quintile scores on a known set, and consent deciding
//! who has a profile.

use chrono::{Days, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use mailbaar_consent::{append_records, unsubscribe_all, NewRecord, Unsubscribe};
use mailbaar_profiles::{get_profile, recalculate, KindTotal};
use mailbaar_store::schema::{contact_moments, person_profiles, persons, transactions};
use mailbaar_store::DbConnection;

const PROFILING: i64 = 3;

fn now() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 6, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

fn days_ago(d: u64) -> NaiveDateTime {
    now().checked_sub_days(Days::new(d)).unwrap()
}

fn person(conn: &mut DbConnection) -> i64 {
    diesel::insert_into(persons::table)
        .values((persons::created_at.eq(now()), persons::updated_at.eq(now())))
        .returning(persons::id)
        .get_result(conn)
        .unwrap()
}

fn profiling(conn: &mut DbConnection, person: i64, opt_in: bool) {
    append_records(
        conn,
        &[NewRecord {
            person_id: person,
            opt_in_type_id: PROFILING,
            opt_in,
            channel: "manual".into(),
            description: "test".into(),
            contact_moment_id: None,
            recorded_by: "test".into(),
            recorded_at: now(),
            captured_at: None,
        }],
    )
    .unwrap();
}

fn transaction(conn: &mut DbConnection, person: i64, kind: &str, cents: i64, at: NaiveDateTime) {
    diesel::insert_into(transactions::table)
        .values((
            transactions::person_id.eq(person),
            transactions::kind.eq(kind),
            transactions::amount_cents.eq(cents),
            transactions::currency.eq("EUR"),
            transactions::occurred_at.eq(at),
            transactions::created_at.eq(at),
        ))
        .execute(conn)
        .unwrap();
}

fn recalc(conn: &mut DbConnection) -> i64 {
    let mut steps = Vec::new();
    let done = recalculate(conn, now(), &mut |i, _| {
        steps.push(i);
        Ok(())
    })
    .unwrap();
    // Each step, then the last word before the commit.
    assert_eq!(steps, [0, 1, 2, 3]);
    done.profiles
}

fn profiled(conn: &mut DbConnection) -> Vec<i64> {
    person_profiles::table
        .select(person_profiles::person_id)
        .order(person_profiles::person_id)
        .load(conn)
        .unwrap()
}

fn quintile_scores_are_exact(conn: &mut DbConnection) {
    // Person k (1..=10): k transactions in the last year of 100·k cents each, the latest
    // 20 − k days ago; person 11 has none. Ranks 2..=11 of 11 give scores 1,1,2,2,3,3,4,4,5,5.
    let mut ids = Vec::new();
    for k in 1..=10i64 {
        let p = person(conn);
        profiling(conn, p, true);
        for j in 0..k {
            transaction(
                conn,
                p,
                "donation",
                100 * k,
                days_ago((20 - k + j * 7) as u64),
            );
        }
        ids.push(p);
    }
    let none = person(conn);
    profiling(conn, none, true);
    // Old transactions count for recency and totals, not for frequency or monetary.
    transaction(conn, ids[0], "ticket", 999, days_ago(800));
    // Opens and clicks of the last 90 days, test mails excluded.
    for (at, test) in [
        (days_ago(10), false),
        (days_ago(100), false),
        (days_ago(5), true),
    ] {
        diesel::insert_into(contact_moments::table)
            .values((
                contact_moments::person_id.eq(ids[9]),
                contact_moments::channel.eq("email"),
                contact_moments::is_test.eq(test),
                contact_moments::occurred_at.eq(at),
                contact_moments::opened_at.eq(Some(at)),
                contact_moments::clicked_at.eq(Some(at)),
            ))
            .execute(conn)
            .unwrap();
    }
    assert_eq!(recalc(conn), 11);
    let expected = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5];
    for (k, id) in ids.iter().enumerate() {
        let p = get_profile(conn, *id).unwrap().unwrap();
        let s = expected[k];
        assert_eq!(
            (p.r_score, p.f_score, p.m_score),
            (s, s, s),
            "person {}",
            k + 1
        );
        assert_eq!(p.rfm_score, 3 * s);
        assert_eq!(p.recency_days, Some(19 - k as i32));
        assert_eq!(p.frequency, k as i32 + 1);
        assert_eq!(p.monetary_cents, 100 * (k as i64 + 1) * (k as i64 + 1));
    }
    let first = get_profile(conn, ids[0]).unwrap().unwrap();
    assert_eq!(
        first.totals,
        [
            KindTotal {
                kind: "donation".into(),
                count: 1,
                sum_cents: 100
            },
            KindTotal {
                kind: "ticket".into(),
                count: 1,
                sum_cents: 999
            },
        ]
    );
    let last = get_profile(conn, ids[9]).unwrap().unwrap();
    assert_eq!((last.opens_90d, last.clicks_90d), (1, 1));
    let p = get_profile(conn, none).unwrap().unwrap();
    assert_eq!(
        (p.recency_days, p.r_score, p.f_score, p.m_score),
        (None, 1, 1, 1)
    );
}

fn consent_decides_who_is_profiled(conn: &mut DbConnection) {
    let yes = person(conn);
    profiling(conn, yes, true);
    let withdrawn = person(conn);
    profiling(conn, withdrawn, true);
    profiling(conn, withdrawn, false);
    let never = person(conn);
    let unsubscribes = person(conn);
    profiling(conn, unsubscribes, true);
    let manual_opt_out = person(conn);
    profiling(conn, manual_opt_out, true);
    for p in [yes, withdrawn, never, unsubscribes, manual_opt_out] {
        transaction(conn, p, "purchase", 500, days_ago(3));
    }
    assert_eq!(recalc(conn), 3);
    assert_eq!(profiled(conn), [yes, unsubscribes, manual_opt_out]);

    // A full unsubscribe removes the profile at once, in its own transaction.
    unsubscribe_all(
        conn,
        unsubscribes,
        Unsubscribe {
            channel: "telephone".into(),
            description: "wants nothing any more".into(),
        },
        "test",
    )
    .unwrap();
    // So does a profiling opt-out by letter.
    profiling(conn, manual_opt_out, false);
    assert_eq!(profiled(conn), [yes]);
    assert!(get_profile(conn, unsubscribes).unwrap().is_none());
    // And no recalculation brings them back.
    assert_eq!(recalc(conn), 1);
    assert_eq!(profiled(conn), [yes]);
    // An anonymized person is never profiled.
    diesel::update(persons::table.find(yes))
        .set(persons::anonymized_at.eq(Some(now())))
        .execute(conn)
        .unwrap();
    assert_eq!(recalc(conn), 0);
}

mailbaar_store::both_engines!(quintile_scores_are_exact, consent_decides_who_is_profiled);
