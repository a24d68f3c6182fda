//! Executing one run: the query stage, the source phase, the target phase and the results,
//! with per-object work spread over `taskThreads` worker threads.
//!
//! Files, one job each: `options` (effective run options), `phases` (the order of a run),
//! `pipeline` (units, claims, commits with compare-and-swap and redo), `lookups` (what an
//! assessment reads), `source_phase` / `target_phase` (reference §3.2 / §3.3), `actions`
//! (§3.5, staged into the unit's batch), `audit` (counters, entries, audit events),
//! `clustered` (the source phase in pages claimed through the cluster coordinator). This file
//! holds the shared types.
//!
//! Data flow: a producer streams source objects (or target ids) in units of `batch_size`
//! into a bounded channel; each worker stages each object of its unit under its claims (see
//! `runner::claims`), executes the actions into one atomic store batch (targets + index
//! entries + links, every write a compare-and-swap), applies it, then writes the unit's
//! association entries and audit events and merges its counters. Memory stays bounded: only
//! the hashes of the target ids the source phase touched are kept for the target phase.
//!
//! Per-object failures are counted and recorded, never abort the run; infrastructure errors
//! (a source that cannot be read, a store write that fails) fail the run.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::claims::{Claims, Refusal};
use super::hooks;
use super::state::{ClusterRole, ReconKind, RunOptions, RunState};
use super::{Inner, RunError, StartRequest, StoreHost};
use crate::config::AuditLevel;
use crate::engine::model::{Action, Situation, Stage};
use crate::engine::stats::{OpOutcome, Tally};
use crate::engine::{self, PolicyScope, Scripts};
use crate::ids;
use crate::mapping::{Correlation, Mapping, Qualifiers};
use crate::objects::{ChangeHook, ObjectSet, QueryRequest, StoreSet};
use crate::query::Filter;
use crate::script::{CompiledScript, ScriptContext, ScriptHost};
use crate::storage::{DataBatch, EntryRecord, Expect, ItemBatch, Link, StoreError};

mod actions;
mod audit;
mod batched;
mod clustered;
mod commit_stage;
mod error;
mod guard;
mod lookups;
mod options;
mod phases;
mod pipeline;
mod source_phase;
mod target_phase;
mod totals;

use actions::*;
use audit::*;
pub(super) use audit::{audit_event, audit_summary};
use batched::*;
use clustered::*;
pub(super) use clustered::{page_lease, parse_report, ClusterSpec};
use commit_stage::*;
pub(super) use error::{ObjectFailure, RunFailure, WorkerError};
use guard::*;
pub(super) use options::effective_options;
pub(super) use phases::help_clustered;
use phases::*;
use pipeline::*;
use source_phase::*;
use target_phase::*;

/// Target-set access for the run: point reads from the store, or an in-memory copy of a
/// connector-backed set (read once, with lazily built equality indexes).
enum Targets<'a> {
    Store(&'a StoreSet),
    Cache(TargetCache),
}

struct TargetCache {
    objects: std::collections::HashMap<String, Value>,
    eq_index:
        Mutex<std::collections::HashMap<String, std::collections::HashMap<String, Vec<String>>>>,
}

