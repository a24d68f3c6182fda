//! CREST patch operations (`add`, `remove`, `replace`, `increment`) applied to a JSON object.
//!
//! The whole patch is applied to a copy; the caller writes the result only if every operation
//! succeeded, so a failing operation never leaves a half-patched object. A field path longer
//! than [`MAX_DEPTH`] segments, or a result nested deeper than that, is refused: an object that
//! could not be read back must never be written.

use serde_json::{Map, Value};

use super::{check_depth, ObjectError, MAX_DEPTH};
use crate::query::Pointer;

pub fn apply(object: &Map<String, Value>, ops: &Value) -> Result<Map<String, Value>, ObjectError> {
    let list = ops
        .as_array()
        .ok_or_else(|| ObjectError::bad_request("A patch must be a JSON array of operations"))?;
    let mut doc = Value::Object(object.clone());
    for (i, op) in list.iter().enumerate() {
        let at = |m: &str| ObjectError::bad_request(format!("Patch operation {i}: {m}"));
        let kind = op
            .get("operation")
            .and_then(Value::as_str)
            .ok_or_else(|| at("missing \"operation\""))?;
        let field = op
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| at("missing \"field\""))?;
        // Counted before parsing, so a 5,000-segment path costs nothing.
        if field.matches('/').count() > MAX_DEPTH {
            return Err(at(&format!(
                "the field path has more than {MAX_DEPTH} segments"
            )));
        }
        let ptr = Pointer::parse(field);
        if ptr.is_root() {
            return Err(at("the field must not be the whole object"));
        }
        if matches!(
            ptr.segments().first().map(String::as_str),
            Some("_id" | "_rev")
        ) {
            return Err(at("_id and _rev cannot be patched"));
        }
        let value = op.get("value");
        match kind {
            "add" => {
                let value = value.ok_or_else(|| at("add needs a value"))?.clone();
                // "-" as the last segment, or an existing array, appends.
                let (base, append) = match ptr.segments().last().map(String::as_str) {
                    Some("-") => (Pointer::parse(&parent_text(&ptr)), true),
                    _ => (ptr.clone(), false),
                };
                match base.get(&doc) {
                    Some(Value::Array(_)) => {
                        if let Some(Value::Array(arr)) = get_mut(&mut doc, &base) {
                            match value {
                                Value::Array(items) if !append => arr.extend(items),
                                v => arr.push(v),
                            }
                        }
                    }
                    _ if append => base
                        .set(&mut doc, Value::Array(vec![value]))
                        .map_err(|e| at(&e.to_string()))?,
                    _ => base.set(&mut doc, value).map_err(|e| at(&e.to_string()))?,
                }
            }
            "replace" => {
                let value = value.ok_or_else(|| at("replace needs a value"))?.clone();
                ptr.set(&mut doc, value).map_err(|e| at(&e.to_string()))?;
            }
            "remove" => {
                if ptr.get(&doc).is_none() {
                    return Err(at(&format!("field {field} does not exist")));
                }
                match value {
                    Some(v) if ptr.get(&doc).is_some_and(Value::is_array) => {
                        if let Some(Value::Array(arr)) = get_mut(&mut doc, &ptr) {
                            let remove: Vec<Value> = match v {
                                Value::Array(items) => items.clone(),
                                other => vec![other.clone()],
                            };
                            arr.retain(|x| !remove.contains(x));
                        }
                    }
                    _ => {
                        ptr.remove(&mut doc);
                    }
                }
            }
            "increment" => {
                let by = value
                    .and_then(Value::as_f64)
                    .ok_or_else(|| at("increment needs a numeric value"))?;
                let current = ptr
                    .get(&doc)
                    .ok_or_else(|| at(&format!("field {field} does not exist")))?;
                let new = match (current.as_i64(), value.and_then(Value::as_i64)) {
                    (Some(c), Some(b)) => {
                        Value::from(c.checked_add(b).ok_or_else(|| at("increment overflows"))?)
                    }
                    _ => {
                        let c = current
                            .as_f64()
                            .ok_or_else(|| at(&format!("field {field} is not a number")))?;
                        serde_json::Number::from_f64(c + by)
                            .map(Value::Number)
                            .ok_or_else(|| at("result is not a number"))?
                    }
                };
                ptr.set(&mut doc, new).map_err(|e| at(&e.to_string()))?;
            }
            other => return Err(at(&format!("unsupported operation \"{other}\""))),
        }
    }
    check_depth(&doc)?;
    match doc {
        Value::Object(m) => Ok(m),
        _ => Err(ObjectError::bad_request(
            "The patch did not produce an object",
        )),
    }
}

