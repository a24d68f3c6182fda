//! The link table: `/openidm/repo/link` (query, read, delete).

use super::{envelope, ok, query_request, Call, Reply};
use crate::http::error::ApiError;
use crate::http::request::if_match;
use crate::http::routes::Route;
use crate::http::AppState;

pub(super) fn dispatch(state: &AppState, call: Call) -> Result<Reply, ApiError> {
    let Call {
        route,
        params,
        headers,
        ..
    } = call;
    match route {
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
        other => Err(ApiError::internal(format!(
            "route {other:?} reached the wrong handler"
        ))),
    }
}
