//! The reconciliation benchmark: `cargo bench --bench recon -- [--records N] [--scenario NAME]
//! [--threads N]`.
//!
//! Every scenario runs in a fresh child process (so its peak resident memory, read from
//! /proc/self/status VmHWM, is its own) against a fresh store in a temporary folder, reading
//! its source through the real CSV connector. Scenarios that need existing data (steady,
//! drift, delete, correlate) build it in a separate process first (reported as
//! `setup_peak_rss_bytes`), so the timed run opens an existing store like a restarted server.
//! The parent first measures the storage floor (the same objects, index entries and links
//! written with no reconciliation logic) and prints one JSON line per scenario on stdout, plus
//! a readable table on stderr.

#[path = "support/ldap.rs"]
mod ldap;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use recond::app::App;
use recond::config::Config;
use recond::runner::{ReconKind, StartRequest};
use recond::storage::{index_terms, DataBatch, Link, Store, StoreOptions};
use serde_json::{json, Map, Value};

#[allow(dead_code)]
#[path = "../tests/it/pg.rs"]
mod pg;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "support/pg_repo.rs"]
mod pg_repo;
#[path = "support/pg_scenario.rs"]
mod pg_scenario;

const SCENARIOS: &[&str] = &[
    "floor",
    "first-load",
    "first-load-assoc",
    "first-load-diffs",
    "first-load-10x",
    "steady",
    "drift",
    "drift-assoc",
    "drift-diffs",
    "correlate",
    "correlate-4x",
    "delete",
    "transform",
    "transform-twin",
    "http",
    "implicit-sync-latency",
    "ldap-source",
    "ldap-target",
    "pg-first-load",
    "pg-repo",
    "pg-cluster",
];

/// Scenarios that run only when named in `--scenario`: `first-load-10x` loads ten times
/// `--records` (10,000,000 at the default), which takes many minutes and ~2 GB of disk.
const OPT_IN: &[&str] = &["first-load-10x"];

/// The number of records a scenario runs over, for `--records n`.
fn records_of(scenario: &str, n: usize) -> usize {
    if scenario == "first-load-10x" {
        10 * n
    } else {
        n
    }
}

struct Args {
    records: usize,
    scenario: Option<String>,
    threads: usize,
    child: bool,
    floor: Option<f64>,
    setup_in: Option<PathBuf>,
}

const USAGE: &str =
    "usage: cargo bench --bench recon -- [--records N] [--scenario a,b,c] [--threads N]";

/// The command line; anything it does not know (or a value it cannot read) is a usage error,
/// never a silent default: a mistyped flag must not start an hour of 1 M scenarios.
fn parse_args() -> Args {
    let mut a = Args {
        records: 1_000_000,
        scenario: None,
        threads: 2,
        child: false,
        floor: None,
        setup_in: None,
    };
    fn usage(problem: &str) -> ! {
        eprintln!("{problem}\n{USAGE}\nscenarios: {}", SCENARIOS.join(", "));
        std::process::exit(2)
    }
    fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
        v.as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage(&format!("{flag} needs a value it can read")))
    }
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--records" => a.records = value("--records", it.next()),
            "--scenario" => a.scenario = Some(value("--scenario", it.next())),
            "--threads" => a.threads = value("--threads", it.next()),
            "--child" => a.child = true,
            "--floor" => a.floor = Some(value("--floor", it.next())),
            "--setup-in" => {
                a.setup_in = Some(PathBuf::from(value::<String>("--setup-in", it.next())))
            }
            "--bench" => {} // cargo passes it
            "-h" | "--help" => {
                let _ = writeln!(
                    std::io::stdout(),
                    "{USAGE}\nscenarios: {}",
                    SCENARIOS.join(", ")
                );
                std::process::exit(0)
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    a
}

