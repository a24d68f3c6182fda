//! The embedded store's write discipline: a [`DataBatch`] applied atomically (one sled
//! `apply_batch` of the `data` tree, with the object counts it changes, see `counts`) after
//! its preconditions are checked under striped locks;
//! an [`ItemBatch`] applied to the `entries` or `audit` tree.

use super::counts;
use super::locks::{key_hash, stripe, Seen};
use super::{sled_err, Embedded};
use crate::storage::batch::{key_twice, Precondition, Slot};
use crate::storage::records::{LinkRecordView, ObjectRecord};
use crate::storage::{codec, keys, DataBatch, Expect, ItemBatch, Result, StoreError};

impl Embedded {
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
        let delta = counts::delta(&writes, &preconditions);
        let mut sb = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => sb.insert(k, v),
                None => sb.remove(k),
            }
        }
        // A batch of objects applies under the counts lock, its new counts in the batch.
        let staged = delta.map(|d| self.counts.stage(d, &mut sb)).transpose()?;
        let applied = self.data.apply_batch(sb);
        if let (Some(s), Ok(())) = (staged, &applied) {
            s.applied();
        }
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
        if batch.items.is_empty() {
            return Ok(());
        }
        let mut sb = sled::Batch::default();
        for (seq, item, value) in batch.items {
            sb.insert(&keys::item_key(seq, item)[..], value);
        }
        tree.apply_batch(sb).map_err(sled_err(context))
    }
}
