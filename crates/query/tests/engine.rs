//! Every operator and field kind, groups, sub-queries, cycles and injection attempts, on both
//! engines, over a small set of persons whose answers are known.

mod support;

use diesel::prelude::*;
use mailbaar_consent::{assign_soft_consent, update_type, OptInTypeChanges};
use mailbaar_query::*;
use mailbaar_store::schema::persons;
use mailbaar_store::DbConnection;
use serde_json::{json, Value};
use support::*;

/// The persons of every test, by name; `ids[i]` is the database id of person `i + 1`.
struct World {
    anna: i64,
    bram: i64,
    chantal: i64,
    dirk: i64,
    eve: i64,
    frank: i64,
}

const EVIL_NAME: &str = "O'Brien'); DROP TABLE persons;--";

fn world(conn: &mut DbConnection) -> World {
    let anna = insert_person(
        conn,
        &PersonRow {
            email: Some("anna@example.nl".into()),
            first_name: Some("Anna".into()),
            last_name: Some("Vries".into()),
            city: Some("Amsterdam".into()),
            birth_date: chrono::NaiveDate::from_ymd_opt(1984, 3, 7),
            created_at: Some(days_ago(400)),
            ..Default::default()
        },
    );
    consent(conn, anna, NEWSLETTER, true, days_ago(200));
    consent(conn, anna, PROFILING, true, days_ago(200));
    transaction(conn, anna, "donation", 5000, days_ago(10));
    transaction(conn, anna, "donation", 2500, days_ago(40));
    transaction(conn, anna, "ticket", 1500, days_ago(400));
    moment(
        conn,
        anna,
        &Moment {
            step_id: Some(10),
            opened: true,
            clicked: true,
            ..Moment::email(days_ago(1))
        },
    );
    moment(
        conn,
        anna,
        &Moment {
            step_id: Some(11),
            opened: true,
            ..Moment::email(days_ago(3))
        },
    );
    moment(
        conn,
        anna,
        &Moment {
            step_id: Some(12),
            ..Moment::email(days_ago(20))
        },
    );

    let bram = insert_person(
        conn,
        &PersonRow {
            email: Some("Bram@Example.nl".into()),
            first_name: Some("Bram".into()),
            last_name: Some("Bakker".into()),
            city: Some("Utrecht".into()),
            bouncer: true,
            ..Default::default()
        },
    );
    consent(conn, bram, NEWSLETTER, true, days_ago(100));
    consent(conn, bram, NEWSLETTER, false, days_ago(10));

    let chantal = insert_person(
        conn,
        &PersonRow {
            last_name: Some("Jansen".into()),
            city: Some("amsterdam".into()),
            deceased: true,
            birth_date: chrono::NaiveDate::from_ymd_opt(1950, 1, 1),
            ..Default::default()
        },
    );
    transaction(conn, chantal, "purchase", 999, days_ago(5));

    let dirk = insert_person(
        conn,
        &PersonRow {
            email: Some("dirk@example.nl".into()),
            first_name: Some("Dirk".into()),
            last_name: Some("Visser".into()),
            city: Some("Den Haag".into()),
            is_test_person: true,
            ..Default::default()
        },
    );
    consent(conn, dirk, NEWSLETTER, true, days_ago(30));
    for d in [1, 2, 6] {
        moment(conn, dirk, &Moment::email(days_ago(d)));
    }
    moment(
        conn,
        dirk,
        &Moment {
            is_test: true,
            ..Moment::email(days_ago(1))
        },
    );
    moment(
        conn,
        dirk,
        &Moment {
            channel: "letter",
            ..Moment::email(days_ago(1))
        },
    );

    let eve = insert_person(
        conn,
        &PersonRow {
            email: Some("eve@example.nl".into()),
            first_name: Some("Zoë".into()),
            last_name: Some(EVIL_NAME.into()),
            city: Some("100%_Zwolle\\".into()),
            ..Default::default()
        },
    );
    consent(conn, eve, NEWSLETTER, true, days_ago(5));
    transaction(conn, eve, "donation", 0, days_ago(1));
    moment(conn, eve, &Moment::email(days_ago(8)));

    let frank = insert_person(
        conn,
        &PersonRow {
            first_name: Some("Frank".into()),
            city: Some("Amsterdam".into()),
            anonymized_at: Some(days_ago(1)),
            ..Default::default()
        },
    );
    consent(conn, frank, NEWSLETTER, true, days_ago(300));
    World {
        anna,
        bram,
        chantal,
        dirk,
        eve,
        frank,
    }
}

