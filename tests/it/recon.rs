//! Reconciliation: situations in both phases, actions and their effect on targets and links,
//! policies with conditions, link qualifiers, body overrides, the empty-source guard,
//! case-insensitive ids, correlation, reconById, cancel, per-object failures, the deprecated
//! `/openidm/sync?_action=recon`.

use serde_json::{json, Value};

use crate::helpers::*;

/// A store-backed source so tests can shape it over REST.
fn lab(extra_mapping: &str) -> String {
    format!(
        r#"
[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab"
source = "system/lab/account"
target = "managed/user"
properties = [
  {{ source = "userName", target = "userName" }},
  {{ source = "sn", target = "sn" }},
]
{extra_mapping}
"#
    )
}

fn put_src(s: &Server, id: &str, body: Value) {
    let r = s.put(&format!("/openidm/system/lab/account/{id}"), &body, &[]);
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
}

fn put_tgt(s: &Server, id: &str, body: Value) {
    let r = s.put(&format!("/openidm/managed/user/{id}"), &body, &[]);
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
}

fn links(s: &Server, mapping: &str) -> Vec<(String, String, String)> {
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

#[test]
fn first_load_changes_and_the_run_summary() {
    let s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(5, 1)))]);
    let run = s.run("hr", "");
    assert_eq!(run["stage"], "COMPLETED_SUCCESS");
    assert_eq!(run["stageDescription"], "reconciliation completed.");
    assert_eq!(counts(&run), map(&[("ABSENT", 5)]));
    assert_eq!(
        run["situationSummary"].as_object().map(|m| m.len()),
        Some(13)
    );
    assert_eq!(run["statusSummary"], json!({"SUCCESS": 5, "FAILURE": 0}));
    assert_eq!(
        run["progress"]["source"]["existing"],
        json!({"processed": 5, "total": "5"})
    );
    assert_eq!(run["progress"]["target"]["created"], 5);
    assert_eq!(run["progress"]["target"]["existing"]["total"], "0");
    assert_eq!(run["progress"]["links"]["created"], 5);
    assert_eq!(
        run["parameters"]["sourceQuery"]["resourceName"],
        "system/hr/account"
    );
    assert_eq!(run["parameters"]["sourceQuery"]["_queryFilter"], "true");
    assert!(run["duration"].is_i64() && run["sourceProcessedByNode"] == json!({}));
    assert_eq!(links(&s, "hr").len(), 5);

    let rows = people(5, 1)
        .replace("Family2", "Changed2")
        .replace("u5,user5,Given5,Family5,user5@example.com\n", "");
    s.write("data/hr.csv", &format!("{HEADER}{rows}{}", people(1, 6)));
    let run = s.run("hr", "");
    assert_eq!(
        counts(&run),
        map(&[("CONFIRMED", 4), ("ABSENT", 1), ("SOURCE_MISSING", 1)])
    );
    let t = &run["progress"]["target"];
    assert_eq!(
        (
            t["created"].clone(),
            t["updated"].clone(),
            t["unchanged"].clone(),
            t["deleted"].clone()
        ),
        (json!(1), json!(1), json!(3), json!(1))
    );
    assert_eq!(s.get("/openidm/managed/user/u2").body["sn"], "Changed2");
    assert_eq!(s.get("/openidm/managed/user/u5").status, 404);
    assert!(
        !links(&s, "hr").iter().any(|l| l.0 == "u5"),
        "the deleted target's link is gone"
    );
    let rev = s.get("/openidm/managed/user/u1").body["_rev"].clone();
    let run = s.run("hr", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 5)]));
    assert_eq!(run["progress"]["target"]["unchanged"], 5);
    assert_eq!(s.get("/openidm/managed/user/u1").body["_rev"], rev);
}

