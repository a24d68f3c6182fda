//! The managed object model of an IDM project (managed.json): defaults, `required`,
//! `returnByDefault` and `_fields`, revisions, `encryption` / `secureHash`, the type's script
//! hooks, relationships and their endpoints, roles and assignments — through REST and
//! through reconciliation into a managed set.

use serde_json::{json, Value};

use crate::helpers::*;

/// A look-alike managed.json, typed for these tests.
const MANAGED: &str = r#"{
  "objects": [
    {
      "name": "user",
      "schema": {
        "required": ["userName"],
        "properties": {
          "userName": {"type": "string", "searchable": true},
          "accountStatus": {"type": "string", "default": "active"},
          "password": {"type": "string", "encryption": {"purpose": "idm.password.encryption"},
                       "returnByDefault": false},
          "securityAnswer": {"type": "string", "secureHash": {"algorithm": "SHA-256"}},
          "note": {"type": "string", "returnByDefault": false},
          "pin": {"type": "string", "scope": "private", "encryption": {"key": "k"}},
          "manager": {"type": "relationship", "reversePropertyName": "reports",
                      "resourceCollection": [{"path": "managed/user"}]},
          "reports": {"type": "array", "items": {"type": "relationship",
                      "reversePropertyName": "manager",
                      "resourceCollection": [{"path": "managed/user"}]}},
          "roles": {"type": "array", "returnByDefault": false,
                    "items": {"type": "relationship", "reversePropertyName": "members",
                              "resourceCollection": [{"path": "managed/role"}]}},
          "effectiveRoles": {"type": "array", "isVirtual": true, "returnByDefault": true,
            "onRetrieve": {"type": "text/javascript",
              "source": "require('roles/effectiveRoles').calculateEffectiveRoles(object, 'roles');"}},
          "effectiveAssignments": {"type": "array", "isVirtual": true, "returnByDefault": true,
            "onRetrieve": {"type": "text/javascript", "file": "roles/effectiveAssignments.js",
                           "effectiveRolesPropName": "effectiveRoles"}}
        }
      },
      "onCreate": {"type": "text/javascript", "file": "script/user-create.js"},
      "onUpdate": {"type": "text/javascript",
                   "source": "newObject.updates = (oldObject.updates || 0) + 1;"},
      "onValidate": {"type": "text/javascript",
                     "source": "if (object.userName === 'forbidden') { throw 'userName forbidden is reserved'; } if (object.userName === 'bad') { throw {code: 400, message: 'bad userName'}; }"},
      "onDelete": {"type": "text/javascript",
                   "source": "if (object.locked) { throw 'locked users cannot be deleted'; }"},
      "postCreate": {"type": "text/javascript",
                     "source": "openidm.create('managed/event', null, {what: 'created', who: newObject._id, pinSeen: !!openidm.read('managed/user/' + newObject._id).pin});"},
      "postDelete": {"type": "text/javascript",
                     "source": "openidm.create('managed/event', null, {what: 'deleted', who: oldObject._id, pinKept: !!oldObject.pin});"},
      "onRetrieve": {"type": "text/javascript", "source": "object.seen = true;"}
    },
    {
      "name": "role",
      "onUpdate": {"type": "text/javascript", "source": "object.touched = (oldObject.touched || 0) + 1;"},
      "schema": {
        "properties": {
          "name": {"type": "string"},
          "members": {"type": "array", "items": {"type": "relationship",
                      "reversePropertyName": "roles",
                      "resourceCollection": [{"path": "managed/user"}]}},
          "assignments": {"type": "array", "items": {"type": "relationship",
                          "reversePropertyName": "roles",
                          "resourceCollection": [{"path": "managed/assignment"}]}}
        }
      }
    },
    {
      "name": "assignment",
      "schema": {
        "properties": {
          "name": {"type": "string"},
          "roles": {"type": "array", "items": {"type": "relationship",
                    "reversePropertyName": "assignments",
                    "resourceCollection": [{"path": "managed/role"}]}}
        }
      }
    },
    {"name": "event"}
  ]
}"#;

