//! Bearer-token authentication as an extractor: a handler that takes [`Auth`] is closed
//! to anonymous callers, and asks for a [`Permission`] before it acts.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use mailbaar_access::{Caller, Permission};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a request.
pub struct Auth(pub Caller);

impl Auth {
    /// The caller, if their role grants the permission; 403 otherwise.
    pub fn require(&self, permission: Permission) -> Result<&Caller, ApiError> {
        if self.0.may(permission) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden(self.0.role.as_str()))
        }
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
            state
                .db(move |conn| mailbaar_access::verify(conn, &secret))
                .await?
                .map(Auth)
                .ok_or(ApiError::Unauthorized)
        })
    }
}
