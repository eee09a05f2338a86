//! The one place where task kinds are wired to the work their domain crates provide, and
//! where a process starts its task runners.

use mailbaar_store::Pool;
use mailbaar_tasks::{Registry, Runner, RunnerHandle, RunnerOptions, TaskError};
use std::sync::Arc;

use crate::config::TaskConfig;
use crate::StartError;

/// Every task kind this binary runs, with its work.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(
        mailbaar_profiles::RECALCULATE,
        mailbaar_profiles::recalculation_work,
    )
    .register(
        mailbaar_profiles::SCHEDULE,
        mailbaar_profiles::schedule_work,
    )
    .register(
        mailbaar_gdpr::RETENTION_RUN,
        mailbaar_gdpr::retention_run_work,
    )
    .register(
        mailbaar_gdpr::RETENTION_SCHEDULE,
        mailbaar_gdpr::retention_schedule_work,
    );
    r
}

/// Makes sure every recurring schedule is queued once (each process calls this at start;
/// the unique keys keep one of each).
pub fn ensure_schedules(pool: &Pool) -> Result<(), TaskError> {
    let mut conn = pool.get()?;
    mailbaar_tasks::ensure(&mut conn, &mailbaar_profiles::schedule_task())?;
    mailbaar_tasks::ensure(&mut conn, &mailbaar_gdpr::schedule_task())?;
    Ok(())
}

/// Starts `count` runner threads over the pool; stopping the handles lets each finish the
/// task it holds.
pub fn start_runners(pool: &Pool, config: &TaskConfig) -> Result<Vec<RunnerHandle>, StartError> {
    ensure_schedules(pool)?;
    let registry = Arc::new(registry());
    let mut handles = Vec::with_capacity(config.runners);
    for _ in 0..config.runners.max(1) {
        let options = RunnerOptions {
            lease: config.lease,
            poll: config.poll,
            ..RunnerOptions::default()
        };
        let runner = Runner::new(pool.clone(), registry.clone(), options);
        handles.push(runner.spawn().map_err(StartError::Runner)?);
    }
    Ok(handles)
}
