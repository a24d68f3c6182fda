//! Schedules as configured: recon.toml `[[schedules]]` tables and IDM `schedule-*.json` files
//! ([`parse_idm_schedule_file`] → [`IdmSchedule`] / [`RawSchedule`] → [`build_spec`] →
//! [`ScheduleSpec`]), validated with errors that name the schedule and the field.

use serde_json::{Map, Value};

use super::cron::{Cron, TimeZone};

/// What to do at startup about fire times missed while the server was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MisfirePolicy {
    /// Fire once now, then follow the schedule (IDM's default).
    #[default]
    FireAndProceed,
    /// Skip the missed firings and wait for the next fire time.
    DoNothing,
}

impl MisfirePolicy {
    /// Parses IDM's `misfirePolicy` strings (case-insensitive).
    pub fn parse(s: &str) -> Option<MisfirePolicy> {
        if s.eq_ignore_ascii_case("fireAndProceed") {
            Some(MisfirePolicy::FireAndProceed)
        } else if s.eq_ignore_ascii_case("doNothing") {
            Some(MisfirePolicy::DoNothing)
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            MisfirePolicy::FireAndProceed => "fireAndProceed",
            MisfirePolicy::DoNothing => "doNothing",
        }
    }
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub name: String,
    /// The expression as configured (echoed in job JSON).
    pub cron_text: String,
    pub cron: Cron,
    pub tz: TimeZone,
    /// The time zone as configured ("UTC" when none was).
    pub tz_text: String,
    pub mapping: String,
    /// A liveSync schedule: the object set it synchronizes (`mapping` is then empty).
    pub live_sync: Option<String>,
    pub enabled: bool,
    pub persist_associations: bool,
    pub analyze: bool,
    pub misfire: MisfirePolicy,
}

/// A schedule as written in configuration, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSchedule {
    pub name: String,
    pub schedule: String,
    pub mapping: String,
    /// A liveSync schedule: the object set it synchronizes (`mapping` is then empty).
    pub live_sync: Option<String>,
    pub enabled: Option<bool>,
    pub persist_associations: bool,
    pub analyze: bool,
    pub time_zone: Option<String>,
    pub misfire_policy: Option<String>,
}

/// The schedule name of an IDM schedule file: `conf/schedule-hr.json` → `hr`.
fn schedule_name(file: &str) -> Result<String, String> {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let stem = base.strip_suffix(".json").unwrap_or(base);
    let name = stem.strip_prefix("schedule-").unwrap_or(stem);
    if name.trim().is_empty() {
        return Err(format!(
            "schedule file {file:?}: the file name gives an empty schedule name"
        ));
    }
    Ok(name.to_string())
}

/// What an IDM `schedule-*.json` file asks for.
#[derive(Debug, PartialEq)]
pub enum IdmSchedule {
    /// A schedule recond runs: a reconciliation, or a liveSync when `live_sync` is set.
    Reconcile(RawSchedule),
    /// A schedule recond does not run (another service, live sync, or a disabled schedule it
    /// could not read): the reason, for a startup warning. Never an error: an IDM project
    /// folder carries such files and recond must still start.
    NotRun(String),
}

/// Reads an IDM `schedule-*.json` file. Errors are for enabled reconciliation schedules that
/// are wrong; everything recond does not run is [`IdmSchedule::NotRun`].
pub fn parse_idm_schedule_file(name: &str, json: &Value) -> Result<IdmSchedule, String> {
    let disabled = json.get("enabled").and_then(Value::as_bool) == Some(false);
    match parse_reconcile_schedule(name, json) {
        Ok(Some(raw)) => Ok(IdmSchedule::Reconcile(raw)),
        Ok(None) => Ok(IdmSchedule::NotRun(format!(
            "invokeService {} is not run by recond (it runs reconciliation schedules)",
            json.get("invokeService").unwrap_or(&Value::Null)
        ))),
        Err(e) if e.contains("invokeContext.action") && !e.contains("required") => {
            Ok(IdmSchedule::NotRun(e))
        }
        Err(e) if disabled => Ok(IdmSchedule::NotRun(format!("disabled, and {e}"))),
        Err(e) => Err(e),
    }
}

