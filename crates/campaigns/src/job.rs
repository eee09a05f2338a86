//! Mail jobs: one send of a step, now or at a set time (manual §4). A job is created
//! `scheduled`; its preparation (a task, a lead time ahead) freezes the content and the
//! recipients; its send (a task at the set time) delivers them in batches.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use diesel::prelude::*;
use mailbaar_store::schema::{campaign_steps, mail_jobs};
use mailbaar_store::{now, DbConnection, Page, PageRequest};
use mailbaar_tasks::NewTask;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audience::Audience;
use crate::readiness::check;
use crate::step::{lock_step, step_row};
use crate::{CampaignError, SendKind};

/// The task kind that prepares a mail job.
pub const PREPARE: &str = "mailjob.prepare";
/// The task kind that sends a prepared mail job.
pub const SEND: &str = "mailjob.send";

/// Where a mail job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = "scheduled")]
pub enum MailJobStatus {
    /// Waiting; its time can be changed and it can be cancelled.
    Scheduled,
    /// Content and recipients are being frozen.
    Preparing,
    /// Frozen, waiting for its send time.
    Prepared,
    /// Messages are going out.
    Sending,
    /// Every recipient was handled.
    Sent,
    /// Cancelled: before its preparation, or while sending (what was sent stays sent).
    Cancelled,
    /// Stopped; `message` says why.
    Failed,
}

impl MailJobStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            MailJobStatus::Scheduled => "scheduled",
            MailJobStatus::Preparing => "preparing",
            MailJobStatus::Prepared => "prepared",
            MailJobStatus::Sending => "sending",
            MailJobStatus::Sent => "sent",
            MailJobStatus::Cancelled => "cancelled",
            MailJobStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "preparing" => MailJobStatus::Preparing,
            "prepared" => MailJobStatus::Prepared,
            "sending" => MailJobStatus::Sending,
            "sent" => MailJobStatus::Sent,
            "cancelled" => MailJobStatus::Cancelled,
            "failed" => MailJobStatus::Failed,
            _ => MailJobStatus::Scheduled,
        }
    }

    /// Whether the job still has work ahead (it holds its step).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            MailJobStatus::Scheduled
                | MailJobStatus::Preparing
                | MailJobStatus::Prepared
                | MailJobStatus::Sending
        )
    }
}

/// A job's counts of recipients, live while it sends.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"recipients": 1834, "sent": 1200, "deferred": 3, "bounced": 4,
    "failed": 2, "skipped": 1, "sending": 10, "in_doubt": 0, "remaining": 624,
    "messages_per_second": 412.5}))]
pub struct MailJobProgress {
    /// Frozen at preparation (0 before).
    pub recipients: i64,
    /// Accepted by the SMTP server (2xx) or written to the outbox.
    pub sent: i64,
    /// Refused for now (4xx) or not reached (connection, timeout); tried again later.
    pub deferred: i64,
    /// Refused for good (5xx): the person is marked as a bouncer.
    pub bounced: i64,
    /// Not sent and not tried again: the message did not render, or its attempts ran out.
    pub failed: i64,
    /// Recipients who became unmailable or opted out between preparation and send.
    pub skipped: i64,
    /// Being handed over right now.
    pub sending: i64,
    /// Hand-overs cut off by a stopped worker, each sent once more with the same
    /// Message-ID: the most extra copies the job can have made. Includes those waiting to
    /// be taken over.
    pub in_doubt: i64,
    /// Not yet handled: pending, deferred or being handed over.
    pub remaining: i64,
    /// Messages sent per second since sending started (until it ended).
    pub messages_per_second: f64,
}

/// A mail job as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 21, "step_id": 7, "step_name": "December newsletter",
    "campaign_id": 3, "status": "scheduled",
    "scheduled_at": "2026-12-04T08:00:00Z", "scheduled_at_local": "2026-12-04T09:00:00+01:00",
    "prepare_at": "2026-12-04T07:35:00Z", "prepare_at_local": "2026-12-04T08:35:00+01:00",
    "time_zone": "Europe/Amsterdam", "include_previous_recipients": false,
    "progress": {"recipients": 0, "sent": 0, "deferred": 0, "bounced": 0, "failed": 0,
        "skipped": 0, "sending": 0, "in_doubt": 0, "remaining": 0, "messages_per_second": 0.0},
    "paused_at": null,
    "skipped_previous": 0, "message": "", "task_id": 40, "created_by": "token:3:newsletter team",
    "created_at": "2026-12-01T10:00:00Z", "prepared_at": null, "started_at": null, "finished_at": null}))]
