//! Claims, leases, unique keys and schedules, on both engines; several runners on
//! PostgreSQL, one on SQLite; a runner process killed with SIGKILL mid-task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use mailbaar_store::testing::TestDatabase;
use mailbaar_store::{Backend, Pool};
use mailbaar_tasks::*;

fn options(owner: &str, lease_ms: u64) -> RunnerOptions {
    RunnerOptions {
        owner: owner.to_owned(),
        lease: Duration::from_millis(lease_ms),
        poll: Duration::from_millis(20),
    }
}

fn counting(seen: Arc<Mutex<HashMap<i64, u32>>>) -> impl Work {
    move |ctx: &TaskContext<'_>| -> Result<Outcome, WorkError> {
        *seen.lock().unwrap().entry(ctx.task().id).or_default() += 1;
        Ok(Outcome::Done("counted".into()))
    }
}

fn on(backend: Backend, f: impl FnOnce(&TestDatabase, Pool)) {
    let Some(db) = TestDatabase::new(backend) else {
        return;
    };
    let pool = db.pool();
    f(&db, pool);
}

/// Several runners on separate pools on PostgreSQL; one on SQLite, which serialises writes.
fn runners(db: &TestDatabase) -> usize {
    match db.url().backend() {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    }
}

mailbaar_store::both_engines!(
    with on:
    each_task_runs_once_with_its_runners,
    unique_key_holds_one_active,
    expired_leases_are_taken_again,
    daily_schedule_fires_once_a_day_with_its_runners,
    killed_runner_task_is_finished_by_another,
    a_runner_that_lost_its_lease_stops,
);

/// Every task runs exactly once: with two runners on separate pools (PostgreSQL), or one
/// (SQLite).
fn each_task_runs_once(db: &TestDatabase, pool: Pool, runners: usize) {
    let tasks = 300;
    {
        let mut conn = pool.get().unwrap();
        for i in 0..tasks {
            enqueue(
                &mut conn,
                &NewTask::now("test.count", "test").with_payload(serde_json::json!({ "i": i })),
            )
            .unwrap();
        }
    }
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let mut registry = Registry::new();
    registry.register("test.count", counting(seen.clone()));
    let registry = Arc::new(registry);
    std::thread::scope(|s| {
        for r in 0..runners {
            let pool = mailbaar_store::connect(db.url(), 2).unwrap();
            let runner = Runner::new(pool, registry.clone(), options(&format!("r{r}"), 30_000));
            s.spawn(move || runner.run_until_idle().unwrap());
        }
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), tasks, "every task ran");
    assert!(seen.values().all(|&n| n == 1), "no task ran twice");
    let mut conn = pool.get().unwrap();
    for id in seen.keys() {
        let t = get(&mut conn, *id).unwrap();
        assert_eq!(t.state, TaskState::Succeeded);
        assert_eq!(t.attempts, 1);
        assert_eq!(t.message, "counted");
    }
}

fn each_task_runs_once_with_its_runners(db: &TestDatabase, pool: Pool) {
    each_task_runs_once(db, pool, runners(db));
}

fn unique_key_holds_one_active(_: &TestDatabase, pool: Pool) {
    let mut conn = pool.get().unwrap();
    let first = enqueue(&mut conn, &NewTask::now("test.one", "a").unique("test.one")).unwrap();
    let err = enqueue(&mut conn, &NewTask::now("test.one", "b").unique("test.one")).unwrap_err();
    assert!(
        matches!(err, TaskError::AlreadyActive { task_id, .. } if task_id == first.id),
        "{err:?}"
    );
    assert_eq!(
        ensure(&mut conn, &NewTask::now("test.one", "c").unique("test.one"))
            .unwrap()
            .id,
        first.id
    );
    let mut registry = Registry::new();
    registry.register(
        "test.one",
        |_: &TaskContext<'_>| -> Result<Outcome, WorkError> { Err("it went wrong".into()) },
    );
    let runner = Runner::new(pool.clone(), Arc::new(registry), options("u", 30_000));
    let ran = runner.run_next().unwrap().unwrap();
    assert_eq!(ran.state, TaskState::Failed);
    // The cause (which may be a database message) stays in the log.
    assert_eq!(
        ran.message,
        format!(
            "failed; the cause is in the service log under task_id={}",
            ran.id
        )
    );
    // Ended tasks hold no key.
    let again = enqueue(&mut conn, &NewTask::now("test.one", "d").unique("test.one")).unwrap();
    assert_ne!(again.id, first.id);
    // Kinds no runner registered are left alone.
    enqueue(&mut conn, &NewTask::now("test.other", "e")).unwrap();
    let mut registry = Registry::new();
    registry.register("test.none", counting(Default::default()));
    let idle = Runner::new(pool.clone(), Arc::new(registry), options("n", 30_000));
    assert!(idle.claim().unwrap().is_none());
}

