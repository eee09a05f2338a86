//! Campaign steps: one e-mail each, with its sender, content, blocks, selection and the
//! opt-in type it mails for. A step may be saved unfinished; its readiness says what is
//! missing before it can be sent (mailing manual §2).

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use mailbaar_query::Node;
use mailbaar_store::schema::{campaign_steps, campaigns, mail_jobs, opt_in_types, saved_queries};
use mailbaar_store::{now, DbConnection, Page, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::status::MailJobStatus;
use crate::CampaignError;

/// Most blocks one step may have (each is a bit of the recipient row).
pub const MAX_BLOCKS: usize = 32;
/// Most characters of a step's HTML or text template.
pub const MAX_TEMPLATE_CHARS: usize = 200_000;

mailbaar_store::text_enum! {
    /// Whether a step is sent once (then blocked until reset) or again and again.
    #[derive(Default)]
    #[schema(example = "one_time")]
    pub enum SendKind as "send kind" {
        /// Sent once; blocked after its send until `POST …/reset` (manual §4.3).
        #[default]
        OneTime = "one_time",
        /// May be sent any number of times (e.g. a welcome mail sent weekly to newcomers).
        Repeatable = "repeatable",
    }
}

/// Where a step stands, from its latest mail job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "draft")]
pub enum StepStatus {
    /// Not sent, or ready to be sent again.
    Draft,
    /// A mail job waits for its time.
    Scheduled,
    /// The mail job's content and recipients are being frozen.
    Preparing,
    /// Messages are going out.
    Sending,
    /// The latest mail job has sent every message.
    Sent,
}

/// A named part of the content shown only to recipients matching its condition
/// (`{% if blocks.NAME %}` in the templates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "donors", "condition":
    {"field": "transactions.count", "op": "ge", "value": 1, "kind": "donation"}}))]
pub struct StepBlock {
    /// Letters, digits and `_`, not starting with a digit; unique in the step.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// A condition tree over persons; `null`: every recipient.
    #[serde(default)]
    #[schema(value_type = Option<Node>)]
    pub condition: Option<Value>,
}

/// A campaign step as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "campaign_id": 3, "name": "December newsletter",
    "from_name": "Stichting Voorbeeld", "from_email": "nieuws@example.org", "reply_to": null,
    "subject": "Hallo {{ person.first_name | default('lezer') }}", "preheader": "Ons nieuws van december",
    "html": "<p>Beste {{ person.first_name }},</p><p><a href=\"{{ preferences_url }}\">Voorkeuren</a></p>",
    "text": null, "blocks": [], "query_id": 12, "opt_in_type_id": 1, "send_kind": "one_time",
    "track_clicks": true, "track_opens": true, "status": "draft", "blocked": false,
    "blocked_since": null, "last_mail_job_id": null, "created_by": "token:3:newsletter team",
    "created_at": "2026-11-23T09:00:00Z", "updated_at": "2026-11-23T09:00:00Z"}))]
pub struct CampaignStep {
    pub id: i64,
    pub campaign_id: i64,
    pub name: String,
    /// Display name of the sender.
    pub from_name: String,
    /// Sender address; required to send.
    pub from_email: Option<String>,
    /// Where replies go, when not to the sender.
    pub reply_to: Option<String>,
    /// Subject template; required to send.
    pub subject: String,
    /// Pre-header template: the hidden first text inboxes show after the subject.
    pub preheader: String,
    /// HTML body template (MiniJinja); must link `{{ preferences_url }}`.
    pub html: String,
    /// Plain-text body template; derived from the HTML when `null`.
    pub text: Option<String>,
    pub blocks: Vec<StepBlock>,
    /// The saved query that selects the recipients; required to send.
    pub query_id: Option<i64>,
    /// The opt-in type the step mails for: its one-click unsubscribe withdraws this type.
    pub opt_in_type_id: Option<i64>,
    pub send_kind: SendKind,
    /// Rewrite links to click-tracking redirects.
    pub track_clicks: bool,
    /// Add an open-tracking pixel.
    pub track_opens: bool,
    pub status: StepStatus,
    /// A one-time step that was sent: sending again needs a reset.
    pub blocked: bool,
    pub blocked_since: Option<DateTime<Utc>>,
    /// The step's latest mail job.
    pub last_mail_job_id: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A step to create; only the campaign and the name are required.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"campaign_id": 3, "name": "December newsletter",
    "from_name": "Stichting Voorbeeld", "from_email": "nieuws@example.org",
    "subject": "Hallo {{ person.first_name | default('lezer') }}",
    "html": "<p>Beste {{ person.first_name }},</p><p><a href=\"{{ preferences_url }}\">Voorkeuren</a></p>",
    "query_id": 12, "opt_in_type_id": 1, "send_kind": "one_time"}))]
