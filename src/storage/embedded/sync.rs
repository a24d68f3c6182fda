//! liveSync tokens (one per object set, durable on write) and IDM's `sync` audit topic
//! (implicit and live synchronization events, the newest `SYNC_AUDIT_KEEP` kept), in the
//! `sync` tree. Keys come from [`keys`], values go through [`codec`].

use std::ops::ControlFlow;

use super::{sled_err, Embedded};
use crate::storage::{
    codec, keys, Result, StoreError, SyncTokenRecord, SYNC_AUDIT_KEEP, SYNC_AUDIT_TRIM_EVERY,
};

impl Embedded {
    pub fn get_sync_token(&self, set: &str) -> Result<Option<SyncTokenRecord>> {
        match self
            .sync
            .get(keys::sync_token_key(set))
            .map_err(sled_err("reading a liveSync token"))?
        {
            Some(v) => codec::decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Writes the token of `set` and makes it (and everything written before it) durable
    /// before returning: the caller drops state kept for older tokens right after.
    pub fn put_sync_token(&self, set: &str, record: &SyncTokenRecord) -> Result<()> {
        self.sync
            .insert(keys::sync_token_key(set), codec::encode(record)?)
            .map_err(sled_err("writing a liveSync token"))?;
        self.flush()?;
        Ok(())
    }

    /// Appends `sync` audit events (JSON objects) in order.
    pub fn append_sync_audit(&self, events: &[serde_json::Value]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for ev in events {
            let text = serde_json::to_string(ev).map_err(|e| StoreError::Codec(e.to_string()))?;
            batch.insert(
                &keys::sync_audit_key(self.next_id()?)[..],
                codec::encode(&text)?,
            );
        }
        self.sync
            .apply_batch(batch)
            .map_err(sled_err("writing sync audit events"))?;
        let n = events.len() as u64;
        let before = self
            .sync_appends
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if before / SYNC_AUDIT_TRIM_EVERY != (before + n) / SYNC_AUDIT_TRIM_EVERY {
            self.trim_sync_audit(SYNC_AUDIT_KEEP)?;
        }
        Ok(())
    }

    /// Removes the oldest `sync` audit events beyond the newest `keep`.
    pub(in crate::storage) fn trim_sync_audit(&self, keep: u64) -> Result<()> {
        let prefix = [keys::SYNC_AUDIT];
        let mut newest_first = self.sync.scan_prefix(prefix).keys().rev();
        let mut cut = None;
        for (i, k) in newest_first.by_ref().enumerate() {
            let k = k.map_err(sled_err("scanning sync audit events"))?;
            if i as u64 == keep {
                cut = Some(k);
                break;
            }
        }
        let Some(cut) = cut else { return Ok(()) };
        let mut batch = sled::Batch::default();
        batch.remove(cut);
        for k in newest_first {
            batch.remove(k.map_err(sled_err("scanning sync audit events"))?);
        }
        self.sync
            .apply_batch(batch)
            .map_err(sled_err("trimming sync audit events"))
    }

    /// Visits `sync` audit events oldest first, after event number `after` if given, with
    /// their event numbers.
    pub fn scan_sync_audit(
        &self,
        after: Option<u64>,
        f: &mut dyn FnMut(u64, serde_json::Value) -> ControlFlow<()>,
    ) -> Result<()> {
        let start = match after {
            Some(a) => match a.checked_add(1) {
                Some(n) => keys::sync_audit_key(n),
                None => return Ok(()),
            },
            None => keys::sync_audit_key(0),
        };
        for item in self.sync.range(start.to_vec()..vec![keys::SYNC_AUDIT + 1]) {
            let (k, v) = item.map_err(sled_err("scanning sync audit events"))?;
            let Some(no) = keys::seq_from_tagged(&k) else {
                return Err(StoreError::Codec("a sync audit key is malformed".into()));
            };
            let text: String = codec::decode(&v)?;
            let event =
                serde_json::from_str(&text).map_err(|e| StoreError::Codec(e.to_string()))?;
            if f(no, event).is_break() {
                break;
            }
        }
        Ok(())
    }
}
