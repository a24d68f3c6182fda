//! recond's own versions of the hook scripts IDM ships with itself, which a stock managed.json
//! names (`ui/onCreateUser.js`, `require('onCreateUser')...`, `roles/onDelete-roles.js`, ...).
//! They are used only when the project has no file of that name; a project's own file always
//! wins. What each does:
//!
//! * `onCreateUser`: `accountStatus` becomes `"active"` when the object has none.
//! * `roles/onDelete-roles`: a role that still has `members` cannot be deleted.
//! * `onUpdateUser`, `onDelete-user-cleanup`, `postDelete-user-cleanup`,
//!   `roles/postOperation-roles`, `roles/onSync-roles`: nothing recond needs to do (they keep
//!   IDM's UI state, notifications or implicit synchronization, which recond does not have).

use serde_json::{json, Value};

use super::schema::ScriptPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundled {
    SetDefaultFields,
    RoleDeleteGuard,
    Nothing(&'static str),
}

/// (name in a file path or `require()` call, behaviour)
const KNOWN: &[(&str, Bundled)] = &[
    ("onCreateUser", Bundled::SetDefaultFields),
    ("roles/onDelete-roles", Bundled::RoleDeleteGuard),
    ("onUpdateUser", Bundled::Nothing("onUpdateUser")),
    (
        "onDelete-user-cleanup",
        Bundled::Nothing("onDelete-user-cleanup"),
    ),
    (
        "postDelete-user-cleanup",
        Bundled::Nothing("postDelete-user-cleanup"),
    ),
    (
        "roles/postOperation-roles",
        Bundled::Nothing("roles/postOperation-roles"),
    ),
    ("roles/onSync-roles", Bundled::Nothing("roles/onSync-roles")),
];

/// `file` (or a source that is a single `require('<module>')...` call) names a script IDM
/// bundles and the project does not have.
pub fn recognize(
    file: Option<&str>,
    source: Option<&str>,
    scripts: &ScriptPath,
) -> Option<Bundled> {
    if let Some(f) = file {
        if scripts.find(f).is_some() {
            return None;
        }
        let stem = f.trim_end_matches(".js");
        return KNOWN
            .iter()
            .find(|(name, _)| stem == *name || stem.ends_with(&format!("/{name}")))
            .map(|(_, b)| *b);
    }
    let src = source?.trim();
    let module = src
        .strip_prefix("require(")?
        .trim_start()
        .strip_prefix(['\'', '"'])?;
    let module = &module[..module.find(['\'', '"'])?];
    if scripts.find(&format!("{module}.js")).is_some() {
        return None;
    }
    KNOWN
        .iter()
        .find(|(name, _)| module == *name || module.ends_with(&format!("/{name}")))
        .map(|(_, b)| *b)
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
            Bundled::Nothing(_) => Ok(object.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn recognizes_files_and_require_calls() {
        let p = ScriptPath {
            project_dir: PathBuf::from("/nonexistent"),
        };
        assert_eq!(
            recognize(Some("ui/onCreateUser.js"), None, &p),
            Some(Bundled::SetDefaultFields)
        );
        assert_eq!(
            recognize(
                None,
                Some("require('onCreateUser').setDefaultFields(object);"),
                &p
            ),
            Some(Bundled::SetDefaultFields)
        );
        assert_eq!(
            recognize(Some("roles/onDelete-roles.js"), None, &p),
            Some(Bundled::RoleDeleteGuard)
        );
        assert_eq!(recognize(Some("mine.js"), None, &p), None);
        assert_eq!(recognize(None, Some("object.x = 1;"), &p), None);
        let r = Bundled::RoleDeleteGuard.run(&json!({"members": [{"_ref": "managed/user/u"}]}));
        assert!(r.is_err());
        let o = Bundled::SetDefaultFields.run(&json!({"accountStatus": "inactive"}));
        assert_eq!(o, Ok(json!({"accountStatus": "inactive"})));
    }
}
