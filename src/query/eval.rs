//! The filter AST, its in-memory evaluation, its canonical text, and the value ordering shared
//! with sorting.
//!
//! Evaluation is on the hot path of every query and reconciliation, so comparisons work on
//! borrowed values without allocating: strings are compared case-insensitively char by char
//! (ASCII fast path, `char::to_lowercase` otherwise), numbers exactly (ints and floats by real
//! value, never via a lossy cast).

use super::Pointer;
use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::fmt;

/// The standard comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Co,
    Sw,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The operator for a (case-insensitive) name, `None` for extended operators.
    pub fn from_name(name: &str) -> Option<CmpOp> {
        const OPS: [(&str, CmpOp); 7] = [
            ("eq", CmpOp::Eq),
            ("co", CmpOp::Co),
            ("sw", CmpOp::Sw),
            ("lt", CmpOp::Lt),
            ("le", CmpOp::Le),
            ("gt", CmpOp::Gt),
            ("ge", CmpOp::Ge),
        ];
        OPS.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, op)| *op)
    }

    /// The canonical (lower-case) name.
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Co => "co",
            CmpOp::Sw => "sw",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
        }
    }
}

/// A parsed query filter.
///
/// `And`/`Or` produced by the parser always have at least two children; an empty `And` matches
/// everything and an empty `Or` nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    True,
    False,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp {
        ptr: Pointer,
        op: CmpOp,
        value: Value,
    },
    Present(Pointer),
}

impl Filter {
    /// `ptr eq value`.
    pub fn eq(ptr: Pointer, value: Value) -> Filter {
        Filter::Cmp {
            ptr,
            op: CmpOp::Eq,
            value,
        }
    }

    /// Whether `obj` satisfies the filter. Missing fields fail every comparison; an array field
    /// matches when any element does.
    pub fn matches(&self, obj: &Value) -> bool {
        match self {
            Filter::True => true,
            Filter::False => false,
            Filter::And(items) => items.iter().all(|f| f.matches(obj)),
            Filter::Or(items) => items.iter().any(|f| f.matches(obj)),
            Filter::Not(inner) => !inner.matches(obj),
            Filter::Cmp { ptr, op, value } => match ptr.get(obj) {
                // Through an array of objects (`changes/attribute`): any element that matches.
                None => {
                    let mut found = Vec::new();
                    ptr.get_fanned(obj, &mut found);
                    found.into_iter().any(|x| match x {
                        Value::Array(items) => items.iter().any(|y| compare(y, *op, value)),
                        x => compare(x, *op, value),
                    })
                }
                Some(Value::Array(items)) => items.iter().any(|x| compare(x, *op, value)),
                Some(x) => compare(x, *op, value),
            },
            Filter::Present(ptr) => match ptr.get(obj) {
                None | Some(Value::Null) => false,
                Some(Value::Array(items)) => items.iter().any(|x| !x.is_null()),
                Some(_) => true,
            },
        }
    }

