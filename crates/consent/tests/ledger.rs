//! The consent ledger on both engines, without HTTP.

use diesel::prelude::*;
use mailbaar_consent::*;
use mailbaar_store::schema::{consent_records, persons, saved_queries};
use mailbaar_store::{now, DbConnection};

fn person(conn: &mut DbConnection) -> i64 {
    diesel::insert_into(persons::table)
        .values((persons::created_at.eq(now()), persons::updated_at.eq(now())))
        .returning(persons::id)
        .get_result(conn)
        .unwrap()
}

fn change(type_id: i64, opt_in: bool) -> ConsentChange {
    ConsentChange {
        opt_in_type_id: type_id,
        opt_in,
        channel: "manual".into(),
        description: format!("test {opt_in}"),
    }
}

fn record_count(conn: &mut DbConnection) -> i64 {
    consent_records::table.count().get_result(conn).unwrap()
}

fn standard(conn: &mut DbConnection, kind: OptInKind) -> i64 {
    standard_type(conn, kind).unwrap().unwrap().id
}

fn standard_types_exist_and_history_is_newest_first(conn: &mut DbConnection) {
    let kinds: Vec<OptInKind> = list_types(conn)
        .unwrap()
        .into_iter()
        .map(|t| t.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            OptInKind::Newsletter,
            OptInKind::ServiceMail,
            OptInKind::Profiling
        ]
    );
    let news = standard(conn, OptInKind::Newsletter);
    let prof = standard(conn, OptInKind::Profiling);
    let p = person(conn);
    let a = record(conn, p, change(news, true), "t").unwrap();
    let b = record(conn, p, change(news, false), "t").unwrap();
    let c = record(conn, p, change(news, true), "t").unwrap();
    let d = record(conn, p, change(prof, false), "t").unwrap();
    let ids: Vec<i64> = history(conn, p, None)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [c.id, b.id, a.id, d.id], "per type, newest first");
    let only: Vec<i64> = history(conn, p, Some(prof))
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(only, [d.id]);
    let current = current_for_person(conn, p).unwrap();
    assert_eq!(current.len(), 2);
    assert!(current[0].opt_in && current[0].opt_in_type_id == news);
    assert!(!current[1].opt_in && current[1].opt_in_type_id == prof);
    // flip again
    record(conn, p, change(news, false), "t").unwrap();
    assert!(!current_for_person(conn, p).unwrap()[0].opt_in);
    assert_eq!(count_current(conn, news, false).unwrap(), 1);
    assert_eq!(count_current(conn, news, true).unwrap(), 0);
}

fn records_are_append_only_in_the_database(conn: &mut DbConnection) {
    let news = standard(conn, OptInKind::Newsletter);
    let p = person(conn);
    let r = record(conn, p, change(news, true), "t").unwrap();
    let upd = diesel::update(consent_records::table.find(r.id))
        .set(consent_records::opt_in.eq(false))
        .execute(conn);
    assert!(upd.is_err(), "UPDATE must be refused");
    let del = diesel::delete(consent_records::table.find(r.id)).execute(conn);
    assert!(del.is_err(), "DELETE must be refused");
    assert!(current_for_person(conn, p).unwrap()[0].opt_in);
}

