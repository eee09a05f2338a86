//! Random trees over random persons: the compiled SQL must select exactly the persons that a
//! plain Rust reading of the same tree selects, on both engines.

mod support;

use chrono::{Days, NaiveDate, NaiveDateTime};
use mailbaar_query::{create_query, SavedQueryInput};
use mailbaar_store::DbConnection;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::*;

const PERSONS: usize = 80;
const TREES: usize = 300;

const CITIES: [&str; 7] = [
    "Amsterdam",
    "amsterdam",
    "Utrecht",
    "Den Haag",
    "Zwolle",
    "zoë-stad",
    "",
];
const LAST_NAMES: [&str; 11] = [
    "Vries",
    "de Vries",
    "Bakker",
    "O'Brien",
    "100%",
    "a_b",
    "Öztürk",
    "Straße",
    "Σωκράτης",
    "Łukasz",
    "Zoe\u{308}",
];
const KINDS: [&str; 3] = ["donation", "ticket", "purchase"];

#[derive(Debug, Clone)]
struct Record {
    type_id: i64,
    opt_in: bool,
    at: NaiveDateTime,
}

#[derive(Debug, Clone)]
struct Tx {
    kind: &'static str,
    cents: i64,
    at: NaiveDateTime,
}

#[derive(Clone)]
struct Person {
    id: i64,
    row: PersonRow,
    records: Vec<Record>,
    transactions: Vec<Tx>,
    moments: Vec<Moment>,
}

fn pick<T: Clone>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

fn maybe<T>(rng: &mut StdRng, p: f64, f: impl FnOnce(&mut StdRng) -> T) -> Option<T> {
    if rng.random_bool(p) {
        Some(f(rng))
    } else {
        None
    }
}

fn ago(rng: &mut StdRng, max_days: u64) -> NaiveDateTime {
    now()
        .checked_sub_days(Days::new(rng.random_range(0..max_days)))
        .unwrap()
        - chrono::Duration::minutes(rng.random_range(0..1440))
}

fn population(rng: &mut StdRng, conn: &mut DbConnection) -> Vec<Person> {
    (0..PERSONS)
        .map(|i| {
            let row = PersonRow {
                email: maybe(rng, 0.8, |_| format!("p{i}@example.nl")),
                first_name: maybe(rng, 0.9, |_| format!("Name{}", i % 7)),
                last_name: maybe(rng, 0.9, |rng| pick(rng, &LAST_NAMES).to_owned()),
                city: maybe(rng, 0.9, |rng| pick(rng, &CITIES).to_owned()),
                birth_date: maybe(rng, 0.7, |rng| {
                    NaiveDate::from_ymd_opt(
                        rng.random_range(1940..2006),
                        rng.random_range(1..13),
                        1,
                    )
                    .unwrap()
                }),
                deceased: rng.random_bool(0.1),
                bouncer: rng.random_bool(0.15),
                is_test_person: rng.random_bool(0.1),
                anonymized_at: maybe(rng, 0.05, |_| days_ago(3)),
                created_at: Some(ago(rng, 800)),
            };
            let id = insert_person(conn, &row);
            let mut records: Vec<Record> = (0..rng.random_range(0..4))
                .map(|_| Record {
                    type_id: pick(rng, &[NEWSLETTER, PROFILING]),
                    opt_in: rng.random_bool(0.6),
                    at: ago(rng, 400),
                })
                .collect();
            records.sort_by_key(|r| r.at);
            for r in &records {
                consent(conn, id, r.type_id, r.opt_in, r.at);
            }
            let transactions: Vec<Tx> = (0..rng.random_range(0..4))
                .map(|_| Tx {
                    kind: pick(rng, &KINDS),
                    cents: rng.random_range(0..10_000),
                    at: ago(rng, 500),
                })
                .collect();
            for t in &transactions {
                transaction(conn, id, t.kind, t.cents, t.at);
            }
            let moments: Vec<Moment> = (0..rng.random_range(0..6))
                .map(|_| Moment {
                    channel: pick(rng, &["email", "email", "email", "letter"]),
                    step_id: maybe(rng, 0.7, |rng| rng.random_range(1..4)),
                    is_test: rng.random_bool(0.1),
                    at: ago(rng, 30),
                    opened: rng.random_bool(0.4),
                    clicked: rng.random_bool(0.2),
                })
                .collect();
            for m in &moments {
                moment(conn, id, m);
            }
            Person {
                id,
                row,
                records,
                transactions,
                moments,
            }
        })
        .collect()
}

