//! The statements of single-row work on one connection: read, insert, update and delete one
//! row by key, each returning the stored row (`RETURNING`) as an object. The set's own writes
//! and its batches (see `batch`) both run these, so a row is written the same way either way.

use std::ops::ControlFlow;

use serde_json::{Map, Value};

use super::db::{quote_ident, Column, Conn, DbError, DbErrorKind, Dialect, Param};
use super::model::Model;

/// `SELECT <selected columns> FROM <table> AS t`.
pub fn select(m: &Model, d: Dialect) -> String {
    let cols: Vec<String> = m.selected.iter().map(|c| d.select_expr(c, "t.")).collect();
    format!("SELECT {} FROM {} AS t", cols.join(", "), m.table)
}

/// ` RETURNING <selected columns>`.
pub fn returning(m: &Model, d: Dialect) -> String {
    let cols: Vec<String> = m.selected.iter().map(|c| d.select_expr(c, "")).collect();
    format!(" RETURNING {}", cols.join(", "))
}

/// Runs a statement that returns at most one row (`RETURNING`) and makes it an object.
pub fn one_row(
    conn: &mut dyn Conn,
    m: &Model,
    sql: &str,
    params: &[Param],
) -> Result<Option<Value>, DbError> {
    let mut row = None;
    conn.query(sql, params, &mut |r| {
        row = Some(r);
        ControlFlow::Continue(())
    })?;
    row.map(|r| m.object(r)).transpose()
}

pub fn read_row(conn: &mut dyn Conn, m: &Model, id: &str) -> Result<Option<Value>, DbError> {
    let Some(key) = m.key_param(id) else {
        return Ok(None);
    };
    let d = conn.dialect();
    let sql = format!(
        "{} WHERE t.{} = {}",
        select(m, d),
        quote_ident(&m.key.name),
        d.placeholder(1)
    );
    one_row(conn, m, &sql, &[key])
}

/// The columns and values of a new row: `body`'s attributes, and the key from `id` when one
/// is given (it must agree with a key attribute in the body).
pub fn create_values<'m>(
    m: &'m Model,
    id: Option<&str>,
    body: &Map<String, Value>,
) -> Result<Vec<(&'m Column, Param)>, DbError> {
    let mut values = m
        .write_values(body, None)
        .map_err(|e| DbError::new(DbErrorKind::Constraint, e))?;
    if let Some(id) = id {
        let key = m.key_param(id).ok_or_else(|| {
            DbError::new(
                DbErrorKind::Constraint,
                format!(
                    "\"{id}\" is not a valid value for the key column {} ({})",
                    m.key.name, m.key.sql_type
                ),
            )
        })?;
        match values.iter().find(|(c, _)| c.name == m.key.name) {
            Some((_, p)) if !same_key(p, &key) => {
                return Err(DbError::new(
                    DbErrorKind::Constraint,
                    format!("the id {id} differs from the key column's value in the body"),
                ))
            }
            Some(_) => {}
            None => values.push((&m.key, key)),
        }
    }
    Ok(values)
}

/// `INSERT INTO <table> (<cols>) VALUES (...), ... RETURNING ...` for `rows` rows of `cols`,
/// placeholders numbered row after row.
pub fn insert_sql(m: &Model, d: Dialect, cols: &[&Column], rows: usize) -> String {
    let mut sql = insert_values_sql(m, d, cols, rows);
    sql.push_str(&returning(m, d));
    sql
}

/// [`insert_sql`] without its `RETURNING` clause. Written into one string: a batch's
/// statement has ten thousand placeholders, and a string for each cost more than the rows'
/// values.
pub fn insert_values_sql(m: &Model, d: Dialect, cols: &[&Column], rows: usize) -> String {
    use std::fmt::Write;
    if cols.is_empty() {
        // Only ever one row: a row of defaults.
        return format!("INSERT INTO {} AS t DEFAULT VALUES", m.table);
    }
    let mut sql = String::with_capacity(64 + 24 * cols.len() + rows * cols.len() * 8);
    // Writing to a String cannot fail.
    let _ = write!(sql, "INSERT INTO {} AS t (", m.table);
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&quote_ident(&c.name));
    }
    sql.push_str(") VALUES ");
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for i in 0..cols.len() {
            n += 1;
            if i > 0 {
                sql.push_str(", ");
            }
            d.push_placeholder(&mut sql, n);
        }
        sql.push(')');
    }
    sql
}

