//! SQLite files through `rusqlite` (with SQLite compiled in, so no system library is needed).
//!
//! The file must exist: a missing file is a connection failure like a PostgreSQL server that
//! is down, never a fresh empty database. Writers wait up to [`BUSY_TIMEOUT`] for another
//! program's lock, then fail the entry.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use rusqlite::types::ValueRef;
use rusqlite::{ffi, Connection, OpenFlags};
use serde_json::{Number, Value};

use super::db::{
    quote_ident, ColKind, Column, Conn, DbError, DbErrorKind, Dialect, Param, Row, TableInfo,
};

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteConn {
    conn: Connection,
    path: PathBuf,
}

pub fn connect(path: &Path) -> Result<Box<dyn Conn>, DbError> {
    let cannot = |e: rusqlite::Error| {
        DbError::new(
            DbErrorKind::Connect,
            format!("cannot open the SQLite file {}: {e}", path.display()),
        )
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(cannot)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(cannot)?;
    Ok(Box::new(SqliteConn {
        conn,
        path: path.to_path_buf(),
    }))
}

fn error(e: rusqlite::Error) -> DbError {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ffi::ErrorCode::ConstraintViolation
                if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                DbErrorKind::Duplicate
            }
            ffi::ErrorCode::ConstraintViolation | ffi::ErrorCode::TypeMismatch => {
                DbErrorKind::Constraint
            }
            ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked => DbErrorKind::Timeout,
            ffi::ErrorCode::CannotOpen | ffi::ErrorCode::NotADatabase => DbErrorKind::Connect,
            _ => DbErrorKind::Other,
        },
        _ => DbErrorKind::Other,
    };
    DbError::new(kind, e.to_string())
}

fn kind_of(declared: &str) -> ColKind {
    // SQLite's type affinity rules (section 3.1 of its datatype page), plus BOOL.
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        ColKind::Int
    } else if t.contains("BOOL") {
        ColKind::Bool
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        ColKind::Text
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        ColKind::Float
    } else {
        ColKind::Other
    }
}

fn bind(params: &[Param]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    params
        .iter()
        .map(|p| match p {
            Param::Null => V::Null,
            Param::Text(s) => V::Text(s.clone()),
            Param::Int(i) => V::Integer(*i),
            Param::Float(f) => V::Real(*f),
            Param::Bool(b) => V::Integer(i64::from(*b)),
        })
        .collect()
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn table_info(&mut self, table: &str) -> Result<TableInfo, DbError> {
        let (schema, name) = match table.split_once('.') {
            Some((s, t)) => (s, t),
            None => ("main", table),
        };
        let mut stmt = self
            .conn
            .prepare("SELECT name, type FROM pragma_table_info(?1, ?2) ORDER BY cid")
            .map_err(error)?;
        let columns = stmt
            .query_map([name, schema], |r| {
                let name: String = r.get(0)?;
                let declared: String = r.get(1)?;
                Ok(Column {
                    name,
                    kind: kind_of(&declared),
                    sql_type: declared,
                })
            })
            .map_err(error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        if columns.is_empty() {
            return Err(DbError::new(
                DbErrorKind::Schema,
                format!(
                    "the table \"{table}\" does not exist in {}",
                    self.path.display()
                ),
            ));
        }
        Ok(TableInfo {
            sql_name: format!("{}.{}", quote_ident(schema), quote_ident(name)),
            columns,
        })
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Param],
        f: &mut dyn FnMut(Row) -> ControlFlow<()>,
    ) -> Result<(), DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(error)?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bind(params)))
            .map_err(error)?;
        while let Some(row) = rows.next().map_err(error)? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                let v = row.get_ref(i).map_err(error)?;
                cells.push(match v {
                    ValueRef::Null => None,
                    ValueRef::Integer(i) => Some(Value::Number(i.into())),
                    ValueRef::Real(x) => Number::from_f64(x).map(Value::Number),
                    ValueRef::Text(t) => Some(Value::String(String::from_utf8_lossy(t).into())),
                    ValueRef::Blob(b) => Some(Value::String(
                        base64::engine::general_purpose::STANDARD.encode(b),
                    )),
                });
            }
            if f(cells).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(error)?;
        stmt.execute(rusqlite::params_from_iter(bind(params)))
            .map(|n| n as u64)
            .map_err(error)
    }

    fn is_broken(&self) -> bool {
        false
    }
}
