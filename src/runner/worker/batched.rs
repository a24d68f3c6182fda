//! Batched writes to a connector-backed target (a database table): instead of writing each
//! object as it is assessed, a unit of work hands its writes to the target set together
//! (`ObjectSet::write_batch`: one transaction, multi-row statements), then keeps or fails each
//! object's records by its own result.
//!
//! Each object of such a unit is staged into its own small unit (entries, audit events,
//! counters, link writes) with its planned write. At commit the writes go out in one batch;
//! an object whose write failed has its staged records turned into failures with the
//! system's message and its link writes dropped (`Unit::fail_since`), so links are written
//! only for targets that were written. Then every object's records join the unit, in order,
//! and the unit commits as any other. A failure of the system itself (the batch's error)
//! fails the run: nothing of the unit is recorded.
//!
//! Batching needs the target's id before the write (the link names it): creates are batched
//! when the set can tell the id from the body (`planned_id`), else written alone as before.
//! Mappings whose onLink/onUnlink scripts must run after their write, or with several link
//! qualifiers (whose objects' writes depend on each other), write one object at a time.

use super::*;
use crate::objects::{ObjectErrorKind, WriteOp};

/// A write an object's assessment planned, with the id it must come back with.
pub(super) struct PlannedWrite {
    op: WriteOp,
    id: String,
}

/// One object's records, waiting for its unit's batch to be written.
pub(super) struct Staged {
    item: String,
    pub(super) unit: Unit,
}

impl Ctx<'_> {
    /// Whether this run's target writes go out in batches (see the module doc).
    pub(super) fn batched_writes(&self) -> bool {
        matches!(self.targets, Targets::Cache(_))
            && self.target_set.batches_writes()
            && matches!(&self.mapping.qualifiers, Qualifiers::Static(q) if q.len() == 1)
            && self.mapping.on_link.is_none()
            && self.mapping.on_unlink.is_none()
    }

    /// The id of a create to batch, or None to write it now.
    pub(super) fn planned_create(&self, id: Option<&str>, body: &Value) -> Option<String> {
        if !self.batched_writes() {
            return None;
        }
        self.target_set.planned_id(id, body)
    }
}

impl Unit {
    pub(super) fn plan_write(&mut self, op: WriteOp, id: &str) {
        self.planned.push(PlannedWrite {
            op,
            id: id.to_string(),
        });
    }
}

/// Processes one object of a connector-backed target's unit into its own staged records.
pub(super) fn stage_alone<'a, T: ItemId>(
    ctx: &Ctx<'a>,
    w: &mut Worker,
    unit: &mut Unit,
    item: &T,
    process: &Process<'a, T>,
) -> Result<(), RunFailure> {
    let mut own = Unit::new(unit.owner);
    // Changes reported by observed (managed) sets while the object is processed are held
    // and delivered once the unit committed (see `objects::ChangeHook::hold`).
    let (processed, observed) = ChangeHook::hold(|| process(ctx, &mut w.ws, &mut own, item));
    own.observed.extend(observed);
    processed?;
    // The object's claim keys stay in `own.keys`: a pipelined run claims them (see
    // `commit_stage`); otherwise one thread assesses and commits in order, and they are
    // dropped with `own` once its records join the unit.
    unit.staged.push(Staged {
        item: item.item_id(),
        unit: own,
    });
    Ok(())
}

/// Writes the staged objects' planned writes in one batch and moves their records into
/// `unit`, failing those whose write failed.
pub(super) fn settle(ctx: &Ctx<'_>, unit: &mut Unit) -> Result<(), RunFailure> {
    if unit.staged.is_empty() {
        return Ok(());
    }
    let mut staged = std::mem::take(&mut unit.staged);
    let mut ops = Vec::new();
    // (staged object, id it must have, whether it is a delete, whether it is a create)
    let mut owners = Vec::new();
    for (i, s) in staged.iter_mut().enumerate() {
        for p in s.unit.planned.drain(..) {
            let kind = (
                matches!(p.op, WriteOp::Delete { .. }),
                matches!(p.op, WriteOp::Create { .. }),
            );
            owners.push((i, p.id, kind));
            ops.push(p.op);
        }
    }
    let mut failed: Vec<Option<(String, Option<String>)>> = staged.iter().map(|_| None).collect();
    if !ops.is_empty() {
        let set = ctx.target_set.name();
        let results = ctx.target_set.write_batch(ops).map_err(|e| {
            RunFailure::Unavailable(format!("writing a unit of work to the target {set}: {e}"))
        })?;
        if results.len() != owners.len() {
            return Err(RunFailure::Unavailable(format!(
                "the target {set} answered {} results for {} writes",
                results.len(),
                owners.len()
            )));
        }
        for (result, (i, id, (delete, create))) in results.into_iter().zip(owners) {
            let problem = match result {
                Ok(v) => match v.get("_id").and_then(Value::as_str) {
                    Some(got) if delete || got == id => None,
                    Some(got) => Some(format!(
                        "the target was written as {set}/{got}, not {set}/{id}; it is not linked"
                    )),
                    None => Some(format!("{set} returned the written target without an _id")),
                },
                // Already gone: what the delete wanted.
                Err(e) if delete && e.kind == ObjectErrorKind::NotFound => None,
                Err(e) => Some(e.message),
            };
            if let (Some(p), None) = (problem, &failed[i]) {
                failed[i] = Some((p, create.then_some(id)));
            }
        }
    }
    for (s, failure) in staged.into_iter().zip(failed) {
        let mut own = s.unit;
        if let Some((message, created)) = failure {
            own.fail_since(&Mark::start(), s.item, &message);
            // A create that failed made no target: its records name none.
            if let Some(id) = created {
                for e in &mut own.entries {
                    if e.target_id.as_deref() == Some(id.as_str()) {
                        e.target_id = None;
                    }
                }
                for a in &mut own.audits {
                    a["targetObjectId"] = Value::Null;
                }
                for o in &mut own.outcomes {
                    if o.action == Some(Action::Create) {
                        o.had_target_id = false;
                    }
                }
            }
        }
        absorb(ctx, unit, own);
    }
    Ok(())
}

/// Appends an object's staged records to the unit (in staging order).
fn absorb(ctx: &Ctx<'_>, unit: &mut Unit, mut own: Unit) {
    unit.batch.append(std::mem::take(&mut own.batch));
    unit.entries.append(&mut own.entries);
    unit.audits.append(&mut own.audits);
    unit.touched.append(&mut own.touched);
    unit.outcomes.append(&mut own.outcomes);
    unit.failures.append(&mut own.failures);
    unit.changed.append(&mut own.changed);
    unit.observed.append(&mut own.observed);
    unit.managed.append(&mut own.managed);
    // Only timings are counted while an object is assessed; outcomes are counted at commit.
    if !own.tally.durations.is_empty() {
        ctx.run.stats.merge(&own.tally);
    }
}

impl Staged {
    pub(super) fn entries(&self) -> std::slice::Iter<'_, EntryRecord> {
        self.unit.entries.iter()
    }
}
