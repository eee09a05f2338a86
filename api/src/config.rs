//! Configuration from the environment, each value with a default that works on a laptop.

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
        }
    }
}
