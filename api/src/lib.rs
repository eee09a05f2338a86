//! Mailbaar's HTTP service: routes, authentication, the OpenAPI contract, and the
//! [`Application`] that binds them to a socket.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod openapi;
mod request_log;
pub mod routes;
pub mod state;
pub mod work;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use mailbaar_access::Role;
use mailbaar_store::{DatabaseUrl, Pool, StoreError};
use utoipa_actix_web::AppExt;

pub use config::Config;
use state::AppState;

/// Largest JSON body the API accepts: room for a campaign step's two templates
/// (`mailbaar_campaigns::MAX_TEMPLATE_CHARS` characters each).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot register MAILBAAR_ADMIN_TOKEN: {0}")]
    AdminToken(#[from] mailbaar_access::AccessError),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("cannot queue the schedules: {0}")]
    Tasks(#[from] mailbaar_tasks::TaskError),
    #[error("cannot start a task runner thread: {0}")]
    Runner(std::io::Error),
    #[error("cannot set up delivery: {0}")]
    Delivery(String),
}

/// Opens the pool for the configured database and applies pending migrations.
pub fn open_database(config: &Config) -> Result<Pool, StartError> {
    let url = DatabaseUrl::parse(&config.database_url)?;
    let pool = mailbaar_store::connect(&url, config.pool_size)?;
    let applied = mailbaar_store::run_migrations(&mut *pool.get()?)?;
    if !applied.is_empty() {
        tracing::info!(count = applied.len(), "applied migrations");
    }
    Ok(pool)
}

/// A bound, not yet running server: build it, read its port, then run it.
pub struct Application {
    server: Server,
    port: u16,
    pool: Pool,
    runners: Vec<mailbaar_tasks::RunnerHandle>,
}

impl Application {
    /// Connects, migrates, registers `MAILBAAR_ADMIN_TOKEN`, and binds the listener.
    pub fn build(config: Config) -> Result<Self, StartError> {
        let pool = open_database(&config)?;
        if let Some(secret) = &config.admin_token {
            mailbaar_access::register(
                &mut *pool.get()?,
                "MAILBAAR_ADMIN_TOKEN",
                Role::Admin,
                secret,
            )?;
        }
        let listener = TcpListener::bind(&config.listen)
            .map_err(|e| StartError::Listen(config.listen.clone(), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| StartError::Listen(config.listen.clone(), e))?
            .port();
        let workers = config.workers;
        let tasks = config.tasks.clone();
        let delivery = work::delivery(&pool, &config)?;
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            config: Arc::new(config),
            delivery: delivery.clone(),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_JSON_BODY)
                        .error_handler(error::extract::json),
                )
                .app_data(web::QueryConfig::default().error_handler(error::extract::query))
                .app_data(web::PathConfig::default().error_handler(error::extract::path))
                .wrap(Compress::default())
                .wrap(from_fn(request_log::log_request))
                .into_utoipa_app()
                .configure(routes::configure)
                .into_app()
                .default_service(web::to(routes::not_found))
        })
        .shutdown_timeout(30)
        .listen(listener)
        .map_err(|e| StartError::Listen("listener".into(), e))?;
        if let Some(n) = workers {
            server = server.workers(n);
        }
        let runners = if tasks.run {
            work::start_runners(&pool, &tasks, delivery)?
        } else {
            Vec::new()
        };
        Ok(Self {
            server: server.run(),
            port,
            pool,
            runners,
        })
    }

    /// The bound port (useful when the configuration asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Hands the task runners to a caller that stops them itself (a test harness that must
    /// stop them before it drops the database); [`Application::run_until_stopped`] then
    /// leaves them alone.
    pub fn take_task_runners(&mut self) -> Vec<mailbaar_tasks::RunnerHandle> {
        std::mem::take(&mut self.runners)
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM or a stop through the handle; in-flight requests finish.
    /// The task runners (unless `MAILBAAR_RUN_TASKS=false`) run alongside; after the server
    /// stops, each finishes the task it holds and stops too.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let runners = self.runners;
        // Joining waits for running work: off the async executor.
        let _ =
            actix_web::rt::task::spawn_blocking(move || runners.into_iter().for_each(drop)).await;
        result
    }
}
