//! The source phase of a clustered run (`clusteredSourceReconEnabled`, reference "Clustered
//! recon"): the source ids are split into pages, each page is claimed through the cluster
//! coordinator, processed, and completed; the target phase runs once, after the last page.
//!
//! * The run's starter reads the source once (with the run's source filter), writes the run's
//!   spec (what another node needs to work on it) and offers what it read as pages of
//!   `reconSourceQueryPageSize` objects, a few pages at a time as it reads (other nodes start
//!   on the first pages meanwhile): ids for a store-backed source, read again by id when the
//!   page is processed; the objects themselves for any other source (see `offer_source`).
//! * Every node claims pages, one at a time, lowest first: the owner (starter) in this phase,
//!   the others through `runner::joining` (a `ClusterRole::Helper` run state of their own).
//!   A page goes through the ordinary pipeline (`taskThreads` workers, units of
//!   `batch_size`), which returns only once every unit of the page committed: a page is
//!   completed only after its writes are durable, so a node that dies mid-page leaves it to
//!   be redone.
//! * The page lease is renewed while the page is read. A page whose lease ran out (its node
//!   died or stalled) is claimed again and redone; links make that safe: an object whose
//!   target and link were written is found linked (CONFIRMED) the second time, so nothing is
//!   created twice. Its objects count again in the statistics, as they do in IDM.
//! * On a shared repository a node completing a page leaves two things behind, in this order:
//!   its cumulative statistics (the note `report/<node>`), then the page itself completed with
//!   the 64-bit hashes of the target ids it touched in place of its source ids. The owner shows
//!   the other nodes' reports in the live summary; after the last page it absorbs them into
//!   the run's statistics and the touched hashes of every page into the set the target phase
//!   skips, so the target phase sees what every node did.
//! * Association entries and audit events of page `p` are numbered from `(p + 1) << 32` (on a
//!   shared repository), so nodes never write over each other's; the target phase's follow
//!   the last page's range.
//! * When the owner dies, a node that helped takes the run over (`ClusterRole::Adopter`): it
//!   skips reading and offering, takes the pages left, and goes on as the owner; if the owner
//!   died while still reading the source, it reads the whole source again and offers it
//!   after the pages there are.
//! * Each node adds the objects it processed to `sourceProcessedByNode`; every completed
//!   page adds one `sourcePagePhase` sample to `durationSummary`.
//!

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;
use crate::cluster::{ClusterError, Page};
use crate::runner::state::PeerReport;

/// A page's lease: long enough that renewing (every third of it) is rare, short enough that
/// the page of a dead node is redone soon.
const PAGE_LEASE: Duration = Duration::from_secs(60);

/// The page lease in effect (a test hook shortens it).
pub(in crate::runner) fn page_lease() -> Duration {
    hooks::get().page_lease().unwrap_or(PAGE_LEASE)
}

/// How often the owner, while other nodes hold the pages left, refreshes their reports and
/// writes the run record (the record's own rhythm, see `pipeline`).
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// What another node needs to work on a clustered run's pages, or to take the run over.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runner) struct ClusterSpec {
    pub mapping: String,
    pub body: Option<Value>,
    pub analyze: bool,
    pub persist_associations: bool,
    pub user: String,
    pub schedule: Option<String>,
    pub started_ms: i64,
    /// Source objects the run's query found, and the pages they were offered in (final once
    /// `complete`: every page was offered; a node taking over a run whose starter died
    /// before that reads the source again, see `clustered_source_phase`).
    pub seen: u64,
    pub pages: u64,
    pub complete: bool,
}

