//! The CSV connector's object model: how a provisioner's object type maps CSV columns to the
//! properties objects carry, as IDM's CSV connector does.
//!
//! * `configurationProperties`: `csvFile` (the older connector's `filePath`), `headerUid`
//!   (default `uid`; the older `uniqueAttribute`), `headerName` (the older `nameAttribute`;
//!   when absent the name is the uid column, as OpenICF does for a connector without a separate
//!   name), `headerPassword` (default `password`; `passwordAttribute`), `quoteCharacter`
//!   (`valueQualifier`, default `"`), `fieldDelimiter` (default `,`), `newlineString` (default:
//!   the header line's own line end) and `multivaluedAttributeDelimiter` (`multivalueDelimiter`,
//!   default `;`).
//! * Reading: `_id` is the `headerUid` column; each property of the object type takes the
//!   column of its `nativeName` (`__UID__`, `__NAME__`, `__PASSWORD__` stand for the configured
//!   header columns; other OpenICF names such as `__DESCRIPTION__` use the property's name);
//!   only declared, readable, returned-by-default properties are returned;
//!   `type: array` properties are split on the multi-valued delimiter into JSON arrays,
//!   `boolean`/`integer`/`number` cells become typed values when they parse as such.
//! * Writing: declared properties fill their configured columns (arrays joined with the
//!   delimiter); undeclared properties are not written and never widen the file; on update,
//!   columns the model does not own (undeclared columns, write-only passwords not given) keep
//!   their cell.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::Dialect;
use crate::idm::provisioner::{NAME, PASSWORD, UID};
use crate::idm::{ObjectType, PropType, Property, Provisioner};

/// One object type's column mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvModel {
    ty: ObjectType,
    uid_column: String,
    name_column: String,
    password_column: String,
    multi_delimiter: String,
}

