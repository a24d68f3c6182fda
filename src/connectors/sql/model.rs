//! Rows ↔ objects: which column each attribute lives in, and how values convert.
//!
//! Resolved once per set from the provisioner's object model and the table's real columns
//! (read from the catalog), so every name that reaches SQL text is a catalog name:
//!
//! * `_id` is the `keyColumn`, as text. A property whose `nativeName` is `__UID__` or
//!   `__NAME__` also reads and writes the key column, as in IDM's connector (where both are
//!   the key); writing a different `__NAME__` on an update renames the row.
//! * With declared properties, each maps to the column named by its `nativeName` (matched
//!   exactly, else ignoring case). Without, every column is an attribute under its own name.
//! * The `passwordColumn` (and any `__PASSWORD__` / GuardedString property) is write-only:
//!   never selected, never returned, never filtered on.
//! * NULL is an absent attribute; booleans stored as 0/1 (SQLite) become booleans when the
//!   column or the property says boolean; a number read for a `string` property becomes text.

use serde_json::{Map, Number, Value};

use super::config::DbConfig;
use super::db::{ColKind, Column, DbError, DbErrorKind, Param, Row, TableInfo};
use crate::idm::provisioner as idm;
use crate::idm::{ObjectType, PropType};

/// One readable or writable attribute.
#[derive(Debug, Clone)]
pub struct Attr {
    pub name: String,
    pub column: Column,
    /// The property's declared JSON type (None without declared properties).
    pub ty: Option<PropType>,
    pub readable: bool,
    pub creatable: bool,
    pub updateable: bool,
    /// Reads and writes the key column.
    pub is_key: bool,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub table: String,
    pub key: Column,
    pub attrs: Vec<Attr>,
    /// What [`Model::select_list`] selects: the key first, then each readable column once.
    pub selected: Vec<Column>,
    pub enable_empty_string: bool,
    /// The `changeLogColumn` (liveSync), when configured.
    pub change_log: Option<Column>,
}

fn find_column<'a>(info: &'a TableInfo, name: &str) -> Option<&'a Column> {
    info.columns.iter().find(|c| c.name == name).or_else(|| {
        info.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    })
}

