//! The two tasks of a mail job: preparation (freeze content and recipients) and sending
//! (deliver them in batches). Both run under the task mechanism's lease, so one runner at a
//! time works a job; a run cut off by a crash is taken again and carries on where the
//! database says it stopped.
//!
//! Sending is at-least-once per recipient and at-most-once per (job, person) contact
//! moment. A run claims a batch of recipients (its name and a lease on each, a contact
//! moment with a fixed Message-ID per recipient, one transaction; `FOR UPDATE SKIP LOCKED`
//! on PostgreSQL so the runs of several workers share a job). Each message is marked
//! `sending` just before its hand-over and its verdict recorded right after, a few at a
//! time (see [`deliver`]): a crash can double at most the messages in flight at that
//! moment, which the next run takes over as *in doubt* once their lease expires and sends
//! again with the same Message-IDs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_render::CompiledStep;
use mailbaar_store::schema::{consent_current, contact_moments, mail_job_recipients, mail_jobs};
use mailbaar_store::{write_transaction, DbConnection};
use mailbaar_tasks::{NewTask, Outcome, TaskContext, TaskError, Work, WorkError};
use serde::{Deserialize, Serialize};

use crate::audience::{mark_block, Audience};
use crate::job::{lock_job, JobRow, MailJobStatus, SEND};
use crate::mailing::{new_message_id, render_for, Delivery};
use crate::readiness::{check, RequirementCode, PERSON_FIELDS};
use crate::step::{step_row, StepBlock};
use crate::transport::{Handover, OutgoingMessage};
use crate::CampaignError;

/// The content of a job as frozen at preparation; later edits of the step do not reach it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Frozen {
    pub step: mailbaar_render::Step,
    pub blocks: Vec<StepBlock>,
    pub opt_in_type_id: Option<i64>,
    pub frozen_at: NaiveDateTime,
}

#[derive(Deserialize)]
struct JobPayload {
    mail_job_id: i64,
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
            mail_jobs::status.eq(MailJobStatus::Failed.as_str()),
            mail_jobs::message.eq(message),
            mail_jobs::finished_at.eq(at),
            mail_jobs::updated_at.eq(at),
        ))
        .execute(conn)?;
    crate::job::store_counts(conn, id)?;
    release_if_nothing_sent(conn, id)
}

