//! [`SqlSet`]: one database table as an object set (`system/<name>/<objectType>`).
//!
//! * Nothing connects until the set is used; the table's columns are read from the catalog on
//!   first use and kept (see `model`). A database that is down fails that use with a message
//!   naming it, so the server starts regardless and a run fails fast and clearly.
//! * Reads stream: scans and unsorted queries page by key (`WHERE key > last ORDER BY key
//!   LIMIT n`), so neither side holds a large table in memory and page n costs what page 1
//!   costs. Filters run in the database (see `filter`).
//! * Each write is one statement in autocommit, returning the stored row (`RETURNING`): the
//!   `ObjectSet` trait hands over one object at a time, so there is no unit of work to wrap
//!   in a transaction here, and a failed write (a NOT NULL or unique violation) fails that
//!   one entry with the database's message while the others go on.
//! * `_rev` is a hash of the returned object; `If-Match` is checked against it before the
//!   write (the database has no revision column to compare in the statement).

use std::ops::ControlFlow;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::config::{Backend, DbConfig};
use super::db::{quote_ident, Conn, DbError, DbErrorKind, Dialect, Param, Pool};
use super::filter::translate;
use super::model::Model;
use crate::idm::ObjectType;
use crate::objects::paging::{self, QueryRequest, QueryResult};
use crate::objects::{body_object, check_id, ObjectError, ObjectErrorKind, ObjectSet};
use crate::query::Filter;

/// Rows fetched per round trip when scanning.
const PAGE: usize = 1000;

pub struct SqlSet {
    name: String,
    cfg: DbConfig,
    object_type: Option<ObjectType>,
    pool: Pool,
    model: Mutex<Option<Arc<Model>>>,
}

impl SqlSet {
    pub fn new(name: &str, cfg: DbConfig, object_type: Option<ObjectType>) -> SqlSet {
        let backend = cfg.backend.clone();
        SqlSet {
            name: name.to_string(),
            cfg,
            object_type,
            pool: Pool::new(move || match &backend {
                Backend::Postgres(t) => super::pg::connect(t),
                Backend::Sqlite(p) => super::sqlite::connect(p),
            }),
            model: Mutex::new(None),
        }
    }

    fn err(&self, e: DbError) -> ObjectError {
        let kind = match e.kind {
            DbErrorKind::Duplicate => ObjectErrorKind::AlreadyExists,
            DbErrorKind::Constraint => ObjectErrorKind::BadRequest,
            DbErrorKind::Connect | DbErrorKind::Timeout => ObjectErrorKind::Unavailable,
            DbErrorKind::Schema | DbErrorKind::Other => ObjectErrorKind::Internal,
        };
        let context = match e.kind {
            // Infrastructure failures name the database; per-object ones stay short.
            DbErrorKind::Connect | DbErrorKind::Schema | DbErrorKind::Timeout => {
                format!("{} ({})", self.name, self.cfg.describe())
            }
            _ => self.name.clone(),
        };
        ObjectError::new(kind, format!("{context}: {}", e.message))
    }

    /// Runs `f` with a pooled connection and the resolved model.
    fn with<T>(
        &self,
        mut f: impl FnMut(&mut dyn Conn, &Model) -> Result<T, DbError>,
    ) -> Result<T, ObjectError> {
        self.pool
            .with(|conn| {
                let model = self.model(conn)?;
                f(conn, &model)
            })
            .map_err(|e| self.err(e))
    }

    fn model(&self, conn: &mut dyn Conn) -> Result<Arc<Model>, DbError> {
        if let Some(m) = self.model.lock().as_ref() {
            return Ok(m.clone());
        }
        let info = conn.table_info(&self.cfg.table)?;
        let m = Arc::new(Model::resolve(&self.cfg, self.object_type.as_ref(), &info)?);
        *self.model.lock() = Some(m.clone());
        Ok(m)
    }

    fn select(m: &Model, d: Dialect) -> String {
        let cols: Vec<String> = m.selected.iter().map(|c| d.select_expr(c, "t.")).collect();
        format!("SELECT {} FROM {} AS t", cols.join(", "), m.table)
    }