const ON_CREATE: &str = "// sets the display name as a sample's onCreate would\n\
object.displayName = (object.givenName || '') + ' ' + (object.sn || '');\n";

const CONFIG: &str = r#"
idm_conf_dir = "conf"

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab_user"
source = "system/lab/account"
target = "managed/user"
properties = [
  { source = "userName", target = "userName" },
  { source = "sn", target = "sn" },
  { source = "password", target = "password" },
]
policies = [
  { situation = "ABSENT", action = "CREATE" },
  { situation = "FOUND", action = "UPDATE" },
  { situation = "CONFIRMED", action = "UPDATE" },
]
"#;

fn start() -> Server {
    Server::start(
        CONFIG,
        &[
            ("conf/managed.json", MANAGED),
            ("script/user-create.js", ON_CREATE),
        ],
    )
}

fn create(s: &Server, set: &str, id: &str, body: Value) -> Value {
    let r = s.put(
        &format!("/openidm/{set}/{id}"),
        &body,
        &[("If-None-Match", "*")],
    );
    assert_eq!(r.status, 201, "create {set}/{id}: {}", r.body);
    r.body
}

#[test]
fn defaults_required_hidden_properties_and_revisions() {
    let s = start();
    let u = create(
        &s,
        "managed/user",
        "u1",
        json!({"userName": "alice", "note": "n1"}),
    );
    assert_eq!(u["accountStatus"], json!("active"));
    assert_eq!(u["_rev"], json!("1"));
    assert!(u.get("note").is_none(), "returnByDefault false: {u}");

    // `required`: 400 naming the property; nothing stored.
    let r = s.put("/openidm/managed/user/u2", &json!({"sn": "x"}), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("userName"),
        "{}",
        r.body
    );
    assert_eq!(s.get("/openidm/managed/user/u2").status, 404);

    let r = s.get("/openidm/managed/user/u1");
    assert!(r.body.get("note").is_none());
    assert_eq!(r.body["seen"], json!(true), "onRetrieve: {}", r.body);
    let r = s.get("/openidm/managed/user/u1?_fields=note");
    assert_eq!(r.body["note"], json!("n1"));
    assert!(r.body.get("userName").is_none(), "{}", r.body);
    let r = s.get("/openidm/managed/user/u1?_fields=*,note");
    assert_eq!(
        (r.body["note"].clone(), r.body["userName"].clone()),
        (json!("n1"), json!("alice"))
    );
    let q = s.get("/openidm/managed/user?_queryFilter=true");
    assert!(q.body["result"][0].get("note").is_none(), "{}", q.body);
    let q = s.get("/openidm/managed/user?_queryFilter=true&_fields=note");
    assert_eq!(q.body["result"][0]["note"], json!("n1"));

    // Every change advances `_rev`; an update leaves hidden properties it did not send alone.
    let r = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "alice", "sn": "A"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["_rev"], json!("2"));
    assert_eq!(r.body["updates"], json!(1), "onUpdate: {}", r.body);
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&json!([{"operation": "replace", "field": "sn", "value": "B"}])),
        &[],
        Auth::Admin,
    );
    assert_eq!(
        (r.status, r.body["_rev"].clone()),
        (200, json!("3")),
        "{}",
        r.body
    );
    assert_eq!(
        s.get("/openidm/managed/user/u1?_fields=note").body["note"],
        json!("n1")
    );
    let r = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "alice", "sn": "C"}),
        &[("If-Match", "\"3\"")],
    );
    assert_eq!(r.body["_rev"], json!("4"));
    assert_eq!(
        s.put(
            "/openidm/managed/user/u1",
            &json!({"userName": "a"}),
            &[("If-Match", "\"3\"")]
        )
        .status,
        412
    );
}