impl CsvModel {
    /// The file, dialect and model of one object type of a CSV provisioner. Relative `csvFile`
    /// paths are resolved against the project folder (the parent of the conf folder).
    pub fn from_provisioner(
        p: &Provisioner,
        ty: &ObjectType,
    ) -> Result<(PathBuf, Dialect, CsvModel), String> {
        let first = |keys: &[&str]| keys.iter().find_map(|k| p.config_str(k));
        let file = first(&["csvFile", "filePath"])
            .filter(|f| !f.is_empty())
            .ok_or("configurationProperties.csvFile is required")?;
        let file = PathBuf::from(file);
        let file = if file.is_absolute() {
            file
        } else {
            let project = p
                .file
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            project.join(file)
        };
        let uid_column =
            first(&["headerUid", "uniqueAttribute"]).unwrap_or_else(|| "uid".to_string());
        let name_column =
            first(&["headerName", "nameAttribute"]).unwrap_or_else(|| uid_column.clone());
        let password_column =
            first(&["headerPassword", "passwordAttribute"]).unwrap_or_else(|| "password".into());
        let multi_delimiter = first(&["multivaluedAttributeDelimiter", "multivalueDelimiter"])
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| ";".into());
        let dialect = Dialect {
            delimiter: one_byte(p, &["fieldDelimiter"], b',')?,
            quote: one_byte(p, &["quoteCharacter", "valueQualifier"], b'"')?,
            newline: match first(&["newlineString"]) {
                None => None,
                Some(nl) if nl == "\n" || nl == "\r\n" => Some(nl.into_bytes()),
                Some(other) => {
                    return Err(format!(
                        "configurationProperties.newlineString: {other:?} is not a line end \
                         (\"\\n\" or \"\\r\\n\")"
                    ))
                }
            },
        };
        if dialect.delimiter == dialect.quote {
            return Err(
                "configurationProperties: fieldDelimiter and quoteCharacter are the same".into(),
            );
        }
        let model = CsvModel {
            ty: ty.clone(),
            uid_column,
            name_column,
            password_column,
            multi_delimiter,
        };
        Ok((file, dialect, model))
    }

    /// The model of a recon.toml CSV set that replaces a provisioner: `__UID__` is the set's
    /// `id_column`; `__NAME__` and `__PASSWORD__` use the property's own name as column.
    pub fn for_replacement(ty: &ObjectType, id_column: &str) -> CsvModel {
        let own = |native: &str, fallback: &str| {
            ty.by_native(native)
                .map(|p| p.name.clone())
                .unwrap_or_else(|| fallback.to_string())
        };
        CsvModel {
            name_column: own(NAME, id_column),
            password_column: own(PASSWORD, "password"),
            uid_column: id_column.to_string(),
            ty: ty.clone(),
            multi_delimiter: ";".into(),
        }
    }

    /// The column whose value is `_id`.
    pub fn uid_column(&self) -> &str {
        &self.uid_column
    }

    /// The column a property is stored in.
    pub fn column<'a>(&'a self, p: &'a Property) -> &'a str {
        let native = p.native_name.as_str();
        if native.eq_ignore_ascii_case(UID) {
            &self.uid_column
        } else if native.eq_ignore_ascii_case(NAME) {
            &self.name_column
        } else if native.eq_ignore_ascii_case(PASSWORD) {
            &self.password_column
        } else if is_special(native) {
            // Other OpenICF attributes (`__DESCRIPTION__`, `__ENABLE__`) have no column of
            // their own in a CSV file: the property's name is the column.
            &p.name
        } else {
            native
        }
    }

    /// A row as read by the table (column → text, with `_id`/`_rev`) as the model's object.
    pub fn to_object(&self, row: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for key in ["_id", "_rev"] {
            if let Some(v) = row.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        for p in &self.ty.properties {
            if !p.is_returned_by_default() || p.is_password() {
                continue;
            }
            if let Some(Value::String(text)) = row.get(self.column(p)) {
                out.insert(p.name.clone(), self.typed(p, text));
            }
        }
        out
    }

    /// The row (column → value) to create for `obj`. `_`-prefixed keys (`_id`) pass through.
    pub fn create_row(&self, obj: &Map<String, Value>) -> Map<String, Value> {
        let mut row = Map::new();
        for (key, value) in obj {
            if key.starts_with('_') {
                row.insert(key.clone(), value.clone());
            } else if let Some(p) = self.ty.property(key) {
                if p.is_creatable() {
                    row.insert(self.column(p).to_string(), self.cell(value));
                }
            }
        }
        row
    }

    /// The row that replaces `current` (the table's row) when the object becomes `obj`: the
    /// model's updateable columns take `obj`'s values (absent → emptied, except write-only
    /// secrets, which only change when given); other columns keep their cells.
    pub fn update_row(
        &self,
        current: &Map<String, Value>,
        obj: &Map<String, Value>,
    ) -> Map<String, Value> {
        let mut row: Map<String, Value> = current
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for p in &self.ty.properties {
            let column = self.column(p);
            if !p.is_updateable() || column == self.uid_column {
                continue;
            }
            match obj.get(&p.name) {
                Some(v) => {
                    row.insert(column.to_string(), self.cell(v));
                }
                None if p.is_password() || !p.is_returned_by_default() => {}
                None => {
                    row.remove(column);
                }
            }
        }
        row
    }

    /// A property's cell text as a typed value.
    fn typed(&self, p: &Property, text: &str) -> Value {
        match p.ty {
            PropType::Array => Value::Array(
                text.split(self.multi_delimiter.as_str())
                    .filter(|s| !s.is_empty())
                    .map(|s| scalar(p.items.unwrap_or(PropType::String), s))
                    .collect(),
            ),
            ty => scalar(ty, text),
        }
    }

    /// A value as cell content: arrays joined with the multi-valued delimiter, objects as JSON
    /// text, scalars as they are (the table renders them).
    fn cell(&self, v: &Value) -> Value {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match v {
            Value::Array(items) => {
                if items.is_empty() {
                    Value::Null
                } else {
                    Value::String(
                        items
                            .iter()
                            .map(text)
                            .collect::<Vec<_>>()
                            .join(&self.multi_delimiter),
                    )
                }
            }
            Value::Object(_) => Value::String(v.to_string()),
            other => other.clone(),
        }
    }
}

/// An OpenICF special attribute name (`__NAME__`, `__DESCRIPTION__`, ...).
fn is_special(native: &str) -> bool {
    native.len() > 4 && native.starts_with("__") && native.ends_with("__")
}

/// Cell text as a value of a JSON type; text that does not parse as the type stays a string.
fn scalar(ty: PropType, text: &str) -> Value {
    let parsed = match ty {
        PropType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        PropType::Integer => text.trim().parse::<i64>().ok().map(Value::from),
        PropType::Number => text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        PropType::Object => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(text.to_string()))
}

