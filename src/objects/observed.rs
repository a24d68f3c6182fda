//! Change observation on managed object sets: every successful create, update and delete made
//! through a managed set (REST, `openidm.*` from scripts) is reported to the one observer
//! installed on the object sets, after the write committed and before the caller returns.
//!
//! The observer is late-bound ([`ChangeHook::install`]): the object sets are built before the
//! runner that the sync service calls, so the hook starts empty and holds only a weak
//! reference (no ownership cycle between the object sets and the runner). A write made
//! before an observer is installed, or after it is gone, is simply not observed.
//!
//! Reads, queries and the store-backed handle (`as_store`, the engine's batched writes) pass
//! straight through: a reconciliation's own writes into a managed set are reported by the
//! runner after its unit commits, not here.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock, Weak};

use serde_json::Value;

use super::{ChangeBatch, ObjectError, ObjectSet, QueryRequest, QueryResult, RelationOp, StoreSet};
use crate::query::Filter;

/// Told about each committed change of a managed object.
pub trait ChangeObserver: Send + Sync {
    /// `set` is the object set's name (`managed/user`), `id` the object's id. Called on the
    /// writer's thread once the write committed; it returns when the change was handled.
    fn changed(&self, set: &str, id: &str);
}

/// The late-bound observer slot shared by every observed set.
#[derive(Clone, Default)]
pub struct ChangeHook(Arc<OnceLock<Weak<dyn ChangeObserver>>>);

impl ChangeHook {
    /// Installs the observer; false if one was installed already (it stays).
    pub fn install(&self, observer: Weak<dyn ChangeObserver>) -> bool {
        self.0.set(observer).is_ok()
    }

    /// Reports a committed change to the observer, if one is installed and alive.
    pub fn notify(&self, set: &str, id: &str) {
        if let Some(o) = self.0.get().and_then(Weak::upgrade) {
            o.changed(set, id);
        }
    }
}

/// An object set whose successful writes are reported to a [`ChangeHook`].
pub struct Observed {
    inner: Arc<dyn ObjectSet>,
    hook: ChangeHook,
}

impl Observed {
    pub fn new(inner: Arc<dyn ObjectSet>, hook: ChangeHook) -> Observed {
        Observed { inner, hook }
    }

    fn notify(&self, written: &Value) {
        match written.get("_id").and_then(Value::as_str) {
            Some(id) => self.hook.notify(self.inner.name(), id),
            None => tracing::error!(
                set = self.inner.name(),
                "a written object has no _id; its change is not synchronized"
            ),
        }
    }
}

impl ObjectSet for Observed {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        self.inner.read(id)
    }
    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        self.inner.query(q)
    }
    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> {
        self.inner.scan(f)
    }
    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        self.inner.find(filter)
    }
    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        let v = self.inner.create(id, body)?;
        self.notify(&v);
        Ok(v)
    }
    fn put(
        &self,
        id: &str,
        body: Value,
        if_match: Option<&str>,
        create_only: bool,
    ) -> Result<(Value, bool), ObjectError> {
        let (v, created) = self.inner.put(id, body, if_match, create_only)?;
        self.notify(&v);
        Ok((v, created))
    }
    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError> {
        let v = self.inner.patch(id, if_match, ops)?;
        self.notify(&v);
        Ok(v)
    }
    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let v = self.inner.delete(id, if_match)?;
        self.hook.notify(self.inner.name(), id);
        Ok(v)
    }
    fn read_fields(&self, id: &str, fields: &str) -> Result<Option<Value>, ObjectError> {
        self.inner.read_fields(id, fields)
    }
    fn relation(&self, id: &str, property: &str, op: RelationOp<'_>) -> Result<Value, ObjectError> {
        // Creating or deleting a relationship changes the object that holds it.
        let writes = !matches!(op, RelationOp::Query(_) | RelationOp::Read(_));
        let v = self.inner.relation(id, property, op)?;
        if writes {
            self.hook.notify(self.inner.name(), id);
        }
        Ok(v)
    }
    fn as_store(&self) -> Option<&StoreSet> {
        self.inner.as_store()
    }
    fn count(&self) -> Result<u64, ObjectError> {
        self.inner.count()
    }
    fn quick_count(&self) -> Option<Result<u64, ObjectError>> {
        self.inner.quick_count()
    }
    fn secret_attributes(&self) -> Vec<String> {
        self.inner.secret_attributes()
    }
    fn changes_since(&self, token: Option<&Value>) -> Result<ChangeBatch, ObjectError> {
        self.inner.changes_since(token)
    }
    fn token_committed(&self, token: &Value) -> Result<(), ObjectError> {
        self.inner.token_committed(token)
    }
}
