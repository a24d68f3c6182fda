//! One managed object type as managed.json declares it: property defaults, `required`,
//! `returnByDefault`, `encryption` / `secureHash`, virtual properties, relationships, and the
//! type's script hooks (compiled here, once, at startup).
//!
//! Invariants: a schema that cannot be honoured (a Groovy hook, a script file that does not
//! exist, a relationship without a target) is a startup error naming managed.json and the type;
//! nothing in it is skipped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::bundled;
use super::hooks::{Action, Hook, HookKind, Script};
use crate::script::{ProjectEnv, ScriptEnv};

/// A startup error in managed.json: the file and what is wrong (with the type's name).
#[derive(Debug, Clone)]
pub struct SchemaError(pub String);

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `relationship` property (or an array of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Relationship {
    /// An array of relationships (`type: "array", items: {type: "relationship"}`).
    pub many: bool,
    /// The property of the other side that points back (`reversePropertyName`).
    pub reverse: Option<String>,
    /// The collections a reference may point into (`resourceCollection[].path`); empty: any.
    pub collections: Vec<String>,
}

/// How a virtual property gets its value.
#[derive(Debug, Clone)]
pub enum Virtual {
    /// recond's own `roles/effectiveRoles.js`: the references of the roles property.
    EffectiveRoles { roles_property: String },
    /// recond's own `roles/effectiveAssignments.js`: the assignments of the effective roles.
    EffectiveAssignments { roles_property: String },
    /// The project's `onRetrieve` script; its value is the property's value.
    Script(Script),
    /// Declared virtual without a way to compute it: the stored value (if any) is kept.
    Stored,
}

#[derive(Debug, Clone)]
pub struct Property {
    pub default: Option<Value>,
    pub return_by_default: bool,
    /// `scope: "private"`: never returned to REST clients.
    pub private: bool,
    pub required: bool,
    pub encrypted: bool,
    /// `secureHash.algorithm`.
    pub hash: Option<String>,
    pub relationship: Option<Relationship>,
    pub virtual_: Option<Virtual>,
}

#[derive(Debug, Clone)]
pub struct TypeSchema {
    /// `managed/user`.
    pub set: String,
    pub properties: BTreeMap<String, Property>,
    pub hooks: BTreeMap<HookKind, Hook>,
}

impl TypeSchema {
    /// A type without schema (a `[managed.X]` of recon.toml only).
    pub fn empty(set: &str) -> TypeSchema {
        TypeSchema {
            set: set.to_string(),
            properties: BTreeMap::new(),
            hooks: BTreeMap::new(),
        }
    }

    pub fn relationships(&self) -> impl Iterator<Item = (&String, &Relationship)> {
        self.properties
            .iter()
            .filter_map(|(k, p)| p.relationship.as_ref().map(|r| (k, r)))
    }

    /// Whether the schema changes anything about storing or reading an object.
    pub fn is_plain(&self) -> bool {
        self.properties.is_empty() && self.hooks.is_empty()
    }
}

/// The script environment of managed object hooks: the same project as the mapping scripts
/// (`file` and `require()` resolve in the project folder, its `script/` folder, the conf
/// folder, then recon.toml's folder), without a `mappingConfig`.
pub struct ScriptPath {
    pub env: Arc<ScriptEnv>,
}

impl ScriptPath {
    pub fn new(project: Arc<ProjectEnv>) -> ScriptPath {
        ScriptPath {
            env: Arc::new(ScriptEnv {
                project,
                mapping_config: None,
            }),
        }
    }

    /// The file `file` names, as mapping scripts resolve it.
    pub fn find(&self, file: &str) -> Option<PathBuf> {
        self.env.project.resolve_file(file)
    }
}

/// Parses every type of managed.json (`{"objects": [...]}`), by set name.
/// `log`: whether to log what is ignored or replaced (once, when the sets are built).
pub fn parse_all(
    file: &Path,
    managed: &Value,
    scripts: &ScriptPath,
    log: bool,
) -> Result<BTreeMap<String, TypeSchema>, SchemaError> {
    let objects = managed
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| SchemaError("expected an \"objects\" array".into()))?;
    let mut out = BTreeMap::new();
    for obj in objects {
        let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
        let ctx = Ctx {
            at: format!("managed object \"{name}\""),
            file,
            scripts,
            log,
        };
        let t = ctx.parse_type(name, obj)?;
        out.insert(t.set.clone(), t);
    }
    check_reverse_sides(&out)?;
    Ok(out)
}

