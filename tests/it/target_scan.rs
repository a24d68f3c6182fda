//! The target phase's id scan stops once it handed on every untouched target the store's
//! object counts prove there can be (issue #19, `runner::worker::target_phase::ScanPlan`).
//! Each test sets up a target that only the target phase can find (no source names it) in a
//! situation that would trip a naive "objects − touched" count, and checks that the run still
//! finds it (UNASSIGNED → DELETE: a target with no link). Runs are paused between units by the test hook
//! (`RECOND_TEST_HOLD_DIR`), never by timing. The PostgreSQL repository keeps no counts (the
//! scan reads every id there): the same tests run on it for the same outcome.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const STOPPED: &str = "the target phase's id scan stopped early";

fn config(policies: &str) -> String {
    format!(
        r#"
[recon]
batch_size = 1

[managed.user]

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab"
source = "system/lab/account"
target = "managed/user"
taskThreads = 1
properties = [ {{ source = "key", target = "_id" }}, {{ source = "sn", target = "sn" }} ]
policies = [ {{ situation = "ABSENT", action = "CREATE" }},
  {{ situation = "UNASSIGNED", action = "DELETE" }}, {policies} ]
"#
    )
}

fn put(s: &Server, path: &str, body: Value) {
    let r = s.put(path, &body, &[]);
    assert!(r.status == 200 || r.status == 201, "{path}: {}", r.body);
}

/// Sources u0..u{n-1}, and a first run that creates and links their targets.
fn loaded(s: &Server, n: usize) {
    for i in 0..n {
        put(
            s,
            &format!("/openidm/system/lab/account/u{i}"),
            json!({"key": format!("u{i}"), "sn": "v1"}),
        );
    }
    assert_eq!(counts(&s.run("lab", ""))["ABSENT"], n as u64);
}

/// A target no source names (ids sort after the sources' targets).
fn orphan(s: &Server, id: &str) {
    put(
        s,
        &format!("/openidm/managed/user/{id}"),
        json!({"sn": "orphan"}),
    );
}

fn exists(s: &Server, id: &str) -> bool {
    s.get(&format!("/openidm/managed/user/{id}")).status == 200
}

fn sit(run: &Value, situation: &str) -> u64 {
    counts(run).get(situation).copied().unwrap_or(0)
}

fn stopped_early(s: &Server) -> usize {
    s.log().matches(STOPPED).count()
}

