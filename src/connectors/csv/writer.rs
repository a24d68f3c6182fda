//! Writing CSV: field quoting, header and record copies, and the atomic whole-file rewrite
//! (temporary file, fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::reader::{content_end, Header};
use super::{write_err, CsvError, CsvErrorKind, Dialect, WRITE_BUF_BYTES};

/// Writes one field, quoted (RFC 4180) only when needed to read back the same text.
pub(super) fn write_field(w: &mut impl Write, s: &str, d: &Dialect) -> io::Result<()> {
    let needs_quotes = s
        .bytes()
        .any(|b| b == d.delimiter || b == d.quote || b == b'\r' || b == b'\n')
        || s.starts_with([' ', '\t'])
        || s.ends_with([' ', '\t']);
    if !needs_quotes {
        return w.write_all(s.as_bytes());
    }
    let q = [d.quote];
    w.write_all(&q)?;
    for (i, part) in s.split(char::from(d.quote)).enumerate() {
        if i > 0 {
            w.write_all(&[d.quote, d.quote])?;
        }
        w.write_all(part.as_bytes())?;
    }
    w.write_all(&q)
}

pub(super) fn write_cells(
    w: &mut impl Write,
    cells: &[Option<String>],
    eol: &[u8],
    d: &Dialect,
) -> io::Result<()> {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            w.write_all(&[d.delimiter])?;
        }
        if let Some(text) = cell {
            write_field(w, text, d)?;
        }
    }
    w.write_all(eol)
}

/// Copies the header verbatim (BOM and quoting style kept), appending `added` columns.
pub(super) fn write_header(
    w: &mut impl Write,
    header: &Header,
    added: &[String],
    eol: &[u8],
    d: &Dialect,
) -> io::Result<()> {
    w.write_all(&header.raw[..content_end(&header.raw)])?;
    for name in added {
        w.write_all(&[d.delimiter])?;
        write_field(w, name, d)?;
    }
    w.write_all(eol)
}

/// Copies a record verbatim with `pad` empty cells for the added columns. Padding a row that
/// is already short is harmless: it stays no wider than the new header, and missing and empty
/// cells mean the same (absent).
pub(super) fn copy_record(
    w: &mut impl Write,
    raw: &[u8],
    pad: usize,
    eol: &[u8],
    d: &Dialect,
) -> io::Result<()> {
    w.write_all(&raw[..content_end(raw)])?;
    for _ in 0..pad {
        w.write_all(&[d.delimiter])?;
    }
    w.write_all(eol)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs `body` against a buffered temporary file next to `path`, then fsyncs it and renames it
/// over `path`. On any error the temporary file is removed and `path` is untouched.
pub(super) fn atomic_write<T>(
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
    let d = Dialect::default();
    atomic_write(path, |w| {
        for (i, name) in header.iter().enumerate() {
            if i > 0 {
                w.write_all(b",").map_err(|e| write_err(path, e))?;
            }
            write_field(w, name, &d).map_err(|e| write_err(path, e))?;
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
                write_field(w, cell, &d).map_err(|e| write_err(path, e))?;
            }
            w.write_all(b"\n").map_err(|e| write_err(path, e))?;
        }
        Ok(())
    })
}
