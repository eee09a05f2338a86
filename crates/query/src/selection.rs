//! Running a condition tree: count, a page of persons with chosen columns, or every id.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_store::schema::persons;
use mailbaar_store::{DbConnection, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::compile::{compile, SqlCondition};
use crate::error::Issue;
use crate::fields::Registry;
use crate::resolve::{Resolver, Rule};
use crate::saved::load_saved;
use crate::tree::Node;
use crate::QueryError;

/// A checked, compiled tree, ready to count or list persons.
#[derive(Debug, Clone)]
pub struct Selection {
    condition: SqlCondition,
}

impl Selection {
    /// Checks and compiles a tree at the current time.
    pub fn prepare(conn: &mut DbConnection, tree: &Node) -> Result<Self, QueryError> {
        Self::prepare_at(conn, tree, mailbaar_store::now())
    }

    /// Checks and compiles a tree as of `now` (periods such as "within the last 30 days"
    /// count back from it).
    pub fn prepare_at(
        conn: &mut DbConnection,
        tree: &Node,
        now: NaiveDateTime,
    ) -> Result<Self, QueryError> {
        let rule = resolve(conn, tree, now, None)?.map_err(QueryError::InvalidConditions)?;
        Ok(Self {
            condition: compile(&rule),
        })
    }

    /// How many persons the tree selects.
    pub fn count(&self, conn: &mut DbConnection) -> Result<i64, QueryError> {
        Ok(persons::table
            .filter(self.condition.clone())
            .count()
            .get_result(conn)?)
    }

    /// The ids of one page of the selected persons, in id order.
    pub fn page_ids(
        &self,
        conn: &mut DbConnection,
        page: PageRequest,
    ) -> Result<Vec<i64>, QueryError> {
        Ok(persons::table
            .filter(self.condition.clone())
            .order(persons::id)
            .limit(page.limit())
            .offset(page.offset())
            .select(persons::id)
            .load(conn)?)
    }

    /// Every selected id, in id order.
    pub fn all_ids(&self, conn: &mut DbConnection) -> Result<Vec<i64>, QueryError> {
        Ok(persons::table
            .filter(self.condition.clone())
            .order(persons::id)
            .select(persons::id)
            .load(conn)?)
    }

    /// The compiled condition over `persons`, for statements that select persons in SQL
    /// without loading their ids (a mail job's `INSERT … SELECT` of its recipients).
    pub fn condition(&self) -> SqlCondition {
        self.condition.clone()
    }

    /// The SQL condition with `?` placeholders and the number of bound values.
    pub fn sql(&self) -> (String, usize) {
        self.condition.debug_text()
    }
}

/// Checks a tree; `self_id` is the saved query being written, so that it cannot include
/// itself. The outer `Result` is a database failure, the inner one the tree's problems.
pub(crate) fn resolve(
    conn: &mut DbConnection,
    tree: &Node,
    now: NaiveDateTime,
    self_id: Option<i64>,
) -> Result<Result<Rule, Vec<Issue>>, QueryError> {
    let registry = Registry::load(conn)?;
    let settings = mailbaar_settings::load(conn)?;
    let mut load = |id: i64| load_saved(conn, id);
    let mut resolver = Resolver {
        registry: &registry,
        now,
        contact_pressure_days: settings.contact_pressure_days,
        load: &mut load,
        stack: self_id.into_iter().collect(),
        expanded_nodes: 0,
        cache: HashMap::new(),
    };
    Ok(resolver.resolve_tree(tree)?)
}

/// Person fields a run may return, as named on the person.
pub const RESULT_COLUMNS: [&str; 26] = [
    "id",
    "email",
    "first_name",
    "infix",
    "last_name",
    "street",
    "house_number",
    "postal_code",
    "city",
    "country",
    "phone",
    "mobile",
    "birth_date",
    "iban",
    "bsn",
    "deceased",
    "bouncer",
    "bouncer_at",
    "bouncer_reason",
    "is_test_person",
    "mailable",
    "anonymized_at",
    "full_unsubscribed_at",
    "consents",
    "created_at",
    "updated_at",
];

/// Columns returned when a run names none.
pub const DEFAULT_COLUMNS: [&str; 7] = [
    "id",
    "email",
    "first_name",
    "infix",
    "last_name",
    "city",
    "mailable",
];

/// Which page of a run to return and with which person fields.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"page": 1, "per_page": 50, "columns": ["id", "email", "city"]}))]
pub struct RunOptions {
    /// 1-based page number (default 1).
    // The literals are `PageRequest::MAX_PAGE` and `MAX_PER_PAGE`.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub page: Option<i64>,
    /// Persons per page, 1 to 500 (default 50).
    #[schema(minimum = 1, maximum = 500)]
    pub per_page: Option<i64>,
    /// Person fields to return; `id` is always included. Default: id, email, first_name,
    /// infix, last_name, city, mailable.
    pub columns: Option<Vec<String>>,
}

impl RunOptions {
    /// The page asked for; a value out of range is refused, naming it.
    fn page(&self) -> Result<PageRequest, QueryError> {
        PageRequest::checked(self.page, self.per_page).map_err(|issues| {
            let (field, reason) = issues.into_iter().next().expect("a refusal names a field");
            QueryError::Invalid { field, reason }
        })
    }

    fn columns(&self) -> Result<Vec<String>, QueryError> {
        let Some(asked) = &self.columns else {
            return Ok(DEFAULT_COLUMNS.map(String::from).to_vec());
        };
        let mut out = vec!["id".to_owned()];
        for c in asked {
            if !RESULT_COLUMNS.contains(&c.as_str()) {
                return Err(QueryError::Invalid {
                    field: "columns",
                    reason: format!("unknown column {c:?}; one of {}", RESULT_COLUMNS.join(", ")),
                });
            }
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        Ok(out)
    }
}

/// The answer of a run: how many persons the tree selects, and one page of them.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"count": 1834, "page": 1, "per_page": 2, "items": [
    {"id": 7, "email": "anna.devries@example.nl", "first_name": "Anna", "infix": "de",
     "last_name": "Vries", "city": "Amsterdam", "mailable": true},
    {"id": 9, "email": "bram@example.nl", "first_name": "Bram", "infix": null,
     "last_name": "Bakker", "city": "Utrecht", "mailable": true}]}))]
pub struct RunResult {
    pub count: i64,
    pub page: i64,
    pub per_page: i64,
    /// The page's persons in id order, each with the chosen columns.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Map<String, Value>>,
}

/// Counts a tree's persons and returns one page of them.
pub fn run(
    conn: &mut DbConnection,
    tree: &Node,
    options: &RunOptions,
) -> Result<RunResult, QueryError> {
    let columns = options.columns()?;
    let page = options.page()?;
    let selection = Selection::prepare(conn, tree)?;
    let count = selection.count(conn)?;
    let ids = selection.page_ids(conn, page)?;
    let persons = mailbaar_people::persons_by_ids(conn, &ids)?;
    let items = persons
        .into_iter()
        .map(|p| {
            let Ok(Value::Object(mut all)) = serde_json::to_value(p) else {
                unreachable!("a person serializes to an object")
            };
            columns
                .iter()
                .map(|c| (c.clone(), all.remove(c).unwrap_or(Value::Null)))
                .collect()
        })
        .collect();
    Ok(RunResult {
        count,
        page: page.page,
        per_page: page.per_page,
        items,
    })
}
