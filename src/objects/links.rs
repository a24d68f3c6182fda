//! The link table (`repo/link`, reference §5): REST reads, queries and deletes.
//!
//! Links live in the store's `data` tree next to the objects so that the engine can write a
//! target and its link atomically; this type only serves them over REST.

use std::ops::ControlFlow;

use serde_json::{json, Value};

use super::paging::{self, QueryRequest, QueryResult};
use super::{ObjectError, ObjectErrorKind};
use crate::query::Filter;
use crate::storage::{DataBatch, Link, Store};

#[derive(Clone)]
pub struct Links {
    store: Store,
}

pub fn link_json(l: &Link) -> Value {
    json!({
        "_id": l.id(),
        "_rev": l.rev.to_string(),
        "linkType": l.link_type,
        "linkQualifier": l.qualifier,
        "firstId": l.first_id,
        "secondId": l.second_id,
    })
}

impl Links {
    pub fn new(store: Store) -> Links {
        Links { store }
    }

    pub fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        let Some((lt, q, first)) = Link::parse_id(id) else {
            return Ok(None);
        };
        Ok(self
            .store
            .link_by_first(&lt, &q, &first)?
            .map(|l| link_json(&l)))
    }

    pub fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        // Narrow the scan to one link type (and qualifier) when the filter pins them.
        let mut link_type = None;
        let mut qualifier = None;
        for (ptr, value) in q.filter.equality_terms() {
            match (ptr.to_string().as_str(), value.as_str()) {
                ("/linkType", Some(v)) => link_type = Some(v.to_string()),
                ("/linkQualifier", Some(v)) => qualifier = Some(v.to_string()),
                _ => {}
            }
        }
        // Type and qualifier compare case-insensitively in filters; the scan is exact, so only
        // narrow when the filter value is how they are stored (always true for engine links).
        let scan = |after: Option<&str>,
                    f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
         -> Result<(), ObjectError> {
            let mut started = after.is_none();
            let narrowed_type = link_type.as_deref();
            let narrowed_q = if narrowed_type.is_some() {
                qualifier.as_deref()
            } else {
                None
            };
            self.store.scan_links(narrowed_type, narrowed_q, &mut |l| {
                let id = l.id();
                if !started {
                    if Some(id.as_str()) == after {
                        started = true;
                    }
                    return ControlFlow::Continue(());
                }
                f(&id, link_json(&l))
            })?;
            Ok(())
        };
        let result = paging::run(q, &scan)?;
        if link_type.is_some() && result.results.is_empty() && q.cookie.is_none() {
            // A filter spelled with another case than the stored type: fall back to a full scan.
            let full = |after: Option<&str>,
                        f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
             -> Result<(), ObjectError> {
                let mut started = after.is_none();
                self.store.scan_links(None, None, &mut |l| {
                    let id = l.id();
                    if !started {
                        started = Some(id.as_str()) == after;
                        return ControlFlow::Continue(());
                    }
                    f(&id, link_json(&l))
                })?;
                Ok(())
            };
            return paging::run(q, &full);
        }
        Ok(result)
    }

    pub fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let (lt, q, first) =
            Link::parse_id(id).ok_or_else(|| ObjectError::not_found("repo/link", id))?;
        let link = self
            .store
            .link_by_first(&lt, &q, &first)?
            .ok_or_else(|| ObjectError::not_found("repo/link", id))?;
        if let Some(r) = if_match {
            if r != link.rev.to_string() {
                return Err(ObjectError::new(
                    ObjectErrorKind::RevisionMismatch,
                    format!(
                        "Revision {r} does not match the current revision {} of link {id}",
                        link.rev
                    ),
                ));
            }
        }
        let mut batch = DataBatch::new();
        batch.delete_link(&link);
        self.store.apply(batch)?;
        Ok(link_json(&link))
    }

    /// All links matching a filter (used by tests and the engine's diagnostics).
    pub fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        let mut out = Vec::new();
        self.store.scan_links(None, None, &mut |l| {
            let v = link_json(&l);
            if filter.matches(&v) {
                out.push(v);
            }
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }
}
