//! JavaScript in mappings: every script hook with its variables, file scripts, globals,
//! failures (throw, endless loop, memory), openidm.* from scripts, and an IDM-sample-style
//! mapping with inline JavaScript.

use serde_json::json;

use crate::helpers::*;

const SETS: &str = r#"
[scripts]
time_limit_ms = 300
memory_limit_mb = 16

[managed.user]
indexed = ["userName"]

[system.lab.account]
connector = "store"
"#;

fn put(s: &Server, path: &str, body: serde_json::Value) {
    let r = s.put(path, &body, &[]);
    assert!(r.status == 200 || r.status == 201, "{path}: {}", r.body);
}

#[test]
fn idm_sample_mapping_with_inline_javascript() {
    // In the spirit of IDM's CSV samples: validSource, a _queryFilter correlation query built
    // from the source, a transform over the whole source, and a lower-cased email.
    let sync = json!({"mappings": [
        {
            "name": "csvEmployee_managedUser",
            "source": "system/lab/account",
            "target": "managed/user",
            "validSource": {"type": "text/javascript", "source": "source.email !== undefined && source.email !== null"},
            "correlationQuery": {"type": "text/javascript",
                "source": "var qry = {'_queryFilter': 'userName eq \"' + source.uid + '\"'}; qry;"},
            "properties": [
                {"source": "uid", "target": "userName"},
                {"source": "email", "target": "mail", "transform": {"type": "text/javascript", "source": "source.toLowerCase()"}},
                {"source": "", "target": "displayName", "transform": {"type": "text/javascript", "source": "source.firstName + ' ' + source.lastName"}},
                {"target": "accountStatus", "default": "active"}
            ],
            "policies": [
                {"situation": "CONFIRMED", "action": "UPDATE"},
                {"situation": "FOUND", "action": "UPDATE"},
                {"situation": "ABSENT", "action": "CREATE"},
                {"situation": "SOURCE_IGNORED", "action": "IGNORE"},
                {"situation": "UNQUALIFIED", "action": "UNLINK"}
            ]
        },
        {
            "name": "byUserName",
            "source": "system/lab/account",
            "target": "managed/user",
            "correlationQuery": {"type": "text/javascript", "source": "var q = {'_queryId': 'for-userName', 'uid': source.uid}; q;"},
            "properties": [{"source": "uid", "target": "userName"}],
            "policies": [{"situation": "FOUND", "action": "LINK"}, {"situation": "ABSENT", "action": "IGNORE"}]
        }
    ]});
    let config = format!("mappings_file = \"conf/sync.json\"\n{SETS}");
    let s = Server::start(&config, &[("conf/sync.json", &sync.to_string())]);
    put(
        &s,
        "/openidm/system/lab/account/1",
        json!({"uid": "bjensen", "firstName": "Barbara", "lastName": "Jensen", "email": "BJensen@Example.com"}),
    );
    put(
        &s,
        "/openidm/system/lab/account/2",
        json!({"uid": "scarter", "firstName": "Sam", "lastName": "Carter", "email": "scarter@example.com"}),
    );
    put(
        &s,
        "/openidm/system/lab/account/3",
        json!({"uid": "nomail", "firstName": "No", "lastName": "Mail"}),
    );
    put(
        &s,
        "/openidm/managed/user/existing",
        json!({"userName": "scarter"}),
    );
    let run = s.run("csvEmployee_managedUser", "");
    assert_eq!(
        counts(&run),
        map(&[("ABSENT", 1), ("FOUND", 1), ("SOURCE_IGNORED", 1)]),
        "{run}"
    );
    let users = s.query("/openidm/managed/user", "userName eq \"bjensen\"");
    let b = &users["result"][0];
    assert_eq!(
        (
            b["mail"].as_str(),
            b["displayName"].as_str(),
            b["accountStatus"].as_str()
        ),
        (
            Some("bjensen@example.com"),
            Some("Barbara Jensen"),
            Some("active")
        )
    );
    assert_eq!(
        s.get("/openidm/managed/user/existing").body["displayName"],
        "Sam Carter",
        "FOUND → UPDATE"
    );
    // The _queryId correlation of the second mapping finds both users by userName.
    let run = s.run("byUserName", "");
    assert_eq!(counts(&run), map(&[("FOUND", 2), ("ABSENT", 1)]), "{run}");
}

