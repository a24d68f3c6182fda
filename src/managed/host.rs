//! The registry of object sets that managed objects reach at run time (the other side of a
//! relationship, the `openidm.*` calls of their hooks), and the [`ScriptHost`] over it.
//!
//! It holds weak references, filled once every set is built: the sets own the registry, so
//! strong references would form a cycle and keep the store open past shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use serde_json::Value;

use super::set::ManagedSet;
use crate::objects::{ObjectError, ObjectSet, QueryRequest};
use crate::script::ScriptHost;

#[derive(Default)]
pub struct Registry {
    sets: OnceLock<BTreeMap<String, Weak<dyn ObjectSet>>>,
    managed: OnceLock<BTreeMap<String, Weak<ManagedSet>>>,
}

impl Registry {
    /// Called once, after every set is built.
    pub fn fill(
        &self,
        sets: BTreeMap<String, Weak<dyn ObjectSet>>,
        managed: BTreeMap<String, Weak<ManagedSet>>,
    ) {
        // A second fill would be a bug in `ObjectSets::new`; the first one stays.
        if self.sets.set(sets).is_err() || self.managed.set(managed).is_err() {
            tracing::error!("the managed object registry was filled twice");
        }
    }

    pub fn set(&self, name: &str) -> Result<Arc<dyn ObjectSet>, String> {
        self.sets
            .get()
            .and_then(|m| m.get(name.trim_matches('/')))
            .and_then(Weak::upgrade)
            .ok_or_else(|| format!("No object set for '{name}'"))
    }

    /// The managed set of `managed/<type>`, when that is one.
    pub fn managed(&self, name: &str) -> Option<Arc<ManagedSet>> {
        self.managed
            .get()
            .and_then(|m| m.get(name.trim_matches('/')))
            .and_then(Weak::upgrade)
    }

    /// Resolves `managed/user/u1` into (set, id).
    fn split(&self, path: &str) -> Result<(Arc<dyn ObjectSet>, String), String> {
        let path = path.trim_start_matches('/');
        let (set, id) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("No object set for '{path}'"))?;
        Ok((self.set(set)?, id.to_string()))
    }
}

/// `openidm.*` for managed object scripts.
pub struct RegistryHost(pub Arc<Registry>);

fn msg(e: ObjectError) -> String {
    e.message
}

impl ScriptHost for RegistryHost {
    fn read(&self, id: &str) -> Result<Option<Value>, String> {
        match self.0.split(id) {
            Ok((set, id)) => set.read(&id).map_err(msg),
            // IDM gives null for a read of something that is not there.
            Err(_) => Ok(None),
        }
    }

    fn query(&self, resource: &str, params: &Value) -> Result<Value, String> {
        let set = self.0.set(resource)?;
        let q = QueryRequest::from_json(params).map_err(msg)?;
        let policy = q.total;
        Ok(set.query(&q).map_err(msg)?.envelope(policy))
    }

    fn create(
        &self,
        resource: &str,
        new_id: Option<&str>,
        content: &Value,
    ) -> Result<Value, String> {
        self.0
            .set(resource)?
            .create(new_id, content.clone())
            .map_err(msg)
    }

    fn update(&self, id: &str, rev: Option<&str>, content: &Value) -> Result<Value, String> {
        let (set, id) = self.0.split(id)?;
        if set.read(&id).map_err(msg)?.is_none() {
            return Err(format!("Object {id} not found"));
        }
        set.put(&id, content.clone(), rev, false)
            .map(|(v, _)| v)
            .map_err(msg)
    }

    fn patch(&self, id: &str, rev: Option<&str>, ops: &Value) -> Result<Value, String> {
        let (set, id) = self.0.split(id)?;
        set.patch(&id, rev, ops).map_err(msg)
    }

    fn delete(&self, id: &str, rev: Option<&str>) -> Result<Value, String> {
        let (set, id) = self.0.split(id)?;
        set.delete(&id, rev).map_err(msg)
    }

    fn action(
        &self,
        resource: &str,
        action: &str,
        _content: &Value,
        _params: &Value,
    ) -> Result<Value, String> {
        Err(format!(
            "openidm.action('{resource}', '{action}') is not supported in managed object hooks"
        ))
    }
}
