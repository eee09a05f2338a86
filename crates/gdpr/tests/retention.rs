//! Retention rules on both engines: a dry run changes nothing, a run anonymizes exactly the
//! selected persons, and both are recorded and audited.

use chrono::{Days, NaiveDateTime};
use diesel::prelude::*;
use mailbaar_gdpr::*;
use mailbaar_query::{create_query, SavedQueryInput};
use mailbaar_store::schema::{audit_log, persons, retention_runs, transactions};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{now, Backend, DbConnection};
use serde_json::json;

fn person(conn: &mut DbConnection, name: &str, last_transaction: Option<NaiveDateTime>) -> i64 {
    let id = diesel::insert_into(persons::table)
        .values((
            persons::first_name.eq(name),
            persons::email.eq(format!("{}@example.nl", name.to_lowercase())),
            persons::created_at.eq(now()),
            persons::updated_at.eq(now()),
        ))
        .returning(persons::id)
        .get_result(conn)
        .unwrap();
    if let Some(at) = last_transaction {
        diesel::insert_into(transactions::table)
            .values((
                transactions::person_id.eq(id),
                transactions::kind.eq("donation"),
                transactions::amount_cents.eq(1000),
                transactions::currency.eq("EUR"),
                transactions::occurred_at.eq(at),
                transactions::created_at.eq(at),
            ))
            .execute(conn)
            .unwrap();
    }
    id
}

fn anonymized(conn: &mut DbConnection) -> Vec<i64> {
    persons::table
        .filter(persons::anonymized_at.is_not_null())
        .order(persons::id)
        .select(persons::id)
        .load(conn)
        .unwrap()
}

fn retention(backend: Backend) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    let conn = &mut pool.get().unwrap();
    let long_ago = now().checked_sub_days(Days::new(6 * 365)).unwrap();
    let recent = now().checked_sub_days(Days::new(30)).unwrap();
    let old_a = person(conn, "Oud", Some(long_ago));
    let old_b = person(conn, "Ouder", Some(long_ago));
    person(conn, "Recent", Some(recent));
    person(conn, "Nooit", None);
    // No transaction in the last five years, but at least one ever.
    let query = create_query(
        conn,
        SavedQueryInput {
            name: "five years quiet".into(),
            description: String::new(),
            conditions: json!({"all": [
                {"field": "transactions.last_at", "op": "lt", "value": "2021-11-23"},
                {"field": "transactions.count", "op": "ge", "value": 1}
            ]}),
        },
        "test",
    )
    .unwrap()
    .id;
    let rule = create_rule(
        conn,
        NewRetentionRule {
            name: "Five years without transactions".into(),
            query_id: query,
            action: RetentionAction::Anonymize,
            schedule: RetentionSchedule::Daily,
        },
        "token:4:privacy",
    )
    .unwrap();
    assert!(matches!(
        create_rule(
            conn,
            NewRetentionRule {
                name: "bad".into(),
                query_id: query + 100,
                action: RetentionAction::Anonymize,
                schedule: RetentionSchedule::Manual,
            },
            "x"
        ),
        Err(GdprError::Invalid {
            field: "query_id",
            ..
        })
    ));
    // The query cannot be deleted while the rule uses it.
    let err = mailbaar_query::delete_query(conn, query).unwrap_err();
    assert!(err.to_string().contains("retention rule"), "{err}");

    let dry = dry_run(conn, rule.id, "token:4:privacy").unwrap();
    assert_eq!(dry.matched, 2);
    let names: Vec<&str> = dry.sample.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Oud", "Ouder"]);
    assert!(anonymized(conn).is_empty(), "a dry run changes nothing");

    let mut registry = mailbaar_tasks::Registry::new();
    registry.register(RETENTION_RUN, retention_run_work);
    let runner = mailbaar_tasks::Runner::new(
        pool.clone(),
        std::sync::Arc::new(registry),
        mailbaar_tasks::RunnerOptions::default(),
    );
    let task = run_task(conn, rule.id, "token:4:privacy", mailbaar_store::now()).unwrap();
    let err = run_task(conn, rule.id, "token:4:privacy", mailbaar_store::now()).unwrap_err();
    assert!(
        matches!(err, GdprError::RunUnderWay { .. }),
        "one run per rule at a time: {err:?}"
    );
    let done = runner.run_next().unwrap().unwrap();
    assert_eq!(done.id, task.id);
    assert_eq!(
        done.state,
        mailbaar_tasks::TaskState::Succeeded,
        "{}",
        done.message
    );
    assert_eq!((done.progress, done.total), (1, 1));
    assert_eq!(done.message, "2 of 2 persons anonymized");
    let run = list_runs(conn, rule.id).unwrap().remove(0);
    assert_eq!((run.matched, run.anonymized, run.dry_run), (2, 2, false));
    assert_eq!(run.task_id, Some(task.id));
    assert_eq!(anonymized(conn), [old_a, old_b]);

    // A second run finds no one: anonymized persons leave every selection.
    run_task(conn, rule.id, "schedule", mailbaar_store::now()).unwrap();
    runner.run_next().unwrap().unwrap();
    let again = list_runs(conn, rule.id).unwrap().remove(0);
    assert_eq!((again.matched, again.anonymized), (0, 0));

    // Every run is recorded; each is audited, and each anonymization too.
    let runs = list_runs(conn, rule.id).unwrap();
    let kinds: Vec<bool> = runs.iter().map(|r| r.dry_run).collect();
    assert_eq!(kinds, [false, false, true]);
    let recorded: i64 = retention_runs::table.count().get_result(conn).unwrap();
    assert_eq!(recorded, 3);
    let actions: Vec<String> = audit_log::table
        .order(audit_log::id)
        .select(audit_log::action)
        .load(conn)
        .unwrap();
    assert_eq!(
        actions,
        [
            "retention.dry_run",
            "person.anonymized",
            "person.anonymized",
            "retention.run",
            "retention.run"
        ]
    );
}

mailbaar_store::both_engines!(backend: retention);