#[test]
fn passwords_are_encrypted_and_answers_hashed_never_clear() {
    let s = start();
    let u = create(
        &s,
        "managed/user",
        "u1",
        json!({"userName": "bob", "password": "Clear-Pass-1", "securityAnswer": "Blue-Answer"}),
    );
    assert!(
        u.get("password").is_none(),
        "password is not returned by default: {u}"
    );
    let h = &u["securityAnswer"]["$crypto"];
    assert_eq!(h["type"], json!("salted-hash"), "{u}");
    assert_eq!(h["value"]["algorithm"], json!("SHA-256"));
    assert!(h["value"]["data"].is_string());
    let r = s.get("/openidm/managed/user/u1?_fields=password");
    let c = &r.body["password"]["$crypto"];
    assert_eq!(c["type"], json!("x-simple-encryption"), "{}", r.body);
    for k in ["stableId", "iv", "data", "mac", "purpose"] {
        assert!(c["value"][k].is_string(), "{k}: {}", r.body);
    }
    assert_eq!(c["value"]["cipher"], json!("AES/CBC/PKCS5Padding"));
    assert_eq!(c["value"]["keySize"], json!(16));
    // Sending the stored value back keeps it as it is (no double encryption).
    let mut back = r.body.clone();
    back["userName"] = json!("bob");
    let r2 = s.put("/openidm/managed/user/u1", &back, &[]);
    assert_eq!(r2.status, 200, "{}", r2.body);
    let again = s.get("/openidm/managed/user/u1?_fields=password").body;
    assert_eq!(again["password"], r.body["password"]);

    // Nothing clear in the store's files; the key file is private.
    let mut s = s;
    s.stop();
    let mut clear_found = Vec::new();
    scan_files(&s.path("data"), &mut |p, bytes| {
        for needle in [&b"Clear-Pass-1"[..], &b"Blue-Answer"[..]] {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                clear_found.push(p.display().to_string());
            }
        }
    });
    assert!(clear_found.is_empty(), "clear text in {clear_found:?}");
    let key = s.path("data/db/recond.key");
    assert!(key.is_file(), "key file in the data folder");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

fn scan_files(dir: &std::path::Path, f: &mut dyn FnMut(&std::path::Path, &[u8])) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            scan_files(&p, f);
        } else if let Ok(b) = std::fs::read(&p) {
            f(&p, &b);
        }
    }
}

#[test]
fn the_key_file_named_in_recon_toml_must_exist() {
    let dir = TempDir::new("managed-key");
    std::fs::create_dir_all(dir.0.join("conf")).expect("mkdir");
    std::fs::write(
        dir.0.join("conf/managed.json"),
        r#"{"objects": [{"name": "user"}]}"#,
    )
    .expect("write");
    std::fs::write(
        dir.0.join("recon.toml"),
        format!("idm_conf_dir = \"conf\"\n[crypto]\nkey_file = \"missing.key\"\n{USERS}"),
    )
    .expect("write");
    let (code, out) = run_binary(
        &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
        &dir.0,
    );
    assert_eq!(code, Some(2), "a configuration error: {out}");
    assert!(
        out.contains("missing.key") && out.contains("[crypto]"),
        "{out}"
    );
    assert!(
        !dir.0.join("data").exists(),
        "nothing touched before the check"
    );
    std::fs::write(
        dir.0.join("recon.toml"),
        format!("idm_conf_dir = \"conf\"\n[crypto]\nkey_file = \"k\"\nunknown = 1\n{USERS}"),
    )
    .expect("write");
    let (code, out) = run_binary(
        &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
        &dir.0,
    );
    assert_ne!(code, Some(0));
    assert!(out.contains("unknown"), "{out}");
}

#[test]
fn a_groovy_hook_is_a_startup_error_naming_the_file_and_type() {
    let dir = TempDir::new("managed-groovy");
    std::fs::create_dir_all(dir.0.join("conf")).expect("mkdir");
    std::fs::write(
        dir.0.join("conf/managed.json"),
        r#"{"objects": [{"name": "device",
            "onCreate": {"type": "groovy", "file": "script/onCreateDevice.groovy"}}]}"#,
    )
    .expect("write");
    std::fs::write(
        dir.0.join("recon.toml"),
        format!("idm_conf_dir = \"conf\"\n{USERS}"),
    )
    .expect("write");
    let (code, out) = run_binary(
        &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
        &dir.0,
    );
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("managed.json")
            && out.contains("device")
            && out.contains("onCreateDevice.groovy"),
        "{out}"
    );
}