    /// Equality terms usable by an index: the filter itself if it is `ptr eq value`, or the
    /// `eq` terms that are direct children of a top-level `And`. Empty otherwise.
    pub fn equality_terms(&self) -> Vec<(&Pointer, &Value)> {
        match self {
            Filter::Cmp {
                ptr,
                op: CmpOp::Eq,
                value,
            } => vec![(ptr, value)],
            Filter::And(items) => items
                .iter()
                .filter_map(|f| match f {
                    Filter::Cmp {
                        ptr,
                        op: CmpOp::Eq,
                        value,
                    } => Some((ptr, value)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// One comparison of a (non-array) field value against a filter value. Incompatible types
/// never match.
fn compare(field: &Value, op: CmpOp, value: &Value) -> bool {
    let ord = match (field, value) {
        (Value::String(a), Value::String(b)) => match op {
            CmpOp::Eq => return ci_eq(a, b),
            CmpOp::Co => return ci_contains(a, b),
            CmpOp::Sw => return ci_starts_with(a, b),
            _ => ci_cmp(a, b),
        },
        (Value::Number(a), Value::Number(b)) => cmp_numbers(a, b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => return false,
    };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Co | CmpOp::Sw => false,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

/// Char-wise lower-casing, with final sigma folded to sigma so that `ΟΣ` equals `ος`.
fn lower(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
}

/// Case-insensitive equality (char-wise lower-casing).
fn ci_eq(a: &str, b: &str) -> bool {
    // Equal ignoring ASCII case implies equal ignoring all case; the converse only fails when
    // non-ASCII letters are involved.
    if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        return false;
    }
    lower(a).eq(lower(b))
}

/// Case-insensitive ordering (char-wise lower-casing).
pub(crate) fn ci_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        let la = a.bytes().map(|c| c.to_ascii_lowercase());
        let lb = b.bytes().map(|c| c.to_ascii_lowercase());
        return la.cmp(lb);
    }
    lower(a).cmp(lower(b))
}

fn ci_starts_with(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        return hay
            .as_bytes()
            .get(..needle.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(needle.as_bytes()));
    }
    lower_starts_with(hay, needle)
}

fn lower_starts_with(hay: &str, needle: &str) -> bool {
    let mut h = lower(hay);
    lower(needle).all(|c| h.next() == Some(c))
}

fn ci_contains(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle.is_ascii() {
        let n = needle.as_bytes();
        return hay
            .as_bytes()
            .windows(n.len())
            .any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.char_indices().any(|(i, _)| {
        hay.get(i..)
            .is_some_and(|rest| lower_starts_with(rest, needle))
    })
}

/// A JSON number as an exact integer or a float.
enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        // Without arbitrary_precision every Number is i64, u64 or a finite f64.
        Num::Float(n.as_f64().unwrap_or(0.0))
    }
}

/// Exact comparison of two JSON numbers by real value (a total preorder: 1 == 1.0).
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        // serde_json numbers are never NaN, so partial_cmp is total here.
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

/// Compares an integer in the i64/u64 range with a finite float without losing precision.
fn cmp_int_float(i: i128, f: f64) -> Ordering {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if f.is_nan() {
        return Ordering::Equal;
    }
    if f >= TWO_64 {
        return Ordering::Less;
    }
    if f < -TWO_64 {
        return Ordering::Greater;
    }
    let floor = f.floor();
    // |floor| <= 2^64, so the cast is exact.
    let fi = floor as i128;
    match i.cmp(&fi) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Total order used for sorting: null, then booleans, numbers (by value), strings
/// (case-insensitive, then case-sensitive as a tiebreak), arrays (element-wise), objects
/// (entry-wise by key then value).
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => ci_cmp(x, y).then_with(|| x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = compare_values(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((kp, vp), (kq, vq)) in x.iter().zip(y) {
                let o = kp.cmp(kq).then_with(|| compare_values(vp, vq));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// `s` as a double-quoted filter string: `"` and `\` are backslash-escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn fmt_value(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::String(s) => f.write_str(&quote(s)),
        Value::Number(n) if n.is_f64() => {
            // The grammar reads an unquoted number as a float only when it contains '.', so
            // shortest-form output such as `1e300` needs one.
            let s = n.to_string();
            if s.contains('.') {
                f.write_str(&s)
            } else if let Some(e) = s.find(['e', 'E']) {
                let (mantissa, exp) = s.split_at(e);
                write!(f, "{mantissa}.0{exp}")
            } else {
                write!(f, "{s}.0")
            }
        }
        // Integers, booleans; null/arrays/objects only occur in hand-built filters and have no
        // filter syntax, so they are written as JSON.
        other => write!(f, "{other}"),
    }
}

fn fmt_filter(f: &mut fmt::Formatter<'_>, filter: &Filter) -> fmt::Result {
    match filter {
        Filter::True => f.write_str("true"),
        Filter::False => f.write_str("false"),
        Filter::And(items) | Filter::Or(items) if items.is_empty() => {
            f.write_str(if matches!(filter, Filter::And(_)) {
                "true"
            } else {
                "false"
            })
        }
        Filter::And(items) | Filter::Or(items) => {
            let sep = if matches!(filter, Filter::And(_)) {
                " and "
            } else {
                " or "
            };
            f.write_str("(")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                fmt_filter(f, item)?;
            }
            f.write_str(")")
        }
        Filter::Not(inner) => match inner.as_ref() {
            // Already parenthesised: no extra nesting level.
            Filter::And(items) | Filter::Or(items) if !items.is_empty() => {
                f.write_str("!")?;
                fmt_filter(f, inner)
            }
            _ => {
                f.write_str("!(")?;
                fmt_filter(f, inner)?;
                f.write_str(")")
            }
        },
        Filter::Cmp { ptr, op, value } => {
            write!(f, "{ptr} {} ", op.name())?;
            fmt_value(f, value)
        }
        Filter::Present(ptr) => write!(f, "{ptr} pr"),
    }
}

/// Canonical filter text: pointers with a leading `/`, lower-case operators, double-quoted
/// strings, every `and`/`or` group parenthesised, `!(...)` for negation.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_filter(f, self)
    }
}
