//! What an assessment reads: links (either direction), targets, correlation candidates,
//! validSource/validTarget/sourceCondition, link qualifiers.

use super::*;

// ---- links ---------------------------------------------------------------------------------

impl Ctx<'_> {
    pub(super) fn norm_source(&self, id: &str) -> String {
        if self.mapping.source_ids_case_sensitive {
            id.to_string()
        } else {
            id.to_lowercase()
        }
    }

    pub(super) fn norm_target(&self, id: &str) -> String {
        if self.mapping.target_ids_case_sensitive {
            id.to_string()
        } else {
            id.to_lowercase()
        }
    }

    /// The link of a source. What was read is noted in the unit's batch: a link the unit
    /// then writes has its compare-and-swap precondition answered from this read, not read
    /// again, unless the key was written in between (see `storage::locks`).
    pub(super) fn link_for_source(
        &self,
        unit: &mut Unit,
        q: &str,
        sid: &str,
    ) -> Result<Option<Link>, WorkerError> {
        if !self.mapping.enable_linking {
            return Ok(None);
        }
        let sid = self.norm_source(sid);
        let lt = &self.mapping.link_type;
        let store = &self.inner.store;
        let r = if self.mapping.links_reversed {
            store.link_by_second_for(&mut unit.batch, lt, q, &sid)
        } else {
            store.link_by_first_for(&mut unit.batch, lt, q, &sid)
        };
        r.map_err(WorkerError::store("reading a link"))
    }

    /// The link of a target (noted in the unit's batch, as in [`Ctx::link_for_source`]).
    pub(super) fn link_for_target(
        &self,
        unit: &mut Unit,
        q: &str,
        tid: &str,
    ) -> Result<Option<Link>, WorkerError> {
        if !self.mapping.enable_linking {
            return Ok(None);
        }
        let tid = self.norm_target(tid);
        let lt = &self.mapping.link_type;
        let store = &self.inner.store;
        let r = if self.mapping.links_reversed {
            store.link_by_first_for(&mut unit.batch, lt, q, &tid)
        } else {
            store.link_by_second_for(&mut unit.batch, lt, q, &tid)
        };
        r.map_err(WorkerError::store("reading a link"))
    }

    pub(super) fn link_source<'l>(&self, l: &'l Link) -> &'l str {
        if self.mapping.links_reversed {
            &l.second_id
        } else {
            &l.first_id
        }
    }

    pub(super) fn link_target<'l>(&self, l: &'l Link) -> &'l str {
        if self.mapping.links_reversed {
            &l.first_id
        } else {
            &l.second_id
        }
    }

    /// Writes (or repoints) the link between a source and a target into the unit's batch.
    pub(super) fn stage_link(
        &self,
        unit: &mut Unit,
        q: &str,
        sid: &str,
        tid: &str,
        existing: Option<&Link>,
    ) -> Result<bool, WorkerError> {
        if !self.mapping.enable_linking {
            return Ok(false);
        }
        let (sid, tid) = (self.norm_source(sid), self.norm_target(tid));
        if existing.is_some_and(|l| self.link_source(l) == sid && self.link_target(l) == tid) {
            return Ok(false);
        }
        let (first, second) = if self.mapping.links_reversed {
            (tid.clone(), sid)
        } else {
            (sid, tid.clone())
        };
        let link = Link {
            link_type: self.mapping.link_type.clone(),
            qualifier: q.to_string(),
            first_id: first,
            second_id: second,
            rev: existing.map(|l| l.rev + 1).unwrap_or(1),
        };
        // Compare-and-swap on the link table: the link read (or its absence) must still be
        // there, and the new target-side key must be free, or the store refuses the batch.
        let b = &mut unit.batch;
        let lt = &link.link_type;
        match existing {
            Some(old) => b.expect_link(lt, q, &old.first_id, Expect::Rev(old.rev)),
            None => b.expect_link(lt, q, &link.first_id, Expect::Absent),
        }
        if existing.is_none_or(|old| old.first_id != link.first_id) && existing.is_some() {
            b.expect_link(lt, q, &link.first_id, Expect::Absent);
        }
        if existing.is_none_or(|old| old.second_id != link.second_id) {
            b.expect_no_link_to_second(lt, q, &link.second_id);
        }
        match existing {
            // Repointing keeps the same forward key; the old reverse key must go.
            Some(old) if old.first_id == link.first_id => b.put_link(&link, Some(&old.second_id)),
            Some(old) => {
                b.delete_link(old);
                b.put_link(&link, None)
            }
            None => b.put_link(&link, None),
        }
        .map_err(WorkerError::store("staging a link"))?;
        Ok(true)
    }

    // ---- targets ---------------------------------------------------------------------------

    /// Claims the correlation terms of a target body this object writes (old or new).
    pub(super) fn claim_target_terms(&self, unit: &mut Unit, body: &Map<String, Value>) {
        for ptr in &self.correlation_fields {
            if let Some(v) = ptr.get_in(body) {
                unit.keys.push(term_key(&ptr.to_string(), v));
            }
        }
    }

    pub(super) fn read_target(&self, _unit: &Unit, id: &str) -> Result<Option<Value>, WorkerError> {
        match &self.targets {
            Targets::Store(s) => {
                let found = s.get(id).map_err(WorkerError::from_set)?;
                match found {
                    Some(o) => Ok(Some(crate::objects::with_meta(
                        &o.id,
                        &o.rev.to_string(),
                        o.body,
                    ))),
                    None => Ok(None),
                }
            }
            Targets::Cache(c) => Ok(c.objects.get(id).cloned()),
        }
    }

    pub(super) fn correlate(
        &self,
        ws: &mut WorkerScripts,
        unit: &mut Unit,
        source: &Value,
        q: &str,
    ) -> Result<Option<Vec<Value>>, WorkerError> {
        if !self.mapping.has_correlation(q)
            || (self.target_was_empty && !self.mapping.correlate_empty_target_set)
        {
            return Ok(None);
        }
        let start = Instant::now();
        let lq = Value::String(q.to_string());
        let result = if let Some(script) = &self.mapping.correlation_script {
            let v = ws
                .eval(script, &[("source", source), ("linkQualifier", &lq)])
                .map_err(WorkerError::script)?;
            match v {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => {
                    return Err(WorkerError::script(format!(
                        "correlationScript returned {other}, expected a list of objects"
                    )))
                }
            }
        } else {
            let filter = match self.mapping.correlation_for(q) {
                Some(Correlation::Tree(tree)) => {
                    engine::tree_filter(self.mapping, tree, source, q, ws)
                        .map_err(WorkerError::script)?
                }
                Some(Correlation::QueryScript(s)) => {
                    let params = ws
                        .eval(s, &[("source", source), ("linkQualifier", &lq)])
                        .map_err(WorkerError::script)?;
                    if params.is_null() {
                        return Ok(Some(Vec::new()));
                    }
                    QueryRequest::from_json(&params)
                        .map_err(|e| {
                            WorkerError::script(format!(
                                "correlationQuery returned {params}: {}",
                                e.message
                            ))
                        })?
                        .filter
                }
                Some(Correlation::Static(params)) => {
                    QueryRequest::from_json(params)
                        .map_err(|e| {
                            WorkerError::script(format!("correlationQuery: {}", e.message))
                        })?
                        .filter
                }
                None => return Ok(None),
            };
            // Two sources whose correlation asks for the same value depend on each other
            // (the first may create the target the second must then find).
            // A target write claims the same keys for its old and new values (see
            // `claim_target_terms`), so a correlation never misses a target a concurrent unit
            // is creating or changing. (Only conjunctive equality terms give keys.)
            for (ptr, value) in filter.equality_terms() {
                unit.keys.push(term_key(&ptr.to_string(), value));
            }
            match &self.targets {
                Targets::Store(s) => s.find(&filter).map_err(WorkerError::from_set)?,
                // A directory answers from its own indexes, and sees targets this run wrote.
                Targets::Cache(_) if self.target_set.evaluates_queries() => self
                    .target_set
                    .find(&filter)
                    .map_err(WorkerError::from_set)?,
                Targets::Cache(c) => c.find(&filter),
            }
        };
        // IDM names the task by how the mapping correlates.
        let metric = if self.mapping.correlation_script.is_some() {
            "correlationScript"
        } else {
            "correlationQuery"
        };
        unit.tally.time(metric, start.elapsed().as_nanos() as u64);
        Ok(Some(result))
    }

    pub(super) fn valid(
        &self,
        ws: &mut WorkerScripts,
        script: &Option<CompiledScript>,
        var: &str,
        obj: &Value,
        q: &str,
    ) -> Result<bool, WorkerError> {
        let Some(s) = script else { return Ok(true) };
        // IDM puts the link qualifier in scope for validSource and validTarget too.
        let lq = Value::String(q.to_string());
        match ws
            .eval(s, &[(var, obj), ("linkQualifier", &lq)])
            .map_err(WorkerError::script)?
        {
            Value::Bool(b) => Ok(b),
            _ => Err(WorkerError::script(format!(
                "Expecting boolean value from {}",
                if var == "source" {
                    "validSource"
                } else {
                    "validTarget"
                }
            ))),
        }
    }

    pub(super) fn source_qualifies(
        &self,
        ws: &mut WorkerScripts,
        source: &Value,
        q: &str,
    ) -> Result<bool, WorkerError> {
        if !self.valid(ws, &self.mapping.valid_source, "source", source, q)? {
            return Ok(false);
        }
        if let Some(cond) = &self.mapping.source_condition {
            let scope = json!({ "source": source, "linkQualifier": q });
            let lq = Value::String(q.to_string());
            return engine::check_condition(
                cond,
                &scope,
                &[("source", source), ("linkQualifier", &lq)],
                ws,
            )
            .map_err(WorkerError::script);
        }
        Ok(true)
    }

    pub(super) fn qualifiers(
        &self,
        ws: &mut WorkerScripts,
        object: &Value,
        return_all: bool,
    ) -> Result<Cow<'_, [String]>, WorkerError> {
        match &self.mapping.qualifiers {
            Qualifiers::Static(q) => Ok(Cow::Borrowed(q.as_slice())),
            Qualifiers::Script(s) => {
                let m = json!({ "name": self.mapping.name, "source": self.mapping.source, "target": self.mapping.target });
                let ra = Value::Bool(return_all);
                let returned = ws
                    .eval(
                        s,
                        &[
                            ("mapping", &m),
                            ("object", object),
                            ("returnAll", &ra),
                            ("oldValue", &Value::Null),
                        ],
                    )
                    .map_err(WorkerError::script)?;
                match returned {
                    Value::Array(items) => Ok(Cow::Owned(
                        items
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    )),
                    Value::String(s) => Ok(Cow::Owned(vec![s])),
                    other => Err(WorkerError::script(format!(
                        "linkQualifiers script returned {other}, expected a list of strings"
                    ))),
                }
            }
        }
    }
}
