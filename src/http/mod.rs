//! HTTP: the only module that knows hyper. Routing is a pure function ([`routes::route`]);
//! errors become CREST error bodies in one place ([`error`]); handlers convert requests into
//! calls on the object sets, the runner and the scheduler, and their results into JSON.
//!
//! | Method + path | Handler |
//! | --- | --- |
//! | `GET /openidm/info/ping` (no credentials) | ping |
//! | `GET /openidm/health/recon` | run pool figures |
//! | `POST /openidm/recon?_action=recon\|reconById` | start a run |
//! | `GET /openidm/recon` | list runs |
//! | `GET /openidm/recon/{id}` | run summary |
//! | `POST /openidm/recon/{id}?_action=cancel` | cancel |
//! | `DELETE /openidm/recon/{id}` | delete a run and its history |
//! | `GET /openidm/recon/assoc[/{id}[/entry[/{n}]]]` | association data |
//! | `GET/POST/PUT/PATCH/DELETE /openidm/managed/{type}[/{id}]` | managed objects |
//! | `... /openidm/system/{name}/{type}[/{id}]` | connector objects |
//! | `GET /openidm/repo/link[/{id}]`, `DELETE /openidm/repo/link/{id}` | link table |
//! | `GET /openidm/audit/recon[/{id}]` | recon audit events |
//! | `GET /openidm/scheduler/job[/{name}]`, `POST ...?_action=trigger` | schedules |
//! | `POST /openidm/sync?_action=recon` (deprecated in IDM) | start a run, answer when it ends |
//! | `GET /openidm/metrics/prometheus`, `GET /openidm/metrics/api` | metrics (`crate::metrics`) |

pub mod auth;
pub mod error;
pub mod guard;
mod handlers;
pub mod health;
pub mod preflight;
pub mod request;
pub mod routes;
pub mod server;

use std::sync::Arc;
use std::time::Instant;

use hyper::{Request, Response};

use crate::config::Config;
use crate::objects::ObjectSets;
use crate::runner::Runner;
use crate::scheduler::Scheduler;
use error::ApiError;
use request::{error_response, json_response, Body, Params};
use routes::{Route, RouteError};

/// Shared handles for every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub runner: Runner,
    pub objects: ObjectSets,
    pub scheduler: Option<Arc<Scheduler>>,
    pub guard: Arc<guard::LoginGuard>,
    pub health: Arc<health::StoreHealth>,
    /// liveSync; shared with the scheduler (see [`AppState::with_live_sync`]).
    pub live_sync: Arc<crate::sync::LiveSync>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        runner: Runner,
        objects: ObjectSets,
        scheduler: Option<Arc<Scheduler>>,
    ) -> AppState {
        AppState {
            live_sync: Arc::new(crate::sync::LiveSync::new(runner.clone())),
            config,
            runner,
            objects,
            scheduler,
            guard: Arc::default(),
            health: Arc::default(),
        }
    }
}

impl AppState {
    /// Uses `live` (the instance the scheduler fires) for liveSync requests, so REST calls
    /// and schedules share one liveSync per set.
    pub fn with_live_sync(mut self, live: Arc<crate::sync::LiveSync>) -> AppState {
        self.live_sync = live;
        self
    }
}

/// Checks `Accept-API-Version`: absent or `resource=1.0` (any protocol); the scheduler also
/// accepts `resource=2.0`.
fn check_api_version(
    req: &Request<hyper::body::Incoming>,
    route: Option<&Route>,
) -> Result<(), ApiError> {
    let Some(v) = req.headers().get("accept-api-version") else {
        return Ok(());
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::not_found("Resource '' not found"))?;
    for part in text.split(',') {
        let Some((k, val)) = part.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("resource") {
            let val = val.trim();
            let ok = matches!(val, "1.0" | "1")
                || (route.is_some_and(Route::is_scheduler) && matches!(val, "2.0" | "2"));
            if !ok {
                return Err(ApiError::not_found(format!(
                    "Resource '' not found (unsupported resource version {val})"
                )));
            }
        }
    }
    Ok(())
}

