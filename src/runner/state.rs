//! The live state of one run: its stage, statistics, parameters and times, and the summary
//! JSON (reference §1.5) built from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::engine::model::Stage;
use crate::engine::stats::{RunStats, Tally};
use crate::ids;
use crate::mapping::Mapping;
use crate::storage::RunRecord;

/// A full run or a run over given source ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconKind {
    Full,
    ById(Vec<String>),
}

/// The effective options of one run (mapping settings with the request's overrides applied).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub source_query: Value,
    pub target_query: Value,
    pub run_target_phase: bool,
    pub allow_empty_source_set: bool,
    /// `sourceQueryFullEntry`: false = the source query yields ids, each object read alone.
    pub source_full_entry: bool,
    /// `targetQueryFullEntry`: false = target objects are read one by one when assessed.
    pub target_full_entry: bool,
    pub analyze: bool,
    pub persist_associations: bool,
    pub schedule: Option<String>,
    /// Implicit synchronization of one object (no run record, no association entries, no
    /// recon audit events, no result script; see `runner::sync_object`).
    pub implicit: bool,
    /// The mapping's `reconGuard` limits (empty when none).
    pub guard: crate::mapping::ReconGuard,
    /// `ignoreGuard=true`: the guard is overridden for this run.
    pub ignore_guard: bool,
    /// `recordChanges=true`: a real run records attribute changes in its entries.
    pub record_changes: bool,
    /// `performAction`: the action forced on the one object of an implicit run instead of
    /// the policy's (see `runner::perform_action`).
    pub explicit: Option<super::implicit::ExplicitAction>,
}

impl RunOptions {
    /// Entries carry `changes`: an analysis, or a real run that asked for them, and only
    /// when the entries are kept.
    pub fn diffs(&self) -> bool {
        self.persist_associations && (self.analyze || self.record_changes)
    }
}

/// What this node does in a run (every run that is not clustered is its starter's alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterRole {
    /// Started here: the run's owner; a clustered run's starter reads the source ids and
    /// offers the pages.
    Starter,
    /// Works on pages of a clustered run another node owns. It never writes the run record,
    /// never runs the target phase; it leaves its statistics in a report for the owner.
    Helper,
    /// Took a clustered run over from an owner that died: its `pages` pages (of `seen`
    /// source objects) were offered already, and it goes on from there as the owner. When
    /// the owner died before it had offered every page (`complete` false), the adopter reads
    /// the whole source again and offers all of it after those pages.
    Adopter {
        seen: u64,
        pages: u64,
        complete: bool,
    },
}

/// The statistics another node reported for its part of a clustered run.
#[derive(Debug, Default)]
pub struct PeerReport {
    pub tally: Tally,
    /// Source objects it processed (its `sourceProcessedByNode`).
    pub processed: u64,
}

pub struct RunState {
    pub id: String,
    pub seq: u64,
    pub mapping: Arc<Mapping>,
    pub kind: ReconKind,
    pub options: RunOptions,
    pub user: String,
    pub started_ms: i64,
    ended_ms: AtomicI64,
    stage: Mutex<Stage>,
    canceled: AtomicBool,
    pub stats: RunStats,
    message: Mutex<Option<String>>,
    /// The run failed by an infrastructure error (a synchronous start answers 409).
    thrown: AtomicBool,
    done: tokio::sync::watch::Sender<bool>,
    pub next_entry: AtomicU64,
    pub next_audit: AtomicU64,
    /// When the run record was last written while active (ms), for periodic snapshots.
    pub last_snapshot_ms: AtomicI64,
    /// The reasons of the failed operations of an implicit run (one object, so few), for
    /// the caller of `sync_object` / `perform_action`; a reconciliation keeps none here.
    pub object_failures: Mutex<Vec<String>>,
    /// `sourceProcessedByNode`: source objects processed per node id (clustered runs only;
    /// `{}` otherwise).
    processed_by_node: Mutex<BTreeMap<String, u64>>,
    /// This node's part in the run.
    pub role: ClusterRole,
    /// The start request's body (a clustered run's spec carries it to the other nodes).
    pub body: Option<Value>,
    /// The latest reports of the other nodes working on this clustered run, by node: shown
    /// in the summary until the owner absorbs them into `stats` (after the last page).
    peers: Mutex<BTreeMap<String, PeerReport>>,
}

