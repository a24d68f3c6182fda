//! Hostile clients and poisoned data, through the real binary: nesting depth on every way in,
//! password-guessing that cannot exhaust the server, slow bodies, curl-style URLs, error bodies
//! that leak nothing, and mistakes caught before a run exists.

use serde_json::{json, Value};

use crate::helpers::*;

const SETS: &str = r#"
[managed.user]
indexed = ["userName"]
"#;

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |v, _| json!({ "n": v }))
}

#[test]
fn nothing_nested_too_deep_gets_in() {
    let s = Server::start(SETS, &[]);
    let r = s.put("/openidm/managed/user/u1", &json!({"userName": "a"}), &[]);
    assert_eq!(r.status, 201, "{}", r.body);

    // A 5,000-segment field path.
    let path = "/x".repeat(5000);
    let patch = json!([{"operation": "add", "field": path, "value": 1}]);
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&patch),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("segments"),
        "{}",
        r.body
    );

    // A deep value: 100 levels parse (under serde_json's 128) but exceed recond's limit.
    let patch = json!([{"operation": "add", "field": "/deep", "value": nested(100)}]);
    let r = s.request(
        "PATCH",
        "/openidm/managed/user/u1",
        Some(&patch),
        &[],
        Auth::Admin,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("deeper"),
        "{}",
        r.body
    );

    // A deep body on PUT and on create.
    let r = s.put(
        "/openidm/managed/user/u2",
        &json!({"deep": nested(100)}),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"deep": nested(100)})),
    );
    assert_eq!(r.status, 400, "{}", r.body);

    // Many patches, each fine, together too deep.
    let mut field = String::new();
    for _ in 0..70 {
        field.push_str("/p");
        let patch = json!([{"operation": "add", "field": field, "value": {}}]);
        let r = s.request(
            "PATCH",
            "/openidm/managed/user/u1",
            Some(&patch),
            &[],
            Auth::Admin,
        );
        if r.status != 200 {
            assert_eq!(r.status, 400, "{}", r.body);
            break;
        }
    }
    // Everything stored stays readable, alone and in a query.
    let r = s.get("/openidm/managed/user/u1");
    assert_eq!(r.status, 200, "{}", r.body);
    let q = s.query("/openidm/managed/user", "true");
    assert_eq!(q["resultCount"], 1, "{q}");
    let r = s.delete("/openidm/managed/user/u1");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A cheap argon2id hash (8 KiB, one pass) so the debug build verifies it quickly.
fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("params");
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
    a.hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

#[test]
fn password_guessing_is_slowed_but_the_right_password_never_is() {
    let config = format!(
        "{SETS}\n[[users]]\nusername = \"hashed\"\npassword_hash = \"{}\"\n",
        cheap_hash("right-password")
    );
    let s = Server::start(&config, &[]);
    let get = |pw: &'static str| {
        let t = std::time::Instant::now();
        let r = s.request(
            "GET",
            "/openidm/managed/user?_queryFilter=true",
            None,
            &[],
            Auth::Headers("hashed", pw),
        );
        (r.status, t.elapsed(), r.body)
    };
    assert_eq!(get("right-password").0, 200);
    let mut last = std::time::Duration::ZERO;
    for _ in 0..8 {
        let (status, took, body) = get("wrong-password");
        assert_eq!(status, 401);
        assert_eq!(body["message"], "Access Denied");
        last = took;
    }
    assert!(
        last >= std::time::Duration::from_millis(900),
        "the 8th failure in a minute is held back (took {last:?})"
    );
    let (status, took, _) = get("right-password");
    assert_eq!(status, 200);
    assert!(
        took < std::time::Duration::from_millis(500),
        "a correct credential is never delayed (took {took:?})"
    );
    let log = s.log();
    assert!(log.contains("failed login"), "{log}");
    assert!(!log.contains("wrong-password"), "no secret in the log");
}

