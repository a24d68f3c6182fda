//! Test helpers: start the real `recond` binary on 127.0.0.1:0 with a fresh folder, talk
//! HTTP to it with a minimal blocking client, restart it, and kill it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const USERS: &str = r#"
[[users]]
username = "openidm-admin"
password = "openidm-admin"
tokens = ["test-token-0123456789"]
"#;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "recond-it-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    /// The tag of the test running on this thread under [`on_postgres`] (each server it
    /// starts gets a fresh database named after it); None: the embedded store.
    static REPOSITORY: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `test` with every server it starts on the PostgreSQL repository, each in a fresh
/// database of the shared test server (`pg_shared`), as each gets a fresh folder. Without
/// PostgreSQL (and not under `CI=true`) the test is skipped with a message.
pub fn on_postgres(tag: &str, test: impl FnOnce()) {
    // Starts the shared server (or finds PostgreSQL missing) before the test does anything.
    if super::pg_shared::fresh_database(tag).is_none() {
        return;
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REPOSITORY.with(|r| r.borrow_mut().take());
        }
    }
    REPOSITORY.with(|r| *r.borrow_mut() = Some(tag.to_string()));
    let _reset = Reset;
    test();
}

/// `config` with the repository of the running test: unchanged on the embedded store, else
/// `backend = "postgres"` and a fresh database's `url` in its `[storage]` section (added if
/// absent), and that url.
fn with_repository(config: &str) -> (String, Option<String>) {
    let Some(tag) = REPOSITORY.with(|r| r.borrow().clone()) else {
        return (config.to_string(), None);
    };
    let url = super::pg_shared::fresh_database(&tag).expect("the shared PostgreSQL");
    let keys = format!("backend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n");
    let config = match config.find("[storage]\n") {
        Some(at) => {
            let after = at + "[storage]\n".len();
            format!("{}{keys}{}", &config[..after], &config[after..])
        }
        None => format!("{config}\n[storage]\n{keys}"),
    };
    (config, Some(url))
}

/// Test functions of the enclosing module run again on the PostgreSQL repository: expands
/// to `#[test] fn <name>()` calling `super::<name>` under [`on_postgres`]. Used inside a
/// `mod on_postgres { ... }` of a test file (a child module sees the file's private tests).
macro_rules! on_postgres_too {
    ($($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::helpers::on_postgres(stringify!($test), super::$test);
            }
        )*
    };
}
pub(crate) use on_postgres_too;

pub struct Response {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Auth {
    Admin,
    None,
    Headers(&'static str, &'static str),
    Raw(&'static str),
}

pub struct Server {
    pub dir: TempDir,
    pub addr: String,
    child: Option<Child>,
    /// The PostgreSQL database the server uses, if not the embedded store.
    #[allow(dead_code)]
    pub repository: Option<String>,
    log: PathBuf,
    /// Extra environment of the server process (test hooks).
    env: Vec<(String, String)>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_recond"))
}

impl Server {
    /// Writes `config` (+ users) and `files` into a fresh folder and starts the server.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Server {
        Server::start_with_env(config, files, &[])
    }

