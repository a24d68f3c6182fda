//! `system/<name>/<type>` served by a directory: the `ObjectSet` contract over the search,
//! write and mapping modules.
//!
//! * Reads, queries, scans and `find` are directory searches with the translated filter
//!   (the directory evaluates it); `_id` lookups search for the uid attribute.
//! * Every update or delete reads the current entry first (minimal modify, If-Match on `_rev`,
//!   rename detection). A write returns the entry as the directory answered it in the
//!   post-read control of the write itself (no second round trip); when the directory sent
//!   none (no post-read support, or an update that changed nothing), it is read back.
//! * Failures name the set; a directory's refusal carries its result code and message, and
//!   an unreachable directory says which server could not be reached.

use std::ops::ControlFlow;

use serde_json::{Map, Value};

use super::batch;
use super::config::TypeConfig;
use super::entry::{is_plain, norm_dn, to_object};
use super::filter::{self, escape, Plan};
use super::pool::{Failure, Pool};
use super::search;
use super::sync::{self, SyncError};
use super::write::{self, WriteError, Written};
use crate::objects::paging::{self, QueryRequest, QueryResult};
use crate::objects::{
    body_object, check_id, check_if_match, put_kind, ChangeBatch, ObjectError, ObjectErrorKind,
    ObjectSet, PutKind, WriteOp,
};
use crate::query::Filter;

/// An object as read and its entry's dn.
type Current = (Map<String, Value>, String);

pub struct LdapSet {
    name: String,
    cfg: TypeConfig,
    pool: Pool,
    /// Whether writes ask for the post-read control (always, but see `with_post_read`).
    post_read: bool,
}

impl LdapSet {
    pub fn new(name: &str, cfg: TypeConfig) -> LdapSet {
        LdapSet {
            name: name.to_string(),
            pool: Pool::new(cfg.conn.clone()),
            post_read: true,
            cfg,
        }
    }

    /// Without the post-read control, the set behaves as against a directory that does not
    /// support it (the directory answers no entry and the set reads it back): for tests of
    /// that fallback.
    pub fn with_post_read(mut self, on: bool) -> LdapSet {
        self.post_read = on;
        self
    }

    /// The attributes a write's post-read control asks for (those an object is made of).
    fn post_read_attributes(&self) -> Option<Vec<String>> {
        self.post_read.then(|| self.cfg.read_attributes())
    }

    /// The object a write left: from the entry the write answered, else read back at its dn.
    fn written(&self, w: Written) -> Result<Value, ObjectError> {
        let Some(e) = w.entry else {
            return self.read_dn(&w.dn);
        };
        let groups = match self.cfg.groups_property() {
            Some(_) => Some(
                search::groups_of(&self.pool, &self.cfg, &e.dn)
                    .map_err(|f| self.fail(&format!("reading the groups of {}", e.dn), f))?,
            ),
            None => None,
        };
        to_object(&e, &self.cfg, groups)
            .map(Value::Object)
            .map_err(|m| ObjectError::new(ObjectErrorKind::Internal, format!("{}: {m}", self.name)))
    }