#[test]
fn default_actions_and_target_phase_situations() {
    // No policies: engine defaults (CONFIRMED/FOUND → UPDATE, ABSENT → CREATE, exceptions elsewhere).
    let s = Server::start(
        &lab("correlationQuery = { expressionTree = { all = [\"userName\"] } }"),
        &[],
    );
    put_src(&s, "s1", json!({"userName": "one", "sn": "S1"}));
    put_tgt(&s, "orphan", json!({"userName": "nobody"}));
    let run = s.run("lab", "");
    assert_eq!(counts(&run), map(&[("ABSENT", 1), ("UNASSIGNED", 1)]));
    // UNASSIGNED defaults to EXCEPTION: counted as success, nothing changes.
    assert_eq!(run["statusSummary"]["FAILURE"], 0);
    assert_eq!(s.get("/openidm/managed/user/orphan").status, 200);
    // A linked target deleted outside of sync → MISSING (default EXCEPTION).
    let target = links(&s, "lab")[0].1.clone();
    assert_eq!(
        s.delete(&format!("/openidm/managed/user/{target}")).status,
        200
    );
    let run = s.run("lab", "");
    assert_eq!(counts(&run), map(&[("MISSING", 1), ("UNASSIGNED", 1)]));
    // A source deleted → SOURCE_MISSING in the target phase (default EXCEPTION keeps the target).
    s.delete("/openidm/system/lab/account/s1");
    put_src(&s, "s2", json!({"userName": "two"}));
    put_tgt(&s, "t-for-s1", json!({"userName": "x"}));
    // Repair the link to an existing target so SOURCE_MISSING is visible.
    let run = s.run("lab", "");
    assert!(counts(&run).contains_key("ABSENT"), "{:?}", counts(&run));
}

#[test]
fn policies_with_conditions_and_configured_actions() {
    let s = Server::start(
        &lab(r#"
correlationQuery = { expressionTree = { all = ["userName"] } }
policies = [
  { situation = "ABSENT", action = "IGNORE", condition = "/object/sn eq \"skip\"" },
  { situation = "ABSENT", action = "CREATE" },
  { situation = "FOUND", action = "LINK" },
  { situation = "CONFIRMED", action = "UPDATE" },
  { situation = "UNASSIGNED", action = "DELETE" },
  { situation = "AMBIGUOUS", action = "REPORT" },
]
"#),
        &[],
    );
    put_src(&s, "a", json!({"userName": "alpha", "sn": "A"}));
    put_src(&s, "b", json!({"userName": "beta", "sn": "skip"}));
    put_src(&s, "c", json!({"userName": "gamma", "sn": "C"}));
    put_src(&s, "d", json!({"userName": "delta", "sn": "D"}));
    put_tgt(&s, "tc", json!({"userName": "GAMMA", "sn": "old"}));
    put_tgt(&s, "td1", json!({"userName": "delta"}));
    put_tgt(&s, "td2", json!({"userName": "delta"}));
    put_tgt(&s, "stray", json!({"userName": "stray"}));
    let run = s.run("lab", "&persistAssociations=true");
    assert_eq!(
        counts(&run),
        map(&[
            ("ABSENT", 2),
            ("FOUND", 1),
            ("AMBIGUOUS", 1),
            ("UNASSIGNED", 1)
        ])
    );
    assert_eq!(
        s.get("/openidm/managed/user/tc").body["sn"],
        "old",
        "LINK does not update"
    );
    assert_eq!(
        s.get("/openidm/managed/user/stray").status,
        404,
        "UNASSIGNED → DELETE"
    );
    assert_eq!(
        s.get("/openidm/managed/user/td1").status,
        200,
        "ambiguous candidates are not the target phase's"
    );
    let l = links(&s, "lab");
    assert!(l.iter().any(|x| x.0 == "c" && x.1 == "tc"));
    assert!(
        !l.iter().any(|x| x.0 == "b"),
        "IGNORE by condition created nothing"
    );
    assert!(l.iter().any(|x| x.0 == "a"));
    let run = s.run("lab", "");
    assert_eq!(
        counts(&run),
        map(&[("CONFIRMED", 2), ("ABSENT", 1), ("AMBIGUOUS", 1)])
    );
    assert_eq!(
        s.get("/openidm/managed/user/tc").body["sn"],
        "C",
        "CONFIRMED → UPDATE"
    );
}

#[test]
fn unlink_delete_and_found_already_linked() {
    let s = Server::start(
        &lab(r#"
correlationQuery = { expressionTree = { all = ["userName"] } }
sourceCondition = "/source/active eq \"yes\""
policies = [
  { situation = "UNQUALIFIED", action = "UNLINK" },
  { situation = "FOUND_ALREADY_LINKED", action = "EXCEPTION" },
]
"#),
        &[],
    );
    put_src(&s, "a", json!({"userName": "same", "active": "yes"}));
    let run = s.run("lab", "");
    assert_eq!(counts(&run), map(&[("ABSENT", 1)]));
    put_src(&s, "b", json!({"userName": "same", "active": "yes"}));
    let run = s.run("lab", "&persistAssociations=true");
    assert_eq!(
        counts(&run),
        map(&[("CONFIRMED", 1), ("FOUND_ALREADY_LINKED", 1)])
    );
    put_src(&s, "a", json!({"userName": "same", "active": "no"}));
    let run = s.run("lab", "");
    assert_eq!(counts(&run)["UNQUALIFIED"], 1);
    assert!(
        !links(&s, "lab").iter().any(|l| l.0 == "a"),
        "UNLINK removed the link"
    );
    assert_eq!(
        s.query("/openidm/managed/user", "true")["resultCount"],
        1,
        "UNLINK keeps the target"
    );
    put_src(
        &s,
        "c",
        json!({"userName": "nobody-matches", "active": "no"}),
    );
    let run = s.run("lab", "");
    assert!(
        counts(&run).contains_key("SOURCE_IGNORED"),
        "{:?}",
        counts(&run)
    );
}

#[test]
fn link_qualifiers_each_get_their_own_link() {
    let s = Server::start(&lab("linkQualifiers = [\"primary\", \"backup\"]"), &[]);
    put_src(&s, "a", json!({"userName": "a"}));
    let run = s.run("lab", "");
    assert_eq!(counts(&run), map(&[("ABSENT", 2)]));
    assert_eq!(run["statusSummary"]["SUCCESS"], 2);
    let l = links(&s, "lab");
    let mut qualifiers: Vec<&str> = l.iter().map(|x| x.2.as_str()).collect();
    qualifiers.sort();
    assert_eq!(qualifiers, vec!["backup", "primary"]);
    let run = s.run("lab", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 2)]));
}

