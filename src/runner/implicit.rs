//! The engine entry point "synchronize this one source object of mapping M": the by-id
//! source phase of the worker, for one id, on the calling thread, with the same decisions,
//! actions, claims and compare-and-swap writes as a reconciliation of that object, but with
//! no run record, no association entries, no recon audit events and no result script.
//! Used by implicit synchronization (`crate::sync`), liveSync and `performAction`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::state::{ReconKind, RunState};
use super::{worker, RunError, Runner, StartRequest};
use crate::ids;
use crate::mapping::Mapping;

/// What synchronizing one object did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Operations that succeeded / failed (one per link qualifier).
    pub succeeded: u64,
    pub failed: u64,
    /// The infrastructure failure that stopped it, if any.
    pub error: Option<String>,
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
        let req = StartRequest {
            mapping: mapping.name.clone(),
            kind: ReconKind::ById(vec![source_id.to_string()]),
            body: None,
            analyze: false,
            persist_associations: false,
            user: user.to_string(),
            schedule: None,
        };
        let mut options = worker::effective_options(mapping, &req)?;
        options.implicit = true;
        options.run_target_phase = false;
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
        Ok(SyncOutcome {
            succeeded: run.stats.success.load(Ordering::Relaxed),
            failed: run.stats.failure.load(Ordering::Relaxed),
            error: result.err(),
        })
    }
}
