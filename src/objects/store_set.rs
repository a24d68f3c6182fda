//! An object set kept in the embedded store (`managed/<type>`, `connector = "store"`).
//!
//! Invariants:
//! * An object and its index entries are written in one atomic batch.
//! * Every write is a compare-and-swap (the storage write discipline, `Store::apply`): it
//!   carries the revision it read (or "must not exist"), so a REST write and a run's write of
//!   the same object can never lose each other's change, and index entries are always the
//!   difference from the body actually replaced. On a conflict the REST write re-reads,
//!   re-checks If-Match and tries again (bounded).
//! * The equality index is rebuilt at startup when the declared `indexed` list changed.

use std::ops::ControlFlow;

use serde_json::{Map, Value};

use super::paging::{self, QueryRequest, QueryResult};
use super::{
    body_object, check_id, put_kind, with_meta, ObjectError, ObjectErrorKind, ObjectSet, PutResult,
};
use crate::query::{Filter, Pointer};
use crate::storage::{index_terms, DataBatch, Expect, IndexTerm, Store, StoreError, StoredObject};

/// How often a REST write re-reads and retries after a concurrent change.
const CAS_ATTEMPTS: usize = 32;

pub struct StoreSet {
    store: Store,
    name: String,
    /// Indexed attributes: the name as declared (also the index key) and its pointer.
    indexed: Vec<(String, Pointer)>,
}

/// One attempt of a compare-and-swap write: done, or the object changed under it.
enum Attempt<T> {
    Done(T),
    Retry,
}

impl StoreSet {
    pub fn open(
        store: Store,
        name: &str,
        indexed: &[String],
    ) -> Result<StoreSet, crate::storage::StoreError> {
        let indexed: Vec<(String, Pointer)> = indexed
            .iter()
            .map(|a| {
                let p = Pointer::parse(a);
                (p.to_string(), p)
            })
            .collect();
        let set = StoreSet {
            store,
            name: name.to_string(),
            indexed,
        };
        set.ensure_index()?;
        Ok(set)
    }