pub(super) fn parse_reconcile_schedule(
    name: &str,
    json: &Value,
) -> Result<Option<RawSchedule>, String> {
    let sname = schedule_name(name)?;
    let err = |field: &str, msg: &str| format!("schedule \"{sname}\": {field}: {msg}");
    let obj = json
        .as_object()
        .ok_or_else(|| err("file", "must contain a JSON object"))?;
    let string = |key: &str| -> Result<Option<&str>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(err(key, "must be a string")),
        }
    };
    let service = string("invokeService")?.ok_or_else(|| err("invokeService", "is required"))?;
    // IDM runs liveSync through the provisioner service (`action: liveSync, source`).
    let provisioner = service == "provisioner" || service == "org.forgerock.openidm.provisioner";
    if !provisioner && service != "sync" && service != "org.forgerock.openidm.sync" {
        return Ok(None);
    }
    match string("type")? {
        None | Some("cron") => {}
        Some(other) => {
            return Err(err(
                "type",
                &format!("\"{other}\" is not supported; only \"cron\" schedules are"),
            ))
        }
    }
    for key in ["startTime", "endTime"] {
        if string(key)?.is_some_and(|s| !s.is_empty()) {
            return Err(err(key, "is not supported"));
        }
    }
    let boolean = |o: &Map<String, Value>, key: &str, field: &str| match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(err(field, "must be true or false")),
    };
    if boolean(obj, "concurrentExecution", "concurrentExecution")? == Some(true) {
        return Err(err(
            "concurrentExecution",
            "true is not supported for reconciliations",
        ));
    }
    let schedule = string("schedule")?.ok_or_else(|| err("schedule", "is required"))?;
    let ctx = match obj.get("invokeContext") {
        Some(Value::Object(c)) => c,
        None | Some(Value::Null) => return Err(err("invokeContext", "is required")),
        Some(_) => return Err(err("invokeContext", "must be an object")),
    };
    let live_sync = match ctx.get("action") {
        Some(Value::String(a)) if a == "liveSync" => match ctx.get("source") {
            Some(Value::String(s)) if !s.trim_matches('/').is_empty() => {
                Some(s.trim_matches('/').to_string())
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(err(
                    "invokeContext.action",
                    "\"liveSync\" needs invokeContext.source (the object set to synchronize)",
                ))
            }
            Some(_) => return Err(err("invokeContext.source", "must be a string")),
        },
        Some(Value::String(a)) if provisioner => {
            return Err(err(
                "invokeContext.action",
                &format!("\"{a}\" is not supported; use \"liveSync\""),
            ))
        }
        Some(Value::String(a)) if a == "reconcile" || a == "recon" => None,
        Some(Value::String(a)) => {
            return Err(err(
                "invokeContext.action",
                &format!("\"{a}\" is not supported; use \"reconcile\""),
            ))
        }
        None | Some(Value::Null) => return Err(err("invokeContext.action", "is required")),
        Some(_) => return Err(err("invokeContext.action", "must be a string")),
    };
    let mapping = match ctx.get("mapping") {
        _ if live_sync.is_some() => String::new(),
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::Object(_)) => {
            return Err(err(
                "invokeContext.mapping",
                "inline mapping objects are not supported; name a configured mapping",
            ))
        }
        None | Some(Value::Null) => return Err(err("invokeContext.mapping", "is required")),
        Some(_) => {
            return Err(err(
                "invokeContext.mapping",
                "must be the name of a mapping",
            ))
        }
    };
    Ok(Some(RawSchedule {
        name: sname.clone(),
        schedule: schedule.to_string(),
        mapping,
        live_sync,
        enabled: boolean(obj, "enabled", "enabled")?,
        persist_associations: boolean(
            ctx,
            "persistAssociations",
            "invokeContext.persistAssociations",
        )?
        .unwrap_or(false),
        analyze: boolean(ctx, "analyze", "invokeContext.analyze")?.unwrap_or(false),
        time_zone: string("timeZone")?.map(str::to_string),
        misfire_policy: string("misfirePolicy")?.map(str::to_string),
    }))
}

/// Validates a raw schedule: cron expression, time zone (default UTC), misfire policy
/// (default fireAndProceed); `enabled` defaults to true. Errors name the schedule and field.
pub fn build_spec(raw: RawSchedule) -> Result<ScheduleSpec, String> {
    let n = raw.name.clone();
    if n.trim().is_empty() {
        return Err("schedule \"\": name: must not be empty".to_string());
    }
    if raw.live_sync.is_none() && raw.mapping.trim().is_empty() {
        return Err(format!("schedule \"{n}\": mapping: must not be empty"));
    }
    let cron =
        Cron::parse(&raw.schedule).map_err(|e| format!("schedule \"{n}\": schedule: {e}"))?;
    let (tz, tz_text) = match raw.time_zone {
        Some(t) if !t.trim().is_empty() => (
            TimeZone::parse(&t).map_err(|e| format!("schedule \"{n}\": timeZone: {e}"))?,
            t,
        ),
        _ => (TimeZone::Utc, "UTC".to_string()),
    };
    let misfire = match raw.misfire_policy {
        None => MisfirePolicy::default(),
        Some(p) => MisfirePolicy::parse(&p).ok_or_else(|| {
            format!(
                "schedule \"{n}\": misfirePolicy: \"{p}\" is not one of fireAndProceed, doNothing"
            )
        })?,
    };
    Ok(ScheduleSpec {
        name: raw.name,
        cron_text: raw.schedule,
        cron,
        tz,
        tz_text,
        mapping: raw.mapping,
        live_sync: raw.live_sync,
        enabled: raw.enabled.unwrap_or(true),
        persist_associations: raw.persist_associations,
        analyze: raw.analyze,
        misfire,
    })
}
