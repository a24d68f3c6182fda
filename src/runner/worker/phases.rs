//! The order of a run: query stage, source phase, target phase, results (reference §3.7).

use super::*;

pub(super) fn execute_phases(inner: &Inner, run: &Arc<RunState>) -> Result<(), RunFailure> {
    run.set_stage(Stage::ActiveQueryEntries);
    // Implicit synchronization of one object has no run to announce (see `sync_object`); a
    // clustered run taken over from a node that died was announced by its starter.
    if !run.options.implicit && run.role == ClusterRole::Starter {
        audit_event(inner, run, "start", None);
    }
    with_ctx(inner, run, &mut |ctx, threads| run_phases(ctx, threads))
}

/// Works on the pages of a clustered run another node owns (`ClusterRole::Helper`), with the
/// same context its owner has: `first` (claimed already, so the context is built only when
/// there is a page to work on), then every page left to take.
pub(in crate::runner) fn help_clustered(
    inner: &Inner,
    run: &Arc<RunState>,
    first: crate::cluster::Page,
) -> Result<(), RunFailure> {
    debug_assert_eq!(run.role, ClusterRole::Helper);
    let mut first = Some(first);
    with_ctx(inner, run, &mut |ctx, threads| {
        help_pages(ctx, threads, first.take())
    })
}

