//! The scheduler: decides when each configured schedule fires and hands the firing to a
//! [`Launcher`]; knows nothing about runs, the store or HTTP.
//!
//! Schedules come from recon.toml `[[schedules]]` or IDM `schedule-*.json` files
//! ([`parse_idm_schedule_file`] → [`IdmSchedule`] / [`RawSchedule`] → [`build_spec`] → [`ScheduleSpec`]).
//!
//! Invariants:
//! * all time comes from a [`Clock`] and all effects go through [`Launcher`] and
//!   [`ScheduleState`], so the core ([`Scheduler::startup`], [`Scheduler::tick`]) is
//!   deterministic and testable without sleeping; only [`Scheduler::run_loop`] waits;
//! * a schedule fires at most once per tick however many fire times passed, and its next fire
//!   time is always recomputed from "now": firings never queue up (IDM's
//!   `concurrentExecution: false` — a busy mapping makes the firing a logged skip);
//! * a firing is claimed (next fire time advanced) under the lock before the launcher is called
//!   and the lock is never held across a launch, so concurrent ticks cannot double-fire and a
//!   launcher that calls back into the scheduler cannot deadlock;
//! * misfires (fire times missed while the server was down) are judged only from the persisted
//!   last fire time, once, in [`Scheduler::startup`]; a schedule that never fired has none;
//! * scheduled and misfire firings are always recorded (even when skipped or failed) at the
//!   time they happened, so the next startup sees exactly the fire times after it.

mod clock;
pub mod cron;
mod jobs;
mod spec;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cron::{Cron, CronError, TimeZone};
#[cfg(test)]
use spec::parse_reconcile_schedule;
pub use spec::{
    build_spec, parse_idm_schedule_file, IdmSchedule, MisfirePolicy, RawSchedule, ScheduleSpec,
};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

/// The longest the run loop sleeps before recomputing, so clock changes are noticed.
const MAX_SLEEP_SECS: i64 = 60;

/// Result of asking the launcher to start a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchOutcome {
    /// Started; the new run's id.
    Started(String),
    /// Not started because the mapping already runs; the active run's id.
    Busy(String),
    /// Not started; why.
    Failed(String),
}

/// Why a launch happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Scheduled,
    Misfire,
    Manual,
}

/// Starts reconciliations; implemented over the run launcher by the application.
pub trait Launcher: Send + Sync {
    fn launch(&self, spec: &ScheduleSpec, trigger: Trigger) -> LaunchOutcome;
}

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

/// Live state of one schedule. `last` describes the last firing attempt (scheduled, misfire
/// or manual), whatever its outcome.
#[derive(Debug, Default)]
struct JobState {
    pub(super) next_fire: Option<i64>,
    pub(super) last: Option<LastFiring>,
}

/// Fires schedules through a [`Launcher`]; see the module docs for the invariants.
pub struct Scheduler {
    specs: Vec<ScheduleSpec>,
    clock: Arc<dyn Clock>,
    launcher: Arc<dyn Launcher>,
    state: Arc<dyn ScheduleState>,
    /// Parallel to `specs`.
    jobs: Mutex<Vec<JobState>>,
}

impl Scheduler {
    pub fn new(
        specs: Vec<ScheduleSpec>,
        clock: Arc<dyn Clock>,
        launcher: Arc<dyn Launcher>,
        state: Arc<dyn ScheduleState>,
    ) -> Scheduler {
        let now = clock.now();
        let jobs = specs
            .iter()
            .map(|s| JobState {
                next_fire: s.enabled.then(|| s.cron.next_after(now, &s.tz)).flatten(),
                last: state.last_firing(&s.name),
            })
            .collect();
        Scheduler {
            specs,
            clock,
            launcher,
            state,
            jobs: Mutex::new(jobs),
        }
    }

    /// The schedules, in configuration order.
    pub fn specs(&self) -> &[ScheduleSpec] {
        &self.specs
    }