#[test]
fn every_hook_sees_its_variables() {
    let mapping = r#"
[[mappings]]
name = "hooks"
source = "system/lab/account"
target = "managed/user"
linkQualifiers = { type = "text/javascript", source = "returnAll ? ['default'] : (object.kind === 'x' ? ['default'] : ['default'])" }
validSource = { type = "text/javascript", source = "source.skip !== true" }
validTarget = { type = "text/javascript", source = "target.protected !== true" }
sourceCondition = { type = "text/javascript", source = "linkQualifier === 'default'" }
properties = [
  { source = "name", target = "name", transform = { type = "text/javascript", source = "source + '/' + linkQualifier" } },
  { source = "name", target = "greeting", transform = { type = "text/javascript", source = "prefix + source", globals = { prefix = "hi " } } },
  { source = "name", target = "conditional", condition = { type = "text/javascript", source = "object.name === 'a' && linkQualifier === 'default'" } },
  { source = "name", target = "fromFile", transform = { type = "text/javascript", file = "script/upper.js" } },
]
onCreate = { type = "text/javascript", source = "target.createdBy = 'onCreate:' + situation; target.srcId = source._id;" }
onUpdate = { type = "text/javascript", source = "target.updatedFrom = oldTarget.name;" }
policies = [
  { situation = "ABSENT", action = { type = "text/javascript", source = "sourceAction && recon.actionParam._action === 'performAction' ? 'CREATE' : 'IGNORE'" } },
  { situation = "CONFIRMED", action = "UPDATE", condition = { type = "text/javascript", source = "source.name !== 'frozen'" } },
  { situation = "CONFIRMED", action = "REPORT", postAction = { type = "text/javascript", source = "logger.info('postAction {} {} {}', situation, action, reconId); null;" } },
  { situation = "UNASSIGNED", action = "IGNORE" },
  { situation = "TARGET_IGNORED", action = "IGNORE" },
]
result = { type = "text/javascript", source = "logger.info('result script saw {}', global.mappingName); true;" }
"#;
    let s = Server::start(
        &format!("{SETS}{mapping}"),
        &[("script/upper.js", "source.toUpperCase();\n")],
    );
    put(&s, "/openidm/system/lab/account/s1", json!({"name": "a"}));
    put(&s, "/openidm/system/lab/account/s2", json!({"name": "b"}));
    put(
        &s,
        "/openidm/system/lab/account/s3",
        json!({"name": "z", "skip": true}),
    );
    put(
        &s,
        "/openidm/managed/user/guarded",
        json!({"name": "g", "protected": true}),
    );
    let run = s.run("hooks", "");
    assert_eq!(
        counts(&run),
        map(&[("ABSENT", 2), ("SOURCE_IGNORED", 1), ("TARGET_IGNORED", 1)]),
        "{run}"
    );
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    let link = s.query("/openidm/repo/link", "firstId eq \"s1\"");
    let t = s
        .get(&format!(
            "/openidm/managed/user/{}",
            link["result"][0]["secondId"].as_str().expect("linked")
        ))
        .body;
    assert_eq!(t["name"], "a/default");
    assert_eq!(t["greeting"], "hi a");
    assert_eq!(t["conditional"], "a");
    assert_eq!(t["fromFile"], "A");
    assert_eq!(t["createdBy"], "onCreate:ABSENT");
    assert_eq!(t["srcId"], "s1");
    let link2 = s.query("/openidm/repo/link", "firstId eq \"s2\"");
    let t2 = s
        .get(&format!(
            "/openidm/managed/user/{}",
            link2["result"][0]["secondId"].as_str().expect("linked")
        ))
        .body;
    assert!(
        t2.get("conditional").is_none(),
        "a false property condition skips the property"
    );
    put(&s, "/openidm/system/lab/account/s1", json!({"name": "a2"}));
    put(
        &s,
        "/openidm/system/lab/account/s2",
        json!({"name": "frozen"}),
    );
    let run = s.run("hooks", "");
    assert_eq!(counts(&run)["CONFIRMED"], 2, "{run}");
    let t = s
        .get(&format!(
            "/openidm/managed/user/{}",
            link["result"][0]["secondId"].as_str().expect("linked")
        ))
        .body;
    assert_eq!(
        (t["name"].as_str(), t["updatedFrom"].as_str()),
        (Some("a2/default"), Some("a/default")),
        "onUpdate changes are kept"
    );
    assert!(
        s.log().contains("postAction CONFIRMED REPORT"),
        "postAction ran:\n{}",
        s.log()
    );
    assert!(
        s.log().contains("result script saw hooks"),
        "result script ran"
    );
}