/// A one-time step blocked by a job that sent nothing is free again: no one received it.
fn release_if_nothing_sent(conn: &mut DbConnection, id: i64) -> Result<(), CampaignError> {
    use mailbaar_store::schema::campaign_steps;
    let (step, sent): (i64, i64) = mail_jobs::table
        .find(id)
        .select((mail_jobs::step_id, mail_jobs::sent))
        .first(conn)?;
    if sent == 0 {
        diesel::update(
            campaign_steps::table
                .find(step)
                .filter(campaign_steps::send_kind.eq("one_time")),
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

enum Start {
    Stop(String),
    Later(NaiveDateTime),
    Go,
}

/// The work of [`crate::PREPARE`]: at the job's `prepare_at`, evaluate the selection once and
/// write the recipients (`INSERT … SELECT`), mark block matches, store the compiled
/// step's content with the job, and queue the send for `scheduled_at`.
pub fn preparation_work(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let payload: JobPayload = ctx.payload()?;
    let id = payload.mail_job_id;
    let mut conn = ctx.pool().get()?;
    let at = ctx.now();
    let task_id = ctx.task().id;
    let start = write_transaction(&mut conn, |conn| -> Result<Start, CampaignError> {
        let job = lock_job(conn, id)?;
        Ok(match job.status() {
            MailJobStatus::Cancelled | MailJobStatus::Failed | MailJobStatus::Sent => {
                Start::Stop(format!(
                    "mail job {id} is {}; nothing to prepare",
                    job.status().as_str()
                ))
            }
            MailJobStatus::Scheduled if job.prepare_at > at => Start::Later(job.prepare_at),
            MailJobStatus::Scheduled | MailJobStatus::Preparing => {
                diesel::update(mail_jobs::table.find(id))
                    .set((
                        mail_jobs::status.eq(MailJobStatus::Preparing.as_str()),
                        mail_jobs::task_id.eq(task_id),
                        mail_jobs::message.eq("freezing content and recipients"),
                        mail_jobs::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                Start::Go
            }
            MailJobStatus::Prepared | MailJobStatus::Sending => {
                ensure_send_task(conn, &job)?;
                Start::Stop(format!("mail job {id} was already prepared"))
            }
        })
    })?;
    match start {
        Start::Stop(message) => return Ok(Outcome::Done(message)),
        Start::Later(run_at) => {
            return Ok(Outcome::Again {
                message: format!("mail job {id} was moved; preparing at {run_at} UTC"),
                run_at,
            })
        }
        Start::Go => {}
    }
    ctx.progress(0, 2, "freezing content and recipients")?;
    let summary = match freeze(&mut conn, id, at) {
        Ok(summary) => summary,
        // The step or its selection cannot be prepared (a saved query deleted, a tree that
        // no longer checks): the job fails with the reason and releases its step; a failing
        // database is the task's to retry.
        Err(e @ (CampaignError::Database(_) | CampaignError::Task(_))) => return Err(e.into()),
        Err(e) => {
            let message = format!("not sent: preparation failed: {e}");
            write_transaction(&mut conn, |conn| fail_job(conn, id, &message, at))?;
            message
        }
    };
    Ok(Outcome::Done(summary))
}

/// Freezes a job's content and recipients in one transaction; the summary.
fn freeze(conn: &mut DbConnection, id: i64, at: NaiveDateTime) -> Result<String, CampaignError> {
    let summary = write_transaction(conn, |conn| -> Result<String, CampaignError> {
        let job = lock_job(conn, id)?;
        let step = step_row(conn, job.step_id)?;
        let checked = check(conn, &step)?;
        let missing: Vec<String> = checked
            .missing
            .iter()
            .filter(|r| r.code != RequirementCode::AlreadySent)
            .map(|r| r.message.clone())
            .collect();
        if !missing.is_empty() {
            let message = format!(
                "not sent: the step is no longer ready: {}",
                missing.join("; ")
            );
            fail_job(conn, id, &message, at)?;
            return Ok(message);
        }
        let audience = match Audience::of(conn, &step, job.include_previous_recipients, at) {
            Ok(Some(a)) => a,
            Ok(None) => {
                fail_job(conn, id, "not sent: the step has no selection", at)?;
                return Ok("no selection".into());
            }
            Err(CampaignError::Query(e)) => {
                let message = format!("not sent: the selection no longer runs: {e}");
                fail_job(conn, id, &message, at)?;
                return Ok(message);
            }
            Err(e) => return Err(e),
        };
        // A run cut off by a crash left part of a list: start it again.
        diesel::delete(mail_job_recipients::table.filter(mail_job_recipients::mail_job_id.eq(id)))
            .execute(conn)?;
        let recipients = audience.insert_recipients(conn, id)? as i64;
        let skipped_previous = if job.include_previous_recipients {
            0
        } else {
            audience.count(conn)?.1
        };
        let blocks = step.blocks();
        for (i, block) in blocks.iter().enumerate() {
            if let Some(tree) = &block.condition {
                let node = mailbaar_query::Node::parse(tree).map_err(|issues| {
                    CampaignError::invalid(
                        "blocks",
                        issues
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                })?;
                mark_block(conn, id, i, &node, at)?;
            }
        }
        let frozen = Frozen {
            step: step.render_step(),
            blocks,
            opt_in_type_id: step.opt_in_type_id,
            frozen_at: at,
        };
        let mut job = job;
        let send = ensure_send_task(conn, &job)?;
        job.task_id = Some(send);
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::status.eq(MailJobStatus::Prepared.as_str()),
                mail_jobs::content.eq(serde_json::to_string(&frozen).expect("content serializes")),
                mail_jobs::recipients.eq(recipients),
                mail_jobs::skipped_previous.eq(skipped_previous),
                mail_jobs::task_id.eq(send),
                mail_jobs::message.eq(format!("{recipients} recipients frozen")),
                mail_jobs::prepared_at.eq(at),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        Ok(format!(
            "{recipients} recipients frozen, {skipped_previous} earlier recipients skipped"
        ))
    })?;
    // The send's statements find recipients by (job, state) and (job, person): without
    // fresh statistics PostgreSQL plans them for the empty table it last saw and scans
    // every recipient per statement (802 instead of 1,430 messages a second at 100,000).
    if let DbConnection::Pg(_) = conn {
        diesel::sql_query("ANALYZE mail_job_recipients").execute(conn)?;
    }
    Ok(summary)
}

/// The work of [`SEND`], holding this process's [`Delivery`].
#[derive(Debug, Clone)]
pub struct SendWork {
    delivery: Arc<Delivery>,
}

impl SendWork {
    /// Sending through `delivery`.
    pub fn new(delivery: Arc<Delivery>) -> Self {
        SendWork { delivery }
    }
}

impl Work for SendWork {
    fn run(&self, ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
        let payload: JobPayload = ctx.payload()?;
        Ok(send(ctx, &self.delivery, payload.mail_job_id)?)
    }
}

/// One recipient of a claimed batch.
struct Claimed {
    person_id: i64,
    blocks: i64,
    /// Attempts made before this claim.
    attempts: i32,
    contact_moment_id: i64,
    message_id: String,
}

/// What became of one claimed recipient.
enum Verdict {
    Sent,
    /// Refused for now (4xx) or no verdict (connection, timeout): tried again later.
    Deferred(String),
    /// Refused for good (5xx): a hard bounce.
    Bounced(String),
    /// Not sent and not tried again (no longer renders, attempts used up).
    Failed(String),
    /// Left out: no longer mailable or opted out since preparation.
    Skipped(String),
}

enum SendStart {
    Stop(String),
    Go(Box<Frozen>, i64, i64),
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
            .with_payload(serde_json::json!({ "mail_job_id": job.id }))
            .at(job.scheduled_at.max(mailbaar_store::now()));
        // A run cut off by a stopped worker is taken again by the next; the recipients'
        // own leases, not the task's attempts, keep a crash from losing anyone.
        task.max_attempts = 1000;
        let task = mailbaar_tasks::ensure(conn, &task)?;
        first.get_or_insert(task.id);
    }
    Ok(first.unwrap_or_default())
}

fn send(ctx: &TaskContext<'_>, delivery: &Delivery, id: i64) -> Result<Outcome, CampaignError> {
    let mut conn = ctx.pool().get().map_err(mailbaar_tasks::TaskError::from)?;
    let task_id = ctx.task().id;
    let start = write_transaction(&mut conn, |conn| -> Result<SendStart, CampaignError> {
        let job = lock_job(conn, id)?;
        let at = mailbaar_store::now();
        match job.status() {
            MailJobStatus::Prepared | MailJobStatus::Sending => {}
            other => {
                return Ok(SendStart::Stop(format!(
                    "mail job {id} is {}; nothing to send",
                    other.as_str()
                )))
            }
        }
        if job.paused_at.is_some() {
            return Ok(SendStart::Stop(format!("mail job {id} is paused")));
        }
        let content: Option<String> = mail_jobs::table
            .find(id)
            .select(mail_jobs::content)
            .first(conn)?;
        let Some(frozen) = content.and_then(|c| serde_json::from_str::<Frozen>(&c).ok()) else {
            fail_job(conn, id, "not sent: the frozen content cannot be read", at)?;
            return Ok(SendStart::Stop("the frozen content cannot be read".into()));
        };
        // The job's other runs, for the other workers to join in (PostgreSQL).
        ensure_send_tasks(conn, &job, delivery.parallel_runs)?;
        if job.status() == MailJobStatus::Prepared {
            diesel::update(mail_jobs::table.find(id))
                .set((
                    mail_jobs::status.eq(MailJobStatus::Sending.as_str()),
                    mail_jobs::task_id.eq(task_id),
                    mail_jobs::started_at.eq(job.started_at.unwrap_or(at)),
                    mail_jobs::updated_at.eq(at),
                ))
                .execute(conn)?;
        }
        Ok(SendStart::Go(Box::new(frozen), job.recipients, job.step_id))
    })?;
    let (frozen, total, step_id) = match start {
        SendStart::Stop(message) => return Ok(Outcome::Done(message)),
        SendStart::Go(frozen, total, step_id) => (frozen, total, step_id),
    };
    let compiled = match CompiledStep::compile(&frozen.step, &PERSON_FIELDS) {
        Ok(c) => c,
        Err(e) => {
            let message = format!("not sent: the frozen content does not compile: {e}");
            write_transaction(&mut conn, |conn| {
                fail_job(conn, id, &message, mailbaar_store::now())
            })?;
            return Ok(Outcome::Done(message));
        }
    };
    let compiled = delivery.sending(compiled);
    // This run's name on the recipients it claims: unique, so a run that lost its claim
    // (its lease ran out while it was slow) cannot start a message another run now holds.
    let run = format!(
        "{task_id}.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let job = JobContent {
        id,
        step_id,
        from: frozen.step.from_email.clone(),
        batch: format!("job-{id}"),
        compiled,
        frozen,
    };
    let mut handled = 0i64;
    loop {
        ctx.check_lease()?;
        let claimed = claim(&mut conn, &job, delivery, &run)?;
        if claimed.is_empty() {
            break;
        }
        let claimed_count = claimed.len() as i64;
        if let Some(reason) = deliver(&mut conn, &job, delivery, &run, claimed)? {
            return Ok(Outcome::Done(format!("mail job {id}: {reason}")));
        }
        // The task's progress is this run's: the job's live counts are its recipients'.
        handled += claimed_count;
        ctx.progress(
            handled.min(total),
            total,
            &format!("{handled} handled by this run"),
        )?;
    }
    finish(&mut conn, id)
}

/// What every batch of a run needs of its job.
struct JobContent {
    id: i64,
    step_id: i64,
    from: String,
    batch: String,
    compiled: CompiledStep,
    frozen: Box<Frozen>,
}

/// Ends a run that found nothing to claim: the job is done when no recipient is left
/// pending, deferred or sending; otherwise the run comes back when the next deferred
/// recipient is due or another run's lease runs out.
fn finish(conn: &mut DbConnection, id: i64) -> Result<Outcome, CampaignError> {
    write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        if job.status() != MailJobStatus::Sending {
            return Ok(Outcome::Done(format!(
                "mail job {id} is {}",
                job.status().as_str()
            )));
        }
        let open = || {
            mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(id))
                .filter(mail_job_recipients::state.eq_any(["pending", "deferred", "sending"]))
        };
        let left: i64 = open().count().get_result(conn)?;
        if left > 0 {
            let at = mailbaar_store::now();
            let due: Option<NaiveDateTime> = open()
                .select(diesel::dsl::min(mail_job_recipients::next_attempt_at))
                .first(conn)?;
            let leased: Option<NaiveDateTime> = open()
                .select(diesel::dsl::min(mail_job_recipients::lease_until))
                .first(conn)?;
            let run_at = [due, leased]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(at)
                .max(at + chrono::TimeDelta::milliseconds(200));
            return Ok(Outcome::Again {
                message: format!("{left} recipients still open; looking again at {run_at} UTC"),
                run_at,
            });
        }
        let at = mailbaar_store::now();
        let job = {
            let c = crate::job::store_counts(conn, id)?;
            JobRow {
                sent: c.sent,
                bounced: c.bounced,
                failed: c.failed,
                skipped: c.skipped,
                ..job
            }
        };
        // Every message failing is a failed job, not a sent one.
        let status = if job.sent == 0 && job.failed + job.bounced > 0 {
            MailJobStatus::Failed
        } else {
            MailJobStatus::Sent
        };
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::status.eq(status.as_str()),
                mail_jobs::finished_at.eq(at),
                mail_jobs::updated_at.eq(at),
                mail_jobs::message.eq(format!(
                    "{} sent, {} bounced, {} failed, {} skipped",
                    job.sent, job.bounced, job.failed, job.skipped
                )),
            ))
            .execute(conn)?;
        release_if_nothing_sent(conn, id)?;
        Ok(Outcome::Done(format!(
            "mail job {id}: {} sent, {} bounced, {} failed, {} skipped",
            job.sent, job.bounced, job.failed, job.skipped
        )))
    })
}

