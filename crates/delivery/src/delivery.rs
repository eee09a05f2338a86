//! How this process delivers messages: the transport, the signer of the links in them,
//! the pace, the retry policy and the batch and lease of the send engine.

use std::sync::Arc;

use mailbaar_campaigns::{CampaignError, CurrentContent, FrozenContent, PERSON_FIELDS};
use mailbaar_render::{CompiledStep, Links};
use mailbaar_store::DbConnection;

use crate::pace::LocalPace;
use crate::queue::RecipientQueue;
use crate::transport::Transport;
use crate::DeliveryError;

/// How this process delivers messages: the transport, the link signer and the pace of
/// sending. One per process, shared by the API (test mails, previews) and the task runners
/// (sends).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) links: Links,
    pub(crate) batch_size: i64,
    pub(crate) lease: chrono::TimeDelta,
    pub(crate) retry: Retry,
    pub(crate) parallel_runs: usize,
    pub(crate) local_pace: Option<Arc<LocalPace>>,
    pub(crate) overall_rate: Option<f64>,
    pub(crate) dkim: Option<Arc<lettre::message::dkim::DkimConfig>>,
    pub(crate) in_doubt: InDoubtPolicy,
    /// The link tables of frozen mail jobs' content, by job (they never change).
    link_tables: Arc<std::sync::Mutex<std::collections::HashMap<i64, Arc<Vec<String>>>>>,
}

mailbaar_store::text_enum! {
    /// What becomes of a message that may or may not have arrived: its end of data was sent
    /// but no valid final reply came (closed, reset, timed out, unparsable), or the worker
    /// handing it over stopped. Such a message is *in doubt* and never resent blindly
    /// (setting `MAILBAAR_IN_DOUBT`).
    #[schema(example = "at-most-once")]
    pub enum InDoubtPolicy as "in-doubt policy" {
        /// It stays in doubt (state `in_doubt`, visible per recipient and counted on the
        /// job) until an operator resends the job's in-doubt recipients
        /// (`POST /mailjobs/{id}/resend-in-doubt`), with the same Message-ID.
        AtMostOnce = "at-most-once",
        /// One delayed retry with the same Message-ID (the first retry wait; after a
        /// stopped worker, when its lease ran out); in doubt again, it stays in doubt.
        RetryOnce = "retry-once",
    }
}

/// How often and how far apart a deferred message (4xx, or no answer) is tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all before the recipient counts as failed (at least 1).
    pub max_attempts: i32,
    /// The wait after the first attempt; it doubles with each further one.
    pub first_delay: std::time::Duration,
}

impl Retry {
    /// The wait after attempt `attempts` (1-based): `first_delay × 2^(attempts-1)`, at most
    /// a day.
    pub(crate) fn delay(&self, attempts: i32) -> chrono::TimeDelta {
        let factor = 2u32.saturating_pow(u32::try_from(attempts.max(1) - 1).unwrap_or(0));
        let wait = self
            .first_delay
            .saturating_mul(factor)
            .min(std::time::Duration::from_secs(86_400));
        chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::days(1))
    }
}

impl Default for Retry {
    /// Six attempts, the first retry after 5 minutes (then 10, 20, 40 and 80).
    fn default() -> Self {
        Retry {
            max_attempts: 6,
            first_delay: std::time::Duration::from_secs(300),
        }
    }
}

impl Delivery {
    /// Delivery through `transport`, links signed by `links`, 500 recipients a claim, a
    /// two-minute lease, [`Retry::default`], four runs per job on PostgreSQL, no pace limit,
    /// the `at-most-once` in-doubt policy.
    pub fn new(transport: Arc<dyn Transport>, links: Links) -> Self {
        Delivery {
            transport,
            links,
            batch_size: 500,
            lease: chrono::TimeDelta::minutes(2),
            retry: Retry::default(),
            parallel_runs: 4,
            local_pace: None,
            overall_rate: None,
            dkim: None,
            in_doubt: InDoubtPolicy::AtMostOnce,
            link_tables: Arc::default(),
        }
    }

    /// The same under another in-doubt policy (default [`InDoubtPolicy::AtMostOnce`]).
    pub fn with_in_doubt(mut self, policy: InDoubtPolicy) -> Self {
        self.in_doubt = policy;
        self
    }

    /// The in-doubt policy this process sends under.
    pub fn in_doubt_policy(&self) -> InDoubtPolicy {
        self.in_doubt
    }

