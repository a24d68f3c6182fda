//! Routing: a pure function from (method, path) to a typed [`Route`].
//!
//! Unknown paths are 404, known paths with a method they do not accept are 405, and CREST
//! verbs that a known resource does not support (create/update/patch/delete on `/recon`)
//! are 501 as in IDM. Paths are split on `/` after the `/openidm/` prefix; empty segments
//! (a trailing slash, `//`) are ignored. Segments are percent-decoded here and nowhere else.

use hyper::Method;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Ping,
    ReconHealth,
    /// `GET /openidm/recon` (list, or a query → 501).
    ReconList,
    /// `POST /openidm/recon?_action=...`.
    ReconAction,
    ReconRead(String),
    ReconInstanceAction(String),
    ReconDelete(String),
    AssocQuery,
    AssocRead(String),
    AssocEntries(String),
    AssocEntry(String, String),
    /// `GET` on an object set: a query.
    ObjectQuery(String),
    /// `POST` on an object set: `_action=create` (or another action).
    ObjectAction(String),
    ObjectRead(String, String),
    ObjectPut(String, String),
    ObjectPatch(String, String),
    ObjectDelete(String, String),
    ObjectInstanceAction(String, String),
    /// `GET managed/<type>/<id>/<property>`: the relationships of one property.
    RelationQuery(String, String, String),
    /// `POST managed/<type>/<id>/<property>?_action=create`.
    RelationAction(String, String, String),
    /// `GET managed/<type>/<id>/<property>/<relationship id>`.
    RelationRead(String, String, String, String),
    /// `DELETE managed/<type>/<id>/<property>/<relationship id>`.
    RelationDelete(String, String, String, String),
    LinkQuery,
    LinkRead(String),
    LinkDelete(String),
    AuditQuery,
    AuditRead(String),
    /// `GET /openidm/audit/sync` (the `sync` topic of implicit and live synchronization).
    SyncAuditQuery,
    SyncAuditRead(String),
    /// `POST /openidm/system?_action=liveSync&source=...` (IDM's provisioner service).
    SystemAction,
    JobQuery,
    JobRead(String),
    JobAction(String),
    /// `POST /openidm/sync?_action=...` (IDM's synchronization service).
    SyncAction,
    /// `GET /openidm/metrics/prometheus`.
    MetricsPrometheus,
    /// `GET /openidm/metrics/api`.
    MetricsApi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
    /// A CREST operation the resource does not support (name of the operation).
    NotSupported(&'static str),
    /// The path is not valid UTF-8 after percent-decoding.
    BadPath,
}

impl Route {
    /// The scheduler accepts resource version 2.0 as well (IDM's version there).
    pub fn is_scheduler(&self) -> bool {
        matches!(
            self,
            Route::JobQuery | Route::JobRead(_) | Route::JobAction(_)
        )
    }
}

/// Percent-decodes a path segment or a query component (`+` is a space there); None when an
/// escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    // Every `%` must start an escape of two hex digits: `%zz` and `%+1` are malformed, not
    // text to pass through.
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        if !bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            return None;
        }
    }
    let spaced;
    let s = if plus_is_space && s.contains('+') {
        spaced = s.replace('+', " ");
        spaced.as_str()
    } else {
        s
    };
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

fn crest_verb(method: &Method, instance: bool) -> &'static str {
    match *method {
        Method::PUT if instance => "update",
        Method::PUT => "create",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::POST => "action",
        _ => "read",
    }
}

