//! The commit stage of a run into a connector-backed target that takes batched writes (a
//! database table, see `batched`): three threads in a row. The assessing thread stages unit
//! n+2 while a database thread writes unit n+1 to the target (`write_batch`, one transaction)
//! and a store thread writes unit n's links, entries and audit events to the store. The run
//! then costs about the longest of assessment, database writes and store writes instead of
//! their sum.
//!
//! Invariants:
//! * Units commit one at a time in the order they were staged: each of the two committing
//!   threads takes them in order from a bounded channel (so at most `DEPTH` units wait before
//!   each, and memory stays bounded), and a unit goes to the store thread only after its
//!   database batch was written: a link is never stored before its target (the write
//!   discipline of a connector target). A unit counts as committed (its claims released)
//!   once the store thread wrote it.
//! * An assessment never decides on state an uncommitted unit is about to change: every
//!   object takes its claim keys (`runner::claims`: its source, each target it reads, links
//!   or writes, its correlation terms) as on a store-backed target. A key held by a unit not
//!   yet committed, or committed after the object's reads began, drops the object's work; the
//!   object is assessed again once that unit committed (the staged unit goes first). So two
//!   sources writing the same target id, or a target linked by unit n that unit n+1 finds,
//!   meet exactly as they would one unit after the other.
//! * Pipelined only where every read of an assessment comes from the store (links) or from
//!   the run's snapshot of the target set: a set that answers correlation queries itself
//!   (`evaluates_queries`) would not show unit n's writes to unit n+1 yet, so it commits in
//!   line as before.
//! * A failure of the run in the commit stage (the target's batch write failing as a whole,
//!   a store error, a panic) stops the assessing side at its next object: the run ends FAILED
//!   with that failure. No unit after the failed one is recorded in the store. A database
//!   failure of unit n+1 still lets unit n (already in the database) be recorded; a store
//!   failure of unit n may come after unit n+1's rows were written, which are then left
//!   without links, as after a crash between a target write and its link (the next run
//!   correlates them, or fails their CREATE as a duplicate).
//! * A unit the store refuses (a concurrent change: a REST link write) wrote nothing to the
//!   store: its objects are assessed and committed again alone on the assessing thread, once
//!   every unit before them committed (`finish`; a sync request passes both threads).
//! * Cancel: the assessing side stops staging; units already staged commit, as before.

use std::sync::atomic::AtomicBool;

use super::*;

/// Units staged ahead of the one being committed.
const DEPTH: usize = 1;

enum Msg<T> {
    /// A unit to commit, with the items it kept (assessed again if the store refuses it).
    Unit(Box<Unit>, Vec<T>),
    /// Answered once every unit sent before it has been committed (or dropped).
    Sync(mpsc::SyncSender<()>),
}

/// Shared by the assessing thread and the committing thread.
struct Shared<T> {
    failed: AtomicBool,
    failure: Mutex<Option<RunFailure>>,
    /// Items of units the store refused, to be assessed again (see the module doc).
    refused: Mutex<Vec<T>>,
}

/// The assessing thread's end of the commit stage.
pub(super) struct CommitStage<'s, T> {
    tx: mpsc::SyncSender<Msg<T>>,
    shared: &'s Shared<T>,
}

impl Ctx<'_> {
    /// Whether this run commits its units on a commit stage (see the module doc).
    pub(super) fn pipelined_commits(&self) -> bool {
        self.batched_writes() && !self.target_set.evaluates_queries()
    }
}

/// Runs `body` (the assessing side) with a commit stage when the run pipelines its commits
/// (else with None), and returns the first failure of either side.
pub(super) fn with_commit_stage<'a, T: ItemId + Send>(
    ctx: &Ctx<'a>,
    body: impl FnOnce(Option<&CommitStage<'_, T>>) -> Result<(), RunFailure>,
) -> Result<(), RunFailure> {
    if !ctx.pipelined_commits() {
        return body(None);
    }
    let shared = Shared {
        failed: AtomicBool::new(false),
        failure: Mutex::new(None),
        refused: Mutex::new(Vec::new()),
    };
    let (tx, rx) = mpsc::sync_channel::<Msg<T>>(DEPTH);
    let assessed = std::thread::scope(|scope| {
        let shared = &shared;
        scope.spawn(move || committer(ctx, rx, shared));
        // Dropping the stage at the end of `body` closes the channel; the scope then waits
        // for the committing thread to finish what was sent.
        body(Some(&CommitStage { tx, shared }))
    });
    // The commit stage's failure is the cause; the assessing side only stopped because of it.
    if let Some(e) = shared.failure.lock().take() {
        return Err(e);
    }
    assessed
}

