//! Run statistics: the live counters behind `progress`, `situationSummary`, `statusSummary`
//! and `durationSummary` (reference §1.5), and the run summary JSON built from them.
//!
//! Workers count into a local [`Tally`] and merge it into the shared [`RunStats`] once per
//! unit of work, so counters are exact at the end and at most one batch behind while live.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::model::{Action, Situation};

/// Aggregated durations of one metric, in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dur {
    pub count: u64,
    pub sum: u128,
    pub min: u64,
    pub max: u64,
    pub sum_sq: f64,
}

impl Dur {
    pub fn add(&mut self, ns: u64) {
        if self.count == 0 || ns < self.min {
            self.min = ns;
        }
        self.max = self.max.max(ns);
        self.count += 1;
        self.sum += u128::from(ns);
        let ms = ns as f64 / 1e6;
        self.sum_sq += ms * ms;
    }

    fn merge(&mut self, o: &Dur) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 || o.min < self.min {
            self.min = o.min;
        }
        self.max = self.max.max(o.max);
        self.count += o.count;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
    }

    fn json(&self) -> Value {
        let to_ms = |ns: u128| (ns / 1_000_000) as u64;
        let sum = to_ms(self.sum);
        let min = to_ms(u128::from(self.min));
        let mean_f = self.sum as f64 / 1e6 / self.count.max(1) as f64;
        let var = (self.sum_sq / self.count.max(1) as f64 - mean_f * mean_f).max(0.0);
        json!({
            "min": min,
            "max": to_ms(u128::from(self.max)),
            // The mean is clamped to be at least the minimum, as IDM does.
            "mean": (mean_f as u64).max(min),
            "count": self.count,
            "sum": sum,
            "stdDev": var.sqrt() as u64,
        })
    }
}

/// Per-worker counters for one unit of work.
#[derive(Debug, Default)]
pub struct Tally {
    pub source_processed: u64,
    pub target_processed: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub links_processed: u64,
    pub links_created: u64,
    pub situations: [u64; 13],
    /// Entries by situation and action (planned actions in analysis runs).
    pub situation_actions: [[u64; ACTIONS.len()]; 13],
    pub success: u64,
    pub failure: u64,
    pub durations: BTreeMap<&'static str, Dur>,
}

/// The actions in the order of `situationActions` cells (and of the client's table).
pub const ACTIONS: [Action; 10] = Action::ALL;

fn action_index(a: Action) -> usize {
    ACTIONS
        .iter()
        .position(|x| *x == a)
        .expect("ACTIONS lists every action")
}

/// What one sync operation did, for the counters.
pub struct OpOutcome {
    pub had_source_id: bool,
    pub had_target_id: bool,
    pub link_existed: bool,
    pub link_created: bool,
    pub situation: Option<Situation>,
    pub action: Option<Action>,
    /// The action ran (false in analysis runs and on failures before the action).
    pub executed: bool,
    pub success: bool,
    /// For UPDATE: whether the target was written.
    pub target_written: bool,
    pub target_deleted: bool,
}

impl Tally {
    pub fn time(&mut self, metric: &'static str, ns: u64) {
        self.durations.entry(metric).or_default().add(ns);
    }

    /// The counting rules of reference §1.5 plus recond's target counters (contract §4).
    pub fn record(&mut self, o: &OpOutcome) {
        if o.had_source_id {
            self.source_processed += 1;
        }
        if o.had_target_id {
            if o.action == Some(Action::Create) && o.executed && o.success {
                self.created += 1;
            } else {
                self.target_processed += 1;
            }
        } else if o.action == Some(Action::Create) && o.executed && o.success {
            self.created += 1;
        }
        if o.executed && o.success {
            match o.action {
                Some(Action::Update) if o.target_written => self.updated += 1,
                Some(Action::Update) => self.unchanged += 1,
                _ => {}
            }
            if o.target_deleted {
                self.deleted += 1;
            }
        }
        if o.link_existed {
            self.links_processed += 1;
        }
        if o.link_created {
            self.links_created += 1;
        }
        if let Some(s) = o.situation {
            self.situations[s.index()] += 1;
            if let Some(a) = o.action {
                self.situation_actions[s.index()][action_index(a)] += 1;
            }
        }
        if o.success {
            self.success += 1;
        } else {
            self.failure += 1;
        }
    }
}

