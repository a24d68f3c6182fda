//! Units of work: streaming items to the worker threads, staging each object under its
//! claims, and committing units (compare-and-swap, with redo on a concurrent change).

use super::*;

/// Streams items from `produce` to `threads` workers (inline when 0) in units of `batch_size`,
/// and commits each unit. Returns how many items were produced.
pub(super) fn pipeline<'a, T: ItemId + Send>(
    ctx: &Ctx<'a>,
    threads: usize,
    produce: &mut Produce<'_, T>,
    process: &Process<'a, T>,
) -> Result<u64, RunFailure> {
    let batch_size = ctx.inner.settings.batch_size.max(1);
    let mut produced = 0u64;
    let failure: Mutex<Option<RunFailure>> = Mutex::new(None);
    let new_worker = |slot: usize| Worker {
        slot,
        ws: WorkerScripts {
            ctx: None,
            limits: ctx.inner.settings.script_limits,
            host: ctx.host.clone(),
        },
    };
    if threads == 0 {
        let mut w = new_worker(0);
        with_commit_stage(ctx, |stage| {
            let mut buf = Vec::with_capacity(batch_size);
            let res = produce(&mut |item| {
                produced += 1;
                buf.push(item);
                if buf.len() >= batch_size {
                    let items = std::mem::take(&mut buf);
                    if let Err(e) = run_unit_on(ctx, &mut w, stage, items, process) {
                        *failure.lock() = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                if ctx.run.is_canceled() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            res?;
            if let Some(e) = failure.lock().take() {
                return Err(e);
            }
            run_unit_on(ctx, &mut w, stage, buf, process)?;
            match stage {
                Some(s) => s.finish(ctx, &mut w, process),
                None => Ok(()),
            }
        })?;
        return Ok(produced);
    }
    let (tx, rx) = mpsc::sync_channel::<Vec<T>>(threads * 2);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| -> Result<(), RunFailure> {
        for slot in 0..threads {
            let rx = &rx;
            let failure = &failure;
            let new_worker = &new_worker;
            scope.spawn(move || {
                let mut w = new_worker(slot);
                // A run into a database table commits on a stage of its own (one worker).
                let ended = with_commit_stage(ctx, |stage| {
                    loop {
                        let unit = rx.lock().recv();
                        let Ok(items) = unit else { break };
                        // After a cancel or a failure, keep draining so the producer never
                        // blocks.
                        if ctx.run.is_canceled() || failure.lock().is_some() {
                            continue;
                        }
                        // A panic (a bug) fails the run instead of killing this thread,
                        // which would leave the producer blocked on a full channel.
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                run_unit_on(ctx, &mut w, stage, items, process)
                            }));
                        let error = match outcome {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(e),
                            Err(p) => {
                                Some(RunFailure::Panic(crate::runner::panic_message(p.as_ref())))
                            }
                        };
                        if let Some(e) = error {
                            ctx.claims.end(w.slot);
                            ctx.claims.poison();
                            *failure.lock() = Some(e);
                        }
                    }
                    match stage {
                        Some(s) if failure.lock().is_none() => s.finish(ctx, &mut w, process),
                        _ => Ok(()),
                    }
                });
                // The commit stage's failure is the cause of any the assessing side saw.
                if let Err(e) = ended {
                    ctx.claims.poison();
                    *failure.lock() = Some(e);
                }
            });
        }
        let mut buf = Vec::with_capacity(batch_size);
        let res = produce(&mut |item| {
            produced += 1;
            buf.push(item);
            if buf.len() >= batch_size
                && tx
                    .send(std::mem::replace(&mut buf, Vec::with_capacity(batch_size)))
                    .is_err()
            {
                return ControlFlow::Break(());
            }
            if ctx.run.is_canceled() || failure.lock().is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if !buf.is_empty() && !ctx.run.is_canceled() {
            let _ = tx.send(buf);
        }
        drop(tx);
        res
    })?;
    if let Some(e) = failure.lock().take() {
        return Err(e);
    }
    Ok(produced)
}

/// Runs one unit: staged and handed to the commit stage when there is one, else staged and
/// committed here.
fn run_unit_on<'a, T: ItemId>(
    ctx: &Ctx<'a>,
    w: &mut Worker,
    stage: Option<&CommitStage<'_, T>>,
    items: Vec<T>,
    process: &Process<'a, T>,
) -> Result<(), RunFailure> {
    match stage {
        Some(s) => run_unit_pipelined(ctx, w, s, items, process),
        None => run_unit(ctx, w, items, process),
    }
}

/// Processes the items of one unit and commits them. An object is kept in the unit only once
/// its claims are taken (see `claims`); otherwise the unit commits what it has and the object
/// is assessed again.
pub(super) fn run_unit<'a, T: ItemId>(
    ctx: &Ctx<'a>,
    w: &mut Worker,
    items: Vec<T>,
    process: &Process<'a, T>,
) -> Result<(), RunFailure> {
    let mut unit = Unit::new(ctx.claims.owner());
    let mut pending: Vec<&T> = Vec::with_capacity(items.len());
    // A managed.json target commits each object with its link at once, so the objects after
    // it see it (a relationship pointing at it, a correlation), as when it was written
    // directly through the set.
    let one_by_one = ctx.target_set.managed().is_some();
    for item in &items {
        if ctx.run.is_canceled() {
            break;
        }
        stage(ctx, w, &mut unit, &mut pending, item, process)?;
        if one_by_one {
            flush(ctx, w, &mut unit, &mut pending, process)?;
        }
    }
    flush(ctx, w, &mut unit, &mut pending, process)
}