    /// The same with `size` recipients claimed per batch (at least 1).
    pub fn with_batch_size(mut self, size: i64) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// The same with claims held for `lease` without a sign of life: a run that died is
    /// taken over after this, its in-flight messages then counting as in doubt.
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = chrono::TimeDelta::from_std(lease.max(std::time::Duration::from_secs(1)))
            .unwrap_or(chrono::TimeDelta::minutes(2));
        self
    }

    /// The same with another retry policy for deferred messages.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = Retry {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        self
    }

    /// The same with `runs` send runs per job on PostgreSQL, for that many workers (or
    /// runner threads) to share one job.
    pub fn with_parallel_runs(mut self, runs: usize) -> Self {
        self.parallel_runs = runs.max(1);
        self
    }

    /// The same with at most `per_worker` messages per second from this process and
    /// `overall` per second from all workers together (kept in the database).
    pub fn with_pace(mut self, per_worker: Option<f64>, overall: Option<f64>) -> Self {
        let positive = |r: Option<f64>| r.filter(|r| r.is_finite() && *r > 0.0);
        self.local_pace = positive(per_worker).map(|r| Arc::new(LocalPace::new(r)));
        self.overall_rate = positive(overall);
        self
    }

    /// The same with every sent message and test mail DKIM-signed (see
    /// [`crate::dkim_signing`]).
    pub fn with_dkim(mut self, dkim: Arc<lettre::message::dkim::DkimConfig>) -> Self {
        self.dkim = Some(dkim);
        self
    }

    /// A step's compiled content as this process sends it (signed when DKIM is set).
    pub(crate) fn sending(&self, compiled: CompiledStep) -> CompiledStep {
        match &self.dkim {
            Some(dkim) => compiled.with_dkim(dkim.clone()),
            None => compiled,
        }
    }

    /// The link table a message's click indexes point into: that of the job's frozen
    /// content, or of the step as it is now for a test mail. `None` when it cannot be
    /// compiled any more.
    pub(crate) fn link_table(
        &self,
        conn: &mut DbConnection,
        job: Option<i64>,
        step: Option<i64>,
    ) -> Result<Option<Arc<Vec<String>>>, DeliveryError> {
        const KEPT: usize = 256;
        let compile = |step: &mailbaar_render::Step| {
            CompiledStep::compile(step, PERSON_FIELDS.as_slice())
                .ok()
                .map(|c| Arc::new(c.link_table().to_vec()))
        };
        match (job, step) {
            (Some(job), _) => {
                let cache = || self.link_tables.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(t) = cache().get(&job) {
                    return Ok(Some(t.clone()));
                }
                let Some(frozen) = FrozenContent::of_job(conn, job)? else {
                    return Ok(None);
                };
                let table = compile(&frozen.step);
                if let Some(t) = &table {
                    let mut kept = cache();
                    if kept.len() >= KEPT {
                        kept.clear();
                    }
                    kept.insert(job, t.clone());
                }
                Ok(table)
            }
            (None, Some(step)) => match CurrentContent::of_step(conn, step) {
                Ok(current) => Ok(compile(&current.step)),
                Err(CampaignError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            },
            (None, None) => Ok(None),
        }
    }

    /// The link signer, for the recipient pages that check the links.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Reserves `n` more messages under this process's pace and the overall one (kept
    /// with the queue, shared by every worker); how long to wait before starting them.
    pub(crate) fn reserve(
        &self,
        queue: &mut dyn RecipientQueue,
        n: usize,
    ) -> Result<std::time::Duration, DeliveryError> {
        let mut wait = self
            .local_pace
            .as_ref()
            .map_or(std::time::Duration::ZERO, |p| p.reserve(n));
        if let Some(rate) = self.overall_rate {
            wait = wait.max(queue.reserve_pace(n, rate)?);
        }
        Ok(wait)
    }

    /// Under a pace, how many messages start together: about 50 ms worth, at least one.
    pub(crate) fn pace_group(&self) -> Option<usize> {
        let rate = [
            self.local_pace.as_ref().map(|p| p.rate()),
            self.overall_rate,
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min)?;
        Some(((rate / 20.0).ceil() as usize).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::Retry;
    use std::time::Duration;

    #[test]
    fn retries_wait_twice_as_long_each_time_and_at_most_a_day() {
        let retry = Retry {
            max_attempts: 6,
            first_delay: Duration::from_secs(300),
        };
        let minutes: Vec<i64> = (1..=5).map(|a| retry.delay(a).num_minutes()).collect();
        assert_eq!(minutes, [5, 10, 20, 40, 80]);
        assert_eq!(retry.delay(40).num_hours(), 24);
        assert_eq!(
            retry.delay(0).num_minutes(),
            5,
            "a first attempt counts as one"
        );
    }
}
