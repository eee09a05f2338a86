//! Configuration from the environment, each value with a default that works on a laptop
//! and a range it must fall in.

use std::time::Duration;

use clap::builder::RangedU64ValueParser;

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
    /// The e-mail providers' webhooks this process takes.
    pub providers: ProviderConfig,
}

/// The e-mail providers whose own webhooks are taken (`POST /api/v1/bounces/{provider}`),
/// each authenticated as its provider documents. A provider not configured answers 404 at
/// its route.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    /// `MAILBAAR_SES_TOPIC_ARNS`: the SNS topics whose SES notifications are taken
    /// (comma-separated ARNs); empty: the SES route is off.
    pub ses_topic_arns: Vec<String>,
    /// The SNS signing certificates known so far, by URL; each is fetched once over HTTPS.
    pub ses_certificates: std::sync::Arc<mailbaar_delivery::providers::CertificateCache>,
    /// `MAILBAAR_SENDGRID_VERIFICATION_KEY`: the Event Webhook's verification key (base64
    /// DER, as SendGrid's console shows it).
    pub sendgrid_key: Option<mailbaar_delivery::providers::sendgrid::VerificationKey>,
    /// `MAILBAAR_MAILGUN_SIGNING_KEY`: Mailgun's HTTP webhook signing key.
    pub mailgun_signing_key: Option<String>,
    /// The Mailgun signature tokens taken in the last hour (Mailgun's signature does not
    /// cover the event, so a token may serve one event only).
    pub mailgun_tokens: std::sync::Arc<mailbaar_delivery::providers::mailgun::TokenMemory>,
    /// `MAILBAAR_POSTMARK_WEBHOOK_SECRET`: the password Postmark sends by basic auth.
    pub postmark_secret: Option<String>,
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
    /// `MAILBAAR_SMTP_TIMEOUT_<PHASE>_SECONDS`: how long each SMTP phase may wait for the
    /// server (RFC 5321 §4.5.3.2's minimums by default; `MAILBAAR_SMTP_TIMEOUT_SECONDS`
    /// sets every phase at once).
    pub smtp_timeouts: mailbaar_delivery::PhaseTimeouts,
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
    /// of life before another run takes it over (default 120; raised to the longest SMTP
    /// hand-over the timeouts allow plus a second, so a live attempt is never taken over).
    pub lease: Duration,
    /// `MAILBAAR_SEND_RUNS`: send runs per job on PostgreSQL, for that many workers to
    /// share it (default 4).
    pub runs: usize,
    /// `MAILBAAR_IN_DOUBT`: what becomes of a message that may have arrived (end of data
    /// sent, no valid final reply; or its worker stopped): `at-most-once` (default: it stays
    /// in doubt until `POST /mailjobs/{id}/resend-in-doubt`) or `retry-once` (one delayed
    /// retry with the same Message-ID).
    pub in_doubt: mailbaar_delivery::InDoubtPolicy,
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
            smtp_timeouts: mailbaar_delivery::PhaseTimeouts::default(),
            rate: None,
            rate_total: None,
            max_attempts: 6,
            retry_first: Duration::from_secs(300),
            lease: Duration::from_secs(120),
            runs: 4,
            in_doubt: mailbaar_delivery::InDoubtPolicy::AtMostOnce,
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

