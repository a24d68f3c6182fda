//! Key encoding: the only place that builds or parses sled keys.
//!
//! Every key starts with a one-byte kind tag, followed by components. Variable-length
//! components are length-prefixed (u32 big-endian) so that a prefix made of whole components
//! never matches a longer component by accident, and numbers are fixed-width big-endian so
//! byte order is numeric order. The last component of a key may be written raw (without a
//! length) when nothing follows it; that keeps object ids in plain byte order for paging.
//!
//! Layout of the `data` tree (objects, indexes and links share it so that one `apply_batch`
//! can write a target, its index entries and its link atomically):
//!
//! | kind | key | value |
//! | --- | --- | --- |
//! | `OBJECT` | tag, lp(set), id | codec(ObjectRecord) |
//! | `INDEX` | tag, lp(set), lp(attr), lp(term), id | empty |
//! | `LINK_FIRST` | tag, lp(linkType), lp(qualifier), firstId | codec(LinkRecord) |
//! | `LINK_SECOND` | tag, lp(linkType), lp(qualifier), secondId | firstId bytes |
//! | `SET_COUNT` | tag, set (raw) | codec(SetCountRecord): the set's object count |
//!
//! The `runs`, `entries` and `audit` trees are keyed by the run sequence number (u64 BE),
//! so everything a run owns is one prefix.
//!
//! Layout of the `sync` tree (liveSync and the `sync` audit topic):
//!
//! | kind | key | value |
//! | --- | --- | --- |
//! | `SYNC_TOKEN` | tag, set name (raw) | codec(SyncTokenRecord) |
//! | `SYNC_AUDIT` | tag, event number (u64 BE, increasing) | codec(event JSON text) |

use serde_json::Value;

pub(crate) const OBJECT: u8 = 0x01;
pub(crate) const INDEX: u8 = 0x02;
pub(crate) const LINK_FIRST: u8 = 0x03;
pub(crate) const LINK_SECOND: u8 = 0x04;
/// The embedded store's object count of one set, written in the batches that change it
/// (`embedded::counts`); never part of a [`crate::storage::DataBatch`] a caller stages.
pub(crate) const SET_COUNT: u8 = 0x05;

pub(crate) fn set_count_key(set: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + set.len());
    k.push(SET_COUNT);
    k.extend_from_slice(set.as_bytes());
    k
}

/// The set a `SET_COUNT` key names.
pub(crate) fn set_from_count_key(key: &[u8]) -> Option<&str> {
    match key.split_first() {
        Some((&SET_COUNT, set)) => std::str::from_utf8(set).ok(),
        _ => None,
    }
}

/// `runs` tree: run records.
pub(crate) const RUN: u8 = b'r';
/// `runs` tree: a run whose entries and audit events still have to be reclaimed.
pub(crate) const PURGE: u8 = b'p';

/// `sync` tree: the persisted liveSync token of one object set.
pub(crate) const SYNC_TOKEN: u8 = b't';
/// `sync` tree: one `sync` audit event.
pub(crate) const SYNC_AUDIT: u8 = b'a';

pub(crate) fn sync_token_key(set: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + set.len());
    k.push(SYNC_TOKEN);
    k.extend_from_slice(set.as_bytes());
    k
}

pub(crate) fn sync_audit_key(no: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = SYNC_AUDIT;
    k[1..].copy_from_slice(&no.to_be_bytes());
    k
}

fn push_lp(out: &mut Vec<u8>, part: &[u8]) {
    // Components longer than u32::MAX cannot occur: request bodies are limited far below it.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part);
}

/// Reads one length-prefixed component, returning it and the rest.
fn take_lp(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len_bytes: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let rest = bytes.get(4..)?;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

pub(crate) fn object_prefix(set: &str) -> Vec<u8> {
    object_key_with(set, 0)
}

/// An object prefix with room for an id of `id_len` bytes (keys are built in one allocation).
fn object_key_with(set: &str, id_len: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + set.len() + id_len);
    k.push(OBJECT);
    push_lp(&mut k, set.as_bytes());
    k
}

