//! A step's results (manual §5): what its mail jobs reached, from the contact moments,
//! with test mails apart until they are deleted.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::{count, min};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};
use mailbaar_store::schema::{consent_records, contact_moments, mail_jobs, notices};
use mailbaar_store::DbConnection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::step::step_row;
use crate::CampaignError;

/// Hours of the open and click curve: the first 7 days after the first message.
pub const CURVE_HOURS: i64 = 168;

/// A count and its share of the figure it is measured against (0 to 1; 0 when that is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"count": 412, "rate": 0.2247}))]
pub struct Rate {
    pub count: i64,
    #[schema(minimum = 0, maximum = 1)]
    pub rate: f64,
}

impl Rate {
    fn of(count: i64, base: i64) -> Self {
        Rate {
            count,
            rate: if base > 0 {
                (count as f64 / base as f64 * 10_000.0).round() / 10_000.0
            } else {
                0.0
            },
        }
    }
}

/// Test mails of a step, counted apart.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"sent": 2, "unique_opens": 1, "unique_clicks": 0}))]
pub struct TestResults {
    pub sent: i64,
    pub unique_opens: i64,
    pub unique_clicks: i64,
}

/// First opens and first clicks in one hour after the first message.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"hour": 0, "opens": 310, "clicks": 42}))]
pub struct HourBucket {
    /// Hours since `first_sent_at`, 0 to 167.
    #[schema(minimum = 0, maximum = 167)]
    pub hour: i64,
    pub opens: i64,
    pub clicks: i64,
}

/// What a step's sends reached.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"step_id": 7, "mail_jobs": 1, "recipients": 1834,
    "sent": {"count": 1834, "rate": 1.0}, "delivered": {"count": 1830, "rate": 0.9978},
    "bounced": {"count": 4, "rate": 0.0022}, "soft_bounced": {"count": 2, "rate": 0.0011},
    "policy_refused": {"count": 1, "rate": 0.0005}, "complaints": {"count": 1, "rate": 0.0005},
    "unique_opens": {"count": 412, "rate": 0.2251},
    "unique_clicks": {"count": 97, "rate": 0.053}, "unsubscribes": {"count": 3, "rate": 0.0016},
    "tests": {"sent": 2, "unique_opens": 1, "unique_clicks": 0},
    "first_sent_at": "2026-12-04T08:00:02Z", "hourly": [{"hour": 0, "opens": 310, "clicks": 42}]}))]
pub struct StepResults {
    pub step_id: i64,
    /// Mail jobs counted (cancelled ones are not).
    pub mail_jobs: i64,
    /// Frozen recipients of those jobs.
    pub recipients: i64,
    /// Messages sent; rate of `recipients`.
    pub sent: Rate,
    /// Accepted and not bounced; rate of `sent`.
    pub delivered: Rate,
    /// Bounced (hard, or soft bounces that reached the limit); rate of `sent`. The same
    /// recipients the jobs' progress counts as `bounced`.
    pub bounced: Rate,
    /// Messages with a counted soft bounce that did not (yet) make a bouncer (mailbox
    /// full, over quota, temporary trouble); rate of `sent`.
    pub soft_bounced: Rate,
    /// Messages a receiver refused by policy (X.7.x, a block list, reputation): a
    /// deliverability warning about the sender, never about the person; rate of `sent`.
    pub policy_refused: Rate,
    /// Messages their recipient marked as spam (ARF, RFC 5965; a provider's complaint),
    /// each also an opt-out with channel `complaint`; rate of `delivered`.
    pub complaints: Rate,
    /// Recipients who opened at least once; rate of `delivered`.
    pub unique_opens: Rate,
    /// Recipients who clicked at least once; rate of `delivered`.
    pub unique_clicks: Rate,
    /// Recipients who withdrew the step's opt-in type from one of its messages (a full
    /// unsubscribe included); rate of `delivered`.
    pub unsubscribes: Rate,
    /// Test mails, apart, until deleted.
    pub tests: TestResults,
    pub first_sent_at: Option<DateTime<Utc>>,
    /// First opens and clicks per hour over the first 7 days (168 entries, hour 0 first);
    /// empty before the first message.
    pub hourly: Vec<HourBucket>,
}