#[test]
fn body_overrides_and_the_empty_source_guard() {
    let s = Server::start(&lab(""), &[]);
    let run = s.run("lab", "");
    assert_eq!(run["state"], "FAILED");
    assert_eq!(run["stage"], "COMPLETED_FAILED");
    assert!(
        run["message"]
            .as_str()
            .unwrap_or_default()
            .contains("allowEmptySourceSet"),
        "{run}"
    );
    put_tgt(&s, "keep", json!({"userName": "keep"}));
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=lab&waitForCompletion=true",
        Some(&json!({"allowEmptySourceSet": true})),
    );
    assert_eq!(r.status, 200);
    let run = s.wait_run(r.body["_id"].as_str().expect("id"));
    assert_eq!(
        (run["state"].as_str(), counts(&run)),
        (Some("SUCCESS"), map(&[("UNASSIGNED", 1)]))
    );
    put_src(&s, "a", json!({"userName": "a", "sn": "in"}));
    put_src(&s, "b", json!({"userName": "b", "sn": "out"}));
    let body = json!({"sourceQuery": {"_queryFilter": "sn eq \"in\""}, "runTargetPhase": false});
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=lab&waitForCompletion=true",
        Some(&body),
    );
    let run = s.wait_run(r.body["_id"].as_str().expect("id"));
    assert_eq!(counts(&run), map(&[("ABSENT", 1)]));
    assert_eq!(
        run["parameters"]["sourceQuery"]["_queryFilter"],
        "sn eq \"in\""
    );
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=lab",
        Some(&json!({"sourceQuery": {"_queryFilter": "bad eq"}})),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn case_insensitive_ids_and_correlate_empty_target_set() {
    let s = Server::start(
        &lab("sourceIdsCaseSensitive = false\ncorrelateEmptyTargetSet = true\ncorrelationQuery = { expressionTree = { all = [\"userName\"] } }"),
        &[],
    );
    put_src(&s, "MixedCase", json!({"userName": "m"}));
    let run = s.run("lab", "");
    assert_eq!(counts(&run), map(&[("ABSENT", 1)]));
    assert_eq!(
        links(&s, "lab")[0].0,
        "mixedcase",
        "case-insensitive sides store lower-cased ids"
    );
    let run = s.run("lab", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 1)]));
}

