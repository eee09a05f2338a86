//! The send engine: the work of a mail job's send task. A run claims a batch of
//! recipients from its [`RecipientQueue`], hands their messages to the [`Transport`] with
//! at most the transport's concurrency in flight, and records each verdict.
//!
//! One contact moment (and Message-ID) per (job, person). Each message is marked
//! `sending` just before its hand-over and its verdict recorded right after, a few at a
//! time (see [`send_batches`]). A hand-over that may have arrived without the queue
//! knowing — no valid reply after the end of data, or a run that died with it in flight
//! (found `sending` under an expired lease) — is *in doubt* and never resent blindly: the
//! [`InDoubtPolicy`] decides (`at-most-once`: it stays in doubt until an operator resends
//! it; `retry-once`: one delayed retry with the same Message-ID).
//!
//! A refusal of *us* rather than the recipient (TLS, authentication, our address or IP)
//! costs no attempt and marks nobody; [`REFUSALS_TO_PAUSE`] of them in a row in one run,
//! without an acceptance between, pause the job with the reason on it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use mailbaar_campaigns::{
    render_message, start_sending, MailJobPayload, SendEnd, SendStart, SendingJob, PERSON_FIELDS,
};
use mailbaar_render::CompiledStep;
use mailbaar_tasks::{Outcome, TaskContext, Work, WorkError};

use crate::delivery::{Delivery, InDoubtPolicy};
use crate::queue::{Addressees, Claimed, DbQueue, Marked, RecipientQueue, Verdict};
use crate::reply::{Handover, Reply, SendOutcome};
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
    )
    .with_in_doubt(delivery.in_doubt);
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

/// Refusals of us (the relay refusing our TLS, authentication, address or IP rather than a
/// recipient) in a row within one run, without an acceptance between, that pause the job.
/// One may be a passing hiccup of one connection; three, with the transport's
/// connections all seeing it, is the relay's policy, and going on would only burn through
/// the list.
pub const REFUSALS_TO_PAUSE: u32 = 3;

/// Refusals of us seen by a run since its last acceptance, and the latest one.
#[derive(Debug, Default)]
struct Refusals {
    in_a_row: u32,
    last: Option<Reply>,
}

impl Refusals {
    /// Counts one hand-over's outcome.
    fn see(&mut self, handover: &Handover) {
        match handover.outcome {
            SendOutcome::Accepted => *self = Refusals::default(),
            SendOutcome::RefusesUs => {
                self.in_a_row += 1;
                self.last = Some(handover.reply.clone());
            }
            _ => {}
        }
    }

    /// Why the job pauses, once the refusals repeat.
    fn pause_reason(&self) -> Option<String> {
        let last = self.last.as_ref()?;
        (self.in_a_row >= REFUSALS_TO_PAUSE).then(|| {
            format!(
                "the relay refused us {} times in a row ({last}); fix the relay settings or our address, then resume",
                self.in_a_row
            )
        })
    }
}

/// Runs one send run of a job to its end: claims batches from `queue` and delivers them
/// through `transport` under `delivery`'s pace, retry policy and batch size, until none is
/// left to claim or the job stops (paused, cancelled, or paused by the run itself when
/// the relay keeps refusing us). `before_batch` is called with the recipients handled
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
    let mut refusals = Refusals::default();
    loop {
        before_batch(handled)?;
        let claimed = queue.claim(delivery.batch_size)?;
        if claimed.is_empty() {
            break;
        }
        let claimed_count = claimed.len() as i64;
        if let Some(reason) =
            send_batches(queue, transport, job, delivery, &claimed, &mut refusals)?
        {
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
/// queue knowing — the most a crash can leave in doubt. `Some(reason)` when the job was
/// paused or cancelled, or the relay refused us [`REFUSALS_TO_PAUSE`] times in a row (the
/// run pauses the job): the run stops starting messages, records those in flight, and
/// lets go of the rest of its claim.
fn send_batches(
    queue: &mut dyn RecipientQueue,
    transport: &dyn Transport,
    job: &JobContent,
    delivery: &Delivery,
    claimed: &[Claimed],
    refusals: &mut Refusals,
) -> Result<Option<String>, DeliveryError> {
    let addressees = queue.addressees(claimed, job.job.frozen.opt_in_type_id)?;
    let window = transport.concurrency().max(1);
    // Under a pace, messages start in small groups (about 50 ms worth), not a window at once.
    let group = delivery.pace_group().unwrap_or(window);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Handover)>();
    let mut next = 0usize;
    let mut in_flight = 0usize;
    let mut verdicts: Vec<(&Claimed, Verdict, Option<Reply>)> = Vec::new();
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
                Err(verdict) => verdicts.push((&claimed[i], verdict, None)),
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
            let first = rx.recv().map_err(|_| DeliveryError::TransportGone)?;
            for (i, handover) in std::iter::once(first).chain(rx.try_iter()) {
                in_flight -= 1;
                freed += 1;
                refusals.see(&handover);
                let verdict = verdict_of(&handover, &claimed[i], delivery);
                verdicts.push((&claimed[i], verdict, Some(handover.reply)));
            }
            if in_flight == 0 {
                break;
            }
        }
        if stop.is_none() {
            if let Some(reason) = refusals.pause_reason() {
                tracing::warn!(mail_job = job.id, %reason, "pausing the mail job: the relay refuses us");
                queue.pause(&reason)?;
                stop = Some(format!("paused: {reason}"));
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

/// The verdict on a recipient from the transport's answer (the outcome table of
/// [`crate::classify`]): 4xx and no answer before the end of data are tried again until
/// the attempts run out; only a refusal of the recipient's address is a bounce; a
/// hand-over without a valid final reply is in doubt under the [`InDoubtPolicy`]; a
/// refusal of us gives the attempt back and waits.
fn verdict_of(handover: &Handover, c: &Claimed, delivery: &Delivery) -> Verdict {
    let attempts = c.attempts + 1;
    let reply = handover.reply.to_string();
    match handover.outcome {
        SendOutcome::Accepted => Verdict::Sent,
        SendOutcome::Deferred if attempts >= delivery.retry.max_attempts => {
            Verdict::Failed(format!("gave up after {attempts} attempts: {reply}"))
        }
        SendOutcome::Deferred => Verdict::Deferred {
            reply,
            wait: delivery.retry.delay(attempts),
        },
        SendOutcome::InDoubt => match delivery.in_doubt {
            InDoubtPolicy::RetryOnce if !c.in_doubt => Verdict::DoubtRetry {
                reply: format!("in doubt, retried once: {reply}"),
                wait: delivery.retry.delay(1),
            },
            _ => Verdict::InDoubt(format!("in doubt: {reply}")),
        },
        SendOutcome::RefusesUs => Verdict::RefusedUs {
            reply: format!("the relay refused us: {reply}"),
            wait: delivery.retry.delay(1),
        },
        SendOutcome::Bounced => Verdict::Bounced(reply),
        SendOutcome::Refused => Verdict::Failed(format!("refused: {reply}")),
    }
}
