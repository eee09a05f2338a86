//! Compilation of a checked rule tree into one SQL condition over `persons`, the same text
//! for both engines, with every value a bound parameter.
//!
//! Two rules keep the SQL both correct and fast:
//! - every compiled condition is two-valued (never NULL), so `NOT` means "does not hold";
//! - `NOT` is pushed down to the leaves. A leaf over another table becomes
//!   `persons.id IN (…)` or `NOT EXISTS (…)`, which both engines plan as a semi-join or an
//!   anti-join; `NOT (persons.id IN (…))` would make PostgreSQL probe a list per person.
//!   Counting fields are grouped once over their table (`GROUP BY person_id HAVING …`),
//!   never counted per person.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::backend::Backend;
use diesel::expression::{is_aggregate, AppearsOnTable, Expression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Date, Text, Timestamp};
use diesel::QueryResult;
use mailbaar_store::DbConnection;

use crate::fields::{Aggregate, FieldKind, Moments, ValueType};
use crate::resolve::{Cmp, Rule, Scalar, Source, Test};

type Db = <DbConnection as diesel::Connection>::Backend;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Sql(String),
    Bind(Scalar),
}

/// SQL text with bound values in order; a diesel expression of type `Bool` usable in
/// `filter`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlCondition {
    parts: Vec<Part>,
}

impl SqlCondition {
    fn sql(&mut self, s: &str) -> &mut Self {
        match self.parts.last_mut() {
            Some(Part::Sql(last)) => last.push_str(s),
            _ => self.parts.push(Part::Sql(s.to_owned())),
        }
        self
    }

    fn bind(&mut self, value: Scalar) -> &mut Self {
        self.parts.push(Part::Bind(value));
        self
    }

    fn append(&mut self, other: SqlCondition) -> &mut Self {
        for part in other.parts {
            match part {
                Part::Sql(s) => {
                    self.sql(&s);
                }
                Part::Bind(v) => {
                    self.bind(v);
                }
            }
        }
        self
    }

    /// The SQL text with `?` for each value and the values, for logs and tests.
    pub fn debug_text(&self) -> (String, usize) {
        let mut text = String::new();
        let mut binds = 0;
        for part in &self.parts {
            match part {
                Part::Sql(s) => text.push_str(s),
                Part::Bind(_) => {
                    text.push('?');
                    binds += 1;
                }
            }
        }
        (text, binds)
    }
}

impl Expression for SqlCondition {
    type SqlType = Bool;
}

impl<QS> AppearsOnTable<QS> for SqlCondition {}

impl ValidGrouping<()> for SqlCondition {
    type IsAggregate = is_aggregate::Never;
}

impl QueryId for SqlCondition {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

// For every backend: the multi-backend of `DbConnection` and, because diesel runs some
// statements (an `UPDATE` with a subquery) on the inner connection, each engine's own.
impl<DB> QueryFragment<DB> for SqlCondition
where
    DB: Backend
        + diesel::sql_types::HasSqlType<Text>
        + diesel::sql_types::HasSqlType<BigInt>
        + diesel::sql_types::HasSqlType<Bool>
        + diesel::sql_types::HasSqlType<Date>
        + diesel::sql_types::HasSqlType<Timestamp>,
    String: diesel::serialize::ToSql<Text, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
    bool: diesel::serialize::ToSql<Bool, DB>,
    NaiveDate: diesel::serialize::ToSql<Date, DB>,
    NaiveDateTime: diesel::serialize::ToSql<Timestamp, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        for part in &self.parts {
            match part {
                Part::Sql(s) => out.push_sql(s),
                Part::Bind(Scalar::Text(v)) => out.push_bind_param::<Text, String>(v)?,
                Part::Bind(Scalar::Int(v)) => out.push_bind_param::<BigInt, i64>(v)?,
                Part::Bind(Scalar::Bool(v)) => out.push_bind_param::<Bool, bool>(v)?,
                Part::Bind(Scalar::Date(v)) => out.push_bind_param::<Date, NaiveDate>(v)?,
                Part::Bind(Scalar::Time(v)) => {
                    out.push_bind_param::<Timestamp, NaiveDateTime>(v)?
                }
            }
        }
        Ok(())
    }
}

// Keep the backend type in use so a change of connection type fails to compile here.
const _: fn() = || {
    fn is_backend<B: Backend>() {}
    is_backend::<Db>();
};