#[test]
fn recon_by_id_touches_one_object() {
    let s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))]);
    s.run("hr", "");
    s.write(
        "data/hr.csv",
        &format!(
            "{HEADER}{}",
            people(3, 1)
                .replace("Family2", "X2")
                .replace("Family3", "X3")
        ),
    );
    for (param, id) in [("id", "u3"), ("ids", "u2")] {
        let r = s.post(
            &format!(
                "/openidm/recon?_action=reconById&mapping=hr&{param}={id}&waitForCompletion=true"
            ),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let run = s.wait_run(r.body["_id"].as_str().expect("id"));
        assert_eq!(counts(&run), map(&[("CONFIRMED", 1)]));
        assert_eq!(run["parameters"]["sourceIds"], json!([id]));
    }
    assert_eq!(s.get("/openidm/managed/user/u3").body["sn"], "X3");
    assert_eq!(s.get("/openidm/managed/user/u1").body["sn"], "Family1");
    assert_eq!(
        s.post("/openidm/recon?_action=reconById&mapping=hr", None)
            .status,
        400
    );
}

#[test]
fn errors_of_the_run_api() {
    let s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(1, 1)))]);
    assert_eq!(s.post("/openidm/recon?mapping=hr", None).status, 400);
    assert_eq!(
        s.post("/openidm/recon?_action=bogus&mapping=hr", None)
            .status,
        400
    );
    assert_eq!(s.post("/openidm/recon?_action=recon", None).status, 400);
    let r = s.post("/openidm/recon?_action=recon&mapping=nope", None);
    assert_eq!(r.status, 409);
    assert!(r.body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("No such mapping: nope"));
    assert!(r.body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("hr"));
    assert_eq!(s.get("/openidm/recon/nope-1").status, 404);
    assert_eq!(
        s.post("/openidm/recon/nope-1?_action=cancel", None).status,
        404
    );
    let run = s.run("hr", "");
    let id = run["_id"].as_str().expect("id");
    assert_eq!(
        s.post(&format!("/openidm/recon/{id}?_action=pause"), None)
            .status,
        400
    );
    let r = s.post(&format!("/openidm/recon/{id}?_action=cancel"), None);
    assert_eq!(r.status, 200, "cancelling a completed run is accepted");
    assert_eq!(
        s.get(&format!("/openidm/recon/{id}")).body["state"],
        "SUCCESS"
    );
}

#[test]
fn cancel_and_one_active_run_per_mapping() {
    let s = Server::start(
        HR,
        &[("data/hr.csv", &format!("{HEADER}{}", people(60_000, 1)))],
    );
    let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
    assert_eq!(r.status, 200);
    let id = r.body["_id"].as_str().expect("id").to_string();
    let r2 = s.post("/openidm/recon?_action=recon&mapping=hr", None);
    assert_eq!(r2.status, 409);
    assert!(r2.body["message"]
        .as_str()
        .unwrap_or_default()
        .contains(&id));
    assert_eq!(
        s.delete(&format!("/openidm/recon/{id}")).status,
        409,
        "an active run cannot be deleted"
    );
    let r = s.post(&format!("/openidm/recon/{id}?_action=cancel"), None);
    assert_eq!(
        r.body,
        json!({"_id": id, "action": "cancel", "status": "INITIATED"})
    );
    let run = s.wait_run(&id);
    assert_eq!(
        (run["state"].as_str(), run["stage"].as_str()),
        (Some("CANCELED"), Some("COMPLETED_CANCELED"))
    );
    assert_eq!(run["stageDescription"], "reconciliation aborted.");
    let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
    assert_eq!(
        r.status, 200,
        "a new run may start once the cancelled one ended"
    );
    let id = r.body["_id"].as_str().expect("id").to_string();
    s.post(&format!("/openidm/recon/{id}?_action=cancel"), None);
    s.wait_run(&id);
}

