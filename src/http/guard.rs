//! The login guard: what stands between password guessing and the argon2 verifier.
//!
//! * At most [`LoginGuard::permits`] argon2 verifications run at once (each may take tens of
//!   MiB and tens of milliseconds); more wait for a permit on the runtime, not on a thread.
//! * A successful verification is remembered for [`SUCCESS_TTL`], keyed by a 128-bit keyed
//!   hash of (user, password) with keys drawn at startup, so a client polling a run pays argon2
//!   once a minute rather than per request. No password is kept.
//! * After more than [`FREE_FAILURES`] failures in a minute for one (client address, user
//!   name), each further *failed* answer is delayed (doubling, capped at [`MAX_DELAY`]). The
//!   delay comes after the verification failed, so a correct credential is never delayed or
//!   refused; the answer stays IDM's 401.
//!
//! Both maps are bounded: expired entries are dropped when a map grows past [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a verified credential is trusted without verifying it again.
pub const SUCCESS_TTL: Duration = Duration::from_secs(60);
/// Failures per (address, user) per minute answered without delay.
pub const FREE_FAILURES: u32 = 5;
/// The longest delay added to a failed answer.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
const WINDOW: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 10_000;

/// A keyed fingerprint of a credential: two independently keyed SipHashes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint(u64, u64);

struct Failures {
    since: Instant,
    count: u32,
}

pub struct LoginGuard {
    permits: Semaphore,
    keys: (std::hash::RandomState, std::hash::RandomState),
    verified: Mutex<HashMap<Fingerprint, (String, Instant)>>,
    failures: Mutex<HashMap<(IpAddr, String), Failures>>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        LoginGuard::new(cpus.max(2))
    }
}

impl LoginGuard {
    pub fn new(permits: usize) -> LoginGuard {
        LoginGuard {
            permits: Semaphore::new(permits),
            keys: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            verified: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for the right to run one argon2 verification.
    pub async fn permit(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring can only succeed.
        self.permits
            .acquire()
            .await
            .expect("the login semaphore is never closed")
    }

    pub fn fingerprint(&self, user: &str, password: &str) -> Fingerprint {
        let one = |k: &std::hash::RandomState| k.hash_one((user, password));
        Fingerprint(one(&self.keys.0), one(&self.keys.1))
    }

    /// The user a credential was recently verified for.
    pub fn recall(&self, fp: Fingerprint) -> Option<String> {
        let map = self.verified.lock();
        let (user, at) = map.get(&fp)?;
        (at.elapsed() < SUCCESS_TTL).then(|| user.clone())
    }

    pub fn remember(&self, fp: Fingerprint, user: &str) {
        let mut map = self.verified.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed() < SUCCESS_TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(fp, (user.to_string(), Instant::now()));
    }

    /// Records a failed login and returns how long to hold its 401 back.
    pub fn failed(&self, client: IpAddr, user: &str) -> Duration {
        let mut map = self.failures.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, f| f.since.elapsed() < WINDOW);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        let entry = map.entry((client, user.to_string())).or_insert(Failures {
            since: Instant::now(),
            count: 0,
        });
        if entry.since.elapsed() >= WINDOW {
            *entry = Failures {
                since: Instant::now(),
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
        let count = entry.count;
        drop(map);
        if count <= FREE_FAILURES {
            tracing::warn!(%client, user, failures_this_minute = count, "failed login");
            return Duration::ZERO;
        }
        let over = (count - FREE_FAILURES - 1).min(16);
        let delay = Duration::from_millis(250u64 << over).min(MAX_DELAY);
        // One line per doubling at most, so an attack cannot flood the log.
        if (count - FREE_FAILURES).is_power_of_two() {
            tracing::warn!(%client, user, failures_this_minute = count, delay_ms = delay.as_millis() as u64, "repeated failed logins; delaying the answers");
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_free_then_delayed_per_client_and_user() {
        let g = LoginGuard::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..FREE_FAILURES {
            assert_eq!(g.failed(a, "admin"), Duration::ZERO);
        }
        let first = g.failed(a, "admin");
        assert!(first > Duration::ZERO);
        let second = g.failed(a, "admin");
        assert!(second > first);
        for _ in 0..40 {
            assert!(g.failed(a, "admin") <= MAX_DELAY);
        }
        // Another address, or another user name, starts with a clean slate.
        assert_eq!(g.failed(b, "admin"), Duration::ZERO);
        assert_eq!(g.failed(a, "other"), Duration::ZERO);
    }

    #[test]
    fn remembered_credentials_are_keyed_by_both_parts() {
        let g = LoginGuard::new(2);
        let fp = g.fingerprint("admin", "pw");
        assert_eq!(g.recall(fp), None);
        g.remember(fp, "admin");
        assert_eq!(g.recall(fp).as_deref(), Some("admin"));
        assert_eq!(g.recall(g.fingerprint("admin", "pw2")), None);
        assert_eq!(g.recall(g.fingerprint("admin2", "pw")), None);
        // Another guard (another process) has other keys.
        assert_ne!(LoginGuard::new(2).fingerprint("admin", "pw"), fp);
    }

    #[tokio::test]
    async fn permits_cap_concurrent_verifications() {
        let g = LoginGuard::new(2);
        let p1 = g.permit().await;
        let _p2 = g.permit().await;
        let third = tokio::time::timeout(Duration::from_millis(50), g.permit()).await;
        assert!(third.is_err(), "a third verification must wait");
        drop(p1);
        let third = tokio::time::timeout(Duration::from_millis(500), g.permit()).await;
        assert!(third.is_ok());
    }
}