fn unsubscribe_all_writes_exactly_the_needed_records(conn: &mut DbConnection) {
    let news = standard(conn, OptInKind::Newsletter);
    let service = standard(conn, OptInKind::ServiceMail);
    let prof = standard(conn, OptInKind::Profiling);
    let p = person(conn);
    record(conn, p, change(news, true), "t").unwrap();
    record(conn, p, change(service, false), "t").unwrap();
    record(conn, p, change(prof, true), "t").unwrap();
    let before = record_count(conn);
    let req = Unsubscribe {
        channel: "telephone".into(),
        description: "wants nothing".into(),
    };
    let written = unsubscribe_all(conn, p, req.clone(), "t").unwrap();
    let types: Vec<i64> = written.iter().map(|r| r.opt_in_type_id).collect();
    assert_eq!(
        types,
        [news, prof],
        "only the opted-in types, profiling included"
    );
    assert!(written
        .iter()
        .all(|r| !r.opt_in && r.channel == "telephone"));
    assert_eq!(record_count(conn), before + 2);
    assert!(current_for_person(conn, p)
        .unwrap()
        .iter()
        .all(|c| !c.opt_in));
    let marked: Option<chrono::NaiveDateTime> = persons::table
        .find(p)
        .select(persons::full_unsubscribed_at)
        .first(conn)
        .unwrap();
    assert!(marked.is_some());
    assert!(
        unsubscribe_all(conn, p, req, "t").unwrap().is_empty(),
        "nothing left to withdraw"
    );
    assert_eq!(record_count(conn), before + 2);
}

fn bad_input_writes_nothing(conn: &mut DbConnection) {
    let news = standard(conn, OptInKind::Newsletter);
    let p = person(conn);
    let mut bad_channel = change(news, true);
    bad_channel.channel = "Fax Machine!".into();
    assert!(matches!(
        record(conn, p, bad_channel, "t"),
        Err(ConsentError::Invalid {
            field: "channel",
            ..
        })
    ));
    let mut no_text = change(news, true);
    no_text.description = "  ".into();
    assert!(matches!(
        record(conn, p, no_text, "t"),
        Err(ConsentError::Invalid {
            field: "description",
            ..
        })
    ));
    assert!(matches!(
        record(conn, p, change(9999, true), "t"),
        Err(ConsentError::TypeNotFound(9999))
    ));
    assert!(matches!(
        record(conn, 9999, change(news, true), "t"),
        Err(ConsentError::PersonNotFound(9999))
    ));
    let mut custom = change(news, true);
    custom.channel = "member_desk".into();
    record(conn, p, custom, "t").unwrap();
    assert_eq!(
        record_count(conn),
        1,
        "only the valid custom-channel record"
    );
}

struct Fixed(Vec<i64>);

impl PersonSelector for Fixed {
    fn select(
        &self,
        _: &mut DbConnection,
        _: i64,
    ) -> Result<Vec<i64>, mailbaar_consent::SelectionError> {
        Ok(self.0.clone())
    }
}

fn soft_opt_ins_are_idempotent_and_dry_runs_write_nothing(conn: &mut DbConnection) {
    let service = standard(conn, OptInKind::ServiceMail);
    let people: Vec<i64> = (0..5).map(|_| person(conn)).collect();
    let selector = Fixed(people[..4].to_vec());
    assert!(matches!(
        assign_soft_consent(conn, service, true, false, &selector),
        Err(ConsentError::NoSoftQuery(_))
    ));
    // A soft query must exist; the selector above stands in for running it.
    let query: i64 = diesel::insert_into(saved_queries::table)
        .values((
            saved_queries::name.eq("selected"),
            saved_queries::conditions.eq("{\"all\": []}"),
            saved_queries::created_by.eq("test"),
            saved_queries::created_at.eq(now()),
            saved_queries::updated_at.eq(now()),
        ))
        .returning(saved_queries::id)
        .get_result(conn)
        .unwrap();
    let missing = update_type(
        conn,
        service,
        OptInTypeChanges {
            soft_query_id: Some(Some(query + 1)),
            ..Default::default()
        },
    );
    assert!(matches!(
        missing,
        Err(ConsentError::Invalid {
            field: "soft_query_id",
            ..
        })
    ));
    update_type(
        conn,
        service,
        OptInTypeChanges {
            soft_query_id: Some(Some(query)),
            ..Default::default()
        },
    )
    .unwrap();
    // one selected person already opted out by hand: left alone
    record(conn, people[0], change(service, false), "t").unwrap();
    let before = record_count(conn);
    let dry = assign_soft_consent(conn, service, true, true, &selector).unwrap();
    assert_eq!((dry.matched, dry.already_recorded, dry.assigned), (4, 1, 3));
    assert_eq!(record_count(conn), before, "dry run writes nothing");
    let run = assign_soft_consent(conn, service, true, false, &selector).unwrap();
    assert_eq!(run.assigned, 3);
    assert_eq!(record_count(conn), before + 3);
    let again = assign_soft_consent(conn, service, true, false, &selector).unwrap();
    assert_eq!((again.already_recorded, again.assigned), (4, 0));
    assert_eq!(record_count(conn), before + 3);
    let h = history(conn, people[1], Some(service)).unwrap();
    assert_eq!(h[0].channel, "system");
    assert_eq!(h[0].description, "soft service mail opt-in");
    assert!(
        current_for_person(conn, people[4]).unwrap().is_empty(),
        "not selected"
    );
    assert!(
        !current_for_person(conn, people[0]).unwrap()[0].opt_in,
        "manual opt-out kept"
    );
}

