//! IDM provisioner files (`provisioner.openicf-<name>.json`): the connector a system uses, its
//! `configurationProperties`, and the object model of each object type.
//!
//! A provisioner declares `system/<name>/<objectType>` for each key of `objectTypes`. The
//! object model follows IDM's: each property has a JSON `type` (`items` for arrays), a
//! `nativeName` (the connector's attribute; `__NAME__` and `__UID__` are OpenICF's special
//! names), a `nativeType` and `flags` (`NOT_CREATABLE`, `NOT_UPDATEABLE`, `NOT_READABLE`,
//! `NOT_RETURNED_BY_DEFAULT`, `MULTIVALUED`). Connectors translate between the model's
//! property names and their native attributes with [`ObjectType`]'s helpers; no connector
//! parses `objectTypes` itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// OpenICF's name attribute (an LDAP `dn`, a CSV `headerName` column).
pub const NAME: &str = "__NAME__";
/// OpenICF's unique id attribute; an object's `_id`.
pub const UID: &str = "__UID__";
/// OpenICF's password attribute.
pub const PASSWORD: &str = "__PASSWORD__";

/// The connectors recond runs, by `connectorRef.connectorName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorKind {
    Csv,
    Ldap,
    DatabaseTable,
    /// Any other connector: only usable when recon.toml replaces the system.
    Other(String),
}

impl ConnectorKind {
    pub fn from_connector_name(name: &str) -> ConnectorKind {
        match name {
            "org.forgerock.openicf.csvfile.CSVFileConnector"
            | "org.forgerock.openicf.connectors.csv.CSVFileConnector" => ConnectorKind::Csv,
            "org.identityconnectors.ldap.LdapConnector" => ConnectorKind::Ldap,
            "org.identityconnectors.databasetable.DatabaseTableConnector" => {
                ConnectorKind::DatabaseTable
            }
            other => ConnectorKind::Other(other.to_string()),
        }
    }
}

/// A property's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropType {
    String,
    Boolean,
    Integer,
    Number,
    Object,
    Array,
    /// Absent or unknown `type`: values pass through unchanged.
    Any,
}

impl PropType {
    fn parse(v: Option<&Value>) -> PropType {
        // IDM also writes types as lists like ["string", "null"]: the first non-null one wins.
        let name = match v {
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .find(|s| *s != "null")
                .unwrap_or(""),
            _ => "",
        };
        match name {
            "string" => PropType::String,
            "boolean" => PropType::Boolean,
            "integer" => PropType::Integer,
            "number" => PropType::Number,
            "object" => PropType::Object,
            "array" => PropType::Array,
            _ => PropType::Any,
        }
    }
}

/// One property of an object type.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// The name objects carry in recond (the key under `properties`).
    pub name: String,
    /// The connector's attribute name (`nativeName`, default: `name`).
    pub native_name: String,
    pub native_type: Option<String>,
    pub ty: PropType,
    /// The element type of an array.
    pub items: Option<PropType>,
    pub flags: Vec<String>,
    pub required: bool,
}

impl Property {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
    pub fn is_readable(&self) -> bool {
        !self.has_flag("NOT_READABLE")
    }
    pub fn is_returned_by_default(&self) -> bool {
        self.is_readable() && !self.has_flag("NOT_RETURNED_BY_DEFAULT")
    }
    pub fn is_creatable(&self) -> bool {
        !self.has_flag("NOT_CREATABLE")
    }
    pub fn is_updateable(&self) -> bool {
        !self.has_flag("NOT_UPDATEABLE")
    }
    pub fn is_multivalued(&self) -> bool {
        self.ty == PropType::Array || self.has_flag("MULTIVALUED")
    }
    /// A write-only secret (`GuardedString` native type, or `__PASSWORD__`).
    pub fn is_password(&self) -> bool {
        self.native_name == PASSWORD
            || self
                .native_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("JAVA_TYPE_GUARDEDSTRING"))
    }
}

/// One object type of a provisioner (`account`, `group`).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectType {
    pub name: String,
    /// `nativeType` (`__ACCOUNT__`, `__GROUP__`, or a connector-specific class/table name).
    pub native_type: String,
    /// In the file's order.
    pub properties: Vec<Property>,
}

