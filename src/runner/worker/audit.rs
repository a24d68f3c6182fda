//! Recording finished operations: counters, association entries, audit events, and the
//! run's start/summary audit events.

use super::*;

/// Counts, records and audits one finished operation.
pub(super) fn finish_op(ctx: &Ctx<'_>, unit: &mut Unit, op: &mut Op, q: &str, phase: &str) {
    if unit.counting {
        return;
    }
    let success = op.error.is_none();
    if op.target_id.is_some() && !op.target_exists_after {
        // Its hash is in the touched set while no such target exists (see `ScanPlan`).
        ctx.touched_unproven.store(true, Ordering::Relaxed);
    }
    let analyze = ctx.run.options.analyze;
    // The claim keys of this operation (see `claims`): its source for this qualifier, and
    // every target it touched, whatever the qualifier (a target is one object).
    if let Some(sid) = &op.source_id {
        unit.keys.push(claim_key(b's', q, &ctx.norm_source(sid)));
    }
    if let Some(tid) = &op.target_id {
        unit.keys.push(claim_key(b't', "", &ctx.norm_target(tid)));
    }
    for tid in op.ambiguous.iter().flatten() {
        unit.keys.push(claim_key(b't', "", &ctx.norm_target(tid)));
    }
    // The target the existing link named, when the operation moves the link away from it (a
    // MISSING source re-linked to the target it creates): an object of another unit that
    // creates or links that target is ordered after this one, as the link table's
    // compare-and-swap orders their writes; without the claim it retried against the link
    // until its attempts ran out (found by the model test, seed 156).
    if let Some(l) = &op.link {
        let old = ctx.link_target(l);
        if op
            .target_id
            .as_deref()
            .map(|t| ctx.norm_target(t))
            .as_deref()
            != Some(old)
        {
            unit.keys.push(claim_key(b't', "", old));
        }
    }
    unit.outcomes.push(OpOutcome {
        had_source_id: op.source_id.is_some(),
        had_target_id: op.target_id.is_some(),
        link_existed: op.link.is_some(),
        link_created: op.link_created,
        situation: op.situation,
        action: op.action,
        executed: op.executed && !analyze,
        success,
        target_written: op.target_written,
        target_deleted: op.target_deleted,
    });
    if success
        && !analyze
        && (op.target_written
            || op.target_deleted
            || (op.action == Some(Action::Create) && op.target_exists_after))
        // Every managed write is synchronized on to its set's own mappings, also one made by
        // an implicit sync, a liveSync or `performAction` (as in IDM); a change made while
        // the sync service is already synchronizing on this thread is not synchronized again
        // (the loop guard in `sync`), so a bidirectional pair cannot ping-pong.
        && ctx.mapping.target.starts_with("managed/")
        // Store-batch writes (a plain store set, or a managed.json type's staged writes)
        // bypass the managed set's change observer, so they are reported at commit.
        && (matches!(ctx.targets, Targets::Store(_)) || ctx.target_set.managed().is_some())
    {
        if let Some(tid) = &op.target_id {
            unit.changed.push(tid.clone());
        }
    }
    let message = op.error.clone().or_else(|| op.exception.clone());
    if let Some(e) = &op.error {
        let id = op.source_id.clone().or_else(|| op.target_id.clone());
        unit.failures.push((id.unwrap_or_default(), e.clone()));
    }
    if ctx.run.options.persist_associations {
        unit.entries.push(EntryRecord {
            situation: op.situation.map(|s| s.as_str().to_string()),
            action: op.action.map(|a| a.as_str().to_string()),
            phase: phase.to_string(),
            link_qualifier: q.to_string(),
            source_id: op.source_id.clone(),
            target_id: op.target_id.clone(),
            success,
            exception: op.error.clone(),
            message: message.clone(),
            message_detail: None,
            ambiguous: op.ambiguous.clone(),
            changes_truncated: op.changes.as_ref().is_some_and(|c| c.truncated),
            changes: op.changes.take().map(|c| c.stored),
        });
    }
    let reported = op.action != Some(Action::NoReport) && (op.action.is_some() || !success);
    if ctx.audit_all && reported {
        // `auditLog`: building the event; it is written with the unit's batch.
        let start = Instant::now();
        let target = op.target_id.as_deref().filter(|_| op.target_exists_after);
        let mut event = entry_event(ctx, op, q, message, success, "recon", target);
        let ambiguous = op.ambiguous.as_ref().map(|a| a.join(", "));
        for (k, v) in [
            ("reconciling", json!(phase)),
            (
                "ambiguousTargetObjectIds",
                json!(ambiguous.unwrap_or_default()),
            ),
            ("reconAction", Value::Null),
            ("entryType", json!("entry")),
            ("reconId", json!(ctx.run.id)),
        ] {
            event.insert(k.to_string(), v);
        }
        unit.audits.push(Value::Object(event));
        unit.tally
            .time("auditLog", start.elapsed().as_nanos() as u64);
    } else if ctx.run.options.implicit && reported {
        // Implicit and live synchronization write IDM's `sync` audit topic instead (stored
        // by `commit` apart from the recon topic).
        let target = op.target_id.as_deref();
        let event = entry_event(ctx, op, q, message, success, "sync", target);
        unit.audits.push(Value::Object(event));
    }
}

