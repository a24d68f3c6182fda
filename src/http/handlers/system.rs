//! liveSync over REST and the `sync` audit topic:
//! * `POST /openidm/system/<name>/<type>?_action=liveSync` and IDM's other form,
//!   `POST /openidm/system?_action=liveSync&source=system/<name>/<type>`: one liveSync of the
//!   set (a second call for the same set waits for the first), answered as IDM does,
//!   `{_id: "SYSTEM<NAME><TYPE>", _rev, connectorData: {nativeType, syncToken}}`;
//! * `GET /openidm/audit/sync?_queryFilter=...` and `/openidm/audit/sync/<id>`.

use super::{envelope, ok, query_request, Call, Reply};
use crate::http::error::ApiError;
use crate::http::request::Params;
use crate::http::routes::Route;
use crate::http::AppState;
use crate::sync::LiveSyncError;

pub(super) fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    let Call {
        route,
        params,
        user,
        ..
    } = call;
    match route {
        Route::ObjectAction(set) => live_sync(state, &set, &user),
        Route::SystemAction => match params.get("_action") {
            Some("liveSync") => {
                let source = source_param(&params)?;
                live_sync(state, &source, &user)
            }
            Some(other) => Err(ApiError::bad_request(format!(
                "Action {other} on system not supported"
            ))),
            None => Err(ApiError::bad_request(
                "Action parameter is not present or value is null",
            )),
        },
        Route::SyncAuditQuery => {
            let q = query_request(&params, &[])?;
            ok(envelope(
                crate::sync::audit::query(state.runner.store(), &q)?,
                &q,
            ))
        }
        Route::SyncAuditRead(id) => crate::sync::audit::read(state.runner.store(), &id)?
            .map(|v| Reply::Json(200, v))
            .ok_or_else(|| ApiError::not_found(format!("Audit event {id} not found."))),
        other => Err(ApiError::internal(format!(
            "route {other:?} reached the wrong handler"
        ))),
    }
}

/// `source=system/<name>/<type>` of the system-wide form; it must name a connector set.
fn source_param(params: &Params) -> Result<String, ApiError> {
    let source = params
        .get("source")
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("liveSync requires a 'source' parameter"))?;
    if source.split('/').count() != 3 || !source.starts_with("system/") {
        return Err(ApiError::bad_request(format!(
            "source {source:?} is not a system object set (system/<name>/<type>)"
        )));
    }
    Ok(source.to_string())
}

fn live_sync(state: &AppState, set: &str, user: &str) -> Result<Reply, ApiError> {
    match state.live_sync.live_sync(set, user, true) {
        Ok(outcome) => ok(outcome.to_json()),
        Err(e) => Err(api_error(e)),
    }
}

fn api_error(e: LiveSyncError) -> ApiError {
    match e {
        LiveSyncError::UnknownSet(_) => ApiError::not_found(e.to_string()),
        LiveSyncError::Busy(_) => ApiError::conflict(e.to_string()),
        LiveSyncError::Source(o) => ApiError::from(o),
        LiveSyncError::Sync { .. } => ApiError::new(503, e.to_string()),
        LiveSyncError::Store(s) => ApiError::from(s),
        LiveSyncError::BadStoredToken(_) => ApiError::internal(e.to_string()),
    }
}
