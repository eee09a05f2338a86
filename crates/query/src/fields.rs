//! The field registry: the one list of what a condition may select on, with each field's
//! value type and operators. Condition editors read it from `GET /api/v1/query-fields`;
//! validation and compilation read it here.

use diesel::prelude::*;
use mailbaar_store::schema::opt_in_types;
use mailbaar_store::DbConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::tree::Op;
use crate::QueryError;

/// The type of a field's values, which decides how `value` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "integer")]
pub enum ValueType {
    /// A JSON string; compared without regard to case.
    Text,
    /// A whole number.
    Integer,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 (`2026-11-23T09:00:00Z`) or a date (midnight UTC).
    DateTime,
    Boolean,
    /// The id of a saved query.
    QueryId,
}

/// An optional key of a condition that narrows a counting field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "within_days")]
pub enum Parameter {
    /// Only transactions of this kind.
    Kind,
    /// Only contact moments of this campaign step.
    StepId,
    /// Only the last N days.
    WithinDays,
}

/// One field as condition editors see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"name": "contact_pressure", "label": "Contact pressure",
    "description": "E-mails received (test mails excluded) in the contact-pressure period",
    "value_type": "integer", "operators": ["eq", "ne", "lt", "le", "gt", "ge", "between", "in"],
    "parameters": []}))]
pub struct FieldInfo {
    /// The name used in a condition's `field`.
    pub name: String,
    /// A short label for people.
    pub label: String,
    pub description: String,
    pub value_type: ValueType,
    /// The operators this field accepts.
    pub operators: Vec<Op>,
    /// The optional condition keys this field accepts.
    pub parameters: Vec<Parameter>,
}

/// How a counting field over transactions aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Count,
    SumCents,
    LastAt,
}

/// Which contact moments a contact-moment field counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moments {
    Received,
    Opened,
    Clicked,
    LastAt,
}

/// What a field reads, before the condition's parameters are applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldKind {
    Column {
        column: &'static str,
        nullable: bool,
    },
    Mailable,
    ContactPressure,
    ConsentCurrent(i64),
    ConsentHistory {
        opt_in_type_id: i64,
        opt_in: bool,
    },
    Transactions(Aggregate),
    ContactMoments(Moments),
    InQuery {
        include: bool,
    },
    /// A column of `person_profiles`; persons without a profile never match.
    Profile {
        column: &'static str,
        nullable: bool,
    },
}

/// A resolved field: what it reads and what it accepts.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub kind: FieldKind,
    pub value_type: ValueType,
    pub operators: Vec<Op>,
    pub parameters: Vec<Parameter>,
}

use ValueType::*;

/// The query's value type of a person field.
fn value_type(t: mailbaar_people::fields::FieldType) -> ValueType {
    use mailbaar_people::fields::FieldType as F;
    match t {
        F::Integer => Integer,
        F::Text => Text,
        F::Date => Date,
        F::DateTime => DateTime,
        F::Boolean => Boolean,
    }
}

/// Profile figures conditions may use: column, nullable, label.
const PROFILE_COLUMNS: [(&str, bool, &str); 9] = [
    ("recency_days", true, "Days since the last transaction"),
    ("frequency", false, "Transactions in the last 12 months"),
    (
        "monetary_cents",
        false,
        "Transaction total of the last 12 months (cents)",
    ),
    ("r_score", false, "Recency score (1–5)"),
    ("f_score", false, "Frequency score (1–5)"),
    ("m_score", false, "Monetary score (1–5)"),
    ("rfm_score", false, "RFM score (3–15)"),
    ("opens_90d", false, "Opens in the last 90 days"),
    ("clicks_90d", false, "Clicks in the last 90 days"),
];

fn operators(value_type: ValueType, nullable: bool) -> Vec<Op> {
    use Op::*;
    let mut ops = match value_type {
        Text => vec![Eq, Ne, In, Contains, StartsWith],
        Integer => vec![Eq, Ne, Lt, Le, Gt, Ge, Between, In],
        Date => vec![Eq, Ne, Lt, Le, Gt, Ge, Between, WithinLastDays],
        DateTime => vec![Lt, Le, Gt, Ge, Between, WithinLastDays],
        Boolean => vec![Eq, Ne],
        QueryId => vec![Eq],
    };
    if nullable {
        ops.extend([IsEmpty, IsNotEmpty]);
    }
    ops
}

