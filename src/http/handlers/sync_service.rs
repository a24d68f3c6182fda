//! `POST /openidm/sync?_action=...`, IDM's synchronization service: `performAction` (one
//! action forced on one object, reference §3.8), `getLinkedResources` (what a resource is
//! linked to), and the deprecated `recon`. Parameters become typed requests here; the runner
//! and `sync::linked` do the work.

use hyper::body::Bytes;
use serde_json::{json, Value};

use super::{ok, Call, Reply, WaitAnswer};
use crate::engine::model::{Action, Situation};
use crate::http::error::ApiError;
use crate::http::request::{json_body, Params};
use crate::http::AppState;
use crate::runner::{PerformRequest, ReconKind};

/// Actions of IDM's synchronization service that recond does not offer: managed objects are
/// synchronized by recond itself (implicit synchronization), not told about by a caller.
const SYNC_NOT_OFFERED: &[&str] = &["notifyCreate", "notifyUpdate", "notifyDelete"];

pub(super) fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    let Call {
        params, body, user, ..
    } = call;
    match params.get("_action") {
        // IDM's older, deprecated way to start a reconciliation, kept for scripts written
        // against it. Like IDM it runs the mapping to the end before answering.
        Some("recon") => {
            let req = super::recon::start_request(&state.objects, &params, &body, user, ReconKind::Full)?;
            super::recon::refuse_blocking_clustered(state, &req.mapping)?;
            Ok(Reply::Wait(state.runner.start(req)?, WaitAnswer::Sync))
        }
        Some("performAction") => perform_action(state, &params, &body, user),
        Some("getLinkedResources") => {
            let args = Args::new(&params, &body)?;
            let name = args.required("resourceName")?;
            ok(crate::sync::linked::linked_resources(&state.runner, &name)?)
        }
        Some(a) if SYNC_NOT_OFFERED.contains(&a) => Err(ApiError::new(
            501,
            format!("The sync action {a} is not supported: recond synchronizes managed objects itself (implicit synchronization)"),
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "Action {other} is not supported."
        ))),
        None => Err(ApiError::bad_request(
            "Action parameter is not present or value is null",
        )),
    }
}

/// The action's arguments: request parameters, or the same keys in a JSON object body (IDM's
/// workflows pass an action script's `recon.actionParam` as the content). A parameter wins.
struct Args<'a> {
    params: &'a Params,
    body: serde_json::Map<String, Value>,
}

impl<'a> Args<'a> {
    fn new(params: &'a Params, body: &Bytes) -> Result<Args<'a>, ApiError> {
        let body = match json_body(body)? {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "The request body must be a JSON object",
                ))
            }
        };
        Ok(Args { params, body })
    }

    /// A non-empty value of `key`; a body value may be a string, number or boolean.
    fn get(&self, key: &str) -> Option<String> {
        if let Some(v) = self.params.get(key) {
            return Some(v.to_string()).filter(|s| !s.is_empty());
        }
        match self.body.get(key)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn required(&self, key: &str) -> Result<String, ApiError> {
        self.get(key)
            .ok_or_else(|| ApiError::bad_request(format!("/{key}: Expecting a value")))
    }

    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "Parameter {key} must be true or false, got '{v}'"
            ))),
        }
    }
}

/// `performAction`: `mapping`, `action`, `sourceId` (or `targetId` with `target` for a
/// target-side operation), optional `targetId`, `linkQualifier`, `situation`,
/// `ignorePostAction`. Answers `{"status": "OK"}`; a failed operation is a 409 with its
/// reason, as in IDM.
fn perform_action(
    state: &AppState,
    params: &Params,
    body: &Bytes,
    user: String,
) -> Result<Reply, ApiError> {
    let args = Args::new(params, body)?;
    let mapping = args.required("mapping")?;
    let action_name = args.required("action")?;
    let action = Action::parse(&action_name.to_ascii_uppercase()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid action '{action_name}': expected one of CREATE, UPDATE, DELETE, LINK, UNLINK, EXCEPTION, IGNORE, REPORT, NOREPORT, ASYNC"
        ))
    })?;
    let situation = match args.get("situation") {
        None => None,
        Some(s) => Some(
            Situation::parse(&s.to_ascii_uppercase())
                .ok_or_else(|| ApiError::bad_request(format!("Invalid situation '{s}'")))?,
        ),
    };
    // IDM: the presence of `target` makes it a target-side operation (an action script's
    // `recon.actionParam` of the target phase carries `"target": "true"`).
    let target_phase = match args.get("target") {
        None => false,
        Some(v) => !v.eq_ignore_ascii_case("false"),
    };
    let (source_id, target_id) = if target_phase {
        (None, Some(args.required("targetId")?))
    } else {
        (Some(args.required("sourceId")?), args.get("targetId"))
    };
    state.runner.perform_action(PerformRequest {
        mapping,
        source_id,
        target_id,
        action,
        qualifier: args
            .get("linkQualifier")
            .unwrap_or_else(|| "default".into()),
        situation,
        target_phase,
        ignore_post_action: args.flag("ignorePostAction")?,
        user,
    })?;
    ok(json!({"status": "OK"}))
}
