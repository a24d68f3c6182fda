//! Request handlers, one file per resource: `recon` (runs, association data, audit),
//! `sync_service` (`/openidm/sync`: performAction, getLinkedResources, the deprecated recon),
//! `objects` (object sets), `links` (`repo/link`), `scheduler` (jobs), `system` (liveSync, the
//! `sync` audit topic). They convert parameters and bodies into calls on the object sets, the runner and
//! the scheduler, and run on a blocking thread, except [`dispatch_inline`], which answers from
//! memory alone.

mod links;
mod objects;
mod recon;
mod scheduler;
mod sync_service;
mod system;

use std::sync::Arc;

use hyper::body::Bytes;
use hyper::HeaderMap;
use serde_json::{json, Value};

use super::error::ApiError;
use super::request::Params;
use super::routes::Route;
use super::AppState;
use crate::objects::{ObjectSet, QueryRequest, KNOWN_PARAMS};
use crate::query;
use crate::runner::RunState;

pub struct Call {
    pub route: Route,
    pub params: Params,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: String,
}

pub enum Reply {
    Json(u16, Value),
    /// A text body with its content type (the Prometheus exposition).
    Text(u16, &'static str, String),
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

pub(super) fn ok(v: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Json(200, v))
}

pub(super) fn query_request(
    params: &Params,
    extra_allowed: &[&str],
) -> Result<QueryRequest, ApiError> {
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

pub(super) fn envelope(result: crate::objects::QueryResult, q: &QueryRequest) -> Value {
    result.envelope(q.total)
}

pub(super) fn object_set(state: &AppState, name: &str) -> Result<Arc<dyn ObjectSet>, ApiError> {
    state
        .objects
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Resource '{name}' not found")))
}

pub(super) fn fields(params: &Params, v: Value) -> Value {
    match params.get("_fields") {
        Some(f) if !f.is_empty() => query::project(&v, &query::parse_fields(f)),
        _ => v,
    }
}

/// `ACTIVE_READY` only while the store can be written (contract §4).
fn ping(state: &AppState) -> Value {
    match state.health.problem() {
        None => json!({"_id": "", "state": "ACTIVE_READY", "shortDesc": "OpenIDM ready"}),
        Some(why) => json!({"_id": "", "state": "ACTIVE_NOT_READY", "shortDesc": why}),
    }
}

/// Answers the requests that need no store access (the ping, the summary of a run held in
/// memory) directly on the async runtime: operators poll these while a run saturates the
/// CPUs, and a hop to a blocking thread would queue them behind the engine. None when the
/// call needs [`dispatch`].
pub fn dispatch_inline(state: &AppState, call: &Call) -> Option<Reply> {
    match &call.route {
        Route::Ping => Some(Reply::Json(200, ping(state))),
        Route::ReconRead(id) => {
            let v = state.runner.live_summary(id)?;
            Some(Reply::Json(200, fields(&call.params, v)))
        }
        _ => None,
    }
}

pub fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    match &call.route {
        Route::Ping => ok(ping(state)),
        // liveSync is an action on a system object set (IDM's provisioner action).
        Route::ObjectAction(set)
            if set.starts_with("system/") && call.params.get("_action") == Some("liveSync") =>
        {
            system::dispatch(state, call)
        }
        Route::SystemAction | Route::SyncAuditQuery | Route::SyncAuditRead(_) => {
            system::dispatch(state, call)
        }
        Route::ObjectQuery(_)
        | Route::ObjectAction(_)
        | Route::ObjectRead(..)
        | Route::ObjectPut(..)
        | Route::ObjectPatch(..)
        | Route::ObjectDelete(..)
        | Route::ObjectInstanceAction(..)
        | Route::RelationQuery(..)
        | Route::RelationAction(..)
        | Route::RelationRead(..)
        | Route::RelationDelete(..) => objects::dispatch(state, call),
        Route::LinkQuery | Route::LinkRead(_) | Route::LinkDelete(_) => {
            links::dispatch(state, call)
        }
        Route::JobQuery | Route::JobRead(_) | Route::JobAction(_) => {
            scheduler::dispatch(state, call)
        }
        Route::MetricsPrometheus => Ok(Reply::Text(
            200,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(&metric_gauges(state)),
        )),
        Route::MetricsApi => ok(crate::metrics::api_json(&metric_gauges(state))),
        Route::SyncAction => sync_service::dispatch(state, call),
        _ => recon::dispatch(state, call),
    }
}

/// The figures the metrics read when scraped.
fn metric_gauges(state: &AppState) -> crate::metrics::Gauges<'_> {
    crate::metrics::Gauges {
        runs_active: state.runner.active_count(),
        data_dir: &state.config.data_dir,
    }
}
