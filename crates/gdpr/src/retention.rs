//! Retention rules: continuous anonymization of the persons a saved query selects (for
//! example "no transaction and no contact moment for five years"). A dry run counts and
//! shows a sample and changes nothing; a run anonymizes in batches with progress. Every
//! run is recorded and audited.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mailbaar_query::{get_query, Selection};
use mailbaar_store::schema::{persons, retention_rules, retention_runs, saved_queries};
use mailbaar_store::{now, DbConnection};
use mailbaar_tasks::{next_hour, NewTask, Outcome, Task, TaskContext, TaskError, WorkError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{anonymize, scrub_free_space, GdprError};
use mailbaar_audit::record as record_audit;

/// Persons anonymized per batch between progress reports.
pub const RETENTION_BATCH: usize = 500;
/// The task kind of a retention run.
pub const RETENTION_RUN: &str = "retention.run";
/// The task kind of the hourly tick that queues the runs of daily rules.
pub const RETENTION_SCHEDULE: &str = "retention.schedule";

/// A retention rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 2, "name": "Five years without contact", "query_id": 14,
    "action": "anonymize", "schedule": "daily", "active": true,
    "created_by": "token:4:privacy desk", "created_at": "2026-11-23T09:00:00Z",
    "updated_at": "2026-11-23T09:00:00Z"}))]
pub struct RetentionRule {
    pub id: i64,
    pub name: String,
    /// The saved query that selects the persons.
    pub query_id: i64,
    pub action: RetentionAction,
    pub schedule: RetentionSchedule,
    pub active: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A rule to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Five years without contact", "query_id": 14,
    "schedule": "daily"}))]
pub struct NewRetentionRule {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub query_id: i64,
    /// `anonymize` (the default and, for now, the only action).
    #[serde(default)]
    pub action: RetentionAction,
    /// `manual` (default) or `daily`.
    #[serde(default)]
    pub schedule: RetentionSchedule,
}

mailbaar_store::text_enum! {
    /// What a rule does to the persons it selects; stored as text with a CHECK in SQL.
    #[derive(Default)]
    #[schema(example = "anonymize")]
    pub enum RetentionAction as "retention action" {
        /// Remove everything that identifies them (see `anonymize`).
        #[default]
        Anonymize = "anonymize",
    }
}

mailbaar_store::text_enum! {
    /// When a rule runs; stored as text with a CHECK in SQL.
    #[derive(Default)]
    #[schema(example = "daily")]
    pub enum RetentionSchedule as "retention schedule" {
        /// Only when run by hand (`POST …/run`).
        #[default]
        Manual = "manual",
        /// Once a day, by the service's schedule.
        Daily = "daily",
    }
}

/// One run of a rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 9, "rule_id": 2, "task_id": 31, "dry_run": false,
    "matched": 1840, "anonymized": 1840, "actor": "schedule",
    "started_at": "2026-11-23T03:00:00Z", "finished_at": "2026-11-23T03:01:12Z"}))]
pub struct RetentionRun {
    pub id: i64,
    pub rule_id: i64,
    /// The task that ran it (none for a dry run).
    pub task_id: Option<i64>,
    pub dry_run: bool,
    /// Persons the rule's query selected.
    pub matched: i64,
    /// Persons anonymized (0 in a dry run).
    pub anonymized: i64,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a dry run found: the count and a sample, nothing changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"run_id": 8, "matched": 1840, "sample": [
    {"person_id": 77, "name": "Kees Visser"}]}))]
pub struct DryRun {
    pub run_id: i64,
    pub matched: i64,
    /// Up to 20 of the persons, so staff can check the rule selects whom they mean.
    pub sample: Vec<SamplePerson>,
}

/// One person of a dry run's sample.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"person_id": 77, "name": "Kees Visser"}))]
pub struct SamplePerson {
    pub person_id: i64,
    pub name: String,
}

