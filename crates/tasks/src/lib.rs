//! Durable background tasks: every piece of long work (profile recalculation, retention
//! runs, their daily schedules, and next mail-job preparation and sending) is a row in
//! `tasks` that any `mailbaar serve` or `mailbaar worker` process may claim.
//!
//! - A task is claimed under a **lease** (owner and expiry). The runner renews the lease
//!   while the work runs; when a process dies, its task is taken again once the lease has
//!   expired, and its `attempts` count up to `max_attempts`.
//! - Claiming is the one engine-specific step (`mailbaar_store::load_claimable!`):
//!   `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several runners never take the same row;
//!   on SQLite the claim is a short write transaction, which SQLite serialises.
//! - "Only one of this kind at a time" is a `unique_key`, held by a partial unique index
//!   over queued and running tasks, never a read followed by an insert.
//! - A recurring task (a daily schedule) is one row whose work answers
//!   [`Outcome::Again`]: the runner puts the same row back in the queue with its next
//!   `run_at`, in the statement that ends the run, so the next run exists exactly once
//!   whatever the number of processes.
//!
//! The crate knows no domain: each domain crate provides the [`Work`] of its own kinds,
//! and the binary wires kinds to work in one [`Registry`].

mod runner;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mailbaar_store::schema::tasks;
use mailbaar_store::{now, DbConnection};
use mailbaar_store::{ErrorCode, ErrorKind};
use serde::Serialize;
use thiserror::Error;
use utoipa::ToSchema;

pub use runner::{
    Outcome, Registry, Runner, RunnerHandle, RunnerOptions, TaskContext, Work, WorkError,
};

/// Errors of the task store.
#[derive(Debug, Error)]
pub enum TaskError {
    #[error("task {0} does not exist")]
    NotFound(i64),
    /// A task with the same unique key is queued or running.
    #[error("{kind} is already queued or running (task {task_id})")]
    AlreadyActive { kind: String, task_id: i64 },
    #[error("task {id} has a state this version does not know: {state:?}")]
    UnknownState { id: i64, state: String },
    /// The runner no longer holds the task's lease (it was paused or cut off from the
    /// database past it, and another runner took the task): the work must stop.
    #[error("task {0} was taken over by another runner; this run stops")]
    LeaseLost(i64),
    #[error("the payload of task {id} is not what its kind expects")]
    Payload {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Database(#[from] DieselError),
    #[error(transparent)]
    Store(#[from] mailbaar_store::StoreError),
}

impl ErrorCode for TaskError {
    const CODES: &'static [(&'static str, ErrorKind)] = &[
        ("task_not_found", ErrorKind::NotFound),
        ("task_already_active", ErrorKind::Conflict),
        ("task_state_unknown", ErrorKind::Internal),
        ("task_lease_lost", ErrorKind::Internal),
        ("task_payload_unreadable", ErrorKind::Internal),
    ];

    fn kind(&self) -> ErrorKind {
        match self {
            TaskError::NotFound(_) => ErrorKind::NotFound,
            TaskError::AlreadyActive { .. } => ErrorKind::Conflict,
            TaskError::UnknownState { .. }
            | TaskError::LeaseLost(_)
            | TaskError::Payload { .. } => ErrorKind::Internal,
            TaskError::Database(e) => e.kind(),
            TaskError::Store(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TaskError::NotFound(_) => "task_not_found",
            TaskError::AlreadyActive { .. } => "task_already_active",
            TaskError::UnknownState { .. } => "task_state_unknown",
            TaskError::LeaseLost(_) => "task_lease_lost",
            TaskError::Payload { .. } => "task_payload_unreadable",
            TaskError::Database(e) => e.code(),
            TaskError::Store(e) => e.code(),
        }
    }
}

mailbaar_store::text_enum! {
    /// Where a task is in its life; stored as text with a CHECK in SQL.
    #[schema(example = "running")]
    pub enum TaskState as "task state" {
        /// Waiting for its `run_at` and a runner.
        Queued = "queued",
        /// Claimed by a runner whose lease has not expired (or not yet been noticed to).
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

impl TaskState {
    /// The states of a task that has not ended: the ones a unique key is held in.
    pub const ACTIVE: [TaskState; 2] = [TaskState::Queued, TaskState::Running];

    fn parse(id: i64, s: &str) -> Result<Self, TaskError> {
        s.parse()
            .map_err(|e: mailbaar_store::UnknownText| TaskError::UnknownState {
                id,
                state: e.value,
            })
    }

    /// Whether the task has ended (it will not run again).
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// A piece of background work, its progress and outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 4, "kind": "profiles.recalculate", "state": "succeeded",
    "progress": 3, "total": 3, "message": "182344 profiles calculated",
    "attempts": 1, "max_attempts": 3, "run_at": "2026-11-23T03:00:00Z",
    "created_by": "token:1:admin", "created_at": "2026-11-23T03:00:00Z",
    "started_at": "2026-11-23T03:00:00Z", "finished_at": "2026-11-23T03:00:09Z"}))]
pub struct Task {
    pub id: i64,
    /// What the task does, e.g. `profiles.recalculate` or `retention.run`.
    pub kind: String,
    pub state: TaskState,
    /// Steps done out of `total`.
    pub progress: i64,
    pub total: i64,
    /// The latest step, the outcome, or why it failed.
    pub message: String,
    /// How many times a runner has taken it (a run cut off by a crash counts).
    pub attempts: i32,
    /// After this many attempts cut off by crashes the task fails.
    pub max_attempts: i32,
    /// Not before this time.
    pub run_at: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The kind's own parameters (JSON); not shown to clients.
    #[serde(skip)]
    pub payload: serde_json::Value,
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = tasks)]
pub(crate) struct Row {
    id: i64,
    kind: String,
    state: String,
    progress: i64,
    total: i64,
    message: String,
    created_by: String,
    created_at: NaiveDateTime,
    started_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
    run_at: NaiveDateTime,
    attempts: i32,
    max_attempts: i32,
    payload: String,
}

