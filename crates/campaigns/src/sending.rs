//! The mail job's side of a send: whether a send run may start, whether it must stop, and
//! how the job ends. The delivery engine (claim, hand-over, verdicts, leases) works the
//! recipients between these; the job's status changes only here.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_store::schema::{mail_job_recipients, mail_jobs};
use mailbaar_store::{now, write_transaction, DbConnection};
use mailbaar_tasks::TaskError;

use crate::job::{
    ensure_send_tasks, fail_job, lock_job, release_if_nothing_sent, store_counts, FrozenContent,
};
use crate::status::{MailJobStatus, RecipientState};
use crate::CampaignError;

/// A job a send run may work on.
#[derive(Debug, Clone)]
pub struct SendingJob {
    /// The mail job's id.
    pub id: i64,
    /// Its step (contact moments name it).
    pub step_id: i64,
    /// Recipients frozen at preparation (the run's progress total).
    pub recipients: i64,
    /// The content frozen at preparation.
    pub frozen: FrozenContent,
}

/// Whether a send run starts.
#[derive(Debug)]
pub enum SendStart {
    /// Nothing to send (the job is not prepared or sending, is paused, or its content is
    /// unreadable and the job failed): the run ends with this note.
    Stop(String),
    /// Send.
    Go(Box<SendingJob>),
}

/// Starts a send run of job `id` under task `task_id` (one transaction): checks the job
/// may send, queues its other runs (`parallel_runs` on PostgreSQL, for the other workers
/// to join in) and marks it `sending`. A job whose frozen content cannot be read fails.
pub fn start_sending(
    conn: &mut DbConnection,
    id: i64,
    task_id: i64,
    parallel_runs: usize,
) -> Result<SendStart, CampaignError> {
    write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        let at = now();
        match job.status() {
            MailJobStatus::Prepared | MailJobStatus::Sending => {}
            other => {
                return Ok(SendStart::Stop(format!(
                    "mail job {id} is {other}; nothing to send"
                )))
            }
        }
        if job.paused_at.is_some() {
            return Ok(SendStart::Stop(format!("mail job {id} is paused")));
        }
        let Some(frozen) = FrozenContent::of_job(conn, id)? else {
            fail_job(conn, id, "not sent: the frozen content cannot be read", at)?;
            return Ok(SendStart::Stop("the frozen content cannot be read".into()));
        };
        ensure_send_tasks(conn, &job, parallel_runs)?;
        if job.status() == MailJobStatus::Prepared {
            diesel::update(mail_jobs::table.find(id))
                .set((
                    mail_jobs::status.eq(MailJobStatus::Sending),
                    mail_jobs::task_id.eq(task_id),
                    mail_jobs::started_at.eq(job.started_at.unwrap_or(at)),
                    mail_jobs::updated_at.eq(at),
                ))
                .execute(conn)?;
        }
        Ok(SendStart::Go(Box::new(SendingJob {
            id,
            step_id: job.step_id,
            recipients: job.recipients,
            frozen,
        })))
    })
}

/// Ends job `id` as failed with `message` (its own transaction): for content that no
/// longer compiles at send time.
pub fn fail_sending(conn: &mut DbConnection, id: i64, message: &str) -> Result<(), CampaignError> {
    write_transaction(conn, |conn| fail_job(conn, id, message, now()))
}

/// Why the runs of job `id` must stop starting messages (it was paused, cancelled or
/// ended); `None` while it sends. Read inside the caller's transaction.
pub fn sending_stop_reason(
    conn: &mut DbConnection,
    id: i64,
) -> Result<Option<String>, CampaignError> {
    let (status, paused, reason): (String, Option<NaiveDateTime>, Option<String>) =
        mail_jobs::table
            .find(id)
            .select((
                mail_jobs::status,
                mail_jobs::paused_at,
                mail_jobs::pause_reason,
            ))
            .first(conn)?;
    let status: MailJobStatus = status
        .parse()
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    if status != MailJobStatus::Sending {
        return Ok(Some(format!("the job is {status}; stopped sending")));
    }
    if paused.is_some() {
        return Ok(Some(match reason {
            Some(reason) => format!("the job paused itself ({reason}); stopped sending"),
            None => "the job was paused; stopped sending".into(),
        }));
    }
    Ok(None)
}

