//! Attribute-level changes on association entries (contract §8) through the real binary: an
//! analysis shows the exact before/after of a changed attribute and masks secrets, a DELETE
//! lists what goes, entries are selectable by changed attribute, and a real run records the
//! same only when asked.

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

const SYNC: &str = r#"{"mappings": [{
    "name": "hr_user",
    "source": "system/hr/account",
    "target": "managed/user",
    "correlationQuery": {"expressionTree": {"all": ["userName"]}},
    "properties": [
        {"source": "userName", "target": "userName"},
        {"source": "mail", "target": "mail"},
        {"source": "password", "target": "password"}
    ],
    "policies": [
        {"situation": "CONFIRMED", "action": "UPDATE"},
        {"situation": "ABSENT", "action": "CREATE"},
        {"situation": "SOURCE_MISSING", "action": "DELETE"}
    ]
}]}"#;

const HEAD: &str = "uid,userName,mail,password\n";

fn entries(s: &Server, run: &Value, filter: &str) -> Vec<Value> {
    let rid = run["_id"].as_str().expect("id");
    s.query(&format!("/openidm/recon/assoc/{rid}/entry"), filter)["result"]
        .as_array()
        .expect("entries")
        .clone()
}

/// The changes in attribute order (their order follows the target object's key order).
fn sorted(changes: &Value) -> Vec<Value> {
    let mut v = changes.as_array().expect("changes").clone();
    v.sort_by_key(|c| c["attribute"].to_string());
    v
}

fn entry_of(list: &[Value], sid: &str) -> Value {
    list.iter()
        .find(|e| e["sourceObjectId"] == sid)
        .cloned()
        .unwrap_or_else(|| panic!("an entry for {sid} in {list:?}"))
}

#[test]
fn an_analysis_shows_before_and_after_and_masks_the_password() {
    let s = Server::start(
        CONFIG,
        &[
            ("data/hr.csv", &format!("{HEAD}u1,ann,ann@old.example,pw1\nu2,bob,bob@example.com,pw2\nu3,cy,cy@example.com,pw3\n")),
            ("conf/sync.json", SYNC),
        ],
    );
    // An analysis of the first load: every CREATE lists what it would set, before null.
    let run = s.run("hr_user", "&analyze=true&persistAssociations=true");
    let all = entries(&s, &run, "true");
    let e = entry_of(&all, "u1");
    assert_eq!(e["action"], "CREATE");
    assert_eq!(
        sorted(&e["changes"]),
        sorted(&json!([
            {"attribute": "/userName", "before": null, "after": "ann"},
            {"attribute": "/mail", "before": null, "after": "ann@old.example"},
            {"attribute": "/password", "before": null, "after": "***"},
        ]))
    );
    assert_eq!(
        s.query("/openidm/managed/user", "true")["resultCount"],
        0,
        "an analysis writes nothing"
    );

    assert_eq!(s.run("hr_user", "")["state"], "SUCCESS");
    s.write(
        "data/hr.csv",
        &format!("{HEAD}u1,ann,ann@new.example,pw1\nu2,bob,bob@example.com,changed\n"),
    );
    let run = s.run("hr_user", "&analyze=true&persistAssociations=true");
    let all = entries(&s, &run, "true");
    let e = entry_of(&all, "u1");
    assert_eq!(
        (e["situation"].as_str(), e["action"].as_str()),
        (Some("CONFIRMED"), Some("UPDATE"))
    );
    assert_eq!(
        e["changes"],
        json!([{"attribute": "/mail", "before": "ann@old.example", "after": "ann@new.example"}])
    );
    let e = entry_of(&all, "u2");
    assert_eq!(
        e["changes"],
        json!([{"attribute": "/password", "before": "***", "after": "***"}])
    );
    let gone = all
        .iter()
        .find(|e| e["situation"] == "SOURCE_MISSING")
        .expect("a SOURCE_MISSING entry");
    assert_eq!(gone["action"], "DELETE");
    let changes = gone["changes"].as_array().expect("changes");
    assert!(
        changes.contains(&json!({"attribute": "/mail", "before": "cy@example.com", "after": null})),
        "{changes:?}"
    );
    assert!(
        changes.contains(&json!({"attribute": "/password", "before": "***", "after": null})),
        "{changes:?}"
    );
    assert!(changes
        .iter()
        .all(|c| c["attribute"] != "/_id" && c["attribute"] != "/_rev"));

    // Entries are selectable by changed attribute.
    let mail = entries(&s, &run, "changes/attribute eq \"/mail\"");
    let mut actions: Vec<&str> = mail.iter().filter_map(|e| e["action"].as_str()).collect();
    actions.sort();
    assert_eq!(
        actions,
        vec!["DELETE", "UPDATE"],
        "the update of u1 and the delete of u3: {mail:?}"
    );
    let pw = entries(
        &s,
        &run,
        "changes/attribute eq \"/password\" and action eq \"UPDATE\"",
    );
    assert_eq!(pw.len(), 1);
    assert_eq!(pw[0]["sourceObjectId"], "u2");
}

