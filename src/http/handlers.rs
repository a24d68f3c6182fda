//! Request handlers: one function per route family, converting parameters and bodies into
//! calls on the object sets, the runner and the scheduler. They run on a blocking thread,
//! except [`dispatch_inline`], which answers from memory alone.

use std::sync::Arc;

use hyper::body::Bytes;
use hyper::HeaderMap;
use serde_json::{json, Value};

use super::error::ApiError;
use super::request::{if_match, if_none_match_star, json_body, Params};
use super::routes::Route;
use super::AppState;
use crate::objects::{ObjectSet, QueryRequest, KNOWN_PARAMS};
use crate::query;
use crate::runner::{ReconKind, RunState, StartRequest};

pub struct Call {
    pub route: Route,
    pub params: Params,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: String,
}

pub enum Reply {
    Json(u16, Value),
    /// waitForCompletion: answer once the run has ended.
    Wait(Arc<RunState>, WaitAnswer),
}

/// The body that answers a run waited for.
pub enum WaitAnswer {
    /// `POST /openidm/recon?...&waitForCompletion=true`: `{_id, state}`.
    Recon,
    /// The deprecated `POST /openidm/sync?_action=recon`: `{reconId, _id, comment1, comment2}`.
    Sync,
}

fn ok(v: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Json(200, v))
}

fn query_request(params: &Params, extra_allowed: &[&str]) -> Result<QueryRequest, ApiError> {
    for (k, _) in params.iter() {
        if k.starts_with('_') && !KNOWN_PARAMS.contains(&k) && !extra_allowed.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "Unknown query parameter '{k}'"
            )));
        }
    }
    Ok(QueryRequest::from_params(&|k: &str| {
        params.get(k).map(str::to_string)
    })?)
}

fn envelope(result: crate::objects::QueryResult, q: &QueryRequest) -> Value {
    result.envelope(q.total)
}

fn object_set(state: &AppState, name: &str) -> Result<Arc<dyn ObjectSet>, ApiError> {
    state
        .objects
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Resource '{name}' not found")))
}

fn fields(params: &Params, v: Value) -> Value {
    match params.get("_fields") {
        Some(f) if !f.is_empty() => query::project(&v, &query::parse_fields(f)),
        _ => v,
    }
}

fn ping() -> Value {
    json!({"_id": "", "state": "ACTIVE_READY", "shortDesc": "OpenIDM ready"})
}

/// Answers the requests that need no store access (the ping, the summary of a run held in
/// memory) directly on the async runtime: operators poll these while a run saturates the
/// CPUs, and a hop to a blocking thread would queue them behind the engine. None when the
/// call needs [`dispatch`].
pub fn dispatch_inline(state: &AppState, call: &Call) -> Option<Reply> {
    match &call.route {
        Route::Ping => Some(Reply::Json(200, ping())),
        Route::ReconRead(id) => {
            let v = state.runner.live_summary(id)?;
            Some(Reply::Json(200, fields(&call.params, v)))
        }
        _ => None,
    }
}

