//! The scheduler: decides when each configured schedule fires and hands the firing to a
//! [`Launcher`]; knows nothing about runs, the store or HTTP.
//!
//! Files: `spec` (configured schedules → [`ScheduleSpec`]), `timing` (cron and simple
//! triggers, startTime/endTime), `cron` (expressions, on croner), `zone` (time zones, on jiff),
//! `state` (the last firing), `clock`, `jobs` (the job JSON), `script` (running a script
//! schedule); this file holds the firing core and the run loop.
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
//! * with [`FiringClaims`] (nodes sharing a repository), a scheduled or misfire firing is
//!   claimed cluster-wide under its schedule's name and fire time before it launches: every
//!   node computes the same fire times, so one node fires each tick; the others skip it and
//!   record nothing (the firing node records it);
//! * scheduled and misfire firings are always recorded (even when skipped or failed) at the
//!   time they happened, so the next startup sees exactly the fire times after it.

mod clock;
pub mod cron;
mod jobs;
mod script;
mod spec;
mod state;
mod timing;
mod zone;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cron::{Cron, CronError};
pub use script::run_script;
pub use spec::{
    build_spec, build_spec_in, parse_idm_schedule_file, parse_table, IdmSchedule, Invoker,
    MisfirePolicy, RawSchedule, ScheduleSpec, ScheduledScript,
};
pub use state::{LastFiring, MemoryScheduleState, ScheduleState};
pub use timing::{FireRule, Timing, REPEAT_FOREVER};
pub use zone::{TimeZone, ZoneError};

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

/// Cluster-wide claims of firings: implemented over the cluster coordinator by the
/// application. Without one (tests, a scheduler of its own) every firing proceeds.
pub trait FiringClaims: Send + Sync {
    /// Whether this node fires schedule `name` at `fire_time` (its scheduled time, seconds):
    /// true for exactly one of the nodes that ask.
    fn claim_firing(&self, name: &str, fire_time: i64) -> bool;
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
    /// When the schedules were loaded: simple triggers without `startTime` count from it.
    anchor: i64,
    claims: Option<Arc<dyn FiringClaims>>,
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
                next_fire: s.enabled.then(|| s.rule.first_from(now, now)).flatten(),
                last: state.last_firing(&s.name),
            })
            .collect();
        Scheduler {
            specs,
            clock,
            launcher,
            state,
            jobs: Mutex::new(jobs),
            anchor: now,
            claims: None,
        }
    }

    /// Claims every scheduled and misfire firing through `claims` before it launches.
    pub fn with_firing_claims(mut self, claims: Arc<dyn FiringClaims>) -> Scheduler {
        self.claims = Some(claims);
        self
    }

    /// Whether this node fires schedule `i` at `fire_time` (always, without claims).
    fn claimed(&self, i: usize, fire_time: i64) -> bool {
        let Some(claims) = &self.claims else {
            return true;
        };
        let name = &self.specs[i].name;
        let mine = claims.claim_firing(name, fire_time);
        if !mine {
            tracing::debug!(schedule = %name, fire_time, "firing claimed by another node");
        }
        mine
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
            // A simple trigger without startTime starts counting when it is loaded: nothing of
            // its cadence before this start can have been missed.
            if matches!(spec.rule.timing, Timing::Simple { .. }) && spec.rule.start.is_none() {
                continue;
            }
            let Some(last) = self.state.last_fire(&spec.name) else {
                continue;
            };
            let Some(missed) = spec
                .rule
                .next_after(last, self.anchor)
                .filter(|t| *t <= now)
            else {
                continue;
            };
            // Claim the firing first, like tick does.
            self.jobs.lock()[i].next_fire = spec.rule.next_after(now, self.anchor);
            match spec.misfire {
                MisfirePolicy::DoNothing => tracing::info!(
                    schedule = %spec.name,
                    missed = %crate::ids::iso_millis(missed.saturating_mul(1000)),
                    "misfire skipped (misfirePolicy doNothing)"
                ),
                MisfirePolicy::FireAndProceed if !self.claimed(i, missed) => {}
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

    /// Fires every enabled schedule whose next fire time is at or before now, once each (and,
    /// with claims, only the firings this node claimed).
    pub fn tick(&self) -> Vec<(String, LaunchOutcome)> {
        let now = self.clock.now();
        let mut due = Vec::new();
        {
            let mut jobs = self.jobs.lock();
            for (i, (spec, job)) in self.specs.iter().zip(jobs.iter_mut()).enumerate() {
                if !spec.enabled {
                    continue;
                }
                let fresh = spec.rule.next_after(now, self.anchor);
                match job.next_fire {
                    Some(t) if t <= now => {
                        job.next_fire = fresh;
                        due.push((i, t));
                    }
                    // The clock went backwards: wait for the schedule's real next fire time
                    // instead of the one computed from the later time.
                    Some(t) if fresh.is_some_and(|f| f < t) => job.next_fire = fresh,
                    _ => {}
                }
            }
        }
        due.into_iter()
            .filter(|(i, t)| self.claimed(*i, *t))
            .map(|(i, _)| {
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
mod tests;
#[cfg(test)]
mod tests_spec;