fn parent_text(ptr: &Pointer) -> String {
    let segs = ptr.segments();
    let parent = &segs[..segs.len().saturating_sub(1)];
    crate::query::segments_text(parent)
}

fn get_mut<'a>(doc: &'a mut Value, ptr: &Pointer) -> Option<&'a mut Value> {
    let mut cur = doc;
    for seg in ptr.segments() {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object literal")
    }

    #[test]
    fn operations() {
        let o = obj(json!({"a": 1, "tags": ["x"], "n": {"g": "G"}}));
        let r = apply(
            &o,
            &json!([
                {"operation": "replace", "field": "/a", "value": 2},
                {"operation": "add", "field": "/tags", "value": "y"},
                {"operation": "add", "field": "/n/f", "value": "F"},
                {"operation": "increment", "field": "a", "value": 5},
                {"operation": "remove", "field": "/tags", "value": "x"},
            ]),
        )
        .expect("valid patch");
        assert_eq!(
            Value::Object(r),
            json!({"a": 7, "tags": ["y"], "n": {"g": "G", "f": "F"}})
        );
    }

    #[test]
    fn failures_leave_nothing_half_done() {
        let o = obj(json!({"a": 1}));
        assert!(apply(&o, &json!([{"operation": "remove", "field": "/missing"}])).is_err());
        assert!(apply(
            &o,
            &json!([{"operation": "increment", "field": "/missing", "value": 1}])
        )
        .is_err());
        assert!(apply(&o, &json!([{"operation": "bogus", "field": "/a"}])).is_err());
        assert!(apply(&o, &json!({"operation": "add"})).is_err());
        assert!(apply(
            &o,
            &json!([{"operation": "replace", "field": "/_id", "value": "x"}])
        )
        .is_err());
        assert!(apply(&o, &json!([{"operation": "replace", "field": "/a", "value": 3}, {"operation": "nope", "field": "/a"}])).is_err());
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |v, _| json!({ "n": v }))
    }

    #[test]
    fn depth_limit_on_paths_and_values() {
        let o = obj(json!({"a": 1}));
        let long_path = "/x".repeat(5000);
        let e = apply(
            &o,
            &json!([{"operation": "add", "field": long_path, "value": 1}]),
        )
        .expect_err("a 5,000-segment path is refused");
        assert!(e.message.contains("segments"), "{}", e.message);
        // The object itself is one level, so a value of MAX_DEPTH levels is one too many.
        let e = apply(
            &o,
            &json!([{"operation": "add", "field": "/deep", "value": nested(MAX_DEPTH)}]),
        )
        .expect_err("an over-deep value is refused");
        assert!(e.message.contains("nested"), "{}", e.message);
        // A path and a value that are each fine but too deep together.
        let path = "/p".repeat(MAX_DEPTH / 2 + 1);
        assert!(apply(
            &o,
            &json!([{"operation": "add", "field": path, "value": nested(MAX_DEPTH / 2)}]),
        )
        .is_err());
        // Just inside the limit is accepted.
        assert!(apply(
            &o,
            &json!([{"operation": "add", "field": "/deep", "value": nested(MAX_DEPTH - 1)}]),
        )
        .is_ok());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::String),
        ];
        // Deep enough to cross MAX_DEPTH when combined with long paths.
        leaf.prop_recursive(80, 200, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn op() -> impl Strategy<Value = Value> {
        (
            "add|remove|replace|increment|bogus",
            prop::collection::vec("[a-c]|-|0|1|_id", 0..90),
            prop::option::of(json_value()),
        )
            .prop_map(|(op, path, value)| {
                let mut o =
                    serde_json::json!({ "operation": op, "field": format!("/{}", path.join("/")) });
                if let Some(v) = value {
                    o["value"] = v;
                }
                o
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn patches_never_panic_and_never_go_too_deep(
            start in json_value(),
            ops in prop::collection::vec(op(), 0..6),
        ) {
            let mut object = Map::new();
            object.insert("start".into(), start);
            let _ = check_depth(&Value::Object(object.clone()));
            if let Ok(out) = apply(&object, &Value::Array(ops)) {
                prop_assert!(crate::objects::depth(&Value::Object(out)) <= MAX_DEPTH);
            }
        }
    }
}
