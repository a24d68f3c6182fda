//! `_sortKeys` and `_fields`: parsing them, ordering results, and projecting objects.
//!
//! Sorting relies on [`compare_values`] being a total order; a missing field sorts like `null`
//! (first when ascending, last when descending).

use super::{compare_values, Pointer, QueryError, QueryErrorKind};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// One `_sortKeys` entry: `field`, `+field` (ascending) or `-field` (descending).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortKey {
    pub ptr: Pointer,
    pub descending: bool,
}

/// Parses `a,-b,+c`. Spaces around entries are ignored (a URL-decoded `+` becomes a space);
/// an empty entry or a bare sign is an error.
pub fn parse_sort_keys(text: &str) -> Result<Vec<SortKey>, QueryError> {
    let mut keys = Vec::new();
    let mut pos = 0;
    for entry in text.split(',') {
        let leading = entry.chars().take_while(|c| *c == ' ').count();
        let trimmed = entry.trim_matches(' ');
        let (descending, field) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
        };
        if field.is_empty() {
            return Err(QueryError::new(
                QueryErrorKind::SortKeys,
                text,
                pos + leading,
                "empty sort key",
            ));
        }
        keys.push(SortKey {
            ptr: Pointer::parse(field),
            descending,
        });
        pos += entry.chars().count() + 1;
    }
    Ok(keys)
}

/// Orders two objects by `keys`, the first key deciding unless equal.
pub fn sort_cmp(a: &Value, b: &Value, keys: &[SortKey]) -> Ordering {
    const NULL: Value = Value::Null;
    for key in keys {
        let x = key.ptr.get(a).unwrap_or(&NULL);
        let y = key.ptr.get(b).unwrap_or(&NULL);
        let o = compare_values(x, y);
        let o = if key.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Parses `_id,userName,name/given`. `*` (anywhere) or no fields mean "all": an empty vec.
pub fn parse_fields(text: &str) -> Vec<Pointer> {
    let mut out = Vec::new();
    for entry in text.split(',').map(|e| e.trim_matches(' ')) {
        if entry == "*" {
            return Vec::new();
        }
        if !entry.is_empty() {
            out.push(Pointer::parse(entry));
        }
    }
    out
}

/// Keeps only `fields` of `obj` (plus `_id` and `_rev` when present), rebuilding nested
/// objects along each pointer. A pointer that runs through an array copies that whole array,
/// since an index cannot be rebuilt as an object key. No fields (or a non-object) → a clone.
pub fn project(obj: &Value, fields: &[Pointer]) -> Value {
    let Value::Object(src) = obj else {
        return obj.clone();
    };
    if fields.is_empty() || fields.iter().any(Pointer::is_root) {
        return obj.clone();
    }
    // `_id` and `_rev` first, as IDM writes them.
    let mut head = Map::new();
    for meta in ["_id", "_rev"] {
        if let Some(v) = src.get(meta) {
            head.insert(meta.to_string(), v.clone());
        }
    }
    let mut out = Value::Object(head);
    for ptr in fields {
        copy_path(obj, ptr, &mut out);
    }
    out
}

fn copy_path(obj: &Value, ptr: &Pointer, out: &mut Value) {
    let segs = ptr.segments();
    let mut cur = obj;
    let mut take = segs.len();
    for (i, seg) in segs.iter().enumerate() {
        match cur {
            Value::Object(m) => match m.get(seg.as_str()) {
                Some(v) => cur = v,
                None => return,
            },
            Value::Array(_) => {
                take = i;
                break;
            }
            _ => return,
        }
    }
    let prefix = Pointer::from_segments(segs.get(..take).unwrap_or_default().to_vec());
    // `out` only holds objects copied along the same source paths, so every intermediate is an
    // object or absent and set cannot fail; a failure would only drop this one field.
    let _ = prefix.set(out, cur.clone());
}
