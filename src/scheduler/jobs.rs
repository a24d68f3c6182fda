//! The JSON of a schedule as `GET /openidm/scheduler/job` shows it (IDM's job shape).

use serde_json::{json, Map, Value};

use super::{JobState, ScheduleSpec};

pub(super) fn job_json(spec: &ScheduleSpec, job: &JobState) -> Value {
    let mut ctx = Map::new();
    let service = match &spec.live_sync {
        Some(source) => {
            ctx.insert("action".into(), json!("liveSync"));
            ctx.insert("source".into(), json!(source));
            "provisioner"
        }
        None => {
            ctx.insert("action".into(), json!("reconcile"));
            ctx.insert("mapping".into(), json!(spec.mapping));
            "sync"
        }
    };
    if spec.persist_associations {
        ctx.insert("persistAssociations".into(), json!(true));
    }
    if spec.analyze {
        ctx.insert("analyze".into(), json!(true));
    }
    let date = |t: Option<i64>| t.map(|s| crate::ids::iso_millis(s.saturating_mul(1000)));
    json!({
        "_id": spec.name,
        "enabled": spec.enabled,
        "persisted": true,
        "schedule": spec.cron_text,
        "type": "cron",
        "misfirePolicy": spec.misfire.as_str(),
        "timeZone": spec.tz_text,
        "invokeService": service,
        "invokeContext": ctx,
        "nextRunDate": date(job.next_fire.filter(|_| spec.enabled)),
        "lastRunDate": date(job.last.as_ref().map(|f| f.at)),
        "lastRunId": job.last.as_ref().map(|f| &f.run_id),
        "lastRunStatus": job.last.as_ref().map(|f| &f.status),
        "concurrentExecution": false,
    })
}
