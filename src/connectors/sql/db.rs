//! What the SQL object set needs from a database, whichever it is: the table's columns from
//! the catalog, statements with bound parameters, rows as JSON cells, and a small connection
//! pool. `pg` and `sqlite` implement [`Conn`]; nothing above this module knows which one runs.
//!
//! Statement text is built only from catalog names (quoted with [`quote_ident`]) and fixed
//! SQL; every value travels as a bound [`Param`].

use std::ops::ControlFlow;

use parking_lot::Mutex;
use serde_json::Value;

/// How values of a column compare and convert, from its SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    Int,
    /// Floating point and exact numerics.
    Float,
    Bool,
    Text,
    /// Anything else (timestamps, dates, uuid, json, bytea...): read as the database renders
    /// it to JSON; compared through that text form.
    Other,
    /// PostgreSQL `uuid`: compared natively when the value is a well-formed uuid.
    Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The name exactly as the catalog holds it.
    pub name: String,
    /// The SQL type as the catalog names it (for messages).
    pub sql_type: String,
    pub kind: ColKind,
}

/// A table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The table reference to paste into statements, already quoted.
    pub sql_name: String,
    pub columns: Vec<Column>,
}

/// A value bound to a statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database cannot be reached or the connection broke.
    Connect,
    /// The configuration does not match the database (no such table or column).
    Schema,
    /// A unique key already holds the value.
    Duplicate,
    /// NOT NULL, CHECK, foreign key, or a value the column's type rejects.
    Constraint,
    /// A statement timed out.
    Timeout,
    /// No row has the key (a batch's update or delete of a row that is gone).
    NotFound,
    Other,
}

#[derive(Debug, Clone)]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl DbError {
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> DbError {
        DbError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One row: one JSON cell per selected column, `None` for NULL.
pub type Row = Vec<Option<Value>>;

/// The SQL spelling differences between the databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The text of parameter `n` (1-based).
    pub fn placeholder(self, n: usize) -> String {
        let mut s = String::with_capacity(6);
        self.push_placeholder(&mut s, n);
        s
    }

    /// Appends [`Dialect::placeholder`] to `out`.
    pub fn push_placeholder(self, out: &mut String, n: usize) {
        out.push(match self {
            Dialect::Postgres => '$',
            Dialect::Sqlite => '?',
        });
        // Digits by hand: `write!` costs more than the rest of a row's statement text.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
    }

    /// How a column is selected so that [`Conn::query`] can turn it into JSON. `prefix` is
    /// the table alias (`t.`), empty in `RETURNING` (SQLite allows no alias there).
    pub fn select_expr(self, col: &Column, prefix: &str) -> String {
        let q = quote_ident(&col.name);
        match self {
            // The server renders every type as JSON (numbers stay numbers, timestamps become
            // ISO 8601 text, NULL stays NULL), so no type needs a client-side decoder.
            Dialect::Postgres => format!("to_json({prefix}{q})::text"),
            Dialect::Sqlite => format!("{prefix}{q}"),
        }
    }

    /// A column's value as comparable text, for [`ColKind::Other`] columns.
    pub fn text_expr(self, col: &Column) -> String {
        let q = quote_ident(&col.name);
        match self {
            Dialect::Postgres => format!("(to_json(t.{q}) #>> '{{}}')"),
            Dialect::Sqlite => format!("CAST(t.{q} AS TEXT)"),
        }
    }
}

/// `"name"` with embedded quotes doubled: the only way a name enters SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A live connection to one database.
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;
    /// The table's columns, from the catalog; a missing table is a `Schema` error.
    fn table_info(&mut self, table: &str) -> Result<TableInfo, DbError>;
    /// Runs a query and streams its rows (cells as [`Dialect::select_expr`] produced them).
    fn query(
        &mut self,
        sql: &str,
        params: &[Param],
        f: &mut dyn FnMut(Row) -> ControlFlow<()>,
    ) -> Result<(), DbError>;
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError>;
    /// Runs fixed SQL without parameters (`BEGIN`, `SAVEPOINT ...`) in one round trip.
    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.execute(sql, &[]).map(|_| ())
    }
    /// Whether the connection is unusable and must not go back to the pool.
    fn is_broken(&self) -> bool;
}

/// Connections kept for reuse. Connecting is lazy: a pool never connects until a set is used,
/// so recond starts while the database is down, and each use reports the failure then.
pub struct Pool {
    idle: Mutex<Vec<Box<dyn Conn>>>,
    connect: Box<dyn Fn() -> Result<Box<dyn Conn>, DbError> + Send + Sync>,
}

/// Idle connections kept beyond that are closed (the engine's worker threads each hold one
/// while they work).
const MAX_IDLE: usize = 16;

impl Pool {
    pub fn new(
        connect: impl Fn() -> Result<Box<dyn Conn>, DbError> + Send + Sync + 'static,
    ) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            connect: Box::new(connect),
        }
    }

    /// Runs `f` on a pooled connection (connecting when none is idle). A connection that
    /// broke is dropped instead of being returned.
    ///
    /// An idle connection may have died unnoticed (the server restarted): when one fails with
    /// a connection error and reports itself broken, `f` runs once more on a fresh
    /// connection. The statement never reached a live server, so running it again cannot
    /// apply it twice.
    pub fn with<T>(
        &self,
        mut f: impl FnMut(&mut dyn Conn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let taken = self.idle.lock().pop();
        let Some(mut conn) = taken else {
            let mut conn = (self.connect)()?;
            let out = f(conn.as_mut());
            self.give_back(conn);
            return out;
        };
        match f(conn.as_mut()) {
            Err(e) if e.kind == DbErrorKind::Connect && conn.is_broken() => {
                // The pool's other idle connections date from the same server: drop them too.
                self.idle.lock().clear();
                let mut fresh = (self.connect)()?;
                let out = f(fresh.as_mut());
                self.give_back(fresh);
                out
            }
            out => {
                self.give_back(conn);
                out
            }
        }
    }

    fn give_back(&self, conn: Box<dyn Conn>) {
        if !conn.is_broken() {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }
}
