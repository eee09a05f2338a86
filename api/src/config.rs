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
    /// How this process delivers mail jobs.
    pub delivery: DeliveryConfig,
    /// `MAILBAAR_IMPORT_DIR`: where uploaded import files are kept (default `imports`).
    pub import_dir: std::path::PathBuf,
}

/// How a process delivers mail jobs.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `MAILBAAR_SEND_BATCH`: recipients claimed per batch (default 500).
    pub batch: i64,
    /// `MAILBAAR_SMTP_URL`: `smtp://host:port`, `smtp://user:pass@host:587?tls=starttls`
    /// or `smtps://user:pass@host`; unset: messages go to the `.eml` outbox.
    pub smtp_url: Option<String>,
    /// `MAILBAAR_SMTP_CONNECTIONS`: SMTP connections, and so messages in flight, per send
    /// run (default 8).
    pub smtp_connections: usize,
    /// `MAILBAAR_SMTP_TIMEOUT_SECONDS`: how long one SMTP command may take (default 60).
    pub smtp_timeout: Duration,
    /// `MAILBAAR_SMTP_RATE`: at most this many messages per second from this process
    /// (default: no limit).
    pub rate: Option<f64>,
    /// `MAILBAAR_SMTP_RATE_TOTAL`: at most this many per second from all workers together,
    /// kept in the database (default: no limit; give every worker the same value).
    pub rate_total: Option<f64>,
    /// `MAILBAAR_SMTP_MAX_ATTEMPTS`: attempts before a deferred recipient fails (default 6).
    pub max_attempts: i32,
    /// `MAILBAAR_SMTP_RETRY_SECONDS`: the wait before the first retry, doubling after each
    /// (default 300).
    pub retry_first: Duration,
    /// `MAILBAAR_SEND_LEASE_SECONDS`: how long a claimed recipient is held without a sign
    /// of life before another run takes it over (default 120; at least the SMTP timeout
    /// plus a second, so a live attempt is never taken over).
    pub lease: Duration,
    /// `MAILBAAR_SEND_RUNS`: send runs per job on PostgreSQL, for that many workers to
    /// share it (default 4).
    pub runs: usize,
    /// `MAILBAAR_DKIM_KEY_FILE`, `MAILBAAR_DKIM_SELECTOR`, `MAILBAAR_DKIM_DOMAIN`: sign
    /// every message with this private key when all three are set: RSA in PKCS#1 PEM
    /// (`BEGIN RSA PRIVATE KEY`), or Ed25519 as the base64 of its 32 bytes.
    pub dkim: Option<DkimConfig>,
    /// Set when only some of the `MAILBAAR_DKIM_*` variables are: the process refuses to
    /// start rather than send unsigned mail.
    pub dkim_incomplete: Option<String>,
}

/// A DKIM signing key and where its public half is published (RFC 6376).
#[derive(Debug, Clone)]
pub struct DkimConfig {
    pub key_file: std::path::PathBuf,
    pub selector: String,
    pub domain: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            batch: 500,
            smtp_url: None,
            smtp_connections: 8,
            smtp_timeout: Duration::from_secs(60),
            rate: None,
            rate_total: None,
            max_attempts: 6,
            retry_first: Duration::from_secs(300),
            lease: Duration::from_secs(120),
            runs: 4,
            dkim: None,
            dkim_incomplete: None,
        }
    }
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
            delivery: {
                let d = DeliveryConfig::default();
                let num = |k: &str| var(k).and_then(|v| v.trim().parse::<f64>().ok());
                DeliveryConfig {
                    batch: var("MAILBAAR_SEND_BATCH")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(d.batch)
                        .clamp(1, 10_000),
                    smtp_url: var("MAILBAAR_SMTP_URL"),
                    smtp_connections: num("MAILBAAR_SMTP_CONNECTIONS")
                        .map_or(d.smtp_connections, |n| n as usize)
                        .clamp(1, 256),
                    smtp_timeout: num("MAILBAAR_SMTP_TIMEOUT_SECONDS")
                        .map_or(d.smtp_timeout, |s| {
                            Duration::from_secs_f64(s.clamp(1.0, 3600.0))
                        }),
                    rate: num("MAILBAAR_SMTP_RATE"),
                    rate_total: num("MAILBAAR_SMTP_RATE_TOTAL"),
                    max_attempts: num("MAILBAAR_SMTP_MAX_ATTEMPTS")
                        .map_or(d.max_attempts, |n| n as i32)
                        .clamp(1, 100),
                    retry_first: num("MAILBAAR_SMTP_RETRY_SECONDS").map_or(d.retry_first, |s| {
                        Duration::from_secs_f64(s.clamp(0.1, 86_400.0))
                    }),
                    lease: num("MAILBAAR_SEND_LEASE_SECONDS")
                        .map_or(d.lease, |s| Duration::from_secs_f64(s.clamp(1.0, 86_400.0))),
                    runs: num("MAILBAAR_SEND_RUNS")
                        .map_or(d.runs, |n| n as usize)
                        .clamp(1, 64),
                    dkim_incomplete: {
                        let names = [
                            "MAILBAAR_DKIM_KEY_FILE",
                            "MAILBAAR_DKIM_SELECTOR",
                            "MAILBAAR_DKIM_DOMAIN",
                        ];
                        let set: Vec<&str> =
                            names.into_iter().filter(|n| var(n).is_some()).collect();
                        (!set.is_empty() && set.len() < names.len()).then(|| {
                            format!(
                                "{} set without the others: DKIM needs all of {}",
                                set.join(" and "),
                                names.join(", ")
                            )
                        })
                    },
                    dkim: match (
                        var("MAILBAAR_DKIM_KEY_FILE"),
                        var("MAILBAAR_DKIM_SELECTOR"),
                        var("MAILBAAR_DKIM_DOMAIN"),
                    ) {
                        (Some(key_file), Some(selector), Some(domain)) => Some(DkimConfig {
                            key_file: key_file.into(),
                            selector,
                            domain,
                        }),
                        _ => None,
                    },
                }
            },
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
