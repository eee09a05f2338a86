//! Configuration from the environment, each value with a default that works on a laptop.

use std::time::Duration;

/// Everything the service reads from its environment, read once at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MAILBAAR_DATABASE_URL`: `sqlite://FILE` (default `sqlite://mailbaar.db`) or `postgres://…`.
    pub database_url: String,
    /// `MAILBAAR_LISTEN`: address to bind (default `127.0.0.1:8080`; port 0 picks a free one).
    pub listen: String,
    /// `MAILBAAR_ADMIN_TOKEN`: when set, registered as an admin token at start.
    pub admin_token: Option<String>,
    /// `MAILBAAR_PUBLIC_URL`: base of links that recipients open.
    pub public_url: String,
    /// `MAILBAAR_DB_POOL_SIZE`: connections kept per process (default 8).
    pub pool_size: u32,
    /// `MAILBAAR_WORKERS`: HTTP worker threads (default: one per core).
    pub workers: Option<usize>,
    /// How this process runs background tasks.
    pub tasks: TaskConfig,
    /// `MAILBAAR_OUTBOX`: the directory the `.eml` transport writes messages under
    /// (default `outbox`), one folder per mail job and `test` for test mails.
    pub outbox: std::path::PathBuf,
    /// `MAILBAAR_SEND_BATCH`: recipients claimed and sent per batch (default 500).
    pub send_batch: i64,
    /// `MAILBAAR_IMPORT_DIR`: where uploaded import files are kept (default `imports`).
    pub import_dir: std::path::PathBuf,
}

/// How a process runs background tasks.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// `MAILBAAR_RUN_TASKS`: whether `serve` runs tasks too (default `true`; `false` for
    /// API-only processes beside `mailbaar worker`s).
    pub run: bool,
    /// `MAILBAAR_TASK_RUNNERS`: runner threads per process (default 1).
    pub runners: usize,
    /// `MAILBAAR_TASK_LEASE_SECONDS`: how long a claim holds without renewal; a task whose
    /// process died is taken again after it (default 60).
    pub lease: Duration,
    /// `MAILBAAR_TASK_POLL_MS`: how long an idle runner waits before looking again
    /// (default 1000).
    pub poll: Duration,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            run: true,
            runners: 1,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(1000),
        }
    }
}

impl Config {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let listen = var("MAILBAAR_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        Config {
            database_url: var("MAILBAAR_DATABASE_URL")
                .unwrap_or_else(|| "sqlite://mailbaar.db".into()),
            public_url: var("MAILBAAR_PUBLIC_URL").unwrap_or_else(|| format!("http://{listen}")),
            listen,
            admin_token: var("MAILBAAR_ADMIN_TOKEN"),
            pool_size: var("MAILBAAR_DB_POOL_SIZE")
                .and_then(|v| v.parse().ok())
                .unwrap_or(8),
            workers: var("MAILBAAR_WORKERS").and_then(|v| v.parse().ok()),
            outbox: var("MAILBAAR_OUTBOX")
                .unwrap_or_else(|| "outbox".into())
                .into(),
            import_dir: var("MAILBAAR_IMPORT_DIR")
                .unwrap_or_else(|| "imports".into())
                .into(),
            send_batch: var("MAILBAAR_SEND_BATCH")
                .and_then(|v| v.parse().ok())
                .unwrap_or(500)
                .clamp(1, 10_000),
            tasks: TaskConfig {
                run: var("MAILBAAR_RUN_TASKS")
                    .is_none_or(|v| !matches!(v.trim(), "false" | "0" | "no")),
                runners: var("MAILBAAR_TASK_RUNNERS")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                lease: Duration::from_secs(
                    var("MAILBAAR_TASK_LEASE_SECONDS")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(60)
                        .max(1),
                ),
                poll: Duration::from_millis(
                    var("MAILBAAR_TASK_POLL_MS")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1000)
                        .max(10),
                ),
            },
        }
    }
}
