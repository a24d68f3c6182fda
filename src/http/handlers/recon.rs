//! `/openidm/recon` (runs, association data), `/openidm/audit/recon` and the run pool figures
//! (the deprecated `/openidm/sync?_action=recon` is in `sync_service`).

use hyper::body::Bytes;

use serde_json::{json, Value};

use super::{envelope, fields, ok, query_request, Call, Reply, WaitAnswer};
use crate::http::error::ApiError;
use crate::http::request::{json_body, Params};
use crate::http::routes::Route;
use crate::http::AppState;
use crate::query;
use crate::runner::{ReconKind, StartRequest};

pub(super) fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    let Call {
        route,
        params,
        body,
        user,
        ..
    } = call;
    let runner = &state.runner;
    match route {
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
        Route::AuditQuery => {
            let q = query_request(&params, &[])?;
            ok(envelope(runner.audit_query(&q)?, &q))
        }
        Route::AuditRead(id) => ok(runner.audit_read(&id)?),
        other => Err(ApiError::internal(format!(
            "route {other:?} reached the wrong handler"
        ))),
    }
}

/// A run of `kind` for the `mapping` parameter, with the run options IDM takes as
/// parameters (`analyze`, `persistAssociations`) and the body's overrides.
pub(super) fn start_request(
    objects: &crate::objects::ObjectSets,
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
    if let Some(body) = &body {
        check_body_queries(objects, body)?;
    }
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

/// A run body's `sourceQuery` / `targetQuery` may name another object set to read
/// (`resourceName`); one that is not declared is a 400 before the run exists.
fn check_body_queries(objects: &crate::objects::ObjectSets, body: &Value) -> Result<(), ApiError> {
    for key in ["sourceQuery", "targetQuery"] {
        let Some(set) = body.get(key).and_then(|q| q.get("resourceName")) else {
            continue;
        };
        if set.as_str().is_none_or(|s| objects.get(s).is_none()) {
            let declared: Vec<&str> = objects.names().collect();
            return Err(ApiError::bad_request(format!(
                "{key}.resourceName: {set} is not a declared object set (declared: {})",
                declared.join(", ")
            )));
        }
    }
    Ok(())
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
    let req = start_request(&state.objects, params, body, user, kind)?;
    let wait = params.flag("waitForCompletion", false)?;
    if wait {
        refuse_blocking_clustered(state, &req.mapping)?;
    }
    let run = state.runner.start(req)?;
    if wait {
        return Ok(Reply::Wait(run, WaitAnswer::Recon));
    }
    ok(json!({ "_id": run.id, "state": run.stage().state() }))
}

/// A clustered run may be finished by other nodes, so no request can wait for it (contract
/// §4): a blocking start of a clustered mapping is refused before anything starts.
pub(super) fn refuse_blocking_clustered(state: &AppState, mapping: &str) -> Result<(), ApiError> {
    if state
        .runner
        .mappings()
        .get(mapping)
        .is_some_and(|m| m.clustered)
    {
        return Err(ApiError::bad_request(format!(
            "waitForCompletion=true is not supported for clustered reconciliation environments \
             (mapping {mapping} has clusteredSourceReconEnabled); poll the run instead"
        )));
    }
    Ok(())
}
