//! The foundation: authentication, CREST errors, limits, bad input, config errors, shutdown.

use serde_json::json;

use crate::helpers::*;

const MINIMAL: &str = "[managed.user]\nindexed = [\"userName\"]\n";

#[test]
fn ping_needs_no_credentials_and_everything_else_does() {
    let s = Server::start(MINIMAL, &[]);
    let r = s.request("GET", "/openidm/info/ping", None, &[], Auth::None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"_id": "", "state": "ACTIVE_READY", "shortDesc": "OpenIDM ready"})
    );
    let r = s.request("GET", "/openidm/recon", None, &[], Auth::None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.body,
        json!({"code": 401, "reason": "Unauthorized", "message": "Access Denied"})
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Headers("openidm-admin", "nope")
        )
        .status,
        401
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Headers("nobody", "openidm-admin")
        )
        .status,
        401
    );
    assert_eq!(s.get("/openidm/recon").status, 200);
    // Basic: openidm-admin:openidm-admin
    let basic = "Authorization: Basic b3BlbmlkbS1hZG1pbjpvcGVuaWRtLWFkbWlu";
    assert_eq!(
        s.request("GET", "/openidm/recon", None, &[], Auth::Raw(basic))
            .status,
        200
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Raw("Authorization: Basic Zm9vOmJhcg==")
        )
        .status,
        401
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Raw("Authorization: Bearer test-token-0123456789")
        )
        .status,
        200
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Raw("Authorization: Bearer wrong-token")
        )
        .status,
        401
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Raw("Authorization: Digest x")
        )
        .status,
        401
    );
}

#[test]
fn password_hashes_in_phc_format() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"recond-test-salt").expect("salt");
    let hash = argon2::Argon2::default()
        .hash_password(b"s3cret-pw", &salt)
        .expect("hash")
        .to_string();
    let config = format!("{MINIMAL}\n[[users]]\nusername = \"ops\"\npassword_hash = \"{hash}\"\n");
    let s = Server::start(&config, &[]);
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Headers("ops", "s3cret-pw")
        )
        .status,
        200
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[],
            Auth::Headers("ops", "s3cret")
        )
        .status,
        401
    );
}

fn assert_crest(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["code"], status, "{}", r.body);
    assert!(
        r.body["reason"].is_string() && r.body["message"].is_string(),
        "{}",
        r.body
    );
}

#[test]
fn errors_are_crest_bodies() {
    let s = Server::start(MINIMAL, &[]);
    assert_crest(&s.get("/openidm/no-such-endpoint"), 404);
    assert_crest(&s.get("/elsewhere"), 404);
    let r = s.request("OPTIONS", "/openidm/recon", None, &[], Auth::Admin);
    assert_crest(&r, 405);
    assert!(r.header("allow").is_some(), "405 names the allowed methods");
    assert_crest(
        &s.request(
            "PUT",
            "/openidm/info/ping",
            Some(&json!({})),
            &[],
            Auth::Admin,
        ),
        405,
    );
    assert_crest(
        &s.request("PUT", "/openidm/recon", Some(&json!({})), &[], Auth::Admin),
        501,
    );
    assert_crest(
        &s.request("DELETE", "/openidm/recon", None, &[], Auth::Admin),
        501,
    );
    assert_crest(&s.get("/openidm/recon?_queryFilter=true"), 501);
    assert_crest(
        &s.raw_request(
            "PUT",
            "/openidm/managed/user/x",
            Some("{not json"),
            &[],
            Auth::Admin,
        ),
        400,
    );
    assert_crest(
        &s.get("/openidm/managed/user?_queryFilter=userName%20eq"),
        400,
    );
    assert_crest(
        &s.get("/openidm/managed/user?_queryFilter=true&_bogus=1"),
        400,
    );
    assert_crest(&s.get("/openidm/managed/nosuchtype/x"), 404);
    assert_crest(
        &s.request(
            "GET",
            "/openidm/recon",
            None,
            &[("Accept-API-Version", "resource=9.9")],
            Auth::Admin,
        ),
        404,
    );
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon",
            None,
            &[("Accept-API-Version", "protocol=2.1,resource=1.0")],
            Auth::Admin
        )
        .status,
        200
    );
    // Unknown headers and non-CREST parameters are ignored.
    assert_eq!(
        s.request(
            "GET",
            "/openidm/recon?foo=bar",
            None,
            &[("X-ForgeRock-TransactionId", "t1")],
            Auth::Admin
        )
        .status,
        200
    );
    // An empty POST body is no body, whatever the Content-Type says.
    let r = s.raw_request(
        "POST",
        "/openidm/recon?_action=recon&mapping=nope",
        Some(""),
        &[],
        Auth::Admin,
    );
    assert_crest(&r, 409);
}

