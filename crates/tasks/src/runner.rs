//! The runner: claims due tasks of the kinds it knows, runs their work while renewing the
//! lease, and records the outcome only while it still holds the lease.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mailbaar_store::schema::tasks;
use mailbaar_store::{DbConnection, Pool};
use serde::de::DeserializeOwned;

use crate::{Row, Task, TaskError, TaskState};

/// What a task's work may fail with: any error, kept with its source for the log; the
/// task's message shows its text.
pub type WorkError = Box<dyn std::error::Error + Send + Sync>;

/// How a run of a task ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The task succeeded; the message is its summary.
    Done(String),
    /// A recurring task: it ran, and the same row is queued again for `run_at`.
    Again {
        message: String,
        run_at: NaiveDateTime,
    },
}

/// The work behind one kind of task, provided by the domain crate that owns the kind.
pub trait Work: Send + Sync {
    /// Does the work. Long work reports through [`TaskContext::progress`].
    fn run(&self, ctx: &TaskContext<'_>) -> Result<Outcome, WorkError>;
}

impl<F> Work for F
where
    F: Fn(&TaskContext<'_>) -> Result<Outcome, WorkError> + Send + Sync,
{
    fn run(&self, ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
        self(ctx)
    }
}

/// Which work runs each kind: the binary builds one and hands it to its runners.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<String, Arc<dyn Work>>,
}

fn is_plain(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || extra.contains(&c))
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wires a kind (`profiles.recalculate`: letters, digits, `_` and `.`) to its work.
    ///
    /// # Panics
    /// On a kind with other characters: kinds are constants of the code.
    pub fn register(&mut self, kind: &str, work: impl Work + 'static) -> &mut Self {
        assert!(is_plain(kind, &[]), "task kind {kind:?}");
        self.kinds.insert(kind.to_owned(), Arc::new(work));
        self
    }

    /// The registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}

/// How a runner identifies itself and paces its work.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The lease owner written on claimed tasks; unique per runner.
    pub owner: String,
    /// How long a claim holds without renewal; a task whose runner died is taken again
    /// after this. Renewed every third of it while the work runs.
    pub lease: Duration,
    /// How long an idle runner waits before looking for due tasks again.
    pub poll: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            owner: format!(
                "runner-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        }
    }
}

type Clock = Arc<dyn Fn() -> NaiveDateTime + Send + Sync>;

/// Claims and runs tasks; one per thread, as many threads and processes as wanted.
#[derive(Clone)]
pub struct Runner {
    pool: Pool,
    registry: Arc<Registry>,
    options: RunnerOptions,
    clock: Clock,
}

/// What a task's work sees while it runs.
pub struct TaskContext<'a> {
    runner: &'a Runner,
    task: &'a Task,
    lost: &'a AtomicBool,
}

impl TaskContext<'_> {
    /// The task as claimed (its attempts already count this run).
    pub fn task(&self) -> &Task {
        self.task
    }

    /// The pool to take connections from.
    pub fn pool(&self) -> &Pool {
        &self.runner.pool
    }

    /// The runner's clock: the current time in UTC (injected in tests).
    pub fn now(&self) -> NaiveDateTime {
        (self.runner.clock)()
    }

    /// The task's parameters as the kind's own type.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_value(self.task.payload.clone()).map_err(|source| TaskError::Payload {
            id: self.task.id,
            source,
        })
    }

    /// Whether this runner still holds the task: [`TaskError::LeaseLost`] once another
    /// runner has taken it over. Work calls this (or [`TaskContext::progress`]) between
    /// steps and stops on the error, so a task never runs on in two places; a step's open
    /// transaction then rolls back.
    pub fn check_lease(&self) -> Result<(), TaskError> {
        if self.lost.load(Ordering::SeqCst) {
            Err(TaskError::LeaseLost(self.task.id))
        } else {
            Ok(())
        }
    }

    /// Records progress (steps done of `total`, and the current step) on a connection of
    /// its own, so readers see it while the work's transaction is open, and checks the
    /// lease ([`TaskContext::check_lease`]). Writing is best effort: a failure is logged,
    /// never fatal to the work.
    pub fn progress(&self, done: i64, total: i64, message: &str) -> Result<(), TaskError> {
        self.check_lease()?;
        let written = self
            .runner
            .pool
            .get()
            .map_err(TaskError::from)
            .and_then(|mut c| {
                diesel::update(
                    tasks::table
                        .find(self.task.id)
                        .filter(tasks::lease_owner.eq(&self.runner.options.owner))
                        .filter(tasks::state.eq(TaskState::Running.as_str())),
                )
                .set((
                    tasks::progress.eq(done),
                    tasks::total.eq(total),
                    tasks::message.eq(message),
                ))
                .execute(&mut c)
                .map_err(TaskError::from)
            });
        match written {
            Ok(0) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(TaskError::LeaseLost(self.task.id))
            }
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, task_id = self.task.id, "recording task progress failed");
                Ok(())
            }
        }
    }
}

