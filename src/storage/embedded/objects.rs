//! Reading objects and their equality indexes (writes go through [`super::DataBatch`]).

use std::ops::ControlFlow;

use super::{sled_err, Embedded};
use crate::storage::records::{parse_body, IndexTerm, ObjectRecord, StoredObject};
use crate::storage::{codec, keys, Result, StoreError};

impl Embedded {
    fn decode_object(id: &str, bytes: &[u8]) -> Result<StoredObject> {
        let rec: ObjectRecord = codec::decode_borrowed(bytes)?;
        let body =
            parse_body(rec.body).map_err(|e| StoreError::Codec(format!("object {id}: {e}")))?;
        Ok(StoredObject {
            id: id.to_string(),
            rev: rec.rev,
            body,
        })
    }

    pub fn get_object(&self, set: &str, id: &str) -> Result<Option<StoredObject>> {
        match self
            .data
            .get(keys::object_key(set, id))
            .map_err(sled_err("reading an object"))?
        {
            Some(bytes) => Self::decode_object(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn object_exists(&self, set: &str, id: &str) -> Result<bool> {
        self.data
            .contains_key(keys::object_key(set, id))
            .map_err(sled_err("reading an object"))
    }

    /// Visits the objects of a set in id order, starting after `after` (exclusive) if given.
    pub fn scan_objects(
        &self,
        set: &str,
        after: Option<&str>,
        f: &mut dyn FnMut(StoredObject) -> ControlFlow<()>,
    ) -> Result<()> {
        let prefix = keys::object_prefix(set);
        let iter = match after {
            Some(a) => {
                let mut start = keys::object_key(set, a);
                start.push(0);
                self.data.range(start..)
            }
            None => self.data.range(prefix.clone()..),
        };
        for item in iter {
            let (k, v) = item.map_err(sled_err("scanning objects"))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some(id) = keys::object_id_from_key(&k, prefix.len()) else {
                continue;
            };
            let obj = Self::decode_object(id, &v)?;
            if f(obj).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Visits the ids of a set in order without decoding the objects.
    pub fn scan_object_ids(
        &self,
        set: &str,
        f: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<()> {
        let prefix = keys::object_prefix(set);
        for item in self.data.scan_prefix(&prefix).keys() {
            let k = item.map_err(sled_err("scanning object ids"))?;
            if let Some(id) = keys::object_id_from_key(&k, prefix.len()) {
                if f(id).is_break() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Counts, giving up (`None`) as soon as `stop` says so.
    pub fn count_objects_until(&self, set: &str, stop: &dyn Fn() -> bool) -> Result<Option<u64>> {
        let mut n = 0u64;
        let mut stopped = false;
        self.scan_object_ids(set, &mut |_| {
            if stop() {
                stopped = true;
                return ControlFlow::Break(());
            }
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok((!stopped).then_some(n))
    }

    pub fn set_is_empty(&self, set: &str) -> Result<bool> {
        let prefix = keys::object_prefix(set);
        Ok(self
            .data
            .scan_prefix(&prefix)
            .keys()
            .next()
            .transpose()
            .map_err(sled_err("scanning"))?
            .is_none())
    }

    /// Ids of the objects whose indexed `attr` has `term`, in id order.
    pub fn index_lookup(&self, set: &str, attr: &str, term: &IndexTerm) -> Result<Vec<String>> {
        let prefix = keys::index_prefix(set, attr, &term.0);
        let mut out = Vec::new();
        for item in self.data.scan_prefix(&prefix).keys() {
            let k = item.map_err(sled_err("reading an index"))?;
            if let Some(id) = keys::object_id_from_key(&k, prefix.len()) {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    /// Whether the set has any index entry at all (used to detect an index that must be
    /// built for objects written before the attribute was declared indexed).
    pub fn drop_index_entries(&self, set: &str) -> Result<()> {
        let prefix = keys::index_set_prefix(set);
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.data.scan_prefix(&prefix).keys() {
            batch.remove(item.map_err(sled_err("dropping an index"))?);
            n += 1;
            if n % 10_000 == 0 {
                self.data
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(sled_err("dropping an index"))?;
            }
        }
        self.data
            .apply_batch(batch)
            .map_err(sled_err("dropping an index"))
    }
}
