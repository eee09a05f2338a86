//! Profiles: calculated figures per person (recency, frequency, monetary value, their
//! quintile scores, totals per transaction kind, recent opens and clicks).
//!
//! Consent decides: figures exist only for persons whose current profiling consent is an
//! opt-in. The recalculation selects exactly those persons, set-based in SQL for all of
//! them at once; a database trigger deletes a person's figures in the same transaction as
//! any profiling opt-out, so no writer can forget it and no recalculation brings them back
//! while the opt-out is current.

use chrono::{DateTime, Days, NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use mailbaar_store::schema::{person_profile_totals, person_profiles};
use mailbaar_store::{saturating_sum, Backend, DbConnection};
use mailbaar_store::{ErrorCode, ErrorKind};
use mailbaar_tasks::{next_hour, NewTask, Outcome, TaskContext, TaskError, WorkError};
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

/// Errors of the profile calculations.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// The step callback stopped the calculation (its task was taken over); nothing was
    /// written.
    #[error(transparent)]
    Stopped(#[from] TaskError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl ErrorCode for ProfileError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[];

    fn kind(&self) -> ErrorKind {
        match self {
            ProfileError::Stopped(e) => e.kind(),
            ProfileError::Database(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ProfileError::Stopped(e) => e.code(),
            ProfileError::Database(e) => e.code(),
        }
    }
}

/// One person's calculated figures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"recency_days": 12, "frequency": 4, "monetary_cents": 17500,
    "r_score": 5, "f_score": 4, "m_score": 4, "rfm_score": 13, "opens_90d": 6, "clicks_90d": 2,
    "totals": [{"kind": "donation", "count": 9, "sum_cents": 42500}],
    "calculated_at": "2026-11-23T03:00:00Z"}))]
pub struct Profile {
    /// Days since the latest transaction; `null` when there never was one.
    pub recency_days: Option<i32>,
    /// Transactions in the last 12 months.
    pub frequency: i32,
    /// Their sum, in cents.
    pub monetary_cents: i64,
    /// Recency score 1–5 by quintile over all profiled persons (5: most recent).
    pub r_score: i32,
    /// Frequency score 1–5 (5: most transactions).
    pub f_score: i32,
    /// Monetary score 1–5 (5: highest sum).
    pub m_score: i32,
    /// `r_score + f_score + m_score` (3–15).
    pub rfm_score: i32,
    /// Contact moments opened in the last 90 days (test mails excluded).
    pub opens_90d: i32,
    /// Contact moments clicked in the last 90 days.
    pub clicks_90d: i32,
    /// All-time count and sum per transaction kind.
    pub totals: Vec<KindTotal>,
    pub calculated_at: DateTime<Utc>,
}

/// How many transactions of one kind a person has, and their sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"kind": "donation", "count": 9, "sum_cents": 42500}))]
pub struct KindTotal {
    pub kind: String,
    pub count: i64,
    pub sum_cents: i64,
}

#[derive(Queryable)]
struct Row {
    _person_id: i64,
    recency_days: Option<i32>,
    frequency: i32,
    monetary_cents: i64,
    r_score: i32,
    f_score: i32,
    m_score: i32,
    rfm_score: i32,
    opens_90d: i32,
    clicks_90d: i32,
    calculated_at: NaiveDateTime,
}

/// A person's profile, if one is calculated (two queries).
pub fn get_profile(
    conn: &mut DbConnection,
    person_id: i64,
) -> Result<Option<Profile>, ProfileError> {
    let Some(r) = person_profiles::table
        .find(person_id)
        .first::<Row>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let totals = person_profile_totals::table
        .filter(person_profile_totals::person_id.eq(person_id))
        .order(person_profile_totals::kind)
        .select((
            person_profile_totals::kind,
            person_profile_totals::count,
            person_profile_totals::sum_cents,
        ))
        .load::<(String, i64, i64)>(conn)?
        .into_iter()
        .map(|(kind, count, sum_cents)| KindTotal {
            kind,
            count,
            sum_cents,
        })
        .collect();
    Ok(Some(Profile {
        recency_days: r.recency_days,
        frequency: r.frequency,
        monetary_cents: r.monetary_cents,
        r_score: r.r_score,
        f_score: r.f_score,
        m_score: r.m_score,
        rfm_score: r.rfm_score,
        opens_90d: r.opens_90d,
        clicks_90d: r.clicks_90d,
        totals,
        calculated_at: r.calculated_at.and_utc(),
    }))
}

