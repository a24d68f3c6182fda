//! The run-wide claim table: how the units of one run see each other's in-flight work.
//!
//! Each object a unit processes names the keys it depends on: its source (per qualifier),
//! every target it touches (linked, correlated, ambiguous candidates, created), and the
//! equality terms of its correlation query. Keys are 64-bit hashes; a collision only makes
//! two objects wait for each other, never lets two proceed.
//!
//! Protocol (optimistic, validated per object):
//! 1. `begin` publishes the commit counter as the object's *epoch*, before any read.
//! 2. The object is read, assessed and its writes staged into its unit.
//! 3. `claim` takes every key, or refuses: `Own` (an earlier object of the same unit holds
//!    it: uncommitted, so this object read stale state), `Other` (another unit holds it), or
//!    `Stale` (a unit committed it after this object's epoch). On refusal the object's staged
//!    work is dropped, the unit commits what it has (releasing its claims), waits for an
//!    `Other` key to be released, and processes the object again.
//! 4. A unit commits its batch, then `commit` marks its keys committed at a new counter value.
//!
//! Why this gives IDM's one-at-a-time outcome: an object is kept only if every key it
//! depends on was last committed before its reads began and no in-flight unit holds it; so
//! any two objects sharing a key are ordered, the later one having read the earlier one's
//! committed result. A unit never waits while holding claims (it commits first), so there is
//! no deadlock. Entries older than every published epoch are pruned, which keeps the table
//! small.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::worker::PreHashed;

const SHARDS: usize = 64;
/// Prune committed entries every this many unit commits.
const PRUNE_EVERY: u64 = 16;
const IDLE: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Held by the in-flight unit with this owner id.
    Held(u32),
    /// Last committed at this commit-counter value.
    Committed(u64),
}

/// Why a claim was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Own,
    Other(u64),
    Stale,
}

type Shard = HashMap<u64, State, BuildHasherDefault<PreHashed>>;

pub struct Claims {
    shards: Vec<Mutex<Shard>>,
    commits: AtomicU64,
    next_owner: AtomicU32,
    /// The epoch of the object each worker is assessing (IDLE when none).
    epochs: Vec<AtomicU64>,
    released: Mutex<()>,
    released_cv: Condvar,
    /// Set when a worker of the run failed: its unit's claims may never be released, so no
    /// one waits for them any more (the run is failing anyway).
    poisoned: std::sync::atomic::AtomicBool,
}