#[test]
fn hooks_change_refuse_and_follow_writes() {
    let s = start();
    let u = create(
        &s,
        "managed/user",
        "u1",
        json!({"userName": "carol", "givenName": "Carol", "sn": "Smith", "pin": "1234"}),
    );
    // `scope: private`: never to a client, even when asked; scripts see it (pinSeen below).
    assert!(u.get("pin").is_none(), "{u}");
    let one = s.get("/openidm/managed/user/u1?_fields=pin").body;
    assert!(one.get("pin").is_none(), "{one}");
    let q = s
        .get("/openidm/managed/user?_queryFilter=true&_fields=pin")
        .body;
    assert!(q["result"][0].get("pin").is_none(), "{q}");
    assert_eq!(
        u["displayName"],
        json!("Carol Smith"),
        "onCreate from a file: {u}"
    );
    let r = s.put(
        "/openidm/managed/user/u9",
        &json!({"userName": "forbidden"}),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("userName forbidden is reserved"),
        "{}",
        r.body
    );
    assert_eq!(
        s.get("/openidm/managed/user/u9").status,
        404,
        "a refused create stores nothing"
    );

    let r = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "carol", "locked": true}),
        &[],
    );
    assert_eq!(r.status, 200);
    let r = s.delete("/openidm/managed/user/u1");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(s.get("/openidm/managed/user/u1").status, 200);
    s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "carol"}),
        &[],
    );
    assert_eq!(s.delete("/openidm/managed/user/u1").status, 200);

    // An onUpdate written against `object` (IDM binds the new object under both names).
    create(&s, "managed/role", "r1", json!({"name": "r"}));
    let r = s.put("/openidm/managed/role/r1", &json!({"name": "r2"}), &[]);
    assert_eq!(
        (r.body["touched"].clone(), r.body["name"].clone()),
        (json!(1), json!("r2")),
        "{}",
        r.body
    );

    let events = s.query("/openidm/managed/event", "true");
    let mut seen: Vec<(String, String)> = events["result"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["what"].as_str().unwrap_or("").into(),
                e["who"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("created".into(), "u1".into()),
            ("deleted".into(), "u1".into())
        ]
    );
    let created = s.query("/openidm/managed/event", "what eq \"created\"");
    assert_eq!(created["result"][0]["pinSeen"], json!(true), "{created}");
    let deleted = s.query("/openidm/managed/event", "what eq \"deleted\"");
    assert_eq!(
        deleted["result"][0]["pinKept"],
        json!(true),
        "updates without it keep a private property: {deleted}"
    );
}

#[test]
fn reconciliation_into_a_managed_set_applies_the_schema_and_advances_revisions() {
    let s = start();
    let put_src = |id: &str, body: Value| {
        let r = s.put(&format!("/openidm/system/lab/account/{id}"), &body, &[]);
        assert!(r.status == 201 || r.status == 200, "{}", r.body);
    };
    put_src(
        "a1",
        json!({"userName": "dave", "sn": "One", "password": "Recon-Pass-9"}),
    );
    let run = s.run("lab_user", "");
    assert_eq!(run["state"], json!("SUCCESS"), "{run}");
    let users = s.query("/openidm/managed/user", "userName eq \"dave\"");
    let u = &users["result"][0];
    assert_eq!(
        u["accountStatus"],
        json!("active"),
        "defaults on a recon create: {users}"
    );
    assert_eq!(u["displayName"], json!(" One"), "onCreate ran: {u}");
    assert_eq!(u["_rev"], json!("1"));
    let id = u["_id"].as_str().expect("id").to_string();
    let full = s
        .get(&format!("/openidm/managed/user/{id}?_fields=password"))
        .body;
    assert_eq!(
        full["password"]["$crypto"]["type"],
        json!("x-simple-encryption"),
        "{full}"
    );

    for (n, sn) in ["Two", "Three"].iter().enumerate() {
        put_src(
            "a1",
            json!({"userName": "dave", "sn": sn, "password": "Recon-Pass-9"}),
        );
        let run = s.run("lab_user", "");
        assert_eq!(run["state"], json!("SUCCESS"), "{run}");
        let u = s.get(&format!("/openidm/managed/user/{id}")).body;
        assert_eq!(u["sn"], json!(sn));
        assert_eq!(
            u["_rev"],
            json!((n + 2).to_string()),
            "revision after update {n}: {u}"
        );
    }
}

