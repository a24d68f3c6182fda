//! Batches, as every writer stages them: a [`DataBatch`] of objects, index entries and links
//! with its compare-and-swap preconditions (applied atomically by `Store::apply`, the one
//! write discipline); an [`ItemBatch`] of a run's association entries or audit events.
//!
//! A batch is the same for both repositories. Its writes are the embedded store's keys and
//! values (built here, by [`keys`] and [`codec`], while staging: the embedded store applies
//! them as they are, with no second pass). Each key names one logical operation — an object
//! (set, id), an index entry (set, attr, term, id), a link by its source or by its target —
//! so the PostgreSQL repository reads the operations back from the keys (`keys::parse`)
//! instead of the batch carrying them twice.

use super::embedded::locks::{key_hash, Seen};
use super::records::{EntryRecord, IndexTerm, Link, LinkRecordView, ObjectRecord};
use super::{codec, keys, Result, StoreError};

/// What a write expects to find (compare-and-swap precondition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The object or link must not exist.
    Absent,
    /// The object or link must exist with this revision.
    Rev(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage) enum Slot {
    Object,
    LinkFirst,
    LinkSecond,
}

/// One precondition of a batch: the key, how to read its revision, and what is expected.
pub(in crate::storage) struct Precondition {
    pub(in crate::storage) key: Vec<u8>,
    /// `locks::key_hash(key)`.
    pub(in crate::storage) hash: u64,
    pub(in crate::storage) slot: Slot,
    pub(in crate::storage) expect: Expect,
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
    pub(in crate::storage) writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub(in crate::storage) ops: usize,
    pub(in crate::storage) preconditions: Vec<Precondition>,
    /// Link keys read for this batch (by the `*_noted` reads), which a precondition on the same
    /// key takes instead of reading again while the key's write epoch is unchanged.
    pub(in crate::storage) seen: Vec<Seen>,
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
    pub(in crate::storage) fn note(&mut self, seen: Seen) {
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

/// A batch of per-run items (association entries or audit events): (run seq, item number,
/// encoded value), in order.
#[derive(Default)]
pub struct ItemBatch {
    pub(in crate::storage) items: Vec<(u64, u64, Vec<u8>)>,
}

impl ItemBatch {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn put_entry(&mut self, seq: u64, item: u64, entry: &EntryRecord) -> Result<()> {
        self.items.push((seq, item, codec::encode(entry)?));
        Ok(())
    }

    pub fn put_audit(&mut self, seq: u64, item: u64, event: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string(event).map_err(|e| StoreError::Codec(e.to_string()))?;
        self.items.push((seq, item, codec::encode(&text)?));
        Ok(())
    }
}

/// A key that occurs twice among `(hash, key)` pairs, if any. This runs for every object a
/// run writes, so the pairs are sorted by hash (integers, where a sort of the byte strings
/// compared long shared prefixes: callgrind put it at ~1.9 k instructions per key) and only
/// keys of equal hash are compared.
pub(in crate::storage) fn key_twice<'k>(keys: &mut [(u64, &'k [u8])]) -> Option<&'k [u8]> {
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
