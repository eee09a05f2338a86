//! The two tasks of a mail job: preparation (freeze content and recipients) and sending
//! (deliver them in batches). Both run under the task mechanism's lease, so one runner at a
//! time works a job; a run cut off by a crash is taken again and carries on where the
//! database says it stopped.
//!
//! Sending is at-least-once per recipient and at-most-once per (job, person) contact
//! moment: a batch is claimed (`pending` → `sending`, a contact moment with a fixed
//! Message-ID per recipient, one transaction), handed to the transport, then recorded
//! (`sent`, one transaction). A crash between the two resends only that batch's
//! in-flight messages, with the same Message-IDs.

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
use crate::transport::OutgoingMessage;
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

fn send_task(job: &JobRow, by: &str) -> NewTask {
    NewTask::now(SEND, by)
        .unique(&format!("{SEND}:{}", job.id))
        .with_payload(serde_json::json!({ "mail_job_id": job.id }))
        .at(job.scheduled_at)
}

/// Queues the send task of a prepared job unless one is already active; its id.
fn ensure_send_task(conn: &mut DbConnection, job: &JobRow) -> Result<i64, CampaignError> {
    let task = mailbaar_tasks::ensure(conn, &send_task(job, &job.created_by))?;
    Ok(task.id)
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

/// One recipient of a claimed batch.
struct Claimed {
    person_id: i64,
    blocks: i64,
    contact_moment_id: i64,
    message_id: String,
}

impl Work for SendWork {
    fn run(&self, ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
        let payload: JobPayload = ctx.payload()?;
        Ok(send(ctx, &self.delivery, payload.mail_job_id)?)
    }
}

enum SendStart {
    Stop(String),
    Go(Box<Frozen>, i64, i64),
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
        let content: Option<String> = mail_jobs::table
            .find(id)
            .select(mail_jobs::content)
            .first(conn)?;
        let Some(frozen) = content.and_then(|c| serde_json::from_str::<Frozen>(&c).ok()) else {
            fail_job(conn, id, "not sent: the frozen content cannot be read", at)?;
            return Ok(SendStart::Stop("the frozen content cannot be read".into()));
        };
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::status.eq(MailJobStatus::Sending.as_str()),
                mail_jobs::task_id.eq(task_id),
                mail_jobs::started_at.eq(job.started_at.unwrap_or(at)),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
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
            fail_job(&mut conn, id, &message, mailbaar_store::now())?;
            return Ok(Outcome::Done(message));
        }
    };
    let from = frozen.step.from_email.clone();
    let batch_name = format!("job-{id}");
    loop {
        ctx.check_lease()?;
        let claimed = claim(&mut conn, id, step_id, &from, delivery.batch_size)?;
        if claimed.is_empty() {
            break;
        }
        let ids: Vec<i64> = claimed.iter().map(|c| c.person_id).collect();
        let persons: BTreeMap<i64, mailbaar_people::Person> =
            mailbaar_people::persons_by_ids(&mut conn, &ids)?
                .into_iter()
                .map(|p| (p.id, p))
                .collect();
        let opted_out: BTreeSet<i64> = match frozen.opt_in_type_id {
            Some(t) => consent_current::table
                .filter(consent_current::opt_in_type_id.eq(t))
                .filter(consent_current::person_id.eq_any(&ids))
                .filter(consent_current::opt_in.eq(false))
                .select(consent_current::person_id)
                .load::<i64>(&mut conn)?
                .into_iter()
                .collect(),
            None => BTreeSet::new(),
        };
        let mut sent = Vec::new();
        let mut failed: Vec<(i64, i64, String)> = Vec::new();
        let mut skipped: Vec<(i64, i64, String)> = Vec::new();
        for c in &claimed {
            let Some(person) = persons.get(&c.person_id).filter(|p| p.mailable) else {
                skipped.push((
                    c.person_id,
                    c.contact_moment_id,
                    "no longer mailable".into(),
                ));
                continue;
            };
            if opted_out.contains(&c.person_id) {
                skipped.push((
                    c.person_id,
                    c.contact_moment_id,
                    "opted out since preparation".into(),
                ));
                continue;
            }
            let blocks: BTreeSet<String> = frozen
                .blocks
                .iter()
                .enumerate()
                .filter(|(i, b)| b.condition.is_none() || c.blocks & (1i64 << i) != 0)
                .map(|(_, b)| b.name.clone())
                .collect();
            let at = mailbaar_store::now();
            let outcome = render_for(
                &compiled,
                &delivery.links,
                person,
                blocks,
                c.contact_moment_id,
                &c.message_id,
                at,
            )
            .and_then(|mail| {
                delivery
                    .transport
                    .send(&OutgoingMessage {
                        message_id: &c.message_id,
                        from: &from,
                        to: person.email.as_deref().unwrap_or_default(),
                        bytes: &mail.message,
                        batch: &batch_name,
                    })
                    .map_err(|e| e.to_string())
            });
            match outcome {
                Ok(()) => sent.push((c.person_id, c.contact_moment_id)),
                Err(reason) => failed.push((c.person_id, c.contact_moment_id, reason)),
            }
        }
        record(&mut conn, id, &sent, &failed, &skipped)?;
        let row = crate::job::job_row(&mut conn, id)?;
        let done = row.sent + row.failed + row.skipped;
        ctx.progress(done, total, &format!("{} of {total} sent", row.sent))?;
    }
    let at = mailbaar_store::now();
    let row = write_transaction(&mut conn, |conn| -> Result<JobRow, CampaignError> {
        let counts = crate::job::job_row(conn, id)?;
        // Every message failing is a failed job, not a sent one.
        let status = if counts.sent == 0 && counts.failed > 0 {
            MailJobStatus::Failed
        } else {
            MailJobStatus::Sent
        };
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::status.eq(status.as_str()),
                mail_jobs::finished_at.eq(at),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        release_if_nothing_sent(conn, id)?;
        let row = crate::job::job_row(conn, id)?;
        diesel::update(mail_jobs::table.find(id))
            .set(mail_jobs::message.eq(format!(
                "{} sent, {} failed, {} skipped",
                row.sent, row.failed, row.skipped
            )))
            .execute(conn)?;
        Ok(row)
    })?;
    Ok(Outcome::Done(format!(
        "mail job {id}: {} sent, {} failed, {} skipped",
        row.sent, row.failed, row.skipped
    )))
}