/// A one-character configuration property as a byte (ASCII only: the reader splits bytes).
fn one_byte(p: &Provisioner, keys: &[&str], default: u8) -> Result<u8, String> {
    let Some((key, value)) = keys.iter().find_map(|k| p.config_str(k).map(|v| (*k, v))) else {
        return Ok(default);
    };
    match value.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'\r' | b'\n') => Ok(*b),
        _ => Err(format!(
            "configurationProperties.{key}: {value:?} must be one ASCII character"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provisioner(config: Value) -> Provisioner {
        let file = json!({
            "name": "hr",
            "connectorRef": {"connectorName": "org.forgerock.openicf.csvfile.CSVFileConnector"},
            "configurationProperties": config,
            "objectTypes": {"account": {"nativeType": "__ACCOUNT__", "properties": {
                "userName": {"type": "string", "nativeName": "__NAME__"},
                "key": {"type": "string", "nativeName": "__UID__"},
                "mail": {"type": "string", "nativeName": "email"},
                "groups": {"type": "array", "items": {"type": "string"}, "nativeName": "groups"},
                "age": {"type": "integer"},
                "active": {"type": "boolean"},
                "password": {"type": "string", "nativeName": "__PASSWORD__",
                             "flags": ["NOT_READABLE", "NOT_RETURNED_BY_DEFAULT"]},
                "created": {"type": "string", "flags": ["NOT_UPDATEABLE"]},
                "description": {"type": "string", "nativeName": "__DESCRIPTION__"}
            }}}
        });
        Provisioner::parse(Path::new("/p/conf/provisioner.openicf-hr.json"), file, "hr")
            .expect("parses")
    }

    fn model(config: Value) -> (PathBuf, Dialect, CsvModel) {
        let p = provisioner(config);
        let ty = p.object_types["account"].clone();
        CsvModel::from_provisioner(&p, &ty).expect("valid")
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn configuration_defaults_and_options() {
        let (file, d, m) = model(json!({"csvFile": "data/hr.csv"}));
        assert_eq!(file, PathBuf::from("/p/data/hr.csv"));
        assert_eq!(d, Dialect::default());
        assert_eq!(m.uid_column(), "uid");
        assert_eq!(m.name_column, "uid", "no headerName: the name is the uid");
        let (_, d, m) = model(
            json!({"csvFile": "/x.csv", "headerUid": "id", "headerName": "login",
            "fieldDelimiter": ";", "quoteCharacter": "'", "newlineString": "\r\n",
            "multivaluedAttributeDelimiter": "|"}),
        );
        assert_eq!(
            d,
            Dialect {
                delimiter: b';',
                quote: b'\'',
                newline: Some(b"\r\n".to_vec())
            }
        );
        assert_eq!(
            (m.uid_column.as_str(), m.name_column.as_str()),
            ("id", "login")
        );
        assert_eq!(m.multi_delimiter, "|");
        let p = provisioner(json!({"csvFile": "/x.csv", "fieldDelimiter": ";;"}));
        let e = CsvModel::from_provisioner(&p, &p.object_types["account"]).expect_err("two chars");
        assert!(e.contains("fieldDelimiter"), "{e}");
        let p = provisioner(json!({}));
        let e = CsvModel::from_provisioner(&p, &p.object_types["account"]).expect_err("no file");
        assert!(e.contains("csvFile"), "{e}");
    }

    #[test]
    fn rows_become_typed_objects_of_declared_properties() {
        let (_, _, m) = model(json!({"csvFile": "/x.csv", "headerName": "login"}));
        let row = obj(
            json!({"_id": "7", "_rev": "r", "uid": "7", "login": "bjensen",
            "email": "b@x", "groups": "a;b;;c", "age": "42", "active": "TRUE",
            "password": "secret", "undeclared": "x", "description": "d"}),
        );
        assert_eq!(
            Value::Object(m.to_object(&row)),
            json!({"_id": "7", "_rev": "r", "key": "7", "userName": "bjensen", "mail": "b@x",
                   "groups": ["a", "b", "c"], "age": 42, "active": true, "description": "d"})
        );
        let odd = obj(json!({"_id": "8", "uid": "8", "age": "forty"}));
        assert_eq!(
            m.to_object(&odd)["age"],
            "forty",
            "unparsable text stays text"
        );
    }

    #[test]
    fn writes_fill_configured_columns_only() {
        let (_, _, m) = model(json!({"csvFile": "/x.csv", "headerName": "login"}));
        let row = m.create_row(&obj(
            json!({"_id": "9", "userName": "sc", "groups": ["x", "y"],
            "password": "pw", "notInModel": "z", "age": 3}),
        ));
        assert_eq!(
            Value::Object(row),
            json!({"_id": "9", "login": "sc", "groups": "x;y", "password": "pw", "age": 3})
        );
        let current = obj(json!({"_id": "9", "_rev": "r", "uid": "9", "login": "sc",
            "password": "pw", "extra": "kept", "created": "2020", "email": "old@x"}));
        let row = m.update_row(
            &current,
            &obj(json!({"userName": "sc2", "created": "2021"})),
        );
        assert_eq!(
            Value::Object(row),
            json!({"uid": "9", "login": "sc2", "password": "pw", "extra": "kept", "created": "2020"})
        );
    }

    #[test]
    fn a_replacement_uses_the_id_column_and_property_names() {
        let p = provisioner(json!({}));
        let m = CsvModel::for_replacement(&p.object_types["account"], "id");
        assert_eq!((m.uid_column(), m.name_column.as_str()), ("id", "userName"));
        let row = obj(json!({"_id": "1", "id": "1", "userName": "u", "email": "e"}));
        assert_eq!(
            Value::Object(m.to_object(&row)),
            json!({"_id": "1", "key": "1", "userName": "u", "mail": "e"})
        );
    }
}
