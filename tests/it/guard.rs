//! The deletion guard (`reconGuard`, contract §8) through the real binary: a truncated
//! source stops before any delete and says why, the override runs it, the count limit, the
//! source floor against the last full run, by-id runs, and malformed guards at startup.

use serde_json::{json, Value};

use crate::helpers::*;

const CONFIG: &str = r#"
mappings_file = "conf/sync.json"
[managed.user]
indexed = ["userName"]

[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"
"#;

fn rows(ids: impl IntoIterator<Item = usize>) -> String {
    let mut s = String::from("uid,userName,mail\n");
    for i in ids {
        s.push_str(&format!("u{i},user{i},user{i}@example.com\n"));
    }
    s
}

fn sync(guard: Value) -> String {
    json!({"mappings": [{
        "name": "hr_user",
        "source": "system/hr/account",
        "target": "managed/user",
        "correlationQuery": {"expressionTree": {"all": ["userName"]}},
        "properties": [
            {"source": "userName", "target": "userName"},
            {"source": "mail", "target": "mail"},
        ],
        "policies": [
            {"situation": "CONFIRMED", "action": "UPDATE"},
            {"situation": "FOUND", "action": "UPDATE"},
            {"situation": "ABSENT", "action": "CREATE"},
            {"situation": "SOURCE_MISSING", "action": "DELETE"},
            {"situation": "UNASSIGNED", "action": "DELETE"},
        ],
        "reconGuard": guard,
    }]})
    .to_string()
}

fn users(s: &Server) -> u64 {
    s.query("/openidm/managed/user", "true")["resultCount"]
        .as_u64()
        .expect("count")
}

fn start(guard: Value, n: usize) -> Server {
    let s = Server::start(
        CONFIG,
        &[
            ("data/hr.csv", &rows(0..n)),
            ("conf/sync.json", &sync(guard)),
        ],
    );
    let first = s.run("hr_user", "");
    assert_eq!(first["state"], "SUCCESS", "{first}");
    assert_eq!(users(&s), n as u64);
    s
}

#[test]
fn a_truncated_source_stops_before_deleting_and_the_override_runs_it() {
    let s = start(json!({"maxDeletePercent": 10}), 20);
    s.write("data/hr.csv", &rows(0..10));
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=hr_user&waitForCompletion=true",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "FAILED");
    let run = s.wait_run(r.body["_id"].as_str().expect("id"));
    assert_eq!(run["stage"], "COMPLETED_FAILED");
    let message = run["message"].as_str().expect("a message");
    for needle in ["maxDeletePercent", "10 of the 20", "ignoreGuard=true"] {
        assert!(message.contains(needle), "{needle} in {message}");
    }
    assert_eq!(
        run["parameters"]["reconGuard"],
        json!({"maxDeletePercent": 10})
    );
    assert_eq!(run["parameters"]["ignoreGuard"], false);
    assert_eq!(users(&s), 20, "nothing deleted");
    assert_eq!(s.query("/openidm/repo/link", "true")["resultCount"], 20);

    // The body key overrides it as the parameter does.
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=hr_user&waitForCompletion=true",
        Some(&json!({"ignoreGuard": true})),
    );
    assert_eq!(r.body["state"], "SUCCESS", "{}", r.body);
    let run = s.wait_run(r.body["_id"].as_str().expect("id"));
    assert_eq!(run["parameters"]["ignoreGuard"], true);
    assert_eq!(users(&s), 10);

    // And the parameter.
    s.write("data/hr.csv", &rows(0..5));
    assert_eq!(s.run("hr_user", "")["state"], "FAILED");
    let run = s.run("hr_user", "&ignoreGuard=true");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(users(&s), 5);
}

#[test]
fn max_delete_count_allows_up_to_the_limit() {
    let s = start(json!({"maxDeleteCount": 2}), 10);
    s.write("data/hr.csv", &rows(3..10));
    let run = s.run("hr_user", "");
    assert_eq!(run["state"], "FAILED");
    let m = run["message"].as_str().expect("message");
    assert!(
        m.contains("maxDeleteCount") && m.contains("3 targets"),
        "{m}"
    );
    assert_eq!(users(&s), 10);
    s.write("data/hr.csv", &rows(2..10));
    let run = s.run("hr_user", "");
    assert_eq!(
        run["state"], "SUCCESS",
        "two deletes are within the limit: {run}"
    );
    assert_eq!(users(&s), 8);
}

#[test]
fn the_source_floor_compares_with_the_last_full_run() {
    let s = start(json!({"minSourcePercentOfLastRun": 50}), 20);
    // An analysis does not count as the last run, nor does it trip the guard.
    s.write("data/hr.csv", &rows(0..12));
    assert_eq!(s.run("hr_user", "&analyze=true")["state"], "SUCCESS");
    assert_eq!(
        s.run("hr_user", "")["state"],
        "SUCCESS",
        "12 of 20 is over 50 %"
    );
    s.write("data/hr.csv", &rows(0..5));
    let run = s.run("hr_user", "");
    assert_eq!(run["state"], "FAILED");
    let m = run["message"].as_str().expect("message");
    assert!(
        m.contains("minSourcePercentOfLastRun")
            && m.contains("5 objects")
            && m.contains("of the 12"),
        "{m}"
    );
    assert_eq!(users(&s), 12);
    assert_eq!(s.run("hr_user", "&ignoreGuard=true")["state"], "SUCCESS");
    assert_eq!(users(&s), 5);
}

