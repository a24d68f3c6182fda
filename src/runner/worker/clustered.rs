//! The source phase of a clustered run (`clusteredSourceReconEnabled`, reference "Clustered
//! recon"): the source ids are split into pages, each page is claimed through the cluster
//! coordinator, processed, and completed; the target phase runs once, after the last page.
//!
//! * The run's starter reads the source ids once (with the run's source filter) and offers
//!   them as pages of `reconSourceQueryPageSize` ids (JSON lists in the pages' payloads).
//! * One thread per node claims pages, one at a time, lowest first, and processes each
//!   through the ordinary pipeline (`taskThreads` workers, units of `batch_size`), which
//!   returns only once every unit of the page committed: a page is completed only after its
//!   writes are durable, so a node that dies mid-page leaves it to be redone.
//! * The page lease is renewed while the page is read. A page whose lease ran out (its node
//!   died or stalled) is claimed again and redone; links make that safe: an object whose
//!   target and link were written is found linked (CONFIRMED) the second time, so nothing is
//!   created twice. Its objects count again in the statistics, as they do in IDM.
//! * Each node adds the objects it processed to `sourceProcessedByNode`; every completed
//!   page adds one `sourcePagePhase` sample to `durationSummary`.
//!
//! Objects of a page are read by id from a store-backed source (point reads), and by one scan
//! of the source otherwise (a CSV file or a connector has no cheap read by id), which stops
//! once the page's last id has gone by.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::cluster::{ClusterError, Page};

/// A page's lease: long enough that renewing (every third of it) is rare, short enough that
/// the page of a dead node is redone soon.
const PAGE_LEASE: Duration = Duration::from_secs(60);

/// The page lease in effect (a test hook shortens it).
fn page_lease() -> Duration {
    hooks::get().page_lease().unwrap_or(PAGE_LEASE)
}

/// The clustered source phase; returns how many source ids the run's source query found.
pub(super) fn clustered_source_phase(ctx: &Ctx<'_>, threads: usize) -> Result<u64, RunFailure> {
    let run = ctx.run;
    let coordinator = &ctx.inner.coordinator;
    let ids = source_ids(ctx)?;
    if run.is_canceled() {
        return Ok(ids.len() as u64);
    }
    let seen = ids.len() as u64;
    let payloads = ids
        .chunks(ctx.mapping.source_page_size.max(1))
        .map(|page| serde_json::to_string(page).map_err(|e| RunFailure::Setup(e.to_string())))
        .collect::<Result<Vec<String>, RunFailure>>()?;
    drop(ids);
    let _cleanup = DropPages { ctx };
    coordinator.offer_pages(&run.id, &payloads)?;
    tracing::info!(run = %run.id, pages = payloads.len(), ids = seen, "clustered run: source pages offered");
    drop(payloads);
    let lease = page_lease();
    // Nothing to take but pages left: other nodes hold them. Ask again well within a lease,
    // so a page whose node died is picked up soon after its lease runs out.
    let poll = (lease / 4).min(Duration::from_secs(1));
    let node = ctx.inner.settings.node_id.as_str();
    while !run.is_canceled() {
        match coordinator.claim_page(&run.id, node, lease)? {
            Some(page) => process_page(ctx, threads, &page, lease)?,
            None if coordinator.pages_left(&run.id)? == 0 => break,
            None => std::thread::sleep(poll),
        }
    }
    Ok(seen)
}

/// Removes the run's pages when the phase ends, however it ends (the run is over for every
/// node: a failure or cancel is the run's, not a page's).
struct DropPages<'c, 'a> {
    ctx: &'c Ctx<'a>,
}

impl Drop for DropPages<'_, '_> {
    fn drop(&mut self) {
        if let Err(e) = self.ctx.inner.coordinator.drop_pages(&self.ctx.run.id) {
            tracing::error!(run = %self.ctx.run.id, error = %e, "could not remove the run's pages");
        }
    }
}

