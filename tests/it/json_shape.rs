//! IDM's JSON as IDM writes it (issue 17, contract §8): key order of run summaries, start
//! responses, errors, query envelopes and objects (also after a store round trip and a
//! restart); association entries shaped as reference §1.8 and typed as contract §4; side
//! filters as IDM's admin UI sends them; the `Content-API-Version` header.

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