impl Model {
    pub fn resolve(
        cfg: &DbConfig,
        object_type: Option<&ObjectType>,
        info: &TableInfo,
    ) -> Result<Model, DbError> {
        let schema_err = |m: String| DbError::new(DbErrorKind::Schema, m);
        let column = |what: &str, name: &str| -> Result<Column, DbError> {
            find_column(info, name).cloned().ok_or_else(|| {
                schema_err(format!(
                    "{what} \"{name}\" is not a column of the table {} (columns: {})",
                    info.sql_name,
                    info.columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        let key = column("keyColumn", &cfg.key_column)?;
        let password = match &cfg.password_column {
            Some(p) => Some(column("passwordColumn", p)?),
            None => None,
        };
        let change_log = match &cfg.change_log_column {
            Some(c) => Some(column("changeLogColumn", c)?),
            None => None,
        };
        let is_password_col = |c: &Column| password.as_ref().is_some_and(|p| p.name == c.name);
        let mut attrs = Vec::new();
        match object_type.filter(|t| !t.properties.is_empty()) {
            Some(ot) => {
                for p in &ot.properties {
                    let native = p.native_name.as_str();
                    let (col, is_key) = if native == idm::UID || native == idm::NAME {
                        (key.clone(), true)
                    } else if native == idm::PASSWORD {
                        let col = password.clone().ok_or_else(|| {
                            schema_err(format!(
                                "property \"{}\" is __PASSWORD__ but no passwordColumn is set",
                                p.name
                            ))
                        })?;
                        (col, false)
                    } else {
                        let col = column(&format!("property \"{}\": nativeName", p.name), native)?;
                        let is_key = col.name == key.name;
                        (col, is_key)
                    };
                    let secret = p.is_password() || is_password_col(&col);
                    attrs.push(Attr {
                        name: p.name.clone(),
                        ty: Some(p.ty),
                        readable: p.is_readable() && !secret,
                        creatable: p.is_creatable(),
                        updateable: p.is_updateable(),
                        is_key,
                        column: col,
                    });
                }
            }
            None => {
                for c in &info.columns {
                    attrs.push(Attr {
                        name: c.name.clone(),
                        ty: None,
                        readable: !is_password_col(c),
                        creatable: true,
                        updateable: true,
                        is_key: c.name == key.name,
                        column: c.clone(),
                    });
                }
            }
        }
        let mut selected = vec![key.clone()];
        for a in attrs.iter().filter(|a| a.readable) {
            if !selected.iter().any(|c| c.name == a.column.name) {
                selected.push(a.column.clone());
            }
        }
        Ok(Model {
            table: info.sql_name.clone(),
            key,
            attrs,
            selected,
            enable_empty_string: cfg.enable_empty_string,
            change_log,
        })
    }

    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The object for a row selected with [`Model::selected`]: `_id`, attributes and `_rev`.
    pub fn object(&self, row: Row) -> Result<Value, DbError> {
        let mut cells = row.into_iter();
        let key_cell = cells.next().flatten().ok_or_else(|| {
            DbError::new(
                DbErrorKind::Other,
                format!("a row of {} has a NULL key column", self.table),
            )
        })?;
        let mut by_column: Vec<(&str, Option<Value>)> =
            vec![(&self.key.name, Some(key_cell.clone()))];
        for (c, v) in self.selected.iter().skip(1).zip(cells) {
            by_column.push((&c.name, v));
        }
        let mut obj = Map::new();
        for a in self.attrs.iter().filter(|a| a.readable) {
            let cell = by_column
                .iter()
                .find(|(n, _)| *n == a.column.name)
                .and_then(|(_, v)| v.clone());
            if let Some(v) = cell {
                obj.insert(a.name.clone(), convert_read(v, a.column.kind, a.ty));
            }
        }
        obj.insert("_id".into(), Value::String(id_text(&key_cell)));
        let rev = rev_of(&obj);
        obj.insert("_rev".into(), Value::String(rev));
        Ok(Value::Object(obj))
    }

    /// The key parameter for an `_id` (text; an integer key column gets an integer). None
    /// when the id cannot be a value of the key column (so no row has it).
    pub fn key_param(&self, id: &str) -> Option<Param> {
        match self.key.kind {
            ColKind::Int => id.parse::<i64>().ok().map(Param::Int),
            ColKind::Uuid if !is_uuid(id) => None,
            _ => Some(Param::Text(id.to_string())),
        }
    }

    /// The columns and values to write for `body` (without `_id`/`_rev`). `current` is the
    /// stored object on updates: a NOT_UPDATEABLE attribute may be sent unchanged.
    pub fn write_values(
        &self,
        body: &Map<String, Value>,
        current: Option<&Map<String, Value>>,
    ) -> Result<Vec<(&Column, Param)>, String> {
        let mut out: Vec<(&Column, Param)> = Vec::with_capacity(body.len());
        for (k, v) in body {
            let a = self.attr(k).ok_or_else(|| {
                format!(
                    "\"{k}\" is not an attribute of {} (no column or property maps it)",
                    self.table
                )
            })?;
            match current {
                None if !a.creatable => {
                    return Err(format!("\"{k}\" is not creatable (NOT_CREATABLE)"))
                }
                Some(cur) if !a.updateable => {
                    if cur.get(k) == Some(v) || (v.is_null() && !cur.contains_key(k)) {
                        continue;
                    }
                    return Err(format!("\"{k}\" is not updateable (NOT_UPDATEABLE)"));
                }
                _ => {}
            }
            if a.is_key && current.is_some() && v.is_null() {
                return Err(format!("\"{k}\" is the key column and cannot be null"));
            }
            let p = self.param(v);
            if let Some(slot) = out.iter_mut().find(|(c, _)| c.name == a.column.name) {
                if slot.1 != p {
                    return Err(format!(
                        "two attributes write different values to the column {}",
                        a.column.name
                    ));
                }
            } else {
                out.push((&a.column, p));
            }
        }
        Ok(out)
    }

    fn param(&self, v: &Value) -> Param {
        match v {
            Value::Null => Param::Null,
            Value::String(s) if s.is_empty() && !self.enable_empty_string => Param::Null,
            Value::String(s) => Param::Text(s.clone()),
            Value::Bool(b) => Param::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Param::Int(i),
                (None, Some(f)) if n.is_f64() => Param::Float(f),
                _ => Param::Text(n.to_string()),
            },
            other => Param::Text(other.to_string()),
        }
    }
}

/// The `_id` text of a key value.
pub fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn convert_read(v: Value, kind: ColKind, ty: Option<PropType>) -> Value {
    let as_bool = |n: &Number| n.as_i64().map(|i| Value::Bool(i != 0));
    match (v, ty) {
        (Value::Number(n), Some(PropType::Boolean)) => as_bool(&n).unwrap_or(Value::Number(n)),
        (Value::Number(n), None | Some(PropType::Any)) if kind == ColKind::Bool => {
            as_bool(&n).unwrap_or(Value::Number(n))
        }
        (Value::Number(n), Some(PropType::String)) => Value::String(n.to_string()),
        (Value::Bool(b), Some(PropType::String)) => Value::String(b.to_string()),
        (Value::String(s), Some(PropType::Integer)) => match s.trim().parse::<i64>() {
            Ok(i) => Value::Number(i.into()),
            Err(_) => Value::String(s),
        },
        (v, _) => v,
    }
}

pub fn is_uuid(s: &str) -> bool {
    let hex: Vec<char> = s.chars().filter(|c| *c != '-').collect();
    s.len() <= 36 && hex.len() == 32 && hex.iter().all(char::is_ascii_hexdigit)
}

/// FNV-1a over the object's JSON (keys sorted by serde_json's map), as hex.
fn rev_of(obj: &Map<String, Value>) -> String {
    let text = Value::Object(obj.clone()).to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sql::config::Backend;
    use serde_json::json;

    fn info() -> TableInfo {
        let col = |n: &str, k: ColKind| Column {
            name: n.into(),
            sql_type: "t".into(),
            kind: k,
        };
        TableInfo {
            sql_name: "\"users\"".into(),
            columns: vec![
                col("uid", ColKind::Text),
                col("Email", ColKind::Text),
                col("active", ColKind::Bool),
                col("age", ColKind::Int),
                col("pw", ColKind::Text),
            ],
        }
    }

    fn cfg() -> DbConfig {
        DbConfig {
            backend: Backend::Sqlite("x".into()),
            table: "users".into(),
            key_column: "uid".into(),
            password_column: Some("pw".into()),
            change_log_column: None,
            enable_empty_string: false,
        }
    }

    #[test]
    fn without_properties_columns_are_attributes_and_the_password_is_write_only() {
        let m = Model::resolve(&cfg(), None, &info()).expect("resolves");
        let names: Vec<_> = m.selected.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["uid", "Email", "active", "age"]);
        let o = m
            .object(vec![
                Some(json!("u1")),
                Some(json!("a@x")),
                Some(json!(1)),
                None,
            ])
            .expect("object");
        assert_eq!(o["_id"], "u1");
        assert_eq!(o["uid"], "u1");
        assert_eq!(o["active"], true);
        assert!(o.get("age").is_none() && o.get("pw").is_none());
        assert_eq!(o["_rev"].as_str().map(str::len), Some(16));
        let w = m
            .write_values(
                json!({"pw": "s", "Email": "", "age": 3})
                    .as_object()
                    .expect("obj"),
                None,
            )
            .expect("writes");
        let cols = info().columns;
        assert!(w.contains(&(&cols[4], Param::Text("s".into()))));
        assert!(w.contains(&(&cols[1], Param::Null)));
        let e = m
            .write_values(json!({"nope": 1}).as_object().expect("obj"), None)
            .expect_err("unknown");
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn declared_properties_use_native_names() {
        let p = crate::idm::Provisioner::parse(
            std::path::Path::new("p.json"),
            json!({"connectorRef": {"connectorName": "x"}, "objectTypes": {"account": {
            "properties": {
                "__NAME__": {"type": "string", "nativeName": "__NAME__"},
                "mail": {"type": "string", "nativeName": "email"},
                "age": {"type": "string", "nativeName": "age"},
                "password": {"type": "string", "nativeName": "__PASSWORD__",
                             "nativeType": "JAVA_TYPE_GUARDEDSTRING"}
            }}}}),
            "x",
        )
        .expect("parses");
        let ot = &p.object_types["account"];
        let m = Model::resolve(&cfg(), Some(ot), &info()).expect("resolves");
        assert_eq!(
            m.attr("mail").map(|a| a.column.name.as_str()),
            Some("Email")
        );
        assert!(m.attr("__NAME__").is_some_and(|a| a.is_key));
        assert!(m.attr("password").is_some_and(|a| !a.readable));
        let names: Vec<_> = m.selected.iter().map(|c| c.name.as_str()).collect();
        // The declared properties' order (serde_json keeps the file's key order).
        assert_eq!(names, ["uid", "Email", "age"]);
        let o = m
            .object(vec![Some(json!("u1")), None, Some(json!(42))])
            .expect("object");
        assert_eq!(o["age"], "42");
        assert_eq!(o["__NAME__"], "u1");
        let mut bad = cfg();
        bad.key_column = "missing".into();
        let e = Model::resolve(&bad, Some(ot), &info()).expect_err("no column");
        assert!(
            e.message.contains("missing") && e.message.contains("Email"),
            "{e}"
        );
    }

    #[test]
    fn key_params_follow_the_key_type() {
        let mut m = Model::resolve(&cfg(), None, &info()).expect("resolves");
        assert_eq!(m.key_param("x"), Some(Param::Text("x".into())));
        m.key.kind = ColKind::Int;
        assert_eq!(m.key_param("12"), Some(Param::Int(12)));
        assert_eq!(m.key_param("x' OR 1=1"), None);
        m.key.kind = ColKind::Uuid;
        assert_eq!(m.key_param("nope"), None);
        assert!(m
            .key_param("6f1c1d2e-0000-4000-8000-000000000001")
            .is_some());
    }
}
