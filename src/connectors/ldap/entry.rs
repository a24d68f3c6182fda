//! Directory entries ↔ recond objects, following IDM's LDAP connector object model.
//!
//! * `_id` is the uid attribute's first value (`entryUUID` by default); the `__NAME__`
//!   property is the entry's `dn`; every other readable property is read from its
//!   `nativeName` attribute (case-insensitive, as LDAP attribute names are).
//! * Multi-valued properties (`type: array` or `MULTIVALUED`) are arrays; single-valued ones
//!   are scalars typed by the model (`boolean` from `TRUE`/`FALSE`, integers and numbers
//!   parsed; a value that does not parse stays a string rather than being lost). Absent
//!   attributes are absent properties, except `ldapGroups`, which is always an array.
//! * Binary attributes (`nativeType` `JAVA_TYPE_BYTE_ARRAY`, or values that are not UTF-8)
//!   are base64 in objects.
//! * Passwords are write-only: never requested, never returned.
//! * `_rev` is a hash of the object's content, so it changes only when the data does.

use base64::Engine;
use serde_json::{Map, Value};

use super::config::{TypeConfig, LDAP_GROUPS};
use crate::idm::provisioner::{NAME, UID};
use crate::idm::{PropType, Property};

/// The post-read control (RFC 4527): the entry as it is after an add, modify or rename.
pub const POST_READ_OID: &str = "1.3.6.1.1.13.2";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One search result: its dn and attribute values, by attribute name as the directory sent
/// it (looked up case-insensitively: an entry has a dozen attributes, so a scan beats a map
/// and needs no lower-cased copy of every name).
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// Decodes a SearchResultEntry (RFC 4511 §4.5.2) without copying values: they stay the
    /// bytes the directory sent (UTF-8 or binary is decided by the model when mapping). A
    /// malformed entry is an error, never a panic.
    pub fn decode(re: ldap3::ResultEntry) -> Result<Entry, String> {
        Entry::decode_tag(re.0)
    }

    fn decode_tag(tag: ldap3::asn1::StructureTag) -> Result<Entry, String> {
        let bad = |what: &str| format!("the directory sent a malformed search entry ({what})");
        let mut parts = tag
            .match_id(4)
            .and_then(|t| t.expect_constructed())
            .ok_or_else(|| bad("not an entry"))?
            .into_iter();
        let dn = parts
            .next()
            .and_then(|t| t.expect_primitive())
            .ok_or_else(|| bad("no dn"))?;
        let dn = String::from_utf8(dn).map_err(|_| bad("dn not UTF-8"))?;
        let list = parts
            .next()
            .and_then(|t| t.expect_constructed())
            .ok_or_else(|| bad("no attribute list"))?;
        let mut attrs: Vec<(String, Vec<Vec<u8>>)> = Vec::with_capacity(list.len());
        for a in list {
            let mut pa = a
                .expect_constructed()
                .ok_or_else(|| bad("attribute"))?
                .into_iter();
            let name = pa
                .next()
                .and_then(|t| t.expect_primitive())
                .and_then(|n| String::from_utf8(n).ok())
                .ok_or_else(|| bad("attribute name"))?;
            let vals = pa
                .next()
                .and_then(|t| t.expect_constructed())
                .ok_or_else(|| bad("attribute values"))?
                .into_iter()
                .map(|v| v.expect_primitive().ok_or_else(|| bad("attribute value")))
                .collect::<Result<Vec<Vec<u8>>, String>>()?;
            match attrs
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                Some((_, vs)) => vs.extend(vals),
                None => attrs.push((name, vals)),
            }
        }
        Ok(Entry { dn, attrs })
    }

    /// The entry a write's post-read response control (RFC 4527) carries, when the
    /// directory sent one: the control's value is a SearchResultEntry. `None` when the
    /// response has no such control (a directory without post-read support ignores the
    /// non-critical request); a malformed value is an error, never a panic.
    pub fn from_post_read(ctrls: &[ldap3::controls::Control]) -> Result<Option<Entry>, String> {
        let Some(c) = ctrls.iter().find(|c| c.1.ctype == POST_READ_OID) else {
            return Ok(None);
        };
        let bad = || "the directory sent a malformed post-read control".to_string();
        let val = c.1.val.as_deref().ok_or_else(bad)?;
        let (_, tag) = ldap3::asn1::parse_tag(val).map_err(|_| bad())?;
        Entry::decode_tag(tag).map(Some)
    }

    pub fn values(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// The entry's `_id`: the first value of the uid attribute.
    pub fn uid(&self, cfg: &TypeConfig) -> Result<String, String> {
        let v = self.values(&cfg.uid_attribute).first().ok_or_else(|| {
            format!(
                "entry {} has no {} (the uidAttribute)",
                self.dn, cfg.uid_attribute
            )
        })?;
        String::from_utf8(v.clone())
            .map_err(|_| format!("entry {}: {} is not UTF-8", self.dn, cfg.uid_attribute))
    }
}