#[derive(Queryable)]
struct RuleRow {
    id: i64,
    name: String,
    query_id: i64,
    action: String,
    schedule: String,
    active: bool,
    created_by: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<RuleRow> for RetentionRule {
    type Error = GdprError;

    fn try_from(r: RuleRow) -> Result<Self, GdprError> {
        let unknown = |value: &str| GdprError::UnknownStored {
            table: "retention_rules",
            id: r.id,
            value: value.to_owned(),
        };
        Ok(RetentionRule {
            action: r.action.parse().map_err(|_| unknown(&r.action))?,
            schedule: r.schedule.parse().map_err(|_| unknown(&r.schedule))?,
            id: r.id,
            name: r.name,
            query_id: r.query_id,
            active: r.active,
            created_by: r.created_by,
            created_at: r.created_at.and_utc(),
            updated_at: r.updated_at.and_utc(),
        })
    }
}

#[derive(Queryable)]
struct RunRow {
    id: i64,
    rule_id: i64,
    task_id: Option<i64>,
    dry_run: bool,
    matched: i64,
    anonymized: i64,
    actor: String,
    started_at: NaiveDateTime,
    finished_at: Option<NaiveDateTime>,
}

impl From<RunRow> for RetentionRun {
    fn from(r: RunRow) -> Self {
        RetentionRun {
            id: r.id,
            rule_id: r.rule_id,
            task_id: r.task_id,
            dry_run: r.dry_run,
            matched: r.matched,
            anonymized: r.anonymized,
            actor: r.actor,
            started_at: r.started_at.and_utc(),
            finished_at: r.finished_at.map(|t| t.and_utc()),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> GdprError {
    GdprError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Creates a rule after checking its query, action and schedule.
pub fn create_rule(
    conn: &mut DbConnection,
    new: NewRetentionRule,
    created_by: &str,
) -> Result<RetentionRule, GdprError> {
    let name = mailbaar_store::clean_required_text(&new.name, 200)
        .map_err(|p| invalid("name", format!("a name has 1 to 200 characters: {p}")))?;
    let exists: i64 = saved_queries::table
        .filter(saved_queries::id.eq(new.query_id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Err(invalid(
            "query_id",
            format!("saved query {} does not exist", new.query_id),
        ));
    }
    let t = now();
    let id = diesel::insert_into(retention_rules::table)
        .values((
            retention_rules::name.eq(&name),
            retention_rules::query_id.eq(new.query_id),
            retention_rules::action.eq(new.action),
            retention_rules::schedule.eq(new.schedule),
            retention_rules::created_by.eq(created_by),
            retention_rules::created_at.eq(t),
            retention_rules::updated_at.eq(t),
        ))
        .returning(retention_rules::id)
        .get_result(conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                GdprError::DuplicateRuleName(name.clone())
            }
            other => other.into(),
        })?;
    get_rule(conn, id)
}

/// Reads one rule.
pub fn get_rule(conn: &mut DbConnection, id: i64) -> Result<RetentionRule, GdprError> {
    retention_rules::table
        .find(id)
        .first::<RuleRow>(conn)
        .optional()?
        .ok_or(GdprError::RuleNotFound(id))?
        .try_into()
}

/// Every rule, in creation order.
pub fn list_rules(conn: &mut DbConnection) -> Result<Vec<RetentionRule>, GdprError> {
    retention_rules::table
        .order(retention_rules::id)
        .load::<RuleRow>(conn)?
        .into_iter()
        .map(RetentionRule::try_from)
        .collect()
}

/// A rule's runs, newest first.
pub fn list_runs(conn: &mut DbConnection, rule_id: i64) -> Result<Vec<RetentionRun>, GdprError> {
    get_rule(conn, rule_id)?;
    Ok(retention_runs::table
        .filter(retention_runs::rule_id.eq(rule_id))
        .order(retention_runs::id.desc())
        .load::<RunRow>(conn)?
        .into_iter()
        .map(RetentionRun::from)
        .collect())
}

fn selected(conn: &mut DbConnection, rule: &RetentionRule) -> Result<Vec<i64>, GdprError> {
    let query = get_query(conn, rule.query_id)?;
    Ok(Selection::prepare(conn, &query.conditions).and_then(|s| s.all_ids(conn))?)
}

fn start_run(
    conn: &mut DbConnection,
    rule_id: i64,
    task_id: Option<i64>,
    dry_run: bool,
    actor: &str,
) -> Result<i64, GdprError> {
    Ok(diesel::insert_into(retention_runs::table)
        .values((
            retention_runs::rule_id.eq(rule_id),
            retention_runs::task_id.eq(task_id),
            retention_runs::dry_run.eq(dry_run),
            retention_runs::actor.eq(actor),
            retention_runs::started_at.eq(now()),
        ))
        .returning(retention_runs::id)
        .get_result(conn)?)
}

/// Counts the persons a rule selects and shows a sample; changes nothing but the record
/// of the run.
pub fn dry_run(conn: &mut DbConnection, rule_id: i64, actor: &str) -> Result<DryRun, GdprError> {
    let rule = get_rule(conn, rule_id)?;
    let ids = selected(conn, &rule)?;
    let sample_ids: Vec<i64> = ids.iter().copied().take(20).collect();
    let sample = persons::table
        .filter(persons::id.eq_any(&sample_ids))
        .order(persons::id)
        .select((
            persons::id,
            persons::first_name,
            persons::infix,
            persons::last_name,
        ))
        .load::<(i64, Option<String>, Option<String>, Option<String>)>(conn)?
        .into_iter()
        .map(|(id, first, infix, last)| SamplePerson {
            person_id: id,
            name: [first, infix, last]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect();
    let run_id = mailbaar_store::write_transaction(conn, |conn| {
        let run_id = start_run(conn, rule_id, None, true, actor)?;
        diesel::update(retention_runs::table.find(run_id))
            .set((
                retention_runs::matched.eq(ids.len() as i64),
                retention_runs::finished_at.eq(Some(now())),
            ))
            .execute(conn)?;
        record_audit(
            conn,
            actor,
            "retention.dry_run",
            None,
            &format!(
                "rule {rule_id}, run {run_id}: {} persons selected",
                ids.len()
            ),
        )?;
        Ok::<_, GdprError>(run_id)
    })?;
    Ok(DryRun {
        run_id,
        matched: ids.len() as i64,
        sample,
    })
}

/// The payload of a [`RETENTION_RUN`] task: the rule and who asked for the run.
#[derive(Serialize, Deserialize)]
struct RunPayload {
    rule_id: i64,
    actor: String,
}

/// Queues a run of an active rule as a task (one at a time per rule); follow it at
/// `/api/v1/tasks/{id}`. Refused with [`GdprError::RuleInactive`] for an inactive rule
/// and [`GdprError::RunUnderWay`] while a run of the rule is queued or running.
pub fn run_task(
    conn: &mut DbConnection,
    rule_id: i64,
    actor: &str,
    at: NaiveDateTime,
) -> Result<Task, GdprError> {
    let rule = get_rule(conn, rule_id)?;
    if !rule.active {
        return Err(GdprError::RuleInactive(rule_id));
    }
    let payload = RunPayload {
        rule_id,
        actor: actor.to_owned(),
    };
    let new = NewTask::now(RETENTION_RUN, actor)
        .unique(&format!("{RETENTION_RUN}.{rule_id}"))
        .with_payload(payload)
        .at(at);
    match mailbaar_tasks::enqueue(conn, &new) {
        Ok(task) => Ok(task),
        Err(TaskError::AlreadyActive { task_id, .. }) => {
            Err(GdprError::RunUnderWay { rule_id, task_id })
        }
        Err(e) => Err(e.into()),
    }
}

/// The work of a retention-run task (see [`run_rule`]).
pub fn retention_run_work(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let p: RunPayload = ctx.payload()?;
    let run = run_rule(ctx, p.rule_id, &p.actor)?;
    Ok(Outcome::Done(format!(
        "{} of {} persons anonymized",
        run.anonymized, run.matched
    )))
}

/// The recurring tick that every process ensures at start.
pub fn schedule_task() -> NewTask {
    NewTask::now(RETENTION_SCHEDULE, "schedule").unique(RETENTION_SCHEDULE)
}

/// The work of the hourly schedule tick: queues a run of every active daily rule that has
/// had no run in the last 24 hours, then comes back at the next full hour.
pub fn retention_schedule_work(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let now = ctx.now();
    let day_ago = now - chrono::Duration::hours(24);
    let mut conn = ctx.pool().get()?;
    let mut queued = Vec::new();
    for rule in list_rules(&mut conn)? {
        if !rule.active || rule.schedule != RetentionSchedule::Daily {
            continue;
        }
        let recent = list_runs(&mut conn, rule.id)?
            .iter()
            .any(|r| !r.dry_run && r.started_at.naive_utc() > day_ago);
        if recent {
            continue;
        }
        match run_task(&mut conn, rule.id, "schedule", now) {
            Ok(task) => queued.push(task.id),
            Err(GdprError::RuleInactive(_) | GdprError::RunUnderWay { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Outcome::Again {
        message: format!("{} retention runs queued", queued.len()),
        run_at: next_hour(now),
    })
}

/// Runs a rule as the task of `ctx`: anonymizes the selected persons in batches of
/// [`RETENTION_BATCH`], reporting progress after each, and records the run and audits it.
pub fn run_rule(
    ctx: &TaskContext<'_>,
    rule_id: i64,
    actor: &str,
) -> Result<RetentionRun, GdprError> {
    let mut conn = ctx.pool().get()?;
    let rule = get_rule(&mut conn, rule_id)?;
    let ids = selected(&mut conn, &rule)?;
    let batches = ids.len().div_ceil(RETENTION_BATCH) as i64;
    ctx.progress(0, batches, "selected")?;
    // An earlier attempt of this task that a crash cut off keeps its figures and is closed
    // now; this attempt gets a record of its own.
    diesel::update(
        retention_runs::table
            .filter(retention_runs::task_id.eq(ctx.task().id))
            .filter(retention_runs::finished_at.is_null()),
    )
    .set(retention_runs::finished_at.eq(Some(now())))
    .execute(&mut conn)?;
    let run_id = start_run(&mut conn, rule_id, Some(ctx.task().id), false, actor)?;
    let mut anonymized = 0i64;
    for (i, batch) in ids.chunks(RETENTION_BATCH).enumerate() {
        for &person in batch {
            ctx.check_lease()?;
            if !anonymize(&mut conn, person, actor)?.already_anonymized {
                anonymized += 1;
            }
        }
        // The run's own record keeps its figures as it goes, so a run cut off by a crash
        // still says how far it got.
        diesel::update(retention_runs::table.find(run_id))
            .set((
                retention_runs::matched.eq(ids.len() as i64),
                retention_runs::anonymized.eq(anonymized),
            ))
            .execute(&mut conn)?;
        ctx.progress(
            i as i64 + 1,
            batches,
            &format!("{anonymized} of {} persons anonymized", ids.len()),
        )?;
    }
    scrub_free_space(&mut conn)?;
    mailbaar_store::write_transaction(&mut conn, |conn| {
        diesel::update(retention_runs::table.find(run_id))
            .set((
                retention_runs::matched.eq(ids.len() as i64),
                retention_runs::anonymized.eq(anonymized),
                retention_runs::finished_at.eq(Some(now())),
            ))
            .execute(conn)?;
        record_audit(
            conn,
            actor,
            "retention.run",
            None,
            &format!(
                "rule {rule_id}, run {run_id}: {anonymized} of {} persons anonymized",
                ids.len()
            ),
        )
    })?;
    let run = retention_runs::table
        .find(run_id)
        .first::<RunRow>(&mut conn)?
        .into();
    Ok(run)
}
