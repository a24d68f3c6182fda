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
//! * `_rev` is derived from the row's content (FNV-1a over the cells in header order, trailing
//!   empty cells ignored), so it only changes when the row's data changes.

use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// One CSV file seen as an object set keyed by `id_column`.
#[derive(Debug)]
pub struct CsvTable {
    path: PathBuf,
    id_column: String,
    write_lock: Mutex<()>,
}

impl CsvTable {
    pub fn new(path: PathBuf, id_column: String) -> CsvTable {
        CsvTable {
            path,
            id_column,
            write_lock: Mutex::new(()),
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
        let _guard = self.write_lock.lock();
        let mut rr = self.open()?;
        let header = rr.read_header(&self.id_column)?;
        let id = self.created_id(&obj)?;
        let (names, cells) = self.plan_row(&header, &obj, &id)?;
        let added = &names[header.names.len()..];
        let eol = header.eol();
        let path = &self.path;
        atomic_write(path, |w| {
            write_header(w, &header, added, eol).map_err(|e| write_err(path, e))?;
            while rr.next_record()? {
                rr.check_width(&header)?;
                if rr.field(header.id_idx) == id.as_bytes() {
                    return Err(CsvError::new(
                        CsvErrorKind::AlreadyExists,
                        path,
                        Some(rr.record_line),
                        format!("an object with id {id:?} already exists"),
                    ));
                }
                copy_record(w, &rr.raw, added.len(), eol).map_err(|e| write_err(path, e))?;
            }
            write_cells(w, &cells, eol).map_err(|e| write_err(path, e))
        })?;
        Ok(object_from_cells(&names, &cells, &id))
    }

    /// Replaces the row of `id` with `obj` (attributes missing from `obj` become empty); the id
    /// column keeps `id`. Returns the stored object with `_id` and `_rev`.
    pub fn update(
        &self,
        id: &str,
        obj: Map<String, Value>,
    ) -> Result<Map<String, Value>, CsvError> {
        let _guard = self.write_lock.lock();
        let mut rr = self.open()?;
        let header = rr.read_header(&self.id_column)?;
        let (names, cells) = self.plan_row(&header, &obj, id)?;
        let added = &names[header.names.len()..];
        let eol = header.eol();
        let path = &self.path;
        atomic_write(path, |w| {
            write_header(w, &header, added, eol).map_err(|e| write_err(path, e))?;
            let mut found = false;
            while rr.next_record()? {
                rr.check_width(&header)?;
                if !found && rr.field(header.id_idx) == id.as_bytes() {
                    found = true;
                    write_cells(w, &cells, eol).map_err(|e| write_err(path, e))?;
                } else {
                    copy_record(w, &rr.raw, added.len(), eol).map_err(|e| write_err(path, e))?;
                }
            }
            if found {
                Ok(())
            } else {
                Err(not_found(path, id))
            }
        })?;
        Ok(object_from_cells(&names, &cells, id))
    }

    /// Removes the row of `id`; returns the deleted object with `_id` and `_rev`.
    pub fn delete(&self, id: &str) -> Result<Map<String, Value>, CsvError> {
        let _guard = self.write_lock.lock();
        let mut rr = self.open()?;
        let header = rr.read_header(&self.id_column)?;
        let eol = header.eol();
        let path = &self.path;
        atomic_write(path, |w| {
            write_header(w, &header, &[], eol).map_err(|e| write_err(path, e))?;
            let mut deleted = None;
            while rr.next_record()? {
                rr.check_width(&header)?;
                if deleted.is_none() && rr.field(header.id_idx) == id.as_bytes() {
                    let mut obj = rr.to_object(&header)?;
                    obj.insert("_rev".into(), Value::String(rr.rev(&header)));
                    deleted = Some(obj);
                } else {
                    copy_record(w, &rr.raw, 0, eol).map_err(|e| write_err(path, e))?;
                }
            }
            deleted.ok_or_else(|| not_found(path, id))
        })
    }

    fn open(&self) -> Result<RecordReader<'_, BufReader<File>>, CsvError> {
        let file =
            File::open(&self.path).map_err(|e| CsvError::io(&self.path, None, "cannot open", e))?;
        Ok(RecordReader::new(
            BufReader::with_capacity(READ_BUF_BYTES, file),
            &self.path,
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

fn not_found(path: &Path, id: &str) -> CsvError {
    CsvError::new(
        CsvErrorKind::NotFound,
        path,
        None,
        format!("no object with id {id:?}"),
    )
}

fn write_err(path: &Path, e: io::Error) -> CsvError {
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

/// FNV-1a 64 over the cells in header order, each followed by a 0xFF separator (a byte that
/// never occurs in UTF-8, so cell boundaries are unambiguous). Trailing empty cells are left
/// out so that adding a column to the file does not change the revision of other rows.
fn rev_of<'a>(cells: impl Iterator<Item = &'a [u8]>) -> String {
    let mut h = FNV_OFFSET;
    let step = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    let mut pending_empty = 0usize;
    for cell in cells {
        if cell.is_empty() {
            pending_empty += 1;
            continue;
        }
        for _ in 0..pending_empty {
            h = step(h, 0xFF);
        }
        pending_empty = 0;
        for &b in cell {
            h = step(h, b);
        }
        h = step(h, 0xFF);
    }
    format!("{h:016x}")
}

/// The parsed header line.
struct Header {
    names: Vec<String>,
    id_idx: usize,
    /// Column indices in name order, with `names.len()` standing for `_id`.
    sorted: Vec<usize>,
    /// The raw header record (BOM and line end included), copied verbatim by rewrites.
    raw: Vec<u8>,
}

impl Header {
    /// Line end used for written rows: the one the header uses, so a CRLF file stays CRLF.
    fn eol(&self) -> &'static [u8] {
        if self.raw.ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        }
    }
}

/// One field of the current record: a range of the raw record (unquoted fields, no copy) or
/// of the decoded buffer (quoted fields, with `""` collapsed).
#[derive(Debug, Clone, Copy)]
struct Field {
    decoded: bool,
    start: usize,
    end: usize,
}

/// Streaming record reader. Buffers are reused across records, so a scan allocates only for
/// the objects it builds.
struct RecordReader<'p, R> {
    reader: R,
    path: &'p Path,
    /// Raw bytes of the current record: all its physical lines, line ends included.
    raw: Vec<u8>,
    /// Decoded text of the current record's quoted fields.
    decoded: Vec<u8>,
    fields: Vec<Field>,
    /// Physical lines consumed so far.
    lines: u64,
    /// 1-based line on which the current record starts (for error messages).
    record_line: u64,
    max_record: usize,
    at_file_start: bool,
}

/// End of the content of the last line in `raw` (before its `\n` or `\r\n`).
fn content_end(raw: &[u8]) -> usize {
    let mut end = raw.len();
    if end > 0 && raw[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

impl<'p, R: BufRead> RecordReader<'p, R> {
    fn new(reader: R, path: &'p Path) -> Self {
        RecordReader {
            reader,
            path,
            raw: Vec::with_capacity(1024),
            decoded: Vec::with_capacity(256),
            fields: Vec::with_capacity(32),
            lines: 0,
            record_line: 0,
            max_record: MAX_RECORD_BYTES,
            at_file_start: true,
        }
    }

    fn parse_error(&self, message: impl Into<String>) -> CsvError {
        CsvError::new(
            CsvErrorKind::Parse,
            self.path,
            Some(self.record_line),
            message,
        )
    }

    /// Appends one physical line to `raw`; false at end of file.
    fn read_line(&mut self) -> Result<bool, CsvError> {
        // `take` bounds what one line may add, so a file without line breaks (or with an
        // unterminated quote) cannot grow the buffer past the record limit.
        let room = self.max_record.saturating_sub(self.raw.len()) as u64 + 1;
        let n = (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.raw)
            .map_err(|e| CsvError::io(self.path, Some(self.lines + 1), "cannot read", e))?;
        if self.raw.len() > self.max_record {
            return Err(self.parse_error(format!(
                "record longer than {} bytes (unterminated quoted field?)",
                self.max_record
            )));
        }
        if n > 0 {
            self.lines += 1;
        }
        Ok(n > 0)
    }

    /// Reads the next non-blank record into `raw`/`fields`; false at end of file.
    fn next_record(&mut self) -> Result<bool, CsvError> {
        loop {
            self.raw.clear();
            self.decoded.clear();
            self.fields.clear();
            self.record_line = self.lines + 1;
            if !self.read_line()? {
                return Ok(false);
            }
            let mut start = 0;
            if self.at_file_start {
                self.at_file_start = false;
                if self.raw.starts_with(BOM) {
                    start = BOM.len();
                }
            }
            if self.raw[start..]
                .iter()
                .all(|&b| is_blank(b) || b == b'\r' || b == b'\n')
            {
                continue;
            }
            self.parse_fields(start)?;
            return Ok(true);
        }
    }

    /// Splits the record starting at `raw[pos]` into fields, reading more lines while a quoted
    /// field spans line breaks.
    fn parse_fields(&mut self, mut pos: usize) -> Result<(), CsvError> {
        loop {
            let end = content_end(&self.raw);
            let mut j = pos;
            while j < end && is_blank(self.raw[j]) {
                j += 1;
            }
            if j < end && self.raw[j] == b'"' {
                let start = self.decoded.len();
                j += 1;
                loop {
                    match self.raw[j..].iter().position(|&b| b == b'"') {
                        Some(k) => {
                            self.decoded.extend_from_slice(&self.raw[j..j + k]);
                            j += k + 1;
                            if self.raw.get(j) == Some(&b'"') {
                                self.decoded.push(b'"');
                                j += 1;
                            } else {
                                break;
                            }
                        }
                        None => {
                            self.decoded.extend_from_slice(&self.raw[j..]);
                            j = self.raw.len();
                            if !self.read_line()? {
                                return Err(self.parse_error("unterminated quoted field"));
                            }
                        }
                    }
                }
                self.fields.push(Field {
                    decoded: true,
                    start,
                    end: self.decoded.len(),
                });
                let end = content_end(&self.raw);
                while j < end && is_blank(self.raw[j]) {
                    j += 1;
                }
                if j >= end {
                    return Ok(());
                }
                if self.raw[j] != b',' {
                    return Err(self.parse_error(format!(
                        "unexpected character after the closing quote of field {}",
                        self.fields.len()
                    )));
                }
                pos = j + 1;
            } else {
                let stop = self.raw[pos..end]
                    .iter()
                    .position(|&b| b == b',')
                    .map_or(end, |k| pos + k);
                self.fields.push(Field {
                    decoded: false,
                    start: pos,
                    end: stop,
                });
                if stop >= end {
                    return Ok(());
                }
                pos = stop + 1;
            }
        }
    }

    /// Bytes of field `i` of the current record; empty when the row is shorter.
    fn field(&self, i: usize) -> &[u8] {
        match self.fields.get(i) {
            Some(f) if f.decoded => &self.decoded[f.start..f.end],
            Some(f) => &self.raw[f.start..f.end],
            None => &[],
        }
    }

    fn field_str(&self, i: usize, column: &str) -> Result<&str, CsvError> {
        std::str::from_utf8(self.field(i))
            .map_err(|_| self.parse_error(format!("invalid UTF-8 in column {column:?}")))
    }

    fn read_header(&mut self, id_column: &str) -> Result<Header, CsvError> {
        if !self.next_record()? {
            return Err(CsvError::new(
                CsvErrorKind::Parse,
                self.path,
                None,
                "the file is empty: no header line",
            ));
        }
        let mut names: Vec<String> = Vec::with_capacity(self.fields.len());
        for i in 0..self.fields.len() {
            // Column names are trimmed: `uid, userName` names the column `userName`, never
            // ` userName` (values keep their text, as RFC 4180 says).
            let name = std::str::from_utf8(self.field(i))
                .map_err(|_| self.parse_error("invalid UTF-8 in the header"))?
                .trim();
            if name.is_empty() {
                return Err(self.parse_error(format!("header column {} has no name", i + 1)));
            }
            if names.iter().any(|n| n == name) {
                return Err(self.parse_error(format!("duplicate header column {name:?}")));
            }
            names.push(name.to_string());
        }
        let id_idx = names.iter().position(|n| n == id_column).ok_or_else(|| {
            self.parse_error(format!("the header has no id column {id_column:?}"))
        })?;
        let mut sorted: Vec<usize> = (0..=names.len()).collect();
        sorted.sort_by_key(|&i| names.get(i).map_or("_id", String::as_str));
        Ok(Header {
            names,
            id_idx,
            sorted,
            raw: self.raw.clone(),
        })
    }

    fn check_width(&self, header: &Header) -> Result<(), CsvError> {
        if self.fields.len() > header.names.len() {
            return Err(self.parse_error(format!(
                "row has {} cells but the header has {} columns",
                self.fields.len(),
                header.names.len()
            )));
        }
        Ok(())
    }

    /// The current record as an object with `_id` (the caller checked the id is present).
    fn to_object(&self, header: &Header) -> Result<Map<String, Value>, CsvError> {
        // Built in one go from entries in key order: BTreeMap's bulk build is markedly cheaper
        // than one search-and-insert per attribute on this hot path.
        let id_idx = header.id_idx;
        header
            .sorted
            .iter()
            .filter_map(|&i| {
                // `_id` repeats the id column's cell (index `names.len()` in `sorted`).
                let (name, col) = match header.names.get(i) {
                    Some(name) => (name.as_str(), i),
                    None => ("_id", id_idx),
                };
                let bytes = self.field(col);
                if bytes.is_empty() {
                    return None;
                }
                Some(
                    self.field_str(col, &header.names[col])
                        .map(|text| (name.to_owned(), Value::String(text.to_owned()))),
                )
            })
            .collect()
    }

    fn rev(&self, header: &Header) -> String {
        rev_of((0..header.names.len()).map(|i| self.field(i)))
    }
}

/// Writes one field, quoted (RFC 4180) only when needed to read back the same text.
fn write_field(w: &mut impl Write, s: &str) -> io::Result<()> {
    let needs_quotes = s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
        || s.starts_with([' ', '\t'])
        || s.ends_with([' ', '\t']);
    if !needs_quotes {
        return w.write_all(s.as_bytes());
    }
    w.write_all(b"\"")?;
    for (i, part) in s.split('"').enumerate() {
        if i > 0 {
            w.write_all(b"\"\"")?;
        }
        w.write_all(part.as_bytes())?;
    }
    w.write_all(b"\"")
}

fn write_cells(w: &mut impl Write, cells: &[Option<String>], eol: &[u8]) -> io::Result<()> {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        if let Some(text) = cell {
            write_field(w, text)?;
        }
    }
    w.write_all(eol)
}

/// Copies the header verbatim (BOM and quoting style kept), appending `added` columns.
fn write_header(
    w: &mut impl Write,
    header: &Header,
    added: &[String],
    eol: &[u8],
) -> io::Result<()> {
    w.write_all(&header.raw[..content_end(&header.raw)])?;
    for name in added {
        w.write_all(b",")?;
        write_field(w, name)?;
    }
    w.write_all(eol)
}

/// Copies a record verbatim with `pad` empty cells for the added columns. Padding a row that
/// is already short is harmless: it stays no wider than the new header, and missing and empty
/// cells mean the same (absent).
fn copy_record(w: &mut impl Write, raw: &[u8], pad: usize, eol: &[u8]) -> io::Result<()> {
    w.write_all(&raw[..content_end(raw)])?;
    for _ in 0..pad {
        w.write_all(b",")?;
    }
    w.write_all(eol)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs `body` against a buffered temporary file next to `path`, then fsyncs it and renames it
/// over `path`. On any error the temporary file is removed and `path` is untouched.
fn atomic_write<T>(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> Result<T, CsvError>,
) -> Result<T, CsvError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "csv".into());
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| CsvError::io(path, None, "cannot create a temporary file", e))?;
    let result = (|| {
        let mut w = BufWriter::with_capacity(WRITE_BUF_BYTES, file);
        let value = body(&mut w)?;
        let file = w
            .into_inner()
            .map_err(|e| write_err(path, e.into_error()))?;
        // Keep the original file's permissions; a missing original is not an error here.
        if let Ok(meta) = fs::metadata(path) {
            let _ = file.set_permissions(meta.permissions());
        }
        file.sync_all()
            .map_err(|e| CsvError::io(path, None, "cannot fsync the temporary file", e))?;
        drop(file);
        fs::rename(&tmp, path)
            .map_err(|e| CsvError::io(path, None, "cannot rename the temporary file", e))?;
        // Persist the rename itself; best effort since not every platform can fsync a folder.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a whole CSV file atomically (temporary file, fsync, rename): `header`, then each row
/// (a row may be shorter than the header, never longer). Fields are quoted only when needed.
pub fn write_csv(
    path: &Path,
    header: &[String],
    rows: &mut dyn Iterator<Item = Vec<String>>,
) -> Result<(), CsvError> {
    atomic_write(path, |w| {
        for (i, name) in header.iter().enumerate() {
            if i > 0 {
                w.write_all(b",").map_err(|e| write_err(path, e))?;
            }
            write_field(w, name).map_err(|e| write_err(path, e))?;
        }
        w.write_all(b"\n").map_err(|e| write_err(path, e))?;
        for (n, row) in rows.enumerate() {
            if row.len() > header.len() {
                return Err(CsvError::new(
                    CsvErrorKind::BadValue,
                    path,
                    Some(n as u64 + 2),
                    format!(
                        "row has {} cells but the header has {} columns",
                        row.len(),
                        header.len()
                    ),
                ));
            }
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",").map_err(|e| write_err(path, e))?;
                }
                write_field(w, cell).map_err(|e| write_err(path, e))?;
            }
            w.write_all(b"\n").map_err(|e| write_err(path, e))?;
        }
        Ok(())
    })
}

