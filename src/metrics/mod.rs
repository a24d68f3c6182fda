//! Metrics: `GET /openidm/metrics/prometheus` (and a JSON view at `/openidm/metrics/api`).
//!
//! One process-wide registry (`prometheus-client`), fed by one-line hooks:
//! [`observe_request`] from the HTTP layer and [`run_ended`] from the runner when a run
//! completes. Values that are cheap to read when scraped (runs active, store size on disk) are
//! read then, by [`render`]'s caller, and never kept in sync by hand.
//!
//! Names: IDM's reconciliation timers as IDM's Prometheus endpoint names them
//! (`idm_recon_seconds`, `idm_recon_source_phase_seconds`, `idm_recon_target_phase_seconds`,
//! `idm_recon_id_queries_seconds{phase}`, all with a `mapping` label; histograms, so their
//! `_count` and `_sum` series are IDM's), and recond's own under `recond_`. Run figures are
//! added when a run ends: a scrape never sees half of a run.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

use crate::engine::stats::{RunStats, ACTIONS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MappingLabels {
    mapping: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    mapping: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    mapping: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntryLabels {
    mapping: String,
    situation: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    mapping: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

type Timers<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~9 h: request latencies and whole runs on one scale.
    Histogram::new(exponential_buckets(0.001, 4.0, 13))
}

fn timers<L: Clone + std::hash::Hash + Eq>() -> Timers<L> {
    Family::new_with_constructor(seconds_histogram)
}

struct Metrics {
    registry: Registry,
    recon: Timers<MappingLabels>,
    source_phase: Timers<MappingLabels>,
    target_phase: Timers<MappingLabels>,
    id_queries: Timers<PhaseLabels>,
    runs: Family<RunLabels, Counter>,
    entries: Family<EntryLabels, Counter>,
    statuses: Family<StatusLabels, Counter>,
    requests: Timers<RequestLabels>,
    runs_active: Gauge,
    store_bytes: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let (recon, source_phase, target_phase, id_queries, requests) =
        (timers(), timers(), timers(), timers(), timers());
    let (runs, entries, statuses) = (
        Family::<RunLabels, Counter>::default(),
        Family::<EntryLabels, Counter>::default(),
        Family::<StatusLabels, Counter>::default(),
    );
    let (runs_active, store_bytes) = (Gauge::default(), Gauge::default());
    let mut registry = Registry::default();
    let r = &mut registry;
    r.register(
        "idm_recon_seconds",
        "Reconciliation runs of a mapping, start to end",
        recon.clone(),
    );
    r.register(
        "idm_recon_source_phase_seconds",
        "Source phases of a mapping's reconciliations",
        source_phase.clone(),
    );
    r.register(
        "idm_recon_target_phase_seconds",
        "Target phases of a mapping's reconciliations",
        target_phase.clone(),
    );
    r.register(
        "idm_recon_id_queries_seconds",
        "Source and target id queries of a mapping's reconciliations",
        id_queries.clone(),
    );
    r.register(
        "recond_recon_runs",
        "Completed reconciliation runs by mapping and final state",
        runs.clone(),
    );
    r.register(
        "recond_recon_entries",
        "Entries of completed runs by mapping, situation and action (planned actions in analysis runs)",
        entries.clone(),
    );
    r.register(
        "recond_recon_entry_status",
        "Entries of completed runs by mapping and status (SUCCESS, FAILURE)",
        statuses.clone(),
    );
    r.register(
        "recond_http_request_duration_seconds",
        "HTTP requests by method and status code",
        requests.clone(),
    );
    r.register(
        "recond_recon_runs_active",
        "Reconciliation runs active now",
        runs_active.clone(),
    );
    r.register(
        "recond_store_size_bytes",
        "Size on disk of the repository (the embedded store's folder, or PostgreSQL's tables)",
        store_bytes.clone(),
    );
    Metrics {
        registry,
        recon,
        source_phase,
        target_phase,
        id_queries,
        runs,
        entries,
        statuses,
        requests,
        runs_active,
        store_bytes,
    }
});

/// Hook for the HTTP layer: one answered request. Methods outside HTTP's standard set are
/// counted as `other`, so a client cannot grow the label set without bound.
pub fn observe_request(method: &str, status: u16, elapsed: Duration) {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let method = if KNOWN.contains(&method) {
        method
    } else {
        "other"
    };
    METRICS
        .requests
        .get_or_create(&RequestLabels {
            method: method.to_string(),
            code: status.to_string(),
        })
        .observe(elapsed.as_secs_f64());
}

/// Hook for the runner: a run of `mapping` ended in `state` after `duration_ms`.
pub fn run_ended(mapping: &str, state: &str, duration_ms: i64, stats: &RunStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &*METRICS;
    let by_mapping = MappingLabels {
        mapping: mapping.to_string(),
    };
    m.recon
        .get_or_create(&by_mapping)
        .observe(duration_ms.max(0) as f64 / 1000.0);
    {
        let durations = stats.durations.lock();
        let secs = |name: &str| durations.get(name).map(|d| (d.sum as f64 / 1e9, d.count));
        if let Some((s, _)) = secs("sourcePhase") {
            m.source_phase.get_or_create(&by_mapping).observe(s);
        }
        if let Some((s, _)) = secs("targetPhase") {
            m.target_phase.get_or_create(&by_mapping).observe(s);
        }
        for (metric, phase) in [("sourceQuery", "source"), ("targetQuery", "target")] {
            if let Some((s, _)) = secs(metric) {
                m.id_queries
                    .get_or_create(&PhaseLabels {
                        mapping: mapping.to_string(),
                        phase: phase.to_string(),
                    })
                    .observe(s);
            }
        }
    }
    m.runs
        .get_or_create(&RunLabels {
            mapping: mapping.to_string(),
            state: state.to_string(),
        })
        .inc();
    for s in crate::engine::model::Situation::ALL {
        for (a, n) in ACTIONS.iter().zip(&stats.situation_actions[s.index()]) {
            let n = n.load(Relaxed);
            if n > 0 {
                m.entries
                    .get_or_create(&EntryLabels {
                        mapping: mapping.to_string(),
                        situation: s.as_str().to_string(),
                        action: a.as_str().to_string(),
                    })
                    .inc_by(n);
            }
        }
    }
    for (status, n) in [
        ("SUCCESS", stats.success.load(Relaxed)),
        ("FAILURE", stats.failure.load(Relaxed)),
    ] {
        m.statuses
            .get_or_create(&StatusLabels {
                mapping: mapping.to_string(),
                status: status.to_string(),
            })
            .inc_by(n);
    }
}

/// The figures read at scrape time.
pub struct Gauges<'a> {
    pub runs_active: usize,
    pub data_dir: &'a Path,
}

