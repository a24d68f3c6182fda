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
//! Loops: a change made while this thread is already synchronizing (a script of the mapping
//! writing a managed object, a target that is itself managed) is not synchronized again, so
//! a bidirectional pair of mappings cannot ping-pong.

pub mod audit;
pub mod linked;
pub mod live;

pub use live::{LiveSync, LiveSyncError, LiveSyncOutcome};

use std::cell::Cell;
use std::sync::Arc;

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

    /// Synchronizes one object of `set` to every mapping whose source it is.
    pub fn sync_object(&self, set: &str, id: &str) {
        let set = set.trim_matches('/');
        for mapping in self.runner.mappings().values() {
            if mapping.source.trim_matches('/') != set || !mapping.enable_sync {
                continue;
            }
            match self.runner.sync_object(mapping, id, SYNC_USER) {
                Ok(o) if o.error.is_none() => {
                    tracing::debug!(mapping = %mapping.name, object = id, ok = o.succeeded, failed = o.failed, "implicit sync")
                }
                Ok(o) => tracing::warn!(
                    mapping = %mapping.name,
                    object = id,
                    reason = o.error.as_deref().unwrap_or_default(),
                    "implicit synchronization failed: mapping {}, object {set}/{id}: {}",
                    mapping.name,
                    o.error.as_deref().unwrap_or_default()
                ),
                Err(e) => tracing::warn!(
                    mapping = %mapping.name,
                    object = id,
                    reason = %e,
                    "implicit synchronization failed: mapping {}, object {set}/{id}: {e}",
                    mapping.name
                ),
            }
        }
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
        self.sync_object(set, id);
    }
}
