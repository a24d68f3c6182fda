//! Schedules: `/openidm/scheduler/job` (query, read, `_action=trigger`).

use serde_json::{json, Value};

use super::{ok, query_request, Call, Reply};
use crate::http::error::ApiError;
use crate::http::routes::Route;
use crate::http::AppState;

pub(super) fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    let Call { route, params, .. } = call;
    match route {
        Route::JobQuery => {
            let jobs = state
                .scheduler
                .as_ref()
                .map(|s| s.jobs())
                .unwrap_or_default();
            let q = query_request(&params, &[])?;
            let filtered: Vec<Value> = jobs.into_iter().filter(|j| q.filter.matches(j)).collect();
            let n = filtered.len();
            ok(json!({
                "result": filtered, "resultCount": n, "pagedResultsCookie": null,
                "totalPagedResultsPolicy": "NONE", "totalPagedResults": -1, "remainingPagedResults": -1,
            }))
        }
        Route::JobRead(name) => {
            let job = state.scheduler.as_ref().and_then(|s| s.job(&name));
            ok(job.ok_or_else(|| ApiError::not_found(format!("Schedule {name} not found")))?)
        }
        Route::JobAction(name) => match params.get("_action") {
            Some("trigger") => {
                use crate::scheduler::LaunchOutcome;
                let outcome = state.scheduler.as_ref().and_then(|s| s.trigger(&name));
                match outcome {
                    None => Err(ApiError::not_found(format!("Schedule {name} not found"))),
                    Some(LaunchOutcome::Started(id)) => {
                        ok(json!({ "_id": name, "reconId": id, "status": "TRIGGERED" }))
                    }
                    Some(LaunchOutcome::Busy(active)) => Err(ApiError::conflict(format!(
                        "The mapping of schedule {name} is busy with reconciliation {active}"
                    ))),
                    Some(LaunchOutcome::Failed(m)) => Err(ApiError::conflict(m)),
                }
            }
            Some(other) => Err(ApiError::bad_request(format!(
                "Action {other} on scheduler job {name} not supported"
            ))),
            None => Err(ApiError::bad_request(
                "Action parameter is not present or value is null",
            )),
        },
        other => Err(ApiError::internal(format!(
            "route {other:?} reached the wrong handler"
        ))),
    }
}
