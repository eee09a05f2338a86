use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mailbaar_store::schema::{campaign_steps, consent_records, opt_in_types, saved_queries};
use mailbaar_store::{now, DbConnection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ConsentError;

mailbaar_store::text_enum! {
    /// The purpose a consent is for; several types may share a kind (e.g. two newsletters).
    #[schema(example = "newsletter")]
    pub enum OptInKind as "opt-in kind" {
        Newsletter = "newsletter",
        ServiceMail = "service_mail",
        Profiling = "profiling",
        DirectMail = "direct_mail",
        Custom = "custom",
    }
}

/// An opt-in type: a purpose people can consent to.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "kind": "newsletter", "name": "Newsletter",
    "description": "The general newsletter", "active": true, "soft_query_id": null,
    "created_at": "2026-11-23T09:00:00Z", "updated_at": "2026-11-23T09:00:00Z"}))]
pub struct OptInType {
    pub id: i64,
    pub kind: OptInKind,
    pub name: String,
    pub description: String,
    /// Inactive types keep their history but take no new records.
    pub active: bool,
    /// The saved query whose persons get an automatic (soft) opt-in or opt-out.
    pub soft_query_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = opt_in_types)]
struct TypeRow {
    id: i64,
    kind: OptInKind,
    name: String,
    description: String,
    active: bool,
    soft_query_id: Option<i64>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl From<TypeRow> for OptInType {
    fn from(r: TypeRow) -> Self {
        OptInType {
            id: r.id,
            kind: r.kind,
            name: r.name,
            description: r.description,
            active: r.active,
            soft_query_id: r.soft_query_id,
            created_at: r.created_at.and_utc(),
            updated_at: r.updated_at.and_utc(),
        }
    }
}

/// An opt-in type to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "newsletter", "name": "Children's newsletter",
    "description": "Monthly tips for young readers"}))]
pub struct NewOptInType {
    pub kind: OptInKind,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: String,
    #[serde(default = "yes")]
    pub active: bool,
    pub soft_query_id: Option<i64>,
}

fn yes() -> bool {
    true
}

/// A partial update of an opt-in type; its kind never changes.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "Monthly, in Dutch and English", "active": true}))]
pub struct OptInTypeChanges {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub active: Option<bool>,
    /// `null` removes the soft opt-in query.
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<i64>)]
    pub soft_query_id: Option<Option<i64>>,
}

fn clean_name(name: &str) -> Result<String, ConsentError> {
    mailbaar_store::clean_required_text(name, 100)
        .map_err(|p| ConsentError::invalid("name", format!("1 to 100 characters: {p}")))
}

fn clean_description(d: &str) -> Result<String, ConsentError> {
    Ok(mailbaar_store::clean_text(d, 500)
        .map_err(|p| ConsentError::invalid("description", format!("at most 500 characters: {p}")))?
        .unwrap_or_default())
}

fn map_unique(e: DieselError, name: &str) -> ConsentError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            ConsentError::DuplicateName(name.to_owned())
        }
        other => other.into(),
    }
}