/// The fields a `recon` and a `sync` audit event of one entry share, in IDM's order.
fn entry_event(
    ctx: &Ctx<'_>,
    op: &Op,
    q: &str,
    message: Option<String>,
    success: bool,
    event_name: &str,
    target_id: Option<&str>,
) -> Map<String, Value> {
    let m = ctx.mapping;
    let fields = [
        ("_id", json!(ids::new_uuid())),
        ("transactionId", json!(ctx.run.id)),
        ("timestamp", json!(ids::iso_millis(ids::now_millis()))),
        ("eventName", json!(event_name)),
        ("userId", json!(ctx.run.user)),
        ("trackingIds", json!([])),
        ("action", json!(op.action.map(Action::as_str))),
        ("exception", json!(op.error)),
        ("linkQualifier", json!(q)),
        ("mapping", json!(m.name)),
        ("message", json!(message)),
        ("messageDetail", Value::Null),
        ("situation", json!(op.situation.map(Situation::as_str))),
        (
            "sourceObjectId",
            json!(op.source_id.as_ref().map(|s| format!("{}/{s}", m.source))),
        ),
        (
            "targetObjectId",
            json!(target_id.map(|t| format!("{}/{t}", m.target))),
        ),
        ("status", json!(if success { "SUCCESS" } else { "FAILURE" })),
    ];
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Writes a `start` or `summary` audit event (unless audit is off).
pub(in crate::runner) fn audit_event(
    inner: &Inner,
    run: &RunState,
    kind: &str,
    stage: Option<Stage>,
) {
    if inner.settings.audit == AuditLevel::Off {
        return;
    }
    let (status, message, detail) = match kind {
        "start" => (
            Value::Null,
            json!(format!("Reconciliation initiated by {}", run.user)),
            Value::Null,
        ),
        _ => {
            let ok = stage == Some(Stage::CompletedSuccess);
            let mut summary = run.summary();
            if let (Some(s), Some(obj)) = (stage, summary.as_object_mut()) {
                obj.insert("stage".into(), json!(s.as_str()));
                obj.insert("state".into(), json!(s.state()));
                obj.insert("stageDescription".into(), json!(s.description()));
            }
            (
                json!(if ok { "SUCCESS" } else { "FAILURE" }),
                json!(run.stats.compact_message()),
                summary,
            )
        }
    };
    let event = json!({
        "_id": ids::new_uuid(),
        "transactionId": run.id,
        "timestamp": ids::iso_millis(ids::now_millis()),
        "eventName": "recon",
        "userId": run.user,
        "trackingIds": [],
        "exception": null,
        "linkQualifier": null,
        "mapping": run.mapping.name,
        "message": message,
        "messageDetail": detail,
        "status": status,
        "reconciling": null,
        "ambiguousTargetObjectIds": null,
        "reconAction": if matches!(run.kind, ReconKind::ById(_)) { "reconById" } else { "recon" },
        "entryType": kind,
        "reconId": run.id,
    });
    let mut items = ItemBatch::default();
    let no = run.next_audit.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = items
        .put_audit(run.seq, no, &event)
        .and_then(|_| inner.store.apply_audit(items))
    {
        tracing::error!(run = %run.id, error = %e, "could not write a recon audit event");
    }
}

pub(in crate::runner) fn audit_summary(inner: &Inner, run: &RunState, stage: Stage) {
    audit_event(inner, run, "summary", Some(stage));
}
