//! The LDAP connector against a real slapd (see `slapd`), through the real recond binary and
//! an IDM conf folder holding a provisioner.openicf-ldap.json written for these tests.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::slapd::{people_ldif, Slapd, SUFFIX};

/// The provisioner: accounts and groups under dc=example,dc=com, port from [idm_properties].
pub(crate) const PROVISIONER: &str = r#"{
  "name": "ldap",
  "connectorRef": {
    "bundleName": "org.openidentityplatform.openicf.connectors.ldap-connector",
    "bundleVersion": "[1.4.0.0,2.0.0.0)",
    "connectorName": "org.identityconnectors.ldap.LdapConnector"
  },
  "poolConfigOption": {"maxObjects": 4, "maxIdle": 4},
  "configurationProperties": {
    "host": "127.0.0.1",
    "port": "&{ldap.port}",
    "ssl": false,
    "principal": "cn=admin,dc=example,dc=com",
    "credentials": "&{ldap.password|secret}",
    "baseContexts": ["dc=example,dc=com"],
    "baseContextsToSynchronize": ["dc=example,dc=com"],
    "accountObjectClasses": ["top", "person", "organizationalPerson", "inetOrgPerson"],
    "accountSearchFilter": null,
    "accountUserNameAttributes": ["uid"],
    "groupObjectClasses": ["top", "groupOfUniqueNames"],
    "groupMemberAttribute": "uniqueMember",
    "maintainLdapGroupMembership": true,
    "uidAttribute": "entryUUID",
    "usePagedResultControl": true,
    "pageSize": 2,
    "connectTimeout": 2000,
    "readTimeout": 3000
  },
  "objectTypes": {
    "account": {
      "$schema": "http://json-schema.org/draft-03/schema",
      "id": "__ACCOUNT__",
      "nativeType": "__ACCOUNT__",
      "type": "object",
      "properties": {
        "dn": {"type": "string", "nativeName": "__NAME__", "nativeType": "string", "required": true},
        "uid": {"type": "string", "nativeName": "uid", "nativeType": "string"},
        "cn": {"type": "string", "nativeName": "cn", "nativeType": "string"},
        "sn": {"type": "string", "nativeName": "sn", "nativeType": "string", "required": true},
        "givenName": {"type": "string", "nativeName": "givenName", "nativeType": "string"},
        "mail": {"type": "string", "nativeName": "mail", "nativeType": "string"},
        "description": {"type": "array", "items": {"type": "string"}, "nativeName": "description"},
        "displayName": {"type": "array", "items": {"type": "string"}, "nativeName": "displayName"},
        "photo": {"type": "string", "nativeName": "jpegPhoto", "nativeType": "JAVA_TYPE_BYTE_ARRAY"},
        "userPassword": {"type": "string", "nativeName": "userPassword",
                         "nativeType": "JAVA_TYPE_GUARDEDSTRING",
                         "flags": ["NOT_READABLE", "NOT_RETURNED_BY_DEFAULT"]},
        "ldapGroups": {"type": "array", "items": {"type": "string"}, "nativeName": "ldapGroups"}
      }
    },
    "group": {
      "id": "__GROUP__",
      "nativeType": "__GROUP__",
      "properties": {
        "dn": {"type": "string", "nativeName": "__NAME__", "required": true},
        "cn": {"type": "string", "nativeName": "cn"},
        "uniqueMember": {"type": "array", "items": {"type": "string"}, "nativeName": "uniqueMember"}
      }
    }
  }
}"#;

const POLICIES: &str = r#"[
  {"situation": "CONFIRMED", "action": "UPDATE"},
  {"situation": "FOUND", "action": "UPDATE"},
  {"situation": "ABSENT", "action": "CREATE"},
  {"situation": "AMBIGUOUS", "action": "EXCEPTION"},
  {"situation": "MISSING", "action": "CREATE"},
  {"situation": "SOURCE_MISSING", "action": "DELETE"},
  {"situation": "UNQUALIFIED", "action": "DELETE"},
  {"situation": "UNASSIGNED", "action": "REPORT"},
  {"situation": "LINK_ONLY", "action": "UNLINK"},
  {"situation": "TARGET_IGNORED", "action": "IGNORE"},
  {"situation": "SOURCE_IGNORED", "action": "IGNORE"},
  {"situation": "ALL_GONE", "action": "IGNORE"}
]"#;