#[test]
fn failing_scripts_fail_their_entry_not_the_run() {
    let mapping = r#"
[[mappings]]
name = "bad"
source = "system/lab/account"
target = "managed/user"
validSource = { type = "text/javascript", source = "if (source.mode === 'nonbool') { 'yes' } else { true }" }
properties = [
  { source = "mode", target = "a", transform = { type = "text/javascript", source = "if (source === 'throw') { throw new Error('boom ' + source); } source;" } },
  { source = "mode", target = "b", transform = { type = "text/javascript", source = "if (source === 'loop') { while (true) {} } source;" } },
  { source = "mode", target = "c", transform = { type = "text/javascript", source = "if (source === 'hog') { var a = []; while (true) { a.push('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' + a.length); } } source;" } },
]
"#;
    // A small heap and a longer time limit, so the hog reaches the heap limit long before the
    // time limit even on a loaded machine (the loop still meets the time limit).
    let sets = SETS
        .replace("time_limit_ms = 300", "time_limit_ms = 2000")
        .replace("memory_limit_mb = 16", "memory_limit_mb = 8");
    let s = Server::start(&format!("{sets}{mapping}"), &[]);
    for (id, mode) in [
        ("ok1", "fine"),
        ("t", "throw"),
        ("l", "loop"),
        ("h", "hog"),
        ("n", "nonbool"),
        ("ok2", "also fine"),
    ] {
        put(
            &s,
            &format!("/openidm/system/lab/account/{id}"),
            json!({"mode": mode}),
        );
    }
    let run = s.run("bad", "&persistAssociations=true");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(
        run["statusSummary"],
        json!({"SUCCESS": 2, "FAILURE": 4}),
        "{run}"
    );
    let rid = run["_id"].as_str().expect("id");
    let msg = |id: &str| {
        let e = s.query(
            &format!("/openidm/recon/assoc/{rid}/entry"),
            &format!("sourceObjectId eq \"{id}\""),
        );
        e["result"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(msg("t").contains("boom throw"), "{}", msg("t"));
    assert!(msg("l").contains("time limit"), "{}", msg("l"));
    assert!(msg("h").contains("memory"), "{}", msg("h"));
    assert!(
        msg("n").contains("Expecting boolean value from validSource"),
        "{}",
        msg("n")
    );
    assert_eq!(s.get("/openidm/info/ping").status, 200);
}

#[test]
fn correlation_script_can_call_openidm_query() {
    let mapping = r#"
[[mappings]]
name = "q"
source = "system/lab/account"
target = "managed/user"
correlationScript = { type = "text/javascript", source = "var r = openidm.query('managed/user', {'_queryFilter': 'userName eq \"' + source.login + '\"'}); r.result;" }
properties = [ { source = "login", target = "userName" } ]
policies = [ { situation = "FOUND", action = "LINK" } ]
"#;
    let s = Server::start(&format!("{SETS}{mapping}"), &[]);
    put(&s, "/openidm/system/lab/account/a", json!({"login": "ann"}));
    put(&s, "/openidm/managed/user/m1", json!({"userName": "ANN"}));
    let run = s.run("q", "");
    assert_eq!(counts(&run), map(&[("FOUND", 1)]), "{run}");
    assert_eq!(
        s.query("/openidm/repo/link", "firstId eq \"a\"")["result"][0]["secondId"],
        "m1"
    );
}

#[test]
fn script_compile_errors_are_startup_errors_with_line_and_column() {
    let dir = TempDir::new("jsbad");
    let text = format!(
        "{SETS}\n{USERS}\n[[mappings]]\nname = \"m\"\nsource = \"system/lab/account\"\ntarget = \"managed/user\"\nvalidSource = {{ type = \"text/javascript\", source = \"var x = ;\" }}\n"
    );
    std::fs::write(dir.0.join("recon.toml"), text).expect("config");
    let (code, out) = run_binary(
        &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
        &dir.0,
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("validSource") && out.contains("line 1"),
        "{out}"
    );
}
