//! The one value codec: a format-version byte followed by bincode 1.3 in its default
//! (fixed-int, little-endian) configuration. Nothing outside `storage` sees these bytes.
//!
//! Records are plain structs (no `flatten`, `untagged` or `skip_serializing_if`, which
//! bincode cannot read back). A change to a record's shape must bump `VERSION` and add a
//! decoding arm for the old version.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Format version of every value written by this build.
///
/// History: 1 = the first format; 2 = association entries gained `changes` and
/// `changes_truncated` (every other record is laid out as in 1, so [`decode`] reads both).
/// The text of `changes` is the engine's (`engine::diff`, which reads both its forms).
pub(crate) const VERSION: u8 = 2;
/// The oldest version still read.
const OLDEST: u8 = 1;

/// Values larger than this are refused on decode (a corrupt length must not allocate GiBs).
const MAX_VALUE: u64 = 256 * 1024 * 1024;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    bincode::serialize_into(&mut out, value).map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(out)
}

/// Decodes a record whose layout is the same in every version still read (every record but
/// [`super::EntryRecord`], which has [`decode_entry`]).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_borrowed(bytes)
}

/// Decodes a record that borrows from `bytes` (an object's body is read in place).
pub(crate) fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    match bytes.first() {
        Some(v) if (OLDEST..=VERSION).contains(v) => body(bytes),
        Some(v) => Err(StoreError::Codec(format!(
            "unknown value format version {v}"
        ))),
        None => Err(StoreError::Codec("empty value".to_string())),
    }
}

/// Byte-string fields: bincode lays them out as a `Vec<u8>` (a u64 length, then the bytes),
/// but writes and reads them in one copy, or none when borrowed, instead of one element
/// at a time (what serde does for a `Vec<u8>` or `&[u8]` left to itself).
pub(crate) mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'de [u8], D::Error> {
        <&'de [u8]>::deserialize(d)
    }
}

/// Decodes an association entry: version 1 entries (no `changes`) are read too.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<super::EntryRecord, StoreError> {
    match bytes.first() {
        Some(1) => body::<super::EntryRecordV1>(bytes).map(Into::into),
        _ => decode(bytes),
    }
}

fn body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    use bincode::Options;
    match bytes.first() {
        Some(_) => bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(MAX_VALUE)
            .deserialize(&bytes[1..])
            .map_err(|e| StoreError::Codec(e.to_string())),
        None => Err(StoreError::Codec("empty value".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct R {
        a: u64,
        b: String,
        c: Option<Vec<u8>>,
    }

    #[test]
    fn round_trip_and_version_check() {
        let r = R {
            a: 7,
            b: "x".into(),
            c: Some(vec![1, 2]),
        };
        let bytes = encode(&r).expect("encodable");
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode::<R>(&bytes).expect("decodable"), r);
        let mut bad = bytes.clone();
        bad[0] = 99;
        assert!(decode::<R>(&bad).is_err());
        assert!(decode::<R>(&[]).is_err());
        assert!(decode::<R>(&[VERSION, 1]).is_err());
    }

    /// Objects written before `codec::bytes` (a plain `Vec<u8>` body) read the same, and
    /// new ones are laid out byte for byte as before: no format change, no version bump.
    #[test]
    fn object_bodies_keep_the_vec_layout() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Before {
            rev: u64,
            body: Vec<u8>,
        }
        let body = br#"{"mail":"a@x"}"#.to_vec();
        let old = encode(&Before {
            rev: 3,
            body: body.clone(),
        })
        .expect("encodable");
        let new = encode(&super::super::records::ObjectRecord {
            rev: 3,
            body: &body,
        })
        .expect("encodable");
        assert_eq!(old, new);
        let read: super::super::records::ObjectRecord = decode_borrowed(&old).expect("decodable");
        assert_eq!((read.rev, read.body), (3, &body[..]));
        let back: Before = decode(&new).expect("decodable");
        assert_eq!(back.body, body);
    }

    #[test]
    fn version_1_entries_are_still_read() {
        let old = super::super::EntryRecordV1 {
            situation: Some("ABSENT".into()),
            action: Some("CREATE".into()),
            phase: "source".into(),
            link_qualifier: "default".into(),
            source_id: Some("s".into()),
            target_id: None,
            success: true,
            exception: None,
            message: None,
            message_detail: None,
            ambiguous: None,
        };
        let mut bytes = vec![1u8];
        bincode::serialize_into(&mut bytes, &old).expect("encodable");
        let e = decode_entry(&bytes).expect("a version 1 entry reads");
        assert_eq!(e.situation.as_deref(), Some("ABSENT"));
        assert_eq!(e.changes, None);
        let new = super::super::EntryRecord {
            changes: Some("[]".into()),
            changes_truncated: true,
            ..e
        };
        assert_eq!(
            decode_entry(&encode(&new).expect("encodable")).expect("reads"),
            new
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug, Clone)]
    struct Record {
        n: u64,
        i: i64,
        text: String,
        bytes: Vec<u8>,
        maybe: Option<String>,
        list: Vec<(String, u32)>,
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            any::<u64>(),
            any::<i64>(),
            "\\PC{0,40}",
            prop::collection::vec(any::<u8>(), 0..64),
            prop::option::of("\\PC{0,10}"),
            prop::collection::vec(("\\PC{0,6}", any::<u32>()), 0..5),
        )
            .prop_map(|(n, i, text, bytes, maybe, list)| Record {
                n,
                i,
                text,
                bytes,
                maybe,
                list,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn every_record_round_trips(r in record()) {
            let bytes = encode(&r).expect("encodable");
            prop_assert_eq!(bytes[0], VERSION);
            prop_assert_eq!(decode::<Record>(&bytes).expect("decodable"), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode::<Record>(&bytes);
        }
    }
}