/// The environment as the `mailbaar` binary reads it: every variable with its default
/// and its range, parsed by clap, so a value that does not parse or is out of range stops
/// the process at start with an error naming the variable (rather than being ignored). Each
/// is also a command-line option of the same meaning (`--smtp-rate` for
/// `MAILBAAR_SMTP_RATE`); an empty variable counts as unset.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Configuration (environment)")]
pub struct Environment {
    /// `sqlite://FILE` (relative), `sqlite:///abs/FILE` or `postgres://user@host/db`.
    #[arg(
        long,
        env = "MAILBAAR_DATABASE_URL",
        value_name = "MAILBAAR_DATABASE_URL",
        default_value = "sqlite://mailbaar.db",
        value_parser = database_url
    )]
    pub database_url: String,
    /// Address to bind; port 0 picks a free one.
    #[arg(
        long,
        env = "MAILBAAR_LISTEN",
        value_name = "MAILBAAR_LISTEN",
        default_value = "127.0.0.1:8080",
        value_parser = listen_address
    )]
    pub listen: String,
    /// Registered as an admin bearer token at start.
    #[arg(
        long,
        env = "MAILBAAR_ADMIN_TOKEN",
        value_name = "MAILBAAR_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Base of the links recipients open (default `http://` and the listen address).
    #[arg(long, env = "MAILBAAR_PUBLIC_URL", value_name = "MAILBAAR_PUBLIC_URL",
        value_parser = web_url)]
    pub public_url: Option<String>,
    /// Database connections per process.
    #[arg(long, env = "MAILBAAR_DB_POOL_SIZE", value_name = "MAILBAAR_DB_POOL_SIZE",
        default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub db_pool_size: u32,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "MAILBAAR_WORKERS", value_name = "MAILBAAR_WORKERS",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub workers: Option<usize>,
    /// Whether `serve` also runs background tasks (`true`/`false`, `yes`/`no`, `1`/`0`).
    #[arg(long, env = "MAILBAAR_RUN_TASKS", value_name = "MAILBAAR_RUN_TASKS",
        default_value_t = true, action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub run_tasks: bool,
    /// Task runner threads per process.
    #[arg(long, env = "MAILBAAR_TASK_RUNNERS", value_name = "MAILBAAR_TASK_RUNNERS",
        default_value_t = 1, value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub task_runners: usize,
    /// Seconds a claimed task holds without renewal.
    #[arg(long, env = "MAILBAAR_TASK_LEASE_SECONDS", value_name = "MAILBAAR_TASK_LEASE_SECONDS",
        default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub task_lease_seconds: u64,
    /// Milliseconds an idle runner waits before looking for due tasks again.
    #[arg(long, env = "MAILBAAR_TASK_POLL_MS", value_name = "MAILBAAR_TASK_POLL_MS",
        default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub task_poll_ms: u64,
    /// Where the `.eml` transport writes messages.
    #[arg(
        long,
        env = "MAILBAAR_OUTBOX",
        value_name = "MAILBAAR_OUTBOX",
        default_value = "outbox"
    )]
    pub outbox: std::path::PathBuf,
    /// Where uploaded import files wait for their import.
    #[arg(
        long,
        env = "MAILBAAR_IMPORT_DIR",
        value_name = "MAILBAAR_IMPORT_DIR",
        default_value = "imports"
    )]
    pub import_dir: std::path::PathBuf,
    /// Recipients a send run claims per batch.
    #[arg(long, env = "MAILBAAR_SEND_BATCH", value_name = "MAILBAAR_SEND_BATCH",
        default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub send_batch: i64,
    /// `smtp://host:25`, `smtp://user:pass@host:587?tls=starttls` or `smtps://user:pass@host`;
    /// unset: the `.eml` outbox.
    #[arg(long, env = "MAILBAAR_SMTP_URL", value_name = "MAILBAAR_SMTP_URL",
        hide_env_values = true, value_parser = smtp_url)]
    pub smtp_url: Option<String>,
    /// SMTP connections, and so messages in flight, per send run.
    #[arg(long, env = "MAILBAAR_SMTP_CONNECTIONS", value_name = "MAILBAAR_SMTP_CONNECTIONS",
        default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub smtp_connections: usize,
    /// Seconds every SMTP phase may wait for the server, unless its own variable says
    /// otherwise (default: RFC 5321 §4.5.3.2's, per phase).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_seconds: Option<f64>,
    /// Seconds to wait for opening the TCP connection (default 60).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_CONNECT_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_CONNECT_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_connect_seconds: Option<f64>,
    /// Seconds to wait for the server's 220 greeting (default 300).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_GREETING_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_GREETING_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_greeting_seconds: Option<f64>,
    /// Seconds to wait for EHLO (or HELO) (default 300).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_EHLO_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_EHLO_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_ehlo_seconds: Option<f64>,
    /// Seconds to wait for STARTTLS and the TLS handshake (default 120).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_STARTTLS_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_STARTTLS_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_starttls_seconds: Option<f64>,
    /// Seconds to wait for each step of AUTH (default 120).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_AUTH_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_AUTH_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_auth_seconds: Option<f64>,
    /// Seconds to wait for MAIL FROM (and RSET, NOOP) (default 300).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_MAIL_FROM_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_MAIL_FROM_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_mail_from_seconds: Option<f64>,
    /// Seconds to wait for RCPT TO (default 300).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_RCPT_TO_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_RCPT_TO_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_rcpt_to_seconds: Option<f64>,
    /// Seconds to wait for DATA until its 354 (default 120).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_DATA_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_DATA_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_data_seconds: Option<f64>,
    /// Seconds to wait for writing the message (default 180).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_DATA_BLOCK_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_DATA_BLOCK_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_data_block_seconds: Option<f64>,
    /// Seconds to wait for the reply to the final "." (default 600).
    #[arg(long, env = "MAILBAAR_SMTP_TIMEOUT_END_OF_DATA_SECONDS",
        value_name = "MAILBAAR_SMTP_TIMEOUT_END_OF_DATA_SECONDS", value_parser = number_in(1.0, 3600.0))]
    pub smtp_timeout_end_of_data_seconds: Option<f64>,
    /// Messages per second from this process (default: no limit).
    #[arg(long, env = "MAILBAAR_SMTP_RATE", value_name = "MAILBAAR_SMTP_RATE",
        value_parser = number_in(0.001, 1_000_000.0))]
    pub smtp_rate: Option<f64>,
    /// Messages per second from all workers together (default: no limit).
    #[arg(long, env = "MAILBAAR_SMTP_RATE_TOTAL", value_name = "MAILBAAR_SMTP_RATE_TOTAL",
        value_parser = number_in(0.001, 1_000_000.0))]
    pub smtp_rate_total: Option<f64>,
    /// Attempts before a deferred recipient counts as failed.
    #[arg(long, env = "MAILBAAR_SMTP_MAX_ATTEMPTS", value_name = "MAILBAAR_SMTP_MAX_ATTEMPTS",
        default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub smtp_max_attempts: i32,
    /// Seconds before the first retry; it doubles with each further one.
    #[arg(long, env = "MAILBAAR_SMTP_RETRY_SECONDS", value_name = "MAILBAAR_SMTP_RETRY_SECONDS",
        default_value_t = 300.0, value_parser = number_in(0.1, 86_400.0))]
    pub smtp_retry_seconds: f64,
    /// Seconds a claimed recipient is held without a sign of life.
    #[arg(long, env = "MAILBAAR_SEND_LEASE_SECONDS", value_name = "MAILBAAR_SEND_LEASE_SECONDS",
        default_value_t = 120.0, value_parser = number_in(1.0, 86_400.0))]
    pub send_lease_seconds: f64,
    /// Send runs per mail job on PostgreSQL.
    #[arg(long, env = "MAILBAAR_SEND_RUNS", value_name = "MAILBAAR_SEND_RUNS",
        default_value_t = 4, value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub send_runs: usize,
    /// What becomes of a message that may have arrived without a valid final reply (or
    /// whose worker stopped): `at-most-once` or `retry-once`.
    #[arg(long, env = "MAILBAAR_IN_DOUBT", value_name = "MAILBAAR_IN_DOUBT",
        default_value = "at-most-once", value_parser = in_doubt_policy)]
    pub in_doubt: mailbaar_delivery::InDoubtPolicy,
    /// The DKIM private key file (with the selector and domain).
    #[arg(
        long,
        env = "MAILBAAR_DKIM_KEY_FILE",
        value_name = "MAILBAAR_DKIM_KEY_FILE"
    )]
    pub dkim_key_file: Option<std::path::PathBuf>,
    /// The DKIM selector (with the key file and domain).
    #[arg(
        long,
        env = "MAILBAAR_DKIM_SELECTOR",
        value_name = "MAILBAAR_DKIM_SELECTOR"
    )]
    pub dkim_selector: Option<String>,
    /// The DKIM signing domain (with the key file and selector).
    #[arg(
        long,
        env = "MAILBAAR_DKIM_DOMAIN",
        value_name = "MAILBAAR_DKIM_DOMAIN"
    )]
    pub dkim_domain: Option<String>,
    /// SNS topic ARNs (comma-separated) whose Amazon SES notifications are taken at
    /// `/api/v1/bounces/ses`.
    #[arg(long, env = "MAILBAAR_SES_TOPIC_ARNS", value_name = "MAILBAAR_SES_TOPIC_ARNS",
        value_delimiter = ',', value_parser = topic_arn)]
    pub ses_topic_arns: Vec<String>,
    /// SendGrid's Event Webhook verification key (base64 DER) for `/api/v1/bounces/sendgrid`.
    #[arg(long, env = "MAILBAAR_SENDGRID_VERIFICATION_KEY",
        value_name = "MAILBAAR_SENDGRID_VERIFICATION_KEY",
        value_parser = mailbaar_delivery::providers::sendgrid::VerificationKey::from_base64)]
    pub sendgrid_verification_key: Option<mailbaar_delivery::providers::sendgrid::VerificationKey>,
    /// Mailgun's HTTP webhook signing key for `/api/v1/bounces/mailgun`.
    #[arg(long, env = "MAILBAAR_MAILGUN_SIGNING_KEY", value_name = "MAILBAAR_MAILGUN_SIGNING_KEY",
        hide_env_values = true, value_parser = secret)]
    pub mailgun_signing_key: Option<String>,
    /// The password Postmark sends by basic auth to `/api/v1/bounces/postmark`.
    #[arg(long, env = "MAILBAAR_POSTMARK_WEBHOOK_SECRET",
        value_name = "MAILBAAR_POSTMARK_WEBHOOK_SECRET", hide_env_values = true,
        value_parser = secret)]
    pub postmark_webhook_secret: Option<String>,
}