pub fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    let Call {
        route,
        params,
        headers,
        body,
        user,
    } = call;
    let runner = &state.runner;
    match route {
        Route::Ping => ok(ping()),
        Route::ReconHealth => {
            let active = runner.active_count();
            let max = state.config.server.max_concurrent_runs;
            ok(json!({
                "activeThreads": active, "corePoolSize": max, "largestPoolSize": max,
                "maximumPoolSize": max, "currentPoolSize": active,
            }))
        }
        Route::ReconList => {
            if params.has("_queryFilter")
                || params.has("_queryId")
                || params.has("_queryExpression")
            {
                return Err(ApiError::new(501, "The query operations are not supported"));
            }
            ok(json!({ "reconciliations": runner.list()? }))
        }
        Route::ReconAction => start_run(state, &params, &body, user),
        Route::SyncAction => sync_action(state, &params, &body, user),
        Route::ReconRead(id) => ok(fields(&params, runner.summary(&id)?)),
        Route::ReconInstanceAction(id) => match params.get("_action") {
            Some("cancel") => ok(runner.cancel(&id)?),
            Some(other) => Err(ApiError::bad_request(format!(
                "Action {other} on recon run {id} not supported"
            ))),
            None => Err(ApiError::bad_request(
                "Action parameter is not present or value is null",
            )),
        },
        Route::ReconDelete(id) => ok(runner.delete(&id)?),
        Route::AssocQuery => {
            let q = query_request(&params, &[])?;
            ok(envelope(runner.assoc_query(&q)?, &q))
        }
        Route::AssocRead(id) => ok(runner.assoc_read(&id)?),
        Route::AssocEntries(id) => {
            let q = query_request(&params, &[])?;
            let side = |key: &str| -> Result<Option<query::Filter>, ApiError> {
                match params.get(key) {
                    Some(f) if !f.is_empty() => Ok(Some(query::parse(f)?)),
                    _ => Ok(None),
                }
            };
            let (sf, tf) = (side("sourceQueryFilter")?, side("targetQueryFilter")?);
            ok(envelope(
                runner.entries_query(&id, &q, sf.as_ref(), tf.as_ref())?,
                &q,
            ))
        }
        Route::AssocEntry(id, entry) => ok(runner.entry_read(&id, &entry)?),
        Route::ObjectQuery(set) => {
            let set = object_set(state, &set)?;
            let q = query_request(&params, &[])?;
            ok(envelope(set.query(&q)?, &q))
        }
        Route::ObjectAction(set_name) => {
            let set = object_set(state, &set_name)?;
            match params.get("_action") {
                Some("create") => {
                    let body = json_body(&body)?
                        .ok_or_else(|| ApiError::bad_request("create needs a JSON object body"))?;
                    let id = params
                        .get("_id")
                        .map(str::to_string)
                        .or_else(|| body.get("_id").and_then(Value::as_str).map(str::to_string));
                    let created = set.create(id.as_deref(), body)?;
                    Ok(Reply::Json(201, created))
                }
                Some(other) => Err(ApiError::bad_request(format!(
                    "Action {other} on {set_name} not supported"
                ))),
                None => Err(ApiError::bad_request(
                    "Action parameter is not present or value is null",
                )),
            }
        }
        Route::ObjectRead(set, id) => {
            let set_ref = object_set(state, &set)?;
            let v = set_ref
                .read(&id)?
                .ok_or_else(|| ApiError::not_found(format!("Object {set}/{id} not found")))?;
            ok(fields(&params, v))
        }
        Route::ObjectPut(set, id) => {
            let set = object_set(state, &set)?;
            let body = json_body(&body)?
                .ok_or_else(|| ApiError::bad_request("PUT needs a JSON object body"))?;
            let (v, created) = set.put(
                &id,
                body,
                if_match(&headers).as_deref(),
                if_none_match_star(&headers),
            )?;
            Ok(Reply::Json(if created { 201 } else { 200 }, v))
        }
        Route::ObjectPatch(set, id) => {
            let set = object_set(state, &set)?;
            let body = json_body(&body)?
                .ok_or_else(|| ApiError::bad_request("PATCH needs a JSON array of operations"))?;
            ok(set.patch(&id, if_match(&headers).as_deref(), &body)?)
        }
        Route::ObjectDelete(set, id) => {
            let set = object_set(state, &set)?;
            ok(set.delete(&id, if_match(&headers).as_deref())?)
        }
        Route::ObjectInstanceAction(set, id) => {
            object_set(state, &set)?;
            Err(ApiError::bad_request(format!(
                "Action {} on {set}/{id} not supported",
                params.get("_action").unwrap_or("(none)")
            )))
        }
        Route::LinkQuery => {
            let q = query_request(&params, &[])?;
            ok(envelope(state.objects.links.query(&q)?, &q))
        }
        Route::LinkRead(id) => {
            let v =
                state.objects.links.read(&id)?.ok_or_else(|| {
                    ApiError::not_found(format!("Object repo/link/{id} not found"))
                })?;
            ok(v)
        }
        Route::LinkDelete(id) => ok(state
            .objects
            .links
            .delete(&id, if_match(&headers).as_deref())?),
        Route::AuditQuery => {
            let q = query_request(&params, &[])?;
            ok(envelope(runner.audit_query(&q)?, &q))
        }
        Route::AuditRead(id) => ok(runner.audit_read(&id)?),
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
    }
}

