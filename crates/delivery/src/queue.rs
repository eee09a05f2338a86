//! The recipient queue of a send run: the seam between the engine and where recipients
//! are kept (as listmonk's manager takes a `DataSource`). [`DbQueue`] keeps them in
//! `mail_job_recipients`: a claim gives recipients the run's name and a lease (one
//! transaction; `FOR UPDATE SKIP LOCKED` on PostgreSQL so the runs of several workers
//! share a job) and a contact moment with the Message-ID every attempt carries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use mailbaar_campaigns::{new_message_id, RecipientState, SendEnd};
use mailbaar_people::Person;
use mailbaar_store::schema::{consent_current, contact_moments, mail_job_recipients, mail_jobs};
use mailbaar_store::{write_transaction, DbConnection};

use crate::delivery::InDoubtPolicy;
use crate::reply::Reply;
use crate::DeliveryError;

/// One recipient of a claimed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The person.
    pub person_id: i64,
    /// The blocks the person matched at preparation (bit `i` for block `i`).
    pub blocks: i64,
    /// Attempts made before this claim.
    pub attempts: i32,
    /// The contact moment of this message (one per job and person).
    pub contact_moment_id: i64,
    /// The Message-ID every attempt carries.
    pub message_id: String,
    /// An earlier hand-over of this message ended in doubt (it may have arrived): under
    /// `retry-once` this claim is its one retry, and doubt again leaves it in doubt.
    pub in_doubt: bool,
}

/// What became of one claimed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted by the server.
    Sent,
    /// Refused for now (4xx) or no verdict (connection, timeout): tried again after
    /// `wait`.
    Deferred {
        /// The reply or reason, kept with the recipient.
        reply: String,
        /// How long until the next attempt.
        wait: TimeDelta,
    },
    /// Refused for good at `RCPT TO` (5xx): a hard bounce; the person is marked bouncing.
    Bounced(String),
    /// Not sent and not tried again (no longer renders, refused for another reason,
    /// attempts used up).
    Failed(String),
    /// Handed over to its end without a valid final reply: it may have arrived. State
    /// `in_doubt`; not tried again unless an operator resends it.
    InDoubt(String),
    /// In doubt for the first time under `retry-once`: tried once more after `wait`, with
    /// the same Message-ID.
    DoubtRetry {
        /// What happened instead of a final reply.
        reply: String,
        /// How long until the one retry.
        wait: TimeDelta,
    },
    /// The relay refused us, not this recipient (TLS, authentication, our address): the
    /// attempt is not counted, nobody is marked, and the recipient is tried again after
    /// `wait` (unless the job pauses first).
    RefusedUs {
        /// The refusal.
        reply: String,
        /// How long until it is tried again.
        wait: TimeDelta,
    },
    /// Left out: no longer mailable or opted out since preparation.
    Skipped(String),
}

/// The persons of a batch as they are now.
#[derive(Debug, Default)]
pub struct Addressees {
    /// The persons that still exist, by id.
    pub persons: BTreeMap<i64, Person>,
    /// Those who opted out of the job's opt-in type since preparation.
    pub opted_out: BTreeSet<i64>,
}

/// The outcome of [`RecipientQueue::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked {
    /// The recipients this run still held and marked `sending`: start only these.
    Started(BTreeSet<i64>),
    /// The job was paused, cancelled or ended: nothing was marked; stop with this reason.
    Stop(String),
}

/// Where a send run finds its recipients and records what became of them.
pub trait RecipientQueue {
    /// Claims up to `size` recipients for this run: those abandoned in doubt (`sending`
    /// under an expired lease) first, then deferred ones that are due, then pending ones.
    /// Empty when none can be claimed now.
    fn claim(&mut self, size: i64) -> Result<Vec<Claimed>, DeliveryError>;

    /// The persons of a batch as they are now, and who opted out of `opt_in_type_id`
    /// since preparation.
    fn addressees(
        &mut self,
        batch: &[Claimed],
        opt_in_type_id: Option<i64>,
    ) -> Result<Addressees, DeliveryError>;