fn main() {
    let args = parse_args();
    if let Some(dir) = &args.setup_in {
        let name = args.scenario.clone().unwrap_or_default();
        setup(&name, dir, args.records, args.threads);
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            json!({"setup_peak_rss_bytes": peak_rss()})
        );
        return;
    }
    if args.child {
        let name = args.scenario.clone().unwrap_or_default();
        let (seconds, extra) = run_scenario(&name, args.records, args.threads, args.floor);
        let mut line = json!({
            "scenario": name,
            "records": args.records,
            "seconds": round3(seconds),
            "entries_per_sec": (args.records as f64 / seconds).round(),
            "peak_rss_bytes": peak_rss(),
            "cpu_seconds": round3(cpu_seconds()),
            "floor_seconds": args.floor.map(round3),
        });
        if let (Some(obj), Value::Object(extra)) = (line.as_object_mut(), extra) {
            obj.extend(extra);
        }
        let _ = writeln!(std::io::stdout(), "{line}");
        return;
    }
    // `--scenario a,b,c` runs those (in the order given) after one floor measurement.
    let selected: Vec<&str> = match &args.scenario {
        Some(list) => list
            .split(',')
            .map(|s| {
                SCENARIOS
                    .iter()
                    .copied()
                    .find(|x| *x == s.trim())
                    .unwrap_or_else(|| {
                        eprintln!("unknown scenario {s}; known: {}", SCENARIOS.join(", "));
                        std::process::exit(2)
                    })
            })
            .collect(),
        None => SCENARIOS
            .iter()
            .copied()
            .filter(|s| !OPT_IN.contains(s))
            .collect(),
    };
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    let run_child = |name: &str, floor: Option<f64>| -> Option<Value> {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--child",
            "--scenario",
            name,
            "--records",
            &records_of(name, args.records).to_string(),
            "--threads",
            &args.threads.to_string(),
        ]);
        if let Some(f) = floor {
            cmd.args(["--floor", &f.to_string()]);
        }
        let out = cmd.output().expect("run a scenario child");
        if !out.status.success() {
            eprintln!(
                "scenario {name} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        last_json_line(&out.stdout)
    };
    eprintln!(
        "recond benchmark: {} records, {} threads",
        args.records, args.threads
    );
    let floor = run_child("floor", None).and_then(|v| v["seconds"].as_f64());
    let mut rows = Vec::new();
    for name in selected {
        if name.starts_with("pg-")
            && !pg::available()
            && std::env::var("CI").as_deref() != Ok("true")
        {
            eprintln!("scenario {name} skipped: PostgreSQL is not installed");
            continue;
        }
        let line = if name == "floor" {
            run_child("floor", floor)
        } else {
            run_child(name, floor)
        };
        if let Some(mut line) = line {
            if let Some(obj) = line.as_object_mut() {
                obj.insert("floor_seconds".into(), json!(floor.map(round3)));
            }
            let _ = writeln!(std::io::stdout(), "{line}");
            rows.push(line);
        }
    }
    eprintln!(
        "\n{:<18} {:>10} {:>10} {:>14} {:>12} {:>10}",
        "scenario", "records", "seconds", "entries/s", "peak RSS MiB", "x floor"
    );
    for r in &rows {
        let secs = r["seconds"].as_f64().unwrap_or(0.0);
        // Per record, so that a scenario over ten times the records compares with the same
        // floor (measured over `--records`).
        let records = r["records"].as_f64().unwrap_or(0.0);
        let ratio = floor
            .map(|f| {
                if f > 0.0 && records > 0.0 {
                    (secs / records) / (f / args.records as f64)
                } else {
                    0.0
                }
            })
            .unwrap_or(0.0);
        eprintln!(
            "{:<18} {:>10} {:>10.2} {:>14.0} {:>12.0} {:>10.2}",
            r["scenario"].as_str().unwrap_or(""),
            r["records"],
            secs,
            r["entries_per_sec"].as_f64().unwrap_or(0.0),
            r["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0,
            ratio
        );
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// User plus system CPU time of this process so far (its setup child not included), from
/// /proc/self/stat: on a shared machine a fairer measure of the work done than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15, in clock ticks of 1/100 s (USER_HZ on Linux).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

// ---- data ----------------------------------------------------------------------------------

const FIRST: &[&str] = &[
    "Ada", "Barbara", "Carlos", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
    "Kira", "Liam",
];
const LAST: &[&str] = &[
    "Jensen", "Carter", "Okafor", "Novak", "Silva", "Tanaka", "Muller", "Haddad", "Kowalski",
    "Nguyen",
];
const DEPT: &[&str] = &[
    "Sales",
    "Engineering",
    "Support",
    "Finance",
    "Legal",
    "Operations",
];
const CITY: &[&str] = &[
    "Grenoble", "Oslo", "Austin", "Porto", "Kyoto", "Nairobi", "Quito",
];

const COLUMNS: &[&str] = &[
    "uid",
    "userName",
    "givenName",
    "sn",
    "mail",
    "telephoneNumber",
    "street",
    "city",
    "postalCode",
    "department",
    "title",
];

fn row(i: usize, variant: u32) -> Vec<String> {
    let g = FIRST[i % FIRST.len()];
    let s = LAST[(i / 7) % LAST.len()];
    let title = if variant == 0 {
        "Engineer".to_string()
    } else {
        format!("Engineer v{variant}")
    };
    vec![
        format!("e{i:08}"),
        format!("{}.{}{i}", g.to_lowercase(), s.to_lowercase()),
        g.to_string(),
        s.to_string(),
        format!("{}.{}{i}@example.com", g.to_lowercase(), s.to_lowercase()),
        format!("+1-555-{:04}-{:04}", i % 10_000, (i / 10_000) % 10_000),
        format!("{} Main Street, Building {}", i % 997, i % 13),
        CITY[i % CITY.len()].to_string(),
        format!("{:05}", (i * 7919) % 100_000),
        DEPT[i % DEPT.len()].to_string(),
        title,
    ]
}

fn write_csv(path: &Path, n: usize, skip_every: Option<usize>, change_every: Option<usize>) {
    let header: Vec<String> = COLUMNS.iter().map(|c| (*c).to_string()).collect();
    let mut rows = (0..n)
        .filter(|i| skip_every.is_none_or(|k| i % k != 0))
        .map(|i| {
            let variant = u32::from(change_every.is_some_and(|k| i % k == 0));
            row(i, variant)
        });
    recond::connectors::csv::write_csv(path, &header, &mut rows).expect("write the source CSV");
}

fn target_body(i: usize) -> Map<String, Value> {
    let r = row(i, 0);
    let mut m = Map::new();
    for (k, v) in COLUMNS.iter().zip(r).skip(1) {
        m.insert((*k).to_string(), Value::String(v));
    }
    m
}

// ---- configuration -------------------------------------------------------------------------

/// Scenarios whose config has no `[storage]` section, so that they run with recon.toml's
/// default store settings and their peak memory is the figure a user gets (issue #19).
const DEFAULT_STORE_SCENARIOS: &[&str] = &[
    "first-load",
    "first-load-10x",
    "steady",
    "http",
    "pg-repo",
    "pg-cluster",
];

/// The `[storage]` section of a scenario's config: none (the defaults) for
/// [`DEFAULT_STORE_SCENARIOS`], else the bench's larger cache and slower flush, which the
/// figures before issue #19 were measured with.
fn store_section(scenario: &str) -> &'static str {
    if DEFAULT_STORE_SCENARIOS.contains(&scenario) {
        ""
    } else {
        "[storage]\ncache_capacity_mb = 256\nflush_every_ms = 1000\n"
    }
}

fn config_text(scenario: &str, threads: usize, correlate: bool, transform: Option<bool>) -> String {
    let props: String = COLUMNS
        .iter()
        .skip(1)
        .enumerate()
        .map(|(i, c)| match transform {
            Some(true) if i < 5 => format!(
                "  {{ source = \"{c}\", target = \"{c}\", transform = {{ type = \"text/javascript\", source = \"source.toLowerCase()\" }} }},\n"
            ),
            _ => format!("  {{ source = \"{c}\", target = \"{c}\" }},\n"),
        })
        .collect();
    let id_rule = if correlate {
        String::new()
    } else {
        "  { source = \"uid\", target = \"_id\" },\n".to_string()
    };
    let correlation = if correlate {
        "correlationQuery = { expressionTree = { all = [\"userName\"] } }\n"
    } else {
        ""
    };
    let policies = if correlate {
        "policies = [ { situation = \"FOUND\", action = \"LINK\" }, { situation = \"UNASSIGNED\", action = \"IGNORE\" } ]"
    } else {
        "policies = [ { situation = \"CONFIRMED\", action = \"UPDATE\" }, { situation = \"ABSENT\", action = \"CREATE\" }, { situation = \"SOURCE_MISSING\", action = \"DELETE\" } ]"
    };
    let storage = store_section(scenario);
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "db"

{storage}

[managed.user]
indexed = ["userName"]

[system.hr.account]
connector = "csv"
file = "hr.csv"
id_column = "uid"

[[users]]
username = "bench"
password = "bench"

[[mappings]]
name = "bench"
source = "system/hr/account"
target = "managed/user"
taskThreads = {threads}
{correlation}properties = [
{id_rule}{props}]
{policies}
"#
    )
}

struct Bench {
    dir: PathBuf,
}

impl Bench {
    fn new(name: &str) -> Bench {
        let dir = std::env::temp_dir().join(format!("recond-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the bench folder");
        Bench { dir }
    }

    fn app(&self, text: &str) -> App {
        app_in(&self.dir, text)
    }
}

/// Writes `text` as `dir/recon.toml` and builds the app over it.
fn app_in(dir: &Path, text: &str) -> App {
    let path = dir.join("recon.toml");
    std::fs::write(&path, text).expect("write the config");
    let config = Config::load(&path, None, None).expect("a valid bench config");
    App::build(config).expect("the bench app starts")
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn recon(app: &App, persist: bool) -> (f64, Value) {
    recon_with(app, persist, None)
}

/// A run with a request body (`recordChanges` for the diff scenarios).
fn recon_with(app: &App, persist: bool, body: Option<Value>) -> (f64, Value) {
    let started = Instant::now();
    let run = app
        .state
        .runner
        .start(StartRequest {
            mapping: "bench".into(),
            kind: ReconKind::Full,
            body,
            analyze: false,
            persist_associations: persist,
            user: "bench".into(),
            schedule: None,
        })
        .expect("the run starts");
    while !run.stage().is_completed() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = run.summary();
    assert_eq!(summary["state"], "SUCCESS", "bench run failed: {summary}");
    (secs, summary)
}

/// Writes `n` targets (and optionally their links) straight through the storage layer.
fn write_targets(store: &Store, n: usize, start: usize, links: bool) {
    let mut batch = DataBatch::new();
    for i in start..start + n {
        let body = target_body(i);
        let terms: Vec<_> = body
            .get("userName")
            .map(index_terms)
            .unwrap_or_default()
            .into_iter()
            .map(|t| ("/userName".to_string(), t))
            .collect();
        let id = format!("e{i:08}");
        batch
            .put_object("managed/user", &id, 1, &body, &[], &terms)
            .expect("stage an object");
        if links {
            let link = Link {
                link_type: "bench".into(),
                qualifier: "default".into(),
                first_id: id.clone(),
                second_id: id,
                rev: 1,
            };
            batch.put_link(&link, None).expect("stage a link");
        }
        if batch.len() >= 1000 {
            store
                .apply(std::mem::take(&mut batch))
                .expect("write a batch");
        }
    }
    store.apply(batch).expect("write a batch");
}

fn situation(summary: &Value, s: &str) -> u64 {
    summary["situationSummary"][s].as_u64().unwrap_or(0)
}

fn run_scenario(name: &str, n: usize, threads: usize, floor: Option<f64>) -> (f64, Value) {
    if ldap::SCENARIOS.contains(&name) {
        return ldap::run(name, n, threads, floor).unwrap_or_else(|| {
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                json!({"scenario": name, "skipped": "slapd is not installed"})
            );
            std::process::exit(0)
        });
    }
    let b = Bench::new(name);
    let csv = b.dir.join("hr.csv");
    match name {
        "floor" => {
            let store = Store::open(
                &b.dir.join("db"),
                &StoreOptions {
                    cache_capacity_bytes: 256 << 20,
                    flush_every_ms: Some(1000),
                    ..StoreOptions::default()
                },
            )
            .expect("open the store");
            let started = Instant::now();
            write_targets(&store, n, 0, true);
            store.flush().expect("flush");
            (started.elapsed().as_secs_f64(), json!({}))
        }
        "first-load" | "first-load-10x" | "first-load-assoc" | "first-load-diffs" => {
            write_csv(&csv, n, None, None);
            let app = b.app(&config_text(name, threads, false, None));
            let assoc = matches!(name, "first-load-assoc" | "first-load-diffs");
            let (secs, s) = recon_with(&app, assoc, diffs_body(name));
            assert_eq!(situation(&s, "ABSENT"), n as u64);
            app.store.flush().expect("flush the store");
            let mut extra = json!({"created": s["progress"]["target"]["created"],
                "store_disk_bytes": app.store.size_on_disk(),
                "source_csv_bytes": std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0)});
            if assoc {
                // One page of 100 entries at the start and deep into the run, by cookie.
                let id = s["_id"].as_str().unwrap_or_default().to_string();
                let page = |cookie: Option<String>| {
                    let mut q = recond::objects::QueryRequest::all();
                    q.page_size = 100;
                    q.cookie = cookie;
                    let t = Instant::now();
                    for _ in 0..20 {
                        let r = app
                            .state
                            .runner
                            .entries_query(&id, &q, None, None)
                            .expect("a page of entries");
                        assert_eq!(r.results.len(), 100);
                    }
                    t.elapsed().as_secs_f64() * 1000.0 / 20.0
                };
                let first = page(None);
                let deep_key = recond::runner::entry_key(n.saturating_sub(101) as u64);
                let deep = page(Some(recond::objects::paging::cookie_after(&deep_key)));
                if let Some(obj) = extra.as_object_mut() {
                    obj.insert("first_page_ms".into(), json!(round3(first)));
                    obj.insert("deep_page_ms".into(), json!(round3(deep)));
                }
            }
            (secs, extra)
        }
        "steady" | "drift" | "drift-assoc" | "drift-diffs" | "delete" | "correlate"
        | "correlate-4x" => {
            let setup_peak = setup_in_child(name, &b.dir, n, threads);
            let app = b.app(&config_text(
                name,
                threads,
                name.starts_with("correlate"),
                None,
            ));
            let (secs, s) = recon_with(&app, name.starts_with("drift-"), diffs_body(name));
            let t = &s["progress"]["target"];
            let d = &s["durationSummary"];
            let mut extra = json!({"setup_peak_rss_bytes": setup_peak,
                "source_phase_ms": d["sourcePhase"]["sum"], "target_phase_ms": d["targetPhase"]["sum"]});
            if let Some(obj) = extra.as_object_mut() {
                if name.starts_with("correlate") {
                    assert_eq!(
                        situation(&s, "FOUND"),
                        n as u64,
                        "every source correlates: {s}"
                    );
                    obj.insert("targets".into(), json!(correlate_targets(name, n)));
                } else {
                    obj.insert("updated".into(), t["updated"].clone());
                    obj.insert("unchanged".into(), t["unchanged"].clone());
                    obj.insert("deleted".into(), t["deleted"].clone());
                }
            }
            (secs, extra)
        }
        "transform" | "transform-twin" => {
            write_csv(&csv, n, None, None);
            let app = b.app(&config_text(
                name,
                threads,
                false,
                Some(name == "transform"),
            ));
            let (secs, _) = recon(&app, false);
            (
                secs,
                json!({"scripted_properties": if name == "transform" { 5 } else { 0 }}),
            )
        }
        "http" => http_scenario(&b, n, threads),
        "implicit-sync-latency" => implicit_sync_scenario(&b, n),
        "pg-first-load" => pg_scenario::first_load(&b, n, threads),
        "pg-repo" => pg_repo::run(&b, n, threads),
        "pg-cluster" => pg_cluster::run(&b, n, threads),
        other => panic!("unknown scenario {other}"),
    }
}

/// The diff scenarios record attribute changes on their entries (contract §8).
fn diffs_body(name: &str) -> Option<Value> {
    name.ends_with("-diffs")
        .then(|| json!({"recordChanges": true}))
}

fn correlate_targets(name: &str, n: usize) -> usize {
    if name == "correlate-4x" {
        4 * n
    } else {
        n
    }
}

/// Builds the data a scenario starts from in `dir`, in its own process (see
/// [`setup_in_child`]).
fn setup(name: &str, dir: &Path, n: usize, threads: usize) {
    let csv = dir.join("hr.csv");
    write_csv(&csv, n, None, None);
    let correlate = name.starts_with("correlate");
    let app = app_in(dir, &config_text(name, threads, correlate, None));
    if correlate {
        write_targets(&app.store, correlate_targets(name, n), 0, false);
    } else {
        recon(&app, false);
    }
    match name {
        "drift" | "drift-assoc" | "drift-diffs" => write_csv(&csv, n, None, Some(10)),
        "delete" => write_csv(&csv, n, Some(10), None),
        _ => {}
    }
    app.store.flush().expect("flush the setup");
}

/// Runs [`setup`] in a separate process, so that the timed run starts like a server
/// restarted over an existing store and its peak memory is its own. Returns the setup's
/// peak resident size.
fn setup_in_child(name: &str, dir: &Path, n: usize, threads: usize) -> u64 {
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    let out = Command::new(exe)
        .args(["--scenario", name, "--records", &n.to_string()])
        .args(["--threads", &threads.to_string()])
        .arg("--setup-in")
        .arg(dir)
        .output()
        .expect("run the setup");
    assert!(
        out.status.success(),
        "setup of {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    last_json_line(&out.stdout)
        .and_then(|v| v["setup_peak_rss_bytes"].as_u64())
        .unwrap_or(0)
}

/// The last line of a child's output that is JSON (its result line).
fn last_json_line(stdout: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
}

// ---- the http scenario ---------------------------------------------------------------------

fn http(addr: &str, method: &str, path: &str) -> (u16, Value) {
    http_with(addr, method, path, None)
}

/// One request (with an optional JSON body) on a fresh connection; the status and JSON body.
fn http_with(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-OpenIDM-Username: bench\r\nX-OpenIDM-Password: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).expect("status");
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A bench app served over HTTP on a loopback port by its own runtime.
struct Served {
    rt: tokio::runtime::Runtime,
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), recond::app::AppError>>,
}

impl Served {
    fn start(app: App) -> Served {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(app.run(listener, async {
            let _ = rx.await;
        }));
        Served {
            rt,
            addr,
            stop,
            server,
        }
    }

    /// Shuts the server down and waits for it.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.rt.block_on(self.server);
    }
}