/// Stages one object into `unit` with its claims taken; on a refused claim, drops the
/// object's work, commits the unit (so this worker holds nothing while it waits), waits for
/// the other unit if needed, and assesses the object again against committed state.
pub(super) fn stage<'a, 'i, T: ItemId>(
    ctx: &Ctx<'a>,
    w: &mut Worker,
    unit: &mut Unit,
    pending: &mut Vec<&'i T>,
    item: &'i T,
    process: &Process<'a, T>,
) -> Result<(), RunFailure> {
    if !matches!(ctx.targets, Targets::Store(_)) {
        // A connector-backed target set is written by the set (in a batch at commit, see
        // `batched`), not through the store batch, and read from the run's snapshot, so its
        // runs stay on one thread with no claims (see `execute_phases`).
        stage_alone(ctx, w, unit, item, process)?;
        keep(ctx, unit, pending, item);
        return Ok(());
    }
    for attempt in 1..=CLAIM_ATTEMPTS {
        let epoch = ctx.claims.begin(w.slot);
        let mark = unit.mark();
        let (processed, observed) = ChangeHook::hold(|| process(ctx, &mut w.ws, unit, item));
        unit.observed.extend(observed);
        if let Err(e) = processed {
            ctx.claims.end(w.slot);
            return Err(e);
        }
        let keys = unit.new_keys(&mark);
        let claimed = ctx.claims.claim(unit.owner, &keys, epoch, &mut unit.held);
        ctx.claims.end(w.slot);
        unit.keys.truncate(mark.keys);
        match claimed {
            Ok(()) => {
                keep(ctx, unit, pending, item);
                return Ok(());
            }
            Err(_) if attempt == CLAIM_ATTEMPTS => {
                let failure = ObjectFailure::Conflict(
                    "other objects of this run kept changing the same target; not applied".into(),
                );
                unit.fail_since(&mark, item.item_id(), &failure.to_string());
                keep(ctx, unit, pending, item);
                return Ok(());
            }
            Err(refusal) => {
                unit.truncate(&mark);
                flush(ctx, w, unit, pending, process)?;
                if let Refusal::Other(key) = refusal {
                    ctx.claims.wait_released(key);
                }
            }
        }
    }
    Ok(())
}

/// Keeps a staged object in the unit (and in the commit log's order, when it is on).
fn keep<'i, T: ItemId>(ctx: &Ctx<'_>, unit: &mut Unit, pending: &mut Vec<&'i T>, item: &'i T) {
    if ctx.inner.commit_log.get().is_some() {
        unit.objects.push(item.item_id());
    }
    pending.push(item);
}