// ---- random trees -------------------------------------------------------------------

fn random_case(rng: &mut StdRng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.random_bool(0.3) {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn text_condition(rng: &mut StdRng, field: &str, pool: &[&str]) -> Value {
    let v = pick(rng, pool);
    let v = random_case(rng, v);
    let other = pick(rng, pool);
    let other = random_case(rng, other);
    match rng.random_range(0..7) {
        0 => json!({"field": field, "op": "eq", "value": v}),
        1 => json!({"field": field, "op": "ne", "value": v}),
        2 => json!({"field": field, "op": "in", "value": [v, other]}),
        3 => {
            let cut: String = v.chars().skip(1).take(3).collect();
            let cut = if cut.is_empty() { "a".to_owned() } else { cut };
            json!({"field": field, "op": "contains", "value": cut})
        }
        4 => {
            let cut: String = v.chars().take(2).collect();
            let cut = if cut.is_empty() { "%".to_owned() } else { cut };
            json!({"field": field, "op": "starts_with", "value": cut})
        }
        5 => json!({"field": field, "op": "is_empty"}),
        _ => json!({"field": field, "op": "is_not_empty"}),
    }
}

fn number_condition(rng: &mut StdRng, field: &str, max: i64) -> Value {
    let a = rng.random_range(0..=max);
    let b = rng.random_range(a..=max);
    let op = pick(rng, &["eq", "ne", "lt", "le", "gt", "ge", "between", "in"]);
    let value = match op {
        "between" => json!([a, b]),
        "in" => json!([a, b]),
        _ => json!(a),
    };
    json!({"field": field, "op": op, "value": value})
}

fn time_condition(rng: &mut StdRng, field: &str, max_days: u64, nullable: bool) -> Value {
    let mut ops = vec!["lt", "le", "gt", "ge", "between", "within_last_days"];
    if nullable {
        ops.extend(["is_empty", "is_not_empty"]);
    }
    let op = pick(rng, &ops);
    let t1 = ago(rng, max_days);
    let t2 = ago(rng, max_days);
    let (a, b) = (t1.min(t2), t1.max(t2));
    match op {
        "between" => json!({"field": field, "op": op, "value": [rfc3339(a), rfc3339(b)]}),
        "within_last_days" => {
            json!({"field": field, "op": op, "value": rng.random_range(0..max_days as i64)})
        }
        "is_empty" | "is_not_empty" => json!({"field": field, "op": op}),
        _ => json!({"field": field, "op": op, "value": rfc3339(a)}),
    }
}

/// Adds an optional key half of the time.
fn with(rng: &mut StdRng, mut c: Value, key: &str, v: Value) -> Value {
    if rng.random_bool(0.5) {
        c[key] = v;
    }
    c
}

fn leaf(rng: &mut StdRng, saved: &[i64]) -> Value {
    match rng.random_range(0..19) {
        0 => text_condition(rng, "city", &CITIES),
        1 => text_condition(rng, "last_name", &LAST_NAMES),
        2 => text_condition(
            rng,
            "email",
            &["p1@example.nl", "p12@example.nl", "example"],
        ),
        3 => {
            let d = NaiveDate::from_ymd_opt(rng.random_range(1940..2006), 1, 1)
                .unwrap()
                .to_string();
            let d2 = NaiveDate::from_ymd_opt(rng.random_range(1973..2006), 6, 1)
                .unwrap()
                .to_string();
            match rng.random_range(0..5) {
                0 => json!({"field": "birth_date", "op": "lt", "value": d}),
                1 => json!({"field": "birth_date", "op": "ge", "value": d}),
                2 => {
                    json!({"field": "birth_date", "op": "between", "value": [d.clone().min(d2.clone()), d.max(d2)]})
                }
                3 => {
                    json!({"field": "birth_date", "op": "within_last_days", "value": rng.random_range(0..25_000)})
                }
                _ => json!({"field": "birth_date", "op": "is_empty"}),
            }
        }
        4 => time_condition(rng, "created_at", 800, false),
        5 => json!({"field": pick(rng, &["deceased", "bouncer", "is_test_person", "mailable"]),
            "op": pick(rng, &["eq", "ne"]), "value": rng.random_bool(0.5)}),
        6 => number_condition(rng, "contact_pressure", 4),
        7 => match rng.random_range(0..3) {
            0 => json!({"field": format!("consent.{}", pick(rng, &[NEWSLETTER, PROFILING])),
                "op": pick(rng, &["eq", "ne"]), "value": rng.random_bool(0.5)}),
            1 => json!({"field": format!("consent.{}", pick(rng, &[NEWSLETTER, PROFILING])),
                "op": pick(rng, &["is_empty", "is_not_empty"])}),
            _ => {
                let f = format!(
                    "consent.{}.{}",
                    pick(rng, &[NEWSLETTER, PROFILING]),
                    pick(rng, &["opted_in_at", "opted_out_at"])
                );
                time_condition(rng, &f, 400, true)
            }
        },
        8 | 9 => {
            let c = if rng.random_bool(0.5) {
                number_condition(rng, "transactions.count", 4)
            } else {
                number_condition(rng, "transactions.sum_cents", 15_000)
            };
            let kind = json!(pick(rng, &KINDS));
            let c = with(rng, c, "kind", kind);
            let days = json!(rng.random_range(1..500));
            with(rng, c, "within_days", days)
        }
        10 => {
            let c = time_condition(rng, "transactions.last_at", 500, true);
            let kind = json!(pick(rng, &KINDS));
            with(rng, c, "kind", kind)
        }
        11 | 12 => {
            let f = pick(
                rng,
                &[
                    "contact_moments.received",
                    "contact_moments.opened",
                    "contact_moments.clicked",
                ],
            );
            let c = number_condition(rng, f, 4);
            let step = json!(rng.random_range(1..4));
            let c = with(rng, c, "step_id", step);
            let days = json!(rng.random_range(1..30));
            with(rng, c, "within_days", days)
        }
        13 => {
            let c = time_condition(rng, "contact_moments.last_at", 30, true);
            let step = json!(rng.random_range(1..4));
            with(rng, c, "step_id", step)
        }
        14 | 15 if !saved.is_empty() => json!({"field": pick(rng, &["in_query", "not_in_query"]),
            "op": "eq", "value": pick(rng, saved)}),
        _ => number_condition(rng, "id", PERSONS as i64),
    }
}

fn tree(rng: &mut StdRng, depth: usize, saved: &[i64]) -> Value {
    if depth < 3 && rng.random_bool(0.45) {
        match rng.random_range(0..3) {
            0 => json!({"not": tree(rng, depth + 1, saved)}),
            g => {
                let n = rng.random_range(0..4);
                let children: Vec<Value> = (0..n).map(|_| tree(rng, depth + 1, saved)).collect();
                if g == 1 {
                    json!({ "all": children })
                } else {
                    json!({ "any": children })
                }
            }
        }
    } else {
        leaf(rng, saved)
    }
}

// ---- the plain reading --------------------------------------------------------------

struct Model<'a> {
    persons: &'a [Person],
    saved: Vec<(i64, Value)>,
}

fn time(v: &Value) -> NaiveDateTime {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .naive_utc()
}

fn cutoff(days: &Value) -> NaiveDateTime {
    days_ago(days.as_u64().unwrap())
}

/// `op` applied to an optional value, where `cmp` orders the value against an operand.
fn holds<T: PartialOrd>(
    op: &str,
    x: Option<T>,
    operand: &dyn Fn(&Value) -> T,
    value: &Value,
) -> bool {
    match op {
        "is_empty" => x.is_none(),
        "is_not_empty" => x.is_some(),
        "ne" => !holds("eq", x, operand, value),
        _ => {
            let Some(x) = x else { return false };
            match op {
                "eq" => x == operand(value),
                "lt" => x < operand(value),
                "le" => x <= operand(value),
                "gt" => x > operand(value),
                "ge" => x >= operand(value),
                "between" => operand(&value[0]) <= x && x <= operand(&value[1]),
                "in" => value.as_array().unwrap().iter().any(|v| x == operand(v)),
                other => panic!("unexpected op {other}"),
            }
        }
    }
}

fn text_holds(op: &str, x: &Option<String>, value: &Value) -> bool {
    let x = x.as_deref().map(mailbaar_store::fold);
    let v = || mailbaar_store::fold(value.as_str().unwrap());
    match op {
        "is_empty" => x.as_deref().unwrap_or("").is_empty(),
        "is_not_empty" => !x.as_deref().unwrap_or("").is_empty(),
        "ne" => !text_holds("eq", &x, value),
        "eq" => x == Some(v()),
        "in" => value
            .as_array()
            .unwrap()
            .iter()
            .any(|i| text_holds("eq", &x, i)),
        "contains" => x.is_some_and(|x| x.contains(&v())),
        "starts_with" => x.is_some_and(|x| x.starts_with(&v())),
        other => panic!("unexpected text op {other}"),
    }
}

impl Model<'_> {
    fn eval(&self, tree: &Value, p: &Person) -> bool {
        if let Some(all) = tree.get("all") {
            return all.as_array().unwrap().iter().all(|t| self.eval(t, p));
        }
        if let Some(any) = tree.get("any") {
            return any.as_array().unwrap().iter().any(|t| self.eval(t, p));
        }
        if let Some(not) = tree.get("not") {
            return !self.eval(not, p);
        }
        let field = tree["field"].as_str().unwrap();
        let op = tree["op"].as_str().unwrap();
        let value = tree.get("value").cloned().unwrap_or(Value::Null);
        let int = |v: &Value| v.as_i64().unwrap();
        let since = tree.get("within_days").map(cutoff);
        let r = &p.row;
        // within_last_days reads as ">= now - N days" on every time field.
        let (op, value) = if op == "within_last_days" {
            ("ge", json!(rfc3339(cutoff(&value))))
        } else {
            (op, value)
        };
        match field {
            "city" => text_holds(op, &r.city, &value),
            "last_name" => text_holds(op, &r.last_name, &value),
            "email" => text_holds(op, &r.email, &value),
            "birth_date" => {
                let date = |v: &Value| {
                    let s = v.as_str().unwrap();
                    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|_| time(v).date())
                };
                holds(op, r.birth_date, &date, &value)
            }
            "created_at" => holds(op, r.created_at, &time, &value),
            "deceased" | "bouncer" | "is_test_person" | "mailable" => {
                let x = match field {
                    "deceased" => r.deceased,
                    "bouncer" => r.bouncer,
                    "is_test_person" => r.is_test_person,
                    _ => {
                        r.email.is_some() && !r.bouncer && !r.deceased && r.anonymized_at.is_none()
                    }
                };
                holds(op, Some(x), &|v| v.as_bool().unwrap(), &value)
            }
            "id" => holds(op, Some(p.id), &int, &value),
            "contact_pressure" => {
                let n = p
                    .moments
                    .iter()
                    .filter(|m| m.channel == "email" && !m.is_test && m.at >= days_ago(7))
                    .count() as i64;
                holds(op, Some(n), &int, &value)
            }
            "transactions.count" | "transactions.sum_cents" | "transactions.last_at" => {
                let txs = p.transactions.iter().filter(|t| {
                    tree.get("kind").is_none_or(|k| k.as_str() == Some(t.kind))
                        && since.is_none_or(|s| t.at >= s)
                });
                match field {
                    "transactions.count" => holds(op, Some(txs.count() as i64), &int, &value),
                    "transactions.sum_cents" => {
                        holds(op, Some(txs.map(|t| t.cents).sum()), &int, &value)
                    }
                    _ => holds(op, txs.map(|t| t.at).max(), &time, &value),
                }
            }
            f if f.starts_with("contact_moments.") => {
                let ms = p.moments.iter().filter(|m| {
                    !m.is_test
                        && tree.get("step_id").is_none_or(|s| m.step_id == s.as_i64())
                        && since.is_none_or(|s| m.at >= s)
                });
                match f {
                    "contact_moments.received" => holds(op, Some(ms.count() as i64), &int, &value),
                    "contact_moments.opened" => holds(
                        op,
                        Some(ms.filter(|m| m.opened).count() as i64),
                        &int,
                        &value,
                    ),
                    "contact_moments.clicked" => holds(
                        op,
                        Some(ms.filter(|m| m.clicked).count() as i64),
                        &int,
                        &value,
                    ),
                    _ => holds(op, ms.map(|m| m.at).max(), &time, &value),
                }
            }
            "in_query" | "not_in_query" => {
                let id = value.as_i64().unwrap();
                let saved = &self.saved.iter().find(|(q, _)| *q == id).unwrap().1;
                self.eval(saved, p) == (field == "in_query")
            }
            f if f.starts_with("consent.") => {
                let mut parts = f.split('.').skip(1);
                let type_id: i64 = parts.next().unwrap().parse().unwrap();
                let of_type = p.records.iter().filter(|r| r.type_id == type_id);
                match parts.next() {
                    None => holds(
                        op,
                        of_type.clone().next_back().map(|r| r.opt_in),
                        &|v| v.as_bool().unwrap(),
                        &value,
                    ),
                    Some(which) => {
                        let opt_in = which == "opted_in_at";
                        let times: Vec<NaiveDateTime> = of_type
                            .filter(|r| r.opt_in == opt_in)
                            .map(|r| r.at)
                            .collect();
                        match op {
                            "is_empty" => times.is_empty(),
                            "is_not_empty" => !times.is_empty(),
                            _ => times.into_iter().any(|t| holds(op, Some(t), &time, &value)),
                        }
                    }
                }
            }
            other => panic!("no plain reading of {other}"),
        }
    }

    fn select(&self, tree: &Value) -> Vec<i64> {
        self.persons
            .iter()
            .filter(|p| p.row.anonymized_at.is_none() && self.eval(tree, p))
            .map(|p| p.id)
            .collect()
    }
}

