//! Attribute-level changes of one action (contract §8): what a CREATE sets, what an UPDATE
//! changes (before and after), what a DELETE removes. Computed from the before/after objects
//! the action already holds, so it costs no read.
//!
//! Attributes are the target object's top-level properties (`/mail`), `_id` and `_rev`
//! left out. Secrets never leave as values (contract §8), on either side, at any depth:
//! * attributes the caller names (the target's managed.json `encryption` / `secureHash`
//!   properties, whose values are clear text until the managed set protects them);
//! * encrypted or hashed values (objects with `$crypto`, as IDM stores them);
//! * attributes and nested keys named like a password or a secret ([`secret_name`]).
//!
//! Each shows as `"***"`. The array is bounded by [`MAX_BYTES`] of JSON; a cut is reported.
//!
//! Stored form: an association entry keeps its changes as a compact JSON array of
//! `[pointer, before, after]` triples (for a create of ten attributes, 40 % fewer bytes than
//! contract §8's objects, and every byte is written by the run that records them);
//! [`expand`] turns it into the contract's `{"attribute", "before", "after"}` objects when
//! the entry is read. Entries stored before this form (already objects) expand unchanged.
//! The bound applies to the expanded JSON.

use serde_json::{Map, Value};

/// The bound of one entry's `changes` (JSON bytes).
pub const MAX_BYTES: usize = 64 * 1024;

const MASK: &str = "***";

/// The changes in their stored form (see the module doc), and whether they were cut at the
/// bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub stored: String,
    pub truncated: bool,
}

/// True for attribute names that hold secrets (case-insensitive): `password`,
/// `userPassword`, `passwd`, `unicodePwd`, `secret`, `clientSecret`...
pub fn secret_name(name: &str) -> bool {
    let n = name.as_bytes();
    contains_ignore_case(n, b"password")
        || contains_ignore_case(n, b"passwd")
        || contains_ignore_case(n, b"secret")
        || n.eq_ignore_ascii_case(b"unicodepwd")
}

/// `needle` (lower case ASCII) occurs in `hay`, ignoring ASCII case. Checked for every
/// attribute of every recorded entry, so it allocates nothing.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// An encrypted or hashed value as IDM stores it (`{"$crypto": {...}}`).
fn is_protected(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key("$crypto"))
}

/// Appends `v` as JSON text. Serialising a `Value` into a byte buffer cannot fail (every
/// key is a string); were it ever to, the value shows as `null` rather than failing the
/// entry.
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Appends one side of a change: `null` when absent, the mask for a secret, else the value
/// with its nested secrets masked.
fn push_shown(out: &mut Vec<u8>, name: &str, v: Option<&Value>, masked: &dyn Fn(&str) -> bool) {
    match v {
        None | Some(Value::Null) => out.extend_from_slice(b"null"),
        Some(v) if masked(name) || secret_name(name) || is_protected(v) => push_json(out, MASK),
        Some(v) => push_redacted(out, v),
    }
}

/// Appends `v` with every nested secret (a `$crypto` value, a key named like a secret)
/// masked. Written straight into the text: a recorded entry builds no copy of the values.
fn push_redacted(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json(out, k);
                out.push(b':');
                if secret_name(k) || is_protected(v) {
                    push_json(out, MASK);
                } else {
                    push_redacted(out, v);
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if is_protected(v) {
                    push_json(out, MASK);
                } else {
                    push_redacted(out, v);
                }
            }
            out.push(b']');
        }
        v => push_json(out, v),
    }
}

/// Appends the JSON pointer of a top-level attribute as a JSON string.
fn push_pointer(out: &mut Vec<u8>, name: &str) {
    push_json(out, &crate::query::segments_text(&[name]));
}

/// The changes from `before` to `after` (None = the object does not exist on that side).
/// `masked` names further attributes to mask (the managed model's `encryption` and
/// `secureHash` properties, where known).
pub fn changes(
    before: Option<&Map<String, Value>>,
    after: Option<&Map<String, Value>>,
    masked: &dyn Fn(&str) -> bool,
) -> Changes {
    let empty = Map::new();
    let b = before.unwrap_or(&empty);
    let a = after.unwrap_or(&empty);
    let names = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .filter(|k| *k != "_id" && *k != "_rev");
    let mut out: Vec<u8> = Vec::with_capacity(256);
    out.push(b'[');
    let mut items = 0usize;
    let mut truncated = false;
    for name in names {
        let (old, new) = (b.get(name), a.get(name));
        if old == new {
            continue;
        }
        let mark = out.len();
        if mark > 1 {
            out.push(b',');
        }
        out.push(b'[');
        push_pointer(&mut out, name);
        out.push(b',');
        push_shown(&mut out, name, old, masked);
        out.push(b',');
        push_shown(&mut out, name, new, masked);
        out.push(b']');
        items += 1;
        // The bound is on the expanded JSON, closing bracket included.
        if out.len() + EXPANSION * items + 1 > MAX_BYTES {
            out.truncate(mark);
            truncated = true;
            break;
        }
    }
    out.push(b']');
    Changes {
        // serde_json writes UTF-8 and every other byte pushed here is ASCII.
        stored: String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        truncated,
    }
}

/// How many bytes longer one change is as contract §8's object than as a stored triple:
/// `{"attribute":…,"before":…,"after":…}` against `[…,…,…]`.
const EXPANSION: usize = r#"{"attribute":,"before":,"after":}"#.len() - "[,,]".len();

