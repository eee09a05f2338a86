//! The person card on both engines: every part with the right totals, every reason a
//! person cannot be mailed, and a fixed number of SQL statements whatever the history.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{Days, NaiveDateTime};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use mailbaar_consent::{record, unsubscribe_all, ConsentChange, Unsubscribe};
use mailbaar_people::*;
use mailbaar_store::schema::{contact_moments, persons, transactions};
use mailbaar_store::{now, DbConnection};

fn new_person(conn: &mut DbConnection, email: Option<&str>) -> i64 {
    create_person(
        conn,
        NewPerson {
            email: email.map(str::to_owned),
            first_name: Some("Anna".into()),
            ..Default::default()
        },
    )
    .unwrap()
    .id
}

fn ago(days: u64) -> NaiveDateTime {
    now().checked_sub_days(Days::new(days)).unwrap()
}

/// Gives a person `n` transactions (alternating kinds) and `n` contact moments.
fn history(conn: &mut DbConnection, person: i64, n: i64) {
    for i in 0..n {
        let (kind, cents) = if i % 2 == 0 {
            ("donation", 1000)
        } else {
            ("ticket", 250)
        };
        diesel::insert_into(transactions::table)
            .values((
                transactions::person_id.eq(person),
                transactions::kind.eq(kind),
                transactions::amount_cents.eq(cents),
                transactions::currency.eq("EUR"),
                transactions::occurred_at.eq(ago(i as u64)),
                transactions::created_at.eq(now()),
            ))
            .execute(conn)
            .unwrap();
        diesel::insert_into(contact_moments::table)
            .values((
                contact_moments::person_id.eq(person),
                contact_moments::channel.eq("email"),
                contact_moments::step_id.eq(Some(i)),
                contact_moments::occurred_at.eq(ago(i as u64)),
                contact_moments::opened_at.eq(Some(ago(i as u64))),
            ))
            .execute(conn)
            .unwrap();
    }
}

fn change(type_id: i64, opt_in: bool) -> ConsentChange {
    ConsentChange {
        opt_in_type_id: type_id,
        opt_in,
        channel: "telephone".into(),
        description: format!("by phone: {opt_in}"),
    }
}

fn card_shows_every_part_with_totals(conn: &mut DbConnection) {
    let p = new_person(conn, Some("anna@example.nl"));
    history(conn, p, 60);
    record(conn, p, change(1, true), "t").unwrap();
    record(conn, p, change(1, false), "t").unwrap();
    record(conn, p, change(1, true), "t").unwrap();

    let card = person_card(conn, p, "token:1:test").unwrap();
    assert_eq!(card.details.id, p);
    // preferences: one entry per type, history newest first
    assert_eq!(card.preferences.len(), 3);
    let news = &card.preferences[0];
    assert_eq!((news.opt_in_type.id, news.opt_in), (1, Some(true)));
    assert_eq!(news.history.len(), 3);
    assert!(news.history[0].id > news.history[1].id && news.history[1].id > news.history[2].id);
    assert_eq!(card.preferences[1].opt_in, None, "no service-mail choice");
    let profiling = &card.preferences[2];
    assert_eq!(
        profiling.opt_in,
        Some(true),
        "automatic opt-in on registration"
    );
    assert_eq!(
        profiling.history[0].description,
        "automatic profiling opt-in on registration"
    );
    // contact moments: total and the latest 50, newest first
    assert_eq!(card.contact_moments.total, 60);
    assert_eq!(card.contact_moments.latest.len(), 50);
    assert_eq!(card.contact_moments.latest[0].step_id, Some(0));
    // transactions: count, latest 50, per kind
    assert_eq!(card.transactions.count, 60);
    assert_eq!(card.transactions.latest.len(), 50);
    let kinds: Vec<(String, i64, i64)> = card
        .transactions
        .per_kind
        .iter()
        .map(|k| (k.kind.clone(), k.count, k.sum_cents))
        .collect();
    assert_eq!(
        kinds,
        [
            ("donation".into(), 30, 30_000),
            ("ticket".into(), 30, 7_500)
        ]
    );
    // profile: allowed but not yet calculated, then calculated
    assert_eq!(card.profile.status, ProfileStatus::NotCalculatedYet);
    mailbaar_profiles::recalculate(conn, now(), &mut |_, _| Ok(())).unwrap();
    let card = person_card(conn, p, "token:1:test").unwrap();
    assert_eq!(card.profile.status, ProfileStatus::Calculated);
    let figures = card.profile.figures.unwrap();
    assert_eq!(figures.frequency, 60);
    assert_eq!(figures.totals.len(), 2);
    // administration
    assert!(card.administration.mailable);
    assert!(card.administration.not_mailable_reasons.is_empty());

    // A full unsubscribe removes the profile at once and says why.
    unsubscribe_all(
        conn,
        p,
        Unsubscribe {
            channel: "telephone".into(),
            description: "wants nothing".into(),
        },
        "t",
    )
    .unwrap();
    let card = person_card(conn, p, "token:1:test").unwrap();
    assert_eq!(card.profile.status, ProfileStatus::NoProfilingConsent);
    assert!(card.profile.figures.is_none());
    assert!(card.profile.reason.unwrap().contains("withdrawn"));
    assert!(card.administration.full_unsubscribed_at.is_some());
    mailbaar_profiles::recalculate(conn, now(), &mut |_, _| Ok(())).unwrap();
    assert!(person_card(conn, p, "token:1:test")
        .unwrap()
        .profile
        .figures
        .is_none());
}

