//! Background work of the service: profile recalculations and retention runs, started by
//! a request or by a daily schedule. The work runs on a thread of its own, never on an actix
//! worker, and reports through the jobs table.

use std::time::Duration;

use chrono::Timelike;
use mailbaar_jobs::Job;
use mailbaar_store::Pool;

use crate::error::ApiError;

/// A recalculation older than this that never finished is taken as crashed.
const STALE_AFTER_HOURS: i64 = 6;

/// Registers a recalculation job and runs it in the background; refused while another
/// one runs.
pub async fn start_recalculation(pool: &Pool, created_by: String) -> Result<Job, ApiError> {
    let registering = pool.clone();
    let job = actix_web::web::block(move || -> Result<Job, ApiError> {
        let mut conn = registering.get()?;
        if let Some(last) = mailbaar_jobs::latest_of_kind(&mut conn, mailbaar_profiles::JOB_KIND)? {
            let fresh =
                chrono::Utc::now() - last.created_at < chrono::Duration::hours(STALE_AFTER_HOURS);
            if matches!(last.status.as_str(), "queued" | "running") && fresh {
                return Err(ApiError::Conflict(format!(
                    "a profile recalculation is already running (job {})",
                    last.id
                )));
            }
        }
        Ok(mailbaar_jobs::create(
            &mut conn,
            mailbaar_profiles::JOB_KIND,
            &created_by,
        )?)
    })
    .await??;
    let running = pool.clone();
    let id = job.id;
    spawn_job(id, move || {
        if let Err(error) = mailbaar_profiles::run_job(&running, id) {
            tracing::error!(%error, job_id = id, "profile recalculation failed");
        }
    })?;
    Ok(job)
}

/// Runs a registered job's work on a thread of its own; the work records its outcome.
fn spawn_job(id: i64, work: impl FnOnce() + Send + 'static) -> Result<(), ApiError> {
    std::thread::Builder::new()
        .name(format!("job-{id}"))
        .spawn(work)
        .map(drop)
        .map_err(|e| {
            tracing::error!(error = %e, "could not start a job thread");
            ApiError::Internal
        })
}

/// Registers a retention run of an active rule and runs it in the background.
pub async fn start_retention(pool: &Pool, rule_id: i64, actor: String) -> Result<Job, ApiError> {
    let registering = pool.clone();
    let job = actix_web::web::block(move || -> Result<Job, ApiError> {
        let mut conn = registering.get()?;
        let rule = mailbaar_gdpr::get_rule(&mut conn, rule_id)?;
        if !rule.active {
            return Err(ApiError::Conflict(format!(
                "retention rule {rule_id} is inactive"
            )));
        }
        Ok(mailbaar_jobs::create(
            &mut conn,
            mailbaar_gdpr::RETENTION_JOB_KIND,
            &actor,
        )?)
    })
    .await??;
    let running = pool.clone();
    let id = job.id;
    let actor = job.created_by.clone();
    spawn_job(id, move || {
        if let Err(error) = mailbaar_gdpr::run_rule(&running, rule_id, id, &actor) {
            tracing::error!(%error, job_id = id, rule_id, "retention run failed");
        }
    })?;
    Ok(job)
}

/// Starts the daily retention rules that have not run in the last 24 hours.
async fn daily_retention(pool: &Pool) {
    let checking = pool.clone();
    let due = actix_web::web::block(move || -> Result<Vec<i64>, ApiError> {
        let mut conn = checking.get()?;
        let day_ago = chrono::Utc::now() - chrono::Duration::hours(24);
        let mut due = Vec::new();
        for rule in mailbaar_gdpr::list_rules(&mut conn)? {
            if rule.active && rule.schedule == "daily" {
                let runs = mailbaar_gdpr::list_runs(&mut conn, rule.id)?;
                if !runs.iter().any(|r| !r.dry_run && r.started_at > day_ago) {
                    due.push(rule.id);
                }
            }
        }
        Ok(due)
    })
    .await;
    match due {
        Ok(Ok(rules)) => {
            for rule in rules {
                if let Err(e) = start_retention(pool, rule, "schedule".into()).await {
                    tracing::warn!(error = %e, rule, "daily retention run not started");
                }
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "checking retention schedules failed"),
        Err(e) => tracing::warn!(error = %e, "checking retention schedules failed"),
    }
}

/// Every few minutes: starts the daily retention rules that are due, and checks whether the
/// daily profile recalculation is due: the hour in the
/// settings has passed today and no recalculation started since.
pub async fn daily_work(pool: Pool) {
    let mut tick = actix_web::rt::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        daily_retention(&pool).await;
        let checking = pool.clone();
        let due = actix_web::web::block(move || -> Result<bool, ApiError> {
            let mut conn = checking.get()?;
            let Some(hour) = mailbaar_settings::load(&mut conn)?.profiles_daily_hour else {
                return Ok(false);
            };
            let now = chrono::Utc::now();
            if i64::from(now.hour()) < hour {
                return Ok(false);
            }
            let today = now
                .date_naive()
                .and_hms_opt(hour as u32, 0, 0)
                .expect("valid hour");
            let last = mailbaar_jobs::latest_of_kind(&mut conn, mailbaar_profiles::JOB_KIND)?;
            Ok(last.is_none_or(|j| j.created_at.naive_utc() < today))
        })
        .await;
        match due {
            Ok(Ok(true)) => {
                if let Err(e) = start_recalculation(&pool, "schedule".into()).await {
                    tracing::warn!(error = %e, "daily profile recalculation not started");
                }
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "checking the profile schedule failed"),
            Err(e) => tracing::warn!(error = %e, "checking the profile schedule failed"),
        }
    }
}