/// A lease that expires lets another runner take the task; the first runner's late
/// outcome is not recorded; attempts count, and the task fails after its last one.
fn expired_leases_are_taken_again(_: &TestDatabase, pool: Pool) {
    let t0 = NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap()
        .and_hms_opt(8, 0, 0)
        .unwrap();
    let clock = Arc::new(AtomicI64::new(0));
    let at = {
        let clock = clock.clone();
        move || t0 + chrono::Duration::seconds(clock.load(Ordering::SeqCst))
    };
    let mut conn = pool.get().unwrap();
    let mut new = NewTask::now("test.lease", "t").at(t0);
    new.max_attempts = 2;
    let task = enqueue(&mut conn, &new).unwrap();
    let registry = {
        let mut r = Registry::new();
        r.register("test.lease", counting(Default::default()));
        Arc::new(r)
    };
    let a =
        Runner::new(pool.clone(), registry.clone(), options("a", 60_000)).with_clock(at.clone());
    let b =
        Runner::new(pool.clone(), registry.clone(), options("b", 60_000)).with_clock(at.clone());
    let claimed = a.claim().unwrap().unwrap();
    assert_eq!((claimed.id, claimed.attempts), (task.id, 1));
    assert!(b.claim().unwrap().is_none(), "a live lease is not taken");
    clock.store(61, Ordering::SeqCst);
    let taken = b.claim().unwrap().unwrap();
    assert_eq!((taken.id, taken.attempts), (task.id, 2));
    clock.store(122, Ordering::SeqCst);
    assert!(
        a.claim().unwrap().is_none(),
        "out of attempts: failed, not claimed"
    );
    let t = get(&mut conn, task.id).unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.message.contains("2 runs were cut off"), "{}", t.message);
}

/// An hourly tick that enqueues the daily run at 03:00, as the binary's schedules do.
fn schedule(ctx: &TaskContext<'_>) -> Result<Outcome, WorkError> {
    let now = ctx.now();
    let mut conn = ctx.pool().get()?;
    if daily_due(&mut conn, "test.daily", 3, now)? {
        ensure(
            &mut conn,
            &NewTask::now("test.daily", "schedule")
                .unique("test.daily")
                .at(now),
        )?;
    }
    Ok(Outcome::Again {
        message: "checked".into(),
        run_at: next_hour(now),
    })
}

fn daily_schedule_fires_once_a_day(db: &TestDatabase, pool: Pool, runners: usize) {
    let t0 = NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let hours = Arc::new(AtomicI64::new(0));
    let at = {
        let hours = hours.clone();
        move || -> NaiveDateTime {
            t0 + chrono::Duration::hours(hours.load(Ordering::SeqCst))
                + chrono::Duration::minutes(1)
        }
    };
    let daily = Arc::new(Mutex::new(HashMap::new()));
    let mut registry = Registry::new();
    registry
        .register("test.schedule", schedule)
        .register("test.daily", counting(daily.clone()));
    let registry = Arc::new(registry);
    let all: Vec<Runner> = (0..runners)
        .map(|r| {
            let pool = mailbaar_store::connect(db.url(), 2).unwrap();
            Runner::new(pool, registry.clone(), options(&format!("s{r}"), 30_000))
                .with_clock(at.clone())
        })
        .collect();
    // Every process ensures the schedule at start; it exists once.
    for _ in &all {
        let mut conn = pool.get().unwrap();
        ensure(
            &mut conn,
            &NewTask::now("test.schedule", "start")
                .unique("test.schedule")
                .at(t0),
        )
        .unwrap();
    }
    for hour in 0..72 {
        hours.store(hour, Ordering::SeqCst);
        std::thread::scope(|s| {
            for runner in &all {
                s.spawn(|| runner.run_until_idle().unwrap());
            }
        });
    }
    let daily = daily.lock().unwrap();
    assert_eq!(daily.len(), 3, "one run per day over three days");
    assert!(daily.values().all(|&n| n == 1));
    let mut conn = pool.get().unwrap();
    let tick = latest_of_kind(&mut conn, "test.schedule").unwrap().unwrap();
    assert_eq!(tick.state, TaskState::Queued);
    assert_eq!(tick.run_at.naive_utc(), t0 + chrono::Duration::hours(72));
    let runs = latest_of_kind(&mut conn, "test.daily").unwrap().unwrap();
    assert_eq!(
        runs.run_at.naive_utc(),
        t0 + chrono::Duration::hours(51) + chrono::Duration::minutes(1)
    );
}