fn rel_refs(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["_ref"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn relationships_keep_both_sides_and_have_endpoints() {
    let s = start();
    create(&s, "managed/role", "r1", json!({"name": "staff"}));
    create(&s, "managed/role", "r2", json!({"name": "admins"}));
    create(&s, "managed/user", "boss", json!({"userName": "boss"}));
    let u = create(
        &s,
        "managed/user",
        "u1",
        json!({"userName": "erin", "roles": [{"_ref": "managed/role/r1"}],
               "manager": {"_ref": "managed/user/boss"}}),
    );
    assert!(
        u.get("roles").is_none(),
        "relationships are not returned by default: {u}"
    );
    let roles = s.get("/openidm/managed/user/u1?_fields=roles").body;
    assert_eq!(rel_refs(&roles["roles"]), vec!["managed/role/r1"]);
    assert!(roles["roles"][0]["_refProperties"]["_id"].is_string());
    assert_eq!(roles["roles"][0]["_refResourceId"], json!("r1"));
    let r1 = s.get("/openidm/managed/role/r1?_fields=members").body;
    assert_eq!(
        rel_refs(&r1["members"]),
        vec!["managed/user/u1"],
        "reverse side: {r1}"
    );
    let boss = s.get("/openidm/managed/user/boss?_fields=reports").body;
    assert_eq!(rel_refs(&boss["reports"]), vec!["managed/user/u1"]);

    // The endpoint: query, create, read, delete one.
    let q = s.get("/openidm/managed/user/u1/roles?_queryFilter=true");
    assert_eq!(q.status, 200, "{}", q.body);
    assert_eq!(q.body["resultCount"], json!(1));
    let c = s.post(
        "/openidm/managed/user/u1/roles?_action=create",
        Some(&json!({"_ref": "managed/role/r2", "_refProperties": {"since": "2024"}})),
    );
    assert_eq!(c.status, 201, "{}", c.body);
    let rid = c.body["_id"].as_str().expect("relationship id").to_string();
    assert_eq!(c.body["_refProperties"]["since"], json!("2024"));
    let one = s.get(&format!("/openidm/managed/user/u1/roles/{rid}"));
    assert_eq!(
        (one.status, one.body["_ref"].clone()),
        (200, json!("managed/role/r2"))
    );
    let r2 = s.get("/openidm/managed/role/r2?_fields=members").body;
    assert_eq!(rel_refs(&r2["members"]), vec!["managed/user/u1"]);
    let d = s.delete(&format!("/openidm/managed/user/u1/roles/{rid}"));
    assert_eq!(d.status, 200, "{}", d.body);
    let r2 = s.get("/openidm/managed/role/r2?_fields=members").body;
    assert_eq!(rel_refs(&r2["members"]), Vec::<String>::new(), "{r2}");
    assert_eq!(
        s.get(&format!("/openidm/managed/user/u1/roles/{rid}"))
            .status,
        404
    );
    assert_eq!(
        s.get("/openidm/managed/user/u1/nosuch?_queryFilter=true")
            .status,
        404
    );

    // Writing the other side updates the user; bad references are refused.
    let r = s.put(
        "/openidm/managed/role/r2",
        &json!({"name": "admins", "members": [{"_ref": "managed/user/u1"}]}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let roles = s.get("/openidm/managed/user/u1?_fields=roles").body;
    assert_eq!(
        rel_refs(&roles["roles"]),
        vec!["managed/role/r1", "managed/role/r2"]
    );
    let bad = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "erin", "roles": [{"_ref": "managed/role/nope"}]}),
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let bad = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "erin", "roles": [{"_ref": "managed/user/boss"}]}),
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);

    // Deleting the user removes it from the other sides.
    assert_eq!(s.delete("/openidm/managed/user/u1").status, 200);
    let r1 = s.get("/openidm/managed/role/r1?_fields=members").body;
    assert_eq!(rel_refs(&r1["members"]), Vec::<String>::new());
    let boss = s.get("/openidm/managed/user/boss?_fields=reports").body;
    assert_eq!(rel_refs(&boss["reports"]), Vec::<String>::new());
}

