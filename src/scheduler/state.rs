//! What the scheduler remembers of each schedule's last firing ([`ScheduleState`]): persisted
//! by the application (in the store) so misfires and `lastRun*` survive a restart; kept in
//! memory for tests.

use std::collections::HashMap;

use parking_lot::Mutex;

/// What is remembered of a schedule's last firing: when, the run it started (if any) and its
/// outcome (`STARTED`, `SKIPPED_BUSY`, `FAILED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFiring {
    pub at: i64,
    pub run_id: Option<String>,
    pub status: String,
}

/// Persistent per-schedule memory of the last firing, for misfire detection and for the
/// `lastRun*` fields across restarts.
pub trait ScheduleState: Send + Sync {
    fn last_firing(&self, name: &str) -> Option<LastFiring>;
    fn record_firing(&self, name: &str, firing: &LastFiring);

    fn last_fire(&self, name: &str) -> Option<i64> {
        self.last_firing(name).map(|f| f.at)
    }
}

/// In-memory [`ScheduleState`] for tests; share one `Arc` across "restarts".
#[derive(Debug, Default)]
pub struct MemoryScheduleState {
    fires: Mutex<HashMap<String, LastFiring>>,
}

impl MemoryScheduleState {
    pub fn new() -> MemoryScheduleState {
        MemoryScheduleState::default()
    }

    /// Records a firing that started `run_id` (or nothing), as a test's fixture.
    pub fn record_fire(&self, name: &str, at: i64, run_id: Option<&str>) {
        self.record_firing(
            name,
            &LastFiring {
                at,
                run_id: run_id.map(str::to_string),
                status: if run_id.is_some() {
                    "STARTED"
                } else {
                    "FAILED"
                }
                .into(),
            },
        );
    }

    /// The id of the last run recorded for `name`.
    pub fn last_run_id(&self, name: &str) -> Option<String> {
        self.fires.lock().get(name).and_then(|f| f.run_id.clone())
    }
}

impl ScheduleState for MemoryScheduleState {
    fn last_firing(&self, name: &str) -> Option<LastFiring> {
        self.fires.lock().get(name).cloned()
    }

    fn record_firing(&self, name: &str, firing: &LastFiring) {
        self.fires.lock().insert(name.to_string(), firing.clone());
    }
}
