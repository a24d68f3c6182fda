//! `system/<name>/<type>` served by a directory: the `ObjectSet` contract over the search,
//! write and mapping modules.
//!
//! * Reads, queries, scans and `find` are directory searches with the translated filter
//!   (the directory evaluates it); `_id` lookups search for the uid attribute.
//! * Every write reads the current entry first (minimal modify, If-Match on `_rev`, rename
//!   detection), then returns the entry as read back from the directory.
//! * Failures name the set; a directory's refusal carries its result code and message, and
//!   an unreachable directory says which server could not be reached.

use std::ops::ControlFlow;

use serde_json::{Map, Value};

use super::config::TypeConfig;
use super::entry::{norm_dn, to_object};
use super::filter::{self, escape, Plan};
use super::pool::{Failure, Pool};
use super::search;
use super::sync::{self, SyncError};
use super::write::{self, WriteError};
use crate::objects::paging::{self, QueryRequest, QueryResult};
use crate::objects::{body_object, check_id, ChangeBatch, ObjectError, ObjectErrorKind, ObjectSet};
use crate::query::Filter;

/// An object as read and its entry's dn.
type Current = (Map<String, Value>, String);

pub struct LdapSet {
    name: String,
    cfg: TypeConfig,
    pool: Pool,
}

impl LdapSet {
    pub fn new(name: &str, cfg: TypeConfig) -> LdapSet {
        LdapSet {
            name: name.to_string(),
            pool: Pool::new(cfg.conn.clone()),
            cfg,
        }
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
        let (obj, dn) = self
            .current(id)?
            .ok_or_else(|| ObjectError::not_found(&self.name, id))?;
        if let Some(r) = if_match.filter(|r| *r != "*") {
            if obj.get("_rev").and_then(Value::as_str) != Some(r) {
                return Err(ObjectError::revision_mismatch(&self.name, id, r));
            }
        }
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
        let dn = write::update(&self.pool, &self.cfg, current, dn, body)
            .map_err(|e| self.write_fail(e))?;
        let obj = self.read_dn(&dn)?;
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
        let dn = write::add(&self.pool, &self.cfg, id, &body).map_err(|e| self.write_fail(e))?;
        self.read_dn(&dn)
    }

    fn replace(&self, id: &str, body: Value, if_match: Option<&str>) -> Result<Value, ObjectError> {
        let (current, dn) = self.check_rev(id, if_match)?;
        let body = body_object(body)?;
        self.update(id, &current, &dn, &body)
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
