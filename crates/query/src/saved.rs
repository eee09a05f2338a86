//! Saved queries: named condition trees that staff find by name, run, copy and reuse in
//! other queries and in opt-in types.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mailbaar_consent::PersonSelector;
use mailbaar_store::schema::{
    campaign_steps, opt_in_types, retention_rules, saved_queries, saved_query_references,
};
use mailbaar_store::{now, DbConnection, Page, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::Issue;
use crate::selection::{resolve, Selection};
use crate::tree::Node;
use crate::QueryError;

/// A named, stored condition tree.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 12, "name": "AB – 20261123 – newsletter",
    "description": "Newsletter recipients: opted in, mailable, not mailed too often",
    "conditions": {"all": [{"field": "consent.1", "op": "eq", "value": true},
        {"field": "mailable", "op": "eq", "value": true},
        {"field": "contact_pressure", "op": "lt", "value": 3}]},
    "created_by": "token:3:newsletter team",
    "created_at": "2026-11-23T09:00:00Z", "updated_at": "2026-11-23T09:00:00Z"}))]
pub struct SavedQuery {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub conditions: Node,
    /// Who saved it first.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A query to save, or the new content of one to overwrite.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "AB – 20261123 – newsletter",
    "description": "Newsletter recipients",
    "conditions": {"all": [{"field": "consent.1", "op": "eq", "value": true},
        {"field": "mailable", "op": "eq", "value": true}]}}))]
pub struct SavedQueryInput {
    /// Unique (ignoring case), 1 to 200 characters. The manual's convention is
    /// `<initials> – <yyyymmdd> – <purpose>`; see `suggest_name`.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// The condition tree.
    #[schema(value_type = Node)]
    pub conditions: Value,
}

/// The name (and optionally description) of a copy.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "AB – 20261124 – newsletter December"}))]
pub struct QueryCopy {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Defaults to the original's description.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// Filters for the list of saved queries.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct SavedQueryFilter {
    /// Part of the name (ignoring case).
    #[param(example = "newsletter")]
    pub name: Option<String>,
}

#[derive(Queryable)]
struct Row {
    id: i64,
    name: String,
    description: String,
    conditions: String,
    created_by: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl Row {
    fn into_query(self) -> Result<SavedQuery, QueryError> {
        let conditions = parse_stored(&self.conditions)?;
        Ok(SavedQuery {
            id: self.id,
            name: self.name,
            description: self.description,
            conditions,
            created_by: self.created_by,
            created_at: self.created_at.and_utc(),
            updated_at: self.updated_at.and_utc(),
        })
    }
}

fn parse_stored(text: &str) -> Result<Node, DieselError> {
    serde_json::from_str(text).map_err(|e| DieselError::DeserializationError(Box::new(e)))
}

/// A saved query's name and tree, for expanding `in_query` conditions.
pub(crate) fn load_saved(
    conn: &mut DbConnection,
    id: i64,
) -> Result<Option<(String, Node)>, DieselError> {
    let row: Option<(String, String)> = saved_queries::table
        .find(id)
        .select((saved_queries::name, saved_queries::conditions))
        .first(conn)
        .optional()?;
    row.map(|(name, text)| Ok((name, parse_stored(&text)?)))
        .transpose()
}

fn clean_name(name: &str) -> Result<String, QueryError> {
    mailbaar_store::clean_required_text(name, 200).map_err(|p| QueryError::Invalid {
        field: "name",
        reason: format!("a name has 1 to 200 characters: {p}"),
    })
}

fn clean_description(d: &str) -> Result<String, QueryError> {
    Ok(mailbaar_store::clean_text(d, 2000)
        .map_err(|p| QueryError::Invalid {
            field: "description",
            reason: format!("at most 2000 characters: {p}"),
        })?
        .unwrap_or_default())
}

fn under(prefix: &str, issues: Vec<Issue>) -> QueryError {
    QueryError::InvalidConditions(
        issues
            .into_iter()
            .map(|i| Issue::new(&format!("{prefix}{}", i.path), i.reason))
            .collect(),
    )
}

/// Parses and checks a tree for saving as `self_id` (or a new query).
fn checked_tree(
    conn: &mut DbConnection,
    conditions: &Value,
    self_id: Option<i64>,
) -> Result<Node, QueryError> {
    let tree = Node::parse(conditions).map_err(|i| under("/conditions", i))?;
    resolve(conn, &tree, now(), self_id)?.map_err(|i| under("/conditions", i))?;
    Ok(tree)
}

fn map_unique(e: DieselError, name: &str) -> QueryError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            QueryError::DuplicateName(name.to_owned())
        }
        other => other.into(),
    }
}

