//! Schedules as configured: recon.toml `[[schedules]]` tables ([`parse_table`]) and IDM
//! `schedule-*.json` files ([`parse_idm_schedule_file`]) → [`RawSchedule`] → [`build_spec`] →
//! [`ScheduleSpec`], validated with errors that name the schedule and the key.
//!
//! Both sources go through one reader of IDM's schedule object, so a key means the same in
//! either place. What recond does not run (other services, Groovy
//! scripts) is [`IdmSchedule::NotRun`]: a startup warning, never a refusal to start.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::cron::Cron;
use super::timing::{parse_instant, FireRule, Timing, REPEAT_FOREVER};
use super::zone::TimeZone;
use crate::script::{self, CompiledScript, ScriptEnv, ScriptSpec};

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

/// What a schedule does when it fires.
#[derive(Debug, Clone)]
pub enum Invoker {
    /// `invokeService: "sync"`: reconcile the spec's `mapping`.
    Reconcile,
    /// `invokeService: "script"`: run a JavaScript script.
    Script(ScheduledScript),
    /// `invokeService: "provisioner"` (or `"sync"`) with `action: "liveSync"`: a liveSync of
    /// the named object set (contract §7).
    LiveSync(String),
}

/// A schedule's script, compiled at startup.
#[derive(Debug, Clone)]
pub struct ScheduledScript {
    pub script: CompiledScript,
    /// `invokeContext` as configured: echoed in the job JSON; its `input` member is the
    /// script's `input` variable.
    pub context: Value,
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub name: String,
    /// When it fires.
    pub rule: FireRule,
    /// The cron expression as configured (echoed in job JSON); empty for simple triggers.
    pub cron_text: String,
    /// The time zone as configured ("UTC" when none was).
    pub tz_text: String,
    /// `startTime` / `endTime` as configured.
    pub start_text: Option<String>,
    pub end_text: Option<String>,
    /// The mapping a reconciliation schedule runs; empty for other invokers.
    pub mapping: String,
    pub enabled: bool,
    pub persist_associations: bool,
    pub analyze: bool,
    pub misfire: MisfirePolicy,
    pub invoker: Invoker,
}

/// A schedule as written in configuration, before validation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawSchedule {
    pub name: String,
    /// The cron expression; empty when none was given.
    pub schedule: String,
    /// The reconciled mapping; empty for script schedules.
    pub mapping: String,
    pub enabled: Option<bool>,
    pub persist_associations: bool,
    pub analyze: bool,
    pub time_zone: Option<String>,
    pub misfire_policy: Option<String>,
    /// `type`: `cron` (default) or `simple`.
    pub kind: Option<String>,
    pub repeat_interval: Option<i64>,
    pub repeat_count: Option<i64>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    /// A script schedule's `invokeContext`; None for reconciliations.
    pub script_context: Option<Map<String, Value>>,
    /// A liveSync schedule: the object set it synchronizes (`mapping` is then empty).
    pub live_sync: Option<String>,
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
    /// A schedule recond runs (a reconciliation, a liveSync or a script).
    Reconcile(Box<RawSchedule>),
    /// A schedule recond does not run (another service, live sync, a Groovy script, or a
    /// disabled schedule it could not read): the reason, for a startup warning. Never an
    /// error: an IDM project folder carries such files and recond must still start.
    NotRun(String),
}

/// Reads an IDM `schedule-*.json` file. Errors are for enabled schedules that are wrong;
/// everything recond does not run is [`IdmSchedule::NotRun`].
pub fn parse_idm_schedule_file(name: &str, json: &Value) -> Result<IdmSchedule, String> {
    let disabled = json.get("enabled").and_then(Value::as_bool) == Some(false);
    let sname = schedule_name(name)?;
    match parse_schedule(&sname, json) {
        Ok(Some(raw)) => Ok(IdmSchedule::Reconcile(Box::new(raw))),
        Ok(None) => Ok(IdmSchedule::NotRun(format!(
            "invokeService {} is not run by recond (it runs reconciliation, liveSync and \
             script schedules)",
            json.get("invokeService").unwrap_or(&Value::Null)
        ))),
        Err(NotRun(e)) if e.contains("invokeContext.action") && !e.contains("required") => {
            Ok(IdmSchedule::NotRun(e))
        }
        Err(NotRun(e)) if e.contains("invokeContext.script.type") => Ok(IdmSchedule::NotRun(e)),
        Err(NotRun(e)) if disabled => Ok(IdmSchedule::NotRun(format!("disabled, and {e}"))),
        Err(NotRun(e)) => Err(e),
    }
}