    fn fail(&self, what: &str, f: Failure) -> ObjectError {
        let kind = match f.rc() {
            Some(32) => ObjectErrorKind::NotFound,
            Some(68) => ObjectErrorKind::AlreadyExists,
            Some(16..=21 | 34 | 64..=67 | 69) => ObjectErrorKind::BadRequest,
            Some(50) => ObjectErrorKind::Conflict,
            Some(51 | 52) => ObjectErrorKind::Unavailable,
            None if matches!(f, Failure::Unreachable(_)) => ObjectErrorKind::Unavailable,
            _ => ObjectErrorKind::Internal,
        };
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" {what}")
        };
        ObjectError::new(kind, format!("{}:{what}: {f}", self.name))
    }

    fn write_fail(&self, e: WriteError) -> ObjectError {
        match e {
            WriteError::Invalid(m) => ObjectError::bad_request(format!("{}: {m}", self.name)),
            WriteError::Ldap { what, failure } => self.fail(&what, failure),
        }
    }

    /// Visits the objects a plan selects.
    fn visit(
        &self,
        plan: &Plan,
        f: &mut dyn FnMut(Value) -> ControlFlow<()>,
    ) -> Result<(), ObjectError> {
        let Plan::Search { base, filter } = plan else {
            return Ok(());
        };
        let attrs = self.cfg.read_attributes();
        // For a scan, read every membership in one search rather than one per entry.
        let memberships = match (self.cfg.groups_property(), base) {
            (Some(_), None) => Some(
                search::all_memberships(&self.pool, &self.cfg)
                    .map_err(|e| self.fail("reading group memberships", e))?,
            ),
            _ => None,
        };
        let mut bad: Option<String> = None;
        search::search(
            &self.pool,
            &self.cfg,
            base.as_deref(),
            filter,
            &attrs,
            &mut |e| {
                let groups = match (&memberships, self.cfg.groups_property()) {
                    (Some(m), _) => Some(m.get(&norm_dn(&e.dn)).cloned().unwrap_or_default()),
                    (None, Some(_)) => match search::groups_of(&self.pool, &self.cfg, &e.dn) {
                        Ok(g) => Some(g),
                        Err(err) => {
                            bad = Some(format!("reading the groups of {}: {err}", e.dn));
                            return ControlFlow::Break(());
                        }
                    },
                    (None, None) => None,
                };
                match to_object(&e, &self.cfg, groups) {
                    Ok(o) => f(Value::Object(o)),
                    Err(m) => {
                        bad = Some(m);
                        ControlFlow::Break(())
                    }
                }
            },
        )
        .map_err(|e| self.fail(&format!("searching {filter}"), e))?;
        match bad {
            Some(m) => Err(ObjectError::new(
                ObjectErrorKind::Internal,
                format!("{}: {m}", self.name),
            )),
            None => Ok(()),
        }
    }

    fn plan(&self, f: &Filter) -> Result<Plan, ObjectError> {
        filter::plan(f, &self.cfg)
            .map_err(|m| ObjectError::bad_request(format!("{}: {m}", self.name)))
    }

    /// The dn a write's body gives the entry, if any (malformed: none, the write reports it).
    pub(super) fn dn_in(&self, body: &Value) -> Option<String> {
        let obj = body.as_object()?;
        write::body_dn(&self.cfg, obj).ok().flatten()
    }

    /// The current object and its entry's dn.
    fn current(&self, id: &str) -> Result<Option<Current>, ObjectError> {
        let plan = Plan::Search {
            base: None,
            filter: format!(
                "(&{}({}={}))",
                self.cfg.type_filter(),
                self.cfg.uid_attribute,
                escape(id)
            ),
        };
        let mut found: Vec<Value> = Vec::new();
        self.visit(&plan, &mut |v| {
            found.push(v);
            ControlFlow::Continue(())
        })?;
        if found.len() > 1 {
            return Err(ObjectError::new(
                ObjectErrorKind::Conflict,
                format!(
                    "{}: {} entries have {} {id}",
                    self.name,
                    found.len(),
                    self.cfg.uid_attribute
                ),
            ));
        }
        let Some(Value::Object(obj)) = found.pop() else {
            return Ok(None);
        };
        let dn = self.dn_of(&obj, id)?;
        Ok(Some((obj, dn)))
    }

    /// The dn of an object as read (it carries it when the model has a `__NAME__` property).
    fn dn_of(&self, obj: &Map<String, Value>, id: &str) -> Result<String, ObjectError> {
        self.cfg
            .model
            .name_property()
            .and_then(|p| obj.get(&p.name))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                ObjectError::new(
                    ObjectErrorKind::NotSupported,
                    format!(
                        "{}: the object type declares no __NAME__ property, so {id} cannot be written",
                        self.name
                    ),
                )
            })
    }

    fn check_rev(&self, id: &str, if_match: Option<&str>) -> Result<Current, ObjectError> {
        self.matching(id, self.current(id)?, if_match)
    }

    /// The current object as found, if it exists and matches `If-Match`.
    fn matching(
        &self,
        id: &str,
        found: Option<Current>,
        if_match: Option<&str>,
    ) -> Result<Current, ObjectError> {
        let (obj, dn) = found.ok_or_else(|| ObjectError::not_found(&self.name, id))?;
        check_if_match(&self.name, id, &obj, if_match)?;
        Ok((obj, dn))
    }

    /// The object at `dn`, read back after a write.
    fn read_dn(&self, dn: &str) -> Result<Value, ObjectError> {
        let plan = Plan::Search {
            base: Some(dn.to_string()),
            filter: self.cfg.type_filter(),
        };
        let mut found = None;
        self.visit(&plan, &mut |v| {
            found = Some(v);
            ControlFlow::Continue(())
        })?;
        found.ok_or_else(|| {
            ObjectError::new(
                ObjectErrorKind::Internal,
                format!(
                    "{}: {dn} was written but cannot be read back with {}",
                    self.name,
                    self.cfg.type_filter()
                ),
            )
        })
    }

    fn update(
        &self,
        id: &str,
        current: &Map<String, Value>,
        dn: &str,
        body: &Map<String, Value>,
    ) -> Result<Value, ObjectError> {
        let attrs = self.post_read_attributes();
        let w = write::update(&self.pool, &self.cfg, current, dn, body, attrs.as_deref())
            .map_err(|e| self.write_fail(e))?;
        let dn = w.dn.clone();
        let obj = self.written(w)?;
        if obj.get("_id").and_then(Value::as_str) != Some(id) {
            return Err(ObjectError::new(
                ObjectErrorKind::Internal,
                format!(
                    "{}: {dn} no longer has _id {id} after the update",
                    self.name
                ),
            ));
        }
        Ok(obj)
    }
}

