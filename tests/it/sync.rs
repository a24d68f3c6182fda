//! Implicit synchronization (contract §7): writes of managed objects reach every mapping whose
//! source is that managed set within the request, with no reconciliation run.

use serde_json::{json, Value};

use crate::helpers::*;

const CONFIG: &str = r#"
mappings_file = "conf/sync.json"
[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[system.off.account]
connector = "store"
"#;

fn mappings() -> String {
    let rules = json!([{"source": "userName", "target": "_id"}, {"source": "userName", "target": "uid"},
                       {"source": "sn", "target": "sn"}]);
    let policies = json!([
        {"situation": "ABSENT", "action": "CREATE"},
        {"situation": "CONFIRMED", "action": "UPDATE"},
        {"situation": "SOURCE_MISSING", "action": "DELETE"}
    ]);
    json!({"mappings": [
        {"name": "user_lab", "source": "managed/user", "target": "system/lab/account",
         "properties": rules, "policies": policies},
        {"name": "user_off", "source": "managed/user", "target": "system/off/account",
         "enableSync": false, "properties": rules, "policies": policies}
    ]})
    .to_string()
}

fn links(s: &Server, link_type: &str) -> Vec<(String, String)> {
    let body = s.query(
        "/openidm/repo/link",
        &format!("linkType eq \"{link_type}\""),
    );
    let mut out: Vec<(String, String)> = body["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|l| {
            (
                l["firstId"].as_str().unwrap_or_default().to_string(),
                l["secondId"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn target(s: &Server, id: &str) -> Option<Value> {
    let r = s.get(&format!("/openidm/system/lab/account/{id}"));
    (r.status == 200).then_some(r.body)
}

#[test]
fn managed_writes_reach_the_target_within_the_request() {
    let s = Server::start(CONFIG, &[("conf/sync.json", &mappings())]);

    // PUT (create): the target object and its link exist when the response arrives.
    let r = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "ann", "sn": "Lee"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let t = target(&s, "ann").expect("target created by implicit sync");
    assert_eq!(t["sn"], "Lee");
    assert_eq!(links(&s, "user_lab"), vec![("u1".into(), "ann".into())]);

    // PATCH: the target is updated, not doubled.
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&json!([{"operation": "replace", "field": "/sn", "value": "Kim"}])),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(target(&s, "ann").expect("target")["sn"], "Kim");
    assert_eq!(
        s.query("/openidm/system/lab/account", "true")["resultCount"],
        1
    );

    // _action=create reaches the target too.
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"userName": "bob", "sn": "Ray"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(target(&s, "bob").is_some());

    // DELETE: SOURCE_MISSING -> DELETE removes the target and its link.
    assert_eq!(s.delete("/openidm/managed/user/u1").status, 200);
    assert!(target(&s, "ann").is_none(), "target deleted");
    assert_eq!(links(&s, "user_lab").len(), 1, "only bob's link is left");

    // enableSync false: that mapping is never synchronized implicitly.
    assert_eq!(
        s.query("/openidm/system/off/account", "true")["resultCount"],
        0
    );
    assert!(links(&s, "user_off").is_empty());

    // No reconciliation run was involved.
    let runs = s.get("/openidm/recon");
    assert_eq!(runs.body["reconciliations"], json!([]), "{}", runs.body);
}

#[test]
fn a_failed_target_write_keeps_the_managed_change_and_is_logged() {
    // The transform throws for one user: the managed object is written and answered as
    // usual, the failure is logged with the mapping, the object and the reason.
    let sync = json!({"mappings": [
        {"name": "user_lab", "source": "managed/user", "target": "system/lab/account",
         "properties": [
            {"source": "userName", "target": "_id"},
            {"source": "sn", "target": "sn", "transform": {"type": "text/javascript",
               "source": "if (source === 'bad') { throw 'cannot map sn'; } source"}}],
         "policies": [{"situation": "ABSENT", "action": "CREATE"}]}
    ]});
    let s = Server::start(CONFIG, &[("conf/sync.json", &sync.to_string())]);
    let r = s.put(
        "/openidm/managed/user/u9",
        &json!({"userName": "zed", "sn": "bad"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        s.get("/openidm/managed/user/u9").status,
        200,
        "the managed change stands"
    );
    assert!(target(&s, "zed").is_none());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !s.log().contains("cannot map sn") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("u9") && l.contains("cannot map sn")),
        "a WARN line names the object and the reason: {log}"
    );
}

#[test]
fn a_reconciliation_into_a_managed_set_synchronizes_what_it_changed() {
    // hr (store) -> managed/user by reconciliation; managed/user -> lab implicitly, with no
    // second run. The pair lab -> managed/user (the reverse direction) must not ping-pong.
    let config = format!("{CONFIG}\n[system.hr.account]\nconnector = \"store\"\n");
    let sync = json!({"mappings": [
        {"name": "hr_user", "source": "system/hr/account", "target": "managed/user",
         "properties": [{"source": "uid", "target": "userName"}, {"source": "sn", "target": "sn"}],
         "policies": [{"situation": "ABSENT", "action": "CREATE"},
                      {"situation": "CONFIRMED", "action": "UPDATE"}]},
        {"name": "user_lab", "source": "managed/user", "target": "system/lab/account",
         "properties": [{"source": "userName", "target": "_id"}, {"source": "sn", "target": "sn"}],
         "policies": [{"situation": "ABSENT", "action": "CREATE"},
                      {"situation": "CONFIRMED", "action": "UPDATE"}]},
        {"name": "lab_user", "source": "system/lab/account", "target": "managed/user",
         "links": "user_lab",
         "properties": [{"source": "sn", "target": "sn"}],
         "policies": [{"situation": "CONFIRMED", "action": "UPDATE"}]}
    ]});
    let s = Server::start(&config, &[("conf/sync.json", &sync.to_string())]);
    for (id, sn) in [("h1", "One"), ("h2", "Two")] {
        let r = s.put(
            &format!("/openidm/system/hr/account/{id}"),
            &json!({"uid": id, "sn": sn}),
            &[],
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let run = s.run("hr_user", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(target(&s, "h1").expect("h1 synchronized")["sn"], "One");
    assert_eq!(target(&s, "h2").expect("h2 synchronized")["sn"], "Two");
    assert_eq!(links(&s, "user_lab").len(), 2);
    let runs = s.get("/openidm/recon").body["reconciliations"]
        .as_array()
        .map(Vec::len);
    assert_eq!(runs, Some(1), "only the hr_user run was recorded");
}

/// Regression (#14): a reconciliation into a managed.json set wrote each target through the
/// set, whose observer synchronized it at once, inside the unit, before the unit's link was
/// committed. The reverse mapping (sharing the links) then saw no link, found the user
/// ABSENT and created a second row in the very file the run was reading. The changes are now
/// synchronized once the unit committed: the reverse mapping sees the link (CONFIRMED) and
/// writes nothing.
#[test]
fn a_managed_json_target_is_synchronized_after_its_unit_commits() {
    let config = r#"
idm_conf_dir = "conf"

[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"
"#;
    let managed = r#"{"objects": [{"name": "user", "schema": {"properties": {
        "userName": {"type": "string"}, "sn": {"type": "string"}}}}]}"#;
    let sync = json!({"mappings": [
        {"name": "hr_user", "source": "system/hr/account", "target": "managed/user",
         "properties": [{"source": "uid", "target": "_id"},
                        {"source": "userName", "target": "userName"},
                        {"source": "sn", "target": "sn"}],
         "policies": [{"situation": "ABSENT", "action": "CREATE"},
                      {"situation": "CONFIRMED", "action": "UPDATE"}]},
        {"name": "user_hr", "source": "managed/user", "target": "system/hr/account",
         "links": "hr_user",
         "properties": [{"source": "userName", "target": "userName"},
                        {"source": "sn", "target": "sn"}],
         "policies": [{"situation": "ABSENT", "action": "CREATE"},
                      {"situation": "CONFIRMED", "action": "UPDATE"}]}
    ]});
    let csv = format!("{HEADER}{}", people(3, 1));
    let s = Server::start(
        config,
        &[
            ("conf/managed.json", managed),
            ("conf/sync.json", &sync.to_string()),
            ("data/hr.csv", &csv),
        ],
    );
    let run = s.run("hr_user", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run)["ABSENT"], 3, "{run}");
    for id in ["u1", "u2", "u3"] {
        assert_eq!(s.get(&format!("/openidm/managed/user/{id}")).status, 200);
    }
    assert_eq!(links(&s, "hr_user").len(), 3);
    let rows = s.query("/openidm/system/hr/account", "true");
    assert_eq!(
        rows["resultCount"], 3,
        "the reverse mapping found each user linked, not ABSENT: {rows}"
    );
    let file = std::fs::read_to_string(s.path("data/hr.csv")).expect("read the CSV");
    assert_eq!(file.lines().count(), 4, "{file}");
}