#[test]
fn effective_roles_and_assignments() {
    let s = start();
    create(
        &s,
        "managed/assignment",
        "a1",
        json!({"name": "ldap-staff", "mapping": "managedUser_ldap",
        "attributes": [{"name": "groups", "value": ["cn=staff"], "assignmentOperation": "mergeWithTarget"}]}),
    );
    create(
        &s,
        "managed/assignment",
        "a2",
        json!({"name": "ldap-admin"}),
    );
    create(
        &s,
        "managed/role",
        "r1",
        json!({"name": "staff", "assignments": [{"_ref": "managed/assignment/a1"}]}),
    );
    create(&s, "managed/role", "r2", json!({"name": "admins"}));
    // The assignment's reverse side was kept too.
    let a1 = s.get("/openidm/managed/assignment/a1?_fields=roles").body;
    assert_eq!(rel_refs(&a1["roles"]), vec!["managed/role/r1"]);
    // Granting r2 its assignment through the assignment's side.
    s.put(
        "/openidm/managed/assignment/a2",
        &json!({"name": "ldap-admin", "roles": [{"_ref": "managed/role/r2"}]}),
        &[],
    );

    create(
        &s,
        "managed/user",
        "u1",
        json!({"userName": "frank", "roles": [{"_ref": "managed/role/r1"}, {"_ref": "managed/role/r2"}]}),
    );
    let u = s.get("/openidm/managed/user/u1").body;
    assert_eq!(
        rel_refs(&u["effectiveRoles"]),
        vec!["managed/role/r1", "managed/role/r2"],
        "{u}"
    );
    let names: Vec<&str> = u["effectiveAssignments"]
        .as_array()
        .expect("assignments")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, vec!["ldap-staff", "ldap-admin"], "{u}");
    assert_eq!(
        u["effectiveAssignments"][0]["attributes"][0]["value"],
        json!(["cn=staff"])
    );

    // Taking a role away changes what is effective at the next read.
    let q = s
        .get("/openidm/managed/user/u1/roles?_queryFilter=true")
        .body;
    let r2rel = q["result"]
        .as_array()
        .expect("rels")
        .iter()
        .find(|i| i["_ref"] == json!("managed/role/r2"))
        .and_then(|i| i["_id"].as_str())
        .expect("r2 relationship")
        .to_string();
    assert_eq!(
        s.delete(&format!("/openidm/managed/user/u1/roles/{r2rel}"))
            .status,
        200
    );
    let u = s.get("/openidm/managed/user/u1").body;
    assert_eq!(rel_refs(&u["effectiveRoles"]), vec!["managed/role/r1"]);
    assert_eq!(u["effectiveAssignments"].as_array().map(Vec::len), Some(1));
}

