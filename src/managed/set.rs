//! [`ManagedSet`]: a `managed/<type>` object set that applies managed.json's schema around the
//! [`StoreSet`] that keeps the objects. Every writer (REST, scripts, reconciliation) reaches
//! managed objects through it, since it reports no store (`as_store` is None) to the engine.
//!
//! Write order, as IDM's: strip virtual properties → defaults (create) → `onCreate` /
//! `onUpdate` → `required` → relationship references checked and given ids → `onValidate` →
//! `encryption` / `secureHash` → store (compare-and-swap on the revision read) → the reverse
//! side of relationships → `postCreate` / `postUpdate`. A hook that throws before the store
//! write refuses the write (403 with the script's message); nothing is half-written.
//!
//! Reads: `onRetrieve` → virtual properties → relationship references decorated →
//! `returnByDefault: false` properties (relationships by default) left out unless `_fields`
//! asks for them; `scope: private` properties only for internal readers (`read`, `scan`,
//! `find`: scripts and the engine), never in queries, REST reads or write responses. Clear values of `encryption` / `secureHash` properties never reach the store.

use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::crypto::{self, Key};
use super::fields::{Audience, Fields};
use super::hooks::{refusal, HookKind, Runner};
use super::host::Registry;
use super::schema::TypeSchema;
use crate::objects::{
    body_object, check_id, with_meta, ObjectError, ObjectErrorKind, ObjectSet, QueryRequest,
    QueryResult, RelationOp, StoreSet,
};
use crate::query::Filter;
use crate::storage::StoredObject;

pub struct ManagedSet {
    pub(super) inner: StoreSet,
    pub(super) schema: TypeSchema,
    key: Arc<Key>,
    pub(super) runner: Runner,
    pub(super) registry: Arc<Registry>,
}

fn forbidden(m: impl Into<String>) -> ObjectError {
    ObjectError::new(ObjectErrorKind::Forbidden, m)
}

pub(super) fn stored_value(o: StoredObject) -> Value {
    with_meta(&o.id, &o.rev.to_string(), o.body)
}

impl ManagedSet {
    pub fn new(
        inner: StoreSet,
        schema: TypeSchema,
        key: Arc<Key>,
        runner: Runner,
        registry: Arc<Registry>,
    ) -> ManagedSet {
        ManagedSet {
            inner,
            schema,
            key,
            runner,
            registry,
        }
    }

    pub fn schema(&self) -> &TypeSchema {
        &self.schema
    }

    /// The object as stored (all properties, `$crypto` values), with `_id` and `_rev`.
    pub fn read_stored(&self, id: &str) -> Result<Option<StoredObject>, ObjectError> {
        self.inner.get(id)
    }

