//! Object sets: `managed/<type>` and `system/<name>/<type>` behind one trait that both the
//! REST handlers and the reconciliation engine use.
//!
//! * [`StoreSet`] keeps objects in the embedded store (managed objects and `connector =
//!   "store"`), with an equality index for the declared attributes.
//! * [`CsvSet`] serves a CSV file through `connectors::csv`.
//! * [`Links`] is the link table (`repo/link`).
//!
//! Objects cross this boundary as JSON objects carrying `_id` and a string `_rev`.

mod csv_set;
mod links;
pub mod paging;
pub mod patch;
mod store_set;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use csv_set::CsvSet;
pub use links::Links;
pub use paging::{run as paging_run, QueryRequest, QueryResult, TotalPolicy, KNOWN_PARAMS};
pub use store_set::StoreSet;

use crate::config::{Config, ObjectSetKind};
use crate::query::Filter;
use crate::storage::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectErrorKind {
    NotFound,
    AlreadyExists,
    RevisionMismatch,
    Conflict,
    BadRequest,
    NotSupported,
    Internal,
}

/// An object-set failure with a message fit for a CREST error body.
#[derive(Debug, Clone)]
pub struct ObjectError {
    pub kind: ObjectErrorKind,
    pub message: String,
}

impl ObjectError {
    pub fn new(kind: ObjectErrorKind, message: impl Into<String>) -> ObjectError {
        ObjectError {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(set: &str, id: &str) -> ObjectError {
        ObjectError::new(
            ObjectErrorKind::NotFound,
            format!("Object {set}/{id} not found"),
        )
    }
    pub fn bad_request(m: impl Into<String>) -> ObjectError {
        ObjectError::new(ObjectErrorKind::BadRequest, m)
    }
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ObjectError {}

impl From<StoreError> for ObjectError {
    fn from(e: StoreError) -> Self {
        ObjectError::new(ObjectErrorKind::Internal, e.to_string())
    }
}

/// What every object set offers. Methods that a kind of set cannot support return
/// `NotSupported`.
pub trait ObjectSet: Send + Sync {
    /// `managed/user`, `system/hr/account`.
    fn name(&self) -> &str;
    /// The object with `_id` and `_rev`, or None.
    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError>;
    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError>;
    /// Visits every object (with `_id`; `_rev` when cheap) in the set's natural order.
    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError>;
    /// All objects matching `filter`, answered from an index when the filter allows it.
    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError>;
    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError>;
    /// PUT: create (true) or replace (false), honouring If-Match / If-None-Match: *.
    fn put(
        &self,
        id: &str,
        body: Value,
        if_match: Option<&str>,
        create_only: bool,
    ) -> Result<(Value, bool), ObjectError>;
    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError>;
    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError>;
    /// The store-backed implementation, for the engine's batched writes.
    fn as_store(&self) -> Option<&StoreSet> {
        None
    }
    /// Whether ids in this set are compared case-sensitively by the set itself.
    fn count(&self) -> Result<u64, ObjectError> {
        let mut n = 0;
        self.scan(&mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }
}

/// Checks an id given by a client: non-empty, no `/`, no control characters.
pub fn check_id(id: &str) -> Result<(), ObjectError> {
    if id.is_empty() {
        return Err(ObjectError::bad_request("The object id must not be empty"));
    }
    if id.len() > 1024 {
        return Err(ObjectError::bad_request(
            "The object id is longer than 1024 bytes",
        ));
    }
    if id.contains('/') || id.chars().any(char::is_control) {
        return Err(ObjectError::bad_request(format!(
            "Invalid object id '{}'",
            id.escape_debug()
        )));
    }
    Ok(())
}

/// The body of a write: must be a JSON object; `_id` and `_rev` are removed (the id comes from
/// the path, the revision from the store).
pub fn body_object(body: Value) -> Result<Map<String, Value>, ObjectError> {
    match body {
        Value::Object(mut m) => {
            m.remove("_id");
            m.remove("_rev");
            Ok(m)
        }
        _ => Err(ObjectError::bad_request(
            "The request body must be a JSON object",
        )),
    }
}

/// `{_id, _rev, ...body}`. serde_json's map keeps keys sorted, so inserting the two fields
/// into the body gives the same document as building a new map, without copying it.
pub fn with_meta(id: &str, rev: &str, mut body: Map<String, Value>) -> Value {
    body.insert("_id".into(), Value::String(id.to_string()));
    body.insert("_rev".into(), Value::String(rev.to_string()));
    Value::Object(body)
}

/// Every declared object set, by name.
#[derive(Clone)]
pub struct ObjectSets {
    sets: BTreeMap<String, Arc<dyn ObjectSet>>,
    pub links: Links,
}

impl ObjectSets {
    pub fn new(config: &Config, store: &Store) -> Result<ObjectSets, ObjectError> {
        let mut sets: BTreeMap<String, Arc<dyn ObjectSet>> = BTreeMap::new();
        for os in &config.object_sets {
            let set: Arc<dyn ObjectSet> = match &os.kind {
                ObjectSetKind::Store { indexed } => {
                    Arc::new(StoreSet::open(store.clone(), &os.name, indexed)?)
                }
                ObjectSetKind::Csv { file, id_column } => {
                    Arc::new(CsvSet::new(&os.name, file.clone(), id_column.clone()))
                }
                ObjectSetKind::Connector {
                    provisioner,
                    object_type,
                } => crate::connectors::open_set(&os.name, provisioner, object_type)?,
            };
            sets.insert(os.name.clone(), set);
        }
        Ok(ObjectSets {
            sets,
            links: Links::new(store.clone()),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn ObjectSet>> {
        self.sets.get(name.trim_matches('/'))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// Resolves `managed/user/u1` into (set, id).
    pub fn split_qualified<'a>(&self, path: &'a str) -> Option<(&Arc<dyn ObjectSet>, &'a str)> {
        let path = path.trim_start_matches('/');
        let (set, id) = path.rsplit_once('/')?;
        Some((self.get(set)?, id))
    }
}
