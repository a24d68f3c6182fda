//! Relationship properties: references stored in the object as `{_ref: "managed/role/r1",
//! _refProperties: {_id, ...}}` (an array of them for a many-valued property), checked and
//! given ids on write, kept in step with the other side's `reversePropertyName`, and served
//! as IDM's relationship endpoints (`managed/<type>/<id>/<property>[/<relationship id>]`).
//!
//! Invariants: a new reference must point into one of the property's `resourceCollection`s and,
//! for a managed collection, at an object that exists; the reverse side is written after the
//! object itself, with compare-and-swap on its revision (retried on a concurrent write), so a
//! relationship is never recorded on one side only because of a lost update.

use serde_json::{json, Map, Value};

use super::schema::Relationship;
use super::set::ManagedSet;
use crate::objects::{ObjectError, ObjectErrorKind, QueryResult, RelationOp};

/// Stored reference items of a property value (one object or an array of them).
pub(super) fn items(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().filter(|i| i.is_object()).collect(),
        Some(o @ Value::Object(_)) => vec![o],
        _ => Vec::new(),
    }
}

fn item_ref(item: &Value) -> Option<&str> {
    item.get("_ref").and_then(Value::as_str)
}

fn item_id(item: &Value) -> Option<&str> {
    item.pointer("/_refProperties/_id").and_then(Value::as_str)
}

/// `managed/role/r1` → (`managed/role`, `r1`).
fn split_ref(r: &str) -> Option<(&str, &str)> {
    r.trim_matches('/')
        .rsplit_once('/')
        .filter(|(c, i)| !c.is_empty() && !i.is_empty())
}

/// A stored item as a client reads it in the object.
fn decorated(item: &Value) -> Value {
    let mut out = item.clone();
    if let (Value::Object(m), Some((coll, id))) = (&mut out, item_ref(item).and_then(split_ref)) {
        m.insert("_refResourceCollection".into(), json!(coll));
        m.insert("_refResourceId".into(), json!(id));
    }
    out
}

/// An item as the relationship endpoint returns it (`_id` is the relationship's id).
fn endpoint_item(item: &Value, rev: &str) -> Value {
    let mut out = decorated(item);
    if let Value::Object(m) = &mut out {
        m.insert("_id".into(), json!(item_id(item).unwrap_or_default()));
        m.insert("_rev".into(), json!(rev));
    }
    out
}

impl ManagedSet {
    fn rel_error(&self, property: &str, m: impl std::fmt::Display) -> ObjectError {
        ObjectError::bad_request(format!(
            "{}: relationship property '{property}': {m}",
            self.schema.set
        ))
    }

    /// Checks every reference of `body` and gives new ones a relationship id (an unchanged
    /// reference keeps the id it had in `old`).
    pub(super) fn normalize_relationships(
        &self,
        id: &str,
        body: &mut Map<String, Value>,
        old: Option<&Map<String, Value>>,
    ) -> Result<(), ObjectError> {
        let rels: Vec<(String, Relationship)> = self
            .schema
            .relationships()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (name, rel) in rels {
            let Some(v) = body.get_mut(&name) else {
                continue;
            };
            let old_items = items(old.and_then(|o| o.get(&name)));
            match v {
                Value::Null => {}
                Value::Array(a) if rel.many => {
                    for it in a.iter_mut() {
                        self.normalize_item(id, &name, &rel, it, &old_items)?;
                    }
                    let mut seen = std::collections::BTreeSet::new();
                    a.retain(|it| seen.insert(item_ref(it).unwrap_or_default().to_string()));
                }
                Value::Object(_) if !rel.many => {
                    self.normalize_item(id, &name, &rel, v, &old_items)?;
                }
                other => {
                    let want = if rel.many {
                        "an array of references"
                    } else {
                        "one reference object"
                    };
                    return Err(self.rel_error(&name, format!("expected {want}, got {other}")));
                }
            }
        }
        Ok(())
    }

