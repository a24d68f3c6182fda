//! The JSON of a schedule as `GET /openidm/scheduler/job` shows it (IDM's job shape).

use serde_json::{json, Map, Value};

use super::spec::Invoker;
use super::timing::Timing;
use super::{JobState, ScheduleSpec};

pub(super) fn job_json(spec: &ScheduleSpec, job: &JobState) -> Value {
    let (service, ctx) = match &spec.invoker {
        Invoker::Reconcile => {
            let mut ctx = Map::new();
            ctx.insert("action".into(), json!("reconcile"));
            ctx.insert("mapping".into(), json!(spec.mapping));
            if spec.persist_associations {
                ctx.insert("persistAssociations".into(), json!(true));
            }
            if spec.analyze {
                ctx.insert("analyze".into(), json!(true));
            }
            ("sync", Value::Object(ctx))
        }
        Invoker::Script(s) => ("script", s.context.clone()),
        Invoker::LiveSync(source) => (
            "provisioner",
            json!({"action": "liveSync", "source": source}),
        ),
    };
    let date = |t: Option<i64>| t.map(|s| crate::ids::iso_millis(s.saturating_mul(1000)));
    let mut out = json!({
        "_id": spec.name,
        "enabled": spec.enabled,
        "persisted": true,
        "misfirePolicy": spec.misfire.as_str(),
        "timeZone": spec.tz_text,
        "invokeService": service,
        "invokeContext": ctx,
        "nextRunDate": date(job.next_fire.filter(|_| spec.enabled)),
        "lastRunDate": date(job.last.as_ref().map(|f| f.at)),
        "lastRunId": job.last.as_ref().map(|f| &f.run_id),
        "lastRunStatus": job.last.as_ref().map(|f| &f.status),
        "concurrentExecution": false,
    });
    match &spec.rule.timing {
        Timing::Cron(_) => {
            out["type"] = json!("cron");
            out["schedule"] = json!(spec.cron_text);
        }
        Timing::Simple {
            interval_ms,
            repeat_count,
        } => {
            out["type"] = json!("simple");
            out["repeatInterval"] = json!(interval_ms);
            out["repeatCount"] = json!(repeat_count);
        }
    }
    for (k, v) in [("startTime", &spec.start_text), ("endTime", &spec.end_text)] {
        if let Some(v) = v {
            out[k] = json!(v);
        }
    }
    out
}