impl Runner {
    /// A runner over the pool for the registry's kinds.
    ///
    /// # Panics
    /// On an owner with characters other than letters, digits, `_`, `.`, `:` and `-`.
    pub fn new(pool: Pool, registry: Arc<Registry>, options: RunnerOptions) -> Self {
        assert!(is_plain(&options.owner, &[':', '-']), "runner owner");
        Runner {
            pool,
            registry,
            options,
            clock: Arc::new(mailbaar_store::now),
        }
    }

    /// The same runner with another clock, for tests that move time.
    pub fn with_clock(mut self, clock: impl Fn() -> NaiveDateTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The lease owner this runner writes.
    pub fn owner(&self) -> &str {
        &self.options.owner
    }

    fn lease_until(&self, now: NaiveDateTime) -> NaiveDateTime {
        now + chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// Claims the next due task of a registered kind, or one whose runner's lease expired;
    /// fails the expired ones that used up their attempts.
    pub fn claim(&self) -> Result<Option<Task>, TaskError> {
        let kinds: Vec<&str> = self.registry.kinds().collect();
        if kinds.is_empty() {
            return Ok(None);
        }
        let mut conn = self.pool.get()?;
        let now = (self.clock)();
        let none = None::<NaiveDateTime>;
        diesel::update(
            tasks::table
                .filter(tasks::state.eq(TaskState::Running))
                .filter(tasks::lease_expires_at.lt(now))
                .filter(tasks::attempts.ge(tasks::max_attempts))
                .filter(tasks::kind.eq_any(&kinds)),
        )
        .set((
            tasks::state.eq(TaskState::Failed),
            tasks::lease_owner.eq(None::<String>),
            tasks::lease_expires_at.eq(none),
            tasks::finished_at.eq(Some(now)),
            tasks::message.eq(diesel::dsl::sql::<diesel::sql_types::Text>(
                "'abandoned: ' || CAST(attempts AS TEXT) || ' runs were cut off by a stopped worker'",
            )),
        ))
        .execute(&mut conn)?;
        let claimed = mailbaar_store::write_transaction(&mut conn, |conn| {
            let due = tasks::table
                .filter(tasks::kind.eq_any(&kinds))
                .filter(
                    tasks::state
                        .eq(TaskState::Queued)
                        .and(tasks::run_at.le(now))
                        .or(tasks::state
                            .eq(TaskState::Running)
                            .and(tasks::lease_expires_at.lt(now))),
                )
                .order((tasks::run_at, tasks::id))
                .select((tasks::id, tasks::started_at))
                .limit(1);
            let due: Vec<(i64, Option<NaiveDateTime>)> =
                mailbaar_store::load_claimable!(conn, due)?;
            let Some(&(id, started_at)) = due.first() else {
                return Ok::<_, TaskError>(None);
            };
            let row = diesel::update(tasks::table.find(id))
                .set((
                    tasks::state.eq(TaskState::Running),
                    tasks::lease_owner.eq(&self.options.owner),
                    tasks::lease_expires_at.eq(Some(self.lease_until(now))),
                    tasks::attempts.eq(tasks::attempts + 1),
                    tasks::started_at.eq(started_at.or(Some(now))),
                ))
                .returning((
                    tasks::id,
                    tasks::kind,
                    tasks::state,
                    tasks::progress,
                    tasks::total,
                    tasks::message,
                    tasks::created_by,
                    tasks::created_at,
                    tasks::started_at,
                    tasks::finished_at,
                    tasks::run_at,
                    tasks::attempts,
                    tasks::max_attempts,
                    tasks::payload,
                ))
                .get_result::<Row>(conn)?;
            Ok(Some(row))
        })?;
        claimed.map(Task::try_from).transpose()
    }

    fn renew(&self, conn: &mut DbConnection, id: i64) -> Result<bool, TaskError> {
        let until = self.lease_until((self.clock)());
        let n = diesel::update(
            tasks::table
                .find(id)
                .filter(tasks::lease_owner.eq(&self.options.owner))
                .filter(tasks::state.eq(TaskState::Running.as_str())),
        )
        .set(tasks::lease_expires_at.eq(until))
        .execute(conn)?;
        Ok(n == 1)
    }

    /// Ends the run: only while this runner still holds the lease, so a runner that lost
    /// its task to another never overwrites the other's outcome.
    fn finish(&self, id: i64, result: Result<Outcome, String>) -> Result<(), TaskError> {
        let mut conn = self.pool.get()?;
        let now = (self.clock)();
        let mine = tasks::table
            .find(id)
            .filter(tasks::lease_owner.eq(&self.options.owner))
            .filter(tasks::state.eq(TaskState::Running.as_str()));
        let none = None::<NaiveDateTime>;
        let n = match result {
            Ok(Outcome::Done(message)) => diesel::update(mine)
                .set((
                    tasks::state.eq(TaskState::Succeeded.as_str()),
                    tasks::message.eq(message),
                    tasks::finished_at.eq(Some(now)),
                    tasks::lease_owner.eq(None::<String>),
                    tasks::lease_expires_at.eq(none),
                ))
                .execute(&mut conn)?,
            Ok(Outcome::Again { message, run_at }) => diesel::update(mine)
                .set((
                    tasks::state.eq(TaskState::Queued.as_str()),
                    tasks::message.eq(message),
                    tasks::run_at.eq(run_at),
                    tasks::attempts.eq(0),
                    tasks::finished_at.eq(Some(now)),
                    tasks::lease_owner.eq(None::<String>),
                    tasks::lease_expires_at.eq(none),
                ))
                .execute(&mut conn)?,
            Err(message) => diesel::update(mine)
                .set((
                    tasks::state.eq(TaskState::Failed.as_str()),
                    tasks::message.eq(message),
                    tasks::finished_at.eq(Some(now)),
                    tasks::lease_owner.eq(None::<String>),
                    tasks::lease_expires_at.eq(none),
                ))
                .execute(&mut conn)?,
        };
        if n == 0 {
            tracing::warn!(task_id = id, owner = %self.options.owner,
                "the task's lease was lost before it finished; its outcome is not recorded");
        }
        Ok(())
    }
    /// Claims one due task and runs it to its end, renewing the lease meanwhile. Returns
    /// the task as it stands afterwards, or `None` when nothing was due.
    pub fn run_next(&self) -> Result<Option<Task>, TaskError> {
        let Some(task) = self.claim()? else {
            return Ok(None);
        };
        let work = self
            .registry
            .kinds
            .get(&task.kind)
            .cloned()
            .expect("only registered kinds are claimed");
        tracing::info!(task_id = task.id, kind = %task.kind, attempt = task.attempts,
            owner = %self.options.owner, "task claimed");
        let done = AtomicBool::new(false);
        let lost = AtomicBool::new(false);
        // The lease is renewed on a connection of its own, so work that holds the pool's
        // other connections (or requests that do) cannot starve the renewal.
        let heartbeat_conn = self.pool.get()?;
        let result = std::thread::scope(|scope| {
            scope.spawn(|| self.heartbeat(task.id, heartbeat_conn, &done, &lost));
            let ctx = TaskContext {
                runner: self,
                task: &task,
                lost: &lost,
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run(&ctx)));
            done.store(true, Ordering::SeqCst);
            result
        });
        if lost.load(Ordering::SeqCst) {
            // Another runner owns the task now; its outcome is the other runner's to write.
            tracing::warn!(task_id = task.id, kind = %task.kind,
                "stopped: another runner took the task over");
        } else {
            let result = match result {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(error)) => {
                    tracing::error!(error = %error, source = ?error.source(), task_id = task.id,
                        kind = %task.kind, "task failed");
                    // The cause may hold a database message: it stays in the log.
                    Err(format!(
                        "failed; the cause is in the service log under task_id={}",
                        task.id
                    ))
                }
                Err(_) => {
                    tracing::error!(task_id = task.id, kind = %task.kind, "task panicked");
                    Err(format!(
                        "failed with an internal error; see the service log under task_id={}",
                        task.id
                    ))
                }
            };
            let ok = result.is_ok();
            self.finish(task.id, result)?;
            tracing::info!(task_id = task.id, kind = %task.kind, ok, "task ended");
        }
        let mut conn = self.pool.get()?;
        crate::get(&mut conn, task.id).map(Some)
    }

