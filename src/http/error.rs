//! The one place where errors become HTTP responses: the CREST error body
//! `{"code", "reason", "message"}` (plus `detail` when there is one).
//!
//! Errors of the lower layers convert into [`ApiError`] with `From`; 5xx errors are logged
//! here once with their cause, and their internals are not echoed to the client.

use serde_json::{json, Value};

use crate::objects::ObjectError;
use crate::query::QueryError;
use crate::runner::RunError;
use crate::storage::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub detail: Option<Value>,
    /// For 405: the methods the resource accepts.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            detail: None,
            allow: None,
        }
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
        415 => "Unsupported Media Type",
        428 => "Precondition Required",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.reason(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::internal("Internal store error")
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
            K::Internal => {
                tracing::error!(error = %e, "object set error");
                500
            }
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
            RunError::Internal(m) => {
                tracing::error!(error = %m, "run error");
                ApiError::internal(m)
            }
        }
    }
}
