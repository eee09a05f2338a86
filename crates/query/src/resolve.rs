//! Validation: a parsed tree checked against the field registry and turned into a typed
//! rule tree, with saved queries expanded in place (cycles and missing queries refused).
//! Every problem is reported with its path; nothing reaches SQL that was not checked here.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, SubsecRound};
use mailbaar_store::{time_in_range as in_range, TIME_YEARS};
use serde_json::Value;

use crate::error::Issue;
use crate::fields::{Field, FieldKind, Parameter, Registry, ValueType};
use crate::tree::{Condition, Node, Op};

/// How deep saved queries may include each other.
pub const MAX_QUERY_NESTING: usize = 8;
/// The most conditions a tree may have once its saved queries are expanded.
pub const MAX_EXPANDED_NODES: usize = 5_000;
/// The most values an `in` list may hold.
pub const MAX_IN_VALUES: usize = 1_000;
/// The longest text value.
pub const MAX_TEXT: usize = 500;
/// The longest period in days (100 years).
pub const MAX_DAYS: i64 = 36_500;

/// A typed value, bound as a parameter when compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Text(String),
    Int(i64),
    Date(NaiveDate),
    Time(NaiveDateTime),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub fn sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "<>",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// What a condition tests, with values already typed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    Cmp(Cmp, Scalar),
    Between(Scalar, Scalar),
    In(Vec<Scalar>),
    Contains(String),
    StartsWith(String),
    IsEmpty,
    IsNotEmpty,
}

/// A field with its condition's parameters applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Source {
    pub kind: FieldKind,
    pub value_type: ValueType,
    pub transaction_kind: Option<String>,
    pub step_id: Option<i64>,
    /// Only rows at or after this time (from `within_days`, or the contact-pressure period).
    pub since: Option<NaiveDateTime>,
}

/// The checked tree that compilation turns into SQL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Leaf(Source, Test),
}

/// What validation needs besides the tree: the registry, the clock, the settings and a way
/// to read saved queries.
pub(crate) struct Resolver<'a> {
    pub registry: &'a Registry,
    pub now: NaiveDateTime,
    pub contact_pressure_days: i64,
    /// Reads a saved query's name and tree; `None` when it does not exist.
    pub load: &'a mut dyn FnMut(i64) -> Result<Option<(String, Node)>, diesel::result::Error>,
    /// Saved queries being expanded, outermost first, to refuse cycles.
    pub stack: Vec<i64>,
    pub expanded_nodes: usize,
    pub cache: HashMap<i64, (String, Node)>,
}