/// An SNS topic ARN, `arn:PARTITION:sns:REGION:ACCOUNT:NAME` (a 12-digit account).
fn topic_arn(text: &str) -> Result<String, String> {
    let text = text.trim();
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty();
    if ok {
        Ok(text.to_owned())
    } else {
        Err("SNS topic ARNs, comma-separated: arn:aws:sns:REGION:ACCOUNT:TOPIC".into())
    }
}

/// A webhook secret: at least 16 characters, none of them spaces, so that it cannot be
/// guessed and survives being put in a URL.
fn secret(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.chars().count() < 16 || text.chars().any(char::is_whitespace) {
        return Err("at least 16 characters, without spaces".into());
    }
    Ok(text.to_owned())
}

/// A value parser for a decimal number from `min` to `max` inclusive (seconds, messages
/// per second).
/// The in-doubt policy by its name (`at-most-once`, `retry-once`).
fn in_doubt_policy(text: &str) -> Result<mailbaar_delivery::InDoubtPolicy, String> {
    text.trim()
        .parse()
        .map_err(|_| "must be at-most-once or retry-once".to_owned())
}

fn number_in(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |text| match text.trim().parse::<f64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be from {min} to {max}")),
        Err(_) => Err(format!("not a number; must be from {min} to {max}")),
    }
}