pub struct NewStep {
    pub campaign_id: i64,
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(max_length = 200)]
    pub from_name: Option<String>,
    #[schema(max_length = 254, format = "email")]
    pub from_email: Option<String>,
    #[schema(max_length = 254, format = "email")]
    pub reply_to: Option<String>,
    #[schema(max_length = 1000)]
    pub subject: Option<String>,
    #[schema(max_length = 1000)]
    pub preheader: Option<String>,
    #[schema(max_length = 200000)]
    pub html: Option<String>,
    #[schema(max_length = 200000)]
    pub text: Option<String>,
    #[schema(max_items = 32)]
    pub blocks: Option<Vec<StepBlock>>,
    pub query_id: Option<i64>,
    pub opt_in_type_id: Option<i64>,
    /// Default `one_time`.
    pub send_kind: Option<SendKind>,
    /// Default `true`.
    pub track_clicks: Option<bool>,
    /// Default `true`.
    pub track_opens: Option<bool>,
}

/// A change to a step: a field left out keeps its value; `null` clears a field that may
/// be empty (`from_email`, `reply_to`, `text`, `query_id`, `opt_in_type_id`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": "Ons nieuws van december", "reply_to": null}))]
pub struct StepChanges {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 200)]
    pub from_name: Option<String>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 254, format = "email")]
    pub from_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 254, format = "email")]
    pub reply_to: Option<Option<String>>,
    #[schema(max_length = 1000)]
    pub subject: Option<String>,
    #[schema(max_length = 1000)]
    pub preheader: Option<String>,
    #[schema(max_length = 200000)]
    pub html: Option<String>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<String>, max_length = 200000)]
    pub text: Option<Option<String>>,
    #[schema(max_items = 32)]
    pub blocks: Option<Vec<StepBlock>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<i64>)]
    pub query_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "mailbaar_store::present")]
    #[schema(value_type = Option<i64>)]
    pub opt_in_type_id: Option<Option<i64>>,
    pub send_kind: Option<SendKind>,
    pub track_clicks: Option<bool>,
    pub track_opens: Option<bool>,
}

/// Filters for the list of steps.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct StepFilter {
    /// Only the steps of this campaign.
    #[param(example = 3)]
    pub campaign_id: Option<i64>,
    /// Part of the name (ignoring case), or the step's id.
    #[param(example = "december", max_length = 200)]
    pub q: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = campaign_steps)]