    fn returning(m: &Model, d: Dialect) -> String {
        let cols: Vec<String> = m.selected.iter().map(|c| d.select_expr(c, "")).collect();
        format!(" RETURNING {}", cols.join(", "))
    }

    /// Objects matching `filter` with keys after `after`, in key order, up to `limit` rows
    /// (0: no limit).
    fn page(
        &self,
        filter: &Filter,
        after: Option<&Value>,
        limit: usize,
    ) -> Result<Vec<Value>, ObjectError> {
        self.with(|conn, m| {
            let d = conn.dialect();
            let mut params = Vec::new();
            let mut cond = translate(filter, m, d, &mut params);
            if let Some(last) = after {
                params.push(match last {
                    Value::Number(n) => n
                        .as_i64()
                        .map(Param::Int)
                        .unwrap_or(Param::Text(n.to_string())),
                    Value::String(s) => Param::Text(s.clone()),
                    other => Param::Text(other.to_string()),
                });
                cond = format!(
                    "{cond} AND t.{} > {}",
                    quote_ident(&m.key.name),
                    d.placeholder(params.len())
                );
            }
            let mut sql = format!(
                "{} WHERE {cond} ORDER BY t.{}",
                Self::select(m, d),
                quote_ident(&m.key.name)
            );
            if limit > 0 {
                sql.push_str(&format!(" LIMIT {limit}"));
            }
            let mut out = Vec::new();
            let mut failed = None;
            conn.query(&sql, &params, &mut |row| match m.object(row) {
                Ok(o) => {
                    out.push(o);
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            })?;
            match failed {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
    }

    /// Keyset-paged scan: visits (id, object) in key order from after `start`.
    fn scan_from(
        &self,
        filter: &Filter,
        start: Option<Value>,
        f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>,
    ) -> Result<(), ObjectError> {
        let mut after = start;
        loop {
            let page = self.page(filter, after.as_ref(), PAGE)?;
            let full = page.len() == PAGE;
            for obj in page {
                let id = obj
                    .get("_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                after = Some(self.key_value(&id));
                if f(&id, obj).is_break() {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The key column's value for an `_id`, as the paging condition binds it.
    fn key_value(&self, id: &str) -> Value {
        let int_key = self
            .model
            .lock()
            .as_ref()
            .is_some_and(|m| m.key.kind == super::db::ColKind::Int);
        match id.parse::<i64>() {
            Ok(i) if int_key => Value::Number(i.into()),
            _ => Value::String(id.to_string()),
        }
    }

    fn check_rev(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let current = self
            .read(id)?
            .ok_or_else(|| ObjectError::not_found(&self.name, id))?;
        if let Some(r) = if_match.filter(|r| *r != "*") {
            if current.get("_rev").and_then(Value::as_str) != Some(r) {
                return Err(ObjectError::revision_mismatch(&self.name, id, r));
            }
        }
        Ok(current)
    }

    /// Writes `body`'s attributes to the row of `id` (attributes absent from `body` keep their
    /// values, as an OpenICF update does).
    fn update(
        &self,
        id: &str,
        current: &Value,
        body: Map<String, Value>,
    ) -> Result<Value, ObjectError> {
        let empty = Map::new();
        let cur = current.as_object().unwrap_or(&empty);
        self.with(|conn, m| {
            let values = m
                .write_values(&body, Some(cur))
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
                Self::returning(m, d)
            );
            one_row(conn, m, &sql, &params)?.ok_or_else(|| {
                DbError::new(
                    DbErrorKind::Other,
                    format!("the row {id} disappeared during the update"),
                )
            })
        })
    }
}

/// Runs a statement that returns at most one row (`RETURNING`) and makes it an object.
fn one_row(
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

impl ObjectSet for SqlSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        self.with(|conn, m| {
            let Some(key) = m.key_param(id) else {
                return Ok(None);
            };
            let d = conn.dialect();
            let sql = format!(
                "{} WHERE t.{} = {}",
                Self::select(m, d),
                quote_ident(&m.key.name),
                d.placeholder(1)
            );
            one_row(conn, m, &sql, &[key])
        })
    }

    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        let scan = |after: Option<&str>,
                    f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
         -> Result<(), ObjectError> {
            // The model is known once anything has been read; reading it here makes
            // key_value's integer check reliable for the first cookie.
            self.with(|_, _| Ok(()))?;
            let start = after.map(|a| self.key_value(a));
            self.scan_from(&q.filter, start, f)
        };
        paging::run(q, &scan)
    }

    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> {
        self.scan_from(&Filter::True, None, &mut |_, v| f(v))
    }

    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        self.page(filter, None, 0)
    }

    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        let body = body_object(body)?;
        if let Some(id) = id {
            check_id(id)?;
        }
        self.with(|conn, m| {
            let mut values = m
                .write_values(&body, None)
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
                    None => values.push((m.key.clone(), key)),
                }
            }
            let d = conn.dialect();
            let (cols, params): (Vec<_>, Vec<_>) = values.into_iter().unzip();
            let sql = if cols.is_empty() {
                format!(
                    "INSERT INTO {} AS t DEFAULT VALUES{}",
                    m.table,
                    Self::returning(m, d)
                )
            } else {
                let names: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
                let phs: Vec<String> = (1..=params.len()).map(|i| d.placeholder(i)).collect();
                format!(
                    "INSERT INTO {} AS t ({}) VALUES ({}){}",
                    m.table,
                    names.join(", "),
                    phs.join(", "),
                    Self::returning(m, d)
                )
            };
            one_row(conn, m, &sql, &params)?.ok_or_else(|| {
                DbError::new(DbErrorKind::Other, "the insert returned no row".to_string())
            })
        })
    }

    fn put(
        &self,
        id: &str,
        body: Value,
        if_match: Option<&str>,
        create_only: bool,
    ) -> Result<(Value, bool), ObjectError> {
        check_id(id)?;
        match self.read(id)? {
            Some(_) if create_only => Err(ObjectError::already_exists(&self.name, id)),
            Some(_) => {
                let current = self.check_rev(id, if_match)?;
                let body = body_object(body)?;
                Ok((self.update(id, &current, body)?, false))
            }
            None if if_match.is_some_and(|r| r != "*") => {
                Err(ObjectError::not_found(&self.name, id))
            }
            None => Ok((self.create(Some(id), body)?, true)),
        }
    }

    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError> {
        let current = self.check_rev(id, if_match)?;
        let mut before = current.as_object().cloned().unwrap_or_default();
        before.remove("_id");
        before.remove("_rev");
        let mut after = crate::objects::patch::apply(&before, ops)?;
        // Attributes the patch removed become NULL.
        for k in before.keys() {
            if !after.contains_key(k) {
                after.insert(k.clone(), Value::Null);
            }
        }
        self.update(id, &current, after)
    }

    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let current = self.check_rev(id, if_match)?;
        self.with(|conn, m| {
            let key = m.key_param(id).ok_or_else(|| {
                DbError::new(
                    DbErrorKind::Other,
                    format!("{id} is not a key of the table"),
                )
            })?;
            let d = conn.dialect();
            let sql = format!(
                "DELETE FROM {} AS t WHERE t.{} = {}",
                m.table,
                quote_ident(&m.key.name),
                d.placeholder(1)
            );
            conn.execute(&sql, &[key])
        })?;
        Ok(current)
    }

    fn count(&self) -> Result<u64, ObjectError> {
        self.with(|conn, m| {
            let expr = match conn.dialect() {
                Dialect::Postgres => "to_json(count(*))::text",
                Dialect::Sqlite => "count(*)",
            };
            let mut n = 0;
            conn.query(&format!("SELECT {expr} FROM {}", m.table), &[], &mut |r| {
                n = r
                    .first()
                    .and_then(|c| c.as_ref())
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                ControlFlow::Continue(())
            })?;
            Ok(n)
        })
    }

    /// A `count(*)` is the database's own cheap count.
    fn quick_count(&self) -> Option<Result<u64, ObjectError>> {
        Some(self.count())
    }
}

fn same_key(a: &Param, b: &Param) -> bool {
    let text = |p: &Param| match p {
        Param::Text(s) => Some(s.clone()),
        Param::Int(i) => Some(i.to_string()),
        _ => None,
    };
    text(a) == text(b)
}