/// The recipients a claim may take, in the order it takes them.
#[derive(Clone, Copy)]
enum Claimable {
    /// `sending` under an expired lease: its run died during the hand-over (in doubt).
    Abandoned,
    /// `deferred` and due again.
    Due,
    /// `pending`, not held by a live run.
    Pending,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    person_id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    blocks: i64,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    contact_moment_id: Option<i64>,
}

fn literal(t: NaiveDateTime) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

/// Up to `size` recipients of one kind, locked on PostgreSQL and skipped when another
/// run's claim transaction holds them. Every value in the statement is made here (ids,
/// times, counts), so they are literals.
fn candidates(
    conn: &mut DbConnection,
    id: i64,
    kind: Claimable,
    at: NaiveDateTime,
    size: i64,
) -> Result<Vec<Candidate>, CampaignError> {
    let now = literal(at);
    let free = format!("(lease_until IS NULL OR lease_until < {now})");
    let filter = match kind {
        Claimable::Abandoned => format!("state = 'sending' AND lease_until < {now}"),
        Claimable::Due => format!("state = 'deferred' AND next_attempt_at <= {now} AND {free}"),
        Claimable::Pending => format!("state = 'pending' AND {free}"),
    };
    let lock = match conn {
        DbConnection::Pg(_) => " FOR UPDATE SKIP LOCKED",
        DbConnection::Sqlite(_) => "",
    };
    Ok(diesel::sql_query(format!(
        "SELECT person_id, blocks, attempts, contact_moment_id FROM mail_job_recipients
         WHERE mail_job_id = {id} AND {filter}
         ORDER BY person_id LIMIT {size}{lock}"
    ))
    .load(conn)?)
}