/// Commits the unit and starts a new one. If the store refuses the batch (an object changed
/// since it was read: a REST write, another run), nothing of it was written: each pending
/// object is then re-read, re-assessed and committed on its own.
pub(super) fn flush<'a, T: ItemId>(
    ctx: &Ctx<'a>,
    w: &mut Worker,
    unit: &mut Unit,
    pending: &mut Vec<&T>,
    process: &Process<'a, T>,
) -> Result<(), RunFailure> {
    let done = std::mem::replace(unit, Unit::new(ctx.claims.owner()));
    let items = std::mem::take(pending);
    if let Err(refused) = commit(ctx, done)? {
        ctx.claims.abort(&refused.unit.held);
        let conflict = refused.conflict;
        tracing::debug!(run = %ctx.run.id, %conflict, "a unit met a concurrent change; its objects are redone one by one");
        for item in items {
            redo_alone(ctx, w, item, process)?;
        }
    }
    Ok(())
}

/// Re-assesses one object and commits it alone, retrying (bounded) while the store reports
/// a concurrent change. After the last refusal the object is recorded as failed with the
/// reason, from that last assessment and still under its claims, so the failed entries
/// describe exactly what was refused at the point where they commit (its writes dropped).
pub(super) fn redo_alone<'a, T: ItemId>(
    ctx: &Ctx<'a>,
    w: &mut Worker,
    item: &T,
    process: &Process<'a, T>,
) -> Result<(), RunFailure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut unit = Unit::new(ctx.claims.owner());
        let mut pending = Vec::with_capacity(1);
        stage(ctx, w, &mut unit, &mut pending, item, process)?;
        let Refused { conflict, mut unit } = match commit(ctx, unit)? {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        if attempt < CAS_ATTEMPTS {
            ctx.claims.abort(&unit.held);
            continue;
        }
        let failure = ObjectFailure::Conflict(format!(
            "the object kept changing concurrently; not applied ({conflict})"
        ));
        unit.fail_since(&Mark::start(), item.item_id(), &failure.to_string());
        // No data write is left, so the store cannot refuse it again.
        return commit(ctx, unit)?.map_err(|refused| RunFailure::Store {
            context: "writing a failed entry".into(),
            source: StoreError::Conflict(refused.conflict),
        });
    }
}

/// A unit the store refused: nothing of it was written; it still holds its claims (the
/// caller releases them, or commits a failure record under them).
pub(super) struct Refused {
    pub(super) conflict: String,
    pub(super) unit: Unit,
}

/// Commits a unit (see `commit_unit`), then reports the changes observed sets reported while
/// its objects were processed, whatever the outcome: those writes were made through the
/// sets, not the batch, so they stand even when the batch is refused.
pub(super) fn commit(ctx: &Ctx<'_>, mut unit: Unit) -> Result<Result<(), Refused>, RunFailure> {
    let observed = std::mem::take(&mut unit.observed);
    let result = settle_unit(ctx, &mut unit).and_then(|()| record_unit(ctx, unit));
    notify_observed(ctx, &observed);
    result
}

/// `commit` of a unit whose target writes `settle_unit` already made (the commit stage's
/// second half, see `commit_stage`).
pub(super) fn commit_settled(
    ctx: &Ctx<'_>,
    mut unit: Unit,
) -> Result<Result<(), Refused>, RunFailure> {
    let observed = std::mem::take(&mut unit.observed);
    let result = record_unit(ctx, unit);
    notify_observed(ctx, &observed);
    result
}

pub(super) fn notify_observed(ctx: &Ctx<'_>, observed: &[(String, String)]) {
    for (set, id) in observed {
        ctx.inner.objects.changes.notify(set, id);
    }
}

/// The first half of a commit: a connector-backed target's batched writes (see `batched`),
/// after the test hook that holds a unit before it writes anything.
pub(super) fn settle_unit(ctx: &Ctx<'_>, unit: &mut Unit) -> Result<(), RunFailure> {
    hooks::get().hold_before_write(
        &mut unit
            .entries
            .iter()
            .chain(unit.staged.iter().flat_map(Staged::entries))
            .filter_map(|e| e.target_id.clone().or_else(|| e.source_id.clone())),
    );
    settle(ctx, unit)
}

