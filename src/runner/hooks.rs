//! Test-only hooks, read once from the environment: they let tests put a run in a known
//! state without relying on timing or on the input being big. Unset (production), each hook
//! costs one branch on an already-loaded value.
//!
//! * `RECOND_TEST_PANIC_ON_ID=<id>`: the worker panics when it reaches the source or target
//!   object with this id (tests of panic containment).
//! * `RECOND_TEST_HOLD_DIR=<dir>`: while the file `<dir>/gate` exists, a worker that has read
//!   and assessed a unit, and is about to write it, first writes `<dir>/held` (the unit's
//!   object ids, one a line) and then waits until `gate` is removed. Tests use it to write
//!   over REST to objects a run is holding. A gate holding a number `k > 0` lets `k` more
//!   units through first (counting it down), so a test can stop a run after some units
//!   committed without relying on the input being big.
//!   With the same folder, while `<dir>/offer-gate` exists, the starter of a clustered run
//!   that has just offered its first chunk of pages writes `<dir>/offered` and waits (a node
//!   stopped while it still reads its source).
//! * `RECOND_TEST_ABANDON_PAGE=<n>`: the first time a node claims page `n` of a clustered
//!   run, it processes the first half of the page's objects and then gives the page up
//!   without completing it, as a node that dies mid-page would; the page is redone once its
//!   lease runs out.
//! * `RECOND_TEST_PAGE_LEASE_MS=<ms>`: the lease of a clustered run's pages (so an abandoned
//!   page comes back within a test's patience).
//! * `RECOND_TEST_RUN_LEASE_MS=<ms>`: the lease of a run's cluster-wide claim (and the node's
//!   heartbeat), so the runs of a node killed by a test are found by the survivors soon.
//! * [`CommitLog`] (an API, not a variable: `Runner::record_commit_order`): records, per
//!   runner, the order in which units committed their objects, so a model test can replay
//!   them through a reference implementation in that order. Off, a commit pays one check of
//!   an unset `OnceLock`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct TestHooks {
    panic_on_id: Option<String>,
    hold_dir: Option<PathBuf>,
    /// Serialises the count-down of a numbered gate between worker threads.
    gate_lock: Mutex<()>,
    abandon_page: Option<u64>,
    /// The page to abandon was abandoned already (it is abandoned once).
    abandoned: AtomicBool,
    page_lease: Option<Duration>,
    run_lease: Option<Duration>,
}

static HOOKS: OnceLock<TestHooks> = OnceLock::new();

/// The hooks of this process (read from the environment on first use).
pub fn get() -> &'static TestHooks {
    HOOKS.get_or_init(|| TestHooks {
        panic_on_id: std::env::var("RECOND_TEST_PANIC_ON_ID")
            .ok()
            .filter(|s| !s.is_empty()),
        hold_dir: std::env::var_os("RECOND_TEST_HOLD_DIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        gate_lock: Mutex::new(()),
        abandon_page: std::env::var("RECOND_TEST_ABANDON_PAGE")
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        abandoned: AtomicBool::new(false),
        page_lease: std::env::var("RECOND_TEST_PAGE_LEASE_MS")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_millis),
        run_lease: std::env::var("RECOND_TEST_RUN_LEASE_MS")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_millis),
    })
}

impl TestHooks {
    /// Panics if `id` is the configured panic id (a deliberate bug for tests).
    pub fn maybe_panic(&self, id: &str) {
        if self.panic_on_id.as_deref() == Some(id) {
            panic!("test hook: deliberate panic at object {id}");
        }
    }

    /// Whether a node that just claimed page `number` should abandon it (true once).
    pub fn abandon_page(&self, number: u64) -> bool {
        self.abandon_page == Some(number) && !self.abandoned.swap(true, Ordering::SeqCst)
    }

    /// The run-claim lease set for tests, if any.
    pub fn run_lease(&self) -> Option<Duration> {
        self.run_lease
    }

    /// The page lease set for tests, if any.
    pub fn page_lease(&self) -> Option<Duration> {
        self.page_lease
    }

    /// Holds a clustered run's starter after its first chunk of offered pages while
    /// `offer-gate` exists in the hold folder.
    pub fn hold_after_offer(&self) {
        let Some(dir) = &self.hold_dir else { return };
        let gate = dir.join("offer-gate");
        if !gate.exists() {
            return;
        }
        let tmp = dir.join("offered.tmp");
        if std::fs::write(&tmp, "offered").is_ok() {
            let _ = std::fs::rename(&tmp, dir.join("offered"));
        }
        while gate.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Holds the calling worker between its reads and its write while the gate exists.
    pub fn hold_before_write(&self, ids: &mut dyn Iterator<Item = String>) {
        let Some(dir) = &self.hold_dir else { return };
        let gate = dir.join("gate");
        if !gate.exists() || pass_numbered_gate(&gate, &self.gate_lock) {
            return;
        }
        let list: Vec<String> = ids.collect();
        write_marker(dir, &list.join("\n"));
        while gate.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A gate file holding `k > 0` lets this unit through and counts down to `k - 1`.
fn pass_numbered_gate(gate: &Path, lock: &Mutex<()>) -> bool {
    let _one_at_a_time = lock.lock();
    let left = std::fs::read_to_string(gate)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if left == 0 {
        return false;
    }
    // Written whole, then renamed, so the test never reads half a number.
    let tmp = gate.with_extension("tmp");
    std::fs::write(&tmp, (left - 1).to_string()).is_ok() && std::fs::rename(&tmp, gate).is_ok()
}

fn write_marker(dir: &Path, text: &str) {
    // Written whole, then renamed, so a test never reads half a list.
    let tmp = dir.join("held.tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("held"));
    }
}

/// One committed unit: its run, its phase and the ids of the objects it carried (source ids
/// in the source phase, target ids in the target phase), in the order they were staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub run: String,
    pub phase: &'static str,
    pub ids: Vec<String>,
}

/// The commit order of a runner's units (test-only, see the module doc). While it is on,
/// a unit's store write and its record happen under one lock, so the recorded order is the
/// order in which the batches were applied, not a guess from threads racing to log.
#[derive(Debug, Default)]
pub struct CommitLog {
    order: Mutex<Vec<Committed>>,
}

impl CommitLog {
    /// Applies a unit through `apply` and records it if the write succeeded.
    pub(crate) fn around<R, E>(
        &self,
        run: &str,
        phase: &'static str,
        ids: &[String],
        apply: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, E> {
        let mut order = self.order.lock();
        let applied = apply()?;
        if !ids.is_empty() {
            order.push(Committed {
                run: run.to_string(),
                phase,
                ids: ids.to_vec(),
            });
        }
        Ok(applied)
    }

    /// The units committed so far by runs with id `run`, in commit order.
    pub fn of_run(&self, run: &str) -> Vec<Committed> {
        self.order
            .lock()
            .iter()
            .filter(|c| c.run == run)
            .cloned()
            .collect()
    }
}
