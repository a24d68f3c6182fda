//! Batches and the one write discipline: a [`DataBatch`] of objects, index entries and links
//! with its compare-and-swap preconditions, applied atomically under striped locks; an
//! [`ItemBatch`] of a run's association entries or audit events.

use super::locks::{key_hash, stripe, Seen};
use super::records::{EntryRecord, IndexTerm, Link, LinkRecordView, ObjectRecord};
use super::{codec, keys, sled_err, Result, Store, StoreError};

/// What a write expects to find (compare-and-swap precondition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The object or link must not exist.
    Absent,
    /// The object or link must exist with this revision.
    Rev(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Object,
    LinkFirst,
    LinkSecond,
}

/// One precondition of a batch: the key, how to read its revision, and what is expected.
struct Precondition {
    key: Vec<u8>,
    /// `locks::key_hash(key)`.
    hash: u64,
    slot: Slot,
    expect: Expect,
}

impl Precondition {
    fn new(key: Vec<u8>, slot: Slot, expect: Expect) -> Precondition {
        Precondition {
            hash: key_hash(&key),
            key,
            slot,
            expect,
        }
    }
}

/// A position in a [`DataBatch`], to drop what was staged after it.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchMark {
    writes: usize,
    preconditions: usize,
    ops: usize,
}

impl BatchMark {
    /// Staged writes plus preconditions before the mark (for tests of callers).
    pub fn len_for_tests(&self) -> usize {
        self.writes + self.preconditions
    }
}

/// A batch of writes to the `data` tree, applied atomically by [`Store::apply`] after its
/// preconditions are checked (see [`Store::apply`] for the write discipline).
#[derive(Default)]
pub struct DataBatch {
    /// Writes in order (a later write of a key wins); `None` removes.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ops: usize,
    preconditions: Vec<Precondition>,
    /// Link keys read for this batch (by the `*_noted` reads), which a precondition on the same
    /// key takes instead of reading again while the key's write epoch is unchanged.
    seen: Vec<Seen>,
}

impl DataBatch {
    /// The object `set/id` must be as expected when the batch is applied.
    pub fn expect_object(&mut self, set: &str, id: &str, expect: Expect) {
        self.preconditions.push(Precondition::new(
            keys::object_key(set, id),
            Slot::Object,
            expect,
        ));
    }

    /// The link (type, qualifier, firstId) must be as expected when the batch is applied.
    pub fn expect_link(
        &mut self,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
        expect: Expect,
    ) {
        self.preconditions.push(Precondition::new(
            keys::link_key(keys::LINK_FIRST, link_type, qualifier, first_id),
            Slot::LinkFirst,
            expect,
        ));
    }

    /// No link (type, qualifier, *, secondId) may exist when the batch is applied.
    pub fn expect_no_link_to_second(&mut self, link_type: &str, qualifier: &str, second_id: &str) {
        self.preconditions.push(Precondition::new(
            keys::link_key(keys::LINK_SECOND, link_type, qualifier, second_id),
            Slot::LinkSecond,
            Expect::Absent,
        ));
    }

    pub fn mark(&self) -> BatchMark {
        BatchMark {
            writes: self.writes.len(),
            preconditions: self.preconditions.len(),
            ops: self.ops,
        }
    }

    /// Keeps what a read of a link key found, for a precondition on the same key.
    pub(super) fn note(&mut self, seen: Seen) {
        self.seen.push(seen);
    }

    /// Drops every write and precondition staged after `m` (reads noted stay: what they
    /// found is checked against the key's write epoch, whatever batch they are used in).
    pub fn truncate(&mut self, m: &BatchMark) {
        self.writes.truncate(m.writes);
        self.preconditions.truncate(m.preconditions);
        self.ops = m.ops.min(self.ops);
    }