/// LDAP accounts → managed users.
pub(crate) fn ldap_to_managed(name: &str) -> String {
    format!(
        r#"{{"name": "{name}", "source": "system/ldap/account", "target": "managed/user",
  "correlationQuery": {{"type": "text/javascript",
    "source": "var q = {{'_queryFilter': 'userName eq \"' + source.uid + '\"'}}; q;"}},
  "properties": [
    {{"source": "uid", "target": "userName"}},
    {{"source": "sn", "target": "sn"}},
    {{"source": "givenName", "target": "givenName"}},
    {{"source": "mail", "target": "mail"}}
  ],
  "policies": {POLICIES}}}"#
    )
}

/// Managed users → LDAP accounts; `extra` adds mapping keys. Implicit synchronization is off
/// (`enableSync: false`): these tests seed managed users over REST and then check what a
/// reconciliation does with them.
pub(crate) fn managed_to_ldap(name: &str, extra: &str) -> String {
    format!(
        r#"{{"name": "{name}", "source": "managed/user", "target": "system/ldap/account",
  "enableSync": false,
  {extra}
  "properties": [
    {{"source": "userName", "target": "dn",
      "transform": {{"type": "text/javascript",
                     "source": "'uid=' + source + ',ou=people,{SUFFIX}'"}}}},
    {{"source": "userName", "target": "uid"}},
    {{"source": "sn", "target": "sn"}},
    {{"source": "givenName", "target": "givenName"}},
    {{"source": "mail", "target": "mail"}},
    {{"source": "displayName", "target": "displayName"}},
    {{"source": "groups", "target": "ldapGroups"}},
    {{"source": "", "target": "cn", "transform": {{"type": "text/javascript",
      "source": "source.givenName + ' ' + source.sn"}}}}
  ],
  "policies": {POLICIES}}}"#
    )
}

/// A recond whose conf folder holds the provisioner and `mappings`, pointed at `ldap`.
pub(crate) fn server(ldap: &Slapd, mappings: &[String]) -> Server {
    server_with(ldap.port, PROVISIONER, mappings, &[])
}