fn check(conn: &mut DbConnection, cases: &[(Value, Vec<i64>)]) {
    for (tree, expected) in cases {
        let mut expected = expected.clone();
        expected.sort_unstable();
        assert_eq!(select(conn, tree), expected, "tree {tree}");
    }
}

fn c(field: &str, op: &str, value: Value) -> Value {
    if value.is_null() {
        json!({"field": field, "op": op})
    } else {
        json!({"field": field, "op": op, "value": value})
    }
}

fn save(conn: &mut DbConnection, name: &str, conditions: Value) -> i64 {
    create_query(
        conn,
        SavedQueryInput {
            name: name.into(),
            description: String::new(),
            conditions,
        },
        "test",
    )
    .unwrap()
    .id
}

fn person_fields_and_every_operator(conn: &mut DbConnection) {
    let w = world(conn);
    let (a, b, ch, d, e) = (w.anna, w.bram, w.chantal, w.dirk, w.eve);
    let everyone = vec![a, b, ch, d, e];
    check(
        conn,
        &[
            (json!({"all": []}), everyone.clone()),
            (json!({"any": []}), vec![]),
            (c("city", "eq", json!("AMSTERDAM")), vec![a, ch]),
            (c("city", "ne", json!("Amsterdam")), vec![b, d, e]),
            (c("city", "in", json!(["utrecht", "Den Haag"])), vec![b, d]),
            (c("city", "contains", json!("%_")), vec![e]),
            (c("city", "contains", json!("zwolle\\")), vec![e]),
            (c("city", "contains", json!("_")), vec![e]),
            (c("city", "starts_with", json!("am")), vec![a, ch]),
            (c("last_name", "starts_with", json!("v")), vec![a, d]),
            (c("email", "eq", json!("bram@example.nl")), vec![b]),
            (c("email", "is_empty", Value::Null), vec![ch]),
            (c("email", "is_not_empty", Value::Null), vec![a, b, d, e]),
            (c("first_name", "eq", json!("zoë")), vec![e]),
            (c("birth_date", "lt", json!("1990-01-01")), vec![a, ch]),
            (c("birth_date", "le", json!("1984-03-07")), vec![a, ch]),
            (c("birth_date", "gt", json!("1984-03-07")), vec![]),
            (c("birth_date", "ge", json!("1984-03-07")), vec![a]),
            (c("birth_date", "eq", json!("1984-03-07")), vec![a]),
            (
                c("birth_date", "ne", json!("1984-03-07")),
                vec![b, ch, d, e],
            ),
            (
                c("birth_date", "between", json!(["1980-01-01", "1990-01-01"])),
                vec![a],
            ),
            (c("birth_date", "is_empty", Value::Null), vec![b, d, e]),
            (
                c("birth_date", "within_last_days", json!(36500)),
                vec![a, ch],
            ),
            (c("id", "in", json!([a, e, 9999])), vec![a, e]),
            (c("id", "gt", json!(ch)), vec![d, e]),
            (c("id", "between", json!([b, ch])), vec![b, ch]),
            (c("id", "eq", json!(d)), vec![d]),
            (c("id", "ne", json!(d)), vec![a, b, ch, e]),
            (c("id", "lt", json!(b)), vec![a]),
            (c("id", "le", json!(b)), vec![a, b]),
            (c("id", "ge", json!(e)), vec![e]),
            (c("deceased", "eq", json!(true)), vec![ch]),
            (c("bouncer", "ne", json!(false)), vec![b]),
            (c("is_test_person", "eq", json!(true)), vec![d]),
            (
                c("created_at", "within_last_days", json!(100)),
                vec![b, ch, d, e],
            ),
            (
                c("created_at", "lt", json!(rfc3339(days_ago(100)))),
                vec![a],
            ),
            (
                c(
                    "created_at",
                    "between",
                    json!(["2025-01-01", rfc3339(days_ago(100))]),
                ),
                vec![a],
            ),
            (c("mailable", "eq", json!(true)), vec![a, d, e]),
            (c("mailable", "eq", json!(false)), vec![b, ch]),
            (c("mailable", "ne", json!(true)), vec![b, ch]),
        ],
    );
}

