//! The commit stage of a run into a connector-backed target that takes batched writes (a
//! database table, see `batched`): the assessing thread stages unit n+1 while a thread of its
//! own writes unit n to the target (`write_batch`, one transaction) and its links, entries
//! and audit events to the store. The run then costs about max(assessment, writes) instead
//! of their sum.
//!
//! Invariants:
//! * Units commit one at a time in the order they were staged (one committing thread fed by
//!   a bounded channel, so at most `DEPTH` units wait staged and memory stays bounded).
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
//!   a store error, a panic) stops the assessing side at its next object, and no unit staged
//!   after the failed one is written: the run ends FAILED with that failure.
//! * A unit the store refuses (a concurrent change: a REST link write) wrote nothing to the
//!   store: its objects are assessed and committed again alone on the assessing thread, once
//!   every unit before them committed (`finish`).
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

/// The committing thread: commits each unit in order until the channel closes.
fn committer<T: ItemId>(ctx: &Ctx<'_>, rx: mpsc::Receiver<Msg<T>>, shared: &Shared<T>) {
    for msg in rx {
        let (unit, items) = match msg {
            Msg::Sync(ack) => {
                let _ = ack.send(());
                continue;
            }
            Msg::Unit(unit, items) => (*unit, items),
        };
        // After a failure nothing more is written: later units were assessed on state the
        // failed unit did not produce.
        if shared.failed.load(Ordering::SeqCst) {
            ctx.claims.abort(&unit.held);
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(ctx, unit)));
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
            *shared.failure.lock() = Some(e);
            shared.failed.store(true, Ordering::SeqCst);
            // The failed unit may keep its claims: nobody waits for them any more.
            ctx.claims.poison();
        }
    }
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
