//! Reading run history: association summaries and entries (`/openidm/recon/assoc`), and
//! recon audit events (`/openidm/audit/recon`).
//!
//! Entries page by their number within the run, so a cookie resumes the ordered scan where
//! the previous page stopped: page n costs what page 1 costs.

use std::ops::ControlFlow;

use serde_json::{json, Value};

use super::{not_found, RunError, Runner};
use crate::objects::{paging_run, ObjectError, QueryRequest, QueryResult};
use crate::query::Filter;
use crate::storage::{EntryRecord, RunRecord};

fn assoc_json(r: &RunRecord) -> Value {
    json!({
        "_id": r.id,
        "_rev": "1",
        "mapping": r.mapping,
        "sourceResourceCollection": r.source_collection,
        "targetResourceCollection": r.target_collection,
        "isAnalysis": if r.is_analysis { "true" } else { "false" },
        "finishTime": r.finish_time,
    })
}

fn entry_json(r: &RunRecord, no: u64, e: EntryRecord) -> Value {
    let mut v = json!({
        "_id": no.to_string(),
        "_rev": "0",
        "mapping": r.mapping,
        "reconId": r.id,
        "situation": e.situation,
        "action": e.action,
        "linkQualifier": e.link_qualifier,
        "sourceObjectId": e.source_id,
        "targetObjectId": e.target_id,
        "sourceResourceCollection": r.source_collection,
        "targetResourceCollection": r.target_collection,
        "status": if e.success { "SUCCESS" } else { "FAILURE" },
        "exception": e.exception,
        "message": e.message,
        // Contract §4: a JSON string or null; a comma-separated string (IDM's text column)
        // or null.
        "messageDetail": e.message_detail,
        "ambiguousTargetObjectIds": e.ambiguous.map(|ids| ids.join(", ")),
    });
    // recond's additions come after IDM's keys (contract §8).
    if let (Some(text), Some(obj)) = (&e.changes, v.as_object_mut()) {
        let changes = crate::engine::diff::expand(text).unwrap_or_else(|err| {
            tracing::error!(run = %r.id, entry = no, error = %err, "stored changes are not JSON");
            Value::Null
        });
        obj.insert("changes".into(), changes);
        if e.changes_truncated {
            obj.insert("changesTruncated".into(), Value::Bool(true));
        }
    }
    v
}

/// `source` or `target` when the filter tests a pointer under `/source` or `/target`: those
/// members exist only as embedded objects, which the entry filter never sees.
fn names_embedded_side(filter: &Filter) -> Option<&'static str> {
    let side = |ptr: &crate::query::Pointer| match ptr.segments().first().map(String::as_str) {
        Some("source") => Some("source"),
        Some("target") => Some("target"),
        _ => None,
    };
    match filter {
        Filter::True | Filter::False => None,
        Filter::And(items) | Filter::Or(items) => items.iter().find_map(names_embedded_side),
        Filter::Not(inner) => names_embedded_side(inner),
        Filter::Cmp { ptr, .. } | Filter::Present(ptr) => side(ptr),
    }
}

/// The paging key of association entry `no` (entries page by their number in the run).
pub fn entry_key(no: u64) -> String {
    format!("{no:020}")
}

impl Runner {
    fn assoc_record(&self, id: &str) -> Result<RunRecord, RunError> {
        let seq = Self::seq_of(id).ok_or_else(|| not_found(id))?;
        let rec = self
            .inner
            .store
            .get_run(seq)?
            .filter(|r| r.id == id && r.persist_associations);
        rec.ok_or_else(|| {
            RunError::NotFound(format!(
                "Association data for reconciliation {id} not found."
            ))
        })
    }

    /// `GET /openidm/recon/assoc?_queryFilter=...`
    pub fn assoc_query(&self, q: &QueryRequest) -> Result<QueryResult, RunError> {
        let store = &self.inner.store;
        let scan = |after: Option<&str>,
                    f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
         -> Result<(), ObjectError> {
            let start: u64 = after.and_then(|a| a.parse().ok()).unwrap_or(0);
            store.scan_runs(&mut |r| {
                if r.seq <= start && after.is_some() || !r.persist_associations {
                    return ControlFlow::Continue(());
                }
                f(&format!("{:020}", r.seq), assoc_json(&r))
            })?;
            Ok(())
        };
        Ok(paging_run(q, &scan)?)
    }

    pub fn assoc_read(&self, id: &str) -> Result<Value, RunError> {
        Ok(assoc_json(&self.assoc_record(id)?))
    }

