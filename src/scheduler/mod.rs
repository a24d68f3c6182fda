//! TEMPORARY STUB
#![allow(dead_code, unused_variables)]
use serde_json::Value;
use std::sync::Arc;
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}
pub struct SystemClock;
impl Clock for SystemClock {
    fn now(&self) -> i64 {
        0
    }
}
pub struct ScheduleSpec {
    pub name: String,
    pub mapping: String,
    pub persist_associations: bool,
    pub analyze: bool,
}
pub enum LaunchOutcome {
    Started(String),
    Busy(String),
    Failed(String),
}
#[derive(Debug)]
pub enum Trigger {
    Scheduled,
    Misfire,
    Manual,
}
pub trait Launcher: Send + Sync {
    fn launch(&self, spec: &ScheduleSpec, trigger: Trigger) -> LaunchOutcome;
}
pub trait ScheduleState: Send + Sync {
    fn last_fire(&self, name: &str) -> Option<i64>;
    fn record_fire(&self, name: &str, at: i64, run_id: Option<&str>);
}
pub struct RawSchedule {
    pub name: String,
    pub schedule: String,
    pub mapping: String,
    pub enabled: Option<bool>,
    pub persist_associations: bool,
    pub analyze: bool,
    pub time_zone: Option<String>,
    pub misfire_policy: Option<String>,
}
pub fn parse_idm_schedule_file(name: &str, json: &Value) -> Result<Option<RawSchedule>, String> {
    Ok(None)
}
pub fn build_spec(raw: RawSchedule) -> Result<ScheduleSpec, String> {
    Err(String::new())
}
pub struct Scheduler;
impl Scheduler {
    pub fn new(
        specs: Vec<ScheduleSpec>,
        clock: Arc<dyn Clock>,
        launcher: Arc<dyn Launcher>,
        state: Arc<dyn ScheduleState>,
    ) -> Scheduler {
        Scheduler
    }
    pub fn jobs(&self) -> Vec<Value> {
        vec![]
    }
    pub fn job(&self, name: &str) -> Option<Value> {
        None
    }
    pub fn trigger(&self, name: &str) -> Option<LaunchOutcome> {
        None
    }
    pub async fn run_loop(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {}
}