/// The keys a recon.toml `[[schedules]]` table may have.
const TABLE_KEYS: &[&str] = &[
    "name",
    "schedule",
    "mapping",
    "enabled",
    "persistAssociations",
    "analyze",
    "timeZone",
    "misfirePolicy",
    "concurrentExecution",
    "type",
    "repeatInterval",
    "repeatCount",
    "startTime",
    "endTime",
    "source",
];

/// Reads a recon.toml `[[schedules]]` table (a reconciliation of `mapping`, or a liveSync of
/// `source = "system/<name>/<type>"`): the same keys as an IDM schedule file, with the invoke
/// context's flattened into the table.
pub fn parse_table(table: &Value) -> Result<RawSchedule, String> {
    let m = table
        .as_object()
        .ok_or("[[schedules]]: each schedule must be a table")?;
    if let Some(k) = m.keys().find(|k| !TABLE_KEYS.contains(&k.as_str())) {
        return Err(format!("[[schedules]]: unknown key \"{k}\""));
    }
    let name = match m.get("name") {
        Some(Value::String(n)) => n.clone(),
        None => return Err("[[schedules]]: name is required".into()),
        Some(_) => return Err("[[schedules]]: name must be a string".into()),
    };
    let mut obj = m.clone();
    obj.remove("name");
    let mut ctx = Map::new();
    if obj.contains_key("source") {
        if obj.contains_key("mapping") {
            return Err(format!(
                "schedule \"{name}\": give either mapping (a reconciliation) or source (a \
                 liveSync), not both"
            ));
        }
        ctx.insert("action".into(), json!("liveSync"));
    } else {
        ctx.insert("action".into(), json!("reconcile"));
    }
    for k in ["mapping", "source", "persistAssociations", "analyze"] {
        if let Some(v) = obj.remove(k) {
            ctx.insert(k.into(), v);
        }
    }
    obj.insert("invokeService".into(), json!("sync"));
    obj.insert("invokeContext".into(), Value::Object(ctx));
    parse_schedule(&name, &Value::Object(obj))
        .map_err(|NotRun(e)| e.replace("invokeContext.", ""))?
        .ok_or_else(|| format!("schedule \"{name}\": invokeService: not a reconciliation"))
}

/// An error of [`parse_schedule`]; the file reader decides which ones are only warnings.
#[derive(Debug)]
struct NotRun(String);

