//! The runner's error type: what a run operation (start, read, cancel, delete) answers; the
//! HTTP layer maps each kind to a CREST error.

use crate::storage::StoreError;

/// Errors of run operations, mapped to CREST errors by the HTTP layer.
#[derive(Debug)]
pub enum RunError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Store(StoreError),
    Internal(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::BadRequest(m)
            | RunError::NotFound(m)
            | RunError::Conflict(m)
            | RunError::Internal(m) => f.write_str(m),
            RunError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        RunError::Store(e)
    }
}

impl From<crate::objects::ObjectError> for RunError {
    fn from(e: crate::objects::ObjectError) -> Self {
        use crate::objects::ObjectErrorKind as K;
        match e.kind {
            K::BadRequest => RunError::BadRequest(e.message),
            K::NotFound => RunError::NotFound(e.message),
            _ => RunError::Internal(e.message),
        }
    }
}