#[derive(QueryableByName)]
struct Bucket {
    #[diesel(sql_type = BigInt)]
    hour: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Counts of first opens (or clicks) per hour after `start`; `column` is `opened_at` or
/// `clicked_at`. The hour arithmetic is the one engine-specific part.
fn per_hour(
    conn: &mut DbConnection,
    step_id: i64,
    column: &'static str,
    start: NaiveDateTime,
) -> Result<Vec<Bucket>, diesel::result::Error> {
    let filter = format!("FROM contact_moments WHERE step_id = {{step}} AND NOT is_test AND {column} IS NOT NULL GROUP BY 1");
    match conn {
        DbConnection::Pg(c) => diesel::sql_query(format!(
            "SELECT CAST(FLOOR(EXTRACT(EPOCH FROM ({column} - $1)) / 3600) AS BIGINT) AS hour, COUNT(*) AS n {}",
            filter.replace("{step}", "$2")
        ))
        .bind::<Timestamp, _>(start)
        .bind::<BigInt, _>(step_id)
        .load(c),
        DbConnection::Sqlite(c) => diesel::sql_query(format!(
            "SELECT CAST((julianday({column}) - julianday(?)) * 24 AS INTEGER) AS hour, COUNT(*) AS n {}",
            filter.replace("{step}", "?")
        ))
        .bind::<Timestamp, _>(start)
        .bind::<BigInt, _>(step_id)
        .load(c),
    }
}

/// A step's results. Errors: `NotFound`.
pub fn step_results(conn: &mut DbConnection, step_id: i64) -> Result<StepResults, CampaignError> {
    step_row(conn, step_id)?;
    let jobs: Vec<i64> = mail_jobs::table
        .filter(mail_jobs::step_id.eq(step_id))
        .filter(mail_jobs::status.ne(crate::MailJobStatus::Cancelled))
        .select(mail_jobs::recipients)
        .load(conn)?;
    let recipients: i64 = jobs.iter().sum();
    let moments = || {
        contact_moments::table
            .filter(contact_moments::step_id.eq(step_id))
            .filter(contact_moments::channel.eq("email"))
    };
    let (sent, bounced, opens, clicks, first): (i64, i64, i64, i64, Option<NaiveDateTime>) =
        moments()
            .filter(contact_moments::is_test.eq(false))
            .select((
                count(contact_moments::sent_at),
                count(contact_moments::bounced_at),
                count(contact_moments::opened_at),
                count(contact_moments::clicked_at),
                min(contact_moments::sent_at),
            ))
            .first(conn)?;
    let delivered: i64 = moments()
        .filter(contact_moments::is_test.eq(false))
        .filter(contact_moments::delivered_at.is_not_null())
        .filter(contact_moments::bounced_at.is_null())
        .count()
        .get_result(conn)?;
    let (test_sent, test_opens, test_clicks): (i64, i64, i64) = moments()
        .filter(contact_moments::is_test.eq(true))
        .select((
            count(contact_moments::sent_at),
            count(contact_moments::opened_at),
            count(contact_moments::clicked_at),
        ))
        .first(conn)?;
    // Unsubscribes: opt-outs of the type the step mails for (a full unsubscribe writes one
    // too) made from its messages; without a type, any opt-out from them.
    let step_type: Option<i64> = mailbaar_store::schema::campaign_steps::table
        .find(step_id)
        .select(mailbaar_store::schema::campaign_steps::opt_in_type_id)
        .first(conn)?;
    let mut unsubscribes = consent_records::table
        .inner_join(
            contact_moments::table
                .on(consent_records::contact_moment_id.eq(contact_moments::id.nullable())),
        )
        .filter(contact_moments::step_id.eq(step_id))
        .filter(contact_moments::is_test.eq(false))
        .filter(consent_records::opt_in.eq(false))
        .select(consent_records::person_id)
        .distinct()
        .into_boxed();
    if let Some(t) = step_type {
        unsubscribes = unsubscribes.filter(consent_records::opt_in_type_id.eq(t));
    }
    let unsubscribed: Vec<i64> = unsubscribes.load(conn)?;
    // Notices by class, each message once (a notice that counted: outcome = class).
    let by_class: Vec<(String, i64)> = notices::table
        .inner_join(contact_moments::table)
        .filter(contact_moments::step_id.eq(step_id))
        .filter(contact_moments::is_test.eq(false))
        .filter(notices::class.eq_any(["soft", "policy", "complaint"]))
        .filter(notices::outcome.eq(notices::class))
        .group_by(notices::class)
        .select((
            notices::class,
            count(notices::contact_moment_id).aggregate_distinct(),
        ))
        .load(conn)?;
    let class_count = |c: &str| by_class.iter().find(|(k, _)| k == c).map_or(0, |(_, n)| *n);
    // A soft bounce that reached the limit is a bounce: its message counts there.
    let soft_turned_hard: i64 = notices::table
        .inner_join(contact_moments::table)
        .filter(contact_moments::step_id.eq(step_id))
        .filter(contact_moments::is_test.eq(false))
        .filter(notices::class.eq("soft"))
        .filter(notices::outcome.eq("soft"))
        .filter(contact_moments::bounced_at.is_not_null())
        .select(count(notices::contact_moment_id).aggregate_distinct())
        .first(conn)?;
    let hourly = match first {
        None => Vec::new(),
        Some(start) => {
            let mut curve: Vec<HourBucket> = (0..CURVE_HOURS)
                .map(|hour| HourBucket {
                    hour,
                    opens: 0,
                    clicks: 0,
                })
                .collect();
            for b in per_hour(conn, step_id, "opened_at", start)? {
                if let Some(slot) = usize::try_from(b.hour).ok().and_then(|h| curve.get_mut(h)) {
                    slot.opens += b.n;
                }
            }
            for b in per_hour(conn, step_id, "clicked_at", start)? {
                if let Some(slot) = usize::try_from(b.hour).ok().and_then(|h| curve.get_mut(h)) {
                    slot.clicks += b.n;
                }
            }
            curve
        }
    };
    Ok(StepResults {
        step_id,
        mail_jobs: jobs.len() as i64,
        recipients,
        sent: Rate::of(sent, recipients),
        delivered: Rate::of(delivered, sent),
        bounced: Rate::of(bounced, sent),
        soft_bounced: Rate::of(class_count("soft") - soft_turned_hard, sent),
        policy_refused: Rate::of(class_count("policy"), sent),
        complaints: Rate::of(class_count("complaint"), delivered),
        unique_opens: Rate::of(opens, delivered),
        unique_clicks: Rate::of(clicks, delivered),
        unsubscribes: Rate::of(unsubscribed.len() as i64, delivered),
        tests: TestResults {
            sent: test_sent,
            unique_opens: test_opens,
            unique_clicks: test_clicks,
        },
        first_sent_at: first.map(|t| t.and_utc()),
        hourly,
    })
}

/// Deletes a step's test contact moments (manual §3.3: clean the results before the real
/// send); returns how many. Consent records that came from a test mail keep their text and
/// lose nothing. Errors: `NotFound`.
pub fn delete_test_contact_moments(
    conn: &mut DbConnection,
    step_id: i64,
    by: &str,
) -> Result<usize, CampaignError> {
    mailbaar_store::write_transaction(conn, |conn| {
        step_row(conn, step_id)?;
        let n = diesel::delete(
            contact_moments::table
                .filter(contact_moments::step_id.eq(step_id))
                .filter(contact_moments::is_test.eq(true)),
        )
        .execute(conn)?;
        mailbaar_audit::record(
            conn,
            by,
            "step.delete_test_contact_moments",
            None,
            &format!("campaign step {step_id}: {n} test contact moments"),
        )?;
        Ok(n)
    })
}
