//! Running a script schedule (`invokeService: "script"`): one evaluation of the compiled
//! script through the script host, on the calling thread, bounded by the script limits.
//!
//! The script sees its `globals` and `input` (the `invokeContext.input` member, or null), and
//! `openidm.*` reaches the object sets through `host`. A script error (with the file, line and
//! function the script layer puts in it) is the firing's failure, never a panic.

use std::sync::Arc;

use serde_json::Value;

use super::spec::ScheduledScript;
use super::LaunchOutcome;
use crate::script::{with_thread_context, ScriptHost, ScriptLimits};

/// Runs `script` of schedule `name` once. `Started` carries an id for this invocation (it is
/// the firing's `lastRunId`); `Failed` carries the script's error.
pub fn run_script(
    name: &str,
    script: &ScheduledScript,
    limits: ScriptLimits,
    host: &Arc<dyn ScriptHost>,
) -> LaunchOutcome {
    let input = script.context.get("input").cloned().unwrap_or(Value::Null);
    let result = with_thread_context(limits, host, |cx| {
        cx.eval(&script.script, &[("input", &input)])
    })
    .and_then(|r| r);
    match result {
        Ok(value) => {
            let id = crate::ids::new_uuid();
            tracing::info!(schedule = %name, invocation = %id, result = %value,
                "scheduled script ran");
            LaunchOutcome::Started(id)
        }
        Err(e) => LaunchOutcome::Failed(e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::script::NoHost;
    use serde_json::json;

    fn spec(ctx: Value) -> Result<crate::scheduler::ScheduleSpec, String> {
        let raw = crate::scheduler::RawSchedule {
            name: "s".into(),
            schedule: "0 0 * * * ?".into(),
            script_context: ctx.as_object().cloned(),
            ..Default::default()
        };
        crate::scheduler::build_spec(raw)
    }

    fn run(ctx: Value) -> LaunchOutcome {
        let s = spec(ctx).unwrap();
        let crate::scheduler::Invoker::Script(script) = &s.invoker else {
            panic!("not a script schedule");
        };
        let host: Arc<dyn ScriptHost> = Arc::new(NoHost);
        run_script(&s.name, script, ScriptLimits::default(), &host)
    }

    #[test]
    fn runs_with_globals_and_input() {
        let ok = run(json!({"script": {"type": "text/javascript",
            "source": "if (n !== 2 || input.x !== 1) { throw new Error('bad scope'); } n;",
            "globals": {"n": 2}}, "input": {"x": 1}}));
        assert!(matches!(ok, LaunchOutcome::Started(_)), "{ok:?}");
        let failed = run(json!({"script": {"source": "throw new Error('boom');"}}));
        match failed {
            LaunchOutcome::Failed(m) => {
                assert!(m.contains("boom") && m.contains("schedule s"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // A host call the host refuses fails the firing with the host's message.
        let refused = run(json!({"script": {"source": "openidm.read('managed/user/a');"}}));
        assert!(matches!(refused, LaunchOutcome::Failed(m) if m.contains("not available")));
    }

    #[test]
    fn bad_script_objects_are_startup_errors() {
        let err = |ctx: Value| spec(ctx).unwrap_err();
        assert!(err(json!({"script": {}})).contains("needs \"source\" or \"file\""));
        assert!(err(json!({"script": {"source": "("}}))
            .starts_with("schedule \"s\": invokeContext.script: "));
        assert!(err(json!({"script": {"file": "x.js"}})).contains("x.js not found"));
        assert!(err(json!({"script": {"source": "1", "globals": 3}})).contains("globals"));
    }
}
