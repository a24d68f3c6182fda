//! The reconciliation engine: situation assessment, policy selection, property mapping and
//! statistics. It does no IO of its own: facts about objects and links come in as values,
//! and scripts are evaluated through the [`Scripts`] trait that the runner provides.
//!
//! The runner (`crate::runner`) reads sources, looks up links and targets, and writes the
//! results; it asks this module what the situation is, which action applies, and what the
//! target should look like.

pub mod diff;
pub mod model;
pub mod stats;
pub mod tally_wire;

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::mapping::{Condition, Mapping, Policy, PolicyAction, PropertyRule};
use crate::script::CompiledScript;
use model::{Action, Situation};

/// Evaluates scripts for the engine (one implementation per worker thread).
pub trait Scripts {
    fn eval(&mut self, script: &CompiledScript, scope: &[(&str, &Value)]) -> Result<Value, String>;
}

/// A script runner for mappings without scripts; any call is a bug caught as an entry error.
pub struct NoScripts;

impl Scripts for NoScripts {
    fn eval(
        &mut self,
        script: &CompiledScript,
        _scope: &[(&str, &Value)],
    ) -> Result<Value, String> {
        Err(format!("script {} cannot run here", script.name()))
    }
}

/// Source phase, a linked source (reference §3.2).
pub fn situation_linked(source_qualifies: bool, target_exists: bool) -> Situation {
    match (source_qualifies, target_exists) {
        (true, true) => Situation::Confirmed,
        (true, false) => Situation::Missing,
        (false, _) => Situation::Unqualified,
    }
}

/// Source phase, an unlinked source after correlation. `candidates` is None when correlation
/// did not run; `already_linked` says whether the single candidate has a link of its own.
pub fn situation_correlated(
    source_qualifies: bool,
    candidates: Option<usize>,
    already_linked: bool,
) -> Situation {
    match (source_qualifies, candidates.unwrap_or(0)) {
        (true, 0) => Situation::Absent,
        (true, 1) if already_linked => Situation::FoundAlreadyLinked,
        (true, 1) => Situation::Found,
        (true, _) => Situation::Ambiguous,
        (false, 0) => Situation::SourceIgnored,
        (false, _) => Situation::Unqualified,
    }
}

/// Target phase (reference §3.3). `source` is None when there is no link; `Some(None)` when
/// the link's source is gone; `Some(Some(valid))` otherwise.
pub fn situation_target(target_valid: bool, source: Option<Option<bool>>) -> Situation {
    if !target_valid {
        return Situation::TargetIgnored;
    }
    match source {
        None => Situation::Unassigned,
        Some(None) => Situation::SourceMissing,
        Some(Some(false)) => Situation::Unqualified,
        Some(Some(true)) => Situation::Confirmed,
    }
}

/// Evaluates a condition against a scope object such as `{"object": ..., "linkQualifier": ...}`.
pub fn check_condition(
    cond: &Condition,
    scope_obj: &Value,
    script_scope: &[(&str, &Value)],
    scripts: &mut dyn Scripts,
) -> Result<bool, String> {
    match cond {
        Condition::Filter(f) => Ok(f.matches(scope_obj)),
        Condition::Script(s) => match scripts.eval(s, script_scope)? {
            Value::Bool(b) => Ok(b),
            Value::Null => Ok(false),
            other => Err(format!(
                "condition script {} returned {other}, expected a boolean",
                s.name()
            )),
        },
    }
}

/// What the policies decided for one assessed situation.
pub struct Decision<'a> {
    pub action: Action,
    /// The policy that matched (for its postAction), if any.
    pub policy: Option<&'a Policy>,
}

/// Inputs of policy conditions and action scripts.
pub struct PolicyScope<'a> {
    pub source: &'a Value,
    pub target: &'a Value,
    pub qualifier: &'a str,
    pub source_action: bool,
    pub recon_id: &'a str,
    pub mapping: &'a str,
    pub situation: Situation,
}