/// The second half of a commit (after `settle_unit`): data batch first (atomic: targets +
/// index entries + links, checked by compare-and-swap), then association entries and audit
/// events, then counters. Returns `Ok(Err(refused))` when the store refused the batch: nothing
/// written, the unit handed back with its claims still held.
fn record_unit(ctx: &Ctx<'_>, mut unit: Unit) -> Result<Result<(), Refused>, RunFailure> {
    let run = ctx.run;
    let batch = std::mem::take(&mut unit.batch);
    let applied = match ctx.inner.commit_log.get() {
        None => ctx.inner.store.apply(batch),
        Some(log) => {
            let phase = match run.stage() {
                Stage::ActiveReconcilingTarget => "target",
                _ => "source",
            };
            log.around(&run.id, phase, &unit.objects, || {
                ctx.inner.store.apply(batch)
            })
        }
    };
    match applied {
        Ok(()) => ctx.claims.commit(&unit.held),
        Err(StoreError::Conflict(conflict)) => {
            return Ok(Err(Refused { conflict, unit }));
        }
        Err(e) => {
            ctx.claims.abort(&unit.held);
            return Err(RunFailure::store("writing targets and links")(e));
        }
    }
    if !unit.entries.is_empty() {
        let first = run
            .next_entry
            .fetch_add(unit.entries.len() as u64, Ordering::Relaxed);
        let mut items = ItemBatch::default();
        for (i, e) in unit.entries.iter().enumerate() {
            items
                .put_entry(run.seq, first + i as u64, e)
                .map_err(RunFailure::store("encoding an association entry"))?;
        }
        ctx.inner
            .store
            .apply_entries(items)
            .map_err(RunFailure::store("writing association entries"))?;
    }
    if !unit.audits.is_empty() && run.options.implicit {
        ctx.inner
            .store
            .append_sync_audit(&unit.audits)
            .map_err(RunFailure::store("writing sync audit events"))?;
    } else if !unit.audits.is_empty() {
        let first = run
            .next_audit
            .fetch_add(unit.audits.len() as u64, Ordering::Relaxed);
        let mut items = ItemBatch::default();
        for (i, e) in unit.audits.iter().enumerate() {
            items
                .put_audit(run.seq, first + i as u64, e)
                .map_err(RunFailure::store("encoding an audit event"))?;
        }
        ctx.inner
            .store
            .apply_audit(items)
            .map_err(RunFailure::store("writing audit events"))?;
    }
    if !unit.touched.is_empty() {
        ctx.touched.lock().extend(unit.touched.iter().copied());
    }
    if !unit.failures.is_empty() {
        // A failed operation may leave a touched hash without its target (`ScanPlan`).
        ctx.touched_unproven.store(true, Ordering::Relaxed);
    }
    for o in &unit.outcomes {
        unit.tally.record(o);
    }
    for (id, reason) in &unit.failures {
        ctx.failure_log
            .warn(&ctx.run.id, &ctx.mapping.name, id, reason);
    }
    if run.options.implicit {
        // One object: its caller (implicit sync, performAction) reports the reasons.
        run.object_failures
            .lock()
            .extend(unit.failures.iter().map(|(_, r)| r.clone()));
    }
    run.stats.merge(&unit.tally);
    finish_managed(ctx, &unit.managed);
    // A reconciliation into a managed set synchronizes the objects it changed to their own
    // mappings (implicit synchronization), once their unit committed.
    for id in &unit.changed {
        ctx.inner.objects.changes.notify(&ctx.mapping.target, id);
    }
    // Every few seconds the ACTIVE record is refreshed, so a run cut off by a crash still
    // shows how far it got.
    let now = ids::now_millis();
    let last = run.last_snapshot_ms.load(Ordering::Relaxed);
    if now - last > 2000
        && !run.options.implicit
        && run.role != ClusterRole::Helper
        && run
            .last_snapshot_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        ctx.inner
            .store
            .put_run(&run.record(None))
            .map_err(RunFailure::store("writing the run record"))?;
    }
    Ok(Ok(()))
}

/// What follows the committed writes staged through a managed.json target (reverse
/// relationships, post hooks): the writes stay, a failure is logged naming the object.
fn finish_managed(ctx: &Ctx<'_>, staged: &[crate::managed::Staged]) {
    if staged.is_empty() {
        return;
    }
    let Some(m) = ctx.target_set.managed() else {
        tracing::error!(set = %ctx.mapping.target, "writes were staged through a managed set that is not one");
        return;
    };
    for s in staged {
        if let Err(e) = m.finish(s) {
            tracing::warn!(run = %ctx.run.id, mapping = %ctx.mapping.name, object = %s.id, error = %e, "after writing {}/{}: {e}", ctx.mapping.target, s.id);
        }
    }
}
