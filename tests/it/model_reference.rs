//! A plain reference implementation of reference §3.2–§3.5 for the model test, written only
//! for the test and independent of the engine's code: the world is three maps, each object
//! is assessed and acted on in the order the engine committed it.
//!
//! It follows IDM's procedure, plus recond's documented choices (ARCHITECTURE.md, "Write
//! discipline"):
//! * the link qualifiers of one object are assessed against the world as it was before the
//!   object (one object is one staged batch: a later qualifier does not see an earlier one's
//!   writes);
//! * an object is all or nothing when the store refuses it: two of its qualifiers writing the
//!   same target, or a link to a target that another source already holds for that qualifier
//!   (the link table's unique index), fail every entry of the object and write nothing of it
//!   (IDM would keep what was written before the failing call).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// The situations of reference §3.4.
pub const SITUATIONS: [&str; 11] = [
    "CONFIRMED",
    "FOUND",
    "FOUND_ALREADY_LINKED",
    "ABSENT",
    "AMBIGUOUS",
    "MISSING",
    "UNQUALIFIED",
    "SOURCE_IGNORED",
    "TARGET_IGNORED",
    "UNASSIGNED",
    "SOURCE_MISSING",
];

/// A policy: action, and an optional condition "the link qualifier is `alt`".
#[derive(Debug, Clone)]
pub struct Policy {
    pub situation: &'static str,
    pub action: &'static str,
    pub only_alt: bool,
}

/// The mapping, as the generator built it (and wrote it into the configuration).
#[derive(Debug, Clone)]
pub struct Model {
    pub qualifiers: Vec<&'static str>,
    /// `key` → `_id` property rule.
    pub map_id: bool,
    /// expressionTree correlation on userName.
    pub correlate: bool,
    pub correlate_empty: bool,
    /// validSource: `source.active !== false`.
    pub valid_source: bool,
    /// validTarget: `target.userName !== 'dee'`.
    pub valid_target: bool,
    /// sourceCondition: `!(/source/userName eq "cy")`.
    pub source_condition: bool,
    pub policies: Vec<Policy>,
}

/// The data: sources, targets (id → (rev, body without `_id`/`_rev`)), links
/// ((qualifier, source id) → target id).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct World {
    pub sources: BTreeMap<String, Value>,
    pub targets: BTreeMap<String, (u64, Value)>,
    pub links: BTreeMap<(String, String), String>,
}

impl World {
    fn link_to_target(&self, q: &str, t: &str) -> Option<&str> {
        self.links
            .iter()
            .find(|((lq, _), lt)| lq == q && lt.as_str() == t)
            .map(|((_, s), _)| s.as_str())
    }
}

/// One association entry, as the engine records it and as the reference expects it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub qualifier: String,
    pub source_id: Option<String>,
    pub target_id: Option<String>,
    pub situation: String,
    pub action: String,
    pub success: bool,
    pub ambiguous: Vec<String>,
}

/// §3.4, the engine-default column where the docs agree; for the three rows that only
/// differ in audit output (SOURCE_IGNORED, TARGET_IGNORED, ALL_GONE) recond uses the docs'
/// IGNORE.
fn default_action(situation: &str) -> &'static str {
    match situation {
        "CONFIRMED" | "FOUND" => "UPDATE",
        "ABSENT" => "CREATE",
        "UNQUALIFIED" => "DELETE",
        "SOURCE_IGNORED" | "TARGET_IGNORED" => "IGNORE",
        _ => "EXCEPTION",
    }
}

/// Why an action did not complete.
enum Failed {
    /// The action failed; what it wrote before stays (IDM has no transaction).
    Op,
    /// The store refuses the object's batch: nothing of the object is written.
    Object,
}