/// The committing side: two threads in a row, each taking units in staging order. This one
/// writes each unit's target batch (`settle_unit`) and hands the unit on; the second
/// (`recorder`) writes its links, entries and audit events to the store. So unit n's store
/// write overlaps unit n+1's database write, and a link is still stored only after its
/// target was written.
fn committer<T: ItemId + Send>(ctx: &Ctx<'_>, rx: mpsc::Receiver<Msg<T>>, shared: &Shared<T>) {
    let (store_tx, store_rx) = mpsc::sync_channel::<Msg<T>>(DEPTH);
    std::thread::scope(|scope| {
        scope.spawn(move || recorder(ctx, store_rx, shared));
        for msg in rx {
            let (unit, items) = match msg {
                // Answered by the recorder, once the units before it are in the store.
                Msg::Sync(ack) => {
                    let _ = store_tx.send(Msg::Sync(ack));
                    continue;
                }
                Msg::Unit(unit, items) => (unit, items),
            };
            // After a failure nothing more is written: later units were assessed on state the
            // failed unit did not produce.
            if shared.failed.load(Ordering::SeqCst) {
                ctx.claims.abort(&unit.held);
                continue;
            }
            let mut unit = unit;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                settle_unit(ctx, &mut unit)
            }));
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => {
                    notify_observed(ctx, &unit.observed);
                    Some(e)
                }
                Err(p) => Some(RunFailure::Panic(crate::runner::panic_message(p.as_ref()))),
            };
            match error {
                None => {
                    if store_tx.send(Msg::Unit(unit, items)).is_err() {
                        // The recorder is gone only after a panic it could not contain.
                        fail(
                            ctx,
                            shared,
                            RunFailure::Panic("the store stage stopped".into()),
                        );
                    }
                }
                Some(e) => fail(ctx, shared, e),
            }
        }
        // Closing the channel lets the recorder finish what it was sent (the scope waits for
        // it).
        drop(store_tx);
    });
}

/// The store half of the committing side: records each settled unit in order. After a
/// failure of its own it records nothing more; a failure of the database half does not stop
/// it from recording the units settled before that failure (their targets are written).
fn recorder<T: ItemId>(ctx: &Ctx<'_>, rx: mpsc::Receiver<Msg<T>>, shared: &Shared<T>) {
    let mut failed = false;
    for msg in rx {
        let (unit, items) = match msg {
            Msg::Sync(ack) => {
                let _ = ack.send(());
                continue;
            }
            Msg::Unit(unit, items) => (*unit, items),
        };
        if failed {
            ctx.claims.abort(&unit.held);
            continue;
        }
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit_settled(ctx, unit)));
        let error = match outcome {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(refused))) => {
                ctx.claims.abort(&refused.unit.held);
                tracing::debug!(run = %ctx.run.id, conflict = %refused.conflict, "a unit met a concurrent change; its objects are redone one by one");
                shared.refused.lock().extend(items);
                None
            }
            Ok(Err(e)) => Some(e),
            Err(p) => Some(RunFailure::Panic(crate::runner::panic_message(p.as_ref()))),
        };
        if let Some(e) = error {
            failed = true;
            fail(ctx, shared, e);
        }
    }
}

/// Records the commit stage's failure (the first one is the cause) and stops both sides.
fn fail<T>(ctx: &Ctx<'_>, shared: &Shared<T>, e: RunFailure) {
    shared.failure.lock().get_or_insert(e);
    shared.failed.store(true, Ordering::SeqCst);
    // The failed unit may keep its claims: nobody waits for them any more.
    ctx.claims.poison();
}

