//! The engine entry points for one object: "synchronize this one source object of mapping
//! M" and "perform this action on this one object of mapping M" (`performAction`, reference
//! §3.8). Both are the by-id source phase of the worker (or, for a target-side
//! `performAction`, the target phase of one id), for one id, on the calling thread, with the
//! same decisions, actions, claims and compare-and-swap writes as a reconciliation of that
//! object, but with no run record, no association entries, no recon audit events and no
//! result script. Used by implicit synchronization (`crate::sync`), liveSync and
//! `performAction`.
//!
//! `performAction` differs from a sync only in the decision: the situation is assessed as
//! usual (links, correlation), then the caller's action is executed instead of the policy's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{ReconKind, RunState};
use super::{worker, RunError, Runner, StartRequest};
use crate::engine::model::{Action, Situation};
use crate::ids;
use crate::mapping::Mapping;

/// What synchronizing one object did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Operations that succeeded / failed (one per link qualifier).
    pub succeeded: u64,
    pub failed: u64,
    /// The reasons of the failed operations, in order.
    pub failures: Vec<String>,
    /// The infrastructure failure that stopped it, if any.
    pub error: Option<String>,
}

/// An action forced on the one object of an implicit run (`performAction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplicitAction {
    pub action: Action,
    /// The only link qualifier the operation runs for.
    pub qualifier: String,
    /// A source-side call's `targetId`: the target used when neither a link nor a single
    /// correlation result names one (as IDM presets it before assessing).
    pub target_id: Option<String>,
    /// `target` was given: a target-side operation, the target phase for `targetId`.
    pub target_phase: bool,
    /// `situation`: the call fails when the assessed situation differs.
    pub expected: Option<Situation>,
    /// `ignorePostAction`: REPORT/NOREPORT run no postAction script.
    pub ignore_post_action: bool,
}

/// `POST /openidm/sync?_action=performAction`, validated by the HTTP layer.
#[derive(Debug, Clone)]
pub struct PerformRequest {
    pub mapping: String,
    pub source_id: Option<String>,
    pub target_id: Option<String>,
    pub action: Action,
    pub qualifier: String,
    pub situation: Option<Situation>,
    pub target_phase: bool,
    pub ignore_post_action: bool,
    pub user: String,
}

impl Runner {
    /// Synchronizes one source object (present, changed or gone) of `mapping`. Per-object
    /// failures are logged (WARN, as in a run) and counted in the outcome.
    pub fn sync_object(
        &self,
        mapping: &Arc<Mapping>,
        source_id: &str,
        user: &str,
    ) -> Result<SyncOutcome, RunError> {
        self.one_object(mapping, source_id, user, None)
    }

    /// Executes `req.action` on one object of a mapping, as IDM's `performAction`: the
    /// situation is assessed as a reconciliation would (link, correlation), then the given
    /// action runs instead of the policy's, with the same write discipline. A failure of the
    /// operation ("target object already exists", a situation other than the expected one,
    /// a script error) is a `Conflict` carrying its reason, as IDM answers it (409).
    pub fn perform_action(&self, req: PerformRequest) -> Result<(), RunError> {
        let mapping = self.mappings().get(&req.mapping).cloned().ok_or_else(|| {
            let names: Vec<&str> = self.mappings().keys().map(String::as_str).collect();
            RunError::Conflict(format!(
                "No such mapping: {}. Configured mappings: {}",
                req.mapping,
                names.join(", ")
            ))
        })?;
        let exists = |set: &str, id: &str, side: &str| -> Result<(), RunError> {
            let objects = self.objects().get(set).ok_or_else(|| {
                RunError::Internal(format!("the {side} object set {set} is not declared"))
            })?;
            match objects.read(id)? {
                Some(_) => Ok(()),
                None => Err(RunError::Conflict(format!(
                    "{} object {set}/{id} does not exist",
                    if side == "source" { "Source" } else { "Target" }
                ))),
            }
        };
        let id = if req.target_phase {
            let tid = req
                .target_id
                .clone()
                .ok_or_else(|| RunError::BadRequest("/targetId: Expecting a value".into()))?;
            exists(&mapping.target, &tid, "target")?;
            tid
        } else {
            let sid = req
                .source_id
                .clone()
                .ok_or_else(|| RunError::BadRequest("/sourceId: Expecting a value".into()))?;
            exists(&mapping.source, &sid, "source")?;
            if let Some(tid) = &req.target_id {
                exists(&mapping.target, tid, "target")?;
            }
            sid
        };
        let explicit = ExplicitAction {
            action: req.action,
            qualifier: req.qualifier,
            target_id: req.target_id.filter(|_| !req.target_phase),
            target_phase: req.target_phase,
            expected: req.situation,
            ignore_post_action: req.ignore_post_action,
        };
        let outcome = self.one_object(&mapping, &id, &req.user, Some(explicit))?;
        if let Some(e) = outcome.error {
            return Err(RunError::Internal(e));
        }
        match outcome.failures.into_iter().next() {
            Some(reason) => Err(RunError::Conflict(reason)),
            None => Ok(()),
        }
    }

    fn one_object(
        &self,
        mapping: &Arc<Mapping>,
        id: &str,
        user: &str,
        explicit: Option<ExplicitAction>,
    ) -> Result<SyncOutcome, RunError> {
        let req = StartRequest {
            mapping: mapping.name.clone(),
            kind: ReconKind::ById(vec![id.to_string()]),
            body: None,
            analyze: false,
            persist_associations: false,
            user: user.to_string(),
            schedule: None,
        };
        let mut options = worker::effective_options(mapping, &req)?;
        options.implicit = true;
        options.run_target_phase = false;
        // The deletion guard limits reconciliations; an operator's explicit action on one
        // object is not one.
        options.ignore_guard |= explicit.is_some();
        options.explicit = explicit;
        let run = Arc::new(RunState::new(
            ids::new_uuid(),
            0,
            mapping.clone(),
            req.kind,
            options,
            req.user,
        ));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            worker::execute_implicit(&self.inner, &run)
        }))
        .unwrap_or_else(|p| {
            Err(format!(
                "Internal error: synchronization stopped: {}",
                super::panic_message(p.as_ref())
            ))
        });
        let failures = std::mem::take(&mut *run.object_failures.lock());
        Ok(SyncOutcome {
            succeeded: run.stats.success.load(Ordering::Relaxed),
            failed: run.stats.failure.load(Ordering::Relaxed),
            failures,
            error: result.err(),
        })
    }
}
