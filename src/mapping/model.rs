//! The parsed form of one IDM mapping: the types the engine and the runner read.
//!
//! A [`Mapping`] is immutable once [`super::load_all`] returns it (it is shared behind `Arc`);
//! everything that depends on other mappings (`links`) is resolved before that.

use serde_json::Value;

use crate::engine::model::{Action, Situation};
use crate::query::{Filter, Pointer};
use crate::script::CompiledScript;

/// A condition: a query filter evaluated against a scope object, or a script.
#[derive(Clone, Debug)]
pub enum Condition {
    Filter(Filter),
    Script(CompiledScript),
}

#[derive(Clone, Debug)]
pub struct PropertyRule {
    /// None: no source (only `default`/`transform` produce the value); root pointer: the whole
    /// source object.
    pub source: Option<Pointer>,
    pub target: Pointer,
    pub default: Option<Value>,
    pub condition: Option<Condition>,
    pub transform: Option<CompiledScript>,
}

#[derive(Clone, Debug)]
pub enum PolicyAction {
    Fixed(Action),
    Script(CompiledScript),
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub situation: Situation,
    pub action: PolicyAction,
    pub condition: Option<Condition>,
    pub post_action: Option<CompiledScript>,
}

/// `expressionTree`: `{"all": [...]}` / `{"any": [...]}` of target field names, nestable.
#[derive(Clone, Debug)]
pub enum ExprTree {
    All(Vec<ExprTree>),
    Any(Vec<ExprTree>),
    Field(String),
}

#[derive(Clone, Debug)]
pub enum Correlation {
    /// Evaluated natively: equality terms on target fields.
    Tree(ExprTree),
    /// A script returning query parameters (`_queryFilter`, or `_queryId` + parameters).
    QueryScript(CompiledScript),
    /// A fixed query-parameter object (the same for every source).
    Static(Value),
}

#[derive(Clone, Debug)]
pub enum Qualifiers {
    Static(Vec<String>),
    Script(CompiledScript),
}

#[derive(Clone, Debug)]
pub struct Mapping {
    pub name: String,
    pub source: String,
    pub target: String,
    /// The link type: this mapping's name, or the name given in `links`.
    pub link_type: String,
    /// True when `links` names a mapping of the opposite direction (our source is its target,
    /// so our source id is the link's `secondId`).
    pub links_reversed: bool,
    pub properties: Vec<PropertyRule>,
    pub policies: Vec<Policy>,
    /// Correlation per link qualifier (`None` key = for every qualifier).
    pub correlation: Vec<(Option<String>, Correlation)>,
    pub correlation_script: Option<CompiledScript>,
    pub valid_source: Option<CompiledScript>,
    pub valid_target: Option<CompiledScript>,
    pub source_condition: Option<Condition>,
    pub qualifiers: Qualifiers,
    pub source_query: Option<Value>,
    pub target_query: Option<Value>,
    pub run_target_phase: Option<bool>,
    pub allow_empty_source_set: bool,
    pub source_query_full_entry: Option<bool>,
    pub target_query_full_entry: Option<bool>,
    pub prefetch_links: bool,
    pub task_threads: usize,
    /// `clusteredSourceReconEnabled`: a full run's source phase goes in pages of source ids,
    /// each claimed through the cluster coordinator (see `runner::worker::clustered`).
    pub clustered: bool,
    /// `reconSourceQueryPageSize`: source ids per page of a clustered run.
    pub source_page_size: usize,
    pub correlate_empty_target_set: bool,
    pub enable_linking: bool,
    /// `enableSync`: false turns implicit synchronization and liveSync off for this mapping.
    pub enable_sync: bool,
    pub source_ids_case_sensitive: bool,
    pub target_ids_case_sensitive: bool,
    pub max_runs: Option<u32>,
    pub max_analysis_runs: Option<u32>,
    pub on_create: Option<CompiledScript>,
    pub on_update: Option<CompiledScript>,
    pub on_delete: Option<CompiledScript>,
    pub on_link: Option<CompiledScript>,
    pub on_unlink: Option<CompiledScript>,
    pub result: Option<CompiledScript>,
    /// recond's own deletion guard (`reconGuard`, contract §8); empty when not configured.
    pub recon_guard: super::ReconGuard,
}

impl Mapping {
    /// The correlation configured for a qualifier.
    pub fn correlation_for(&self, qualifier: &str) -> Option<&Correlation> {
        self.correlation
            .iter()
            .find(|(q, _)| q.as_deref() == Some(qualifier))
            .or_else(|| self.correlation.iter().find(|(q, _)| q.is_none()))
            .map(|(_, c)| c)
    }

    pub fn has_correlation(&self, qualifier: &str) -> bool {
        self.correlation_script.is_some() || self.correlation_for(qualifier).is_some()
    }

    /// The rule that produces a target field (for expressionTree correlation).
    pub fn rule_for_target(&self, field: &str) -> Option<&PropertyRule> {
        let want = Pointer::parse(field);
        self.properties.iter().find(|p| p.target == want)
    }

    /// Every static qualifier (the target phase runs all of them).
    pub fn static_qualifiers(&self) -> Option<&[String]> {
        match &self.qualifiers {
            Qualifiers::Static(q) => Some(q),
            Qualifiers::Script(_) => None,
        }
    }

    pub fn uses_scripts(&self) -> bool {
        self.properties
            .iter()
            .any(|p| p.transform.is_some() || matches!(p.condition, Some(Condition::Script(_))))
            || self.policies.iter().any(|p| {
                matches!(p.action, PolicyAction::Script(_))
                    || matches!(p.condition, Some(Condition::Script(_)))
                    || p.post_action.is_some()
            })
            || self
                .correlation
                .iter()
                .any(|(_, c)| matches!(c, Correlation::QueryScript(_)))
            || self.correlation_script.is_some()
            || self.valid_source.is_some()
            || self.valid_target.is_some()
            || matches!(self.source_condition, Some(Condition::Script(_)))
            || matches!(self.qualifiers, Qualifiers::Script(_))
            || self.on_create.is_some()
            || self.on_update.is_some()
            || self.on_delete.is_some()
            || self.on_link.is_some()
            || self.on_unlink.is_some()
            || self.result.is_some()
    }
}

/// Source ids per page of a clustered run when the mapping names none (IDM's default).
pub const DEFAULT_CLUSTERED_PAGE_SIZE: usize = 10_000;