/// Pauses job `id` because the relay refuses us rather than a recipient (`reason` says
/// how; kept on the job as `pause_reason` until `resume`). Only a job still sending and not
/// yet paused changes; whether it did. Read by the runs through [`sending_stop_reason`],
/// so every run of the job stops starting messages.
pub fn pause_for_refusal(
    conn: &mut DbConnection,
    id: i64,
    reason: &str,
) -> Result<bool, CampaignError> {
    write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        if job.status() != MailJobStatus::Sending || job.paused_at.is_some() {
            return Ok(false);
        }
        let at = now();
        let reason: String = reason.chars().take(500).collect();
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::paused_at.eq(at),
                mail_jobs::pause_reason.eq(&reason),
                mail_jobs::message.eq(format!("paused: {reason}")),
                mail_jobs::updated_at.eq(at),
            ))
            .execute(conn)?;
        store_counts(conn, id)?;
        mailbaar_audit::record(
            conn,
            "delivery",
            "mailjob.pause",
            None,
            &format!("mail job {id}: {reason}"),
        )?;
        Ok(true)
    })
}

/// What a send run that found nothing to claim does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendEnd {
    /// Recipients are still open (deferred, or held by another run): look again at
    /// `run_at` (UTC).
    Again {
        message: String,
        run_at: NaiveDateTime,
    },
    /// The run is over (the job ended, or was no longer sending); the note.
    Done(String),
}

/// Ends a send run of job `id` that found nothing to claim (one transaction): the job is
/// done when no recipient is left pending, deferred or sending; otherwise the run comes
/// back when the next deferred recipient is due or another run's lease runs out. A job
/// that ends is `sent`, or `failed` when every message failed.
pub fn finish_sending(conn: &mut DbConnection, id: i64) -> Result<SendEnd, CampaignError> {
    write_transaction(conn, |conn| {
        let job = lock_job(conn, id)?;
        if job.status() != MailJobStatus::Sending {
            return Ok(SendEnd::Done(format!("mail job {id} is {}", job.status())));
        }
        let open = || {
            mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(id))
                .filter(mail_job_recipients::state.eq_any(RecipientState::OPEN))
        };
        let left: i64 = open().count().get_result(conn)?;
        if left > 0 {
            let at = now();
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
            return Ok(SendEnd::Again {
                message: format!("{left} recipients still open; looking again at {run_at} UTC"),
                run_at,
            });
        }
        let at = now();
        let c = store_counts(conn, id)?;
        // Every message failing is a failed job, not a sent one (one in doubt may have
        // arrived).
        let status = if c.sent == 0 && c.in_doubt == 0 && c.failed + c.bounced > 0 {
            MailJobStatus::Failed
        } else {
            MailJobStatus::Sent
        };
        let summary = format!(
            "{} sent, {} bounced, {} failed, {} skipped, {} in doubt",
            c.sent, c.bounced, c.failed, c.skipped, c.in_doubt
        );
        diesel::update(mail_jobs::table.find(id))
            .set((
                mail_jobs::status.eq(status.as_str()),
                mail_jobs::finished_at.eq(at),
                mail_jobs::updated_at.eq(at),
                mail_jobs::message.eq(&summary),
            ))
            .execute(conn)?;
        release_if_nothing_sent(conn, id)?;
        Ok(SendEnd::Done(format!("mail job {id}: {summary}")))
    })
}

/// Writes job `id`'s counts from its recipients' states into its own columns: when a run
/// stops early, so a paused or cancelled job shows what was sent.
pub fn store_sending_counts(conn: &mut DbConnection, id: i64) -> Result<(), CampaignError> {
    store_counts(conn, id).map(|_| ())
}

impl From<mailbaar_store::StoreError> for CampaignError {
    fn from(e: mailbaar_store::StoreError) -> Self {
        CampaignError::Task(TaskError::from(e))
    }
}