impl<T: ItemId> CommitStage<'_, T> {
    /// Hands a staged unit to the committing thread (waiting while `DEPTH` units wait).
    pub(super) fn send(&self, unit: Unit, items: Vec<T>) -> Result<(), RunFailure> {
        self.check()?;
        if unit.staged.is_empty() && unit.held.is_empty() && unit.observed.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Msg::Unit(Box::new(unit), items))
            .map_err(|_| self.stopped())
    }

    /// Err once the commit stage failed (its failure is returned by `with_commit_stage`).
    pub(super) fn check(&self) -> Result<(), RunFailure> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(self.stopped());
        }
        Ok(())
    }

    fn stopped(&self) -> RunFailure {
        RunFailure::Unavailable("the commit stage stopped".into())
    }

    /// Waits until every unit sent so far is committed.
    fn sync(&self) -> Result<(), RunFailure> {
        let (ack, done) = mpsc::sync_channel(1);
        self.tx.send(Msg::Sync(ack)).map_err(|_| self.stopped())?;
        done.recv().map_err(|_| self.stopped())?;
        self.check()
    }

    /// Ends the assessing side: waits for every unit sent to commit, then assesses and
    /// commits again, alone, the objects of units the store refused.
    pub(super) fn finish<'a>(
        &self,
        ctx: &Ctx<'a>,
        w: &mut Worker,
        process: &Process<'a, T>,
    ) -> Result<(), RunFailure> {
        loop {
            self.sync()?;
            let refused = std::mem::take(&mut *self.shared.refused.lock());
            if refused.is_empty() {
                return Ok(());
            }
            for item in &refused {
                redo_alone(ctx, w, item, process)?;
            }
        }
    }
}

/// Stages the items of one unit on the assessing thread and hands the unit to the commit
/// stage. An object whose claim is refused (it depends on a unit not yet committed, or
/// committed after its reads began) is assessed again once that unit committed.
pub(super) fn run_unit_pipelined<'a, T: ItemId>(
    ctx: &Ctx<'a>,
    w: &mut Worker,
    stage: &CommitStage<'_, T>,
    items: Vec<T>,
    process: &Process<'a, T>,
) -> Result<(), RunFailure> {
    // Refused objects are assessed again before newer ones, once the stage is idle.
    if !stage.shared.refused.lock().is_empty() {
        stage.finish(ctx, w, process)?;
    }
    let mut unit = Unit::new(ctx.claims.owner());
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if ctx.run.is_canceled() {
            break;
        }
        stage.check()?;
        for attempt in 1..=CLAIM_ATTEMPTS {
            let epoch = ctx.claims.begin(w.slot);
            let staged = stage_alone(ctx, w, &mut unit, &item, process);
            let keys = match (&staged, unit.staged.last_mut()) {
                (Ok(()), Some(s)) => std::mem::take(&mut s.unit.keys),
                _ => Vec::new(),
            };
            if let Err(e) = staged {
                ctx.claims.end(w.slot);
                return Err(e);
            }
            let mut keys = keys;
            keys.sort_unstable();
            keys.dedup();
            let claimed = ctx.claims.claim(unit.owner, &keys, epoch, &mut unit.held);
            ctx.claims.end(w.slot);
            match claimed {
                Ok(()) => break,
                Err(_) if attempt == CLAIM_ATTEMPTS => {
                    let failure = ObjectFailure::Conflict(
                        "other objects of this run kept changing the same target; not applied"
                            .into(),
                    );
                    if let Some(s) = unit.staged.last_mut() {
                        s.unit.planned.clear();
                        s.unit
                            .fail_since(&Mark::start(), item.item_id(), &failure.to_string());
                    }
                    break;
                }
                Err(refusal) => {
                    // Drop the object's work (the changes observed sets reported stand, and
                    // are delivered with the unit), commit what the unit has, wait for the
                    // unit holding the key, and assess the object again.
                    if let Some(mut dropped) = unit.staged.pop() {
                        unit.observed.append(&mut dropped.unit.observed);
                    }
                    let done = std::mem::replace(&mut unit, Unit::new(ctx.claims.owner()));
                    stage.send(done, std::mem::take(&mut kept))?;
                    if let Refusal::Other(key) = refusal {
                        ctx.claims.wait_released(key);
                    }
                    stage.check()?;
                }
            }
        }
        if ctx.inner.commit_log.get().is_some() {
            unit.objects.push(item.item_id());
        }
        kept.push(item);
    }
    stage.send(unit, kept)
}
