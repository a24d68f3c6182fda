//! Executing one run: the query stage, the source phase, the target phase and the results,
//! with per-object work spread over `taskThreads` worker threads.
//!
//! Data flow: a producer streams source objects (or target ids) in units of `batch_size`
//! into a bounded channel; each worker assesses its unit, executes the actions into one
//! atomic store batch (targets + index entries + links), applies it, then writes the unit's
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

use super::state::{ReconKind, RunOptions, RunState};
use super::{Inner, RunError, StartRequest, StoreHost};
use crate::config::AuditLevel;
use crate::engine::model::{Action, Situation, Stage};
use crate::engine::stats::{OpOutcome, Tally};
use crate::engine::{self, PolicyScope, Scripts};
use crate::ids;
use crate::mapping::{Correlation, Mapping, Qualifiers};
use crate::objects::{ObjectSet, QueryRequest, StoreSet};
use crate::query::Filter;
use crate::script::{CompiledScript, ScriptContext, ScriptHost};
use crate::storage::{DataBatch, EntryRecord, ItemBatch, Link};

/// Resolves the mapping's settings with the request's body overrides (reference §1.2).
pub(super) fn effective_options(
    mapping: &Mapping,
    req: &StartRequest,
) -> Result<RunOptions, RunError> {
    let body = match &req.body {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(RunError::BadRequest(
                "The request body must be a JSON object".into(),
            ))
        }
    };
    let pick = |key: &str| body.get(key).filter(|v| !v.is_null());
    let bool_of = |key: &str, default: bool| -> Result<bool, RunError> {
        match pick(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(RunError::BadRequest(format!(
                "{key} must be true or false, got {other}"
            ))),
        }
    };
    let query = |key: &str, configured: &Option<Value>, set: &str| -> Result<Value, RunError> {
        let mut q = match pick(key).or(configured.as_ref()) {
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(RunError::BadRequest(format!(
                    "{key} must be an object, got {other}"
                )))
            }
            None => Map::new(),
        };
        if !q.contains_key("_queryFilter") && !q.contains_key("_queryId") {
            if let Some(f) = q.remove("queryFilter") {
                q.insert("_queryFilter".into(), f);
            } else if let Some(f) = q.remove("queryId") {
                q.insert("_queryId".into(), f);
            } else {
                q.insert("_queryFilter".into(), json!("true"));
            }
        }
        q.entry("resourceName").or_insert_with(|| json!(set));
        let v = Value::Object(q);
        QueryRequest::from_json(&v)
            .map_err(|e| RunError::BadRequest(format!("{key}: {}", e.message)))?;
        Ok(v)
    };
    let by_id = matches!(req.kind, ReconKind::ById(_));
    Ok(RunOptions {
        source_query: query("sourceQuery", &mapping.source_query, &mapping.source)?,
        target_query: query("targetQuery", &mapping.target_query, &mapping.target)?,
        run_target_phase: bool_of(
            "runTargetPhase",
            if by_id {
                false
            } else {
                mapping.run_target_phase.unwrap_or(true)
            },
        )?,
        allow_empty_source_set: bool_of("allowEmptySourceSet", mapping.allow_empty_source_set)?,
        analyze: req.analyze,
        persist_associations: req.persist_associations,
        schedule: req.schedule.clone(),
    })
}

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
    fn load(set: &dyn ObjectSet) -> Result<TargetCache, String> {
        let mut objects = std::collections::HashMap::new();
        set.scan(&mut |v| {
            if let Some(id) = v.get("_id").and_then(Value::as_str) {
                objects.insert(id.to_string(), v.clone());
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| format!("reading the target set {}: {e}", set.name()))?;
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
    host: Arc<dyn ScriptHost>,
}

/// The touched-target set holds FNV hashes already; hashing them again would be waste.
#[derive(Default, Clone, Copy)]
struct PreHashed(u64);

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

/// The writes and records of one unit of work.
#[derive(Default)]
struct Unit {
    batch: DataBatch,
    entries: Vec<EntryRecord>,
    audits: Vec<Value>,
    touched: Vec<u64>,
    tally: Tally,
    /// Target ids created in this unit (not yet visible in the store).
    created: HashSet<String>,
    /// Target ids linked in this unit (for FOUND_ALREADY_LINKED within the unit).
    linked_targets: HashSet<String>,
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
}

pub(super) fn execute(inner: &Inner, run: &Arc<RunState>) {
    if run.is_canceled() {
        return;
    }
    if let Err(message) = execute_phases(inner, run) {
        tracing::error!(run = %run.id, error = %message, "reconciliation failed");
        run.fail(message, true);
    }
}

fn execute_phases(inner: &Inner, run: &Arc<RunState>) -> Result<(), String> {
    let mapping = run.mapping.as_ref();
    run.set_stage(Stage::ActiveQueryEntries);
    audit_event(inner, run, "start", None);

    let source_name = run
        .options
        .source_query
        .get("resourceName")
        .and_then(Value::as_str)
        .unwrap_or(&mapping.source);
    let source_set = inner
        .objects
        .get(source_name)
        .cloned()
        .ok_or_else(|| format!("source object set {source_name} is not declared"))?;
    let target_set = inner
        .objects
        .get(&mapping.target)
        .cloned()
        .ok_or_else(|| format!("target object set {} is not declared", mapping.target))?;
    let source_q = QueryRequest::from_json(&run.options.source_query)
        .map_err(|e| format!("sourceQuery: {}", e.message))?;
    let full_source = source_name == mapping.source && matches!(source_q.filter, Filter::True);

    let started = Instant::now();
    let store_targets = target_set.as_store().is_some();
    let cache = if store_targets {
        None
    } else {
        Some(TargetCache::load(target_set.as_ref())?)
    };
    let target_was_empty = match &cache {
        Some(c) => c.objects.is_empty(),
        None => target_set
            .as_store()
            .map(|s| s.store().set_is_empty(&mapping.target))
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or(false),
    };
    run.stats
        .time("targetQuery", started.elapsed().as_nanos() as u64);

    // Links are looked up per object in the ordered store rather than prefetched into
    // memory, so `progress.links.total` follows the reference's rule for links that were not
    // prefetched: "?" while running, the processed count once the run succeeds.

    let host: Arc<dyn ScriptHost> = Arc::new(StoreHost::new(inner.objects.clone()));
    let target_set_ref = target_set.clone();
    let targets = match cache {
        Some(c) => Targets::Cache(c),
        None => match target_set_ref.as_store() {
            Some(s) => Targets::Store(s),
            None => return Err("target set has no store".into()),
        },
    };
    let ctx = Ctx {
        inner,
        run,
        mapping,
        source_set: source_set.clone(),
        target_set: target_set.clone(),
        targets,
        source_filter: source_q.filter.clone(),
        full_source,
        target_was_empty,
        audit_all: inner.settings.audit == AuditLevel::All,
        touched: Mutex::new(IdSet::default()),
        host,
    };

    // ---- source phase ----
    run.set_stage(Stage::ActiveReconcilingSource);
    let phase_start = Instant::now();
    let threads = mapping
        .task_threads
        .min(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
        .max(usize::from(mapping.task_threads > 0));
    let seen = match &run.kind {
        ReconKind::Full => {
            let filter = ctx.source_filter.clone();
            let src = ctx.source_set.clone();
            pipeline(
                &ctx,
                threads,
                &mut |emit: &mut dyn FnMut(Value) -> ControlFlow<()>| {
                    src.scan(&mut |obj| {
                        if filter.matches(&obj) {
                            emit(obj)
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                    .map_err(|e| format!("reading the source {}: {e}", src.name()))
                },
                &|c, ws, unit, obj: Value| source_object(c, ws, unit, Some(obj), None),
            )?
        }
        ReconKind::ById(ids) => {
            let ids = ids.clone();
            pipeline(
                &ctx,
                0,
                &mut |emit: &mut dyn FnMut(String) -> ControlFlow<()>| {
                    for id in &ids {
                        if emit(id.clone()).is_break() {
                            break;
                        }
                    }
                    Ok(())
                },
                &|c, ws, unit, id: String| match c.source_set.read(&id) {
                    Ok(Some(obj)) if c.source_filter.matches(&obj) => {
                        source_object(c, ws, unit, Some(obj), None)
                    }
                    Ok(_) => source_object(c, ws, unit, None, Some(&id)),
                    Err(e) => Err(format!("reading source {id}: {e}")),
                },
            )?
        }
    };
    run.stats.source_total.store(seen as i64, Ordering::Relaxed);
    run.stats
        .time("sourcePhase", phase_start.elapsed().as_nanos() as u64);
    if run.is_canceled() {
        return Ok(());
    }
    if seen == 0 && run.kind == ReconKind::Full && !run.options.allow_empty_source_set {
        let m = "Cannot reconcile from an empty data source, unless allowEmptySourceSet is true.";
        tracing::warn!(run = %run.id, "{m}");
        run.fail(m, false);
        return Ok(());
    }

    // ---- target phase ----
    if run.options.run_target_phase {
        run.set_stage(Stage::ActiveReconcilingTarget);
        let phase_start = Instant::now();
        let deleted_before = run.stats.deleted.load(Ordering::Relaxed);
        let target_q = QueryRequest::from_json(&run.options.target_query)
            .map_err(|e| format!("targetQuery: {}", e.message))?;
        let touched = std::mem::take(&mut *ctx.touched.lock());
        let normalise = !mapping.target_ids_case_sensitive;
        let untouched = |id: &str| {
            let h = if normalise {
                id_hash(&id.to_lowercase())
            } else {
                id_hash(id)
            };
            !touched.contains(&h)
        };
        let mut scanned = 0u64;
        let tset = ctx.target_set.clone();
        let needs_objects =
            !matches!(target_q.filter, Filter::True) || mapping.valid_target.is_some();
        pipeline(
            &ctx,
            threads,
            &mut |emit: &mut dyn FnMut(String) -> ControlFlow<()>| match &ctx.targets {
                Targets::Store(s) if !needs_objects => s
                    .store()
                    .scan_object_ids(&mapping.target, &mut |id| {
                        scanned += 1;
                        if untouched(id) {
                            emit(id.to_string())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                    .map_err(|e| e.to_string()),
                Targets::Store(_) => tset
                    .scan(&mut |o| {
                        let Some(id) = o.get("_id").and_then(Value::as_str) else {
                            return ControlFlow::Continue(());
                        };
                        if !target_q.filter.matches(&o) {
                            return ControlFlow::Continue(());
                        }
                        scanned += 1;
                        if untouched(id) {
                            emit(id.to_string())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                    .map_err(|e| e.to_string()),
                Targets::Cache(c) => {
                    let mut ids: Vec<&String> = c
                        .objects
                        .iter()
                        .filter(|(_, o)| target_q.filter.matches(o))
                        .map(|(k, _)| k)
                        .collect();
                    ids.sort();
                    for id in ids {
                        scanned += 1;
                        if untouched(id) && emit(id.clone()).is_break() {
                            break;
                        }
                    }
                    Ok(())
                }
            },
            &|c, ws, unit, id: String| target_object(c, ws, unit, &id),
        )?;
        // The target total is the target set as the run found it: what the scan saw, less
        // what this run created, plus what it deleted before the scan.
        let created = run.stats.created.load(Ordering::Relaxed);
        let total = (scanned + deleted_before).saturating_sub(created);
        run.stats
            .target_total
            .store(total as i64, Ordering::Relaxed);
        run.stats
            .time("targetPhase", phase_start.elapsed().as_nanos() as u64);
    }
    if run.is_canceled() {
        return Ok(());
    }

    run.set_stage(Stage::ActiveProcessingResults);
    if let Some(script) = &mapping.result {
        let mut ws = WorkerScripts {
            ctx: None,
            limits: inner.settings.script_limits,
            host: ctx.host.clone(),
        };
        let stats = json!({
            "global": { "reconId": run.id, "mappingName": mapping.name, "startTime": ids::iso_millis(run.started_ms) },
            "situationSummary": run.stats.situation_summary(),
            "statusSummary": run.stats.status_summary(),
        });
        let start = Instant::now();
        if let Err(e) = ws.eval(
            script,
            &[("global", &stats["global"]), ("statistics", &stats)],
        ) {
            return Err(format!("result script failed: {e}"));
        }
        run.stats
            .time("resultScript", start.elapsed().as_nanos() as u64);
    }
    Ok(())
}

/// Feeds items to the pipeline; stops when the callback breaks.
type Produce<'p, T> = dyn FnMut(&mut dyn FnMut(T) -> ControlFlow<()>) -> Result<(), String> + 'p;

type Process<'a, T> =
    dyn Fn(&Ctx<'a>, &mut WorkerScripts, &mut Unit, T) -> Result<(), String> + Sync;

/// Streams items from `produce` to `threads` workers (inline when 0) in units of `batch_size`,
/// and commits each unit. Returns how many items were produced.
fn pipeline<'a, T: Send>(
    ctx: &Ctx<'a>,
    threads: usize,
    produce: &mut Produce<'_, T>,
    process: &Process<'a, T>,
) -> Result<u64, String> {
    let batch_size = ctx.inner.settings.batch_size.max(1);
    let mut produced = 0u64;
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let new_scripts = || WorkerScripts {
        ctx: None,
        limits: ctx.inner.settings.script_limits,
        host: ctx.host.clone(),
    };
    if threads == 0 {
        let mut ws = new_scripts();
        let mut buf = Vec::with_capacity(batch_size);
        let res = produce(&mut |item| {
            produced += 1;
            buf.push(item);
            if buf.len() >= batch_size {
                if let Err(e) = run_unit(ctx, &mut ws, std::mem::take(&mut buf), process) {
                    *failure.lock() = Some(e);
                    return ControlFlow::Break(());
                }
            }
            if ctx.run.is_canceled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        res?;
        if let Some(e) = failure.lock().take() {
            return Err(e);
        }
        run_unit(ctx, &mut ws, buf, process)?;
        return Ok(produced);
    }
    let (tx, rx) = mpsc::sync_channel::<Vec<T>>(threads * 2);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| -> Result<(), String> {
        for _ in 0..threads {
            let rx = &rx;
            let failure = &failure;
            scope.spawn(move || {
                let mut ws = new_scripts();
                loop {
                    let unit = rx.lock().recv();
                    let Ok(items) = unit else { break };
                    // After a cancel or a failure, keep draining so the producer never blocks.
                    if ctx.run.is_canceled() || failure.lock().is_some() {
                        continue;
                    }
                    if let Err(e) = run_unit(ctx, &mut ws, items, process) {
                        *failure.lock() = Some(e);
                    }
                }
            });
        }
        let mut buf = Vec::with_capacity(batch_size);
        let res = produce(&mut |item| {
            produced += 1;
            buf.push(item);
            if buf.len() >= batch_size
                && tx
                    .send(std::mem::replace(&mut buf, Vec::with_capacity(batch_size)))
                    .is_err()
            {
                return ControlFlow::Break(());
            }
            if ctx.run.is_canceled() || failure.lock().is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if !buf.is_empty() && !ctx.run.is_canceled() {
            let _ = tx.send(buf);
        }
        drop(tx);
        res
    })?;
    if let Some(e) = failure.lock().take() {
        return Err(e);
    }
    Ok(produced)
}

/// Processes one unit and commits it: data batch first (atomic: targets + links), then
/// association entries and audit events, then counters.
fn run_unit<'a, T>(
    ctx: &Ctx<'a>,
    ws: &mut WorkerScripts,
    items: Vec<T>,
    process: &Process<'a, T>,
) -> Result<(), String> {
    let mut unit = Unit::default();
    for item in items {
        if ctx.run.is_canceled() {
            break;
        }
        process(ctx, ws, &mut unit, item)?;
    }
    let run = ctx.run;
    ctx.inner
        .store
        .apply(unit.batch)
        .map_err(|e| format!("writing targets and links: {e}"))?;
    if !unit.entries.is_empty() {
        let first = run
            .next_entry
            .fetch_add(unit.entries.len() as u64, Ordering::Relaxed);
        let mut items = ItemBatch::default();
        for (i, e) in unit.entries.iter().enumerate() {
            items
                .put_entry(run.seq, first + i as u64, e)
                .map_err(|e| e.to_string())?;
        }
        ctx.inner
            .store
            .apply_entries(items)
            .map_err(|e| format!("writing association entries: {e}"))?;
    }
    if !unit.audits.is_empty() {
        let first = run
            .next_audit
            .fetch_add(unit.audits.len() as u64, Ordering::Relaxed);
        let mut items = ItemBatch::default();
        for (i, e) in unit.audits.iter().enumerate() {
            items
                .put_audit(run.seq, first + i as u64, e)
                .map_err(|e| e.to_string())?;
        }
        ctx.inner
            .store
            .apply_audit(items)
            .map_err(|e| format!("writing audit events: {e}"))?;
    }
    if !unit.touched.is_empty() {
        ctx.touched.lock().extend(unit.touched);
    }
    run.stats.merge(&unit.tally);
    // Every few seconds the ACTIVE record is refreshed, so a run cut off by a crash still
    // shows how far it got.
    let now = ids::now_millis();
    let last = run.last_snapshot_ms.load(Ordering::Relaxed);
    if now - last > 2000
        && run
            .last_snapshot_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        ctx.inner
            .store
            .put_run(&run.record(None))
            .map_err(|e| format!("writing the run record: {e}"))?;
    }
    Ok(())
}

// ---- links ---------------------------------------------------------------------------------

impl Ctx<'_> {
    fn norm_source(&self, id: &str) -> String {
        if self.mapping.source_ids_case_sensitive {
            id.to_string()
        } else {
            id.to_lowercase()
        }
    }

    fn norm_target(&self, id: &str) -> String {
        if self.mapping.target_ids_case_sensitive {
            id.to_string()
        } else {
            id.to_lowercase()
        }
    }

    fn link_for_source(&self, q: &str, sid: &str) -> Result<Option<Link>, String> {
        if !self.mapping.enable_linking {
            return Ok(None);
        }
        let sid = self.norm_source(sid);
        let lt = &self.mapping.link_type;
        let r = if self.mapping.links_reversed {
            self.inner.store.link_by_second(lt, q, &sid)
        } else {
            self.inner.store.link_by_first(lt, q, &sid)
        };
        r.map_err(|e| e.to_string())
    }

    fn link_for_target(&self, q: &str, tid: &str) -> Result<Option<Link>, String> {
        if !self.mapping.enable_linking {
            return Ok(None);
        }
        let tid = self.norm_target(tid);
        let lt = &self.mapping.link_type;
        let r = if self.mapping.links_reversed {
            self.inner.store.link_by_first(lt, q, &tid)
        } else {
            self.inner.store.link_by_second(lt, q, &tid)
        };
        r.map_err(|e| e.to_string())
    }

    fn link_source<'l>(&self, l: &'l Link) -> &'l str {
        if self.mapping.links_reversed {
            &l.second_id
        } else {
            &l.first_id
        }
    }

    fn link_target<'l>(&self, l: &'l Link) -> &'l str {
        if self.mapping.links_reversed {
            &l.first_id
        } else {
            &l.second_id
        }
    }

    /// Writes (or repoints) the link between a source and a target into the unit's batch.
    fn stage_link(
        &self,
        unit: &mut Unit,
        q: &str,
        sid: &str,
        tid: &str,
        existing: Option<&Link>,
    ) -> Result<bool, String> {
        if !self.mapping.enable_linking {
            return Ok(false);
        }
        let (sid, tid) = (self.norm_source(sid), self.norm_target(tid));
        if existing.is_some_and(|l| self.link_source(l) == sid && self.link_target(l) == tid) {
            return Ok(false);
        }
        let (first, second) = if self.mapping.links_reversed {
            (tid.clone(), sid)
        } else {
            (sid, tid.clone())
        };
        let link = Link {
            link_type: self.mapping.link_type.clone(),
            qualifier: q.to_string(),
            first_id: first,
            second_id: second,
            rev: existing.map(|l| l.rev + 1).unwrap_or(1),
        };
        match existing {
            // Repointing keeps the same forward key; the old reverse key must go.
            Some(old) if !self.mapping.links_reversed => {
                unit.batch.put_link(&link, Some(&old.second_id))
            }
            Some(old) => {
                unit.batch.delete_link(old);
                unit.batch.put_link(&link, None)
            }
            None => unit.batch.put_link(&link, None),
        }
        .map_err(|e| e.to_string())?;
        unit.linked_targets.insert(tid);
        Ok(true)
    }

    // ---- targets ---------------------------------------------------------------------------

    fn read_target(&self, unit: &Unit, id: &str) -> Result<Option<Value>, String> {
        match &self.targets {
            Targets::Store(s) => {
                let found = s.get(id).map_err(|e| e.to_string())?;
                match found {
                    Some(o) => Ok(Some(crate::objects::with_meta(
                        &o.id,
                        &o.rev.to_string(),
                        o.body,
                    ))),
                    None if unit.created.contains(id) => Ok(Some(json!({"_id": id}))),
                    None => Ok(None),
                }
            }
            Targets::Cache(c) => Ok(c.objects.get(id).cloned()),
        }
    }

    fn correlate(
        &self,
        ws: &mut WorkerScripts,
        unit: &mut Unit,
        source: &Value,
        q: &str,
    ) -> Result<Option<Vec<Value>>, String> {
        if !self.mapping.has_correlation(q)
            || (self.target_was_empty && !self.mapping.correlate_empty_target_set)
        {
            return Ok(None);
        }
        let start = Instant::now();
        let lq = Value::String(q.to_string());
        let result = if let Some(script) = &self.mapping.correlation_script {
            let v = ws.eval(script, &[("source", source), ("linkQualifier", &lq)])?;
            match v {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => {
                    return Err(format!(
                        "correlationScript returned {other}, expected a list of objects"
                    ))
                }
            }
        } else {
            let filter = match self.mapping.correlation_for(q) {
                Some(Correlation::Tree(tree)) => {
                    engine::tree_filter(self.mapping, tree, source, q, ws)?
                }
                Some(Correlation::QueryScript(s)) => {
                    let params = ws.eval(s, &[("source", source), ("linkQualifier", &lq)])?;
                    if params.is_null() {
                        return Ok(Some(Vec::new()));
                    }
                    QueryRequest::from_json(&params)
                        .map_err(|e| format!("correlationQuery returned {params}: {}", e.message))?
                        .filter
                }
                Some(Correlation::Static(params)) => {
                    QueryRequest::from_json(params)
                        .map_err(|e| format!("correlationQuery: {}", e.message))?
                        .filter
                }
                None => return Ok(None),
            };
            match &self.targets {
                Targets::Store(s) => s.find(&filter).map_err(|e| e.to_string())?,
                Targets::Cache(c) => c.find(&filter),
            }
        };
        unit.tally
            .time("correlationQuery", start.elapsed().as_nanos() as u64);
        Ok(Some(result))
    }

    fn valid(
        &self,
        ws: &mut WorkerScripts,
        script: &Option<CompiledScript>,
        var: &str,
        obj: &Value,
    ) -> Result<bool, String> {
        let Some(s) = script else { return Ok(true) };
        match ws.eval(s, &[(var, obj)])? {
            Value::Bool(b) => Ok(b),
            _ => Err(format!(
                "Expecting boolean value from {}",
                if var == "source" {
                    "validSource"
                } else {
                    "validTarget"
                }
            )),
        }
    }

    fn source_qualifies(
        &self,
        ws: &mut WorkerScripts,
        source: &Value,
        q: &str,
    ) -> Result<bool, String> {
        if !self.valid(ws, &self.mapping.valid_source, "source", source)? {
            return Ok(false);
        }
        if let Some(cond) = &self.mapping.source_condition {
            let scope = json!({ "source": source, "linkQualifier": q });
            let lq = Value::String(q.to_string());
            return engine::check_condition(
                cond,
                &scope,
                &[("source", source), ("linkQualifier", &lq)],
                ws,
            );
        }
        Ok(true)
    }

    fn qualifiers(
        &self,
        ws: &mut WorkerScripts,
        object: &Value,
        return_all: bool,
    ) -> Result<Cow<'_, [String]>, String> {
        match &self.mapping.qualifiers {
            Qualifiers::Static(q) => Ok(Cow::Borrowed(q.as_slice())),
            Qualifiers::Script(s) => {
                let m = json!({ "name": self.mapping.name, "source": self.mapping.source, "target": self.mapping.target });
                let ra = Value::Bool(return_all);
                match ws.eval(
                    s,
                    &[
                        ("mapping", &m),
                        ("object", object),
                        ("returnAll", &ra),
                        ("oldValue", &Value::Null),
                    ],
                )? {
                    Value::Array(items) => Ok(Cow::Owned(
                        items
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    )),
                    Value::String(s) => Ok(Cow::Owned(vec![s])),
                    other => Err(format!(
                        "linkQualifiers script returned {other}, expected a list of strings"
                    )),
                }
            }
        }
    }
}

// ---- the source phase ------------------------------------------------------------------------

fn source_object(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    source: Option<Value>,
    missing_id: Option<&str>,
) -> Result<(), String> {
    let sid = match (&source, missing_id) {
        (Some(s), _) => s
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        (None, Some(id)) => id.to_string(),
        (None, None) => return Ok(()),
    };
    let source_value = source.unwrap_or(Value::Null);
    let qualifiers = match ctx.qualifiers(ws, &source_value, false) {
        Ok(q) => q,
        Err(e) => {
            let mut op = Op {
                source_id: Some(sid.clone()),
                error: Some(e),
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
        if let Err(e) = assess_and_act_source(ctx, ws, unit, &source_value, &sid, q, &mut op) {
            op.error = Some(e);
        }
        if failed && op.error.is_none() {
            op.error = Some("an earlier link qualifier of this source failed".into());
        }
        failed |= op.error.is_some();
        finish_op(ctx, unit, &mut op, q, "source");
    }
    Ok(())
}

fn assess_and_act_source(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    source: &Value,
    sid: &str,
    q: &str,
    op: &mut Op,
) -> Result<(), String> {
    let link = ctx.link_for_source(q, sid)?;
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
                if ctx.valid(ws, &ctx.mapping.valid_target, "target", t)? {
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
            let candidates = ctx.correlate(ws, unit, source, q)?;
            let mut already_linked = false;
            if let Some(c) = &candidates {
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
                        target = if has_attrs {
                            Some(c[0].clone())
                        } else {
                            ctx.read_target(unit, &tid)?
                        };
                        already_linked = unit.linked_targets.contains(&ctx.norm_target(&tid))
                            || ctx.link_for_target(q, &tid)?.is_some();
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

// ---- the target phase ----------------------------------------------------------------------

fn target_object(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    tid: &str,
) -> Result<(), String> {
    let target = ctx.read_target(unit, tid)?;
    let Some(target) = target else { return Ok(()) };
    let qualifiers = match ctx.qualifiers(ws, &target, true) {
        Ok(q) => q,
        Err(e) => {
            let mut op = Op {
                target_id: Some(tid.to_string()),
                error: Some(e),
                ..Op::default()
            };
            finish_op(ctx, unit, &mut op, "default", "target");
            return Ok(());
        }
    };
    for q in qualifiers.iter() {
        let mut op = Op {
            target_id: Some(tid.to_string()),
            ..Op::default()
        };
        if let Err(e) = assess_and_act_target(ctx, ws, unit, &target, tid, q, &mut op) {
            op.error = Some(e);
        }
        finish_op(ctx, unit, &mut op, q, "target");
    }
    Ok(())
}

fn assess_and_act_target(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    target: &Value,
    tid: &str,
    q: &str,
    op: &mut Op,
) -> Result<(), String> {
    let link = ctx.link_for_target(q, tid)?;
    let valid = ctx.valid(ws, &ctx.mapping.valid_target, "target", target)?;
    let mut source = Value::Null;
    let source_state = match (&link, valid) {
        (_, false) | (None, _) => None,
        (Some(l), true) => {
            let sid = ctx.link_source(l).to_string();
            op.source_id = Some(sid.clone());
            let found = if ctx.full_source {
                None
            } else {
                ctx.source_set.read(&sid).map_err(|e| e.to_string())?
            };
            match found {
                None => Some(None),
                Some(s) => {
                    let ok = ctx.valid(ws, &ctx.mapping.valid_source, "source", &s)?;
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

// ---- actions ---------------------------------------------------------------------------------

/// Runs an onCreate/onUpdate script: its changes to `target` are kept.
fn run_target_script(
    ws: &mut WorkerScripts,
    script: &CompiledScript,
    source: &Value,
    target: &mut Value,
    old_target: Option<&Value>,
    situation: Situation,
    q: &str,
) -> Result<(), String> {
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
    let out = ws.eval(script, &scope)?;
    if out.is_object() {
        *target = out;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn act(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    unit: &mut Unit,
    op: &mut Op,
    source: &Value,
    target: Option<Value>,
    q: &str,
    source_phase: bool,
) -> Result<(), String> {
    let mapping = ctx.mapping;
    let situation = op.situation.unwrap_or(Situation::AllGone);
    let null = Value::Null;
    let decision = engine::decide(
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
    )?;
    let action = decision.action;
    op.action = Some(action);
    op.target_exists_after = target.is_some();
    if ctx.run.options.analyze {
        return Ok(());
    }
    let sid = op.source_id.clone();
    let lq = Value::String(q.to_string());
    match action {
        Action::Create => {
            if source.is_null() {
                return Err("cannot CREATE a target without a source".into());
            }
            if target.is_some() && op.link.is_none() {
                return Err("target object already exists".into());
            }
            let mut t = Value::Object(Map::new());
            engine::apply_properties(mapping, source, &mut t, q, ws)?;
            if let Some(s) = &mapping.on_create {
                run_target_script(ws, s, source, &mut t, None, situation, q)?;
            }
            let Value::Object(mut body) = t else {
                return Err("onCreate left a target that is not an object".into());
            };
            let id = match body.shift_remove("_id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            body.shift_remove("_rev");
            let tid = match &ctx.targets {
                Targets::Store(s) => {
                    let id = id.unwrap_or_else(ids::new_uuid);
                    crate::objects::check_id(&id).map_err(|e| e.message)?;
                    if unit.created.contains(&id)
                        || s.store()
                            .object_exists(&mapping.target, &id)
                            .map_err(|e| e.to_string())?
                    {
                        return Err(format!(
                            "target object already exists: {}/{id}",
                            mapping.target
                        ));
                    }
                    s.stage_put(&mut unit.batch, &id, 1, &body, None)
                        .map_err(|e| e.message)?;
                    unit.created.insert(id.clone());
                    id
                }
                Targets::Cache(_) => {
                    let created = ctx
                        .target_set
                        .create(id.as_deref(), Value::Object(body))
                        .map_err(|e| e.message)?;
                    created
                        .get("_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                }
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
                return Err("cannot UPDATE: the target object does not exist".into());
            };
            let tid = op
                .target_id
                .clone()
                .ok_or("cannot UPDATE without a target id")?;
            if let (Some(sid), true) = (&sid, source_phase) {
                op.link_created =
                    ctx.stage_link(unit, q, sid, &tid, op.link.as_ref())? && op.link.is_none();
                if op.link_created {
                    on_link_script(ctx, ws, source, q, situation, &mapping.on_link)?;
                }
            }
            if source.is_null() {
                return Err("cannot UPDATE a target without a source".into());
            }
            let t = match &mapping.on_update {
                None => engine::apply_properties_changed(mapping, source, &old, q, ws)?,
                Some(script) => {
                    let mut t = old.clone();
                    engine::apply_properties(mapping, source, &mut t, q, ws)?;
                    run_target_script(ws, script, source, &mut t, Some(&old), situation, q)?;
                    (t != old).then_some(t)
                }
            };
            let Some(t) = t else {
                op.executed = true;
                return Ok(());
            };
            if t.get("_id") != old.get("_id") {
                return Err("target '_id' has changed".into());
            }
            {
                let Value::Object(mut body) = t else {
                    return Err("onUpdate left a target that is not an object".into());
                };
                body.shift_remove("_id");
                body.shift_remove("_rev");
                let start = Instant::now();
                match &ctx.targets {
                    Targets::Store(s) => {
                        // The target in hand carries its revision and old body (for the
                        // index difference); no second read.
                        let rev = old
                            .get("_rev")
                            .and_then(Value::as_str)
                            .and_then(|r| r.parse::<u64>().ok())
                            .unwrap_or(0)
                            + 1;
                        s.stage_put(&mut unit.batch, &tid, rev, &body, old.as_object())
                            .map_err(|e| e.message)?;
                    }
                    Targets::Cache(_) => {
                        ctx.target_set
                            .put(&tid, Value::Object(body), None, false)
                            .map_err(|e| e.message)?;
                    }
                }
                unit.tally
                    .time("updateTargetObject", start.elapsed().as_nanos() as u64);
                op.target_written = true;
            }
        }
        Action::Link => {
            let tid = op.target_id.clone().ok_or("cannot LINK without a target")?;
            let sid = sid.ok_or("cannot LINK without a source")?;
            op.link_created =
                ctx.stage_link(unit, q, &sid, &tid, op.link.as_ref())? && op.link.is_none();
            if op.link_created {
                on_link_script(ctx, ws, source, q, situation, &mapping.on_link)?;
            }
        }
        Action::Delete => {
            if let (Some(tid), Some(t)) = (op.target_id.clone(), target.as_ref()) {
                if let Some(s) = &mapping.on_delete {
                    let sit = Value::String(situation.as_str().to_string());
                    ws.eval(
                        s,
                        &[
                            ("source", source),
                            ("target", t),
                            ("situation", &sit),
                            ("linkQualifier", &lq),
                        ],
                    )?;
                }
                let start = Instant::now();
                match &ctx.targets {
                    Targets::Store(s) => {
                        if let Some(current) = s.get(&tid).map_err(|e| e.to_string())? {
                            s.stage_delete(&mut unit.batch, &tid, &current.body);
                            op.target_deleted = true;
                        }
                    }
                    Targets::Cache(_) => match ctx.target_set.delete(&tid, None) {
                        Ok(_) => op.target_deleted = true,
                        Err(e) if e.kind == crate::objects::ObjectErrorKind::NotFound => {}
                        Err(e) => return Err(e.message),
                    },
                }
                unit.tally
                    .time("deleteTargetObject", start.elapsed().as_nanos() as u64);
                op.target_exists_after = false;
            }
            if let Some(l) = op.link.clone() {
                on_link_script(ctx, ws, source, q, situation, &mapping.on_unlink)?;
                unit.batch.delete_link(&l);
            }
        }
        Action::Unlink => {
            if let Some(l) = op.link.clone() {
                on_link_script(ctx, ws, source, q, situation, &mapping.on_unlink)?;
                unit.batch.delete_link(&l);
            }
        }
        Action::Exception => {
            op.exception = Some(format!(
                "Situation {} marked as EXCEPTION",
                situation.as_str()
            ));
        }
        Action::Report | Action::NoReport => {
            let post = decision
                .policy
                .and_then(|p| p.post_action.as_ref())
                .or_else(|| {
                    mapping
                        .policies
                        .iter()
                        .find(|p| p.situation == situation)
                        .and_then(|p| p.post_action.as_ref())
                });
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
                )?;
            }
        }
        Action::Ignore | Action::Async => {}
    }
    op.executed = true;
    Ok(())
}

fn on_link_script(
    ctx: &Ctx<'_>,
    ws: &mut WorkerScripts,
    source: &Value,
    q: &str,
    situation: Situation,
    script: &Option<CompiledScript>,
) -> Result<(), String> {
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
}

/// Counts, records and audits one finished operation.
fn finish_op(ctx: &Ctx<'_>, unit: &mut Unit, op: &mut Op, q: &str, phase: &str) {
    let success = op.error.is_none();
    let analyze = ctx.run.options.analyze;
    unit.tally.record(&OpOutcome {
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
    let message = op.error.clone().or_else(|| op.exception.clone());
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
        });
    }
    if ctx.audit_all && op.action != Some(Action::NoReport) && (op.action.is_some() || !success) {
        let m = ctx.mapping;
        unit.audits.push(json!({
            "_id": ids::new_uuid(),
            "transactionId": ctx.run.id,
            "timestamp": ids::iso_millis(ids::now_millis()),
            "eventName": "recon",
            "userId": ctx.run.user,
            "trackingIds": [],
            "action": op.action.map(Action::as_str),
            "exception": op.error,
            "linkQualifier": q,
            "mapping": m.name,
            "message": message,
            "messageDetail": null,
            "situation": op.situation.map(Situation::as_str),
            "sourceObjectId": op.source_id.as_ref().map(|s| format!("{}/{s}", m.source)),
            "targetObjectId": op.target_id.as_ref().filter(|_| op.target_exists_after).map(|t| format!("{}/{t}", m.target)),
            "status": if success { "SUCCESS" } else { "FAILURE" },
            "reconciling": phase,
            "ambiguousTargetObjectIds": op.ambiguous.as_ref().map(|a| a.join(", ")).unwrap_or_default(),
            "reconAction": null,
            "entryType": "entry",
            "reconId": ctx.run.id,
        }));
    }
}

/// Writes a `start` or `summary` audit event (unless audit is off).
pub(super) fn audit_event(inner: &Inner, run: &RunState, kind: &str, stage: Option<Stage>) {
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

pub(super) fn audit_summary(inner: &Inner, run: &RunState, stage: Stage) {
    audit_event(inner, run, "summary", Some(stage));
}