fn write_references(conn: &mut DbConnection, id: i64, tree: &Node) -> Result<(), DieselError> {
    diesel::delete(saved_query_references::table.filter(saved_query_references::query_id.eq(id)))
        .execute(conn)?;
    for referenced in tree.referenced_queries() {
        diesel::insert_into(saved_query_references::table)
            .values((
                saved_query_references::query_id.eq(id),
                saved_query_references::referenced_id.eq(referenced),
            ))
            .execute(conn)?;
    }
    Ok(())
}

fn insert(
    conn: &mut DbConnection,
    name: &str,
    description: &str,
    tree: &Node,
    created_by: &str,
) -> Result<i64, QueryError> {
    let t = now();
    let text = serde_json::to_string(tree).expect("trees serialize");
    let id = diesel::insert_into(saved_queries::table)
        .values((
            saved_queries::name.eq(name),
            saved_queries::description.eq(description),
            saved_queries::conditions.eq(text),
            saved_queries::created_by.eq(created_by),
            saved_queries::created_at.eq(t),
            saved_queries::updated_at.eq(t),
        ))
        .returning(saved_queries::id)
        .get_result(conn)
        .map_err(|e| map_unique(e, name))?;
    write_references(conn, id, tree)?;
    Ok(id)
}

/// Saves a new query after checking its tree.
pub fn create_query(
    conn: &mut DbConnection,
    input: SavedQueryInput,
    created_by: &str,
) -> Result<SavedQuery, QueryError> {
    let name = clean_name(&input.name)?;
    let description = clean_description(&input.description)?;
    mailbaar_store::write_transaction(conn, |conn| {
        let tree = checked_tree(conn, &input.conditions, None)?;
        let id = insert(conn, &name, &description, &tree, created_by)?;
        get_query(conn, id)
    })
}

/// Overwrites a query's name, description and tree; a tree that would include the query
/// itself, directly or through others, is refused.
pub fn replace_query(
    conn: &mut DbConnection,
    id: i64,
    input: SavedQueryInput,
) -> Result<SavedQuery, QueryError> {
    let name = clean_name(&input.name)?;
    let description = clean_description(&input.description)?;
    mailbaar_store::write_transaction(conn, |conn| {
        get_query(conn, id)?;
        let tree = checked_tree(conn, &input.conditions, Some(id))?;
        diesel::update(saved_queries::table.find(id))
            .set((
                saved_queries::name.eq(&name),
                saved_queries::description.eq(&description),
                saved_queries::conditions
                    .eq(serde_json::to_string(&tree).expect("trees serialize")),
                saved_queries::updated_at.eq(now()),
            ))
            .execute(conn)
            .map_err(|e| map_unique(e, &name))?;
        write_references(conn, id, &tree)?;
        get_query(conn, id)
    })
}

/// Saves a copy of a query under a new name ("save as").
pub fn copy_query(
    conn: &mut DbConnection,
    id: i64,
    copy: QueryCopy,
    created_by: &str,
) -> Result<SavedQuery, QueryError> {
    let name = clean_name(&copy.name)?;
    mailbaar_store::write_transaction(conn, |conn| {
        let original = get_query(conn, id)?;
        let description = match &copy.description {
            Some(d) => clean_description(d)?,
            None => original.description.clone(),
        };
        let id = insert(conn, &name, &description, &original.conditions, created_by)?;
        get_query(conn, id)
    })
}

/// Reads one saved query.
pub fn get_query(conn: &mut DbConnection, id: i64) -> Result<SavedQuery, QueryError> {
    saved_queries::table
        .find(id)
        .first::<Row>(conn)
        .optional()?
        .ok_or(QueryError::NotFound(id))?
        .into_query()
}

/// Saved queries, by name, optionally those whose name contains a text.
pub fn list_queries(
    conn: &mut DbConnection,
    filter: &SavedQueryFilter,
    page: PageRequest,
) -> Result<Page<SavedQuery>, QueryError> {
    if let Some(name) = filter.name.as_deref() {
        mailbaar_store::check_search_text(name).map_err(|p| QueryError::Invalid {
            field: "name",
            reason: p.to_string(),
        })?;
    }
    let build = || {
        let mut q = saved_queries::table.into_boxed();
        if let Some(part) = filter
            .name
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let pattern = format!(
                "%{}%",
                mailbaar_store::escape_like(&mailbaar_store::fold(part))
            );
            q = q.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "mailbaar_fold(saved_queries.name) LIKE ",
                )
                .bind::<diesel::sql_types::Text, _>(pattern)
                .sql(" ESCAPE '\\'"),
            );
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let items = build()
        .order((saved_queries::name, saved_queries::id))
        .limit(page.limit())
        .offset(page.offset())
        .load::<Row>(conn)?
        .into_iter()
        .map(Row::into_query)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::new(items, total, page))
}

