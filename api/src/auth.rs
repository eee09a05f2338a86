//! Bearer-token authentication as an extractor: a handler that takes [`Auth`] is closed
//! to anonymous callers, and asks for a [`Permission`] before it acts.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use mailbaar_access::{Caller, Permission};
use mailbaar_store::{DbConnection, Pool, PooledConnection};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a request, with the database connection the token was
/// checked on: the handler's work runs on that same connection ([`Auth::db`]), so a
/// request takes one connection from the pool, not two.
pub struct Auth {
    pub caller: Caller,
    pool: Pool,
    conn: RefCell<Option<PooledConnection>>,
}

impl Auth {
    /// The caller, if their role grants the permission; 403 otherwise.
    pub fn require(&self, permission: Permission) -> Result<&Caller, ApiError> {
        if self.caller.may(permission) {
            Ok(&self.caller)
        } else {
            Err(ApiError::Forbidden(self.caller.role.as_str()))
        }
    }

    /// Runs a synchronous database function on actix's blocking pool (never on a worker
    /// thread) on the request's connection, and maps its error to an API error.
    pub async fn db<T, E, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<ApiError> + Send + 'static,
    {
        let held = self.conn.borrow_mut().take();
        let pool = self.pool.clone();
        let (result, conn) = web::block(move || {
            let mut conn = match held {
                Some(conn) => conn,
                None => pool.get()?,
            };
            let result = f(&mut conn).map_err(Into::into);
            Ok::<_, ApiError>((result, conn))
        })
        .await??;
        *self.conn.borrow_mut() = Some(conn);
        result
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let secret = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Box::pin(async move {
            let (Some(state), Some(secret)) = (state, secret) else {
                return Err(ApiError::Unauthorized);
            };
            let pool = state.pool.clone();
            let (caller, conn) = web::block(move || {
                let mut conn = pool.get()?;
                let caller = mailbaar_access::verify(&mut conn, &secret)?;
                Ok::<_, ApiError>((caller, conn))
            })
            .await??;
            Ok(Auth {
                caller: caller.ok_or(ApiError::Unauthorized)?,
                pool: state.pool.clone(),
                conn: RefCell::new(Some(conn)),
            })
        })
    }
}
