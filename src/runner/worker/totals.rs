//! The progress totals known before the source phase (contract §8; reference §1.5's rules).
//!
//! The source's total is counted in the query stage, before the source phase starts: the
//! by-id ids, or for a full run over the whole source the set's cheap count
//! (`ObjectSet::quick_count`: a CSV record count, the store's key count, a database count;
//! timed as `sourceQuery`). A target loaded whole by the target query counts itself.
//!
//! A store target's object count is the store's own where it keeps one (the embedded store,
//! `storage::Store::object_counts`). Otherwise it, and the mapping's link count, are a scan
//! of every key each (a million keys: over a second apiece), which the source phase does not
//! need. They run on
//! a thread of their own at the lowest priority while the source phase runs, and set their
//! total when they finish (timed as `targetQuery` and `linkQuery`), so a client sees them as
//! soon as they are known without the run waiting for them. The thread stops when the
//! target phase starts (or the run ends), which counts its own targets; a total it did not
//! reach is set when its phase ends. A total is only ever set where none is yet
//! (compare-and-swap from "unknown"), so a late count cannot overwrite the phase's.

use std::sync::atomic::{AtomicBool, AtomicI64};
use std::thread::JoinHandle;

use super::*;

/// The background counts of one run; dropping it stops them and waits for the thread.
pub(super) struct BackgroundTotals {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for BackgroundTotals {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            // The thread checks the flag at every key, so this returns promptly; a panic in
            // it only loses a progress total.
            let _ = h.join();
        }
    }
}

/// Sets the totals the query stage knows and starts the background counts (see the module
/// doc).
pub(super) fn query_stage_totals(ctx: &Ctx<'_>) -> Result<BackgroundTotals, RunFailure> {
    let run = ctx.run;
    let full = run.kind == ReconKind::Full;
    let source = match &run.kind {
        ReconKind::ById(ids) => Some(ids.len() as u64),
        ReconKind::Full if ctx.full_source => {
            let start = Instant::now();
            let n = ctx.source_set.quick_count().transpose().map_err(|e| {
                RunFailure::Unavailable(format!(
                    "counting the source {}: {e}",
                    ctx.source_set.name()
                ))
            })?;
            if n.is_some() {
                run.stats
                    .time("sourceQuery", start.elapsed().as_nanos() as u64);
            }
            n
        }
        ReconKind::Full => None,
    };
    if let Some(n) = source {
        run.stats.source_total.store(n as i64, Ordering::Relaxed);
    }

    let whole_target = QueryRequest::from_json(&run.options.target_query)
        .is_ok_and(|q| matches!(q.filter, Filter::True));
    let mut count_target = None;
    if full && run.options.run_target_phase && whole_target {
        match &ctx.targets {
            // Loaded whole by the target query above.
            Targets::Cache(c) => {
                run.stats
                    .target_total
                    .store(c.objects.len() as i64, Ordering::Relaxed);
            }
            // The embedded store keeps the set's count: no scan needed.
            Targets::Store(s) => match s
                .store()
                .object_counts(&ctx.mapping.target)
                .map_err(RunFailure::store("reading the target set's count"))?
            {
                Some(c) => run
                    .stats
                    .target_total
                    .store(c.objects as i64, Ordering::Relaxed),
                None => count_target = Some((s.store().clone(), ctx.mapping.target.clone())),
            },
        }
    }
    let mapping = ctx.mapping;
    let count_links = match (full, mapping.enable_linking, &mapping.qualifiers) {
        (true, true, Qualifiers::Static(qualifiers)) => Some((
            ctx.inner.store.clone(),
            mapping.link_type.clone(),
            qualifiers.clone(),
        )),
        _ => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    if count_target.is_none() && count_links.is_none() {
        return Ok(BackgroundTotals { stop, handle: None });
    }
    let (flag, run) = (stop.clone(), run.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("recon-totals-{}", run.id))
        .spawn(move || {
            crate::runner::priority::idle_current_thread();
            let stopped = || flag.load(Ordering::Relaxed);
            if let Some((store, set)) = count_target {
                let start = Instant::now();
                match store.count_objects_until(&set, &stopped) {
                    Ok(Some(n)) => {
                        run.stats
                            .time("targetQuery", start.elapsed().as_nanos() as u64);
                        set_unknown(&run.stats.target_total, n);
                    }
                    Ok(None) => return,
                    Err(e) => tracing::warn!(run = %run.id, "counting the target {set}: {e}"),
                }
            }
            if let Some((store, link_type, qualifiers)) = count_links {
                let mut links = 0u64;
                for q in &qualifiers {
                    let start = Instant::now();
                    match store.count_links_until(&link_type, q, &stopped) {
                        Ok(Some(n)) => links += n,
                        Ok(None) => return,
                        Err(e) => {
                            tracing::warn!(run = %run.id, "counting the links of {link_type}: {e}");
                            return;
                        }
                    }
                    run.stats
                        .time("linkQuery", start.elapsed().as_nanos() as u64);
                }
                if links > 0 {
                    set_unknown(&run.stats.links_total, links);
                }
            }
        });
    let handle = match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            // Only progress totals are lost: the phases set them when they end.
            tracing::warn!(run = %ctx.run.id, "cannot start counting the run's totals: {e}");
            None
        }
    };
    Ok(BackgroundTotals { stop, handle })
}

/// Sets `total` to `n` unless it is already known.
fn set_unknown(total: &AtomicI64, n: u64) {
    let _ = total.compare_exchange(-1, n as i64, Ordering::Relaxed, Ordering::Relaxed);
}