#[test]
fn pretty_print() {
    let s = Server::start(MINIMAL, &[]);
    let r = send(
        &s.addr,
        b"GET /openidm/info/ping?_prettyPrint=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "ACTIVE_READY");
}

#[test]
fn body_limit_is_413() {
    let config = format!("{MINIMAL}\n[server]\nmax_body_bytes = 1024\n");
    // [server] must come before other tables' keys; rebuild with it first.
    let config = config.replace("\n[server]\nmax_body_bytes = 1024\n", "");
    let config = format!("[server]\nmax_body_bytes = 1024\n{config}");
    let s = Server::start(&config, &[]);
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(4096));
    let r = s.raw_request(
        "PUT",
        "/openidm/managed/user/x",
        Some(&big),
        &[],
        Auth::Admin,
    );
    assert_crest(&r, 413);
    assert_eq!(s.get("/openidm/info/ping").status, 200);
}

#[test]
fn bad_input_never_takes_the_server_down() {
    let s = Server::start(MINIMAL, &[]);
    let cases: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET /openidm/info/ping HTTP/9.9\r\n\r\n".to_vec(),
        format!("GET /openidm/info/ping HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000)).into_bytes(),
        b"PUT /openidm/managed/user/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nX-OpenIDM-Username: openidm-admin\r\nX-OpenIDM-Password: openidm-admin\r\nConnection: close\r\n\r\n{\"a\":".to_vec(),
        b"GET /openidm/managed/user/%FF%FE HTTP/1.1\r\nHost: x\r\nX-OpenIDM-Username: openidm-admin\r\nX-OpenIDM-Password: openidm-admin\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /openidm/managed/user/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    for bytes in cases {
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(&s.addr) {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = stream.write_all(&bytes);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let mut out = Vec::new();
            let _ = stream.read_to_end(&mut out);
            let text = String::from_utf8_lossy(&out);
            if let Some(code) = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
            {
                assert!(
                    (400..500).contains(&code),
                    "bad input answered {code}: {text}"
                );
            }
        }
        assert_eq!(
            s.get("/openidm/info/ping").status,
            200,
            "server still serving"
        );
    }
    let r = s.get("/openidm/managed/user/%FF%FE");
    assert_crest(&r, 400);
}