fn daily_schedule_fires_once_a_day_with_its_runners(db: &TestDatabase, pool: Pool) {
    daily_schedule_fires_once_a_day(db, pool, runners(db));
}

const CHILD_DB: &str = "MAILBAAR_TASKS_TEST_CHILD_DB";

/// Not a test of its own: the entry point of the runner process that
/// `killed_runner_*` starts and kills. Run directly, without the variable, it returns.
#[test]
fn runner_process_for_the_kill_test() {
    let Ok(url) = std::env::var(CHILD_DB) else {
        return;
    };
    let url = mailbaar_store::DatabaseUrl::parse(&url).unwrap();
    let pool = mailbaar_store::connect(&url, 2).unwrap();
    let mut registry = Registry::new();
    registry.register(
        "test.slow",
        |_: &TaskContext<'_>| -> Result<Outcome, WorkError> {
            std::thread::sleep(Duration::from_secs(120));
            Ok(Outcome::Done("slept".into()))
        },
    );
    let runner = Runner::new(pool, Arc::new(registry), options("child", 1_000));
    runner.run_next().unwrap();
}

fn killed_runner_task_is_finished_by_another(db: &TestDatabase, pool: Pool) {
    let mut conn = pool.get().unwrap();
    let task = enqueue(&mut conn, &NewTask::now("test.slow", "t")).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "runner_process_for_the_kill_test", "--nocapture"])
        .env(CHILD_DB, db.url_string())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let t = get(&mut conn, task.id).unwrap();
        if t.state == TaskState::Running {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the child never claimed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to release anything
    child.wait().unwrap();
    let mut registry = Registry::new();
    registry.register(
        "test.slow",
        |_: &TaskContext<'_>| -> Result<Outcome, WorkError> {
            Ok(Outcome::Done("finished by the survivor".into()))
        },
    );
    let survivor = Runner::new(pool.clone(), Arc::new(registry), options("survivor", 1_000));
    assert!(survivor.claim().unwrap().is_none(), "the lease still holds");
    let started = std::time::Instant::now();
    let done = loop {
        if let Some(t) = survivor.run_next().unwrap() {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never taken again"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done.id, task.id);
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.attempts, 2, "the killed run counts");
    assert_eq!(done.message, "finished by the survivor");
}

/// A runner that loses its lease (paused past it, another runner took the task) stops at
/// its next step and records nothing; the runner that took over finishes the task.
fn a_runner_that_lost_its_lease_stops(_: &TestDatabase, pool: Pool) {
    let t0 = NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap()
        .and_hms_opt(8, 0, 0)
        .unwrap();
    let mut conn = pool.get().unwrap();
    let task = enqueue(&mut conn, &NewTask::now("test.steps", "t").at(t0)).unwrap();
    let steps_after_loss = Arc::new(AtomicI64::new(0));
    let started = Arc::new(std::sync::Barrier::new(2));
    let taken = Arc::new(std::sync::Barrier::new(2));
    let slow = {
        let (started, taken, after) = (started.clone(), taken.clone(), steps_after_loss.clone());
        move |ctx: &TaskContext<'_>| -> Result<Outcome, WorkError> {
            ctx.progress(0, 100, "first step")?;
            started.wait();
            taken.wait();
            for i in 1..100 {
                ctx.progress(i, 100, "next step")?;
                after.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Outcome::Done("the first runner finished".into()))
        }
    };
    let mut registry = Registry::new();
    registry.register("test.steps", slow);
    let first = Runner::new(pool.clone(), Arc::new(registry), options("first", 60_000))
        .with_clock(move || t0);
    let mut registry = Registry::new();
    registry.register(
        "test.steps",
        |_: &TaskContext<'_>| -> Result<Outcome, WorkError> {
            Ok(Outcome::Done("the second runner finished".into()))
        },
    );
    let second = Runner::new(pool.clone(), Arc::new(registry), options("second", 60_000))
        .with_clock(move || t0 + chrono::Duration::seconds(120));
    std::thread::scope(|s| {
        let paused = s.spawn(|| first.run_next().unwrap().unwrap());
        started.wait();
        // The first runner's lease (60 s) has expired by the second runner's clock.
        let done = second.run_next().unwrap().unwrap();
        assert_eq!(done.id, task.id);
        assert_eq!(done.state, TaskState::Succeeded);
        taken.wait();
        let seen = paused.join().unwrap();
        assert_eq!(seen.message, "the second runner finished");
    });
    assert_eq!(
        steps_after_loss.load(Ordering::SeqCst),
        0,
        "no step ran after the loss"
    );
    let t = get(&mut conn, task.id).unwrap();
    assert_eq!((t.state, t.attempts), (TaskState::Succeeded, 2));
}