/// The condition a selection applies: anonymized persons never belong to one, then the tree.
pub(crate) fn compile(rule: &Rule) -> SqlCondition {
    let mut out = SqlCondition::default();
    out.sql("(persons.anonymized_at IS NULL AND ");
    node(rule, false, &mut out);
    out.sql(")");
    out
}

fn node(rule: &Rule, negated: bool, out: &mut SqlCondition) {
    match rule {
        Rule::All(children) | Rule::Any(children) => {
            // De Morgan: NOT (a AND b) = NOT a OR NOT b.
            let conjunction = matches!(rule, Rule::All(_)) != negated;
            if children.is_empty() {
                out.sql(if conjunction { "1 = 1" } else { "1 = 0" });
                return;
            }
            out.sql("(");
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    out.sql(if conjunction { " AND " } else { " OR " });
                }
                node(child, negated, out);
            }
            out.sql(")");
        }
        Rule::Not(inner) => node(inner, !negated, out),
        Rule::Leaf(source, test) => leaf(source, test, negated, out),
    }
}

/// A leaf as either a plain condition on the person row or a membership of a person set.
enum Leaf {
    Row(SqlCondition),
    Member {
        positive: bool,
        persons: SqlCondition,
    },
}

fn leaf(source: &Source, test: &Test, negated: bool, out: &mut SqlCondition) {
    match leaf_parts(source, test) {
        Leaf::Row(cond) if negated => {
            out.sql("NOT ").append(cond);
        }
        Leaf::Row(cond) => {
            out.append(cond);
        }
        Leaf::Member { positive, persons } => {
            if positive != negated {
                out.sql("persons.id IN (").append(persons).sql(")");
            } else {
                out.sql("NOT EXISTS (SELECT 1 FROM (")
                    .append(persons)
                    .sql(") AS m WHERE m.person_id = persons.id)");
            }
        }
    }
}

fn leaf_parts(source: &Source, test: &Test) -> Leaf {
    match &source.kind {
        FieldKind::Column { column, nullable } => Leaf::Row(column_test(
            &format!("persons.{column}"),
            *nullable,
            source.value_type,
            test,
        )),
        FieldKind::Mailable => {
            let wanted = match test {
                Test::Cmp(Cmp::Eq, Scalar::Bool(b)) => *b,
                Test::Cmp(_, Scalar::Bool(b)) => !*b,
                _ => unreachable!("mailable takes eq and ne with a boolean"),
            };
            let mut c = SqlCondition::default();
            if !wanted {
                c.sql("NOT ");
            }
            c.sql(mailbaar_people::mailable_sql());
            Leaf::Row(c)
        }
        FieldKind::ConsentCurrent(type_id) => {
            let mut persons = SqlCondition::default();
            persons
                .sql("SELECT person_id FROM consent_current WHERE opt_in_type_id = ")
                .bind(Scalar::Int(*type_id));
            let positive = match test {
                Test::IsEmpty => false,
                Test::IsNotEmpty => true,
                Test::Cmp(cmp, Scalar::Bool(b)) => {
                    persons.sql(" AND opt_in = ").bind(Scalar::Bool(*b));
                    *cmp == Cmp::Eq
                }
                _ => unreachable!("consent takes eq, ne, is_empty and is_not_empty"),
            };
            Leaf::Member { positive, persons }
        }
        FieldKind::ConsentHistory {
            opt_in_type_id,
            opt_in,
        } => {
            let mut persons = SqlCondition::default();
            persons
                .sql("SELECT person_id FROM consent_records WHERE opt_in_type_id = ")
                .bind(Scalar::Int(*opt_in_type_id))
                .sql(" AND opt_in = ")
                .bind(Scalar::Bool(*opt_in));
            let positive = match test {
                Test::IsEmpty => false,
                Test::IsNotEmpty => true,
                other => {
                    persons.sql(" AND ").append(column_test(
                        "recorded_at",
                        false,
                        ValueType::DateTime,
                        other,
                    ));
                    true
                }
            };
            Leaf::Member { positive, persons }
        }
        FieldKind::ContactPressure => {
            let mut from = SqlCondition::default();
            // Literal constants so both engines use the partial index contact_moments_pressure.
            from.sql("contact_moments WHERE channel = 'email' AND NOT is_test");
            since(&mut from, "occurred_at", source.since);
            grouped(from, "COUNT(*)", Some(0), test)
        }
        FieldKind::Transactions(aggregate) => {
            let mut from = SqlCondition::default();
            from.sql("transactions WHERE 1 = 1");
            if let Some(kind) = &source.transaction_kind {
                from.sql(" AND kind = ").bind(Scalar::Text(kind.clone()));
            }
            since(&mut from, "occurred_at", source.since);
            match aggregate {
                Aggregate::Count => grouped(from, "COUNT(*)", Some(0), test),
                // Summed as double precision on both engines: one SQL text for both, and a
                // sum beyond 64 bits compares instead of failing the whole selection
                // (exact below 2^53 cents, which bounded amounts never reach).
                Aggregate::SumCents => grouped(
                    from,
                    "SUM(CAST(amount_cents AS DOUBLE PRECISION))",
                    Some(0),
                    test,
                ),
                Aggregate::LastAt => grouped(from, "MAX(occurred_at)", None, test),
            }
        }
        FieldKind::ContactMoments(moments) => {
            let mut from = SqlCondition::default();
            from.sql("contact_moments WHERE NOT is_test");
            if let Some(step) = source.step_id {
                from.sql(" AND step_id = ").bind(Scalar::Int(step));
            }
            since(&mut from, "occurred_at", source.since);
            match moments {
                Moments::Received => grouped(from, "COUNT(*)", Some(0), test),
                Moments::Opened => {
                    from.sql(" AND opened_at IS NOT NULL");
                    grouped(from, "COUNT(*)", Some(0), test)
                }
                Moments::Clicked => {
                    from.sql(" AND clicked_at IS NOT NULL");
                    grouped(from, "COUNT(*)", Some(0), test)
                }
                Moments::LastAt => grouped(from, "MAX(occurred_at)", None, test),
            }
        }
        FieldKind::Profile { column, nullable } => {
            let mut persons = SqlCondition::default();
            persons
                .sql("SELECT person_id FROM person_profiles WHERE ")
                .append(column_test(column, *nullable, ValueType::Integer, test));
            Leaf::Member {
                positive: true,
                persons,
            }
        }
        FieldKind::InQuery { .. } => unreachable!("saved queries are expanded when resolved"),
    }
}

