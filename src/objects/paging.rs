//! CREST query execution shared by every queryable collection (object sets, links,
//! association entries, audit events): filter, `_sortKeys`, `_fields`, `_pageSize` with
//! `_pagedResultsCookie` or `_pagedResultsOffset`, and `_totalPagedResultsPolicy`.
//!
//! Unsorted queries page by key: the cookie holds the last key returned and the next page
//! resumes the ordered scan right after it, so page n costs what page 1 costs. Sorted queries
//! must see every match anyway; their cookie holds an offset. Cookies are opaque (base64url).

use std::ops::ControlFlow;

use serde_json::{json, Value};

use super::ObjectError;
use crate::query::{self, Filter, Pointer, SortKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TotalPolicy {
    #[default]
    None,
    Exact,
}

#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub filter: Filter,
    /// `_queryId=query-all-ids`: return only `_id` and `_rev`.
    pub ids_only: bool,
    /// 0 = everything in one page.
    pub page_size: usize,
    pub cookie: Option<String>,
    pub offset: usize,
    pub total: TotalPolicy,
    pub sort: Vec<SortKey>,
    pub fields: Vec<Pointer>,
}

impl QueryRequest {
    pub fn all() -> QueryRequest {
        QueryRequest::filter(Filter::True)
    }

    pub fn filter(filter: Filter) -> QueryRequest {
        QueryRequest {
            filter,
            ids_only: false,
            page_size: 0,
            cookie: None,
            offset: 0,
            total: TotalPolicy::None,
            sort: Vec::new(),
            fields: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub results: Vec<Value>,
    pub cookie: Option<String>,
    pub total: Option<u64>,
}

impl QueryResult {
    /// The CREST query response envelope (reference §6.4), in its field order.
    pub fn envelope(self, policy: TotalPolicy) -> Value {
        let count = self.results.len();
        json!({
            "result": self.results,
            "resultCount": count,
            "pagedResultsCookie": self.cookie,
            "totalPagedResultsPolicy": if policy == TotalPolicy::Exact { "EXACT" } else { "NONE" },
            "totalPagedResults": self.total.map(|t| t as i64).unwrap_or(-1),
            "remainingPagedResults": -1,
        })
    }
}

enum Cookie {
    After(String),
    Offset(usize),
}

fn encode_cookie(c: &Cookie) -> String {
    use base64::Engine;
    let raw = match c {
        Cookie::After(k) => format!("k:{k}"),
        Cookie::Offset(n) => format!("o:{n}"),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cookie(s: &str) -> Result<Cookie, ObjectError> {
    use base64::Engine;
    let bad = || ObjectError::bad_request(format!("Invalid paged results cookie '{s}'"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    if let Some(k) = raw.strip_prefix("k:") {
        Ok(Cookie::After(k.to_string()))
    } else if let Some(n) = raw.strip_prefix("o:") {
        Ok(Cookie::Offset(n.parse().map_err(|_| bad())?))
    } else {
        Err(bad())
    }
}

/// The cookie that resumes a keyed query right after `key` (what a page ending at `key`
/// returns); used by tools that jump deep into a collection.
pub fn cookie_after(key: &str) -> String {
    encode_cookie(&Cookie::After(key.to_string()))
}

/// A keyed, ordered scan: visits (key, object) pairs in key order, starting strictly after
/// the given key.
pub type KeyedScan<'a> = dyn Fn(Option<&str>, &mut dyn FnMut(&str, Value) -> ControlFlow<()>) -> Result<(), ObjectError>
    + 'a;

fn shape(q: &QueryRequest, obj: Value) -> Value {
    if q.ids_only {
        let mut m = serde_json::Map::new();
        for k in ["_id", "_rev"] {
            if let Some(v) = obj.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        Value::Object(m)
    } else if q.fields.is_empty() {
        obj
    } else {
        query::project(&obj, &q.fields)
    }
}

/// Visits every object of a set in its one stable order, until the visitor breaks.
pub type OrderedVisit<'a> =
    dyn Fn(&mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> + 'a;

/// [`run`] over a set that can only visit its objects in one stable order (a file's rows, a
/// directory's results): the cookie keys are zero-padded positions in that order.
pub fn run_positional(
    q: &QueryRequest,
    visit: &OrderedVisit<'_>,
) -> Result<QueryResult, ObjectError> {
    let scan = |after: Option<&str>,
                f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
     -> Result<(), ObjectError> {
        let start: u64 = after
            .and_then(|a| a.parse().ok())
            .map(|n: u64| n + 1)
            .unwrap_or(0);
        let mut n: u64 = 0;
        visit(&mut |v| {
            let i = n;
            n += 1;
            if i < start {
                return ControlFlow::Continue(());
            }
            f(&format!("{i:020}"), v)
        })
    };
    run(q, &scan)
}

/// Runs a query over a keyed scan.
pub fn run(q: &QueryRequest, scan: &KeyedScan<'_>) -> Result<QueryResult, ObjectError> {
    let cookie = q.cookie.as_deref().map(decode_cookie).transpose()?;
    if q.cookie.is_some() && q.offset > 0 {
        return Err(ObjectError::bad_request(
            "_pagedResultsCookie and _pagedResultsOffset are mutually exclusive",
        ));
    }
    if !q.sort.is_empty() || matches!(cookie, Some(Cookie::Offset(_))) {
        return run_materialised(q, scan, cookie);
    }
    let after = match &cookie {
        Some(Cookie::After(k)) => Some(k.clone()),
        _ => None,
    };
    let mut skip = q.offset;
    let mut results = Vec::new();
    let mut last_key: Option<String> = None;
    let mut more = false;
    let limit = if q.page_size == 0 {
        usize::MAX
    } else {
        q.page_size
    };
    scan(after.as_deref(), &mut |key, obj| {
        if !q.filter.matches(&obj) {
            return ControlFlow::Continue(());
        }
        if skip > 0 {
            skip -= 1;
            return ControlFlow::Continue(());
        }
        if results.len() == limit {
            more = true;
            return ControlFlow::Break(());
        }
        last_key = Some(key.to_string());
        results.push(shape(q, obj));
        ControlFlow::Continue(())
    })?;
    let total = if q.total == TotalPolicy::Exact {
        let mut n = 0u64;
        scan(None, &mut |_, obj| {
            if q.filter.matches(&obj) {
                n += 1;
            }
            ControlFlow::Continue(())
        })?;
        Some(n)
    } else {
        None
    };
    let cookie = if more && q.page_size > 0 {
        last_key.map(|k| encode_cookie(&Cookie::After(k)))
    } else {
        None
    };
    Ok(QueryResult {
        results,
        cookie,
        total,
    })
}

fn run_materialised(
    q: &QueryRequest,
    scan: &KeyedScan<'_>,
    cookie: Option<Cookie>,
) -> Result<QueryResult, ObjectError> {
    let mut all = Vec::new();
    scan(None, &mut |_, obj| {
        if q.filter.matches(&obj) {
            all.push(obj);
        }
        ControlFlow::Continue(())
    })?;
    if !q.sort.is_empty() {
        all.sort_by(|a, b| query::sort_cmp(a, b, &q.sort));
    }
    let total = all.len();
    let start = match cookie {
        Some(Cookie::Offset(n)) => n,
        _ => q.offset,
    };
    let end = if q.page_size == 0 {
        total
    } else {
        start.saturating_add(q.page_size).min(total)
    };
    let results: Vec<Value> = all
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .map(|o| shape(q, o))
        .collect();
    let cookie = if q.page_size > 0 && end < total {
        Some(encode_cookie(&Cookie::Offset(end)))
    } else {
        None
    };
    Ok(QueryResult {
        results,
        cookie,
        total: (q.total == TotalPolicy::Exact).then_some(total as u64),
    })
}

/// The CREST query parameters recond knows; any other `_`-prefixed parameter is an error.
pub const KNOWN_PARAMS: &[&str] = &[
    "_queryFilter",
    "_queryId",
    "_queryExpression",
    "_pageSize",
    "_pagedResultsCookie",
    "_pagedResultsOffset",
    "_totalPagedResultsPolicy",
    "_sortKeys",
    "_fields",
    "_prettyPrint",
    "_mimeType",
];

impl QueryRequest {
    /// Builds a query from CREST parameters, whatever carries them (URL parameters, a script's
    /// query object, a correlation query). `_queryId` supports `query-all-ids`, `query-all`
    /// and `for-userName` (parameter `uid`).
    pub fn from_params(get: &dyn Fn(&str) -> Option<String>) -> Result<QueryRequest, ObjectError> {
        let filter_text = get("_queryFilter");
        let query_id = get("_queryId");
        if get("_queryExpression").is_some() {
            return Err(ObjectError::new(
                super::ObjectErrorKind::NotSupported,
                "_queryExpression (native queries) is not supported; use _queryFilter",
            ));
        }
        let (filter, ids_only) = match (filter_text, query_id) {
            (Some(_), Some(_)) => {
                return Err(ObjectError::bad_request(
                    "_queryFilter and _queryId are mutually exclusive",
                ))
            }
            (Some(f), None) => (
                query::parse(&f).map_err(|e| ObjectError::bad_request(e.to_string()))?,
                false,
            ),
            (None, Some(id)) => match id.as_str() {
                "query-all-ids" => (Filter::True, true),
                "query-all" => (Filter::True, false),
                "for-userName" => {
                    let uid = get("uid").ok_or_else(|| {
                        ObjectError::bad_request("Query for-userName needs the parameter uid")
                    })?;
                    (
                        Filter::eq(Pointer::parse("userName"), Value::String(uid)),
                        false,
                    )
                }
                other => {
                    return Err(ObjectError::bad_request(format!(
                        "Unknown query id '{other}'"
                    )))
                }
            },
            (None, None) => {
                return Err(ObjectError::bad_request(
                    "A query needs _queryFilter or _queryId (for example _queryFilter=true)",
                ))
            }
        };
        let number = |key: &str| -> Result<usize, ObjectError> {
            match get(key) {
                None => Ok(0),
                Some(v) if v.is_empty() => Ok(0),
                Some(v) => v.parse::<i64>().map(|n| n.max(0) as usize).map_err(|_| {
                    ObjectError::bad_request(format!("{key} must be an integer, got '{v}'"))
                }),
            }
        };
        let total = match get("_totalPagedResultsPolicy").as_deref() {
            None | Some("NONE") | Some("") => TotalPolicy::None,
            Some("EXACT") | Some("ESTIMATE") => TotalPolicy::Exact,
            Some(other) => {
                return Err(ObjectError::bad_request(format!(
                    "_totalPagedResultsPolicy must be NONE or EXACT, got '{other}'"
                )))
            }
        };
        let sort = match get("_sortKeys") {
            Some(s) if !s.is_empty() => {
                query::parse_sort_keys(&s).map_err(|e| ObjectError::bad_request(e.to_string()))?
            }
            _ => Vec::new(),
        };
        let fields = get("_fields")
            .map(|f| query::parse_fields(&f))
            .unwrap_or_default();
        Ok(QueryRequest {
            filter,
            ids_only,
            page_size: number("_pageSize")?,
            cookie: get("_pagedResultsCookie").filter(|c| !c.is_empty()),
            offset: match number("_pagedResultsOffset") {
                // A negative offset is a client mistake, not the first page.
                _ if get("_pagedResultsOffset").is_some_and(|v| v.trim().starts_with('-')) => {
                    return Err(ObjectError::bad_request(
                        "_pagedResultsOffset must not be negative",
                    ))
                }
                n => n?,
            },
            total,
            sort,
            fields,
        })
    }

    /// From a JSON object of query parameters (scripts, correlation queries, run bodies).
    pub fn from_json(params: &Value) -> Result<QueryRequest, ObjectError> {
        let obj = params
            .as_object()
            .ok_or_else(|| ObjectError::bad_request("Query parameters must be an object"))?;
        QueryRequest::from_params(&|k: &str| match obj.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => {
                // Ping's display form drops the underscore; accept it for filters.
                if k == "_queryFilter" {
                    obj.get("queryFilter")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                } else if k == "_queryId" {
                    obj.get("queryId")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                } else {
                    None
                }
            }
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(other) => Some(other.to_string()),
        })
    }
}
