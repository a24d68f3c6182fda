//! The records the store keeps and hands out: objects, links, index terms, run records and
//! association entries (with the older entry format still read).

use serde::{Deserialize, Serialize};

use super::keys;

/// An object as stored: its revision and its JSON body (without `_id` and `_rev`). The body
/// is borrowed both ways: written from the caller's buffer and read in place from the
/// stored value (the layout is a `Vec<u8>`'s, see `codec::bytes`).
#[derive(Serialize, Deserialize)]
pub(super) struct ObjectRecord<'a> {
    pub(super) rev: u64,
    #[serde(borrow, with = "super::codec::bytes")]
    pub(super) body: &'a [u8],
}

/// A stored object, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub id: String,
    pub rev: u64,
    pub body: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LinkRecord {
    pub(super) second_id: String,
    pub(super) rev: u64,
}

/// A [`LinkRecord`] borrowed: written from the caller's strings, read in place (the same
/// layout, nothing copied).
#[derive(Serialize, Deserialize)]
pub(super) struct LinkRecordView<'a> {
    #[serde(borrow)]
    pub(super) second_id: &'a str,
    pub(super) rev: u64,
}

/// The embedded store's count of one set's objects (`embedded::counts`). `known` is false
/// once a write the store could not classify (an object written or removed without a
/// precondition saying whether it existed) touched the set: the count is then rebuilt at
/// the next open. `creates` and `deletes` only grow: they tell a reader that objects came
/// or went between two readings.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct SetCountRecord {
    pub(super) known: bool,
    pub(super) objects: u64,
    pub(super) creates: u64,
    pub(super) deletes: u64,
}

/// What the store knows of a set's size (see [`crate::storage::Store::object_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectCounts {
    /// Objects in the set.
    pub objects: u64,
    /// Creates since the store was opened or the count rebuilt (only grows).
    pub creates: u64,
    /// Deletes since the store was opened or the count rebuilt (only grows).
    pub deletes: u64,
}

/// One row of the link table (reference §5). Ids are unqualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub link_type: String,
    pub qualifier: String,
    pub first_id: String,
    pub second_id: String,
    pub rev: u64,
}

impl Link {
    /// The link's `_id`: an opaque, reversible encoding of (linkType, qualifier, firstId), so
    /// that a link needs no third key to be read by id.
    pub fn id(&self) -> String {
        use base64::Engine;
        let key = keys::link_key(
            keys::LINK_FIRST,
            &self.link_type,
            &self.qualifier,
            &self.first_id,
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key[1..])
    }

    /// Decodes a link `_id` into (linkType, qualifier, firstId).
    pub fn parse_id(id: &str) -> Option<(String, String, String)> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .ok()?;
        let mut key = vec![keys::LINK_FIRST];
        key.extend_from_slice(&raw);
        let (a, b, c) = keys::parse_link_key(&key)?;
        Some((a.to_string(), b.to_string(), c.to_string()))
    }
}

/// Opaque equality-index term (see `keys::index_terms`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexTerm(pub(super) Vec<u8>);

/// The index terms of one attribute value (strings case-insensitive, arrays element-wise).
pub fn index_terms(value: &serde_json::Value) -> Vec<IndexTerm> {
    let mut out = Vec::new();
    keys::index_terms(value, &mut out);
    out.into_iter().map(IndexTerm).collect()
}

/// A persisted run record: the summary JSON plus the fields the store needs to list,
/// filter and retain runs without parsing the summary.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub seq: u64,
    pub id: String,
    pub mapping: String,
    pub completed: bool,
    pub is_analysis: bool,
    pub persist_associations: bool,
    pub source_collection: String,
    pub target_collection: String,
    /// Association summary `finishTime` (microsecond ISO-8601), once completed.
    pub finish_time: Option<String>,
    /// The run summary (reference §1.5) as JSON text.
    pub summary: String,
}

/// One association entry (reference §1.8), compactly stored; the run-level fields (mapping,
/// collections) are joined in when it is read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EntryRecord {
    pub situation: Option<String>,
    pub action: Option<String>,
    pub phase: String,
    pub link_qualifier: String,
    pub source_id: Option<String>,
    pub target_id: Option<String>,
    pub success: bool,
    pub exception: Option<String>,
    pub message: Option<String>,
    pub message_detail: Option<String>,
    pub ambiguous: Option<Vec<String>>,
    /// recond's attribute changes (contract §8) as a JSON array text, when recorded.
    pub changes: Option<String>,
    /// The changes were cut at their bound.
    pub changes_truncated: bool,
}

/// An association entry as format version 1 stored it (before `changes`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub(crate) struct EntryRecordV1 {
    pub situation: Option<String>,
    pub action: Option<String>,
    pub phase: String,
    pub link_qualifier: String,
    pub source_id: Option<String>,
    pub target_id: Option<String>,
    pub success: bool,
    pub exception: Option<String>,
    pub message: Option<String>,
    pub message_detail: Option<String>,
    pub ambiguous: Option<Vec<String>>,
}

impl From<EntryRecordV1> for EntryRecord {
    fn from(o: EntryRecordV1) -> EntryRecord {
        EntryRecord {
            situation: o.situation,
            action: o.action,
            phase: o.phase,
            link_qualifier: o.link_qualifier,
            source_id: o.source_id,
            target_id: o.target_id,
            success: o.success,
            exception: o.exception,
            message: o.message,
            message_detail: o.message_detail,
            ambiguous: o.ambiguous,
            changes: None,
            changes_truncated: false,
        }
    }
}

/// The persisted liveSync token of one object set (contract §7).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SyncTokenRecord {
    /// The token as JSON text (a token is the set's own JSON value).
    pub token: String,
    /// Increases by one with every token written (the `_rev` IDM shows).
    pub rev: u64,
    /// When it was written (ms since the epoch).
    pub updated_ms: i64,
}

/// Keys an object body's map is made with: a map grown key by key rehashes its index three
/// times for a dozen attributes (IDM key order makes it an `IndexMap`).
const BODY_KEYS: usize = 16;

/// A stored body (always a JSON object) parsed into a map sized for it up front.
pub(super) fn parse_body(
    bytes: &[u8],
) -> serde_json::Result<serde_json::Map<String, serde_json::Value>> {
    struct Body;
    impl<'de> serde::de::Visitor<'de> for Body {
        type Value = serde_json::Map<String, serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut access: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut map = serde_json::Map::with_capacity(access.size_hint().unwrap_or(BODY_KEYS));
            while let Some((key, value)) = access.next_entry()? {
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    // Checked as UTF-8 once, in one pass over the whole body: parsed from bytes, serde_json
    // checks every string on its own (callgrind: an eighth of the cost of decoding a body).
    let text = std::str::from_utf8(bytes).map_err(serde::de::Error::custom)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let map = serde::Deserializer::deserialize_map(&mut de, Body)?;
    de.end()?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::parse_body;

    #[test]
    fn bodies_parse_in_key_order_and_bad_ones_fail() {
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        let text = format!("{{\"_id\":\"a\",{many}\"z\":\"é\",\"a\":[1,{{\"b\":null}}]}}");
        let body = parse_body(text.as_bytes()).expect("a valid body");
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 43);
        assert_eq!((keys[0], keys[41], keys[42]), ("_id", "z", "a"));
        assert_eq!(body["z"], "é");
        assert_eq!(
            serde_json::to_string(&body).expect("encodes"),
            text,
            "the same text back"
        );
        for bad in [
            &b"[1,2]"[..],
            b"\"text\"",
            b"{\"a\":1} trailing",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":",
        ] {
            assert!(
                parse_body(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
