//! The sync service: implicit synchronization of managed objects (contract §7). Live
//! synchronization of object sets that report their changes is in [`live`].
//!
//! Installed as the [`ChangeObserver`] of the managed object sets, it is told of every
//! committed create, update and delete of a managed object (REST, `openidm.*` from scripts,
//! a reconciliation into a managed set) on the writer's thread, and synchronizes that object
//! to every mapping whose source is that set (`enableSync` not false) through the engine's
//! one-object entry point (`Runner::sync_object`): the same decisions, actions, links and
//! write discipline as a reconciliation of that object. It returns once every target was
//! written or its failure recorded, so the writer answers after the sync, as in IDM.
//!
//! Failures never undo the managed change: they are logged (WARN, naming mapping, object and
//! reason) and the writer's answer is unchanged.
//!
//! After the synchronization, the managed type's `onSync` hook runs with its results
//! (`crate::managed`); recond's own role `onSync` synchronizes the role's members again.
//!
//! Loops: a change made while this thread is already synchronizing (a script of the mapping
//! writing a managed object, a target that is itself managed) is not synchronized again, so
//! a bidirectional pair of mappings cannot ping-pong.

pub mod audit;
pub mod linked;
pub mod live;

pub use live::{LiveSync, LiveSyncError, LiveSyncOutcome};

use std::cell::Cell;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::objects::ChangeObserver;
use crate::runner::Runner;

/// The user recorded for implicit synchronization.
const SYNC_USER: &str = "openidm-admin";

thread_local! {
    /// How deep this thread is inside an implicit synchronization.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Leaves the sync depth when dropped (also on a panic).
struct DepthGuard;

impl DepthGuard {
    fn enter() -> Option<DepthGuard> {
        DEPTH.with(|d| {
            if d.get() > 0 {
                None
            } else {
                d.set(d.get() + 1);
                Some(DepthGuard)
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

pub struct SyncService {
    runner: Runner,
}

impl SyncService {
    /// Builds the service and installs it on the runner's object sets. Keep the returned
    /// `Arc` alive as long as implicit synchronization should happen (the hook holds it
    /// weakly).
    pub fn install(runner: Runner) -> Arc<SyncService> {
        let service = Arc::new(SyncService { runner });
        let observer: Arc<dyn ChangeObserver> = service.clone();
        if !service
            .runner
            .objects()
            .changes
            .install(Arc::downgrade(&observer))
        {
            tracing::error!("a sync observer was installed already; this one is not used");
        }
        service
    }

    /// Synchronizes one object of `set` to every mapping whose source it is; one result per
    /// mapping (`mapping`, `targetObjectSet`, `result`, `cause`), as IDM's `syncDetails`.
    pub fn sync_object(&self, set: &str, id: &str) -> Vec<Value> {
        let set = set.trim_matches('/');
        let mut details = Vec::new();
        for mapping in self.runner.mappings().values() {
            if mapping.source.trim_matches('/') != set || !mapping.enable_sync {
                continue;
            }
            // The run's own error and a failure to start it are both the sync's failure.
            let outcome = match self.runner.sync_object(mapping, id, SYNC_USER) {
                Ok(mut o) => match o.error.take() {
                    None => Ok(o),
                    Some(reason) => Err(reason),
                },
                Err(e) => Err(e.to_string()),
            };
            let failure = match outcome {
                Ok(o) => {
                    tracing::debug!(mapping = %mapping.name, object = id, ok = o.succeeded, failed = o.failed, "implicit sync");
                    (o.failed > 0).then(|| format!("{} operation(s) failed", o.failed))
                }
                Err(reason) => {
                    tracing::warn!(
                        mapping = %mapping.name,
                        object = id,
                        reason = %reason,
                        "implicit synchronization failed: mapping {}, object {set}/{id}: {reason}",
                        mapping.name
                    );
                    Some(reason)
                }
            };
            let mut d = json!({
                "mapping": mapping.name,
                "targetObjectSet": mapping.target,
                "result": if failure.is_none() { "SUCCESSFUL" } else { "FAILED" },
            });
            if let Some(cause) = failure {
                d["cause"] = json!(cause);
            }
            details.push(d);
        }
        details
    }
}

impl ChangeObserver for SyncService {
    fn changed(&self, set: &str, id: &str) {
        let Some(_depth) = DepthGuard::enter() else {
            tracing::debug!(
                set,
                id,
                "a change made by synchronization is not synchronized again"
            );
            return;
        };
        let details = self.sync_object(set, id);
        // The managed type's `onSync` follows the synchronization (see `managed::on_sync`).
        if let Some(m) = self.runner.objects().get(set).and_then(|s| s.managed()) {
            m.on_synced(id, details, &|set, id| {
                self.sync_object(set, id);
            });
        }
    }
}
