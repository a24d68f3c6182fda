//! Run records, purge markers and reclaiming, and the per-run items: association entries
//! and audit events.

use std::ops::ControlFlow;

use super::{sled_err, Embedded};
use crate::storage::records::{EntryRecord, RunRecord};
use crate::storage::{codec, keys, Result, StoreError};

impl Embedded {
    pub fn put_run(&self, run: &RunRecord) -> Result<()> {
        self.runs
            .insert(keys::run_key(run.seq), codec::encode(run)?)
            .map_err(sled_err("writing a run record"))?;
        Ok(())
    }

    pub fn get_run(&self, seq: u64) -> Result<Option<RunRecord>> {
        match self
            .runs
            .get(keys::run_key(seq))
            .map_err(sled_err("reading a run record"))?
        {
            Some(v) => codec::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Visits run records oldest first.
    pub fn scan_runs(&self, f: &mut dyn FnMut(RunRecord) -> ControlFlow<()>) -> Result<()> {
        for item in self.runs.scan_prefix([keys::RUN]) {
            let (_, v) = item.map_err(sled_err("listing runs"))?;
            if f(codec::decode(&v)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Removes a run record and leaves a purge marker for its entries and audit events, in
    /// one atomic batch; the entries themselves are reclaimed by [`Embedded::reclaim`].
    pub fn remove_run(&self, seq: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.remove(&keys::run_key(seq)[..]);
        batch.insert(&keys::purge_key(seq)[..], &[][..]);
        self.runs
            .apply_batch(batch)
            .map_err(sled_err("removing a run"))
    }

    /// Runs whose items still wait to be reclaimed.
    pub fn pending_purges(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for item in self.runs.scan_prefix([keys::PURGE]).keys() {
            let k = item.map_err(sled_err("listing purges"))?;
            if let Some(seq) = keys::seq_from_tagged(&k) {
                out.push(seq);
            }
        }
        Ok(out)
    }

    /// Deletes a purged run's entries and audit events in small batches (so other writers are
    /// not blocked for long), then its purge marker. Stops early when `keep_going` says so.
    pub fn reclaim(&self, seq: u64, keep_going: &dyn Fn() -> bool) -> Result<bool> {
        for tree in [&self.entries, &self.audit] {
            loop {
                if !keep_going() {
                    return Ok(false);
                }
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in tree.scan_prefix(seq.to_be_bytes()).keys().take(5_000) {
                    batch.remove(item.map_err(sled_err("reclaiming entries"))?);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                tree.apply_batch(batch)
                    .map_err(sled_err("reclaiming entries"))?;
            }
        }
        self.runs
            .remove(keys::purge_key(seq))
            .map_err(sled_err("clearing a purge marker"))?;
        Ok(true)
    }

    pub fn get_entry(&self, seq: u64, item: u64) -> Result<Option<EntryRecord>> {
        match self
            .entries
            .get(keys::item_key(seq, item))
            .map_err(sled_err("reading an entry"))?
        {
            Some(v) => codec::decode_entry(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Visits a run's entries in entry order, starting after item `after` if given.
    pub fn scan_entries(
        &self,
        seq: u64,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, EntryRecord) -> ControlFlow<()>,
    ) -> Result<()> {
        let start = match after {
            Some(a) => match a.checked_add(1) {
                Some(n) => keys::item_key(seq, n),
                None => return Ok(()),
            },
            None => keys::item_key(seq, 0),
        };
        let end = match seq.checked_add(1) {
            Some(n) => keys::item_key(n, 0).to_vec(),
            None => vec![0xff; 17],
        };
        for item in self.entries.range(start.to_vec()..end) {
            let (k, v) = item.map_err(sled_err("scanning entries"))?;
            let Some((_, no)) = keys::item_from_key(&k) else {
                continue;
            };
            if f(no, codec::decode_entry(&v)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Visits audit events of one run, or of all runs (oldest run first).
    pub fn scan_audit(
        &self,
        seq: Option<u64>,
        f: &mut dyn FnMut(serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        let iter = match seq {
            Some(s) => self.audit.scan_prefix(s.to_be_bytes()),
            None => self.audit.iter(),
        };
        for item in iter {
            let (_, v) = item.map_err(sled_err("scanning audit events"))?;
            let text: String = codec::decode(&v)?;
            let event =
                serde_json::from_str(&text).map_err(|e| StoreError::Codec(e.to_string()))?;
            if f(event).is_break() {
                break;
            }
        }
        Ok(())
    }
}