impl Model {
    fn action(&self, situation: &str, q: &str) -> &'static str {
        self.policies
            .iter()
            .filter(|p| p.situation == situation)
            .find(|p| !p.only_alt || q == "alt")
            .map(|p| p.action)
            .unwrap_or_else(|| default_action(situation))
    }

    /// Whether a source that does not qualify can delete the target another source is
    /// linked to: it correlates to that target (UNQUALIFIED) and the action is DELETE. Then
    /// a second run legitimately changes linked pairs (IDM does the same).
    pub fn deletes_correlated_targets(&self) -> bool {
        self.correlate
            && (self.valid_source || self.source_condition)
            && self
                .qualifiers
                .iter()
                .any(|q| self.action("UNQUALIFIED", q) == "DELETE")
    }

    pub fn source_qualifies(&self, source: &Value, q: &str) -> bool {
        let _ = q;
        (!self.valid_source || source["active"] != json!(false))
            && (!self.source_condition || source["userName"] != json!("cy"))
    }

    fn target_valid(&self, target: &Value) -> bool {
        !self.valid_target || target["userName"] != json!("dee")
    }

    /// §3.1: correlation runs when configured and not (the target set was empty at the start
    /// and correlateEmptyTargetSet is false); candidates in id order.
    fn correlate(&self, w: &World, target_was_empty: bool, source: &Value) -> Option<Vec<String>> {
        if !self.correlate || (target_was_empty && !self.correlate_empty) {
            return None;
        }
        let name = source["userName"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        Some(
            w.targets
                .iter()
                .filter(|(_, (_, b))| {
                    b["userName"].as_str().map(str::to_lowercase).as_deref() == Some(&name)
                })
                .map(|(id, _)| id.clone())
                .collect(),
        )
    }

    /// The target body the property rules make from a source (§3.5 CREATE/UPDATE):
    /// `userName` → `userName`, and `key` → `_id` when mapped.
    fn mapped(&self, source: &Value) -> (Option<String>, Value) {
        let id = self
            .map_id
            .then(|| source["key"].as_str().map(str::to_string))
            .flatten();
        (id, json!({ "userName": source["userName"] }))
    }
}

/// Replays one run. `order` is the engine's commit order: (phase, object id) per object;
/// `engine_entries` gives, per (phase, object id), the engine's entries (used only as the
/// oracle for ids the engine generated: the `_id` of a target created without a mapped id).
pub struct Replay<'a> {
    pub model: &'a Model,
    pub world: World,
    pub analyze: bool,
    target_was_empty: bool,
    touched: BTreeSet<String>,
    /// Targets when the target phase starts (§3.7 step 3 reads them at the query stage; no
    /// target created or deleted in the source phase is left untouched, so this is the same).
    target_phase_ids: Option<Vec<String>>,
}