impl RunState {
    pub fn new(
        id: String,
        seq: u64,
        mapping: Arc<Mapping>,
        kind: ReconKind,
        options: RunOptions,
        user: String,
    ) -> RunState {
        RunState {
            id,
            seq,
            mapping,
            kind,
            options,
            user,
            started_ms: ids::now_millis(),
            ended_ms: AtomicI64::new(0),
            stage: Mutex::new(Stage::ActiveInitialized),
            canceled: AtomicBool::new(false),
            stats: RunStats::default(),
            message: Mutex::new(None),
            thrown: AtomicBool::new(false),
            done: tokio::sync::watch::channel(false).0,
            next_entry: AtomicU64::new(0),
            next_audit: AtomicU64::new(0),
            last_snapshot_ms: AtomicI64::new(0),
            object_failures: Mutex::new(Vec::new()),
            processed_by_node: Mutex::new(BTreeMap::new()),
            role: ClusterRole::Starter,
            body: None,
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    /// The run as seen by a node in `role`, which began at `started_ms` (a clustered run
    /// another node started keeps its start time).
    pub fn in_role(mut self, role: ClusterRole, started_ms: i64) -> RunState {
        self.role = role;
        self.started_ms = started_ms;
        self
    }

    /// Keeps the start request's body.
    pub fn with_body(mut self, body: Option<Value>) -> RunState {
        self.body = body;
        self
    }

    /// This node's counters and `sourceProcessedByNode` entry, as a report for the others.
    pub fn own_report(&self, node: &str) -> PeerReport {
        PeerReport {
            tally: self.stats.snapshot(),
            processed: self
                .processed_by_node
                .lock()
                .get(node)
                .copied()
                .unwrap_or(0),
        }
    }

    /// Replaces what the summary shows of the other nodes.
    pub fn set_peers(&self, peers: BTreeMap<String, PeerReport>) {
        *self.peers.lock() = peers;
    }

    /// Takes the other nodes' reports into this run's own statistics for good (once no node
    /// works on the run's pages any more).
    pub fn absorb_peers(&self) {
        let mut peers = self.peers.lock();
        let mut by_node = self.processed_by_node.lock();
        for (node, p) in std::mem::take(&mut *peers) {
            self.stats.merge(&p.tally);
            *by_node.entry(node).or_default() += p.processed;
        }
    }

    /// Adds `n` source objects processed by `node` (a clustered run's page).
    pub fn add_processed_by_node(&self, node: &str, n: u64) {
        *self
            .processed_by_node
            .lock()
            .entry(node.to_string())
            .or_default() += n;
    }

    pub fn stage(&self) -> Stage {
        *self.stage.lock()
    }

    /// Moves to `to` following the transition rules; returns the stage now in effect.
    pub fn set_stage(&self, to: Stage) -> Stage {
        let mut s = self.stage.lock();
        *s = s.transition(to, self.is_canceled());
        if s.is_completed() {
            self.ended_ms.store(ids::now_millis(), Ordering::SeqCst);
        }
        *s
    }

    pub fn cancel(&self) {
        self.canceled.store(true, Ordering::SeqCst);
        let mut s = self.stage.lock();
        if !s.is_completed() {
            *s = Stage::ActiveCanceling;
        }
    }

    pub fn is_canceled(&self) -> bool {
        self.canceled.load(Ordering::Relaxed)
    }

    pub fn fail(&self, message: impl Into<String>, thrown: bool) {
        *self.message.lock() = Some(message.into());
        if thrown {
            self.thrown.store(true, Ordering::SeqCst);
        }
    }

    pub fn message(&self) -> Option<String> {
        self.message.lock().clone()
    }

    pub fn thrown(&self) -> bool {
        self.thrown.load(Ordering::SeqCst)
    }

    pub fn mark_done(&self) {
        self.done.send_replace(true);
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.done.subscribe()
    }

    pub fn parameters(&self) -> Value {
        let mut p = serde_json::Map::new();
        match &self.kind {
            ReconKind::Full => {
                p.insert("sourceQuery".into(), self.options.source_query.clone());
            }
            ReconKind::ById(ids) => {
                p.insert("sourceIds".into(), json!(ids));
            }
        }
        p.insert("targetQuery".into(), self.options.target_query.clone());
        if let Some(s) = &self.options.schedule {
            p.insert("schedule".into(), json!(s));
        }
        if !self.options.guard.is_empty() {
            p.insert("reconGuard".into(), self.options.guard.to_json());
            p.insert("ignoreGuard".into(), json!(self.options.ignore_guard));
        }
        if self.options.record_changes {
            p.insert("recordChanges".into(), json!(true));
        }
        Value::Object(p)
    }

    /// The run summary, live while active.
    pub fn summary(&self) -> Value {
        let peers = self.peers.lock();
        let mut by_node = self.processed_by_node.lock().clone();
        if peers.is_empty() {
            return self.summary_of(&self.stats, by_node);
        }
        // Other nodes' parts of a clustered run, shown beside this node's own.
        let all = RunStats::default();
        all.merge(&self.stats.snapshot());
        all.copy_totals(&self.stats);
        for (node, p) in peers.iter() {
            all.merge(&p.tally);
            *by_node.entry(node.clone()).or_default() += p.processed;
        }
        self.summary_of(&all, by_node)
    }

    fn summary_of(&self, stats: &RunStats, by_node: BTreeMap<String, u64>) -> Value {
        let stage = self.stage();
        let ended = self.ended_ms.load(Ordering::SeqCst);
        let now = if ended > 0 { ended } else { ids::now_millis() };
        let mut v = json!({
            "_id": self.id,
            "mapping": self.mapping.name,
            "state": stage.state(),
            "stage": stage.as_str(),
            "stageDescription": stage.description(),
            "progress": stats.progress(stage == Stage::CompletedSuccess),
            "situationSummary": stats.situation_summary(),
            "statusSummary": stats.status_summary(),
            "durationSummary": stats.duration_summary(),
            "parameters": self.parameters(),
            "started": ids::iso_millis(self.started_ms),
            "ended": if ended > 0 { ids::iso_millis(ended) } else { String::new() },
            "duration": now - self.started_ms,
            "sourceProcessedByNode": by_node,
        });
        if let (Some(m), Some(obj)) = (self.message(), v.as_object_mut()) {
            obj.insert("message".into(), Value::String(m));
        }
        if self.options.analyze {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("analyze".into(), Value::Bool(true));
            }
        }
        if let Some(obj) = v.as_object_mut() {
            obj.insert("situationActions".into(), stats.situation_actions());
        }
        v
    }

    pub fn record(&self, finish_time: Option<String>) -> RunRecord {
        let summary = self.summary();
        RunRecord {
            seq: self.seq,
            id: self.id.clone(),
            mapping: self.mapping.name.clone(),
            completed: self.stage().is_completed(),
            is_analysis: self.options.analyze,
            persist_associations: self.options.persist_associations,
            source_collection: self.mapping.source.clone(),
            target_collection: self.mapping.target.clone(),
            finish_time,
            summary: summary.to_string(),
        }
    }
}
