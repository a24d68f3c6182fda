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
mod observed;
pub mod paging;
pub mod patch;
mod store_set;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use csv_set::CsvSet;
pub use links::Links;
pub use observed::{ChangeHook, ChangeObserver, Observed};
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
    /// Refused by the object's own rules (a managed object hook that threw).
    Forbidden,
    NotSupported,
    /// The system behind a set (a directory, a database) cannot be reached: 503, with a
    /// message naming it (an outage the operator must see, not an internal error to hide).
    Unavailable,
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
    pub fn already_exists(set: &str, id: &str) -> ObjectError {
        ObjectError::new(
            ObjectErrorKind::AlreadyExists,
            format!("Object {set}/{id} already exists"),
        )
    }
    /// An `If-Match` revision that is not the object's current one.
    pub fn revision_mismatch(set: &str, id: &str, wanted: &str) -> ObjectError {
        ObjectError::new(
            ObjectErrorKind::RevisionMismatch,
            format!("Revision {wanted} does not match the current revision of {set}/{id}"),
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

/// The objects of `set` matching `filter`, from a scan of the whole set.
pub fn find_by_scan<S: ObjectSet + ?Sized>(
    set: &S,
    filter: &Filter,
) -> Result<Vec<Value>, ObjectError> {
    let mut out = Vec::new();
    set.scan(&mut |v| {
        if filter.matches(&v) {
            out.push(v);
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// What [`ObjectSet::put`] answers: the object as stored, and whether it was created.
pub type PutResult = Result<(Value, bool), ObjectError>;

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
    /// All objects matching `filter`, answered from an index when the filter allows it; by
    /// default [`find_by_scan`].
    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        find_by_scan(self, filter)
    }
    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError>;
    /// PUT: create (true) or replace (false), honouring If-Match / If-None-Match: *. By default
    /// the id is checked, [`put_kind`]'s rules applied to whether the object exists now, then
    /// [`ObjectSet::replace`] or [`ObjectSet::create`] writes it. A set whose check and write
    /// must stand under one lock or transaction overrides this.
    fn put(&self, id: &str, body: Value, if_match: Option<&str>, create_only: bool) -> PutResult {
        check_id(id)?;
        match put_kind(self.name(), id, self.exists(id)?, if_match, create_only)? {
            PutKind::Replace => Ok((self.replace(id, body, if_match)?, false)),
            PutKind::Create => Ok((self.create(Some(id), body)?, true)),
        }
    }
    /// Whether `id` exists, for the default [`ObjectSet::put`]; by default a read.
    fn exists(&self, id: &str) -> Result<bool, ObjectError> {
        Ok(self.read(id)?.is_some())
    }
    /// The default [`ObjectSet::put`]'s replace of the existing object `id` by `body`,
    /// honouring `if_match`. Sets that override `put` do not reach it.
    fn replace(&self, id: &str, body: Value, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let _ = (body, if_match);
        Err(ObjectError::new(
            ObjectErrorKind::NotSupported,
            format!("{}/{id} cannot be replaced", self.name()),
        ))
    }
    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError>;
    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError>;
    /// A read honouring `_fields` as sent (managed sets leave some properties out unless
    /// asked for); by default the object projected on the fields.
    fn read_fields(&self, id: &str, fields: &str) -> Result<Option<Value>, ObjectError> {
        let v = self.read(id)?;
        Ok(match v {
            Some(v) if !fields.is_empty() => Some(crate::query::project(
                &v,
                &crate::query::parse_fields(fields),
            )),
            other => other,
        })
    }
    /// `<set>/<id>/<property>[/<relationship id>]`: the relationship endpoints of managed
    /// objects. Other sets have no relationship properties.
    fn relation(&self, id: &str, property: &str, op: RelationOp<'_>) -> Result<Value, ObjectError> {
        let _ = op;
        Err(ObjectError::new(
            ObjectErrorKind::NotFound,
            format!(
                "{}/{id} has no relationship property '{property}'",
                self.name()
            ),
        ))
    }
    /// The store-backed implementation, for the engine's batched writes.
    fn as_store(&self) -> Option<&StoreSet> {
        None
    }
    /// The managed.json type behind this set: the engine stages a reconciliation's writes
    /// into it through its pipeline and commits them with their links in one store batch.
    fn managed(&self) -> Option<&crate::managed::ManagedSet> {
        None
    }
    /// Whether the system behind the set evaluates filters itself (a directory's indexes):
    /// a reconciliation then sends correlation queries to it instead of matching them
    /// against its in-memory copy of the target set.
    fn evaluates_queries(&self) -> bool {
        false
    }
    /// Whether [`ObjectSet::write_batch`] does better than one write at a time (one
    /// transaction, statements covering many objects). The engine then hands a unit of work's
    /// writes over together instead of writing each object as it is assessed.
    fn batches_writes(&self) -> bool {
        false
    }
    /// The `_id` a create of `body` (with the id the caller gave, if any) will have, when the
    /// set knows it before writing (a key taken from the body). `None`: the set assigns it, so
    /// the engine writes that create on its own to learn it.
    fn planned_id(&self, id: Option<&str>, body: &Value) -> Option<String> {
        let _ = (id, body);
        None
    }
    /// Applies `ops` in order, as one unit of work where the set can (a database transaction).
    /// The outer error is an infrastructure failure (the system is unreachable, the unit could
    /// not be committed): nothing of the batch may be assumed written. Otherwise one result per
    /// op, in order: the written object (a set may answer only its `_id` for a create), or
    /// that object's own failure (a constraint the system refused, with its message), the
    /// others being written. By default, one write after the other.
    fn write_batch(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<Result<Value, ObjectError>>, ObjectError> {
        Ok(ops
            .into_iter()
            .map(|op| match op {
                WriteOp::Create { id, body } => self.create(id.as_deref(), body),
                WriteOp::Update { id, body } => self.put(&id, body, None, false).map(|(v, _)| v),
                WriteOp::Delete { id } => self.delete(&id, None),
            })
            .collect())
    }
    /// Live synchronization (contract §7): the objects changed in the system behind this set
    /// since `token`, and the token that marks where this answer ends. `None` is the first
    /// call: answer the current token and no changes (IDM synchronizes nothing on the first
    /// liveSync). A token is the set's own JSON value; the caller persists it only after every
    /// change of the batch was synchronized, so a crash replays a batch and never loses one
    /// (sets must tolerate being asked again from an older token). Sets whose system cannot
    /// report changes answer `NotSupported`.
    fn changes_since(&self, token: Option<&Value>) -> Result<ChangeBatch, ObjectError> {
        let _ = token;
        Err(ObjectError::new(
            ObjectErrorKind::NotSupported,
            format!("{} does not support liveSync", self.name()),
        ))
    }
    /// Called after `token` was persisted: state kept for older tokens (a CSV snapshot) may
    /// go. A no-op by default.
    fn token_committed(&self, token: &Value) -> Result<(), ObjectError> {
        let _ = token;
        Ok(())
    }
    /// Top-level attributes whose values are secrets (managed.json's `encryption` and
    /// `secureHash` properties): reports of values (a run's attribute changes) mask them
    /// whatever their value looks like, clear text included. None by default.
    fn secret_attributes(&self) -> Vec<String> {
        Vec::new()
    }
    /// The number of objects, when the set can tell it without reading them (a CSV record
    /// count, a store's key count, a database `count(*)`): a run's progress total before its
    /// source phase. None when counting would mean a second full read.
    fn quick_count(&self) -> Option<Result<u64, ObjectError>> {
        None
    }
    /// The number of objects in the set (a full scan unless the set knows better).
    fn count(&self) -> Result<u64, ObjectError> {
        let mut n = 0;
        self.scan(&mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    }
}

/// One write of a batch ([`ObjectSet::write_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Create with this id, or one the set assigns.
    Create { id: Option<String>, body: Value },
    /// Write `body`'s attributes over the existing object (a PUT without If-Match).
    Update { id: String, body: Value },
    /// Delete the object (a missing object is a `NotFound` result).
    Delete { id: String },
}

/// One object changed in a system since a liveSync token.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: String,
    /// The object as it is now (with `_id`), or `None` when it was deleted.
    pub object: Option<Value>,
}

/// The answer of [`ObjectSet::changes_since`]: the changes in the order they happened and the
/// token to persist once they are synchronized.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    pub token: Value,
}

/// An operation on a relationship endpoint.
#[derive(Debug)]
pub enum RelationOp<'a> {
    Query(&'a QueryRequest),
    Read(&'a str),
    Create(Value),
    Delete(&'a str),
}

/// Checks `If-Match` against an object read as JSON (`_rev` a string); `*` matches any.
pub fn check_if_match(
    set: &str,
    id: &str,
    current: &Map<String, Value>,
    if_match: Option<&str>,
) -> Result<(), ObjectError> {
    match if_match {
        Some(r) if r != "*" && current.get("_rev").and_then(Value::as_str) != Some(r) => {
            Err(ObjectError::revision_mismatch(set, id, r))
        }
        _ => Ok(()),
    }
}

/// What a PUT does to an object (CREST): replace it, or create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutKind {
    Replace,
    Create,
}

/// The PUT rules every set follows: `If-None-Match: *` (`create_only`) refuses an existing
/// object (409); any `If-Match` (also `*`) asks for an update, so a missing object is 404;
/// otherwise a PUT replaces what exists and creates what does not.
pub fn put_kind(
    set: &str,
    id: &str,
    exists: bool,
    if_match: Option<&str>,
    create_only: bool,
) -> Result<PutKind, ObjectError> {
    match exists {
        true if create_only => Err(ObjectError::already_exists(set, id)),
        true => Ok(PutKind::Replace),
        false if if_match.is_some() => Err(ObjectError::not_found(set, id)),
        false => Ok(PutKind::Create),
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

/// The deepest nesting of arrays and objects a stored value may have. Below serde_json's
/// parser limit (128) with room to spare, so whatever is written can always be read back; every
/// way in (request bodies, PATCH results, script results, `openidm.create`) checks it.
pub const MAX_DEPTH: usize = 64;

/// The nesting depth of `value`: 0 for a scalar, 1 for `{}` or `[]`, and so on. Iterative, so
/// a hostile value cannot overflow the stack while it is measured.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                deepest = deepest.max(d + 1);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                deepest = deepest.max(d + 1);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Refuses a value nested deeper than [`MAX_DEPTH`] with a 400 that says so.
pub fn check_depth(value: &Value) -> Result<(), ObjectError> {
    let d = depth(value);
    if d > MAX_DEPTH {
        return Err(ObjectError::bad_request(format!(
            "The object is nested {d} levels deep; at most {MAX_DEPTH} levels are allowed"
        )));
    }
    Ok(())
}

/// The strings of a JSON array (its other items passed over); none when `v` is not an array.
pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The body of a write: must be a JSON object no deeper than [`MAX_DEPTH`]; `_id` and `_rev`
/// are removed (the id comes from the path, the revision from the store). Every object-set
/// write goes through here.
pub fn body_object(body: Value) -> Result<Map<String, Value>, ObjectError> {
    check_depth(&body)?;
    match body {
        Value::Object(mut m) => {
            m.shift_remove("_id");
            m.shift_remove("_rev");
            Ok(m)
        }
        _ => Err(ObjectError::bad_request(
            "The request body must be a JSON object",
        )),
    }
}

/// `{_id, _rev, ...body}`: IDM writes `_id` and `_rev` first and the body's keys in the order
/// they were written (serde_json's `preserve_order`; stored bodies are JSON text, so the
/// order survives a store round trip). `shift_insert` moves a key already in the body.
pub fn with_meta(id: &str, rev: &str, mut body: Map<String, Value>) -> Value {
    body.shift_insert(0, "_id".into(), Value::String(id.to_string()));
    body.shift_insert(1, "_rev".into(), Value::String(rev.to_string()));
    Value::Object(body)
}

/// Every declared object set, by name.
#[derive(Clone)]
pub struct ObjectSets {
    sets: BTreeMap<String, Arc<dyn ObjectSet>>,
    pub links: Links,
    /// Where committed changes of managed objects are reported (implicit synchronization).
    pub changes: ChangeHook,
}

impl ObjectSets {
    pub fn new(config: &Config, store: &Store) -> Result<ObjectSets, ObjectError> {
        let mut sets: BTreeMap<String, Arc<dyn ObjectSet>> = BTreeMap::new();
        let mut managed = crate::managed::Builder::new(config)?;
        let changes = ChangeHook::default();
        for os in &config.object_sets {
            let set: Arc<dyn ObjectSet> = match &os.kind {
                ObjectSetKind::Store { indexed } => {
                    managed.wrap(&os.name, StoreSet::open(store.clone(), &os.name, indexed)?)
                }
                ObjectSetKind::Csv { file, id_column } => crate::connectors::open_csv(
                    &os.name,
                    file.clone(),
                    id_column.clone(),
                    os.model.as_ref(),
                ),
                ObjectSetKind::Connector {
                    provisioner,
                    object_type,
                } => crate::connectors::open_set(&os.name, provisioner, object_type)?,
            };
            // Managed objects are sources of implicit synchronization: their writes are
            // reported to the sync service (see `observed`).
            let set: Arc<dyn ObjectSet> = if os.name.starts_with("managed/") {
                Arc::new(Observed::new(set, changes.clone()))
            } else {
                set
            };
            sets.insert(os.name.clone(), set);
        }
        managed.finish(&sets);
        Ok(ObjectSets {
            sets,
            links: Links::new(store.clone()),
            changes,
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