/// Claims the next batch for this run: recipients abandoned in doubt first, then deferred
/// ones that are due, then pending ones. Each gets the run's name and a lease; those
/// without a contact moment get one here, with the Message-ID every attempt will carry.
fn claim(
    conn: &mut DbConnection,
    job: &JobContent,
    delivery: &Delivery,
    run: &str,
) -> Result<Vec<Claimed>, CampaignError> {
    let id = job.id;
    write_transaction(conn, |conn| {
        let at = mailbaar_store::now();
        let size = delivery.batch_size;
        let mut picked: Vec<Candidate> = Vec::new();
        let mut abandoned = 0usize;
        for kind in [Claimable::Abandoned, Claimable::Due, Claimable::Pending] {
            let room = size - picked.len() as i64;
            if room <= 0 {
                break;
            }
            let found = candidates(conn, id, kind, at, room)?;
            if matches!(kind, Claimable::Abandoned) {
                abandoned = found.len();
            }
            picked.extend(found);
        }
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = picked.iter().map(|c| c.person_id).collect();
        let mine = mail_job_recipients::table
            .filter(mail_job_recipients::mail_job_id.eq(id))
            .filter(mail_job_recipients::person_id.eq_any(&ids));
        if abandoned > 0 {
            let doubt: Vec<i64> = ids[..abandoned].to_vec();
            diesel::update(
                mail_job_recipients::table
                    .filter(mail_job_recipients::mail_job_id.eq(id))
                    .filter(mail_job_recipients::person_id.eq_any(&doubt)),
            )
            .set(mail_job_recipients::in_doubt.eq(true))
            .execute(conn)?;
            // Counted per hand-over taken over: each may have made one extra copy.
            diesel::update(mail_jobs::table.find(id))
                .set(mail_jobs::in_doubt.eq(mail_jobs::in_doubt + abandoned as i64))
                .execute(conn)?;
            tracing::warn!(
                mail_job = id,
                recipients = abandoned,
                "taking over hand-overs of a stopped run; they may have been delivered already"
            );
        }
        diesel::update(mine)
            .set((
                mail_job_recipients::claimed_by.eq(run),
                mail_job_recipients::lease_until.eq(at + delivery.lease),
            ))
            .execute(conn)?;
        // Contact moments are found by their id (kept with the recipient), never by
        // (job, person): PostgreSQL plans that lookup on statistics taken before the job's
        // moments existed and scans them all, each claim slower than the last.
        let known: Vec<i64> = picked.iter().filter_map(|c| c.contact_moment_id).collect();
        let mut moments: BTreeMap<i64, (i64, String)> = if known.is_empty() {
            BTreeMap::new()
        } else {
            contact_moments::table
                .filter(contact_moments::id.eq_any(&known))
                .select((
                    contact_moments::person_id,
                    contact_moments::id,
                    contact_moments::message_id,
                ))
                .load::<(i64, i64, Option<String>)>(conn)?
                .into_iter()
                .map(|(p, cm, m)| (p, (cm, m.unwrap_or_default())))
                .collect()
        };
        let missing: Vec<i64> = picked
            .iter()
            .filter(|c| c.contact_moment_id.is_none())
            .map(|c| c.person_id)
            .collect();
        if !missing.is_empty() {
            let rows: Vec<_> = missing
                .iter()
                .map(|person| {
                    (
                        contact_moments::person_id.eq(*person),
                        contact_moments::channel.eq("email"),
                        contact_moments::step_id.eq(Some(job.step_id)),
                        contact_moments::is_test.eq(false),
                        contact_moments::occurred_at.eq(at),
                        contact_moments::mail_job_id.eq(Some(id)),
                        contact_moments::message_id.eq(Some(new_message_id(&job.from))),
                    )
                })
                .collect();
            // One multi-row INSERT, on each engine's own connection (the multi-backend
            // connection does not batch).
            let insert = diesel::insert_into(contact_moments::table)
                .values(&rows)
                .returning((
                    contact_moments::person_id,
                    contact_moments::id,
                    contact_moments::message_id,
                ));
            let made: Vec<(i64, i64, Option<String>)> = match conn {
                DbConnection::Pg(c) => insert.get_results(c)?,
                DbConnection::Sqlite(c) => insert.get_results(c)?,
            };
            // Every value is an integer made here, so they are literals.
            let cases: String = made
                .iter()
                .map(|(p, cm, _)| format!(" WHEN {p} THEN {cm}"))
                .collect();
            let persons: Vec<String> = made.iter().map(|(p, _, _)| p.to_string()).collect();
            diesel::sql_query(format!(
                "UPDATE mail_job_recipients SET contact_moment_id = CASE person_id{cases} END
                 WHERE mail_job_id = {id} AND person_id IN ({})",
                persons.join(", ")
            ))
            .execute(conn)?;
            moments.extend(
                made.into_iter()
                    .map(|(p, cm, m)| (p, (cm, m.unwrap_or_default()))),
            );
        }
        Ok(picked
            .into_iter()
            .filter_map(|c| {
                let (contact_moment_id, message_id) = moments.get(&c.person_id)?.clone();
                Some(Claimed {
                    person_id: c.person_id,
                    blocks: c.blocks,
                    attempts: c.attempts,
                    contact_moment_id,
                    message_id,
                })
            })
            .collect())
    })
}

