//! An object set served by a CSV file (`connector = "csv"`), through `connectors::csv`.
//!
//! Every read goes to the file, so edits made by other programs are seen by the next read.
//! Queries scan the file in row order; a paging cookie is the position after the last row
//! returned. Revisions are content hashes computed by the connector.
//!
//! Writes (REST and runs alike) hold the set's write lock across their check (existence,
//! If-Match revision) and the file write, so two writers of this process can never both
//! pass a check and then overwrite each other.
//!
//! liveSync (`changes_since`): the token is a number, the name of a snapshot of the file kept
//! in `<file>.sync/<token>.csv` (see `connectors::csv::sync`); the changes since a token are
//! that snapshot's diff against a new one, and `token_committed` removes older snapshots.
//!
//! With an object model (a provisioner file's object type, also kept by a recon.toml set that
//! replaces the provisioner) every row read goes through [`CsvModel::to_object`] and every
//! write through [`CsvModel::create_row`] / [`CsvModel::update_row`], so filters, queries and
//! scripts only ever see the model's properties.

use std::ops::ControlFlow;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::paging::{self, QueryRequest, QueryResult};
use super::{
    body_object, check_id, put_kind, Change, ChangeBatch, ObjectError, ObjectErrorKind, ObjectSet,
    PutKind, PutResult,
};
use crate::connectors::csv::{CsvError, CsvErrorKind, CsvModel, CsvTable};

pub struct CsvSet {
    name: String,
    table: CsvTable,
    /// Held across check + write (the file is rewritten whole, so one lock per set).
    writes: parking_lot::Mutex<()>,
    model: Option<CsvModel>,
}

impl CsvSet {
    pub fn new(name: &str, file: PathBuf, id_column: String) -> CsvSet {
        CsvSet::with_model(name, CsvTable::new(file, id_column), None)
    }

    /// A set whose rows are seen through an object model.
    pub fn with_model(name: &str, table: CsvTable, model: Option<CsvModel>) -> CsvSet {
        CsvSet {
            name: name.to_string(),
            table,
            model,
            writes: parking_lot::Mutex::new(()),
        }
    }

    /// A table row as the set's object.
    fn view(&self, row: Map<String, Value>) -> Map<String, Value> {
        match &self.model {
            Some(m) => m.to_object(&row),
            None => row,
        }
    }

    /// The row written for a new object.
    fn create_row(&self, body: Map<String, Value>) -> Map<String, Value> {
        match &self.model {
            Some(m) => m.create_row(&body),
            None => body,
        }
    }

    /// The row that replaces `current` (the table's row) when the object becomes `body`.
    fn update_row(
        &self,
        current: &Map<String, Value>,
        body: Map<String, Value>,
    ) -> Map<String, Value> {
        match &self.model {
            Some(m) => m.update_row(current, &body),
            None => body,
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
        super::check_if_match(&self.name, id, &current, if_match)?;
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
            .map(|row| Value::Object(self.view(row))))
    }

    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        // Cookies are row positions in the file.
        paging::run_positional(q, &|f| {
            self.table
                .scan(&mut |obj| f(Value::Object(self.view(obj))))
                .map(|_| ())
                .map_err(|e| self.err(e))
        })
    }

    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> {
        self.table
            .scan(&mut |obj| f(Value::Object(self.view(obj))))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The file's records counted without parsing them (rows without an id included; the
    /// real read skips those, so the count can run a little high).
    fn quick_count(&self) -> Option<Result<u64, ObjectError>> {
        Some(self.table.count_rows().map_err(|e| self.err(e)))
    }

    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        let _write = self.writes.lock();
        self.create_unlocked(id, body)
    }

    fn put(&self, id: &str, body: Value, if_match: Option<&str>, create_only: bool) -> PutResult {
        check_id(id)?;
        let _write = self.writes.lock();
        let exists = self.table.read(id).map_err(|e| self.err(e))?.is_some();
        if put_kind(&self.name, id, exists, if_match, create_only)? == PutKind::Replace {
            let current = self.check_rev(id, if_match)?;
            let row = self.update_row(&current, body_object(body)?);
            let stored = self.table.update(id, row).map_err(|e| self.err(e))?;
            Ok((Value::Object(self.view(stored)), false))
        } else {
            Ok((self.create_unlocked(Some(id), body)?, true))
        }
    }

    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError> {
        let _write = self.writes.lock();
        let row = self.check_rev(id, if_match)?;
        let mut current = self.view(row.clone());
        current.shift_remove("_id");
        current.shift_remove("_rev");
        let body = super::patch::apply(&current, ops)?;
        let body = self.update_row(&row, body);
        self.table
            .update(id, body)
            .map(|stored| Value::Object(self.view(stored)))
            .map_err(|e| self.err(e))
    }

    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let _write = self.writes.lock();
        self.check_rev(id, if_match)?;
        self.table
            .delete(id)
            .map(|row| Value::Object(self.view(row)))
            .map_err(|e| self.err(e))
    }

    fn changes_since(&self, token: Option<&Value>) -> Result<ChangeBatch, ObjectError> {
        let old = token.map(|t| self.parse_token(t)).transpose()?;
        if let Some(old) = old {
            // Checked before a new snapshot is taken, so a failing call leaves nothing behind.
            self.table
                .check_snapshot(old)
                .map_err(|e| self.sync_err(e))?;
        }
        let now = u64::try_from(crate::ids::now_millis()).unwrap_or(0);
        let new = self
            .table
            .take_snapshot(old, now)
            .map_err(|e| self.sync_err(e))?;
        let changes = match old {
            None => Vec::new(),
            Some(old) => self
                .table
                .diff_snapshots(old, new)
                .map_err(|e| self.sync_err(e))?
                .into_iter()
                .map(|c| Change {
                    object: c.row.map(|r| Value::Object(self.view(r))),
                    id: c.id,
                })
                .collect(),
        };
        Ok(ChangeBatch {
            changes,
            token: Value::from(new),
        })
    }

    fn token_committed(&self, token: &Value) -> Result<(), ObjectError> {
        let t = self.parse_token(token)?;
        self.table
            .drop_snapshots_before(t)
            .map_err(|e| self.sync_err(e))
    }
}

impl CsvSet {
    /// A token this set issued: a number (also accepted as a string of digits).
    fn parse_token(&self, token: &Value) -> Result<u64, ObjectError> {
        token
            .as_u64()
            .or_else(|| token.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                ObjectError::bad_request(format!(
                    "{}: the liveSync token {token} is not a token of a CSV file (a number)",
                    self.name
                ))
            })
    }

    /// A liveSync failure of the file or its snapshots: the system cannot answer (503).
    fn sync_err(&self, e: CsvError) -> ObjectError {
        ObjectError::new(ObjectErrorKind::Unavailable, format!("{}: {e}", self.name))
    }
}

impl CsvSet {
    /// Creates a row; the caller holds the write lock.
    fn create_unlocked(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        let mut body = self.create_row(body_object(body)?);
        if let Some(id) = id {
            check_id(id)?;
            body.insert("_id".into(), Value::String(id.to_string()));
        } else if !body.contains_key(self.table_id_column()) {
            body.insert("_id".into(), Value::String(crate::ids::new_uuid()));
        }
        self.table
            .create(body)
            .map(|row| Value::Object(self.view(row)))
            .map_err(|e| self.err(e))
    }
}

impl CsvSet {
    fn table_id_column(&self) -> &str {
        self.table.id_column()
    }
}