/// Every `reversePropertyName` into a type of this file names a relationship property there.
fn check_reverse_sides(types: &BTreeMap<String, TypeSchema>) -> Result<(), SchemaError> {
    for t in types.values() {
        for (name, rel) in t.relationships() {
            let Some(reverse) = &rel.reverse else {
                continue;
            };
            for coll in &rel.collections {
                let Some(other) = types.get(coll) else {
                    continue;
                };
                let ok = other
                    .properties
                    .get(reverse)
                    .is_some_and(|p| p.relationship.is_some());
                if !ok {
                    return Err(SchemaError(format!(
                        "managed object \"{}\": property \"{name}\": reversePropertyName \"{reverse}\" is not a relationship property of {coll}",
                        t.set.trim_start_matches("managed/")
                    )));
                }
            }
        }
    }
    Ok(())
}

struct Ctx<'a> {
    /// `managed object "user"`.
    at: String,
    file: &'a Path,
    scripts: &'a ScriptPath,
    log: bool,
}

fn flag(m: &Map<String, Value>, key: &str) -> Option<bool> {
    match m.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

fn is_type(def: &Map<String, Value>, ty: &str) -> bool {
    match def.get("type") {
        Some(Value::String(s)) => s == ty,
        Some(Value::Array(a)) => a.iter().any(|t| t.as_str() == Some(ty)),
        _ => false,
    }
}

impl Ctx<'_> {
    fn err(&self, m: impl std::fmt::Display) -> SchemaError {
        SchemaError(format!("{}: {m}", self.at))
    }

    fn parse_type(&self, name: &str, obj: &Value) -> Result<TypeSchema, SchemaError> {
        let set = format!("managed/{name}");
        let schema = obj.get("schema").and_then(Value::as_object);
        let required = crate::objects::strings(schema.and_then(|s| s.get("required")));
        let mut properties = BTreeMap::new();
        if let Some(props) = schema.and_then(|s| s.get("properties")) {
            let props = props
                .as_object()
                .ok_or_else(|| self.err("schema.properties must be an object"))?;
            for (pname, def) in props {
                let def = def
                    .as_object()
                    .ok_or_else(|| self.err(format!("property \"{pname}\" must be an object")))?;
                let mut p = self.parse_property(pname, def)?;
                p.required |= required.contains(pname);
                properties.insert(pname.clone(), p);
            }
        }
        for r in &required {
            properties.entry(r.clone()).or_insert(Property {
                default: None,
                return_by_default: true,
                private: false,
                required: true,
                encrypted: false,
                hash: None,
                relationship: None,
                virtual_: None,
            });
        }
        for key in ["onRead", "onStore"] {
            let Some(v) = obj.get(key).filter(|v| !v.is_null()) else {
                continue;
            };
            let file = v.get("file").and_then(Value::as_str);
            let source = v.get("source").and_then(Value::as_str);
            if self.log && bundled::recognize(file, source, self.scripts).is_none() {
                tracing::warn!(file = %self.file.display(), at = %self.at, hook = key, "recond does not run this managed object hook (yet); it is ignored");
            }
        }
        let mut hooks = BTreeMap::new();
        for kind in HookKind::ALL {
            if let Some(v) = obj.get(kind.key()) {
                if v.is_null() {
                    continue;
                }
                let key = kind.key();
                hooks.insert(kind, self.hook(key, v, kind)?);
            }
        }
        Ok(TypeSchema {
            set,
            properties,
            hooks,
        })
    }

    fn parse_property(
        &self,
        name: &str,
        def: &Map<String, Value>,
    ) -> Result<Property, SchemaError> {
        let relationship = if is_type(def, "relationship") {
            Some(self.relationship(def, false))
        } else if is_type(def, "array")
            && def
                .get("items")
                .and_then(Value::as_object)
                .is_some_and(|i| is_type(i, "relationship"))
        {
            let items = def.get("items").and_then(Value::as_object);
            let mut r = self.relationship(items.unwrap_or(def), true);
            if r.reverse.is_none() {
                r.reverse = self.relationship(def, true).reverse;
            }
            Some(r)
        } else {
            None
        };
        let hash = match def.get("secureHash") {
            None | Some(Value::Null) => None,
            Some(h) => Some(
                h.get("algorithm")
                    .and_then(Value::as_str)
                    .unwrap_or("SHA-256")
                    .to_ascii_uppercase(),
            ),
        };
        if let Some(a) = &hash {
            if !matches!(a.as_str(), "SHA-256" | "SHA-512") {
                return Err(self.err(format!(
                    "property \"{name}\": secureHash algorithm \"{a}\" is not supported (SHA-256, SHA-512)"
                )));
            }
        }
        let encrypted = !matches!(def.get("encryption"), None | Some(Value::Null));
        if encrypted && hash.is_some() {
            return Err(self.err(format!(
                "property \"{name}\" declares both encryption and secureHash"
            )));
        }
        let is_virtual = flag(def, "isVirtual") == Some(true);
        for key in ["onValidate", "onStore", "onRetrieve"] {
            if self.log
                && def.get(key).is_some_and(|v| !v.is_null())
                && !(is_virtual && key == "onRetrieve")
            {
                tracing::warn!(file = %self.file.display(), at = %self.at, property = name, hook = key, "recond does not run this property hook (yet); it is ignored");
            }
        }
        let virtual_ = if is_virtual {
            Some(match def.get("onRetrieve") {
                None | Some(Value::Null) => Virtual::Stored,
                Some(v) => self.virtual_script(name, v)?,
            })
        } else {
            None
        };
        Ok(Property {
            default: def.get("default").cloned(),
            // Relationships are not returned unless asked for, as in IDM.
            return_by_default: flag(def, "returnByDefault").unwrap_or(relationship.is_none()),
            private: def.get("scope").and_then(Value::as_str) == Some("private"),
            required: flag(def, "required") == Some(true),
            encrypted,
            hash,
            relationship,
            virtual_,
        })
    }

    fn relationship(&self, def: &Map<String, Value>, many: bool) -> Relationship {
        let collections = def
            .get("resourceCollection")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("path").and_then(Value::as_str))
                    .map(|p| p.trim_matches('/').to_string())
                    .collect()
            })
            .unwrap_or_default();
        Relationship {
            many,
            reverse: def
                .get("reversePropertyName")
                .and_then(Value::as_str)
                .filter(|_| flag(def, "reverseRelationship") != Some(false))
                .map(str::to_string),
            collections,
        }
    }

    /// A virtual property's `onRetrieve`: IDM's bundled role scripts (by file name or by the
    /// `require('roles/...')` call of newer versions) are recond's own unless the project has
    /// a file of that name.
    fn virtual_script(&self, name: &str, v: &Value) -> Result<Virtual, SchemaError> {
        let m = v.as_object().ok_or_else(|| {
            self.err(format!(
                "property \"{name}\": onRetrieve must be a script object"
            ))
        })?;
        let file = m.get("file").and_then(Value::as_str).unwrap_or_default();
        let source = m.get("source").and_then(Value::as_str).unwrap_or_default();
        let names = |b: &str| file.ends_with(&format!("{b}.js")) || source.contains(b);
        let bundled = if names("roles/effectiveRoles") {
            Some(("roles/effectiveRoles.js", true))
        } else if names("roles/effectiveAssignments") {
            Some(("roles/effectiveAssignments.js", false))
        } else {
            None
        };
        if let Some((bundled_file, roles)) = bundled {
            if self.scripts.find(bundled_file).is_none() {
                let arg = |var: &str, default: &str| {
                    m.get(var)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| second_string_arg(source))
                        .unwrap_or_else(|| default.to_string())
                };
                return Ok(if roles {
                    Virtual::EffectiveRoles {
                        roles_property: arg("rolesPropName", "roles"),
                    }
                } else {
                    Virtual::EffectiveAssignments {
                        roles_property: arg("effectiveRolesPropName", "effectiveRoles"),
                    }
                });
            }
        }
        let key = format!("schema.properties.{name}.onRetrieve");
        Ok(Virtual::Script(self.script(&key, v, None)?))
    }

    fn hook(&self, key: &str, v: &Value, kind: HookKind) -> Result<Hook, SchemaError> {
        let file = v.get("file").and_then(Value::as_str);
        let source = v.get("source").and_then(Value::as_str);
        let action = match bundled::recognize(file, source, self.scripts) {
            Some(b) => {
                if self.log {
                    tracing::info!(file = %self.file.display(), at = %self.at, hook = key, "using recond's own version of IDM's bundled script");
                }
                Action::Bundled(b)
            }
            None => Action::Script(self.script(key, v, kind.result_variable())?),
        };
        Ok(Hook {
            kind,
            action,
            origin: format!("{}, {}", self.file.display(), self.at),
        })
    }

    /// A script object; `result` names the variable whose final value the caller wants back
    /// (appended as the completion value, as IDM keeps the script's changes to it).
    fn script(&self, key: &str, v: &Value, result: Option<&str>) -> Result<Script, SchemaError> {
        let m = v
            .as_object()
            .ok_or_else(|| self.err(format!("{key}: expected a script object")))?;
        let ty = m
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("text/javascript");
        let where_ = match m.get("file").and_then(Value::as_str) {
            Some(f) => format!("{key} (file {f})"),
            None => key.to_string(),
        };
        if !crate::script::is_supported_type(ty) {
            return Err(self.err(format!(
                "{where_}: script type \"{ty}\" is not supported (recond runs JavaScript only)"
            )));
        }
        let source = match (m.get("source"), m.get("file")) {
            (Some(Value::String(s)), _) => s.clone(),
            (_, Some(Value::String(f))) => match self.scripts.find(f) {
                Some(p) => std::fs::read_to_string(&p)
                    .map_err(|e| self.err(format!("{where_}: cannot read {}: {e}", p.display())))?,
                None => {
                    return Err(self.err(format!(
                        "{where_}: script file not found in the project or its script/ folder"
                    )))
                }
            },
            _ => return Err(self.err(format!("{key}: a script needs \"source\" or \"file\""))),
        };
        // IDM passes a script object's other keys to the script as variables.
        let mut globals = match m.get("globals") {
            Some(Value::Object(g)) => g.clone(),
            _ => Map::new(),
        };
        for (k, val) in m {
            if !matches!(k.as_str(), "type" | "source" | "file" | "globals") {
                globals.insert(k.clone(), val.clone());
            }
        }
        let source = match result {
            Some(var) => format!("{source}\n;{var};"),
            None => source,
        };
        Script::compile(
            format!("{}, {}, {where_}", self.file.display(), self.at),
            source,
            globals,
            self.scripts.env.clone(),
        )
        .map_err(|e| self.err(format!("{where_}: {e}")))
    }
}