    /// Moves another batch's writes and preconditions into this one (after this one's).
    pub fn append(&mut self, mut other: DataBatch) {
        self.writes.append(&mut other.writes);
        self.preconditions.append(&mut other.preconditions);
        self.seen.append(&mut other.seen);
        self.ops += other.ops;
    }

    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push((key, Some(value)));
    }

    fn remove(&mut self, key: Vec<u8>) {
        self.writes.push((key, None));
    }
    pub fn new() -> DataBatch {
        DataBatch::default()
    }

    pub fn len(&self) -> usize {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Writes an object. `old_terms`/`new_terms` are (attribute, term) pairs of the indexed
    /// attributes before and after; only their difference is written.
    pub fn put_object(
        &mut self,
        set: &str,
        id: &str,
        rev: u64,
        body: &serde_json::Map<String, serde_json::Value>,
        old_terms: &[(String, IndexTerm)],
        new_terms: &[(String, IndexTerm)],
    ) -> Result<()> {
        let body = serde_json::to_vec(body).map_err(|e| StoreError::Codec(e.to_string()))?;
        let value = codec::encode(&ObjectRecord { rev, body: &body })?;
        self.insert(keys::object_key(set, id), value);
        for (attr, term) in old_terms {
            if !new_terms.iter().any(|(a, t)| a == attr && t == term) {
                self.remove(keys::index_key(set, attr, &term.0, id));
            }
        }
        for (attr, term) in new_terms {
            if !old_terms.iter().any(|(a, t)| a == attr && t == term) {
                self.insert(keys::index_key(set, attr, &term.0, id), Vec::new());
            }
        }
        self.ops += 1;
        Ok(())
    }

    pub fn delete_object(&mut self, set: &str, id: &str, old_terms: &[(String, IndexTerm)]) {
        self.remove(keys::object_key(set, id));
        for (attr, term) in old_terms {
            self.remove(keys::index_key(set, attr, &term.0, id));
        }
        self.ops += 1;
    }

    /// Writes a link. `previous_second` is the second id the same (type, qualifier, first)
    /// link pointed to before, whose reverse key must go.
    pub fn put_link(&mut self, link: &Link, previous_second: Option<&str>) -> Result<()> {
        if let Some(prev) = previous_second {
            if prev != link.second_id {
                self.remove(keys::link_key(
                    keys::LINK_SECOND,
                    &link.link_type,
                    &link.qualifier,
                    prev,
                ));
            }
        }
        let value = codec::encode(&LinkRecordView {
            second_id: &link.second_id,
            rev: link.rev,
        })?;
        self.insert(
            keys::link_key(
                keys::LINK_FIRST,
                &link.link_type,
                &link.qualifier,
                &link.first_id,
            ),
            value,
        );
        self.insert(
            keys::link_key(
                keys::LINK_SECOND,
                &link.link_type,
                &link.qualifier,
                &link.second_id,
            ),
            link.first_id.as_bytes().to_vec(),
        );
        self.ops += 1;
        Ok(())
    }

    pub fn delete_link(&mut self, link: &Link) {
        self.remove(keys::link_key(
            keys::LINK_FIRST,
            &link.link_type,
            &link.qualifier,
            &link.first_id,
        ));
        self.remove(keys::link_key(
            keys::LINK_SECOND,
            &link.link_type,
            &link.qualifier,
            &link.second_id,
        ));
        self.ops += 1;
    }
}

/// A batch of per-run items (association entries or audit events).
#[derive(Default)]
pub struct ItemBatch {
    batch: sled::Batch,
    ops: usize,
}

impl ItemBatch {
    pub fn len(&self) -> usize {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    pub fn put_entry(&mut self, seq: u64, item: u64, entry: &EntryRecord) -> Result<()> {
        self.batch
            .insert(&keys::item_key(seq, item)[..], codec::encode(entry)?);
        self.ops += 1;
        Ok(())
    }

    pub fn put_audit(&mut self, seq: u64, item: u64, event: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string(event).map_err(|e| StoreError::Codec(e.to_string()))?;
        self.batch
            .insert(&keys::item_key(seq, item)[..], codec::encode(&text)?);
        self.ops += 1;
        Ok(())
    }
}

/// A key that occurs twice among `(hash, key)` pairs, if any. This runs for every object a
/// run writes, so the pairs are sorted by hash (integers, where a sort of the byte strings
/// compared long shared prefixes: callgrind put it at ~1.9 k instructions per key) and only
/// keys of equal hash are compared.
fn key_twice<'k>(keys: &mut [(u64, &'k [u8])]) -> Option<&'k [u8]> {
    keys.sort_unstable_by_key(|(hash, _)| *hash);
    keys.chunk_by(|a, b| a.0 == b.0)
        .filter(|same_hash| same_hash.len() > 1)
        .find_map(|same_hash| {
            same_hash.iter().enumerate().find_map(|(i, (_, key))| {
                same_hash[i + 1..]
                    .iter()
                    .any(|(_, other)| other == key)
                    .then_some(*key)
            })
        })
}