fn sql_matches_plain_reading(conn: &mut DbConnection) {
    let mut rng = StdRng::seed_from_u64(20261123);
    let persons = population(&mut rng, conn);
    let mut model = Model {
        persons: &persons,
        saved: Vec::new(),
    };
    for i in 0..4 {
        let known: Vec<i64> = model.saved.iter().map(|(id, _)| *id).collect();
        let conditions = tree(&mut rng, 1, &known);
        let id = create_query(
            conn,
            SavedQueryInput {
                name: format!("random {i}"),
                description: String::new(),
                conditions: conditions.clone(),
            },
            "test",
        )
        .unwrap()
        .id;
        model.saved.push((id, conditions));
    }
    let saved: Vec<i64> = model.saved.iter().map(|(id, _)| *id).collect();
    let mut non_trivial = 0;
    for _ in 0..TREES {
        let t = tree(&mut rng, 0, &saved);
        let expected = model.select(&t);
        if !expected.is_empty() && expected.len() < persons.len() {
            non_trivial += 1;
        }
        assert_eq!(select(conn, &t), expected, "tree {t}");
    }
    assert!(
        non_trivial > TREES / 3,
        "only {non_trivial} trees split the persons"
    );
}

mailbaar_store::both_engines!(sql_matches_plain_reading);
