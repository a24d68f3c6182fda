//! The cluster-wide claim of a mapping's active run: taken when a run starts, renewed while it
//! runs, released when its completed record is written.
//!
//! On one node the runner's own map of active runs already keeps one run per mapping, and the
//! in-process claim is this node's (always granted), so this costs a map operation per run.
//! On a shared repository the claim is what stops a second node from starting the mapping; if
//! this node dies, its lease runs out and another node may start the mapping again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Inner, RunError, RunState};
use crate::cluster::{run_key, Coordinator};

/// A run claim's lease: renewed every third of it, so a node must miss two renewals in a row
/// before another node may start the mapping.
const RUN_LEASE: Duration = Duration::from_secs(60);

/// A node's heartbeat lease (renewed with the run claims).
const NODE_LEASE: Duration = RUN_LEASE;

/// How often the lease thread removes old done claims (fired ticks), and how old they must be:
/// a day keeps every firing another node could still be deciding on.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
const PURGE_OLDER_THAN: Duration = Duration::from_secs(24 * 3600);

/// Claims `run`'s mapping for this node; a 409 naming the holder when another node runs it.
pub(super) fn claim_run(inner: &Inner, run: &Arc<RunState>) -> Result<(), RunError> {
    claim_mapping(
        &inner.coordinator,
        &inner.settings.node_id,
        &run.mapping.name,
        &run.id,
    )
}

/// Claims `mapping` for `node`'s run `run_id`.
fn claim_mapping(
    coordinator: &Coordinator,
    node: &str,
    mapping: &str,
    run_id: &str,
) -> Result<(), RunError> {
    let key = run_key(mapping);
    let unavailable =
        |e: crate::cluster::ClusterError| RunError::Internal(format!("cannot start the run: {e}"));
    if coordinator
        .claim(&key, node, RUN_LEASE, run_id)
        .map_err(unavailable)?
    {
        return Ok(());
    }
    // The holder may have released it since: say so rather than guess.
    let (other_node, other_run) = coordinator
        .holder(&key)
        .map_err(unavailable)?
        .unwrap_or_else(|| ("another node".into(), "a run that just ended".into()));
    Err(RunError::Conflict(format!(
        "A reconciliation of mapping {mapping} is already active: {other_run} (on node {other_node})"
    )))
}

/// Gives up `run`'s claim (logged, never fatal: the lease runs out anyway).
pub(super) fn release_run(inner: &Inner, run: &RunState) {
    let key = run_key(&run.mapping.name);
    match inner.coordinator.release(&key, &inner.settings.node_id) {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(run = %run.id, error = %e, "could not release the run's claim; it lapses with its lease")
        }
    }
}

/// The lease thread: every third of a lease, says this node is live and renews the claims of
/// its active runs; every hour, removes day-old done claims; until the runner stops.
pub(super) fn keep_leases(inner: &Arc<Inner>) {
    let every = RUN_LEASE / 3;
    let mut last: Option<Instant> = None;
    let mut purged: Option<Instant> = None;
    while !inner.stopping.load(Ordering::SeqCst) {
        if last.is_none_or(|t| t.elapsed() >= every) {
            renew(inner);
            last = Some(Instant::now());
        }
        if purged.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            if let Err(e) = inner.coordinator.purge_done(PURGE_OLDER_THAN) {
                tracing::warn!(error = %e, "removing old done claims failed");
            }
            purged = Some(Instant::now());
        }
        // Short naps, so shutdown never waits on this thread.
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn renew(inner: &Inner) {
    let node = inner.settings.node_id.as_str();
    if let Err(e) = inner.coordinator.heartbeat(node, NODE_LEASE) {
        tracing::warn!(error = %e, "cluster heartbeat failed");
    }
    let runs: Vec<Arc<RunState>> = inner.active.lock().values().cloned().collect();
    for run in runs {
        match inner
            .coordinator
            .renew(&run_key(&run.mapping.name), node, RUN_LEASE)
        {
            Ok(true) => {}
            // Lost (the lease ran out while this node could not renew, and another node took
            // the mapping): this run may now overlap with that one.
            Ok(false) => tracing::error!(run = %run.id, mapping = %run.mapping.name,
                "this run lost its cluster-wide claim on the mapping to another node"),
            Err(e) => tracing::warn!(run = %run.id, error = %e, "renewing the run's claim failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_another_node_runs_is_a_conflict_naming_its_run_and_node() {
        let c = Coordinator::in_process();
        claim_mapping(&c, "b", "hr", "run-b").expect("free");
        // The same node again (its map of active runs decides there): granted.
        claim_mapping(&c, "b", "hr", "run-b2").expect("the holder's own");
        let e = claim_mapping(&c, "a", "hr", "run-a").expect_err("b runs hr");
        match e {
            RunError::Conflict(m) => {
                assert!(m.contains("run-b2") && m.contains("on node b"), "{m}")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        claim_mapping(&c, "a", "other", "run-x").expect("another mapping is free");
        assert!(c.release(&run_key("hr"), "b").expect("local"));
        claim_mapping(&c, "a", "hr", "run-a").expect("released: a takes it");
    }
}
