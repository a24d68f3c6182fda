//! Parsing one mapping object of sync.json into a [`Mapping`] (no cross-mapping checks here).
//!
//! Mapping keys are exactly IDM's (camelCase). Unknown keys are accepted and logged once as
//! "not supported"; wrong values of known keys are startup errors naming the mapping and key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::model::*;
use crate::config::ConfigError;
use crate::engine::model::{Action, Situation};
use crate::query::{self, Pointer};
use crate::script::{self, CompiledScript, ProjectEnv, ScriptEnv, ScriptSpec};

const KNOWN_KEYS: &[&str] = &[
    "name",
    "source",
    "target",
    "links",
    "properties",
    "policies",
    "correlationQuery",
    "correlationScript",
    "validSource",
    "validTarget",
    "sourceCondition",
    "linkQualifiers",
    "sourceQuery",
    "targetQuery",
    "runTargetPhase",
    "allowEmptySourceSet",
    "sourceQueryFullEntry",
    "targetQueryFullEntry",
    "prefetchLinks",
    "taskThreads",
    "feedSize",
    "correlateEmptyTargetSet",
    "enableLinking",
    "enableSync",
    "sourceIdsCaseSensitive",
    "targetIdsCaseSensitive",
    "reconAssociation",
    "onCreate",
    "onUpdate",
    "onDelete",
    "onLink",
    "onUnlink",
    "result",
    "reconGuard",
    "clusteredSourceReconEnabled",
    "reconSourceQueryPaging",
    "reconSourceQueryPageSize",
];

/// An object of a list in sync.json with its key path (`properties[2]`).
type KeyedObject<'m> = (String, &'m Map<String, Value>);

struct Ctx<'a> {
    file: &'a Path,
    project: &'a Arc<ProjectEnv>,
    mapping: String,
    /// The environment every script of this mapping gets (project and `mappingConfig`).
    env: Arc<ScriptEnv>,
}

impl Ctx<'_> {
    fn err(&self, key: &str, what: impl std::fmt::Display) -> ConfigError {
        ConfigError::new(
            self.file,
            format!("mapping \"{}\": {key}: {what}", self.mapping),
        )
    }

    fn bool(&self, m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ConfigError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(self.err(key, format!("expected true or false, got {other}"))),
        }
    }

    /// The objects of the list at `key` (none when absent), each with its key path
    /// (`properties[2]`) for errors.
    fn object_list<'m>(
        &self,
        m: &'m Map<String, Value>,
        key: &str,
    ) -> Result<Vec<KeyedObject<'m>>, ConfigError> {
        let Some(list) = m.get(key) else {
            return Ok(Vec::new());
        };
        let list = list
            .as_array()
            .ok_or_else(|| self.err(key, "expected a list"))?;
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{key}[{i}]");
                let o = v
                    .as_object()
                    .ok_or_else(|| self.err(&path, "expected an object"))?;
                Ok((path, o))
            })
            .collect()
    }

    fn string(&self, m: &Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(key, format!("expected a string, got {other}"))),
        }
    }

    fn uint(&self, m: &Map<String, Value>, key: &str) -> Result<Option<u64>, ConfigError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {v}"))),
        }
    }

    /// A script `file`, resolved as IDM does (project folder, its `script/`, the conf folder).
    fn read_script_file(&self, key: &str, f: &str) -> Result<(PathBuf, String), ConfigError> {
        let path = self.project.resolve_file(f).ok_or_else(|| {
            self.err(
                key,
                format!(
                    "script file {f} not found (looked for {})",
                    self.project.searched(f)
                ),
            )
        })?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.err(
                key,
                format!("cannot read script file {}: {e}", path.display()),
            )
        })?;
        Ok((path, text))
    }

    /// A script object `{type, source | file, globals}`.
    fn script(&self, key: &str, v: &Value) -> Result<CompiledScript, ConfigError> {
        let m = v.as_object().ok_or_else(|| {
            self.err(
                key,
                "expected a script object {\"type\", \"source\" or \"file\"}",
            )
        })?;
        let ty = m
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("text/javascript");
        if !script::is_supported_type(ty) {
            return Err(self.err(
                key,
                format!("script type \"{ty}\" is not supported (only text/javascript)"),
            ));
        }
        let mut name = format!("mapping {}, {key}", self.mapping);
        let source = match (m.get("source"), m.get("file")) {
            (Some(Value::String(s)), _) => s.clone(),
            (_, Some(Value::String(f))) => {
                let (path, text) = self.read_script_file(key, f)?;
                name.push_str(&format!(" (file {})", path.display()));
                text
            }
            _ => return Err(self.err(key, "a script object needs \"source\" or \"file\"")),
        };
        let globals = match m.get("globals") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(g)) => g.clone(),
            Some(_) => return Err(self.err(&format!("{key}.globals"), "expected an object")),
        };
        script::compile(ScriptSpec {
            name,
            source,
            globals,
            env: Some(self.env.clone()),
        })
        .map_err(|e| self.err(key, e))
    }

    /// `m[name]` read by `parse` when present and not null, else None; `at` is `m`'s key path
    /// ("" at the mapping's top level), so errors name `at.name`.
    fn opt<T>(
        &self,
        m: &Map<String, Value>,
        at: &str,
        name: &str,
        parse: fn(&Self, &str, &Value) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        match m.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) if at.is_empty() => parse(self, name, v).map(Some),
            Some(v) => parse(self, &format!("{at}.{name}"), v).map(Some),
        }
    }

    /// An optional script at the mapping's top level.
    fn opt_script(
        &self,
        m: &Map<String, Value>,
        name: &str,
    ) -> Result<Option<CompiledScript>, ConfigError> {
        self.opt(m, "", name, Self::script)
    }

    /// onCreate/onUpdate: IDM keeps the script's changes to `target`; appending `;target;`
    /// makes the changed target the script's completion value.
    fn target_script(
        &self,
        m: &Map<String, Value>,
        key: &str,
    ) -> Result<Option<CompiledScript>, ConfigError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => {
                let mut o = o.clone();
                if let Some(Value::String(src)) = o.get("source").cloned() {
                    o.insert("source".into(), Value::String(format!("{src}\n;target;")));
                } else if let Some(Value::String(f)) = o.get("file").cloned() {
                    let (_, src) = self.read_script_file(key, &f)?;
                    o.remove("file");
                    o.insert("source".into(), Value::String(format!("{src}\n;target;")));
                }
                self.script(key, &Value::Object(o)).map(Some)
            }
            Some(v) => self.script(key, v).map(Some),
        }
    }

    fn condition(&self, key: &str, v: &Value) -> Result<Condition, ConfigError> {
        match v {
            Value::String(s) => query::parse(s)
                .map(Condition::Filter)
                .map_err(|e| self.err(key, e)),
            Value::Object(_) => self.script(key, v).map(Condition::Script),
            other => Err(self.err(
                key,
                format!("expected a query filter string or a script object, got {other}"),
            )),
        }
    }
}