pub(crate) fn object_key(set: &str, id: &str) -> Vec<u8> {
    let mut k = object_key_with(set, id.len());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The id part of an object key that starts with `prefix`.
pub(crate) fn object_id_from_key(key: &[u8], prefix_len: usize) -> Option<&str> {
    std::str::from_utf8(key.get(prefix_len..)?).ok()
}

/// The index terms of a value: strings lower-cased (the equality index is case-insensitive,
/// matching the query evaluator), numbers in a canonical form, booleans; arrays contribute
/// each element. Objects and null are not indexed.
pub(crate) fn index_terms(value: &Value, out: &mut Vec<Vec<u8>>) {
    match value {
        Value::String(s) => {
            let mut t = Vec::with_capacity(s.len() + 1);
            t.push(b's');
            t.extend_from_slice(s.to_lowercase().as_bytes());
            out.push(t);
        }
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                let mut t = vec![b'n'];
                t.extend_from_slice(format!("{f:e}").as_bytes());
                out.push(t);
            }
        }
        Value::Bool(b) => out.push(vec![b'b', u8::from(*b)]),
        Value::Array(items) => {
            for item in items {
                if !item.is_array() {
                    index_terms(item, out);
                }
            }
        }
        Value::Null | Value::Object(_) => {}
    }
}

pub(crate) fn index_prefix(set: &str, attr: &str, term: &[u8]) -> Vec<u8> {
    index_key_with(set, attr, term, 0)
}

fn index_key_with(set: &str, attr: &str, term: &[u8], id_len: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(13 + set.len() + attr.len() + term.len() + id_len);
    k.push(INDEX);
    push_lp(&mut k, set.as_bytes());
    push_lp(&mut k, attr.as_bytes());
    push_lp(&mut k, term);
    k
}

pub(crate) fn index_key(set: &str, attr: &str, term: &[u8], id: &str) -> Vec<u8> {
    let mut k = index_key_with(set, attr, term, id.len());
    k.extend_from_slice(id.as_bytes());
    k
}

pub(crate) fn index_set_prefix(set: &str) -> Vec<u8> {
    let mut k = vec![INDEX];
    push_lp(&mut k, set.as_bytes());
    k
}

pub(crate) fn link_prefix(side: u8, link_type: &str, qualifier: &str) -> Vec<u8> {
    link_key_with(side, link_type, qualifier, 0)
}

fn link_key_with(side: u8, link_type: &str, qualifier: &str, id_len: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + link_type.len() + qualifier.len() + id_len);
    k.push(side);
    push_lp(&mut k, link_type.as_bytes());
    push_lp(&mut k, qualifier.as_bytes());
    k
}

pub(crate) fn link_type_prefix(side: u8, link_type: &str) -> Vec<u8> {
    let mut k = vec![side];
    push_lp(&mut k, link_type.as_bytes());
    k
}

pub(crate) fn link_key(side: u8, link_type: &str, qualifier: &str, id: &str) -> Vec<u8> {
    let mut k = link_key_with(side, link_type, qualifier, id.len());
    k.extend_from_slice(id.as_bytes());
    k
}

/// A data-tree key in words, for error messages ("the object managed/user/x").
pub(crate) fn describe(key: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match key.first() {
        Some(&OBJECT) => match key.get(1..).and_then(take_lp) {
            Some((set, id)) => format!("the object {}/{}", text(set), text(id)),
            None => "an object".into(),
        },
        Some(&LINK_FIRST) | Some(&LINK_SECOND) => {
            let side = if key[0] == LINK_FIRST {
                "firstId"
            } else {
                "secondId"
            };
            match parse_link_key(key) {
                Some((lt, q, id)) => format!("the link {lt} ({q}) with {side} {id}"),
                None => "a link".into(),
            }
        }
        _ => "a stored value".into(),
    }
}

/// Splits a `LINK_FIRST`/`LINK_SECOND` key into (linkType, qualifier, id).
pub(crate) fn parse_link_key(key: &[u8]) -> Option<(&str, &str, &str)> {
    let rest = key.get(1..)?;
    let (lt, rest) = take_lp(rest)?;
    let (q, id) = take_lp(rest)?;
    Some((
        std::str::from_utf8(lt).ok()?,
        std::str::from_utf8(q).ok()?,
        std::str::from_utf8(id).ok()?,
    ))
}

/// Splits an `OBJECT` key into (set, id).
pub(crate) fn parse_object_key(key: &[u8]) -> Option<(&str, &str)> {
    if key.first() != Some(&OBJECT) {
        return None;
    }
    let (set, id) = take_lp(key.get(1..)?)?;
    Some((
        std::str::from_utf8(set).ok()?,
        std::str::from_utf8(id).ok()?,
    ))
}