/// Delivers a claimed batch with at most the transport's concurrency in flight. A message
/// is marked `sending` (committed) just before it is handed over, and its verdict is
/// committed right after, together with the next messages' marks: so at any moment at
/// most `concurrency` messages of this run can have reached the server without the
/// database knowing — the most a crash can double. `Some(reason)` when the job was paused
/// or cancelled: the run stops starting messages, records those in flight, and lets go
/// of the rest of its claim.
fn deliver(
    conn: &mut DbConnection,
    job: &JobContent,
    delivery: &Delivery,
    run: &str,
    claimed: Vec<Claimed>,
) -> Result<Option<String>, CampaignError> {
    let ids: Vec<i64> = claimed.iter().map(|c| c.person_id).collect();
    let persons: BTreeMap<i64, mailbaar_people::Person> =
        mailbaar_people::persons_by_ids(conn, &ids)?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
    let opted_out: BTreeSet<i64> = match job.frozen.opt_in_type_id {
        Some(t) => consent_current::table
            .filter(consent_current::opt_in_type_id.eq(t))
            .filter(consent_current::person_id.eq_any(&ids))
            .filter(consent_current::opt_in.eq(false))
            .select(consent_current::person_id)
            .load::<i64>(conn)?
            .into_iter()
            .collect(),
        None => BTreeSet::new(),
    };
    let window = delivery.transport.concurrency().max(1);
    // Under a pace, messages start in small groups (about 50 ms worth), not a window at once.
    let group = delivery.pace_group().unwrap_or(window);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Handover)>();
    let mut next = 0usize;
    let mut in_flight = 0usize;
    let mut verdicts: Vec<(usize, Verdict)> = Vec::new();
    let mut stop: Option<String> = None;
    loop {
        let mut starts: Vec<(usize, OutgoingMessage)> = Vec::new();
        while stop.is_none()
            && in_flight + starts.len() < window
            && starts.len() < group
            && next < claimed.len()
        {
            let i = next;
            next += 1;
            match message_for(job, delivery, &claimed[i], &persons, &opted_out) {
                Ok(message) => starts.push((i, message)),
                Err(verdict) => verdicts.push((i, verdict)),
            }
        }
        // The pace is reserved now and waited for after the commit, so the verdicts that
        // came in are recorded at once.
        let wait = if starts.is_empty() {
            std::time::Duration::ZERO
        } else {
            delivery.reserve(conn, starts.len())?
        };
        let started: Vec<i64> = starts.iter().map(|(i, _)| claimed[*i].person_id).collect();
        let step = commit(conn, job.id, delivery, run, &claimed, &verdicts, &started)?;
        verdicts.clear();
        match step {
            Committed::Stop(reason) => stop = stop.or(Some(reason)),
            Committed::Started(owned) => {
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                for (i, message) in starts {
                    if !owned.contains(&claimed[i].person_id) {
                        continue;
                    }
                    let tx = tx.clone();
                    in_flight += 1;
                    delivery.transport.start(
                        message,
                        Box::new(move |verdict| {
                            let _ = tx.send((i, verdict));
                        }),
                    );
                }
            }
        }
        if in_flight == 0 {
            if stop.is_some() || next >= claimed.len() {
                break;
            }
            continue;
        }
        // Verdicts are committed in groups: wait until at least half the window is free
        // (or nothing is left to start), so one commit records several hand-overs.
        let more_to_start = stop.is_none() && next < claimed.len();
        let refill_at = if more_to_start { window.div_ceil(2) } else { 1 };
        let mut freed = 0;
        while freed < refill_at.min(in_flight) || freed == 0 {
            let (i, handover) = rx.recv().map_err(|_| {
                CampaignError::Refused("the transport stopped before answering".into())
            })?;
            in_flight -= 1;
            freed += 1;
            verdicts.push((i, verdict_of(handover, &claimed[i], delivery)));
            for (i, handover) in rx.try_iter() {
                in_flight -= 1;
                freed += 1;
                verdicts.push((i, verdict_of(handover, &claimed[i], delivery)));
            }
            if in_flight == 0 {
                break;
            }
        }
    }
    if stop.is_some() {
        release(conn, job.id, run)?;
    }
    Ok(stop)
}

