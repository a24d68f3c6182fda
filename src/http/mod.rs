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
mod handlers;
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
pub async fn handle(state: AppState, req: Request<hyper::body::Incoming>) -> Response<Body> {
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
    let result = respond(state, req, params).await;
    let mut res = match result {
        Ok(r) => r,
        Err(e) => error_response(&e, pretty),
    };
    res.headers_mut().insert(
        "content-api-version",
        hyper::header::HeaderValue::from_static(api_version),
    );
    crate::metrics::observe_request(method.as_str(), res.status().as_u16(), started.elapsed());
    tracing::debug!(%method, %path, status = res.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    res
}

/// The authenticated user, checked once per request. Verifying an argon2 hash takes tens of
/// milliseconds on purpose, so that case runs on a blocking thread, never on the runtime.
async fn authenticate(
    state: &AppState,
    headers: &hyper::HeaderMap,
) -> Result<Option<String>, ApiError> {
    let Some(credentials) = auth::Credentials::from_headers(headers) else {
        return Ok(None);
    };
    if !credentials.needs_hashing(&state.config.users) {
        return Ok(credentials.verify(&state.config.users));
    }
    let config = state.config.clone();
    tokio::task::spawn_blocking(move || credentials.verify(&config.users))
        .await
        .map_err(|e| ApiError::internal(format!("credential check failed: {e}")))
}

async fn respond(
    state: AppState,
    req: Request<hyper::body::Incoming>,
    params: Result<Params, ApiError>,
) -> Result<Response<Body>, ApiError> {
    let route = routes::route(req.method(), req.uri().path());
    let user = match authenticate(&state, req.headers()).await? {
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
    let headers = req.headers().clone();
    let body = request::read_body(req.into_body(), state.config.server.max_body_bytes).await?;
    let ctx = handlers::Call {
        route,
        params,
        headers,
        body,
        user,
    };
    let reply = match handlers::dispatch_inline(&state, &ctx) {
        Some(r) => r,
        None => {
            let st = state.clone();
            tokio::task::spawn_blocking(move || handlers::dispatch(&st, ctx))
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