fn parse_tree(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<ExprTree, ConfigError> {
    match v {
        Value::String(s) => Ok(ExprTree::Field(s.clone())),
        Value::Object(m) if m.len() == 1 => {
            let (k, list) = m
                .iter()
                .next()
                .ok_or_else(|| ctx.err(key, "empty expression"))?;
            let items = list
                .as_array()
                .ok_or_else(|| ctx.err(key, format!("\"{k}\" must list fields or expressions")))?;
            let parsed = items
                .iter()
                .map(|i| parse_tree(ctx, key, i))
                .collect::<Result<Vec<_>, _>>()?;
            match k.as_str() {
                "all" => Ok(ExprTree::All(parsed)),
                "any" => Ok(ExprTree::Any(parsed)),
                other => Err(ctx.err(
                    key,
                    format!("unknown expression \"{other}\" (expected \"all\" or \"any\")"),
                )),
            }
        }
        other => Err(ctx.err(key, format!("invalid expressionTree element {other}"))),
    }
}

fn parse_correlation(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<Correlation, ConfigError> {
    let m = v
        .as_object()
        .ok_or_else(|| ctx.err(key, "expected an object or a list of objects"))?;
    if let Some(tree) = m.get("expressionTree") {
        return parse_tree(ctx, &format!("{key}.expressionTree"), tree).map(Correlation::Tree);
    }
    if m.contains_key("source") || m.contains_key("file") || m.contains_key("type") {
        return ctx.script(key, v).map(Correlation::QueryScript);
    }
    if m.contains_key("_queryFilter") {
        if let Some(f) = m.get("_queryFilter").and_then(Value::as_str) {
            query::parse(f).map_err(|e| ctx.err(key, e))?;
        }
        return Ok(Correlation::Static(v.clone()));
    }
    if m.contains_key("_queryId") {
        return Ok(Correlation::Static(v.clone()));
    }
    Err(ctx.err(
        key,
        "expected a script, an expressionTree, or a query object with _queryFilter/_queryId",
    ))
}

/// Parses one mapping. `sets` are the declared object-set names.
pub fn parse_mapping(
    file: &Path,
    project: &Arc<ProjectEnv>,
    v: &Value,
    sets: &[String],
) -> Result<Mapping, ConfigError> {
    let m = v
        .as_object()
        .ok_or_else(|| ConfigError::new(file, "a mapping must be an object"))?;
    let name = match m.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ConfigError::new(
                file,
                "a mapping needs a non-empty \"name\"",
            ))
        }
    };
    let ctx = Ctx {
        file,
        project,
        mapping: name.clone(),
        env: Arc::new(ScriptEnv {
            project: project.clone(),
            mapping_config: Some(Arc::new(v.clone())),
        }),
    };
    let unknown: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN_KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        tracing::warn!(mapping = %name, keys = ?unknown, "mapping keys not supported by recond (ignored)");
    }
    let set_ref = |key: &str| -> Result<String, ConfigError> {
        let s = ctx
            .string(m, key)?
            .ok_or_else(|| ctx.err(key, "is required"))?;
        let s = s.trim_matches('/').to_string();
        if !sets.contains(&s) {
            return Err(ctx.err(
                key,
                format!(
                    "object set \"{s}\" is not declared (declared: {})",
                    sets.join(", ")
                ),
            ));
        }
        Ok(s)
    };
    let source = set_ref("source")?;
    let target = set_ref("target")?;

    let mut properties = Vec::new();
    for (key, pm) in ctx.object_list(m, "properties")? {
        let target = ctx
            .string(pm, "target")
            .map_err(|_| ctx.err(&key, "target must be a string"))?;
        let target = target.ok_or_else(|| ctx.err(&key, "target is required"))?;
        let target = Pointer::parse(&target);
        if target.is_root() {
            return Err(ctx.err(&key, "target must not be the whole object"));
        }
        let source = match pm.get("source") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Pointer::parse(s)),
            Some(_) => return Err(ctx.err(&format!("{key}.source"), "expected a string")),
        };
        let condition = ctx.opt(pm, &key, "condition", Ctx::condition)?;
        let transform = ctx.opt(pm, &key, "transform", Ctx::script)?;
        properties.push(PropertyRule {
            source,
            target,
            default: pm.get("default").cloned(),
            condition,
            transform,
        });
    }

    let mut policies = Vec::new();
    for (key, pm) in ctx.object_list(m, "policies")? {
        let sit = pm
            .get("situation")
            .and_then(Value::as_str)
            .ok_or_else(|| ctx.err(&key, "situation is required"))?;
        let situation = Situation::parse(sit).ok_or_else(|| {
            ctx.err(
                &format!("{key}.situation"),
                format!("unknown situation \"{sit}\""),
            )
        })?;
        let action = match pm.get("action") {
            Some(Value::String(a)) => PolicyAction::Fixed(Action::parse(a).ok_or_else(|| {
                ctx.err(&format!("{key}.action"), format!("unknown action \"{a}\""))
            })?),
            Some(v @ Value::Object(_)) => {
                PolicyAction::Script(ctx.script(&format!("{key}.action"), v)?)
            }
            _ => return Err(ctx.err(&key, "action is required (an action name or a script)")),
        };
        let condition = ctx.opt(pm, &key, "condition", Ctx::condition)?;
        let post_action = ctx.opt(pm, &key, "postAction", Ctx::script)?;
        policies.push(Policy {
            situation,
            action,
            condition,
            post_action,
        });
    }

    let mut correlation = Vec::new();
    match m.get("correlationQuery") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, c) in list.iter().enumerate() {
                let key = format!("correlationQuery[{i}]");
                let q = c
                    .get("linkQualifier")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                correlation.push((q, parse_correlation(&ctx, &key, c)?));
            }
        }
        Some(c) => {
            let q = c
                .get("linkQualifier")
                .and_then(Value::as_str)
                .map(str::to_string);
            correlation.push((q, parse_correlation(&ctx, "correlationQuery", c)?));
        }
    }
    let correlation_script = ctx.opt_script(m, "correlationScript")?;
    if correlation_script.is_some() && !correlation.is_empty() {
        return Err(ctx.err(
            "correlationScript",
            "cannot be combined with correlationQuery",
        ));
    }

    let qualifiers = match m.get("linkQualifiers") {
        None | Some(Value::Null) => Qualifiers::Static(vec!["default".into()]),
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for q in list {
                out.push(
                    q.as_str()
                        .ok_or_else(|| ctx.err("linkQualifiers", "expected strings"))?
                        .to_string(),
                );
            }
            if out.is_empty() {
                return Err(ctx.err("linkQualifiers", "must not be empty"));
            }
            Qualifiers::Static(out)
        }
        Some(v) => Qualifiers::Script(ctx.script("linkQualifiers", v)?),
    };

    let query_obj = |key: &str| -> Result<Option<Value>, ConfigError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(q)) => {
                if let Some(f) = q
                    .get("_queryFilter")
                    .or_else(|| q.get("queryFilter"))
                    .and_then(Value::as_str)
                {
                    query::parse(f).map_err(|e| ctx.err(key, e))?;
                }
                Ok(Some(v.clone()))
            }
            Some(_) => Err(ctx.err(key, "expected a query object")),
        }
    };

    let (max_runs, max_analysis_runs) = match m.get("reconAssociation") {
        Some(Value::Object(ra)) => (
            ctx.uint(ra, "maxNonAnalysisRunsPerMapping")?
                .map(|n| n.min(u64::from(u32::MAX)) as u32),
            ctx.uint(ra, "maxAnalysisRunsPerMapping")?
                .map(|n| n.min(u64::from(u32::MAX)) as u32),
        ),
        None | Some(Value::Null) => (None, None),
        Some(_) => return Err(ctx.err("reconAssociation", "expected an object")),
    };

    let (link_type, links_reversed) = match ctx.string(m, "links")? {
        Some(l) => (l, false),
        None => (name.clone(), false),
    };

    Ok(Mapping {
        source_condition: ctx.opt(m, "", "sourceCondition", Ctx::condition)?,
        valid_source: ctx.opt_script(m, "validSource")?,
        valid_target: ctx.opt_script(m, "validTarget")?,
        source_query: query_obj("sourceQuery")?,
        target_query: query_obj("targetQuery")?,
        run_target_phase: ctx.bool(m, "runTargetPhase")?,
        allow_empty_source_set: ctx.bool(m, "allowEmptySourceSet")?.unwrap_or(false),
        source_query_full_entry: ctx.bool(m, "sourceQueryFullEntry")?,
        target_query_full_entry: ctx.bool(m, "targetQueryFullEntry")?,
        prefetch_links: ctx.bool(m, "prefetchLinks")?.unwrap_or(true),
        task_threads: ctx.uint(m, "taskThreads")?.unwrap_or(10).min(64) as usize,
        clustered: ctx.bool(m, "clusteredSourceReconEnabled")?.unwrap_or(false),
        source_page_size: source_page_size(&ctx, m)?,
        correlate_empty_target_set: ctx.bool(m, "correlateEmptyTargetSet")?.unwrap_or(false),
        enable_linking: ctx.bool(m, "enableLinking")?.unwrap_or(true),
        enable_sync: ctx.bool(m, "enableSync")?.unwrap_or(true),
        source_ids_case_sensitive: ctx.bool(m, "sourceIdsCaseSensitive")?.unwrap_or(true),
        target_ids_case_sensitive: ctx.bool(m, "targetIdsCaseSensitive")?.unwrap_or(true),
        on_create: ctx.target_script(m, "onCreate")?,
        on_update: ctx.target_script(m, "onUpdate")?,
        on_delete: ctx.opt_script(m, "onDelete")?,
        on_link: ctx.opt_script(m, "onLink")?,
        on_unlink: ctx.opt_script(m, "onUnlink")?,
        result: ctx.opt_script(m, "result")?,
        recon_guard: match m.get("reconGuard") {
            None | Some(Value::Null) => super::ReconGuard::default(),
            Some(g) => super::ReconGuard::parse(g).map_err(|(key, what)| ctx.err(&key, what))?,
        },
        name,
        source,
        target,
        link_type,
        links_reversed,
        properties,
        policies,
        correlation,
        correlation_script,
        qualifiers,
        max_runs,
        max_analysis_runs,
    })
}

/// Source ids per page of a clustered run: `reconSourceQueryPageSize`, else 10,000 (IDM's
/// default for clustered runs, which always page). `reconSourceQueryPaging` itself changes
/// nothing: recond streams every source, which is what paging achieves.
fn source_page_size(ctx: &Ctx<'_>, m: &Map<String, Value>) -> Result<usize, ConfigError> {
    ctx.bool(m, "reconSourceQueryPaging")?;
    match ctx.uint(m, "reconSourceQueryPageSize")? {
        None => Ok(DEFAULT_CLUSTERED_PAGE_SIZE),
        Some(0) => Err(ctx.err("reconSourceQueryPageSize", "must be at least 1")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

#[cfg(test)]
pub(super) fn test_project() -> Arc<ProjectEnv> {
    Arc::new(ProjectEnv::new(
        Path::new("."),
        None,
        crate::idm::Properties::default(),
    ))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
