//! The source phase: one source object, every qualifier, reference §3.2.

use super::*;

// ---- the source phase ------------------------------------------------------------------------

pub(super) fn source_object(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    source: Option<&Value>,
    missing_id: Option<&str>,
) -> Result<(), RunFailure> {
    let sid = match (&source, missing_id) {
        (Some(s), _) => s
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        (None, Some(id)) => id.to_string(),
        (None, None) => return Ok(()),
    };
    hooks::get().maybe_panic(&sid);
    let null = Value::Null;
    let source_value = source.unwrap_or(&null);
    // `performAction` names the one qualifier it acts for.
    let qualifiers = match &ctx.run.options.explicit {
        Some(x) => Ok(Cow::Owned(vec![x.qualifier.clone()])),
        None => ctx.qualifiers(ws, source_value, false),
    };
    let qualifiers = match qualifiers {
        Ok(q) => q,
        Err(WorkerError::Run(e)) => return Err(e),
        Err(WorkerError::Object(e)) => {
            let mut op = Op {
                source_id: Some(sid.clone()),
                error: Some(e.to_string()),
                ..Op::default()
            };
            finish_op(ctx, unit, &mut op, "default", "source");
            return Ok(());
        }
    };
    // One failure marks the object's remaining qualifiers as failed too (reference §1.5).
    let mut failed = false;
    for q in qualifiers.iter() {
        let mut op = Op {
            source_id: Some(sid.clone()),
            ..Op::default()
        };
        match assess_and_act_source(ctx, ws, unit, source_value, &sid, q, &mut op) {
            Ok(()) => {}
            Err(WorkerError::Object(e)) => op.error = Some(e.to_string()),
            Err(WorkerError::Run(e)) => return Err(e),
        }
        if failed && op.error.is_none() {
            op.error = Some("an earlier link qualifier of this source failed".into());
        }
        failed |= op.error.is_some();
        finish_op(ctx, unit, &mut op, q, "source");
    }
    Ok(())
}

pub(super) fn assess_and_act_source(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    source: &Value,
    sid: &str,
    q: &str,
    op: &mut Op,
) -> Result<(), WorkerError> {
    let start = Instant::now();
    let link = ctx.link_for_source(unit, q, sid)?;
    unit.tally
        .time("sourceLinkQuery", start.elapsed().as_nanos() as u64);
    let mut target: Option<Value> = None;
    if let Some(l) = &link {
        let tid = ctx.link_target(l).to_string();
        target = ctx.read_target(unit, &tid)?;
        op.target_id = Some(tid);
    }
    let situation = if source.is_null() {
        // Only reachable for reconById of an id the source does not have.
        match (&link, &target) {
            (Some(_), Some(t)) => {
                if ctx.valid(ws, &ctx.mapping.valid_target, "target", t, q)? {
                    Situation::SourceMissing
                } else {
                    Situation::TargetIgnored
                }
            }
            (Some(_), None) => Situation::LinkOnly,
            (None, _) => Situation::AllGone,
        }
    } else {
        let qualifies = ctx.source_qualifies(ws, source, q)?;
        if link.is_some() {
            engine::situation_linked(qualifies, target.is_some())
        } else {
            let mut candidates = ctx.correlate(ws, unit, source, q)?;
            let mut already_linked = false;
            if let Some(c) = &mut candidates {
                match c.len() {
                    0 => {}
                    1 => {
                        let tid = c[0]
                            .get("_id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        let has_attrs = c[0]
                            .as_object()
                            .is_some_and(|m| m.keys().any(|k| !k.starts_with('_')));
                        // Only the count of the candidates is read after this: the one
                        // found is moved out, not copied.
                        target = if has_attrs {
                            Some(std::mem::take(&mut c[0]))
                        } else {
                            ctx.read_target(unit, &tid)?
                        };
                        let start = Instant::now();
                        already_linked = ctx.link_for_target(unit, q, &tid)?.is_some();
                        unit.tally
                            .time("targetLinkQuery", start.elapsed().as_nanos() as u64);
                        op.target_id = Some(tid);
                    }
                    _ => {
                        op.ambiguous = Some(
                            c.iter()
                                .filter_map(|o| {
                                    o.get("_id").and_then(Value::as_str).map(str::to_string)
                                })
                                .collect(),
                        );
                    }
                }
            }
            engine::situation_correlated(
                qualifies,
                candidates.as_ref().map(Vec::len),
                already_linked,
            )
        }
    };
    // `performAction` with a `targetId`: that target, unless a link or a single correlation
    // result named one (IDM presets it before assessing).
    if let (None, Some(tid)) = (
        &op.target_id,
        ctx.run
            .options
            .explicit
            .as_ref()
            .and_then(|x| x.target_id.as_ref()),
    ) {
        target = ctx.read_target(unit, tid)?;
        op.target_id = Some(tid.clone());
    }
    // Every target associated with this source is off the target phase's list.
    if let Some(t) = &op.target_id {
        unit.touched.push(id_hash(&ctx.norm_target(t)));
    }
    if let Some(a) = &op.ambiguous {
        for t in a {
            unit.touched.push(id_hash(&ctx.norm_target(t)));
        }
    }
    op.situation = Some(situation);
    op.link = link;
    act(ctx, ws, unit, op, source, target, q, true)
}