    /// As [`Server::start`], with extra environment variables for the server process.
    pub fn start_with_env(config: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Server {
        let dir = TempDir::new("srv");
        for (rel, content) in files {
            let p = dir.0.join(rel);
            std::fs::create_dir_all(p.parent().expect("file has a parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write file");
        }
        let (config, repository) = with_repository(config);
        std::fs::write(dir.0.join("recon.toml"), format!("{config}\n{USERS}"))
            .expect("write config");
        let log = dir.0.join("server.log");
        let mut s = Server {
            dir,
            addr: String::new(),
            child: None,
            repository,
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        std::fs::write(self.path(rel), content).expect("write file");
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary())
            .arg("--config")
            .arg(self.dir.0.join("recon.toml"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .current_dir(&self.dir.0)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start recond");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let start_len = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let fresh = text.get(start_len as usize..).unwrap_or("");
            if let Some(pos) = fresh.rfind("listening on http://") {
                let rest = &fresh[pos + "listening on http://".len()..];
                self.addr = rest.split_whitespace().next().unwrap_or("").to_string();
                if self.get("/openidm/info/ping").status == 200 {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("recond exited at start with {status}:\n{text}");
                }
            }
            assert!(Instant::now() < deadline, "recond did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait; returns the exit code.
    /// The server process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("recond did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) -> Option<i32> {
        let code = self.stop();
        self.spawn();
        code
    }

    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        auth: Auth,
    ) -> Response {
        let raw_body = body.map(|b| b.to_string());
        self.raw_request(method, path, raw_body.as_deref(), headers, auth)
    }

    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
        auth: Auth,
    ) -> Response {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        match auth {
            Auth::Admin => req.push_str(
                "X-OpenIDM-Username: openidm-admin\r\nX-OpenIDM-Password: openidm-admin\r\n",
            ),
            Auth::None => {}
            Auth::Headers(u, p) => req.push_str(&format!(
                "X-OpenIDM-Username: {u}\r\nX-OpenIDM-Password: {p}\r\n"
            )),
            Auth::Raw(line) => req.push_str(&format!("{line}\r\n")),
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        send(&self.addr, req.as_bytes())
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[], Auth::Admin)
    }

    pub fn post(&self, path: &str, body: Option<&Value>) -> Response {
        self.request("POST", path, body, &[], Auth::Admin)
    }

    pub fn put(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
        self.request("PUT", path, Some(body), headers, Auth::Admin)
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None, &[], Auth::Admin)
    }

    /// Starts a run and waits for it; returns its summary.
    pub fn run(&self, mapping: &str, extra: &str) -> Value {
        let r = self.post(
            &format!(
                "/openidm/recon?_action=recon&mapping={mapping}&waitForCompletion=true{extra}"
            ),
            None,
        );
        assert_eq!(r.status, 200, "start run: {}", r.body);
        let id = r.body["_id"].as_str().expect("run id").to_string();
        self.wait_run(&id)
    }

    /// Polls the run `id` until its source phase has processed at least `n` objects, asserting
    /// all along that it is still ACTIVE (within 120 s, else fails saying `what`).
    pub fn wait_processed(&self, id: &str, n: u64, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let b = self.get(&format!("/openidm/recon/{id}")).body;
            assert_eq!(b["state"], "ACTIVE", "{b}");
            let processed = b["progress"]["source"]["existing"]["processed"]
                .as_u64()
                .unwrap_or(0);
            if processed >= n {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {b}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub fn wait_run(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.get(&format!("/openidm/recon/{id}"));
            assert_eq!(r.status, 200, "read run {id}: {}", r.body);
            if r.body["ended"].as_str().is_some_and(|e| !e.is_empty()) {
                return r.body;
            }
            assert!(Instant::now() < deadline, "run {id} did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn query(&self, path: &str, filter: &str) -> Value {
        let r = self.get(&format!("{path}?_queryFilter={}", enc(filter)));
        assert_eq!(r.status, 200, "query {path} {filter}: {}", r.body);
        r.body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends raw bytes and reads one response (Connection: close).
pub fn send(addr: &str, bytes: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    stream.write_all(bytes).expect("send");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    let mut len: Option<usize> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut buf = Vec::new();
    match len {
        Some(n) => {
            buf.resize(n, 0);
            reader.read_exact(&mut buf).expect("body");
        }
        None => {
            let _ = reader.read_to_end(&mut buf);
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text.to_string()))
    };
    Response {
        status,
        body,
        headers,
    }
}

/// Runs the binary with arguments and returns (exit code, stderr).
pub fn run_binary(args: &[&str], cwd: &Path) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run recond");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub const HEADER: &str = "uid,userName,givenName,sn,mail\n";

pub fn people(n: usize, start: usize) -> String {
    (start..start + n)
        .map(|i| format!("u{i},user{i},Given{i},Family{i},user{i}@example.com\n"))
        .collect()
}

/// The people CSV source (`data/hr.csv`, keyed by `uid`) and `managed/user` with its
/// `userName` index: the sets the hr mappings of the tests run between.
pub const HR_SETS: &str = r#"
[managed.user]
indexed = ["userName"]

[system.hr.account]
connector = "csv"
file = "data/hr.csv"
id_column = "uid"
"#;

pub const HR: &str = r#"
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
properties = [
  { source = "uid", target = "_id" },
  { source = "userName", target = "userName" },
  { source = "givenName", target = "givenName" },
  { source = "sn", target = "sn" },
  { source = "mail", target = "mail" },
]
policies = [
  { situation = "CONFIRMED", action = "UPDATE" },
  { situation = "FOUND", action = "UPDATE" },
  { situation = "ABSENT", action = "CREATE" },
  { situation = "SOURCE_MISSING", action = "DELETE" },
  { situation = "MISSING", action = "CREATE" },
]
"#;

/// The non-zero situation counts of a run summary.
pub fn counts(run: &Value) -> std::collections::BTreeMap<String, u64> {
    run["situationSummary"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn map(pairs: &[(&str, u64)]) -> std::collections::BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Waits until a run held by the test hook (`RECOND_TEST_HOLD_DIR` = `dir`) reaches its hold
/// point, which writes `dir/held`, and returns that file's text; fails after `within`.
pub fn wait_held(dir: &std::path::Path, within: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("held")) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never reached the hold point"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A run's `progress` without `links.existing.total`, which the run counts on a background
/// thread while its source phase already writes links (runner/worker/totals.rs), so it may
/// include some of the run's own links: timing-dependent, not comparable between two runs.
pub fn comparable_progress(run: &Value) -> Value {
    let mut p = run["progress"].clone();
    if let Some(existing) = p
        .get_mut("links")
        .and_then(|l| l.get_mut("existing"))
        .and_then(Value::as_object_mut)
    {
        existing.remove("total");
    }
    p
}