fn consent_transaction_and_contact_fields(conn: &mut DbConnection) {
    let w = world(conn);
    let (a, b, ch, d, e) = (w.anna, w.bram, w.chantal, w.dirk, w.eve);
    check(
        conn,
        &[
            (c("contact_pressure", "lt", json!(3)), vec![a, b, ch, e]),
            (c("contact_pressure", "ge", json!(3)), vec![d]),
            (c("contact_pressure", "eq", json!(0)), vec![b, ch, e]),
            (c("contact_pressure", "eq", json!(2)), vec![a]),
            (c("contact_pressure", "between", json!([1, 2])), vec![a]),
            (
                c("contact_pressure", "in", json!([0, 3])),
                vec![b, ch, d, e],
            ),
            (c("contact_pressure", "ne", json!(0)), vec![a, d]),
            (c("contact_pressure", "gt", json!(0)), vec![a, d]),
            (c("contact_pressure", "le", json!(2)), vec![a, b, ch, e]),
            (c("consent.1", "eq", json!(true)), vec![a, d, e]),
            (c("consent.1", "eq", json!(false)), vec![b]),
            (c("consent.1", "ne", json!(true)), vec![b, ch]),
            (c("consent.1", "is_empty", Value::Null), vec![ch]),
            (
                c("consent.1", "is_not_empty", Value::Null),
                vec![a, b, d, e],
            ),
            (c("consent.3", "eq", json!(true)), vec![a]),
            (
                c("consent.1.opted_in_at", "within_last_days", json!(50)),
                vec![d, e],
            ),
            (
                c("consent.1.opted_in_at", "lt", json!(rfc3339(days_ago(150)))),
                vec![a],
            ),
            (
                c(
                    "consent.1.opted_in_at",
                    "between",
                    json!([rfc3339(days_ago(120)), rfc3339(days_ago(90))]),
                ),
                vec![b],
            ),
            (
                c("consent.1.opted_out_at", "is_not_empty", Value::Null),
                vec![b],
            ),
            (
                c("consent.1.opted_out_at", "is_empty", Value::Null),
                vec![a, ch, d, e],
            ),
            (c("transactions.count", "ge", json!(2)), vec![a]),
            (c("transactions.count", "eq", json!(0)), vec![b, d]),
            (
                json!({"field": "transactions.count", "op": "ge", "value": 1, "kind": "donation"}),
                vec![a, e],
            ),
            (
                json!({"field": "transactions.count", "op": "ge", "value": 1, "within_days": 30}),
                vec![a, ch, e],
            ),
            (
                json!({"field": "transactions.count", "op": "eq", "value": 1,
                    "kind": "donation", "within_days": 30}),
                vec![a, e],
            ),
            (c("transactions.sum_cents", "gt", json!(1000)), vec![a]),
            (c("transactions.sum_cents", "eq", json!(0)), vec![b, d, e]),
            (
                c("transactions.sum_cents", "lt", json!(1000)),
                vec![b, ch, d, e],
            ),
            (
                json!({"field": "transactions.sum_cents", "op": "ge", "value": 7500, "kind": "donation"}),
                vec![a],
            ),
            (
                c("transactions.last_at", "within_last_days", json!(7)),
                vec![ch, e],
            ),
            (
                c("transactions.last_at", "is_empty", Value::Null),
                vec![b, d],
            ),
            (
                json!({"field": "transactions.last_at", "op": "is_not_empty", "kind": "ticket"}),
                vec![a],
            ),
            (
                c("transactions.last_at", "lt", json!(rfc3339(days_ago(8)))),
                vec![a],
            ),
            (c("contact_moments.received", "ge", json!(1)), vec![a, d, e]),
            (
                json!({"field": "contact_moments.received", "op": "eq", "value": 1, "step_id": 10}),
                vec![a],
            ),
            (c("contact_moments.opened", "ge", json!(1)), vec![a]),
            (
                c("contact_moments.clicked", "eq", json!(0)),
                vec![b, ch, d, e],
            ),
            (
                json!({"field": "contact_moments.received", "op": "ge", "value": 4, "within_days": 7}),
                vec![d],
            ),
            (
                c("contact_moments.last_at", "within_last_days", json!(7)),
                vec![a, d],
            ),
            (
                c("contact_moments.last_at", "is_empty", Value::Null),
                vec![b, ch],
            ),
        ],
    );
}