pub struct MailJob {
    pub id: i64,
    pub step_id: i64,
    pub step_name: String,
    pub campaign_id: i64,
    pub status: MailJobStatus,
    /// When sending starts (UTC).
    pub scheduled_at: DateTime<Utc>,
    /// The same in the organisation's time zone.
    pub scheduled_at_local: DateTime<FixedOffset>,
    /// When preparation starts (UTC): the lead time before `scheduled_at`.
    pub prepare_at: DateTime<Utc>,
    pub prepare_at_local: DateTime<FixedOffset>,
    /// The organisation's time zone (setting `time_zone`).
    pub time_zone: String,
    pub include_previous_recipients: bool,
    pub progress: MailJobProgress,
    /// Set while the job is paused (`POST …/pause`): no message is started until resumed.
    pub paused_at: Option<DateTime<Utc>>,
    /// Selected persons left out as earlier recipients of the step.
    pub skipped_previous: i64,
    /// Why it failed or was cancelled, or the last progress note.
    pub message: String,
    /// The task currently preparing or sending it.
    pub task_id: Option<i64>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub prepared_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Send a step now, or at a set time.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"scheduled_at": "2026-12-04T09:00:00+01:00"}))]
pub struct SendRequest {
    /// When to send, RFC 3339 with an explicit offset; left out: now.
    pub scheduled_at: Option<DateTime<FixedOffset>>,
    /// After a reset: also send to persons who received the step before.
    #[serde(default)]
    pub include_previous_recipients: bool,
}

/// A new time for a scheduled mail job.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"scheduled_at": "2026-12-05T09:00:00+01:00"}))]
pub struct MailJobChanges {
    /// RFC 3339 with an explicit offset, not in the past.
    pub scheduled_at: DateTime<FixedOffset>,
}

/// Filters for the list of mail jobs.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct MailJobFilter {
    /// Only the jobs of this step.
    #[param(example = 7)]
    pub step_id: Option<i64>,
    /// Only jobs with this status.
    pub status: Option<MailJobStatus>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mail_jobs)]
pub(crate) struct JobRow {
    pub id: i64,
    pub step_id: i64,
    pub status: String,
    pub scheduled_at: NaiveDateTime,
    pub prepare_at: NaiveDateTime,
    pub include_previous_recipients: bool,
    pub recipients: i64,
    pub skipped_previous: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub message: String,
    pub task_id: Option<i64>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub prepared_at: Option<NaiveDateTime>,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub bounced: i64,
    pub in_doubt: i64,
    pub paused_at: Option<NaiveDateTime>,
}

impl JobRow {
    pub(crate) fn status(&self) -> MailJobStatus {
        MailJobStatus::parse(&self.status)
    }
}

pub(crate) fn job_row(conn: &mut DbConnection, id: i64) -> Result<JobRow, CampaignError> {
    mail_jobs::table
        .find(id)
        .select(JobRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(CampaignError::NotFound {
            what: "mail job",
            id,
        })
}

/// Reads a job's row, locked on PostgreSQL against a concurrent change of its state.
pub(crate) fn lock_job(conn: &mut DbConnection, id: i64) -> Result<JobRow, CampaignError> {
    mailbaar_store::lock_rows(conn, "mail_jobs", &[id])?;
    job_row(conn, id)
}

/// A job's recipients by state. While a job sends, its counts are read from here, so
/// no send run writes a shared counter row per commit (several workers would queue on it);
/// the job's own columns are written when a run stops and when the job ends.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StateCounts {
    pub sent: i64,
    pub deferred: i64,
    pub bounced: i64,
    pub failed: i64,
    pub skipped: i64,
    pub sending: i64,
    /// `sending` under an expired lease: not yet taken over.
    pub abandoned: i64,
}