impl TryFrom<Row> for Task {
    type Error = TaskError;

    fn try_from(r: Row) -> Result<Self, TaskError> {
        Ok(Task {
            state: TaskState::parse(r.id, &r.state)?,
            payload: serde_json::from_str(&r.payload)
                .map_err(|source| TaskError::Payload { id: r.id, source })?,
            id: r.id,
            kind: r.kind,
            progress: r.progress,
            total: r.total,
            message: r.message,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_at: r.run_at.and_utc(),
            created_by: r.created_by,
            created_at: r.created_at.and_utc(),
            started_at: r.started_at.map(|t| t.and_utc()),
            finished_at: r.finished_at.map(|t| t.and_utc()),
        })
    }
}

/// A task to put in the queue.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub kind: String,
    pub payload: serde_json::Value,
    /// Not before this time (UTC); `now()` for "as soon as a runner is free".
    pub run_at: NaiveDateTime,
    /// At most one queued or running task holds a key (e.g. the kind itself for "one
    /// recalculation at a time").
    pub unique_key: Option<String>,
    pub created_by: String,
    /// Runs cut off by a crash before the task fails; at least 1.
    pub max_attempts: i32,
}

impl NewTask {
    /// A task of `kind` to run now, once, by `created_by`, with three attempts.
    pub fn now(kind: &str, created_by: &str) -> Self {
        NewTask {
            kind: kind.to_owned(),
            payload: serde_json::Value::Object(Default::default()),
            run_at: now(),
            unique_key: None,
            created_by: created_by.to_owned(),
            max_attempts: 3,
        }
    }

    /// The same, holding `key` so no second one can be queued while it is active.
    pub fn unique(mut self, key: &str) -> Self {
        self.unique_key = Some(key.to_owned());
        self
    }

    /// The same with the kind's parameters: the kind's payload type (read back by
    /// [`TaskContext::payload`] in its work), or a JSON value.
    ///
    /// # Panics
    /// When the payload does not serialize to JSON (a map with keys other than text); a
    /// payload type is plain data, so this is a defect of the type.
    pub fn with_payload<T: Serialize>(mut self, payload: T) -> Self {
        self.payload = serde_json::to_value(payload).expect("a task payload serializes to JSON");
        self
    }

    /// The same, not before `run_at`.
    pub fn at(mut self, run_at: NaiveDateTime) -> Self {
        self.run_at = run_at;
        self
    }
}