/// The shared, live statistics of one run.
#[derive(Debug)]
pub struct RunStats {
    pub source_processed: AtomicU64,
    /// -1 while unknown ("?").
    pub source_total: AtomicI64,
    pub target_processed: AtomicU64,
    pub target_total: AtomicI64,
    pub created: AtomicU64,
    pub updated: AtomicU64,
    pub unchanged: AtomicU64,
    pub deleted: AtomicU64,
    pub links_processed: AtomicU64,
    pub links_created: AtomicU64,
    pub links_total: AtomicI64,
    pub situations: [AtomicU64; 13],
    pub situation_actions: [[AtomicU64; ACTIONS.len()]; 13],
    pub success: AtomicU64,
    pub failure: AtomicU64,
    pub durations: Mutex<BTreeMap<&'static str, Dur>>,
}

impl Default for RunStats {
    fn default() -> Self {
        RunStats {
            source_processed: AtomicU64::new(0),
            source_total: AtomicI64::new(-1),
            target_processed: AtomicU64::new(0),
            target_total: AtomicI64::new(-1),
            created: AtomicU64::new(0),
            updated: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            links_processed: AtomicU64::new(0),
            links_created: AtomicU64::new(0),
            links_total: AtomicI64::new(-1),
            situations: Default::default(),
            situation_actions: Default::default(),
            success: AtomicU64::new(0),
            failure: AtomicU64::new(0),
            durations: Mutex::new(BTreeMap::new()),
        }
    }
}

/// The keys of a run summary in IDM's order (reference §1.5); recond's own keys (`message`,
/// `analyze`) follow them.
pub const SUMMARY_KEYS: [&str; 14] = [
    "_id",
    "mapping",
    "state",
    "stage",
    "stageDescription",
    "progress",
    "situationSummary",
    "statusSummary",
    "durationSummary",
    "parameters",
    "started",
    "ended",
    "duration",
    "sourceProcessedByNode",
];

/// A stored run summary with its keys in IDM's order. Summaries written before recond kept
/// key order were stored with sorted keys; this restores the order when they are read, and
/// leaves any other key after IDM's in the order it has.
pub fn summary_in_idm_order(summary: Value) -> Value {
    let Value::Object(mut rest) = summary else {
        return summary;
    };
    let mut out = Map::with_capacity(rest.len());
    for key in SUMMARY_KEYS {
        if let Some(v) = rest.shift_remove(key) {
            out.insert(key.to_string(), v);
        }
    }
    out.extend(rest);
    Value::Object(out)
}

fn total(v: i64) -> Value {
    if v < 0 {
        Value::String("?".into())
    } else {
        Value::String(v.to_string())
    }
}

impl RunStats {
    pub fn merge(&self, t: &Tally) {
        self.source_processed.fetch_add(t.source_processed, Relaxed);
        self.target_processed.fetch_add(t.target_processed, Relaxed);
        self.created.fetch_add(t.created, Relaxed);
        self.updated.fetch_add(t.updated, Relaxed);
        self.unchanged.fetch_add(t.unchanged, Relaxed);
        self.deleted.fetch_add(t.deleted, Relaxed);
        self.links_processed.fetch_add(t.links_processed, Relaxed);
        self.links_created.fetch_add(t.links_created, Relaxed);
        for (a, n) in self.situations.iter().zip(t.situations) {
            if n > 0 {
                a.fetch_add(n, Relaxed);
            }
        }
        for (row, counts) in self.situation_actions.iter().zip(&t.situation_actions) {
            for (a, n) in row.iter().zip(counts) {
                if *n > 0 {
                    a.fetch_add(*n, Relaxed);
                }
            }
        }
        self.success.fetch_add(t.success, Relaxed);
        self.failure.fetch_add(t.failure, Relaxed);
        if !t.durations.is_empty() {
            let mut d = self.durations.lock();
            for (k, v) in &t.durations {
                d.entry(k).or_default().merge(v);
            }
        }
    }

