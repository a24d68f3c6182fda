//! Conditional roles, as IDM's stock `roles/conditionalRoles` grants them to a user: a role
//! whose `condition` (a CREST query filter) matches the user is granted when the user is
//! created or updated (a `roles` item with `_refProperties._grantType: "conditional"`), and a
//! conditional grant whose role no longer matches (or no longer exists or has no condition)
//! is taken away. Grants made by hand are never touched.
//!
//! It runs inside the user's `onCreate` / `onUpdate` when that hook calls
//! `require('roles/conditionalRoles').updateConditionalGrantsForUser(...)` (stock
//! managed.json) and the project has no such file; the relationship step after it gives the
//! new items their ids and the role its `members` side. A role whose condition is created or
//! changed is applied to a user at that user's next write (IDM re-evaluates every user at
//! once; recond does not yet).

use serde_json::{json, Map, Value};

use super::set::ManagedSet;
use crate::objects::{ObjectError, ObjectErrorKind};

/// The roles collection and the user's property granting them (IDM's stock names).
const ROLES: &str = "managed/role";
const ROLES_PROPERTY: &str = "roles";

fn is_conditional(item: &Value) -> bool {
    item.pointer("/_refProperties/_grantType")
        .and_then(Value::as_str)
        == Some("conditional")
}

impl ManagedSet {
    /// Applies the conditional roles to `user` (the object the hook leaves).
    pub(super) fn conditional_grants(&self, mut user: Value) -> Result<Value, ObjectError> {
        let Some(roles) = self.registry.set(ROLES).ok() else {
            return Ok(user);
        };
        // (reference, whether its condition matches the user) of every conditional role.
        let mut conditional: Vec<(String, bool)> = Vec::new();
        let mut failure = None;
        roles.scan(&mut |role| {
            let cond = role.get("condition").and_then(Value::as_str).unwrap_or("");
            let id = role.get("_id").and_then(Value::as_str).unwrap_or("");
            if !cond.trim().is_empty() && !id.is_empty() {
                match crate::query::parse(cond) {
                    Ok(f) => conditional.push((format!("{ROLES}/{id}"), f.matches(&user))),
                    Err(e) => {
                        failure = Some(format!("{ROLES}/{id}: condition: {e}"));
                        return std::ops::ControlFlow::Break(());
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        })?;
        if let Some(m) = failure {
            return Err(ObjectError::new(ObjectErrorKind::BadRequest, m));
        }
        let Value::Object(obj) = &mut user else {
            return Ok(user);
        };
        let mut items: Vec<Value> = match obj.remove(ROLES_PROPERTY) {
            Some(Value::Array(a)) => a,
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other],
        };
        let matches = |r: &str| conditional.iter().any(|(c, m)| c == r && *m);
        items.retain(|it| {
            let r = it.get("_ref").and_then(Value::as_str).unwrap_or("");
            !is_conditional(it) || matches(r.trim_matches('/'))
        });
        for (r, m) in &conditional {
            let held = items.iter().any(|it| {
                it.get("_ref")
                    .and_then(Value::as_str)
                    .map(|x| x.trim_matches('/'))
                    == Some(r)
            });
            if *m && !held {
                let mut props = Map::new();
                props.insert("_grantType".into(), json!("conditional"));
                items.push(json!({"_ref": r, "_refProperties": props}));
            }
        }
        obj.insert(ROLES_PROPERTY.into(), Value::Array(items));
        Ok(user)
    }
}
