//! The condition tree as clients send it, and its structural parsing with a JSON-pointer
//! path for every problem, so an editor can point at the offending node.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::error::Issue;
use crate::resolve::{MAX_IN_VALUES, MAX_TEXT};

/// A condition tree: a group (`all`, `any`, `not`) or one condition.
///
/// Its schema (see the `ToSchema` impl below) is a `oneOf` of named schemas, each of which
/// refers back to `Node`, so that client generators can follow the recursion.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Node {
    /// Every child holds (an empty list selects everyone).
    All { all: Vec<Node> },
    /// At least one child holds (an empty list selects no one).
    Any { any: Vec<Node> },
    /// The child does not hold.
    Not { not: Box<Node> },
    /// One rule: a field, an operator and a value.
    Condition(Condition),
}

impl PartialSchema for Node {
    // `example`, like every derived schema of the contract.
    #[allow(deprecated)]
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(Ref::from_schema_name(AllGroup::name()))
            .item(Ref::from_schema_name(AnyGroup::name()))
            .item(Ref::from_schema_name(NotGroup::name()))
            .item(Ref::from_schema_name(Condition::name()))
            .description(Some(format!(
                "A condition tree: a group (`all`, `any`, `not`) or one condition. Groups nest \
                 at most {MAX_DEPTH} levels deep and a tree has at most {MAX_NODES} nodes."
            )))
            .example(Some(json!({"all": [
                {"field": "consent.1", "op": "eq", "value": true},
                {"field": "mailable", "op": "eq", "value": true},
                {"field": "contact_pressure", "op": "lt", "value": 3},
                {"not": {"any": [
                    {"field": "city", "op": "in", "value": ["Utrecht", "Zeist"]},
                    {"field": "not_in_query", "op": "eq", "value": 12}]}}
            ]})))
            .into()
    }
}

impl ToSchema for Node {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        // The groups refer back to `Node` without collecting it again (`no_recursion`).
        schemas.push((AllGroup::name().into(), AllGroup::schema()));
        schemas.push((AnyGroup::name().into(), AnyGroup::schema()));
        schemas.push((NotGroup::name().into(), NotGroup::schema()));
        schemas.push((Condition::name().into(), Condition::schema()));
        <AllGroup as ToSchema>::schemas(schemas);
        <AnyGroup as ToSchema>::schemas(schemas);
        <NotGroup as ToSchema>::schemas(schemas);
        <Condition as ToSchema>::schemas(schemas);
    }
}

// The groups as the contract names them. Only their schemas are used: a `Node` is read by
// `Node::parse`, which reports problems with their paths.

/// A group of which every child holds (an empty list selects everyone).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"all": [
    {"field": "consent.1", "op": "eq", "value": true},
    {"field": "city", "op": "eq", "value": "Utrecht"}]}))]
#[allow(dead_code)]
struct AllGroup {
    #[schema(no_recursion)]
    all: Vec<Node>,
}

/// A group of which at least one child holds (an empty list selects no one).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"any": [
    {"field": "city", "op": "eq", "value": "Utrecht"},
    {"field": "transactions.count", "op": "ge", "value": 2, "kind": "donation"}]}))]
#[allow(dead_code)]
struct AnyGroup {
    #[schema(no_recursion)]
    any: Vec<Node>,
}

/// A group whose one child does not hold.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"not": {"field": "deceased", "op": "eq", "value": true}}))]
#[allow(dead_code)]
struct NotGroup {
    #[schema(no_recursion)]
    not: Box<Node>,
}

/// One rule of a query. `kind`, `step_id` and `within_days` narrow the fields that count
/// transactions or contact moments; the field registry says which field takes which.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"field": "transactions.count", "op": "ge", "value": 2,
    "kind": "donation", "within_days": 365}))]
pub struct Condition {
    /// A field name from `GET /api/v1/query-fields`.
    pub field: String,
    pub op: Op,
    /// The operand; absent (or `null`) for `is_empty` and `is_not_empty`, `[a, b]` for
    /// `between`, a list for `in`, a number of days for `within_last_days`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ConditionValue>)]
    pub value: Option<Value>,
    /// Transaction kind (e.g. `donation`), for `transactions.*` fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Campaign step, for `contact_moments.*` fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<i64>,
    /// Count only the last N days, for counting fields.
    // The literal is `MAX_DAYS`; a test keeps them equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36500)]
    pub within_days: Option<i64>,
}

/// The schema of a condition's `value`: one scalar, or a list of them. In Rust the value
/// stays JSON until validation types it for its field.
#[allow(dead_code)]
enum ConditionValue {}

impl PartialSchema for ConditionValue {
    #[allow(deprecated)]
    fn schema() -> RefOr<Schema> {
        let mut one_of = OneOfBuilder::new();
        for item in scalar_schemas() {
            one_of = one_of.item(item);
        }
        one_of
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(ConditionScalar::name()))
                    .min_items(Some(1))
                    .max_items(Some(MAX_IN_VALUES))
                    .description(Some(format!(
                        "`[from, to]` for `between`; 1 to {MAX_IN_VALUES} values for `in`"
                    ))),
            )
            .description(Some(
                "A condition's operand: `true`/`false`, a whole number, a text (also dates as \
                 `YYYY-MM-DD` and moments as RFC 3339), or a list of those. Which one a field \
                 takes is its `value_type` in `GET /api/v1/query-fields`.",
            ))
            .example(Some(json!(["Utrecht", "Zeist"])))
            .into()
    }
}