/// Reads IDM's schedule object; `Ok(None)` for a service recond does not run.
fn parse_schedule(sname: &str, json: &Value) -> Result<Option<RawSchedule>, NotRun> {
    let err = |field: &str, msg: &str| NotRun(format!("schedule \"{sname}\": {field}: {msg}"));
    let obj = json
        .as_object()
        .ok_or_else(|| err("file", "must contain a JSON object"))?;
    let string = |key: &str| -> Result<Option<&str>, NotRun> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(err(key, "must be a string")),
        }
    };
    let integer = |key: &str| -> Result<Option<i64>, NotRun> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .map(Some)
                .ok_or_else(|| err(key, "must be a whole number")),
        }
    };
    let boolean = |o: &Map<String, Value>, key: &str, field: &str| match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(err(field, "must be true or false")),
    };
    let service = string("invokeService")?.ok_or_else(|| err("invokeService", "is required"))?;
    // IDM runs liveSync through the provisioner service (`action: liveSync, source`).
    let (script, provisioner) = match service {
        "sync" | "org.forgerock.openidm.sync" => (false, false),
        "script" | "org.forgerock.openidm.script" => (true, false),
        "provisioner" | "org.forgerock.openidm.provisioner" => (false, true),
        _ => return Ok(None),
    };
    if boolean(obj, "concurrentExecution", "concurrentExecution")? == Some(true) {
        return Err(err(
            "concurrentExecution",
            "true is not supported (a schedule never runs twice at once)",
        ));
    }
    let ctx = match obj.get("invokeContext") {
        Some(Value::Object(c)) => c,
        None | Some(Value::Null) => return Err(err("invokeContext", "is required")),
        Some(_) => return Err(err("invokeContext", "must be an object")),
    };
    let mut raw = RawSchedule {
        name: sname.to_string(),
        schedule: string("schedule")?.unwrap_or_default().to_string(),
        enabled: boolean(obj, "enabled", "enabled")?,
        time_zone: string("timeZone")?.map(str::to_string),
        misfire_policy: string("misfirePolicy")?.map(str::to_string),
        kind: string("type")?.map(str::to_string),
        repeat_interval: integer("repeatInterval")?,
        repeat_count: integer("repeatCount")?,
        start_time: string("startTime")?.map(str::to_string),
        end_time: string("endTime")?.map(str::to_string),
        ..RawSchedule::default()
    };
    if script {
        match ctx.get("script") {
            Some(Value::Object(s)) => {
                let ty = s.get("type").and_then(Value::as_str);
                if let Some(t) = ty.filter(|t| !script::is_supported_type(t)) {
                    return Err(err(
                        "invokeContext.script.type",
                        &format!("\"{t}\" scripts are not run by recond (only text/javascript)"),
                    ));
                }
            }
            None | Some(Value::Null) => return Err(err("invokeContext.script", "is required")),
            Some(_) => return Err(err("invokeContext.script", "must be a script object")),
        }
        raw.script_context = Some(ctx.clone());
        return Ok(Some(raw));
    }
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
    if live_sync.is_some() {
        raw.live_sync = live_sync;
        return Ok(Some(raw));
    }
    raw.mapping = match ctx.get("mapping") {
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
    raw.persist_associations = boolean(
        ctx,
        "persistAssociations",
        "invokeContext.persistAssociations",
    )?
    .unwrap_or(false);
    raw.analyze = boolean(ctx, "analyze", "invokeContext.analyze")?.unwrap_or(false);
    Ok(Some(raw))
}

/// [`build_spec_in`] without a project: script `file`s cannot be resolved.
pub fn build_spec(raw: RawSchedule) -> Result<ScheduleSpec, String> {
    build_spec_in(raw, None)
}