/// The registry for one database: the fixed fields plus one set per opt-in type.
#[derive(Debug, Clone)]
pub struct Registry {
    opt_in_types: Vec<(i64, String)>,
}

impl Registry {
    /// Reads the opt-in types, whose ids appear in the `consent.<id>` field names.
    pub fn load(conn: &mut DbConnection) -> Result<Self, QueryError> {
        let opt_in_types = opt_in_types::table
            .order(opt_in_types::id)
            .select((opt_in_types::id, opt_in_types::name))
            .load(conn)?;
        Ok(Self { opt_in_types })
    }

    /// Every field, for condition editors.
    pub fn fields(&self) -> Vec<FieldInfo> {
        let mut out = Vec::new();
        let mut push = |name: String, label: String, description: String| {
            let field = self
                .resolve(&name)
                .expect("registry lists only known fields");
            out.push(FieldInfo {
                name,
                label,
                description,
                value_type: field.value_type,
                operators: field.operators,
                parameters: field.parameters,
            });
        };
        for f in &mailbaar_people::fields::PERSON_FIELDS {
            push(
                f.name.into(),
                f.label.into(),
                format!("The person's {}", f.label.to_lowercase()),
            );
        }
        push(
            "mailable".into(),
            "Mailable".into(),
            "Has an e-mail address and is not a bouncer, deceased or anonymized".into(),
        );
        push(
            "contact_pressure".into(),
            "Contact pressure".into(),
            "E-mails received (test mails excluded) in the contact-pressure period of the settings"
                .into(),
        );
        for (id, name) in &self.opt_in_types {
            push(
                format!("consent.{id}"),
                format!("{name}: current consent"),
                format!("true when the latest {name} record is an opt-in, false when an opt-out; empty when there is none"),
            );
            push(
                format!("consent.{id}.opted_in_at"),
                format!("{name}: opted in at"),
                format!("Matches when any {name} opt-in was recorded at a time that satisfies the operator"),
            );
            push(
                format!("consent.{id}.opted_out_at"),
                format!("{name}: opted out at"),
                format!("Matches when any {name} opt-out was recorded at a time that satisfies the operator"),
            );
        }
        push(
            "transactions.count".into(),
            "Number of transactions".into(),
            "Transactions, optionally of one kind and within the last N days".into(),
        );
        push(
            "transactions.sum_cents".into(),
            "Transaction total (cents)".into(),
            "Sum of transaction amounts in cents, optionally of one kind and within the last N days".into(),
        );
        push(
            "transactions.last_at".into(),
            "Last transaction".into(),
            "When the latest transaction (optionally of one kind) took place".into(),
        );
        push(
            "contact_moments.received".into(),
            "Messages received".into(),
            "Contact moments (test mails excluded), optionally of one step and within the last N days".into(),
        );
        push(
            "contact_moments.opened".into(),
            "Messages opened".into(),
            "Contact moments that were opened, optionally of one step and within the last N days"
                .into(),
        );
        push(
            "contact_moments.clicked".into(),
            "Messages clicked".into(),
            "Contact moments with a click, optionally of one step and within the last N days"
                .into(),
        );
        push(
            "contact_moments.last_at".into(),
            "Last contact moment".into(),
            "When the latest contact moment (optionally of one step) took place".into(),
        );
        for (column, _, label) in PROFILE_COLUMNS {
            push(
                format!("profile.{column}"),
                format!("Profile: {}", label.to_lowercase()),
                format!("{label}; only persons with a calculated profile (a current profiling opt-in) match"),
            );
        }
        push(
            "in_query".into(),
            "In saved query".into(),
            "The person is selected by the saved query with this id".into(),
        );
        push(
            "not_in_query".into(),
            "Not in saved query".into(),
            "The person is not selected by the saved query with this id".into(),
        );
        out
    }

