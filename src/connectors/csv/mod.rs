//! CSV connector: an object set backed by one CSV file, in the manner of IDM's CSV connector.
//!
//! Invariants and contract:
//! * The first non-blank line is the header (column names); a UTF-8 BOM is stripped; LF and
//!   CRLF line ends are accepted; blank lines are ignored. Fields follow RFC 4180 quoting, plus
//!   IDM's sample style `"a", "b"`: whitespace before an opening quote and after a closing quote
//!   is ignored. Unquoted fields are kept byte-for-byte.
//! * Objects are `Map<String, Value>` whose values are strings; an empty cell is an absent
//!   attribute. Every object carries `_id`, the value of the id column (which stays an attribute).
//!   Rows without an id are skipped (and counted); rows with more cells than the header are errors.
//! * Reading streams the file record by record with reused buffers: memory is bounded by the
//!   longest record (capped at [`MAX_RECORD_BYTES`]), never by the file. Nothing is cached, so
//!   edits by other programs are seen by the next read.
//! * Writes rewrite the whole file into a temporary file in the same folder, fsync it and rename
//!   it over the original, so a crash leaves either the old or the new file, never a torn one.
//!   Untouched rows are copied byte-for-byte (keeping their quoting style). Writers are
//!   serialised by a mutex; readers take no lock (a rename never disturbs an open reader).
//! * liveSync change detection diffs snapshots kept in `<file>.sync/` (see `sync`).
//! * `_rev` is derived from the row's content (FNV-1a over the cells in header order, trailing
//!   empty cells ignored), so it only changes when the row's data changes.

mod model;
mod reader;
mod sync;
#[cfg(test)]
mod tests;
mod writer;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

pub use model::CsvModel;
pub use sync::RowChange;
pub use writer::write_csv;

use reader::{rev_of, Header, RecordReader};
use writer::{atomic_write, copy_record, write_cells, write_header};

/// Longest accepted record (all its physical lines). Bounds memory when a file is corrupt
/// (e.g. an unterminated quote would otherwise swallow the rest of the file).
pub const MAX_RECORD_BYTES: usize = 64 << 20;
const READ_BUF_BYTES: usize = 256 << 10;
const WRITE_BUF_BYTES: usize = 1 << 20;
/// Rows without an id are each reported up to this many times per scan, then summarised,
/// so a file full of such rows does not flood the log.
const MAX_SKIP_WARNINGS: u64 = 10;
const BOM: &[u8] = b"\xEF\xBB\xBF";
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// What went wrong, for callers that map errors to status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvErrorKind {
    /// The file could not be opened, read, written or renamed.
    Io,
    /// The file's content is not valid CSV for this table.
    Parse,
    /// Update or delete of an id that is not in the file.
    NotFound,
    /// Create of an id that is already in the file.
    AlreadyExists,
    /// The object to write cannot be stored as a CSV row.
    BadValue,
}

/// Error of the CSV connector, naming the file and (when known) the line of the record.
#[derive(Debug)]
pub struct CsvError {
    pub kind: CsvErrorKind,
    pub path: PathBuf,
    pub line: Option<u64>,
    pub message: String,
}

impl CsvError {
    fn new(kind: CsvErrorKind, path: &Path, line: Option<u64>, message: impl Into<String>) -> Self {
        CsvError {
            kind,
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn io(path: &Path, line: Option<u64>, what: &str, e: io::Error) -> Self {
        CsvError::new(CsvErrorKind::Io, path, line, format!("{what}: {e}"))
    }

    pub fn kind(&self) -> &CsvErrorKind {
        &self.kind
    }
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for CsvError {}

/// Counts of one scan: `rows` objects delivered, `skipped` rows without an id value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub rows: u64,
    pub skipped: u64,
}

/// How a file is written: IDM's `fieldDelimiter`, `quoteCharacter` and `newlineString`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: u8,
    /// Line end of written rows; `None` keeps the one the header line uses.
    pub newline: Option<Vec<u8>>,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            delimiter: b',',
            quote: b'"',
            newline: None,
        }
    }
}

/// One CSV file seen as an object set keyed by `id_column`.
#[derive(Debug)]
pub struct CsvTable {
    path: PathBuf,
    id_column: String,
    dialect: Dialect,
    write_lock: Mutex<()>,
}

impl CsvTable {
    pub fn new(path: PathBuf, id_column: String) -> CsvTable {
        CsvTable::with_dialect(path, id_column, Dialect::default())
    }

    pub fn with_dialect(path: PathBuf, id_column: String, dialect: Dialect) -> CsvTable {
        CsvTable {
            path,
            id_column,
            dialect,
            write_lock: Mutex::new(()),
        }
    }

