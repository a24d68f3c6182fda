//! Streaming CSV record reader: RFC 4180 quoting (with IDM's `"a", "b"` style), a
//! configurable delimiter and quote character, bounded record size, reused buffers.

use std::io::{BufRead, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::{CsvError, CsvErrorKind, Dialect, BOM, FNV_OFFSET, FNV_PRIME, MAX_RECORD_BYTES};

/// FNV-1a 64 over the cells in header order, each followed by a 0xFF separator (a byte that
/// never occurs in UTF-8, so cell boundaries are unambiguous). Trailing empty cells are left
/// out so that adding a column to the file does not change the revision of other rows.
pub(super) fn rev_of<'a>(cells: impl Iterator<Item = &'a [u8]>) -> String {
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
pub(super) struct Header {
    pub(super) names: Vec<String>,
    pub(super) id_idx: usize,
    /// Column indices in name order, with `names.len()` standing for `_id`.
    sorted: Vec<usize>,
    /// The raw header record (BOM and line end included), copied verbatim by rewrites.
    pub(super) raw: Vec<u8>,
}

impl Header {
    /// Line end used for written rows: the one the header uses, so a CRLF file stays CRLF.
    pub(super) fn eol(&self) -> &'static [u8] {
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
pub(super) struct RecordReader<'p, R> {
    reader: R,
    delimiter: u8,
    quote: u8,
    path: &'p Path,
    /// Raw bytes of the current record: all its physical lines, line ends included.
    pub(super) raw: Vec<u8>,
    /// Decoded text of the current record's quoted fields.
    decoded: Vec<u8>,
    fields: Vec<Field>,
    /// Physical lines consumed so far.
    lines: u64,
    /// 1-based line on which the current record starts (for error messages).
    pub(super) record_line: u64,
    pub(super) max_record: usize,
    at_file_start: bool,
}

/// End of the content of the last line in `raw` (before its `\n` or `\r\n`).
pub(super) fn content_end(raw: &[u8]) -> usize {
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
    pub(super) fn new(reader: R, path: &'p Path, dialect: &Dialect) -> Self {
        RecordReader {
            reader,
            delimiter: dialect.delimiter,
            quote: dialect.quote,
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
    pub(super) fn next_record(&mut self) -> Result<bool, CsvError> {
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
            if j < end && self.raw[j] == self.quote {
                let start = self.decoded.len();
                j += 1;
                loop {
                    match self.raw[j..].iter().position(|&b| b == self.quote) {
                        Some(k) => {
                            self.decoded.extend_from_slice(&self.raw[j..j + k]);
                            j += k + 1;
                            if self.raw.get(j) == Some(&self.quote) {
                                self.decoded.push(self.quote);
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
                if self.raw[j] != self.delimiter {
                    return Err(self.parse_error(format!(
                        "unexpected character after the closing quote of field {}",
                        self.fields.len()
                    )));
                }
                pos = j + 1;
            } else {
                let stop = self.raw[pos..end]
                    .iter()
                    .position(|&b| b == self.delimiter)
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
    pub(super) fn field(&self, i: usize) -> &[u8] {
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

    /// The record's raw and decoded bytes as text, each checked once in one pass, or None
    /// when either is not UTF-8 (then [`Self::field_str`] finds the column to name).
    fn record_text(&self) -> Option<(&str, &str)> {
        Some((
            std::str::from_utf8(&self.raw).ok()?,
            std::str::from_utf8(&self.decoded).ok()?,
        ))
    }

    /// Field `i` sliced out of [`Self::record_text`]'s text. Fields end at ASCII delimiters
    /// and quotes, so they start and end on character boundaries (checked all the same).
    fn field_in<'t>(&self, text: (&'t str, &'t str), i: usize) -> Option<&'t str> {
        match self.fields.get(i) {
            Some(f) if f.decoded => text.1.get(f.start..f.end),
            Some(f) => text.0.get(f.start..f.end),
            None => Some(""),
        }
    }

    pub(super) fn read_header(&mut self, id_column: &str) -> Result<Header, CsvError> {
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

    pub(super) fn check_width(&self, header: &Header) -> Result<(), CsvError> {
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
    pub(super) fn to_object(&self, header: &Header) -> Result<Map<String, Value>, CsvError> {
        // Sized once: a map grown key by key rehashes its index three times for a dozen
        // attributes (IDM key order makes it an `IndexMap`).
        let id_idx = header.id_idx;
        let mut obj = Map::with_capacity(header.sorted.len());
        // One UTF-8 check per record instead of one per field.
        let text = self.record_text();
        for &i in &header.sorted {
            // `_id` repeats the id column's cell (index `names.len()` in `sorted`).
            let (name, col) = match header.names.get(i) {
                Some(name) => (name.as_str(), i),
                None => ("_id", id_idx),
            };
            if self.field(col).is_empty() {
                continue;
            }
            let text = match text.and_then(|t| self.field_in(t, col)) {
                Some(text) => text,
                None => self.field_str(col, &header.names[col])?,
            };
            obj.insert(name.to_owned(), Value::String(text.to_owned()));
        }
        Ok(obj)
    }

    pub(super) fn rev(&self, header: &Header) -> String {
        rev_of((0..header.names.len()).map(|i| self.field(i)))
    }
}

// ---- counting records without parsing them --------------------------------------------------

/// Where a [`count_records`] scan is within a record.
#[derive(Clone, Copy, PartialEq)]
enum At {
    /// Before a field's first non-blank byte: a quote here opens a quoted field.
    FieldStart,
    /// In an unquoted field, or after a quoted field's closing quote.
    Unquoted,
    /// Inside a quoted field: line ends belong to the field.
    Quoted,
    /// Just after a quote inside a quoted field: a second quote is an escaped quote.
    QuoteSeen,
}

/// The number of non-blank records in `input`, header included, framed exactly as
/// [`RecordReader`] frames them (a quote opens a quoted field only as a field's first
/// non-blank byte; `""` inside one is a quote; line ends inside one do not end the record;
/// blank lines and a leading BOM are not records) but without splitting or decoding a field.
/// One pass over the bytes, no allocation per record: a run's progress total before it reads
/// the file for real. A malformed file is counted as far as it frames; the real read reports
/// its errors.
pub(super) fn count_records<R: Read>(input: R, dialect: &Dialect) -> std::io::Result<u64> {
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, input);
    let (delimiter, quote) = (dialect.delimiter, dialect.quote);
    let mut at = At::FieldStart;
    let mut content = false;
    let mut records = 0u64;
    let mut first = true;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let mut i = 0;
        if first {
            first = false;
            if buf.starts_with(BOM) {
                i = BOM.len();
            }
        }
        let n = buf.len();
        while i < n {
            if at == At::Unquoted {
                // Inside an unquoted field (which already has content) only the next
                // delimiter or line end matters: jump to it.
                match memchr::memchr2(delimiter, b'\n', &buf[i..]) {
                    Some(k) => i += k,
                    None => {
                        i = n;
                        continue;
                    }
                }
            }
            let b = buf[i];
            i += 1;
            match at {
                At::Quoted => {
                    // Skip to the next quote: nothing else matters inside a quoted field.
                    match buf[i - 1..].iter().position(|&c| c == quote) {
                        Some(k) => {
                            i += k;
                            at = At::QuoteSeen;
                        }
                        None => i = n,
                    }
                }
                At::QuoteSeen if b == quote => at = At::Quoted,
                _ if b == b'\n' => {
                    records += u64::from(content);
                    content = false;
                    at = At::FieldStart;
                }
                _ if b == delimiter => {
                    content = true;
                    at = At::FieldStart;
                }
                At::FieldStart if b == quote => {
                    content = true;
                    at = At::Quoted;
                }
                At::FieldStart if is_blank(b) || b == b'\r' => {}
                _ => {
                    if !(is_blank(b) || b == b'\r') {
                        content = true;
                    }
                    at = At::Unquoted;
                }
            }
        }
        reader.consume(n);
    }
    Ok(records + u64::from(content))
}

impl super::CsvTable {
    /// The number of data records in the file (header excluded, rows without an id included)
    /// by [`count_records`]: cheap, for progress totals. 0 for a file without a header.
    pub fn count_rows(&self) -> Result<u64, CsvError> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| CsvError::io(&self.path, None, "cannot open", e))?;
        let records = count_records(file, &self.dialect)
            .map_err(|e| CsvError::io(&self.path, None, "cannot read", e))?;
        Ok(records.saturating_sub(1))
    }
}

#[cfg(test)]
mod count_tests {
    use super::*;

    fn count(text: &str) -> u64 {
        count_records(text.as_bytes(), &Dialect::default()).expect("in-memory read")
    }

    /// What the real reader frames, for comparison.
    fn framed(text: &str) -> u64 {
        let path = Path::new("mem.csv");
        let mut rr = RecordReader::new(text.as_bytes(), path, &Dialect::default());
        let mut n = 0;
        while rr.next_record().expect("well-formed") {
            n += 1;
        }
        n
    }

    #[test]
    fn counts_records_as_the_reader_frames_them() {
        for text in [
            "",
            "uid,mail\n",
            "uid,mail\nu1,a@x\nu2,b@x\n",
            "uid,mail\nu1,a@x\nu2,b@x",
            "\u{feff}uid,mail\r\nu1,a@x\r\n\r\n  \r\nu2,b@x\r\n",
            "uid,note\nu1,\"two\nlines\"\nu2,\"a \"\"quoted\"\"\n, comma\"\n",
            "uid,note\nu1,  \"blank before the quote\nstill quoted\"\nu2,x\n",
            "uid,note\nu1,ab\"c\nu2,x\"y\n",
            "uid,note\nu1,\"\"\nu2,\"\"\"\"\n\n\n",
            "uid,note\n,\n,,\n",
        ] {
            assert_eq!(count(text), framed(text), "{text:?}");
        }
    }

    #[test]
    fn quotes_straddling_buffer_boundaries_are_followed() {
        // Longer than the read buffer, with a quoted newline field every row.
        let mut text = String::from("uid,note\n");
        for i in 0..40_000 {
            text.push_str(&format!("u{i},\"line one\nline \"\"two\"\"\"\n"));
        }
        assert_eq!(count(&text), 40_001);
        assert_eq!(framed(&text), 40_001);
    }

    /// The count's jumps over unquoted fields must not change what it counts: random
    /// texts of the bytes that matter, counted as the reader frames them.
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn framed_if_readable(text: &str) -> Option<u64> {
            let mut rr =
                RecordReader::new(text.as_bytes(), Path::new("p.csv"), &Dialect::default());
            let mut n = 0;
            loop {
                match rr.next_record() {
                    Ok(true) => n += 1,
                    Ok(false) => return Some(n),
                    Err(_) => return None,
                }
            }
        }

        proptest! {
            // Line ends are `\n` or `\r\n`: a lone `\r` is framed differently by the two
            // (the count takes it for a blank), which only skews a progress total.
            #[test]
            fn the_count_agrees_with_the_reader(
                tokens in proptest::collection::vec(
                    proptest::sample::select(vec!["a", " ", ",", "\"", "\n", "\r\n"]),
                    0..120,
                )
            ) {
                let text = tokens.concat();
                if let Some(n) = framed_if_readable(&text) {
                    prop_assert_eq!(count(&text), n, "{:?}", text);
                }
            }
        }
    }
}
