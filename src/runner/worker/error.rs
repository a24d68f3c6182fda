//! The worker's errors: one type for the layer, whose two kinds are kept apart because they
//! end differently.
//!
//! * [`ObjectFailure`] fails the entry of one object (a script error, a write the target set
//!   refused, an action that cannot apply to what was found, a concurrent change that outlived
//!   the retries): it is recorded in the entry and audit event, counted, logged, and the run
//!   goes on.
//! * [`RunFailure`] fails the run (the store cannot be read or written, the source cannot be
//!   read, a connector's batch write fails as a whole, a bug that panicked): continuing would only fail every later object.
//!
//! Functions that work on one object return [`WorkerError`] (either kind); the boundary of
//! one object (`source_object`, `target_object`) turns an `ObjectFailure` into a failed entry
//! and lets a `RunFailure` through, so the pipeline and the phases only ever see
//! `RunFailure`. The run turns it into its failure message (`RunState::fail`).

use thiserror::Error;

use crate::objects::{ObjectError, ObjectErrorKind};
use crate::storage::StoreError;

/// An error while working on one object: it fails either the object or the run.
#[derive(Debug, Error)]
pub(in crate::runner) enum WorkerError {
    #[error(transparent)]
    Object(#[from] ObjectFailure),
    #[error(transparent)]
    Run(#[from] RunFailure),
}

/// Fails the entry of one object; the run goes on.
#[derive(Debug, Error, PartialEq, Eq)]
pub(in crate::runner) enum ObjectFailure {
    /// A script (validSource, a condition, correlation, a transform, an action or event
    /// script) failed or returned something unusable.
    #[error("{0}")]
    Script(String),
    /// The target set refused this object's write (a hook, a bad value, an existing id).
    #[error("{0}")]
    Refused(String),
    /// The decided action cannot apply to what was found (CREATE over a known target,
    /// UPDATE without a target, a changed `_id`).
    #[error("{0}")]
    Constraint(String),
    /// The object kept changing concurrently; its writes were dropped after the retries.
    #[error("{0}")]
    Conflict(String),
    /// The connector-backed set could not be reached for this object (it went away mid-run).
    #[error("{0}")]
    Unavailable(String),
}

/// Fails the run.
#[derive(Debug, Error)]
pub(in crate::runner) enum RunFailure {
    /// The store could not be read or written.
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
    /// A set the run needs is missing, unreachable or unreadable.
    #[error("{0}")]
    Unavailable(String),
    /// The run's configuration or request cannot run (a bad query, an undeclared set).
    #[error("{0}")]
    Setup(String),
    /// A script that belongs to the run, not to one object (the `result` script), failed.
    #[error("{0}")]
    Script(String),
    /// The cluster coordination (the pages of a clustered run) failed.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A bug: a worker panicked.
    #[error("Internal error: the reconciliation stopped: {0}")]
    Panic(String),
}

impl RunFailure {
    /// A store error with what the worker was doing.
    pub(super) fn store(context: impl Into<String>) -> impl FnOnce(StoreError) -> RunFailure {
        let context = context.into();
        move |source| RunFailure::Store { context, source }
    }
}

impl WorkerError {
    /// A store error: the run fails.
    pub(super) fn store(context: &'static str) -> impl FnOnce(StoreError) -> WorkerError {
        move |source| {
            WorkerError::Run(RunFailure::Store {
                context: context.to_string(),
                source,
            })
        }
    }

    /// An object set's error on one object. A broken set (an internal error: the store
    /// cannot be read or written) fails the run. A connector that cannot be reached fails
    /// only this object: a directory or database that goes away mid-run fails the remaining
    /// entries one by one, each with the connector's message and within its timeouts, and
    /// the run still ends (issue #15); the next run picks them up. Whether it can be reached
    /// at all is checked when the run starts, which fails the run. Anything else (refused,
    /// not found, conflict) fails the object.
    pub(super) fn from_set(e: ObjectError) -> WorkerError {
        match e.kind {
            ObjectErrorKind::Internal => WorkerError::Run(RunFailure::Unavailable(e.message)),
            ObjectErrorKind::Unavailable => {
                WorkerError::Object(ObjectFailure::Unavailable(e.message))
            }
            _ => WorkerError::Object(ObjectFailure::Refused(e.message)),
        }
    }

    /// An engine or script evaluation error (the engine reports them as text).
    pub(super) fn script(message: String) -> WorkerError {
        WorkerError::Object(ObjectFailure::Script(message))
    }

    /// An action that cannot apply to what was found.
    pub(super) fn constraint(message: impl Into<String>) -> WorkerError {
        WorkerError::Object(ObjectFailure::Constraint(message.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_set_fails_the_run_an_unreachable_one_or_anything_else_the_object() {
        let e = WorkerError::from_set(ObjectError::new(ObjectErrorKind::Internal, "io"));
        assert!(
            matches!(e, WorkerError::Run(RunFailure::Unavailable(_))),
            "{e:?}"
        );
        let e = WorkerError::from_set(ObjectError::new(ObjectErrorKind::Unavailable, "down"));
        assert!(
            matches!(e, WorkerError::Object(ObjectFailure::Unavailable(ref m)) if m == "down"),
            "{e:?}"
        );
        for kind in [
            ObjectErrorKind::BadRequest,
            ObjectErrorKind::Forbidden,
            ObjectErrorKind::AlreadyExists,
            ObjectErrorKind::Conflict,
            ObjectErrorKind::NotFound,
        ] {
            let e = WorkerError::from_set(ObjectError::new(kind, "no"));
            assert!(
                matches!(e, WorkerError::Object(ObjectFailure::Refused(ref m)) if m == "no"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn store_errors_fail_the_run_and_keep_their_context() {
        let e = WorkerError::store("reading a link")(StoreError::Codec("bad byte".into()));
        assert!(matches!(e, WorkerError::Run(RunFailure::Store { .. })));
        assert_eq!(e.to_string(), "reading a link: store value error: bad byte");
        let e = RunFailure::store("writing targets and links")(StoreError::Conflict("x".into()));
        assert_eq!(
            e.to_string(),
            "writing targets and links: concurrent change: x"
        );
    }

    #[test]
    fn messages_are_the_ones_entries_and_runs_show() {
        assert_eq!(
            WorkerError::script("Expecting boolean value from validSource".into()).to_string(),
            "Expecting boolean value from validSource"
        );
        assert_eq!(
            WorkerError::constraint("target object already exists").to_string(),
            "target object already exists"
        );
        assert_eq!(
            RunFailure::Panic("boom".into()).to_string(),
            "Internal error: the reconciliation stopped: boom"
        );
    }
}
