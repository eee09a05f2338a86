//! Preparation of a mail job: a lead time before its send, freeze its content and its
//! recipients (one `INSERT … SELECT`), then queue the send by its task kind
//! ([`crate::SEND`]),
//! which the delivery engine works. A run cut off by a crash is taken again and starts
//! the list over.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_store::schema::{mail_job_recipients, mail_jobs};
use mailbaar_store::{write_transaction, DbConnection};
use mailbaar_tasks::{Outcome, TaskContext, WorkError};

use crate::audience::{mark_block, Audience};
use crate::job::{ensure_send_task, fail_job, lock_job, FrozenContent, MailJobPayload};
use crate::readiness::check;
use crate::requirement::RequirementCode;
use crate::status::MailJobStatus;
use crate::step::step_row;
use crate::CampaignError;

enum Start {
    Stop(String),
    Later(NaiveDateTime),
    Go,
}

/// The work of [`crate::PREPARE`]: at the job's `prepare_at`, evaluate the selection once and
/// write the recipients (`INSERT … SELECT`), mark block matches, store the compiled
/// step's content with the job, and queue the send for `scheduled_at`.
pub fn preparation_work(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let payload: MailJobPayload = ctx.payload()?;
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
                        mail_jobs::status.eq(MailJobStatus::Preparing),
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
        let frozen = FrozenContent {
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
                mail_jobs::status.eq(MailJobStatus::Prepared),
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