    /// Applies the misfire policy of every enabled schedule that missed a fire time in
    /// (last recorded fire, now]. Call once, before the first [`tick`](Self::tick).
    pub fn startup(&self) {
        let now = self.clock.now();
        for (i, spec) in self.specs.iter().enumerate() {
            if !spec.enabled {
                continue;
            }
            let Some(last) = self.state.last_fire(&spec.name) else {
                continue;
            };
            let Some(missed) = spec.cron.next_after(last, &spec.tz).filter(|t| *t <= now) else {
                continue;
            };
            // Claim the firing first, like tick does.
            self.jobs.lock()[i].next_fire = spec.cron.next_after(now, &spec.tz);
            match spec.misfire {
                MisfirePolicy::DoNothing => tracing::info!(
                    schedule = %spec.name,
                    missed = %crate::ids::iso_millis(missed.saturating_mul(1000)),
                    "misfire skipped (misfirePolicy doNothing)"
                ),
                MisfirePolicy::FireAndProceed => {
                    tracing::info!(
                        schedule = %spec.name,
                        missed = %crate::ids::iso_millis(missed.saturating_mul(1000)),
                        "misfire: firing once now (misfirePolicy fireAndProceed)"
                    );
                    self.fire(i, Trigger::Misfire, now);
                }
            }
        }
    }

    /// Fires every enabled schedule whose next fire time is at or before now, once each.
    pub fn tick(&self) -> Vec<(String, LaunchOutcome)> {
        let now = self.clock.now();
        let mut due = Vec::new();
        {
            let mut jobs = self.jobs.lock();
            for (i, (spec, job)) in self.specs.iter().zip(jobs.iter_mut()).enumerate() {
                if !spec.enabled {
                    continue;
                }
                let fresh = spec.cron.next_after(now, &spec.tz);
                match job.next_fire {
                    Some(t) if t <= now => {
                        job.next_fire = fresh;
                        due.push(i);
                    }
                    // The clock went backwards: wait for the schedule's real next fire time
                    // instead of the one computed from the later time.
                    Some(t) if fresh.is_some_and(|f| f < t) => job.next_fire = fresh,
                    _ => {}
                }
            }
        }
        due.into_iter()
            .map(|i| {
                let outcome = self.fire(i, Trigger::Scheduled, now);
                (self.specs[i].name.clone(), outcome)
            })
            .collect()
    }

    /// The earliest next fire time among enabled schedules.
    pub fn next_wakeup(&self) -> Option<i64> {
        self.jobs.lock().iter().filter_map(|j| j.next_fire).min()
    }

    /// Launches schedule `name` now (IDM's `_action=trigger`), enabled or not; None if unknown.
    pub fn trigger(&self, name: &str) -> Option<LaunchOutcome> {
        let i = self.specs.iter().position(|s| s.name == name)?;
        Some(self.fire(i, Trigger::Manual, self.clock.now()))
    }

    /// IDM-like job objects of all schedules, in configuration order.
    pub fn jobs(&self) -> Vec<Value> {
        let jobs = self.jobs.lock();
        self.specs
            .iter()
            .zip(jobs.iter())
            .map(|(s, j)| jobs::job_json(s, j))
            .collect()
    }

    /// The IDM-like job object of schedule `name`.
    pub fn job(&self, name: &str) -> Option<Value> {
        let i = self.specs.iter().position(|s| s.name == name)?;
        let jobs = self.jobs.lock();
        Some(jobs::job_json(&self.specs[i], jobs.get(i)?))
    }

    /// Launches schedule `i`, logs, records and remembers the outcome. Called without the lock.
    fn fire(&self, i: usize, trigger: Trigger, now: i64) -> LaunchOutcome {
        let spec = &self.specs[i];
        let outcome = self.launcher.launch(spec, trigger);
        let (status, run_id) = match &outcome {
            LaunchOutcome::Started(id) => {
                tracing::info!(schedule = %spec.name, mapping = %spec.mapping, run = %id,
                    ?trigger, "scheduled reconciliation started");
                ("STARTED", Some(id.as_str()))
            }
            LaunchOutcome::Busy(active) => {
                tracing::info!(schedule = %spec.name, mapping = %spec.mapping, active = %active,
                    ?trigger, "skipped: mapping busy");
                ("SKIPPED_BUSY", None)
            }
            LaunchOutcome::Failed(why) => {
                tracing::warn!(schedule = %spec.name, mapping = %spec.mapping, error = %why,
                    ?trigger, "scheduled reconciliation could not start");
                ("FAILED", None)
            }
        };
        // A manual trigger that did not start anything is not a firing of the schedule.
        let firing = LastFiring {
            at: now,
            run_id: run_id.map(str::to_string),
            status: status.to_string(),
        };
        if trigger != Trigger::Manual || run_id.is_some() {
            self.state.record_firing(&spec.name, &firing);
        }
        if let Some(job) = self.jobs.lock().get_mut(i) {
            job.last = Some(firing);
        }
        outcome
    }