fn http_scenario(b: &Bench, n: usize, threads: usize) -> (f64, Value) {
    write_csv(&b.dir.join("hr.csv"), n, None, None);
    let app = b.app(&config_text("http", threads, false, None));
    let served = Served::start(app);
    let addr = served.addr.clone();
    let started = Instant::now();
    let a = addr.clone();
    let runner = std::thread::spawn(move || {
        http(
            &a,
            "POST",
            "/openidm/recon?_action=recon&mapping=bench&waitForCompletion=true",
        )
    });
    // Poll the active run's summary while it runs.
    let mut run_id = None;
    let mut latencies = poll_latencies(
        || !runner.is_finished(),
        || {
            if run_id.is_none() {
                let (_, list) = http(&addr, "GET", "/openidm/recon");
                run_id = list["reconciliations"]
                    .as_array()
                    .and_then(|l| l.last())
                    .and_then(|r| r["_id"].as_str())
                    .map(str::to_string);
            }
            run_id
                .as_ref()
                .map(|id| (addr.clone(), format!("/openidm/recon/{id}")))
        },
    );
    let (code, body) = runner.join().expect("the run request");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(code, 200, "{body}");
    // The run's CPU time (it replaces the line's `cpu_seconds`): the floor's writers after
    // it would count too.
    let cpu = cpu_seconds();
    let mut floor = latency_floor(&addr, latencies.len().clamp(100, 500), &b.dir);
    served.stop();
    (
        secs,
        json!({"cpu_seconds": round3(cpu), "polls": latencies.len(),
               "p50_ms": round3(percentile(&mut latencies, 0.5)),
               "p99_ms": round3(percentile(&mut latencies, 0.99)),
               "floor_polls": floor.len(),
               "floor_p50_ms": round3(percentile(&mut floor, 0.5)),
               "floor_p99_ms": round3(percentile(&mut floor, 0.99))}),
    )
}