#[test]
fn a_failing_object_does_not_abort_the_run() {
    // Two sources map to the same target id: the second CREATE fails, the rest go on.
    let s = Server::start(
        r#"
[managed.user]
[system.lab.account]
connector = "store"
[[mappings]]
name = "lab"
source = "system/lab/account"
target = "managed/user"
properties = [ { source = "key", target = "_id" }, { source = "n", target = "n" } ]
"#,
        &[],
    );
    put_src(&s, "a", json!({"key": "same", "n": 1}));
    put_src(&s, "b", json!({"key": "same", "n": 2}));
    put_src(&s, "c", json!({"key": "other", "n": 3}));
    let run = s.run("lab", "&persistAssociations=true");
    assert_eq!(run["state"], "SUCCESS");
    assert_eq!(run["statusSummary"], json!({"SUCCESS": 2, "FAILURE": 1}));
    let entries = s.query(
        &format!(
            "/openidm/recon/assoc/{}/entry",
            run["_id"].as_str().expect("id")
        ),
        "status eq \"FAILURE\"",
    );
    assert_eq!(entries["resultCount"], 1);
    assert!(
        entries["result"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists"),
        "{entries}"
    );
}

#[test]
fn sync_json_mapping_file_is_read_as_is() {
    let sync = json!({"mappings": [{
        "name": "systemLab_managedUser",
        "source": "system/lab/account",
        "target": "managed/user",
        "displayName": "UI only key",
        "correlationQuery": {"type": "text/javascript", "file": "ui/correlationQuery.js", "expressionTree": {"any": ["userName"]}, "mapping": "x"},
        "properties": [{"source": "userName", "target": "userName"}],
        "policies": [{"situation": "FOUND", "action": "LINK"}]
    }]});
    let config = "mappings_file = \"conf/sync.json\"\n[managed.user]\nindexed = [\"userName\"]\n[system.lab.account]\nconnector = \"store\"\n";
    let s = Server::start(config, &[("conf/sync.json", &sync.to_string())]);
    put_src(&s, "a", json!({"userName": "x"}));
    put_tgt(&s, "t", json!({"userName": "X"}));
    let run = s.run("systemLab_managedUser", "");
    assert_eq!(counts(&run), map(&[("FOUND", 1)]));
    assert!(s.log().contains("not supported"), "UI-only keys are logged");
}

#[test]
fn recon_by_id_of_a_missing_source() {
    // reconById of an id the source does not have: ALL_GONE without a link, SOURCE_MISSING
    // with a link to an existing target, LINK_ONLY with a link to a missing target.
    let s = Server::start(
        &lab(
            r#"policies = [ { situation = "SOURCE_MISSING", action = "DELETE" }, { situation = "LINK_ONLY", action = "UNLINK" } ]"#,
        ),
        &[],
    );
    put_src(&s, "a", json!({"userName": "a"}));
    put_src(&s, "b", json!({"userName": "b"}));
    s.run("lab", "");
    let by_id = |id: &str| {
        let r = s.post(
            &format!("/openidm/recon?_action=reconById&mapping=lab&id={id}&waitForCompletion=true"),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        s.wait_run(r.body["_id"].as_str().expect("id"))
    };
    assert_eq!(counts(&by_id("never-existed")), map(&[("ALL_GONE", 1)]));
    let l = links(&s, "lab");
    let target_a = l.iter().find(|x| x.0 == "a").expect("a linked").1.clone();
    let target_b = l.iter().find(|x| x.0 == "b").expect("b linked").1.clone();
    assert_eq!(s.delete("/openidm/system/lab/account/a").status, 200);
    assert_eq!(counts(&by_id("a")), map(&[("SOURCE_MISSING", 1)]));
    assert_eq!(
        s.get(&format!("/openidm/managed/user/{target_a}")).status,
        404,
        "SOURCE_MISSING → DELETE"
    );
    assert_eq!(s.delete("/openidm/system/lab/account/b").status, 200);
    assert_eq!(
        s.delete(&format!("/openidm/managed/user/{target_b}"))
            .status,
        200
    );
    assert_eq!(counts(&by_id("b")), map(&[("LINK_ONLY", 1)]));
    assert!(
        links(&s, "lab").is_empty(),
        "LINK_ONLY → UNLINK removed the last link"
    );
}

#[test]
fn deprecated_sync_recon_runs_to_the_end() {
    let s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(4, 1)))]);
    let r = s.post("/openidm/sync?_action=recon&mapping=hr", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["_id"].as_str().expect("a run id").to_string();
    assert_eq!(r.body["reconId"], json!(id));
    assert!(r.body["comment1"].is_string() && r.body["comment2"].is_string());
    // Answered once the run has ended.
    let run = s.get(&format!("/openidm/recon/{id}")).body;
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run)["ABSENT"], 4);

    let r = s.post("/openidm/sync?_action=recon", None);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post("/openidm/sync?_action=recon&mapping=nope", None);
    assert_eq!(r.status, 409, "{}", r.body);
    // performAction is answered (tests/it/perform_action.rs); IDM's notify* are not offered.
    let r = s.post("/openidm/sync?_action=notifyUpdate", None);
    assert_eq!(r.status, 501, "{}", r.body);
    assert_eq!(s.post("/openidm/sync?_action=bogus", None).status, 400);
    assert_eq!(s.post("/openidm/sync", None).status, 400);
    assert_eq!(s.get("/openidm/sync").status, 501);
}

