//! Virtual properties, computed on every read: recond's own versions of IDM's bundled
//! `roles/effectiveRoles.js` and `roles/effectiveAssignments.js` (used when the project has no
//! file of that name), and the project's own `onRetrieve` scripts.
//!
//! * effectiveRoles: one `{_ref, _refResourceCollection, _refResourceId}` per role granted
//!   through the roles relationship property (conditional roles are granted there too, see
//!   `conditional`). Temporal constraints are not evaluated yet: every granted role is
//!   effective.
//! * effectiveAssignments: the assignment objects (as read, with `_id`) referenced by the
//!   `assignments` relationship of every effective role, each once, in role order.
//!
//! A reference to a role or assignment that no longer exists is skipped with a warning, as
//! IDM's scripts skip what `openidm.read` does not find.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::relations::items;
use super::schema::Virtual;
use super::set::ManagedSet;
use crate::objects::{ObjectError, ObjectErrorKind, ObjectSet};

fn order(v: &Virtual) -> u8 {
    match v {
        Virtual::EffectiveRoles { .. } => 0,
        Virtual::Script(_) => 1,
        Virtual::EffectiveAssignments { .. } => 2,
        Virtual::Stored => 3,
    }
}

impl ManagedSet {
    /// Sets every virtual property of `v` (effective roles before what depends on them).
    pub(super) fn compute_virtuals(&self, v: &mut Value) -> Result<(), ObjectError> {
        let mut virtuals: Vec<(&String, &Virtual)> = self
            .schema
            .properties
            .iter()
            .filter_map(|(k, p)| p.virtual_.as_ref().map(|x| (k, x)))
            .collect();
        if virtuals.is_empty() {
            return Ok(());
        }
        virtuals.sort_by_key(|(_, x)| order(x));
        for (name, virt) in virtuals {
            let value = match virt {
                Virtual::EffectiveRoles { roles_property } => {
                    effective_roles(v.get(roles_property))
                }
                Virtual::EffectiveAssignments { roles_property } => {
                    self.effective_assignments(v.get(roles_property))?
                }
                Virtual::Script(s) => {
                    let property = v.get(name).cloned().unwrap_or(Value::Null);
                    let pname = json!(name);
                    self.runner
                        .eval(
                            s,
                            &[
                                ("object", &*v),
                                ("property", &property),
                                ("propertyName", &pname),
                            ],
                        )
                        .map_err(|e| ObjectError::new(ObjectErrorKind::Internal, e.to_string()))?
                }
                Virtual::Stored => continue,
            };
            if let Value::Object(m) = v {
                m.insert(name.clone(), value);
            }
        }
        Ok(())
    }

    fn effective_assignments(&self, roles: Option<&Value>) -> Result<Value, ObjectError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for role in items(roles) {
            let Some(r) = role.get("_ref").and_then(Value::as_str) else {
                continue;
            };
            let Some((coll, rid)) = r.rsplit_once('/') else {
                continue;
            };
            let Some(roles_set) = self.registry.managed(coll) else {
                tracing::warn!(
                    role = r,
                    "effective role outside the managed roles; skipped"
                );
                continue;
            };
            let Some(stored) = roles_set.read_stored(rid)? else {
                tracing::warn!(role = r, "effective role does not exist; skipped");
                continue;
            };
            for a in items(stored.body.get("assignments")) {
                let Some(aref) = a.get("_ref").and_then(Value::as_str) else {
                    continue;
                };
                if !seen.insert(aref.to_string()) {
                    continue;
                }
                let Some((acoll, aid)) = aref.rsplit_once('/') else {
                    continue;
                };
                let assignment = match self.registry.managed(acoll) {
                    Some(set) => set.read(aid)?,
                    None => None,
                };
                match assignment {
                    Some(obj) => out.push(obj),
                    None => {
                        tracing::warn!(
                            assignment = aref,
                            role = r,
                            "assignment does not exist; skipped"
                        )
                    }
                }
            }
        }
        Ok(Value::Array(out))
    }
}

fn effective_roles(roles: Option<&Value>) -> Value {
    Value::Array(
        items(roles)
            .into_iter()
            .filter_map(|i| i.get("_ref").and_then(Value::as_str))
            .filter_map(|r| {
                let (coll, id) = r.rsplit_once('/')?;
                Some(json!({"_ref": r, "_refResourceCollection": coll, "_refResourceId": id}))
            })
            .collect(),
    )
}