#[test]
fn by_id_runs_are_guarded_too() {
    let s = start(
        json!({"maxDeleteCount": 0, "minSourcePercentOfLastRun": 100}),
        3,
    );
    s.write("data/hr.csv", &rows(1..3));
    let by_id = |extra: &str| {
        let r = s.post(
            &format!("/openidm/recon?_action=reconById&mapping=hr_user&id=u0&waitForCompletion=true{extra}"),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        s.wait_run(r.body["_id"].as_str().expect("id"))
    };
    let run = by_id("");
    assert_eq!(run["state"], "FAILED", "{run}");
    assert!(run["message"]
        .as_str()
        .is_some_and(|m| m.contains("maxDeleteCount")));
    assert_eq!(users(&s), 3);
    let run = by_id("&ignoreGuard=true");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(users(&s), 2);
    // The source floor does not apply to by-id runs (one id of three is not a shrink).
    s.write("data/hr.csv", &rows(0..3));
    assert_eq!(by_id("")["state"], "SUCCESS");
}

#[test]
fn malformed_guards_are_startup_errors_naming_mapping_and_key() {
    for (guard, needle) in [
        (
            json!({"maxDeletePercent": 150}),
            "reconGuard.maxDeletePercent",
        ),
        (json!({"maxDeleteCount": -1}), "reconGuard.maxDeleteCount"),
        (
            json!({"minSourcePercentOfLastRun": "half"}),
            "reconGuard.minSourcePercentOfLastRun",
        ),
        (json!({"maxDeletes": 1}), "reconGuard.maxDeletes"),
        (json!(10), "reconGuard"),
    ] {
        let dir = TempDir::new("guard");
        std::fs::create_dir_all(dir.0.join("conf")).expect("mkdir");
        std::fs::create_dir_all(dir.0.join("data")).expect("mkdir");
        std::fs::write(dir.0.join("conf/sync.json"), sync(guard.clone())).expect("write");
        std::fs::write(dir.0.join("data/hr.csv"), rows(0..1)).expect("write");
        std::fs::write(dir.0.join("recon.toml"), CONFIG).expect("write");
        let (code, out) = run_binary(
            &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
            &dir.0,
        );
        assert_eq!(code, Some(2), "{guard}: {out}");
        assert!(
            out.contains(needle) && out.contains("hr_user"),
            "{guard}: {out}"
        );
    }
}

/// A scheduled run is guarded like any other (nobody watches it: the point of the guard), and
/// its `parameters` show the limits beside the schedule's name.
#[test]
fn scheduled_runs_are_guarded_and_show_it_in_parameters() {
    let config = format!(
        "{CONFIG}\n[[schedules]]\nname = \"nightly\"\nschedule = \"0 0 3 * * ?\"\nmapping = \"hr_user\"\n"
    );
    let s = Server::start(
        &config,
        &[
            ("data/hr.csv", &rows(0..20)),
            ("conf/sync.json", &sync(json!({"maxDeletePercent": 10}))),
        ],
    );
    let trigger = || {
        let r = s.post("/openidm/scheduler/job/nightly?_action=trigger", None);
        assert_eq!(r.status, 200, "{}", r.body);
        s.wait_run(r.body["reconId"].as_str().expect("run id"))
    };
    let run = trigger();
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(users(&s), 20);

    // The export came out truncated: half the rows.
    s.write("data/hr.csv", &rows(0..10));
    let run = trigger();
    assert_eq!(run["state"], "FAILED", "{run}");
    assert_eq!(run["stage"], "COMPLETED_FAILED");
    assert_eq!(run["parameters"]["schedule"], "nightly");
    assert_eq!(
        run["parameters"]["reconGuard"],
        json!({"maxDeletePercent": 10})
    );
    assert_eq!(run["parameters"]["ignoreGuard"], false);
    let m = run["message"].as_str().expect("a message");
    for needle in [
        "reconGuard.maxDeletePercent",
        "10 of the 20",
        "limit of 10 %",
        "ignoreGuard=true",
    ] {
        assert!(m.contains(needle), "{needle} in {m}");
    }
    assert_eq!(users(&s), 20, "nothing deleted");
    assert_eq!(
        run["situationSummary"]["SOURCE_MISSING"], 0,
        "no guarded situation was acted on: {run}"
    );
    let job = s.get("/openidm/scheduler/job/nightly").body;
    assert_eq!(job["lastRunId"], run["_id"], "{job}");
}