/// Contract §8's `changes` array from an entry's stored changes (see the module doc).
pub fn expand(stored: &str) -> Result<Value, serde_json::Error> {
    let items: Vec<Value> = serde_json::from_str(stored)?;
    Ok(Value::Array(
        items
            .into_iter()
            .map(|item| match item {
                Value::Array(t) if t.len() == 3 => {
                    let mut t = t.into_iter();
                    let mut o = Map::with_capacity(3);
                    for key in ["attribute", "before", "after"] {
                        o.insert(key.to_string(), t.next().unwrap_or(Value::Null));
                    }
                    Value::Object(o)
                }
                // Stored before the triple form: already the contract's object.
                other => other,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test objects are objects"),
        }
    }

    /// The changes sorted by attribute (their order follows the objects' key order, which
    /// depends on serde_json's `preserve_order`).
    fn parse(c: &Changes) -> Value {
        let v: Value = expand(&c.stored).expect("changes are JSON");
        let mut a = v.as_array().cloned().unwrap_or_default();
        a.sort_by_key(|x| x["attribute"].to_string());
        Value::Array(a)
    }

    fn sorted(v: Value) -> Value {
        parse(&Changes {
            stored: v.to_string(),
            truncated: false,
        })
    }

    #[test]
    fn update_lists_only_what_changed_and_masks_secrets() {
        let before = obj(
            json!({"_id": "1", "_rev": "3", "mail": "a@x", "cn": "A", "userPassword": "old", "gone": 1}),
        );
        let after = obj(
            json!({"_id": "1", "mail": "b@x", "cn": "A", "userPassword": "new", "pin": {"$crypto": {}}}),
        );
        let c = changes(Some(&before), Some(&after), &|_| false);
        assert!(!c.truncated);
        assert_eq!(
            parse(&c),
            sorted(json!([
                {"attribute": "/mail", "before": "a@x", "after": "b@x"},
                {"attribute": "/userPassword", "before": "***", "after": "***"},
                {"attribute": "/pin", "before": null, "after": "***"},
                {"attribute": "/gone", "before": 1, "after": null},
            ]))
        );
    }

    #[test]
    fn create_and_delete_have_a_null_side() {
        let o = obj(json!({"a/b": 1, "Secret": "s"}));
        assert_eq!(
            parse(&changes(None, Some(&o), &|_| false)),
            sorted(
                json!([{"attribute": "/a~1b", "before": null, "after": 1}, {"attribute": "/Secret", "before": null, "after": "***"}])
            )
        );
        assert_eq!(
            parse(&changes(Some(&o), None, &|n| n == "a/b")),
            sorted(
                json!([{"attribute": "/a~1b", "before": "***", "after": null}, {"attribute": "/Secret", "before": "***", "after": null}])
            )
        );
    }

    #[test]
    fn declared_and_nested_secrets_are_masked_on_both_sides() {
        // `pin` is declared encrypted: its clear value (before the managed set encrypts it)
        // never shows; nested secrets in other attributes are masked in place.
        let before = obj(json!({"pin": {"$crypto": {"type": "x"}}, "creds": {"user": "u"}}));
        let after = obj(json!({
            "pin": "1234",
            "creds": {"user": "u", "passwd": "p", "token": {"$crypto": {}}},
            "keys": [{"$crypto": {}}, "k"],
            "unicodePwd": "x",
        }));
        let c = changes(Some(&before), Some(&after), &|n| n == "pin");
        assert_eq!(
            parse(&c),
            sorted(json!([
                {"attribute": "/pin", "before": "***", "after": "***"},
                {"attribute": "/creds", "before": {"user": "u"},
                 "after": {"user": "u", "passwd": "***", "token": "***"}},
                {"attribute": "/keys", "before": null, "after": ["***", "k"]},
                {"attribute": "/unicodePwd", "before": null, "after": "***"},
            ]))
        );
        assert!(!c.stored.contains("1234"), "{}", c.stored);
    }

    #[test]
    fn changes_are_bounded() {
        let big: Map<String, Value> = (0..2000)
            .map(|i| (format!("attr{i}"), json!("x".repeat(100))))
            .collect();
        let c = changes(None, Some(&big), &|_| false);
        assert!(c.truncated);
        let expanded = parse(&c).to_string();
        assert!(expanded.len() <= MAX_BYTES, "{}", expanded.len());
        assert!(
            expanded.len() > MAX_BYTES - 200,
            "cut at the bound, not well before it: {}",
            expanded.len()
        );
        assert!(parse(&c).as_array().is_some_and(|a| !a.is_empty()));
    }

    #[test]
    fn stored_triples_expand_to_the_contract_objects_and_older_objects_stay() {
        let o = obj(json!({"mail": "a@x"}));
        let c = changes(None, Some(&o), &|_| false);
        assert_eq!(c.stored, r#"[["/mail",null,"a@x"]]"#);
        assert_eq!(
            expand(&c.stored).expect("JSON").to_string(),
            r#"[{"attribute":"/mail","before":null,"after":"a@x"}]"#
        );
        let older = r#"[{"attribute":"/cn","before":"A","after":"B"}]"#;
        assert_eq!(expand(older).expect("JSON").to_string(), older);
        assert_eq!(expand("[]").expect("JSON"), json!([]));
    }
}