#[test]
fn a_real_run_records_changes_only_when_asked() {
    let s = Server::start(
        CONFIG,
        &[
            (
                "data/hr.csv",
                &format!("{HEAD}u1,ann,ann@old.example,pw1\n"),
            ),
            ("conf/sync.json", SYNC),
        ],
    );
    let run = s.run("hr_user", "&persistAssociations=true");
    assert!(entry_of(&entries(&s, &run, "true"), "u1")
        .get("changes")
        .is_none());
    assert!(run["parameters"].get("recordChanges").is_none());
    s.write(
        "data/hr.csv",
        &format!("{HEAD}u1,ann,ann@new.example,pw1\n"),
    );
    let run = s.run("hr_user", "&persistAssociations=true&recordChanges=true");
    assert_eq!(run["parameters"]["recordChanges"], true);
    let e = entry_of(&entries(&s, &run, "true"), "u1");
    assert_eq!(
        e["changes"],
        json!([{"attribute": "/mail", "before": "ann@old.example", "after": "ann@new.example"}])
    );
    let user = &s.query("/openidm/managed/user", "userName eq \"ann\"")["result"][0];
    assert_eq!(user["mail"], "ann@new.example", "the real run wrote it");
    // Nothing changed: an UPDATE that changes nothing records an empty list.
    let run = s.run("hr_user", "&persistAssociations=true&recordChanges=true");
    assert_eq!(
        entry_of(&entries(&s, &run, "true"), "u1")["changes"],
        json!([])
    );
}

/// A managed.json target (contract §8): properties declared `encryption` or `secureHash` are
/// masked whatever their name, on both sides — also in the clear values an analysis computes
/// from the source before the managed set would protect them — while ordinary attributes show
/// their exact before and after.
#[test]
fn declared_encrypted_and_hashed_properties_are_masked() {
    const MANAGED: &str = r#"{"objects": [{"name": "user", "schema": {"properties": {
        "userName": {"type": "string"},
        "mail": {"type": "string"},
        "pin": {"type": "string", "encryption": {"purpose": "idm.password.encryption"}},
        "answer": {"type": "string", "secureHash": {"algorithm": "SHA-256"}}
    }}}]}"#;
    const CONFIG: &str = r#"
idm_conf_dir = "conf"

