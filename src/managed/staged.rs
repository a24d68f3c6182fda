//! A reconciliation's writes into a managed.json type, staged into the unit's store batch so
//! the target and its link are committed together (one atomic batch: a crash leaves both or
//! neither, never a target without its link).
//!
//! The managed pipeline runs at staging (defaults, `onCreate` / `onUpdate` / `onDelete`,
//! `required`, relationships, `onValidate`, `encryption` / `secureHash`); the write itself is
//! a compare-and-swap in the batch (create: must not exist; update and delete: the revision
//! the pipeline read). Each object is committed on its own (see `run_unit`), so the next one
//! sees it. What must follow a committed write — the reverse side of
//! relationships and `postCreate` / `postUpdate` / `postDelete` — is [`ManagedSet::finish`],
//! which the runner calls once the batch committed. A batch the store refuses (a concurrent
//! change) wrote nothing; the runner stages the object again, so pre-write hooks may run more
//! than once for one write, as for a REST write retried after a conflict.

use serde_json::{Map, Value};

use super::set::{stored_value, ManagedSet};
use crate::objects::{check_id, with_meta, ObjectError};
use crate::storage::DataBatch;

/// One staged write of a managed object, and what its commit must be followed by.
#[derive(Debug, Clone)]
pub struct Staged {
    pub id: String,
    /// The object before the write (update, delete), with `_id` and `_rev`.
    pub old: Option<Value>,
    /// The object as the batch stores it (create, update), with `_id` and `_rev`.
    pub new: Option<Value>,
}

impl ManagedSet {
    /// Stages the creation of `body` (its `_id` chosen by the caller or a new one).
    pub fn stage_create(
        &self,
        batch: &mut DataBatch,
        id: Option<String>,
        body: Map<String, Value>,
    ) -> Result<Staged, ObjectError> {
        let id = id.unwrap_or_else(crate::ids::new_uuid);
        check_id(&id)?;
        if self.inner.get(&id)?.is_some() {
            return Err(ObjectError::already_exists(&self.schema.set, &id));
        }
        let body = self.prepare_create(&id, Value::Object(body))?;
        let rev = self.inner.stage_put(batch, &id, &body, None)?;
        Ok(Staged {
            new: Some(with_meta(&id, &rev.to_string(), body)),
            old: None,
            id,
        })
    }

    /// Stages the replacement of `id` by `body`, which the run computed from `read` (the
    /// target as the run read it). Only what the run changed is applied, onto the object as
    /// stored now: a property someone else wrote since the run's read (the reverse side of a
    /// relationship, a REST write) is kept, and what the read only presents (virtual
    /// properties, `onRetrieve` additions) is not stored. `None` when nothing changes.
    pub fn stage_update(
        &self,
        batch: &mut DataBatch,
        id: &str,
        read: &Value,
        body: Map<String, Value>,
    ) -> Result<Option<Staged>, ObjectError> {
        let cur = self
            .inner
            .get(id)?
            .ok_or_else(|| ObjectError::not_found(&self.schema.set, id))?;
        let before = read.as_object();
        let mut changed = cur.body.clone();
        for (k, v) in &body {
            if before.and_then(|b| b.get(k)) != Some(v) {
                changed.insert(k.clone(), v.clone());
            }
        }
        if let Some(b) = before {
            for k in b.keys() {
                if k != "_id" && k != "_rev" && !body.contains_key(k) {
                    changed.remove(k);
                }
            }
        }
        let new = self.prepare_update(&cur, changed)?;
        if new == cur.body {
            return Ok(None);
        }
        let rev = self
            .inner
            .stage_put(batch, id, &new, Some((cur.rev, &cur.body)))?;
        Ok(Some(Staged {
            id: id.to_string(),
            new: Some(with_meta(id, &rev.to_string(), new)),
            old: Some(stored_value(cur)),
        }))
    }

    /// Stages the deletion of `id` after its `onDelete` hook; `None` when it is gone already.
    pub fn stage_delete(
        &self,
        batch: &mut DataBatch,
        id: &str,
    ) -> Result<Option<Staged>, ObjectError> {
        let Some(cur) = self.inner.get(id)? else {
            return Ok(None);
        };
        let old = stored_value(cur.clone());
        // The hook first: a refusal leaves nothing staged.
        self.hook(
            super::hooks::HookKind::OnDelete,
            id,
            Some(&old),
            Some(&old),
            None,
        )?;
        self.inner.stage_delete(batch, id, cur.rev, &cur.body);
        Ok(Some(Staged {
            id: id.to_string(),
            old: Some(old),
            new: None,
        }))
    }

    /// What follows a committed staged write: the reverse side of relationships and the
    /// post-operation hook. The write stays (as after a REST write whose `postCreate`
    /// fails); the error is for the caller to log.
    pub fn finish(&self, s: &Staged) -> Result<(), ObjectError> {
        match (&s.old, &s.new) {
            (None, Some(new)) => self.after_create(&s.id, new),
            (Some(old), Some(new)) => self.after_update(&s.id, old, new),
            (Some(old), None) => self.after_delete(&s.id, old),
            (None, None) => Ok(()),
        }
    }
}