/// Validates a raw schedule: trigger (cron expression, or simple interval and count), time
/// zone (default UTC), window, misfire policy (default fireAndProceed), and compiles a script
/// invoker's script (its `file` resolved in `env`'s project); `enabled` defaults to true.
/// Errors name the schedule and the key.
pub fn build_spec_in(
    raw: RawSchedule,
    env: Option<Arc<ScriptEnv>>,
) -> Result<ScheduleSpec, String> {
    let n = raw.name.clone();
    let err = |key: &str, msg: &dyn std::fmt::Display| format!("schedule \"{n}\": {key}: {msg}");
    if n.trim().is_empty() {
        return Err("schedule \"\": name: must not be empty".to_string());
    }
    let invoker = match &raw.script_context {
        Some(ctx) => Invoker::Script(ScheduledScript {
            script: compile_script(&n, ctx, env)?,
            context: Value::Object(ctx.clone()),
        }),
        None if raw.live_sync.is_some() => {
            Invoker::LiveSync(raw.live_sync.clone().unwrap_or_default())
        }
        None if raw.mapping.trim().is_empty() => return Err(err("mapping", &"must not be empty")),
        None => Invoker::Reconcile,
    };
    let (tz, tz_text) = match &raw.time_zone {
        Some(t) if !t.trim().is_empty() => (
            TimeZone::parse(t).map_err(|e| err("timeZone", &e))?,
            t.clone(),
        ),
        _ => (TimeZone::UTC, "UTC".to_string()),
    };
    let timing = match raw.kind.as_deref() {
        None | Some("cron") => {
            if raw.schedule.trim().is_empty() {
                return Err(err("schedule", &"is required for a cron trigger"));
            }
            Timing::Cron(Box::new(
                Cron::parse(&raw.schedule).map_err(|e| err("schedule", &e))?,
            ))
        }
        Some("simple") => {
            let interval_ms = raw
                .repeat_interval
                .ok_or_else(|| err("repeatInterval", &"is required for a simple trigger"))?;
            if interval_ms <= 0 {
                return Err(err("repeatInterval", &"must be a positive number of ms"));
            }
            let repeat_count = raw.repeat_count.unwrap_or(REPEAT_FOREVER);
            if repeat_count < REPEAT_FOREVER {
                return Err(err("repeatCount", &"must be -1 (forever) or more"));
            }
            Timing::Simple {
                interval_ms,
                repeat_count,
            }
        }
        Some(other) => {
            return Err(err(
                "type",
                &format!("\"{other}\" is not one of \"cron\", \"simple\""),
            ))
        }
    };
    let instant = |key: &str, text: &Option<String>| -> Result<Option<i64>, String> {
        match text.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) => parse_instant(t, &tz).map(Some).map_err(|e| err(key, &e)),
        }
    };
    let start = instant("startTime", &raw.start_time)?;
    let end = instant("endTime", &raw.end_time)?;
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(err("endTime", &"is before startTime"));
        }
    }
    let misfire = match &raw.misfire_policy {
        None => MisfirePolicy::default(),
        Some(p) => MisfirePolicy::parse(p).ok_or_else(|| {
            err(
                "misfirePolicy",
                &format!("\"{p}\" is not one of fireAndProceed, doNothing"),
            )
        })?,
    };
    Ok(ScheduleSpec {
        name: raw.name,
        rule: FireRule {
            timing,
            tz,
            start,
            end,
        },
        cron_text: raw.schedule,
        tz_text,
        start_text: raw.start_time,
        end_text: raw.end_time,
        mapping: raw.mapping,
        enabled: raw.enabled.unwrap_or(true),
        persist_associations: raw.persist_associations,
        analyze: raw.analyze,
        misfire,
        invoker,
    })
}

/// Compiles `invokeContext.script` (`{type, source | file, globals}`).
fn compile_script(
    sname: &str,
    ctx: &Map<String, Value>,
    env: Option<Arc<ScriptEnv>>,
) -> Result<CompiledScript, String> {
    let err = |key: &str, msg: &dyn std::fmt::Display| {
        format!("schedule \"{sname}\": invokeContext.script{key}: {msg}")
    };
    let s = ctx
        .get("script")
        .and_then(Value::as_object)
        .ok_or_else(|| err("", &"must be a script object"))?;
    let mut name = format!("schedule {sname}");
    let source = match (s.get("source"), s.get("file")) {
        (Some(Value::String(src)), _) => src.clone(),
        (_, Some(Value::String(f))) => {
            let project = env.as_ref().map(|e| &e.project);
            let path = project.and_then(|p| p.resolve_file(f)).ok_or_else(|| {
                let looked = project.map_or("no project folder".to_string(), |p| p.searched(f));
                err(".file", &format!("{f} not found (looked for {looked})"))
            })?;
            name.push_str(&format!(" (file {})", path.display()));
            std::fs::read_to_string(&path)
                .map_err(|e| err(".file", &format!("cannot read {}: {e}", path.display())))?
        }
        _ => return Err(err("", &"needs \"source\" or \"file\"")),
    };
    let globals = match s.get("globals") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(g)) => g.clone(),
        Some(_) => return Err(err(".globals", &"must be an object")),
    };
    script::compile(ScriptSpec {
        name,
        source,
        globals,
        env,
    })
    .map_err(|e| err("", &e))
}
