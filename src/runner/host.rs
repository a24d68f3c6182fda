//! The `openidm` object of scripts: reads, queries and writes over recond's object sets.
//! Paths are qualified (`managed/user/u1`, `system/hr/account`).
//!
//! One implementation serves every script: [`SetsHost`] works over anything that can name an
//! object set ([`SetResolver`]): the run's [`ObjectSets`] for mapping and schedule scripts
//! ([`StoreHost`]), the managed model's late-bound registry for managed object hooks.

use std::sync::Arc;

use serde_json::Value;

use crate::objects::{ObjectError, ObjectErrorKind, ObjectSet, ObjectSets, QueryRequest};
use crate::script::ScriptHost;

/// Finds an object set by name (`managed/user`), if one is declared (and still alive).
pub trait SetResolver: Send + Sync {
    fn resolve(&self, name: &str) -> Option<Arc<dyn ObjectSet>>;
}

impl SetResolver for ObjectSets {
    fn resolve(&self, name: &str) -> Option<Arc<dyn ObjectSet>> {
        self.get(name).cloned()
    }
}

/// `openidm.*` over the object sets a [`SetResolver`] names.
pub struct SetsHost<R>(R);

/// The host of mapping and schedule scripts: every declared object set.
pub type StoreHost = SetsHost<ObjectSets>;

impl<R: SetResolver> SetsHost<R> {
    pub fn new(resolver: R) -> SetsHost<R> {
        SetsHost(resolver)
    }

    fn set(&self, name: &str) -> Result<Arc<dyn ObjectSet>, String> {
        self.0
            .resolve(name.trim_matches('/'))
            .ok_or_else(|| format!("No object set for '{name}'"))
    }

    /// Resolves `managed/user/u1` into (set, id).
    fn split<'a>(&self, path: &'a str) -> Result<(Arc<dyn ObjectSet>, &'a str), String> {
        let path = path.trim_start_matches('/');
        let (set, id) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("No object set for '{path}'"))?;
        Ok((self.set(set)?, id))
    }
}

fn msg(e: ObjectError) -> String {
    e.message
}

impl<R: SetResolver> ScriptHost for SetsHost<R> {
    /// As IDM's `openidm.read`: anything that is not there, including a path no object set
    /// serves, reads as `null` (`config/...` is answered by the script layer).
    fn read(&self, id: &str) -> Result<Option<Value>, String> {
        let Ok((set, id)) = self.split(id) else {
            return Ok(None);
        };
        match set.read(id) {
            Err(e) if e.kind == ObjectErrorKind::NotFound => Ok(None),
            other => other.map_err(msg),
        }
    }

    fn query(&self, resource: &str, params: &Value) -> Result<Value, String> {
        let set = self.set(resource)?;
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
        self.set(resource)?
            .create(new_id, content.clone())
            .map_err(msg)
    }

    fn update(&self, id: &str, rev: Option<&str>, content: &Value) -> Result<Value, String> {
        let (set, id) = self.split(id)?;
        if set.read(id).map_err(msg)?.is_none() {
            return Err(format!("Object {id} not found"));
        }
        set.put(id, content.clone(), rev, false)
            .map(|(v, _)| v)
            .map_err(msg)
    }

    fn patch(&self, id: &str, rev: Option<&str>, ops: &Value) -> Result<Value, String> {
        let (set, id) = self.split(id)?;
        set.patch(id, rev, ops).map_err(msg)
    }

    fn delete(&self, id: &str, rev: Option<&str>) -> Result<Value, String> {
        let (set, id) = self.split(id)?;
        set.delete(id, rev).map_err(msg)
    }

    fn action(
        &self,
        resource: &str,
        action: &str,
        _content: &Value,
        _params: &Value,
    ) -> Result<Value, String> {
        Err(format!(
            "openidm.action('{resource}', '{action}') is not supported by recond"
        ))
    }
}
