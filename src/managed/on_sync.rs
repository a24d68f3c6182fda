//! The `onSync` hook: run after implicit synchronization of a managed object (IDM runs it
//! after every managed write's synchronization, whether or not a mapping took the object),
//! with `oldObject`, `newObject` (the object read after the sync), `resourceName`, `request`,
//! `context` and `syncResults` = `{success, action, syncDetails}` (`action`: `notifyCreate`,
//! `notifyUpdate` or `notifyDelete`; `syncDetails`: one entry per mapping with `mapping`,
//! `targetObjectSet`, `result` = `SUCCESSFUL` / `FAILED`, and `cause` on a failure).
//!
//! The object before the write is recorded by the writer (on its thread) and taken by the
//! sync service, which runs on the writer's thread once the write committed. A failing hook
//! is logged (WARN, naming the type, object and script); the write and its synchronization
//! stay, as the change is committed.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::bundled::Bundled;
use super::hooks::{Action, HookKind};
use super::relations::items;
use super::set::ManagedSet;
use crate::objects::ObjectSet;

/// Most old values kept per thread for a sync that never comes (no sync service installed,
/// a change made inside a synchronization): the oldest go first.
const PENDING_MAX: usize = 256;

thread_local! {
    /// (set, id, object before the write) of this thread's recent managed writes.
    static PENDING: RefCell<Vec<(String, String, Option<Value>)>> = const { RefCell::new(Vec::new()) };
}

/// Another managed object to synchronize again: (`managed/user`, id).
pub type Resync<'a> = &'a dyn Fn(&str, &str);

impl ManagedSet {
    /// Records the object as it was before a committed write, for the `onSync` that follows.
    pub(super) fn record_old(&self, id: &str, old: Option<&Value>) {
        if !self.schema.hooks.contains_key(&HookKind::OnSync) {
            return;
        }
        let _ = PENDING.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() >= PENDING_MAX {
                p.remove(0);
            }
            p.push((self.schema.set.clone(), id.to_string(), old.cloned()));
        });
    }

    /// The recorded old object of `id` (None inside: a create); `None` if none was recorded.
    fn take_old(&self, id: &str) -> Option<Option<Value>> {
        PENDING
            .try_with(|p| {
                let mut p = p.borrow_mut();
                let mut found = None;
                p.retain_mut(|(set, i, old)| {
                    if *set == self.schema.set && i == id {
                        found = Some(old.take());
                        false
                    } else {
                        true
                    }
                });
                found
            })
            .ok()
            .flatten()
    }

    /// Runs `onSync` for `id` after its implicit synchronization; `details` are the
    /// per-mapping results. `resync` synchronizes another managed object (recond's own
    /// role and assignment `onSync`).
    pub fn on_synced(&self, id: &str, details: Vec<Value>, resync: Resync<'_>) {
        let Some(hook) = self.schema.hooks.get(&HookKind::OnSync) else {
            return;
        };
        let new = match self.read(id) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(set = %self.schema.set, id, error = %e, "onSync not run: the object cannot be read");
                return;
            }
        };
        let old = match self.take_old(id) {
            Some(old) => old,
            // A write that changed nothing: the object is as it was.
            None => new.clone(),
        };
        let action = match (&old, &new) {
            (None, _) => "notifyCreate",
            (_, None) => "notifyDelete",
            _ => "notifyUpdate",
        };
        let success = details.iter().all(|d| d["result"] == "SUCCESSFUL");
        let results = json!({"success": success, "action": action, "syncDetails": details});
        let resource = format!("{}/{id}", self.schema.set);
        let outcome = match &hook.action {
            Action::Script(_) => self
                .runner
                .run_hook(
                    hook,
                    &resource,
                    None,
                    old.as_ref(),
                    new.as_ref(),
                    Some(&results),
                )
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Action::Bundled(steps) => {
                // Compared as stored (relationships included), as the old object is.
                match self.read_stored(id) {
                    Ok(stored) => {
                        let stored = stored.map(super::set::stored_value);
                        for b in steps {
                            self.bundled_on_sync(*b, old.as_ref(), stored.as_ref(), resync);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(set = %self.schema.set, id, error = %e, "onSync failed: {resource}: {e}");
        }
    }

    /// recond's own `roles/onSync-roles` and `roles/onSync-assignments` (see `bundled`).
    fn bundled_on_sync(
        &self,
        b: Bundled,
        old: Option<&Value>,
        new: Option<&Value>,
        resync: Resync<'_>,
    ) {
        let ignored = match b {
            Bundled::SyncRoleMembers => "members",
            Bundled::SyncAssignmentMembers => "roles",
            _ => return,
        };
        if only_changed(old, new, ignored) {
            return;
        }
        let object = new.or(old);
        let mut users = BTreeSet::new();
        match b {
            Bundled::SyncRoleMembers => {
                let members = object.and_then(|o| self.stored_relationship(o, "members"));
                let holder = members.map(|m| json!({ "members": m }));
                collect_refs(holder.as_ref(), "members", &mut users)
            }
            _ => {
                let roles = object.and_then(|o| self.stored_relationship(o, "roles"));
                for role in items(roles.as_ref()) {
                    let Some(r) = role.get("_ref").and_then(Value::as_str) else {
                        continue;
                    };
                    let Some((coll, rid)) = r.trim_matches('/').rsplit_once('/') else {
                        continue;
                    };
                    let Some(set) = self.registry.managed(coll) else {
                        continue;
                    };
                    match set.read_stored(rid) {
                        Ok(Some(stored)) => {
                            let v = Value::Object(stored.body);
                            collect_refs(Some(&v), "members", &mut users);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(role = r, error = %e, "onSync-assignments: cannot read the role")
                        }
                    }
                }
            }
        }
        for r in users {
            if let Some((coll, uid)) = r.trim_matches('/').rsplit_once('/') {
                resync(coll, uid);
            }
        }
    }

    /// The stored value of relationship property `name` of `object` (read from the store,
    /// since a client's view leaves relationships out by default).
    fn stored_relationship(&self, object: &Value, name: &str) -> Option<Value> {
        if let Some(v) = object.get(name) {
            return Some(v.clone());
        }
        let id = object.get("_id").and_then(Value::as_str)?;
        self.read_stored(id).ok().flatten()?.body.get(name).cloned()
    }
}

/// Whether `old` and `new` differ only in `ignored` (and the revision): IDM's stock scripts
/// then leave the members alone (the relationship change synchronizes them already).
fn only_changed(old: Option<&Value>, new: Option<&Value>, ignored: &str) -> bool {
    let strip = |v: Option<&Value>| {
        let mut v = v.cloned().unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove(ignored);
            m.remove("_rev");
        }
        v
    };
    old != new && strip(old) == strip(new)
}

fn collect_refs(object: Option<&Value>, property: &str, out: &mut BTreeSet<String>) {
    for it in items(object.and_then(|o| o.get(property))) {
        if let Some(r) = it.get("_ref").and_then(Value::as_str) {
            out.insert(r.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_of_the_ignored_property_is_skipped() {
        let a = json!({"_rev": "1", "name": "r", "members": []});
        let b = json!({"_rev": "2", "name": "r", "members": [{"_ref": "managed/user/u"}]});
        let c = json!({"_rev": "3", "name": "r2", "members": []});
        assert!(only_changed(Some(&a), Some(&b), "members"));
        assert!(!only_changed(Some(&a), Some(&c), "members"));
        // Unchanged (a repeated write) and created objects synchronize the members.
        assert!(!only_changed(Some(&a), Some(&a), "members"));
        assert!(!only_changed(None, Some(&a), "members"));
    }
}