    fn normalize_item(
        &self,
        _id: &str,
        name: &str,
        rel: &Relationship,
        item: &mut Value,
        old_items: &[&Value],
    ) -> Result<(), ObjectError> {
        let Value::Object(m) = item else {
            return Err(self.rel_error(name, "a reference must be an object with \"_ref\""));
        };
        let r = match m.get("_ref") {
            Some(Value::String(s)) => s.trim_matches('/').to_string(),
            _ => return Err(self.rel_error(name, "a reference needs a \"_ref\" string")),
        };
        let (coll, target) = split_ref(&r)
            .ok_or_else(|| self.rel_error(name, format!("\"{r}\" is not <collection>/<id>")))?;
        if !rel.collections.is_empty() && !rel.collections.iter().any(|c| c == coll) {
            return Err(self.rel_error(
                name,
                format!("\"{r}\" is not in {}", rel.collections.join(", ")),
            ));
        }
        let previous = old_items.iter().find(|o| item_ref(o) == Some(r.as_str()));
        if previous.is_none() && coll.starts_with("managed/") {
            let exists = match self.registry.managed(coll) {
                Some(set) => set.read_stored(target)?.is_some(),
                None => false,
            };
            if !exists {
                return Err(self.rel_error(name, format!("{r} does not exist")));
            }
        }
        let mut props = match m.remove("_refProperties") {
            Some(Value::Object(p)) => p,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(self.rel_error(name, "\"_refProperties\" must be an object")),
        };
        props.remove("_rev");
        if !matches!(props.get("_id"), Some(Value::String(s)) if !s.is_empty()) {
            let rid = previous
                .and_then(|p| item_id(p))
                .map(str::to_string)
                .unwrap_or_else(crate::ids::new_uuid);
            props.insert("_id".into(), json!(rid));
        }
        m.clear();
        m.insert("_ref".into(), json!(r));
        m.insert("_refProperties".into(), Value::Object(props));
        Ok(())
    }

    /// Adds `_refResourceCollection` / `_refResourceId` to the references of `v`.
    pub(super) fn decorate_relationships(&self, v: &mut Value) {
        let Value::Object(m) = v else { return };
        for (name, rel) in self.schema.relationships() {
            match m.get_mut(name) {
                Some(Value::Array(a)) if rel.many => {
                    for it in a.iter_mut() {
                        *it = decorated(it);
                    }
                }
                Some(o @ Value::Object(_)) => *o = decorated(o),
                _ => {}
            }
        }
    }

    /// Brings the reverse side of every relationship in step with the change `old` → `new`
    /// of object `id` (either may be None: create, delete).
    pub(super) fn sync_reverse(
        &self,
        id: &str,
        old: Option<&Value>,
        new: Option<&Value>,
    ) -> Result<(), ObjectError> {
        let me = format!("{}/{id}", self.schema.set);
        for (name, rel) in self.schema.relationships() {
            let Some(reverse) = &rel.reverse else {
                continue;
            };
            let olds = items(old.and_then(|o| o.get(name)));
            let news = items(new.and_then(|o| o.get(name)));
            for it in &news {
                let r = item_ref(it).unwrap_or_default();
                if !olds.iter().any(|o| item_ref(o) == Some(r)) {
                    let props = it.get("_refProperties").cloned().unwrap_or(json!({}));
                    self.edit_reverse(r, reverse, &me, Some(props))?;
                }
            }
            for it in &olds {
                let r = item_ref(it).unwrap_or_default();
                if !news.iter().any(|n| item_ref(n) == Some(r)) {
                    self.edit_reverse(r, reverse, &me, None)?;
                }
            }
        }
        Ok(())
    }

    /// Adds (`props` Some) or removes the reference to `me` in `target`'s `reverse` property.
    fn edit_reverse(
        &self,
        target: &str,
        reverse: &str,
        me: &str,
        props: Option<Value>,
    ) -> Result<(), ObjectError> {
        let Some((coll, tid)) = split_ref(target) else {
            return Ok(());
        };
        // References into non-managed collections have no reverse side recond keeps.
        let Some(other) = self.registry.managed(coll) else {
            return Ok(());
        };
        let many = other
            .schema
            .properties
            .get(reverse)
            .and_then(|p| p.relationship.as_ref())
            .map(|r| r.many)
            .ok_or_else(|| {
                ObjectError::new(
                    ObjectErrorKind::Internal,
                    format!("{coll} declares no relationship property '{reverse}' (the reversePropertyName of {})", self.schema.set),
                )
            })?;
        // Every concurrent writer of `target` that wins makes progress, so this ends; the bound
        // only guards against a bug.
        for attempt in 0..256 {
            if attempt > 0 {
                std::thread::yield_now();
            }
            let Some(cur) = other.read_stored(tid)? else {
                // Removing a reference to an object deleted meanwhile: nothing to keep in step.
                return Ok(());
            };
            let mut body = cur.body.clone();
            let entry = props
                .as_ref()
                .map(|p| json!({"_ref": me, "_refProperties": p}));
            match (many, entry) {
                (true, Some(e)) => {
                    let list = body.entry(reverse.to_string()).or_insert(json!([]));
                    if !list.is_array() {
                        *list = json!([]);
                    }
                    if let Value::Array(a) = list {
                        if !a.iter().any(|i| item_ref(i) == Some(me)) {
                            a.push(e);
                        }
                    }
                }
                (false, Some(e)) => {
                    body.insert(reverse.to_string(), e);
                }
                (true, None) => {
                    if let Some(Value::Array(a)) = body.get_mut(reverse) {
                        a.retain(|i| item_ref(i) != Some(me));
                    }
                }
                (false, None) => {
                    if body.get(reverse).and_then(item_ref) == Some(me) {
                        body.remove(reverse);
                    }
                }
            }
            if body == cur.body {
                return Ok(());
            }
            let rev = cur.rev.to_string();
            match other.inner_put(tid, body, &rev) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind == ObjectErrorKind::RevisionMismatch => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ObjectError::new(
            ObjectErrorKind::Conflict,
            format!("{target}: too many concurrent writes while updating '{reverse}'"),
        ))
    }