    /// `GET /openidm/recon/assoc/{id}/entry`, with optional side filters that keep entries
    /// whose source / target object matches and embed that object. IDM's admin UI sends both
    /// filters together, the side it does not filter on as `true`: a `true` side filter
    /// restricts nothing (an entry without an object on that side stays) and only embeds the
    /// object where there is one.
    pub fn entries_query(
        &self,
        id: &str,
        q: &QueryRequest,
        source_filter: Option<&Filter>,
        target_filter: Option<&Filter>,
    ) -> Result<QueryResult, RunError> {
        if let Some(side) = names_embedded_side(&q.filter) {
            return Err(RunError::BadRequest(format!(
                "_queryFilter on association entries cannot test the {side} object (a pointer \
                 starting with /{side}); filter on it with {side}QueryFilter=<filter> instead"
            )));
        }
        let rec = self.assoc_record(id)?;
        let store = &self.inner.store;
        let objects = &self.inner.objects;
        let source_set = objects.get(&rec.source_collection).cloned();
        let target_set = objects.get(&rec.target_collection).cloned();
        let side = |set: &Option<std::sync::Arc<dyn crate::objects::ObjectSet>>,
                    oid: Option<&str>,
                    filter: Option<&Filter>| {
            // None: drop the entry; Some(embedded): keep it (embedding the object when read).
            let Some(filter) = filter else {
                return Some(None);
            };
            let obj = match (set, oid) {
                (Some(s), Some(i)) => s.read(i).ok().flatten(),
                _ => None,
            };
            match obj {
                Some(o) if filter.matches(&o) => Some(Some(o)),
                None if *filter == Filter::True => Some(None),
                _ => None,
            }
        };
        let scan = |after: Option<&str>,
                    f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
         -> Result<(), ObjectError> {
            let after = after.and_then(|a| a.parse::<u64>().ok());
            store.scan_entries(rec.seq, after, &mut |no, e| {
                let (sid, tid) = (e.source_id.clone(), e.target_id.clone());
                let Some(src) = side(&source_set, sid.as_deref(), source_filter) else {
                    return ControlFlow::Continue(());
                };
                let Some(tgt) = side(&target_set, tid.as_deref(), target_filter) else {
                    return ControlFlow::Continue(());
                };
                let mut v = entry_json(&rec, no, e);
                if let Some(obj) = v.as_object_mut() {
                    if let Some(s) = src {
                        obj.insert("source".into(), s);
                    }
                    if let Some(t) = tgt {
                        obj.insert("target".into(), t);
                    }
                }
                f(&entry_key(no), v)
            })?;
            Ok(())
        };
        Ok(paging_run(q, &scan)?)
    }

    pub fn entry_read(&self, id: &str, entry: &str) -> Result<Value, RunError> {
        let rec = self.assoc_record(id)?;
        let no: u64 = entry.parse().map_err(|_| {
            RunError::NotFound(format!("Entry {entry} of reconciliation {id} not found."))
        })?;
        let e = self.inner.store.get_entry(rec.seq, no)?.ok_or_else(|| {
            RunError::NotFound(format!("Entry {entry} of reconciliation {id} not found."))
        })?;
        Ok(entry_json(&rec, no, e))
    }

    /// `GET /openidm/audit/recon?_queryFilter=...`: events of retained runs, oldest first.
    pub fn audit_query(&self, q: &QueryRequest) -> Result<QueryResult, RunError> {
        let store = &self.inner.store;
        // A filter that pins reconId reads only that run's events.
        let mut only: Option<u64> = None;
        for (ptr, v) in q.filter.equality_terms() {
            if ptr.to_string() == "/reconId" {
                only = v.as_str().and_then(Self::seq_of);
            }
        }
        let scan = |after: Option<&str>,
                    f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
         -> Result<(), ObjectError> {
            let mut started = after.is_none();
            store.scan_audit(only, &mut |ev| {
                let id = ev
                    .get("_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if !started {
                    started = Some(id.as_str()) == after;
                    return ControlFlow::Continue(());
                }
                f(&id, ev)
            })?;
            Ok(())
        };
        Ok(paging_run(q, &scan)?)
    }

    pub fn audit_read(&self, id: &str) -> Result<Value, RunError> {
        let mut found = None;
        self.inner.store.scan_audit(None, &mut |ev| {
            if ev.get("_id").and_then(Value::as_str) == Some(id) {
                found = Some(ev);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        found.ok_or_else(|| RunError::NotFound(format!("Audit event {id} not found.")))
    }
}
