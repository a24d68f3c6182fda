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
//!
//! Held reports: while a thread processes a unit of a run ([`ChangeHook::hold`]), the changes
//! it makes through observed sets (a target written through a managed.json set, an
//! `openidm.*` write from a mapping script) are collected instead of delivered; the runner
//! delivers them once the unit committed, so the observer never runs while the unit holds
//! claims and uncommitted links (it would read the state from before the unit).

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock, Weak};

use serde_json::Value;

use super::{
    ChangeBatch, ObjectError, ObjectSet, PutResult, QueryRequest, QueryResult, RelationOp, StoreSet,
};
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

thread_local! {
    /// The reports held back on this thread (see [`ChangeHook::hold`]); None = deliver.
    static HELD: RefCell<Option<Vec<(String, String)>>> = const { RefCell::new(None) };
}

/// Restores the enclosing hold (or none) when a hold ends, also on a panic.
struct HoldScope(Option<Vec<(String, String)>>);

impl Drop for HoldScope {
    fn drop(&mut self) {
        let outer = self.0.take();
        HELD.with(|h| *h.borrow_mut() = outer);
    }
}

impl ChangeHook {
    /// Installs the observer; false if one was installed already (it stays).
    pub fn install(&self, observer: Weak<dyn ChangeObserver>) -> bool {
        self.0.set(observer).is_ok()
    }

    /// Reports a committed change to the observer, if one is installed and alive; while
    /// this thread is inside [`ChangeHook::hold`], the report is collected instead.
    pub fn notify(&self, set: &str, id: &str) {
        let held = HELD.with(|h| match h.borrow_mut().as_mut() {
            Some(v) => {
                v.push((set.to_string(), id.to_string()));
                true
            }
            None => false,
        });
        if !held {
            if let Some(o) = self.0.get().and_then(Weak::upgrade) {
                o.changed(set, id);
            }
        }
    }

    /// Runs `f` with the change reports of this thread held back, and returns them (in
    /// order, without repeats) for the caller to report once the hold is over (a report made
    /// inside an enclosing hold goes to that hold).
    /// Holds nest: an inner hold collects its own reports.
    pub fn hold<R>(f: impl FnOnce() -> R) -> (R, Vec<(String, String)>) {
        let outer = HELD.with(|h| h.borrow_mut().replace(Vec::new()));
        let scope = HoldScope(outer);
        let r = f();
        let mut held = HELD.with(|h| h.borrow_mut().take()).unwrap_or_default();
        drop(scope);
        let mut seen = std::collections::HashSet::new();
        held.retain(|c| seen.insert(c.clone()));
        (r, held)
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
    fn put(&self, id: &str, body: Value, if_match: Option<&str>, create_only: bool) -> PutResult {
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
    fn managed(&self) -> Option<&crate::managed::ManagedSet> {
        self.inner.managed()
    }
    fn evaluates_queries(&self) -> bool {
        self.inner.evaluates_queries()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl ChangeObserver for Seen {
        fn changed(&self, set: &str, id: &str) {
            self.0
                .lock()
                .expect("not poisoned")
                .push(format!("{set}/{id}"));
        }
    }

    #[test]
    fn held_reports_are_returned_not_delivered_and_holds_nest() {
        let seen = Arc::new(Seen::default());
        let hook = ChangeHook::default();
        let observer: Arc<dyn ChangeObserver> = seen.clone();
        assert!(hook.install(Arc::downgrade(&observer)));
        let ((), outer) = ChangeHook::hold(|| {
            hook.notify("managed/user", "a");
            let ((), inner) = ChangeHook::hold(|| hook.notify("managed/user", "b"));
            assert_eq!(inner, vec![("managed/user".to_string(), "b".to_string())]);
            hook.notify("managed/user", "a");
        });
        assert_eq!(outer, vec![("managed/user".to_string(), "a".to_string())]);
        assert!(
            seen.0.lock().expect("not poisoned").is_empty(),
            "nothing delivered inside a hold"
        );
        hook.notify("managed/user", "c");
        assert_eq!(
            *seen.0.lock().expect("not poisoned"),
            vec!["managed/user/c".to_string()]
        );
    }

    #[test]
    fn a_hold_ends_on_a_panic() {
        let hook = ChangeHook::default();
        let r = std::panic::catch_unwind(|| ChangeHook::hold(|| panic!("boom")));
        assert!(r.is_err());
        assert!(
            HELD.with(|h| h.borrow().is_none()),
            "reports are delivered again"
        );
        hook.notify("managed/user", "x");
    }
}