/// Refuses a soft opt-in query that does not exist (SQLite has no foreign key for it).
fn check_soft_query(conn: &mut DbConnection, query_id: Option<i64>) -> Result<(), ConsentError> {
    let Some(id) = query_id else { return Ok(()) };
    let exists: i64 = saved_queries::table
        .filter(saved_queries::id.eq(id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Err(ConsentError::invalid(
            "soft_query_id",
            format!("saved query {id} does not exist"),
        ));
    }
    Ok(())
}

/// Creates an opt-in type.
pub fn create_type(conn: &mut DbConnection, new: NewOptInType) -> Result<OptInType, ConsentError> {
    let name = clean_name(&new.name)?;
    let description = clean_description(&new.description)?;
    check_soft_query(conn, new.soft_query_id)?;
    let t = now();
    let id: i64 = diesel::insert_into(opt_in_types::table)
        .values((
            opt_in_types::kind.eq(new.kind),
            opt_in_types::name.eq(&name),
            opt_in_types::description.eq(&description),
            opt_in_types::active.eq(new.active),
            opt_in_types::soft_query_id.eq(new.soft_query_id),
            opt_in_types::created_at.eq(t),
            opt_in_types::updated_at.eq(t),
        ))
        .returning(opt_in_types::id)
        .get_result(conn)
        .map_err(|e| map_unique(e, &name))?;
    get_type(conn, id)
}

/// Reads one opt-in type.
pub fn get_type(conn: &mut DbConnection, id: i64) -> Result<OptInType, ConsentError> {
    opt_in_types::table
        .find(id)
        .select(TypeRow::as_select())
        .first(conn)
        .optional()?
        .map(OptInType::from)
        .ok_or(ConsentError::TypeNotFound(id))
}

/// All opt-in types in creation order.
pub fn list_types(conn: &mut DbConnection) -> Result<Vec<OptInType>, ConsentError> {
    Ok(opt_in_types::table
        .order(opt_in_types::id)
        .select(TypeRow::as_select())
        .load(conn)?
        .into_iter()
        .map(OptInType::from)
        .collect())
}

/// The first active type of a kind: the standard newsletter, service-mail or profiling type.
pub fn standard_type(
    conn: &mut DbConnection,
    kind: OptInKind,
) -> Result<Option<OptInType>, ConsentError> {
    Ok(opt_in_types::table
        .filter(opt_in_types::kind.eq(kind))
        .filter(opt_in_types::active.eq(true))
        .order(opt_in_types::id)
        .select(TypeRow::as_select())
        .first(conn)
        .optional()?
        .map(OptInType::from))
}

#[derive(AsChangeset)]
#[diesel(table_name = opt_in_types)]
struct TypeChanges {
    name: Option<String>,
    description: Option<String>,
    active: Option<bool>,
    soft_query_id: Option<Option<i64>>,
    updated_at: NaiveDateTime,
}

/// Changes an opt-in type's name, description, active flag or soft query.
pub fn update_type(
    conn: &mut DbConnection,
    id: i64,
    changes: OptInTypeChanges,
) -> Result<OptInType, ConsentError> {
    let values = TypeChanges {
        name: changes.name.as_deref().map(clean_name).transpose()?,
        description: changes
            .description
            .as_deref()
            .map(clean_description)
            .transpose()?,
        active: changes.active,
        soft_query_id: changes.soft_query_id,
        updated_at: now(),
    };
    let name = values.name.clone().unwrap_or_default();
    mailbaar_store::write_transaction(conn, |conn| {
        get_type(conn, id)?;
        check_soft_query(conn, values.soft_query_id.flatten())?;
        diesel::update(opt_in_types::table.find(id))
            .set(&values)
            .execute(conn)
            .map_err(|e| map_unique(e, &name))?;
        get_type(conn, id)
    })
}

/// Deletes a type that no record refers to; a type with history can only be deactivated.
pub fn delete_type(conn: &mut DbConnection, id: i64) -> Result<(), ConsentError> {
    mailbaar_store::write_transaction(conn, |conn| {
        get_type(conn, id)?;
        let steps: Vec<(i64, String)> = campaign_steps::table
            .filter(campaign_steps::opt_in_type_id.eq(id))
            .select((campaign_steps::id, campaign_steps::name))
            .load(conn)?;
        if !steps.is_empty() {
            return Err(ConsentError::TypeReferenced {
                id,
                uses: steps
                    .into_iter()
                    .map(|(s, name)| format!("campaign step {name:?} (id {s}) mails for it"))
                    .collect(),
            });
        }
        // Saved queries that select on the type's consent would stop running.
        let queries: Vec<(i64, String, String)> = saved_queries::table
            .filter(saved_queries::conditions.like(format!("%\"consent.{id}%")))
            .select((
                saved_queries::id,
                saved_queries::name,
                saved_queries::conditions,
            ))
            .load(conn)?;
        let field = format!("consent.{id}");
        let uses: Vec<String> = queries
            .into_iter()
            .filter(|(_, _, c)| {
                c.match_indices(&field)
                    .any(|(i, _)| matches!(c[i + field.len()..].chars().next(), Some('"' | '.')))
            })
            .map(|(q, name, _)| format!("saved query {name:?} (id {q}) selects on it"))
            .collect();
        if !uses.is_empty() {
            return Err(ConsentError::TypeReferenced { id, uses });
        }
        let used: i64 = consent_records::table
            .filter(consent_records::opt_in_type_id.eq(id))
            .count()
            .get_result(conn)?;
        if used > 0 {
            return Err(ConsentError::TypeInUse(id));
        }
        diesel::delete(opt_in_types::table.find(id)).execute(conn)?;
        Ok(())
    })
}
