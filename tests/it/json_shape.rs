//! IDM's JSON as IDM writes it (issue 17, contract §8): key order of run summaries, start
//! responses, errors, query envelopes and objects (also after a store round trip and a
//! restart); association entries shaped as reference §1.8 and typed as contract §4; side
//! filters as IDM's admin UI sends them; the `Content-API-Version` header; progress totals
//! known when the query stage ends, and `durationSummary` with IDM's task names.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const LAB: &str = r#"
[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab"
source = "system/lab/account"
target = "managed/user"
properties = [
  { source = "userName", target = "userName" },
  { source = "mail", target = "mail" },
]
"#;

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn put_src(s: &Server, id: &str, body: Value) {
    let r = s.put(&format!("/openidm/system/lab/account/{id}"), &body, &[]);
    assert!(r.status == 201 || r.status == 200, "{}", r.body);
}

#[test]
fn bodies_keep_idm_key_order() {
    let mut s = Server::start(LAB, &[]);
    // A body written in a non-sorted order comes back in that order, after _id and _rev.
    let r = s.put(
        "/openidm/managed/user/k1",
        &json!({"userName": "k1", "mail": "k1@x", "description": "d", "_id": "k1"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        keys(&r.body),
        ["_id", "_rev", "userName", "mail", "description"]
    );
    let read = s.get("/openidm/managed/user/k1");
    assert_eq!(
        keys(&read.body),
        ["_id", "_rev", "userName", "mail", "description"]
    );
    let projected = s.get("/openidm/managed/user/k1?_fields=mail,userName");
    assert_eq!(keys(&projected.body), ["_id", "_rev", "mail", "userName"]);
    // A patch that removes a field keeps the order of the others.
    let p = s.request(
        "PATCH",
        "/openidm/managed/user/k1",
        Some(&json!([{"operation": "remove", "field": "/userName"}])),
        &[],
        Auth::Admin,
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(keys(&p.body), ["_id", "_rev", "mail", "description"]);

    put_src(&s, "a", json!({"userName": "a", "mail": "a@x"}));
    let start = s.post("/openidm/recon?_action=recon&mapping=lab", None);
    assert_eq!(keys(&start.body), ["_id", "state"]);
    let id = start.body["_id"].as_str().expect("run id").to_string();
    let run = s.wait_run(&id);
    let idm = [
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
    assert_eq!(keys(&run)[..idm.len()], idm, "{run}");
    assert_eq!(keys(&run["progress"]), ["source", "target", "links"]);
    assert_eq!(
        keys(&run["progress"]["target"]),
        ["existing", "created", "unchanged", "updated", "deleted"]
    );
    assert_eq!(keys(&run["statusSummary"]), ["SUCCESS", "FAILURE"]);
    assert_eq!(
        keys(&run["situationSummary"])[..4],
        [
            "SOURCE_IGNORED",
            "FOUND_ALREADY_LINKED",
            "UNQUALIFIED",
            "ABSENT"
        ]
    );
    // recond's own key after IDM's: the user k1 put above is an unlinked target.
    assert_eq!(
        run["situationActions"],
        json!({"ABSENT": {"CREATE": 1}, "UNASSIGNED": {"EXCEPTION": 1}})
    );

    let err = s.get("/openidm/recon/no-such-run");
    assert_eq!(keys(&err.body), ["code", "reason", "message"]);
    let env = s.query("/openidm/managed/user", "true");
    assert_eq!(
        keys(&env),
        [
            "result",
            "resultCount",
            "pagedResultsCookie",
            "totalPagedResultsPolicy",
            "totalPagedResults",
            "remainingPagedResults"
        ]
    );
    assert_eq!(
        s.get("/openidm/info/ping").header("Content-API-Version"),
        Some("protocol=2.1,resource=1.0")
    );
    assert_eq!(
        err.header("Content-API-Version"),
        Some("protocol=2.1,resource=1.0")
    );

    // The order survives the store and a restart.
    s.restart();
    let read = s.get("/openidm/managed/user/k1");
    assert_eq!(keys(&read.body), ["_id", "_rev", "mail", "description"]);
    let stored = s.get(&format!("/openidm/recon/{id}")).body;
    assert_eq!(keys(&stored)[..idm.len()], idm, "{stored}");
    let listed = s.get("/openidm/recon").body;
    assert_eq!(keys(&listed["reconciliations"][0])[..idm.len()], idm);
}

#[test]
fn association_entries_are_shaped_as_idm_and_side_filters_work_as_the_ui_sends_them() {
    let s = Server::start(LAB, &[]);
    put_src(&s, "a", json!({"userName": "alice", "mail": "a@x"}));
    put_src(&s, "b", json!({"userName": "bob", "mail": "b@x"}));
    // An analysis run: the ABSENT entries have no target object.
    let run = s.run("lab", "&analyze=true&persistAssociations=true");
    let id = run["_id"].as_str().expect("run id");
    let all = s.query(&format!("/openidm/recon/assoc/{id}/entry"), "true");
    let entry = &all["result"][0];
    assert_eq!(
        keys(entry),
        [
            "_id",
            "_rev",
            "mapping",
            "reconId",
            "situation",
            "action",
            "linkQualifier",
            "sourceObjectId",
            "targetObjectId",
            "sourceResourceCollection",
            "targetResourceCollection",
            "status",
            "exception",
            "message",
            "messageDetail",
            "ambiguousTargetObjectIds",
            // recond's own addition (contract §8) comes after IDM's keys: an analysis with
            // persistAssociations records the attribute changes.
            "changes"
        ],
        "{entry}"
    );
    assert_eq!(entry["ambiguousTargetObjectIds"], Value::Null);
    assert!(entry["messageDetail"].is_null() || entry["messageDetail"].is_string());

    // IDM's admin UI filters on one side and sends the other as `true`.
    let ui = s.get(&format!(
        "/openidm/recon/assoc/{id}/entry?_queryFilter=true&sourceQueryFilter={}&targetQueryFilter=true",
        enc("userName eq \"alice\"")
    ));
    assert_eq!(ui.status, 200, "{}", ui.body);
    assert_eq!(ui.body["resultCount"], 1, "{}", ui.body);
    assert_eq!(ui.body["result"][0]["source"]["userName"], "alice");
    assert_eq!(ui.body["result"][0]["situation"], "ABSENT");

    // Pointers into the embedded objects are not something _queryFilter can see: a clear 400.
    let bad = s.get(&format!(
        "/openidm/recon/assoc/{id}/entry?_queryFilter={}",
        enc("source/userName eq \"alice\"")
    ));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sourceQueryFilter"),
        "{}",
        bad.body
    );
}

/// IDM's duration metric names (reference §1.5: OSS's list and the ones Ping's examples add).
const IDM_DURATIONS: &[&str] = &[
    "activePolicyPostActionScript",
    "activePolicyScript",
    "auditLog",
    "correlationQuery",
    "correlationScript",
    "defaultMappingScript",
    "deleteLinkObject",
    "deleteTargetObject",
    "linkQualifiersScript",
    "linkQuery",
    "onCreateScript",
    "onDeleteScript",
    "onLinkScript",
    "onReconScript",
    "onUnlinkScript",
    "onUpdateScript",
    "postMappingScript",
    "propertyMappingScript",
    "resultScript",
    "sourceLinkQuery",
    "sourceObjectQuery",
    "sourcePhase",
    "sourceQuery",
    "targetLinkQuery",
    "targetObjectQuery",
    "targetPhase",
    "targetQuery",
    "updateTargetObject",
    "validSourceScript",
    "validTargetScript",
    "onMappingScript",
    "defaultPropertyMapping",
    "updateLastSync",
];

const CSV_LAB: &str = r#"
[audit]
recon = "all"

[managed.user]
indexed = ["userName"]

[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"

[[mappings]]
name = "hr"
source = "system/hr/account"
target = "managed/user"
correlationQuery = { expressionTree = { all = ["userName"] } }
properties = [
  { source = "userName", target = "userName" },
  { source = "note", target = "note" },
]
onCreate = { type = "text/javascript", source = "target.origin = 'hr';" }
onUpdate = { type = "text/javascript", source = "target.updates = (oldTarget.updates || 0) + 1;" }
policies = [
  { situation = "ABSENT", action = "CREATE" },
  { situation = "FOUND", action = "UPDATE" },
  { situation = "CONFIRMED", action = "UPDATE" },
]
"#;

/// `n` CSV rows from `start`; every third has a note spanning two lines (a quoted newline, so
/// a line count would be wrong) and every fifth a quoted comma.
fn csv_rows(start: usize, n: usize) -> String {
    let mut s = String::from("uid,userName,note\n");
    for i in start..start + n {
        let note = match i {
            i if i % 3 == 0 => format!("\"first line\nsecond \"\"line\"\" {i}\""),
            i if i % 5 == 0 => format!("\"a, b {i}\""),
            i => format!("plain {i}"),
        };
        s.push_str(&format!("u{i},user{i},{note}\n"));
    }
    s
}

/// Contract §8 (issue 17): the source total (and the target and link totals) are numbers as
/// soon as the query stage ends — here read while the run is held, deterministically, at its
/// first write in the source phase, before any entry was processed. The CSV source is counted
/// by records, not lines (quoted newlines).
#[test]
fn progress_totals_are_known_when_the_source_phase_starts() {
    let hold = TempDir::new("hold");
    let hold_dir = hold.0.display().to_string();
    let s = Server::start_with_env(
        CSV_LAB,
        &[("data/hr.csv", &csv_rows(0, 6))],
        &[("RECOND_TEST_HOLD_DIR", &hold_dir)],
    );
    let first = s.run("hr", "");
    assert_eq!(counts(&first), map(&[("ABSENT", 6)]), "{first}");
    assert_eq!(first["progress"]["source"]["existing"]["total"], "6");

    s.write("data/hr.csv", &csv_rows(0, 9));
    std::fs::write(hold.0.join("gate"), "").expect("gate");
    let r = s.post("/openidm/recon?_action=recon&mapping=hr", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["_id"].as_str().expect("id").to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    crate::helpers::wait_held(&hold.0, Duration::from_secs(60));
    // The source total is there when the source phase starts; the target's and the links'
    // are counted beside the source phase (at idle priority) and appear while it runs.
    let live = s.get(&format!("/openidm/recon/{rid}")).body;
    assert_eq!(live["stage"], "ACTIVE_RECONCILING_SOURCE", "{live}");
    assert_eq!(
        live["progress"]["source"]["existing"]["processed"], 0,
        "{live}"
    );
    assert_eq!(
        live["progress"]["source"]["existing"]["total"], "9",
        "{live}"
    );
    let live = loop {
        let live = s.get(&format!("/openidm/recon/{rid}")).body;
        let p = &live["progress"];
        if p["target"]["existing"]["total"] != "?" && p["links"]["existing"]["total"] != "?" {
            break live;
        }
        assert!(
            Instant::now() < deadline,
            "the target and link totals never appeared: {live}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    assert_eq!(live["stage"], "ACTIVE_RECONCILING_SOURCE", "{live}");
    let p = &live["progress"];
    assert_eq!(p["target"]["existing"]["total"], "6", "{live}");
    assert_eq!(p["links"]["existing"]["total"], "6", "{live}");

    let done = s.wait_run(&rid);
    assert_eq!(done["state"], "SUCCESS", "{done}");
    assert_eq!(
        counts(&done),
        map(&[("ABSENT", 3), ("CONFIRMED", 6)]),
        "{done}"
    );
    let p = &done["progress"];
    assert_eq!(p["source"]["existing"]["total"], "9", "{done}");
    assert_eq!(p["target"]["existing"]["total"], "6", "{done}");
    assert_eq!(p["links"]["existing"]["total"], "6", "{done}");

    // durationSummary names the tasks as IDM does, where they happen: the source read
    // (`sourceQuery`), the target and link counts (`targetQuery`, `linkQuery`), the per-object
    // link lookups and audit events; a full-entry source has no per-object source read.
    let d = &done["durationSummary"];
    for name in keys(d) {
        assert!(
            IDM_DURATIONS.contains(&name.as_str()),
            "{name} is not an IDM duration metric: {d}"
        );
    }
    for name in [
        "sourceQuery",
        "targetQuery",
        "linkQuery",
        "sourceLinkQuery",
        "correlationQuery",
        "auditLog",
        "onCreateScript",
        "onUpdateScript",
        "updateTargetObject",
        "sourcePhase",
        "targetPhase",
    ] {
        assert!(d.get(name).is_some(), "{name} missing: {d}");
        assert_eq!(
            keys(&d[name]),
            ["min", "max", "mean", "count", "sum", "stdDev"],
            "{d}"
        );
    }
    assert_eq!(d["sourceQuery"]["count"], 2, "the count and the read: {d}");
    assert_eq!(d["auditLog"]["count"], 9, "one event per entry: {d}");
    assert_eq!(d["onCreateScript"]["count"], 3, "{d}");
    assert_eq!(d["onUpdateScript"]["count"], 6, "{d}");
    assert!(d.get("sourceObjectQuery").is_none(), "{d}");
}