    /// Runs the scheduler until `shutdown` becomes true (or its sender goes away): applies
    /// misfires, then sleeps until the next fire time (at most a minute at a time) and ticks.
    pub async fn run_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if *shutdown.borrow_and_update() {
            return;
        }
        let me = Arc::clone(&self);
        if let Err(e) = tokio::task::spawn_blocking(move || me.startup()).await {
            tracing::error!(error = %e, "scheduler startup failed");
        }
        loop {
            let now = self.clock.now();
            let wait = self
                .next_wakeup()
                .map_or(MAX_SLEEP_SECS, |t| t.saturating_sub(now))
                .clamp(0, MAX_SLEEP_SECS);
            if wait > 0 {
                // wait is 1..=60, so the cast is lossless.
                let sleep = tokio::time::sleep(Duration::from_secs(wait as u64));
                tokio::select! {
                    _ = sleep => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow_and_update() {
                            break;
                        }
                        continue;
                    }
                }
            }
            if *shutdown.borrow_and_update() {
                break;
            }
            let me = Arc::clone(&self);
            if let Err(e) = tokio::task::spawn_blocking(move || me.tick()).await {
                tracing::error!(error = %e, "scheduler tick failed");
            }
        }
        tracing::debug!("scheduler stopped");
    }
}