fn since(from: &mut SqlCondition, column: &str, since: Option<NaiveDateTime>) {
    if let Some(t) = since {
        from.sql(" AND ")
            .sql(column)
            .sql(" >= ")
            .bind(Scalar::Time(t));
    }
}

/// A condition on a per-person aggregate, as one grouped pass over the table.
///
/// `empty` is the aggregate's value for a person without rows (0 for counts and sums,
/// none for the latest date). When the test holds for that value, persons without rows
/// match too, so the set is built of the persons for whom the test fails, and excluded.
fn grouped(from: SqlCondition, aggregate: &str, empty: Option<i64>, test: &Test) -> Leaf {
    let holds_for_empty = match (empty, test) {
        (_, Test::IsEmpty) => empty.is_none(),
        (_, Test::IsNotEmpty) => empty.is_some(),
        (Some(zero), test) => holds_for_int(zero, test),
        (None, Test::Cmp(Cmp::Ne, _)) => true,
        (None, _) => false,
    };
    let mut persons = SqlCondition::default();
    persons.sql("SELECT person_id FROM ").append(from);
    if !matches!(test, Test::IsEmpty | Test::IsNotEmpty) {
        persons.sql(" GROUP BY person_id HAVING ");
        if holds_for_empty {
            persons.sql("NOT ");
        }
        persons.append(column_test(aggregate, false, ValueType::Integer, test));
    }
    Leaf::Member {
        positive: !holds_for_empty,
        persons,
    }
}

fn holds_for_int(v: i64, test: &Test) -> bool {
    let int = |s: &Scalar| match s {
        Scalar::Int(i) => *i,
        _ => unreachable!("counting fields take whole numbers"),
    };
    match test {
        Test::Cmp(cmp, s) => {
            let x = int(s);
            match cmp {
                Cmp::Eq => v == x,
                Cmp::Ne => v != x,
                Cmp::Lt => v < x,
                Cmp::Le => v <= x,
                Cmp::Gt => v > x,
                Cmp::Ge => v >= x,
            }
        }
        Test::Between(a, b) => int(a) <= v && v <= int(b),
        Test::In(items) => items.iter().any(|s| int(s) == v),
        _ => false,
    }
}