#[test]
fn config_errors_exit_2_with_a_message() {
    let dir = TempDir::new("cfg");
    let write = |name: &str, text: &str| std::fs::write(dir.0.join(name), text).expect("write");
    write("hr.csv", "uid,userName\nu1,a\n");
    let cases: Vec<(&str, String, &str)> = vec![
        ("typo", "[server]\nlisen = \"x\"\n".into(), "lisen"),
        ("syntax", "[server\n".into(), "bad.toml"),
        ("csv", "[system.hr.account]\nconnector = \"csv\"\nfile = \"missing.csv\"\nid_column = \"uid\"\n".into(), "missing.csv"),
        (
            "set",
            "[managed.user]\n[[mappings]]\nname = \"m\"\nsource = \"system/nope/x\"\ntarget = \"managed/user\"\n".into(),
            "system/nope/x",
        ),
        (
            "groovy",
            "[managed.user]\n[system.hr.account]\nconnector = \"csv\"\nfile = \"hr.csv\"\nid_column = \"uid\"\n[[mappings]]\nname = \"m\"\nsource = \"system/hr/account\"\ntarget = \"managed/user\"\nvalidSource = { type = \"groovy\", source = \"true\" }\n".into(),
            "groovy",
        ),
        ("user", "[[users]]\nusername = \"x\"\n".into(), "password"),
        (
            "queryid",
            "[managed.user]\n[managed.other]\n[[mappings]]\nname = \"m\"\nsource = \"managed/other\"\ntarget = \"managed/user\"\nsourceQuery = { _queryId = \"no-such-query\" }\n".into(),
            "no-such-query",
        ),
        (
            "resource",
            "[managed.user]\n[managed.other]\n[[mappings]]\nname = \"m\"\nsource = \"managed/other\"\ntarget = \"managed/user\"\ntargetQuery = { resourceName = \"managed/nope\", _queryFilter = \"true\" }\n".into(),
            "managed/nope",
        ),
    ];
    for (name, text, needle) in cases {
        let file = if name == "syntax" {
            "bad.toml".to_string()
        } else {
            format!("{name}.toml")
        };
        write(&file, &text);
        let (code, out) = run_binary(&["--config", &file, "--listen", "127.0.0.1:0"], &dir.0);
        assert_eq!(code, Some(2), "{name}: exit code, output:\n{out}");
        assert!(
            out.contains(needle),
            "{name}: message should mention {needle}:\n{out}"
        );
        assert!(!out.contains("panicked"), "{name}: no panic:\n{out}");
    }
    let (code, _) = run_binary(&["--config", "does-not-exist.toml"], &dir.0);
    assert_eq!(code, Some(2));
    let (code, out) = run_binary(&["--version"], &dir.0);
    assert_eq!(code, Some(0));
    assert!(out.contains("recond"));
    let (code, out) = run_binary(&["--help"], &dir.0);
    assert_eq!(code, Some(0));
    assert!(out.contains("--config"));
    let (code, _) = run_binary(&["--bogus"], &dir.0);
    assert_eq!(code, Some(2));
}

#[test]
fn graceful_shutdown_flushes_and_exits_0() {
    let mut s = Server::start(MINIMAL, &[]);
    let r = s.put("/openidm/managed/user/a", &json!({"userName": "a"}), &[]);
    assert_eq!(r.status, 201);
    assert_eq!(s.stop(), Some(0));
    assert!(s.log().contains("store flushed"), "{}", s.log());
    s.start_again();
    assert_eq!(s.get("/openidm/managed/user/a").body["userName"], "a");
}

/// (name, nice value) of every thread of process `pid`, from /proc.
fn thread_priorities(pid: u32) -> Vec<(String, i32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter_map(Result::ok)
        .map(|t| {
            let name = std::fs::read_to_string(t.path().join("comm")).expect("comm");
            let stat = std::fs::read_to_string(t.path().join("stat")).expect("stat");
            // Fields after the name's closing parenthesis start at field 3; nice is field 19.
            let after = stat.rsplit_once(')').expect("stat has a name").1;
            let nice = after
                .split_whitespace()
                .nth(16)
                .and_then(|n| n.parse().ok())
                .expect("stat has a nice value");
            (name.trim().to_string(), nice)
        })
        .collect()
}

/// Issue #19: sled's background threads (log flusher, IO pool) start from the thread that
/// opens the store and inherit its priority; the store is opened at the runs' priority, so
/// during a run they do not compete with the HTTP runtime. The runtime stays where it was.
#[test]
fn store_background_threads_run_at_the_runs_priority() {
    let own = rustix::process::getpriority_process(None).expect("own nice value");
    let s = Server::start(MINIMAL, &[]);
    let threads = thread_priorities(s.pid().expect("the server runs"));
    let store: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n == "log flusher" || n.starts_with("sled-io"))
        .collect();
    assert!(
        store.iter().any(|(n, _)| n == "log flusher") && store.len() > 1,
        "the store's threads are running: {threads:?}"
    );
    let runs = own.max(10);
    for (name, nice) in &store {
        assert_eq!(*nice, runs, "{name} at the runs' priority: {threads:?}");
    }
    let runtime: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n == "tokio-rt-worker")
        .collect();
    assert!(!runtime.is_empty(), "{threads:?}");
    for (name, nice) in runtime {
        assert_eq!(*nice, own, "{name} at the server's priority: {threads:?}");
    }
}