/// Polls every 20 ms while `go()` holds: each poll asks `target()` for the address and path
/// (none: skip this turn) and times one GET on a fresh connection; the latencies (ms) of the
/// polls answered 200.
fn poll_latencies(
    mut go: impl FnMut() -> bool,
    mut target: impl FnMut() -> Option<(String, String)>,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    while go() {
        if let Some((addr, path)) = target() {
            let t = Instant::now();
            let (code, _) = http(&addr, "GET", &path);
            if code == 200 {
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    latencies
}

/// The platform's latency floor for the http figure: the same client, at the same pace, asks
/// the same server for `GET /openidm/info/ping` (answered from memory on the runtime thread,
/// as a live run's summary is) `polls` times while two threads of this process do what a run
/// does to the machine without any of recond in it: at the runs' scheduling priority
/// (`runner::priority`), each writes 64 KiB blocks to its own file in `dir` (wrapping at
/// 256 MiB) with a data sync every 8 MiB, so that both cores are busy and the kernel's
/// writeback runs as under a run. What remains is the wake-up delay of the server's and the
/// client's threads behind that load: no server can answer faster on this machine and kernel
/// while the disk is written at this pace.
fn latency_floor(addr: &str, polls: usize, dir: &Path) -> Vec<f64> {
    use std::os::unix::fs::FileExt;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let stop = stop.clone();
            let path = dir.join(format!("latency-floor-{i}"));
            std::thread::spawn(move || {
                recond::runner::priority::lower_current_thread();
                let file = std::fs::File::create(&path).expect("a latency floor file");
                let block: Vec<u8> = (0..64 * 1024).map(|b| (b % 251) as u8).collect();
                let (mut offset, mut written) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    file.write_all_at(&block, offset)
                        .expect("write a floor block");
                    offset = (offset + block.len() as u64) % (256 << 20);
                    written += 1;
                    if written % 128 == 0 {
                        file.sync_data().expect("sync a floor file");
                    }
                }
                drop(file);
                std::fs::remove_file(&path).expect("remove a latency floor file");
            })
        })
        .collect();
    let mut asked = 0;
    let latencies = poll_latencies(
        || {
            asked += 1;
            asked <= polls
        },
        || Some((addr.to_string(), "/openidm/info/ping".to_string())),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().expect("a latency floor writer");
    }
    latencies
}