/// Counts a job's recipients by state (one index-only scan).
pub(crate) fn state_counts(conn: &mut DbConnection, id: i64) -> Result<StateCounts, CampaignError> {
    use mailbaar_store::schema::mail_job_recipients as r;
    let rows: Vec<(String, i64)> = r::table
        .filter(r::mail_job_id.eq(id))
        .group_by(r::state)
        .select((r::state, diesel::dsl::count_star()))
        .load(conn)?;
    let mut c = StateCounts::default();
    for (state, n) in rows {
        match state.as_str() {
            "sent" => c.sent = n,
            "deferred" => c.deferred = n,
            "bounced" => c.bounced = n,
            "failed" => c.failed = n,
            "skipped" => c.skipped = n,
            "sending" => c.sending = n,
            _ => {}
        }
    }
    if c.sending > 0 {
        c.abandoned = r::table
            .filter(r::mail_job_id.eq(id))
            .filter(r::state.eq("sending"))
            .filter(r::lease_until.lt(now()))
            .count()
            .get_result(conn)?;
    }
    Ok(c)
}

/// Writes a job's counts from its recipients' states into its own columns.
pub(crate) fn store_counts(conn: &mut DbConnection, id: i64) -> Result<StateCounts, CampaignError> {
    let c = state_counts(conn, id)?;
    diesel::update(mail_jobs::table.find(id))
        .set((
            mail_jobs::sent.eq(c.sent),
            mail_jobs::bounced.eq(c.bounced),
            mail_jobs::failed.eq(c.failed),
            mail_jobs::skipped.eq(c.skipped),
        ))
        .execute(conn)?;
    Ok(c)
}

/// The counts to show: live from the recipients while the job can still send, else the
/// job's stored ones.
fn counts_of(conn: &mut DbConnection, row: &JobRow) -> Result<StateCounts, CampaignError> {
    if matches!(
        row.status(),
        MailJobStatus::Sending | MailJobStatus::Prepared
    ) {
        return state_counts(conn, row.id);
    }
    Ok(StateCounts {
        sent: row.sent,
        bounced: row.bounced,
        failed: row.failed,
        skipped: row.skipped,
        ..Default::default()
    })
}

fn to_job(row: JobRow, step: (String, i64), tz: chrono_tz::Tz, live: StateCounts) -> MailJob {
    let local = |t: NaiveDateTime| t.and_utc().with_timezone(&tz).fixed_offset();
    let done = live.sent + live.failed + live.skipped + live.bounced;
    let rate = match row.started_at {
        Some(start) => {
            let end = row.finished_at.unwrap_or_else(now);
            let seconds = (end - start).num_milliseconds() as f64 / 1000.0;
            if seconds > 0.0 {
                (live.sent as f64 / seconds * 10.0).round() / 10.0
            } else {
                0.0
            }
        }
        None => 0.0,
    };
    MailJob {
        id: row.id,
        step_id: row.step_id,
        step_name: step.0,
        campaign_id: step.1,
        status: row.status(),
        scheduled_at: row.scheduled_at.and_utc(),
        scheduled_at_local: local(row.scheduled_at),
        prepare_at: row.prepare_at.and_utc(),
        prepare_at_local: local(row.prepare_at),
        time_zone: tz.name().to_owned(),
        include_previous_recipients: row.include_previous_recipients,
        progress: MailJobProgress {
            recipients: row.recipients,
            sent: live.sent,
            deferred: live.deferred,
            bounced: live.bounced,
            failed: live.failed,
            skipped: live.skipped,
            sending: live.sending,
            in_doubt: row.in_doubt + live.abandoned,
            remaining: (row.recipients - done).max(0),
            messages_per_second: rate,
        },
        paused_at: row.paused_at.map(|t| t.and_utc()),
        skipped_previous: row.skipped_previous,
        message: row.message,
        task_id: row.task_id,
        created_by: row.created_by,
        created_at: row.created_at.and_utc(),
        prepared_at: row.prepared_at.map(|t| t.and_utc()),
        started_at: row.started_at.map(|t| t.and_utc()),
        finished_at: row.finished_at.map(|t| t.and_utc()),
    }
}

fn step_names(conn: &mut DbConnection, step_id: i64) -> Result<(String, i64), CampaignError> {
    Ok(campaign_steps::table
        .find(step_id)
        .select((campaign_steps::name, campaign_steps::campaign_id))
        .first(conn)?)
}

/// One mail job with its progress. Errors: `NotFound`.
pub fn get_mail_job(conn: &mut DbConnection, id: i64) -> Result<MailJob, CampaignError> {
    let row = job_row(conn, id)?;
    let tz = mailbaar_settings::load(conn)?.tz();
    let names = step_names(conn, row.step_id)?;
    let live = counts_of(conn, &row)?;
    Ok(to_job(row, names, tz, live))
}