/// The clustered source phase of the run's owner; returns how many source ids the run's
/// source query found, and the guard that removes the run's pages when the run's phases end.
pub(super) fn clustered_source_phase<'c, 'a>(
    ctx: &'c Ctx<'a>,
    threads: usize,
) -> Result<(u64, DropPages<'c, 'a>), RunFailure> {
    let run = ctx.run;
    let coordinator = &ctx.inner.coordinator;
    let shared = coordinator.is_shared();
    let node = ctx.inner.settings.node_id.as_str();
    let (seen, pages, cleanup) = match run.role {
        ClusterRole::Adopter {
            seen,
            pages,
            complete: true,
        } => (seen, pages, DropPages { ctx }),
        ClusterRole::Adopter {
            complete: false, ..
        } => {
            // The owner died while it read the source: which of its objects made it into a
            // page is unknown, so every object is offered again after every page there is
            // (counted, not taken from the spec, which a node dying mid-read leaves behind);
            // the pages offered twice are redone safely, and count twice, like any redo.
            let cleanup = DropPages { ctx };
            let there = coordinator.pages_offered(&run.id)?;
            let (seen, all) = offer_source(ctx, threads, there)?;
            (seen, all, cleanup)
        }
        ClusterRole::Helper => {
            return Err(RunFailure::Setup(
                "a helping node does not own the run".into(),
            ))
        }
        ClusterRole::Starter => {
            // The guard first: pages offered before a failure go with the run.
            let cleanup = DropPages { ctx };
            let (seen, pages) = offer_source(ctx, threads, 0)?;
            (seen, pages, cleanup)
        }
    };
    let lease = page_lease();
    // Nothing to take but pages left: other nodes hold them. Ask again well within a lease,
    // so a page whose node died is picked up soon after its lease runs out.
    let poll = (lease / 4).min(Duration::from_secs(1));
    let mut refreshed = Instant::now();
    while !run.is_canceled() {
        match coordinator.claim_page(&run.id, node, lease)? {
            Some(page) => process_page(ctx, threads, &page, lease)?,
            None if coordinator.pages_left(&run.id)? == 0 => break,
            None => std::thread::sleep(poll),
        }
        if shared && refreshed.elapsed() >= REFRESH_EVERY {
            refresh_peers(ctx)?;
            ctx.inner
                .store
                .put_run(&run.record(None))
                .map_err(RunFailure::store("writing the run record"))?;
            refreshed = Instant::now();
        }
    }
    if shared && !run.is_canceled() {
        gather(ctx, pages)?;
    }
    Ok((seen, cleanup))
}

/// After the last page (shared repository): the other nodes' statistics become the run's,
/// every page's touched targets join the set the target phase skips, and the target phase's
/// entries and events are numbered after the last page's.
fn gather(ctx: &Ctx<'_>, pages: u64) -> Result<(), RunFailure> {
    let run = ctx.run;
    refresh_peers(ctx)?;
    run.absorb_peers();
    let results = ctx.inner.coordinator.page_results(&run.id)?;
    let mut touched = ctx.touched.lock();
    for r in &results {
        decode_hashes(r, &mut touched).map_err(|e| {
            RunFailure::Unavailable(format!(
                "a page result of run {} is unreadable: {e}",
                run.id
            ))
        })?;
    }
    drop(touched);
    let after = page_base(pages);
    run.next_entry.fetch_max(after, Ordering::Relaxed);
    run.next_audit.fetch_max(after, Ordering::Relaxed);
    Ok(())
}

/// The first entry (and audit event) number of page `number`'s range.
fn page_base(number: u64) -> u64 {
    (number + 1) << 32
}

/// Reads the other nodes' latest reports into the run (shown in its summary).
fn refresh_peers(ctx: &Ctx<'_>) -> Result<(), RunFailure> {
    let me = ctx.inner.settings.node_id.as_str();
    let mut peers = BTreeMap::new();
    for (_, node, value) in ctx.inner.coordinator.notes(&ctx.run.id, "report/")? {
        if node == me {
            continue;
        }
        let report = parse_report(&value).map_err(|e| {
            RunFailure::Unavailable(format!(
                "the report of node {node} on run {} is unreadable: {e}",
                ctx.run.id
            ))
        })?;
        peers.insert(node, report);
    }
    ctx.run.set_peers(peers);
    Ok(())
}

