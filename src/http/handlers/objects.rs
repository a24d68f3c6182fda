//! Object sets: `/openidm/managed/{type}` and `/openidm/system/{name}/{type}`, with CREST
//! create, read, update (PUT), patch, delete and queries.

use serde_json::Value;

use super::{envelope, object_set, ok, query_request, Call, Reply};
use crate::http::error::ApiError;
use crate::http::request::{if_match, if_none_match_star, json_body};
use crate::http::routes::Route;
use crate::http::AppState;
use crate::objects::RelationOp;

pub(super) fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    let Call {
        route,
        params,
        headers,
        body,
        ..
    } = call;
    match route {
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
                    let body_id = match body.get("_id") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) => {
                            return Err(ApiError::bad_request(format!(
                                "_id must be a string, got {other}"
                            )))
                        }
                    };
                    let id = params.get("_id").map(str::to_string).or(body_id);
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
                .read_fields(&id, params.get("_fields").unwrap_or(""))?
                .ok_or_else(|| ApiError::not_found(format!("Object {set}/{id} not found")))?;
            ok(v)
        }
        Route::RelationQuery(set, id, prop) => {
            let q = query_request(&params, &[])?;
            ok(object_set(state, &set)?.relation(&id, &prop, RelationOp::Query(&q))?)
        }
        Route::RelationAction(set, id, prop) => match params.get("_action") {
            Some("create") => {
                let body = json_body(&body)?
                    .ok_or_else(|| ApiError::bad_request("create needs a JSON object body"))?;
                let v = object_set(state, &set)?.relation(&id, &prop, RelationOp::Create(body))?;
                Ok(Reply::Json(201, v))
            }
            other => Err(ApiError::bad_request(format!(
                "Action {} on {set}/{id}/{prop} not supported",
                other.unwrap_or("(none)")
            ))),
        },
        Route::RelationRead(set, id, prop, rel) => {
            ok(object_set(state, &set)?.relation(&id, &prop, RelationOp::Read(&rel))?)
        }
        Route::RelationDelete(set, id, prop, rel) => {
            ok(object_set(state, &set)?.relation(&id, &prop, RelationOp::Delete(&rel))?)
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
        other => Err(ApiError::internal(format!(
            "route {other:?} reached the wrong handler"
        ))),
    }
}