impl ToSchema for ConditionValue {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ConditionScalar::name().into(), ConditionScalar::schema()));
    }
}

/// The schema of one value in a condition's list.
#[allow(dead_code)]
enum ConditionScalar {}

impl PartialSchema for ConditionScalar {
    #[allow(deprecated)]
    fn schema() -> RefOr<Schema> {
        let mut one_of = OneOfBuilder::new();
        for item in scalar_schemas() {
            one_of = one_of.item(item);
        }
        one_of
            .description(Some(
                "One value of a condition: `true`/`false`, a whole number or a text.",
            ))
            .example(Some(json!("Utrecht")))
            .into()
    }
}

impl ToSchema for ConditionScalar {}

/// The scalars a condition's value may be, each with what it is for.
fn scalar_schemas() -> [Schema; 3] {
    let boolean = ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .description(Some("For boolean fields and `consent.<id>`"))
        .build();
    let integer = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some(
            "For integer fields, saved-query ids and days of `within_last_days`",
        ))
        .build();
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_TEXT))
        .description(Some("For text, date and date-time fields"))
        .build();
    [boolean, integer, text].map(Schema::Object)
}

/// A comparison operator. `between` takes `[from, to]` (inclusive), `in` a list,
/// `within_last_days` a number of days; `ne` also matches persons without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "ge")]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Between,
    In,
    Contains,
    StartsWith,
    IsEmpty,
    IsNotEmpty,
    WithinLastDays,
}

impl Op {
    pub const ALL: [Op; 13] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Between,
        Op::In,
        Op::Contains,
        Op::StartsWith,
        Op::IsEmpty,
        Op::IsNotEmpty,
        Op::WithinLastDays,
    ];

    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Le => "le",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Between => "between",
            Op::In => "in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::IsEmpty => "is_empty",
            Op::IsNotEmpty => "is_not_empty",
            Op::WithinLastDays => "within_last_days",
        }
    }

    fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

/// The deepest nesting of groups one tree may have.
pub const MAX_DEPTH: usize = 12;
/// The most nodes one tree may have.
pub const MAX_NODES: usize = 500;

impl Node {
    /// Parses a tree from JSON, reporting every structural problem with its path.
    pub fn parse(value: &Value) -> Result<Node, Vec<Issue>> {
        let mut issues = Vec::new();
        let mut nodes = 0;
        let node = parse_node(value, "", 1, &mut nodes, &mut issues);
        if nodes > MAX_NODES {
            issues.push(Issue::new(
                "",
                format!("the tree has {nodes} nodes; at most {MAX_NODES} are allowed"),
            ));
        }
        match node {
            Some(node) if issues.is_empty() => Ok(node),
            _ => Err(issues),
        }
    }

    /// The ids of the saved queries this tree includes or excludes directly.
    pub fn referenced_queries(&self) -> Vec<i64> {
        let mut out = Vec::new();
        self.visit(&mut |c| {
            if matches!(c.field.as_str(), "in_query" | "not_in_query") {
                if let Some(id) = c.value.as_ref().and_then(Value::as_i64) {
                    out.push(id);
                }
            }
        });
        out.sort_unstable();
        out.dedup();
        out
    }