impl Resolver<'_> {
    /// Checks a whole tree; `Err` lists every problem found.
    pub fn resolve_tree(
        &mut self,
        node: &Node,
    ) -> Result<Result<Rule, Vec<Issue>>, diesel::result::Error> {
        let mut issues = Vec::new();
        let rule = self.resolve(node, "", &mut issues)?;
        Ok(match rule {
            Some(rule) if issues.is_empty() => Ok(rule),
            _ => Err(issues),
        })
    }

    fn resolve(
        &mut self,
        node: &Node,
        path: &str,
        issues: &mut Vec<Issue>,
    ) -> Result<Option<Rule>, diesel::result::Error> {
        self.expanded_nodes += 1;
        if self.expanded_nodes == MAX_EXPANDED_NODES + 1 {
            issues.push(Issue::new(
                path,
                format!("with its saved queries expanded the tree has more than {MAX_EXPANDED_NODES} nodes"),
            ));
        }
        if self.expanded_nodes > MAX_EXPANDED_NODES {
            return Ok(None);
        }
        Ok(match node {
            Node::All { all } => self
                .children(all, &format!("{path}/all"), issues)?
                .map(Rule::All),
            Node::Any { any } => self
                .children(any, &format!("{path}/any"), issues)?
                .map(Rule::Any),
            Node::Not { not } => self
                .resolve(not, &format!("{path}/not"), issues)?
                .map(|r| Rule::Not(Box::new(r))),
            Node::Condition(c) => self.condition(c, path, issues)?,
        })
    }

    fn children(
        &mut self,
        nodes: &[Node],
        path: &str,
        issues: &mut Vec<Issue>,
    ) -> Result<Option<Vec<Rule>>, diesel::result::Error> {
        let mut out = Vec::with_capacity(nodes.len());
        let mut ok = true;
        for (i, n) in nodes.iter().enumerate() {
            match self.resolve(n, &format!("{path}/{i}"), issues)? {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        Ok(ok.then_some(out))
    }

    fn condition(
        &mut self,
        c: &Condition,
        path: &str,
        issues: &mut Vec<Issue>,
    ) -> Result<Option<Rule>, diesel::result::Error> {
        let Some(field) = self.registry.resolve(&c.field) else {
            issues.push(Issue::new(
                &format!("{path}/field"),
                format!(
                    "unknown field {:?}; GET /api/v1/query-fields lists them",
                    c.field
                ),
            ));
            return Ok(None);
        };
        if !field.operators.contains(&c.op) {
            issues.push(Issue::new(
                &format!("{path}/op"),
                format!(
                    "{} is not allowed for {}; allowed: {}",
                    c.op.as_str(),
                    c.field,
                    field
                        .operators
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            return Ok(None);
        }
        let before = issues.len();
        let source = self.source(&field, c, path, issues);
        if let FieldKind::InQuery { include } = field.kind {
            return self.saved_query(c, include, path, issues);
        }
        let test = test(field.value_type, c, self.now, path, issues);
        if issues.len() > before {
            return Ok(None);
        }
        Ok(Some(Rule::Leaf(source, test.expect("checked above"))))
    }

    fn source(&self, field: &Field, c: &Condition, path: &str, issues: &mut Vec<Issue>) -> Source {
        let allowed = |p: Parameter| field.parameters.contains(&p);
        let mut refuse = |key: &str| {
            issues.push(Issue::new(
                &format!("{path}/{key}"),
                format!("{} does not take {key}", c.field),
            ))
        };
        if c.kind.is_some() && !allowed(Parameter::Kind) {
            refuse("kind");
        }
        if c.step_id.is_some() && !allowed(Parameter::StepId) {
            refuse("step_id");
        }
        if c.within_days.is_some() && !allowed(Parameter::WithinDays) {
            refuse("within_days");
        }
        if let Some(kind) = &c.kind {
            // The rule transactions are recorded with, so a kind that no transaction can
            // have is refused instead of matching nothing.
            let plain = kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if kind.is_empty() || kind.len() > 64 || !plain {
                issues.push(Issue::new(
                    &format!("{path}/kind"),
                    "a kind has 1 to 64 lower-case letters, digits or underscores",
                ));
            }
        }
        let mut since = None;
        if let Some(days) = c.within_days {
            if !(1..=MAX_DAYS).contains(&days) {
                issues.push(Issue::new(
                    &format!("{path}/within_days"),
                    format!("must be between 1 and {MAX_DAYS}"),
                ));
            } else {
                since = Some(days_before(self.now, days));
            }
        }
        if field.kind == FieldKind::ContactPressure {
            since = Some(days_before(self.now, self.contact_pressure_days));
        }
        Source {
            kind: field.kind.clone(),
            value_type: field.value_type,
            transaction_kind: c.kind.clone(),
            step_id: c.step_id,
            since,
        }
    }

    fn saved_query(
        &mut self,
        c: &Condition,
        include: bool,
        path: &str,
        issues: &mut Vec<Issue>,
    ) -> Result<Option<Rule>, diesel::result::Error> {
        let value_path = format!("{path}/value");
        let Some(id) = c.value.as_ref().and_then(Value::as_i64) else {
            issues.push(Issue::new(&value_path, "expected the id of a saved query"));
            return Ok(None);
        };
        if let Some(at) = self.stack.iter().position(|q| *q == id) {
            let chain: Vec<String> = self.stack[at..]
                .iter()
                .chain(std::iter::once(&id))
                .map(ToString::to_string)
                .collect();
            issues.push(Issue::new(
                &value_path,
                format!(
                    "saved query {id} would include itself: {}",
                    chain.join(" → ")
                ),
            ));
            return Ok(None);
        }
        if self.stack.len() >= MAX_QUERY_NESTING {
            issues.push(Issue::new(
                &value_path,
                format!("saved queries are nested deeper than {MAX_QUERY_NESTING} levels"),
            ));
            return Ok(None);
        }
        let saved = match self.cache.get(&id) {
            Some(s) => Some(s.clone()),
            None => {
                let loaded = (self.load)(id)?;
                if let Some(s) = &loaded {
                    self.cache.insert(id, s.clone());
                }
                loaded
            }
        };
        let Some((name, tree)) = saved else {
            issues.push(Issue::new(
                &value_path,
                format!("saved query {id} does not exist"),
            ));
            return Ok(None);
        };
        self.stack.push(id);
        let mut inner = Vec::new();
        let rule = self.resolve(&tree, "", &mut inner)?;
        self.stack.pop();
        for issue in inner {
            issues.push(Issue::new(
                &value_path,
                format!("in saved query {id} ({name}) at {issue}"),
            ));
        }
        Ok(rule.map(|r| if include { r } else { Rule::Not(Box::new(r)) }))
    }
}

fn days_before(now: NaiveDateTime, days: i64) -> NaiveDateTime {
    now.checked_sub_days(Days::new(days as u64))
        .unwrap_or(NaiveDateTime::MIN)
}

/// Types a condition's value for its field and operator.
fn test(
    value_type: ValueType,
    c: &Condition,
    now: NaiveDateTime,
    path: &str,
    issues: &mut Vec<Issue>,
) -> Option<Test> {
    let value_path = format!("{path}/value");
    let mut fail = |reason: String| {
        issues.push(Issue::new(&value_path, reason));
        None
    };
    let value = c.value.as_ref();
    match c.op {
        Op::IsEmpty | Op::IsNotEmpty => {
            if value.is_some() {
                return fail(format!("{} takes no value", c.op.as_str()));
            }
            Some(if c.op == Op::IsEmpty {
                Test::IsEmpty
            } else {
                Test::IsNotEmpty
            })
        }
        Op::WithinLastDays => {
            let days = match value.and_then(Value::as_i64) {
                Some(d) if (0..=MAX_DAYS).contains(&d) => d,
                _ => return fail(format!("expected a number of days from 0 to {MAX_DAYS}")),
            };
            let cutoff = days_before(now, days);
            Some(Test::Cmp(
                Cmp::Ge,
                match value_type {
                    ValueType::Date => Scalar::Date(cutoff.date()),
                    _ => Scalar::Time(cutoff),
                },
            ))
        }
        Op::Contains | Op::StartsWith => match value.and_then(Value::as_str) {
            Some(s) if s.contains('\0') => fail("a text cannot hold the NUL character".into()),
            Some(s) if !s.is_empty() && s.chars().count() <= MAX_TEXT => {
                Some(if c.op == Op::Contains {
                    Test::Contains(s.to_owned())
                } else {
                    Test::StartsWith(s.to_owned())
                })
            }
            _ => fail(format!("expected a text of 1 to {MAX_TEXT} characters")),
        },
        Op::Between => {
            let pair = value.and_then(Value::as_array).filter(|a| a.len() == 2);
            let Some(pair) = pair else {
                return fail("expected a list of two values [from, to]".into());
            };
            let a = scalar(value_type, &pair[0]);
            let b = scalar(value_type, &pair[1]);
            match (a, b) {
                (Ok(a), Ok(b)) if le(&a, &b) => Some(Test::Between(a, b)),
                (Ok(_), Ok(_)) => {
                    fail("the first value of between must not be after the second".into())
                }
                (Err(e), _) | (_, Err(e)) => fail(e),
            }
        }
        Op::In => {
            let Some(items) = value.and_then(Value::as_array).filter(|a| !a.is_empty()) else {
                return fail("expected a non-empty list".into());
            };
            if items.len() > MAX_IN_VALUES {
                return fail(format!("at most {MAX_IN_VALUES} values"));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match scalar(value_type, item) {
                    Ok(s) => out.push(s),
                    Err(e) => return fail(format!("item {i}: {e}")),
                }
            }
            Some(Test::In(out))
        }
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let Some(value) = value else {
                return fail(format!("{} needs a value", c.op.as_str()));
            };
            let cmp = match c.op {
                Op::Eq => Cmp::Eq,
                Op::Ne => Cmp::Ne,
                Op::Lt => Cmp::Lt,
                Op::Le => Cmp::Le,
                Op::Gt => Cmp::Gt,
                _ => Cmp::Ge,
            };
            match scalar(value_type, value) {
                Ok(s) => Some(Test::Cmp(cmp, s)),
                Err(e) => fail(e),
            }
        }
    }
}

fn le(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::Int(a), Scalar::Int(b)) => a <= b,
        (Scalar::Date(a), Scalar::Date(b)) => a <= b,
        (Scalar::Time(a), Scalar::Time(b)) => a <= b,
        (Scalar::Text(a), Scalar::Text(b)) => a <= b,
        _ => true,
    }
}

/// Reads one JSON value as the field's type.
fn scalar(value_type: ValueType, v: &Value) -> Result<Scalar, String> {
    match value_type {
        ValueType::Text => match v.as_str() {
            // Stored texts never hold control characters (NUL cannot even be stored).
            Some(s) if mailbaar_store::check_search_text(s).is_err() => {
                Err("a text cannot hold control characters".into())
            }
            Some(s) if s.chars().count() <= MAX_TEXT => Ok(Scalar::Text(s.to_owned())),
            Some(_) => Err(format!("at most {MAX_TEXT} characters")),
            None => Err("expected a text".into()),
        },
        ValueType::Integer | ValueType::QueryId => v
            .as_i64()
            .map(Scalar::Int)
            .ok_or_else(|| "expected a whole number".into()),
        ValueType::Boolean => v
            .as_bool()
            .map(Scalar::Bool)
            .ok_or_else(|| "expected true or false".into()),
        ValueType::Date => v
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .filter(|d| in_range(d.and_hms_opt(0, 0, 0).expect("midnight exists")))
            .map(Scalar::Date)
            .ok_or_else(|| {
                format!(
                    "expected a date as YYYY-MM-DD in the years {}–{}",
                    TIME_YEARS.start(),
                    TIME_YEARS.end()
                )
            }),
        ValueType::DateTime => {
            let wrong = || {
                format!(
                    "expected a date-time as RFC 3339 (2026-11-23T09:00:00Z) or a date, in the years {}–{}",
                    TIME_YEARS.start(),
                    TIME_YEARS.end()
                )
            };
            let s = v.as_str().ok_or_else(wrong)?;
            let t = match DateTime::parse_from_rfc3339(s) {
                Ok(t) => t.naive_utc().trunc_subsecs(6),
                Err(_) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| wrong())?
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists"),
            };
            if !in_range(t) {
                return Err(wrong());
            }
            Ok(Scalar::Time(t))
        }
    }
}
