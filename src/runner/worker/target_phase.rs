//! The target phase: one target not touched by the source phase, reference §3.3; and how far
//! the scan for those targets must read (`ScanPlan`).

use super::*;
use crate::storage::ObjectCounts;

// ---- the target phase ----------------------------------------------------------------------

pub(super) fn target_object(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    tid: &str,
) -> Result<(), RunFailure> {
    hooks::get().maybe_panic(tid);
    let start = Instant::now();
    let target = match ctx.read_target(unit, tid) {
        Ok(t) => t,
        Err(WorkerError::Run(e)) => return Err(e),
        // A read of one object the set refused (not an outage) fails that object's entry.
        Err(WorkerError::Object(e)) => {
            failed_entry(ctx, unit, tid, &e);
            return Ok(());
        }
    };
    if !ctx.run.options.target_full_entry {
        unit.tally
            .time("targetObjectQuery", start.elapsed().as_nanos() as u64);
    }
    let Some(target) = target else { return Ok(()) };
    // A target-side `performAction` names the one qualifier it acts for.
    let qualifiers = match &ctx.run.options.explicit {
        Some(x) => Ok(Cow::Owned(vec![x.qualifier.clone()])),
        None => ctx.qualifiers(ws, &target, true),
    };
    let qualifiers = match qualifiers {
        Ok(q) => q,
        Err(WorkerError::Run(e)) => return Err(e),
        Err(WorkerError::Object(e)) => {
            failed_entry(ctx, unit, tid, &e);
            return Ok(());
        }
    };
    for q in qualifiers.iter() {
        let mut op = Op {
            target_id: Some(tid.to_string()),
            ..Op::default()
        };
        match assess_and_act_target(ctx, ws, unit, &target, tid, q, &mut op) {
            Ok(()) => {}
            Err(WorkerError::Object(e)) => op.error = Some(e.to_string()),
            Err(WorkerError::Run(e)) => return Err(e),
        }
        finish_op(ctx, unit, &mut op, q, "target");
    }
    Ok(())
}

pub(super) fn assess_and_act_target(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    target: &Value,
    tid: &str,
    q: &str,
    op: &mut Op,
) -> Result<(), WorkerError> {
    let start = Instant::now();
    let link = ctx.link_for_target(unit, q, tid)?;
    unit.tally
        .time("targetLinkQuery", start.elapsed().as_nanos() as u64);
    let valid = ctx.valid(ws, &ctx.mapping.valid_target, "target", target, q)?;
    let mut source = Value::Null;
    let source_state = match (&link, valid) {
        (_, false) | (None, _) => None,
        (Some(l), true) => {
            let sid = ctx.link_source(l).to_string();
            op.source_id = Some(sid.clone());
            let found = if ctx.full_source {
                None
            } else {
                ctx.source_set.read(&sid).map_err(WorkerError::from_set)?
            };
            match found {
                None => Some(None),
                Some(s) => {
                    let ok = ctx.valid(ws, &ctx.mapping.valid_source, "source", &s, q)?;
                    source = s;
                    Some(Some(ok))
                }
            }
        }
    };
    op.situation = Some(engine::situation_target(valid, source_state));
    op.link = link;
    act(ctx, ws, unit, op, &source, Some(target.clone()), q, false)
}

/// Records the entry of a target whose read or qualifier evaluation failed (an object-level
/// failure: the set or a script refused this one object).
fn failed_entry(ctx: &Ctx<'_>, unit: &mut Unit, tid: &str, e: &ObjectFailure) {
    let mut op = Op {
        target_id: Some(tid.to_string()),
        error: Some(e.to_string()),
        ..Op::default()
    };
    finish_op(ctx, unit, &mut op, "default", "target");
}

// ---- the id scan's quota (issue #19) -------------------------------------------------------

/// How far the target phase's id scan must go. Without a plan it reads every id of the set.
/// With one, the untouched targets number at most `N − T`: N the objects of the set when the
/// scan starts, T the distinct hashes the source phase touched. That holds when every touched
/// hash names a target that exists when the scan starts, which the plan is only made for:
///
/// * no operation of the source phase left its target missing (a link to a missing target,
///   a delete or unlink) or failed (`Ctx::touched_unproven`);
/// * no object of the set was deleted by anyone (this run, REST, scripts, implicit sync,
///   another run) between the reading of the counts before the source phase and the reading
///   at the scan's start: the store's delete counter is the same. (Targets created meanwhile
///   are in N: touched ones are in T as well, untouched ones are what the scan looks for.)
///
/// Two ids sharing a hash (a collision, or ids equal but for case when target ids are
/// compared without case) make T smaller than the targets it stands for: the scan then looks
/// for more than there are and reads to the end, as without a plan. The scan stops once it
/// handed on `N − T` untouched targets, and only if the counts are still those it started
/// with: a target created (or deleted) during the scan could be one it handed on in place of
/// one it would then miss. Only the ordered scan of a store-backed target set's ids, with no
/// target query and no validTarget, takes a plan; the PostgreSQL repository keeps no counts.
pub(super) struct ScanPlan {
    at_start: ObjectCounts,
    untouched: u64,
}