pub fn create_row(
    conn: &mut dyn Conn,
    m: &Model,
    id: Option<&str>,
    body: &Map<String, Value>,
) -> Result<Value, DbError> {
    let values = create_values(m, id, body)?;
    let (cols, params): (Vec<&Column>, Vec<Param>) = values.into_iter().unzip();
    let sql = insert_sql(m, conn.dialect(), &cols, 1);
    one_row(conn, m, &sql, &params)?
        .ok_or_else(|| DbError::new(DbErrorKind::Other, "the insert returned no row".to_string()))
}

/// Writes `body`'s attributes to the row of `id`, whose stored object is `current` (attributes
/// absent from `body` keep their values, as an OpenICF update does).
pub fn update_row(
    conn: &mut dyn Conn,
    m: &Model,
    id: &str,
    current: &Value,
    body: &Map<String, Value>,
) -> Result<Value, DbError> {
    let empty = Map::new();
    let cur = current.as_object().unwrap_or(&empty);
    let values = m
        .write_values(body, Some(cur))
        .map_err(|e| DbError::new(DbErrorKind::Constraint, e))?;
    if values.is_empty() {
        return Ok(current.clone());
    }
    let d = conn.dialect();
    let mut params = Vec::new();
    let mut sets = Vec::new();
    for (col, p) in values {
        params.push(p);
        sets.push(format!(
            "{} = {}",
            quote_ident(&col.name),
            d.placeholder(params.len())
        ));
    }
    let key = m.key_param(id).ok_or_else(|| {
        DbError::new(
            DbErrorKind::Other,
            format!("{id} is not a key of the table"),
        )
    })?;
    params.push(key);
    let sql = format!(
        "UPDATE {} AS t SET {} WHERE t.{} = {}{}",
        m.table,
        sets.join(", "),
        quote_ident(&m.key.name),
        d.placeholder(params.len()),
        returning(m, d)
    );
    one_row(conn, m, &sql, &params)?.ok_or_else(|| {
        DbError::new(
            DbErrorKind::Other,
            format!("the row {id} disappeared during the update"),
        )
    })
}

/// Deletes the row of `id`: the object it held, or None when there was no such row.
pub fn delete_row(conn: &mut dyn Conn, m: &Model, id: &str) -> Result<Option<Value>, DbError> {
    let Some(key) = m.key_param(id) else {
        return Ok(None);
    };
    let d = conn.dialect();
    let sql = format!(
        "DELETE FROM {} AS t WHERE t.{} = {}{}",
        m.table,
        quote_ident(&m.key.name),
        d.placeholder(1),
        returning(m, d)
    );
    one_row(conn, m, &sql, &[key])
}

fn same_key(a: &Param, b: &Param) -> bool {
    let text = |p: &Param| match p {
        Param::Text(s) => Some(s.clone()),
        Param::Int(i) => Some(i.to_string()),
        _ => None,
    };
    text(a) == text(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sql::db::ColKind;

    fn col(name: &str) -> Column {
        Column {
            name: name.into(),
            sql_type: "text".into(),
            kind: ColKind::Text,
        }
    }

    #[test]
    fn a_multi_row_insert_numbers_its_placeholders_row_after_row() {
        let m = Model {
            table: "\"people\"".into(),
            key: col("uid"),
            attrs: Vec::new(),
            selected: vec![col("uid")],
            enable_empty_string: false,
            change_log: None,
        };
        let (a, b) = (col("uid"), col("mail"));
        let cols = [&a, &b];
        assert_eq!(
            insert_values_sql(&m, Dialect::Postgres, &cols, 3),
            "INSERT INTO \"people\" AS t (\"uid\", \"mail\") VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert_eq!(
            insert_values_sql(&m, Dialect::Sqlite, &cols[..1], 2),
            "INSERT INTO \"people\" AS t (\"uid\") VALUES (?1), (?2)"
        );
        assert_eq!(
            insert_values_sql(&m, Dialect::Postgres, &[], 1),
            "INSERT INTO \"people\" AS t DEFAULT VALUES"
        );
        assert!(insert_sql(&m, Dialect::Postgres, &cols, 1).contains(") RETURNING "));
        for n in [0, 9, 10, 99, 100, 65_535, usize::MAX] {
            assert_eq!(Dialect::Postgres.placeholder(n), format!("${n}"));
        }
    }
}
