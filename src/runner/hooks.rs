//! Test-only hooks, read once from the environment: they let tests put a run in a known
//! state without relying on timing or on the input being big. Unset (production), each hook
//! costs one branch on an already-loaded value.
//!
//! * `RECOND_TEST_PANIC_ON_ID=<id>`: the worker panics when it reaches the source or target
//!   object with this id (tests of panic containment).
//! * `RECOND_TEST_HOLD_DIR=<dir>`: while the file `<dir>/gate` exists, a worker that has read
//!   and assessed a unit, and is about to write it, first writes `<dir>/held` (the unit's
//!   object ids, one a line) and then waits until `gate` is removed. Tests use it to write
//!   over REST to objects a run is holding.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct TestHooks {
    panic_on_id: Option<String>,
    hold_dir: Option<PathBuf>,
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
    })
}

impl TestHooks {
    /// Panics if `id` is the configured panic id (a deliberate bug for tests).
    pub fn maybe_panic(&self, id: &str) {
        if self.panic_on_id.as_deref() == Some(id) {
            panic!("test hook: deliberate panic at object {id}");
        }
    }

    /// Holds the calling worker between its reads and its write while the gate exists.
    pub fn hold_before_write(&self, ids: &mut dyn Iterator<Item = String>) {
        let Some(dir) = &self.hold_dir else { return };
        let gate = dir.join("gate");
        if !gate.exists() {
            return;
        }
        let list: Vec<String> = ids.collect();
        write_marker(dir, &list.join("\n"));
        while gate.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn write_marker(dir: &Path, text: &str) {
    // Written whole, then renamed, so a test never reads half a list.
    let tmp = dir.join("held.tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join("held"));
    }
}
