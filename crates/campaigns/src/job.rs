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
use crate::status::{MailJobStatus, RecipientState};
use crate::step::{lock_step, step_row, StepBlock};
use crate::{CampaignError, SendKind};

/// The task kind that prepares a mail job.
pub const PREPARE: &str = "mailjob.prepare";
/// The task kind that sends a prepared mail job: preparation queues it by this name, and
/// the worker wiring registers the delivery engine's work for it.
pub const SEND: &str = "mailjob.send";

/// The payload of a [`PREPARE`] or [`SEND`] task: the job it works on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MailJobPayload {
    /// The mail job's id.
    pub mail_job_id: i64,
}

/// The content of a job as frozen at preparation (stored with the job); later edits of
/// the step do not reach it. What a send, a click's link table and the web version of a
/// sent message are made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrozenContent {
    /// The step's content (sender, subject, templates) as rendering takes it.
    pub step: mailbaar_render::Step,
    /// The step's blocks; a recipient's block bits index into this list.
    pub blocks: Vec<StepBlock>,
    /// The opt-in type the step mails for; `None` for a mailing without one.
    pub opt_in_type_id: Option<i64>,
    /// When the content was frozen (UTC).
    pub frozen_at: NaiveDateTime,
}

impl FrozenContent {
    /// The frozen content of job `id`: `None` when the job does not exist, is not yet
    /// prepared, or its stored content cannot be read.
    pub fn of_job(conn: &mut DbConnection, id: i64) -> Result<Option<Self>, CampaignError> {
        let content: Option<String> = mail_jobs::table
            .find(id)
            .select(mail_jobs::content)
            .first::<Option<String>>(conn)
            .optional()?
            .flatten();
        Ok(content.and_then(|c| serde_json::from_str(&c).ok()))
    }

    /// The names of the blocks a recipient sees, from the block bits marked at
    /// preparation (bit `i` for block `i`; a block without a condition is seen by all).
    pub fn blocks_seen(&self, bits: i64) -> std::collections::BTreeSet<String> {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(i, b)| b.condition.is_none() || bits & (1i64 << i) != 0)
            .map(|(_, b)| b.name.clone())
            .collect()
    }
}

/// A job's counts of recipients, live while it sends: the same states the recipient list
/// (`GET /mailjobs/{id}/recipients`) filters by.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"recipients": 1834, "sent": 1200, "deferred": 3, "bounced": 4,
    "failed": 2, "skipped": 1, "sending": 10, "in_doubt": 1, "in_doubt_handovers": 1,
    "remaining": 623, "messages_per_second": 412.5}))]
pub struct MailJobProgress {
    /// Frozen at preparation (0 before).
    pub recipients: i64,
    /// Accepted by the SMTP server (2xx) or written to the outbox.
    pub sent: i64,
    /// Refused for now (4xx), not reached, or waiting after the relay refused us; tried
    /// again later.
    pub deferred: i64,
    /// Refused for good (5xx): the person is marked as a bouncer.
    pub bounced: i64,
    /// Not sent and not tried again: the message did not render, was refused, or its
    /// attempts ran out.
    pub failed: i64,
    /// Recipients who became unmailable or opted out between preparation and send.
    pub skipped: i64,
    /// Being handed over right now.
    pub sending: i64,
    /// Recipients in state `in_doubt` now (their message may have arrived; not resent
    /// unless asked), plus hand-overs of a stopped worker not yet taken over.
    pub in_doubt: i64,
    /// Hand-overs that ended in doubt over the job's life (no valid final reply, or cut
    /// off by a stopped worker): the most extra copies a resend can have made.
    pub in_doubt_handovers: i64,
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
        "skipped": 0, "sending": 0, "in_doubt": 0, "in_doubt_handovers": 0, "remaining": 0,
        "messages_per_second": 0.0},
    "paused_at": null, "pause_reason": null,
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
    /// Why the job paused itself: the relay refused us (TLS, authentication, our address
    /// or IP) rather than a recipient, several times in a row. `null` for a pause asked
    /// for, and cleared by `resume`.
    pub pause_reason: Option<String>,
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
    pub status: MailJobStatus,
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
    pub pause_reason: Option<String>,
}