    /// Rebuilds the index when the declared attributes differ from the ones it was built for.
    fn ensure_index(&self) -> Result<(), crate::storage::StoreError> {
        let signature: Vec<String> = self.indexed.iter().map(|(a, _)| a.clone()).collect();
        let meta_key = format!("index:{}", self.name);
        let built: Option<Vec<String>> = self.store.get_meta(&meta_key)?;
        if built.as_ref() == Some(&signature) {
            return Ok(());
        }
        if built.is_none() && self.store.set_is_empty(&self.name)? {
            return self.store.put_meta(&meta_key, &signature);
        }
        tracing::info!(set = %self.name, attributes = ?signature, "rebuilding the equality index");
        self.store.drop_index_entries(&self.name)?;
        let mut batch = DataBatch::new();
        let mut failure = None;
        self.store.scan_objects(&self.name, None, &mut |o| {
            let terms = self.terms(&o.body);
            if let Err(e) = batch.put_object(&self.name, &o.id, o.rev, &o.body, &[], &terms) {
                failure = Some(e);
                return ControlFlow::Break(());
            }
            if batch.len() >= 1000 {
                if let Err(e) = self.store.apply(std::mem::take(&mut batch)) {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        self.store.apply(batch)?;
        self.store.put_meta(&meta_key, &signature)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// (attribute, term) pairs of the indexed attributes of `body`.
    pub fn terms(&self, body: &Map<String, Value>) -> Vec<(String, IndexTerm)> {
        if self.indexed.is_empty() {
            return Vec::new();
        }
        let doc = BodyRef(body);
        let mut out = Vec::new();
        for (attr, ptr) in &self.indexed {
            if let Some(v) = doc.get(ptr) {
                for t in index_terms(v) {
                    out.push((attr.clone(), t));
                }
            }
        }
        out
    }

    pub fn get(&self, id: &str) -> Result<Option<StoredObject>, ObjectError> {
        Ok(self.store.get_object(&self.name, id)?)
    }

    /// Adds an object write (create or replace) to `batch`, maintaining the index. The write
    /// expects the object at `old`'s revision (`None`: must not exist); `old` must be the body
    /// read at that revision, so the index difference is computed from what is replaced.
    pub fn stage_put(
        &self,
        batch: &mut DataBatch,
        id: &str,
        body: &Map<String, Value>,
        old: Option<(u64, &Map<String, Value>)>,
    ) -> Result<u64, ObjectError> {
        // The one write path of this set (REST and runs): nothing over-deep reaches the store.
        if let Some(d) = body.values().map(super::depth).max() {
            if d >= super::MAX_DEPTH {
                return Err(ObjectError::bad_request(format!(
                    "Object {}/{id} is nested {} levels deep; at most {} levels are allowed",
                    self.name,
                    d + 1,
                    super::MAX_DEPTH
                )));
            }
        }
        let old_terms = old.map(|(_, o)| self.terms(o)).unwrap_or_default();
        let new_terms = self.terms(body);
        let (expect, rev) = match old {
            Some((r, _)) => (Expect::Rev(r), r + 1),
            None => (Expect::Absent, 1),
        };
        batch.expect_object(&self.name, id, expect);
        batch.put_object(&self.name, id, rev, body, &old_terms, &new_terms)?;
        Ok(rev)
    }

    /// Adds an object delete to `batch`; it expects the object at `rev` with body `old`.
    pub fn stage_delete(
        &self,
        batch: &mut DataBatch,
        id: &str,
        rev: u64,
        old: &Map<String, Value>,
    ) {
        batch.expect_object(&self.name, id, Expect::Rev(rev));
        batch.delete_object(&self.name, id, &self.terms(old));
    }

    /// Candidate ids from the index for an equality filter, or None when it cannot help.
    fn index_candidates(&self, filter: &Filter) -> Result<Option<Vec<String>>, ObjectError> {
        for (ptr, value) in filter.equality_terms() {
            let key = ptr.to_string();
            if !self.indexed.iter().any(|(a, _)| *a == key) {
                continue;
            }
            let terms = index_terms(value);
            let Some(term) = terms.first() else { continue };
            if terms.len() != 1 {
                continue;
            }
            return Ok(Some(self.store.index_lookup(&self.name, &key, term)?));
        }
        Ok(None)
    }

    /// Runs `attempt` until it is done or gives up, re-reading after each concurrent change.
    fn with_cas<T>(
        &self,
        id: &str,
        mut attempt: impl FnMut() -> Result<Attempt<T>, ObjectError>,
    ) -> Result<T, ObjectError> {
        for _ in 0..CAS_ATTEMPTS {
            if let Attempt::Done(v) = attempt()? {
                return Ok(v);
            }
        }
        Err(ObjectError::new(
            ObjectErrorKind::Conflict,
            format!(
                "{}/{id} kept changing concurrently; the write was not applied",
                self.name
            ),
        ))
    }

    /// Applies a batch: a precondition failure means "re-read and retry".
    fn commit<T>(&self, batch: DataBatch, done: T) -> Result<Attempt<T>, ObjectError> {
        match self.store.apply(batch) {
            Ok(()) => Ok(Attempt::Done(done)),
            Err(StoreError::Conflict(_)) => Ok(Attempt::Retry),
            Err(e) => Err(e.into()),
        }
    }

    fn to_value(o: StoredObject) -> Value {
        with_meta(&o.id, &o.rev.to_string(), o.body)
    }

    fn check_rev(&self, current: &StoredObject, if_match: Option<&str>) -> Result<(), ObjectError> {
        match if_match {
            Some(r) if r != current.rev.to_string() => Err(ObjectError::new(
                ObjectErrorKind::RevisionMismatch,
                format!(
                    "Revision {r} does not match the current revision {} of {}/{}",
                    current.rev, self.name, current.id
                ),
            )),
            _ => Ok(()),
        }
    }

    /// One CAS attempt of writing `body` over what was read (`old`).
    fn write(
        &self,
        id: &str,
        body: &Map<String, Value>,
        old: Option<(u64, &Map<String, Value>)>,
    ) -> Result<Attempt<u64>, ObjectError> {
        let mut batch = DataBatch::new();
        let rev = self.stage_put(&mut batch, id, body, old)?;
        self.commit(batch, rev)
    }
}

/// Lets a pointer be resolved against a body map without cloning it into a Value.
struct BodyRef<'a>(&'a Map<String, Value>);

impl BodyRef<'_> {
    fn get(&self, ptr: &Pointer) -> Option<&Value> {
        let segs = ptr.segments();
        let first = segs.first()?;
        let mut cur = self.0.get(first)?;
        for seg in &segs[1..] {
            cur = match cur {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

impl ObjectSet for StoreSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        Ok(self.get(id)?.map(Self::to_value))
    }

    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        if let Some(ids) = self.index_candidates(&q.filter)? {
            let scan = |after: Option<&str>,
                        f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
             -> Result<(), ObjectError> {
                for id in ids
                    .iter()
                    .filter(|id| after.is_none_or(|a| id.as_str() > a))
                {
                    if let Some(o) = self.get(id)? {
                        if f(id, Self::to_value(o)).is_break() {
                            break;
                        }
                    }
                }
                Ok(())
            };
            return paging::run(q, &scan);
        }
        let scan = |after: Option<&str>,
                    f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
         -> Result<(), ObjectError> {
            self.store.scan_objects(&self.name, after, &mut |o| {
                let id = o.id.clone();
                f(&id, Self::to_value(o))
            })?;
            Ok(())
        };
        paging::run(q, &scan)
    }

    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> {
        self.store
            .scan_objects(&self.name, None, &mut |o| f(Self::to_value(o)))?;
        Ok(())
    }

    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        let mut out = Vec::new();
        if let Some(ids) = self.index_candidates(filter)? {
            for id in ids {
                if let Some(o) = self.get(&id)? {
                    let v = Self::to_value(o);
                    if filter.matches(&v) {
                        out.push(v);
                    }
                }
            }
            return Ok(out);
        }
        super::find_by_scan(self, filter)
    }

    fn count(&self) -> Result<u64, ObjectError> {
        Ok(self.store.count_objects(&self.name)?)
    }

    /// The store counts ids from its keys, without decoding an object.
    fn quick_count(&self) -> Option<Result<u64, ObjectError>> {
        Some(self.count())
    }

    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        let body = body_object(body)?;
        let id = match id {
            Some(i) => {
                check_id(i)?;
                i.to_string()
            }
            None => crate::ids::new_uuid(),
        };
        self.with_cas(&id, || {
            if self.store.object_exists(&self.name, &id)? {
                return Err(ObjectError::already_exists(&self.name, &id));
            }
            self.write(&id, &body, None)
        })?;
        Ok(with_meta(&id, "1", body))
    }

    fn put(&self, id: &str, body: Value, if_match: Option<&str>, create_only: bool) -> PutResult {
        check_id(id)?;
        let body = body_object(body)?;
        self.with_cas(id, || {
            let current = self.get(id)?;
            // Refuses what the PUT rules refuse; otherwise `current` says replace or create.
            put_kind(&self.name, id, current.is_some(), if_match, create_only)?;
            match current {
                Some(current) => {
                    self.check_rev(&current, if_match)?;
                    if current.body == body {
                        return Ok(Attempt::Done((Self::to_value(current), false)));
                    }
                    Ok(
                        match self.write(id, &body, Some((current.rev, &current.body)))? {
                            Attempt::Done(rev) => Attempt::Done((
                                with_meta(id, &rev.to_string(), body.clone()),
                                false,
                            )),
                            Attempt::Retry => Attempt::Retry,
                        },
                    )
                }
                None => Ok(match self.write(id, &body, None)? {
                    Attempt::Done(_) => Attempt::Done((with_meta(id, "1", body.clone()), true)),
                    Attempt::Retry => Attempt::Retry,
                }),
            }
        })
    }

    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError> {
        self.with_cas(id, || {
            let current = self
                .get(id)?
                .ok_or_else(|| ObjectError::not_found(&self.name, id))?;
            self.check_rev(&current, if_match)?;
            let body = super::patch::apply(&current.body, ops)?;
            if body == current.body {
                return Ok(Attempt::Done(Self::to_value(current)));
            }
            Ok(
                match self.write(id, &body, Some((current.rev, &current.body)))? {
                    Attempt::Done(rev) => Attempt::Done(with_meta(id, &rev.to_string(), body)),
                    Attempt::Retry => Attempt::Retry,
                },
            )
        })
    }

    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        // A value this build cannot decode (one written, before the depth limit, nested deeper
        // than the JSON reader allows) must still be removable: delete it without its index
        // terms, which cannot be computed. A stale index entry is harmless, since every index
        // hit is re-read and re-checked.
        if let Err(StoreError::Codec(reason)) = self.store.get_object(&self.name, id) {
            tracing::warn!(set = %self.name, %id, %reason, "deleting an unreadable object");
            let mut batch = DataBatch::new();
            batch.delete_object(&self.name, id, &[]);
            self.store.apply(batch)?;
            return Ok(serde_json::json!({ "_id": id }));
        }
        self.with_cas(id, || {
            let current = self
                .get(id)?
                .ok_or_else(|| ObjectError::not_found(&self.name, id))?;
            self.check_rev(&current, if_match)?;
            let mut batch = DataBatch::new();
            self.stage_delete(&mut batch, id, current.rev, &current.body);
            self.commit(batch, Self::to_value(current))
        })
    }

    fn as_store(&self) -> Option<&StoreSet> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |v, _| json!({ "n": v }))
    }

    #[test]
    fn over_deep_values_are_refused_and_old_ones_stay_deletable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &Default::default()).expect("open store");
        let set = StoreSet::open(store.clone(), "managed/user", &["n".to_string()]).expect("set");
        let e = set
            .create(
                Some("deep"),
                json!({ "n": nested(super::super::MAX_DEPTH) }),
            )
            .expect_err("too deep");
        assert_eq!(e.kind, ObjectErrorKind::BadRequest, "{}", e.message);
        let body = nested(200);
        let e = set.put("deep", body, None, false).expect_err("too deep");
        assert_eq!(e.kind, ObjectErrorKind::BadRequest, "{}", e.message);

        // An object written by an older build that had no limit: 200 levels, unreadable by
        // the JSON reader (limit 128). It must stay deletable.
        let mut batch = DataBatch::new();
        let poisoned = nested(200).as_object().cloned().expect("object");
        batch
            .put_object("managed/user", "old", 1, &poisoned, &[], &[])
            .expect("raw write");
        store.apply(batch).expect("apply");
        set.create(Some("fine"), json!({"n": "x"})).expect("create");
        assert!(
            set.read("old").is_err(),
            "the poisoned object cannot be read"
        );
        assert!(set.read("fine").expect("read").is_some());
        assert_eq!(set.delete("old", None).expect("delete")["_id"], "old");
        assert!(set.read("old").expect("read").is_none());
        assert_eq!(set.count().expect("count"), 1);
    }
}