/// A value parser for an absolute URL (`scheme://…`), kept as written.
/// An `http://` or `https://` URL with a host: where recipients' links point.
fn web_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("an http:// or https:// URL with a host".into());
    }
    Ok(text.trim().to_owned())
}

/// An SMTP URL as the transport reads it (`mailbaar_delivery::check_smtp_url`).
fn smtp_url(text: &str) -> Result<String, String> {
    mailbaar_delivery::check_smtp_url(text.trim())
        .map(|()| text.trim().to_owned())
        .map_err(|e| e.to_string())
}

/// `sqlite://FILE` or `postgres://…` (`mailbaar_store::DatabaseUrl`).
fn database_url(text: &str) -> Result<String, String> {
    mailbaar_store::DatabaseUrl::parse(text)
        .map(|_| text.trim().to_owned())
        .map_err(|_| "sqlite://FILE, sqlite:///abs/FILE or postgres://user@host/db".into())
}

/// `HOST:PORT` (port 0 picks a free one); the host is resolved when the service binds.
fn listen_address(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_owned())
        }
        _ => Err("HOST:PORT, e.g. 127.0.0.1:8080 (port 0 picks a free one)".into()),
    }
}

/// The DKIM variables: all three or none.
const DKIM_VARIABLES: [&str; 3] = [
    "MAILBAAR_DKIM_KEY_FILE",
    "MAILBAAR_DKIM_SELECTOR",
    "MAILBAAR_DKIM_DOMAIN",
];

