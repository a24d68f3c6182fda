//! The deletion guard (`reconGuard`, contract §8): counting the planned deletes and unlinks
//! before any of them is written, and the source floor against the last full run.
//!
//! How it keeps the write discipline simple: the guard never defers or undoes a write. A
//! guarded phase is first walked in *counting* mode: the same assessment (`source_object`,
//! `target_object`) into a throw-away [`Unit`] whose `counting` flag makes `act` stop right
//! after the decision (no script side effects, no staged write) and count the DELETE and
//! UNLINK decisions for SOURCE_MISSING, UNASSIGNED and TARGET_IGNORED. Only when the count is
//! within the limits does the phase run for real, through the ordinary pipeline. So the
//! guard costs one extra read-only pass over the guarded phase, and only for mappings that
//! configure it (and not for analysis runs, which write nothing anyway, nor with
//! `ignoreGuard=true`).
//!
//! Which phase is counted: a full run's guarded situations all arise in the target phase (the
//! source phase sees sources that exist), so it is counted after the source phase; a by-id
//! run meets them in its source phase (ids the source no longer has), which is counted before
//! anything is written.

use super::*;
use crate::mapping::guard_keys::{MAX_DELETE_COUNT, MAX_DELETE_PERCENT, MIN_SOURCE_PERCENT};
use crate::mapping::ReconGuard;

const OVERRIDE: &str = "Nothing was deleted or unlinked for SOURCE_MISSING, UNASSIGNED or TARGET_IGNORED. If this is intended, run it once with ignoreGuard=true (request parameter or body key).";

/// The guard of one run, when it applies.
pub(super) struct Guard {
    limits: ReconGuard,
    /// Targets in the target set when the run started (for `maxDeletePercent`).
    targets_at_start: u64,
}

/// Whether one decision counts against the guard.
pub(super) fn guarded(situation: Situation, action: Action) -> bool {
    matches!(
        situation,
        Situation::SourceMissing | Situation::Unassigned | Situation::TargetIgnored
    ) && matches!(action, Action::Delete | Action::Unlink)
}

impl Guard {
    /// The guard of this run: None when the mapping sets no limit, the run is an analysis,
    /// or the request overrides it. Counts the target set as the run starts.
    pub(super) fn new(ctx: &Ctx<'_>) -> Result<Option<Guard>, RunFailure> {
        let o = &ctx.run.options;
        if o.guard.is_empty() || o.ignore_guard || o.analyze {
            return Ok(None);
        }
        let targets_at_start = if o.guard.max_delete_percent.is_none() {
            0
        } else {
            match &ctx.targets {
                Targets::Cache(c) => c.objects.len() as u64,
                Targets::Store(_) => ctx.target_set.count().map_err(|e| {
                    RunFailure::Unavailable(format!(
                        "counting the target {}: {e}",
                        ctx.target_set.name()
                    ))
                })?,
            }
        };
        Ok(Some(Guard {
            limits: o.guard.clone(),
            targets_at_start,
        }))
    }

    /// Checks `planned` deletes/unlinks against the limits; Some(message) past one.
    pub(super) fn check_deletes(&self, planned: u64) -> Option<String> {
        if let Some(max) = self.limits.max_delete_count {
            if planned > max {
                return Some(format!(
                    "Reconciliation stopped by reconGuard.{MAX_DELETE_COUNT}: {planned} targets would be deleted or unlinked, more than the limit of {max}. {OVERRIDE}"
                ));
            }
        }
        if let Some(max) = self.limits.max_delete_percent {
            if planned > 0 {
                let total = self.targets_at_start.max(planned);
                let pct = planned as f64 * 100.0 / total as f64;
                if pct > max {
                    return Some(format!(
                        "Reconciliation stopped by reconGuard.{MAX_DELETE_PERCENT}: {planned} of the {total} targets ({pct:.1} %) would be deleted or unlinked, more than the limit of {max} %. {OVERRIDE}"
                    ));
                }
            }
        }
        None
    }

