//! Executing the decided action (reference §3.5) into the unit's batch.

use super::*;
use crate::engine::diff;
use crate::objects::WriteOp;

// ---- actions ---------------------------------------------------------------------------------

/// Runs an onCreate/onUpdate script: its changes to `target` are kept.
pub(super) fn run_target_script(
    ws: &mut WorkerScripts,
    script: &CompiledScript,
    source: &Value,
    target: &mut Value,
    old_target: Option<&Value>,
    situation: Situation,
    q: &str,
) -> Result<(), WorkerError> {
    let lq = Value::String(q.to_string());
    let sit = Value::String(situation.as_str().to_string());
    let old = old_target.cloned().unwrap_or(Value::Null);
    let sid = source.get("_id").cloned().unwrap_or(Value::Null);
    let scope: [(&str, &Value); 6] = [
        ("source", source),
        ("target", &*target),
        ("oldTarget", &old),
        ("situation", &sit),
        ("linkQualifier", &lq),
        ("sourceId", &sid),
    ];
    // onCreate/onUpdate scripts are compiled with `;target;` appended (see `mapping`), so
    // their completion value is the target as the script left it.
    let out = ws.eval(script, &scope).map_err(WorkerError::script)?;
    if out.is_object() {
        *target = out;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn act(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    op: &mut Op,
    source: &Value,
    target: Option<Value>,
    q: &str,
    source_phase: bool,
) -> Result<(), WorkerError> {
    let mapping = ctx.mapping;
    let situation = op.situation.unwrap_or(Situation::AllGone);
    let null = Value::Null;
    let decision = match &ctx.run.options.explicit {
        // `performAction`: the caller's action, once the situation is the one it expects.
        Some(x) => {
            if let Some(expected) = x.expected.filter(|e| *e != situation) {
                return Err(WorkerError::constraint(format!(
                    "Expected situation does not match. Expected: {}, Found: {}",
                    expected.as_str(),
                    situation.as_str()
                )));
            }
            engine::Decision {
                action: x.action,
                policy: None,
            }
        }
        None => engine::decide(
            mapping,
            &PolicyScope {
                source,
                target: target.as_ref().unwrap_or(&null),
                qualifier: q,
                source_action: source_phase,
                recon_id: &ctx.run.id,
                mapping: &mapping.name,
                situation,
            },
            ws,
        )
        .map_err(WorkerError::script)?,
    };
    let action = decision.action;
    op.action = Some(action);
    op.target_exists_after = target.is_some();
    if unit.counting {
        unit.guarded += u64::from(guarded(situation, action));
        return Ok(());
    }
    let diffs = ctx.run.options.diffs();
    // Attributes masked beyond what `diff` masks by name and value: the target set's secret
    // attributes, whose values before the set encrypts or hashes them are clear text.
    let masked = |attribute: &str| ctx.secret_attributes.iter().any(|s| s == attribute);
    if ctx.run.options.analyze {
        if diffs {
            op.changes = planned_changes(mapping, ws, source, target.as_ref(), q, action, &masked);
        }
        return Ok(());
    }
    let sid = op.source_id.clone();
    let lq = Value::String(q.to_string());
    match action {
        Action::Create => {
            if source.is_null() {
                return Err(WorkerError::constraint(
                    "cannot CREATE a target without a source",
                ));
            }
            // Reference §3.5: CREATE fails when a target is already known, linked or not
            // (CONFIRMED + CREATE must not make a second target and repoint the link).
            if target.is_some() {
                return Err(WorkerError::constraint("target object already exists"));
            }
            let mut t = Value::Object(Map::new());
            engine::apply_properties(mapping, source, &mut t, q, ws)
                .map_err(WorkerError::script)?;
            if let Some(s) = &mapping.on_create {
                let start = Instant::now();
                run_target_script(ws, s, source, &mut t, None, situation, q)?;
                unit.tally
                    .time("onCreateScript", start.elapsed().as_nanos() as u64);
            }
            let Value::Object(mut body) = t else {
                return Err(WorkerError::script(
                    "onCreate left a target that is not an object".into(),
                ));
            };
            let id = match body.shift_remove("_id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            body.shift_remove("_rev");
            if diffs {
                op.changes = Some(diff::changes(None, Some(&body), &masked));
            }
            let tid = match &ctx.targets {
                Targets::Store(s) => {
                    let id = id.unwrap_or_else(ids::new_uuid);
                    crate::objects::check_id(&id).map_err(WorkerError::from_set)?;
                    // The existence check reads this id: claim it, so an object of another
                    // unit that deletes or creates it is ordered with this one even when this
                    // CREATE fails (a failed op names no target id for `finish_op` to claim).
                    unit.keys.push(claim_key(b't', "", &ctx.norm_target(&id)));
                    if s.store()
                        .object_exists(&mapping.target, &id)
                        .map_err(WorkerError::store("reading a target"))?
                    {
                        return Err(WorkerError::constraint(format!(
                            "target object already exists: {}/{id}",
                            mapping.target
                        )));
                    }
                    // Expects "must not exist": a target created meanwhile by anyone else
                    // makes the store refuse the batch, and this object is assessed again.
                    s.stage_put(&mut unit.batch, &id, &body, None)
                        .map_err(WorkerError::from_set)?;
                    if !ctx.correlation_fields.is_empty() {
                        ctx.claim_target_terms(unit, &body);
                    }
                    id
                }
                Targets::Cache(_) => match ctx.target_set.managed() {
                    // A managed.json type: its pipeline makes the body, the unit's batch
                    // stores it with the link (see `managed::staged`).
                    Some(m) => {
                        // Two sources of one unit creating the same id: the second fails,
                        // as it would once the first is stored.
                        if let Some(id) = id.as_deref().filter(|id| {
                            unit.managed.iter().any(|s| s.id == *id && s.new.is_some())
                        }) {
                            return Err(WorkerError::constraint(format!(
                                "target object already exists: {}/{id}",
                                mapping.target
                            )));
                        }
                        let staged = m
                            .stage_create(&mut unit.batch, id, body)
                            .map_err(WorkerError::from_set)?;
                        let tid = staged.id.clone();
                        unit.managed.push(staged);
                        tid
                    }
                    None => {
                        let body = Value::Object(body);
                        match ctx.planned_create(id.as_deref(), &body) {
                            // Written with the unit's batch (see `batched`).
                            Some(tid) => {
                                unit.plan_write(WriteOp::Create { id, body }, &tid);
                                tid
                            }
                            None => {
                                let created = ctx
                                    .target_set
                                    .create(id.as_deref(), body)
                                    .map_err(WorkerError::from_set)?;
                                created
                                    .get("_id")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string()
                            }
                        }
                    }
                },
            };
            unit.touched.push(id_hash(&ctx.norm_target(&tid)));
            op.target_id = Some(tid.clone());
            op.target_exists_after = true;
            if let Some(sid) = &sid {
                op.link_created = ctx.stage_link(unit, q, sid, &tid, op.link.as_ref())?;
                if op.link_created {
                    on_link_script(ctx, ws, source, q, situation, &mapping.on_link)?;
                }
            }
        }
        Action::Update => {
            let Some(old) = target else {
                return Err(WorkerError::constraint(
                    "cannot UPDATE: the target object does not exist",
                ));
            };
            let tid = op
                .target_id
                .clone()
                .ok_or_else(|| WorkerError::constraint("cannot UPDATE without a target id"))?;
            if let (Some(sid), true) = (&sid, source_phase) {
                op.link_created =
                    ctx.stage_link(unit, q, sid, &tid, op.link.as_ref())? && op.link.is_none();
                if op.link_created {
                    on_link_script(ctx, ws, source, q, situation, &mapping.on_link)?;
                }
            }
            if source.is_null() {
                return Err(WorkerError::constraint(
                    "cannot UPDATE a target without a source",
                ));
            }
            let t = match &mapping.on_update {
                None => engine::apply_properties_changed(mapping, source, &old, q, ws)
                    .map_err(WorkerError::script)?,
                Some(script) => {
                    let mut t = old.clone();
                    engine::apply_properties(mapping, source, &mut t, q, ws)
                        .map_err(WorkerError::script)?;
                    let start = Instant::now();
                    run_target_script(ws, script, source, &mut t, Some(&old), situation, q)?;
                    unit.tally
                        .time("onUpdateScript", start.elapsed().as_nanos() as u64);
                    (t != old).then_some(t)
                }
            };
            let Some(t) = t else {
                if diffs {
                    op.changes = Some(diff::changes(None, None, &masked));
                }
                op.executed = true;
                return Ok(());
            };
            if t.get("_id") != old.get("_id") {
                return Err(WorkerError::constraint("target '_id' has changed"));
            }
            {
                let Value::Object(mut body) = t else {
                    return Err(WorkerError::script(
                        "onUpdate left a target that is not an object".into(),
                    ));
                };
                body.shift_remove("_id");
                body.shift_remove("_rev");
                if diffs {
                    op.changes = Some(diff::changes(old.as_object(), Some(&body), &masked));
                }
                let start = Instant::now();
                match &ctx.targets {
                    Targets::Store(s) => {
                        // The target in hand carries its revision and old body: the write
                        // expects that revision (compare-and-swap), so the index difference
                        // is computed from the body it replaces, and a change made since the
                        // read makes the store refuse the batch (the object is redone).
                        let rev = old
                            .get("_rev")
                            .and_then(Value::as_str)
                            .and_then(|r| r.parse::<u64>().ok())
                            .ok_or_else(|| {
                                WorkerError::constraint(format!(
                                    "target {tid} has no readable _rev"
                                ))
                            })?;
                        let old_body = old.as_object().ok_or_else(|| {
                            WorkerError::constraint("the target is not an object")
                        })?;
                        s.stage_put(&mut unit.batch, &tid, &body, Some((rev, old_body)))
                            .map_err(WorkerError::from_set)?;
                        if !ctx.correlation_fields.is_empty() {
                            ctx.claim_target_terms(unit, old_body);
                            ctx.claim_target_terms(unit, &body);
                        }
                    }
                    Targets::Cache(_) => match ctx.target_set.managed() {
                        Some(m) => {
                            let staged = m
                                .stage_update(&mut unit.batch, &tid, &old, body)
                                .map_err(WorkerError::from_set)?;
                            unit.managed.extend(staged);
                        }
                        None if ctx.batched_writes() => {
                            let body = Value::Object(body);
                            unit.plan_write(
                                WriteOp::Update {
                                    id: tid.clone(),
                                    body,
                                },
                                &tid,
                            );
                        }
                        None => {
                            ctx.target_set
                                .put(&tid, Value::Object(body), None, false)
                                .map_err(WorkerError::from_set)?;
                        }
                    },
                }
                unit.tally
                    .time("updateTargetObject", start.elapsed().as_nanos() as u64);
                op.target_written = true;
            }
        }
        Action::Link => {
            let tid = op
                .target_id
                .clone()
                .ok_or_else(|| WorkerError::constraint("cannot LINK without a target"))?;
            let sid = sid.ok_or_else(|| WorkerError::constraint("cannot LINK without a source"))?;
            op.link_created =
                ctx.stage_link(unit, q, &sid, &tid, op.link.as_ref())? && op.link.is_none();
            if op.link_created {
                on_link_script(ctx, ws, source, q, situation, &mapping.on_link)?;
            }
        }
        Action::Delete => {
            if let (Some(tid), Some(t)) = (op.target_id.clone(), target.as_ref()) {
                if diffs {
                    op.changes = Some(diff::changes(t.as_object(), None, &masked));
                }
                if let Some(s) = &mapping.on_delete {
                    let start = Instant::now();
                    let sit = Value::String(situation.as_str().to_string());
                    ws.eval(
                        s,
                        &[
                            ("source", source),
                            ("target", t),
                            ("situation", &sit),
                            ("linkQualifier", &lq),
                        ],
                    )
                    .map_err(WorkerError::script)?;
                    unit.tally
                        .time("onDeleteScript", start.elapsed().as_nanos() as u64);
                }
                let start = Instant::now();
                match &ctx.targets {
                    Targets::Store(s) => {
                        let current = s.get(&tid).map_err(WorkerError::from_set)?;
                        if let Some(current) = current {
                            s.stage_delete(&mut unit.batch, &tid, current.rev, &current.body);
                            op.target_deleted = true;
                        }
                    }
                    Targets::Cache(_) => match ctx.target_set.managed() {
                        Some(m) => {
                            if let Some(staged) = m
                                .stage_delete(&mut unit.batch, &tid)
                                .map_err(WorkerError::from_set)?
                            {
                                unit.managed.push(staged);
                                op.target_deleted = true;
                            }
                        }
                        None if ctx.batched_writes() => {
                            unit.plan_write(WriteOp::Delete { id: tid.clone() }, &tid);
                            op.target_deleted = true;
                        }
                        None => match ctx.target_set.delete(&tid, None) {
                            Ok(_) => op.target_deleted = true,
                            Err(e) if e.kind == crate::objects::ObjectErrorKind::NotFound => {}
                            Err(e) => return Err(WorkerError::from_set(e)),
                        },
                    },
                }
                unit.tally
                    .time("deleteTargetObject", start.elapsed().as_nanos() as u64);
                op.target_exists_after = false;
            }
            if let Some(l) = op.link.clone() {
                on_link_script(ctx, ws, source, q, situation, &mapping.on_unlink)?;
                stage_unlink(unit, &l);
            }
        }
        Action::Unlink => {
            if let Some(l) = op.link.clone() {
                on_link_script(ctx, ws, source, q, situation, &mapping.on_unlink)?;
                stage_unlink(unit, &l);
            }
        }
        Action::Exception => {
            op.exception = Some(format!(
                "Situation {} marked as EXCEPTION",
                situation.as_str()
            ));
        }
        Action::Report | Action::NoReport => {
            let ignore_post = ctx
                .run
                .options
                .explicit
                .as_ref()
                .is_some_and(|x| x.ignore_post_action);
            let post = decision
                .policy
                .and_then(|p| p.post_action.as_ref())
                .or_else(|| {
                    mapping
                        .policies
                        .iter()
                        .find(|p| p.situation == situation)
                        .and_then(|p| p.post_action.as_ref())
                })
                .filter(|_| !ignore_post);
            if let Some(s) = post {
                let sit = Value::String(situation.as_str().to_string());
                let act = Value::String(action.as_str().to_string());
                let rid = Value::String(ctx.run.id.clone());
                let sa = Value::Bool(source_phase);
                let t = target.clone().unwrap_or(Value::Null);
                ws.eval(
                    s,
                    &[
                        ("source", source),
                        ("target", &t),
                        ("linkQualifier", &lq),
                        ("sourceAction", &sa),
                        ("action", &act),
                        ("situation", &sit),
                        ("reconId", &rid),
                    ],
                )
                .map_err(WorkerError::script)?;
            }
        }
        Action::Ignore | Action::Async => {}
    }
    op.executed = true;
    Ok(())
}

/// What an analysis would change (contract §8): the mapping's property rules applied to the
/// source (onCreate/onUpdate scripts are not run in an analysis, as no action is). A rule
/// that fails leaves the entry without `changes` (the analysis itself does not fail on it).
#[allow(clippy::too_many_arguments)]
fn planned_changes(
    mapping: &Mapping,
    ws: &mut WorkerScripts,
    source: &Value,
    target: Option<&Value>,
    q: &str,
    action: Action,
    masked: &dyn Fn(&str) -> bool,
) -> Option<diff::Changes> {
    match (action, target) {
        (Action::Create, _) if !source.is_null() => {
            let mut t = Value::Object(Map::new());
            engine::apply_properties(mapping, source, &mut t, q, ws).ok()?;
            if let Some(m) = t.as_object_mut() {
                m.remove("_rev");
            }
            Some(diff::changes(None, t.as_object(), masked))
        }
        (Action::Update, Some(old)) if !source.is_null() => {
            let new = engine::apply_properties_changed(mapping, source, old, q, ws).ok()?;
            let after = new.as_ref().unwrap_or(old);
            Some(diff::changes(old.as_object(), after.as_object(), masked))
        }
        (Action::Delete, Some(old)) => Some(diff::changes(old.as_object(), None, masked)),
        _ => None,
    }
}

/// Removes a link, expecting it as it was read.
pub(super) fn stage_unlink(unit: &mut Unit, l: &Link) {
    unit.batch
        .expect_link(&l.link_type, &l.qualifier, &l.first_id, Expect::Rev(l.rev));
    unit.batch.delete_link(l);
}

pub(super) fn on_link_script(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    source: &Value,
    q: &str,
    situation: Situation,
    script: &Option<CompiledScript>,
) -> Result<(), WorkerError> {
    let Some(s) = script else { return Ok(()) };
    let lq = Value::String(q.to_string());
    let sit = Value::String(situation.as_str().to_string());
    let m = Value::String(ctx.mapping.name.clone());
    ws.eval(
        s,
        &[
            ("source", source),
            ("linkQualifier", &lq),
            ("situation", &sit),
            ("mapping", &m),
        ],
    )
    .map(|_| ())
    .map_err(WorkerError::script)
}