    /// Runs a hook; its thrown message becomes a 403. A hook before a write refuses it; after
    /// a write (`post*`) the write has happened, so a failure is logged and reported as an
    /// error of the request, as IDM does, without undoing the write.
    pub(super) fn hook(
        &self,
        kind: HookKind,
        id: &str,
        object: Option<&Value>,
        old: Option<&Value>,
        new: Option<&Value>,
    ) -> Result<Option<Value>, ObjectError> {
        let Some(hook) = self.schema.hooks.get(&kind) else {
            return Ok(None);
        };
        let resource = format!("{}/{id}", self.schema.set);
        match self
            .runner
            .run_hook(hook, &resource, object, old, new, None)
        {
            Ok(v) if hook.grants_conditional_roles() => self.conditional_grants(v).map(Some),
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(set = %self.schema.set, id, hook = kind.key(), error = %e, "managed object hook failed");
                Err(refusal(&e))
            }
        }
    }

    fn strip_virtual(&self, body: &mut Map<String, Value>) {
        for (name, p) in &self.schema.properties {
            if p.virtual_.is_some() {
                body.remove(name);
            }
        }
    }

    fn apply_defaults(&self, body: &mut Map<String, Value>) {
        for (name, p) in &self.schema.properties {
            if let Some(d) = &p.default {
                if !body.contains_key(name) {
                    body.insert(name.clone(), d.clone());
                }
            }
        }
    }

    fn check_required(&self, body: &Map<String, Value>) -> Result<(), ObjectError> {
        let missing: Vec<&str> = self
            .schema
            .properties
            .iter()
            .filter(|(name, p)| {
                p.required
                    && match body.get(*name) {
                        None | Some(Value::Null) => true,
                        Some(Value::String(s)) => s.is_empty(),
                        _ => false,
                    }
            })
            .map(|(n, _)| n.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ObjectError::bad_request(format!(
            "Policy validation failed for {}: required properties missing: {}",
            self.schema.set,
            missing.join(", ")
        )))
    }

    /// Encrypts / hashes the values that are not already `$crypto` objects. A clear value
    /// equal to what `old` holds keeps the stored `$crypto` object, so sending the same
    /// password again (as every reconciliation does) is no change and no new revision.
    fn protect(
        &self,
        body: &mut Map<String, Value>,
        old: Option<&Map<String, Value>>,
    ) -> Result<(), ObjectError> {
        for (name, p) in &self.schema.properties {
            let Some(v) = body.get_mut(name) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let fail = |e: crypto::CryptoError| {
                ObjectError::new(ObjectErrorKind::Internal, format!("{name}: {e}"))
            };
            let previous = old.and_then(|o| o.get(name));
            if p.encrypted && !crypto::is_encrypted(v) {
                match previous {
                    Some(prev) if self.key.decrypt(prev).ok().as_ref() == Some(&*v) => {
                        *v = prev.clone()
                    }
                    _ => *v = self.key.encrypt(v).map_err(fail)?,
                }
            } else if let Some(alg) = &p.hash {
                if !crypto::is_hashed(v) {
                    match previous {
                        Some(prev) if crypto::verify_hash(prev, v).unwrap_or(false) => {
                            *v = prev.clone()
                        }
                        _ => *v = crypto::hash(v, alg).map_err(fail)?,
                    }
                }
            }
        }
        Ok(())
    }

    /// The write pipeline of a new object, up to the store write: what to store.
    pub(super) fn prepare_create(
        &self,
        id: &str,
        body: Value,
    ) -> Result<Map<String, Value>, ObjectError> {
        check_id(id)?;
        let mut body = body_object(body)?;
        self.strip_virtual(&mut body);
        self.apply_defaults(&mut body);
        let object = with_meta(id, "0", body);
        if let Some(out) = self.hook(HookKind::OnCreate, id, Some(&object), None, Some(&object))? {
            body = body_object(out).map_err(|_| forbidden("onCreate did not leave an object"))?;
        } else {
            body = body_object(object)?;
        }
        self.strip_virtual(&mut body);
        self.check_required(&body)?;
        self.normalize_relationships(id, &mut body, None)?;
        let candidate = with_meta(id, "0", body.clone());
        self.hook(
            HookKind::OnValidate,
            id,
            Some(&candidate),
            None,
            Some(&candidate),
        )?;
        self.protect(&mut body, None)?;
        Ok(body)
    }

    /// What follows a committed create: the reverse side of relationships, `postCreate`.
    pub(super) fn after_create(&self, id: &str, created: &Value) -> Result<(), ObjectError> {
        self.record_old(id, None);
        self.sync_reverse(id, None, Some(created))?;
        self.hook(HookKind::PostCreate, id, Some(created), None, Some(created))?;
        Ok(())
    }

    /// Runs the write pipeline on a new object and stores it.
    fn create_object(&self, id: String, body: Value) -> Result<Value, ObjectError> {
        let body = self.prepare_create(&id, body)?;
        let created = self.inner.create(Some(&id), Value::Object(body))?;
        self.after_create(&id, &created)?;
        self.present(created, &Fields::Default, Audience::Client)
    }

    /// The write pipeline of a replacement of `cur`, up to the store write: what to store.
    pub(super) fn prepare_update(
        &self,
        cur: &StoredObject,
        mut new: Map<String, Value>,
    ) -> Result<Map<String, Value>, ObjectError> {
        let id = cur.id.as_str();
        self.strip_virtual(&mut new);
        // What a client does not see it cannot be expected to send back: a property left out
        // by default (or private) keeps its value when the update omits it.
        for (name, p) in &self.schema.properties {
            let hidden = !p.return_by_default || p.private;
            if hidden && p.virtual_.is_none() && !new.contains_key(name) {
                if let Some(v) = cur.body.get(name) {
                    new.insert(name.clone(), v.clone());
                }
            }
        }
        let rev = cur.rev.to_string();
        let old = with_meta(id, &rev, cur.body.clone());
        let proposed = with_meta(id, &rev, new);
        let mut new = match self.hook(HookKind::OnUpdate, id, None, Some(&old), Some(&proposed))? {
            Some(out) => {
                body_object(out).map_err(|_| forbidden("onUpdate did not leave an object"))?
            }
            None => body_object(proposed)?,
        };
        self.strip_virtual(&mut new);
        self.check_required(&new)?;
        self.normalize_relationships(id, &mut new, Some(&cur.body))?;
        let candidate = with_meta(id, &rev, new.clone());
        self.hook(
            HookKind::OnValidate,
            id,
            Some(&candidate),
            Some(&old),
            Some(&candidate),
        )?;
        self.protect(&mut new, Some(&cur.body))?;
        Ok(new)
    }

    /// What follows a committed update: the reverse side of relationships, `postUpdate`.
    pub(super) fn after_update(
        &self,
        id: &str,
        old: &Value,
        stored: &Value,
    ) -> Result<(), ObjectError> {
        self.record_old(id, Some(old));
        self.sync_reverse(id, Some(old), Some(stored))?;
        self.hook(
            HookKind::PostUpdate,
            id,
            Some(stored),
            Some(old),
            Some(stored),
        )?;
        Ok(())
    }

    /// What follows a committed delete: the reverse side of relationships, `postDelete`.
    pub(super) fn after_delete(&self, id: &str, deleted: &Value) -> Result<(), ObjectError> {
        self.record_old(id, Some(deleted));
        self.sync_reverse(id, Some(deleted), None)?;
        self.hook(HookKind::PostDelete, id, Some(deleted), Some(deleted), None)?;
        Ok(())
    }

    /// Runs the write pipeline on a replacement of `cur` and stores it.
    fn update_object(
        &self,
        cur: StoredObject,
        new: Map<String, Value>,
    ) -> Result<Value, ObjectError> {
        let id = cur.id.clone();
        let rev = cur.rev.to_string();
        let new = self.prepare_update(&cur, new)?;
        let old = with_meta(&id, &rev, cur.body);
        let (stored, _) = self.inner.put(&id, Value::Object(new), Some(&rev), false)?;
        if stored != old {
            self.after_update(&id, &old, &stored)?;
        }
        self.present(stored, &Fields::Default, Audience::Client)
    }

    fn current(&self, id: &str, if_match: Option<&str>) -> Result<StoredObject, ObjectError> {
        let cur = self
            .inner
            .get(id)?
            .ok_or_else(|| ObjectError::not_found(&self.schema.set, id))?;
        if let Some(r) = if_match {
            if r != "*" && r != cur.rev.to_string() {
                return Err(ObjectError::new(
                    ObjectErrorKind::RevisionMismatch,
                    format!(
                        "Revision {r} does not match the current revision {} of {}/{id}",
                        cur.rev, self.schema.set
                    ),
                ));
            }
        }
        Ok(cur)
    }

    /// Replaces the stored object (for relationship edits): the whole update pipeline runs.
    pub(super) fn update_stored(
        &self,
        cur: StoredObject,
        new: Map<String, Value>,
    ) -> Result<Value, ObjectError> {
        self.update_object(cur, new)
    }

    /// Runs an update; without the client's If-Match, a concurrent write between our read
    /// and our compare-and-swap is not the client's conflict, so the update is redone on the
    /// new revision (a bounded number of times).
    fn retrying(
        &self,
        if_match: Option<&str>,
        mut update: impl FnMut() -> Result<Value, ObjectError>,
    ) -> Result<Value, ObjectError> {
        let mut attempts = 0;
        loop {
            match update() {
                Err(e)
                    if e.kind == ObjectErrorKind::RevisionMismatch
                        && if_match.is_none()
                        && attempts < 16 =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// A store write without the pipeline (the reverse side of a relationship), guarded by
    /// the revision `rev` the caller read.
    pub(super) fn inner_put(
        &self,
        id: &str,
        body: Map<String, Value>,
        rev: &str,
    ) -> Result<(), ObjectError> {
        self.inner
            .put(id, Value::Object(body), Some(rev), false)
            .map(|_| ())
    }

    /// The object as a client sees it: hooks and virtual properties applied, `fields` chosen.
    pub(super) fn present(
        &self,
        v: Value,
        fields: &Fields,
        audience: Audience,
    ) -> Result<Value, ObjectError> {
        let Value::Object(_) = v else {
            return Ok(v);
        };
        let id = v
            .get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut v = match self.hook(HookKind::OnRetrieve, &id, Some(&v), None, None)? {
            Some(out @ Value::Object(_)) => out,
            _ => v,
        };
        self.compute_virtuals(&mut v)?;
        self.decorate_relationships(&mut v);
        Ok(fields.select(&self.schema, v, audience))
    }
}

impl ObjectSet for ManagedSet {
    fn name(&self) -> &str {
        &self.schema.set
    }

    /// An internal read (scripts, the engine): `scope: private` properties included.
    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        let Some(o) = self.inner.get(id)? else {
            return Ok(None);
        };
        self.present(stored_value(o), &Fields::Default, Audience::Internal)
            .map(Some)
    }

    /// A client's read (REST): `scope: private` properties never included.
    fn read_fields(&self, id: &str, fields: &str) -> Result<Option<Value>, ObjectError> {
        let Some(o) = self.inner.get(id)? else {
            return Ok(None);
        };
        self.present(stored_value(o), &Fields::parse(fields), Audience::Client)
            .map(Some)
    }

    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        if q.ids_only {
            return self.inner.query(q);
        }
        let fields = Fields::from_pointers(&q.fields);
        let mut whole = q.clone();
        whole.fields = Vec::new();
        let mut r = self.inner.query(&whole)?;
        for v in &mut r.results {
            *v = self.present(std::mem::take(v), &fields, Audience::Client)?;
        }
        Ok(r)
    }

    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> {
        let mut failure = None;
        self.inner.scan(
            &mut |v| match self.present(v, &Fields::Default, Audience::Internal) {
                Ok(v) => f(v),
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            },
        )?;
        failure.map_or(Ok(()), Err)
    }

    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        self.inner
            .find(filter)?
            .into_iter()
            .map(|v| self.present(v, &Fields::Default, Audience::Internal))
            .collect()
    }

    fn count(&self) -> Result<u64, ObjectError> {
        self.inner.count()
    }

    fn quick_count(&self) -> Option<Result<u64, ObjectError>> {
        self.inner.quick_count()
    }

    fn secret_attributes(&self) -> Vec<String> {
        self.schema
            .properties
            .iter()
            .filter(|(_, p)| p.encrypted || p.hash.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        let id = id.map(str::to_string).unwrap_or_else(crate::ids::new_uuid);
        self.create_object(id, body)
    }

    /// The stored object, without the `onRetrieve` hook a read runs.
    fn exists(&self, id: &str) -> Result<bool, ObjectError> {
        Ok(self.inner.get(id)?.is_some())
    }

    fn replace(&self, id: &str, body: Value, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let new = body_object(body)?;
        self.retrying(if_match, || {
            let cur = self.current(id, if_match)?;
            self.update_object(cur, new.clone())
        })
    }

    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError> {
        self.retrying(if_match, || {
            let cur = self.current(id, if_match)?;
            let new = crate::objects::patch::apply(&cur.body, ops)?;
            self.update_object(cur, new)
        })
    }

    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let cur = self.current(id, if_match)?;
        let rev = cur.rev.to_string();
        let old = stored_value(cur);
        self.hook(HookKind::OnDelete, id, Some(&old), Some(&old), None)?;
        let deleted = self.inner.delete(id, Some(&rev))?;
        self.after_delete(id, &deleted)?;
        self.present(deleted, &Fields::Default, Audience::Client)
    }

    fn relation(&self, id: &str, property: &str, op: RelationOp<'_>) -> Result<Value, ObjectError> {
        self.relation_op(id, property, op)
    }

    fn managed(&self) -> Option<&ManagedSet> {
        Some(self)
    }
}