/// The steady case: every target was touched, so the scan is skipped (observable in the log);
/// one more target by REST is still found.
#[test]
fn steady_run_skips_the_id_scan() {
    let s = Server::start(
        &config(r#"{ situation = "CONFIRMED", action = "UPDATE" }"#),
        &[],
    );
    loaded(&s, 3);
    let before = stopped_early(&s);
    let run = s.run("lab", "");
    assert_eq!(sit(&run, "CONFIRMED"), 3, "{run}");
    assert_eq!(sit(&run, "UNASSIGNED"), 0, "{run}");
    assert_eq!(
        run["progress"]["target"]["existing"]["total"],
        json!("3"),
        "{run}"
    );
    if s.repository.is_none() {
        assert_eq!(stopped_early(&s), before + 1, "{}", s.log());
    } else {
        assert_eq!(stopped_early(&s), 0, "PostgreSQL keeps no counts");
    }
    orphan(&s, "x9");
    let run = s.run("lab", "");
    assert_eq!(sit(&run, "UNASSIGNED"), 1, "{run}");
    assert!(!exists(&s, "x9"));
}

/// A link to a target deleted since: its hash is touched, yet no such target exists.
#[test]
fn a_link_to_a_missing_target_does_not_hide_an_untouched_one() {
    let s = Server::start(
        &config(
            r#"{ situation = "CONFIRMED", action = "UPDATE" }, { situation = "MISSING", action = "IGNORE" }"#,
        ),
        &[],
    );
    loaded(&s, 2);
    assert_eq!(s.delete("/openidm/managed/user/u0").status, 200);
    orphan(&s, "x9");
    // Objects 2 (u1, x9), touched 2 (u0, u1): a naive count finds nothing to look for.
    let run = s.run("lab", "");
    assert_eq!(sit(&run, "MISSING"), 1, "{run}");
    assert_eq!(sit(&run, "UNASSIGNED"), 1, "{run}");
    assert!(!exists(&s, "x9"));
}

/// The run's own source phase deletes the targets it touched.
#[test]
fn a_source_phase_delete_does_not_hide_an_untouched_target() {
    let s = Server::start(
        &config(r#"{ situation = "CONFIRMED", action = "DELETE" }"#),
        &[],
    );
    loaded(&s, 2);
    orphan(&s, "x9");
    let run = s.run("lab", "");
    assert_eq!(sit(&run, "CONFIRMED"), 2, "{run}");
    assert_eq!(sit(&run, "UNASSIGNED"), 1, "{run}");
    assert!(!exists(&s, "x9"));
}

/// Holds the second run after its first unit (u0) committed, does `during` over REST, lets
/// the run finish and returns its summary.
fn run_holding(s: &Server, hold: &TempDir, during: impl FnOnce(&Server)) -> Value {
    std::fs::write(hold.0.join("gate"), "1").expect("gate");
    let r = s.post("/openidm/recon?_action=recon&mapping=lab", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["_id"].as_str().expect("id").to_string();
    wait_held(&hold.0, Duration::from_secs(60));
    let live = s.get(&format!("/openidm/recon/{id}")).body;
    assert_eq!(
        live["progress"]["source"]["existing"]["processed"],
        json!(1),
        "the first unit (u0) committed, the second is held: {live}"
    );
    during(s);
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    s.wait_run(&id)
}

/// A REST delete of a target the source phase already touched, during the run.
#[test]
fn rest_delete_of_a_touched_target_mid_run() {
    let hold = TempDir::new("hold");
    let hold_dir = hold.0.to_string_lossy().to_string();
    let s = Server::start_with_env(
        &config(
            r#"{ situation = "CONFIRMED", action = "UPDATE" }, { situation = "MISSING", action = "IGNORE" }"#,
        ),
        &[],
        &[("RECOND_TEST_HOLD_DIR", &hold_dir)],
    );
    loaded(&s, 3);
    orphan(&s, "x9");
    // Objects at the scan 3 (u1, u2, x9), touched 3 (u0, u1, u2).
    let run = run_holding(&s, &hold, |s| {
        assert_eq!(s.delete("/openidm/managed/user/u0").status, 200);
    });
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(sit(&run, "UNASSIGNED"), 1, "{run}");
    assert!(!exists(&s, "x9"));
}

/// A target created over REST after the run read the counts before its source phase.
#[test]
fn a_target_created_during_the_run_is_found() {
    let hold = TempDir::new("hold");
    let hold_dir = hold.0.to_string_lossy().to_string();
    let s = Server::start_with_env(
        &config(r#"{ situation = "CONFIRMED", action = "UPDATE" }"#),
        &[],
        &[("RECOND_TEST_HOLD_DIR", &hold_dir)],
    );
    loaded(&s, 3);
    // Before the source phase: objects 3, touched 3 at its end; x9 comes in between.
    let run = run_holding(&s, &hold, |s| orphan(s, "x9"));
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(sit(&run, "UNASSIGNED"), 1, "{run}");
    assert!(!exists(&s, "x9"));
}

mod on_postgres {
    crate::helpers::on_postgres_too!(
        steady_run_skips_the_id_scan,
        a_link_to_a_missing_target_does_not_hide_an_untouched_one,
        a_source_phase_delete_does_not_hide_an_untouched_target,
        rest_delete_of_a_touched_target_mid_run,
        a_target_created_during_the_run_is_found,
    );
}
