//! recond's own versions of the hook scripts IDM ships with itself, which a stock managed.json
//! names (`ui/onCreateUser.js`, `require('onCreateUser')...`, `roles/onDelete-roles.js`, ...).
//! They are used only when the project has no file of that name; a project's own file always
//! wins. What each does:
//!
//! * `onCreateUser`: `accountStatus` becomes `"active"` when the object has none.
//! * `roles/onDelete-roles`: a role that still has `members` cannot be deleted.
//! * `roles/conditionalRoles` `updateConditionalGrantsForUser` (a user's onCreate/onUpdate):
//!   see `conditional`; the role's own calls (`roleCreate`, `roleUpdate`) do nothing yet.
//! * `roles/onSync-roles` (a role's `onSync`): unless the only change is in the role's
//!   `members`, every member is synchronized again (its `effectiveRoles` /
//!   `effectiveAssignments` may have changed with the role). `roles/onSync-assignments`: the
//!   same for the members of every role holding the assignment, unless only its `roles`
//!   changed. The ignored property is IDM's default one; the list a stock file passes is
//!   that one.
//! * `onUpdateUser`, `onDelete-user-cleanup`, `postDelete-user-cleanup`,
//!   `roles/postOperation-roles`: nothing recond needs to do (they keep IDM's UI state and
//!   notifications, which recond does not have).

use serde_json::{json, Value};

use super::schema::ScriptPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundled {
    SetDefaultFields,
    RoleDeleteGuard,
    /// `onSync` of a role: synchronize its members again.
    SyncRoleMembers,
    /// `onSync` of an assignment: synchronize the members of its roles again.
    SyncAssignmentMembers,
    /// A user's `onCreate` / `onUpdate`: conditional roles granted and taken away.
    ConditionalGrants,
    Nothing(&'static str),
}

/// (module, function or `*`, behaviour): the first match wins.
const KNOWN: &[(&str, &str, Bundled)] = &[
    (
        "onCreateUser",
        "setDefaultFields",
        Bundled::SetDefaultFields,
    ),
    ("onCreateUser", "", Bundled::SetDefaultFields),
    ("onCreateUser", "*", Bundled::Nothing("onCreateUser")),
    ("roles/onDelete-roles", "*", Bundled::RoleDeleteGuard),
    ("onUpdateUser", "*", Bundled::Nothing("onUpdateUser")),
    (
        "onDelete-user-cleanup",
        "*",
        Bundled::Nothing("onDelete-user-cleanup"),
    ),
    (
        "postDelete-user-cleanup",
        "*",
        Bundled::Nothing("postDelete-user-cleanup"),
    ),
    (
        "roles/postOperation-roles",
        "*",
        Bundled::Nothing("roles/postOperation-roles"),
    ),
    ("roles/onSync-roles", "*", Bundled::SyncRoleMembers),
    (
        "roles/onSync-assignments",
        "*",
        Bundled::SyncAssignmentMembers,
    ),
    (
        "roles/conditionalRoles",
        "updateConditionalGrantsForUser",
        Bundled::ConditionalGrants,
    ),
    // A role's own calls (roleCreate, roleUpdate): its users are evaluated at their next
    // write (see `conditional`).
    (
        "roles/conditionalRoles",
        "*",
        Bundled::Nothing("roles/conditionalRoles"),
    ),
];

fn known(module: &str, function: &str) -> Option<Bundled> {
    KNOWN
        .iter()
        .find(|(m, f, _)| {
            (module == *m || module.ends_with(&format!("/{m}"))) && (*f == "*" || *f == function)
        })
        .map(|(_, _, b)| *b)
}

/// `file`, or a source made only of `require('<module>').<function>(...);` statements, names
/// scripts IDM bundles and the project does not have: recond's own, in order.
pub fn recognize(
    file: Option<&str>,
    source: Option<&str>,
    scripts: &ScriptPath,
) -> Option<Vec<Bundled>> {
    if let Some(f) = file {
        if scripts.find(f).is_some() {
            return None;
        }
        return known(f.trim_end_matches(".js"), "").map(|b| vec![b]);
    }
    let mut out = Vec::new();
    for stmt in source?.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let rest = stmt.strip_prefix("require(")?.trim_start();
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let rest = &rest[1..];
        let end = rest.find(quote)?;
        let module = &rest[..end];
        let call = rest[end + 1..].trim_start().strip_prefix(')')?.trim_start();
        let call = call.strip_prefix('.')?;
        let function = &call[..call.find('(')?];
        if scripts.find(&format!("{module}.js")).is_some() {
            return None;
        }
        out.push(known(module, function.trim())?);
    }
    (!out.is_empty()).then_some(out)
}

impl Bundled {
    /// Runs on `object` (the one the hook may change); Err is the refusal's message.
    pub fn run(self, object: &Value) -> Result<Value, String> {
        match self {
            Bundled::SetDefaultFields => {
                let mut o = object.clone();
                if let Value::Object(m) = &mut o {
                    if m.get("accountStatus").is_none_or(Value::is_null) {
                        m.insert("accountStatus".into(), json!("active"));
                    }
                }
                Ok(o)
            }
            Bundled::RoleDeleteGuard => {
                let granted = object
                    .get("members")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if granted {
                    Err("Cannot delete a role that is currently granted".into())
                } else {
                    Ok(object.clone())
                }
            }
            // The onSync ones act after synchronization (`ManagedSet::on_synced`), not here.
            // ConditionalGrants needs the roles: `ManagedSet::hook` applies it.
            Bundled::SyncRoleMembers
            | Bundled::SyncAssignmentMembers
            | Bundled::ConditionalGrants
            | Bundled::Nothing(_) => Ok(object.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_files_and_require_calls() {
        let p = super::super::schema::test_path();
        assert_eq!(
            recognize(Some("ui/onCreateUser.js"), None, &p),
            Some(vec![Bundled::SetDefaultFields])
        );
        let stock = "require('ui/onCreateUser').setDefaultFields(object);\
            require('ui/onCreateUser').createIdpRelationships(object);\
            require('roles/conditionalRoles').updateConditionalGrantsForUser(object, 'roles');";
        assert_eq!(
            recognize(None, Some(stock), &p),
            Some(vec![
                Bundled::SetDefaultFields,
                Bundled::Nothing("onCreateUser"),
                Bundled::ConditionalGrants
            ])
        );
        assert_eq!(
            recognize(Some("roles/onDelete-roles.js"), None, &p),
            Some(vec![Bundled::RoleDeleteGuard])
        );
        assert_eq!(recognize(Some("mine.js"), None, &p), None);
        assert_eq!(recognize(None, Some("object.x = 1;"), &p), None);
        assert_eq!(
            recognize(None, Some("require('x').f(object); object.y = 1;"), &p),
            None
        );
        let r = Bundled::RoleDeleteGuard.run(&json!({"members": [{"_ref": "managed/user/u"}]}));
        assert!(r.is_err());
        let o = Bundled::SetDefaultFields.run(&json!({"accountStatus": "inactive"}));
        assert_eq!(o, Ok(json!({"accountStatus": "inactive"})));
    }
}
