//! The embedded store's object count per set: how many objects the set holds, and how many
//! were created and deleted since the count was built (counters that only grow, so a reader
//! comparing two readings learns whether anything came or went in between).
//!
//! The count of a set is a `SET_COUNT` key of the `data` tree, written in the same sled batch
//! as the objects that change it, so a crash recovers counts and objects together (sled
//! recovers whole batches, in log order). Batches that write objects apply while holding the
//! one counts lock (sled's `apply_batch` takes its own global write lock anyway, so writers
//! lose no parallelism to it), and readers take that lock: a reading is exact for the state
//! after some batch, never half of one.
//!
//! A write is classified by its batch's precondition on the same object key: "must not
//! exist" and written → created; "at revision r" and removed → deleted; otherwise unchanged.
//! An object written or removed without a precondition (the index rebuild, the removal of an
//! unreadable object, benchmark loaders) cannot be classified without a read, so it marks its
//! set unknown: no count is given for it until the next open rebuilds the counts (at open
//! nothing else writes, so one scan of the object keys is exact). Stores of older builds have
//! no counts: the first open by this build counts them.
//!
//! Invariant: for a set whose count is known, `objects` is the number of its object keys in
//! the tree after the last applied batch. Writing the `data` tree other than through
//! `Embedded::apply` (or this file's rebuild at open) breaks it.

use std::collections::HashMap;

use parking_lot::{Mutex, MutexGuard};

use super::sled_err;
use crate::storage::batch::{Precondition, Slot};
use crate::storage::records::{ObjectCounts, SetCountRecord};
use crate::storage::{codec, keys, Expect, Result};

/// `meta` key saying the counts in the `data` tree were built and are kept by every write.
const COUNTED: &str = "object-counts";

/// The counts of every set that has one (a set without a record has no objects).
#[derive(Default)]
pub(super) struct Counts {
    sets: Mutex<HashMap<String, SetCountRecord>>,
}

/// How one batch changes the counts of the sets it writes objects of.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Delta {
    sets: Vec<(String, SetDelta)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SetDelta {
    created: u64,
    deleted: u64,
    unknown: bool,
}

/// What the batch's object writes do to the counts, or None when it writes no object.
pub(super) fn delta(
    writes: &[(Vec<u8>, Option<Vec<u8>>)],
    preconditions: &[Precondition],
) -> Option<Delta> {
    let mut written: Vec<(&[u8], bool)> = writes
        .iter()
        .filter(|(k, _)| k.first() == Some(&keys::OBJECT))
        .map(|(k, v)| (&k[..], v.is_some()))
        .collect();
    if written.is_empty() {
        return None;
    }
    let mut expected: Vec<(&[u8], Expect)> = preconditions
        .iter()
        .filter(|p| p.slot == Slot::Object)
        .map(|p| (&p.key[..], p.expect))
        .collect();
    expected.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // A key written twice in one batch (its last write wins) is not classified: unknown.
    written.sort_by(|a, b| a.0.cmp(b.0));
    let twice: Vec<bool> = (0..written.len())
        .map(|i| {
            (i > 0 && written[i - 1].0 == written[i].0)
                || written.get(i + 1).is_some_and(|n| n.0 == written[i].0)
        })
        .collect();
    let mut out = Delta::default();
    for (i, (key, insert)) in written.iter().enumerate() {
        let set = match keys::parse_object_key(key) {
            Some((set, _)) => set,
            // Not a key this build writes: its set cannot be told, so no count is trusted.
            None => "",
        };
        let at = match out.sets.iter().position(|(s, _)| s == set) {
            Some(at) => at,
            None => {
                out.sets.push((set.to_string(), SetDelta::default()));
                out.sets.len() - 1
            }
        };
        let d = &mut out.sets[at].1;
        let expect = expected
            .binary_search_by(|e| e.0.cmp(key))
            .ok()
            .map(|at| expected[at].1);
        match (expect, insert) {
            _ if twice[i] || set.is_empty() => d.unknown = true,
            (Some(Expect::Absent), true) => d.created += 1,
            (Some(Expect::Rev(_)), false) => d.deleted += 1,
            // Updated in place, or a removal of what was checked absent: no change.
            (Some(_), _) => {}
            (None, _) => d.unknown = true,
        }
    }
    Some(out)
}

impl SetCountRecord {
    fn after(self, d: SetDelta) -> SetCountRecord {
        let objects = (self.objects + d.created).checked_sub(d.deleted);
        SetCountRecord {
            known: self.known && !d.unknown && objects.is_some(),
            objects: objects.unwrap_or(0),
            creates: self.creates + d.created,
            deletes: self.deletes + d.deleted,
        }
    }
}