    /// Compares the source count of a full run over the whole source with the last
    /// successful non-analysis full run of the mapping; Some(message) under the floor.
    pub(super) fn check_source(
        &self,
        ctx: &Ctx<'_>,
        seen: u64,
    ) -> Result<Option<String>, RunFailure> {
        let Some(min) = self.limits.min_source_percent_of_last_run else {
            return Ok(None);
        };
        if !ctx.full_source || ctx.run.kind != ReconKind::Full {
            return Ok(None);
        }
        let Some((last_id, last)) = last_full_source_count(ctx)? else {
            return Ok(None);
        };
        if last == 0 {
            return Ok(None);
        }
        let pct = seen as f64 * 100.0 / last as f64;
        if pct < min {
            return Ok(Some(format!(
                "Reconciliation stopped by reconGuard.{MIN_SOURCE_PERCENT}: the source has {seen} objects, {pct:.1} % of the {last} of the last successful run ({last_id}), under the limit of {min} %. {OVERRIDE}"
            )));
        }
        Ok(None)
    }
}

/// The source count of the mapping's last successful, non-analysis run over its whole source
/// set, read from the stored run records (their summary keeps `parameters.sourceQuery` and
/// `progress.source.existing.total`).
fn last_full_source_count(ctx: &Ctx<'_>) -> Result<Option<(String, u64)>, RunFailure> {
    let mapping = ctx.mapping;
    let mut best: Option<(u64, String, u64)> = None;
    ctx.inner
        .store
        .scan_runs(&mut |r| {
            if r.mapping != mapping.name
                || !r.completed
                || r.is_analysis
                || r.seq == ctx.run.seq
                || best.as_ref().is_some_and(|b| b.0 > r.seq)
            {
                return ControlFlow::Continue(());
            }
            let Ok(s) = serde_json::from_str::<Value>(&r.summary) else {
                return ControlFlow::Continue(());
            };
            let q = &s["parameters"]["sourceQuery"];
            let whole = s["state"] == "SUCCESS"
                && q["_queryFilter"] == "true"
                && q.get("_queryId").is_none()
                && q["resourceName"]
                    .as_str()
                    .is_some_and(|n| n.trim_matches('/') == mapping.source);
            let total = s["progress"]["source"]["existing"]["total"]
                .as_str()
                .and_then(|t| t.parse::<u64>().ok());
            if let (true, Some(total)) = (whole, total) {
                best = Some((r.seq, r.id.clone(), total));
            }
            ControlFlow::Continue(())
        })
        .map_err(RunFailure::store("reading the run history"))?;
    Ok(best.map(|(_, id, n)| (id, n)))
}

/// Walks `produce` in counting mode (see the module doc) and returns how many guarded
/// deletes/unlinks the phase would make. Per-object errors are ignored (the real pass
/// records them); infrastructure errors fail the run.
pub(super) fn count_planned<'a, T>(
    ctx: &Ctx<'a>,
    produce: &mut Produce<'_, T>,
    process: &Process<'a, T>,
) -> Result<u64, RunFailure> {
    let mut ws = WorkerScripts {
        ctx: None,
        limits: ctx.inner.settings.script_limits,
        host: ctx.host.clone(),
    };
    let mut planned = 0u64;
    let mut failure = None;
    produce(&mut |item| {
        let mut unit = Unit::counting();
        if let Err(e) = process(ctx, &mut ws, &mut unit, &item) {
            failure = Some(e);
            return ControlFlow::Break(());
        }
        planned += unit.guarded;
        if ctx.run.is_canceled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(planned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(json: Value, targets: u64) -> Guard {
        Guard {
            limits: ReconGuard::parse(&json).expect("valid"),
            targets_at_start: targets,
        }
    }

    #[test]
    fn limits_are_exclusive_and_name_their_key() {
        let g = guard(json!({"maxDeletePercent": 10}), 200);
        assert!(g.check_deletes(20).is_none(), "exactly 10 % is allowed");
        let m = g.check_deletes(100).expect("50 % is over 10 %");
        assert!(
            m.contains("maxDeletePercent")
                && m.contains("100 of the 200")
                && m.contains("ignoreGuard=true"),
            "{m}"
        );
        let g = guard(json!({"maxDeleteCount": 5}), 0);
        assert!(g.check_deletes(5).is_none());
        assert!(g
            .check_deletes(6)
            .expect("over")
            .contains("maxDeleteCount: 6 targets"));
        assert!(guard(json!({"maxDeletePercent": 0}), 0)
            .check_deletes(0)
            .is_none());
    }

    #[test]
    fn only_deletes_and_unlinks_of_the_three_situations_count() {
        assert!(guarded(Situation::SourceMissing, Action::Delete));
        assert!(guarded(Situation::Unassigned, Action::Unlink));
        assert!(guarded(Situation::TargetIgnored, Action::Delete));
        assert!(!guarded(Situation::Unqualified, Action::Delete));
        assert!(!guarded(Situation::SourceMissing, Action::Exception));
    }
}