fn bulk_append_and_service_mail_for_new_customers(conn: &mut DbConnection) {
    let news = standard(conn, OptInKind::Newsletter);
    let people: Vec<i64> = (0..3).map(|_| person(conn)).collect();
    let mut records = Vec::new();
    for (i, &p) in people.iter().enumerate() {
        for flip in 0..=i {
            records.push(NewRecord {
                person_id: p,
                opt_in_type_id: news,
                opt_in: flip % 2 == 0,
                channel: "import".into(),
                description: "imported".into(),
                contact_moment_id: None,
                recorded_by: "import".into(),
                recorded_at: now(),
                captured_at: None,
            });
        }
    }
    assert_eq!(append_records(conn, &records).unwrap(), 6);
    let states: Vec<bool> = people
        .iter()
        .map(|&p| current_for_person(conn, p).unwrap()[0].opt_in)
        .collect();
    assert_eq!(
        states,
        [true, false, true],
        "the last record per person wins"
    );
    let mut bad = records[0].clone();
    bad.channel = "NOPE".into();
    assert!(append_records(conn, &[records[0].clone(), bad]).is_err());
    assert_eq!(record_count(conn), 6, "a bad batch writes nothing");

    let first = record_service_mail_opt_in(conn, people[0])
        .unwrap()
        .expect("first time");
    assert_eq!(first.description, "soft service mail opt-in");
    assert_eq!(first.channel, "system");
    assert!(record_service_mail_opt_in(conn, people[0])
        .unwrap()
        .is_none());
}

fn types_crud(conn: &mut DbConnection) {
    let t = create_type(
        conn,
        NewOptInType {
            kind: OptInKind::Newsletter,
            name: "Kids".into(),
            description: "".into(),
            active: true,
            soft_query_id: None,
        },
    )
    .unwrap();
    assert!(matches!(
        create_type(
            conn,
            NewOptInType {
                kind: OptInKind::Custom,
                name: "Kids".into(),
                description: "".into(),
                active: true,
                soft_query_id: None
            }
        ),
        Err(ConsentError::DuplicateName(_))
    ));
    let p = person(conn);
    record(conn, p, change(t.id, true), "t").unwrap();
    assert!(matches!(
        delete_type(conn, t.id),
        Err(ConsentError::TypeInUse(_))
    ));
    let off = update_type(
        conn,
        t.id,
        OptInTypeChanges {
            active: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!off.active);
    assert!(matches!(
        record(conn, p, change(t.id, true), "t"),
        Err(ConsentError::TypeInactive(_))
    ));
    record(conn, p, change(t.id, false), "t").expect("opting out of an inactive type is allowed");
}

mailbaar_store::both_engines!(
    standard_types_exist_and_history_is_newest_first,
    records_are_append_only_in_the_database,
    unsubscribe_all_writes_exactly_the_needed_records,
    bad_input_writes_nothing,
    soft_opt_ins_are_idempotent_and_dry_runs_write_nothing,
    bulk_append_and_service_mail_for_new_customers,
    types_crud
);