impl JobRow {
    pub(crate) fn status(&self) -> MailJobStatus {
        self.status
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
    /// In state `in_doubt`.
    pub in_doubt: i64,
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
        let state: RecipientState = state
            .parse()
            .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
        match state {
            RecipientState::Sent => c.sent = n,
            RecipientState::Deferred => c.deferred = n,
            RecipientState::Bounced => c.bounced = n,
            RecipientState::Failed => c.failed = n,
            RecipientState::Skipped => c.skipped = n,
            RecipientState::Sending => c.sending = n,
            RecipientState::InDoubt => c.in_doubt = n,
            RecipientState::Pending => {}
        }
    }
    if c.sending > 0 {
        c.abandoned = r::table
            .filter(r::mail_job_id.eq(id))
            .filter(r::state.eq(RecipientState::Sending))
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
    // Recipients in doubt are not among the stored counts; only a job that had a hand-over
    // in doubt can have them.
    let in_doubt = if row.in_doubt > 0 {
        use mailbaar_store::schema::mail_job_recipients as r;
        r::table
            .filter(r::mail_job_id.eq(row.id))
            .filter(r::state.eq(RecipientState::InDoubt))
            .count()
            .get_result(conn)?
    } else {
        0
    };
    Ok(StateCounts {
        sent: row.sent,
        bounced: row.bounced,
        failed: row.failed,
        skipped: row.skipped,
        in_doubt,
        ..Default::default()
    })
}

fn to_job(row: JobRow, step: (String, i64), tz: chrono_tz::Tz, live: StateCounts) -> MailJob {
    let local = |t: NaiveDateTime| t.and_utc().with_timezone(&tz).fixed_offset();
    let done = live.sent + live.failed + live.skipped + live.bounced + live.in_doubt;
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
            in_doubt: live.in_doubt + live.abandoned,
            in_doubt_handovers: row.in_doubt + live.abandoned,
            remaining: (row.recipients - done).max(0),
            messages_per_second: rate,
        },
        paused_at: row.paused_at.map(|t| t.and_utc()),
        pause_reason: row.pause_reason,
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
                mail_jobs::status.eq(MailJobStatus::Scheduled),
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
                .with_payload(MailJobPayload { mail_job_id: id })
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

fn not_scheduled(job: &JobRow, action: &'static str) -> CampaignError {
    let (id, status) = (job.id, job.status());
    match status {
        MailJobStatus::Cancelled => CampaignError::JobCancelled { id, action },
        MailJobStatus::Sent | MailJobStatus::Failed => {
            CampaignError::JobEnded { id, action, status }
        }
        _ => CampaignError::JobFrozen { id, action, status },
    }
}

/// Moves a scheduled job to a new time, until its preparation starts. Errors: `NotFound`;
/// `JobFrozen`, `JobCancelled` or `JobEnded` once preparation started or the job ended; `Invalid` (`scheduled_at`).
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
/// nothing. Errors: `NotFound`; `JobFrozen` while its preparation runs (one short
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
                mail_jobs::status.eq(MailJobStatus::Cancelled),
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
/// (those in flight finish and are recorded). Errors: `NotFound`; `JobCancelled`/`JobEnded` when it ended, `JobAlreadyPaused`
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
            return Err(CampaignError::JobAlreadyPaused { id });
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
/// Errors: `NotFound`; `JobNotPaused`; `JobCancelled`/`JobEnded` when it has ended.
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
            return Err(CampaignError::JobNotPaused { id });
        }
        let at = now();
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::paused_at.eq(None::<NaiveDateTime>),
                mail_jobs::pause_reason.eq(None::<String>),
                mail_jobs::message.eq(format!("resumed by {by}")),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        if matches!(
            job.status(),
            MailJobStatus::Prepared | MailJobStatus::Sending
        ) {
            let task = ensure_send_task(conn, &job)?;
            diesel::update(mail_jobs::table.find(id))
                .set(mail_jobs::task_id.eq(task))
                .execute(conn)?;
        }
        mailbaar_audit::record(conn, by, "mailjob.resume", None, &format!("mail job {id}"))?;
        Ok(())
    })?;
    get_mail_job(conn, id)
}