/// The steps of a recalculation, for progress reports.
pub const RECALCULATION_STEPS: [&str; 3] = [
    "removing old profiles",
    "calculating figures and scores",
    "totalling per transaction kind",
];

/// What a recalculation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recalculated {
    /// Profiles written: the persons with a current profiling opt-in.
    pub profiles: i64,
}

/// The persons who may be profiled: not anonymized, a current opt-in for a profiling
/// type and no current profiling opt-out.
const ELIGIBLE: &str = "persons.anonymized_at IS NULL
    AND EXISTS (SELECT 1 FROM consent_current cc JOIN opt_in_types t ON t.id = cc.opt_in_type_id
        WHERE cc.person_id = persons.id AND t.kind = 'profiling' AND cc.opt_in)
    AND NOT EXISTS (SELECT 1 FROM consent_current cc JOIN opt_in_types t ON t.id = cc.opt_in_type_id
        WHERE cc.person_id = persons.id AND t.kind = 'profiling' AND NOT cc.opt_in)";

/// Recalculates every profile as of `now`, set-based, in one transaction: readers see the
/// old figures until it commits. `step` is told before each of [`RECALCULATION_STEPS`],
/// and once more before the commit; an error from it stops the calculation and rolls it
/// back ([`ProfileError::Stopped`]).
pub fn recalculate(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    step: &mut dyn FnMut(usize, &str) -> Result<(), TaskError>,
) -> Result<Recalculated, ProfileError> {
    // The times are made by this code, never by a caller, so they are written as literals.
    let at = |t: NaiveDateTime| format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"));
    let year_ago = at(now.checked_sub_days(Days::new(365)).expect("in range"));
    let days_90 = at(now.checked_sub_days(Days::new(90)).expect("in range"));
    let now_sql = at(now);
    let recency = match conn.backend() {
        Backend::Postgres => format!("(CAST({now_sql} AS date) - CAST(tx.last_at AS date))"),
        Backend::Sqlite => {
            format!("CAST(julianday(date({now_sql})) - julianday(date(tx.last_at)) AS INTEGER)")
        }
    };
    let quintile =
        |order: &str| format!("1 + (5 * (RANK() OVER (ORDER BY {order}) - 1)) / COUNT(*) OVER ()");
    let insert_profiles = format!(
        "INSERT INTO person_profiles (person_id, recency_days, frequency, monetary_cents,
             r_score, f_score, m_score, rfm_score, opens_90d, clicks_90d, calculated_at)
         SELECT person_id, recency_days, frequency, monetary_cents, r, f, m, r + f + m,
             opens, clicks, {now_sql}
         FROM (
             SELECT b.*,
                 {r} AS r,
                 {f} AS f,
                 {m} AS m
             FROM (
                 SELECT persons.id AS person_id,
                     {recency} AS recency_days,
                     COALESCE(tx.frequency, 0) AS frequency,
                     COALESCE(tx.monetary, 0) AS monetary_cents,
                     COALESCE(cm.opens, 0) AS opens,
                     COALESCE(cm.clicks, 0) AS clicks
                 FROM persons
                 LEFT JOIN (
                     SELECT person_id, MAX(occurred_at) AS last_at,
                         SUM(CASE WHEN occurred_at >= {year_ago} THEN 1 ELSE 0 END) AS frequency,
                         {monetary} AS monetary
                     FROM transactions GROUP BY person_id
                 ) tx ON tx.person_id = persons.id
                 LEFT JOIN (
                     SELECT person_id,
                         SUM(CASE WHEN opened_at IS NOT NULL THEN 1 ELSE 0 END) AS opens,
                         SUM(CASE WHEN clicked_at IS NOT NULL THEN 1 ELSE 0 END) AS clicks
                     FROM contact_moments
                     WHERE NOT is_test AND occurred_at >= {days_90}
                     GROUP BY person_id
                 ) cm ON cm.person_id = persons.id
                 WHERE {ELIGIBLE}
             ) b
         ) s",
        r = quintile("recency_days DESC NULLS FIRST"),
        f = quintile("frequency"),
        m = quintile("monetary_cents"),
        monetary = saturating_sum(
            conn.backend(),
            &format!("CASE WHEN occurred_at >= {year_ago} THEN amount_cents ELSE 0 END")
        ),
    );
    let insert_totals = format!(
        "INSERT INTO person_profile_totals (person_id, kind, count, sum_cents)
         SELECT t.person_id, t.kind, COUNT(*), {}
         FROM transactions t JOIN person_profiles p ON p.person_id = t.person_id
         GROUP BY t.person_id, t.kind",
        saturating_sum(conn.backend(), "t.amount_cents")
    );
    mailbaar_store::write_transaction(conn, |conn| {
        step(0, RECALCULATION_STEPS[0])?;
        conn.batch_execute("DELETE FROM person_profile_totals; DELETE FROM person_profiles;")?;
        step(1, RECALCULATION_STEPS[1])?;
        let profiles = diesel::sql_query(&insert_profiles).execute(conn)? as i64;
        step(2, RECALCULATION_STEPS[2])?;
        diesel::sql_query(&insert_totals).execute(conn)?;
        // The last word before the commit: a calculation whose task was taken over
        // rolls back instead of writing beside the other one.
        step(RECALCULATION_STEPS.len(), "committing")?;
        Ok(Recalculated { profiles })
    })
}