pub(crate) fn server_with(
    port: u16,
    provisioner: &str,
    mappings: &[String],
    env: &[(&str, &str)],
) -> Server {
    let sync = format!(r#"{{"mappings": [{}]}}"#, mappings.join(",\n"));
    Server::start_with_env(
        &format!(
            "idm_conf_dir = \"conf\"\n\n[idm_properties]\n\"ldap.port\" = \"{port}\"\n\n\
             [managed.user]\nindexed = [\"userName\"]\n"
        ),
        &[
            ("conf/provisioner.openicf-ldap.json", provisioner),
            ("conf/sync.json", &sync),
        ],
        env,
    )
}

pub(crate) fn user(s: &Server, id: &str, body: Value) {
    let r = s.put(&format!("/openidm/managed/user/{id}"), &body, &[]);
    assert!(r.status == 200 || r.status == 201, "put {id}: {}", r.body);
}

fn person(i: u32) -> Value {
    json!({"userName": format!("user{i}"), "sn": format!("Family{i}"),
           "givenName": format!("Given{i}"), "mail": format!("user{i}@example.com")})
}

/// dn → entryCSN of every account, to see which entries a run wrote.
fn csns(ldap: &Slapd) -> std::collections::BTreeMap<String, String> {
    let out = ldap.search("(objectClass=inetOrgPerson)", &["entryCSN"]);
    let mut m = std::collections::BTreeMap::new();
    let mut dn = String::new();
    for line in out.lines() {
        if let Some(d) = line.strip_prefix("dn: ") {
            dn = d.to_lowercase();
        } else if let Some(c) = line.strip_prefix("entryCSN: ") {
            m.insert(dn.clone(), c.to_string());
        }
    }
    m
}

/// Starts a run; a run refused at its start (the source cannot be read) is `Err(body)`.
fn try_run(s: &Server, mapping: &str) -> Result<Value, Value> {
    let r = s.post(
        &format!("/openidm/recon?_action=recon&mapping={mapping}&waitForCompletion=true"),
        None,
    );
    if r.status != 200 {
        return Err(r.body);
    }
    Ok(s.wait_run(r.body["_id"].as_str().expect("run id")))
}

/// The failure message of a run that failed, at its start or while running.
fn failure(res: Result<Value, Value>) -> String {
    match res {
        Ok(run) => {
            assert_eq!(run["state"], "FAILED", "{run}");
            run["message"].as_str().unwrap_or_default().to_string()
        }
        Err(body) => body["message"].as_str().unwrap_or_default().to_string(),
    }
}

fn all_revs(s: &Server) -> Vec<(String, String)> {
    let r = s.query("/openidm/managed/user", "true");
    let mut v: Vec<(String, String)> = r["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|o| {
            (
                o["_id"].as_str().unwrap_or_default().to_string(),
                o["_rev"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ldap_source_first_load_steady_run_and_queries() {
    let Some(ldap) = Slapd::start(&people_ldif(5, 1)) else {
        return;
    };
    let s = server(&ldap, &[ldap_to_managed("systemLdapAccounts_managedUser")]);

    // Queries are evaluated by the directory; pageSize 2 makes every scan page.
    let all = s.query("/openidm/system/ldap/account", "true");
    assert_eq!(all["resultCount"], 5, "{all}");
    let one = s.query("/openidm/system/ldap/account", "uid eq \"user3\"");
    assert_eq!(one["resultCount"], 1, "{one}");
    let u3 = &one["result"][0];
    assert_eq!(u3["dn"], format!("uid=user3,ou=people,{SUFFIX}"));
    assert_eq!(u3["sn"], "Family3");
    assert_eq!(u3["ldapGroups"], json!([]));
    assert!(u3.get("userPassword").is_none());
    let id = u3["_id"].as_str().expect("entryUUID").to_string();
    assert_eq!(id.len(), 36, "entryUUID: {id}");
    let r = s.get(&format!("/openidm/system/ldap/account/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["uid"], "user3");
    for (filter, n) in [
        ("sn sw \"Family\" and !(uid eq \"user1\")", 4),
        ("mail co \"user2@\" or givenName eq \"Given5\"", 2),
        // uid has no ordering rule in the schema; entryUUID has one.
        ("_id ge \"00000000-0000-0000-0000-000000000000\"", 5),
        ("_id lt \"00000000-0000-0000-0000-000000000000\"", 0),
        ("_id gt \"ffffffff-ffff-ffff-ffff-ffffffffffff\"", 0),
        ("_id le \"ffffffff-ffff-ffff-ffff-ffffffffffff\"", 5),
        ("uid pr", 5),
        ("false", 0),
        ("uid eq \"a*b)(\"", 0),
        (
            &format!("dn eq \"uid=user4,ou=people,{SUFFIX}\"") as &str,
            1,
        ),
        (
            &format!("dn eq \"uid=nobody,ou=nowhere,{SUFFIX}\"") as &str,
            0,
        ),
    ] {
        let r = s.query("/openidm/system/ldap/account", filter);
        assert_eq!(r["resultCount"], n, "{filter}: {r}");
    }
    let ids = s.get("/openidm/system/ldap/account?_queryId=query-all-ids");
    assert_eq!(ids.status, 200, "{}", ids.body);
    assert_eq!(ids.body["resultCount"], 5);
    assert!(ids.body["result"][0].get("sn").is_none());
    // CREST paging over the directory's order: pages stop the search early, and the
    // connection stays usable for the next page.
    let mut seen = Vec::new();
    let mut cookie = String::new();
    loop {
        let r = s.get(&format!(
            "/openidm/system/ldap/account?_queryFilter=true&_pageSize=2{cookie}"
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        for o in r.body["result"].as_array().expect("page") {
            seen.push(o["uid"].as_str().expect("uid").to_string());
        }
        match r.body["pagedResultsCookie"].as_str() {
            Some(c) => cookie = format!("&_pagedResultsCookie={c}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["user1", "user2", "user3", "user4", "user5"]);
    let sorted = s.get("/openidm/system/ldap/account?_queryFilter=true&_sortKeys=-uid&_pageSize=1");
    assert_eq!(sorted.body["result"][0]["uid"], "user5", "{}", sorted.body);
    let bad = s.get(&format!(
        "/openidm/system/ldap/account?_queryFilter={}",
        enc("nope eq \"x\"")
    ));
    assert_eq!(bad.status, 400, "{}", bad.body);

    let run = s.run("systemLdapAccounts_managedUser", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run), map(&[("ABSENT", 5)]));
    let u = s.query("/openidm/managed/user", "userName eq \"user2\"");
    assert_eq!(u["result"][0]["sn"], "Family2", "{u}");
    assert_eq!(u["result"][0]["mail"], "user2@example.com");
    let before = all_revs(&s);

    let run = s.run("systemLdapAccounts_managedUser", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 5)]), "{run}");
    assert_eq!(run["statusSummary"]["FAILURE"], 0);
    assert_eq!(all_revs(&s), before, "a steady run writes nothing");
}

#[test]
fn managed_to_ldap_creates_updates_renames_and_deletes() {
    let staff = format!(
        "dn: cn=staff,ou=groups,{SUFFIX}\nobjectClass: top\nobjectClass: groupOfUniqueNames\n\
         cn: staff\nuniqueMember: cn=admin,{SUFFIX}\n\n"
    );
    let Some(ldap) = Slapd::start(&staff) else {
        return;
    };
    let s = server(
        &ldap,
        &[managed_to_ldap("managedUser_systemLdapAccounts", "")],
    );
    let staff_dn = format!("cn=staff,ou=groups,{SUFFIX}");
    for i in 1..=3 {
        let mut p = person(i);
        p["groups"] = json!([staff_dn]);
        user(&s, &format!("m{i}"), p);
    }
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run), map(&[("ABSENT", 3)]), "{run}");
    let out = ldap.search("(uid=user2)", &["objectClass", "cn", "sn", "mail"]);
    assert!(
        out.contains(&format!("dn: uid=user2,ou=people,{SUFFIX}")),
        "{out}"
    );
    assert!(out.contains("objectClass: inetOrgPerson"), "{out}");
    assert!(out.contains("cn: Given2 Family2"), "{out}");
    let members = ldap.search("(cn=staff)", &["uniqueMember"]);
    assert_eq!(
        members.matches("uniqueMember: uid=user").count(),
        3,
        "{members}"
    );
    let grp = s.query("/openidm/system/ldap/group", "cn eq \"staff\"");
    assert_eq!(grp["resultCount"], 1, "{grp}");
    assert_eq!(grp["result"][0]["dn"], staff_dn.as_str());
    assert_eq!(
        grp["result"][0]["uniqueMember"].as_array().map(Vec::len),
        Some(4),
        "{grp}"
    );
    let g = s.query("/openidm/system/ldap/account", "uid eq \"user1\"");
    assert_eq!(g["result"][0]["ldapGroups"], json!([staff_dn]), "{g}");

    // Steady: nothing is written to the directory.
    let csn0 = csns(&ldap);
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");
    assert_eq!(csns(&ldap), csn0, "a steady run modifies no entry");

    // Update: only user1 changes, and only the changed attribute: a value set in the
    // directory by someone else survives.
    ldap.tool(
        "ldapmodify",
        &[],
        Some(&format!(
            "dn: uid=user1,ou=people,{SUFFIX}\nchangetype: modify\nadd: telephoneNumber\n\
             telephoneNumber: 555\n"
        )),
    );
    let csn1 = csns(&ldap);
    let mut p = person(1);
    p["sn"] = json!("Changed");
    p["groups"] = json!([staff_dn]);
    user(&s, "m1", p);
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    let out = ldap.search("(uid=user1)", &["sn", "telephoneNumber"]);
    assert!(
        out.contains("sn: Changed") && out.contains("telephoneNumber: 555"),
        "{out}"
    );
    let csn2 = csns(&ldap);
    let u1 = format!("uid=user1,ou=people,{SUFFIX}").to_lowercase();
    for (dn, c) in &csn1 {
        if *dn == u1 {
            assert_ne!(csn2.get(dn), Some(c), "user1 was modified");
        } else {
            assert_eq!(csn2.get(dn), Some(c), "{dn} was not touched");
        }
    }

    // Rename: a new userName is a new dn; the entry keeps its entryUUID and its groups.
    let old = s.query("/openidm/system/ldap/account", "uid eq \"user2\"");
    let uuid = old["result"][0]["_id"].clone();
    let mut p = person(2);
    p["userName"] = json!("renamed2");
    p["groups"] = json!([staff_dn]);
    user(&s, "m2", p);
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    let out = ldap.search("(|(uid=user2)(uid=renamed2))", &["uid", "entryUUID"]);
    assert!(
        out.contains(&format!("dn: uid=renamed2,ou=people,{SUFFIX}")),
        "{out}"
    );
    assert!(!out.contains("dn: uid=user2"), "{out}");
    assert!(out.contains(uuid.as_str().expect("uuid")), "{out}");
    let members = ldap.search("(cn=staff)", &["uniqueMember"]);
    assert!(members.contains("uniqueMember: uid=renamed2,"), "{members}");
    assert!(!members.contains("uniqueMember: uid=user2,"), "{members}");

    // Delete: the entry goes, and so does its membership.
    assert_eq!(s.delete("/openidm/managed/user/m3").status, 200);
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    assert!(counts(&run).contains_key("SOURCE_MISSING"), "{run}");
    let out = ldap.search("(uid=user3)", &["uid"]);
    assert!(out.trim().is_empty(), "{out}");
    let members = ldap.search("(cn=staff)", &["uniqueMember"]);
    assert!(!members.contains("uid=user3,"), "{members}");

    let csn3 = csns(&ldap);
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 2)]), "{run}");
    assert_eq!(csns(&ldap), csn3, "steady after the changes");
}

#[test]
fn correlation_by_uid_finds_existing_entries() {
    let Some(ldap) = Slapd::start_logged(&people_ldif(3, 1)) else {
        return;
    };
    let corr = r#""correlationQuery": {"type": "text/javascript",
        "source": "var q = {'_queryFilter': 'uid eq \"' + source.userName + '\"'}; q;"},"#;
    let s = server(
        &ldap,
        &[managed_to_ldap("managedUser_systemLdapAccounts", corr)],
    );
    for i in 1..=4 {
        user(&s, &format!("m{i}"), person(i));
    }
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run), map(&[("FOUND", 3), ("ABSENT", 1)]), "{run}");
    // Each correlation query went to the directory as an LDAP filter (evaluated on its uid
    // index), not to a copy of the target set in recond's memory.
    let log = ldap.log();
    for i in 1..=4 {
        let asked = log
            .lines()
            .filter(|l| l.contains(" SRCH base=") && l.contains(&format!("(uid=user{i}))\"")))
            .count();
        assert_eq!(asked, 1, "user{i}'s correlation query: {log}");
    }
    let all = s.query("/openidm/system/ldap/account", "true");
    assert_eq!(all["resultCount"], 4, "no duplicate entries: {all}");
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 4)]), "{run}");
}

