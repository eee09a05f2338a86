//! Campaigns: named groups of campaign steps.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mailbaar_store::schema::{campaign_steps, campaigns};
use mailbaar_store::{now, DbConnection, Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::CampaignError;

/// A campaign: groups the steps (e-mails) of one effort, such as a year's newsletters.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 3, "name": "Newsletter 2026", "description": "Monthly newsletter",
    "steps": 4, "created_by": "token:3:newsletter team",
    "created_at": "2026-11-23T09:00:00Z", "updated_at": "2026-11-23T09:00:00Z"}))]
pub struct Campaign {
    pub id: i64,
    /// Unique, ignoring case.
    pub name: String,
    pub description: String,
    /// How many steps it has.
    pub steps: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A campaign to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Newsletter 2026", "description": "Monthly newsletter"}))]
pub struct NewCampaign {
    /// 1 to 200 characters, unique ignoring case.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
}

/// A change to a campaign; fields left out keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "Monthly newsletter for members and donors"}))]
pub struct CampaignChanges {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
}

/// Search for campaigns and steps: part of the name (ignoring case), or an id.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct NameSearch {
    /// Part of the name (ignoring case), or the id.
    #[param(example = "newsletter", max_length = 200)]
    pub q: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = campaigns)]
struct Row {
    id: i64,
    name: String,
    description: String,
    created_by: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

fn name(value: &str) -> Result<String, CampaignError> {
    mailbaar_store::clean_required_text(value, 200)
        .map_err(|p| CampaignError::invalid("name", format!("1 to 200 characters: {p}")))
}

fn description(value: &str) -> Result<String, CampaignError> {
    mailbaar_store::clean_text(value, 2000)
        .map(Option::unwrap_or_default)
        .map_err(|p| CampaignError::invalid("description", format!("at most 2000 characters: {p}")))
}

fn unique(e: DieselError, name: &str) -> CampaignError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            CampaignError::DuplicateName(name.to_owned())
        }
        other => other.into(),
    }
}

fn with_steps(conn: &mut DbConnection, row: Row) -> Result<Campaign, CampaignError> {
    let steps = campaign_steps::table
        .filter(campaign_steps::campaign_id.eq(row.id))
        .count()
        .get_result(conn)?;
    Ok(Campaign {
        id: row.id,
        name: row.name,
        description: row.description,
        steps,
        created_by: row.created_by,
        created_at: row.created_at.and_utc(),
        updated_at: row.updated_at.and_utc(),
    })
}

/// Creates a campaign. Errors: `Invalid` (name, description), `DuplicateName`.
pub fn create_campaign(
    conn: &mut DbConnection,
    new: NewCampaign,
    by: &str,
) -> Result<Campaign, CampaignError> {
    let name = name(&new.name)?;
    let description = description(&new.description)?;
    let t = now();
    let id = mailbaar_store::write_transaction(conn, |conn| {
        diesel::insert_into(campaigns::table)
            .values((
                campaigns::name.eq(&name),
                campaigns::description.eq(&description),
                campaigns::created_by.eq(by),
                campaigns::created_at.eq(t),
                campaigns::updated_at.eq(t),
            ))
            .returning(campaigns::id)
            .get_result::<i64>(conn)
    })
    .map_err(|e| unique(e, &name))?;
    get_campaign(conn, id)
}

/// One campaign. Errors: `NotFound`.
pub fn get_campaign(conn: &mut DbConnection, id: i64) -> Result<Campaign, CampaignError> {
    let row = campaigns::table
        .find(id)
        .select(Row::as_select())
        .first(conn)
        .optional()?
        .ok_or(CampaignError::NotFound {
            what: "campaign",
            id,
        })?;
    with_steps(conn, row)
}

/// Campaigns, newest first, optionally those whose name contains `q` or whose id is `q`.
pub fn list_campaigns(
    conn: &mut DbConnection,
    search: &NameSearch,
    page: PageRequest,
) -> Result<Page<Campaign>, CampaignError> {
    let filter = crate::search::NameFilter::parse(search.q.as_deref())?;
    let build = || {
        let mut q = campaigns::table.into_boxed();
        if let Some((pattern, id)) = filter.parts() {
            q = q.filter(
                crate::search::folded_like!("campaigns.name", pattern)
                    .or(campaigns::id.eq(id.unwrap_or(-1))),
            );
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let rows: Vec<Row> = build()
        .order(campaigns::id.desc())
        .limit(page.limit())
        .offset(page.offset())
        .select(Row::as_select())
        .load(conn)?;
    let items = rows
        .into_iter()
        .map(|r| with_steps(conn, r))
        .collect::<Result<_, _>>()?;
    Ok(Page::new(items, total, page))
}

/// Changes a campaign's name or description. Errors: `NotFound`, `Invalid`, `DuplicateName`.
pub fn update_campaign(
    conn: &mut DbConnection,
    id: i64,
    changes: CampaignChanges,
) -> Result<Campaign, CampaignError> {
    let new_name = changes.name.as_deref().map(name).transpose()?;
    let new_description = changes
        .description
        .as_deref()
        .map(description)
        .transpose()?;
    mailbaar_store::write_transaction(conn, |conn| {
        get_campaign(conn, id)?;
        let t = now();
        if let Some(n) = &new_name {
            diesel::update(campaigns::table.find(id))
                .set((campaigns::name.eq(n), campaigns::updated_at.eq(t)))
                .execute(conn)
                .map_err(|e| unique(e, n))?;
        }
        if let Some(d) = &new_description {
            diesel::update(campaigns::table.find(id))
                .set((campaigns::description.eq(d), campaigns::updated_at.eq(t)))
                .execute(conn)?;
        }
        get_campaign(conn, id)
    })
}

/// Deletes a campaign without steps. Errors: `NotFound`; `CampaignHasSteps` while it has steps.
pub fn delete_campaign(conn: &mut DbConnection, id: i64) -> Result<(), CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        let campaign = get_campaign(conn, id)?;
        if campaign.steps > 0 {
            return Err(CampaignError::CampaignHasSteps {
                id,
                steps: campaign.steps,
            });
        }
        diesel::delete(campaigns::table.find(id)).execute(conn)?;
        Ok(())
    })
}
