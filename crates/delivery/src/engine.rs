//! The send engine: the work of a mail job's send task. A run claims a batch of
//! recipients from its [`RecipientQueue`], hands their messages to the [`Transport`] with
//! at most the transport's concurrency in flight, and records each verdict.
//!
//! Sending is at-least-once per recipient and at-most-once per (job, person) contact
//! moment. Each message is marked `sending` just before its hand-over and its verdict
//! recorded right after, a few at a time (see [`send_batches`]): a crash can double at
//! most the messages in flight at that moment, which the next run takes over as *in
//! doubt* once their lease expires and sends again with the same Message-IDs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use mailbaar_campaigns::{
    render_message, start_sending, MailJobPayload, SendEnd, SendStart, SendingJob, PERSON_FIELDS,
};
use mailbaar_render::CompiledStep;
use mailbaar_tasks::{Outcome, TaskContext, Work, WorkError};

use crate::delivery::Delivery;
use crate::queue::{Addressees, Claimed, DbQueue, Marked, RecipientQueue, Verdict};
use crate::reply::{Handover, SendOutcome};
use crate::transport::{OutgoingMessage, Transport};
use crate::DeliveryError;

/// The work of the send task ([`mailbaar_campaigns::SEND`]), holding this process's
/// [`Delivery`].
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
        let payload: MailJobPayload = ctx.payload()?;
        Ok(send(ctx, &self.delivery, payload.mail_job_id)?)
    }
}

/// What every batch of a run needs of its job.
pub struct JobContent {
    /// The mail job's id.
    pub id: i64,
    /// The envelope sender.
    pub from: String,
    /// The transport's group of this job's messages (`job-N`).
    pub batch: String,
    /// The frozen content, compiled as this process sends it (DKIM-signed when set).
    pub compiled: CompiledStep,
    /// The job as its run started.
    pub job: SendingJob,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The job was paused or cancelled: the run stopped starting messages and let go of
    /// the rest of its claim.
    Stopped(String),
    /// Nothing was left to claim: what the job does next.
    Drained(SendEnd),
}

fn send(ctx: &TaskContext<'_>, delivery: &Delivery, id: i64) -> Result<Outcome, DeliveryError> {
    let mut conn = ctx.pool().get().map_err(mailbaar_tasks::TaskError::from)?;
    let task_id = ctx.task().id;
    let job = match start_sending(&mut conn, id, task_id, delivery.parallel_runs)? {
        SendStart::Stop(message) => return Ok(Outcome::Done(message)),
        SendStart::Go(job) => *job,
    };
    let compiled = match CompiledStep::compile(&job.frozen.step, PERSON_FIELDS.as_slice()) {
        Ok(c) => c,
        Err(e) => {
            let message = format!("not sent: the frozen content does not compile: {e}");
            mailbaar_campaigns::fail_sending(&mut conn, id, &message)?;
            return Ok(Outcome::Done(message));
        }
    };
    // This run's name on the recipients it claims: unique, so a run that lost its claim
    // (its lease ran out while it was slow) cannot start a message another run now holds.
    let run = format!(
        "{task_id}.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let content = JobContent {
        id,
        from: job.frozen.step.from_email.clone(),
        batch: format!("job-{id}"),
        compiled: delivery.sending(compiled),
        job,
    };
    let total = content.job.recipients;
    let mut queue = DbQueue::new(
        &mut conn,
        id,
        content.job.step_id,
        &content.from,
        &run,
        delivery.lease,
    );
    let end = run_job(
        &mut queue,
        delivery.transport.as_ref(),
        delivery,
        &content,
        &mut |handled| {
            ctx.check_lease()?;
            if handled > 0 {
                // The task's progress is this run's: the job's live counts are its
                // recipients'.
                ctx.progress(
                    handled.min(total),
                    total,
                    &format!("{handled} handled by this run"),
                )?;
            }
            Ok(())
        },
    )?;
    Ok(match end {
        RunEnd::Stopped(reason) => Outcome::Done(format!("mail job {id}: {reason}")),
        RunEnd::Drained(SendEnd::Done(message)) => Outcome::Done(message),
        RunEnd::Drained(SendEnd::Again { message, run_at }) => Outcome::Again { message, run_at },
    })
}

/// Runs one send run of a job to its end: claims batches from `queue` and delivers them
/// through `transport` under `delivery`'s pace, retry policy and batch size, until none is
/// left to claim or the job stops. `before_batch` is called with the recipients handled
/// so far before each claim (to check the run still holds its task, and report
/// progress); its error ends the run.
pub fn run_job(
    queue: &mut dyn RecipientQueue,
    transport: &dyn Transport,
    delivery: &Delivery,
    job: &JobContent,
    before_batch: &mut dyn FnMut(i64) -> Result<(), DeliveryError>,
) -> Result<RunEnd, DeliveryError> {
    let mut handled = 0i64;
    loop {
        before_batch(handled)?;
        let claimed = queue.claim(delivery.batch_size)?;
        if claimed.is_empty() {
            break;
        }
        let claimed_count = claimed.len() as i64;
        if let Some(reason) = send_batches(queue, transport, job, delivery, &claimed)? {
            return Ok(RunEnd::Stopped(reason));
        }
        handled += claimed_count;
    }
    Ok(RunEnd::Drained(queue.finish()?))
}

