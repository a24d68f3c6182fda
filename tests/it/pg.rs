//! A real PostgreSQL server for tests: `initdb` into a temporary folder, `postgres` started as
//! a child process on a free 127.0.0.1 port, stopped (fast shutdown) on drop.
//!
//! PostgreSQL refuses to run as root, so under root the folder is handed to the `postgres`
//! system user (Debian's package creates it) and the server runs under `setpriv`, which execs
//! (so the child's pid is the server's and signals reach it). Without PostgreSQL installed the
//! caller skips with a message, except under `CI=true`, where that is a failure.
//!
//! Self-contained (std and the `postgres` client only) so the benchmark includes it too.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server's folder, removed on drop.
struct PgDir(PathBuf);

impl PgDir {
    fn new() -> PgDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("recond-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create the PostgreSQL folder");
        PgDir(p)
    }
}

impl Drop for PgDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Pg {
    pub port: u16,
    dir: PgDir,
    bin: PathBuf,
    child: Option<Child>,
    as_postgres: bool,
    /// With TLS: the server's self-signed certificate (PEM).
    tls_cert: Option<PathBuf>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, or `PG_BIN`.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

/// Whether PostgreSQL's programs are installed (the benchmark asks before starting one).
#[allow(dead_code)]
pub fn available() -> bool {
    bin_dir().is_some()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Pg {
    /// A running server with an empty `postgres` database (superuser `postgres`, trust
    /// authentication on loopback), or None (with a message) when PostgreSQL is not installed
    /// and this is not CI.
    pub fn start() -> Option<Pg> {
        Pg::start_with(false)
    }

    /// A server with TLS on (`ssl=on`, a self-signed certificate for 127.0.0.1 made here with
    /// `openssl req`) and a role `tlsonly` that may log in over TLS only (pg_hba
    /// `hostnossl ... reject`), so a client that got in as it used TLS.
    #[allow(dead_code)]
    pub fn start_tls() -> Option<Pg> {
        let pg = Pg::start_with(true)?;
        pg.exec("CREATE ROLE tlsonly LOGIN SUPERUSER;");
        Some(pg)
    }

    #[allow(dead_code)]
    pub fn tls_cert(&self) -> Option<PathBuf> {
        self.tls_cert.clone()
    }

    fn start_with(tls: bool) -> Option<Pg> {
        let Some(bin) = bin_dir() else {
            let msg = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); \
                       apt-get install postgresql";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let dir = PgDir::new();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir.0)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of {} to postgres failed", dir.0.display());
        }
        let mut pg = Pg {
            port: free_port(),
            dir,
            bin,
            child: None,
            as_postgres,
            tls_cert: None,
        };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            pg.make_certificate();
        }
        pg.launch();
        Some(pg)
    }

    fn make_certificate(&mut self) {
        let data = self.data();
        let (crt, key) = (data.join("server.crt"), data.join("server.key"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostnossl all tlsonly 127.0.0.1/32 reject\n\
             host all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        // The server reads its key only when it is private to the server's user.
        let ok = Command::new("chmod")
            .arg("600")
            .arg(&key)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chmod of the key failed");
        if self.as_postgres {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&key)
                .arg(&crt)
                .arg(data.join("pg_hba.conf"))
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of the key failed");
        }
        self.tls_cert = Some(crt);
    }

    fn data(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("postgres.log")).expect("log file");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(if self.tls_cert.is_some() {
                &[
                    "-c",
                    "ssl=on",
                    "-c",
                    "ssl_cert_file=server.crt",
                    "-c",
                    "ssl_key_file=server.key",
                ][..]
            } else {
                &[][..]
            })
            .arg("-k")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.try_client().is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("postgres exited at start with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("postgres.log")).unwrap_or_default()
    }

    fn try_client(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2))
            .connect(postgres::NoTls)
    }

    pub fn client(&self) -> postgres::Client {
        self.try_client().expect("connect to the test PostgreSQL")
    }

    /// Runs SQL statements (no parameters) as the superuser.
    pub fn exec(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The JDBC URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/postgres", self.port)
    }

    /// The server's process id and folder (to stop it when the test process is gone, see
    /// `pg_shared`).
    #[allow(dead_code)]
    pub fn pid_and_dir(&self) -> Option<(u32, PathBuf)> {
        Some((self.child.as_ref()?.id(), self.dir.0.clone()))
    }

    /// Fast shutdown (SIGINT), waiting for the server to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        self.launch();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
