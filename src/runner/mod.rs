//! Runs: starting, tracking, cancelling, listing, deleting and retaining reconciliation runs,
//! and recovering the ones a crash interrupted.
//!
//! Each run executes on its own OS threads (never on the async runtime). The write order is
//! the crash-safety design:
//! 1. the run record is written ACTIVE before any data is touched;
//! 2. targets, their index entries and their links go in atomic batches, then the batch's
//!    association entries and audit events;
//! 3. retention removes the runs this one pushes past the limit;
//! 4. the completed record is written last, then flushed, and only then does the run stop
//!    being active and show `ended`.
//!
//! At startup, records still ACTIVE belonged to a process that died: they become
//! COMPLETED_FAILED with a message. Purged runs leave a marker; a background thread
//! reclaims their entries and audit events in small batches and resumes after a restart.

mod claims;
mod error;
mod history;
mod hooks;
mod host;
mod implicit;
mod joining;
mod lease;
pub mod priority;
mod recovery;
mod retention;
mod state;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};

pub use error::RunError;
pub use history::entry_key;
pub use hooks::{CommitLog, Committed};
pub use host::{SetResolver, SetsHost, StoreHost};
pub use implicit::{ExplicitAction, PerformRequest, SyncOutcome};
pub use state::{ClusterRole, ReconKind, RunOptions, RunState};

use crate::cluster::Coordinator;
use crate::config::{AuditLevel, Config};
use crate::engine::model::Stage;
use crate::engine::stats::summary_in_idm_order;
use crate::ids;
use crate::mapping::Mapping;
use crate::objects::ObjectSets;
use crate::script::ScriptLimits;
use crate::storage::{RunRecord, Store};

fn not_found(id: &str) -> RunError {
    RunError::NotFound(format!("Reconciliation with id {id} not found."))
}

/// A request to start a run.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub mapping: String,
    pub kind: ReconKind,
    pub body: Option<Value>,
    pub analyze: bool,
    pub persist_associations: bool,
    pub user: String,
    pub schedule: Option<String>,
}

/// Settings the runner takes from the configuration.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub max_concurrent_runs: usize,
    pub keep_runs_per_mapping: u32,
    pub batch_size: usize,
    pub audit: AuditLevel,
    pub script_limits: ScriptLimits,
    /// This node's id (`[cluster] node_id`): its name in claims and `sourceProcessedByNode`.
    pub node_id: String,
}

impl RunnerSettings {
    pub fn from_config(c: &Config) -> RunnerSettings {
        RunnerSettings {
            max_concurrent_runs: c.server.max_concurrent_runs,
            keep_runs_per_mapping: c.recon.keep_runs_per_mapping,
            batch_size: c.recon.batch_size,
            audit: c.audit.recon,
            script_limits: ScriptLimits {
                time: Duration::from_millis(c.scripts.time_limit_ms),
                memory_bytes: (c.scripts.memory_limit_mb as usize).saturating_mul(1024 * 1024),
            },
            node_id: c.cluster.node_id.clone(),
        }
    }
}

pub(crate) struct Inner {
    pub store: Store,
    pub objects: ObjectSets,
    pub mappings: BTreeMap<String, Arc<Mapping>>,
    pub settings: RunnerSettings,
    /// Coordination with the other nodes (in-process on a single node).
    pub coordinator: Arc<Coordinator>,
    /// Active run per mapping name.
    active: Mutex<HashMap<String, Arc<RunState>>>,
    /// Free execution slots (bounded parallel runs).
    slots: Mutex<usize>,
    slot_freed: Condvar,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    purge_wake: Condvar,
    purge_lock: Mutex<bool>,
    stopping: AtomicBool,
    /// The run of another node whose pages this node works on now (shared repository), so
    /// shutdown can stop it.
    helping: Mutex<Option<Arc<RunState>>>,
    /// Test-only record of the units' commit order (see `hooks::CommitLog`); unset in
    /// production.
    commit_log: std::sync::OnceLock<Arc<hooks::CommitLog>>,
}

/// The run registry. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

