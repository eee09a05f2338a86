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

    /// Records `verdicts` and marks the recipients in `starts` `sending` (one commit, so
    /// at most the messages in flight can have reached the server without the queue
    /// knowing). Only rows this run still holds change.
    fn commit(
        &mut self,
        verdicts: &[(&Claimed, Verdict)],
        starts: &[i64],
    ) -> Result<Marked, DeliveryError>;

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
        }
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
    let columns = (r::person_id, r::blocks, r::attempts, r::contact_moment_id);
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

impl RecipientQueue for DbQueue<'_> {
    /// Claims the next batch for this run: recipients abandoned in doubt first, then deferred
    /// ones that are due, then pending ones. Each gets the run's name and a lease; those
    /// without a contact moment get one here, with the Message-ID every attempt will carry.
    fn claim(&mut self, size: i64) -> Result<Vec<Claimed>, DeliveryError> {
        let (id, step_id, run, lease) = (self.job_id, self.step_id, self.run.as_str(), self.lease);
        let from = self.from.as_str();
        write_transaction(self.conn, |conn| {
            let at = mailbaar_store::now();
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
        verdicts: &[(&Claimed, Verdict)],
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
                .filter(|(_, v)| matches!(v, Verdict::Sent))
                .map(|(c, _)| *c)
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
            for (c, verdict) in verdicts {
                // Only a row this run still holds: one another run took over (and perhaps
                // finished) is that run's to record.
                let row = rows(vec![c.person_id]).filter(mail_job_recipients::claimed_by.eq(run));
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
                        diesel::update(row)
                            .set(ended(state, reason))
                            .execute(conn)?;
                        // No message went out: no contact moment, unless an earlier
                        // attempt may have delivered it.
                        diesel::delete(
                            contact_moments::table
                                .find(c.contact_moment_id)
                                .filter(contact_moments::sent_at.is_null()),
                        )
                        .execute(conn)?;
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