/// Walks the situation's policies in order; the first whose condition holds decides.
pub fn decide<'a>(
    mapping: &'a Mapping,
    scope: &PolicyScope<'_>,
    scripts: &mut dyn Scripts,
) -> Result<Decision<'a>, String> {
    let mut cond_scope: Option<Value> = None;
    for policy in mapping
        .policies
        .iter()
        .filter(|p| p.situation == scope.situation)
    {
        if let Some(cond) = &policy.condition {
            let obj = cond_scope.get_or_insert_with(|| {
                let mut m = Map::new();
                m.insert("object".into(), scope.source.clone());
                m.insert(
                    "linkQualifier".into(),
                    Value::String(scope.qualifier.to_string()),
                );
                Value::Object(m)
            });
            let lq = Value::String(scope.qualifier.to_string());
            let sc: [(&str, &Value); 4] = [
                ("object", scope.source),
                ("source", scope.source),
                ("target", scope.target),
                ("linkQualifier", &lq),
            ];
            if !check_condition(cond, obj, &sc, scripts)? {
                continue;
            }
        }
        let action = match &policy.action {
            PolicyAction::Fixed(a) => *a,
            PolicyAction::Script(s) => {
                let lq = Value::String(scope.qualifier.to_string());
                let sa = Value::Bool(scope.source_action);
                let recon = serde_json::json!({ "actionParam": {
                    "_action": "performAction",
                    "reconId": scope.recon_id,
                    "mapping": scope.mapping,
                    "situation": scope.situation.as_str(),
                    "linkQualifier": scope.qualifier,
                    "sourceId": scope.source.get("_id"),
                    "targetId": scope.target.get("_id"),
                }});
                let sc: [(&str, &Value); 5] = [
                    ("source", scope.source),
                    ("target", scope.target),
                    ("linkQualifier", &lq),
                    ("sourceAction", &sa),
                    ("recon", &recon),
                ];
                match scripts.eval(s, &sc)? {
                    Value::String(name) => Action::parse(&name)
                        .ok_or_else(|| "action script returned invalid action".to_string())?,
                    _ => return Err("action script returned invalid action".into()),
                }
            }
        };
        return Ok(Decision {
            action,
            policy: Some(policy),
        });
    }
    Ok(Decision {
        action: scope.situation.default_action(),
        policy: None,
    })
}

/// The value one property rule produces from a source (conditions are checked by the caller).
pub fn rule_value(
    rule: &PropertyRule,
    source: &Value,
    qualifier: &str,
    scripts: &mut dyn Scripts,
) -> Result<Value, String> {
    rule_value_ref(rule, source, qualifier, scripts).map(Cow::into_owned)
}

/// [`rule_value`] borrowed from `source` when the rule only copies an attribute (no
/// transform, no default taking over): a steady-state run compares most values without
/// copying them.
fn rule_value_ref<'a>(
    rule: &PropertyRule,
    source: &'a Value,
    qualifier: &str,
    scripts: &mut dyn Scripts,
) -> Result<Cow<'a, Value>, String> {
    const NULL: &Value = &Value::Null;
    let mut value = Cow::Borrowed(match &rule.source {
        None => NULL,
        Some(p) => p.get(source).unwrap_or(NULL),
    });
    if let Some(t) = &rule.transform {
        let lq = Value::String(qualifier.to_string());
        value = Cow::Owned(scripts.eval(t, &[("source", &value), ("linkQualifier", &lq)])?);
    }
    if value.is_null() {
        if let Some(d) = &rule.default {
            value = Cow::Owned(d.clone());
        }
    }
    Ok(value)
}

/// Applies the mapping's property rules from `source` onto `target` (reference §4): skipped
/// when the rule's condition is false, null written explicitly.
pub fn apply_properties(
    mapping: &Mapping,
    source: &Value,
    target: &mut Value,
    qualifier: &str,
    scripts: &mut dyn Scripts,
) -> Result<(), String> {
    for (i, rule) in mapping.properties.iter().enumerate() {
        if let Some(cond) = &rule.condition {
            let scope = serde_json::json!({ "object": source, "target": &*target, "linkQualifier": qualifier });
            let lq = Value::String(qualifier.to_string());
            let t = target.clone();
            let sc: [(&str, &Value); 3] =
                [("object", source), ("target", &t), ("linkQualifier", &lq)];
            if !check_condition(cond, &scope, &sc, scripts)
                .map_err(|e| format!("properties[{i}].condition: {e}"))?
            {
                continue;
            }
        }
        let value = rule_value(rule, source, qualifier, scripts)
            .map_err(|e| format!("properties[{i}]: {e}"))?;
        rule.target
            .set(target, value)
            .map_err(|e| format!("properties[{i}].target: {e}"))?;
    }
    Ok(())
}