impl Runner {
    pub fn new(
        store: Store,
        objects: ObjectSets,
        mappings: BTreeMap<String, Arc<Mapping>>,
        settings: RunnerSettings,
        coordinator: Arc<Coordinator>,
    ) -> Runner {
        let slots = settings.max_concurrent_runs.max(1);
        Runner {
            inner: Arc::new(Inner {
                store,
                objects,
                mappings,
                settings,
                coordinator,
                active: Mutex::new(HashMap::new()),
                slots: Mutex::new(slots),
                slot_freed: Condvar::new(),
                threads: Mutex::new(Vec::new()),
                purge_wake: Condvar::new(),
                purge_lock: Mutex::new(false),
                stopping: AtomicBool::new(false),
                helping: Mutex::new(None),
                commit_log: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn mappings(&self) -> &BTreeMap<String, Arc<Mapping>> {
        &self.inner.mappings
    }

    pub fn objects(&self) -> &ObjectSets {
        &self.inner.objects
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The coordination with other nodes (the scheduler claims its firings through it).
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.inner.coordinator
    }

    /// Test-only: from now on, records the order in which this runner's units commit their
    /// objects (for replaying a run through a reference implementation).
    pub fn record_commit_order(&self) -> Arc<CommitLog> {
        self.inner.commit_log.get_or_init(Default::default).clone()
    }

    /// Startup: interrupted runs become COMPLETED_FAILED; the purge thread starts and resumes
    /// pending purges.
    pub fn recover(&self) -> Result<usize, RunError> {
        let n = recovery::at_start(&self.inner)?;
        let inner = self.inner.clone();
        let handle = std::thread::Builder::new()
            .name("recon-purge".into())
            .spawn(move || retention::purge_loop(&inner))
            .map_err(|e| RunError::Internal(format!("cannot start the purge thread: {e}")))?;
        self.inner.threads.lock().push(handle);
        let inner = self.inner.clone();
        let handle = std::thread::Builder::new()
            .name("recon-leases".into())
            .spawn(move || lease::keep_leases(&inner))
            .map_err(|e| RunError::Internal(format!("cannot start the lease thread: {e}")))?;
        self.inner.threads.lock().push(handle);
        if self.inner.coordinator.is_shared() {
            let inner = self.inner.clone();
            let handle = std::thread::Builder::new()
                .name("recon-join".into())
                .spawn(move || {
                    // Other nodes' pages are run work too: below the HTTP runtime.
                    priority::lower_current_thread();
                    joining::join_loop(&inner)
                })
                .map_err(|e| RunError::Internal(format!("cannot start the join thread: {e}")))?;
            self.inner.threads.lock().push(handle);
        }
        Ok(n)
    }

    /// Validates and starts a run; it executes on its own threads.
    pub fn start(&self, req: StartRequest) -> Result<Arc<RunState>, RunError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(RunError::Conflict("The server is shutting down".into()));
        }
        let mapping = self
            .inner
            .mappings
            .get(&req.mapping)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = self.inner.mappings.keys().map(String::as_str).collect();
                RunError::Conflict(format!(
                    "No such mapping: {}. Configured mappings: {}",
                    req.mapping,
                    names.join(", ")
                ))
            })?;
        let options = worker::effective_options(&mapping, &req)?;
        // No lock is held across store IO (the async runtime reads `active` through
        // `live_summary`): the run is built first, registered under the lock, and its record
        // written after the lock is released (undone if that write fails).
        let seq = self.inner.store.next_id()?;
        let id = format!("{}-{seq}", ids::new_uuid());
        let run = Arc::new(
            RunState::new(id, seq, mapping.clone(), req.kind, options, req.user)
                .with_body(req.body),
        );
        {
            let mut active = self.inner.active.lock();
            if let Some(other) = active.get(&mapping.name) {
                return Err(RunError::Conflict(format!(
                    "A reconciliation of mapping {} is already active: {}",
                    mapping.name, other.id
                )));
            }
            active.insert(mapping.name.clone(), run.clone());
        }
        // One active run per mapping across the nodes of a shared repository (on one node the
        // map above decides; the in-process claim is the same node's and always granted).
        if let Err(e) = lease::claim_run(&self.inner, &run) {
            self.inner.deregister(&run);
            return Err(e);
        }
        if let Err(e) = self.inner.store.put_run(&run.record(None)) {
            lease::release_run(&self.inner, &run);
            self.inner.deregister(&run);
            return Err(e.into());
        }
        self.inner.launch(&run)?;
        tracing::info!(run = %run.id, mapping = %mapping.name, "reconciliation started");
        Ok(run)
    }

    /// Waits until the run has completed (its record shows `ended`).
    pub async fn wait(&self, run: &Arc<RunState>) {
        let mut rx = run.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    }

    fn seq_of(id: &str) -> Option<u64> {
        id.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
    }

    fn live(&self, id: &str) -> Option<Arc<RunState>> {
        self.inner
            .active
            .lock()
            .values()
            .find(|r| r.id == id)
            .cloned()
    }

    fn stored(&self, id: &str) -> Result<Option<RunRecord>, RunError> {
        let Some(seq) = Self::seq_of(id) else {
            return Ok(None);
        };
        Ok(self.inner.store.get_run(seq)?.filter(|r| r.id == id))
    }

