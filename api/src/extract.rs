//! Request parts read exactly as the contract declares them: paging parameters whose
//! ranges hold, and request bodies that may be left out but are never ignored.

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use mailbaar_people::FieldError;
use mailbaar_store::PageRequest;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// `page` and `per_page` from the query string of a list route. A value out of its
/// documented range, a non-number or a repeated parameter answers 422 naming it; values
/// are never brought into range silently.
#[derive(Debug, Clone, Copy)]
pub struct Paging(pub PageRequest);

impl Paging {
    pub fn into_inner(self) -> PageRequest {
        self.0
    }
}

impl FromRequest for Paging {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(paging_from_query(req.query_string()).map(Paging))
    }
}

fn paging_from_query(query: &str) -> Result<PageRequest, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| ApiError::invalid("query", e.to_string()))?
        .into_inner();
    let mut errors = Vec::new();
    let mut given = |name: &'static str| {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            errors.push(FieldError::new(name, "given more than once"));
        }
        first.map(String::as_str)
    };
    let (page, per_page) = (given("page"), given("per_page"));
    if !errors.is_empty() {
        return Err(ApiError::invalid_input(errors));
    }
    PageRequest::from_text(page, per_page).map_err(refused)
}

/// Checks `page` and `per_page` of a JSON body before it is read into its type, so that a
/// value of the wrong type is refused by name like one out of range (`null`: left out).
pub fn check_body_paging(body: &Value) -> Result<(), ApiError> {
    let given = |name: &str| body.get(name).filter(|v| !v.is_null()).map(Value::as_i64);
    PageRequest::from_given(given("page"), given("per_page"))
        .map(drop)
        .map_err(refused)
}

fn refused(issues: Vec<(&'static str, String)>) -> ApiError {
    ApiError::invalid_input(
        issues
            .into_iter()
            .map(|(field, reason)| FieldError::new(field, reason))
            .collect(),
    )
}

/// Reads a JSON value into the request type. A value that does not fit answers 422 naming
/// the field it is in (`amount_cents`, `conditions.all[0]`, an unknown field by its own
/// name), or `body` when the whole body is at fault (a missing field, a wrong type at the
/// top).
pub fn from_body<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." {
            "body"
        } else {
            path.as_str()
        };
        ApiError::invalid(field, e.inner().to_string())
    })
}

/// A JSON request body read into its type through [`from_body`], so a value of the wrong
/// type or beyond its type's range is refused by the name of its field. Size, media type
/// and syntax are checked as `web::Json` checks them (413, 415, 400).
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move { Ok(Json(from_body(json.await?.into_inner())?)) })
    }
}

/// A JSON body the client may leave out: `None` when the request has no body at all (no
/// `Content-Length`, or 0, and no `Transfer-Encoding`) or the body is `null`, as the
/// contract's `Option<T>` request bodies say. A body that is there is read as `web::Json`
/// reads it, so a malformed or misspelt one is refused, never taken for "left out".
pub struct OptionalJson<T>(pub Option<T>);

impl<T> OptionalJson<T> {
    pub fn into_inner(self) -> Option<T> {
        self.0
    }
}

fn has_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => false,
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) != Some(0),
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !has_body(req) {
            return Box::pin(ready(Ok(OptionalJson(None))));
        }
        let json = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            match json.await?.into_inner() {
                Value::Null => Ok(OptionalJson(None)),
                value => Ok(OptionalJson(Some(from_body(value)?))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Invalid { errors, .. } => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn query_paging_is_checked_by_name() {
        assert_eq!(
            paging_from_query("q=anna&page=2&per_page=500").unwrap(),
            PageRequest {
                page: 2,
                per_page: 500
            }
        );
        assert_eq!(paging_from_query("").unwrap(), PageRequest::default());
        for (query, field) in [
            ("per_page=0", "per_page"),
            ("per_page=501", "per_page"),
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=ten", "page"),
            ("page=1&page=2", "page"),
        ] {
            assert_eq!(
                fields(paging_from_query(query).unwrap_err()),
                [field],
                "{query}"
            );
        }
        assert_eq!(
            fields(paging_from_query("page=0&per_page=x").unwrap_err()),
            ["page", "per_page"]
        );
    }

    #[test]
    fn body_paging_is_checked_by_name() {
        assert!(check_body_paging(&json!({"page": 2, "per_page": null})).is_ok());
        assert!(check_body_paging(&json!({"conditions": {}})).is_ok());
        for bad in [
            json!(0),
            json!(501),
            json!("50"),
            json!(2.5),
            json!(1e20),
            json!(true),
        ] {
            let e = check_body_paging(&json!({ "per_page": bad })).unwrap_err();
            assert_eq!(fields(e), ["per_page"], "{bad}");
        }
    }
}