/// Deletes a query that nothing uses; otherwise says what uses it.
/// Whether a JSON condition tree (or a list of blocks holding them) has an `in_query` or
/// `not_in_query` condition on saved query `id`.
fn names_query(tree: &Value, id: i64) -> bool {
    match tree {
        Value::Object(map) => {
            let is_ref = matches!(
                map.get("field").and_then(Value::as_str),
                Some("in_query" | "not_in_query")
            ) && map.get("value").and_then(Value::as_i64) == Some(id);
            is_ref || map.values().any(|v| names_query(v, id))
        }
        Value::Array(items) => items.iter().any(|v| names_query(v, id)),
        _ => false,
    }
}

pub fn delete_query(conn: &mut DbConnection, id: i64) -> Result<(), QueryError> {
    mailbaar_store::write_transaction(conn, |conn| {
        get_query(conn, id)?;
        let mut uses: Vec<String> = opt_in_types::table
            .filter(opt_in_types::soft_query_id.eq(id))
            .select((opt_in_types::id, opt_in_types::name))
            .load::<(i64, String)>(conn)?
            .into_iter()
            .map(|(t, name)| format!("opt-in type {name:?} (id {t}) assigns soft opt-ins from it"))
            .collect();
        uses.extend(
            retention_rules::table
                .filter(retention_rules::query_id.eq(id))
                .select((retention_rules::id, retention_rules::name))
                .load::<(i64, String)>(conn)?
                .into_iter()
                .map(|(r, name)| format!("retention rule {name:?} (id {r}) selects with it")),
        );
        uses.extend(
            campaign_steps::table
                .filter(campaign_steps::query_id.eq(id))
                .select((campaign_steps::id, campaign_steps::name))
                .load::<(i64, String)>(conn)?
                .into_iter()
                .map(|(s, name)| format!("campaign step {name:?} (id {s}) mails its persons")),
        );
        // Blocks of steps are condition trees too; they may include or exclude it.
        let with_blocks: Vec<(i64, String, String)> = campaign_steps::table
            .filter(campaign_steps::blocks.like("%in_query%"))
            .select((
                campaign_steps::id,
                campaign_steps::name,
                campaign_steps::blocks,
            ))
            .load(conn)?;
        for (s, name, blocks) in with_blocks {
            let tree: Value = serde_json::from_str(&blocks).unwrap_or(Value::Null);
            if names_query(&tree, id) {
                uses.push(format!(
                    "a block of campaign step {name:?} (id {s}) uses it"
                ));
            }
        }
        uses.extend(
            saved_query_references::table
                .inner_join(
                    saved_queries::table.on(saved_queries::id.eq(saved_query_references::query_id)),
                )
                .filter(saved_query_references::referenced_id.eq(id))
                .select((saved_queries::id, saved_queries::name))
                .load::<(i64, String)>(conn)?
                .into_iter()
                .map(|(q, name)| format!("saved query {name:?} (id {q}) includes or excludes it")),
        );
        if !uses.is_empty() {
            return Err(QueryError::InUse { id, uses });
        }
        diesel::delete(
            saved_query_references::table.filter(saved_query_references::query_id.eq(id)),
        )
        .execute(conn)?;
        diesel::delete(saved_queries::table.find(id)).execute(conn)?;
        Ok(())
    })
}

/// A name in the manual's convention: `<initials> – <yyyymmdd> – <purpose>`.
pub fn suggest_name(initials: &str, purpose: &str, on: chrono::NaiveDate) -> String {
    format!(
        "{} – {} – {}",
        initials.trim().to_uppercase(),
        on.format("%Y%m%d"),
        purpose.trim()
    )
}

/// Selects persons for soft opt-ins from a saved query.
pub struct SavedQuerySelector;

impl PersonSelector for SavedQuerySelector {
    fn select(
        &self,
        conn: &mut DbConnection,
        query_id: i64,
    ) -> Result<Vec<i64>, mailbaar_consent::SelectionError> {
        let run = |conn: &mut DbConnection| -> Result<Vec<i64>, QueryError> {
            let query = get_query(conn, query_id)?;
            Selection::prepare(conn, &query.conditions)?.all_ids(conn)
        };
        run(conn).map_err(Into::into)
    }
}