pub(crate) struct StepRow {
    pub id: i64,
    pub campaign_id: i64,
    pub name: String,
    pub from_name: String,
    pub from_email: Option<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub preheader: String,
    pub html: String,
    pub text_body: Option<String>,
    pub blocks: String,
    pub query_id: Option<i64>,
    pub opt_in_type_id: Option<i64>,
    pub send_kind: SendKind,
    pub track_clicks: bool,
    pub track_opens: bool,
    pub blocked_since: Option<NaiveDateTime>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl StepRow {
    pub(crate) fn blocks(&self) -> Vec<StepBlock> {
        serde_json::from_str(&self.blocks).unwrap_or_default()
    }

    pub(crate) fn send_kind(&self) -> SendKind {
        self.send_kind
    }

    /// The content as the rendering crate takes it.
    pub(crate) fn render_step(&self) -> mailbaar_render::Step {
        mailbaar_render::Step {
            name: self.name.clone(),
            subject: self.subject.clone(),
            preheader: self.preheader.clone(),
            html: self.html.clone(),
            text: self.text_body.clone(),
            from_name: self.from_name.clone(),
            from_email: self.from_email.clone().unwrap_or_default(),
            reply_to: self.reply_to.clone(),
            track_clicks: self.track_clicks,
            track_opens: self.track_opens,
            blocks: self
                .blocks()
                .into_iter()
                .map(|b| mailbaar_render::Block {
                    name: b.name,
                    condition: b.condition,
                })
                .collect(),
        }
    }
}

/// Reads a step's row. Errors: `NotFound`.
pub(crate) fn step_row(conn: &mut DbConnection, id: i64) -> Result<StepRow, CampaignError> {
    campaign_steps::table
        .find(id)
        .select(StepRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(CampaignError::NotFound {
            what: "campaign step",
            id,
        })
}

/// Reads a step's row, locked against concurrent sends and resets on PostgreSQL (SQLite's
/// write transaction already holds the database).
pub(crate) fn lock_step(conn: &mut DbConnection, id: i64) -> Result<StepRow, CampaignError> {
    mailbaar_store::lock_rows(conn, "campaign_steps", &[id])?;
    step_row(conn, id)
}

fn to_step(conn: &mut DbConnection, row: StepRow) -> Result<CampaignStep, CampaignError> {
    let last: Option<(i64, String)> = mail_jobs::table
        .filter(mail_jobs::step_id.eq(row.id))
        .order(mail_jobs::id.desc())
        .select((mail_jobs::id, mail_jobs::status))
        .first(conn)
        .optional()?;
    let last_status: Option<MailJobStatus> = match &last {
        Some((_, s)) => Some(
            s.parse()
                .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?,
        ),
        None => None,
    };
    let status = match last_status {
        Some(MailJobStatus::Scheduled) => StepStatus::Scheduled,
        Some(MailJobStatus::Preparing | MailJobStatus::Prepared) => StepStatus::Preparing,
        Some(MailJobStatus::Sending) => StepStatus::Sending,
        Some(MailJobStatus::Sent) => StepStatus::Sent,
        Some(MailJobStatus::Cancelled | MailJobStatus::Failed) | None => StepStatus::Draft,
    };
    let blocks = row.blocks();
    let send_kind = row.send_kind();
    Ok(CampaignStep {
        id: row.id,
        campaign_id: row.campaign_id,
        name: row.name,
        from_name: row.from_name,
        from_email: row.from_email,
        reply_to: row.reply_to,
        subject: row.subject,
        preheader: row.preheader,
        html: row.html,
        text: row.text_body,
        blocks,
        query_id: row.query_id,
        opt_in_type_id: row.opt_in_type_id,
        send_kind,
        track_clicks: row.track_clicks,
        track_opens: row.track_opens,
        status,
        blocked: row.blocked_since.is_some(),
        blocked_since: row.blocked_since.map(|t| t.and_utc()),
        last_mail_job_id: last.map(|(id, _)| id),
        created_by: row.created_by,
        created_at: row.created_at.and_utc(),
        updated_at: row.updated_at.and_utc(),
    })
}

/// One step. Errors: `NotFound`.
pub fn get_step(conn: &mut DbConnection, id: i64) -> Result<CampaignStep, CampaignError> {
    let row = step_row(conn, id)?;
    to_step(conn, row)
}

/// Steps, newest first; of one campaign, or whose name contains `q` or whose id is `q`.
pub fn list_steps(
    conn: &mut DbConnection,
    filter: &StepFilter,
    page: PageRequest,
) -> Result<Page<CampaignStep>, CampaignError> {
    let search = crate::search::NameFilter::parse(filter.q.as_deref())?;
    let build = || {
        let mut q = campaign_steps::table.into_boxed();
        if let Some(c) = filter.campaign_id {
            q = q.filter(campaign_steps::campaign_id.eq(c));
        }
        if let Some((pattern, id)) = search.parts() {
            q = q.filter(
                crate::search::folded_like!("campaign_steps.name", pattern)
                    .or(campaign_steps::id.eq(id.unwrap_or(-1))),
            );
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let rows: Vec<StepRow> = build()
        .order(campaign_steps::id.desc())
        .limit(page.limit())
        .offset(page.offset())
        .select(StepRow::as_select())
        .load(conn)?;
    let items = rows
        .into_iter()
        .map(|r| to_step(conn, r))
        .collect::<Result<_, _>>()?;
    Ok(Page::new(items, total, page))
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String, CampaignError> {
    mailbaar_store::clean_text(value, max)
        .map(Option::unwrap_or_default)
        .map_err(|p| CampaignError::invalid(field, format!("at most {max} characters: {p}")))
}

fn template(field: &'static str, value: &str) -> Result<String, CampaignError> {
    // Templates keep their line ends and tabs; only the length and NUL are checked.
    if value.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(CampaignError::invalid(
            field,
            format!("at most {MAX_TEMPLATE_CHARS} characters"),
        ));
    }
    if value.contains('\0') {
        return Err(CampaignError::invalid(field, "contains a NUL character"));
    }
    Ok(value.to_owned())
}

fn address(field: &'static str, value: &str) -> Result<String, CampaignError> {
    let v = value.trim();
    if !mailbaar_people::is_valid_email(v) {
        return Err(CampaignError::invalid(field, "not a valid e-mail address"));
    }
    Ok(v.to_owned())
}

fn one_line(field: &'static str, value: &str, max: usize) -> Result<String, CampaignError> {
    if value.contains(['\r', '\n']) {
        return Err(CampaignError::invalid(field, "must be one line"));
    }
    if value.chars().count() > max {
        return Err(CampaignError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn check_blocks(conn: &mut DbConnection, blocks: &[StepBlock]) -> Result<String, CampaignError> {
    if blocks.len() > MAX_BLOCKS {
        return Err(CampaignError::invalid(
            "blocks",
            format!("at most {MAX_BLOCKS} blocks"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, b) in blocks.iter().enumerate() {
        let ok = !b.name.is_empty()
            && b.name.len() <= 64
            && b.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !b.name.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(CampaignError::invalid(
                "blocks",
                format!("block {i}: the name must be 1 to 64 letters, digits and _, not starting with a digit"),
            ));
        }
        if !seen.insert(b.name.as_str()) {
            return Err(CampaignError::invalid(
                "blocks",
                format!("block {i}: the name {:?} is used twice", b.name),
            ));
        }
        if let Some(tree) = &b.condition {
            let node = Node::parse(tree).map_err(|issues| {
                CampaignError::invalid(
                    "blocks",
                    format!(
                        "block {:?}: {}",
                        b.name,
                        issues
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                )
            })?;
            mailbaar_query::Selection::prepare(conn, &node).map_err(|e| match e {
                mailbaar_query::QueryError::InvalidConditions(_) => {
                    CampaignError::invalid("blocks", format!("block {:?}: {e}", b.name))
                }
                other => other.into(),
            })?;
        }
    }
    Ok(serde_json::to_string(blocks).expect("blocks serialize"))
}

fn check_refs(
    conn: &mut DbConnection,
    campaign: Option<i64>,
    query: Option<i64>,
    opt_in_type: Option<i64>,
) -> Result<(), CampaignError> {
    if let Some(c) = campaign {
        let found: i64 = campaigns::table.find(c).count().get_result(conn)?;
        if found == 0 {
            return Err(CampaignError::invalid(
                "campaign_id",
                format!("campaign {c} does not exist"),
            ));
        }
    }
    if let Some(q) = query {
        let found: i64 = saved_queries::table.find(q).count().get_result(conn)?;
        if found == 0 {
            return Err(CampaignError::invalid(
                "query_id",
                format!("saved query {q} does not exist"),
            ));
        }
    }
    if let Some(t) = opt_in_type {
        let found: i64 = opt_in_types::table.find(t).count().get_result(conn)?;
        if found == 0 {
            return Err(CampaignError::invalid(
                "opt_in_type_id",
                format!("opt-in type {t} does not exist"),
            ));
        }
    }
    Ok(())
}

/// Creates a step in a campaign. Errors: `Invalid` naming the field (unknown campaign,
/// query or opt-in type included).
pub fn create_step(
    conn: &mut DbConnection,
    new: NewStep,
    by: &str,
) -> Result<CampaignStep, CampaignError> {
    let name = mailbaar_store::clean_required_text(&new.name, 200)
        .map_err(|p| CampaignError::invalid("name", format!("1 to 200 characters: {p}")))?;
    let from_name = text("from_name", new.from_name.as_deref().unwrap_or(""), 200)?;
    let from_email = new
        .from_email
        .as_deref()
        .map(|v| address("from_email", v))
        .transpose()?;
    let reply_to = new
        .reply_to
        .as_deref()
        .map(|v| address("reply_to", v))
        .transpose()?;
    let subject = one_line("subject", new.subject.as_deref().unwrap_or(""), 1000)?;
    let preheader = one_line("preheader", new.preheader.as_deref().unwrap_or(""), 1000)?;
    let html = template("html", new.html.as_deref().unwrap_or(""))?;
    let text_body = new
        .text
        .as_deref()
        .map(|t| template("text", t))
        .transpose()?;
    let t = now();
    mailbaar_store::write_transaction(conn, |conn| {
        check_refs(
            conn,
            Some(new.campaign_id),
            new.query_id,
            new.opt_in_type_id,
        )?;
        let blocks = check_blocks(conn, new.blocks.as_deref().unwrap_or(&[]))?;
        let id = diesel::insert_into(campaign_steps::table)
            .values((
                campaign_steps::campaign_id.eq(new.campaign_id),
                campaign_steps::name.eq(&name),
                campaign_steps::from_name.eq(&from_name),
                campaign_steps::from_email.eq(&from_email),
                campaign_steps::reply_to.eq(&reply_to),
                campaign_steps::subject.eq(&subject),
                campaign_steps::preheader.eq(&preheader),
                campaign_steps::html.eq(&html),
                campaign_steps::text_body.eq(&text_body),
                campaign_steps::blocks.eq(&blocks),
                campaign_steps::query_id.eq(new.query_id),
                campaign_steps::opt_in_type_id.eq(new.opt_in_type_id),
                campaign_steps::send_kind.eq(new.send_kind.unwrap_or_default().as_str()),
                campaign_steps::track_clicks.eq(new.track_clicks.unwrap_or(true)),
                campaign_steps::track_opens.eq(new.track_opens.unwrap_or(true)),
                campaign_steps::created_by.eq(by),
                campaign_steps::created_at.eq(t),
                campaign_steps::updated_at.eq(t),
            ))
            .returning(campaign_steps::id)
            .get_result::<i64>(conn)?;
        get_step(conn, id)
    })
}

/// Changes a step. Content edits never reach a mail job whose preparation has started
/// (it sends the content frozen then). Errors: `NotFound`, `Invalid` naming the field.
pub fn update_step(
    conn: &mut DbConnection,
    id: i64,
    changes: StepChanges,
) -> Result<CampaignStep, CampaignError> {
    let name = changes
        .name
        .as_deref()
        .map(|n| {
            mailbaar_store::clean_required_text(n, 200)
                .map_err(|p| CampaignError::invalid("name", format!("1 to 200 characters: {p}")))
        })
        .transpose()?;
    let from_name = changes
        .from_name
        .as_deref()
        .map(|v| text("from_name", v, 200))
        .transpose()?;
    let from_email = changes
        .from_email
        .as_ref()
        .map(|v| v.as_deref().map(|a| address("from_email", a)).transpose())
        .transpose()?;
    let reply_to = changes
        .reply_to
        .as_ref()
        .map(|v| v.as_deref().map(|a| address("reply_to", a)).transpose())
        .transpose()?;
    let subject = changes
        .subject
        .as_deref()
        .map(|v| one_line("subject", v, 1000))
        .transpose()?;
    let preheader = changes
        .preheader
        .as_deref()
        .map(|v| one_line("preheader", v, 1000))
        .transpose()?;
    let html = changes
        .html
        .as_deref()
        .map(|v| template("html", v))
        .transpose()?;
    let text_body = changes
        .text
        .as_ref()
        .map(|v| v.as_deref().map(|t| template("text", t)).transpose())
        .transpose()?;
    mailbaar_store::write_transaction(conn, |conn| {
        let mut row = lock_step(conn, id)?;
        check_refs(
            conn,
            None,
            changes.query_id.flatten(),
            changes.opt_in_type_id.flatten(),
        )?;
        if let Some(blocks) = &changes.blocks {
            row.blocks = check_blocks(conn, blocks)?;
        }
        if let Some(v) = name {
            row.name = v;
        }
        if let Some(v) = from_name {
            row.from_name = v;
        }
        if let Some(v) = from_email {
            row.from_email = v;
        }
        if let Some(v) = reply_to {
            row.reply_to = v;
        }
        if let Some(v) = subject {
            row.subject = v;
        }
        if let Some(v) = preheader {
            row.preheader = v;
        }
        if let Some(v) = html {
            row.html = v;
        }
        if let Some(v) = text_body {
            row.text_body = v;
        }
        if let Some(v) = changes.query_id {
            row.query_id = v;
        }
        if let Some(v) = changes.opt_in_type_id {
            row.opt_in_type_id = v;
        }
        if let Some(v) = changes.send_kind {
            if v != row.send_kind() {
                let active: i64 = mail_jobs::table
                    .filter(mail_jobs::step_id.eq(id))
                    .filter(mail_jobs::status.eq_any(MailJobStatus::ACTIVE))
                    .count()
                    .get_result(conn)?;
                if row.blocked_since.is_some() || active > 0 {
                    return Err(CampaignError::SendKindLocked { id });
                }
            }
            row.send_kind = v;
        }
        if let Some(v) = changes.track_clicks {
            row.track_clicks = v;
        }
        if let Some(v) = changes.track_opens {
            row.track_opens = v;
        }
        diesel::update(campaign_steps::table.find(id))
            .set((
                campaign_steps::name.eq(&row.name),
                campaign_steps::from_name.eq(&row.from_name),
                campaign_steps::from_email.eq(&row.from_email),
                campaign_steps::reply_to.eq(&row.reply_to),
                campaign_steps::subject.eq(&row.subject),
                campaign_steps::preheader.eq(&row.preheader),
                campaign_steps::html.eq(&row.html),
                campaign_steps::text_body.eq(&row.text_body),
                campaign_steps::blocks.eq(&row.blocks),
                campaign_steps::query_id.eq(row.query_id),
                campaign_steps::opt_in_type_id.eq(row.opt_in_type_id),
                campaign_steps::send_kind.eq(&row.send_kind),
                campaign_steps::track_clicks.eq(row.track_clicks),
                campaign_steps::track_opens.eq(row.track_opens),
                campaign_steps::updated_at.eq(now()),
            ))
            .execute(conn)?;
        get_step(conn, id)
    })
}

/// Deletes a step that never had a mail job. Errors: `NotFound`; `StepHasJobs` once it has
/// one (its results and contact moments stay with it).
pub fn delete_step(conn: &mut DbConnection, id: i64) -> Result<(), CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        lock_step(conn, id)?;
        let jobs: i64 = mail_jobs::table
            .filter(mail_jobs::step_id.eq(id))
            .count()
            .get_result(conn)?;
        if jobs > 0 {
            return Err(CampaignError::StepHasJobs { id, jobs });
        }
        diesel::delete(
            mailbaar_store::schema::contact_moments::table
                .filter(mailbaar_store::schema::contact_moments::step_id.eq(id))
                .filter(mailbaar_store::schema::contact_moments::is_test.eq(true)),
        )
        .execute(conn)?;
        diesel::delete(campaign_steps::table.find(id)).execute(conn)?;
        Ok(())
    })
}
