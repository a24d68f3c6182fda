//! Engine integrity (#12): concurrent units of one run never double-create or double-link;
//! REST writes during a run are never lost; a panic in a run is contained. Runs are held at a
//! known point by the test hooks (`RECOND_TEST_HOLD_DIR`, `RECOND_TEST_PANIC_ON_ID`), never
//! by relying on the input being big.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

/// Tiny units on several threads, so every pair of objects can land in different units.
fn racing(mapping_extra: &str, policies: &str) -> String {
    format!(
        r#"
[recon]
batch_size = 1

[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab"
source = "system/lab/account"
target = "managed/user"
taskThreads = 4
{mapping_extra}
policies = [{policies}]
"#
    )
}

fn link_rows(s: &Server, mapping: &str) -> Vec<(String, String, String)> {
    let body = s.query("/openidm/repo/link", &format!("linkType eq \"{mapping}\""));
    let mut v: Vec<(String, String, String)> = body["result"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            (
                l["firstId"].as_str().unwrap_or_default().to_string(),
                l["secondId"].as_str().unwrap_or_default().to_string(),
                l["linkQualifier"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn put(s: &Server, path: &str, body: Value) {
    let r = s.put(path, &body, &[]);
    assert!(r.status == 200 || r.status == 201, "{path}: {}", r.body);
}

fn all_ids(s: &Server, path: &str) -> Vec<String> {
    let body = s.query(path, "true");
    let mut v: Vec<String> = body["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|o| o["_id"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// Regression: 1,003 links for 1,000 targets. Pairs of sources map to the same target `_id`;
/// with units of one object on four threads, each pair used to create twice (the second
/// silently overwriting at rev 1) and link twice.
#[test]
fn sources_mapping_to_the_same_target_id_create_and_link_once() {
    let config = racing(
        r#"properties = [ { source = "key", target = "_id" }, { source = "userName", target = "userName" } ]"#,
        r#"{ situation = "ABSENT", action = "CREATE" }, { situation = "CONFIRMED", action = "UPDATE" }"#,
    );
    let s = Server::start(&config, &[]);
    let pairs = 60;
    for i in 0..pairs {
        for side in ["a", "b"] {
            put(
                &s,
                &format!("/openidm/system/lab/account/{side}{i:03}"),
                json!({"key": format!("t{i:03}"), "userName": format!("user{i}")}),
            );
        }
    }
    let run = s.run("lab", "");
    let links = link_rows(&s, "lab");
    assert_eq!(links.len(), pairs, "one link per target: {links:?}");
    let mut targets: Vec<&str> = links.iter().map(|l| l.1.as_str()).collect();
    targets.dedup();
    assert_eq!(targets.len(), pairs, "no target linked twice");
    assert_eq!(all_ids(&s, "/openidm/managed/user").len(), pairs);
    for i in 0..pairs {
        let t = s.get(&format!("/openidm/managed/user/t{i:03}"));
        assert_eq!(
            t.body["_rev"], "1",
            "created once, never overwritten: {}",
            t.body
        );
    }
    // One of each pair created; the other found the target existing: a failed entry with a
    // message, never a silent overwrite.
    assert_eq!(run["statusSummary"]["SUCCESS"], json!(pairs), "{run}");
    assert_eq!(run["statusSummary"]["FAILURE"], json!(pairs), "{run}");
    assert_eq!(run["progress"]["target"]["created"], json!(pairs), "{run}");
    // A second run: the linked sources are CONFIRMED, the others still fail, nothing new.
    let again = s.run("lab", "");
    assert_eq!(counts(&again)["CONFIRMED"], pairs as u64, "{again}");
    assert_eq!(link_rows(&s, "lab").len(), pairs);
}

/// Regression: sources correlating to the same target in different units all linked it.
/// One-at-a-time, the first is FOUND and links, the others are FOUND_ALREADY_LINKED.
#[test]
fn sources_correlating_to_one_target_link_it_once() {
    let config = racing(
        r#"properties = [ { source = "userName", target = "userName" } ]
correlationQuery = { expressionTree = { all = ["userName"] } }"#,
        r#"{ situation = "FOUND", action = "LINK" }, { situation = "FOUND_ALREADY_LINKED", action = "EXCEPTION" }, { situation = "ABSENT", action = "CREATE" }"#,
    );
    let s = Server::start(&config, &[]);
    let targets = 20;
    let per_target = 4;
    for t in 0..targets {
        put(
            &s,
            &format!("/openidm/managed/user/m{t:02}"),
            json!({"userName": format!("shared{t}")}),
        );
        for k in 0..per_target {
            put(
                &s,
                &format!("/openidm/system/lab/account/s{t:02}-{k}"),
                json!({"userName": format!("shared{t}")}),
            );
        }
    }
    let run = s.run("lab", "");
    let links = link_rows(&s, "lab");
    assert_eq!(links.len(), targets, "one link per target: {links:?}");
    let c = counts(&run);
    assert_eq!(c["FOUND"], targets as u64, "{run}");
    assert_eq!(
        c["FOUND_ALREADY_LINKED"],
        (targets * (per_target - 1)) as u64,
        "{run}"
    );
    assert_eq!(
        all_ids(&s, "/openidm/managed/user").len(),
        targets,
        "nothing created"
    );
}

/// Sources with the same correlation value and no target yet: the first creates, the
/// others must find that target (FOUND_ALREADY_LINKED), not create duplicates.
#[test]
fn sources_with_one_correlation_value_create_one_target() {
    let config = racing(
        r#"properties = [ { source = "userName", target = "userName" } ]
correlationQuery = { expressionTree = { all = ["userName"] } }
correlateEmptyTargetSet = true"#,
        r#"{ situation = "FOUND", action = "LINK" }, { situation = "FOUND_ALREADY_LINKED", action = "EXCEPTION" }, { situation = "ABSENT", action = "CREATE" }"#,
    );
    let s = Server::start(&config, &[]);
    for t in 0..15 {
        for k in 0..3 {
            put(
                &s,
                &format!("/openidm/system/lab/account/s{t:02}-{k}"),
                json!({"userName": format!("same{t}")}),
            );
        }
    }
    let run = s.run("lab", "");
    let c = counts(&run);
    assert_eq!(c["ABSENT"], 15, "{run}");
    assert_eq!(c["FOUND_ALREADY_LINKED"], 30, "{run}");
    assert_eq!(all_ids(&s, "/openidm/managed/user").len(), 15);
    assert_eq!(link_rows(&s, "lab").len(), 15);
}

/// A panic in a run thread (test hook) ends the run FAILED with a message; the mapping is
/// free again; a waitForCompletion caller returns; the log says why.
#[test]
fn a_panic_in_a_run_is_contained() {
    let config = racing(
        r#"properties = [ { source = "userName", target = "userName" } ]"#,
        r#"{ situation = "ABSENT", action = "CREATE" }"#,
    );
    let s = Server::start_with_env(&config, &[], &[("RECOND_TEST_PANIC_ON_ID", "boom")]);
    for id in ["a1", "boom", "z9"] {
        put(
            &s,
            &format!("/openidm/system/lab/account/{id}"),
            json!({"userName": id}),
        );
    }
    for _ in 0..2 {
        let r = s.post(
            "/openidm/recon?_action=recon&mapping=lab&waitForCompletion=true",
            None,
        );
        assert!(r.status == 200 || r.status == 409, "{}", r.body);
        let id = r.body["_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                // A thrown failure answers 409 with the run id in the message.
                s.get("/openidm/recon").body["reconciliations"]
                    .as_array()
                    .and_then(|a| a.last().cloned())
                    .and_then(|v| v["_id"].as_str().map(str::to_string))
            })
            .expect("a run id");
        let run = s.wait_run(&id);
        assert_eq!(run["state"], "FAILED", "{run}");
        assert!(
            run["message"]
                .as_str()
                .is_some_and(|m| m.contains("deliberate panic")),
            "{run}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.log().contains("panicked") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.log().contains("the reconciliation thread panicked")
            || s.log().contains("deliberate panic")
    );
}

/// 200 REST writes (PUT and PATCH) to targets a run has read and is about to update (held
/// there by the test hook) are all kept: each target ends with the REST value, the run's
/// value, and a revision above the one the REST write gave it.
#[test]
fn rest_writes_to_objects_a_run_holds_are_kept() {
    let hold = TempDir::new("hold");
    let hold_dir = hold.0.to_string_lossy().to_string();
    let config = r#"
[managed.user]

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab"
source = "system/lab/account"
target = "managed/user"
taskThreads = 4
properties = [ { source = "key", target = "_id" }, { source = "sn", target = "sn" } ]
policies = [ { situation = "ABSENT", action = "CREATE" }, { situation = "CONFIRMED", action = "UPDATE" } ]
"#;
    let s = Server::start_with_env(config, &[], &[("RECOND_TEST_HOLD_DIR", &hold_dir)]);
    let n = 200;
    let id = |i: usize| format!("u{i:03}");
    for i in 0..n {
        put(
            &s,
            &format!("/openidm/system/lab/account/{}", id(i)),
            json!({"key": id(i), "sn": "v1"}),
        );
    }
    assert_eq!(counts(&s.run("lab", ""))["ABSENT"], n as u64);
    for i in 0..n {
        put(
            &s,
            &format!("/openidm/system/lab/account/{}", id(i)),
            json!({"key": id(i), "sn": "v2"}),
        );
    }
    std::fs::write(hold.0.join("gate"), "").expect("gate");
    let r = s.post("/openidm/recon?_action=recon&mapping=lab", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["_id"].as_str().expect("id").to_string();
    crate::helpers::wait_held(&hold.0, Duration::from_secs(60));
    // The run has read every target (rev 1) and is holding its writes; the source total of
    // a store-backed whole-set query is known once the query stage has ended.
    let live = s.get(&format!("/openidm/recon/{rid}")).body;
    assert_eq!(live["state"], "ACTIVE", "{live}");
    assert_eq!(
        live["progress"]["source"]["existing"]["total"],
        json!(n.to_string()),
        "{live}"
    );
    for i in 0..n {
        let path = format!("/openidm/managed/user/{}", id(i));
        let r = if i % 2 == 0 {
            s.put(
                &path,
                &json!({"sn": "v1", "note": format!("rest-{i}")}),
                &[],
            )
        } else {
            s.request(
                "PATCH",
                &path,
                Some(
                    &json!([{"operation": "add", "field": "/note", "value": format!("rest-{i}")}]),
                ),
                &[],
                Auth::Admin,
            )
        };
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.body["_rev"], "2", "{}", r.body);
    }
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    let run = s.wait_run(&rid);
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(run["statusSummary"]["FAILURE"], json!(0), "{run}");
    for i in 0..n {
        let t = s.get(&format!("/openidm/managed/user/{}", id(i))).body;
        assert_eq!(
            t["note"],
            format!("rest-{i}"),
            "the REST write is kept: {t}"
        );
        assert_eq!(t["sn"], "v2", "the run's update is applied: {t}");
        assert_eq!(t["_rev"], "3", "one revision above the REST write: {t}");
    }
}

/// Regression: a CSV set checked If-Match and then wrote, so two writers holding the same
/// revision could both succeed (a lost update). Exactly one conditional write per revision
/// wins now; the others get 412.
#[test]
fn csv_conditional_writes_cannot_both_win() {
    let config = r#"
[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"
"#;
    let s = Server::start(config, &[("data/hr.csv", "uid,sn\nx1,start\n")]);
    for round in 0..5 {
        let rev = s.get("/openidm/system/hr/account/x1").body["_rev"]
            .as_str()
            .expect("rev")
            .to_string();
        let quoted = format!("\"{rev}\"");
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|w| {
                    let (s, quoted) = (&s, &quoted);
                    scope.spawn(move || {
                        s.put(
                            "/openidm/system/hr/account/x1",
                            &json!({"sn": format!("r{round}w{w}")}),
                            &[("If-Match", quoted.as_str())],
                        )
                        .status
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .collect()
        });
        assert_eq!(
            statuses.iter().filter(|c| **c == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|c| *c == 200 || *c == 412),
            "{statuses:?}"
        );
    }
}

/// Two mappings sharing one link type in opposite directions (`links`), run alternately ten
/// times while a REST writer changes the managed side: never a duplicate object, never an
/// extra or inverted link.
#[test]
fn bidirectional_mappings_run_alternately_keep_one_link_per_pair() {
    let config = r#"
[recon]
batch_size = 2

[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab_user"
source = "system/lab/account"
target = "managed/user"
taskThreads = 4
properties = [ { source = "uid", target = "userName" }, { source = "sn", target = "sn" } ]
correlationQuery = { expressionTree = { all = ["userName"] } }
policies = [ { situation = "ABSENT", action = "CREATE" }, { situation = "FOUND", action = "LINK" }, { situation = "CONFIRMED", action = "UPDATE" } ]

[[mappings]]
name = "user_lab"
source = "managed/user"
target = "system/lab/account"
links = "lab_user"
taskThreads = 4
properties = [ { source = "userName", target = "uid" }, { source = "sn", target = "sn" } ]
policies = [ { situation = "ABSENT", action = "CREATE" }, { situation = "CONFIRMED", action = "UPDATE" } ]
"#;
    let s = Server::start(config, &[]);
    let n = 30;
    for i in 0..n {
        put(
            &s,
            &format!("/openidm/system/lab/account/a{i:02}"),
            json!({"uid": format!("a{i:02}"), "sn": "start"}),
        );
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut k = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let users = s.query("/openidm/managed/user", "true");
                for u in users["result"].as_array().into_iter().flatten().take(5) {
                    let id = u["_id"].as_str().unwrap_or_default();
                    let r = s.request(
                        "PATCH",
                        &format!("/openidm/managed/user/{id}"),
                        Some(&json!([{"operation": "replace", "field": "/sn", "value": format!("rest{k}")}])),
                        &[],
                        Auth::Admin,
                    );
                    assert!(r.status == 200 || r.status == 404, "{}", r.body);
                    k += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for round in 0..10 {
            for mapping in ["lab_user", "user_lab"] {
                let run = s.run(mapping, "");
                assert_eq!(run["state"], "SUCCESS", "round {round} {mapping}: {run}");
                assert_eq!(run["statusSummary"]["FAILURE"], json!(0), "{run}");
                let links = link_rows(&s, "lab_user");
                assert_eq!(links.len(), n, "round {round} {mapping}: {links:?}");
                assert!(
                    links.iter().all(|(first, _, _)| first.starts_with('a')),
                    "firstId is always the lab account: {links:?}"
                );
                assert_eq!(all_ids(&s, "/openidm/managed/user").len(), n);
                assert_eq!(all_ids(&s, "/openidm/system/lab/account").len(), n);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(
        link_rows(&s, "user_lab").is_empty(),
        "the reverse mapping owns no links"
    );
}
