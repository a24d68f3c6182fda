//! A unit of work's writes in one transaction (`ObjectSet::write_batch` of the SQL set).
//!
//! * First try, the fast way: PostgreSQL inserts consecutive creates with the same columns in
//!   multi-row `INSERT ... VALUES (...), (...) RETURNING ...` statements (one round trip for up
//!   to [`MAX_ROWS`] rows, returning only the keys: a batched create's result is `{_id}`);
//!   updates and deletes are one statement each. SQLite runs in-process,
//!   so a statement per row costs no round trip and its multi-row `RETURNING` order is not
//!   promised: it goes straight to the second way.
//! * When a statement fails for a reason of its rows (a NOT NULL, unique or check violation,
//!   a value the column's type refuses), the transaction is rolled back and the batch runs
//!   again one row at a time, each in its own savepoint: a bad row fails alone, with the
//!   database's message, and the others are written.
//! * A failure of the database itself (connection lost, timeout, table gone) is the batch's
//!   error: it is rolled back (or lost with the connection), nothing of it is reported written.
//!   A connection lost during `COMMIT` leaves the outcome unknown; the run fails on it, and
//!   the next run finds the rows that did commit.

use serde_json::{Map, Value};

use super::db::{Column, Conn, DbError, DbErrorKind, Dialect, Param};
use super::model::{id_text, Model};
use super::rows;

/// Rows per multi-row INSERT (the engine's default unit is 1,000 objects).
const MAX_ROWS: usize = 1000;
/// Bound parameters per statement, under PostgreSQL's 65,535 and SQLite's 32,766.
const MAX_PARAMS: usize = 30_000;

/// One checked write of a batch.
pub enum Write {
    Create {
        id: Option<String>,
        body: Map<String, Value>,
    },
    Update {
        id: String,
        body: Map<String, Value>,
    },
    Delete {
        id: String,
    },
}

/// Whether an error is the database's (the batch fails) rather than its rows' (one entry
/// fails).
fn infrastructure(e: &DbError, conn: &dyn Conn) -> bool {
    matches!(
        e.kind,
        DbErrorKind::Connect | DbErrorKind::Timeout | DbErrorKind::Schema
    ) || conn.is_broken()
}