/// Whether a property holds binary values.
pub fn is_binary(p: &Property) -> bool {
    p.native_type.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case("JAVA_TYPE_BYTE_ARRAY") || t.eq_ignore_ascii_case("byte[]")
    })
}

/// Whether a property is one the entry's ordinary attributes carry (not `dn`, the uid,
/// `ldapGroups`).
pub fn is_plain(p: &Property) -> bool {
    let n = p.native_name.as_str();
    n != NAME && n != UID && !n.eq_ignore_ascii_case(LDAP_GROUPS)
}

fn typed(p: &Property, ty: PropType, raw: &[u8]) -> Value {
    if is_binary(p) {
        return Value::String(base64::engine::general_purpose::STANDARD.encode(raw));
    }
    let Ok(s) = std::str::from_utf8(raw) else {
        return Value::String(base64::engine::general_purpose::STANDARD.encode(raw));
    };
    match ty {
        PropType::Boolean if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        PropType::Boolean if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        PropType::Integer => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(s.into())),
        PropType::Number => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(s.into())),
        _ => Value::String(s.into()),
    }
}

/// The object for an entry; `groups` is the entry's groups when the model has `ldapGroups`.
pub fn to_object(
    e: &Entry,
    cfg: &TypeConfig,
    groups: Option<Vec<String>>,
) -> Result<Map<String, Value>, String> {
    let mut obj = Map::new();
    obj.insert("_id".into(), Value::String(e.uid(cfg)?));
    for p in &cfg.model.properties {
        if !p.is_returned_by_default() || p.is_password() {
            continue;
        }
        let native = p.native_name.as_str();
        if native == NAME {
            obj.insert(p.name.clone(), Value::String(e.dn.clone()));
            continue;
        }
        if native == UID {
            obj.insert(p.name.clone(), Value::String(e.uid(cfg)?));
            continue;
        }
        if native.eq_ignore_ascii_case(LDAP_GROUPS) {
            let g = groups.clone().unwrap_or_default();
            obj.insert(
                p.name.clone(),
                Value::Array(g.into_iter().map(Value::String).collect()),
            );
            continue;
        }
        let raw = e.values(native);
        if raw.is_empty() {
            continue;
        }
        let v = if p.is_multivalued() {
            let item = p.items.unwrap_or(PropType::String);
            Value::Array(raw.iter().map(|r| typed(p, item, r)).collect())
        } else {
            typed(p, p.ty, &raw[0])
        };
        obj.insert(p.name.clone(), v);
    }
    obj.insert("_rev".into(), Value::String(revision(&obj)));
    Ok(obj)
}

/// A content hash of an object (without its `_rev`).
pub fn revision(obj: &Map<String, Value>) -> String {
    let mut h = FNV_OFFSET;
    for (k, v) in obj {
        if k == "_rev" {
            continue;
        }
        let mut w = Fnv(h);
        w.feed(k.as_bytes());
        w.feed(&[0]);
        // The value's JSON text, hashed as it is written (no string per value).
        serde_json::to_writer(&mut w, v).expect("writing JSON into a hash cannot fail");
        w.feed(&[0]);
        h = w.0;
    }
    format!("{h:016x}")
}