/// The query stage: resolves the run's sets, filter and target access, builds the context
/// every phase shares, and hands it to `body` with the number of worker threads.
fn with_ctx(
    inner: &Inner,
    run: &Arc<RunState>,
    body: &mut dyn FnMut(&Ctx<'_>, usize) -> Result<(), RunFailure>,
) -> Result<(), RunFailure> {
    let mapping = run.mapping.as_ref();

    // A by-id run reads exactly the given ids from the mapping's source: the ids are its
    // query, so a body `sourceQuery` neither narrows nor redirects it (`parameters` shows
    // `sourceIds`, what actually ran).
    let by_id = matches!(run.kind, ReconKind::ById(_));
    let source_name = if by_id {
        mapping.source.as_str()
    } else {
        run.options
            .source_query
            .get("resourceName")
            .and_then(Value::as_str)
            .unwrap_or(&mapping.source)
    };
    let source_set = inner.objects.get(source_name).cloned().ok_or_else(|| {
        RunFailure::Setup(format!("source object set {source_name} is not declared"))
    })?;
    let target_set = inner.objects.get(&mapping.target).cloned().ok_or_else(|| {
        RunFailure::Setup(format!(
            "target object set {} is not declared",
            mapping.target
        ))
    })?;
    let source_q = QueryRequest::from_json(&run.options.source_query)
        .map_err(|e| RunFailure::Setup(format!("sourceQuery: {}", e.message)))?;
    let source_filter = if by_id { Filter::True } else { source_q.filter };
    // Only a full run over the whole source set saw every source; a by-id run saw its ids.
    let full_source =
        !by_id && source_name == mapping.source && matches!(source_filter, Filter::True);

    let started = Instant::now();
    let store_targets = target_set.as_store().is_some();
    let cache = if store_targets {
        None
    } else {
        Some(TargetCache::load(target_set.as_ref())?)
    };
    let target_was_empty = match &cache {
        Some(c) => c.objects.is_empty(),
        None => target_set
            .as_store()
            .map(|s| s.store().set_is_empty(&mapping.target))
            .transpose()
            .map_err(RunFailure::store("reading the target set"))?
            .unwrap_or(false),
    };
    // The target set's counts before the source phase reads any target (see `ScanPlan`).
    let counts_before_source = match target_set.as_store() {
        Some(s) => s
            .store()
            .object_counts(&mapping.target)
            .map_err(RunFailure::store("reading the target set's count"))?,
        None => None,
    };
    run.stats
        .time("targetQuery", started.elapsed().as_nanos() as u64);

    // Links are looked up per object in the ordered store rather than prefetched into
    // memory, so `progress.links.total` follows the reference's rule for links that were not
    // prefetched: "?" while running, the processed count once the run succeeds.

    let host: Arc<dyn ScriptHost> = Arc::new(StoreHost::new(inner.objects.clone()));
    let target_set_ref = target_set.clone();
    let targets = match cache {
        Some(c) => Targets::Cache(c),
        None => match target_set_ref.as_store() {
            Some(s) => Targets::Store(s),
            None => return Err(RunFailure::Setup("target set has no store".into())),
        },
    };
    let threads = mapping
        .task_threads
        .min(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
        .max(usize::from(mapping.task_threads > 0));
    // A connector-backed target is written by its set, not through the store batch: one
    // thread assesses and writes, in order (beside the thread reading the source).
    let threads = if matches!(targets, Targets::Store(_)) {
        threads
    } else {
        threads.min(1)
    };
    let ctx = Ctx {
        inner,
        run,
        mapping,
        source_set: source_set.clone(),
        target_set: target_set.clone(),
        targets,
        source_filter,
        full_source,
        target_was_empty,
        audit_all: inner.settings.audit == AuditLevel::All && !run.options.implicit,
        touched: Mutex::new(IdSet::default()),
        touched_unproven: Default::default(),
        host,
        claims: Claims::new(threads.max(1)),
        failure_log: FailureLog::new(),
        correlation_fields: correlation_fields(mapping),
        secret_attributes: target_set.secret_attributes(),
        counts_before_source,
    };
    body(&ctx, threads)
}

/// The phases after the query stage: source, target, results.
fn run_phases(ctx: &Ctx<'_>, threads: usize) -> Result<(), RunFailure> {
    let (inner, run, mapping) = (ctx.inner, ctx.run, ctx.mapping);
    // Totals are known when the query stage ends (contract §8) wherever they are cheap, so a
    // client can show a percentage during the source phase (see `query_stage_totals`).
    let background_totals = totals::query_stage_totals(ctx)?;

    // The deletion guard (see `guard`): a by-id run meets its guarded situations in the
    // source phase, so that phase is counted before anything is written.
    let guard = Guard::new(ctx)?;
    let mut planned = 0u64;
    if let (Some(g), ReconKind::ById(ids)) = (&guard, &run.kind) {
        planned += count_planned(
            ctx,
            &mut |emit: &mut dyn FnMut(String) -> ControlFlow<()>| {
                for id in ids {
                    if emit(id.clone()).is_break() {
                        break;
                    }
                }
                Ok(())
            },
            &by_id_object,
        )?;
        if let Some(m) = g.check_deletes(planned) {
            return stop(run, m);
        }
    }

    // ---- source phase ----
    run.set_stage(Stage::ActiveReconcilingSource);
    let phase_start = Instant::now();
    // A clustered run's pages (and notes) stay until its phases end, so a node taking over
    // from an owner that died in the target phase still finds what the pages left.
    let mut _pages: Option<DropPages<'_, '_>> = None;
    let seen = match &run.kind {
        ReconKind::Full if mapping.clustered && !run.options.implicit => {
            let (seen, pages) = clustered_source_phase(ctx, threads)?;
            _pages = Some(pages);
            seen
        }
        ReconKind::Full if !run.options.source_full_entry => {
            // sourceQueryFullEntry=false: the query yields ids; each object is read alone.
            let filter = ctx.source_filter.clone();
            let src = ctx.source_set.clone();
            pipeline(
                ctx,
                threads,
                &mut |emit: &mut dyn FnMut(String) -> ControlFlow<()>| {
                    timed_source_scan(run, &src, &filter, &mut |obj| match obj
                        .get("_id")
                        .and_then(Value::as_str)
                    {
                        Some(id) => emit(id.to_string()),
                        None => ControlFlow::Continue(()),
                    })
                },
                &|c, ws, unit, id: &String| {
                    let start = Instant::now();
                    let read = c.source_set.read(id);
                    unit.tally
                        .time("sourceObjectQuery", start.elapsed().as_nanos() as u64);
                    match read {
                        Ok(Some(obj)) => source_object(c, ws, unit, Some(&obj), None),
                        // Gone since the query: nothing to reconcile for it in this phase.
                        Ok(None) => Ok(()),
                        Err(e) => Err(RunFailure::Unavailable(format!("reading source {id}: {e}"))),
                    }
                },
            )?
        }
        ReconKind::Full => {
            let filter = ctx.source_filter.clone();
            let src = ctx.source_set.clone();
            pipeline(
                ctx,
                threads,
                &mut |emit: &mut dyn FnMut(Value) -> ControlFlow<()>| {
                    timed_source_scan(run, &src, &filter, emit)
                },
                &|c, ws, unit, obj: &Value| source_object(c, ws, unit, Some(obj), None),
            )?
        }
        ReconKind::ById(ids) => {
            let ids = ids.clone();
            // A target-side `performAction`: its one id is a target, assessed as the target
            // phase would.
            let process: &Process<'_, String> = match &run.options.explicit {
                Some(x) if x.target_phase => &target_id,
                _ => &by_id_object,
            };
            pipeline(
                ctx,
                0,
                &mut |emit: &mut dyn FnMut(String) -> ControlFlow<()>| {
                    for id in &ids {
                        if emit(id.clone()).is_break() {
                            break;
                        }
                    }
                    Ok(())
                },
                process,
            )?
        }
    };
    run.stats.source_total.store(seen as i64, Ordering::Relaxed);
    run.stats
        .time("sourcePhase", phase_start.elapsed().as_nanos() as u64);
    if run.is_canceled() {
        return Ok(());
    }
    if seen == 0 && run.kind == ReconKind::Full && !run.options.allow_empty_source_set {
        let m = "Cannot reconcile from an empty data source, unless allowEmptySourceSet is true.";
        tracing::warn!(run = %run.id, "{m}");
        run.fail(m, false);
        return Ok(());
    }
    if let Some(g) = &guard {
        if let Some(m) = g.check_source(ctx, seen)? {
            return stop(run, m);
        }
    }

    // The target phase counts its own targets: a count still running stops here.
    drop(background_totals);

    // ---- target phase ----
    if run.options.run_target_phase {
        run.set_stage(Stage::ActiveReconcilingTarget);
        let phase_start = Instant::now();
        let deleted_before = run.stats.deleted.load(Ordering::Relaxed);
        let target_q = QueryRequest::from_json(&run.options.target_query)
            .map_err(|e| RunFailure::Setup(format!("targetQuery: {}", e.message)))?;
        let touched = std::mem::take(&mut *ctx.touched.lock());
        let normalise = !mapping.target_ids_case_sensitive;
        let untouched = |id: &str| {
            let h = if normalise {
                id_hash(&id.to_lowercase())
            } else {
                id_hash(id)
            };
            !touched.contains(&h)
        };
        let scanned = std::cell::Cell::new(0u64);
        let tset = ctx.target_set.clone();
        let needs_objects =
            !matches!(target_q.filter, Filter::True) || mapping.valid_target.is_some();
        let plan = ScanPlan::new(ctx, ctx.counts_before_source, touched.len(), needs_objects)?;
        // The pass under way (the guard's counting pass, then the run's).
        let quota = std::cell::RefCell::new(plan.as_ref().map(|p| p.pass(ctx)));
        // Counts a target of the target query and hands it on unless the source phase saw it.
        let visit = |id: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>| {
            scanned.set(scanned.get() + 1);
            if untouched(id) {
                let flow = emit(id.to_string());
                let found_all =
                    flow.is_continue() && quota.borrow_mut().as_mut().is_some_and(|q| q.found());
                if found_all {
                    ControlFlow::Break(())
                } else {
                    flow
                }
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut untouched_targets =
            |emit: &mut dyn FnMut(String) -> ControlFlow<()>| match &ctx.targets {
                Targets::Store(s) if !needs_objects => {
                    let skip = {
                        let mut q = quota.borrow_mut();
                        *q = plan.as_ref().map(|p| p.pass(ctx));
                        q.as_mut().is_some_and(|q| q.skip())
                    };
                    if skip {
                        return Ok(());
                    }
                    s.store()
                        .scan_object_ids(&mapping.target, &mut |id| visit(id, emit))
                        .map_err(RunFailure::store("reading the target ids"))
                }
                Targets::Store(_) => tset
                    .scan(&mut |o| match o.get("_id").and_then(Value::as_str) {
                        Some(id) if target_q.filter.matches(&o) => visit(id, emit),
                        _ => ControlFlow::Continue(()),
                    })
                    .map_err(|e| {
                        RunFailure::Unavailable(format!("reading the target set: {}", e.message))
                    }),
                Targets::Cache(c) => {
                    let mut ids: Vec<&String> = c
                        .objects
                        .iter()
                        .filter(|(_, o)| target_q.filter.matches(o))
                        .map(|(k, _)| k)
                        .collect();
                    ids.sort();
                    for id in ids {
                        if visit(id, emit).is_break() {
                            break;
                        }
                    }
                    Ok(())
                }
            };
        if let Some(g) = &guard {
            planned += count_planned(ctx, &mut untouched_targets, &target_id)?;
            if let Some(m) = g.check_deletes(planned) {
                return stop(run, m);
            }
            scanned.set(0);
        }
        pipeline(ctx, threads, &mut untouched_targets, &target_id)?;
        let mut scanned = scanned.get();
        if let (Some(p), Some(q)) = (&plan, quota.borrow().as_ref()) {
            if q.stopped {
                // Every untouched target was handed on before the scan reached the end: the
                // set held what the counts said when the scan started.
                tracing::info!(run = %run.id, mapping = %mapping.name, read = scanned,
                    targets = p.objects(), "the target phase's id scan stopped early");
                scanned = p.objects();
            }
        }
        // The target total is the target set as the run found it: what the scan saw, less
        // what this run created, plus what it deleted before the scan.
        let created = run.stats.created.load(Ordering::Relaxed);
        let total = (scanned + deleted_before).saturating_sub(created);
        run.stats
            .target_total
            .store(total as i64, Ordering::Relaxed);
        run.stats
            .time("targetPhase", phase_start.elapsed().as_nanos() as u64);
    }
    if run.is_canceled() {
        return Ok(());
    }

    ctx.failure_log.close(&run.id, &mapping.name);
    run.set_stage(Stage::ActiveProcessingResults);
    if let Some(script) = mapping.result.as_ref().filter(|_| !run.options.implicit) {
        let mut ws = WorkerScripts {
            ctx: None,
            limits: inner.settings.script_limits,
            host: ctx.host.clone(),
        };
        let stats = json!({
            "global": { "reconId": run.id, "mappingName": mapping.name, "startTime": ids::iso_millis(run.started_ms) },
            "situationSummary": run.stats.situation_summary(),
            "statusSummary": run.stats.status_summary(),
        });
        let start = Instant::now();
        if let Err(e) = ws.eval(
            script,
            &[("global", &stats["global"]), ("statistics", &stats)],
        ) {
            return Err(RunFailure::Script(format!("result script failed: {e}")));
        }
        run.stats
            .time("resultScript", start.elapsed().as_nanos() as u64);
    }
    Ok(())
}

// `&String`: the pipeline hands its items (`String` ids) by reference.
#[allow(clippy::ptr_arg)]
/// One id of a by-id run: the source object, or the id the source no longer has.
fn by_id_object(
    c: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    id: &String,
) -> Result<(), RunFailure> {
    match c.source_set.read(id) {
        Ok(Some(obj)) => source_object(c, ws, unit, Some(&obj), None),
        Ok(None) => source_object(c, ws, unit, None, Some(id)),
        Err(e) => Err(RunFailure::Unavailable(format!("reading source {id}: {e}"))),
    }
}

#[allow(clippy::ptr_arg)]
/// One untouched target of the target phase.
fn target_id(
    c: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    id: &String,
) -> Result<(), RunFailure> {
    target_object(c, ws, unit, id)
}

/// Ends the run as stopped by the guard (COMPLETED_FAILED with the message, like the
/// empty-source guard: not an infrastructure failure).
fn stop(run: &RunState, message: String) -> Result<(), RunFailure> {
    tracing::warn!(run = %run.id, mapping = %run.mapping.name, "{message}");
    run.fail(message, false);
    Ok(())
}

/// Scans the source set, handing each object that passes `filter` to `emit`, and records
/// `sourceQuery`: the time the scan spends reading, without the time its objects spend being
/// reconciled inside `emit`.
pub(super) fn timed_source_scan(
    run: &RunState,
    src: &Arc<dyn ObjectSet>,
    filter: &Filter,
    emit: &mut dyn FnMut(Value) -> ControlFlow<()>,
) -> Result<(), RunFailure> {
    let read = Instant::now();
    let mut processing = 0u128;
    let r = src
        .scan(&mut |obj| {
            if !filter.matches(&obj) {
                return ControlFlow::Continue(());
            }
            let t = Instant::now();
            let flow = emit(obj);
            processing += t.elapsed().as_nanos();
            flow
        })
        .map_err(|e| RunFailure::Unavailable(format!("reading the source {}: {e}", src.name())));
    let ns = read.elapsed().as_nanos().saturating_sub(processing);
    run.stats.time("sourceQuery", ns as u64);
    r
}
