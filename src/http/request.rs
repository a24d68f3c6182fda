//! Request parsing shared by every handler: query parameters, the JSON body (size-limited,
//! an empty body is no body whatever its Content-Type says), conditional headers, and JSON
//! responses (with `_prettyPrint`).

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::Value;

use super::error::ApiError;
use super::routes::percent_decode;

/// Query parameters in request order, percent-decoded (`+` is a space).
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let mut out = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k, true)
                .ok_or_else(|| ApiError::bad_request("Malformed query string"))?;
            let v = percent_decode(v, true)
                .ok_or_else(|| ApiError::bad_request("Malformed query string"))?;
            out.push((k, v));
        }
        Ok(Params(out))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A boolean parameter: absent → default; `true`/`false` (any case) → the value.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "Parameter {key} must be true or false, got '{v}'"
            ))),
        }
    }
}

/// Reads the body up to `limit` bytes within `timeout`: a declared `Content-Length` over the
/// limit is a 413 before any of the body is read, a longer body a 413 as soon as it passes the
/// limit, a body still arriving after `timeout` a 408, a broken stream a 400. Each of these
/// closes the connection, since the rest of the body is never read.
pub async fn read_body(
    headers: &HeaderMap,
    body: hyper::body::Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            format!("Request body larger than the limit of {limit} bytes"),
        )
        .closing()
    };
    let declared = headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    let Ok(read) = read else {
        return Err(ApiError::new(
            408,
            format!(
                "The request body did not arrive within {} seconds",
                timeout.as_secs()
            ),
        )
        .closing());
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large())
            } else {
                Err(
                    ApiError::bad_request(format!("Could not read the request body: {e}"))
                        .closing(),
                )
            }
        }
    }
}

/// Parses a JSON body; `None` for an empty (or whitespace-only) body. A body nested deeper
/// than [`crate::objects::MAX_DEPTH`] is a 400, whatever it is for.
pub fn json_body(bytes: &Bytes) -> Result<Option<Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("The request body could not be parsed as JSON: {e}"))
    })?;
    if crate::objects::depth(&value) > crate::objects::MAX_DEPTH {
        return Err(ApiError::bad_request(format!(
            "The request body is nested deeper than {} levels",
            crate::objects::MAX_DEPTH
        )));
    }
    Ok(Some(value))
}

/// `If-Match: "<rev>"` (quotes optional; `*` means any revision, i.e. no condition).
pub fn if_match(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("if-match")?.to_str().ok()?.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.trim_matches('"');
    if v == "*" {
        None
    } else {
        Some(v.to_string())
    }
}

pub fn if_none_match_star(headers: &HeaderMap) -> bool {
    headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "*")
}

pub type Body = Full<Bytes>;

pub fn json_response(status: u16, value: &Value, pretty: bool) -> Response<Body> {
    let bytes = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    // Serialising a serde_json::Value cannot fail (its map keys are strings); fall back to an
    // error body anyway rather than panicking.
    let (status, bytes) = match bytes {
        Ok(b) => (status, b),
        Err(_) => (500, br#"{"code":500,"reason":"Internal Server Error","message":"Response encoding failed"}"#.to_vec()),
    };
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    res
}

pub fn text_response(status: u16, content_type: &'static str, text: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(text)));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

pub fn error_response(e: &ApiError, pretty: bool) -> Response<Body> {
    let mut res = json_response(e.status, &e.body(), pretty);
    if let Some(allow) = e.allow {
        res.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    }
    if e.close {
        res.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}