/// Delivers a claimed batch with at most the transport's concurrency in flight. A message
/// is marked `sending` (committed) just before it is handed over, and its verdict is
/// committed right after, together with the next messages' marks: so at any moment at
/// most `concurrency` messages of this run can have reached the server without the
/// queue knowing — the most a crash can double. `Some(reason)` when the job was paused
/// or cancelled: the run stops starting messages, records those in flight, and lets go
/// of the rest of its claim.
fn send_batches(
    queue: &mut dyn RecipientQueue,
    transport: &dyn Transport,
    job: &JobContent,
    delivery: &Delivery,
    claimed: &[Claimed],
) -> Result<Option<String>, DeliveryError> {
    let addressees = queue.addressees(claimed, job.job.frozen.opt_in_type_id)?;
    let window = transport.concurrency().max(1);
    // Under a pace, messages start in small groups (about 50 ms worth), not a window at once.
    let group = delivery.pace_group().unwrap_or(window);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Handover)>();
    let mut next = 0usize;
    let mut in_flight = 0usize;
    let mut verdicts: Vec<(&Claimed, Verdict)> = Vec::new();
    let mut stop: Option<String> = None;
    // Claimed recipients not yet started stay held: their lease is renewed when half of
    // it has passed.
    let renew_every = (delivery.lease / 2).to_std().unwrap_or_default();
    let mut renewed = Instant::now();
    loop {
        let mut starts: Vec<(usize, OutgoingMessage)> = Vec::new();
        while stop.is_none()
            && in_flight + starts.len() < window
            && starts.len() < group
            && next < claimed.len()
        {
            let i = next;
            next += 1;
            match message_for(job, delivery, &claimed[i], &addressees) {
                Ok(message) => starts.push((i, message)),
                Err(verdict) => verdicts.push((&claimed[i], verdict)),
            }
        }
        // The pace is reserved now and waited for after the commit, so the verdicts that
        // came in are recorded at once.
        let wait = if starts.is_empty() {
            std::time::Duration::ZERO
        } else {
            delivery.reserve(queue, starts.len())?
        };
        let started: Vec<i64> = starts.iter().map(|(i, _)| claimed[*i].person_id).collect();
        let marked = queue.commit(&verdicts, &started)?;
        verdicts.clear();
        match marked {
            Marked::Stop(reason) => stop = stop.or(Some(reason)),
            Marked::Started(owned) => {
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                for (i, message) in starts {
                    if !owned.contains(&claimed[i].person_id) {
                        continue;
                    }
                    let tx = tx.clone();
                    in_flight += 1;
                    transport.start(
                        message,
                        Box::new(move |verdict| {
                            let _ = tx.send((i, verdict));
                        }),
                    );
                }
            }
        }
        if stop.is_none() && next < claimed.len() && renewed.elapsed() >= renew_every {
            queue.renew_lease()?;
            renewed = Instant::now();
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
            let (i, handover) = rx.recv().map_err(|_| DeliveryError::TransportGone)?;
            in_flight -= 1;
            freed += 1;
            verdicts.push((&claimed[i], verdict_of(handover, &claimed[i], delivery)));
            for (i, handover) in rx.try_iter() {
                in_flight -= 1;
                freed += 1;
                verdicts.push((&claimed[i], verdict_of(handover, &claimed[i], delivery)));
            }
            if in_flight == 0 {
                break;
            }
        }
    }
    if stop.is_some() {
        queue.release()?;
    }
    Ok(stop)
}

/// The message for one claimed recipient, or why there is none.
fn message_for(
    job: &JobContent,
    delivery: &Delivery,
    c: &Claimed,
    addressees: &Addressees,
) -> Result<OutgoingMessage, Verdict> {
    let Some(person) = addressees.persons.get(&c.person_id).filter(|p| p.mailable) else {
        return Err(Verdict::Skipped("no longer mailable".into()));
    };
    if addressees.opted_out.contains(&c.person_id) {
        return Err(Verdict::Skipped("opted out since preparation".into()));
    }
    let blocks: BTreeSet<String> = job.job.frozen.blocks_seen(c.blocks);
    let mail = render_message(
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
/// again until the attempts run out; only a refusal of the recipient (5xx at `RCPT TO`)
/// is a bounce.
fn verdict_of(handover: Handover, c: &Claimed, delivery: &Delivery) -> Verdict {
    let attempts = c.attempts + 1;
    let retry = |reply: String| {
        if attempts >= delivery.retry.max_attempts {
            Verdict::Failed(format!("gave up after {attempts} attempts: {reply}"))
        } else {
            Verdict::Deferred {
                reply,
                wait: delivery.retry.delay(attempts),
            }
        }
    };
    let reply = handover.reply.to_string();
    match handover.outcome {
        SendOutcome::Accepted => Verdict::Sent,
        // Until the in-doubt policy and the pause on refusals of us are in place, both are
        // tried again like a deferral.
        SendOutcome::Deferred | SendOutcome::InDoubt | SendOutcome::RefusesUs => retry(reply),
        SendOutcome::Bounced => Verdict::Bounced(reply),
        SendOutcome::Refused => Verdict::Failed(format!("refused: {reply}")),
    }
}