/// FNV-1a over whatever is written into it.
struct Fnv(u64);

impl Fnv {
    fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A property value as the attribute values to write (`null` and `[]` are none).
pub fn values_of(p: &Property, v: &Value) -> Result<Vec<Vec<u8>>, String> {
    let one = |x: &Value| -> Result<Option<Vec<u8>>, String> {
        Ok(match x {
            Value::Null => None,
            Value::String(s) if is_binary(p) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| format!("{}: binary values must be base64", p.name))?,
            ),
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone().into_bytes()),
            Value::Bool(true) => Some(b"TRUE".to_vec()),
            Value::Bool(false) => Some(b"FALSE".to_vec()),
            Value::Number(n) => Some(n.to_string().into_bytes()),
            Value::Array(_) | Value::Object(_) => {
                return Err(format!(
                    "{}: an LDAP attribute value cannot be {}",
                    p.name,
                    if x.is_array() {
                        "an array"
                    } else {
                        "an object"
                    }
                ))
            }
        })
    };
    match v {
        Value::Array(items) if p.is_multivalued() => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                if let Some(b) = one(i)? {
                    if !out.contains(&b) {
                        out.push(b);
                    }
                }
            }
            Ok(out)
        }
        Value::Array(items) if items.len() <= 1 => Ok(items
            .first()
            .map(one)
            .transpose()?
            .flatten()
            .into_iter()
            .collect()),
        other => Ok(one(other)?.into_iter().collect()),
    }
}

/// Whether two value lists are the same attribute content (multi-valued: as sets).
pub fn same_values(p: &Property, a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    if p.is_multivalued() {
        let mut a = a.to_vec();
        let mut b = b.to_vec();
        a.sort();
        b.sort();
        a == b
    } else {
        a == b
    }
}

/// DNs compared as a directory would for the common case: case-insensitive, spaces around
/// separators ignored.
pub fn same_dn(a: &str, b: &str) -> bool {
    norm_dn(a) == norm_dn(b)
}