    /// Records `verdicts` (each with the last reply of its hand-over, `None` when it was
    /// not handed over) and marks the recipients in `starts` `sending` (one commit, so at
    /// most the messages in flight can have reached the server without the queue
    /// knowing). Only rows this run still holds change.
    fn commit(
        &mut self,
        verdicts: &[(&Claimed, Verdict, Option<Reply>)],
        starts: &[i64],
    ) -> Result<Marked, DeliveryError>;

    /// Pauses the job because the relay keeps refusing us; `reason` is kept on the job.
    /// Whether it paused (not when it stopped sending or was paused already).
    fn pause(&mut self, reason: &str) -> Result<bool, DeliveryError>;

    /// Extends the lease on the recipients this run holds and has not yet started.
    fn renew_lease(&mut self) -> Result<(), DeliveryError>;

    /// Lets go of the recipients this run claimed but did not start (a stopped run).
    fn release(&mut self) -> Result<(), DeliveryError>;

    /// Reserves `n` messages under the overall pace of `rate` a second that every worker
    /// shares; how long to wait before starting them.
    fn reserve_pace(&mut self, n: usize, rate: f64) -> Result<Duration, DeliveryError>;

    /// Ends a run that found nothing to claim: whether the job is done or the run comes
    /// back later.
    fn finish(&mut self) -> Result<SendEnd, DeliveryError>;
}

/// The recipients of one mail job in the database, as one send run sees them.
pub struct DbQueue<'c> {
    conn: &'c mut DbConnection,
    job_id: i64,
    step_id: i64,
    from: String,
    run: String,
    lease: TimeDelta,
    in_doubt: InDoubtPolicy,
}

impl<'c> DbQueue<'c> {
    /// The queue of job `job_id` (of step `step_id`, sender `from`) for the run named
    /// `run` (unique per run, so a run that lost its claim cannot start a message another
    /// run now holds), claims held for `lease`.
    pub fn new(
        conn: &'c mut DbConnection,
        job_id: i64,
        step_id: i64,
        from: &str,
        run: &str,
        lease: TimeDelta,
    ) -> Self {
        DbQueue {
            conn,
            job_id,
            step_id,
            from: from.to_owned(),
            run: run.to_owned(),
            lease,
            in_doubt: InDoubtPolicy::AtMostOnce,
        }
    }

    /// The same under the in-doubt policy `policy`, which decides what a claim does with
    /// hand-overs of a stopped run (default `at-most-once`: they become `in_doubt`).
    pub fn with_in_doubt(mut self, policy: InDoubtPolicy) -> Self {
        self.in_doubt = policy;
        self
    }
}