impl Store {
    /// Applies a batch atomically: the write discipline of every writer of the `data` tree
    /// (runs, REST, scripts). Its preconditions (expected revision, or "must not exist") are
    /// checked and the batch applied while holding the striped locks of every key they name,
    /// so no other checked write of those keys can come between the check and the write. A
    /// failed check writes nothing and returns [`StoreError::Conflict`]; the caller re-reads
    /// and retries. (A shared-database backend does the same with `UPDATE … WHERE rev = $old`.)
    ///
    /// A precondition on a link key the writer read for this batch (`Store::link_by_*_for`)
    /// takes what that read found instead of reading again, if the key's write epoch, checked
    /// under the same locks, shows no write since the read (see `locks`).
    pub fn apply(&self, batch: DataBatch) -> Result<()> {
        if batch.ops == 0 && batch.preconditions.is_empty() {
            return Ok(());
        }
        let DataBatch {
            writes,
            preconditions,
            mut seen,
            ..
        } = batch;
        // Written link keys are locked too and their write epochs bumped under the locks, so
        // that a read of a link key noted earlier can be trusted while its epoch holds (see
        // `locks`).
        let written_links: Vec<u64> = writes
            .iter()
            .filter(|(k, _)| matches!(k.first(), Some(&keys::LINK_FIRST | &keys::LINK_SECOND)))
            .map(|(k, _)| key_hash(k))
            .collect();
        let mut stripes: Vec<usize> = preconditions
            .iter()
            .map(|p| p.hash)
            .chain(written_links.iter().copied())
            .map(stripe)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards = self.stripes.lock(&stripes);
        seen.sort_unstable_by_key(|s| s.hash);
        self.check(&preconditions, &seen)?;
        let mut sb = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => sb.insert(k, v),
                None => sb.remove(k),
            }
        }
        let applied = self.data.apply_batch(sb);
        // Bumped even if sled failed: a needless re-read is harmless, a missed bump is not.
        for h in written_links {
            self.stripes.bump(h);
        }
        applied.map_err(sled_err("writing objects and links"))
    }

    /// What a noted read found for a precondition's key, if the key was not written since.
    fn seen_for<'s>(&self, p: &Precondition, seen: &'s [Seen]) -> Option<&'s Seen> {
        if p.slot == Slot::Object {
            return None;
        }
        let from = seen.partition_point(|s| s.hash < p.hash);
        seen[from..]
            .iter()
            .take_while(|s| s.hash == p.hash)
            .find(|s| s.key == p.key && self.stripes.still_current(s))
    }

    fn check(&self, preconditions: &[Precondition], seen: &[Seen]) -> Result<()> {
        // A key expected twice means two writes of it in one batch: refused.
        let mut keys: Vec<(u64, &[u8])> =
            preconditions.iter().map(|p| (p.hash, &p.key[..])).collect();
        if let Some(key) = key_twice(&mut keys) {
            return Err(StoreError::Conflict(format!(
                "{} is written twice in one batch",
                keys::describe(key)
            )));
        }
        for p in preconditions {
            let found = match self.seen_for(p, seen) {
                Some(s) => s.found,
                None => self.read_revision(p)?,
            };
            let ok = match (p.expect, found) {
                (Expect::Absent, None) => true,
                (Expect::Rev(want), Some(have)) => want == have,
                _ => false,
            };
            if !ok {
                let what = keys::describe(&p.key);
                return Err(StoreError::Conflict(match (p.expect, found) {
                    (Expect::Absent, Some(_)) => format!("{what} already exists"),
                    (Expect::Rev(want), Some(have)) => {
                        format!("{what} is at revision {have}, expected {want}")
                    }
                    _ => format!("{what} no longer exists"),
                }));
            }
        }
        Ok(())
    }

    /// The stored revision of a precondition's key (0 for a `LINK_SECOND` key), or None.
    fn read_revision(&self, p: &Precondition) -> Result<Option<u64>> {
        let current = self
            .data
            .get(&p.key)
            .map_err(sled_err("checking a revision"))?;
        Ok(match (&current, p.slot) {
            (None, _) => None,
            (Some(v), Slot::Object) => Some(codec::decode_borrowed::<ObjectRecord>(v)?.rev),
            (Some(v), Slot::LinkFirst) => Some(codec::decode_borrowed::<LinkRecordView>(v)?.rev),
            (Some(_), Slot::LinkSecond) => Some(0),
        })
    }

    pub fn apply_entries(&self, batch: ItemBatch) -> Result<()> {
        Self::apply_items(&self.entries, batch, "writing association entries")
    }

    pub fn apply_audit(&self, batch: ItemBatch) -> Result<()> {
        Self::apply_items(&self.audit, batch, "writing audit events")
    }

    fn apply_items(tree: &sled::Tree, batch: ItemBatch, context: &str) -> Result<()> {
        if batch.ops == 0 {
            return Ok(());
        }
        tree.apply_batch(batch.batch).map_err(sled_err(context))
    }
}

#[cfg(test)]
mod tests {
    use super::key_twice;

    #[test]
    fn a_key_twice_is_found_and_equal_hashes_alone_are_not_a_repeat() {
        let (a, b, c) = (&b"a"[..], &b"b"[..], &b"c"[..]);
        // Distinct keys, two of them sharing a hash (a collision): no repeat.
        assert_eq!(key_twice(&mut [(7, a), (1, c), (7, b)]), None);
        // The same key among others of its hash, in any position.
        assert_eq!(key_twice(&mut [(7, a), (7, b), (1, c), (7, b)]), Some(b));
        assert_eq!(key_twice(&mut [(7, b), (7, a), (7, b)]), Some(b));
        assert_eq!(key_twice(&mut []), None);
        assert_eq!(key_twice(&mut [(3, a)]), None);
    }
}
