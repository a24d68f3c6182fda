//! An object set served by a CSV file (`connector = "csv"`), through `connectors::csv`.
//!
//! Every read goes to the file, so edits made by other programs are seen by the next read.
//! Queries scan the file in row order; a paging cookie is the position after the last row
//! returned. Revisions are content hashes computed by the connector.

use std::ops::ControlFlow;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::paging::{self, QueryRequest, QueryResult};
use super::{body_object, check_id, ObjectError, ObjectErrorKind, ObjectSet};
use crate::connectors::csv::{CsvError, CsvErrorKind, CsvTable};
use crate::query::Filter;

pub struct CsvSet {
    name: String,
    table: CsvTable,
}

impl CsvSet {
    pub fn new(name: &str, file: PathBuf, id_column: String) -> CsvSet {
        CsvSet {
            name: name.to_string(),
            table: CsvTable::new(file, id_column),
        }
    }

    pub fn table(&self) -> &CsvTable {
        &self.table
    }

    fn err(&self, e: CsvError) -> ObjectError {
        let kind = match e.kind() {
            CsvErrorKind::NotFound => ObjectErrorKind::NotFound,
            CsvErrorKind::AlreadyExists => ObjectErrorKind::AlreadyExists,
            CsvErrorKind::BadValue => ObjectErrorKind::BadRequest,
            CsvErrorKind::Io | CsvErrorKind::Parse => ObjectErrorKind::Internal,
        };
        ObjectError::new(kind, format!("{}: {e}", self.name))
    }

    fn check_rev(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<Map<String, Value>, ObjectError> {
        let current = self
            .table
            .read(id)
            .map_err(|e| self.err(e))?
            .ok_or_else(|| ObjectError::not_found(&self.name, id))?;
        if let Some(r) = if_match {
            if current.get("_rev").and_then(Value::as_str) != Some(r) {
                return Err(ObjectError::new(
                    ObjectErrorKind::RevisionMismatch,
                    format!(
                        "Revision {r} does not match the current revision of {}/{id}",
                        self.name
                    ),
                ));
            }
        }
        Ok(current)
    }
}

impl ObjectSet for CsvSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        Ok(self
            .table
            .read(id)
            .map_err(|e| self.err(e))?
            .map(Value::Object))
    }

    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        let scan = |after: Option<&str>,
                    f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
         -> Result<(), ObjectError> {
            // Keys are zero-padded row numbers, so they order like the rows.
            let start: u64 = after
                .and_then(|a| a.parse().ok())
                .map(|n: u64| n + 1)
                .unwrap_or(0);
            let mut row: u64 = 0;
            self.table
                .scan(&mut |obj| {
                    let n = row;
                    row += 1;
                    if n < start {
                        return ControlFlow::Continue(());
                    }
                    f(&format!("{n:020}"), Value::Object(obj))
                })
                .map_err(|e| self.err(e))?;
            Ok(())
        };
        paging::run(q, &scan)
    }

    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> {
        self.table
            .scan(&mut |obj| f(Value::Object(obj)))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        let mut out = Vec::new();
        self.scan(&mut |v| {
            if filter.matches(&v) {
                out.push(v);
            }
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        let mut body = body_object(body)?;
        if let Some(id) = id {
            check_id(id)?;
            body.insert("_id".into(), Value::String(id.to_string()));
        } else if !body.contains_key(self.table_id_column()) {
            body.insert("_id".into(), Value::String(crate::ids::new_uuid()));
        }
        self.table
            .create(body)
            .map(Value::Object)
            .map_err(|e| self.err(e))
    }

    fn put(
        &self,
        id: &str,
        body: Value,
        if_match: Option<&str>,
        create_only: bool,
    ) -> Result<(Value, bool), ObjectError> {
        check_id(id)?;
        let exists = self.table.read(id).map_err(|e| self.err(e))?.is_some();
        if exists {
            if create_only {
                return Err(ObjectError::new(
                    ObjectErrorKind::AlreadyExists,
                    format!("Object {}/{id} already exists", self.name),
                ));
            }
            self.check_rev(id, if_match)?;
            let body = body_object(body)?;
            Ok((
                Value::Object(self.table.update(id, body).map_err(|e| self.err(e))?),
                false,
            ))
        } else {
            if if_match.is_some() {
                return Err(ObjectError::not_found(&self.name, id));
            }
            Ok((self.create(Some(id), body)?, true))
        }
    }

    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError> {
        let mut current = self.check_rev(id, if_match)?;
        current.shift_remove("_id");
        current.shift_remove("_rev");
        let body = super::patch::apply(&current, ops)?;
        self.table
            .update(id, body)
            .map(Value::Object)
            .map_err(|e| self.err(e))
    }

    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        self.check_rev(id, if_match)?;
        self.table
            .delete(id)
            .map(Value::Object)
            .map_err(|e| self.err(e))
    }
}

impl CsvSet {
    fn table_id_column(&self) -> &str {
        self.table.id_column()
    }
}