/// Runs `writes` in one transaction. `began` is set once the transaction is open (after that,
/// the batch must never be run again on another connection: part of it may have reached the
/// server).
pub fn run(
    conn: &mut dyn Conn,
    m: &Model,
    writes: &[Write],
    began: &mut bool,
) -> Result<Vec<Result<Value, DbError>>, DbError> {
    conn.batch("BEGIN")?;
    *began = true;
    if conn.dialect() == Dialect::Postgres {
        match fast(conn, m, writes) {
            Ok(results) => {
                conn.batch("COMMIT")?;
                return Ok(results);
            }
            Err(e) => {
                let rolled_back = conn.batch("ROLLBACK");
                if infrastructure(&e, conn) {
                    return Err(e);
                }
                rolled_back?;
                tracing::debug!(error = %e, "a batch statement failed; its rows are written one by one");
                conn.batch("BEGIN")?;
            }
        }
    }
    match one_by_one(conn, m, writes) {
        Ok(results) => {
            conn.batch("COMMIT")?;
            Ok(results)
        }
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// One write on its own (inside the caller's transaction).
fn single(conn: &mut dyn Conn, m: &Model, w: &Write) -> Result<Value, DbError> {
    let not_found = |id: &str| DbError::new(DbErrorKind::NotFound, id.to_string());
    match w {
        Write::Create { id, body } => rows::create_row(conn, m, id.as_deref(), body),
        Write::Update { id, body } => match rows::read_row(conn, m, id)? {
            Some(current) => rows::update_row(conn, m, id, &current, body),
            None => Err(not_found(id)),
        },
        Write::Delete { id } => rows::delete_row(conn, m, id)?.ok_or_else(|| not_found(id)),
    }
}

/// Every write in its own savepoint: a row's failure is its result, the database's ends the
/// batch.
fn one_by_one(
    conn: &mut dyn Conn,
    m: &Model,
    writes: &[Write],
) -> Result<Vec<Result<Value, DbError>>, DbError> {
    let mut results = Vec::with_capacity(writes.len());
    for w in writes {
        conn.batch("SAVEPOINT recond_row")?;
        match single(conn, m, w) {
            Ok(v) => {
                conn.batch("RELEASE SAVEPOINT recond_row")?;
                results.push(Ok(v));
            }
            Err(e) if infrastructure(&e, conn) => return Err(e),
            Err(e) => {
                conn.batch("ROLLBACK TO SAVEPOINT recond_row")?;
                conn.batch("RELEASE SAVEPOINT recond_row")?;
                results.push(Err(e));
            }
        }
    }
    Ok(results)
}

/// The fast way: any error ends it (the caller rolls back and decides).
fn fast(
    conn: &mut dyn Conn,
    m: &Model,
    writes: &[Write],
) -> Result<Vec<Result<Value, DbError>>, DbError> {
    let mut results = Vec::with_capacity(writes.len());
    let mut i = 0;
    while i < writes.len() {
        let Write::Create { id, body } = &writes[i] else {
            results.push(single(conn, m, &writes[i]));
            if let Some(Err(e)) = results.last() {
                if e.kind != DbErrorKind::NotFound {
                    return Err(e.clone());
                }
            }
            i += 1;
            continue;
        };
        let first = rows::create_values(m, id.as_deref(), body)?;
        // The columns borrow the model, not the row, so the row moves into the group.
        let cols: Vec<&Column> = first.iter().map(|(c, _)| *c).collect();
        let max_rows = if cols.is_empty() {
            1
        } else {
            (MAX_PARAMS / cols.len()).clamp(1, MAX_ROWS)
        };
        let mut group = Vec::with_capacity(max_rows.min(writes.len() - i));
        group.push(first);
        let mut j = i + 1;
        while j < writes.len() && group.len() < max_rows {
            let Write::Create { id, body } = &writes[j] else {
                break;
            };
            let values = rows::create_values(m, id.as_deref(), body)?;
            if !values
                .iter()
                .map(|(c, _)| c.name.as_str())
                .eq(cols.iter().map(|c| c.name.as_str()))
            {
                break;
            }
            group.push(values);
            j += 1;
        }
        for object in insert_many(conn, m, &cols, group)? {
            results.push(Ok(object));
        }
        i = j;
    }
    Ok(results)
}

/// Inserts `group` (rows of the same columns) in one statement; `{_id}` of each row in the
/// group's order. Only the key comes back: rendering and parsing every column of every row
/// would double the statement's cost for what the engine never reads (it needs the id for
/// the link).
fn insert_many(
    conn: &mut dyn Conn,
    m: &Model,
    cols: &[&Column],
    group: Vec<Vec<(&Column, Param)>>,
) -> Result<Vec<Value>, DbError> {
    let d = conn.dialect();
    let n = group.len();
    let mut sql = rows::insert_values_sql(m, d, cols, n);
    sql.push_str(" RETURNING ");
    sql.push_str(&d.select_expr(&m.key, ""));
    // The keys the rows carry (to match RETURNING's rows), then the values move into the
    // statement's parameters: no value is copied.
    let sent_keys: Vec<Option<String>> = group
        .iter()
        .map(|row| {
            row.iter()
                .find(|(c, _)| c.name == m.key.name)
                .and_then(|(_, p)| match p {
                    Param::Text(s) => Some(s.clone()),
                    Param::Int(i) => Some(i.to_string()),
                    _ => None,
                })
        })
        .collect();
    let params: Vec<Param> = group
        .into_iter()
        .flat_map(|row| row.into_iter().map(|(_, p)| p))
        .collect();
    let mut returned: Vec<String> = Vec::with_capacity(n);
    let mut null_key = false;
    conn.query(
        &sql,
        &params,
        &mut |row| match row.into_iter().next().flatten() {
            Some(key) => {
                returned.push(id_text(&key));
                std::ops::ControlFlow::Continue(())
            }
            None => {
                null_key = true;
                std::ops::ControlFlow::Break(())
            }
        },
    )?;
    if null_key {
        return Err(DbError::new(
            DbErrorKind::Other,
            format!("a row inserted into {} has a NULL key column", m.table),
        ));
    }
    if returned.len() != n {
        return Err(DbError::new(
            DbErrorKind::Other,
            format!("an insert of {n} rows returned {}", returned.len()),
        ));
    }
    // RETURNING lists the rows as the statement inserted them, which PostgreSQL does in
    // VALUES order; matching by key (when the rows carry it) does not depend on that.
    let mut unmatched: std::collections::HashSet<&str> =
        returned.iter().map(String::as_str).collect();
    let matched = sent_keys
        .into_iter()
        .map(|k| k.filter(|k| unmatched.remove(k.as_str())))
        .collect::<Option<Vec<String>>>();
    Ok(matched
        .unwrap_or(returned)
        .into_iter()
        .map(|id| serde_json::json!({ "_id": id }))
        .collect())
}
