//! One PostgreSQL server per test process, shared by the tests that run recond on the
//! PostgreSQL repository: each test gets its own database (`CREATE DATABASE`), so tests stay
//! independent and run in parallel, and the server's start (initdb, ~1-2 s) is paid once.
//!
//! A static is never dropped, so the server is stopped by a small watchdog shell started with
//! it: when the test process is gone it sends the server SIGINT and removes its folder.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::pg::Pg;

struct Shared {
    pg: Pg,
    next: AtomicU64,
}

static SHARED: OnceLock<Option<Shared>> = OnceLock::new();

fn shared() -> Option<&'static Shared> {
    SHARED
        .get_or_init(|| {
            let pg = Pg::start()?;
            if let Some((pid, dir)) = pg.pid_and_dir() {
                let script = format!(
                    "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -INT {pid}; \
                     while kill -0 {pid} 2>/dev/null; do sleep 1; done; rm -rf '{dir}'",
                    me = std::process::id(),
                    dir = dir.display()
                );
                // Not waited for: it outlives the test process on purpose.
                #[allow(clippy::zombie_processes)]
                Command::new("sh")
                    .args(["-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start the PostgreSQL watchdog");
            }
            Some(Shared {
                pg,
                next: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// A fresh, empty database on the shared server: its `postgres://` URL (as `[storage] url`
/// takes it), or None when PostgreSQL is not installed and this is not CI (the caller skips;
/// `Pg::start` said why).
pub fn fresh_database(tag: &str) -> Option<String> {
    let s = shared()?;
    let n = s.next.fetch_add(1, Ordering::SeqCst);
    let name: String = format!("{tag}_{n}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.pg.exec(&format!("CREATE DATABASE {name}"));
    Some(format!(
        "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
        s.pg.port
    ))
}

/// A superuser client of the database `url` names (to look at or tamper with the tables).
pub fn client(url: &str) -> postgres::Client {
    let db = url
        .rsplit('/')
        .next()
        .and_then(|rest| rest.split('?').next())
        .expect("a database name");
    let port = shared().expect("the shared server").pg.port;
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(db)
        .connect(postgres::NoTls)
        .expect("connect to the test database")
}