/// Regression (#12): a body `sourceQuery` used to narrow a by-id run, so an existing source
/// outside its filter was SOURCE_MISSING/UNQUALIFIED and its target was deleted.
#[test]
fn recon_by_id_ignores_a_body_source_query() {
    let s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))]);
    s.run("hr", "");
    s.write(
        "data/hr.csv",
        &format!("{HEADER}{}", people(3, 1).replace("Family2", "X2")),
    );
    let body =
        json!({"sourceQuery": {"_queryFilter": "userName eq \"nobody\""}, "runTargetPhase": true});
    let r = s.post(
        "/openidm/recon?_action=reconById&mapping=hr&id=u2&waitForCompletion=true",
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let run = s.wait_run(r.body["_id"].as_str().expect("id"));
    assert_eq!(run["parameters"]["sourceIds"], json!(["u2"]));
    assert_eq!(run["progress"]["target"]["deleted"], json!(0), "{run}");
    // With the target phase on, the other linked targets are CONFIRMED (their sources are
    // read), never SOURCE_MISSING: a by-id run did not see the whole source.
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");
    assert_eq!(s.get("/openidm/managed/user/u2").body["sn"], "X2");
    for id in ["u1", "u2", "u3"] {
        assert_eq!(s.get(&format!("/openidm/managed/user/{id}")).status, 200);
    }
}

/// Regression (#12): `sourceQueryFullEntry` / `targetQueryFullEntry` accepted any value and
/// did nothing. They are booleans (400 otherwise); false reads each object on its own.
#[test]
fn query_full_entry_flags_are_booleans_with_their_meaning() {
    let s = Server::start(HR, &[("data/hr.csv", &format!("{HEADER}{}", people(3, 1)))]);
    for key in ["sourceQueryFullEntry", "targetQueryFullEntry"] {
        let r = s.post(
            "/openidm/recon?_action=recon&mapping=hr",
            Some(&json!({ key: "maybe" })),
        );
        assert_eq!(r.status, 400, "{key}: {}", r.body);
    }
    s.run("hr", "");
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=hr&waitForCompletion=true",
        Some(&json!({"sourceQueryFullEntry": false, "targetQueryFullEntry": false})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let run = s.wait_run(r.body["_id"].as_str().expect("id"));
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");
    let d = &run["durationSummary"];
    assert!(d.get("sourceObjectQuery").is_some(), "{d}");
    assert!(d.get("targetObjectQuery").is_none() || d["targetObjectQuery"].is_object());
}

/// A representative part of this file on the PostgreSQL repository (issue #20).
mod on_postgres {
    crate::helpers::on_postgres_too!(
        first_load_changes_and_the_run_summary,
        default_actions_and_target_phase_situations,
        policies_with_conditions_and_configured_actions,
        unlink_delete_and_found_already_linked,
        link_qualifiers_each_get_their_own_link,
        recon_by_id_touches_one_object,
        cancel_and_one_active_run_per_mapping,
        a_failing_object_does_not_abort_the_run,
    );
}