    pub fn time(&self, metric: &'static str, ns: u64) {
        self.durations.lock().entry(metric).or_default().add(ns);
    }

    /// The counters as a tally (what `merge` of it into empty statistics gives back; the
    /// totals, which are not counted, are left out).
    pub fn snapshot(&self) -> Tally {
        let mut t = Tally {
            source_processed: self.source_processed.load(Relaxed),
            target_processed: self.target_processed.load(Relaxed),
            created: self.created.load(Relaxed),
            updated: self.updated.load(Relaxed),
            unchanged: self.unchanged.load(Relaxed),
            deleted: self.deleted.load(Relaxed),
            links_processed: self.links_processed.load(Relaxed),
            links_created: self.links_created.load(Relaxed),
            success: self.success.load(Relaxed),
            failure: self.failure.load(Relaxed),
            durations: self.durations.lock().clone(),
            ..Tally::default()
        };
        for (n, a) in t.situations.iter_mut().zip(&self.situations) {
            *n = a.load(Relaxed);
        }
        for (row, cells) in t.situation_actions.iter_mut().zip(&self.situation_actions) {
            for (n, a) in row.iter_mut().zip(cells) {
                *n = a.load(Relaxed);
            }
        }
        t
    }

    /// Copies the totals (`?` or known) of `other`.
    pub fn copy_totals(&self, other: &RunStats) {
        self.source_total
            .store(other.source_total.load(Relaxed), Relaxed);
        self.target_total
            .store(other.target_total.load(Relaxed), Relaxed);
        self.links_total
            .store(other.links_total.load(Relaxed), Relaxed);
    }

    pub fn situation_summary(&self) -> Value {
        let mut m = Map::new();
        for s in Situation::ALL {
            m.insert(
                s.as_str().into(),
                json!(self.situations[s.index()].load(Relaxed)),
            );
        }
        Value::Object(m)
    }

    pub fn progress(&self, completed_success: bool) -> Value {
        let links_processed = self.links_processed.load(Relaxed);
        let mut links_total = self.links_total.load(Relaxed);
        if links_total < 0 && completed_success {
            links_total = links_processed as i64;
        }
        json!({
            "source": { "existing": {
                "processed": self.source_processed.load(Relaxed),
                "total": total(self.source_total.load(Relaxed)),
            }},
            "target": {
                "existing": {
                    "processed": self.target_processed.load(Relaxed),
                    "total": total(self.target_total.load(Relaxed)),
                },
                "created": self.created.load(Relaxed),
                "unchanged": self.unchanged.load(Relaxed),
                "updated": self.updated.load(Relaxed),
                "deleted": self.deleted.load(Relaxed),
            },
            "links": {
                "existing": { "processed": links_processed, "total": total(links_total) },
                "created": self.links_created.load(Relaxed),
            },
        })
    }

    /// recond's `situationActions`: `{"ABSENT": {"CREATE": 2}, ...}`, non-zero cells only,
    /// situations in `situationSummary` order. What the client's situations × actions table
    /// and the Prometheus entry counters read.
    pub fn situation_actions(&self) -> Value {
        let mut out = Map::new();
        for s in Situation::ALL {
            let mut row = Map::new();
            for (a, n) in ACTIONS.iter().zip(&self.situation_actions[s.index()]) {
                let n = n.load(Relaxed);
                if n > 0 {
                    row.insert(a.as_str().into(), json!(n));
                }
            }
            if !row.is_empty() {
                out.insert(s.as_str().into(), Value::Object(row));
            }
        }
        Value::Object(out)
    }

