//! Connections to one directory: a small pool of bound `ldap3` connections driven by the
//! connector's own tokio runtimes, behind a blocking facade.
//!
//! Invariants:
//! * Callers are OS threads (the engine's workers, REST handlers inside `spawn_blocking`);
//!   every operation is `block_on` on one of the connector's runtimes, never on recond's HTTP
//!   runtime. The runtimes are created on first use, so opening a set touches no network: the
//!   server starts while the directory is down, and the first operation reports it.
//! * Two kinds of connection ([`Driver`]): searches use connections driven by a runtime
//!   thread (one worker for every socket), so a search task keeps reading ahead while its
//!   caller maps entries; writes use connections driven by the calling thread itself while it
//!   waits (a current-thread runtime several threads may `block_on` at once: one drives the
//!   sockets, the others wait for their answer). A write then costs one round trip to the
//!   directory and no hand-off between threads, as when a client talks to it directly.
//! * Every operation is bounded: the connect timeout for connecting and binding, the
//!   operation timeout for each reply, so a vanished directory fails operations, never hangs.
//! * A connection that failed at the transport level (I/O, timeout, closed) is dropped, never
//!   returned to the pool; the next operation connects again (reconnect after a restart).
//!   Idle connections whose socket closed are discarded when taken.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult};
use parking_lot::Mutex;

use super::config::Connection;

/// Why an operation failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The directory could not be reached, or stopped answering.
    Unreachable(String),
    /// The directory answered with a non-success result code.
    Directory { rc: u32, text: String },
    /// Anything else (a reply recond could not use).
    Other(String),
}

impl Failure {
    pub fn rc(&self) -> Option<u32> {
        match self {
            Failure::Directory { rc, .. } => Some(*rc),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(m) | Failure::Other(m) => f.write_str(m),
            Failure::Directory { rc, text } if text.is_empty() => {
                write!(f, "LDAP error {rc} ({})", rc_name(*rc))
            }
            Failure::Directory { rc, text } => {
                write!(f, "LDAP error {rc} ({}): {text}", rc_name(*rc))
            }
        }
    }
}

/// RFC 4511 names of the result codes a connector meets.
pub fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        11 => "adminLimitExceeded",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        80 => "other",
        _ => "unknown",
    }
}

/// Who drives a connection's socket (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// The connector's runtime thread: for searches, whose tasks read ahead.
    Runtime,
    /// The thread waiting for an answer: for single operations (writes).
    Caller,
}

/// The connector's runtime for `driver`, created once on first use.
fn runtime(driver: Driver) -> Result<&'static tokio::runtime::Runtime, Failure> {
    static SHARED: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    static CALLER: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let built = match driver {
        Driver::Runtime => SHARED.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("recond-ldap")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the LDAP connector's runtime: {e}"))
        }),
        Driver::Caller => CALLER.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the LDAP connector's write runtime: {e}"))
        }),
    };
    built.as_ref().map_err(|e| Failure::Other(e.clone()))
}

/// A pool of connections to one directory (up to `pool_size` idle of each kind).
pub struct Pool {
    conn: Connection,
    idle: Mutex<Vec<Ldap>>,
    idle_direct: Mutex<Vec<Ldap>>,
}

/// A connection taken from the pool; back to it on drop unless it failed.
pub struct Conn<'p> {
    pool: &'p Pool,
    driver: Driver,
    ldap: Option<Ldap>,
}

impl Pool {
    pub fn new(conn: Connection) -> Pool {
        Pool {
            conn,
            idle: Mutex::new(Vec::new()),
            idle_direct: Mutex::new(Vec::new()),
        }
    }

    pub fn url(&self) -> &str {
        &self.conn.url
    }

    fn idle(&self, driver: Driver) -> &Mutex<Vec<Ldap>> {
        match driver {
            Driver::Runtime => &self.idle,
            Driver::Caller => &self.idle_direct,
        }
    }

