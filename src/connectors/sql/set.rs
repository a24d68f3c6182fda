//! [`SqlSet`]: one database table as an object set (`system/<name>/<objectType>`).
//!
//! * Nothing connects until the set is used; the table's columns are read from the catalog on
//!   first use and kept (see `model`). A database that is down fails that use with a message
//!   naming it, so the server starts regardless and a run fails fast and clearly.
//! * Reads stream: scans and unsorted queries page by key (`WHERE key > last ORDER BY key
//!   LIMIT n`), so neither side holds a large table in memory and page n costs what page 1
//!   costs. Filters run in the database (see `filter`).
//! * A single write (REST, scripts) is one statement in autocommit, returning the stored row
//!   (`RETURNING`). A reconciliation hands over each unit of work's writes together
//!   (`write_batch`): one transaction, multi-row inserts (see `batch`); a failed row (a NOT
//!   NULL or unique violation) fails that one entry with the database's message while the
//!   others are written.
//! * `_rev` is a hash of the returned object; `If-Match` is checked against it before the
//!   write (the database has no revision column to compare in the statement).

use std::ops::ControlFlow;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::batch::{self, Write};
use super::changes;
use super::config::{Backend, DbConfig};
use super::db::{quote_ident, Conn, DbError, DbErrorKind, Dialect, Param, Pool};
use super::filter::translate;
use super::model::Model;
use super::rows;
use crate::idm::ObjectType;
use crate::objects::paging::{self, QueryRequest, QueryResult};
use crate::objects::{
    body_object, check_id, ChangeBatch, ObjectError, ObjectErrorKind, ObjectSet, WriteOp,
};
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
            DbErrorKind::NotFound => {
                return ObjectError::not_found(&self.name, &e.message);
            }
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
                rows::select(m, d),
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
        self.with(|conn, m| rows::update_row(conn, m, id, current, &body))
    }
}

impl ObjectSet for SqlSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        self.with(|conn, m| rows::read_row(conn, m, id))
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
        self.with(|conn, m| rows::create_row(conn, m, id, &body))
    }

    fn replace(&self, id: &str, body: Value, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let current = self.check_rev(id, if_match)?;
        let body = body_object(body)?;
        self.update(id, &current, body)
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

    /// liveSync by `changeLogColumn` (see `changes`); deletes are not seen.
    fn changes_since(&self, token: Option<&Value>) -> Result<ChangeBatch, ObjectError> {
        if self.cfg.change_log_column.is_none() {
            return Err(ObjectError::new(
                ObjectErrorKind::NotSupported,
                format!(
                    "{}: liveSync needs a changeLogColumn in the provisioner's \
                     configurationProperties",
                    self.name
                ),
            ));
        }
        let token = token
            .map(changes::Token::parse)
            .transpose()
            .map_err(|e| ObjectError::bad_request(format!("{}: {e}", self.name)))?;
        self.with(|conn, m| {
            let col = m.change_log.clone().ok_or_else(|| {
                DbError::new(DbErrorKind::Schema, "no changeLogColumn".to_string())
            })?;
            match &token {
                None => Ok(ChangeBatch {
                    changes: Vec::new(),
                    token: changes::first(conn, m, &col)?,
                }),
                Some(t) => {
                    let (changes, token) = changes::since(conn, m, &col, t)?;
                    Ok(ChangeBatch { changes, token })
                }
            }
        })
    }

    fn batches_writes(&self) -> bool {
        true
    }

    /// The key the body (or `id`) gives, as the database will return it; None when the
    /// database could return it differently (padded `character(n)`, a uuid spelled another
    /// way, a key it generates).
    fn planned_id(&self, id: Option<&str>, body: &Value) -> Option<String> {
        let m = self.model.lock().clone()?;
        let t = m.key.sql_type.as_str();
        if t == "bpchar" || t == "character" || t.starts_with("character(") {
            return None;
        }
        let text = match id {
            Some(id) => id.to_string(),
            None => {
                let obj = body.as_object()?;
                let v = m
                    .attrs
                    .iter()
                    .filter(|a| a.is_key)
                    .find_map(|a| obj.get(&a.name).filter(|v| !v.is_null()))?;
                match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                    _ => return None,
                }
            }
        };
        match m.key.kind {
            super::db::ColKind::Int => text.parse::<i64>().ok().map(|i| i.to_string()),
            super::db::ColKind::Text if !text.is_empty() => Some(text),
            _ => None,
        }
    }

    fn write_batch(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<Result<Value, ObjectError>>, ObjectError> {
        // Checks that need no database fail their op alone, before the transaction.
        let mut results: Vec<Option<Result<Value, ObjectError>>> = Vec::with_capacity(ops.len());
        let mut writes = Vec::with_capacity(ops.len());
        for op in ops {
            let checked = match op {
                WriteOp::Create { id, body } => id
                    .as_deref()
                    .map_or(Ok(()), check_id)
                    .and_then(|()| body_object(body))
                    .map(|body| Write::Create { id, body }),
                WriteOp::Update { id, body } => check_id(&id)
                    .and_then(|()| body_object(body))
                    .map(|body| Write::Update { id, body }),
                WriteOp::Delete { id } => check_id(&id).map(|()| Write::Delete { id }),
            };
            match checked {
                Ok(w) => {
                    writes.push(w);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if writes.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        // The pool runs the closure again on a fresh connection when an idle one turns out
        // dead; once the transaction began, part of it may have reached the server, so the
        // batch fails instead.
        let mut began = false;
        let mut lost: Option<DbError> = None;
        let written = self.with(|conn, m| {
            if let Some(e) = lost.clone().filter(|_| began) {
                return Err(e);
            }
            let r = batch::run(conn, m, &writes, &mut began);
            if let Err(e) = &r {
                lost = Some(e.clone());
            }
            r
        })?;
        let mut written = written.into_iter();
        Ok(results
            .into_iter()
            .map(|r| match r {
                Some(r) => r,
                None => match written.next() {
                    Some(w) => w.map_err(|e| self.err(e)),
                    None => Err(ObjectError::new(
                        ObjectErrorKind::Internal,
                        format!("{}: a batch returned fewer results than writes", self.name),
                    )),
                },
            })
            .collect())
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
