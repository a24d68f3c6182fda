//! The `openidm` object of scripts: reads, queries and writes over recond's object sets.
//! Paths are qualified (`managed/user/u1`, `system/hr/account`).

use serde_json::Value;

use crate::objects::{ObjectError, ObjectSets, QueryRequest};
use crate::script::ScriptHost;

pub struct StoreHost {
    objects: ObjectSets,
}

impl StoreHost {
    pub fn new(objects: ObjectSets) -> StoreHost {
        StoreHost { objects }
    }

    fn split<'a>(
        &self,
        path: &'a str,
    ) -> Result<(&std::sync::Arc<dyn crate::objects::ObjectSet>, &'a str), String> {
        self.objects
            .split_qualified(path)
            .ok_or_else(|| format!("No object set for '{path}'"))
    }
}

fn msg(e: ObjectError) -> String {
    e.message
}

impl ScriptHost for StoreHost {
    /// As IDM's `openidm.read`: anything that is not there, including a path no object set
    /// serves, reads as `null` (`config/...` is answered by the script layer).
    fn read(&self, id: &str) -> Result<Option<Value>, String> {
        let Some((set, id)) = self.objects.split_qualified(id) else {
            return Ok(None);
        };
        match set.read(id) {
            Err(e) if e.kind == crate::objects::ObjectErrorKind::NotFound => Ok(None),
            other => other.map_err(msg),
        }
    }

    fn query(&self, resource: &str, params: &Value) -> Result<Value, String> {
        let set = self
            .objects
            .get(resource)
            .ok_or_else(|| format!("No object set for '{resource}'"))?;
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
        let set = self
            .objects
            .get(resource)
            .ok_or_else(|| format!("No object set for '{resource}'"))?;
        set.create(new_id, content.clone()).map_err(msg)
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