/// Scheduled and sent mail jobs, latest send time first.
pub fn list_mail_jobs(
    conn: &mut DbConnection,
    filter: &MailJobFilter,
    page: PageRequest,
) -> Result<Page<MailJob>, CampaignError> {
    let build = || {
        let mut q = mail_jobs::table.into_boxed();
        if let Some(s) = filter.step_id {
            q = q.filter(mail_jobs::step_id.eq(s));
        }
        if let Some(status) = filter.status {
            q = q.filter(mail_jobs::status.eq(status.as_str()));
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let rows: Vec<JobRow> = build()
        .order((mail_jobs::scheduled_at.desc(), mail_jobs::id.desc()))
        .limit(page.limit())
        .offset(page.offset())
        .select(JobRow::as_select())
        .load(conn)?;
    let tz = mailbaar_settings::load(conn)?.tz();
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let names = step_names(conn, row.step_id)?;
        let live = counts_of(conn, &row)?;
        items.push(to_job(row, names, tz, live));
    }
    Ok(Page::new(items, total, page))
}

/// Allowed lateness of a requested send time, for clocks a little apart.
const PAST_GRACE_SECONDS: i64 = 60;

fn send_time(
    field: &'static str,
    requested: Option<DateTime<FixedOffset>>,
    at: NaiveDateTime,
) -> Result<NaiveDateTime, CampaignError> {
    let Some(t) = requested else {
        return Ok(at);
    };
    let t = t.naive_utc();
    if !mailbaar_store::time_in_range(t) {
        return Err(CampaignError::invalid(
            field,
            "must lie in the years 1900 to 2200",
        ));
    }
    if t < at - chrono::TimeDelta::seconds(PAST_GRACE_SECONDS) {
        return Err(CampaignError::invalid(field, "lies in the past"));
    }
    Ok(t.max(at))
}

/// When preparation starts for a send at `scheduled_at` to about `recipients` persons.
fn prepare_time(
    settings: &mailbaar_settings::Settings,
    scheduled_at: NaiveDateTime,
    recipients: i64,
    at: NaiveDateTime,
) -> NaiveDateTime {
    (scheduled_at - settings.preparation_lead(recipients)).max(at)
}

/// Sends a step now or schedules it: creates a mail job and queues its preparation a lead
/// time ahead (setting `preparation_lead_minutes`, plus `preparation_minutes_per_100k`).
/// A one-time step is blocked from then on. Errors: `NotFound`; `NotReady` with every
/// missing requirement (a sent one-time step included); `Invalid` (`scheduled_at` in the
/// past or out of range).
pub fn send_step(
    conn: &mut DbConnection,
    step_id: i64,
    request: &SendRequest,
    by: &str,
) -> Result<MailJob, CampaignError> {
    let at = now();
    let scheduled_at = send_time("scheduled_at", request.scheduled_at, at)?;
    let id = mailbaar_store::write_transaction(conn, |conn| {
        let step = lock_step(conn, step_id)?;
        let checked = check(conn, &step)?;
        if !checked.missing.is_empty() {
            return Err(CampaignError::NotReady(checked.missing));
        }
        let settings = mailbaar_settings::load(conn)?;
        let audience = Audience::of(conn, &step, request.include_previous_recipients, at)?;
        let expected = match audience {
            Some(a) => a.count(conn)?.0,
            None => 0,
        };
        let prepare_at = prepare_time(&settings, scheduled_at, expected, at);
        let id: i64 = diesel::insert_into(mail_jobs::table)
            .values((
                mail_jobs::step_id.eq(step_id),
                mail_jobs::status.eq(MailJobStatus::Scheduled.as_str()),
                mail_jobs::scheduled_at.eq(scheduled_at),
                mail_jobs::prepare_at.eq(prepare_at),
                mail_jobs::include_previous_recipients.eq(request.include_previous_recipients),
                mail_jobs::created_by.eq(by),
                mail_jobs::created_at.eq(at),
                mail_jobs::updated_at.eq(at),
            ))
            .returning(mail_jobs::id)
            .get_result(conn)?;
        let task = mailbaar_tasks::enqueue(
            conn,
            &NewTask::now(PREPARE, by)
                .unique(&format!("{PREPARE}:{id}"))
                .with_payload(serde_json::json!({ "mail_job_id": id }))
                .at(prepare_at),
        )?;
        diesel::update(mail_jobs::table.find(id))
            .set(mail_jobs::task_id.eq(task.id))
            .execute(conn)?;
        if step.send_kind() == SendKind::OneTime {
            diesel::update(campaign_steps::table.find(step_id))
                .set(campaign_steps::blocked_since.eq(at))
                .execute(conn)?;
        }
        mailbaar_audit::record(
            conn,
            by,
            "mailjob.create",
            None,
            &format!("mail job {id} of step {step_id} at {scheduled_at} UTC"),
        )?;
        Ok(id)
    })?;
    get_mail_job(conn, id)
}

fn not_scheduled(job: &JobRow, what: &str) -> CampaignError {
    let status = job.status();
    let why = match status {
        MailJobStatus::Cancelled => "it was cancelled".to_owned(),
        MailJobStatus::Sent | MailJobStatus::Failed => {
            format!("it has ended ({})", status.as_str())
        }
        _ => format!(
            "its preparation started (status {}); the content and recipients are frozen",
            status.as_str()
        ),
    };
    CampaignError::Refused(format!(
        "mail job {} can no longer be {what}: {why}",
        job.id
    ))
}

/// Moves a scheduled job to a new time, until its preparation starts. Errors: `NotFound`;
/// `Refused` once preparation started or the job ended; `Invalid` (`scheduled_at`).
pub fn reschedule_mail_job(
    conn: &mut DbConnection,
    id: i64,
    changes: &MailJobChanges,
    by: &str,
) -> Result<MailJob, CampaignError> {
    let at = now();
    let scheduled_at = send_time("scheduled_at", Some(changes.scheduled_at), at)?;
    mailbaar_store::write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        if job.status() != MailJobStatus::Scheduled {
            return Err(not_scheduled(&job, "rescheduled"));
        }
        let settings = mailbaar_settings::load(conn)?;
        let step = step_row(conn, job.step_id)?;
        let expected = match Audience::of(conn, &step, job.include_previous_recipients, at) {
            Ok(Some(a)) => a.count(conn)?.0,
            _ => 0,
        };
        let prepare_at = prepare_time(&settings, scheduled_at, expected, at);
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::scheduled_at.eq(scheduled_at),
                mail_jobs::prepare_at.eq(prepare_at),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        if let Some(task) = job.task_id {
            mailbaar_tasks::reschedule(conn, task, prepare_at)?;
        }
        mailbaar_audit::record(
            conn,
            by,
            "mailjob.reschedule",
            None,
            &format!("mail job {id} moved to {scheduled_at} UTC"),
        )?;
        Ok(())
    })?;
    get_mail_job(conn, id)
}