/// `'roles'` in `require('roles/effectiveRoles').calculateEffectiveRoles(object, 'roles');`.
fn second_string_arg(source: &str) -> Option<String> {
    let open = source.rfind("(object,")?;
    let rest = source[open + "(object,".len()..].trim_start();
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = &rest[1..];
    inner.find(quote).map(|end| inner[..end].to_string())
}

/// A script path with no project files (unit tests).
#[cfg(test)]
pub(super) fn test_path() -> ScriptPath {
    ScriptPath::new(Arc::new(ProjectEnv::new(
        Path::new("/nonexistent"),
        None,
        crate::idm::Properties::default(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<BTreeMap<String, TypeSchema>, SchemaError> {
        let scripts = test_path();
        parse_all(Path::new("conf/managed.json"), &v, &scripts, false)
    }

    #[test]
    fn reads_properties_and_relationships() {
        let t = parse(json!({"objects": [{"name": "user", "schema": {
            "required": ["userName"],
            "properties": {
                "userName": {"type": "string"},
                "accountStatus": {"type": "string", "default": "active"},
                "password": {"type": "string", "encryption": {"key": "k"}, "returnByDefault": false},
                "answer": {"type": "string", "secureHash": {"algorithm": "SHA-256"}},
                "manager": {"type": "relationship", "reversePropertyName": "reports"},
                "roles": {"type": "array", "items": {"type": "relationship",
                    "reversePropertyName": "members",
                    "resourceCollection": [{"path": "managed/role"}]}},
                "effectiveRoles": {"type": "array", "isVirtual": true, "returnByDefault": true,
                    "onRetrieve": {"type": "text/javascript",
                        "source": "require('roles/effectiveRoles').calculateEffectiveRoles(object, 'roles');"}}
            }}}]}))
        .expect("parses");
        let u = &t["managed/user"];
        assert!(u.properties["userName"].required);
        assert_eq!(u.properties["accountStatus"].default, Some(json!("active")));
        assert!(u.properties["password"].encrypted && !u.properties["password"].return_by_default);
        assert_eq!(u.properties["answer"].hash.as_deref(), Some("SHA-256"));
        let roles = u.properties["roles"].relationship.as_ref().expect("rel");
        assert!(roles.many);
        assert_eq!(roles.reverse.as_deref(), Some("members"));
        assert_eq!(roles.collections, vec!["managed/role".to_string()]);
        assert!(!u.properties["roles"].return_by_default);
        assert!(
            !u.properties["manager"]
                .relationship
                .as_ref()
                .expect("rel")
                .many
        );
        assert!(matches!(
            &u.properties["effectiveRoles"].virtual_,
            Some(Virtual::EffectiveRoles { roles_property }) if roles_property == "roles"
        ));
    }

    #[test]
    fn a_reverse_property_must_exist_on_the_other_side() {
        let e = parse(json!({"objects": [
            {"name": "user", "schema": {"properties": {"roles": {"type": "array", "items": {
                "type": "relationship", "reversePropertyName": "members",
                "resourceCollection": [{"path": "managed/role"}]}}}}},
            {"name": "role", "schema": {"properties": {"members": {"type": "string"}}}}
        ]}))
        .expect_err("members is not a relationship");
        assert!(
            e.0.contains("\"members\"") && e.0.contains("managed/role"),
            "{e}"
        );
    }

    #[test]
    fn groovy_hooks_and_missing_files_are_startup_errors() {
        let e = parse(json!({"objects": [{"name": "user",
            "onCreate": {"type": "groovy", "file": "x.groovy"}}]}))
        .expect_err("groovy");
        assert!(e.0.contains("\"user\""), "{e}");
        assert!(e.0.contains("x.groovy") && e.0.contains("groovy"), "{e}");
        let e = parse(json!({"objects": [{"name": "role",
            "postCreate": {"type": "text/javascript", "file": "nope.js"}}]}))
        .expect_err("missing file");
        assert!(e.0.contains("nope.js") && e.0.contains("\"role\""), "{e}");
    }

    #[test]
    fn second_argument_of_the_bundled_calls() {
        assert_eq!(
            second_string_arg("require('x').f(object, \"effRoles\");").as_deref(),
            Some("effRoles")
        );
        assert_eq!(second_string_arg("f(object)"), None);
    }
}