fn read_all(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_and_oversized_bodies_and_too_many_connections() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let config = format!(
        "[server]\nbody_read_timeout_secs = 1\nmax_connections = 3\nmax_body_bytes = 1000\n{SETS}"
    );
    let s = Server::start(&config, &[]);
    let head = |len: u64| {
        format!(
            "PUT /openidm/managed/user/u1 HTTP/1.1\r\nHost: x\r\nX-OpenIDM-Username: openidm-admin\r\nX-OpenIDM-Password: openidm-admin\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
    };

    // A declared length over the limit: 413 before any of the body is sent.
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.write_all(head(1_000_000_000).as_bytes()).expect("send");
    let answer = read_all(&mut c);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":413"), "{answer}");

    // A body that trickles: 408 once the body timeout passes, and the connection closes.
    let mut c = TcpStream::connect(&s.addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.write_all(head(100).as_bytes()).expect("send");
    c.write_all(b"{\"userName\"").expect("send");
    let t = Instant::now();
    let answer = read_all(&mut c);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // max_connections = 3: with three idle connections open, a fourth waits for a slot.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&s.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = TcpStream::connect(&s.addr).expect("connect (backlog)");
    waiting
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    waiting
        .write_all(b"GET /openidm/info/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let early = read_all(&mut waiting);
    assert!(early.is_empty(), "served beyond the cap: {early}");
    drop(idle);
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let later = read_all(&mut waiting);
    assert!(later.contains("ACTIVE_READY"), "{later}");
}

#[test]
fn urls_as_curl_sends_them() {
    let s = Server::start(SETS, &[]);
    let r = s.put(
        "/openidm/managed/user/bob",
        &json!({"userName": "bob"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // A raw `"` in the query string, as curl passes it from a pasted IDM example.
    let r = s.get("/openidm/managed/user?_queryFilter=userName+eq+\"bob\"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resultCount"], 1, "{}", r.body);
    let r = s.get("/openidm/managed/user?_queryFilter=userName+eq+\"bob\"&_fields=userName,{x}");
    assert_eq!(r.status, 200, "{}", r.body);

    // What cannot be read at all gets a CREST JSON error and Connection: close.
    let r = s.get("/openidm/managed/user?_queryFilter=userName+eq+\"b\x01b\"");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["code"], 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("control character"),
        "{}",
        r.body
    );
    assert_eq!(r.header("connection"), Some("close"));
    let long = format!("/openidm/info/ping?x={}", "a".repeat(70 * 1024));
    let r = s.get(&long);
    assert_eq!(r.status, 414, "{}", r.body);
    assert_eq!(r.body["code"], 414);

    // Malformed percent-escapes are a 400, not a control character.
    let r = s.get("/openidm/managed/user?_queryFilter=userName+eq+%+1");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("Malformed"),
        "{}",
        r.body
    );
}

#[test]
fn lenient_inputs_are_refused() {
    let s = Server::start(SETS, &[]);
    // An unknown filter operator is a 400, not an empty result.
    let r = s.get("/openidm/managed/user?_queryFilter=userName+foo+%22x%22");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown operator"),
        "{}",
        r.body
    );
    let r = s.get("/openidm/managed/user?_queryFilter=true&_pagedResultsOffset=-5");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"_id": 7, "a": 1})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post(
        "/openidm/managed/user?_action=create",
        Some(&json!({"_id": "u7", "a": 1})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["_id"], "u7");
}

#[test]
fn a_run_body_naming_no_object_set_is_refused_before_the_run_exists() {
    let config = format!(
        "{SETS}\n[managed.other]\n[[mappings]]\nname = \"m\"\nsource = \"managed/other\"\ntarget = \"managed/user\"\n"
    );
    let s = Server::start(&config, &[]);
    let r = s.post(
        "/openidm/recon?_action=recon&mapping=m",
        Some(&json!({"sourceQuery": {"resourceName": "system/nope/account", "_queryFilter": "true"}})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("system/nope/account"),
        "{}",
        r.body
    );
    let runs = s.get("/openidm/recon");
    assert_eq!(runs.body["reconciliations"], json!([]), "{}", runs.body);
}