fn active_with_key(conn: &mut DbConnection, key: &str) -> Result<Option<i64>, TaskError> {
    Ok(tasks::table
        .filter(tasks::unique_key.eq(key))
        .filter(tasks::state.eq_any(TaskState::ACTIVE))
        .select(tasks::id)
        .first::<i64>(conn)
        .optional()?)
}

/// Puts a task in the queue. Refused with [`TaskError::AlreadyActive`] when its unique
/// key is held by a queued or running task (the database's unique index decides).
pub fn enqueue(conn: &mut DbConnection, new: &NewTask) -> Result<Task, TaskError> {
    let inserted = mailbaar_store::write_transaction(conn, |conn| {
        diesel::insert_into(tasks::table)
            .values((
                tasks::kind.eq(&new.kind),
                tasks::state.eq(TaskState::Queued.as_str()),
                tasks::created_by.eq(&new.created_by),
                tasks::created_at.eq(now()),
                tasks::run_at.eq(new.run_at),
                tasks::max_attempts.eq(new.max_attempts.max(1)),
                tasks::payload.eq(new.payload.to_string()),
                tasks::unique_key.eq(&new.unique_key),
            ))
            .returning(tasks::id)
            .get_result::<i64>(conn)
    });
    match inserted {
        Ok(id) => get(conn, id),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            let key = new.unique_key.as_deref().unwrap_or_default();
            let task_id = active_with_key(conn, key)?.unwrap_or_default();
            Err(TaskError::AlreadyActive {
                kind: new.kind.clone(),
                task_id,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Puts a recurring task in the queue unless one with its unique key is already queued or
/// running; every process calls this at start for each schedule, and the schedule
/// exists once. Returns the task that holds the key.
pub fn ensure(conn: &mut DbConnection, new: &NewTask) -> Result<Task, TaskError> {
    match enqueue(conn, new) {
        Ok(task) => Ok(task),
        Err(TaskError::AlreadyActive { task_id, .. }) => get(conn, task_id),
        Err(e) => Err(e),
    }
}

/// Moves a queued task to a new `run_at` (a rescheduled mail job's preparation). Returns
/// whether it moved: a task a runner has already claimed, or that ended, keeps its time
/// (its work checks its own subject's time again when it runs).
pub fn reschedule(
    conn: &mut DbConnection,
    id: i64,
    run_at: NaiveDateTime,
) -> Result<bool, TaskError> {
    let moved = diesel::update(
        tasks::table
            .find(id)
            .filter(tasks::state.eq(TaskState::Queued.as_str())),
    )
    .set(tasks::run_at.eq(run_at))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Reads one task.
pub fn get(conn: &mut DbConnection, id: i64) -> Result<Task, TaskError> {
    tasks::table
        .find(id)
        .select(Row::as_select())
        .first::<Row>(conn)
        .optional()?
        .ok_or(TaskError::NotFound(id))?
        .try_into()
}

/// The task of a kind with the latest `run_at`, for schedules that decide whether today's
/// run was made.
pub fn latest_of_kind(conn: &mut DbConnection, kind: &str) -> Result<Option<Task>, TaskError> {
    tasks::table
        .filter(tasks::kind.eq(kind))
        .order((tasks::run_at.desc(), tasks::id.desc()))
        .select(Row::as_select())
        .first::<Row>(conn)
        .optional()?
        .map(Task::try_from)
        .transpose()
}

/// The next full hour after `now`: when an hourly schedule tick runs again.
pub fn next_hour(now: NaiveDateTime) -> NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now) + TimeDelta::hours(1)
}

/// For an hourly schedule tick: whether the daily run of `kind` at `hour` (0–23, UTC) is
/// due at `now` — today's hour has come and no task of the kind was queued to run since.
/// A tick that runs late still fires that day's run; only one claimer runs a tick, so
/// this read is not raced.
pub fn daily_due(
    conn: &mut DbConnection,
    kind: &str,
    hour: u32,
    now: NaiveDateTime,
) -> Result<bool, TaskError> {
    let Some(today) = now.date().and_hms_opt(hour.min(23), 0, 0) else {
        return Ok(false);
    };
    if now < today {
        return Ok(false);
    }
    Ok(latest_of_kind(conn, kind)?.is_none_or(|t| t.run_at.naive_utc() < today))
}
