//! A run's effective options: the mapping's settings with the request body's overrides.

use super::*;

/// Resolves the mapping's settings with the request's body overrides (reference §1.2).
pub(in crate::runner) fn effective_options(
    mapping: &Mapping,
    req: &StartRequest,
) -> Result<RunOptions, RunError> {
    let body = match &req.body {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(RunError::BadRequest(
                "The request body must be a JSON object".into(),
            ))
        }
    };
    let pick = |key: &str| body.get(key).filter(|v| !v.is_null());
    let bool_of = |key: &str, default: bool| -> Result<bool, RunError> {
        match pick(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(RunError::BadRequest(format!(
                "{key} must be true or false, got {other}"
            ))),
        }
    };
    let query = |key: &str, configured: &Option<Value>, set: &str| -> Result<Value, RunError> {
        let mut q = match pick(key).or(configured.as_ref()) {
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(RunError::BadRequest(format!(
                    "{key} must be an object, got {other}"
                )))
            }
            None => Map::new(),
        };
        if !q.contains_key("_queryFilter") && !q.contains_key("_queryId") {
            if let Some(f) = q.remove("queryFilter") {
                q.insert("_queryFilter".into(), f);
            } else if let Some(f) = q.remove("queryId") {
                q.insert("_queryId".into(), f);
            } else {
                q.insert("_queryFilter".into(), json!("true"));
            }
        }
        q.entry("resourceName").or_insert_with(|| json!(set));
        let v = Value::Object(q);
        QueryRequest::from_json(&v)
            .map_err(|e| RunError::BadRequest(format!("{key}: {}", e.message)))?;
        Ok(v)
    };
    let by_id = matches!(req.kind, ReconKind::ById(_));
    Ok(RunOptions {
        source_query: query("sourceQuery", &mapping.source_query, &mapping.source)?,
        target_query: query("targetQuery", &mapping.target_query, &mapping.target)?,
        run_target_phase: bool_of(
            "runTargetPhase",
            if by_id {
                false
            } else {
                mapping.run_target_phase.unwrap_or(true)
            },
        )?,
        allow_empty_source_set: bool_of("allowEmptySourceSet", mapping.allow_empty_source_set)?,
        source_full_entry: bool_of(
            "sourceQueryFullEntry",
            mapping.source_query_full_entry.unwrap_or(true),
        )?,
        target_full_entry: bool_of(
            "targetQueryFullEntry",
            mapping.target_query_full_entry.unwrap_or(true),
        )?,
        analyze: req.analyze,
        persist_associations: req.persist_associations,
        schedule: req.schedule.clone(),
        implicit: false,
        guard: mapping.recon_guard.clone(),
        ignore_guard: bool_of("ignoreGuard", false)?,
        record_changes: bool_of("recordChanges", false)?,
        explicit: None,
    })
}
