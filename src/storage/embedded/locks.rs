//! Striped write locks and write epochs of the `data` tree (see [`super::Embedded::apply`]).
//!
//! A key hashes to one of [`SLOTS`] slots; a slot belongs to one of [`STRIPES`] stripes (the
//! slot's low bits), each with a lock. `apply` holds the locks of every key it checks or
//! whose link it writes, and bumps the epoch of each written link key's slot after the write,
//! before it lets go of the locks.
//!
//! Invariant: a link key is only written by `apply`, under its stripe's lock, and its slot's
//! epoch is bumped before that lock is released. So a read of a link key that loaded the
//! slot's epoch first, and finds it unchanged later under the stripe's lock, still describes
//! the stored value: a writer that changed the key since would have bumped the epoch (or
//! still hold the lock). That is what lets a precondition reuse the worker's read of the same
//! key instead of reading it again ([`Seen`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Lock stripes (a power of two).
const STRIPES: usize = 256;
/// Epoch slots (a power of two, a multiple of [`STRIPES`]): more slots than stripes, so that a
/// unit's ~2,000 link writes invalidate few of the next unit's reads.
const SLOTS: usize = 1 << 16;

/// A 64-bit hash of a key (FxHash-style, eight bytes at a time).
pub(in crate::storage) fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // The multiply leaves the high bits best mixed; slots and stripes take them.
    h ^ (h >> 32)
}

fn slot(hash: u64) -> usize {
    ((hash >> 16) as usize) & (SLOTS - 1)
}

pub(super) fn stripe(hash: u64) -> usize {
    slot(hash) & (STRIPES - 1)
}

/// What a read of one link key found, and the epoch of its slot loaded before the read.
/// Kept in a [`super::DataBatch`] so that a precondition on the same key can take it instead
/// of reading again, while the slot's epoch is unchanged (see the module doc).
#[derive(Debug, Clone)]
pub(in crate::storage) struct Seen {
    pub(in crate::storage) hash: u64,
    pub(in crate::storage) key: Vec<u8>,
    pub(in crate::storage) epoch: u64,
    /// The revision found (0 for a `LINK_SECOND` key, which has none), or None if absent.
    pub(in crate::storage) found: Option<u64>,
}

pub(super) struct WriteLocks {
    stripes: Vec<parking_lot::Mutex<()>>,
    epochs: Vec<AtomicU64>,
}

impl WriteLocks {
    pub(super) fn new() -> WriteLocks {
        WriteLocks {
            stripes: (0..STRIPES).map(|_| parking_lot::Mutex::new(())).collect(),
            epochs: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Locks the given stripes, which must be sorted and distinct: always taken in ascending
    /// order, so no two writers can deadlock.
    pub(super) fn lock(&self, stripes: &[usize]) -> Vec<parking_lot::MutexGuard<'_, ()>> {
        stripes.iter().map(|i| self.stripes[*i].lock()).collect()
    }

    /// The epoch of a key's slot, loaded before reading the key.
    pub(super) fn epoch(&self, hash: u64) -> u64 {
        self.epochs[slot(hash)].load(Ordering::Acquire)
    }

    /// Marks a key written; called after the write, with its stripe's lock held.
    pub(super) fn bump(&self, hash: u64) {
        self.epochs[slot(hash)].fetch_add(1, Ordering::Release);
    }

    /// Whether what `seen` found is still the stored value. Only meaningful with the key's
    /// stripe locked.
    pub(super) fn still_current(&self, seen: &Seen) -> bool {
        self.epoch(seen.hash) == seen.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_spread_over_stripes_and_slots() {
        let mut stripes = vec![0u32; STRIPES];
        let mut slots = std::collections::HashSet::new();
        for i in 0..10_000 {
            let k = crate::storage::keys::link_key(
                crate::storage::keys::LINK_FIRST,
                "bench",
                "default",
                &format!("u{i:08}"),
            );
            let h = key_hash(&k);
            stripes[stripe(h)] += 1;
            slots.insert(slot(h));
        }
        // 10,000 keys: about 39 a stripe; none empty or heavily loaded.
        assert!(stripes.iter().all(|n| (10..=90).contains(n)), "{stripes:?}");
        assert!(slots.len() > 9_000, "{}", slots.len());
    }

    #[test]
    fn a_bump_invalidates_what_was_seen() {
        let locks = WriteLocks::new();
        let h = key_hash(b"k");
        let seen = Seen {
            hash: h,
            key: b"k".to_vec(),
            epoch: locks.epoch(h),
            found: None,
        };
        assert!(locks.still_current(&seen));
        locks.bump(h);
        assert!(!locks.still_current(&seen));
    }
}