fn reasons(conn: &mut DbConnection, p: i64) -> Vec<String> {
    let card = person_card(conn, p, "token:1:test").unwrap();
    assert_eq!(
        card.administration.mailable,
        card.administration.not_mailable_reasons.is_empty()
    );
    card.administration
        .not_mailable_reasons
        .into_iter()
        .map(|r| r.code)
        .collect()
}

fn every_not_mailable_reason_appears(conn: &mut DbConnection) {
    let no_email = new_person(conn, None);
    assert_eq!(reasons(conn, no_email), ["no_email"]);

    let bouncer = new_person(conn, Some("gone@example.nl"));
    let since = ago(3);
    diesel::update(persons::table.find(bouncer))
        .set((
            persons::bouncer.eq(true),
            persons::bouncer_at.eq(Some(since)),
            persons::bouncer_reason.eq(Some("550 5.1.1 user unknown")),
        ))
        .execute(conn)
        .unwrap();
    assert_eq!(reasons(conn, bouncer), ["bouncer"]);
    let card = person_card(conn, bouncer, "token:1:test").unwrap();
    let reason = &card.administration.not_mailable_reasons[0];
    assert_eq!(reason.detail, "550 5.1.1 user unknown");
    assert_eq!(reason.since, Some(since.and_utc()));

    let deceased = new_person(conn, Some("late@example.nl"));
    diesel::update(persons::table.find(deceased))
        .set(persons::deceased.eq(true))
        .execute(conn)
        .unwrap();
    assert_eq!(reasons(conn, deceased), ["deceased"]);

    let anonymized = new_person(conn, None);
    diesel::update(persons::table.find(anonymized))
        .set((
            persons::anonymized_at.eq(Some(ago(1))),
            persons::deceased.eq(true),
        ))
        .execute(conn)
        .unwrap();
    assert_eq!(
        reasons(conn, anonymized),
        ["no_email", "deceased", "anonymized"]
    );

    let test_person = new_person(conn, Some("test@example.nl"));
    diesel::update(persons::table.find(test_person))
        .set(persons::is_test_person.eq(true))
        .execute(conn)
        .unwrap();
    assert!(reasons(conn, test_person).is_empty());
    assert!(
        person_card(conn, test_person, "token:1:test")
            .unwrap()
            .administration
            .is_test_person
    );
}

/// Counts the SQL statements a connection runs.
fn counting(conn: &mut DbConnection) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let counter = move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    };
    conn.set_instrumentation(counter);
    count
}

fn statements_do_not_grow_with_history(conn: &mut DbConnection) {
    let short = new_person(conn, Some("short@example.nl"));
    history(conn, short, 1);
    let long = new_person(conn, Some("long@example.nl"));
    history(conn, long, 120);
    for i in 0..40 {
        record(conn, long, change(1, i % 2 == 0), "t").unwrap();
    }
    mailbaar_profiles::recalculate(conn, now(), &mut |_, _| Ok(())).unwrap();
    let count = counting(conn);
    person_card(conn, short, "token:1:test").unwrap();
    let for_short = count.swap(0, Ordering::SeqCst);
    person_card(conn, long, "token:1:test").unwrap();
    let for_long = count.load(Ordering::SeqCst);
    conn.set_instrumentation(
        diesel::connection::get_default_instrumentation().unwrap_or_else(|| {
            Box::new(|_: InstrumentationEvent<'_>| {}) as Box<dyn Instrumentation>
        }),
    );
    eprintln!("statements per card: {for_short} (short history), {for_long} (long history)");
    assert!(for_short > 0);
    assert_eq!(
        for_short, for_long,
        "the card's statements grew with the history"
    );
    // 13 before the bounces part (the soft count and last bounce: one statement).
    assert!(for_long <= 14, "{for_long} statements for one card");
}

mailbaar_store::both_engines!(
    card_shows_every_part_with_totals,
    every_not_mailable_reason_appears,
    statements_do_not_grow_with_history
);