    /// The field with this name, if any.
    pub(crate) fn resolve(&self, name: &str) -> Option<Field> {
        use Parameter::*;
        let field = |kind, value_type, nullable, parameters: Vec<Parameter>| Field {
            kind,
            value_type,
            operators: operators(value_type, nullable),
            parameters,
        };
        if let Some(f) = mailbaar_people::fields::person_field(name) {
            let kind = FieldKind::Column {
                column: f.name,
                nullable: f.nullable,
            };
            return Some(field(kind, value_type(f.field_type), f.nullable, vec![]));
        }
        let counting = || operators(Integer, false);
        let fixed = match name {
            "mailable" => field(FieldKind::Mailable, Boolean, false, vec![]),
            "contact_pressure" => Field {
                kind: FieldKind::ContactPressure,
                value_type: Integer,
                operators: counting(),
                parameters: vec![],
            },
            "transactions.count" | "transactions.sum_cents" => Field {
                kind: FieldKind::Transactions(if name.ends_with("count") {
                    Aggregate::Count
                } else {
                    Aggregate::SumCents
                }),
                value_type: Integer,
                operators: counting(),
                parameters: vec![Kind, WithinDays],
            },
            "transactions.last_at" => field(
                FieldKind::Transactions(Aggregate::LastAt),
                DateTime,
                true,
                vec![Kind],
            ),
            "contact_moments.received" | "contact_moments.opened" | "contact_moments.clicked" => {
                Field {
                    kind: FieldKind::ContactMoments(match name {
                        "contact_moments.received" => Moments::Received,
                        "contact_moments.opened" => Moments::Opened,
                        _ => Moments::Clicked,
                    }),
                    value_type: Integer,
                    operators: counting(),
                    parameters: vec![StepId, WithinDays],
                }
            }
            "contact_moments.last_at" => field(
                FieldKind::ContactMoments(Moments::LastAt),
                DateTime,
                true,
                vec![StepId],
            ),
            "in_query" | "not_in_query" => field(
                FieldKind::InQuery {
                    include: name == "in_query",
                },
                QueryId,
                false,
                vec![],
            ),
            _ => {
                if let Some(column) = name.strip_prefix("profile.") {
                    let (column, nullable, _) = PROFILE_COLUMNS.iter().find(|c| c.0 == column)?;
                    return Some(field(
                        FieldKind::Profile {
                            column,
                            nullable: *nullable,
                        },
                        Integer,
                        *nullable,
                        vec![],
                    ));
                }
                return self.resolve_consent(name);
            }
        };
        Some(fixed)
    }

    fn resolve_consent(&self, name: &str) -> Option<Field> {
        let rest = name.strip_prefix("consent.")?;
        let (id, suffix) = match rest.split_once('.') {
            Some((id, suffix)) => (id, Some(suffix)),
            None => (rest, None),
        };
        let id: i64 = id.parse().ok()?;
        if !self.opt_in_types.iter().any(|(t, _)| *t == id) {
            return None;
        }
        match suffix {
            None => Some(Field {
                kind: FieldKind::ConsentCurrent(id),
                value_type: Boolean,
                operators: operators(Boolean, true),
                parameters: vec![],
            }),
            Some(s @ ("opted_in_at" | "opted_out_at")) => Some(Field {
                kind: FieldKind::ConsentHistory {
                    opt_in_type_id: id,
                    opt_in: s == "opted_in_at",
                },
                value_type: DateTime,
                operators: operators(DateTime, true),
                parameters: vec![],
            }),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_field_resolves_and_names_are_unique() {
        let registry = Registry {
            opt_in_types: vec![(1, "Newsletter".into()), (3, "Profiling".into())],
        };
        let fields = registry.fields();
        let mut names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"consent.3.opted_out_at"));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(
            registry.resolve("consent.2").is_none(),
            "type 2 does not exist"
        );
        assert!(registry.resolve("consent.1.other").is_none());
        assert!(registry.resolve("password").is_none());
    }
}