    /// Line end of written rows: `newlineString` when configured, else the header's.
    fn eol<'a>(&'a self, header: &Header) -> &'a [u8] {
        match &self.dialect.newline {
            Some(nl) => nl,
            None => header.eol(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn id_column(&self) -> &str {
        &self.id_column
    }

    /// Checks that the file exists, its header is readable and contains the id column.
    pub fn check(&self) -> Result<(), CsvError> {
        let mut rr = self.open()?;
        rr.read_header(&self.id_column).map(|_| ())
    }

    /// Streams every row as an object (with `_id`, without `_rev`) to `f`; stops early when
    /// `f` returns `ControlFlow::Break(())`.
    pub fn scan(
        &self,
        f: &mut dyn FnMut(Map<String, Value>) -> ControlFlow<()>,
    ) -> Result<ScanStats, CsvError> {
        let mut rr = self.open()?;
        let header = rr.read_header(&self.id_column)?;
        let mut stats = ScanStats::default();
        while rr.next_record()? {
            rr.check_width(&header)?;
            if rr.field(header.id_idx).is_empty() {
                stats.skipped += 1;
                if stats.skipped <= MAX_SKIP_WARNINGS {
                    tracing::warn!(
                        file = %self.path.display(),
                        line = rr.record_line,
                        "CSV row has no value in id column {:?}; skipped",
                        self.id_column
                    );
                }
                continue;
            }
            let obj = rr.to_object(&header)?;
            stats.rows += 1;
            if f(obj).is_break() {
                break;
            }
        }
        if stats.skipped > MAX_SKIP_WARNINGS {
            tracing::warn!(
                file = %self.path.display(),
                skipped = stats.skipped,
                "CSV rows without a value in id column {:?} were skipped",
                self.id_column
            );
        }
        Ok(stats)
    }

    /// The object whose id is `id` (first such row), with `_id` and `_rev`.
    pub fn read(&self, id: &str) -> Result<Option<Map<String, Value>>, CsvError> {
        let mut rr = self.open()?;
        let header = rr.read_header(&self.id_column)?;
        while rr.next_record()? {
            rr.check_width(&header)?;
            if rr.field(header.id_idx) == id.as_bytes() {
                let mut obj = rr.to_object(&header)?;
                obj.insert("_rev".into(), Value::String(rr.rev(&header)));
                return Ok(Some(obj));
            }
        }
        Ok(None)
    }

    /// Appends a row for `obj`. Its id is the id column's value, else `_id` (then written into
    /// the id column). Returns the stored object with `_id` and `_rev`.
    pub fn create(&self, obj: Map<String, Value>) -> Result<Map<String, Value>, CsvError> {
        self.rewrite(Change::Create(&obj))
    }

    /// Replaces the row of `id` with `obj` (attributes missing from `obj` become empty); the id
    /// column keeps `id`. Returns the stored object with `_id` and `_rev`.
    pub fn update(
        &self,
        id: &str,
        obj: Map<String, Value>,
    ) -> Result<Map<String, Value>, CsvError> {
        self.rewrite(Change::Update(id, &obj))
    }

    /// Removes the row of `id`; returns the deleted object with `_id` and `_rev`.
    pub fn delete(&self, id: &str) -> Result<Map<String, Value>, CsvError> {
        self.rewrite(Change::Delete(id))
    }

    /// The one write path (see the module doc): under the write lock, the file is rewritten
    /// with the header (widened by the new row's new columns) and every record copied, but for
    /// the first record with the change's id, which a create refuses, an update replaces and a
    /// delete drops; a create's row goes last. Returns the object written, or the one deleted.
    fn rewrite(&self, change: Change<'_>) -> Result<Map<String, Value>, CsvError> {
        let _guard = self.write_lock.lock();
        let mut rr = self.open()?;
        let header = rr.read_header(&self.id_column)?;
        let (id, row) = match change {
            Change::Create(obj) => {
                let id = self.created_id(obj)?;
                let row = self.plan_row(&header, obj, &id)?;
                (id, Some(row))
            }
            Change::Update(id, obj) => (id.to_string(), Some(self.plan_row(&header, obj, id)?)),
            Change::Delete(id) => (id.to_string(), None),
        };
        let creating = matches!(change, Change::Create(_));
        let (names, cells) = row.unzip();
        let added = names
            .as_deref()
            .map_or(&[][..], |names| &names[header.names.len()..]);
        let eol = self.eol(&header);
        let d = &self.dialect;
        let path = &self.path;
        let removed = atomic_write(path, |w| {
            write_header(w, &header, added, eol, d).map_err(|e| write_err(path, e))?;
            let mut found = false;
            let mut removed = None;
            while rr.next_record()? {
                rr.check_width(&header)?;
                if found || rr.field(header.id_idx) != id.as_bytes() {
                    copy_record(w, &rr.raw, added.len(), eol, d).map_err(|e| write_err(path, e))?;
                    continue;
                }
                found = true;
                match &cells {
                    _ if creating => {
                        return Err(CsvError::new(
                            CsvErrorKind::AlreadyExists,
                            path,
                            Some(rr.record_line),
                            format!("an object with id {id:?} already exists"),
                        ))
                    }
                    Some(cells) => write_cells(w, cells, eol, d).map_err(|e| write_err(path, e))?,
                    None => {
                        let mut obj = rr.to_object(&header)?;
                        obj.insert("_rev".into(), Value::String(rr.rev(&header)));
                        removed = Some(obj);
                    }
                }
            }
            match &cells {
                Some(cells) if creating => {
                    write_cells(w, cells, eol, d).map_err(|e| write_err(path, e))?
                }
                _ if !found => return Err(not_found(path, &id)),
                _ => {}
            }
            Ok(removed)
        })?;
        match (names, cells, removed) {
            (Some(names), Some(cells), _) => Ok(object_from_cells(&names, &cells, &id)),
            (_, _, Some(removed)) => Ok(removed),
            _ => Err(not_found(path, &id)),
        }
    }

    fn open(&self) -> Result<RecordReader<'_, BufReader<File>>, CsvError> {
        let file =
            File::open(&self.path).map_err(|e| CsvError::io(&self.path, None, "cannot open", e))?;
        Ok(RecordReader::new(
            BufReader::with_capacity(READ_BUF_BYTES, file),
            &self.path,
            &self.dialect,
        ))
    }

    fn created_id(&self, obj: &Map<String, Value>) -> Result<String, CsvError> {
        for key in [self.id_column.as_str(), "_id"] {
            if let Some(v) = obj.get(key) {
                if let Some(text) = cell_text(&self.path, key, v)? {
                    return Ok(text);
                }
            }
        }
        Err(CsvError::new(
            CsvErrorKind::BadValue,
            &self.path,
            None,
            format!(
                "the object has no id: neither column {:?} nor _id is set",
                self.id_column
            ),
        ))
    }

    /// The header after writing `obj` (existing columns, then new ones) and the row's cells in
    /// that order, with the id column set to `id`. Validates every value before any I/O.
    fn plan_row(
        &self,
        header: &Header,
        obj: &Map<String, Value>,
        id: &str,
    ) -> Result<(Vec<String>, Vec<Option<String>>), CsvError> {
        let mut names = header.names.clone();
        let mut cells: Vec<Option<String>> = vec![None; names.len()];
        for (key, value) in obj {
            if key.starts_with('_') {
                continue;
            }
            let text = cell_text(&self.path, key, value)?;
            if *key == self.id_column {
                continue;
            }
            match names.iter().position(|n| n == key) {
                Some(i) => cells[i] = text,
                None => {
                    // An absent value needs no column; only real data widens the file.
                    if let Some(text) = text {
                        if key.is_empty() {
                            return Err(CsvError::new(
                                CsvErrorKind::BadValue,
                                &self.path,
                                None,
                                "an attribute with an empty name cannot become a column",
                            ));
                        }
                        names.push(key.clone());
                        cells.push(Some(text));
                    }
                }
            }
        }
        cells[header.id_idx] = Some(id.to_string());
        Ok((names, cells))
    }
}

