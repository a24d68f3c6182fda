//! Attribute-level changes of one action (contract §8): what a CREATE sets, what an UPDATE
//! changes (before and after), what a DELETE removes. Computed from the before/after objects
//! the action already holds, so it costs no read.
//!
//! Attributes are the target object's top-level properties (`/mail`), `_id` and `_rev`
//! left out. Secrets never leave as values: encrypted or hashed values (objects with
//! `$crypto`) and attributes named like a password or a secret show as `"***"`. The array is
//! bounded by [`MAX_BYTES`] of JSON; a cut is reported.

use serde_json::{Map, Value};

/// The bound of one entry's `changes` (JSON bytes).
pub const MAX_BYTES: usize = 64 * 1024;

const MASK: &str = "***";

/// The changes as JSON array text, and whether they were cut at the bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    pub json: String,
    pub truncated: bool,
}

/// True for attribute names that hold secrets (case-insensitive).
pub fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret")
}

fn shown(name: &str, v: Option<&Value>, masked: &dyn Fn(&str) -> bool) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(v) if masked(name) || secret_name(name) || is_protected(v) => Value::from(MASK),
        Some(v) => v.clone(),
    }
}

/// An encrypted or hashed value as IDM stores it (`{"$crypto": {...}}`).
fn is_protected(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key("$crypto"))
}

fn pointer(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
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
    let mut out = String::from("[");
    let mut truncated = false;
    for name in names {
        let (old, new) = (b.get(name), a.get(name));
        if old == new {
            continue;
        }
        let item = serde_json::json!({
            "attribute": pointer(name),
            "before": shown(name, old, masked),
            "after": shown(name, new, masked),
        });
        let text = item.to_string();
        if out.len() + text.len() + 2 > MAX_BYTES {
            truncated = true;
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&text);
    }
    out.push(']');
    Changes {
        json: out,
        truncated,
    }
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
        let v: Value = serde_json::from_str(&c.json).expect("changes are JSON");
        let mut a = v.as_array().cloned().unwrap_or_default();
        a.sort_by_key(|x| x["attribute"].to_string());
        Value::Array(a)
    }

    fn sorted(v: Value) -> Value {
        parse(&Changes {
            json: v.to_string(),
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
    fn changes_are_bounded() {
        let big: Map<String, Value> = (0..2000)
            .map(|i| (format!("attr{i}"), json!("x".repeat(100))))
            .collect();
        let c = changes(None, Some(&big), &|_| false);
        assert!(c.truncated);
        assert!(c.json.len() <= MAX_BYTES);
        assert!(parse(&c).as_array().is_some_and(|a| !a.is_empty()));
    }
}
