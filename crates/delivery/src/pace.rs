//! Sending pace: at most so many messages per second, per worker process (kept in memory)
//! and over all workers together (kept in the database, `delivery_pace`). Both use one
//! rule, the generic cell rate algorithm: each message moves a "next free" time on by
//! `1 / rate` seconds, and a sender that is ahead of it waits.

use std::sync::Mutex;
use std::time::Duration;

use diesel::prelude::*;
use mailbaar_store::schema::delivery_pace;
use mailbaar_store::{write_transaction, DbConnection};

use crate::DeliveryError;

/// Reserves `n` messages at `rate` per second: the new "next free" time and how long to
/// wait before starting them, from the old one and the time now (both in microseconds).
pub(crate) fn reserve(next_free_us: i64, now_us: i64, n: usize, rate: f64) -> (i64, Duration) {
    let start = next_free_us.max(now_us);
    let step = (1_000_000.0 / rate.max(0.001)) as i64;
    let next = start.saturating_add(step.saturating_mul(n as i64));
    let wait = u64::try_from(start - now_us).unwrap_or(0);
    (next, Duration::from_micros(wait))
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A limit of messages per second for this process.
#[derive(Debug)]
pub(crate) struct LocalPace {
    rate: f64,
    next_free_us: Mutex<i64>,
}

impl LocalPace {
    pub(crate) fn new(rate: f64) -> Self {
        LocalPace {
            rate,
            next_free_us: Mutex::new(0),
        }
    }

    /// Messages per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// How long to wait before starting `n` more messages.
    pub(crate) fn reserve(&self, n: usize) -> Duration {
        let mut next = self.next_free_us.lock().unwrap_or_else(|e| e.into_inner());
        let (new, wait) = reserve(*next, now_us(), n, self.rate);
        *next = new;
        wait
    }
}

/// The name of the overall pace row.
const OVERALL: &str = "smtp";

/// Reserves `n` messages of the overall limit shared by every worker; how long to wait.
pub(crate) fn reserve_overall(
    conn: &mut DbConnection,
    n: usize,
    rate: f64,
) -> Result<Duration, DeliveryError> {
    write_transaction(conn, |conn| {
        let first = diesel::insert_into(delivery_pace::table)
            .values((
                delivery_pace::name.eq(OVERALL),
                delivery_pace::next_at_us.eq(0i64),
            ))
            .on_conflict_do_nothing();
        let current: i64 = match conn {
            DbConnection::Pg(c) => {
                first.execute(c)?;
                delivery_pace::table
                    .find(OVERALL)
                    .select(delivery_pace::next_at_us)
                    .for_update()
                    .first(c)?
            }
            DbConnection::Sqlite(c) => {
                first.execute(c)?;
                delivery_pace::table
                    .find(OVERALL)
                    .select(delivery_pace::next_at_us)
                    .first(c)?
            }
        };
        let (next, wait) = reserve(current, now_us(), n, rate);
        diesel::update(delivery_pace::table.find(OVERALL))
            .set(delivery_pace::next_at_us.eq(next))
            .execute(conn)?;
        Ok(wait)
    })
}

#[cfg(test)]
mod tests {
    use super::reserve;
    use std::time::Duration;

    #[test]
    fn a_sender_ahead_of_the_pace_waits_for_its_turn() {
        // 10 per second: 100 ms a message.
        let (next, wait) = reserve(0, 1_000_000, 5, 10.0);
        assert_eq!((next, wait), (1_500_000, Duration::ZERO));
        let (next, wait) = reserve(next, 1_100_000, 2, 10.0);
        assert_eq!((next, wait), (1_700_000, Duration::from_millis(400)));
        // Idle time is not saved up: after a pause the pace starts from now.
        let (next, wait) = reserve(next, 9_000_000, 1, 10.0);
        assert_eq!((next, wait), (9_100_000, Duration::ZERO));
    }
}
