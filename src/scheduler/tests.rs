//! Tests of the scheduler core: firing, misfires, simple triggers, time zones, the job
//! JSON and the run loop, all on a manual clock.

// Tests may unwrap: a failure there is the test's report.
#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

/// Unix seconds of a UTC civil time.
fn ts(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> i64 {
    jiff::civil::date(y, mo, d)
        .at(h, mi, s, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second()
}

pub(super) fn parse_reconcile_schedule(
    name: &str,
    v: &Value,
) -> Result<Option<RawSchedule>, String> {
    match parse_idm_schedule_file(name, v)? {
        IdmSchedule::Reconcile(r) => Ok(Some(*r)),
        IdmSchedule::NotRun(_) => Ok(None),
    }
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

pub(super) fn raw(name: &str, cron: &str) -> RawSchedule {
    RawSchedule {
        name: name.into(),
        schedule: cron.into(),
        mapping: format!("{name}Mapping"),
        ..RawSchedule::default()
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

fn simple(name: &str, interval_ms: i64, repeat_count: Option<i64>) -> ScheduleSpec {
    let mut r = raw(name, "");
    r.kind = Some("simple".into());
    r.repeat_interval = Some(interval_ms);
    r.repeat_count = repeat_count;
    build_spec(r).unwrap()
}

#[test]
fn simple_trigger_fires_at_load_then_every_interval() {
    let t0 = ts(2024, 3, 10, 10, 7, 30);
    let r = rig(vec![simple("live", 15_000, Some(2))], t0);
    r.sched.startup();
    // Quartz starts a simple trigger at once.
    assert_eq!(r.sched.tick().len(), 1);
    assert_eq!(r.sched.next_wakeup(), Some(t0 + 15));
    r.clock.advance(14);
    assert!(r.sched.tick().is_empty());
    r.clock.advance(1);
    assert_eq!(r.sched.tick().len(), 1);
    r.clock.advance(15);
    assert_eq!(r.sched.tick().len(), 1);
    // repeatCount 2: three firings in all, then none.
    assert_eq!(r.sched.next_wakeup(), None);
    r.clock.advance(3600);
    assert!(r.sched.tick().is_empty());
    assert_eq!(r.launcher.calls().len(), 3);
    let job = r.sched.job("live").unwrap();
    assert_eq!(job["type"], "simple");
    assert_eq!(job["repeatInterval"], 15_000);
    assert_eq!(job["repeatCount"], 2);
    assert_eq!(job.get("schedule"), None);
}

#[test]
fn simple_trigger_with_start_time_and_restart() {
    let t0 = ts(2024, 3, 10, 10, 0, 0);
    let specs = || {
        let mut r = raw("hr", "");
        r.kind = Some("simple".into());
        r.repeat_interval = Some(3_600_000);
        r.start_time = Some("2024-03-10T11:00:00Z".into());
        r.end_time = Some("2024-03-10T14:00:00Z".into());
        vec![build_spec(r).unwrap()]
    };
    let first = rig(specs(), t0);
    first.sched.startup();
    assert!(first.sched.tick().is_empty(), "not before startTime");
    assert_eq!(first.sched.next_wakeup(), Some(ts(2024, 3, 10, 11, 0, 0)));
    first.clock.set(ts(2024, 3, 10, 11, 0, 0));
    assert_eq!(first.sched.tick().len(), 1);
    // Down from 11:00 to 13:30: 12:00 and 13:00 were missed; fired once, then 14:00.
    let second = restart(&first, specs(), ts(2024, 3, 10, 13, 30, 0));
    second.sched.startup();
    assert_eq!(
        second.launcher.calls(),
        vec![("hr".into(), Trigger::Misfire)]
    );
    assert_eq!(second.sched.next_wakeup(), Some(ts(2024, 3, 10, 14, 0, 0)));
    second.clock.set(ts(2024, 3, 10, 14, 0, 0));
    assert_eq!(second.sched.tick().len(), 1);
    // endTime reached: no more fire times.
    assert_eq!(second.sched.next_wakeup(), None);
}

#[test]
fn named_zone_schedule_follows_daylight_saving() {
    // 02:30 New York time, daily, across the March 2024 change: EST (07:30 UTC), the
    // missing 02:30 fires at 03:00 EDT (07:00 UTC), then EDT (06:30 UTC).
    let mut r = raw("ny", "0 30 2 * * ?");
    r.time_zone = Some("America/New_York".into());
    let t0 = ts(2024, 3, 9, 0, 0, 0);
    let rg = rig(vec![build_spec(r).unwrap()], t0);
    let mut fired = Vec::new();
    for _ in 0..3 {
        let t = rg.sched.next_wakeup().unwrap();
        rg.clock.set(t);
        assert_eq!(rg.sched.tick().len(), 1);
        fired.push(t);
    }
    assert_eq!(
        fired,
        vec![
            ts(2024, 3, 9, 7, 30, 0),
            ts(2024, 3, 10, 7, 0, 0),
            ts(2024, 3, 11, 6, 30, 0)
        ]
    );
    assert_eq!(rg.sched.job("ny").unwrap()["timeZone"], "America/New_York");
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

/// Two nodes on one coordinator (as on a shared repository): each tick fires on one of them,
/// and a missed firing is made up by one node only.
#[test]
fn with_firing_claims_each_tick_fires_on_one_node() {
    let coordinator = Arc::new(crate::cluster::Coordinator::in_process());
    let t0 = ts(2024, 3, 10, 9, 59, 0);
    let specs = || vec![spec("hr", "0 0 * * * ?")];
    // The schedule state is the repository's too: shared.
    let state = Arc::new(MemoryScheduleState::new());
    let node = |name: &str, now: i64| {
        let clock = Arc::new(ManualClock::new(now));
        let launcher = FakeLauncher::new();
        let state = state.clone();
        let sched = Scheduler::new(specs(), clock.clone(), launcher.clone(), state.clone())
            .with_firing_claims(Arc::new(crate::cluster::FiringClaimer {
                coordinator: coordinator.clone(),
                node: name.to_string(),
            }));
        Rig {
            clock,
            launcher,
            state,
            sched,
        }
    };
    let (a, b) = (node("a", t0), node("b", t0));
    for hour in 10..13 {
        for n in [&a, &b] {
            n.clock.set(ts(2024, 3, 10, hour, 0, 0));
        }
        // b asks first at 11:00, a at the other hours: the first to ask fires.
        let (first, second) = if hour == 11 { (&b, &a) } else { (&a, &b) };
        assert_eq!(first.sched.tick().len(), 1, "{hour}:00");
        assert!(second.sched.tick().is_empty(), "{hour}:00 fires once");
    }
    assert_eq!(a.launcher.calls().len(), 2);
    assert_eq!(b.launcher.calls().len(), 1);
    // Both restart after missing 13:00 (fireAndProceed by default): one makes it up.
    let later = ts(2024, 3, 10, 13, 30, 0);
    let (a2, b2) = (node("a", later), node("b", later));
    a2.sched.startup();
    b2.sched.startup();
    assert_eq!(
        a2.launcher.calls().len() + b2.launcher.calls().len(),
        1,
        "the missed 13:00 is made up once"
    );
}