/// The `p` quantile (0..=1) of `values`, sorted in place; 0 when empty.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = ((values.len() as f64 * p) as usize).min(values.len().saturating_sub(1));
    values.get(at).copied().unwrap_or(0.0)
}

// ---- the implicit-sync-latency scenario ---------------------------------------------------

/// Contract §5: `PUT /openidm/managed/user/{id}` with one mapping from managed/user to another
/// (store) set, timed until the response, which implicit synchronization sends only after the
/// target is written. `n` users are PUT one after the other over the real server; after each,
/// the target is read back (untimed) to check it exists.
fn implicit_sync_scenario(b: &Bench, n: usize) -> (f64, Value) {
    let config = r#"
[server]
listen = "127.0.0.1:0"
data_dir = "db"

[managed.user]
indexed = ["userName"]

[system.out.account]
connector = "store"

[[users]]
username = "bench"
password = "bench"

[[mappings]]
name = "user_out"
source = "managed/user"
target = "system/out/account"
properties = [
  { source = "userName", target = "_id" },
  { source = "givenName", target = "givenName" },
  { source = "sn", target = "sn" },
  { source = "mail", target = "mail" },
]
policies = [ { situation = "ABSENT", action = "CREATE" }, { situation = "CONFIRMED", action = "UPDATE" } ]
"#;
    let app = b.app(config);
    let served = Served::start(app);
    let addr = served.addr.clone();
    let mut latencies = Vec::with_capacity(n);
    let mut timed = 0.0;
    for i in 0..n {
        let body = json!({"userName": format!("user{i}"), "givenName": format!("Given{i}"),
                          "sn": format!("Family{i}"), "mail": format!("user{i}@example.com")});
        let t = Instant::now();
        let (code, answer) = http_with(
            &addr,
            "PUT",
            &format!("/openidm/managed/user/u{i}"),
            Some(&body),
        );
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(code, 201, "PUT u{i}: {answer}");
        timed += ms / 1000.0;
        latencies.push(ms);
        let (code, target) = http(
            &addr,
            "GET",
            &format!("/openidm/system/out/account/user{i}"),
        );
        assert_eq!(
            code, 200,
            "the target of u{i} is written when the PUT answers: {target}"
        );
    }
    served.stop();
    (
        timed,
        json!({"puts": latencies.len(), "p50_ms": round3(percentile(&mut latencies, 0.5)),
               "p99_ms": round3(percentile(&mut latencies, 0.99)),
               "max_ms": round3(percentile(&mut latencies, 1.0))}),
    )
}
