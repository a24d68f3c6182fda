//! Store health: whether the store can be written right now, for `GET /openidm/info/ping`.
//!
//! A watchdog writes a small probe value every [`PROBE_EVERY`] (and flushes it every few
//! probes) on a blocking thread (a probe blocked for [`PROBE_TIMEOUT`] counts as failed); ping reads the last verdict from memory (so it stays cheap and answers inline). While
//! probes fail, ping answers `ACTIVE_NOT_READY` with a `shortDesc` saying why (contract §4).
//!
//! sled keeps an IO error it met while flushing and returns it from every later operation, so a
//! store that hit a full disk stays broken even after space is freed; reopening it in place
//! would mean swapping the database under every handle. recond therefore fails fast: once probes
//! have failed for `[storage] unwritable_exit_secs`, the watchdog asks the server to stop, and
//! it exits with code 1 for its supervisor to restart it. Runs cut short that way are marked
//! COMPLETED_FAILED at the next start, as after any crash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::storage::Store;

/// How often the store is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A probe that has not finished after this long counts as failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct StoreHealth {
    failing: AtomicBool,
    /// When the current run of failures began, and the last failure's text (for the log).
    since: Mutex<Option<(Instant, String)>>,
}

impl StoreHealth {
    /// `None` while the store can be written; else the ping's `shortDesc`.
    pub fn problem(&self) -> Option<String> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        let since = self.since.lock().as_ref().map(|(at, _)| at.elapsed());
        Some(format!(
            "The store cannot be written (for {} s); see the server log",
            since.unwrap_or_default().as_secs()
        ))
    }

    fn record(&self, outcome: Result<(), String>) -> Option<Duration> {
        let mut since = self.since.lock();
        match outcome {
            Ok(()) => {
                if since.take().is_some() {
                    tracing::warn!("the store can be written again");
                }
                self.failing.store(false, Ordering::Relaxed);
                None
            }
            Err(error) => {
                if since.is_none() {
                    tracing::error!(%error, "the store cannot be written; ping answers ACTIVE_NOT_READY");
                }
                let at = since.get_or_insert_with(|| (Instant::now(), String::new()));
                at.1 = error;
                self.failing.store(true, Ordering::Relaxed);
                Some(at.0.elapsed())
            }
        }
    }
}

/// One probe: a small write, flushed to disk when `flush` (every [`FLUSH_EVERY`]th probe, so
/// the watchdog adds little to sled's own background flushing during a large run). Between
/// flushes a full disk still shows: sled keeps the error its flusher met, or the write blocks.
fn probe(store: &Store, flush: bool) -> Result<(), String> {
    store
        .put_meta("health-probe", &crate::ids::now_millis())
        .map_err(|e| e.to_string())?;
    if flush {
        store.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Every how many probes the probe value is flushed.
const FLUSH_EVERY: u64 = 5;

/// Probes until `stop` turns true. When probes have failed for `exit_after` (if any), notifies
/// `fatal` once and returns.
pub async fn watchdog(
    store: Store,
    health: Arc<StoreHealth>,
    exit_after: Option<Duration>,
    fatal: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    // A write to a full disk can block rather than fail: a probe still running after
    // PROBE_TIMEOUT counts as a failure, and no second probe starts until it ends.
    let mut pending: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    let mut probes: u64 = 0;
    loop {
        probes += 1;
        let flush = probes % FLUSH_EVERY == 1;
        let mut handle = pending.take().unwrap_or_else(|| {
            let s = store.clone();
            tokio::task::spawn_blocking(move || probe(&s, flush))
        });
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, &mut handle).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Err(format!("the store probe did not finish: {e}")),
            Err(_) => {
                pending = Some(handle);
                Err(format!(
                    "a write to the store has not completed within {} s",
                    PROBE_TIMEOUT.as_secs()
                ))
            }
        };
        let failing_for = health.record(outcome);
        if let (Some(failing_for), Some(limit)) = (failing_for, exit_after) {
            if failing_for >= limit {
                tracing::error!(
                    seconds = failing_for.as_secs(),
                    "the store has refused writes too long; stopping so that a supervisor restarts recond"
                );
                fatal.notify_one();
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_until_a_probe_succeeds() {
        let h = StoreHealth::default();
        assert_eq!(h.problem(), None);
        assert!(h.record(Err("No space left on device".into())).is_some());
        let p = h.problem().expect("a problem");
        assert!(p.contains("cannot be written"), "{p}");
        assert!(!p.contains("No space"), "the cause stays in the log: {p}");
        assert_eq!(h.record(Ok(())), None);
        assert_eq!(h.problem(), None);
    }
}