/// A reply or reason as stored (at most 500 characters).
fn clip(text: &str) -> String {
    text.chars().take(500).collect()
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

/// A recipient found claimable, before it is claimed.
#[derive(Queryable)]
struct Candidate {
    person_id: i64,
    blocks: i64,
    attempts: i32,
    contact_moment_id: Option<i64>,
    in_doubt: bool,
}

/// Up to `size` recipients of one kind, locked on PostgreSQL and skipped when another
/// run's claim transaction holds them (`mailbaar_store::load_claimable!`).
fn candidates(
    conn: &mut DbConnection,
    id: i64,
    kind: Claimable,
    at: NaiveDateTime,
    size: i64,
) -> Result<Vec<Candidate>, DeliveryError> {
    use mail_job_recipients as r;
    let columns = (
        r::person_id,
        r::blocks,
        r::attempts,
        r::contact_moment_id,
        r::in_doubt,
    );
    let free = r::lease_until.is_null().or(r::lease_until.lt(at));
    let of_job = r::table.filter(r::mail_job_id.eq(id));
    Ok(match kind {
        Claimable::Abandoned => mailbaar_store::load_claimable!(
            conn,
            of_job
                .filter(r::state.eq(RecipientState::Sending))
                .filter(r::lease_until.lt(at))
                .order(r::person_id)
                .limit(size)
                .select(columns)
        )?,
        Claimable::Due => mailbaar_store::load_claimable!(
            conn,
            of_job
                .filter(r::state.eq(RecipientState::Deferred))
                .filter(r::next_attempt_at.le(at))
                .filter(free)
                .order(r::person_id)
                .limit(size)
                .select(columns)
        )?,
        Claimable::Pending => mailbaar_store::load_claimable!(
            conn,
            of_job
                .filter(r::state.eq(RecipientState::Pending))
                .filter(free)
                .order(r::person_id)
                .limit(size)
                .select(columns)
        )?,
    })
}

/// Counts `n` more hand-overs in doubt on job `id`.
fn count_in_doubt(conn: &mut DbConnection, id: i64, n: usize) -> Result<(), DeliveryError> {
    if n > 0 {
        diesel::update(mail_jobs::table.find(id))
            .set(mail_jobs::in_doubt.eq(mail_jobs::in_doubt + n as i64))
            .execute(conn)?;
    }
    Ok(())
}

/// Why a recipient taken over from a stopped run is in doubt.
const CUT_OFF: &str = "the run handing it over stopped; it may have arrived";

/// Leaves hand-overs of a stopped run in doubt (state `in_doubt`, flagged, counted on the
/// job) instead of resending them.
fn leave_in_doubt(
    conn: &mut DbConnection,
    id: i64,
    stays: &[Candidate],
) -> Result<(), DeliveryError> {
    if stays.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = stays.iter().map(|c| c.person_id).collect();
    diesel::update(
        mail_job_recipients::table
            .filter(mail_job_recipients::mail_job_id.eq(id))
            .filter(mail_job_recipients::person_id.eq_any(&ids)),
    )
    .set((
        mail_job_recipients::state.eq(RecipientState::InDoubt),
        mail_job_recipients::in_doubt.eq(true),
        mail_job_recipients::claimed_by.eq(None::<String>),
        mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
        mail_job_recipients::last_error.eq(CUT_OFF),
        mail_job_recipients::reply_phase.eq(None::<String>),
        mail_job_recipients::reply_code.eq(None::<i32>),
        mail_job_recipients::reply_enhanced.eq(None::<String>),
        mail_job_recipients::reply_text.eq(CUT_OFF),
    ))
    .execute(conn)?;
    diesel::update(mail_jobs::table.find(id))
        .set(mail_jobs::in_doubt.eq(mail_jobs::in_doubt + ids.len() as i64))
        .execute(conn)?;
    tracing::warn!(
        mail_job = id,
        recipients = ids.len(),
        "hand-overs of a stopped run left in doubt; they may have been delivered"
    );
    Ok(())
}

impl RecipientQueue for DbQueue<'_> {
    /// Claims the next batch for this run: recipients abandoned in doubt first, then deferred
    /// ones that are due, then pending ones. Each gets the run's name and a lease; those
    /// without a contact moment get one here, with the Message-ID every attempt will carry.
    fn claim(&mut self, size: i64) -> Result<Vec<Claimed>, DeliveryError> {
        let (id, step_id, run, lease) = (self.job_id, self.step_id, self.run.as_str(), self.lease);
        let from = self.from.as_str();
        let policy = self.in_doubt;
        write_transaction(self.conn, |conn| {
            let at = mailbaar_store::now();
            let mut picked: Vec<Candidate> = Vec::new();
            let mut abandoned = 0usize;
            for kind in [Claimable::Abandoned, Claimable::Due, Claimable::Pending] {
                let room = size - picked.len() as i64;
                if room <= 0 {
                    break;
                }
                let mut found = candidates(conn, id, kind, at, room)?;
                if matches!(kind, Claimable::Abandoned) {
                    // A hand-over cut off by a stopped run may have arrived: it is resent
                    // only under `retry-once`, and only once.
                    let (again, stays): (Vec<Candidate>, Vec<Candidate>) = found
                        .into_iter()
                        .partition(|c| policy == InDoubtPolicy::RetryOnce && !c.in_doubt);
                    leave_in_doubt(conn, id, &stays)?;
                    found = again;
                    abandoned = found.len();
                }
                picked.extend(found);
            }
            if picked.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<i64> = picked.iter().map(|c| c.person_id).collect();
            let abandoned_ids: BTreeSet<i64> = ids[..abandoned].iter().copied().collect();
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
                    mail_job_recipients::lease_until.eq(at + lease),
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
                        in_doubt: c.in_doubt || abandoned_ids.contains(&c.person_id),
                    })
                })
                .collect())
        })
    }

    fn addressees(
        &mut self,
        batch: &[Claimed],
        opt_in_type_id: Option<i64>,
    ) -> Result<Addressees, DeliveryError> {
        let ids: Vec<i64> = batch.iter().map(|c| c.person_id).collect();
        let persons = mailbaar_people::persons_by_ids(self.conn, &ids)?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let opted_out = match opt_in_type_id {
            Some(t) => consent_current::table
                .filter(consent_current::opt_in_type_id.eq(t))
                .filter(consent_current::person_id.eq_any(&ids))
                .filter(consent_current::opt_in.eq(false))
                .select(consent_current::person_id)
                .load::<i64>(self.conn)?
                .into_iter()
                .collect(),
            None => BTreeSet::new(),
        };
        Ok(Addressees { persons, opted_out })
    }

    fn commit(
        &mut self,
        verdicts: &[(&Claimed, Verdict, Option<Reply>)],
        starts: &[i64],
    ) -> Result<Marked, DeliveryError> {
        let (id, run, lease) = (self.job_id, self.run.as_str(), self.lease);
        write_transaction(self.conn, |conn| {
            let at = mailbaar_store::now();
            let stop = mailbaar_campaigns::sending_stop_reason(conn, id)?;
            let rows = |persons: Vec<i64>| {
                mail_job_recipients::table
                    .filter(mail_job_recipients::mail_job_id.eq(id))
                    .filter(mail_job_recipients::person_id.eq_any(persons))
            };
            let delivered: Vec<&Claimed> = verdicts
                .iter()
                .filter(|(_, v, _)| matches!(v, Verdict::Sent))
                .map(|(c, _, _)| *c)
                .collect();
            if !delivered.is_empty() {
                // Only rows still `sending`: a run that took over an abandoned hand-over
                // and finished first has recorded it already.
                diesel::update(
                    rows(delivered.iter().map(|c| c.person_id).collect())
                        .filter(mail_job_recipients::state.eq(RecipientState::Sending)),
                )
                .set((
                    mail_job_recipients::state.eq(RecipientState::Sent),
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
            for (c, verdict, reply) in verdicts {
                // Only a row this run still holds: one another run took over (and perhaps
                // finished) is that run's to record.
                let row = rows(vec![c.person_id]).filter(mail_job_recipients::claimed_by.eq(run));
                if let Some(reply) = reply {
                    // A sent row was let go above; it is still this hand-over's.
                    let target = rows(vec![c.person_id]).filter(
                        mail_job_recipients::claimed_by
                            .eq(run)
                            .or(mail_job_recipients::state.eq(RecipientState::Sent)),
                    );
                    diesel::update(target)
                        .set((
                            mail_job_recipients::reply_phase.eq(reply.phase.as_str()),
                            mail_job_recipients::reply_code.eq(reply.code.map(i32::from)),
                            mail_job_recipients::reply_enhanced.eq(reply.enhanced.as_deref()),
                            mail_job_recipients::reply_text.eq(clip(&reply.text)),
                        ))
                        .execute(conn)?;
                }
                let ended = |state: RecipientState, reason: &str| {
                    (
                        mail_job_recipients::state.eq(state.as_str()),
                        mail_job_recipients::claimed_by.eq(None::<String>),
                        mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
                        mail_job_recipients::last_error.eq(clip(reason)),
                    )
                };
                match verdict {
                    Verdict::Sent => {}
                    Verdict::Deferred { reply, wait } => {
                        diesel::update(row)
                            .set((
                                ended(RecipientState::Deferred, reply),
                                mail_job_recipients::next_attempt_at.eq(at + *wait),
                            ))
                            .execute(conn)?;
                    }
                    Verdict::InDoubt(reason) => {
                        let changed = diesel::update(row)
                            .set((
                                ended(RecipientState::InDoubt, reason),
                                mail_job_recipients::in_doubt.eq(true),
                            ))
                            .execute(conn)?;
                        count_in_doubt(conn, id, changed)?;
                    }
                    Verdict::DoubtRetry { reply, wait } => {
                        let changed = diesel::update(row)
                            .set((
                                ended(RecipientState::Deferred, reply),
                                mail_job_recipients::in_doubt.eq(true),
                                mail_job_recipients::next_attempt_at.eq(at + *wait),
                            ))
                            .execute(conn)?;
                        count_in_doubt(conn, id, changed)?;
                    }
                    Verdict::RefusedUs { reply, wait } => {
                        // Not the recipient's attempt: it is given back.
                        diesel::update(row)
                            .set((
                                ended(RecipientState::Deferred, reply),
                                mail_job_recipients::attempts.eq(mail_job_recipients::attempts - 1),
                                mail_job_recipients::next_attempt_at.eq(at + *wait),
                            ))
                            .execute(conn)?;
                    }
                    Verdict::Bounced(reply) => {
                        diesel::update(row)
                            .set(ended(RecipientState::Bounced, reply))
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
                            RecipientState::Failed
                        } else {
                            RecipientState::Skipped
                        };
                        let changed = diesel::update(row)
                            .set(ended(state, reason))
                            .execute(conn)?;
                        // A message never handed over has no contact moment. Once any
                        // attempt was made it may have reached the person (a reply lost
                        // after the end of data), so its moment, and every copy's links,
                        // stay.
                        let never_handed_over = reply.is_none() && c.attempts == 0 && !c.in_doubt;
                        if changed == 1 && never_handed_over {
                            diesel::delete(
                                contact_moments::table
                                    .find(c.contact_moment_id)
                                    .filter(contact_moments::sent_at.is_null()),
                            )
                            .execute(conn)?;
                        }
                    }
                }
            }
            if let Some(reason) = stop {
                return Ok(Marked::Stop(reason));
            }
            if starts.is_empty() {
                return Ok(Marked::Started(BTreeSet::new()));
            }
            let owned: Vec<i64> = diesel::update(
                rows(starts.to_vec()).filter(mail_job_recipients::claimed_by.eq(run)),
            )
            .set((
                mail_job_recipients::state.eq(RecipientState::Sending),
                mail_job_recipients::attempts.eq(mail_job_recipients::attempts + 1),
                mail_job_recipients::lease_until.eq(at + lease),
            ))
            .returning(mail_job_recipients::person_id)
            .get_results(conn)?;
            Ok(Marked::Started(owned.into_iter().collect()))
        })
    }

    fn pause(&mut self, reason: &str) -> Result<bool, DeliveryError> {
        Ok(mailbaar_campaigns::pause_for_refusal(
            self.conn,
            self.job_id,
            reason,
        )?)
    }

    fn renew_lease(&mut self) -> Result<(), DeliveryError> {
        diesel::update(
            mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(self.job_id))
                .filter(mail_job_recipients::claimed_by.eq(&self.run))
                .filter(mail_job_recipients::state.ne(RecipientState::Sending)),
        )
        .set(mail_job_recipients::lease_until.eq(mailbaar_store::now() + self.lease))
        .execute(self.conn)?;
        Ok(())
    }

    fn release(&mut self) -> Result<(), DeliveryError> {
        diesel::update(
            mail_job_recipients::table
                .filter(mail_job_recipients::mail_job_id.eq(self.job_id))
                .filter(mail_job_recipients::claimed_by.eq(&self.run))
                .filter(mail_job_recipients::state.ne(RecipientState::Sending)),
        )
        .set((
            mail_job_recipients::claimed_by.eq(None::<String>),
            mail_job_recipients::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(self.conn)?;
        mailbaar_campaigns::store_sending_counts(self.conn, self.job_id)?;
        Ok(())
    }

    fn reserve_pace(&mut self, n: usize, rate: f64) -> Result<Duration, DeliveryError> {
        crate::pace::reserve_overall(self.conn, n, rate)
    }

    fn finish(&mut self) -> Result<SendEnd, DeliveryError> {
        Ok(mailbaar_campaigns::finish_sending(self.conn, self.job_id)?)
    }
}