impl<'a> Replay<'a> {
    pub fn new(model: &'a Model, world: World, analyze: bool) -> Replay<'a> {
        let target_was_empty = world.targets.is_empty();
        Replay {
            model,
            world,
            analyze,
            target_was_empty,
            touched: BTreeSet::new(),
            target_phase_ids: None,
        }
    }

    /// The ids the target phase visits: targets at its start, less every id the source
    /// phase touched (§3.3).
    pub fn target_phase(&mut self) -> Vec<String> {
        let ids: Vec<String> = self
            .world
            .targets
            .keys()
            .filter(|t| !self.touched.contains(*t))
            .cloned()
            .collect();
        self.target_phase_ids = Some(ids.clone());
        ids
    }

    /// §3.2 for one source object, every qualifier.
    pub fn source_object(&mut self, sid: &str, oracle: &[Entry]) -> Vec<Entry> {
        let w0 = self.world.clone();
        let mut w1 = self.world.clone();
        let Some(source) = w0.sources.get(sid).cloned() else {
            panic!("the engine committed source {sid}, which the reference does not have");
        };
        let mut entries = Vec::new();
        let mut written: BTreeSet<String> = BTreeSet::new();
        let mut object_failed = false;
        let mut failed = false;
        for (i, q) in self.model.qualifiers.iter().enumerate() {
            let m = self.model;
            let link = w0.links.get(&(q.to_string(), sid.to_string())).cloned();
            let mut target_id = link.clone();
            let mut target = link.as_ref().and_then(|t| w0.targets.get(t).cloned());
            let mut ambiguous = Vec::new();
            let qualifies = m.source_qualifies(&source, q);
            let situation = match (&link, qualifies) {
                (Some(_), true) if target.is_some() => "CONFIRMED",
                (Some(_), true) => "MISSING",
                (Some(_), false) => "UNQUALIFIED",
                (None, _) => {
                    let r = m.correlate(&w0, self.target_was_empty, &source);
                    match r.as_deref() {
                        None | Some([]) if qualifies => "ABSENT",
                        None | Some([]) => "SOURCE_IGNORED",
                        Some([one]) => {
                            target_id = Some(one.clone());
                            target = w0.targets.get(one).cloned();
                            if !qualifies {
                                "UNQUALIFIED"
                            } else if w0.link_to_target(q, one).is_some() {
                                "FOUND_ALREADY_LINKED"
                            } else {
                                "FOUND"
                            }
                        }
                        Some(many) => {
                            ambiguous = many.to_vec();
                            if qualifies {
                                "AMBIGUOUS"
                            } else {
                                "UNQUALIFIED"
                            }
                        }
                    }
                }
            };
            // Every target associated with the source is off the target phase's list.
            self.touched.extend(target_id.iter().cloned());
            self.touched.extend(ambiguous.iter().cloned());
            let action = m.action(situation, q);
            let mut op = Op {
                q,
                sid: Some(sid),
                source: Some(&source),
                link: link.as_deref(),
                target_id: target_id.clone(),
                target: target.as_ref().map(|(rev, b)| (*rev, b)),
                oracle_id: oracle.get(i).and_then(|e| e.target_id.clone()),
                source_phase: true,
            };
            let outcome = if self.analyze {
                Ok(())
            } else {
                perform(m, &w0, &mut w1, &mut written, &mut op, action)
            };
            if let Some(t) = &op.target_id {
                if action == "CREATE" && outcome.is_ok() {
                    self.touched.insert(t.clone());
                }
            }
            match outcome {
                Ok(()) => {}
                Err(Failed::Op) => failed = true,
                Err(Failed::Object) => object_failed = true,
            }
            entries.push(Entry {
                qualifier: q.to_string(),
                source_id: Some(sid.to_string()),
                target_id: op.target_id,
                situation: situation.to_string(),
                action: action.to_string(),
                success: !failed,
                ambiguous,
            });
        }
        if object_failed {
            for e in &mut entries {
                e.success = false;
            }
        } else {
            self.world = w1;
        }
        entries
    }

    /// §3.3 for one target object, every qualifier.
    pub fn target_object(&mut self, tid: &str) -> Vec<Entry> {
        let w0 = self.world.clone();
        let mut w1 = self.world.clone();
        let Some((rev, body)) = w0.targets.get(tid).cloned() else {
            panic!("the engine's target phase visited {tid}, which the reference does not have");
        };
        let mut entries = Vec::new();
        let mut written = BTreeSet::new();
        let mut object_failed = false;
        for q in &self.model.qualifiers {
            let m = self.model;
            let link = w0.link_to_target(q, tid).map(str::to_string);
            let valid = m.target_valid(&body);
            let mut source = None;
            let situation = match (&link, valid) {
                (_, false) => "TARGET_IGNORED",
                (None, true) => "UNASSIGNED",
                (Some(s), true) => match w0.sources.get(s) {
                    None => "SOURCE_MISSING",
                    Some(src) => {
                        source = Some(src.clone());
                        if m.valid_source && src["active"] == json!(false) {
                            "UNQUALIFIED"
                        } else {
                            "CONFIRMED"
                        }
                    }
                },
            };
            let sid = link.clone().filter(|_| valid);
            let action = m.action(situation, q);
            let link_here = link.as_ref().map(|_| tid.to_string());
            let mut op = Op {
                q,
                sid: sid.as_deref(),
                source: source.as_ref(),
                link: link_here.as_deref(),
                target_id: Some(tid.to_string()),
                target: Some((rev, &body)),
                oracle_id: None,
                source_phase: false,
            };
            let outcome = if self.analyze {
                Ok(())
            } else {
                // The link's source side: a target-phase op knows its link from the target.
                op.sid = sid.as_deref().or(link.as_deref());
                perform(m, &w0, &mut w1, &mut written, &mut op, action)
            };
            let success = match outcome {
                Ok(()) => true,
                Err(Failed::Op) => false,
                Err(Failed::Object) => {
                    object_failed = true;
                    false
                }
            };
            entries.push(Entry {
                qualifier: q.to_string(),
                source_id: sid,
                target_id: Some(tid.to_string()),
                situation: situation.to_string(),
                action: action.to_string(),
                success,
                ambiguous: Vec::new(),
            });
        }
        if object_failed {
            for e in &mut entries {
                e.success = false;
            }
        } else {
            self.world = w1;
        }
        entries
    }
}

/// What one action works on.
struct Op<'o> {
    q: &'o str,
    sid: Option<&'o str>,
    source: Option<&'o Value>,
    /// The target id of the link found for this op, if any.
    link: Option<&'o str>,
    target_id: Option<String>,
    target: Option<(u64, &'o Value)>,
    /// The id the engine gave a target it created without a mapped `_id`.
    oracle_id: Option<String>,
    source_phase: bool,
}

/// Writes (or repoints) the link of `op`'s source to `t` (§3.5 LINK). A target another
/// source already holds for this qualifier refuses the object (the unique index).
fn link(w0: &World, w1: &mut World, op: &Op<'_>, t: &str) -> Result<(), Failed> {
    let sid = op.sid.ok_or(Failed::Op)?;
    if op.link == Some(t) {
        return Ok(());
    }
    if w0.link_to_target(op.q, t).is_some_and(|s| s != sid) {
        return Err(Failed::Object);
    }
    w1.links
        .insert((op.q.to_string(), sid.to_string()), t.to_string());
    Ok(())
}

fn unlink(w1: &mut World, op: &Op<'_>) {
    if let (Some(_), Some(sid)) = (op.link, op.sid) {
        w1.links.remove(&(op.q.to_string(), sid.to_string()));
    }
}

/// Records a write of target `t` by this object: a second one refuses the object.
fn write_once(written: &mut BTreeSet<String>, t: &str) -> Result<(), Failed> {
    if written.insert(t.to_string()) {
        Ok(())
    } else {
        Err(Failed::Object)
    }
}

/// §3.5, against the world before the object (`w0`), writing into `w1`.
fn perform(
    m: &Model,
    w0: &World,
    w1: &mut World,
    written: &mut BTreeSet<String>,
    op: &mut Op<'_>,
    action: &str,
) -> Result<(), Failed> {
    match action {
        "CREATE" => {
            let source = op.source.ok_or(Failed::Op)?;
            // "Fails ... if a target is already known (`target object already exists`)".
            if op.target.is_some() {
                return Err(Failed::Op);
            }
            let (mapped_id, body) = m.mapped(source);
            let id = match mapped_id.or_else(|| op.oracle_id.clone()) {
                Some(id) => id,
                None => panic!("the engine created a target without telling its id"),
            };
            if w0.targets.contains_key(&id) {
                return Err(Failed::Op);
            }
            // The entry names the target the action made, even when the store then refuses
            // the object.
            op.target_id = Some(id.clone());
            write_once(written, &id)?;
            w1.targets.insert(id.clone(), (1, body));
            link(w0, w1, op, &id)
        }
        "UPDATE" => {
            let Some((rev, old)) = op.target else {
                return Err(Failed::Op);
            };
            let tid = op.target_id.clone().ok_or(Failed::Op)?;
            // "if no link yet, create link first (so FOUND+UPDATE links)".
            if op.source_phase && op.sid.is_some() {
                link(w0, w1, op, &tid)?;
            }
            let source = op.source.ok_or(Failed::Op)?;
            let (mapped_id, body) = m.mapped(source);
            // "`_id` must not change".
            if mapped_id.is_some_and(|id| id != tid) {
                return Err(Failed::Op);
            }
            let mut new = old.clone();
            new["userName"] = body["userName"].clone();
            // "write only if the object changed".
            if new != *old {
                write_once(written, &tid)?;
                w1.targets.insert(tid, (rev + 1, new));
            }
            Ok(())
        }
        "LINK" => {
            let tid = op.target_id.clone().ok_or(Failed::Op)?;
            op.sid.ok_or(Failed::Op)?;
            link(w0, w1, op, &tid)
        }
        "DELETE" => {
            if let (Some(t), Some(_)) = (op.target_id.clone(), op.target) {
                if w0.targets.contains_key(&t) {
                    write_once(written, &t)?;
                    w1.targets.remove(&t);
                }
            }
            unlink(w1, op);
            Ok(())
        }
        "UNLINK" => {
            unlink(w1, op);
            Ok(())
        }
        "EXCEPTION" | "REPORT" | "NOREPORT" | "ASYNC" | "IGNORE" => Ok(()),
        other => panic!("no such action {other}"),
    }
}
