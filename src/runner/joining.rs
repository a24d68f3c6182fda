//! Working on other nodes' clustered runs (shared repository only): the join thread.
//!
//! About once a second the thread lists the clustered runs in progress (those with a spec in
//! the coordinator, `worker::ClusterSpec`) and, for each run this node does not own:
//! * while the run's owner holds its claim on the mapping, and pages are left, it takes pages
//!   as a `ClusterRole::Helper` (one run state per run, kept while the run lasts, so its
//!   report stays cumulative) until none is free;
//! * when no live claim holds the run any more (its owner died; or this node restarted and
//!   the claim is its own previous life's), it claims the mapping for the run and takes the
//!   run over as its owner (`ClusterRole::Adopter`), seeded with its own report (what it did
//!   as a helper, page by completed page);
//!   the pages left, the target phase and the completed record are then this node's;
//! * a run whose record says it ended while its pages are still there (it was marked failed)
//!   gets its pages removed.
//!
//! The thread helps one run at a time, on its own thread at the runs' priority; helping is
//! not counted in `maxConcurrentRuns` (the owner's run is).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::state::{ClusterRole, ReconKind, RunState};
use super::worker::{self, ClusterSpec};
use super::{lease, Inner, RunError, Runner, StartRequest};

/// How often the thread looks for clustered runs to join.
const JOIN_POLL: Duration = Duration::from_secs(1);

/// The join thread: until the runner stops.
pub(super) fn join_loop(inner: &Arc<Inner>) {
    let mut helped: HashMap<String, Arc<RunState>> = HashMap::new();
    while !inner.stopping.load(Ordering::SeqCst) {
        let started = Instant::now();
        if let Err(e) = round(inner, &mut helped) {
            tracing::warn!(error = %e, "looking for clustered runs to join failed");
        }
        // Short naps, so shutdown never waits on this thread.
        while started.elapsed() < JOIN_POLL && !inner.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One look at the clustered runs in progress.
fn round(inner: &Arc<Inner>, helped: &mut HashMap<String, Arc<RunState>>) -> Result<(), RunError> {
    let coordinator = &inner.coordinator;
    let unavailable = |e: crate::cluster::ClusterError| RunError::Internal(e.to_string());
    let runs = coordinator.clustered_runs().map_err(unavailable)?;
    helped.retain(|id, _| runs.contains(id));
    for id in runs {
        if inner.stopping.load(Ordering::SeqCst) {
            break;
        }
        if inner.active.lock().values().any(|r| r.id == id) {
            continue; // this node owns it
        }
        let Some(spec) = coordinator.spec(&id).map_err(unavailable)? else {
            continue; // it just ended
        };
        let spec: ClusterSpec = match serde_json::from_str(&spec) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(run = %id, error = %e, "the spec of a clustered run is unreadable; this node cannot join it");
                continue;
            }
        };
        let Some(mapping) = inner.mappings.get(&spec.mapping).filter(|m| m.clustered) else {
            tracing::debug!(run = %id, mapping = %spec.mapping, "not a clustered mapping here; not joining");
            continue;
        };
        let Some(seq) = Runner::seq_of(&id) else {
            tracing::error!(run = %id, "a clustered run's id has no sequence number; not joining");
            continue;
        };
        let Some(record) = inner.store.get_run(seq)?.filter(|r| r.id == id) else {
            continue;
        };
        if record.completed {
            // Marked failed (its node restarted alone, or it failed to finish): nobody works
            // on it any more.
            tracing::info!(run = %id, "removing the pages of a clustered run that ended");
            coordinator.drop_pages(&id).map_err(unavailable)?;
            helped.remove(&id);
            continue;
        }
        let holder = coordinator
            .holder(&crate::cluster::run_key(&spec.mapping))
            .map_err(unavailable)?;
        let me = inner.settings.node_id.as_str();
        match holder {
            // Its owner runs it (a claim of this node's previous life is no owner).
            Some((node, run)) if run == id && node != me => {
                // A page first: the run's context (a connector-backed target set is read
                // into memory) is built only when there is work.
                let page = coordinator
                    .claim_page(&id, me, worker::page_lease())
                    .map_err(unavailable)?;
                if let Some(page) = page {
                    // One helper state per run while it lasts, so its report stays
                    // cumulative.
                    let helper = match helped.get(&id) {
                        Some(h) => h.clone(),
                        None => {
                            let h =
                                Arc::new(run_state(&id, seq, mapping, &spec, ClusterRole::Helper)?);
                            helped.insert(id.clone(), h.clone());
                            h
                        }
                    };
                    help(inner, &helper, page);
                }
            }
            // Another run of the mapping holds the claim (it started after this run's owner
            // died and before any node took this one over): this one cannot go on.
            Some((_, run)) if run != id => {
                let why = format!(
                    "another run of mapping {} started before a node took it over",
                    spec.mapping
                );
                super::recovery::give_up_clustered(inner, record, &why)?;
                helped.remove(&id);
            }
            _ => {
                adopt(inner, &id, seq, mapping, &spec)?;
                helped.remove(&id);
            }
        }
    }
    Ok(())
}