/// A write [`CsvTable::rewrite`] makes.
enum Change<'a> {
    /// Append a row for the object; its id must be new.
    Create(&'a Map<String, Value>),
    /// Replace the row of the id by the object.
    Update(&'a str, &'a Map<String, Value>),
    /// Remove the row of the id.
    Delete(&'a str),
}

fn not_found(path: &Path, id: &str) -> CsvError {
    CsvError::new(
        CsvErrorKind::NotFound,
        path,
        None,
        format!("no object with id {id:?}"),
    )
}

pub(super) fn write_err(path: &Path, e: io::Error) -> CsvError {
    CsvError::io(path, None, "cannot write the temporary file", e)
}

/// The cell text of an attribute value: strings as they are, numbers and booleans as JSON
/// text, null and "" as an empty (absent) cell. Arrays and objects have no CSV form.
fn cell_text(path: &Path, name: &str, value: &Value) -> Result<Option<String>, CsvError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(_) | Value::Number(_) => Ok(Some(value.to_string())),
        Value::Array(_) | Value::Object(_) => Err(CsvError::new(
            CsvErrorKind::BadValue,
            path,
            None,
            format!("attribute {name:?} is an array or object; a CSV cell holds only text"),
        )),
    }
}

fn object_from_cells(names: &[String], cells: &[Option<String>], id: &str) -> Map<String, Value> {
    // `_id` and `_rev` first, then the columns in header order: IDM's key order.
    let mut obj = Map::new();
    obj.insert("_id".into(), Value::String(id.to_string()));
    let rev = rev_of(cells.iter().map(|c| c.as_deref().unwrap_or("").as_bytes()));
    obj.insert("_rev".into(), Value::String(rev));
    for (name, cell) in names.iter().zip(cells) {
        if let Some(text) = cell {
            obj.insert(name.clone(), Value::String(text.clone()));
        }
    }
    obj
}