/// The message for one claimed recipient, or why there is none.
fn message_for(
    job: &JobContent,
    delivery: &Delivery,
    c: &Claimed,
    persons: &BTreeMap<i64, mailbaar_people::Person>,
    opted_out: &BTreeSet<i64>,
) -> Result<OutgoingMessage, Verdict> {
    let Some(person) = persons.get(&c.person_id).filter(|p| p.mailable) else {
        return Err(Verdict::Skipped("no longer mailable".into()));
    };
    if opted_out.contains(&c.person_id) {
        return Err(Verdict::Skipped("opted out since preparation".into()));
    }
    let blocks: BTreeSet<String> = job
        .frozen
        .blocks
        .iter()
        .enumerate()
        .filter(|(i, b)| b.condition.is_none() || c.blocks & (1i64 << i) != 0)
        .map(|(_, b)| b.name.clone())
        .collect();
    let mail = render_for(
        &job.compiled,
        &delivery.links,
        person,
        blocks,
        c.contact_moment_id,
        &c.message_id,
        mailbaar_store::now(),
    )
    .map_err(Verdict::Failed)?;
    Ok(OutgoingMessage {
        message_id: c.message_id.clone(),
        from: job.from.clone(),
        to: person.email.clone().unwrap_or_default(),
        bytes: mail.message,
        batch: job.batch.clone(),
    })
}