    fn heartbeat(
        &self,
        id: i64,
        mut conn: mailbaar_store::PooledConnection,
        done: &AtomicBool,
        lost: &AtomicBool,
    ) {
        let every = self.options.lease / 3;
        let mut last = Instant::now();
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(every));
            if last.elapsed() < every {
                continue;
            }
            last = Instant::now();
            match self.renew(&mut conn, id) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(task_id = id, "the task's lease was taken by another runner");
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(error) => tracing::warn!(%error, task_id = id, "renewing a task lease failed"),
            }
        }
    }

    /// Runs due tasks until none is left; returns how many ran.
    pub fn run_until_idle(&self) -> Result<usize, TaskError> {
        let mut n = 0;
        while self.run_next()?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Runs tasks on a thread of its own until the handle is stopped; between tasks it
    /// waits `poll`. A stop lets the running task finish (it is never cut off by a stop).
    pub fn spawn(self) -> std::io::Result<RunnerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tasks-{}", self.options.owner))
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    match self.run_next() {
                        Ok(Some(_)) => continue,
                        Ok(None) => {}
                        Err(error) => tracing::warn!(%error, "claiming a task failed"),
                    }
                    let idle = Instant::now();
                    while idle.elapsed() < self.options.poll && !flag.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })?;
        Ok(RunnerHandle {
            stop,
            thread: Some(thread),
        })
    }
}

/// A runner thread; stopping it lets the running task finish first.
pub struct RunnerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunnerHandle {
    /// Asks the runner to stop after the task it holds, and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.halt();
    }
}