fn set_gauges(g: &Gauges) {
    METRICS
        .runs_active
        .set(i64::try_from(g.runs_active).unwrap_or(i64::MAX));
    let bytes = dir_size(g.data_dir);
    METRICS
        .store_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// The Prometheus exposition (OpenMetrics text, which Prometheus reads natively).
pub fn render(g: &Gauges) -> String {
    set_gauges(g);
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry) {
        // Writing into a String cannot fail; say so loudly if it ever does.
        tracing::error!(error = %e, "encoding the metrics failed");
    }
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /openidm/metrics/api`: the same figures as JSON, one object per series with its labels,
/// read back from the Prometheus text so that the two endpoints never disagree.
pub fn api_json(g: &Gauges) -> Value {
    let text = render(g);
    let mut result = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut obj = serde_json::Map::new();
        obj.insert("_id".into(), json!(series));
        obj.insert("name".into(), json!(name));
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                obj.insert(k.to_string(), json!(v.trim_matches('"')));
            }
        }
        let number = value.parse::<f64>().ok();
        obj.insert("value".into(), json!(number));
        result.push(Value::Object(obj));
    }
    let n = result.len();
    json!({
        "result": result, "resultCount": n, "pagedResultsCookie": null,
        "totalPagedResultsPolicy": "NONE", "totalPagedResults": -1, "remainingPagedResults": -1,
    })
}

/// Bytes of the files under `dir` (0 when it cannot be read: the figure is informative).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_shows_up_under_idm_and_recond_names() {
        let stats = RunStats::default();
        stats.time("sourcePhase", 2_000_000_000);
        stats.time("sourceQuery", 1_000_000);
        stats.success.store(3, std::sync::atomic::Ordering::Relaxed);
        stats.situation_actions[crate::engine::model::Situation::Absent.index()][0]
            .store(3, std::sync::atomic::Ordering::Relaxed);
        run_ended("unit_m", "SUCCESS", 2500, &stats);
        observe_request("GET", 200, Duration::from_millis(3));
        observe_request("BREW", 405, Duration::from_millis(1));
        let dir = std::env::temp_dir();
        let text = render(&Gauges {
            runs_active: 1,
            data_dir: &dir.join("recond-metrics-unit-test-missing"),
        });
        for expected in [
            "idm_recon_seconds_count{mapping=\"unit_m\"} 1",
            "idm_recon_source_phase_seconds_sum{mapping=\"unit_m\"} 2.0",
            "idm_recon_id_queries_seconds_count{mapping=\"unit_m\",phase=\"source\"} 1",
            "recond_recon_entries_total{mapping=\"unit_m\",situation=\"ABSENT\",action=\"CREATE\"} 3",
            "recond_recon_entry_status_total{mapping=\"unit_m\",status=\"SUCCESS\"} 3",
            "recond_recon_runs_total{mapping=\"unit_m\",state=\"SUCCESS\"} 1",
            "recond_recon_runs_active 1",
            "recond_store_size_bytes 0",
            "recond_http_request_duration_seconds_count{method=\"GET\",code=\"200\"}",
            "recond_http_request_duration_seconds_count{method=\"other\",code=\"405\"} 1",
        ] {
            assert!(text.contains(expected), "{expected} missing in\n{text}");
        }
        let api = api_json(&Gauges {
            runs_active: 0,
            data_dir: &dir.join("recond-metrics-unit-test-missing"),
        });
        assert!(api["resultCount"].as_u64().unwrap_or(0) > 0);
    }
}
