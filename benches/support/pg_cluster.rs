//! The `pg-cluster` scenario: a clustered run (`clusteredSourceReconEnabled`, pages of
//! [`PAGE`] objects) on two recond nodes sharing one PostgreSQL repository, both in this
//! process (two apps with their own folders and node ids): a first load of `managed/user`
//! from the CSV source, then a steady run, each started on node A; node B joins through its
//! join thread (it looks for clustered runs about once a second). Reported: each node's
//! source objects and rate, the pages, and the coordinator's cost per page — the statements
//! a page costs (taken with its payload, the node's report, completed with its result)
//! replayed for [`PROBE_PAGES`] pages of the same shape on the same database.

use std::time::Instant;

use recond::cluster::PgCoordinator;
use serde_json::{json, Map, Value};

use super::pg::Pg;
use super::{app_in, config_text, recon_with, round3, row, situation, write_csv, Bench, COLUMNS};

/// `reconSourceQueryPageSize` of the scenario (IDM's default page size).
const PAGE: usize = 1000;
/// Pages replayed to measure the coordinator's cost per page.
const PROBE_PAGES: usize = 100;

pub fn run(b: &Bench, n: usize, threads: usize) -> (f64, Value) {
    let pg = Pg::start().expect("PostgreSQL (the parent checked it is installed)");
    pg.exec("CREATE DATABASE repo");
    pg.exec("CREATE DATABASE probe");
    let url = |db: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            pg.port
        )
    };
    let probe = probe_page_cost(&url("probe"));

    let node_b_dir = b.dir.join("node-b");
    std::fs::create_dir_all(&node_b_dir).expect("node B's folder");
    write_csv(&b.dir.join("hr.csv"), n, None, None);
    write_csv(&node_b_dir.join("hr.csv"), n, None, None);
    let text = |node: &str| {
        let base = config_text("pg-cluster", threads, false, None).replace(
            "[[mappings]]\nname = \"bench\"\n",
            &format!(
                "[[mappings]]\nname = \"bench\"\nclusteredSourceReconEnabled = true\nreconSourceQueryPageSize = {PAGE}\n"
            ),
        );
        format!(
            "{base}\n[storage]\nbackend = \"postgres\"\nurl = \"{}\"\n\n[cluster]\nnode_id = \"{node}\"\n",
            url("repo")
        )
    };
    let a = b.app(&text("node-a"));
    let node_b = app_in(&node_b_dir, &text("node-b"));
    let (first, s) = recon_with(&a, false, None);
    assert_eq!(situation(&s, "ABSENT"), n as u64, "{s}");
    let first_nodes = per_node(&s, first);
    let (steady, s) = recon_with(&a, false, None);
    assert_eq!(situation(&s, "CONFIRMED"), n as u64, "{s}");
    let steady_nodes = per_node(&s, steady);
    drop(node_b);
    let pages = n.div_ceil(PAGE);
    (
        first,
        json!({
            "nodes": 2,
            "pages": pages,
            "first_load_by_node": first_nodes,
            "steady_seconds": round3(steady),
            "steady_by_node": steady_nodes,
            "claim_ms_per_page": round3(probe.0),
            "offer_ms_per_page": round3(probe.1),
            // The coordinator's share of the first load's node-seconds.
            "claim_overhead_pct": round3(100.0 * pages as f64 * (probe.0 + probe.1) / 1000.0 / (2.0 * first)),
        }),
    )
}

/// Each node's source objects and their rate over the run's wall time.
fn per_node(summary: &Value, secs: f64) -> Value {
    let by_node = summary["sourceProcessedByNode"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    Value::Object(
        by_node
            .into_iter()
            .map(|(node, count)| {
                let c = count.as_u64().unwrap_or(0);
                (
                    node,
                    json!({"objects": c, "per_second": round3(c as f64 / secs.max(1e-9))}),
                )
            })
            .collect::<Map<String, Value>>(),
    )
}

/// Milliseconds per page: (claim + report + complete, offer), over [`PROBE_PAGES`] pages of
/// [`PAGE`] CSV objects, with a report and a result of the sizes a run writes.
fn probe_page_cost(url: &str) -> (f64, f64) {
    let c = PgCoordinator::connect(url).expect("connect the probe coordinator");
    c.install_schema().expect("the cluster tables");
    let c = recond::cluster::Coordinator::Postgres(c);
    let page: Vec<Value> = (0..PAGE)
        .map(|i| {
            let r = row(i, 0);
            let mut m = Map::new();
            m.insert("_id".into(), Value::String(r[0].clone()));
            for (k, v) in COLUMNS.iter().zip(r) {
                m.insert((*k).to_string(), Value::String(v));
            }
            Value::Object(m)
        })
        .collect();
    let payload = serde_json::to_string(&page).expect("a page");
    let payloads = vec![payload; PROBE_PAGES];
    let report = json!({"processed": 1000, "tally": {"counters": {"created": 1000, "success": 1000},
        "situations": {"ABSENT": 1000}, "situationActions": {"ABSENT": {"CREATE": 1000}},
        "durations": {"sourcePagePhase": {"count": 1, "sum": 1, "min": 1, "max": 1, "sumSq": 1.0}}}})
    .to_string();
    let result = "0123456789abcdef".repeat(PAGE);
    let lease = std::time::Duration::from_secs(60);
    let started = Instant::now();
    for (i, chunk) in payloads.chunks(8).enumerate() {
        c.offer_pages("probe", (i * 8) as u64, chunk)
            .expect("offer");
    }
    let offer = started.elapsed().as_secs_f64() * 1000.0 / PROBE_PAGES as f64;
    let started = Instant::now();
    while let Some(p) = c.claim_page("probe", "probe", lease).expect("claim") {
        c.put_note("probe", "report/probe", "probe", &report)
            .expect("report");
        assert!(c
            .complete_page("probe", &p, "probe", &result)
            .expect("complete"));
    }
    let claim = started.elapsed().as_secs_f64() * 1000.0 / PROBE_PAGES as f64;
    c.drop_pages("probe").expect("drop");
    (claim, offer)
}