#[test]
fn revisions_advance_on_recon_updates_of_a_plain_store_set() {
    let s = Server::start(
        r#"
[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"

[[mappings]]
name = "lab_user"
source = "system/lab/account"
target = "managed/user"
properties = [
  { source = "userName", target = "userName" },
  { source = "sn", target = "sn" },
]
policies = [
  { situation = "ABSENT", action = "CREATE" },
  { situation = "FOUND", action = "UPDATE" },
  { situation = "CONFIRMED", action = "UPDATE" },
]
"#,
        &[],
    );
    for (n, sn) in ["One", "Two", "Three"].iter().enumerate() {
        let r = s.put(
            "/openidm/system/lab/account/a1",
            &json!({"userName": "gina", "sn": sn}),
            &[],
        );
        assert!(r.status == 200 || r.status == 201, "{}", r.body);
        assert_eq!(s.run("lab_user", "")["state"], json!("SUCCESS"));
        let users = s.query("/openidm/managed/user", "userName eq \"gina\"");
        assert_eq!(
            users["result"][0]["_rev"],
            json!((n + 1).to_string()),
            "{users}"
        );
    }
}

#[test]
fn a_stock_managed_json_runs_with_recond_s_own_bundled_scripts() {
    let managed = r#"{"objects": [
      {"name": "user",
       "onCreate": {"type": "text/javascript", "source": "require('onCreateUser').setDefaultFields(object);"},
       "onUpdate": {"type": "text/javascript", "source": "require('onUpdateUser').preserveLastSync(object, oldObject, request);"},
       "onDelete": {"type": "text/javascript", "file": "ui/onDelete-user-cleanup.js"},
       "onSync": {"type": "text/javascript", "source": "require('roles/onSync-roles').syncUsersOfRoles(resourceName, oldObject, newObject, ['members']);"},
       "schema": {"properties": {
         "userName": {"type": "string"},
         "roles": {"type": "array", "items": {"type": "relationship", "reversePropertyName": "members",
                   "resourceCollection": [{"path": "managed/role"}]}}}}},
      {"name": "role",
       "onDelete": {"type": "text/javascript", "file": "roles/onDelete-roles.js"},
       "postCreate": {"type": "text/javascript", "file": "roles/postOperation-roles.js"},
       "schema": {"properties": {
         "members": {"type": "array", "items": {"type": "relationship", "reversePropertyName": "roles",
                     "resourceCollection": [{"path": "managed/user"}]}}}}}
    ]}"#;
    let s = Server::start(
        "idm_conf_dir = \"conf\"\n",
        &[("conf/managed.json", managed)],
    );
    create(&s, "managed/role", "r1", json!({"name": "r1"}));
    let u = create(
        &s,
        "managed/user",
        "u1",
        json!({"userName": "hal", "roles": [{"_ref": "managed/role/r1"}]}),
    );
    assert_eq!(u["accountStatus"], json!("active"), "{u}");
    let r = s.delete("/openidm/managed/role/r1");
    assert_eq!(
        r.status, 403,
        "a granted role cannot be deleted: {}",
        r.body
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("currently granted"),
        "{}",
        r.body
    );
    assert_eq!(s.delete("/openidm/managed/user/u1").status, 200);
    assert_eq!(s.delete("/openidm/managed/role/r1").status, 200);
}

#[test]
fn concurrent_updates_without_if_match_lose_nothing() {
    let s = start();
    create(
        &s,
        "managed/user",
        "u1",
        json!({"userName": "ivy", "tags": []}),
    );
    std::thread::scope(|scope| {
        for t in 0..6 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..5 {
                    let r = s.request(
                        "PATCH",
                        "/openidm/managed/user/u1",
                        Some(&json!([{"operation": "add", "field": "/tags/-", "value": format!("{t}-{i}")}])),
                        &[],
                        Auth::Admin,
                    );
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            });
        }
    });
    let u = s.get("/openidm/managed/user/u1").body;
    assert_eq!(u["tags"].as_array().map(Vec::len), Some(30), "{u}");
    assert_eq!(u["_rev"], json!("31"));
    assert_eq!(
        u["updates"],
        json!(30),
        "onUpdate ran once per stored update"
    );
}

#[test]
fn concurrent_grants_of_one_role_keep_every_reverse_reference() {
    let s = start();
    create(&s, "managed/role", "r1", json!({"name": "everyone"}));
    std::thread::scope(|scope| {
        for t in 0..6 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..5 {
                    let id = format!("u{t}-{i}");
                    let body = json!({"userName": id, "roles": [{"_ref": "managed/role/r1"}]});
                    create(s, "managed/user", &id, body);
                }
            });
        }
    });
    let r1 = s.get("/openidm/managed/role/r1?_fields=members").body;
    assert_eq!(r1["members"].as_array().map(Vec::len), Some(30), "{r1}");
}