/// A report note as written by `write_report`.
pub(in crate::runner) fn parse_report(value: &str) -> Result<PeerReport, String> {
    let v: Value = serde_json::from_str(value).map_err(|e| e.to_string())?;
    Ok(PeerReport {
        tally: crate::engine::tally_wire::from_json(&v["tally"])?,
        processed: v["processed"]
            .as_u64()
            .ok_or_else(|| format!("processed is not a count: {}", v["processed"]))?,
    })
}

/// Leaves this node's cumulative statistics of the run for the owner.
fn write_report(ctx: &Ctx<'_>) -> Result<(), RunFailure> {
    let node = ctx.inner.settings.node_id.as_str();
    let report = ctx.run.own_report(node);
    let value = json!({
        "processed": report.processed,
        "tally": crate::engine::tally_wire::to_json(&report.tally),
    });
    ctx.inner.coordinator.put_note(
        &ctx.run.id,
        &format!("report/{node}"),
        node,
        &value.to_string(),
    )?;
    Ok(())
}

/// A helping node's part: `first` (claimed already), then the run's pages while there are
/// pages nobody holds.
pub(super) fn help_pages(
    ctx: &Ctx<'_>,
    threads: usize,
    first: Option<Page>,
) -> Result<(), RunFailure> {
    if let Some(page) = first {
        process_page(ctx, threads, &page, page_lease())?;
    }
    take_free_pages(ctx, threads)
}

/// Takes and processes the run's pages while there are pages nobody holds.
fn take_free_pages(ctx: &Ctx<'_>, threads: usize) -> Result<(), RunFailure> {
    let run = ctx.run;
    let lease = page_lease();
    let node = ctx.inner.settings.node_id.as_str();
    while !run.is_canceled() {
        match ctx.inner.coordinator.claim_page(&run.id, node, lease)? {
            Some(page) => process_page(ctx, threads, &page, lease)?,
            None => break,
        }
    }
    Ok(())
}

/// Removes the run's pages when the phase ends, however it ends (the run is over for every
/// node: a failure or cancel is the run's, not a page's).
pub(super) struct DropPages<'c, 'a> {
    ctx: &'c Ctx<'a>,
}

impl Drop for DropPages<'_, '_> {
    fn drop(&mut self) {
        if let Err(e) = self.ctx.inner.coordinator.drop_pages(&self.ctx.run.id) {
            tracing::error!(run = %self.ctx.run.id, error = %e, "could not remove the run's pages");
        }
    }
}

/// Pages offered at a time while the source is read: other nodes start on the first pages
/// while the starter reads on, and the starter holds only these in memory.
const OFFER_CHUNK: usize = 8;