#[cfg(test)]
// Tests may unwrap: a failure there is the test's report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::cron::days_from_civil;
    use super::*;
    use serde_json::json;

    fn ts(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s)
    }

    /// Records launches; answers with `mode`.
    struct FakeLauncher {
        calls: Mutex<Vec<(String, Trigger)>>,
        mode: Mutex<LaunchOutcome>,
        sent: Option<tokio::sync::mpsc::UnboundedSender<Trigger>>,
    }

    impl FakeLauncher {
        fn new() -> Arc<FakeLauncher> {
            Arc::new(FakeLauncher {
                calls: Mutex::new(Vec::new()),
                mode: Mutex::new(LaunchOutcome::Started(String::new())),
                sent: None,
            })
        }

        fn set(&self, mode: LaunchOutcome) {
            *self.mode.lock() = mode;
        }

        fn calls(&self) -> Vec<(String, Trigger)> {
            self.calls.lock().clone()
        }
    }

    impl Launcher for FakeLauncher {
        fn launch(&self, spec: &ScheduleSpec, trigger: Trigger) -> LaunchOutcome {
            let mut calls = self.calls.lock();
            calls.push((spec.name.clone(), trigger));
            if let Some(tx) = &self.sent {
                let _ = tx.send(trigger);
            }
            match &*self.mode.lock() {
                LaunchOutcome::Started(_) => LaunchOutcome::Started(format!("run-{}", calls.len())),
                other => other.clone(),
            }
        }
    }

    fn raw(name: &str, cron: &str) -> RawSchedule {
        RawSchedule {
            name: name.into(),
            schedule: cron.into(),
            mapping: format!("{name}Mapping"),
            live_sync: None,
            enabled: None,
            persist_associations: false,
            analyze: false,
            time_zone: None,
            misfire_policy: None,
        }
    }

    fn spec(name: &str, cron: &str) -> ScheduleSpec {
        build_spec(raw(name, cron)).unwrap()
    }

    struct Rig {
        clock: Arc<ManualClock>,
        launcher: Arc<FakeLauncher>,
        state: Arc<MemoryScheduleState>,
        sched: Scheduler,
    }

    fn rig(specs: Vec<ScheduleSpec>, now: i64) -> Rig {
        let clock = Arc::new(ManualClock::new(now));
        let launcher = FakeLauncher::new();
        let state = Arc::new(MemoryScheduleState::new());
        let sched = Scheduler::new(specs, clock.clone(), launcher.clone(), state.clone());
        Rig {
            clock,
            launcher,
            state,
            sched,
        }
    }

    /// A new scheduler over the same state, as after a restart at `now`.
    fn restart(old: &Rig, specs: Vec<ScheduleSpec>, now: i64) -> Rig {
        let clock = Arc::new(ManualClock::new(now));
        let launcher = FakeLauncher::new();
        let sched = Scheduler::new(specs, clock.clone(), launcher.clone(), old.state.clone());
        Rig {
            clock,
            launcher,
            state: old.state.clone(),
            sched,
        }
    }

    #[test]
    fn tick_fires_when_due_and_not_before() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        let r = rig(vec![spec("hr", "0 0/15 * * * ?")], t0);
        r.sched.startup();
        assert!(r.sched.tick().is_empty());
        assert_eq!(r.sched.next_wakeup(), Some(ts(2024, 3, 10, 10, 15, 0)));
        r.clock.set(ts(2024, 3, 10, 10, 14, 59));
        assert!(r.sched.tick().is_empty());
        r.clock.set(ts(2024, 3, 10, 10, 15, 0));
        let fired = r.sched.tick();
        assert_eq!(
            fired,
            vec![("hr".to_string(), LaunchOutcome::Started("run-1".into()))]
        );
        assert_eq!(r.launcher.calls(), vec![("hr".into(), Trigger::Scheduled)]);
        assert!(r.sched.tick().is_empty(), "fires once per fire time");
        assert_eq!(r.sched.next_wakeup(), Some(ts(2024, 3, 10, 10, 30, 0)));
        assert_eq!(r.state.last_fire("hr"), Some(ts(2024, 3, 10, 10, 15, 0)));
        assert_eq!(r.state.last_run_id("hr").as_deref(), Some("run-1"));
    }

    #[test]
    fn at_most_once_per_tick_after_a_long_gap() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        let r = rig(vec![spec("hr", "0 0/15 * * * ?")], t0);
        r.clock.advance(3 * 3600);
        assert_eq!(r.sched.tick().len(), 1);
        assert!(r.sched.tick().is_empty());
        assert_eq!(r.launcher.calls().len(), 1);
        assert_eq!(r.sched.next_wakeup(), Some(ts(2024, 3, 10, 13, 15, 0)));
    }

    #[test]
    fn busy_is_skipped_and_advances() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        let r = rig(vec![spec("hr", "0 0/15 * * * ?")], t0);
        r.launcher.set(LaunchOutcome::Busy("active-7".into()));
        r.clock.set(ts(2024, 3, 10, 10, 15, 0));
        assert_eq!(
            r.sched.tick(),
            vec![("hr".to_string(), LaunchOutcome::Busy("active-7".into()))]
        );
        assert_eq!(r.sched.next_wakeup(), Some(ts(2024, 3, 10, 10, 30, 0)));
        assert!(r.sched.tick().is_empty());
        let job = r.sched.job("hr").unwrap();
        assert_eq!(job["lastRunStatus"], "SKIPPED_BUSY");
        assert_eq!(job["lastRunId"], Value::Null);
        assert_eq!(job["lastRunDate"], "2024-03-10T10:15:00.000Z");
        // The skip counts as the firing: no misfire for it after a restart.
        assert_eq!(r.state.last_fire("hr"), Some(ts(2024, 3, 10, 10, 15, 0)));
        r.launcher.set(LaunchOutcome::Failed("store full".into()));
        r.clock.set(ts(2024, 3, 10, 10, 30, 0));
        assert_eq!(
            r.sched.tick(),
            vec![("hr".to_string(), LaunchOutcome::Failed("store full".into()))]
        );
        assert_eq!(r.sched.job("hr").unwrap()["lastRunStatus"], "FAILED");
    }

    #[test]
    fn manual_trigger() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        let mut off = spec("off", "0 0 0 * * ?");
        off.enabled = false;
        let r = rig(vec![spec("hr", "0 0/15 * * * ?"), off], t0);
        assert_eq!(
            r.sched.trigger("hr"),
            Some(LaunchOutcome::Started("run-1".into()))
        );
        assert_eq!(r.sched.trigger("nope"), None);
        assert_eq!(
            r.sched.trigger("off"),
            Some(LaunchOutcome::Started("run-2".into()))
        );
        assert_eq!(
            r.launcher.calls(),
            vec![
                ("hr".into(), Trigger::Manual),
                ("off".into(), Trigger::Manual)
            ]
        );
        // The schedule itself is unchanged.
        assert_eq!(r.sched.next_wakeup(), Some(ts(2024, 3, 10, 10, 15, 0)));
        let job = r.sched.job("hr").unwrap();
        assert_eq!(job["lastRunId"], "run-1");
        assert_eq!(job["lastRunStatus"], "STARTED");
        // A busy manual trigger is reported but not recorded as a firing.
        r.launcher.set(LaunchOutcome::Busy("run-1".into()));
        r.clock.advance(10);
        assert_eq!(
            r.sched.trigger("hr"),
            Some(LaunchOutcome::Busy("run-1".into()))
        );
        assert_eq!(r.state.last_fire("hr"), Some(t0));
    }

    #[test]
    fn misfire_fire_and_proceed_fires_once_after_restart() {
        let t0 = ts(2024, 3, 10, 9, 59, 0);
        let specs = || vec![spec("hr", "0 0 * * * ?")];
        let first = rig(specs(), t0);
        first.sched.startup();
        first.clock.set(ts(2024, 3, 10, 10, 0, 0));
        assert_eq!(first.sched.tick().len(), 1);
        // Down from 10:00:00 until 13:20; 11:00, 12:00 and 13:00 were missed.
        let second = restart(&first, specs(), ts(2024, 3, 10, 13, 20, 0));
        let job = second.sched.job("hr").unwrap();
        assert_eq!(job["lastRunDate"], "2024-03-10T10:00:00.000Z");
        assert_eq!(job["lastRunId"], "run-1");
        assert_eq!(job["lastRunStatus"], "STARTED");
        second.sched.startup();
        assert_eq!(
            second.launcher.calls(),
            vec![("hr".into(), Trigger::Misfire)]
        );
        assert!(second.sched.tick().is_empty());
        second.sched.startup();
        assert_eq!(second.launcher.calls().len(), 1, "startup is idempotent");
        assert_eq!(second.sched.next_wakeup(), Some(ts(2024, 3, 10, 14, 0, 0)));
        second.clock.set(ts(2024, 3, 10, 14, 0, 0));
        assert_eq!(second.sched.tick().len(), 1);
        // A restart before the next fire time is not a misfire.
        let third = restart(&second, specs(), ts(2024, 3, 10, 14, 30, 0));
        third.sched.startup();
        assert!(third.launcher.calls().is_empty());
    }

    #[test]
    fn misfire_do_nothing_skips() {
        let t0 = ts(2024, 3, 10, 10, 0, 0);
        let specs = || {
            let mut s = spec("hr", "0 0 * * * ?");
            s.misfire = MisfirePolicy::DoNothing;
            vec![s]
        };
        let first = rig(specs(), t0);
        first.state.record_fire("hr", t0, Some("run-0"));
        let second = restart(&first, specs(), ts(2024, 3, 10, 13, 20, 0));
        second.sched.startup();
        assert!(second.sched.tick().is_empty());
        assert!(second.launcher.calls().is_empty());
        assert_eq!(second.sched.next_wakeup(), Some(ts(2024, 3, 10, 14, 0, 0)));
    }

    #[test]
    fn never_fired_has_no_misfire() {
        let r = rig(vec![spec("hr", "0 0 * * * ?")], ts(2024, 3, 10, 13, 20, 0));
        r.sched.startup();
        assert!(r.sched.tick().is_empty());
        assert!(r.launcher.calls().is_empty());
    }

    #[test]
    fn disabled_schedules_never_fire() {
        let t0 = ts(2024, 3, 10, 10, 0, 0);
        let mut off = spec("off", "* * * * * ?");
        off.enabled = false;
        let r = rig(vec![off], t0);
        r.state.record_fire("off", t0 - 86_400, None);
        r.sched.startup();
        for _ in 0..5 {
            r.clock.advance(3600);
            assert!(r.sched.tick().is_empty());
        }
        assert!(r.launcher.calls().is_empty());
        assert_eq!(r.sched.next_wakeup(), None);
        assert_eq!(r.sched.job("off").unwrap()["nextRunDate"], Value::Null);
    }

    #[test]
    fn clock_going_backwards_recomputes() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        let r = rig(vec![spec("hr", "0 0/15 * * * ?")], t0);
        r.clock.set(t0 - 86_400);
        assert!(r.sched.tick().is_empty());
        assert_eq!(r.sched.next_wakeup(), Some(ts(2024, 3, 9, 10, 15, 0)));
    }

    #[test]
    fn several_schedules() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        let r = rig(
            vec![spec("a", "0 0/15 * * * ?"), spec("b", "0 10 * * * ?")],
            t0,
        );
        assert_eq!(r.sched.next_wakeup(), Some(ts(2024, 3, 10, 10, 10, 0)));
        r.clock.set(ts(2024, 3, 10, 10, 15, 0));
        let names: Vec<String> = r.sched.tick().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn jobs_json() {
        let t0 = ts(2020, 5, 7, 9, 14, 57);
        let mut rw = raw("hr", "0 0/15 * * * ?");
        rw.time_zone = Some("+02:00".into());
        rw.misfire_policy = Some("doNothing".into());
        rw.persist_associations = true;
        let r = rig(vec![build_spec(rw).unwrap()], t0);
        assert_eq!(
            r.sched.jobs(),
            vec![json!({
                "_id": "hr", "enabled": true, "persisted": true, "schedule": "0 0/15 * * * ?",
                "type": "cron", "misfirePolicy": "doNothing", "timeZone": "+02:00",
                "invokeService": "sync",
                "invokeContext": {"action": "reconcile", "mapping": "hrMapping",
                                  "persistAssociations": true},
                "nextRunDate": "2020-05-07T09:15:00.000Z", "lastRunDate": null,
                "lastRunId": null, "lastRunStatus": null, "concurrentExecution": false,
            })]
        );
        r.clock.set(ts(2020, 5, 7, 9, 15, 0));
        r.sched.tick();
        let job = r.sched.job("hr").unwrap();
        assert_eq!(job["lastRunDate"], "2020-05-07T09:15:00.000Z");
        assert_eq!(job["lastRunId"], "run-1");
        assert_eq!(job["lastRunStatus"], "STARTED");
        assert_eq!(job["nextRunDate"], "2020-05-07T09:30:00.000Z");
        assert_eq!(r.sched.job("nope"), None);
    }

    #[test]
    fn iso8601_format() {
        assert_eq!(
            crate::ids::iso_millis(1_588_842_897_740),
            "2020-05-07T09:14:57.740Z"
        );
        assert_eq!(crate::ids::iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(crate::ids::iso_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            crate::ids::iso_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        let _ = crate::ids::iso_millis(i64::MIN);
        let _ = crate::ids::iso_millis(i64::MAX);
    }

    #[test]
    fn idm_schedule_file() {
        let file = json!({"enabled": true, "type": "cron", "schedule": "0 0/15 * * * ?",
            "persisted": true, "misfirePolicy": "fireAndProceed", "invokeService": "sync",
            "invokeContext": {"action": "reconcile", "mapping": "systemHrAccounts_managedUser"}});
        let r = parse_reconcile_schedule("schedule-hr.json", &file)
            .unwrap()
            .unwrap();
        assert_eq!(
            r,
            RawSchedule {
                name: "hr".into(),
                schedule: "0 0/15 * * * ?".into(),
                mapping: "systemHrAccounts_managedUser".into(),
                live_sync: None,
                enabled: Some(true),
                persist_associations: false,
                analyze: false,
                time_zone: None,
                misfire_policy: Some("fireAndProceed".into()),
            }
        );
        let s = build_spec(r).unwrap();
        assert_eq!(s.misfire, MisfirePolicy::FireAndProceed);
        assert!(s.enabled);
        assert_eq!(s.tz, TimeZone::Utc);
        assert_eq!(s.tz_text, "UTC");

        let full = json!({"schedule": "0 0 2 * * ?", "invokeService": "org.forgerock.openidm.sync",
            "timeZone": "GMT+2", "enabled": false,
            "invokeContext": {"action": "recon", "mapping": "m", "persistAssociations": true,
                              "analyze": true}});
        let r = parse_reconcile_schedule("conf/schedule-nightly.json", &full)
            .unwrap()
            .unwrap();
        assert_eq!(r.name, "nightly");
        assert_eq!(r.enabled, Some(false));
        assert!(r.persist_associations && r.analyze);
        assert_eq!(r.time_zone.as_deref(), Some("GMT+2"));
        assert_eq!(build_spec(r).unwrap().tz, TimeZone::Fixed(7200));

        let not_run = |name: &str, v: &Value| match parse_idm_schedule_file(name, v) {
            Ok(IdmSchedule::NotRun(why)) => why,
            other => panic!("{name}: expected NotRun, got {other:?}"),
        };
        let script = json!({"schedule": "* * * * * ?", "invokeService": "script",
            "invokeContext": {"script": {"type": "text/javascript", "source": "1"}}});
        assert!(not_run("schedule-s.json", &script).contains("\"script\""));
        // liveSync schedules run (IDM's provisioner form, and the sync service with a source).
        let live = json!({"schedule": "* * * * * ?", "invokeService": "provisioner",
            "invokeContext": {"action": "liveSync", "source": "system/ldap/account"}});
        let IdmSchedule::Reconcile(r) =
            parse_idm_schedule_file("schedule-live.json", &live).unwrap()
        else {
            panic!("a liveSync schedule runs")
        };
        assert_eq!(r.live_sync.as_deref(), Some("system/ldap/account"));
        let s = build_spec(r).unwrap();
        let job = jobs::job_json(&s, &JobState::default());
        assert_eq!(job["invokeService"], "provisioner");
        assert_eq!(
            job["invokeContext"],
            json!({"action": "liveSync", "source": "system/ldap/account"})
        );
        let mut sync_source = file.clone();
        sync_source["invokeContext"] =
            json!({"action": "liveSync", "source": "/system/hr/account/"});
        let IdmSchedule::Reconcile(r) =
            parse_idm_schedule_file("schedule-hr.json", &sync_source).unwrap()
        else {
            panic!("a sync-service liveSync schedule runs")
        };
        assert_eq!(r.live_sync.as_deref(), Some("system/hr/account"));
        // The provisioner runs only liveSync; a liveSync without a source, and a disabled
        // schedule recond cannot read, are warnings, never a refusal to start.
        let mut other = live.clone();
        other["invokeContext"]["action"] = json!("test");
        assert!(not_run("schedule-live.json", &other).contains("use \"liveSync\""));
        let mut sync_live = file.clone();
        sync_live["invokeContext"]["action"] = json!("liveSync");
        assert!(not_run("schedule-hr.json", &sync_live).contains("liveSync"));
        let mut off = file.clone();
        off["enabled"] = json!(false);
        off["type"] = json!("simple");
        assert!(not_run("schedule-hr.json", &off).starts_with("disabled"));

        let bad = |patch: Value| {
            let mut v = file.clone();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            parse_reconcile_schedule("schedule-hr.json", &v).unwrap_err()
        };
        let inline = bad(json!({"invokeContext": {"action": "reconcile",
            "mapping": {"name": "x", "source": "a", "target": "b"}}}));
        assert!(inline.starts_with("schedule \"hr\": invokeContext.mapping: inline mapping"));
        assert!(bad(json!({"invokeContext": {"action": "reconcile"}})).contains("is required"));
        assert!(bad(json!({"type": "simple"})).contains("type: \"simple\" is not supported"));
        assert!(bad(json!({"concurrentExecution": true})).contains("concurrentExecution"));
        assert!(bad(json!({"startTime": "2024-01-01T00:00:00"})).contains("startTime"));
        assert!(bad(json!({"enabled": "yes"})).contains("enabled: must be true or false"));
        assert!(bad(json!({"invokeService": 3})).contains("invokeService: must be a string"));
        assert!(bad(json!({"schedule": null})).contains("schedule: is required"));
        assert!(bad(
            json!({"invokeContext": {"action": "reconcile", "mapping": "m",
            "analyze": 1}})
        )
        .contains("invokeContext.analyze: must be true or false"));
        assert!(parse_idm_schedule_file("schedule-hr.json", &json!([1])).is_err());
        assert!(parse_idm_schedule_file("schedule-.json", &file).is_err());
        assert!(parse_idm_schedule_file("schedule-hr.json", &json!({})).is_err());
    }

    #[test]
    fn build_spec_errors_name_the_schedule() {
        let e = build_spec(raw("hr", "0 61 * * * ?")).unwrap_err();
        assert_eq!(
            e,
            "schedule \"hr\": schedule: invalid cron expression \"0 61 * * * ?\": minute value 61 \
             out of range 0-59"
        );
        let mut r = raw("hr", "0 0 * * * ?");
        r.time_zone = Some("Europe/Paris".into());
        let e = build_spec(r).unwrap_err();
        assert!(e.starts_with("schedule \"hr\": timeZone: invalid time zone \"Europe/Paris\""));
        assert!(e.contains("only UTC and fixed offsets"));
        let mut r = raw("hr", "0 0 * * * ?");
        r.misfire_policy = Some("fireOnce".into());
        assert!(build_spec(r)
            .unwrap_err()
            .starts_with("schedule \"hr\": misfirePolicy:"));
        let mut r = raw("hr", "0 0 * * * ?");
        r.mapping = String::new();
        assert!(build_spec(r).unwrap_err().contains("mapping"));
        assert!(build_spec(raw("", "0 0 * * * ?")).is_err());
        assert_eq!(
            MisfirePolicy::parse("doNothing"),
            Some(MisfirePolicy::DoNothing)
        );
        assert_eq!(MisfirePolicy::DoNothing.as_str(), "doNothing");
    }

    fn loop_rig(
        specs: Vec<ScheduleSpec>,
        now: i64,
    ) -> (
        Arc<Scheduler>,
        Arc<ManualClock>,
        tokio::sync::mpsc::UnboundedReceiver<Trigger>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let clock = Arc::new(ManualClock::new(now));
        let launcher = Arc::new(FakeLauncher {
            calls: Mutex::new(Vec::new()),
            mode: Mutex::new(LaunchOutcome::Started(String::new())),
            sent: Some(tx),
        });
        let state = Arc::new(MemoryScheduleState::new());
        let sched = Arc::new(Scheduler::new(specs, clock.clone(), launcher, state));
        (sched, clock, rx)
    }

    /// Guards against a hang only; nothing here depends on how long things take.
    const GUARD: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn run_loop_exits_on_shutdown() {
        let (sched, _clock, _rx) = loop_rig(vec![spec("hr", "0 0 0 1 1 ?")], 0);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(sched.run_loop(rx));
        tx.send(true).unwrap();
        tokio::time::timeout(GUARD, task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn run_loop_exits_when_sender_dropped_or_already_shut_down() {
        let (sched, _clock, _rx) = loop_rig(vec![spec("hr", "0 0 0 1 1 ?")], 0);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(sched.clone().run_loop(rx));
        drop(tx);
        tokio::time::timeout(GUARD, task).await.unwrap().unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(true);
        tokio::time::timeout(GUARD, sched.run_loop(rx))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn run_loop_fires_due_schedule_then_stops() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        let (sched, clock, mut fired) = loop_rig(vec![spec("hr", "0 0/15 * * * ?")], t0);
        // Due as soon as the loop looks.
        clock.set(ts(2024, 3, 10, 10, 15, 0));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(sched.clone().run_loop(rx));
        let trigger = tokio::time::timeout(GUARD, fired.recv()).await.unwrap();
        assert_eq!(trigger, Some(Trigger::Scheduled));
        tx.send(true).unwrap();
        tokio::time::timeout(GUARD, task).await.unwrap().unwrap();
        assert!(fired.try_recv().is_err(), "fired once");
        assert_eq!(sched.next_wakeup(), Some(ts(2024, 3, 10, 10, 30, 0)));
    }
}