#[test]
fn a_directory_error_fails_the_entry_not_the_run() {
    let Some(ldap) = Slapd::start("") else {
        return;
    };
    let s = server(
        &ldap,
        &[managed_to_ldap("managedUser_systemLdapAccounts", "")],
    );
    user(&s, "m1", person(1));
    let mut bad = person(2);
    // displayName is SINGLE-VALUE in inetOrgPerson: two values are a constraint violation.
    bad["displayName"] = json!(["One", "Two"]);
    user(&s, "m2", bad);
    user(&s, "m3", person(3));
    run_with_user2_refused(&s, 2);
    let all = s.query("/openidm/system/ldap/account", "true");
    assert_eq!(all["resultCount"], 2, "{all}");
}

#[test]
fn a_stopped_or_frozen_directory_fails_the_run_clearly_and_recovers() {
    let Some(mut ldap) = Slapd::start(&people_ldif(3, 1)) else {
        return;
    };
    let s = server(&ldap, &[ldap_to_managed("systemLdapAccounts_managedUser")]);
    let run = s.run("systemLdapAccounts_managedUser", "");
    assert_eq!(counts(&run), map(&[("ABSENT", 3)]), "{run}");

    // Stopped between two runs: the pooled connections are dead, nothing listens.
    ldap.stop();
    let t = Instant::now();
    let msg = failure(try_run(&s, "systemLdapAccounts_managedUser"));
    assert!(msg.contains(&ldap.url()), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let r = s.get("/openidm/system/ldap/account?_queryFilter=true");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.to_string().contains(&ldap.url()), "{}", r.body);

    // Started again on the same port: recond reconnects.
    ldap.resume();
    let run = s.run("systemLdapAccounts_managedUser", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");

    // Frozen: connections stay open but nothing answers; the read timeout (3 s) ends it.
    ldap.freeze(true);
    let t = Instant::now();
    let msg = failure(try_run(&s, "systemLdapAccounts_managedUser"));
    assert!(
        msg.contains(&ldap.url()) && msg.contains("timeout"),
        "{msg}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    ldap.freeze(false);
    let run = s.run("systemLdapAccounts_managedUser", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");
}

/// The directory stops in the middle of a managed → LDAP run, at a known point (the test
/// hook holds the run after the first entry was written): the remaining entries fail, each
/// naming the directory, the run ends promptly, and the next run after a restart completes.
#[test]
fn a_directory_stopped_mid_run_fails_the_remaining_entries() {
    let Some(mut ldap) = Slapd::start("") else {
        return;
    };
    let hold = TempDir::new("hold");
    let sync = format!(
        r#"{{"mappings": [{}]}}"#,
        managed_to_ldap("managedUser_systemLdapAccounts", "")
    );
    let s = Server::start_with_env(
        &format!(
            "idm_conf_dir = \"conf\"\n\n[recon]\nbatch_size = 1\n\n\
             [idm_properties]\n\"ldap.port\" = \"{}\"\n\n[managed.user]\n",
            ldap.port
        ),
        &[
            ("conf/provisioner.openicf-ldap.json", PROVISIONER),
            ("conf/sync.json", &sync),
        ],
        &[("RECOND_TEST_HOLD_DIR", &hold.0.to_string_lossy())],
    );
    for i in 1..=4 {
        user(&s, &format!("m{i}"), person(i));
    }
    std::fs::write(hold.0.join("gate"), "").expect("gate");
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=managedUser_systemLdapAccounts\
         &persistAssociations=true",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["_id"].as_str().expect("id").to_string();
    crate::helpers::wait_held(&hold.0, Duration::from_secs(60));
    // m1's entry is in the directory; the run waits before recording it. Stop the directory.
    assert!(ldap.search("(uid=user1)", &["uid"]).contains("uid: user1"));
    ldap.stop();
    let t = Instant::now();
    std::fs::remove_file(hold.0.join("gate")).expect("open the gate");
    let run = s.wait_run(&rid);
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(
        run["statusSummary"],
        json!({"SUCCESS": 1, "FAILURE": 3}),
        "{run}"
    );
    let failed = s.query(
        &format!("/openidm/recon/assoc/{rid}/entry"),
        "status eq \"FAILURE\"",
    );
    let failed = failed["result"].as_array().expect("entries");
    assert_eq!(failed.len(), 3, "{failed:?}");
    for e in failed {
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&ldap.url()), "{e}");
    }
    ldap.resume();
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    assert_eq!(
        counts(&run),
        map(&[("CONFIRMED", 1), ("ABSENT", 3)]),
        "the first entry was linked before the outage: {run}"
    );
    let all = s.query("/openidm/system/ldap/account", "true");
    assert_eq!(all["resultCount"], 4, "{all}");
}

#[test]
fn recond_starts_while_the_directory_is_down() {
    let Some(mut ldap) = Slapd::start("") else {
        return;
    };
    ldap.stop();
    let s = server(&ldap, &[ldap_to_managed("systemLdapAccounts_managedUser")]);
    let msg = failure(try_run(&s, "systemLdapAccounts_managedUser"));
    assert!(
        msg.contains("cannot connect") && msg.contains(&ldap.url()),
        "{msg}"
    );
}

#[test]
fn a_bidirectional_pair_with_links_is_steady() {
    let Some(ldap) = Slapd::start(&people_ldif(3, 1)) else {
        return;
    };
    let s = server(
        &ldap,
        &[
            ldap_to_managed("systemLdapAccounts_managedUser"),
            managed_to_ldap(
                "managedUser_systemLdapAccounts",
                r#""links": "systemLdapAccounts_managedUser","#,
            ),
        ],
    );
    let run = s.run("systemLdapAccounts_managedUser", "");
    assert_eq!(counts(&run), map(&[("ABSENT", 3)]), "{run}");
    let csn0 = csns(&ldap);
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");
    // The managed → LDAP direction maps cn from givenName and sn, as the LDIF has it.
    assert_eq!(csns(&ldap), csn0, "the reverse direction writes nothing");
}

/// The provisioner above for `ldap`, resolved, with `uid_attribute` as its `uidAttribute`.
pub(crate) fn provisioner_json(ldap: &Slapd, uid_attribute: &str) -> Value {
    let text = PROVISIONER
        .replace("&{ldap.port}", &ldap.port.to_string())
        .replace("&{ldap.password|secret}", crate::slapd::ROOT_PW)
        .replace(
            "\"uidAttribute\": \"entryUUID\"",
            &format!("\"uidAttribute\": \"{uid_attribute}\""),
        );
    serde_json::from_str(&text).expect("provisioner json")
}

/// The set as the engine sees it, in this process: the provisioner above, for `ldap`.
pub(crate) fn open_accounts(ldap: &Slapd) -> std::sync::Arc<dyn recond::objects::ObjectSet> {
    let json = provisioner_json(ldap, "entryUUID");
    let p = recond::idm::Provisioner::parse(
        std::path::Path::new("provisioner.openicf-ldap.json"),
        json,
        "ldap",
    )
    .expect("provisioner");
    recond::connectors::open_set("system/ldap/account", &std::sync::Arc::new(p), "account")
        .expect("open the set")
}

fn entry(i: u32) -> Value {
    json!({"dn": format!("uid=user{i},ou=people,{SUFFIX}"), "uid": format!("user{i}"),
           "sn": format!("Family{i}"), "cn": format!("Given{i} Family{i}")})
}

#[test]
fn while_the_directory_is_away_each_write_fails_on_its_own_and_promptly() {
    let Some(mut ldap) = Slapd::start("") else {
        return;
    };
    let set = open_accounts(&ldap);
    let first = set.create(None, entry(1)).expect("create user1");
    assert_eq!(first["uid"], "user1");

    // Gone mid-run: every remaining write fails with a message naming the server, quickly.
    ldap.stop();
    for i in 2..=4 {
        let t = Instant::now();
        let e = set
            .create(None, entry(i))
            .expect_err("the directory is down");
        assert!(e.message.contains(&ldap.url()), "{}", e.message);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
    // Back: the next write reconnects.
    ldap.resume();
    set.create(None, entry(5))
        .expect("create user5 after the restart");

    // Frozen: the socket stays open and silent; the operation timeout (3 s) ends each write.
    ldap.freeze(true);
    let t = Instant::now();
    let e = set
        .create(None, entry(6))
        .expect_err("the directory is frozen");
    assert!(e.message.contains("timeout"), "{}", e.message);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    ldap.freeze(false);
    // slapd may still apply the frozen add once thawed; what matters is that recond is usable.
    set.create(None, entry(7))
        .expect("create user7 after the thaw");
    let mut n = 0;
    set.scan(&mut |_| {
        n += 1;
        std::ops::ControlFlow::Continue(())
    })
    .expect("scan");
    assert!((3..=4).contains(&n), "{n}");
}

#[test]
fn set_level_reads_writes_and_errors() {
    let Some(ldap) = Slapd::start("") else {
        return;
    };
    let set = open_accounts(&ldap);
    let created = set
        .create(
            None,
            json!({"dn": format!("uid=a,ou=people,{SUFFIX}"), "uid": "a", "sn": "A", "cn": "A",
                   "description": ["x", "y"], "userPassword": "pw", "photo": "AP8Q/w=="}),
        )
        .expect("create");
    let id = created["_id"].as_str().expect("id").to_string();
    // Multi-valued: an array (the directory does not promise an order).
    let mut d: Vec<&str> = created["description"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    d.sort();
    assert_eq!(d, vec!["x", "y"]);
    assert!(created.get("userPassword").is_none(), "{created}");
    // Binary attributes travel as base64, byte for byte.
    assert_eq!(created["photo"], "AP8Q/w==");
    // (jpegPhoto has no equality rule in the schema, so only presence can be asked.)
    let by_photo = set
        .find(&recond::query::parse("photo pr").expect("filter"))
        .expect("find by presence");
    assert_eq!(by_photo.len(), 1);
    // The password was written (the directory has it) but is never returned.
    let out = ldap.search("(uid=a)", &["userPassword"]);
    assert!(out.contains("userPassword"), "{out}");

    // Duplicate dn: the directory's entryAlreadyExists, as AlreadyExists.
    let e = set
        .create(
            None,
            json!({"dn": format!("uid=a,ou=people,{SUFFIX}"), "sn": "A", "cn": "A"}),
        )
        .expect_err("duplicate");
    assert_eq!(
        e.kind,
        recond::objects::ObjectErrorKind::AlreadyExists,
        "{e}"
    );
    assert!(e.message.contains("entryAlreadyExists"), "{e}");
    // No such parent: noSuchObject, as NotFound, naming the dn.
    let e = set
        .create(
            None,
            json!({"dn": "uid=b,ou=nowhere,dc=example,dc=com", "sn": "B", "cn": "B"}),
        )
        .expect_err("no parent");
    assert!(
        e.message.contains("noSuchObject") && e.message.contains("ou=nowhere"),
        "{e}"
    );
    // A property the model does not declare is refused before any write.
    let e = set
        .create(
            None,
            json!({"dn": format!("uid=c,ou=people,{SUFFIX}"), "nope": 1}),
        )
        .expect_err("unknown property");
    assert!(e.message.contains("'nope'"), "{e}");

    // PUT: null removes, absent keeps, If-Match is checked against the content revision.
    let rev = created["_rev"].as_str().expect("rev");
    let e = set
        .put(&id, json!({"sn": "B"}), Some("not-the-rev"), false)
        .expect_err("stale revision");
    assert_eq!(e.kind, recond::objects::ObjectErrorKind::RevisionMismatch);
    let (updated, was_created) = set
        .put(
            &id,
            json!({"sn": "B", "description": null}),
            Some(rev),
            false,
        )
        .expect("put");
    assert!(!was_created);
    assert_eq!(updated["sn"], "B");
    assert_eq!(updated["cn"], "A");
    assert!(updated.get("description").is_none(), "{updated}");
    // PATCH, then a rename through the dn.
    let patched = set
        .patch(
            &id,
            None,
            &json!([{"operation": "replace", "field": "/dn",
                     "value": format!("uid=z,ou=people,{SUFFIX}")}]),
        )
        .expect("patch");
    assert_eq!(patched["dn"], format!("uid=z,ou=people,{SUFFIX}"));
    assert_eq!(patched["_id"], id.as_str());
    assert_eq!(set.read(&id).expect("read").expect("exists")["uid"], "z");
    set.delete(&id, None).expect("delete");
    assert!(set.read(&id).expect("read").is_none());
    let e = set.delete(&id, None).expect_err("gone");
    assert_eq!(e.kind, recond::objects::ObjectErrorKind::NotFound);
}

#[test]
fn ldaps_and_starttls_verify_the_server_certificate() {
    let Some(ldap) = Slapd::start_tls(&people_ldif(2, 1)) else {
        return;
    };
    let tls_port = ldap.tls_port.expect("an LDAPS port");
    let ca = ldap.ca_file().display().to_string();
    let with = |ssl: bool, start_tls: bool| {
        PROVISIONER.replace(
            "\"ssl\": false",
            &format!("\"ssl\": {ssl}, \"startTLS\": {start_tls}"),
        )
    };
    for (what, prov, port) in [
        ("ldaps", with(true, false), tls_port),
        ("startTLS", with(false, true), ldap.port),
    ] {
        let s = server_with(port, &prov, &[], &[("SSL_CERT_FILE", &ca)]);
        let all = s.query("/openidm/system/ldap/account", "true");
        assert_eq!(all["resultCount"], 2, "{what}: {all}");
        // A server whose certificate is not trusted is refused, with the reason.
        let s = server_with(
            port,
            &prov,
            &[],
            &[("SSL_CERT_FILE", "/nonexistent/ca.pem")],
        );
        let r = s.get("/openidm/system/ldap/account?_queryFilter=true");
        assert_eq!(r.status, 503, "{what}: {}", r.body);
        assert!(
            r.body.to_string().contains("certificate"),
            "{what}: {}",
            r.body
        );
    }
}

/// Runs managedUser_systemLdapAccounts with associations and checks that it succeeded with
/// `ok` entries written and one failed: uid=user2, refused by the directory with a constraint
/// violation (result code 19) named in the entry's message.
pub(crate) fn run_with_user2_refused(s: &Server, ok: u64) {
    let run = s.run(
        "managedUser_systemLdapAccounts",
        "&persistAssociations=true",
    );
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(
        run["statusSummary"],
        json!({"SUCCESS": ok, "FAILURE": 1}),
        "{run}"
    );
    let entries = s.query(
        &format!(
            "/openidm/recon/assoc/{}/entry",
            run["_id"].as_str().expect("id")
        ),
        "status eq \"FAILURE\"",
    );
    let msg = entries["result"][0]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("LDAP error 19 (constraintViolation)") && msg.contains("uid=user2"),
        "{entries}"
    );
}