/// The task kind of a profile recalculation; one at a time (the kind is its unique key).
pub const RECALCULATE: &str = "profiles.recalculate";

/// The task kind of the hourly tick that queues the daily recalculation at the hour of the
/// setting `profiles_daily_hour`.
pub const SCHEDULE: &str = "profiles.schedule";

/// A recalculation to queue now; refused by the queue while another one is queued or
/// running.
pub fn recalculation_task(created_by: &str) -> NewTask {
    NewTask::now(RECALCULATE, created_by).unique(RECALCULATE)
}

/// The recurring schedule tick, which every process ensures at start.
pub fn schedule_task() -> NewTask {
    NewTask::now(SCHEDULE, "schedule").unique(SCHEDULE)
}

/// The work of a recalculation task: recalculates as of the runner's clock, reporting each
/// step on PostgreSQL (SQLite has one writer at a time and the calculation holds it, so
/// there the task goes from its first step to done).
pub fn recalculation_work(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let total = RECALCULATION_STEPS.len() as i64;
    ctx.progress(0, total, RECALCULATION_STEPS[0])?;
    let postgres = ctx.pool().backend() == Backend::Postgres;
    let mut conn = ctx.pool().get()?;
    let done = recalculate(&mut conn, ctx.now(), &mut |i, name| {
        if postgres && i < RECALCULATION_STEPS.len() {
            ctx.progress(i as i64, total, name)
        } else {
            ctx.check_lease()
        }
    })?;
    ctx.progress(total, total, "done")?;
    Ok(Outcome::Done(format!(
        "{} profiles calculated",
        done.profiles
    )))
}

/// The work of the hourly schedule tick: queues today's recalculation once the hour of
/// `profiles_daily_hour` has come (unless one already ran for it), then comes back at the
/// next full hour; a changed setting applies from the next tick.
pub fn schedule_work(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let now = ctx.now();
    let mut conn = ctx.pool().get()?;
    let message = match mailbaar_settings::load(&mut conn)?.profiles_daily_hour {
        None => "no daily recalculation is set".to_owned(),
        Some(hour) => {
            let hour = u32::try_from(hour).unwrap_or(0);
            if mailbaar_tasks::daily_due(&mut conn, RECALCULATE, hour, now)? {
                match mailbaar_tasks::enqueue(&mut conn, &recalculation_task("schedule").at(now)) {
                    Ok(task) => format!("queued recalculation task {}", task.id),
                    Err(TaskError::AlreadyActive { task_id, .. }) => {
                        format!("recalculation task {task_id} is already queued or running")
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                format!("daily at {hour:02}:00 UTC")
            }
        }
    };
    Ok(Outcome::Again {
        message,
        run_at: next_hour(now),
    })
}