impl ObjectType {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }
    /// The property whose native attribute is `native` (case-insensitive, as connectors'
    /// attribute names are).
    pub fn by_native(&self, native: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|p| p.native_name.eq_ignore_ascii_case(native))
    }
    /// The property mapped to `__NAME__` (an LDAP `dn`), if any.
    pub fn name_property(&self) -> Option<&Property> {
        self.by_native(NAME)
    }
    /// The property mapped to `__UID__`, if the file declares one.
    pub fn uid_property(&self) -> Option<&Property> {
        self.by_native(UID)
    }
}

/// A parsed provisioner file.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioner {
    /// The system name: `system/<name>/...`.
    pub name: String,
    pub file: PathBuf,
    pub connector_name: String,
    pub kind: ConnectorKind,
    /// `configurationProperties`, with `&{...}` substituted.
    pub configuration: Map<String, Value>,
    /// By object type name.
    pub object_types: BTreeMap<String, ObjectType>,
    /// The whole file (pool and timeout options, operationOptions, ...), substituted.
    pub raw: Value,
}

impl Provisioner {
    /// Parses a provisioner file whose `&{...}` references are already substituted.
    /// `file_name_system` is the `<name>` of `provisioner.openicf-<name>.json`, used when the
    /// file has no `name`.
    pub fn parse(file: &Path, json: Value, file_name_system: &str) -> Result<Provisioner, String> {
        let obj = json
            .as_object()
            .ok_or("a provisioner file must hold a JSON object")?;
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None => file_name_system.to_string(),
            Some(_) => return Err("name: must be a non-empty string".into()),
        };
        if name.contains('/') || name.chars().any(char::is_whitespace) {
            return Err(format!("name: invalid system name \"{name}\""));
        }
        let connector_name = obj
            .get("connectorRef")
            .and_then(|c| c.get("connectorName"))
            .and_then(Value::as_str)
            .ok_or("connectorRef.connectorName is required")?
            .to_string();
        let configuration = match obj.get("configurationProperties") {
            Some(Value::Object(m)) => m.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err("configurationProperties: must be an object".into()),
        };
        let mut object_types = BTreeMap::new();
        match obj.get("objectTypes") {
            Some(Value::Object(types)) => {
                for (ty, def) in types {
                    let parsed =
                        parse_object_type(ty, def).map_err(|e| format!("objectTypes/{ty}: {e}"))?;
                    object_types.insert(ty.clone(), parsed);
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => return Err("objectTypes: must be an object".into()),
        }
        Ok(Provisioner {
            name,
            file: file.to_path_buf(),
            kind: ConnectorKind::from_connector_name(&connector_name),
            connector_name,
            configuration,
            object_types,
            raw: json,
        })
    }

    /// A configuration property as a string (numbers and booleans are accepted as written).
    pub fn config_str(&self, key: &str) -> Option<String> {
        match self.configuration.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A configuration property as a boolean (`true`, `"true"`), or `default` when absent/null.
    pub fn config_bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.configuration.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(other) => Err(format!(
                "{}: configurationProperties.{key}: expected a boolean, got {other}",
                self.file.display()
            )),
        }
    }

    /// A configuration property as a list of strings (a single string is a one-item list).
    pub fn config_list(&self, key: &str) -> Vec<String> {
        match self.configuration.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        }
    }
}