    fn visit(&self, f: &mut impl FnMut(&Condition)) {
        match self {
            Node::All { all: children } | Node::Any { any: children } => {
                children.iter().for_each(|c| c.visit(f))
            }
            Node::Not { not } => not.visit(f),
            Node::Condition(c) => f(c),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Node::parse(&value).map_err(|issues| {
            serde::de::Error::custom(
                issues
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }
}

const CONDITION_KEYS: [&str; 6] = ["field", "op", "value", "kind", "step_id", "within_days"];

fn parse_node(
    value: &Value,
    path: &str,
    depth: usize,
    nodes: &mut usize,
    issues: &mut Vec<Issue>,
) -> Option<Node> {
    *nodes += 1;
    let Some(object) = value.as_object() else {
        issues.push(Issue::new(
            path,
            "expected an object: a group (all, any, not) or a condition (field, op, value)",
        ));
        return None;
    };
    let group_keys: Vec<&str> = ["all", "any", "not"]
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect();
    if !group_keys.is_empty() {
        if object.len() != 1 {
            issues.push(Issue::new(
                path,
                "a group has exactly one key: all, any or not",
            ));
            return None;
        }
        if depth > MAX_DEPTH {
            issues.push(Issue::new(
                path,
                format!("groups are nested deeper than {MAX_DEPTH} levels"),
            ));
            return None;
        }
        let key = group_keys[0];
        let child_path = format!("{path}/{key}");
        let inner = &object[key];
        if key == "not" {
            return parse_node(inner, &child_path, depth + 1, nodes, issues)
                .map(|n| Node::Not { not: Box::new(n) });
        }
        let Some(items) = inner.as_array() else {
            issues.push(Issue::new(&child_path, "expected a list of nodes"));
            return None;
        };
        let children: Vec<Option<Node>> = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                parse_node(item, &format!("{child_path}/{i}"), depth + 1, nodes, issues)
            })
            .collect();
        let children: Option<Vec<Node>> = children.into_iter().collect();
        return children.map(|c| {
            if key == "all" {
                Node::All { all: c }
            } else {
                Node::Any { any: c }
            }
        });
    }
    let before = issues.len();
    for key in object.keys() {
        if !CONDITION_KEYS.contains(&key.as_str()) {
            issues.push(Issue::new(
                &format!("{path}/{key}"),
                format!("unknown key; a condition has {}", CONDITION_KEYS.join(", ")),
            ));
        }
    }
    let field = match object.get("field") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            issues.push(Issue::new(
                &format!("{path}/field"),
                "expected a field name",
            ));
            None
        }
        None => {
            issues.push(Issue::new(
                &format!("{path}/field"),
                "a condition needs a field",
            ));
            None
        }
    };
    let op = match object.get("op") {
        Some(Value::String(s)) => match Op::parse(s) {
            Some(op) => Some(op),
            None => {
                issues.push(Issue::new(
                    &format!("{path}/op"),
                    format!(
                        "unknown operator {s:?}; one of {}",
                        Op::ALL.map(Op::as_str).join(", ")
                    ),
                ));
                None
            }
        },
        Some(_) => {
            issues.push(Issue::new(
                &format!("{path}/op"),
                "expected an operator name",
            ));
            None
        }
        None => {
            issues.push(Issue::new(&format!("{path}/op"), "a condition needs an op"));
            None
        }
    };
    let kind = match object.get("kind") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            issues.push(Issue::new(&format!("{path}/kind"), "expected a text"));
            None
        }
    };
    let mut integer = |key: &str| match object.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(n),
            None => {
                issues.push(Issue::new(
                    &format!("{path}/{key}"),
                    "expected a whole number",
                ));
                None
            }
        },
    };
    let step_id = integer("step_id");
    let within_days = integer("within_days");
    if issues.len() > before {
        return None;
    }
    Some(Node::Condition(Condition {
        field: field?,
        op: op?,
        value: object.get("value").filter(|v| !v.is_null()).cloned(),
        kind,
        step_id,
        within_days,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_serializes_back() {
        let v = json!({"all": [
            {"field": "city", "op": "eq", "value": "Utrecht"},
            {"not": {"any": [{"field": "deceased", "op": "eq", "value": true}]}},
            {"field": "transactions.count", "op": "ge", "value": 2, "kind": "donation", "within_days": 30}
        ]});
        let node = Node::parse(&v).unwrap();
        assert_eq!(serde_json::to_value(&node).unwrap(), v);
    }

    #[test]
    fn reports_paths() {
        let v = json!({"all": [
            {"field": "city", "op": "equals", "value": "Utrecht"},
            {"any": [{"op": "eq"}, 3]},
            {"all": [], "any": []}
        ]});
        let issues = Node::parse(&v).unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/all/0/op", "/all/1/any/0/field", "/all/1/any/1", "/all/2"]
        );
    }

    #[test]
    fn refuses_deep_trees() {
        let mut v = json!({"field": "city", "op": "is_empty"});
        for _ in 0..MAX_DEPTH + 1 {
            v = json!({ "not": v });
        }
        let issues = Node::parse(&v).unwrap_err();
        assert!(issues[0].reason.contains("deeper than"), "{issues:?}");
    }

    #[test]
    fn the_documented_limits_are_the_enforced_ones() {
        let condition = serde_json::to_value(Condition::schema()).unwrap();
        let days = &condition["properties"]["within_days"];
        assert_eq!(days["minimum"], 1);
        assert_eq!(days["maximum"], crate::MAX_DAYS);
        let value = serde_json::to_value(ConditionValue::schema()).unwrap();
        let list = value["oneOf"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(list["maxItems"], MAX_IN_VALUES);
        let scalar = serde_json::to_value(ConditionScalar::schema()).unwrap();
        assert_eq!(scalar["oneOf"][2]["maxLength"], MAX_TEXT);
    }

    #[test]
    fn the_documented_examples_are_trees() {
        let schemas = [
            Node::schema(),
            AllGroup::schema(),
            AnyGroup::schema(),
            NotGroup::schema(),
            Condition::schema(),
        ];
        for schema in schemas {
            let example = serde_json::to_value(schema).unwrap()["example"].clone();
            assert!(Node::parse(&example).is_ok(), "{example}");
        }
    }

    #[test]
    fn lists_referenced_queries() {
        let v = json!({"any": [{"field": "in_query", "op": "eq", "value": 4},
            {"not": {"field": "not_in_query", "op": "eq", "value": 2}},
            {"field": "in_query", "op": "eq", "value": 4}]});
        assert_eq!(Node::parse(&v).unwrap().referenced_queries(), [2, 4]);
    }
}
