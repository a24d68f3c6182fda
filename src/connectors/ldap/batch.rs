//! A unit of work's writes sent together (`ObjectSet::write_batch` of the LDAP set): the ops
//! run at once on up to `lanes` threads, each with its own pooled connection, so the
//! directory works on several entries at a time instead of waiting for recond between them.
//!
//! * Each op keeps its own result: a directory refusal fails that op alone, with the
//!   directory's result code and message; the others are written. LDAP has no transaction
//!   over several entries, so there is no batch-wide failure either: an unreachable directory
//!   fails each remaining op on its own (promptly, through the pool's timeouts).
//! * An entry created (or renamed) under a parent created or renamed in the same batch must
//!   come after it: when the batch has such a pair, it runs in waves by the depth of the dn
//!   each op writes (shallower first, each wave concurrent), so parents exist before their
//!   children whatever the engine's order.
//! * Otherwise ops run concurrently only when their order cannot change their outcome; if it
//!   could, the batch runs one op after the other in the engine's order, as the default
//!   `write_batch`: two ops on the same `_id` or the same target dn, or deletes mixed with
//!   other writes (a delete may free the dn a create takes).
//! * A batch of deletes runs concurrently; a delete the directory refuses because the entry
//!   still has children (notAllowedOnNonLeaf, 66) is tried again after the others, so a parent
//!   and its child deleted in one batch end as they would in a child-first order.

use std::collections::HashSet;

use parking_lot::Mutex;
use serde_json::Value;

use super::entry::{norm_dn, split_rdns};
use super::set::LdapSet;
use crate::objects::{ObjectError, ObjectErrorKind, ObjectSet, WriteOp};

const NOT_ALLOWED_ON_NON_LEAF: &str = "LDAP error 66 ";

type Outcome = Result<Value, ObjectError>;

/// Runs `ops` on `set` with up to `lanes` at a time; one result per op, in order.
pub fn run(set: &LdapSet, ops: Vec<WriteOp>, lanes: usize) -> Vec<Outcome> {
    let Some(depths) = plan(set, &ops).filter(|_| lanes > 1 && ops.len() > 1) else {
        return ops.into_iter().map(|op| one(set, op)).collect();
    };
    let deletes = ops.iter().all(|op| matches!(op, WriteOp::Delete { .. }));
    let retry: Vec<WriteOp> = if deletes { ops.clone() } else { Vec::new() };
    let mut results = waves(set, ops, &depths, lanes);
    if deletes {
        // Parents refused while a child was still there: again, until a pass changes nothing.
        loop {
            let mut progress = false;
            for (i, op) in retry.iter().enumerate() {
                let refused = matches!(&results[i], Err(e) if is_non_leaf(e));
                if refused {
                    results[i] = one(set, op.clone());
                    progress |= results[i].is_ok();
                }
            }
            if !progress {
                break;
            }
        }
    }
    results
}

fn is_non_leaf(e: &ObjectError) -> bool {
    e.kind == ObjectErrorKind::BadRequest && e.message.contains(NOT_ALLOWED_ON_NON_LEAF)
}

/// One op, as the default `write_batch` runs it.
fn one(set: &LdapSet, op: WriteOp) -> Outcome {
    match op {
        WriteOp::Create { id, body } => set.create(id.as_deref(), body),
        WriteOp::Update { id, body } => set.put(&id, body, None, false).map(|(v, _)| v),
        WriteOp::Delete { id } => set.delete(&id, None),
    }
}

/// Runs the ops wave by wave (ascending depth), each wave on up to `lanes` threads taking
/// ops from one queue; results in the ops' order.
fn waves(set: &LdapSet, ops: Vec<WriteOp>, depths: &[usize], lanes: usize) -> Vec<Outcome> {
    let n = ops.len();
    let mut pending: Vec<(usize, usize, WriteOp)> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| (depths[i], i, op))
        .collect();
    pending.sort_by_key(|(d, i, _)| (*d, *i));
    let mut done: Vec<(usize, Outcome)> = Vec::with_capacity(n);
    let mut rest = pending.into_iter().peekable();
    while let Some(&(depth, _, _)) = rest.peek() {
        let mut wave = Vec::new();
        while let Some((_, i, op)) = rest.next_if(|(d, _, _)| *d == depth) {
            wave.push((i, op));
        }
        done.extend(concurrent(set, wave, lanes));
    }
    done.sort_by_key(|(i, _)| *i);
    debug_assert_eq!(done.len(), n, "every op has its result");
    done.into_iter().map(|(_, r)| r).collect()
}

/// Runs the ops of one wave on up to `lanes` threads.
fn concurrent(set: &LdapSet, wave: Vec<(usize, WriteOp)>, lanes: usize) -> Vec<(usize, Outcome)> {
    let threads = lanes.min(wave.len());
    let n = wave.len();
    let queue = Mutex::new(wave.into_iter());
    let done: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some((i, op)) = queue.lock().next() else {
                    break;
                };
                let outcome = one(set, op);
                done.lock().push((i, outcome));
            });
        }
    });
    done.into_inner()
}

/// When the ops may run concurrently (see the module doc), the wave of each: the depth of
/// the dn it writes when the batch writes a parent and its child, else one wave. `None`: run
/// them one after the other in order.
fn plan(set: &LdapSet, ops: &[WriteOp]) -> Option<Vec<usize>> {
    let deletes = ops
        .iter()
        .filter(|op| matches!(op, WriteOp::Delete { .. }))
        .count();
    if deletes != 0 && deletes != ops.len() {
        return None;
    }
    let mut ids = HashSet::new();
    let mut dns = HashSet::new();
    let mut written: Vec<Option<Vec<String>>> = Vec::with_capacity(ops.len());
    for op in ops {
        let (id, body) = match op {
            WriteOp::Create { id, body } => (id.as_deref(), Some(body)),
            WriteOp::Update { id, body } => (Some(id.as_str()), Some(body)),
            WriteOp::Delete { id } => (Some(id.as_str()), None),
        };
        if id.is_some_and(|id| !ids.insert(id.to_string())) {
            return None;
        }
        // The dn the op gives the entry (a create's; an update's, which may be a new one).
        let dn = body.and_then(|b| set.dn_in(b)).map(|dn| norm_dn(&dn));
        if let Some(dn) = &dn {
            if !dns.insert(dn.clone()) {
                return None;
            }
        }
        written.push(dn.map(|dn| split_rdns(&dn)));
    }
    let nested = written
        .iter()
        .flatten()
        .any(|rdns| rdns.len() > 1 && dns.contains(&rdns[1..].join(",")));
    Some(
        written
            .iter()
            .map(|w| match w {
                Some(rdns) if nested => rdns.len(),
                _ => 0,
            })
            .collect(),
    )
}