fn parse_object_type(name: &str, def: &Value) -> Result<ObjectType, String> {
    let def = def.as_object().ok_or("must be an object")?;
    let native_type = def
        .get("nativeType")
        .or_else(|| def.get("id"))
        .and_then(Value::as_str)
        .unwrap_or(name)
        .to_string();
    let mut properties = Vec::new();
    match def.get("properties") {
        Some(Value::Object(props)) => {
            for (pname, p) in props {
                let p = p
                    .as_object()
                    .ok_or_else(|| format!("properties/{pname}: must be an object"))?;
                let flags = match p.get("flags") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|f| {
                            f.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| format!("properties/{pname}/flags: must be strings"))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => return Err(format!("properties/{pname}/flags: must be an array")),
                };
                let ty = PropType::parse(p.get("type"));
                properties.push(Property {
                    name: pname.clone(),
                    native_name: p
                        .get("nativeName")
                        .and_then(Value::as_str)
                        .unwrap_or(pname)
                        .to_string(),
                    native_type: p
                        .get("nativeType")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    ty,
                    items: (ty == PropType::Array)
                        .then(|| PropType::parse(p.get("items").and_then(|i| i.get("type")))),
                    flags,
                    required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
                });
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err("properties: must be an object".into()),
    }
    Ok(ObjectType {
        name: name.to_string(),
        native_type,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ldap() -> Value {
        json!({
            "name": "ldap",
            "connectorRef": {"bundleName": "x", "connectorName": "org.identityconnectors.ldap.LdapConnector"},
            "configurationProperties": {"host": "localhost", "port": 1389, "ssl": "false",
                                        "baseContexts": ["dc=example,dc=com"]},
            "objectTypes": {
                "account": {"nativeType": "__ACCOUNT__", "properties": {
                    "dn": {"type": "string", "nativeName": "__NAME__", "required": true},
                    "uid": {"type": "string", "nativeName": "uid"},
                    "userPassword": {"type": "string", "nativeName": "userPassword",
                                     "nativeType": "JAVA_TYPE_GUARDEDSTRING",
                                     "flags": ["NOT_READABLE", "NOT_RETURNED_BY_DEFAULT"]},
                    "ldapGroups": {"type": "array", "items": {"type": "string"}, "nativeName": "ldapGroups"},
                    "mail": {"type": ["string", "null"]}
                }}
            }
        })
    }

    #[test]
    fn parses_the_object_model() {
        let p = Provisioner::parse(Path::new("p.json"), ldap(), "fallback").expect("parses");
        assert_eq!(p.name, "ldap");
        assert_eq!(p.kind, ConnectorKind::Ldap);
        assert_eq!(p.config_str("port").as_deref(), Some("1389"));
        assert!(!p.config_bool("ssl", true).expect("bool"));
        assert_eq!(p.config_list("baseContexts"), vec!["dc=example,dc=com"]);
        let acct = &p.object_types["account"];
        assert_eq!(acct.native_type, "__ACCOUNT__");
        assert_eq!(acct.name_property().map(|p| p.name.as_str()), Some("dn"));
        let pw = acct.property("userPassword").expect("declared");
        assert!(pw.is_password() && !pw.is_readable() && !pw.is_returned_by_default());
        let groups = acct.by_native("LDAPGROUPS").expect("case-insensitive");
        assert!(groups.is_multivalued());
        assert_eq!(groups.items, Some(PropType::String));
        assert_eq!(acct.property("mail").map(|p| p.ty), Some(PropType::String));
        assert_eq!(
            acct.property("mail").map(|p| p.native_name.as_str()),
            Some("mail")
        );
    }

    #[test]
    fn name_comes_from_the_file_when_absent_and_errors_are_precise() {
        let mut v = ldap();
        v.as_object_mut().expect("object").remove("name");
        let p = Provisioner::parse(Path::new("p.json"), v, "hr").expect("parses");
        assert_eq!(p.name, "hr");
        let e = Provisioner::parse(Path::new("p.json"), json!({"connectorRef": {}}), "x")
            .expect_err("no connector name");
        assert!(e.contains("connectorName"), "{e}");
        let e = Provisioner::parse(
            Path::new("p.json"),
            json!({"connectorRef": {"connectorName": "c"},
                   "objectTypes": {"a": {"properties": {"x": {"flags": "NOT_READABLE"}}}}}),
            "x",
        )
        .expect_err("flags not an array");
        assert!(e.contains("objectTypes/a") && e.contains("flags"), "{e}");
        assert_eq!(
            ConnectorKind::from_connector_name("org.forgerock.openicf.connectors.xml.XMLConnector"),
            ConnectorKind::Other("org.forgerock.openicf.connectors.xml.XMLConnector".into())
        );
    }
}