impl Environment {
    /// Removes the `MAILBAAR_*` variables that are set but empty, so that an empty variable
    /// means "unset" (its default) as it always has; call before the parse, while the
    /// process has one thread.
    pub fn forget_empty_variables() {
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("MAILBAAR_") && value.to_string_lossy().trim().is_empty() {
                std::env::remove_var(name);
            }
        }
    }
}

impl From<Environment> for Config {
    fn from(env: Environment) -> Self {
        let dkim_given = [
            env.dkim_key_file.is_some(),
            env.dkim_selector.is_some(),
            env.dkim_domain.is_some(),
        ];
        let given: Vec<&str> = DKIM_VARIABLES
            .into_iter()
            .zip(dkim_given)
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
        let mut timeouts = match env.smtp_timeout_seconds {
            Some(s) => mailbaar_delivery::PhaseTimeouts::all(Duration::from_secs_f64(s)),
            None => mailbaar_delivery::PhaseTimeouts::default(),
        };
        if let Some(s) = env.smtp_timeout_connect_seconds {
            timeouts.connect = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_greeting_seconds {
            timeouts.greeting = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_ehlo_seconds {
            timeouts.ehlo = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_starttls_seconds {
            timeouts.starttls = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_auth_seconds {
            timeouts.auth = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_mail_from_seconds {
            timeouts.mail_from = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_rcpt_to_seconds {
            timeouts.rcpt_to = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_data_seconds {
            timeouts.data = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_data_block_seconds {
            timeouts.data_block = Duration::from_secs_f64(s);
        }
        if let Some(s) = env.smtp_timeout_end_of_data_seconds {
            timeouts.end_of_data = Duration::from_secs_f64(s);
        }
        Config {
            public_url: env
                .public_url
                .unwrap_or_else(|| format!("http://{}", env.listen)),
            database_url: env.database_url,
            listen: env.listen,
            admin_token: env.admin_token,
            pool_size: env.db_pool_size,
            workers: env.workers,
            outbox: env.outbox,
            import_dir: env.import_dir,
            providers: ProviderConfig {
                ses_topic_arns: env.ses_topic_arns,
                ses_certificates: Default::default(),
                sendgrid_key: env.sendgrid_verification_key,
                mailgun_signing_key: env.mailgun_signing_key,
                mailgun_tokens: Default::default(),
                postmark_secret: env.postmark_webhook_secret,
            },
            delivery: DeliveryConfig {
                batch: env.send_batch,
                smtp_url: env.smtp_url,
                smtp_connections: env.smtp_connections,
                smtp_timeouts: timeouts,
                rate: env.smtp_rate,
                rate_total: env.smtp_rate_total,
                max_attempts: env.smtp_max_attempts,
                retry_first: Duration::from_secs_f64(env.smtp_retry_seconds),
                lease: Duration::from_secs_f64(env.send_lease_seconds),
                runs: env.send_runs,
                in_doubt: env.in_doubt,
                dkim_incomplete: (!given.is_empty() && given.len() < DKIM_VARIABLES.len()).then(
                    || {
                        format!(
                            "{} set without the others: DKIM needs all of {}",
                            given.join(" and "),
                            DKIM_VARIABLES.join(", ")
                        )
                    },
                ),
                dkim: match (env.dkim_key_file, env.dkim_selector, env.dkim_domain) {
                    (Some(key_file), Some(selector), Some(domain)) => Some(DkimConfig {
                        key_file,
                        selector,
                        domain,
                    }),
                    _ => None,
                },
            },
            tasks: TaskConfig {
                run: env.run_tasks,
                runners: env.task_runners,
                lease: Duration::from_secs(env.task_lease_seconds),
                poll: Duration::from_millis(env.task_poll_ms),
            },
        }
    }
}