pub fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let rest = match path.strip_prefix("/openidm") {
        Some(r) if r.is_empty() || r.starts_with('/') => r,
        _ => return Err(RouteError::NotFound),
    };
    let mut segs = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        segs.push(percent_decode(raw, false).ok_or(RouteError::BadPath)?);
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method;
    let get = *m == Method::GET;
    let post = *m == Method::POST;
    let r = match s.as_slice() {
        ["info", "ping"] if get => Route::Ping,
        ["info", "ping"] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["health", "recon"] if get => Route::ReconHealth,
        ["health", "recon"] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),

        ["recon"] if get => Route::ReconList,
        ["recon"] if post => Route::ReconAction,
        ["recon"] if matches!(*m, Method::PUT | Method::PATCH | Method::DELETE) => {
            return Err(RouteError::NotSupported(crest_verb(m, false)))
        }
        ["recon"] => return Err(RouteError::MethodNotAllowed { allow: "GET, POST" }),
        ["recon", "assoc"] if get => Route::AssocQuery,
        ["recon", "assoc"] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["recon", "assoc", id] if get => Route::AssocRead(id.to_string()),
        ["recon", "assoc", _] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["recon", "assoc", id, "entry"] if get => Route::AssocEntries(id.to_string()),
        ["recon", "assoc", _, "entry"] => {
            return Err(RouteError::MethodNotAllowed { allow: "GET" })
        }
        ["recon", "assoc", id, "entry", e] if get => {
            Route::AssocEntry(id.to_string(), e.to_string())
        }
        ["recon", "assoc", _, "entry", _] => {
            return Err(RouteError::MethodNotAllowed { allow: "GET" })
        }
        ["recon", id] if get => Route::ReconRead(id.to_string()),
        ["recon", id] if post => Route::ReconInstanceAction(id.to_string()),
        ["recon", id] if *m == Method::DELETE => Route::ReconDelete(id.to_string()),
        ["recon", _] if matches!(*m, Method::PUT | Method::PATCH) => {
            return Err(RouteError::NotSupported(crest_verb(m, true)))
        }
        ["recon", _] => {
            return Err(RouteError::MethodNotAllowed {
                allow: "GET, POST, DELETE",
            })
        }

        ["managed", ty] | ["system", _, ty] if !ty.is_empty() => {
            let set = s.join("/");
            match *m {
                Method::GET => Route::ObjectQuery(set),
                Method::POST => Route::ObjectAction(set),
                _ => return Err(RouteError::MethodNotAllowed { allow: "GET, POST" }),
            }
        }
        ["managed", ty, id] => {
            let set = format!("managed/{ty}");
            object_instance(m, set, id)?
        }
        ["system", conn, ty, id] => {
            let set = format!("system/{conn}/{ty}");
            object_instance(m, set, id)?
        }
        ["managed", ty, id, prop] => {
            let (set, id, prop) = (format!("managed/{ty}"), id.to_string(), prop.to_string());
            match *m {
                Method::GET => Route::RelationQuery(set, id, prop),
                Method::POST => Route::RelationAction(set, id, prop),
                _ => return Err(RouteError::MethodNotAllowed { allow: "GET, POST" }),
            }
        }
        ["managed", ty, id, prop, rel] => {
            let set = format!("managed/{ty}");
            let (id, prop, rel) = (id.to_string(), prop.to_string(), rel.to_string());
            match *m {
                Method::GET => Route::RelationRead(set, id, prop, rel),
                Method::DELETE => Route::RelationDelete(set, id, prop, rel),
                _ => {
                    return Err(RouteError::MethodNotAllowed {
                        allow: "GET, DELETE",
                    })
                }
            }
        }

        ["repo", "link"] if get => Route::LinkQuery,
        ["repo", "link"] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["repo", "link", id] if get => Route::LinkRead(id.to_string()),
        ["repo", "link", id] if *m == Method::DELETE => Route::LinkDelete(id.to_string()),
        ["repo", "link", _] => {
            return Err(RouteError::MethodNotAllowed {
                allow: "GET, DELETE",
            })
        }

        ["metrics", "prometheus"] if get => Route::MetricsPrometheus,
        ["metrics", "api"] if get => Route::MetricsApi,
        ["metrics", "prometheus" | "api"] => {
            return Err(RouteError::MethodNotAllowed { allow: "GET" })
        }

        ["audit", "recon"] if get => Route::AuditQuery,
        ["audit", "recon"] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["audit", "recon", id] if get => Route::AuditRead(id.to_string()),
        ["audit", "recon", _] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["audit", "sync"] if get => Route::SyncAuditQuery,
        ["audit", "sync"] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["audit", "sync", id] if get => Route::SyncAuditRead(id.to_string()),
        ["audit", "sync", _] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),

        ["system"] if post => Route::SystemAction,
        ["system"] => return Err(RouteError::MethodNotAllowed { allow: "POST" }),

        ["scheduler", "job"] if get => Route::JobQuery,
        ["scheduler", "job"] => return Err(RouteError::MethodNotAllowed { allow: "GET" }),
        ["scheduler", "job", name] if get => Route::JobRead(name.to_string()),
        ["scheduler", "job", name] if post => Route::JobAction(name.to_string()),
        ["scheduler", "job", _] => return Err(RouteError::MethodNotAllowed { allow: "GET, POST" }),

        ["sync"] if post => Route::SyncAction,
        ["sync"]
            if matches!(
                *m,
                Method::PUT | Method::PATCH | Method::DELETE | Method::GET
            ) =>
        {
            return Err(RouteError::NotSupported(crest_verb(m, false)))
        }
        ["sync"] => return Err(RouteError::MethodNotAllowed { allow: "POST" }),
        _ => return Err(RouteError::NotFound),
    };
    Ok(r)
}

