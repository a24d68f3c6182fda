//! liveSync by `changeLogColumn` (contract §7): a row changed since a token when its change-log
//! column (a timestamp or a number the application raises on every write) is past the token's.
//!
//! The token is `{"value": <the highest change-log value seen>, "ids": [<keys seen at that
//! value>]}`. The next read asks for rows at or above that value and skips the keys already
//! seen at it, so rows that share the boundary value (two writes in the same millisecond, one
//! committed after the read) are neither lost nor delivered twice. A read stops after
//! [`MAX_CHANGES`] rows, at the end of a value (never in the middle of the rows sharing one),
//! so a token always ends a complete value; the next call continues from it.
//!
//! Limits, as for IDM's connector: a deleted row leaves nothing to see, so deletes are not
//! reported (a reconciliation finds them); a row whose change-log column is NULL is never
//! reported; an application that writes a change-log value lower than one already read (a
//! clock going back, a transaction committing long after it took its value) is not seen.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use serde_json::{json, Value};

use super::db::{quote_ident, Column, Conn, DbError, DbErrorKind, Param};
use super::model::Model;
use crate::objects::Change;

/// The most changes one call answers (more follow on the next call).
pub const MAX_CHANGES: usize = 10_000;

/// A token as read back: the boundary value and the keys seen at it.
pub struct Token {
    value: Value,
    ids: BTreeSet<String>,
}

impl Token {
    /// Reads a token this module made; anything else is refused with a message.
    pub fn parse(v: &Value) -> Result<Token, String> {
        let bad = || format!("not a liveSync token of a database table: {v}");
        let obj = v.as_object().ok_or_else(bad)?;
        let value = obj.get("value").cloned().ok_or_else(bad)?;
        if value.is_array() || value.is_object() {
            return Err(bad());
        }
        let ids = match obj.get("ids") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            None => BTreeSet::new(),
            Some(_) => return Err(bad()),
        };
        Ok(Token { value, ids })
    }

    fn json(&self) -> Value {
        json!({"value": self.value, "ids": self.ids.iter().collect::<Vec<_>>()})
    }
}

fn param(v: &Value) -> Param {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Param::Int(i),
            None => n.as_f64().map(Param::Float).unwrap_or(Param::Null),
        },
        Value::String(s) => Param::Text(s.clone()),
        Value::Bool(b) => Param::Bool(*b),
        _ => Param::Null,
    }
}

/// Rows with their change-log value, in change order, from `cond`.
fn read(
    conn: &mut dyn Conn,
    m: &Model,
    col: &Column,
    cond: &str,
    params: &[Param],
    f: &mut dyn FnMut(Value, Value) -> ControlFlow<()>,
) -> Result<(), DbError> {
    let d = conn.dialect();
    let mut cols: Vec<String> = m.selected.iter().map(|c| d.select_expr(c, "t.")).collect();
    cols.push(d.select_expr(col, "t."));
    let sql = format!(
        "SELECT {} FROM {} AS t WHERE {cond} ORDER BY t.{}, t.{}",
        cols.join(", "),
        m.table,
        quote_ident(&col.name),
        quote_ident(&m.key.name)
    );
    let mut failed = None;
    conn.query(&sql, params, &mut |mut row| {
        let value = row.pop().flatten().unwrap_or(Value::Null);
        match m.object(row) {
            Ok(o) => f(value, o),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    failed.map_or(Ok(()), Err)
}

fn id_of(o: &Value) -> String {
    o.get("_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The first call: the current highest value (and its keys) as the token, no changes.
pub fn first(conn: &mut dyn Conn, m: &Model, col: &Column) -> Result<Value, DbError> {
    let q = quote_ident(&col.name);
    let cond = format!("t.{q} = (SELECT max(s.{q}) FROM {} AS s)", m.table);
    let mut token = Token {
        value: Value::Null,
        ids: BTreeSet::new(),
    };
    read(conn, m, col, &cond, &[], &mut |value, o| {
        token.value = value;
        token.ids.insert(id_of(&o));
        ControlFlow::Continue(())
    })?;
    Ok(token.json())
}

/// The changes after `token` and the token that ends them.
pub fn since(
    conn: &mut dyn Conn,
    m: &Model,
    col: &Column,
    token: &Token,
) -> Result<(Vec<Change>, Value), DbError> {
    let q = quote_ident(&col.name);
    let d = conn.dialect();
    let (cond, params) = if token.value.is_null() {
        (format!("t.{q} IS NOT NULL"), Vec::new())
    } else {
        (
            format!("t.{q} >= {}", d.placeholder(1)),
            vec![param(&token.value)],
        )
    };
    let mut changes = Vec::new();
    let mut last = token.value.clone();
    let mut at_last: BTreeSet<String> = token.ids.clone();
    read(conn, m, col, &cond, &params, &mut |value, o| {
        let id = id_of(&o);
        if value == token.value && token.ids.contains(&id) {
            return ControlFlow::Continue(());
        }
        if value != last {
            if changes.len() >= MAX_CHANGES {
                return ControlFlow::Break(());
            }
            last = value;
            at_last.clear();
        }
        at_last.insert(id.clone());
        changes.push(Change {
            id,
            object: Some(o),
        });
        ControlFlow::Continue(())
    })?;
    if last.is_null() && !changes.is_empty() {
        return Err(DbError::new(
            DbErrorKind::Other,
            "a changed row has no change-log value".to_string(),
        ));
    }
    let next = Token {
        value: last,
        ids: at_last,
    };
    Ok((changes, next.json()))
}