/// The `Content-API-Version` IDM answers with: the resource version the request asked for
/// (the scheduler's 2.0 when asked), else 1.0.
fn content_api_version(req: &Request<hyper::body::Incoming>) -> &'static str {
    let asked_v2 = req
        .headers()
        .get("accept-api-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(',').any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("resource") && matches!(v.trim(), "2.0" | "2")
                })
            })
        });
    if asked_v2 {
        "protocol=2.1,resource=2.0"
    } else {
        "protocol=2.1,resource=1.0"
    }
}

/// The service function: never fails; every error is a CREST error response.
pub async fn handle(
    state: AppState,
    peer: std::net::IpAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let params = Params::parse(req.uri().query());
    let pretty = params
        .as_ref()
        .ok()
        .and_then(|p| p.flag("_prettyPrint", false).ok())
        .unwrap_or(false);
    let api_version = content_api_version(&req);
    let result = respond(state, peer, req, params).await;
    let mut res = match result {
        Ok(r) => r,
        Err(e) => error_response(&redact(e, &method, &path), pretty),
    };
    res.headers_mut().insert(
        "content-api-version",
        hyper::header::HeaderValue::from_static(api_version),
    );
    crate::metrics::observe_request(method.as_str(), res.status().as_u16(), started.elapsed());
    tracing::debug!(%method, %path, status = res.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    res
}

/// Whether a request of this method may write (and so is answered only once durable).
fn writes(method: &hyper::Method) -> bool {
    !matches!(
        *method,
        hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
    )
}

/// Flushes the store before a writing request is answered (`[storage] durable_writes`), so
/// an answered write survives a crash. A failed request may have written too (a managed
/// change whose synchronization failed is kept), so the flush does not depend on the
/// outcome; a flush that fails turns a success into a 500 (the write is applied but not
/// known to be on disk) and leaves an error answer as it was.
fn make_durable(
    state: &AppState,
    reply: Result<handlers::Reply, ApiError>,
) -> Result<handlers::Reply, ApiError> {
    match state.runner.store().flush() {
        Ok(_) => reply,
        Err(e) => {
            tracing::error!(error = %e, "could not make a write durable before answering it");
            reply.and(Err(ApiError::internal(format!(
                "the change was applied but could not be flushed to disk: {e}"
            ))))
        }
    }
}

/// A 500's cause (a store error, an OS error) is for the log, not for the client: it is logged
/// with a fresh reference, and the answer is a generic message naming that reference.
fn redact(e: ApiError, method: &hyper::Method, path: &str) -> ApiError {
    if e.status != 500 {
        return e;
    }
    let reference = crate::ids::new_uuid();
    tracing::error!(%method, %path, %reference, error = %e.message, "internal error");
    ApiError::internal(format!(
        "Internal server error (reference {reference}; the server log has the details)"
    ))
}

/// The authenticated user, checked once per request. Verifying an argon2 hash takes tens of
/// milliseconds and MiBs on purpose, so that case goes through the login guard (a permit, a
/// cache of recent successes, delayed repeated failures) and runs on a blocking thread.
async fn authenticate(
    state: &AppState,
    peer: std::net::IpAddr,
    headers: &hyper::HeaderMap,
) -> Result<Option<String>, ApiError> {
    let Some(credentials) = auth::Credentials::from_headers(headers) else {
        return Ok(None);
    };
    let claimed = credentials.user().unwrap_or("(bearer token)").to_string();
    let verified = if credentials.needs_hashing(&state.config.users) {
        let fp = state.guard.fingerprint(
            credentials.user().unwrap_or(""),
            credentials.password().unwrap_or(""),
        );
        if let Some(user) = state.guard.recall(fp) {
            return Ok(Some(user));
        }
        let permit = state.guard.permit().await;
        let config = state.config.clone();
        let verified = tokio::task::spawn_blocking(move || credentials.verify(&config.users))
            .await
            .map_err(|e| ApiError::internal(format!("credential check failed: {e}")))?;
        drop(permit);
        if let Some(user) = &verified {
            state.guard.remember(fp, user);
        }
        verified
    } else {
        credentials.verify(&state.config.users)
    };
    if verified.is_none() {
        let delay = state.guard.failed(peer, &claimed);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(verified)
}

async fn respond(
    state: AppState,
    peer: std::net::IpAddr,
    req: Request<hyper::body::Incoming>,
    params: Result<Params, ApiError>,
) -> Result<Response<Body>, ApiError> {
    let route = routes::route(req.method(), req.uri().path());
    let user = match authenticate(&state, peer, req.headers()).await? {
        Some(u) => u,
        None if matches!(route, Ok(Route::Ping)) => "anonymous".into(),
        None => return Err(ApiError::unauthorized()),
    };
    check_api_version(&req, route.as_ref().ok())?;
    let route = route.map_err(|e| match e {
        RouteError::NotFound => {
            ApiError::not_found(format!("Resource '{}' not found", req.uri().path()))
        }
        RouteError::MethodNotAllowed { allow } => {
            let mut e = ApiError::new(
                405,
                format!(
                    "Method {} not allowed on {}",
                    req.method(),
                    req.uri().path()
                ),
            );
            e.allow = Some(allow);
            e
        }
        RouteError::NotSupported(op) => {
            ApiError::new(501, format!("The {op} operations are not supported"))
        }
        RouteError::BadPath => {
            ApiError::bad_request("The request path is not valid UTF-8 after percent-decoding")
        }
    })?;
    let params = params?;
    let pretty = params.flag("_prettyPrint", false)?;
    let (parts, body) = req.into_parts();
    let body = request::read_body(
        &parts.headers,
        body,
        state.config.server.max_body_bytes,
        std::time::Duration::from_secs(state.config.server.body_read_timeout_secs.max(1)),
    )
    .await?;
    let ctx = handlers::Call {
        route,
        params,
        headers: parts.headers,
        body,
        user,
    };
    let reply = match handlers::dispatch_inline(&state, &ctx) {
        Some(r) => r,
        None => {
            let st = state.clone();
            let durable = state.config.storage.durable_writes && writes(&parts.method);
            tokio::task::spawn_blocking(move || {
                let reply = handlers::dispatch(&st, ctx);
                if durable {
                    make_durable(&st, reply)
                } else {
                    reply
                }
            })
            .await
            .map_err(|e| ApiError::internal(format!("request handler failed: {e}")))??
        }
    };
    let (status, value) = match reply {
        handlers::Reply::Json(status, v) => (status, v),
        handlers::Reply::Text(status, content_type, text) => {
            return Ok(request::text_response(status, content_type, text))
        }
        handlers::Reply::Wait(run, answer) => {
            state.runner.wait(&run).await;
            if run.thrown() {
                let m = run.message().unwrap_or_default();
                return Err(ApiError::conflict(format!("Synchronization failed: {m}")));
            }
            let body = match answer {
                handlers::WaitAnswer::Recon => {
                    serde_json::json!({ "_id": run.id, "state": run.stage().state() })
                }
                handlers::WaitAnswer::Sync => serde_json::json!({
                    "reconId": run.id,
                    "_id": run.id,
                    "comment1": "Deprecated: start reconciliations with POST /openidm/recon?_action=recon.",
                    "comment2": "Deprecated: reconId will go, read _id instead.",
                }),
            };
            (200, body)
        }
    };
    Ok(json_response(status, &value, pretty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_answered_without_their_cause() {
        let cause = ApiError::from(crate::storage::StoreError::Codec(
            "object u1: recursion limit exceeded at /var/lib/recond".into(),
        ));
        let e = redact(cause, &hyper::Method::GET, "/openidm/managed/user/u1");
        assert_eq!(e.status, 500);
        assert!(!e.message.contains("recursion"), "{}", e.message);
        assert!(!e.message.contains("/var/lib"), "{}", e.message);
        assert!(e.message.contains("reference "), "{}", e.message);
        let not_found = redact(
            ApiError::not_found("Object x not found"),
            &hyper::Method::GET,
            "/",
        );
        assert_eq!(not_found.message, "Object x not found");
    }
}
