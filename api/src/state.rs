use std::sync::Arc;

use actix_web::web;
use mailbaar_store::{DbConnection, Pool};

use crate::config::Config;
use crate::error::ApiError;

/// What every handler shares: the pool, the configuration read at start, and how this
/// process delivers messages.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub config: Arc<Config>,
    pub delivery: Arc<mailbaar_delivery::Delivery>,
}

impl AppState {
    /// Runs a synchronous database function on actix's blocking pool, never on a worker
    /// thread, and maps its error to an API error.
    pub async fn db<T, E, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get().map_err(ApiError::from)?;
            f(&mut conn).map_err(Into::into)
        })
        .await?
    }
}
