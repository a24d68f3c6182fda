//! Reading the link table, by either side (writes go through [`super::DataBatch`]).

use std::ops::ControlFlow;

use sled::IVec;

use super::locks::{key_hash, Seen};
use super::{sled_err, Embedded};
use crate::storage::records::{Link, LinkRecord};
use crate::storage::{codec, keys, DataBatch, Result, StoreError};

/// A link key's hash and its slot's write epoch, taken before reading it.
struct ReadStart {
    hash: u64,
    epoch: u64,
}

impl Embedded {
    fn decode_link(key: &[u8], value: &[u8]) -> Result<Link> {
        let (lt, q, first) = keys::parse_link_key(key)
            .ok_or_else(|| StoreError::Codec("malformed link key".into()))?;
        let rec: LinkRecord = codec::decode(value)?;
        Ok(Link {
            link_type: lt.to_string(),
            qualifier: q.to_string(),
            first_id: first.to_string(),
            second_id: rec.second_id,
            rev: rec.rev,
        })
    }

    pub fn link_by_first(
        &self,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
    ) -> Result<Option<Link>> {
        self.first_noted(None, link_type, qualifier, first_id)
    }

    pub fn link_by_second(
        &self,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        self.second_noted(None, link_type, qualifier, second_id)
    }

    /// [`Embedded::link_by_first`] for a writer: what it found is noted in `batch`, so that a
    /// precondition of the batch on the same link needs no second read (see `locks`).
    pub fn link_by_first_for(
        &self,
        batch: &mut DataBatch,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
    ) -> Result<Option<Link>> {
        self.first_noted(Some(batch), link_type, qualifier, first_id)
    }

    /// [`Embedded::link_by_second`] for a writer (see [`Embedded::link_by_first_for`]).
    pub fn link_by_second_for(
        &self,
        batch: &mut DataBatch,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        self.second_noted(Some(batch), link_type, qualifier, second_id)
    }

    /// Reads a link key, with its hash and its slot's write epoch taken before the read (what
    /// a writer's read notes in its batch; a plain read ignores them).
    fn read_link_key(&self, key: &[u8]) -> Result<(Option<IVec>, ReadStart)> {
        let hash = key_hash(key);
        let start = ReadStart {
            hash,
            epoch: self.stripes.epoch(hash),
        };
        let value = self.data.get(key).map_err(sled_err("reading a link"))?;
        Ok((value, start))
    }

    fn first_noted(
        &self,
        batch: Option<&mut DataBatch>,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
    ) -> Result<Option<Link>> {
        let key = keys::link_key(keys::LINK_FIRST, link_type, qualifier, first_id);
        let (value, start) = self.read_link_key(&key)?;
        let link = match value {
            Some(v) => {
                let rec: LinkRecord = codec::decode(&v)?;
                Some(Link {
                    link_type: link_type.to_string(),
                    qualifier: qualifier.to_string(),
                    first_id: first_id.to_string(),
                    second_id: rec.second_id,
                    rev: rec.rev,
                })
            }
            None => None,
        };
        if let Some(batch) = batch {
            batch.note(Seen {
                hash: start.hash,
                key,
                epoch: start.epoch,
                found: link.as_ref().map(|l| l.rev),
            });
        }
        Ok(link)
    }

    fn second_noted(
        &self,
        mut batch: Option<&mut DataBatch>,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        let key = keys::link_key(keys::LINK_SECOND, link_type, qualifier, second_id);
        let (value, start) = self.read_link_key(&key)?;
        if let Some(batch) = batch.as_deref_mut() {
            // A reverse key has no revision: present reads as 0 (as in `Embedded::check`).
            batch.note(Seen {
                hash: start.hash,
                key,
                epoch: start.epoch,
                found: value.as_ref().map(|_| 0),
            });
        }
        match value {
            Some(first) => {
                let first = String::from_utf8_lossy(&first).into_owned();
                self.first_noted(batch, link_type, qualifier, &first)
            }
            None => Ok(None),
        }
    }

    /// Visits links: all of them, those of one link type, or of one type and qualifier.
    pub fn scan_links(
        &self,
        link_type: Option<&str>,
        qualifier: Option<&str>,
        f: &mut dyn FnMut(Link) -> ControlFlow<()>,
    ) -> Result<()> {
        let prefix = match (link_type, qualifier) {
            (Some(lt), Some(q)) => keys::link_prefix(keys::LINK_FIRST, lt, q),
            (Some(lt), None) => keys::link_type_prefix(keys::LINK_FIRST, lt),
            _ => vec![keys::LINK_FIRST],
        };
        for item in self.data.scan_prefix(&prefix) {
            let (k, v) = item.map_err(sled_err("scanning links"))?;
            if f(Self::decode_link(&k, &v)?).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Counts, giving up (`None`) as soon as `stop` says so.
    pub fn count_links_until(
        &self,
        link_type: &str,
        qualifier: &str,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<u64>> {
        let prefix = keys::link_prefix(keys::LINK_FIRST, link_type, qualifier);
        let mut n = 0;
        for item in self.data.scan_prefix(&prefix).keys() {
            if stop() {
                return Ok(None);
            }
            item.map_err(sled_err("counting links"))?;
            n += 1;
        }
        Ok(Some(n))
    }
}