    /// A live connection for searches: an idle one, or a new bound one.
    pub fn get(&self) -> Result<Conn<'_>, Failure> {
        self.take(Driver::Runtime)
    }

    /// A live connection for single operations, driven by the calling thread.
    pub fn get_direct(&self) -> Result<Conn<'_>, Failure> {
        // Idle caller-driven connections are driven by nobody: let their drivers see what
        // happened to their sockets meanwhile (a directory that closed them), so `is_closed`
        // below is true for those. Two turns: one polls the sockets, one runs the drivers.
        if !self.idle_direct.lock().is_empty() {
            runtime(Driver::Caller)?.block_on(async {
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
            });
        }
        self.take(Driver::Caller)
    }

    fn take(&self, driver: Driver) -> Result<Conn<'_>, Failure> {
        loop {
            let Some(mut l) = self.idle(driver).lock().pop() else {
                break;
            };
            if !l.is_closed() {
                return Ok(Conn {
                    pool: self,
                    driver,
                    ldap: Some(l),
                });
            }
        }
        let ldap = self.connect(driver)?;
        Ok(Conn {
            pool: self,
            driver,
            ldap: Some(ldap),
        })
    }

    /// Whether a pooled connection is at hand (a failure on it may be a stale socket).
    pub fn has_idle(&self) -> bool {
        !self.idle.lock().is_empty()
    }

    fn connect(&self, driver: Driver) -> Result<Ldap, Failure> {
        let rt = runtime(driver)?;
        let c = &self.conn;
        let unreachable = |e: &dyn fmt::Display| {
            Failure::Unreachable(format!("cannot connect to {}: {e}", c.url))
        };
        let settings = LdapConnSettings::new()
            .set_conn_timeout(c.connect_timeout)
            .set_starttls(c.start_tls);
        let fut = async {
            let (driver, mut ldap) = LdapConnAsync::with_settings(settings, &c.url)
                .await
                .map_err(|e| unreachable(&e))?;
            tokio::spawn(async move {
                if let Err(e) = driver.drive().await {
                    tracing::debug!(error = %e, "LDAP connection closed");
                }
            });
            if let Some(principal) = &c.principal {
                let pw = c.credentials.as_deref().unwrap_or_default();
                let res = ldap
                    .with_timeout(c.connect_timeout)
                    .simple_bind(principal, pw)
                    .await
                    .map_err(|e| unreachable(&e))?;
                if res.rc != 0 {
                    return Err(Failure::Directory {
                        rc: res.rc,
                        text: format!(
                            "bind as {principal} to {} refused{}",
                            c.url,
                            if res.text.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", res.text)
                            }
                        ),
                    });
                }
            }
            Ok(ldap)
        };
        // The connect timeout bounds connecting, TLS and binding together.
        rt.block_on(async {
            tokio::time::timeout(c.connect_timeout * 2, fut)
                .await
                .unwrap_or_else(|_| {
                    Err(Failure::Unreachable(format!(
                        "cannot connect to {}: timed out",
                        c.url
                    )))
                })
        })
    }
}

impl Conn<'_> {
    /// Runs one operation on this connection with the operation timeout; a transport failure
    /// drops the connection.
    pub fn run<T, F, Fut>(&mut self, op: F) -> Result<T, Failure>
    where
        F: FnOnce(Ldap) -> Fut,
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let rt = runtime(self.driver)?;
        let Some(ldap) = self.ldap.as_ref() else {
            return Err(Failure::Unreachable(format!(
                "the connection to {} was lost",
                self.pool.conn.url
            )));
        };
        let mut handle = ldap.clone();
        let timeout = self.pool.conn.op_timeout;
        handle.with_timeout(timeout);
        let res = rt.block_on(async { bounded(timeout, op(handle)).await });
        self.check(res)
    }

    /// Runs an arbitrary future (a search stream step) on the connector's runtime, bounded.
    pub fn drive<T, Fut>(&mut self, fut: Fut) -> Result<T, Failure>
    where
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let rt = runtime(self.driver)?;
        let timeout = self.pool.conn.op_timeout;
        let res = rt.block_on(async { bounded(timeout, fut).await });
        self.check(res)
    }

    /// Starts a task on the connector's runtime (a search reading ahead of its caller).
    pub fn spawn<F>(&self, fut: F) -> Result<tokio::task::JoinHandle<()>, Failure>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.driver != Driver::Runtime {
            return Err(Failure::Other(
                "a task needs a runtime-driven connection".into(),
            ));
        }
        Ok(runtime(Driver::Runtime)?.spawn(fut))
    }

    /// An error a task met on this connection, classified as `run` does (a transport failure
    /// drops the connection).
    pub fn fail(&mut self, e: LdapError) -> Failure {
        match self.check::<()>(Err(e)) {
            Err(f) => f,
            Ok(()) => Failure::Other("an error that was not one".into()),
        }
    }

    /// A handle for a search stream, with the operation timeout set.
    pub fn handle(&self) -> Result<Ldap, Failure> {
        let mut h = self.ldap.clone().ok_or_else(|| {
            Failure::Unreachable(format!("the connection to {} was lost", self.pool.conn.url))
        })?;
        h.with_timeout(self.pool.conn.op_timeout);
        Ok(h)
    }

    fn check<T>(&mut self, res: Result<T, LdapError>) -> Result<T, Failure> {
        res.map_err(|e| {
            let url = &self.pool.conn.url;
            match e {
                LdapError::LdapResult { result } => directory(result),
                e @ (LdapError::Io { .. }
                | LdapError::OpSend { .. }
                | LdapError::ResultRecv { .. }
                | LdapError::Timeout { .. }
                | LdapError::EndOfStream) => {
                    self.ldap = None;
                    Failure::Unreachable(format!("the directory at {url} did not answer: {e}"))
                }
                e => Failure::Other(format!("{url}: {e}")),
            }
        })
    }
}

/// A non-success result as a failure (success passes).
pub fn checked(res: LdapResult) -> Result<LdapResult, Failure> {
    if res.rc == 0 {
        Ok(res)
    } else {
        Err(directory(res))
    }
}

fn directory(res: LdapResult) -> Failure {
    Failure::Directory {
        rc: res.rc,
        text: res.text,
    }
}

async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, LdapError>>,
) -> Result<T, LdapError> {
    // ldap3 bounds each reply; this also bounds what it does not (a stalled stream step).
    match tokio::time::timeout(timeout + Duration::from_secs(1), fut).await {
        Ok(r) => r,
        Err(elapsed) => Err(LdapError::Timeout { elapsed }),
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(mut l) = self.ldap.take() {
            let mut idle = self.pool.idle(self.driver).lock();
            if idle.len() < self.pool.conn.pool_size && !l.is_closed() {
                idle.push(l);
            }
        }
    }
}

/// Attribute values in the form ldap3 writes.
pub type Values = HashSet<Vec<u8>>;