/// Splits an `INDEX` key into (set, attr, term, id).
pub(crate) fn parse_index_key(key: &[u8]) -> Option<(&str, &str, &[u8], &str)> {
    if key.first() != Some(&INDEX) {
        return None;
    }
    let (set, rest) = take_lp(key.get(1..)?)?;
    let (attr, rest) = take_lp(rest)?;
    let (term, id) = take_lp(rest)?;
    Some((
        std::str::from_utf8(set).ok()?,
        std::str::from_utf8(attr).ok()?,
        term,
        std::str::from_utf8(id).ok()?,
    ))
}

pub(crate) fn run_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = RUN;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn purge_key(seq: u64) -> [u8; 9] {
    let mut k = run_key(seq);
    k[0] = PURGE;
    k
}

pub(crate) fn seq_from_tagged(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// Key of one per-run item (association entry or audit event): run seq, then item number.
pub(crate) fn item_key(seq: u64, item: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&item.to_be_bytes());
    k
}

pub(crate) fn item_from_key(key: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let item = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((seq, item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_order_by_id_within_a_set() {
        let a = object_key("managed/user", "a");
        let b = object_key("managed/user", "b");
        let other = object_key("managed/userx", "a");
        assert!(a < b);
        assert!(a.starts_with(&object_prefix("managed/user")));
        assert!(!other.starts_with(&object_prefix("managed/user")));
    }

    #[test]
    fn numbers_are_big_endian_across_byte_boundaries() {
        for (x, y) in [
            (1u64, 2u64),
            (255, 256),
            (65535, 65536),
            (u32::MAX as u64, u32::MAX as u64 + 1),
        ] {
            assert!(item_key(x, 0) < item_key(y, 0));
            assert!(item_key(1, x) < item_key(1, y));
            assert!(run_key(x) < run_key(y));
        }
        assert_eq!(item_from_key(&item_key(7, 9)), Some((7, 9)));
        assert_eq!(seq_from_tagged(&run_key(42)), Some(42));
    }

    #[test]
    fn sync_keys_keep_tokens_and_events_apart_and_order_events() {
        assert!(sync_audit_key(255) < sync_audit_key(256));
        assert_eq!(seq_from_tagged(&sync_audit_key(9)), Some(9));
        assert_eq!(sync_token_key("system/a")[0], SYNC_TOKEN);
        assert_ne!(SYNC_TOKEN, SYNC_AUDIT);
    }

    #[test]
    fn keys_are_built_in_one_allocation() {
        let k = link_key(LINK_FIRST, "m", "default", "u/1");
        assert_eq!(k.capacity(), k.len());
        let k = object_key("managed/user", "abc");
        assert_eq!(k.capacity(), k.len());
        let k = index_key("managed/user", "/userName", b"sx", "abc");
        assert_eq!(k.capacity(), k.len());
    }

    #[test]
    fn object_and_index_keys_parse_back() {
        let k = object_key("managed/user", "a/b");
        assert_eq!(parse_object_key(&k), Some(("managed/user", "a/b")));
        let k = index_key("managed/user", "/mail", b"sx@y", "a1");
        assert_eq!(
            parse_index_key(&k),
            Some(("managed/user", "/mail", &b"sx@y"[..], "a1"))
        );
        assert_eq!(parse_object_key(&k), None);
        assert_eq!(parse_index_key(&object_key("s", "i")), None);
        assert_eq!(parse_index_key(&[INDEX, 0, 0, 0, 9]), None);
    }

    #[test]
    fn link_keys_round_trip() {
        let k = link_key(LINK_FIRST, "m", "default", "u/1");
        assert_eq!(parse_link_key(&k), Some(("m", "default", "u/1")));
        assert!(k.starts_with(&link_prefix(LINK_FIRST, "m", "default")));
        assert!(!link_key(LINK_FIRST, "m", "defaultx", "1")
            .starts_with(&link_prefix(LINK_FIRST, "m", "default")));
        assert_eq!(parse_link_key(&[LINK_FIRST, 0, 0]), None);
    }

    #[test]
    fn index_terms_are_case_insensitive_and_split_arrays() {
        let mut t = Vec::new();
        index_terms(
            &serde_json::json!(["Ab", "aB", 3, true, null, {"x": 1}]),
            &mut t,
        );
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], t[1]);
        let mut n1 = Vec::new();
        let mut n2 = Vec::new();
        index_terms(&serde_json::json!(3), &mut n1);
        index_terms(&serde_json::json!(3.0), &mut n2);
        assert_eq!(n1, n2);
    }
}
