//! IDM's synchronization service actions (contract §7): `performAction` forces one action on
//! one object of a mapping (reference §3.8) and `getLinkedResources` lists what a resource
//! is linked to, through the real binary.

use serde_json::{json, Value};

use crate::helpers::*;

/// managed/user -> system/lab/account with implicit sync off, so every target write below is
/// made by `performAction` alone.
const CONFIG: &str = r#"
mappings_file = "conf/sync.json"
[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"
"#;

fn mappings() -> String {
    json!({"mappings": [
        {"name": "user_lab", "source": "managed/user", "target": "system/lab/account",
         "enableSync": false,
         "properties": [{"source": "userName", "target": "_id"}, {"source": "sn", "target": "sn"}],
         "policies": [{"situation": "ABSENT", "action": "CREATE"},
                      {"situation": "CONFIRMED", "action": "UPDATE"}]}
    ]})
    .to_string()
}

fn start() -> Server {
    let s = Server::start(CONFIG, &[("conf/sync.json", &mappings())]);
    let r = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "ann", "sn": "Lee"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    s
}

fn perform(s: &Server, query: &str) -> Response {
    s.post(
        &format!("/openidm/sync?_action=performAction&{query}"),
        None,
    )
}

fn links(s: &Server) -> Vec<(String, String)> {
    let body = s.query("/openidm/repo/link", "linkType eq \"user_lab\"");
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

fn message(r: &Response) -> String {
    r.body["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn create_unlink_link_and_delete_one_object() {
    let s = start();
    assert!(
        target(&s, "ann").is_none(),
        "implicit sync is off for the mapping"
    );

    // CREATE: the target and its link.
    let r = perform(&s, "mapping=user_lab&sourceId=u1&action=CREATE");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({"status": "OK"}));
    assert_eq!(target(&s, "ann").expect("target created")["sn"], "Lee");
    assert_eq!(links(&s), vec![("u1".into(), "ann".into())]);

    // A second CREATE finds the target there: IDM's failure, a 409 with the reason.
    let r = perform(&s, "mapping=user_lab&sourceId=u1&action=CREATE");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(message(&r).contains("already exists"), "{}", r.body);

    // UNLINK: the link goes, the target stays.
    let r = perform(&s, "mapping=user_lab&sourceId=u1&action=UNLINK");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(links(&s).is_empty());
    assert!(target(&s, "ann").is_some(), "UNLINK leaves the target");
    // UNLINK with no link is forgiving.
    assert_eq!(
        perform(&s, "mapping=user_lab&sourceId=u1&action=UNLINK").status,
        200
    );

    // LINK an existing pair: the situation is ABSENT (no link, no correlation), the target
    // is the one named.
    let r = perform(
        &s,
        "mapping=user_lab&sourceId=u1&targetId=ann&action=LINK&situation=ABSENT",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(links(&s), vec![("u1".into(), "ann".into())]);

    // An expected situation that no longer holds is refused and changes nothing.
    let r = perform(
        &s,
        "mapping=user_lab&sourceId=u1&action=DELETE&situation=ABSENT",
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        message(&r)
            .contains("Expected situation does not match. Expected: ABSENT, Found: CONFIRMED"),
        "{}",
        r.body
    );
    assert!(target(&s, "ann").is_some());

    // UPDATE pushes the source's current values, whatever the policy says.
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&json!([{"operation": "replace", "field": "/sn", "value": "Kim"}])),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        target(&s, "ann").expect("target")["sn"],
        "Lee",
        "no implicit sync"
    );
    let r = perform(&s, "mapping=user_lab&sourceId=u1&action=UPDATE");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(target(&s, "ann").expect("target")["sn"], "Kim");

    // IGNORE and REPORT write nothing.
    for action in ["IGNORE", "REPORT", "NOREPORT", "ASYNC", "EXCEPTION"] {
        let r = perform(&s, &format!("mapping=user_lab&sourceId=u1&action={action}"));
        assert_eq!(r.status, 200, "{action}: {}", r.body);
    }
    assert_eq!(links(&s).len(), 1);

    // DELETE: the target and its link.
    let r = perform(&s, "mapping=user_lab&sourceId=u1&action=DELETE");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(target(&s, "ann").is_none(), "target deleted");
    assert!(links(&s).is_empty(), "link removed");
    assert_eq!(
        s.get("/openidm/managed/user/u1").status,
        200,
        "the source stays"
    );

    // No reconciliation run was involved.
    assert_eq!(s.get("/openidm/recon").body["reconciliations"], json!([]));
}

#[test]
fn arguments_in_the_body_and_target_side_operations() {
    let s = start();
    // The same arguments as a JSON body (what an action script's `recon.actionParam` holds).
    let r = s.post(
        "/openidm/sync?_action=performAction",
        Some(
            &json!({"mapping": "user_lab", "sourceId": "u1", "action": "CREATE",
                     "linkQualifier": "default", "reconId": null}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(links(&s), vec![("u1".into(), "ann".into())]);

    // A target-side operation (`target` given): the target phase's assessment of one target.
    let r = s.put(
        "/openidm/system/lab/account/orphan",
        &json!({"sn": "X"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = perform(
        &s,
        "mapping=user_lab&targetId=orphan&target=true&action=DELETE&situation=UNASSIGNED",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(target(&s, "orphan").is_none());
    assert!(target(&s, "ann").is_some());
}

#[test]
fn bad_requests_are_crest_errors() {
    let s = start();
    for (query, status, needle) in [
        ("sourceId=u1&action=CREATE", 400, "/mapping"),
        ("mapping=user_lab&sourceId=u1", 400, "/action"),
        (
            "mapping=user_lab&sourceId=u1&action=FROB",
            400,
            "Invalid action",
        ),
        ("mapping=user_lab&action=CREATE", 400, "/sourceId"),
        (
            "mapping=user_lab&action=DELETE&target=true",
            400,
            "/targetId",
        ),
        (
            "mapping=user_lab&sourceId=u1&action=LINK&situation=NOPE",
            400,
            "Invalid situation",
        ),
        (
            "mapping=user_lab&sourceId=u1&action=LINK&ignorePostAction=maybe",
            400,
            "ignorePostAction",
        ),
        (
            "mapping=nope&sourceId=u1&action=CREATE",
            409,
            "No such mapping: nope",
        ),
        (
            "mapping=user_lab&sourceId=zz&action=CREATE",
            409,
            "Source object managed/user/zz does not exist",
        ),
        (
            "mapping=user_lab&sourceId=u1&targetId=zz&action=LINK",
            409,
            "Target object system/lab/account/zz does not exist",
        ),
    ] {
        let r = perform(&s, query);
        assert_eq!(r.status, status, "{query}: {}", r.body);
        assert_eq!(r.body["code"], json!(status), "{query}: {}", r.body);
        assert!(message(&r).contains(needle), "{query}: {}", r.body);
    }
    let r = s.request(
        "POST",
        "/openidm/sync?_action=performAction",
        Some(&json!(["not", "an", "object"])),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post("/openidm/sync?_action=getLinkedResources", None);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(message(&r).contains("/resourceName"), "{}", r.body);
    let r = s.post(
        "/openidm/sync?_action=getLinkedResources&resourceName=managed",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        s.post("/openidm/sync?_action=notifyCreate", None).status,
        501
    );
    assert!(
        links(&s).is_empty() && target(&s, "ann").is_none(),
        "nothing was written"
    );
}

#[test]
fn linked_resources_answer_with_idm_s_shape_from_either_side() {
    let s = start();
    assert_eq!(
        perform(&s, "mapping=user_lab&sourceId=u1&action=CREATE").status,
        200
    );

    let r = s.post(
        "/openidm/sync?_action=getLinkedResources&resourceName=managed/user/u1",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.body.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{}", r.body);
    let l = &list[0];
    let keys: Vec<&str> = l
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "resourceName",
            "content",
            "linkQualifier",
            "linkType",
            "mappings"
        ]
    );
    assert_eq!(l["resourceName"], "system/lab/account/ann");
    assert_eq!(l["content"]["_id"], "ann");
    assert_eq!(l["content"]["sn"], "Lee");
    assert_eq!(l["linkQualifier"], "default");
    assert_eq!(l["linkType"], "user_lab");
    assert_eq!(
        l["mappings"],
        json!([{"name": "user_lab", "type": "target"}])
    );

    // From the target's side, the managed user is the linked resource (its source).
    let r = s.post(
        "/openidm/sync?_action=getLinkedResources&resourceName=system/lab/account/ann",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let l = &r.body[0];
    assert_eq!(l["resourceName"], "managed/user/u1");
    assert_eq!(l["content"]["userName"], "ann");
    assert_eq!(
        l["mappings"],
        json!([{"name": "user_lab", "type": "source"}])
    );

    // A linked object that is gone is still listed, with the error and no content.
    assert_eq!(s.delete("/openidm/system/lab/account/ann").status, 200);
    let r = s.post(
        "/openidm/sync?_action=getLinkedResources&resourceName=managed/user/u1",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[0]["content"], Value::Null, "{}", r.body);
    assert!(r.body[0]["error"].is_string(), "{}", r.body);

    // Nothing linked: an empty array.
    let r = s.post(
        "/openidm/sync?_action=getLinkedResources&resourceName=managed/user/nobody",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!([]));
}