/// Cancels a job that is scheduled, prepared or sending: no message is started after
/// this (those in flight finish); a one-time step is no longer blocked by it when it sent
/// nothing. Errors: `NotFound`; `Refused` while its preparation runs (one short
/// transaction) or once it ended.
pub fn cancel_mail_job(
    conn: &mut DbConnection,
    id: i64,
    by: &str,
) -> Result<MailJob, CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        // A job whose task gave up (its attempts cut off, the database failing) may be
        // cancelled wherever it stopped, so its step is not held for ever.
        let gave_up = match job.task_id {
            Some(task) if job.status().is_active() => {
                mailbaar_tasks::get(conn, task)?.state == mailbaar_tasks::TaskState::Failed
            }
            _ => false,
        };
        let cancellable = matches!(
            job.status(),
            MailJobStatus::Scheduled | MailJobStatus::Prepared | MailJobStatus::Sending
        );
        if !cancellable && !gave_up {
            return Err(not_scheduled(&job, "cancelled"));
        }
        let at = now();
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::status.eq(MailJobStatus::Cancelled.as_str()),
                mail_jobs::message.eq(format!("cancelled by {by}")),
                mail_jobs::finished_at.eq(at),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        let counts = store_counts(conn, id)?;
        let step = lock_step(conn, job.step_id)?;
        if step.send_kind() == SendKind::OneTime
            && counts.sent == 0
            && !step_has_other_jobs(conn, step.id, id)?
        {
            diesel::update(campaign_steps::table.find(step.id))
                .set(campaign_steps::blocked_since.eq(None::<NaiveDateTime>))
                .execute(conn)?;
        }
        mailbaar_audit::record(conn, by, "mailjob.cancel", None, &format!("mail job {id}"))?;
        Ok(())
    })?;
    get_mail_job(conn, id)
}

