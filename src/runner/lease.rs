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
use crate::cluster::{cancel_key, run_key, Coordinator};

/// A run claim's lease: renewed every third of it, so a node must miss two renewals in a row
/// before another node may start the mapping.
const RUN_LEASE: Duration = Duration::from_secs(60);

/// The run-claim lease in effect (a test hook shortens it, so a dead node's runs are found
/// within a test's patience).
fn run_lease() -> Duration {
    super::hooks::get().run_lease().unwrap_or(RUN_LEASE)
}

/// How often, on a shared repository, this node looks for cancel requests of its runs made on
/// other nodes.
const CANCEL_POLL: Duration = Duration::from_secs(1);

/// How long a cancel request stays readable: far longer than the running node's poll.
const CANCEL_REQUEST_LEASE: Duration = Duration::from_secs(600);

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
        .claim(&key, node, run_lease(), run_id)
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

/// Claims `mapping` for this node to take over run `run_id`, whose owner's claim is gone
/// (it died): true when this node holds it now; false when another node took it first.
pub(super) fn claim_to_adopt(inner: &Inner, mapping: &str, run_id: &str) -> Result<bool, RunError> {
    inner
        .coordinator
        .claim(
            &run_key(mapping),
            &inner.settings.node_id,
            run_lease(),
            run_id,
        )
        .map_err(|e| RunError::Internal(format!("cannot take over run {run_id}: {e}")))
}

/// Gives up `run`'s claim (logged, never fatal: the lease runs out anyway).
pub(super) fn release_run(inner: &Inner, run: &RunState) {
    release_mapping(inner, &run.mapping.name, &run.id);
}

/// Gives up this node's claim on `mapping`, taken for run `run_id`.
pub(super) fn release_mapping(inner: &Inner, mapping: &str, run_id: &str) {
    let key = run_key(mapping);
    match inner.coordinator.release(&key, &inner.settings.node_id) {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(run = %run_id, error = %e, "could not release the run's claim; it lapses with its lease")
        }
    }
}

/// Records a request to cancel `run`, which another node runs (it polls for it).
pub(super) fn request_cancel(inner: &Inner, run: &str) -> Result<(), RunError> {
    inner
        .coordinator
        .claim(
            &cancel_key(run),
            &inner.settings.node_id,
            CANCEL_REQUEST_LEASE,
            "",
        )
        .map_err(|e| RunError::Internal(format!("cannot request the cancel of {run}: {e}")))?;
    Ok(())
}

/// Cancels this node's runs that another node was asked to cancel.
fn obey_cancel_requests(inner: &Inner) {
    let runs: Vec<Arc<RunState>> = inner.active.lock().values().cloned().collect();
    for run in runs.iter().filter(|r| !r.is_canceled()) {
        match inner.coordinator.holder(&cancel_key(&run.id)) {
            Ok(Some((node, _))) => {
                tracing::info!(run = %run.id, requested_on = %node, "cancel requested on another node");
                run.cancel();
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(run = %run.id, error = %e, "reading cancel requests failed"),
        }
    }
}

/// The lease thread: every third of a lease, says this node is live, renews the claims of its
/// active runs and (shared repository) marks the runs of dead nodes failed; every second
/// (shared repository), obeys cancel requests made on other nodes; every hour, removes
/// day-old claims; until the runner stops.
pub(super) fn keep_leases(inner: &Arc<Inner>) {
    let every = run_lease() / 3;
    let mut last: Option<Instant> = None;
    let mut polled: Option<Instant> = None;
    let mut purged: Option<Instant> = None;
    while !inner.stopping.load(Ordering::SeqCst) {
        if last.is_none_or(|t| t.elapsed() >= every) {
            renew(inner);
            match super::recovery::of_dead_nodes(inner) {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "looking for runs of stopped nodes failed"),
            }
            last = Some(Instant::now());
        }
        if inner.coordinator.is_shared() && polled.is_none_or(|t| t.elapsed() >= CANCEL_POLL) {
            obey_cancel_requests(inner);
            polled = Some(Instant::now());
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
    if let Err(e) = inner.coordinator.heartbeat(node, run_lease()) {
        tracing::warn!(error = %e, "cluster heartbeat failed");
    }
    let runs: Vec<Arc<RunState>> = inner.active.lock().values().cloned().collect();
    for run in runs {
        match inner
            .coordinator
            .renew(&run_key(&run.mapping.name), node, run_lease())
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