/// Resends the job's recipients in doubt (state `in_doubt`: their message may or may not
/// have arrived) with their same contact moment and Message-ID, so a copy that did arrive
/// and the new one are recognisably one message. The operator's explicit choice under the
/// `at-most-once` in-doubt policy. A job that had ended sends again (and ends again); a
/// paused one sends them once resumed. Errors: `NotFound`; `JobCancelled`;
/// `NothingInDoubt` when no recipient is in doubt.
pub fn resend_in_doubt(
    conn: &mut DbConnection,
    id: i64,
    by: &str,
) -> Result<MailJob, CampaignError> {
    use mailbaar_store::schema::mail_job_recipients as r;
    mailbaar_store::write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        if job.status() == MailJobStatus::Cancelled {
            return Err(CampaignError::JobCancelled {
                id,
                action: "resent",
            });
        }
        let at = now();
        let resent = diesel::update(
            r::table
                .filter(r::mail_job_id.eq(id))
                .filter(r::state.eq(RecipientState::InDoubt)),
        )
        .set((
            r::state.eq(RecipientState::Deferred),
            r::next_attempt_at.eq(at),
            r::claimed_by.eq(None::<String>),
            r::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
        if resent == 0 {
            return Err(CampaignError::NothingInDoubt { id });
        }
        let message = format!("{resent} recipients in doubt resent by {by}");
        if matches!(job.status(), MailJobStatus::Sent | MailJobStatus::Failed) {
            diesel::update(mail_jobs::table.find(id))
                .set((
                    mail_jobs::status.eq(MailJobStatus::Sending),
                    mail_jobs::finished_at.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
        }
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::message.eq(&message),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        if job.paused_at.is_none() {
            let task = ensure_send_task(conn, &job)?;
            diesel::update(mail_jobs::table.find(id))
                .set(mail_jobs::task_id.eq(task))
                .execute(conn)?;
        }
        mailbaar_audit::record(
            conn,
            by,
            "mailjob.resend_in_doubt",
            None,
            &format!("mail job {id}: {resent} recipients"),
        )?;
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
        .filter(mail_jobs::status.ne(MailJobStatus::Cancelled))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Releases a sent one-time step so it can be sent again (manual §4.3). Every result and
/// contact moment stays; a next send skips earlier recipients unless asked. Errors:
/// `NotFound`; `StepRepeatable`, `StepNotBlocked`, or `StepHasActiveJob` for one whose
/// job is still under way.
pub fn reset_step(
    conn: &mut DbConnection,
    step_id: i64,
    by: &str,
) -> Result<crate::CampaignStep, CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        let step = lock_step(conn, step_id)?;
        if step.send_kind() == SendKind::Repeatable {
            return Err(CampaignError::StepRepeatable { id: step_id });
        }
        if step.blocked_since.is_none() {
            return Err(CampaignError::StepNotBlocked { id: step_id });
        }
        let active: Option<JobRow> = mail_jobs::table
            .filter(mail_jobs::step_id.eq(step_id))
            .filter(mail_jobs::status.eq_any(MailJobStatus::ACTIVE))
            .select(JobRow::as_select())
            .first(conn)
            .optional()?;
        if let Some(job) = active {
            return Err(CampaignError::StepHasActiveJob {
                id: step_id,
                job: job.id,
                status: job.status(),
            });
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

/// Ends a job as failed; a one-time step it blocked is released when nothing was sent.
pub(crate) fn fail_job(
    conn: &mut DbConnection,
    id: i64,
    message: &str,
    at: NaiveDateTime,
) -> Result<(), CampaignError> {
    diesel::update(mail_jobs::table.find(id))
        .set((
            mail_jobs::status.eq(MailJobStatus::Failed),
            mail_jobs::message.eq(message),
            mail_jobs::finished_at.eq(at),
            mail_jobs::updated_at.eq(at),
        ))
        .execute(conn)?;
    store_counts(conn, id)?;
    release_if_nothing_sent(conn, id)
}

/// A one-time step blocked by a job that sent nothing is free again: no one received it.
pub(crate) fn release_if_nothing_sent(
    conn: &mut DbConnection,
    id: i64,
) -> Result<(), CampaignError> {
    let (step, sent, in_doubt): (i64, i64, i64) = mail_jobs::table
        .find(id)
        .select((mail_jobs::step_id, mail_jobs::sent, mail_jobs::in_doubt))
        .first(conn)?;
    // A hand-over in doubt may have reached its recipient: the step stays blocked.
    if sent == 0 && in_doubt == 0 {
        diesel::update(
            campaign_steps::table
                .find(step)
                .filter(campaign_steps::send_kind.eq(SendKind::OneTime.as_str())),
        )
        .set(campaign_steps::blocked_since.eq(None::<NaiveDateTime>))
        .execute(conn)?;
    }
    Ok(())
}

/// Queues the first send run of a prepared job unless one is already active; its id. On
/// PostgreSQL that run queues the job's other runs when it starts.
pub(crate) fn ensure_send_task(
    conn: &mut DbConnection,
    job: &JobRow,
) -> Result<i64, CampaignError> {
    ensure_send_tasks(conn, job, 1)
}

/// The send runs of a job: one on SQLite (its single writer), `parallel` on PostgreSQL,
/// where the runs of several workers share the job's recipients (`FOR UPDATE SKIP LOCKED`).
pub(crate) fn ensure_send_tasks(
    conn: &mut DbConnection,
    job: &JobRow,
    parallel: usize,
) -> Result<i64, CampaignError> {
    let runs = match conn {
        DbConnection::Pg(_) => parallel.max(1),
        DbConnection::Sqlite(_) => 1,
    };
    let mut first = None;
    for k in 0..runs {
        let key = if k == 0 {
            format!("{SEND}:{}", job.id)
        } else {
            format!("{SEND}:{}:{k}", job.id)
        };
        let mut task = NewTask::now(SEND, &job.created_by)
            .unique(&key)
            .with_payload(MailJobPayload {
                mail_job_id: job.id,
            })
            .at(job.scheduled_at.max(now()));
        // A run cut off by a stopped worker is taken again by the next; the recipients'
        // own leases, not the task's attempts, keep a crash from losing anyone.
        task.max_attempts = 1000;
        let task = mailbaar_tasks::ensure(conn, &task)?;
        first.get_or_insert(task.id);
    }
    Ok(first.unwrap_or_default())
}