/// The run state of a clustered run another node started, as this node sees it.
fn run_state(
    id: &str,
    seq: u64,
    mapping: &Arc<crate::mapping::Mapping>,
    spec: &ClusterSpec,
    role: ClusterRole,
) -> Result<RunState, RunError> {
    let req = StartRequest {
        mapping: spec.mapping.clone(),
        kind: ReconKind::Full,
        body: spec.body.clone(),
        analyze: spec.analyze,
        persist_associations: spec.persist_associations,
        user: spec.user.clone(),
        schedule: spec.schedule.clone(),
    };
    let options = worker::effective_options(mapping, &req)?;
    Ok(RunState::new(
        id.to_string(),
        seq,
        mapping.clone(),
        ReconKind::Full,
        options,
        spec.user.clone(),
    )
    .in_role(role, spec.started_ms)
    .with_body(spec.body.clone()))
}

/// Works on `page` and then the run's free pages until none is left to take.
fn help(inner: &Inner, helper: &Arc<RunState>, page: crate::cluster::Page) {
    *inner.helping.lock() = Some(helper.clone());
    if inner.stopping.load(Ordering::SeqCst) {
        helper.cancel();
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        worker::help_clustered(inner, helper, page)
    }));
    *inner.helping.lock() = None;
    match outcome {
        Ok(Ok(())) => {}
        // The page this node held is redone by another node once its lease runs out.
        Ok(Err(e)) => {
            tracing::warn!(run = %helper.id, error = %e, "working on another node's clustered run failed; its page is left to the others")
        }
        Err(p) => {
            tracing::error!(run = %helper.id, panic = %super::panic_message(p.as_ref()), "working on another node's clustered run panicked; its page is left to the others")
        }
    }
}

/// Takes over a clustered run whose owner is gone: claims its mapping, then runs it as its
/// owner from where the pages are.
fn adopt(
    inner: &Arc<Inner>,
    id: &str,
    seq: u64,
    mapping: &Arc<crate::mapping::Mapping>,
    spec: &ClusterSpec,
) -> Result<(), RunError> {
    if !lease::claim_to_adopt(inner, &spec.mapping, id)? {
        return Ok(()); // another node took it over
    }
    // Read again under the claim: a run that ended meanwhile stays ended.
    if inner
        .store
        .get_run(seq)?
        .filter(|r| r.id == id)
        .is_none_or(|r| r.completed)
    {
        lease::release_mapping(inner, &spec.mapping, id);
        return Ok(());
    }
    let role = ClusterRole::Adopter {
        seen: spec.seen,
        pages: spec.pages,
        complete: spec.complete,
    };
    let run = Arc::new(run_state(id, seq, mapping, spec, role)?);
    // What this node reported as a helper (of the pages it completed, in this life or a
    // previous one) is the owner's own part now; the other nodes' reports are its peers'.
    let me = inner.settings.node_id.as_str();
    let name = format!("report/{me}");
    let notes = inner
        .coordinator
        .notes(id, &name)
        .map_err(|e| RunError::Internal(format!("reading this node's report on {id}: {e}")))?;
    if let Some((_, _, value)) = notes.iter().find(|(n, _, _)| *n == name) {
        let mine = worker::parse_report(value).map_err(|e| {
            RunError::Internal(format!("this node's report on run {id} is unreadable: {e}"))
        })?;
        run.stats.merge(&mine.tally);
        run.add_processed_by_node(me, mine.processed);
    }
    {
        let mut active = inner.active.lock();
        if active.contains_key(&spec.mapping) {
            drop(active);
            lease::release_mapping(inner, &spec.mapping, id);
            return Err(RunError::Conflict(format!(
                "cannot take over run {id}: another run of mapping {} is active here",
                spec.mapping
            )));
        }
        active.insert(spec.mapping.clone(), run.clone());
    }
    tracing::warn!(run = %id, mapping = %spec.mapping, "the node running this clustered run stopped; this node takes it over");
    inner.launch(&run)
}