/// Actions of IDM's synchronization service that recond does not offer: it reconciles whole
/// mappings or single ids through `/openidm/recon` and has no implicit sync.
const SYNC_NOT_OFFERED: &[&str] = &[
    "performAction",
    "notifyCreate",
    "notifyUpdate",
    "notifyDelete",
    "getLinkedResources",
];

/// `POST /openidm/sync?_action=recon&mapping=M`: IDM's older, deprecated way to start a
/// reconciliation, kept for scripts written against it. Like IDM it runs the mapping to the
/// end before answering.
fn sync_action(
    state: &AppState,
    params: &Params,
    body: &Bytes,
    user: String,
) -> Result<Reply, ApiError> {
    match params.get("_action") {
        Some("recon") => {
            let req = start_request(params, body, user, ReconKind::Full)?;
            Ok(Reply::Wait(state.runner.start(req)?, WaitAnswer::Sync))
        }
        Some(a) if SYNC_NOT_OFFERED.contains(&a) => Err(ApiError::new(
            501,
            format!("The sync action {a} is not supported: reconcile with POST /openidm/recon?_action=recon or reconById"),
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "Action {other} is not supported."
        ))),
        None => Err(ApiError::bad_request(
            "Action parameter is not present or value is null",
        )),
    }
}

/// A run of `kind` for the `mapping` parameter, with the run options IDM takes as
/// parameters (`analyze`, `persistAssociations`) and the body's overrides.
fn start_request(
    params: &Params,
    body: &Bytes,
    user: String,
    kind: ReconKind,
) -> Result<StartRequest, ApiError> {
    let mapping = params
        .get("mapping")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("/mapping: Expecting a value"))?;
    let mut body = json_body(body)?;
    // recond's own run switches (contract §8) may come as request parameters or body keys;
    // a parameter is carried as the body key, so the runner reads them in one place.
    for key in ["ignoreGuard", "recordChanges"] {
        if params.flag(key, false)? {
            match &mut body {
                None | Some(Value::Null) => body = Some(serde_json::json!({ key: true })),
                Some(Value::Object(m)) => {
                    m.insert(key.into(), Value::Bool(true));
                }
                // Not an object: the runner answers that the body must be an object.
                Some(_) => {}
            }
        }
    }
    Ok(StartRequest {
        mapping: mapping.to_string(),
        kind,
        body,
        analyze: params.flag("analyze", false)?,
        persist_associations: params.flag("persistAssociations", false)?,
        user,
        schedule: None,
    })
}

fn start_run(
    state: &AppState,
    params: &Params,
    body: &Bytes,
    user: String,
) -> Result<Reply, ApiError> {
    let action = params
        .get("_action")
        .ok_or_else(|| ApiError::bad_request("Action parameter is not present or value is null"))?;
    let kind = match action {
        "recon" => ReconKind::Full,
        "reconById" => {
            let id = params.get("id").or_else(|| params.get("ids")).filter(|s| !s.is_empty()).ok_or_else(|| {
                ApiError::bad_request("Action reconById requires a parameter 'ids' with the identifier(s) to reconcile")
            })?;
            ReconKind::ById(vec![id.to_string()])
        }
        other => {
            let rendered: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(ApiError::bad_request(format!(
                "Action {other} on reconciliation not supported {{{}}}",
                rendered.join(", ")
            )));
        }
    };
    let req = start_request(params, body, user, kind)?;
    let wait = params.flag("waitForCompletion", false)?;
    let run = state.runner.start(req)?;
    if wait {
        return Ok(Reply::Wait(run, WaitAnswer::Recon));
    }
    ok(json!({ "_id": run.id, "state": run.stage().state() }))
}