/// The counts lock, held by a writer from staging the new counts until its batch applied.
pub(super) struct Staged<'a> {
    guard: MutexGuard<'a, HashMap<String, SetCountRecord>>,
    new: Vec<(String, SetCountRecord)>,
}

impl Counts {
    /// Locks the counts and adds the records `delta` leads to to `sb`; call
    /// [`Staged::applied`] once the batch is written.
    pub(super) fn stage(&self, delta: Delta, sb: &mut sled::Batch) -> Result<Staged<'_>> {
        let guard = self.sets.lock();
        let mut new = Vec::with_capacity(delta.sets.len());
        for (set, d) in delta.sets {
            let old = guard.get(&set).copied().unwrap_or(SetCountRecord {
                known: true,
                ..SetCountRecord::default()
            });
            let rec = old.after(d);
            sb.insert(keys::set_count_key(&set), codec::encode(&rec)?);
            new.push((set, rec));
        }
        Ok(Staged { guard, new })
    }

    /// The counts of `set`, or None when they are not known.
    pub(super) fn get(&self, set: &str) -> Option<ObjectCounts> {
        let rec = self
            .sets
            .lock()
            .get(set)
            .copied()
            .unwrap_or(SetCountRecord {
                known: true,
                ..SetCountRecord::default()
            });
        rec.known.then_some(ObjectCounts {
            objects: rec.objects,
            creates: rec.creates,
            deletes: rec.deletes,
        })
    }

    /// Reads the counts at open, rebuilding them by one scan of the object keys when they were
    /// never built (a store of an older build) or a set's count is unknown. Runs before the
    /// store is handed out, so nothing writes meanwhile.
    pub(super) fn open(data: &sled::Tree, meta: &sled::Tree) -> Result<Counts> {
        let mut sets = HashMap::new();
        let mut all_known = true;
        let mut stored = Vec::new();
        for item in data.scan_prefix([keys::SET_COUNT]) {
            let (k, v) = item.map_err(sled_err("reading object counts"))?;
            let rec: SetCountRecord = codec::decode(&v)?;
            let Some(set) = keys::set_from_count_key(&k) else {
                all_known = false;
                stored.push(k);
                continue;
            };
            all_known &= rec.known;
            sets.insert(set.to_string(), rec);
            stored.push(k);
        }
        let counted = meta
            .contains_key(COUNTED)
            .map_err(sled_err("reading object counts"))?;
        if counted && all_known {
            return Ok(Counts {
                sets: Mutex::new(sets),
            });
        }
        tracing::info!("counting the objects of every set (once, at open)");
        let sets = count_all(data)?;
        let mut sb = sled::Batch::default();
        for k in stored {
            sb.remove(k);
        }
        for (set, rec) in &sets {
            sb.insert(keys::set_count_key(set), codec::encode(rec)?);
        }
        data.apply_batch(sb)
            .map_err(sled_err("writing object counts"))?;
        // After the counts in sled's log: a recovered marker implies recovered counts.
        meta.insert(COUNTED, &[1u8][..])
            .map_err(sled_err("writing object counts"))?;
        Ok(Counts {
            sets: Mutex::new(sets),
        })
    }
}

impl Staged<'_> {
    /// Records the new counts once their batch is written (a failed batch changes nothing).
    pub(super) fn applied(mut self) {
        for (set, rec) in self.new.drain(..) {
            self.guard.insert(set, rec);
        }
    }
}

/// Counts the object keys of every set (sets are contiguous in key order).
fn count_all(data: &sled::Tree) -> Result<HashMap<String, SetCountRecord>> {
    let mut sets: HashMap<String, SetCountRecord> = HashMap::new();
    let mut add = |set: String, n: u64| {
        let rec = sets.entry(set).or_insert(SetCountRecord {
            known: true,
            ..SetCountRecord::default()
        });
        rec.objects += n;
    };
    // (prefix of the set being counted, its name, objects so far)
    let mut current: Option<(Vec<u8>, String, u64)> = None;
    for item in data.scan_prefix([keys::OBJECT]).keys() {
        let k = item.map_err(sled_err("counting objects"))?;
        match &mut current {
            Some((prefix, _, n)) if k.starts_with(prefix) => *n += 1,
            _ => {
                if let Some((_, set, n)) = current.take() {
                    add(set, n);
                }
                let set = keys::parse_object_key(&k)
                    .map(|(set, _)| set.to_string())
                    .unwrap_or_default();
                current = Some((keys::object_prefix(&set), set, 1));
            }
        }
    }
    if let Some((_, set, n)) = current {
        add(set, n);
    }
    Ok(sets)
}