[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"

[[mappings]]
name = "hr_user"
source = "system/hr/account"
target = "managed/user"
properties = [
  { source = "userName", target = "userName" },
  { source = "mail", target = "mail" },
  { source = "pin", target = "pin" },
  { source = "answer", target = "answer" },
]
policies = [
  { situation = "ABSENT", action = "CREATE" },
  { situation = "CONFIRMED", action = "UPDATE" },
  { situation = "SOURCE_MISSING", action = "DELETE" },
]
"#;
    const HEAD: &str = "uid,userName,mail,pin,answer\n";
    // Clear secrets that must never appear in any entry.
    let clear = ["4711", "0815", "bluebird", "redrobin"];
    let s = Server::start(
        CONFIG,
        &[
            ("conf/managed.json", MANAGED),
            (
                "data/hr.csv",
                &format!("{HEAD}u1,ann,ann@old.example,4711,bluebird\n"),
            ),
        ],
    );
    let body_of = |run: &Value| {
        let rid = run["_id"].as_str().expect("id");
        s.get(&format!(
            "/openidm/recon/assoc/{rid}/entry?_queryFilter=true"
        ))
        .body
        .to_string()
    };

    // The first analysis: a CREATE whose declared secrets are masked although the values it
    // would write are the source's clear text.
    let run = s.run("hr_user", "&analyze=true&persistAssociations=true");
    let e = entry_of(&entries(&s, &run, "true"), "u1");
    assert_eq!(e["action"], "CREATE");
    assert_eq!(
        sorted(&e["changes"]),
        sorted(&json!([
            {"attribute": "/userName", "before": null, "after": "ann"},
            {"attribute": "/mail", "before": null, "after": "ann@old.example"},
            {"attribute": "/pin", "before": null, "after": "***"},
            {"attribute": "/answer", "before": null, "after": "***"},
        ]))
    );
    let text = body_of(&run);
    for secret in clear {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    // The real run stores them protected.
    assert_eq!(s.run("hr_user", "")["state"], "SUCCESS");
    let stored = &s.query("/openidm/managed/user", "userName eq \"ann\"")["result"][0];
    assert!(stored["pin"].get("$crypto").is_some(), "{stored}");

    // Changed data: the exact before/after of mail, the secrets masked on both sides.
    s.write(
        "data/hr.csv",
        &format!("{HEAD}u1,ann,ann@new.example,0815,redrobin\n"),
    );
    let run = s.run("hr_user", "&analyze=true&persistAssociations=true");
    let e = entry_of(&entries(&s, &run, "true"), "u1");
    assert_eq!(
        (e["situation"].as_str(), e["action"].as_str()),
        (Some("CONFIRMED"), Some("UPDATE"))
    );
    let changes = sorted(&e["changes"]);
    assert!(
        changes.contains(
            &json!({"attribute": "/mail", "before": "ann@old.example", "after": "ann@new.example"})
        ),
        "{changes:?}"
    );
    for attribute in ["/pin", "/answer"] {
        assert!(
            changes.contains(&json!({"attribute": attribute, "before": "***", "after": "***"})),
            "{attribute} in {changes:?}"
        );
    }
    assert!(changes.iter().all(|c| c["attribute"] != "/userName"));
    let text = body_of(&run);
    for secret in clear {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    // A real run that records its changes masks them the same way.
    let run = s.run("hr_user", "&persistAssociations=true&recordChanges=true");
    let e = entry_of(&entries(&s, &run, "true"), "u1");
    assert!(
        e["changes"].as_array().is_some_and(
            |c| c.contains(&json!({"attribute": "/pin", "before": "***", "after": "***"}))
        ),
        "{e}"
    );
    let text = body_of(&run);
    for secret in clear {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    // And a DELETE lists the protected values masked.
    s.write(
        "data/hr.csv",
        &format!("{HEAD}u2,bob,bob@example.com,1111,green\n"),
    );
    let run = s.run("hr_user", "&analyze=true&persistAssociations=true");
    let all = entries(&s, &run, "true");
    let gone = all
        .iter()
        .find(|e| e["situation"] == "SOURCE_MISSING")
        .unwrap_or_else(|| panic!("a SOURCE_MISSING entry in {all:?} of {run}"));
    let changes = gone["changes"].as_array().expect("changes");
    assert!(
        changes.contains(&json!({"attribute": "/pin", "before": "***", "after": null})),
        "{changes:?}"
    );
    assert!(
        changes
            .contains(&json!({"attribute": "/mail", "before": "ann@new.example", "after": null})),
        "{changes:?}"
    );
}
