//! Runs whose process died: their records still say ACTIVE, and nobody will finish them.
//!
//! * At startup, every ACTIVE record belonged to this process's previous life (one node) and
//!   is marked COMPLETED_FAILED (contract §4). On a shared repository, a record whose
//!   mapping's run claim is held by another live node, for that run, is that node's running
//!   run and is left alone.
//! * On a shared repository, the lease thread also looks for runs of nodes that died since:
//!   an ACTIVE record that no node's live claim holds any more (the claim's lease ran out, or
//!   the claim is gone) and that this node does not run itself. The record is read again
//!   *after* the claim was seen gone: a node writes its completed record before releasing its
//!   claim, so a run that ended normally is then seen completed and left as it is.
//!
//! A clustered run whose spec is still in the coordinator (its pages were offered and it has
//! not ended) is not marked failed by the survivors: one of them takes it over and finishes it
//! (`runner::joining`), as contract §4 says. At startup, such a run is left to that take-over
//! only when another node is live; a node restarting alone marks it failed like any other
//! and removes its pages.

use serde_json::{json, Value};

use super::{Inner, RunError};
use crate::cluster::run_key;
use crate::engine::model::Stage;
use crate::ids;
use crate::storage::RunRecord;

/// The message of a run interrupted by this server's own stop (found at its next start).
const STOPPED_HERE: &str =
    "The server stopped while this reconciliation was running; it was marked failed at the next start.";

/// Startup: marks the interrupted runs failed; returns how many.
pub(super) fn at_start(inner: &Inner) -> Result<usize, RunError> {
    let mut interrupted = Vec::new();
    inner.store.scan_runs(&mut |r| {
        if !r.completed {
            interrupted.push(r);
        }
        std::ops::ControlFlow::Continue(())
    })?;
    let mut n = 0;
    let others_live = inner.coordinator.is_shared()
        && inner
            .coordinator
            .live_nodes()
            .map_err(|e| RunError::Internal(format!("listing the live nodes: {e}")))?
            .iter()
            .any(|node| *node != inner.settings.node_id);
    for r in interrupted {
        if held_elsewhere(inner, &r)? {
            continue;
        }
        if others_live && adoptable(inner, &r)? {
            tracing::info!(run = %r.id, "a clustered run of this node's previous life is left to the nodes that go on with it");
            continue;
        }
        tracing::warn!(run = %r.id, mapping = %r.mapping, "marking a run interrupted by a crash as COMPLETED_FAILED");
        let id = r.id.clone();
        mark_failed(inner, r, STOPPED_HERE)?;
        // A clustered run's pages and notes go with it (no-op for any other run).
        inner
            .coordinator
            .drop_pages(&id)
            .map_err(|e| RunError::Internal(format!("removing the pages of run {id}: {e}")))?;
        n += 1;
    }
    if n > 0 {
        inner.store.flush()?;
    }
    Ok(n)
}

/// Shared repository: marks failed the ACTIVE runs of nodes that died (see the module doc);
/// returns how many. Does nothing on a node of its own.
pub(super) fn of_dead_nodes(inner: &Inner) -> Result<usize, RunError> {
    if !inner.coordinator.is_shared() {
        return Ok(0);
    }
    let mut candidates = Vec::new();
    inner.store.scan_runs(&mut |r| {
        if !r.completed {
            candidates.push(r);
        }
        std::ops::ControlFlow::Continue(())
    })?;
    let mut n = 0;
    for r in candidates {
        let mine = inner.active.lock().values().any(|a| a.id == r.id);
        if mine || held_by_anyone(inner, &r)? || adoptable(inner, &r)? {
            continue;
        }
        // Read again after the claim was seen gone (see the module doc).
        let Some(now) = inner.store.get_run(r.seq)?.filter(|x| x.id == r.id) else {
            continue;
        };
        if now.completed {
            continue;
        }
        let message = format!(
            "The server running this reconciliation stopped (its cluster lease ran out); node {} marked it failed.",
            inner.settings.node_id
        );
        tracing::warn!(run = %r.id, mapping = %r.mapping, "a run of a node that stopped is marked COMPLETED_FAILED");
        mark_failed(inner, now, &message)?;
        n += 1;
    }
    Ok(n)
}

/// Whether the record is a clustered run this node can take over (its spec is there and its
/// mapping is clustered here): the join thread does that instead of marking it failed.
fn adoptable(inner: &Inner, r: &RunRecord) -> Result<bool, RunError> {
    if !inner.coordinator.is_shared()
        || !inner.mappings.get(&r.mapping).is_some_and(|m| m.clustered)
    {
        return Ok(false);
    }
    let spec = inner
        .coordinator
        .spec(&r.id)
        .map_err(|e| RunError::Internal(format!("reading the spec of run {}: {e}", r.id)))?;
    Ok(spec.is_some())
}

/// Whether another node's live claim on the record's mapping is for this very run.
fn held_elsewhere(inner: &Inner, r: &RunRecord) -> Result<bool, RunError> {
    Ok(holder(inner, r)?.is_some_and(|node| node != inner.settings.node_id))
}

/// Whether any node's live claim on the record's mapping is for this very run.
fn held_by_anyone(inner: &Inner, r: &RunRecord) -> Result<bool, RunError> {
    Ok(holder(inner, r)?.is_some())
}

/// The node whose live claim holds the record's run (the in-process coordinator: none).
fn holder(inner: &Inner, r: &RunRecord) -> Result<Option<String>, RunError> {
    if !inner.coordinator.is_shared() {
        return Ok(None);
    }
    let held = inner
        .coordinator
        .holder(&run_key(&r.mapping))
        .map_err(|e| RunError::Internal(format!("reading the claim of run {}: {e}", r.id)))?;
    Ok(held.and_then(|(node, run)| (run == r.id).then_some(node)))
}

/// Marks a clustered run whose node stopped, and which cannot be taken over (`why`), failed
/// and removes its pages.
pub(super) fn give_up_clustered(inner: &Inner, r: RunRecord, why: &str) -> Result<(), RunError> {
    let id = r.id.clone();
    tracing::warn!(run = %id, mapping = %r.mapping, why, "a clustered run whose node stopped cannot be taken over; it is marked COMPLETED_FAILED");
    let message = format!(
        "The server running this reconciliation stopped, and {why}; node {} marked it failed.",
        inner.settings.node_id
    );
    mark_failed(inner, r, &message)?;
    inner
        .coordinator
        .drop_pages(&id)
        .map_err(|e| RunError::Internal(format!("removing the pages of run {id}: {e}")))
}

/// Writes the record COMPLETED_FAILED with `message`.
fn mark_failed(inner: &Inner, mut r: RunRecord, message: &str) -> Result<(), RunError> {
    let mut summary: Value = serde_json::from_str(&r.summary).unwrap_or_else(|_| json!({}));
    let now = ids::now_millis();
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("stage".into(), json!(Stage::CompletedFailed.as_str()));
        obj.insert("state".into(), json!(Stage::CompletedFailed.state()));
        obj.insert(
            "stageDescription".into(),
            json!(Stage::CompletedFailed.description()),
        );
        obj.insert("ended".into(), json!(ids::iso_millis(now)));
        obj.insert("message".into(), json!(message));
    }
    r.summary = summary.to_string();
    r.completed = true;
    r.finish_time = Some(ids::iso_micros(ids::now_micros()));
    inner.store.put_run(&r)?;
    Ok(())
}