/// Every id the run's source query yields, in the source's order.
fn source_ids(ctx: &Ctx<'_>) -> Result<Vec<String>, RunFailure> {
    let mut ids = Vec::new();
    let mut without_id = 0u64;
    timed_source_scan(ctx.run, &ctx.source_set, &ctx.source_filter, &mut |obj| {
        match obj.get("_id").and_then(Value::as_str) {
            Some(id) => ids.push(id.to_string()),
            None => without_id += 1,
        }
        if ctx.run.is_canceled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if without_id > 0 {
        // A set that yields objects without an id is broken; the objects cannot be paged.
        return Err(RunFailure::Unavailable(format!(
            "the source {} returned {without_id} objects without an _id",
            ctx.source_set.name()
        )));
    }
    Ok(ids)
}

/// How processing a page ended.
enum PageEnd {
    /// Every object of the page committed.
    Done,
    /// Another node took the page (this node's lease ran out): it redoes it.
    Lost,
    /// Stopped on purpose (a test hook standing for a node that dies mid-page).
    Abandoned,
}

/// Processes one claimed page and completes it.
fn process_page(
    ctx: &Ctx<'_>,
    threads: usize,
    page: &Page,
    lease: Duration,
) -> Result<(), RunFailure> {
    let run = ctx.run;
    let coordinator = &ctx.inner.coordinator;
    let node = ctx.inner.settings.node_id.as_str();
    let ids: Vec<String> = serde_json::from_str(&page.payload).map_err(|e| {
        RunFailure::Setup(format!(
            "page {} of run {} is unreadable: {e}",
            page.number, run.id
        ))
    })?;
    let started = Instant::now();
    // Objects after which this page is given up (test hook: a node dying mid-page).
    let abandon_after = hooks::get()
        .abandon_page(page.number)
        .then_some(ids.len() / 2);
    let mut end = PageEnd::Done;
    let mut renewed = Instant::now();
    let mut cluster_error: Option<ClusterError> = None;
    let produced = pipeline(
        ctx,
        threads,
        &mut |emit: &mut dyn FnMut(Value) -> ControlFlow<()>| {
            let mut handed = 0usize;
            page_objects(ctx, &ids, &mut |obj| {
                if abandon_after == Some(handed) {
                    end = PageEnd::Abandoned;
                    return ControlFlow::Break(());
                }
                if renewed.elapsed() >= lease / 3 {
                    match coordinator.renew_page(&run.id, page, node, lease) {
                        Ok(true) => renewed = Instant::now(),
                        Ok(false) => {
                            end = PageEnd::Lost;
                            return ControlFlow::Break(());
                        }
                        Err(e) => {
                            cluster_error = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                }
                handed += 1;
                emit(obj)
            })
        },
        &|c, ws, unit, obj: &Value| source_object(c, ws, unit, Some(obj), None),
    )?;
    if let Some(e) = cluster_error {
        return Err(e.into());
    }
    run.add_processed_by_node(node, produced);
    if run.is_canceled() {
        // Not processed to the end, so not completed (the run's pages go with it).
        return Ok(());
    }
    match end {
        PageEnd::Done if coordinator.complete_page(&run.id, page, node)? => {
            run.stats
                .time("sourcePagePhase", started.elapsed().as_nanos() as u64);
        }
        PageEnd::Done | PageEnd::Lost => {
            tracing::warn!(run = %run.id, page = page.number, node,
                "another node took this page after its lease ran out; it redoes the page");
        }
        PageEnd::Abandoned => {
            tracing::warn!(run = %run.id, page = page.number, node,
                "test hook: page abandoned mid-way; it is redone once its lease runs out");
        }
    }
    Ok(())
}

/// Hands the page's objects that still pass the source filter to `emit`, in page order for a
/// store-backed source and in the source's order otherwise. An id gone since the ids were read
/// is skipped: the source no longer has it, as in a run that read the source later.
fn page_objects(
    ctx: &Ctx<'_>,
    ids: &[String],
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<(), RunFailure> {
    let src = &ctx.source_set;
    let unreadable = |e: crate::objects::ObjectError| {
        RunFailure::Unavailable(format!("reading the source {}: {e}", src.name()))
    };
    if src.as_store().is_some() {
        for id in ids {
            let Some(obj) = src.read(id).map_err(unreadable)? else {
                continue;
            };
            if ctx.source_filter.matches(&obj) && emit(obj).is_break() {
                break;
            }
        }
        return Ok(());
    }
    let mut wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    src.scan(&mut |obj| {
        let Some(id) = obj.get("_id").and_then(Value::as_str) else {
            return ControlFlow::Continue(());
        };
        if !wanted.remove(id) {
            return ControlFlow::Continue(());
        }
        let flow = if ctx.source_filter.matches(&obj) {
            emit(obj)
        } else {
            ControlFlow::Continue(())
        };
        if wanted.is_empty() {
            ControlFlow::Break(())
        } else {
            flow
        }
    })
    .map_err(unreadable)
}
