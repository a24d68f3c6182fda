//! The target phase: one target not touched by the source phase, reference §3.3.

use super::*;

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