fn object_instance(m: &Method, set: String, id: &str) -> Result<Route, RouteError> {
    let id = id.to_string();
    Ok(match *m {
        Method::GET => Route::ObjectRead(set, id),
        Method::PUT => Route::ObjectPut(set, id),
        Method::PATCH => Route::ObjectPatch(set, id),
        Method::DELETE => Route::ObjectDelete(set, id),
        Method::POST => Route::ObjectInstanceAction(set, id),
        _ => {
            return Err(RouteError::MethodNotAllowed {
                allow: "GET, PUT, PATCH, DELETE, POST",
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recon_routes() {
        assert_eq!(route(&Method::POST, "/openidm/sync"), Ok(Route::SyncAction));
        assert_eq!(
            route(&Method::GET, "/openidm/sync"),
            Err(RouteError::NotSupported("read"))
        );
        assert_eq!(route(&Method::GET, "/openidm/recon"), Ok(Route::ReconList));
        assert_eq!(route(&Method::GET, "/openidm/recon/"), Ok(Route::ReconList));
        assert_eq!(
            route(&Method::POST, "/openidm/recon"),
            Ok(Route::ReconAction)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/recon/abc-1"),
            Ok(Route::ReconRead("abc-1".into()))
        );
        assert_eq!(
            route(&Method::DELETE, "/openidm/recon/abc-1"),
            Ok(Route::ReconDelete("abc-1".into()))
        );
        assert_eq!(
            route(&Method::GET, "/openidm/recon/assoc"),
            Ok(Route::AssocQuery)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/recon/assoc/r1/entry"),
            Ok(Route::AssocEntries("r1".into()))
        );
        assert_eq!(
            route(&Method::PUT, "/openidm/recon"),
            Err(RouteError::NotSupported("create"))
        );
        assert_eq!(
            route(&Method::PATCH, "/openidm/recon/x"),
            Err(RouteError::NotSupported("patch"))
        );
        assert!(matches!(
            route(&Method::OPTIONS, "/openidm/recon"),
            Err(RouteError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn object_routes() {
        assert_eq!(
            route(&Method::GET, "/openidm/managed/user/a%201"),
            Ok(Route::ObjectRead("managed/user".into(), "a 1".into()))
        );
        assert_eq!(
            route(&Method::GET, "/openidm/system/hr/account"),
            Ok(Route::ObjectQuery("system/hr/account".into()))
        );
        assert_eq!(
            route(&Method::PUT, "/openidm/system/hr/account/u1"),
            Ok(Route::ObjectPut("system/hr/account".into(), "u1".into()))
        );
        assert!(matches!(
            route(&Method::PUT, "/openidm/managed/user"),
            Err(RouteError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn live_sync_and_sync_audit_routes() {
        assert_eq!(
            route(&Method::POST, "/openidm/system"),
            Ok(Route::SystemAction)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/system"),
            Err(RouteError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            route(&Method::POST, "/openidm/system/csv/account"),
            Ok(Route::ObjectAction("system/csv/account".into()))
        );
        assert_eq!(
            route(&Method::GET, "/openidm/audit/sync"),
            Ok(Route::SyncAuditQuery)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/audit/sync/e1"),
            Ok(Route::SyncAuditRead("e1".into()))
        );
        assert!(matches!(
            route(&Method::DELETE, "/openidm/audit/sync/e1"),
            Err(RouteError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn not_found_and_bad_paths() {
        assert_eq!(route(&Method::GET, "/"), Err(RouteError::NotFound));
        assert_eq!(
            route(&Method::GET, "/openidmx/recon"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/no-such-endpoint"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/managed/user/a/b/c/d"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/managed/user/a/roles"),
            Ok(Route::RelationQuery(
                "managed/user".into(),
                "a".into(),
                "roles".into()
            ))
        );
        assert!(matches!(
            route(&Method::PUT, "/openidm/managed/user/a/roles/r"),
            Err(RouteError::MethodNotAllowed { .. })
        ));
        assert_eq!(
            route(&Method::GET, "/openidm/managed/user/%FF"),
            Err(RouteError::BadPath)
        );
        assert_eq!(
            route(&Method::GET, "/openidm/managed/user/%4"),
            Err(RouteError::BadPath)
        );
        assert!(matches!(
            route(&Method::POST, "/openidm/info/ping"),
            Err(RouteError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a+b%20c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%22x%22", true).as_deref(), Some("\"x\""));
        assert_eq!(percent_decode("%zz", true), None);
        assert_eq!(percent_decode("%+1", true), None);
        assert_eq!(percent_decode("%2", true), None);
        assert_eq!(percent_decode("%C3%A9%2B", true).as_deref(), Some("é+"));
        assert_eq!(percent_decode("%ff", true), None);
    }
}