impl TargetCache {
    fn load(set: &dyn ObjectSet) -> Result<TargetCache, RunFailure> {
        let mut objects = std::collections::HashMap::new();
        set.scan(&mut |v| {
            if let Some(id) = v.get("_id").and_then(Value::as_str) {
                objects.insert(id.to_string(), v.clone());
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| {
            RunFailure::Unavailable(format!("reading the target set {}: {e}", set.name()))
        })?;
        Ok(TargetCache {
            objects,
            eq_index: Mutex::new(Default::default()),
        })
    }

    fn find(&self, filter: &Filter) -> Vec<Value> {
        if let Some((ptr, Value::String(s))) =
            filter.equality_terms().first().map(|(p, v)| (*p, *v))
        {
            let key = ptr.to_string();
            let mut idx = self.eq_index.lock();
            let map = idx.entry(key).or_insert_with(|| {
                let mut m: std::collections::HashMap<String, Vec<String>> = Default::default();
                for (id, o) in &self.objects {
                    if let Some(Value::String(v)) = ptr.get(o) {
                        m.entry(v.to_lowercase()).or_default().push(id.clone());
                    }
                }
                m
            });
            let ids = map.get(&s.to_lowercase()).cloned().unwrap_or_default();
            drop(idx);
            return ids
                .iter()
                .filter_map(|id| self.objects.get(id))
                .filter(|o| filter.matches(o))
                .cloned()
                .collect();
        }
        self.objects
            .values()
            .filter(|o| filter.matches(o))
            .cloned()
            .collect()
    }
}

/// Everything a worker needs, shared by the run's threads.
struct Ctx<'a> {
    inner: &'a Inner,
    run: &'a Arc<RunState>,
    mapping: &'a Mapping,
    source_set: Arc<dyn ObjectSet>,
    target_set: Arc<dyn ObjectSet>,
    targets: Targets<'a>,
    source_filter: Filter,
    /// The source query covers the whole source set, so a source not seen is gone.
    full_source: bool,
    target_was_empty: bool,
    audit_all: bool,
    touched: Mutex<IdSet>,
    /// Set when the source phase may have touched a target that does not exist when the
    /// target phase starts (an operation that left its target missing or deleted it, or a
    /// failed one): `touched` then no longer bounds the untouched targets (see
    /// `target_phase::ScanPlan`).
    touched_unproven: std::sync::atomic::AtomicBool,
    host: Arc<dyn ScriptHost>,
    /// The run-wide claim table (see `claims`): what every unit of the run has in flight.
    claims: Claims,
    failure_log: FailureLog,
    /// Target attributes compared by correlation (their values are claim keys of writes).
    correlation_fields: Vec<crate::query::Pointer>,
    /// Target attributes whose values are secrets (managed.json's `encryption` and
    /// `secureHash`): masked in attribute changes whatever their value.
    secret_attributes: Vec<String>,
    /// The target set's counts when the query stage ended, before the source phase read any
    /// target (the target phase's `ScanPlan`; none on PostgreSQL).
    counts_before_source: Option<crate::storage::ObjectCounts>,
}

/// One WARN line per failed object, rate-limited per run: at most `FAILURE_LINES` lines per
/// window; the lines left out are counted and reported when the window closes.
struct FailureLog {
    window: Mutex<(Instant, u64, u64)>,
}

const FAILURE_LINES: u64 = 100;
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl FailureLog {
    fn new() -> FailureLog {
        FailureLog {
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    fn warn(&self, run: &str, mapping: &str, id: &str, reason: &str) {
        let mut w = self.window.lock();
        if w.0.elapsed() >= FAILURE_WINDOW {
            if w.2 > 0 {
                tracing::warn!(run, mapping, suppressed = w.2, "more objects failed; their log lines were suppressed (see the association entries)");
            }
            *w = (Instant::now(), 0, 0);
        }
        if w.1 < FAILURE_LINES {
            w.1 += 1;
            drop(w);
            tracing::warn!(
                run,
                mapping,
                object = id,
                reason,
                "object failed: mapping {mapping}, object {id}: {reason}"
            );
        } else {
            w.2 += 1;
        }
    }

    /// Reports what the last window suppressed (at the end of the run).
    fn close(&self, run: &str, mapping: &str) {
        let w = self.window.lock();
        if w.2 > 0 {
            tracing::warn!(run, mapping, suppressed = w.2, "more objects failed; their log lines were suppressed (see the association entries)");
        }
    }
}

/// The touched-target set holds FNV hashes already; hashing them again would be waste.
#[derive(Default, Clone, Copy)]
pub(super) struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdSet = HashSet<u64, std::hash::BuildHasherDefault<PreHashed>>;

fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A claim-table key: kind (`s` source, `t` target object, `c` correlation term), qualifier,
/// normalised id.
fn claim_key(kind: u8, q: &str, id: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(kind);
    for b in q.bytes().chain(std::iter::once(0)).chain(id.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    // Mix the high bits (the claim table shards on them).
    h ^ (h >> 29).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// The claim key of a correlation term: a target attribute and its (case-folded) value.
fn term_key(ptr: &str, value: &Value) -> u64 {
    let v = match value {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    };
    claim_key(b'c', "", &format!("{ptr}\u{0}{v}"))
}

/// Every target attribute an expressionTree correlation of the mapping compares.
fn correlation_fields(mapping: &Mapping) -> Vec<crate::query::Pointer> {
    fn walk(t: &crate::mapping::ExprTree, out: &mut Vec<crate::query::Pointer>) {
        match t {
            crate::mapping::ExprTree::All(items) | crate::mapping::ExprTree::Any(items) => {
                items.iter().for_each(|i| walk(i, out))
            }
            crate::mapping::ExprTree::Field(f) => out.push(crate::query::Pointer::parse(f)),
        }
    }
    let mut out = Vec::new();
    for (_, c) in &mapping.correlation {
        if let Correlation::Tree(t) = c {
            walk(t, &mut out);
        }
    }
    out
}

/// Lazily created JavaScript context of one worker thread.
struct WorkerScripts {
    ctx: Option<ScriptContext>,
    limits: crate::script::ScriptLimits,
    host: Arc<dyn ScriptHost>,
}

impl Scripts for WorkerScripts {
    fn eval(&mut self, script: &CompiledScript, scope: &[(&str, &Value)]) -> Result<Value, String> {
        if self.ctx.is_none() {
            self.ctx = Some(
                ScriptContext::new(self.limits, self.host.clone()).map_err(|e| e.to_string())?,
            );
        }
        match self.ctx.as_mut() {
            Some(ctx) => ctx.eval(script, scope).map_err(|e| e.to_string()),
            None => Err("no script context".into()),
        }
    }
}

/// The writes and records of one unit of work (committed together, see `commit`).
struct Unit {
    /// Owner id in the claim table.
    owner: u32,
    batch: DataBatch,
    entries: Vec<EntryRecord>,
    audits: Vec<Value>,
    touched: Vec<u64>,
    /// Counted at commit (so work dropped by a refused claim is never counted).
    outcomes: Vec<OpOutcome>,
    tally: Tally,
    /// Claim keys named by the objects staged since the last mark (see `claims`).
    keys: Vec<u64>,
    /// Claim keys this unit holds.
    held: Vec<u64>,
    /// (object id, reason) of every failed operation, logged when the unit commits.
    failures: Vec<(String, String)>,
    /// Ids of managed target objects this unit wrote or deleted: reported to the sync
    /// service once the unit committed (implicit synchronization of their own mappings).
    changed: Vec<String>,
    /// Changes reported by observed (managed.json) sets while this unit's objects were
    /// processed (targets written through the set, script writes): held back and delivered
    /// once the unit committed (see `objects::ChangeHook::hold`). Never dropped with an
    /// object's staged work: those writes happened regardless.
    observed: Vec<(String, String)>,
    /// Writes staged through a managed.json target's pipeline: finished (reverse
    /// relationships, post hooks) once the unit committed.
    managed: Vec<crate::managed::Staged>,
    /// A throw-away unit of the guard's counting pass: `act` decides and counts, never
    /// stages a write (see `guard`).
    counting: bool,
    /// Guarded deletes/unlinks decided in counting mode.
    guarded: u64,
    /// Writes to a connector-backed target waiting for the unit's batch (see `batched`).
    planned: Vec<PlannedWrite>,
    /// Objects staged on their own until their unit's batch is written (see `batched`).
    staged: Vec<Staged>,
    /// Ids of the objects kept in this unit, in staging order: filled only while the
    /// runner records its commit order (test-only, `hooks::CommitLog`).
    objects: Vec<String>,
}

/// Where a unit stood before one object was staged (to drop that object's work).
struct Mark {
    batch: crate::storage::BatchMark,
    entries: usize,
    audits: usize,
    touched: usize,
    outcomes: usize,
    keys: usize,
    failures: usize,
    changed: usize,
    managed: usize,
}

impl Mark {
    /// The mark of an empty unit.
    fn start() -> Mark {
        Mark {
            batch: crate::storage::BatchMark::default(),
            entries: 0,
            audits: 0,
            touched: 0,
            outcomes: 0,
            keys: 0,
            failures: 0,
            changed: 0,
            managed: 0,
        }
    }
}

impl Unit {
    fn new(owner: u32) -> Unit {
        Unit {
            owner,
            batch: DataBatch::default(),
            entries: Vec::new(),
            audits: Vec::new(),
            touched: Vec::new(),
            outcomes: Vec::new(),
            tally: Tally::default(),
            keys: Vec::new(),
            held: Vec::new(),
            failures: Vec::new(),
            changed: Vec::new(),
            observed: Vec::new(),
            managed: Vec::new(),
            counting: false,
            guarded: 0,
            planned: Vec::new(),
            staged: Vec::new(),
            objects: Vec::new(),
        }
    }

    /// A unit of the guard's counting pass (never committed).
    fn counting() -> Unit {
        Unit {
            counting: true,
            ..Unit::new(0)
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            batch: self.batch.mark(),
            entries: self.entries.len(),
            audits: self.audits.len(),
            touched: self.touched.len(),
            outcomes: self.outcomes.len(),
            keys: self.keys.len(),
            failures: self.failures.len(),
            changed: self.changed.len(),
            managed: self.managed.len(),
        }
    }

    /// Drops everything staged since `m`.
    fn truncate(&mut self, m: &Mark) {
        self.batch.truncate(&m.batch);
        self.entries.truncate(m.entries);
        self.audits.truncate(m.audits);
        self.touched.truncate(m.touched);
        self.outcomes.truncate(m.outcomes);
        self.keys.truncate(m.keys);
        self.failures.truncate(m.failures);
        self.changed.truncate(m.changed);
        self.managed.truncate(m.managed);
    }

    /// Turns the operations staged since `m` into failures with `message`: their writes are
    /// dropped, their entries and audit events say why.
    fn fail_since(&mut self, m: &Mark, id: String, message: &str) {
        self.failures.truncate(m.failures);
        self.failures.push((id, message.to_string()));
        self.batch.truncate(&m.batch);
        self.keys.truncate(m.keys);
        self.changed.truncate(m.changed);
        self.managed.truncate(m.managed);
        for o in &mut self.outcomes[m.outcomes..] {
            o.success = false;
            o.executed = false;
            o.link_created = false;
            o.target_written = false;
            o.target_deleted = false;
        }
        for e in &mut self.entries[m.entries..] {
            e.success = false;
            e.exception = Some(message.to_string());
            e.message = Some(message.to_string());
        }
        for a in &mut self.audits[m.audits..] {
            a["status"] = json!("FAILURE");
            a["exception"] = json!(message);
            a["message"] = json!(message);
        }
    }

    /// The claim keys of the object staged since `m`, without repeats.
    fn new_keys(&self, m: &Mark) -> Vec<u64> {
        let mut k = self.keys[m.keys..].to_vec();
        k.sort_unstable();
        k.dedup();
        k
    }
}

/// What one sync operation found and did.
#[derive(Default)]
struct Op {
    situation: Option<Situation>,
    action: Option<Action>,
    source_id: Option<String>,
    target_id: Option<String>,
    link: Option<Link>,
    ambiguous: Option<Vec<String>>,
    error: Option<String>,
    exception: Option<String>,
    link_created: bool,
    target_written: bool,
    target_deleted: bool,
    executed: bool,
    target_exists_after: bool,
    /// Attribute changes, when the run records them (`RunOptions::diffs`).
    changes: Option<engine::diff::Changes>,
}

/// Feeds items to the pipeline; stops when the callback breaks.
type Produce<'p, T> =
    dyn FnMut(&mut dyn FnMut(T) -> ControlFlow<()>) -> Result<(), RunFailure> + 'p;

/// The id of a pipeline item, for log lines.
trait ItemId {
    fn item_id(&self) -> String;
}

impl ItemId for Value {
    fn item_id(&self) -> String {
        self.get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

impl ItemId for String {
    fn item_id(&self) -> String {
        self.clone()
    }
}

/// Works on one item; a per-object failure is already recorded in its entries, so only a
/// failure of the run comes back.
type Process<'a, T> =
    dyn Fn(&Ctx<'a>, &mut WorkerScripts, &mut Unit, &T) -> Result<(), RunFailure> + Sync;

/// How often one object is re-assessed after refused claims before it fails.
const CLAIM_ATTEMPTS: usize = 64;
/// How often one object is re-read and re-assessed after a concurrent change (a refused
/// compare-and-swap) before it fails.
const CAS_ATTEMPTS: usize = 4;

/// One worker thread: its claim-table slot and its script context.
struct Worker {
    slot: usize,
    ws: WorkerScripts,
}

/// Implicit synchronization of one object (`run.kind` names its id): the by-id source phase
/// on the calling thread, with no run record, entries or recon audit events.
pub(super) fn execute_implicit(inner: &Inner, run: &Arc<RunState>) -> Result<(), String> {
    debug_assert!(run.options.implicit && matches!(run.kind, ReconKind::ById(_)));
    execute_phases(inner, run).map_err(|e| e.to_string())
}

pub(super) fn execute(inner: &Inner, run: &Arc<RunState>) {
    if run.is_canceled() {
        return;
    }
    if let Err(failure) = execute_phases(inner, run) {
        tracing::error!(run = %run.id, error = %failure, "reconciliation failed");
        run.fail(failure.to_string(), true);
    }
}

#[cfg(test)]
mod act_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> OpOutcome {
        OpOutcome {
            had_source_id: true,
            had_target_id: true,
            link_existed: false,
            link_created: true,
            situation: Some(Situation::Absent),
            action: Some(Action::Create),
            executed: true,
            success: true,
            target_written: false,
            target_deleted: false,
        }
    }

    #[test]
    fn truncate_drops_exactly_what_was_staged_after_the_mark() {
        let mut u = Unit::new(1);
        u.outcomes.push(outcome());
        u.keys.push(1);
        u.batch.expect_object("managed/user", "a", Expect::Absent);
        let m = u.mark();
        u.outcomes.push(outcome());
        u.keys.extend([2, 3]);
        u.failures.push(("b".into(), "x".into()));
        u.batch.expect_object("managed/user", "b", Expect::Absent);
        u.truncate(&m);
        assert_eq!(u.outcomes.len(), 1);
        assert_eq!(u.keys, vec![1]);
        assert!(u.failures.is_empty());
        assert_eq!(u.batch.mark().len_for_tests(), m.batch.len_for_tests());
    }

    #[test]
    fn fail_since_turns_staged_operations_into_failures_without_writes() {
        let mut u = Unit::new(1);
        let m = u.mark();
        u.outcomes.push(outcome());
        u.entries.push(EntryRecord {
            success: true,
            ..EntryRecord::default()
        });
        u.audits.push(json!({"status": "SUCCESS"}));
        u.batch.expect_object("managed/user", "a", Expect::Absent);
        u.fail_since(&m, "s1".into(), "kept changing");
        assert!(!u.outcomes[0].success && !u.outcomes[0].executed && !u.outcomes[0].link_created);
        assert_eq!(u.entries[0].message.as_deref(), Some("kept changing"));
        assert_eq!(u.audits[0]["status"], "FAILURE");
        assert_eq!(
            u.failures,
            vec![("s1".to_string(), "kept changing".to_string())]
        );
        assert_eq!(u.batch.mark().len_for_tests(), 0, "no write is left");
    }

    #[test]
    fn claim_keys_separate_kinds_qualifiers_and_ids() {
        let keys = [
            claim_key(b's', "default", "a"),
            claim_key(b's', "alt", "a"),
            claim_key(b't', "", "a"),
            claim_key(b's', "default", "b"),
            term_key("/userName", &json!("Ann")),
        ];
        let unique: HashSet<u64> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(
            term_key("/userName", &json!("Ann")),
            term_key("/userName", &json!("aNN")),
            "correlation terms are case-folded like the index"
        );
    }
}