    /// `managed/<type>/<id>/<property>[/<relationship id>]`.
    pub(super) fn relation_op(
        &self,
        id: &str,
        property: &str,
        op: RelationOp<'_>,
    ) -> Result<Value, ObjectError> {
        let rel = self
            .schema
            .properties
            .get(property)
            .and_then(|p| p.relationship.clone())
            .ok_or_else(|| {
                ObjectError::new(
                    ObjectErrorKind::NotFound,
                    format!(
                        "{} has no relationship property '{property}'",
                        self.schema.set
                    ),
                )
            })?;
        let cur = self
            .read_stored(id)?
            .ok_or_else(|| ObjectError::not_found(&self.schema.set, id))?;
        let rev = cur.rev.to_string();
        let list: Vec<Value> = items(cur.body.get(property)).into_iter().cloned().collect();
        let not_found = |rid: &str| {
            ObjectError::not_found(&format!("{}/{id}/{property}", self.schema.set), rid)
        };
        match op {
            RelationOp::Query(q) => {
                let results: Vec<Value> = list
                    .iter()
                    .map(|i| endpoint_item(i, &rev))
                    .filter(|i| q.filter.matches(i))
                    .collect();
                let total = results.len() as u64;
                Ok(QueryResult {
                    results,
                    cookie: None,
                    total: Some(total),
                }
                .envelope(q.total))
            }
            RelationOp::Read(rid) => list
                .iter()
                .find(|i| item_id(i) == Some(rid))
                .map(|i| endpoint_item(i, &rev))
                .ok_or_else(|| not_found(rid)),
            RelationOp::Create(body) => {
                let Value::Object(mut item) = body else {
                    return Err(self.rel_error(property, "the body must be a reference object"));
                };
                item.remove("_id");
                item.remove("_rev");
                let rid = crate::ids::new_uuid();
                let mut props = match item.remove("_refProperties") {
                    Some(Value::Object(p)) => p,
                    _ => Map::new(),
                };
                props.insert("_id".into(), json!(rid));
                item.insert("_refProperties".into(), Value::Object(props));
                let r = item_ref(&Value::Object(item.clone()))
                    .map(|s| s.trim_matches('/').to_string())
                    .unwrap_or_default();
                let mut body = cur.body.clone();
                if rel.many {
                    if list.iter().any(|i| item_ref(i) == Some(r.as_str())) {
                        return Err(ObjectError::new(
                            ObjectErrorKind::AlreadyExists,
                            format!(
                                "{}/{id} already refers to {r} in '{property}'",
                                self.schema.set
                            ),
                        ));
                    }
                    let mut a = list.clone();
                    a.push(Value::Object(item));
                    body.insert(property.to_string(), Value::Array(a));
                } else {
                    body.insert(property.to_string(), Value::Object(item));
                }
                self.update_stored(cur, body)?;
                let after = self
                    .read_stored(id)?
                    .ok_or_else(|| ObjectError::not_found(&self.schema.set, id))?;
                let arev = after.rev.to_string();
                items(after.body.get(property))
                    .into_iter()
                    .find(|i| item_ref(i) == Some(r.as_str()))
                    .map(|i| endpoint_item(i, &arev))
                    .ok_or_else(|| not_found(&rid))
            }
            RelationOp::Delete(rid) => {
                let item = list
                    .iter()
                    .find(|i| item_id(i) == Some(rid))
                    .cloned()
                    .ok_or_else(|| not_found(rid))?;
                let mut body = cur.body.clone();
                if rel.many {
                    let a: Vec<Value> = list
                        .into_iter()
                        .filter(|i| item_id(i) != Some(rid))
                        .collect();
                    body.insert(property.to_string(), Value::Array(a));
                } else {
                    // Null, not absent: an update keeps absent hidden properties as they were.
                    body.insert(property.to_string(), Value::Null);
                }
                self.update_stored(cur, body)?;
                Ok(endpoint_item(&item, &rev))
            }
        }
    }
}