pub fn norm_dn(dn: &str) -> String {
    split_rdns(dn)
        .iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((k, v)) => format!("{}={}", k.trim(), v.trim()).to_lowercase(),
            None => rdn.trim().to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The RDNs of a DN, split at unescaped commas.
pub fn split_rdns(dn: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() || !out.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> TypeConfig {
        super::super::config::test_account(
            json!({"host": "h", "baseContexts": ["dc=example,dc=com"]}),
            json!({
                "dn": {"type": "string", "nativeName": "__NAME__"},
                "uid": {"type": "string"},
                "mail": {"type": "array", "items": {"type": "string"}},
                "employeeNumber": {"type": "integer"},
                "photo": {"type": "string", "nativeName": "jpegPhoto",
                          "nativeType": "JAVA_TYPE_BYTE_ARRAY"},
                "userPassword": {"type": "string", "nativeType": "JAVA_TYPE_GUARDEDSTRING",
                                 "flags": ["NOT_READABLE", "NOT_RETURNED_BY_DEFAULT"]},
                "ldapGroups": {"type": "array", "items": {"type": "string"}}
            }),
        )
    }

    fn entry(pairs: &[(&str, &[&[u8]])]) -> Entry {
        Entry {
            dn: "uid=a,ou=people,dc=example,dc=com".into(),
            attrs: pairs
                .iter()
                .map(|(k, vs)| {
                    (
                        k.to_ascii_lowercase(),
                        vs.iter().map(|v| v.to_vec()).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn entries_become_objects_by_the_model() {
        let c = cfg();
        let e = entry(&[
            ("entryUUID", &[b"u-1"]),
            ("uid", &[b"a", b"b"]),
            ("mail", &[b"a@x", b"b@x"]),
            ("employeeNumber", &[b"42"]),
            ("jpegPhoto", &[&[0, 255]]),
            ("userPassword", &[b"secret"]),
        ]);
        let o = to_object(&e, &c, Some(vec!["cn=g".into()])).expect("object");
        assert_eq!(o["_id"], "u-1");
        assert_eq!(o["dn"], "uid=a,ou=people,dc=example,dc=com");
        assert_eq!(o["uid"], "a", "single-valued: the first value");
        assert_eq!(o["mail"], json!(["a@x", "b@x"]));
        assert_eq!(o["employeeNumber"], 42);
        assert_eq!(o["photo"], "AP8=");
        assert_eq!(o["ldapGroups"], json!(["cn=g"]));
        assert!(!o.contains_key("userPassword"));
        let rev = o["_rev"].as_str().expect("rev").to_string();
        let again = to_object(&e, &c, Some(vec!["cn=g".into()])).expect("object");
        assert_eq!(again["_rev"], rev.as_str());
        let e2 = entry(&[("entryUUID", &[b"u-1"]), ("uid", &[b"z"])]);
        let o2 = to_object(&e2, &c, None).expect("object");
        assert_ne!(o2["_rev"], rev.as_str());
        assert_eq!(o2["ldapGroups"], json!([]));
        assert!(!o2.contains_key("mail"));
        assert!(to_object(&entry(&[]), &c, None)
            .expect_err("no uid")
            .contains("entryUUID"));
    }

    fn prim(b: &[u8]) -> ldap3::asn1::StructureTag {
        ldap3::asn1::StructureTag {
            class: ldap3::asn1::TagClass::Universal,
            id: 4,
            payload: ldap3::asn1::PL::P(b.to_vec()),
        }
    }

    fn cons(
        id: u64,
        class: ldap3::asn1::TagClass,
        items: Vec<ldap3::asn1::StructureTag>,
    ) -> ldap3::asn1::StructureTag {
        ldap3::asn1::StructureTag {
            class,
            id,
            payload: ldap3::asn1::PL::C(items),
        }
    }

    #[test]
    fn search_entries_decode_without_panicking_on_bad_input() {
        use ldap3::asn1::TagClass::{Application, Universal};
        let attr = |name: &str, vals: &[&[u8]]| {
            cons(
                16,
                Universal,
                vec![
                    prim(name.as_bytes()),
                    cons(17, Universal, vals.iter().map(|v| prim(v)).collect()),
                ],
            )
        };
        let tag = cons(
            4,
            Application,
            vec![
                prim(b"uid=a,dc=x"),
                cons(
                    16,
                    Universal,
                    vec![
                        attr("uid", &[b"a"]),
                        attr("jpegPhoto", &[&[0, 255]]),
                        attr("UID", &[b"b"]),
                    ],
                ),
            ],
        );
        let e = Entry::decode_tag(tag).expect("decodes");
        assert_eq!(e.dn, "uid=a,dc=x");
        assert_eq!(
            e.values("Uid"),
            &[b"a".to_vec(), b"b".to_vec()],
            "names merge case-insensitively"
        );
        assert_eq!(
            e.values("jpegphoto"),
            &[vec![0u8, 255]],
            "binary values are kept as sent"
        );
        assert!(e.values("mail").is_empty());
        // What ldap3's own SearchEntry::construct would panic on is an error here.
        for bad in [
            cons(5, Application, vec![]),
            cons(4, Application, vec![]),
            cons(4, Application, vec![prim(b"uid=a")]),
            cons(
                4,
                Application,
                vec![prim(&[0xff]), cons(16, Universal, vec![])],
            ),
            cons(
                4,
                Application,
                vec![prim(b"uid=a"), cons(16, Universal, vec![prim(b"x")])],
            ),
        ] {
            let e = Entry::decode_tag(bad).expect_err("malformed");
            assert!(e.contains("malformed"), "{e}");
        }
    }

    #[test]
    fn values_for_writes() {
        let c = cfg();
        let p = |n: &str| c.model.property(n).expect("prop").clone();
        assert_eq!(
            values_of(&p("mail"), &json!(["a", "a", "b", null])),
            Ok(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert_eq!(values_of(&p("uid"), &json!(null)), Ok(vec![]));
        assert_eq!(values_of(&p("uid"), &json!("")), Ok(vec![]));
        assert_eq!(
            values_of(&p("employeeNumber"), &json!(7)),
            Ok(vec![b"7".to_vec()])
        );
        assert_eq!(
            values_of(&p("photo"), &json!("AP8=")),
            Ok(vec![vec![0, 255]])
        );
        assert!(values_of(&p("uid"), &json!({"a": 1})).is_err());
        assert!(values_of(&p("uid"), &json!(["a", "b"])).is_err());
        assert!(same_values(
            &p("mail"),
            &[b"a".to_vec(), b"b".to_vec()],
            &[b"b".to_vec(), b"a".to_vec()]
        ));
    }

    #[test]
    fn dns_compare_and_split() {
        assert!(same_dn("uid=A, ou=People,dc=x", "UID=a,ou=people, dc=X"));
        assert!(!same_dn("uid=a,dc=x", "uid=b,dc=x"));
        assert_eq!(
            split_rdns(r"cn=a\,b,dc=x"),
            vec![r"cn=a\,b".to_string(), "dc=x".to_string()]
        );
    }

    fn post_read(val: Option<Vec<u8>>) -> Vec<ldap3::controls::Control> {
        vec![ldap3::controls::Control(
            None,
            ldap3::controls::RawControl {
                ctype: POST_READ_OID.into(),
                crit: false,
                val,
            },
        )]
    }

    /// A SearchResultEntry as a directory encodes it in a post-read control.
    fn encoded_entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> Vec<u8> {
        use ldap3::asn1::{ASNTag, OctetString, Sequence, Set, Tag, TagClass};
        let octets = |b: &[u8]| {
            Tag::OctetString(OctetString {
                inner: b.to_vec(),
                ..Default::default()
            })
        };
        let list = attrs
            .iter()
            .map(|(k, vs)| {
                Tag::Sequence(Sequence {
                    inner: vec![
                        octets(k.as_bytes()),
                        Tag::Set(Set {
                            inner: vs.iter().map(|v| octets(v)).collect(),
                            ..Default::default()
                        }),
                    ],
                    ..Default::default()
                })
            })
            .collect();
        let entry = Tag::Sequence(Sequence {
            id: 4,
            class: TagClass::Application,
            inner: vec![
                octets(dn.as_bytes()),
                Tag::Sequence(Sequence {
                    inner: list,
                    ..Default::default()
                }),
            ],
        });
        let mut buf = bytes::BytesMut::new();
        ldap3::asn1::write::encode_into(&mut buf, entry.into_structure()).expect("encodes");
        buf.to_vec()
    }

    #[test]
    fn a_post_read_control_carries_the_written_entry() {
        let val = encoded_entry(
            "uid=a,dc=example,dc=com",
            &[("entryUUID", &[b"u-1"]), ("mail", &[b"a@x", b"b@x"])],
        );
        let e = Entry::from_post_read(&post_read(Some(val)))
            .expect("decodes")
            .expect("an entry");
        assert_eq!(e.dn, "uid=a,dc=example,dc=com");
        assert_eq!(e.uid(&cfg()).expect("uid"), "u-1");
        assert_eq!(e.values("MAIL").len(), 2);
        // No control (a directory without post-read): nothing, so the caller reads back.
        assert!(Entry::from_post_read(&[]).expect("no control").is_none());
        // A malformed value is an error, never a panic.
        assert!(Entry::from_post_read(&post_read(Some(vec![0x30, 0x05, 1]))).is_err());
        assert!(Entry::from_post_read(&post_read(None)).is_err());
    }
}