impl ObjectSet for LdapSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&self, id: &str) -> Result<Option<Value>, ObjectError> {
        Ok(self.current(id)?.map(|(o, _)| Value::Object(o)))
    }

    fn query(&self, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
        let plan = self.plan(&q.filter)?;
        // The directory has filtered; paging, sorting and field selection are recond's.
        let mut rest = q.clone();
        rest.filter = Filter::True;
        // Cookies are positions in the directory's (stable) result order.
        paging::run_positional(&rest, &|f| self.visit(&plan, f))
    }

    fn scan(&self, f: &mut dyn FnMut(Value) -> ControlFlow<()>) -> Result<(), ObjectError> {
        self.visit(&self.plan(&Filter::True)?, f)
    }

    fn find(&self, filter: &Filter) -> Result<Vec<Value>, ObjectError> {
        let mut out = Vec::new();
        self.visit(&self.plan(filter)?, &mut |v| {
            out.push(v);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    fn evaluates_queries(&self) -> bool {
        true
    }

    fn create(&self, id: Option<&str>, body: Value) -> Result<Value, ObjectError> {
        if let Some(id) = id {
            check_id(id)?;
        }
        let body = body_object(body)?;
        let attrs = self.post_read_attributes();
        let w = write::add(&self.pool, &self.cfg, id, &body, attrs.as_deref())
            .map_err(|e| self.write_fail(e))?;
        self.written(w)
    }

    fn put(
        &self,
        id: &str,
        body: Value,
        if_match: Option<&str>,
        create_only: bool,
    ) -> Result<(Value, bool), ObjectError> {
        check_id(id)?;
        let current = self.current(id)?;
        match put_kind(&self.name, id, current.is_some(), if_match, create_only)? {
            PutKind::Replace => {
                // One read serves the existence check and the update.
                let (current, dn) = self.matching(id, current, if_match)?;
                let body = body_object(body)?;
                Ok((self.update(id, &current, &dn, &body)?, false))
            }
            PutKind::Create => Ok((self.create(Some(id), body)?, true)),
        }
    }

    fn patch(&self, id: &str, if_match: Option<&str>, ops: &Value) -> Result<Value, ObjectError> {
        let (current, dn) = self.check_rev(id, if_match)?;
        let mut base = current.clone();
        base.remove("_id");
        base.remove("_rev");
        let body = crate::objects::patch::apply(&base, ops)?;
        self.update(id, &current, &dn, &body)
    }

    fn delete(&self, id: &str, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let (current, dn) = self.check_rev(id, if_match)?;
        write::delete(&self.pool, &self.cfg, &dn).map_err(|e| self.write_fail(e))?;
        Ok(Value::Object(current))
    }

    fn batches_writes(&self) -> bool {
        true
    }

    /// Known before the add only when the add itself writes the uid attribute (from `id` or
    /// the body's property for it) with one value; never for `entryUUID`, which the directory
    /// assigns: those creates are written one at a time to learn it.
    fn planned_id(&self, id: Option<&str>, body: &Value) -> Option<String> {
        let uid = self.cfg.uid_attribute.as_str();
        if uid.eq_ignore_ascii_case("entryUUID") {
            return None;
        }
        let from_body = self
            .cfg
            .model
            .properties
            .iter()
            .filter(|p| is_plain(p) && p.is_creatable())
            .find(|p| p.native_name.eq_ignore_ascii_case(uid))
            .and_then(|p| body.get(&p.name))
            .filter(|v| !v.is_null());
        let single = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Array(a) if a.len() == 1 => {
                a[0].as_str().filter(|s| !s.is_empty()).map(str::to_string)
            }
            _ => None,
        };
        match (id, from_body) {
            (Some(id), None) => Some(id.to_string()),
            (Some(id), Some(v)) => single(v).filter(|s| s == id),
            (None, Some(v)) => single(v),
            (None, None) => None,
        }
    }

    /// The ops go out together over the pool's connections (see `batch`); each keeps its own
    /// result, so the outer result is always `Ok`.
    fn write_batch(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<Vec<Result<Value, ObjectError>>, ObjectError> {
        Ok(batch::run(self, ops, self.cfg.conn.pool_size))
    }

    /// By `modifyTimestamp` under `baseContextsToSynchronize` (see `sync`); deletes are not
    /// reported. The token holds all the state, so `token_committed` keeps the default.
    fn changes_since(&self, token: Option<&Value>) -> Result<ChangeBatch, ObjectError> {
        sync::changes_since(&self.pool, &self.cfg, token).map_err(|e| match e {
            SyncError::BadToken(m) => ObjectError::bad_request(format!("{}: {m}", self.name)),
            SyncError::BadEntry(m) => {
                ObjectError::new(ObjectErrorKind::Internal, format!("{}: {m}", self.name))
            }
            SyncError::Directory(f) => self.fail("reading changes for liveSync", f),
        })
    }
}