    pub fn status_summary(&self) -> Value {
        json!({ "SUCCESS": self.success.load(Relaxed), "FAILURE": self.failure.load(Relaxed) })
    }

    pub fn duration_summary(&self) -> Value {
        let d = self.durations.lock();
        Value::Object(
            d.iter()
                .map(|(k, v)| ((*k).to_string(), v.json()))
                .collect(),
        )
    }

    /// The summary audit message: `SITUATION: n` for every situation.
    pub fn compact_message(&self) -> String {
        Situation::ALL
            .iter()
            .map(|s| {
                format!(
                    "{}: {}",
                    s.as_str(),
                    self.situations[s.index()].load(Relaxed)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: Action, situation: Situation) -> OpOutcome {
        OpOutcome {
            had_source_id: true,
            had_target_id: action != Action::Create,
            link_existed: situation == Situation::Confirmed,
            link_created: action == Action::Create,
            situation: Some(situation),
            action: Some(action),
            executed: true,
            success: true,
            target_written: false,
            target_deleted: false,
        }
    }

    #[test]
    fn counting_rules() {
        let mut t = Tally::default();
        t.record(&op(Action::Create, Situation::Absent));
        t.record(&op(Action::Update, Situation::Confirmed));
        t.record(&OpOutcome {
            target_written: true,
            ..op(Action::Update, Situation::Confirmed)
        });
        let s = RunStats::default();
        s.merge(&t);
        let p = s.progress(true);
        assert_eq!(p["target"]["created"], 1);
        assert_eq!(p["target"]["updated"], 1);
        assert_eq!(p["target"]["unchanged"], 1);
        assert_eq!(p["source"]["existing"]["processed"], 3);
        assert_eq!(p["source"]["existing"]["total"], "?");
        assert_eq!(p["links"]["existing"]["total"], "2");
        assert_eq!(s.situation_summary().as_object().map(|m| m.len()), Some(13));
        assert_eq!(s.status_summary(), json!({"SUCCESS": 3, "FAILURE": 0}));
        assert_eq!(
            s.situation_actions(),
            json!({"ABSENT": {"CREATE": 1}, "CONFIRMED": {"UPDATE": 2}})
        );
    }

    #[test]
    fn stored_summaries_come_back_in_idm_order() {
        // A summary stored with sorted keys (as recond wrote them before keeping key order).
        let sorted: Value = serde_json::from_str(
            r#"{"_id":"r1","analyze":true,"duration":5,"ended":"","mapping":"m","message":"x","progress":{},"stage":"ACTIVE_QUERY","state":"ACTIVE"}"#,
        )
        .expect("valid JSON");
        let v = summary_in_idm_order(sorted);
        let keys: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "_id", "mapping", "state", "stage", "progress", "ended", "duration", "analyze",
                "message"
            ]
        );
    }

    #[test]
    fn a_snapshot_merged_into_empty_statistics_gives_the_same_summary() {
        let mut t = Tally::default();
        t.record(&op(Action::Create, Situation::Absent));
        t.record(&op(Action::Update, Situation::Confirmed));
        t.time("sourcePhase", 3_000_000);
        let s = RunStats::default();
        s.merge(&t);
        s.merge(&t);
        let copy = RunStats::default();
        copy.merge(&s.snapshot());
        copy.copy_totals(&s);
        assert_eq!(copy.progress(false), s.progress(false));
        assert_eq!(copy.situation_actions(), s.situation_actions());
        assert_eq!(copy.status_summary(), s.status_summary());
        assert_eq!(copy.duration_summary(), s.duration_summary());
    }

    #[test]
    fn durations() {
        let mut d = Dur::default();
        d.add(2_000_000);
        d.add(4_000_000);
        let j = d.json();
        assert_eq!(j["min"], 2);
        assert_eq!(j["max"], 4);
        assert_eq!(j["mean"], 3);
        assert_eq!(j["count"], 2);
        assert_eq!(j["stdDev"], 1);
    }
}