/// Pauses a job that has not ended: no run starts a message of it until it is resumed
/// (those in flight finish and are recorded). Errors: `NotFound`; `Refused` when it ended
/// or is paused already.
pub fn pause_mail_job(
    conn: &mut DbConnection,
    id: i64,
    by: &str,
) -> Result<MailJob, CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        if !job.status().is_active() {
            return Err(not_scheduled(&job, "paused"));
        }
        if job.paused_at.is_some() {
            return Err(CampaignError::Refused(format!(
                "mail job {id} is paused already; resume it first"
            )));
        }
        let at = now();
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::paused_at.eq(at),
                mail_jobs::message.eq(format!("paused by {by}")),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        mailbaar_audit::record(conn, by, "mailjob.pause", None, &format!("mail job {id}"))?;
        Ok(())
    })?;
    get_mail_job(conn, id)
}

/// Resumes a paused job: its send carries on with exactly the recipients not yet handled.
/// Errors: `NotFound`; `Refused` when it is not paused or has ended.
pub fn resume_mail_job(
    conn: &mut DbConnection,
    id: i64,
    by: &str,
) -> Result<MailJob, CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        if !job.status().is_active() {
            return Err(not_scheduled(&job, "resumed"));
        }
        if job.paused_at.is_none() {
            return Err(CampaignError::Refused(format!(
                "mail job {id} is not paused"
            )));
        }
        let at = now();
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::paused_at.eq(None::<NaiveDateTime>),
                mail_jobs::message.eq(format!("resumed by {by}")),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        if matches!(
            job.status(),
            MailJobStatus::Prepared | MailJobStatus::Sending
        ) {
            let task = crate::sending::ensure_send_task(conn, &job)?;
            diesel::update(mail_jobs::table.find(id))
                .set(mail_jobs::task_id.eq(task))
                .execute(conn)?;
        }
        mailbaar_audit::record(conn, by, "mailjob.resume", None, &format!("mail job {id}"))?;
        Ok(())
    })?;
    get_mail_job(conn, id)
}

/// Whether a step has a job, other than `except`, that was not cancelled.
fn step_has_other_jobs(
    conn: &mut DbConnection,
    step_id: i64,
    except: i64,
) -> Result<bool, CampaignError> {
    let n: i64 = mail_jobs::table
        .filter(mail_jobs::step_id.eq(step_id))
        .filter(mail_jobs::id.ne(except))
        .filter(mail_jobs::status.ne(MailJobStatus::Cancelled.as_str()))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Releases a sent one-time step so it can be sent again (manual §4.3). Every result and
/// contact moment stays; a next send skips earlier recipients unless asked. Errors:
/// `NotFound`; `Refused` for a repeatable step, a step that is not blocked, or one whose
/// job is still under way.
pub fn reset_step(
    conn: &mut DbConnection,
    step_id: i64,
    by: &str,
) -> Result<crate::CampaignStep, CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        let step = lock_step(conn, step_id)?;
        if step.send_kind() == SendKind::Repeatable {
            return Err(CampaignError::Refused(format!(
                "campaign step {step_id} is repeatable; it is never blocked and needs no reset"
            )));
        }
        if step.blocked_since.is_none() {
            return Err(CampaignError::Refused(format!(
                "campaign step {step_id} is not blocked: it was not sent since its last reset"
            )));
        }
        let active: Option<(i64, String)> = mail_jobs::table
            .filter(mail_jobs::step_id.eq(step_id))
            .filter(mail_jobs::status.eq_any(["scheduled", "preparing", "prepared", "sending"]))
            .select((mail_jobs::id, mail_jobs::status))
            .first(conn)
            .optional()?;
        if let Some((job, status)) = active {
            return Err(CampaignError::Refused(format!(
                "campaign step {step_id} has mail job {job} under way ({status}); cancel it or let it finish first"
            )));
        }
        diesel::update(campaign_steps::table.find(step_id))
            .set((
                campaign_steps::blocked_since.eq(None::<NaiveDateTime>),
                campaign_steps::updated_at.eq(now()),
            ))
            .execute(conn)?;
        mailbaar_audit::record(
            conn,
            by,
            "step.reset",
            None,
            &format!("campaign step {step_id}"),
        )?;
        crate::get_step(conn, step_id)
    })
}