fn groups_not_and_sub_queries(conn: &mut DbConnection) {
    let w = world(conn);
    let (a, b, ch, d, e) = (w.anna, w.bram, w.chantal, w.dirk, w.eve);
    let amsterdam = save(conn, "amsterdam", c("city", "eq", json!("amsterdam")));
    let tests = save(conn, "test persons", c("is_test_person", "eq", json!(true)));
    check(
        conn,
        &[
            (
                json!({"any": [
                    {"all": [c("city", "eq", json!("amsterdam")), c("deceased", "eq", json!(false))]},
                    {"not": c("email", "is_not_empty", Value::Null)}
                ]}),
                vec![a, ch],
            ),
            (
                json!({"not": {"any": [c("consent.1", "eq", json!(true)), c("bouncer", "eq", json!(true))]}}),
                vec![ch],
            ),
            (
                json!({"not": {"all": [c("consent.1", "eq", json!(true)), c("contact_pressure", "lt", json!(3))]}}),
                vec![b, ch, d],
            ),
            (
                json!({"not": {"not": c("city", "eq", json!("utrecht"))}}),
                vec![b],
            ),
            (c("in_query", "eq", json!(amsterdam)), vec![a, ch]),
            (c("not_in_query", "eq", json!(amsterdam)), vec![b, d, e]),
            (
                json!({"not": c("in_query", "eq", json!(amsterdam))}),
                vec![b, d, e],
            ),
            (
                json!({"not": c("not_in_query", "eq", json!(amsterdam))}),
                vec![a, ch],
            ),
            // The manual's newsletter query: opted in, mailable, contact pressure below 3,
            // and not in another saved query (here: the test persons).
            (
                json!({"all": [
                    c("consent.1", "eq", json!(true)),
                    c("mailable", "eq", json!(true)),
                    c("contact_pressure", "lt", json!(3)),
                    c("not_in_query", "eq", json!(tests)),
                ]}),
                vec![a, e],
            ),
        ],
    );
    // A query including a query including a query.
    let outer = save(conn, "outer", c("in_query", "eq", json!(amsterdam)));
    let outermost = save(
        conn,
        "outermost",
        json!({"all": [c("in_query", "eq", json!(outer)), c("deceased", "eq", json!(false))]}),
    );
    check(conn, &[(c("in_query", "eq", json!(outermost)), vec![a])]);
    // Anonymized persons never belong to a selection, whatever the tree.
    assert!(!select(conn, &json!({"all": []})).contains(&w.frank));
}

fn injection_attempts_are_plain_data(conn: &mut DbConnection) {
    let w = world(conn);
    let attempts = [
        EVIL_NAME,
        "' OR '1'='1",
        "'; DELETE FROM persons; --",
        "\") OR 1=1 --",
        "Zoë'); DROP TABLE consent_records;--",
        "\u{202e}nioJ",
        "😀' UNION SELECT id FROM api_tokens --",
    ];
    for attempt in attempts {
        let expected = if attempt == EVIL_NAME {
            vec![w.eve]
        } else {
            vec![]
        };
        for op in ["eq", "contains", "starts_with"] {
            let tree = c("last_name", op, json!(attempt));
            let want = if op == "contains" && attempt == EVIL_NAME {
                vec![w.eve]
            } else {
                expected.clone()
            };
            assert_eq!(select(conn, &tree), want, "{tree}");
        }
        assert_eq!(
            select(conn, &c("last_name", "in", json!([attempt, "x"]))),
            expected
        );
    }
    assert_eq!(
        select(conn, &c("last_name", "contains", json!("DROP TABLE"))),
        vec![w.eve]
    );
    let persons: i64 = persons::table.count().get_result(conn).unwrap();
    assert_eq!(persons, 6, "nothing was deleted");
}

