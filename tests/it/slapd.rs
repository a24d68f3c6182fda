//! A real OpenLDAP `slapd` for tests: a generated slapd.conf (mdb backend, the core, cosine,
//! inetorgperson and nis schemas, suffix dc=example,dc=com) in a temporary folder, loaded
//! with an LDIF by `slapadd`, listening on a free 127.0.0.1 port, stopped on drop.
//!
//! Outside CI a machine without slapd skips the LDAP tests with a message; under `CI=true` a
//! missing slapd is a failure. Self-contained, so the benchmark includes it too.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

/// The server's temporary folder, removed on drop.
pub struct Folder(pub PathBuf);

impl Folder {
    fn new() -> Folder {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "recond-slapd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create the slapd folder");
        Folder(p)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
pub const ROOT_PW: &str = "secret";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

/// The base entries every directory starts with.
pub const BASE_LDIF: &str = "dn: dc=example,dc=com
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=com
objectClass: top
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=com
objectClass: top
objectClass: organizationalUnit
ou: groups

";

pub struct Slapd {
    pub dir: Folder,
    pub port: u16,
    /// The LDAPS port, when started with TLS ([`Slapd::start_tls`]).
    pub tls_port: Option<u16>,
    /// slapd's `-d` level: 0, or 256 (stats: one log line per operation, see [`Slapd::log`]).
    debug: u32,
    child: Option<Child>,
}

/// Whether slapd can run here; panics under CI when it cannot.
pub fn available() -> bool {
    let found = Path::new(SLAPD).exists() && Path::new(SLAPADD).exists();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "slapd is not installed ({SLAPD}); .ci/run installs Debian's slapd and ldap-utils"
        );
        eprintln!("skipping: slapd is not installed ({SLAPD})");
    }
    found
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Slapd {
    /// Starts a directory holding the base entries and `ldif`; None when slapd is absent
    /// (outside CI).
    pub fn start(ldif: &str) -> Option<Slapd> {
        Slapd::launch(ldif, false, 0)
    }

    /// Like [`Slapd::start`], logging every operation (searches with their filters) to
    /// [`Slapd::log`], for tests that check what reached the directory.
    pub fn start_logged(ldif: &str) -> Option<Slapd> {
        Slapd::launch(ldif, false, 256)
    }

    /// What slapd wrote to its log since it was last (re)started.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("slapd.log")).unwrap_or_default()
    }

    /// Like [`Slapd::start`], with a certificate for 127.0.0.1 signed by a test CA
    /// (`ca_file()`), StartTLS on the plain port and LDAPS on `tls_port`.
    pub fn start_tls(ldif: &str) -> Option<Slapd> {
        Slapd::launch(ldif, true, 0)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    fn launch(ldif: &str, tls: bool, debug: u32) -> Option<Slapd> {
        if !available() {
            return None;
        }
        let dir = Folder::new();
        let tls_conf = if tls {
            make_certs(&dir.0);
            format!(
                "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\n\
                 TLSCertificateKeyFile {d}/server.key\n",
                d = dir.0.display()
            )
        } else {
            String::new()
        };
        let db = dir.0.join("db");
        std::fs::create_dir_all(&db).expect("mkdir db");
        let conf = format!(
            "{tls_conf}include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
sizelimit unlimited
database mdb
maxsize 1073741824
dbnosync
suffix \"{SUFFIX}\"
rootdn \"{ROOT_DN}\"
rootpw {ROOT_PW}
directory {db}
index objectClass eq
index uid eq
index entryUUID eq
index modifyTimestamp eq
",
            d = dir.0.display(),
            db = db.display()
        );
        std::fs::write(dir.0.join("slapd.conf"), conf).expect("write slapd.conf");
        std::fs::write(dir.0.join("data.ldif"), format!("{BASE_LDIF}{ldif}")).expect("write ldif");
        let out = Command::new(SLAPADD)
            .arg("-f")
            .arg(dir.0.join("slapd.conf"))
            .arg("-l")
            .arg(dir.0.join("data.ldif"))
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            dir,
            port: free_port(),
            tls_port: tls.then(free_port),
            debug,
            child: None,
        };
        s.resume();
        Some(s)
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn conf(&self) -> PathBuf {
        self.dir.0.join("slapd.conf")
    }

    /// Starts (again) on the same port with the same data.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("slapd.log")).expect("log");
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(self.conf())
            .arg("-h")
            .arg(match self.tls_port {
                Some(tls) => format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{tls}/", self.port),
                None => format!("ldap://127.0.0.1:{}/", self.port),
            })
            .arg("-d")
            .arg(self.debug.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "slapd exited at start with {status}: {}",
                    std::fs::read_to_string(self.dir.0.join("slapd.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "slapd did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections stay open, nothing answers.
    /// Returns once every thread of slapd is in the asked state.
    pub fn freeze(&self, frozen: bool) {
        let Some(c) = &self.child else { return };
        let _ = Command::new("kill")
            .arg(if frozen { "-STOP" } else { "-CONT" })
            .arg(c.id().to_string())
            .status();
        // A signal is delivered asynchronously; wait until the threads show it (state T).
        let tasks = PathBuf::from(format!("/proc/{}/task", c.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let states: Vec<bool> = std::fs::read_dir(&tasks)
                .map(|d| {
                    d.filter_map(|t| t.ok())
                        .map(|t| {
                            let stat =
                                std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                            // The state follows the ")" that closes the command name.
                            stat.rsplit_once(')')
                                .and_then(|(_, rest)| rest.trim_start().chars().next())
                                == Some('T')
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !states.is_empty() && states.iter().all(|s| *s == frozen) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "slapd did not become {}",
            if frozen { "stopped" } else { "running" }
        );
    }

    /// Runs an ldap-utils command (`ldapsearch`, `ldapmodify`, ...) bound as the root DN.
    pub fn tool(&self, cmd: &str, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(cmd)
            .arg("-x")
            .arg("-H")
            .arg(self.url())
            .arg("-D")
            .arg(ROOT_DN)
            .arg("-w")
            .arg(ROOT_PW)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ldapsearch -LLL` under the suffix.
    pub fn search(&self, filter: &str, attrs: &[&str]) -> String {
        let mut args = vec!["-LLL", "-o", "ldif-wrap=no", "-b", SUFFIX, filter];
        args.extend_from_slice(attrs);
        self.tool("ldapsearch", &args, None)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.freeze(false);
        self.stop();
    }
}

/// A test CA and a server certificate for IP 127.0.0.1, made with the openssl tool.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=recond test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// LDIF for `n` inetOrgPerson entries `uid=user<i>` under ou=people.
pub fn people_ldif(n: usize, start: usize) -> String {
    (start..start + n)
        .map(|i| {
            format!(
                "dn: uid=user{i},ou=people,{SUFFIX}\nobjectClass: top\nobjectClass: person\n\
                 objectClass: organizationalPerson\nobjectClass: inetOrgPerson\nuid: user{i}\n\
                 cn: Given{i} Family{i}\nsn: Family{i}\ngivenName: Given{i}\n\
                 mail: user{i}@example.com\n\n"
            )
        })
        .collect()
}