/// A two-valued test of one column or expression. Text compares without regard to case on
/// both engines; nullable columns are guarded so the result is never NULL.
fn column_test(expr: &str, nullable: bool, value_type: ValueType, test: &Test) -> SqlCondition {
    let text = value_type == ValueType::Text;
    let operand = if text {
        format!("mailbaar_fold({expr})")
    } else {
        expr.to_owned()
    };
    let mut c = SqlCondition::default();
    match test {
        Test::IsEmpty => {
            c.sql("(").sql(expr).sql(" IS NULL");
            if text {
                c.sql(" OR ").sql(expr).sql(" = ''");
            }
            c.sql(")");
            return c;
        }
        Test::IsNotEmpty => {
            c.sql("(").sql(expr).sql(" IS NOT NULL");
            if text {
                c.sql(" AND ").sql(expr).sql(" <> ''");
            }
            c.sql(")");
            return c;
        }
        Test::Cmp(Cmp::Ne, value) => {
            // "Not equal" includes persons without a value: the negation of "equal".
            c.sql("NOT ").append(column_test(
                expr,
                nullable,
                value_type,
                &Test::Cmp(Cmp::Eq, value.clone()),
            ));
            return c;
        }
        _ => {}
    }
    c.sql("(");
    if nullable {
        c.sql(expr).sql(" IS NOT NULL AND ");
    }
    let bound = |c: &mut SqlCondition, v: &Scalar| {
        if let (true, Scalar::Text(t)) = (text, v) {
            c.bind(Scalar::Text(mailbaar_store::fold(t)));
        } else {
            c.bind(v.clone());
        }
    };
    match test {
        Test::Cmp(cmp, v) => {
            c.sql(&operand).sql(" ").sql(cmp.sql()).sql(" ");
            bound(&mut c, v);
        }
        Test::Between(a, b) => {
            c.sql(&operand).sql(" >= ");
            bound(&mut c, a);
            c.sql(" AND ").sql(&operand).sql(" <= ");
            bound(&mut c, b);
        }
        Test::In(items) => {
            c.sql(&operand).sql(" IN (");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    c.sql(", ");
                }
                bound(&mut c, v);
            }
            c.sql(")");
        }
        Test::Contains(s) | Test::StartsWith(s) => {
            let lead = if matches!(test, Test::Contains(_)) {
                "%"
            } else {
                ""
            };
            let pattern = format!(
                "{lead}{}%",
                mailbaar_store::escape_like(&mailbaar_store::fold(s))
            );
            c.sql(&operand)
                .sql(" LIKE ")
                .bind(Scalar::Text(pattern))
                .sql(" ESCAPE '\\'");
        }
        Test::IsEmpty | Test::IsNotEmpty => unreachable!("handled above"),
    }
    c.sql(")");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(kind: FieldKind, value_type: ValueType) -> Source {
        Source {
            kind,
            value_type,
            transaction_kind: None,
            step_id: None,
            since: None,
        }
    }

    #[test]
    fn values_are_never_in_the_text() {
        let evil = "x'); DROP TABLE persons;--";
        let rule = Rule::Leaf(
            source(
                FieldKind::Column {
                    column: "city",
                    nullable: true,
                },
                ValueType::Text,
            ),
            Test::Contains(evil.into()),
        );
        let (text, binds) = compile(&rule).debug_text();
        assert!(!text.contains("DROP"), "{text}");
        assert_eq!(binds, 1);
    }

    #[test]
    fn negation_is_pushed_to_membership() {
        let consent = Rule::Leaf(
            source(FieldKind::ConsentCurrent(1), ValueType::Boolean),
            Test::Cmp(Cmp::Eq, Scalar::Bool(true)),
        );
        let (text, _) = compile(&Rule::Not(Box::new(consent))).debug_text();
        assert!(text.contains("NOT EXISTS"), "{text}");
        assert!(!text.contains("NOT persons.id IN"), "{text}");
    }

    #[test]
    fn counts_that_hold_for_zero_exclude_the_failing_set() {
        let pressure = Rule::Leaf(
            source(FieldKind::ContactPressure, ValueType::Integer),
            Test::Cmp(Cmp::Lt, Scalar::Int(3)),
        );
        let (text, _) = compile(&pressure).debug_text();
        assert!(text.contains("NOT EXISTS"), "{text}");
        assert!(text.contains("HAVING NOT (COUNT(*) < ?)"), "{text}");
    }
}
