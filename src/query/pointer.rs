//! JSON pointers (RFC 6901) as used by CREST: leading `/` optional, `~0`/`~1` escapes, numeric
//! segments index arrays. Parsing is lenient and never fails; reading never allocates.

use super::{QueryError, QueryErrorKind};
use serde_json::{Map, Value};
use std::fmt;

/// A decoded JSON pointer. The empty pointer (no segments) is the root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Pointer {
    segments: Vec<String>,
}

impl Pointer {
    /// Parses `/a/b`, `a/b` or `` (root). `/` alone is one empty segment (the key `""`).
    /// Unknown `~` escapes are kept literally.
    pub fn parse(text: &str) -> Pointer {
        if text.is_empty() {
            return Pointer::root();
        }
        let body = text.strip_prefix('/').unwrap_or(text);
        Pointer {
            segments: body.split('/').map(unescape).collect(),
        }
    }

    /// The root pointer (refers to the whole value).
    pub fn root() -> Pointer {
        Pointer {
            segments: Vec::new(),
        }
    }

    /// A pointer made of already-decoded segments.
    pub fn from_segments(segments: Vec<String>) -> Pointer {
        Pointer { segments }
    }

    /// Decoded segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The value this pointer refers to, if any. Numeric segments index arrays.
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        descend(v, &self.segments)
    }

    /// [`Pointer::get`] in an object's map (no `Value` around it to build); the root
    /// pointer finds nothing.
    pub fn get_in<'a>(&self, m: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.segments.split_first()?;
        descend(field(m, first)?, rest)
    }

    /// Every value this pointer reaches when arrays on the way fan out: a segment that is
    /// not an index of an array it meets is applied to each element (so `changes/attribute`
    /// reaches the `attribute` of every element of `changes`). Used by the filter evaluator
    /// when [`Pointer::get`] finds nothing.
    pub fn get_fanned<'a>(&self, v: &'a Value, out: &mut Vec<&'a Value>) {
        fn walk<'a>(segments: &[String], cur: &'a Value, out: &mut Vec<&'a Value>) {
            let Some((seg, rest)) = segments.split_first() else {
                out.push(cur);
                return;
            };
            match cur {
                Value::Object(m) => {
                    if let Some(next) = field(m, seg) {
                        walk(rest, next, out);
                    }
                }
                Value::Array(a) => match array_index(seg) {
                    Some(i) => {
                        if let Some(next) = a.get(i) {
                            walk(rest, next, out);
                        }
                    }
                    None => a.iter().for_each(|x| walk(segments, x, out)),
                },
                _ => {}
            }
        }
        walk(&self.segments, v, out);
    }

    /// Stores `new` at this pointer, creating intermediate objects where fields are missing or
    /// null. An array segment must be an existing index; as the last segment it may also be the
    /// length or `-` (append). Fails on the root and when a scalar is in the way.
    pub fn set(&self, v: &mut Value, new: Value) -> Result<(), QueryError> {
        let Some((last, parents)) = self.segments.split_last() else {
            return Err(self.error(0, "cannot set the root"));
        };
        let mut cur = v;
        for (i, seg) in parents.iter().enumerate() {
            if cur.is_null() {
                *cur = Value::Object(Map::new());
            }
            cur = match cur {
                Value::Object(m) => m.entry(seg.as_str()).or_insert(Value::Null),
                Value::Array(a) => match array_index(seg).and_then(|idx| a.get_mut(idx)) {
                    Some(item) => item,
                    None => return Err(self.error(i, "no such array element")),
                },
                _ => return Err(self.error(i, "not an object or array")),
            };
        }
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        let at = parents.len();
        match cur {
            Value::Object(m) => {
                m.insert(last.clone(), new);
                Ok(())
            }
            Value::Array(a) => {
                let idx = if last == "-" {
                    Some(a.len())
                } else {
                    array_index(last)
                };
                match idx {
                    Some(i) if i == a.len() => {
                        a.push(new);
                        Ok(())
                    }
                    Some(i) => match a.get_mut(i) {
                        Some(slot) => {
                            *slot = new;
                            Ok(())
                        }
                        None => Err(self.error(at, "array index out of range")),
                    },
                    None => Err(self.error(at, "not an array index")),
                }
            }
            _ => Err(self.error(at, "not an object or array")),
        }
    }

    /// Removes and returns the value at this pointer. The root cannot be removed.
    pub fn remove(&self, v: &mut Value) -> Option<Value> {
        let (last, parents) = self.segments.split_last()?;
        let mut cur = v;
        for seg in parents {
            cur = match cur {
                Value::Object(m) => m.get_mut(seg.as_str())?,
                Value::Array(a) => a.get_mut(array_index(seg)?)?,
                _ => return None,
            };
        }
        match cur {
            // shift_remove keeps the order of the remaining keys (IDM's key order).
            Value::Object(m) => m.shift_remove(last.as_str()),
            Value::Array(a) => {
                let idx = array_index(last)?;
                (idx < a.len()).then(|| a.remove(idx))
            }
            _ => None,
        }
    }

    fn error(&self, segment: usize, reason: &str) -> QueryError {
        QueryError::new(QueryErrorKind::Pointer, &self.to_string(), segment, reason)
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_segments(f, &self.segments)
    }
}

/// The pointer text of `segments` (each after a `/`, with `~` and `/` escaped): what a
/// [`Pointer`] displays, for segments not held in one.
pub fn segments_text<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_segments(&mut out, segments);
    out
}

fn write_segments<W: fmt::Write, S: AsRef<str>>(w: &mut W, segments: &[S]) -> fmt::Result {
    for seg in segments {
        w.write_str("/")?;
        for c in seg.as_ref().chars() {
            match c {
                '~' => w.write_str("~0")?,
                '/' => w.write_str("~1")?,
                c => w.write_char(c)?,
            }
        }
    }
    Ok(())
}

/// A segment used as an array index: ASCII digits only (no sign, no spaces).
pub(crate) fn array_index(seg: &str) -> Option<usize> {
    if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seg.parse().ok()
}

fn unescape(seg: &str) -> String {
    if !seg.contains('~') {
        return seg.to_string();
    }
    let mut out = String::with_capacity(seg.len());
    let mut chars = seg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.peek() {
                Some('0') => {
                    chars.next();
                    out.push('~');
                }
                Some('1') => {
                    chars.next();
                    out.push('/');
                }
                _ => out.push('~'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn descend<'a>(mut cur: &'a Value, segments: &[String]) -> Option<&'a Value> {
    for seg in segments {
        cur = match cur {
            Value::Object(m) => field(m, seg)?,
            Value::Array(a) => a.get(array_index(seg)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Objects up to this many keys are searched in order instead of by hash.
const SCAN_KEYS: usize = 16;

/// `m[key]`. IDM key order makes every map an `IndexMap` hashed with SipHash; on the small
/// objects of identities (a dozen attributes) comparing the keys in order costs a fraction of
/// hashing the one looked for (callgrind: about a quarter of the instructions per lookup).
pub(super) fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if m.len() <= SCAN_KEYS {
        m.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        m.get(key)
    }
}