/// Like [`apply_properties`] onto a copy of `target`, but copies only when a rule changes
/// something: returns None when the mapping leaves the target as it is (the common case of
/// a steady-state run, which then writes nothing and allocates little).
pub fn apply_properties_changed(
    mapping: &Mapping,
    source: &Value,
    target: &Value,
    qualifier: &str,
    scripts: &mut dyn Scripts,
) -> Result<Option<Value>, String> {
    let mut changed: Option<Value> = None;
    for (i, rule) in mapping.properties.iter().enumerate() {
        let current = changed.as_ref().unwrap_or(target);
        if let Some(cond) = &rule.condition {
            let scope = serde_json::json!({ "object": source, "target": current, "linkQualifier": qualifier });
            let lq = Value::String(qualifier.to_string());
            let sc: [(&str, &Value); 3] = [
                ("object", source),
                ("target", current),
                ("linkQualifier", &lq),
            ];
            if !check_condition(cond, &scope, &sc, scripts)
                .map_err(|e| format!("properties[{i}].condition: {e}"))?
            {
                continue;
            }
        }
        let value = rule_value_ref(rule, source, qualifier, scripts)
            .map_err(|e| format!("properties[{i}]: {e}"))?;
        if rule.target.get(current) == Some(&*value) {
            continue;
        }
        let value = value.into_owned();
        let doc = changed.get_or_insert_with(|| target.clone());
        rule.target
            .set(doc, value)
            .map_err(|e| format!("properties[{i}].target: {e}"))?;
    }
    Ok(changed)
}

/// Builds the correlation filter of an expressionTree for one source (contract §3).
pub fn tree_filter(
    mapping: &Mapping,
    tree: &crate::mapping::ExprTree,
    source: &Value,
    qualifier: &str,
    scripts: &mut dyn Scripts,
) -> Result<crate::query::Filter, String> {
    use crate::mapping::ExprTree;
    use crate::query::{Filter, Pointer};
    Ok(match tree {
        ExprTree::All(items) => Filter::And(
            items
                .iter()
                .map(|i| tree_filter(mapping, i, source, qualifier, scripts))
                .collect::<Result<_, _>>()?,
        ),
        ExprTree::Any(items) => Filter::Or(
            items
                .iter()
                .map(|i| tree_filter(mapping, i, source, qualifier, scripts))
                .collect::<Result<_, _>>()?,
        ),
        ExprTree::Field(field) => {
            let value = match mapping.rule_for_target(field) {
                Some(rule) => rule_value(rule, source, qualifier, scripts)?,
                // No rule produces the field: compare with the source's own attribute.
                None => Pointer::parse(field)
                    .get(source)
                    .cloned()
                    .unwrap_or(Value::Null),
            };
            match value {
                Value::Null => Filter::False,
                v @ (Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
                    Filter::eq(Pointer::parse(field), v)
                }
                other => Filter::eq(Pointer::parse(field), Value::String(other.to_string())),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_phase_table() {
        assert_eq!(situation_linked(true, true), Situation::Confirmed);
        assert_eq!(situation_linked(true, false), Situation::Missing);
        assert_eq!(situation_linked(false, true), Situation::Unqualified);
        assert_eq!(situation_linked(false, false), Situation::Unqualified);
        assert_eq!(situation_correlated(true, None, false), Situation::Absent);
        assert_eq!(
            situation_correlated(true, Some(0), false),
            Situation::Absent
        );
        assert_eq!(situation_correlated(true, Some(1), false), Situation::Found);
        assert_eq!(
            situation_correlated(true, Some(1), true),
            Situation::FoundAlreadyLinked
        );
        assert_eq!(
            situation_correlated(true, Some(2), false),
            Situation::Ambiguous
        );
        assert_eq!(
            situation_correlated(false, None, false),
            Situation::SourceIgnored
        );
        assert_eq!(
            situation_correlated(false, Some(1), false),
            Situation::Unqualified
        );
        assert_eq!(
            situation_correlated(false, Some(3), false),
            Situation::Unqualified
        );
    }

    #[test]
    fn target_phase_table() {
        assert_eq!(situation_target(false, None), Situation::TargetIgnored);
        assert_eq!(situation_target(true, None), Situation::Unassigned);
        assert_eq!(situation_target(true, Some(None)), Situation::SourceMissing);
        assert_eq!(
            situation_target(true, Some(Some(false))),
            Situation::Unqualified
        );
        assert_eq!(
            situation_target(true, Some(Some(true))),
            Situation::Confirmed
        );
    }
}
