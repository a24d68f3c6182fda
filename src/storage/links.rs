//! Reading the link table, by either side (writes go through [`super::DataBatch`]).

use std::ops::ControlFlow;

use super::records::{Link, LinkRecord};
use super::{codec, keys, sled_err, Result, Store, StoreError};

impl Store {
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
        let key = keys::link_key(keys::LINK_FIRST, link_type, qualifier, first_id);
        match self.data.get(&key).map_err(sled_err("reading a link"))? {
            Some(v) => Self::decode_link(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn link_by_second(
        &self,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        let key = keys::link_key(keys::LINK_SECOND, link_type, qualifier, second_id);
        match self.data.get(&key).map_err(sled_err("reading a link"))? {
            Some(first) => {
                let first = String::from_utf8_lossy(&first).into_owned();
                self.link_by_first(link_type, qualifier, &first)
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

    pub fn count_links(&self, link_type: &str, qualifier: &str) -> Result<u64> {
        let never = || false;
        Ok(self
            .count_links_until(link_type, qualifier, &never)?
            .unwrap_or_default())
    }

    /// [`Store::count_links`], giving up (`None`) as soon as `stop` says so.
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