/// Claims the next batch: first recipients left `sending` by a run that was cut off
/// (their contact moments and Message-IDs exist), else `pending` ones, which get their
/// contact moment and Message-ID here, before any attempt.
fn claim(
    conn: &mut DbConnection,
    id: i64,
    step_id: i64,
    from: &str,
    size: i64,
) -> Result<Vec<Claimed>, CampaignError> {
    write_transaction(conn, |conn| {
        let at = mailbaar_store::now();
        let in_flight: Vec<(i64, i64)> = mail_job_recipients::table
            .filter(mail_job_recipients::mail_job_id.eq(id))
            .filter(mail_job_recipients::state.eq("sending"))
            .order(mail_job_recipients::person_id)
            .limit(size)
            .select((mail_job_recipients::person_id, mail_job_recipients::blocks))
            .load(conn)?;
        let rows = if in_flight.is_empty() {
            let pending: Vec<(i64, i64)> = mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(id))
                .filter(mail_job_recipients::state.eq("pending"))
                .order(mail_job_recipients::person_id)
                .limit(size)
                .select((mail_job_recipients::person_id, mail_job_recipients::blocks))
                .load(conn)?;
            if pending.is_empty() {
                return Ok(Vec::new());
            }
            let moments: Vec<_> = pending
                .iter()
                .map(|(person, _)| {
                    (
                        contact_moments::person_id.eq(*person),
                        contact_moments::channel.eq("email"),
                        contact_moments::step_id.eq(Some(step_id)),
                        contact_moments::is_test.eq(false),
                        contact_moments::occurred_at.eq(at),
                        contact_moments::mail_job_id.eq(Some(id)),
                        contact_moments::message_id.eq(Some(new_message_id(from))),
                    )
                })
                .collect();
            // One multi-row INSERT, on each engine's own connection (the multi-backend
            // connection does not batch).
            let insert = diesel::insert_into(contact_moments::table).values(&moments);
            match conn {
                DbConnection::Pg(c) => insert.execute(c)?,
                DbConnection::Sqlite(c) => insert.execute(c)?,
            };
            pending
        } else {
            in_flight
        };
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        diesel::update(
            mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(id))
                .filter(mail_job_recipients::person_id.eq_any(&ids)),
        )
        .set((
            mail_job_recipients::state.eq("sending"),
            mail_job_recipients::attempts.eq(mail_job_recipients::attempts + 1),
        ))
        .execute(conn)?;
        let moments: BTreeMap<i64, (i64, String)> = contact_moments::table
            .filter(contact_moments::mail_job_id.eq(id))
            .filter(contact_moments::person_id.eq_any(&ids))
            .select((
                contact_moments::person_id,
                contact_moments::id,
                contact_moments::message_id,
            ))
            .load::<(i64, i64, Option<String>)>(conn)?
            .into_iter()
            .map(|(p, cm, m)| (p, (cm, m.unwrap_or_default())))
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|(person_id, blocks)| {
                let (contact_moment_id, message_id) = moments.get(&person_id)?.clone();
                Some(Claimed {
                    person_id,
                    blocks,
                    contact_moment_id,
                    message_id,
                })
            })
            .collect())
    })
}