fn issues(conn: &mut DbConnection, tree: Value) -> Vec<(String, String)> {
    let node = match Node::parse(&tree) {
        Ok(n) => n,
        Err(issues) => return issues.into_iter().map(|i| (i.path, i.reason)).collect(),
    };
    match Selection::prepare_at(conn, &node, now()) {
        Err(QueryError::InvalidConditions(issues)) => {
            issues.into_iter().map(|i| (i.path, i.reason)).collect()
        }
        other => panic!("{tree} was accepted: {:?}", other.map(|s| s.sql())),
    }
}

fn refusals_name_the_offending_node(conn: &mut DbConnection) {
    let tree = json!({"all": [
        c("city", "eq", json!("x")),
        c("password", "eq", json!("x")),
        c("city", "lt", json!("x")),
        c("id", "eq", json!("seven")),
        json!({"field": "mailable", "op": "eq", "value": true, "kind": "donation"}),
        c("id", "between", json!([5, 1])),
        c("in_query", "eq", json!(999)),
        c("email", "is_empty", json!("x")),
        c("consent.99", "eq", json!(true)),
        c("created_at", "within_last_days", json!(-1)),
        c("city", "in", json!([])),
        c("city", "contains", json!("a\u{0}b")),
    ]});
    let found = issues(conn, tree);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/all/1/field",
            "/all/2/op",
            "/all/3/value",
            "/all/4/kind",
            "/all/5/value",
            "/all/6/value",
            "/all/7/value",
            "/all/8/field",
            "/all/9/value",
            "/all/10/value",
            "/all/11/value",
        ],
        "{found:?}"
    );
    assert!(
        found[5].1.contains("saved query 999 does not exist"),
        "{found:?}"
    );
}

fn cycles_are_refused(conn: &mut DbConnection) {
    let first = save(conn, "first", c("city", "eq", json!("x")));
    let second = save(conn, "second", c("in_query", "eq", json!(first)));
    let third = save(conn, "third", c("not_in_query", "eq", json!(second)));
    let input = |conditions| SavedQueryInput {
        name: "first".into(),
        description: String::new(),
        conditions,
    };
    // first → third → second → first
    let err = replace_query(conn, first, input(c("in_query", "eq", json!(third)))).unwrap_err();
    let QueryError::InvalidConditions(found) = err else {
        panic!("{err}")
    };
    assert_eq!(found[0].path, "/conditions/value");
    assert!(found[0].reason.contains("include itself"), "{found:?}");
    // directly itself
    let err = replace_query(
        conn,
        first,
        input(json!({"not": c("in_query", "eq", json!(first))})),
    )
    .unwrap_err();
    assert!(matches!(err, QueryError::InvalidConditions(_)), "{err}");
    // nothing was written
    assert_eq!(
        get_query(conn, first).unwrap().conditions,
        Node::parse(&c("city", "eq", json!("x"))).unwrap()
    );
}

fn saved_queries_lifecycle(conn: &mut DbConnection) {
    let w = world(conn);
    let news = save(
        conn,
        "AB – 20261123 – Newsletter",
        c("consent.1", "eq", json!(true)),
    );
    let dup = create_query(
        conn,
        SavedQueryInput {
            name: "ab – 20261123 – newsletter".into(),
            description: String::new(),
            conditions: json!({"all": []}),
        },
        "test",
    );
    assert!(matches!(dup, Err(QueryError::DuplicateName(_))));
    let copy = copy_query(
        conn,
        news,
        QueryCopy {
            name: "AB – 20261124 – Newsletter December".into(),
            description: Some("copy".into()),
        },
        "other",
    )
    .unwrap();
    assert_eq!(copy.conditions, get_query(conn, news).unwrap().conditions);
    assert_eq!(copy.created_by, "other");
    let found = list_queries(
        conn,
        &SavedQueryFilter {
            name: Some("DECEMBER".into()),
        },
        Default::default(),
    )
    .unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(found.items[0].id, copy.id);

    // A query that another query or an opt-in type uses cannot be deleted.
    let user = save(conn, "user", c("not_in_query", "eq", json!(news)));
    let err = delete_query(conn, news).unwrap_err();
    assert!(err.to_string().contains("\"user\""), "{err}");
    delete_query(conn, user).unwrap();
    update_type(
        conn,
        2,
        OptInTypeChanges {
            soft_query_id: Some(Some(news)),
            ..Default::default()
        },
    )
    .unwrap();
    let err = delete_query(conn, news).unwrap_err();
    assert!(err.to_string().contains("opt-in type"), "{err}");

    // Soft opt-ins now run on the saved query.
    let outcome = assign_soft_consent(conn, 2, true, false, &SavedQuerySelector).unwrap();
    assert_eq!(
        outcome.matched, 3,
        "anna, dirk and eve are opted in to the newsletter"
    );
    assert_eq!(outcome.assigned, 3);
    assert_eq!(
        select(conn, &c("consent.2", "eq", json!(true))),
        vec![w.anna, w.dirk, w.eve]
    );

    update_type(
        conn,
        2,
        OptInTypeChanges {
            soft_query_id: Some(None),
            ..Default::default()
        },
    )
    .unwrap();
    delete_query(conn, news).unwrap();
    assert!(matches!(
        get_query(conn, news),
        Err(QueryError::NotFound(_))
    ));
}