#[cfg(test)]
// Tests may unwrap: a failure there is the test's report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

    /// A unique temporary folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "recond-csv-{tag}-{}-{}",
                std::process::id(),
                DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn table(&self, content: &[u8], id: &str) -> CsvTable {
            let path = self.0.join("t.csv");
            fs::write(&path, content).unwrap();
            CsvTable::new(path, id.into())
        }

        fn entries(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn all(t: &CsvTable) -> Vec<Map<String, Value>> {
        let mut out = Vec::new();
        t.scan(&mut |o| {
            out.push(o);
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn text(t: &CsvTable) -> String {
        String::from_utf8(fs::read(t.path()).unwrap()).unwrap()
    }

    #[test]
    fn header_and_id_column_kept() {
        let d = TempDir::new("hdr");
        let t = d.table(b"uid,name,mail\nu1,Ann,a@x\nu2,Bob,b@x\n", "uid");
        t.check().unwrap();
        let rows = all(&t);
        assert_eq!(
            rows,
            vec![
                obj(json!({"_id":"u1","uid":"u1","name":"Ann","mail":"a@x"})),
                obj(json!({"_id":"u2","uid":"u2","name":"Bob","mail":"b@x"})),
            ]
        );
        assert!(!rows[0].contains_key("_rev"));
    }

    #[test]
    fn check_reports_missing_id_column_and_missing_file() {
        let d = TempDir::new("chk");
        let t = d.table(b"a,b\n1,2\n", "uid");
        let e = t.check().unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::Parse);
        assert!(e.to_string().contains("uid"), "{e}");
        let missing = CsvTable::new(d.0.join("nope.csv"), "uid".into());
        assert_eq!(missing.check().unwrap_err().kind(), &CsvErrorKind::Io);
        let empty = d.table(b"", "uid");
        assert_eq!(empty.check().unwrap_err().kind(), &CsvErrorKind::Parse);
    }

    #[test]
    fn empty_cell_is_absent_and_short_rows() {
        let d = TempDir::new("empty");
        let t = d.table(b"uid,a,b,c\nu1,,x,\nu2,y\nu3\n", "uid");
        let rows = all(&t);
        assert_eq!(rows[0], obj(json!({"_id":"u1","uid":"u1","b":"x"})));
        assert_eq!(rows[1], obj(json!({"_id":"u2","uid":"u2","a":"y"})));
        assert_eq!(rows[2], obj(json!({"_id":"u3","uid":"u3"})));
    }

    #[test]
    fn quotes_commas_and_newlines() {
        let d = TempDir::new("quote");
        let t = d.table(
            b"uid,note,addr\nu1,\"say \"\"hi\"\"\",\"1 Main St, Apt 2\"\n\"u2\",\"line1\nline2\",x\nu3,ab\"c,\"\"\n",
            "uid",
        );
        let rows = all(&t);
        assert_eq!(rows[0]["note"], "say \"hi\"");
        assert_eq!(rows[0]["addr"], "1 Main St, Apt 2");
        assert_eq!(rows[1]["_id"], "u2");
        assert_eq!(rows[1]["note"], "line1\nline2");
        assert_eq!(rows[1]["addr"], "x");
        // A quote inside an unquoted field is literal; `""` alone is an empty (absent) cell.
        assert_eq!(rows[2], obj(json!({"_id":"u3","uid":"u3","note":"ab\"c"})));
    }

    #[test]
    fn idm_sample_style() {
        let d = TempDir::new("idm");
        let t = d.table(
            b"\"username\", \"firstname\", \"email\" \n\"bjensen\", \"Barbara\" , \"b@x\"\n\"jdoe\", John, \"\"\n",
            "username",
        );
        let rows = all(&t);
        assert_eq!(
            rows[0],
            obj(json!({"_id":"bjensen","username":"bjensen","firstname":"Barbara","email":"b@x"}))
        );
        // Unquoted fields keep their text as-is, leading space included.
        assert_eq!(
            rows[1],
            obj(json!({"_id":"jdoe","username":"jdoe","firstname":" John"}))
        );
    }

    #[test]
    fn crlf_bom_and_blank_lines() {
        let d = TempDir::new("crlf");
        let t = d.table(
            b"\xEF\xBB\xBFuid,name\r\n\r\nu1,Ann\r\n  \r\nu2,\"B\r\nob\"\r\nu3,Cy\r\n\r\n",
            "uid",
        );
        let rows = all(&t);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], obj(json!({"_id":"u1","uid":"u1","name":"Ann"})));
        assert_eq!(rows[1]["name"], "B\r\nob");
        assert_eq!(rows[2]["name"], "Cy");
        // A rewrite keeps the BOM, the line-end style and untouched records byte-for-byte.
        t.update("u3", obj(json!({"name":"Cyd"}))).unwrap();
        assert_eq!(
            fs::read(t.path()).unwrap(),
            b"\xEF\xBB\xBFuid,name\r\nu1,Ann\r\nu2,\"B\r\nob\"\r\nu3,Cyd\r\n".to_vec()
        );
        // No final line end at all.
        let t = d.table(b"uid,name\nu1,Ann", "uid");
        assert_eq!(all(&t)[0]["name"], "Ann");
    }

    #[test]
    fn over_long_row_is_an_error_with_line() {
        let d = TempDir::new("long");
        let t = d.table(b"uid,a\nu1,x\n\nu2,y,z\n", "uid");
        let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::Parse);
        assert_eq!(e.line, Some(4));
        assert!(e.to_string().contains("t.csv line 4: "), "{e}");
    }

    #[test]
    fn unterminated_quote_and_junk_after_quote() {
        let d = TempDir::new("unterm");
        let t = d.table(b"uid,a\nu1,x\nu2,\"abc\nmore\n", "uid");
        let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.to_string().ends_with("line 3: unterminated quoted field"),
            "{e}"
        );
        let t = d.table(b"uid,a\nu1,\"x\"y\n", "uid");
        let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
        assert_eq!((e.kind(), e.line), (&CsvErrorKind::Parse, Some(2)));
    }

    #[test]
    fn record_size_is_bounded() {
        let data = format!("a\n\"{}", "x".repeat(10_000));
        let path = Path::new("mem.csv");
        let mut rr = RecordReader::new(data.as_bytes(), path);
        rr.max_record = 1000;
        assert!(rr.next_record().unwrap());
        let e = rr.next_record().unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::Parse);
        assert!(rr.raw.len() <= 1001);
    }

    #[test]
    fn rows_without_id_are_skipped_and_counted() {
        let d = TempDir::new("skip");
        let t = d.table(b"name,uid\nAnn,u1\nBob,\nCy\n,u4\n", "uid");
        let mut n = 0;
        let stats = t
            .scan(&mut |_| {
                n += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(
            stats,
            ScanStats {
                rows: 2,
                skipped: 2
            }
        );
        assert_eq!(n, 2);
    }

    #[test]
    fn early_stop() {
        let d = TempDir::new("stop");
        let t = d.table(b"uid\na\nb\nc\nd\n", "uid");
        let mut seen = Vec::new();
        let stats = t
            .scan(&mut |o| {
                seen.push(o["_id"].clone());
                if seen.len() == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(seen, vec![json!("a"), json!("b")]);
        assert_eq!(stats.rows, 2);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let d = TempDir::new("utf8");
        let t = d.table(b"uid,name\nu1,ok\nu2,bad\xFF\xFE\n", "uid");
        let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
        assert_eq!((e.kind(), e.line), (&CsvErrorKind::Parse, Some(3)));
        let t = d.table(b"uid,na\xC3\n", "uid");
        assert_eq!(t.check().unwrap_err().kind(), &CsvErrorKind::Parse);
        // Split-up multibyte sequence across a comma must not be glued back together.
        let t = d.table(b"uid,a,b\nu1,\xC3,\xA9\n", "uid");
        assert!(t.scan(&mut |_| ControlFlow::Continue(())).is_err());
    }

    #[test]
    fn read_has_rev() {
        let d = TempDir::new("read");
        let t = d.table(b"uid,name\nu1,Ann\nu2,Bob\n", "uid");
        let o = t.read("u2").unwrap().unwrap();
        assert_eq!(o["name"], "Bob");
        assert_eq!(o["_id"], "u2");
        assert!(o["_rev"].as_str().unwrap().len() == 16);
        assert_eq!(t.read("nope").unwrap(), None);
    }

    #[test]
    fn create_with_id_from_column_and_from_underscore_id() {
        let d = TempDir::new("create");
        let t = d.table(b"uid,name\r\nu1,Ann\r\n", "uid");
        let c = t
            .create(obj(
                json!({"uid":"u2","name":"Bob, Jr.","age":42,"ok":true,"_rev":"x"}),
            ))
            .unwrap();
        assert_eq!(c["_id"], "u2");
        assert_eq!(c["age"], "42");
        assert_eq!(c["_rev"], t.read("u2").unwrap().unwrap()["_rev"]);
        let c = t.create(obj(json!({"_id":"u3","name":"Cy"}))).unwrap();
        assert_eq!(c["uid"], "u3");
        assert_eq!(
            text(&t),
            "uid,name,age,ok\r\nu1,Ann,,\r\nu2,\"Bob, Jr.\",42,true\r\nu3,Cy,,\r\n"
        );
        assert_eq!(t.read("u3").unwrap().unwrap(), c);
        let e = t.create(obj(json!({"name":"nobody"}))).unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::BadValue);
        let e = t.create(obj(json!({"uid":"u4","tags":["a"]}))).unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::BadValue);
        assert!(e.message.contains("tags"));
    }

    #[test]
    fn create_duplicate_is_already_exists() {
        let d = TempDir::new("dup");
        let t = d.table(b"uid,name\nu1,Ann\n", "uid");
        let e = t.create(obj(json!({"uid":"u1"}))).unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::AlreadyExists);
        assert_eq!(text(&t), "uid,name\nu1,Ann\n");
        assert_eq!(d.entries(), vec!["t.csv"]);
    }

    #[test]
    fn update_adds_new_column_at_end() {
        let d = TempDir::new("upd");
        let t = d.table(
            b"\"uid\", \"name\", \"mail\"\n\"u1\", \"Ann\", \"a@x\"\nu2,Bob\n",
            "uid",
        );
        let u = t
            .update(
                "u2",
                obj(json!({"uid":"other","name":" Bob ","zip":"123","_id":"zz","mail":null})),
            )
            .unwrap();
        assert_eq!(u, {
            let mut m = obj(json!({"_id":"u2","uid":"u2","name":" Bob ","zip":"123"}));
            m.insert("_rev".into(), u["_rev"].clone());
            m
        });
        assert_eq!(
            text(&t),
            "\"uid\", \"name\", \"mail\",zip\n\"u1\", \"Ann\", \"a@x\",\nu2,\" Bob \",,123\n"
        );
        assert_eq!(
            all(&t)[0],
            obj(json!({"_id":"u1","uid":"u1","name":"Ann","mail":"a@x"}))
        );
        let e = t.update("nope", obj(json!({"name":"x"}))).unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::NotFound);
        assert_eq!(d.entries(), vec!["t.csv"]);
    }

    #[test]
    fn delete_returns_object() {
        let d = TempDir::new("del");
        let t = d.table(b"uid,name\nu1,Ann\nu2,Bob\nu3,Cy", "uid");
        let before = t.read("u2").unwrap().unwrap();
        let gone = t.delete("u2").unwrap();
        assert_eq!(gone, before);
        assert_eq!(text(&t), "uid,name\nu1,Ann\nu3,Cy\n");
        assert_eq!(t.delete("u2").unwrap_err().kind(), &CsvErrorKind::NotFound);
        assert_eq!(d.entries(), vec!["t.csv"]);
    }

    #[test]
    fn outside_edit_is_seen() {
        let d = TempDir::new("edit");
        let t = d.table(b"uid,name\nu1,Ann\n", "uid");
        assert_eq!(t.read("u1").unwrap().unwrap()["name"], "Ann");
        fs::write(t.path(), "uid,name\nu1,Anna\nu2,Bob\n").unwrap();
        assert_eq!(t.read("u1").unwrap().unwrap()["name"], "Anna");
        assert_eq!(all(&t).len(), 2);
    }

    #[test]
    fn rev_stable_and_changes_on_update() {
        let d = TempDir::new("rev");
        let t = d.table(b"uid,name\nu1,Ann\nu2,Bob\n", "uid");
        let r1 = t.read("u1").unwrap().unwrap()["_rev"].clone();
        let r2 = t.read("u2").unwrap().unwrap()["_rev"].clone();
        assert_eq!(t.read("u1").unwrap().unwrap()["_rev"], r1);
        // Adding a column to the file (via another row) keeps u1's revision.
        let u = t.update("u2", obj(json!({"name":"Bob","x":"1"}))).unwrap();
        assert_ne!(u["_rev"], r2);
        assert_eq!(t.read("u2").unwrap().unwrap()["_rev"], u["_rev"]);
        assert_eq!(t.read("u1").unwrap().unwrap()["_rev"], r1);
        // Same content, same revision; an unchanged update keeps it.
        let again = t.update("u2", obj(json!({"name":"Bob","x":"1"}))).unwrap();
        assert_eq!(again["_rev"], u["_rev"]);
        // Moving a value to another column changes the revision.
        assert_ne!(
            rev_of([b"a".as_slice(), b"", b"b"].into_iter()),
            rev_of([b"a".as_slice(), b"b", b""].into_iter())
        );
    }

    #[test]
    fn written_values_read_back_identically() {
        let d = TempDir::new("round");
        let t = d.table(b"uid,v\n", "uid");
        let values = [
            "plain",
            " lead",
            "trail ",
            "a,b",
            "q\"uote",
            "multi\nline",
            "cr\r\nlf",
            "\"",
            "é ünï",
            "\t",
        ];
        for (i, v) in values.iter().enumerate() {
            t.create(obj(json!({"uid": format!("u{i}"), "v": v})))
                .unwrap();
        }
        for (i, v) in values.iter().enumerate() {
            assert_eq!(t.read(&format!("u{i}")).unwrap().unwrap()["v"], *v);
        }
        assert_eq!(all(&t).len(), values.len());
    }

    #[test]
    fn write_csv_and_scan_50k_rows() {
        let d = TempDir::new("big");
        let path = d.0.join("big.csv");
        let header: Vec<String> = (0..10).map(|c| format!("col{c}")).collect();
        let n = 50_000u64;
        let mut rows = (0..n).map(|i| {
            (0..10)
                .map(|c| {
                    if c == 0 {
                        format!("id{i:06}")
                    } else if c == 5 {
                        format!("{i} Main Street, Building {c}")
                    } else {
                        format!("value-{i}-{c}")
                    }
                })
                .collect::<Vec<String>>()
        });
        write_csv(&path, &header, &mut rows).unwrap();
        assert_eq!(d.entries(), vec!["big.csv"]);
        let t = CsvTable::new(path, "col0".into());
        let mut count = 0u64;
        let stats = t
            .scan(&mut |o| {
                if count == 12_345 {
                    assert_eq!(o["_id"], "id012345");
                    assert_eq!(o["col5"], "12345 Main Street, Building 5");
                    assert_eq!(o.len(), 11);
                }
                count += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(
            stats,
            ScanStats {
                rows: n,
                skipped: 0
            }
        );
        assert_eq!(count, n);
        let mut too_wide = std::iter::once(vec!["a".to_string(); 11]);
        let e = write_csv(&d.0.join("bad.csv"), &header, &mut too_wide).unwrap_err();
        assert_eq!(e.kind(), &CsvErrorKind::BadValue);
        assert_eq!(d.entries(), vec!["big.csv"]);
    }
}
