//! The one place where errors become HTTP responses: the CREST error body
//! `{"code", "reason", "message"}` (plus `detail` when there is one).
//!
//! Errors of the lower layers convert into [`ApiError`] with `From`; a 500 carries its cause
//! only as far as `http::handle`, which logs it with a reference and answers a generic message
//! naming that reference, so internals are never echoed to the client.

use serde_json::{json, Value};

use crate::objects::ObjectError;
use crate::query::QueryError;
use crate::runner::RunError;
use crate::storage::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {}: {message}", reason(*.status))]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub detail: Option<Value>,
    /// For 405: the methods the resource accepts.
    pub allow: Option<&'static str>,
    /// Answer with `Connection: close` (the request was not read to its end).
    pub close: bool,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            detail: None,
            allow: None,
            close: false,
        }
    }
    /// Marks the answer as the last on its connection.
    pub fn closing(mut self) -> ApiError {
        self.close = true;
        self
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(400, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(404, m)
    }
    pub fn conflict(m: impl Into<String>) -> ApiError {
        ApiError::new(409, m)
    }
    pub fn internal(m: impl Into<String>) -> ApiError {
        ApiError::new(500, m)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Access Denied")
    }
    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn reason(&self) -> &'static str {
        reason(self.status)
    }

    /// The CREST error body.
    pub fn body(&self) -> Value {
        let mut body =
            json!({ "code": self.status, "reason": self.reason(), "message": self.message });
        if let (Some(d), Some(map)) = (&self.detail, body.as_object_mut()) {
            map.insert("detail".into(), d.clone());
        }
        body
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        428 => "Precondition Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<ObjectError> for ApiError {
    fn from(e: ObjectError) -> Self {
        use crate::objects::ObjectErrorKind as K;
        let status = match e.kind {
            K::NotFound => 404,
            K::AlreadyExists | K::Conflict => 412,
            K::RevisionMismatch => 412,
            K::BadRequest => 400,
            K::Forbidden => 403,
            K::NotSupported => 501,
            K::Unavailable => 503,
            K::Internal => 500,
        };
        ApiError::new(status, e.message)
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::BadRequest(m) => ApiError::bad_request(m),
            RunError::NotFound(m) => ApiError::not_found(m),
            RunError::Conflict(m) => ApiError::conflict(m),
            RunError::Store(s) => ApiError::from(s),
            RunError::Internal(m) => ApiError::internal(m),
        }
    }
}