/// Records a batch's outcome in one transaction: sent contact moments get their times,
/// failed and skipped recipients lose theirs (no message went out), the job's counts grow.
fn record(
    conn: &mut DbConnection,
    id: i64,
    sent: &[(i64, i64)],
    failed: &[(i64, i64, String)],
    skipped: &[(i64, i64, String)],
) -> Result<(), CampaignError> {
    write_transaction(conn, |conn| {
        let at = mailbaar_store::now();
        let persons: Vec<i64> = sent.iter().map(|s| s.0).collect();
        let moments: Vec<i64> = sent.iter().map(|s| s.1).collect();
        diesel::update(contact_moments::table.filter(contact_moments::id.eq_any(&moments)))
            .set((
                contact_moments::sent_at.eq(at),
                contact_moments::delivered_at.eq(at),
            ))
            .execute(conn)?;
        diesel::update(
            mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(id))
                .filter(mail_job_recipients::person_id.eq_any(&persons)),
        )
        .set(mail_job_recipients::state.eq("sent"))
        .execute(conn)?;
        for (state, list) in [("failed", failed), ("skipped", skipped)] {
            for (person, moment, reason) in list {
                diesel::update(
                    mail_job_recipients::table
                        .filter(mail_job_recipients::mail_job_id.eq(id))
                        .filter(mail_job_recipients::person_id.eq(person)),
                )
                .set((
                    mail_job_recipients::state.eq(state),
                    mail_job_recipients::last_error.eq(reason),
                ))
                .execute(conn)?;
                diesel::delete(contact_moments::table.find(moment)).execute(conn)?;
            }
        }
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::sent.eq(mail_jobs::sent + sent.len() as i64),
                mail_jobs::failed.eq(mail_jobs::failed + failed.len() as i64),
                mail_jobs::skipped.eq(mail_jobs::skipped + skipped.len() as i64),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        Ok(())
    })
}

impl From<mailbaar_store::StoreError> for CampaignError {
    fn from(e: mailbaar_store::StoreError) -> Self {
        CampaignError::Task(TaskError::from(e))
    }
}