fn runs_return_pages_with_chosen_columns(conn: &mut DbConnection) {
    let w = world(conn);
    let tree = Node::parse(&c("email", "is_not_empty", Value::Null)).unwrap();
    let result = run(
        conn,
        &tree,
        &RunOptions {
            page: Some(2),
            per_page: Some(2),
            columns: Some(vec!["city".into(), "consents".into()]),
        },
    )
    .unwrap();
    assert_eq!(result.count, 4);
    let ids: Vec<i64> = result
        .items
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [w.dirk, w.eve]);
    let keys: Vec<&String> = result.items[0].keys().collect();
    assert_eq!(keys, ["id", "city", "consents"]);
    let err = run(
        conn,
        &tree,
        &RunOptions {
            columns: Some(vec!["password".into()]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(
        err,
        QueryError::Invalid {
            field: "columns",
            ..
        }
    ));
}

fn contact_pressure_follows_the_setting(conn: &mut DbConnection) {
    let w = world(conn);
    let high = c("contact_pressure", "ge", json!(3));
    assert_eq!(select(conn, &high), vec![w.dirk]);
    mailbaar_settings::update(
        conn,
        mailbaar_settings::SettingsChanges {
            contact_pressure_days: Some(30),
            ..Default::default()
        },
    )
    .unwrap();
    // Anna: 3 e-mails in 30 days; Dirk: 3 (the test mail and the letter do not count).
    assert_eq!(select(conn, &high), vec![w.anna, w.dirk]);
}

fn profile_fields_select_profiled_persons(conn: &mut DbConnection) {
    let w = world(conn);
    // Only Anna has a profiling opt-in, so only she gets a profile.
    let done = mailbaar_profiles::recalculate(conn, now(), &mut |_, _| Ok(())).unwrap();
    assert_eq!(done.profiles, 1);
    let (a, b, ch, d, e) = (w.anna, w.bram, w.chantal, w.dirk, w.eve);
    check(
        conn,
        &[
            (c("profile.frequency", "eq", json!(2)), vec![a]),
            (c("profile.monetary_cents", "eq", json!(7500)), vec![a]),
            (c("profile.recency_days", "eq", json!(10)), vec![a]),
            (c("profile.recency_days", "is_empty", Value::Null), vec![]),
            (c("profile.rfm_score", "between", json!([3, 15])), vec![a]),
            (c("profile.opens_90d", "eq", json!(2)), vec![a]),
            (c("profile.frequency", "ne", json!(5)), vec![a]),
            (
                json!({"not": c("profile.frequency", "ge", json!(1))}),
                vec![b, ch, d, e],
            ),
        ],
    );
}

mailbaar_store::both_engines!(
    profile_fields_select_profiled_persons,
    person_fields_and_every_operator,
    consent_transaction_and_contact_fields,
    groups_not_and_sub_queries,
    injection_attempts_are_plain_data,
    refusals_name_the_offending_node,
    cycles_are_refused,
    saved_queries_lifecycle,
    runs_return_pages_with_chosen_columns,
    contact_pressure_follows_the_setting,
);