impl ScanPlan {
    /// The plan for this run's target phase, if the counts prove one (`before_source`: the
    /// counts read before the source phase touched anything).
    pub(super) fn new(
        ctx: &Ctx<'_>,
        before_source: Option<ObjectCounts>,
        touched: usize,
        needs_objects: bool,
    ) -> Result<Option<ScanPlan>, RunFailure> {
        let Targets::Store(s) = &ctx.targets else {
            return Ok(None);
        };
        let Some(before) = before_source else {
            return Ok(None);
        };
        if needs_objects || ctx.mapping.clustered || ctx.touched_unproven.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let now = s
            .store()
            .object_counts(&ctx.mapping.target)
            .map_err(RunFailure::store("reading the target set's count"))?;
        Ok(match now {
            Some(at_start) if at_start.deletes == before.deletes => at_start
                .objects
                .checked_sub(touched as u64)
                .map(|untouched| ScanPlan {
                    at_start,
                    untouched,
                }),
            _ => None,
        })
    }

    /// The objects of the set when the scan started (what a full scan would have counted).
    pub(super) fn objects(&self) -> u64 {
        self.at_start.objects
    }

    /// One pass of the scan under this plan.
    pub(super) fn pass<'p>(&'p self, ctx: &'p Ctx<'_>) -> Quota<'p> {
        Quota {
            plan: self,
            store: match &ctx.targets {
                Targets::Store(s) => Some(s.store()),
                Targets::Cache(_) => None,
            },
            set: &ctx.mapping.target,
            left: self.untouched,
            stopped: false,
            exhausted: false,
        }
    }
}

/// One pass of a planned scan: counts down the untouched targets still to find.
pub(super) struct Quota<'p> {
    plan: &'p ScanPlan,
    store: Option<&'p crate::storage::Store>,
    set: &'p str,
    left: u64,
    /// The pass stopped (or never started) because it found every untouched target.
    pub(super) stopped: bool,
    /// The counts changed: this pass reads to the end.
    exhausted: bool,
}

impl Quota<'_> {
    /// Whether the counts are still those the plan was made with.
    fn unchanged(&self) -> bool {
        match self.store.map(|s| s.object_counts(self.set)) {
            Some(Ok(Some(now))) => now == self.plan.at_start,
            _ => false,
        }
    }

    /// Before the scan: whether there is nothing for it to find.
    pub(super) fn skip(&mut self) -> bool {
        self.stopped = self.left == 0 && self.unchanged();
        self.stopped
    }

    /// After an untouched target was handed on: whether the scan may stop.
    pub(super) fn found(&mut self) -> bool {
        if self.exhausted || self.left == 0 {
            return false;
        }
        self.left -= 1;
        if self.left > 0 {
            return false;
        }
        self.stopped = self.unchanged();
        self.exhausted = !self.stopped;
        self.stopped
    }
}

#[cfg(test)]
mod quota_tests {
    use super::*;
    use crate::storage::{DataBatch, Store, StoreOptions};

    const SET: &str = "managed/user";

    fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "recond-quota-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, &StoreOptions::default()).expect("open a temp store");
        (store, dir)
    }

    fn create(store: &Store, id: &str) {
        let mut b = DataBatch::new();
        b.expect_object(SET, id, Expect::Absent);
        b.put_object(SET, id, 1, &Map::new(), &[], &[])
            .expect("stage");
        store.apply(b).expect("create");
    }

    fn quota<'p>(plan: &'p ScanPlan, store: &'p Store) -> Quota<'p> {
        Quota {
            plan,
            store: Some(store),
            set: SET,
            left: plan.untouched,
            stopped: false,
            exhausted: false,
        }
    }

    #[test]
    fn a_scan_stops_after_its_quota_only_while_the_counts_hold() {
        let (store, dir) = store();
        create(&store, "a");
        let at_start = store.object_counts(SET).expect("read").expect("known");
        let plan = ScanPlan {
            at_start,
            untouched: 2,
        };
        let mut q = quota(&plan, &store);
        assert!(!q.found(), "one of two found");
        assert!(q.found(), "both found, nothing changed: stop");
        assert!(q.stopped);

        // A target created during the scan may be one it handed on instead of one it has not
        // reached: the pass reads on to the end.
        let mut q = quota(&plan, &store);
        assert!(!q.found());
        create(&store, "b");
        assert!(!q.found(), "the counts changed: no stop");
        assert!(!q.found(), "nor later");
        assert!(!q.stopped);

        // Nothing to find: skipped only while the counts hold.
        let plan = ScanPlan {
            at_start,
            untouched: 0,
        };
        assert!(!quota(&plan, &store).skip(), "b came since the plan");
        let now = store.object_counts(SET).expect("read").expect("known");
        let plan = ScanPlan {
            at_start: now,
            untouched: 0,
        };
        assert!(quota(&plan, &store).skip());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
