//! Jobs: a row per piece of long work, so that a client that started it can follow its
//! progress and outcome, and a scheduler can see when it last ran.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use mailbaar_store::schema::jobs;
use mailbaar_store::{now, DbConnection};
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

/// Errors of the job store.
#[derive(Debug, Error)]
pub enum JobError {
    #[error("job {0} does not exist")]
    NotFound(i64),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// A piece of long work and how far it got.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 4, "kind": "profiles.recalculate", "status": "succeeded",
    "progress": 3, "total": 3, "message": "182344 profiles calculated",
    "created_by": "token:1:admin", "created_at": "2026-11-23T03:00:00Z",
    "started_at": "2026-11-23T03:00:00Z", "finished_at": "2026-11-23T03:00:09Z"}))]
pub struct Job {
    pub id: i64,
    /// What the job does, e.g. `profiles.recalculate`.
    pub kind: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// Steps done out of `total`.
    pub progress: i64,
    pub total: i64,
    /// The latest step, the outcome, or why it failed.
    pub message: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Queryable)]
struct Row {
    id: i64,
    kind: String,
    status: String,
    progress: i64,
    total: i64,
    message: String,
    created_by: String,
    created_at: NaiveDateTime,
    started_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
}

impl From<Row> for Job {
    fn from(r: Row) -> Self {
        Job {
            id: r.id,
            kind: r.kind,
            status: r.status,
            progress: r.progress,
            total: r.total,
            message: r.message,
            created_by: r.created_by,
            created_at: r.created_at.and_utc(),
            started_at: r.started_at.map(|t| t.and_utc()),
            finished_at: r.finished_at.map(|t| t.and_utc()),
        }
    }
}

/// Registers a job that has not started yet.
pub fn create(conn: &mut DbConnection, kind: &str, created_by: &str) -> Result<Job, JobError> {
    let id = diesel::insert_into(jobs::table)
        .values((
            jobs::kind.eq(kind),
            jobs::status.eq("queued"),
            jobs::created_by.eq(created_by),
            jobs::created_at.eq(now()),
        ))
        .returning(jobs::id)
        .get_result(conn)?;
    get(conn, id)
}

/// Marks a job running with the number of steps it will take.
pub fn start(conn: &mut DbConnection, id: i64, total: i64) -> Result<(), JobError> {
    diesel::update(jobs::table.find(id))
        .set((
            jobs::status.eq("running"),
            jobs::total.eq(total),
            jobs::started_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records the steps done and what is happening now.
pub fn advance(
    conn: &mut DbConnection,
    id: i64,
    progress: i64,
    message: &str,
) -> Result<(), JobError> {
    diesel::update(jobs::table.find(id))
        .set((jobs::progress.eq(progress), jobs::message.eq(message)))
        .execute(conn)?;
    Ok(())
}

/// Records the outcome: a summary, or why it failed.
pub fn finish(
    conn: &mut DbConnection,
    id: i64,
    outcome: Result<String, String>,
) -> Result<(), JobError> {
    let (status, message) = match outcome {
        Ok(m) => ("succeeded", m),
        Err(m) => ("failed", m),
    };
    diesel::update(jobs::table.find(id))
        .set((
            jobs::status.eq(status),
            jobs::message.eq(message),
            jobs::finished_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Reads one job.
pub fn get(conn: &mut DbConnection, id: i64) -> Result<Job, JobError> {
    jobs::table
        .find(id)
        .first::<Row>(conn)
        .optional()?
        .map(Job::from)
        .ok_or(JobError::NotFound(id))
}

/// The newest job of a kind, for schedulers that run work once a day.
pub fn latest_of_kind(conn: &mut DbConnection, kind: &str) -> Result<Option<Job>, JobError> {
    Ok(jobs::table
        .filter(jobs::kind.eq(kind))
        .order(jobs::id.desc())
        .first::<Row>(conn)
        .optional()?
        .map(Job::from))
}