/// The starter's reading of the source: writes the run's spec, offers the objects the run's
/// source query yields as pages numbered from `first`, in chunks as they are read, and
/// completes the spec with what was offered; returns (source objects seen, pages there).
///
/// A page of a store-backed source holds ids (each node reads the objects by id, fresh and
/// cheap); a page of any other source (CSV, a connector) holds the objects themselves, as
/// read once here, since those sources have no cheap read by id and re-reading the source
/// for every page would make a run quadratic in its size. (A single-node run reads the
/// source once too, so the objects are as fresh as there.) On one node (the in-process
/// coordinator keeps pages in memory) the starter processes each chunk's pages before it
/// reads on, so memory holds one chunk; on a shared repository it reads on while other nodes
/// take the pages.
fn offer_source(ctx: &Ctx<'_>, threads: usize, first: u64) -> Result<(u64, u64), RunFailure> {
    let run = ctx.run;
    let coordinator = &ctx.inner.coordinator;
    let shared = coordinator.is_shared();
    let page_size = ctx.mapping.source_page_size.max(1);
    let by_id = ctx.source_set.as_store().is_some();
    let write_spec = |seen: u64, pages: u64, complete: bool| -> Result<(), RunFailure> {
        if !shared {
            return Ok(());
        }
        let spec = ClusterSpec {
            mapping: ctx.mapping.name.clone(),
            body: run.body.clone(),
            analyze: run.options.analyze,
            persist_associations: run.options.persist_associations,
            user: run.user.clone(),
            schedule: run.options.schedule.clone(),
            started_ms: run.started_ms,
            seen,
            pages,
            complete,
        };
        let spec = serde_json::to_string(&spec).map_err(|e| RunFailure::Setup(e.to_string()))?;
        coordinator.put_spec(&run.id, &ctx.inner.settings.node_id, &spec)?;
        Ok(())
    };
    // The spec before any page: a node that sees a page can always read it.
    write_spec(0, first, false)?;
    let mut seen = 0u64;
    let mut without_id = 0u64;
    let mut offered = first;
    let mut held = false;
    let mut page: Vec<Value> = Vec::with_capacity(page_size.min(10_000));
    let mut chunk: Vec<String> = Vec::new();
    let mut failed: Option<RunFailure> = None;
    let offer = |chunk: &mut Vec<String>, offered: &mut u64| -> Result<(), RunFailure> {
        if !chunk.is_empty() {
            coordinator.offer_pages(&run.id, *offered, chunk)?;
            *offered += chunk.len() as u64;
            chunk.clear();
        }
        Ok(())
    };
    let encode =
        |page: &[Value]| serde_json::to_string(page).map_err(|e| RunFailure::Setup(e.to_string()));
    timed_source_scan(run, &ctx.source_set, &ctx.source_filter, &mut |obj| {
        let Some(id) = obj.get("_id").and_then(Value::as_str) else {
            without_id += 1;
            return ControlFlow::Continue(());
        };
        seen += 1;
        page.push(if by_id {
            Value::String(id.to_string())
        } else {
            obj
        });
        if page.len() >= page_size {
            let done = encode(&page).and_then(|p| {
                page.clear();
                chunk.push(p);
                if chunk.len() < OFFER_CHUNK {
                    return Ok(());
                }
                offer(&mut chunk, &mut offered)?;
                if !held {
                    held = true;
                    hooks::get().hold_after_offer();
                }
                if shared {
                    Ok(())
                } else {
                    take_free_pages(ctx, threads)
                }
            });
            if let Err(e) = done {
                failed = Some(e);
                return ControlFlow::Break(());
            }
        }
        if run.is_canceled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if without_id > 0 {
        // A set that yields objects without an id is broken; the objects cannot be paged.
        return Err(RunFailure::Unavailable(format!(
            "the source {} returned {without_id} objects without an _id",
            ctx.source_set.name()
        )));
    }
    if run.is_canceled() {
        return Ok((seen, offered));
    }
    if !page.is_empty() {
        chunk.push(encode(&page)?);
    }
    offer(&mut chunk, &mut offered)?;
    write_spec(seen, offered, true)?;
    tracing::info!(run = %run.id, pages = offered, objects = seen, "clustered run: source pages offered");
    Ok((seen, offered))
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
    let mut items: Vec<Value> = serde_json::from_str(&page.payload).map_err(|e| {
        RunFailure::Setup(format!(
            "page {} of run {} is unreadable: {e}",
            page.number, run.id
        ))
    })?;
    let started = Instant::now();
    let shared = coordinator.is_shared();
    // On a shared repository: this page's entries and events get a range of their own, and
    // the targets it touches are collected apart (they become the page's result).
    let before = if shared {
        run.next_entry
            .store(page_base(page.number), Ordering::Relaxed);
        run.next_audit
            .store(page_base(page.number), Ordering::Relaxed);
        std::mem::take(&mut *ctx.touched.lock())
    } else {
        IdSet::default()
    };
    // Objects after which this page is given up (test hook: a node dying mid-page).
    let abandon_after = hooks::get()
        .abandon_page(page.number)
        .then_some(items.len() / 2);
    let mut end = PageEnd::Done;
    let mut renewed = Instant::now();
    let mut cluster_error: Option<ClusterError> = None;
    let produced = pipeline(
        ctx,
        threads,
        &mut |emit: &mut dyn FnMut(Value) -> ControlFlow<()>| {
            let mut handed = 0usize;
            page_objects(ctx, std::mem::take(&mut items), &mut |obj| {
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
    let result = if shared {
        let mut touched = ctx.touched.lock();
        let result = encode_hashes(&touched);
        touched.extend(before);
        result
    } else {
        String::new()
    };
    if run.is_canceled() {
        // Not processed to the end, so not completed: the run's pages go with the run, and a
        // helping node that stops (its server shuts down) hands the page back at once.
        if run.role == ClusterRole::Helper {
            coordinator.release_page(&run.id, page, node)?;
        }
        return Ok(());
    }
    if matches!(end, PageEnd::Done) {
        run.stats
            .time("sourcePagePhase", started.elapsed().as_nanos() as u64);
        if shared {
            // The report before the completion: once the last page is done, the owner reads
            // reports that include every completed page.
            write_report(ctx)?;
        }
    }
    match end {
        PageEnd::Done if coordinator.complete_page(&run.id, page, node, &result)? => {}
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

/// Hands the page's objects to `emit`: the objects themselves when the page holds them (read
/// once by the starter, see `offer_source`); otherwise (ids of a store-backed source) each
/// object read by id that still passes the source filter, in page order. An id gone since
/// the page was made is skipped: the source no longer has it, as in a run that read the
/// source later. A page of ids from another source (made by an older starter) is read with
/// one scan of the source that stops once the page's last id has gone by.
fn page_objects(
    ctx: &Ctx<'_>,
    items: Vec<Value>,
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<(), RunFailure> {
    let src = &ctx.source_set;
    let unreadable = |e: crate::objects::ObjectError| {
        RunFailure::Unavailable(format!("reading the source {}: {e}", src.name()))
    };
    let mut ids = Vec::with_capacity(items.len());
    let mut objects = Vec::new();
    for item in items {
        match item {
            Value::String(id) => ids.push(id),
            obj @ Value::Object(_) => objects.push(obj),
            other => {
                return Err(RunFailure::Setup(format!(
                    "a page of run {} holds neither an id nor an object: {other}",
                    ctx.run.id
                )))
            }
        }
    }
    for obj in objects {
        if emit(obj).is_break() {
            return Ok(());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    if src.as_store().is_some() {
        for id in &ids {
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

/// The touched-target hashes of a page, as its result: 16 hex digits each.
fn encode_hashes(set: &IdSet) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(set.len() * 16);
    for h in set {
        // Writing to a String cannot fail.
        let _ = write!(out, "{h:016x}");
    }
    out
}

/// Adds the hashes of a page's result to `set`.
fn decode_hashes(text: &str, set: &mut IdSet) -> Result<(), String> {
    if !text.len().is_multiple_of(16) {
        return Err(format!(
            "{} characters is not a whole number of hashes",
            text.len()
        ));
    }
    for i in (0..text.len()).step_by(16) {
        let digits = text
            .get(i..i + 16)
            .ok_or_else(|| format!("no hash at {i}"))?;
        set.insert(u64::from_str_radix(digits, 16).map_err(|e| format!("{digits}: {e}"))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_results_carry_the_touched_hashes_exactly() {
        let mut set = IdSet::default();
        for h in [0u64, 1, u64::MAX, 0xdead_beef_0000_0001] {
            set.insert(h);
        }
        let mut back = IdSet::default();
        decode_hashes(&encode_hashes(&set), &mut back).expect("decodes");
        assert_eq!(back, set);
        decode_hashes("", &mut back).expect("an empty page touched nothing");
        assert!(decode_hashes("123", &mut back).is_err());
        assert!(decode_hashes("zzzzzzzzzzzzzzzz", &mut back).is_err());
    }

    #[test]
    fn page_ranges_of_entries_never_meet() {
        assert!(page_base(0) > 1_000_000);
        assert_eq!(page_base(1) - page_base(0), 1 << 32);
    }
}
