//! Rows for query tests, written straight to the tables (contact moments have no writer
//! yet; the campaign issue adds one).

#![allow(dead_code)]

use chrono::{Days, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use mailbaar_consent::{append_records, NewRecord};
use mailbaar_query::{Node, Selection};
use mailbaar_store::schema::{contact_moments, persons, transactions};
use mailbaar_store::DbConnection;
use serde_json::Value;

pub const NEWSLETTER: i64 = 1;
pub const PROFILING: i64 = 3;

/// A fixed clock for tests: periods count back from it.
pub fn now() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 6, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
}

pub fn days_ago(days: u64) -> NaiveDateTime {
    now().checked_sub_days(Days::new(days)).unwrap()
}

/// An RFC 3339 text for a time, as a client sends it.
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339()
}

#[derive(Default, Clone)]
pub struct PersonRow {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub deceased: bool,
    pub bouncer: bool,
    pub is_test_person: bool,
    pub anonymized_at: Option<NaiveDateTime>,
    pub created_at: Option<NaiveDateTime>,
}

pub fn insert_person(conn: &mut DbConnection, p: &PersonRow) -> i64 {
    let created = p.created_at.unwrap_or_else(|| days_ago(50));
    diesel::insert_into(persons::table)
        .values((
            persons::email.eq(&p.email),
            persons::first_name.eq(&p.first_name),
            persons::last_name.eq(&p.last_name),
            persons::city.eq(&p.city),
            persons::birth_date.eq(p.birth_date),
            persons::deceased.eq(p.deceased),
            persons::bouncer.eq(p.bouncer),
            persons::is_test_person.eq(p.is_test_person),
            persons::anonymized_at.eq(p.anonymized_at),
            persons::created_at.eq(created),
            persons::updated_at.eq(created),
        ))
        .returning(persons::id)
        .get_result(conn)
        .unwrap()
}

pub fn consent(
    conn: &mut DbConnection,
    person: i64,
    type_id: i64,
    opt_in: bool,
    at: NaiveDateTime,
) {
    append_records(
        conn,
        &[NewRecord {
            person_id: person,
            opt_in_type_id: type_id,
            opt_in,
            channel: "manual".into(),
            description: "test".into(),
            contact_moment_id: None,
            recorded_by: "test".into(),
            recorded_at: at,
            captured_at: None,
        }],
    )
    .unwrap();
}

pub fn transaction(
    conn: &mut DbConnection,
    person: i64,
    kind: &str,
    cents: i64,
    at: NaiveDateTime,
) {
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

#[derive(Clone)]
pub struct Moment {
    pub channel: &'static str,
    pub step_id: Option<i64>,
    pub is_test: bool,
    pub at: NaiveDateTime,
    pub opened: bool,
    pub clicked: bool,
}

impl Moment {
    pub fn email(at: NaiveDateTime) -> Self {
        Moment {
            channel: "email",
            step_id: None,
            is_test: false,
            at,
            opened: false,
            clicked: false,
        }
    }
}

pub fn moment(conn: &mut DbConnection, person: i64, m: &Moment) {
    diesel::insert_into(contact_moments::table)
        .values((
            contact_moments::person_id.eq(person),
            contact_moments::channel.eq(m.channel),
            contact_moments::step_id.eq(m.step_id),
            contact_moments::is_test.eq(m.is_test),
            contact_moments::occurred_at.eq(m.at),
            contact_moments::opened_at.eq(m.opened.then_some(m.at)),
            contact_moments::clicked_at.eq(m.clicked.then_some(m.at)),
        ))
        .execute(conn)
        .unwrap();
}

/// The ids a tree selects, as of the fixed clock.
pub fn select(conn: &mut DbConnection, tree: &Value) -> Vec<i64> {
    let node = Node::parse(tree).unwrap_or_else(|e| panic!("{tree}: {e:?}"));
    let selection =
        Selection::prepare_at(conn, &node, now()).unwrap_or_else(|e| panic!("{tree}: {e}"));
    let ids = selection.all_ids(conn).unwrap();
    assert_eq!(
        selection.count(conn).unwrap(),
        ids.len() as i64,
        "count and list disagree for {tree}"
    );
    ids
}