    /// The summary of a run that is still in memory (running or just ended), without touching
    /// the store: cheap enough to answer on the async runtime.
    pub fn live_summary(&self, id: &str) -> Option<Value> {
        self.live(id).map(|run| run.summary())
    }

    /// `GET /openidm/recon/{id}`.
    pub fn summary(&self, id: &str) -> Result<Value, RunError> {
        if let Some(summary) = self.live_summary(id) {
            return Ok(summary);
        }
        let rec = self.stored(id)?.ok_or_else(|| not_found(id))?;
        serde_json::from_str(&rec.summary)
            .map(summary_in_idm_order)
            .map_err(|e| RunError::Internal(format!("stored summary of {id}: {e}")))
    }

    /// `GET /openidm/recon`: every retained run, oldest first.
    pub fn list(&self) -> Result<Vec<Value>, RunError> {
        let live: HashMap<String, Arc<RunState>> = self
            .inner
            .active
            .lock()
            .values()
            .map(|r| (r.id.clone(), r.clone()))
            .collect();
        let mut out = Vec::new();
        self.inner.store.scan_runs(&mut |r| {
            match live.get(&r.id) {
                Some(run) => out.push(run.summary()),
                None => {
                    if let Ok(v) = serde_json::from_str(&r.summary) {
                        out.push(summary_in_idm_order(v));
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// `POST /openidm/recon/{id}?_action=cancel`. A run active on another node of a shared
    /// repository gets a cancel request in the repository, which its node polls and obeys.
    pub fn cancel(&self, id: &str) -> Result<Value, RunError> {
        if let Some(run) = self.live(id) {
            run.cancel();
            tracing::info!(run = %id, "cancel requested");
        } else {
            let rec = self.stored(id)?.ok_or_else(|| not_found(id))?;
            if !rec.completed && self.inner.coordinator.is_shared() {
                lease::request_cancel(&self.inner, id)?;
                tracing::info!(run = %id, "cancel requested of the node running it");
            }
        }
        Ok(json!({ "_id": id, "action": "cancel", "status": "INITIATED" }))
    }

    /// `DELETE /openidm/recon/{id}`: 409 while active; otherwise the run, its statistics,
    /// association data and audit events go.
    pub fn delete(&self, id: &str) -> Result<Value, RunError> {
        if self.live(id).is_some() {
            return Err(RunError::Conflict(format!(
                "Reconciliation {id} is still active; cancel it first"
            )));
        }
        let rec = self.stored(id)?.ok_or_else(|| not_found(id))?;
        self.inner.store.remove_run(rec.seq)?;
        self.inner.wake_purge();
        serde_json::from_str(&rec.summary)
            .map(summary_in_idm_order)
            .map_err(|e| RunError::Internal(format!("stored summary of {id}: {e}")))
    }

    /// The active run of a mapping, if any.
    pub fn active_run(&self, mapping: &str) -> Option<Arc<RunState>> {
        self.inner.active.lock().get(mapping).cloned()
    }

    pub fn active_count(&self) -> usize {
        self.inner.active.lock().len()
    }

    /// Shutdown: refuse new runs, cancel active ones, wait (bounded) for their records to say
    /// how they ended, stop the purge thread.
    pub fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let runs: Vec<Arc<RunState>> = self.inner.active.lock().values().cloned().collect();
        for r in &runs {
            tracing::info!(run = %r.id, "cancelling at shutdown");
            r.cancel();
        }
        if let Some(r) = self.inner.helping.lock().as_ref() {
            tracing::info!(run = %r.id, "no longer working on another node's run: shutting down");
            r.cancel();
        }
        self.inner.wake_purge();
        self.inner.slot_freed.notify_all();
        let deadline = std::time::Instant::now() + grace;
        let handles: Vec<_> = std::mem::take(&mut *self.inner.threads.lock());
        for h in handles {
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!("a run thread did not stop within the shutdown grace period");
            }
        }
    }
}

impl Inner {
    /// Executes a registered run (its record written) on a thread of its own: a slot, the
    /// phases, the completed record.
    fn launch(self: &Arc<Self>, run: &Arc<RunState>) -> Result<(), RunError> {
        let inner = self.clone();
        let r = run.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("recon-{}", run.seq))
            .spawn(move || {
                // Below the HTTP runtime, so polls stay fast while the run fills the cores.
                priority::lower_current_thread();
                inner.acquire_slot(&r);
                execute_contained(&inner, &r);
                inner.finish(&r);
                inner.release_slot();
            });
        match spawned {
            Ok(h) => {
                let mut threads = self.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(h);
                Ok(())
            }
            Err(e) => {
                run.fail(format!("cannot start the run thread: {e}"), true);
                run.set_stage(Stage::CompletedFailed);
                self.finish(run);
                Err(RunError::Internal(format!(
                    "cannot start the run thread: {e}"
                )))
            }
        }
    }

    /// Removes a run from the active map (only if it is still the registered one).
    fn deregister(&self, run: &Arc<RunState>) {
        let mut active = self.active.lock();
        if active
            .get(&run.mapping.name)
            .is_some_and(|r| Arc::ptr_eq(r, run))
        {
            active.remove(&run.mapping.name);
        }
    }

    fn acquire_slot(&self, run: &RunState) {
        let mut free = self.slots.lock();
        while *free == 0 && !run.is_canceled() {
            self.slot_freed
                .wait_for(&mut free, Duration::from_millis(200));
        }
        if *free > 0 {
            *free -= 1;
        } else {
            // Cancelled while queued: run without a slot; it ends at once.
            *free = 0;
        }
    }

    fn release_slot(&self) {
        let mut free = self.slots.lock();
        *free = (*free + 1).min(self.settings.max_concurrent_runs.max(1));
        self.slot_freed.notify_one();
    }

    fn wake_purge(&self) {
        let mut pending = self.purge_lock.lock();
        *pending = true;
        self.purge_wake.notify_all();
    }

    /// Ends a run: retention, then the completed record (written last), flush, and only then
    /// the run stops being active and shows its end.
    fn finish(&self, run: &Arc<RunState>) {
        let final_stage = match run.stage() {
            s if s.is_completed() => s,
            Stage::ActiveCanceling => Stage::CompletedCanceled,
            _ if run.is_canceled() => Stage::CompletedCanceled,
            _ if run.message().is_some() => Stage::CompletedFailed,
            _ => Stage::CompletedSuccess,
        };
        if let Err(e) = self.retain(run) {
            tracing::error!(run = %run.id, error = %e, "retention failed");
        }
        let finish_time = Some(ids::iso_micros(ids::now_micros()));
        // Build the completed record from a view of the final stage without publishing it yet.
        let mut record = run.record(finish_time);
        record.completed = true;
        let stage_now = {
            let mut summary: Value =
                serde_json::from_str(&record.summary).unwrap_or_else(|_| json!({}));
            let ended = ids::now_millis();
            if let Some(obj) = summary.as_object_mut() {
                obj.insert("stage".into(), json!(final_stage.as_str()));
                obj.insert("state".into(), json!(final_stage.state()));
                obj.insert("stageDescription".into(), json!(final_stage.description()));
                obj.insert("ended".into(), json!(ids::iso_millis(ended)));
                obj.insert("duration".into(), json!(ended - run.started_ms));
                obj.insert(
                    "progress".into(),
                    run.stats.progress(final_stage == Stage::CompletedSuccess),
                );
            }
            record.summary = summary.to_string();
            final_stage
        };
        worker::audit_summary(self, run, stage_now);
        if let Err(e) = self.store.put_run(&record) {
            tracing::error!(run = %run.id, error = %e, "could not write the completed run record");
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(run = %run.id, error = %e, "flush after the run failed");
        }
        // The record says the run ended: another node may start the mapping now. Released
        // before the run leaves `active`, so a run started here meanwhile is refused by the
        // map instead of losing its claim to this release.
        lease::release_run(self, run);
        {
            let mut active = self.active.lock();
            if active
                .get(&run.mapping.name)
                .is_some_and(|r| Arc::ptr_eq(r, run))
            {
                active.remove(&run.mapping.name);
            }
            run.set_stage(stage_now);
        }
        crate::metrics::run_ended(
            &run.mapping.name,
            stage_now.state(),
            ids::now_millis() - run.started_ms,
            &run.stats,
        );
        tracing::info!(run = %run.id, stage = stage_now.as_str(), "reconciliation ended");
        run.mark_done();
    }
}

/// Runs the run body with panics contained: a panic anywhere in it (a bug) ends the run
/// FAILED with a message and a log line, and `finish` still frees the mapping and wakes every
/// `waitForCompletion` caller.
fn execute_contained(inner: &Inner, run: &Arc<RunState>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        worker::execute(inner, run);
    }));
    if let Err(payload) = outcome {
        let what = panic_message(payload.as_ref());
        tracing::error!(run = %run.id, mapping = %run.mapping.name, panic = %what,
            "the reconciliation thread panicked; the run is marked failed");
        run.fail(
            format!("Internal error: the reconciliation stopped: {what}"),
            true,
        );
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}