/// The verdict on a recipient from the transport's answer: 4xx and no answer are tried
/// again until the attempts run out.
fn verdict_of(handover: Handover, c: &Claimed, delivery: &Delivery) -> Verdict {
    let attempts = c.attempts + 1;
    let retry = |reply: String| {
        if attempts >= delivery.retry.max_attempts {
            Verdict::Failed(format!("gave up after {attempts} attempts: {reply}"))
        } else {
            Verdict::Deferred(reply)
        }
    };
    match handover {
        Handover::Accepted => Verdict::Sent,
        Handover::Deferred(reply) | Handover::NotDelivered(reply) => retry(reply),
        Handover::Rejected(reply) => Verdict::Bounced(reply),
        Handover::Refused(reason) => Verdict::Failed(format!("refused: {reason}")),
    }
}

enum Committed {
    /// The recipients this run still held and marked `sending`.
    Started(BTreeSet<i64>),
    /// The job was paused or cancelled: nothing was marked.
    Stop(String),
}

/// One transaction: the verdicts that came in, and the marks of the messages about to be
/// handed over (only those this run still holds).
fn commit(
    conn: &mut DbConnection,
    id: i64,
    delivery: &Delivery,
    run: &str,
    claimed: &[Claimed],
    verdicts: &[(usize, Verdict)],
    starts: &[i64],
) -> Result<Committed, CampaignError> {
    write_transaction(conn, |conn| {
        let at = mailbaar_store::now();
        let (status, paused): (String, Option<NaiveDateTime>) = mail_jobs::table
            .find(id)
            .select((mail_jobs::status, mail_jobs::paused_at))
            .first(conn)?;
        let rows = |persons: Vec<i64>| {
            mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(id))
                .filter(mail_job_recipients::person_id.eq_any(persons))
        };
        let delivered: Vec<&Claimed> = verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Sent))
            .map(|(i, _)| &claimed[*i])
            .collect();
        if !delivered.is_empty() {
            // Only rows still `sending`: a run that took over an abandoned hand-over and
            // finished first has recorded it already.
            diesel::update(
                rows(delivered.iter().map(|c| c.person_id).collect())
                    .filter(mail_job_recipients::state.eq("sending")),
            )
            .set((
                mail_job_recipients::state.eq("sent"),
                mail_job_recipients::claimed_by.eq(None::<String>),
                mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
                mail_job_recipients::last_error.eq(None::<String>),
            ))
            .execute(conn)?;
            let moments: Vec<i64> = delivered.iter().map(|c| c.contact_moment_id).collect();
            diesel::update(contact_moments::table.filter(contact_moments::id.eq_any(&moments)))
                .set((
                    contact_moments::sent_at.eq(at),
                    contact_moments::delivered_at.eq(at),
                ))
                .execute(conn)?;
        }
        for (i, verdict) in verdicts {
            let c = &claimed[*i];
            // Only a row this run still holds: one another run took over (and perhaps
            // finished) is that run's to record.
            let row = rows(vec![c.person_id]).filter(mail_job_recipients::claimed_by.eq(run));
            match verdict {
                Verdict::Sent => {}
                Verdict::Deferred(reply) => {
                    let delay = delivery.retry.delay(c.attempts + 1);
                    diesel::update(row)
                        .set((
                            mail_job_recipients::state.eq("deferred"),
                            mail_job_recipients::next_attempt_at.eq(at + delay),
                            mail_job_recipients::claimed_by.eq(None::<String>),
                            mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
                            mail_job_recipients::last_error.eq(clip(reply)),
                        ))
                        .execute(conn)?;
                }
                Verdict::Bounced(reply) => {
                    diesel::update(row)
                        .set((
                            mail_job_recipients::state.eq("bounced"),
                            mail_job_recipients::claimed_by.eq(None::<String>),
                            mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
                            mail_job_recipients::last_error.eq(clip(reply)),
                        ))
                        .execute(conn)?;
                    diesel::update(contact_moments::table.find(c.contact_moment_id))
                        .set((
                            contact_moments::bounced_at.eq(at),
                            contact_moments::bounce_reason.eq(clip(reply)),
                        ))
                        .execute(conn)?;
                    mailbaar_people::record_bounce(
                        conn,
                        c.person_id,
                        true,
                        &format!("SMTP: {reply}"),
                        i64::MAX,
                        "delivery",
                    )?;
                }
                Verdict::Failed(reason) | Verdict::Skipped(reason) => {
                    let state = if matches!(verdict, Verdict::Failed(_)) {
                        "failed"
                    } else {
                        "skipped"
                    };
                    diesel::update(row)
                        .set((
                            mail_job_recipients::state.eq(state),
                            mail_job_recipients::claimed_by.eq(None::<String>),
                            mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
                            mail_job_recipients::last_error.eq(clip(reason)),
                        ))
                        .execute(conn)?;
                    // No message went out: no contact moment, unless an earlier attempt
                    // may have delivered it.
                    diesel::delete(
                        contact_moments::table
                            .find(c.contact_moment_id)
                            .filter(contact_moments::sent_at.is_null()),
                    )
                    .execute(conn)?;
                }
            }
        }
        if status != MailJobStatus::Sending.as_str() {
            return Ok(Committed::Stop(format!(
                "the job is {status}; stopped sending"
            )));
        }
        if paused.is_some() {
            return Ok(Committed::Stop(
                "the job was paused; stopped sending".into(),
            ));
        }
        if starts.is_empty() {
            return Ok(Committed::Started(BTreeSet::new()));
        }
        let owned: Vec<i64> =
            diesel::update(rows(starts.to_vec()).filter(mail_job_recipients::claimed_by.eq(run)))
                .set((
                    mail_job_recipients::state.eq("sending"),
                    mail_job_recipients::attempts.eq(mail_job_recipients::attempts + 1),
                    mail_job_recipients::lease_until.eq(at + delivery.lease),
                ))
                .returning(mail_job_recipients::person_id)
                .get_results(conn)?;
        Ok(Committed::Started(owned.into_iter().collect()))
    })
}

/// Lets go of the recipients a stopped run claimed but did not start.
fn release(conn: &mut DbConnection, id: i64, run: &str) -> Result<(), CampaignError> {
    diesel::update(
        mail_job_recipients::table
            .filter(mail_job_recipients::mail_job_id.eq(id))
            .filter(mail_job_recipients::claimed_by.eq(run))
            .filter(mail_job_recipients::state.ne("sending")),
    )
    .set((
        mail_job_recipients::claimed_by.eq(None::<String>),
        mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    crate::job::store_counts(conn, id)?;
    Ok(())
}

/// A reply or reason as stored (at most 500 characters).
fn clip(text: &str) -> String {
    text.chars().take(500).collect()
}

impl From<mailbaar_store::StoreError> for CampaignError {
    fn from(e: mailbaar_store::StoreError) -> Self {
        CampaignError::Task(TaskError::from(e))
    }
}