impl Claims {
    pub fn new(workers: usize) -> Claims {
        Claims {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            commits: AtomicU64::new(0),
            next_owner: AtomicU32::new(1),
            epochs: (0..workers.max(1)).map(|_| AtomicU64::new(IDLE)).collect(),
            released: Mutex::new(()),
            released_cv: Condvar::new(),
            poisoned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A fresh owner id for a unit.
    pub fn owner(&self) -> u32 {
        self.next_owner.fetch_add(1, SeqCst)
    }

    fn shard(&self, key: u64) -> &Mutex<Shard> {
        &self.shards[(key >> 58) as usize % SHARDS]
    }

    /// Publishes and returns the epoch of the object `worker` is about to read. The loop makes
    /// the published value current: a pruner that missed it saw a counter no higher.
    pub fn begin(&self, worker: usize) -> u64 {
        loop {
            let e = self.commits.load(SeqCst);
            self.epochs[worker].store(e, SeqCst);
            if self.commits.load(SeqCst) == e {
                return e;
            }
        }
    }

    pub fn end(&self, worker: usize) {
        self.epochs[worker].store(IDLE, SeqCst);
    }

    /// Claims every key for `owner` (pushing them to `held`), or takes none and says why.
    pub fn claim(
        &self,
        owner: u32,
        keys: &[u64],
        epoch: u64,
        held: &mut Vec<u64>,
    ) -> Result<(), Refusal> {
        let start = held.len();
        for &k in keys {
            let mut shard = self.shard(k).lock();
            let refusal = match shard.get(&k) {
                Some(State::Held(o)) if *o == owner => Some(Refusal::Own),
                Some(State::Held(_)) => Some(Refusal::Other(k)),
                Some(State::Committed(c)) if *c > epoch => Some(Refusal::Stale),
                _ => None,
            };
            if let Some(r) = refusal {
                drop(shard);
                // Nothing was written under the keys taken so far: release them as
                // committed now (conservative: later readers re-check, never miss a change).
                let taken: Vec<u64> = held.drain(start..).collect();
                self.release(&taken, self.commits.load(SeqCst));
                return Err(r);
            }
            shard.insert(k, State::Held(owner));
            held.push(k);
        }
        Ok(())
    }

    /// The unit holding `held` has committed its writes: its keys become committed now.
    pub fn commit(&self, held: &[u64]) {
        let c = self.commits.fetch_add(1, SeqCst) + 1;
        self.release(held, c);
        if c.is_multiple_of(PRUNE_EVERY) {
            self.prune();
        }
    }

    /// The unit holding `held` wrote nothing (its batch was refused).
    pub fn abort(&self, held: &[u64]) {
        self.release(held, self.commits.load(SeqCst));
    }

    fn release(&self, keys: &[u64], at: u64) {
        if keys.is_empty() {
            return;
        }
        for &k in keys {
            self.shard(k).lock().insert(k, State::Committed(at));
        }
        let _g = self.released.lock();
        self.released_cv.notify_all();
    }

    /// A worker failed (error or panic) and may leave claims held: waiting stops.
    pub fn poison(&self) {
        self.poisoned.store(true, SeqCst);
        let _g = self.released.lock();
        self.released_cv.notify_all();
    }

    /// Waits until no unit holds `key` (the caller holds no claims), or the run is failing.
    pub fn wait_released(&self, key: u64) {
        loop {
            if self.poisoned.load(SeqCst)
                || !matches!(self.shard(key).lock().get(&key), Some(State::Held(_)))
            {
                return;
            }
            let mut g = self.released.lock();
            self.released_cv.wait_for(&mut g, Duration::from_millis(2));
        }
    }

    /// Drops committed entries no object being assessed can still need: those committed at
    /// or before every published epoch (an object only refuses entries newer than its own).
    fn prune(&self) {
        let mut threshold = self.commits.load(SeqCst);
        for e in &self.epochs {
            threshold = threshold.min(e.load(SeqCst));
        }
        for s in &self.shards {
            s.lock()
                .retain(|_, st| !matches!(st, State::Committed(c) if *c <= threshold));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_held_by_another_unit_is_refused_until_committed() {
        let c = Claims::new(2);
        let (a, b) = (c.owner(), c.owner());
        let mut held_a = Vec::new();
        let e = c.begin(0);
        assert_eq!(c.claim(a, &[1, 2], e, &mut held_a), Ok(()));
        c.end(0);
        let eb = c.begin(1);
        let mut held_b = Vec::new();
        assert_eq!(c.claim(b, &[3, 2], eb, &mut held_b), Err(Refusal::Other(2)));
        assert!(held_b.is_empty(), "a refused claim takes nothing");
        c.commit(&held_a);
        // b read before a committed: its reads are stale for key 2.
        assert_eq!(c.claim(b, &[3, 2], eb, &mut held_b), Err(Refusal::Stale));
        c.end(1);
        let eb = c.begin(1);
        assert_eq!(c.claim(b, &[3, 2], eb, &mut held_b), Ok(()));
        assert_eq!(held_b, vec![3, 2]);
    }

    #[test]
    fn an_earlier_object_of_the_same_unit_is_refused_as_own() {
        let c = Claims::new(1);
        let a = c.owner();
        let mut held = Vec::new();
        let e = c.begin(0);
        assert_eq!(c.claim(a, &[7], e, &mut held), Ok(()));
        assert_eq!(c.claim(a, &[7], e, &mut held), Err(Refusal::Own));
    }

    #[test]
    fn pruning_keeps_what_a_running_assessment_may_need() {
        let c = Claims::new(2);
        let old_epoch = c.begin(1); // worker 1 is assessing since before the commits
        for k in 0..40u64 {
            let o = c.owner();
            let mut held = Vec::new();
            let e = c.begin(0);
            c.claim(o, &[k << 58 | k], e, &mut held).expect("free key");
            c.end(0);
            c.commit(&held);
        }
        assert_eq!(c.len(), 40, "nothing newer than worker 1's epoch is pruned");
        let mut held = Vec::new();
        assert_eq!(
            c.claim(c.owner(), &[5 << 58 | 5], old_epoch, &mut held),
            Err(Refusal::Stale)
        );
        c.end(1);
        let o = c.owner();
        let mut held = Vec::new();
        let e = c.begin(0);
        c.claim(o, &[99], e, &mut held).expect("free");
        c.end(0);
        for _ in 0..PRUNE_EVERY {
            c.commit(&[]);
        }
        c.commit(&held);
        assert!(c.len() < 40, "idle workers let old entries go");
    }

    #[test]
    fn a_failed_worker_never_leaves_others_waiting() {
        let c = std::sync::Arc::new(Claims::new(2));
        let mut held = Vec::new();
        let e = c.begin(0);
        c.claim(c.owner(), &[42], e, &mut held).expect("free");
        // The holder fails without releasing; a waiter must not hang.
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.wait_released(42))
        };
        std::thread::sleep(Duration::from_millis(20));
        c.poison();
        waiter.join().expect("the waiter returns");
    }
}
