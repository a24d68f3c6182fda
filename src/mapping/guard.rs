//! `reconGuard`: recond's own per-mapping deletion guard (contract §8), beside IDM's keys.
//!
//! `{"maxDeletePercent": 10, "maxDeleteCount": 1000, "minSourcePercentOfLastRun": 50}`, any
//! subset. Percentages are numbers in 0..=100, the count a non-negative integer; any other
//! key or value is a startup error naming the mapping and the key. What the limits count and
//! how a run stops is the runner's business (`runner::worker::guard`).

use serde_json::{json, Map, Value};

/// The parsed limits of one mapping (every limit optional).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReconGuard {
    pub max_delete_percent: Option<f64>,
    pub max_delete_count: Option<u64>,
    pub min_source_percent_of_last_run: Option<f64>,
}

/// The limit keys (the run's messages name them).
pub mod keys {
    pub const MAX_DELETE_PERCENT: &str = "maxDeletePercent";
    pub const MAX_DELETE_COUNT: &str = "maxDeleteCount";
    pub const MIN_SOURCE_PERCENT: &str = "minSourcePercentOfLastRun";
}
use keys::*;

impl ReconGuard {
    /// Parses the `reconGuard` value; the error names the offending key (`reconGuard.<key>`)
    /// and says what is wrong.
    pub fn parse(v: &Value) -> Result<ReconGuard, (String, String)> {
        let key = "reconGuard".to_string();
        let m = v
            .as_object()
            .ok_or_else(|| (key.clone(), format!("expected an object, got {v}")))?;
        let mut g = ReconGuard::default();
        for (k, v) in m {
            let at = format!("reconGuard.{k}");
            match k.as_str() {
                MAX_DELETE_PERCENT => g.max_delete_percent = Some(percent(v).map_err(|e| (at, e))?),
                MIN_SOURCE_PERCENT => {
                    g.min_source_percent_of_last_run = Some(percent(v).map_err(|e| (at, e))?)
                }
                MAX_DELETE_COUNT => {
                    g.max_delete_count = Some(v.as_u64().ok_or_else(|| {
                        (at, format!("expected a non-negative integer, got {v}"))
                    })?)
                }
                _ => {
                    return Err((
                        at,
                        format!(
                            "unknown key (expected {MAX_DELETE_PERCENT}, {MAX_DELETE_COUNT} or {MIN_SOURCE_PERCENT})"
                        ),
                    ))
                }
            }
        }
        Ok(g)
    }

    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == ReconGuard::default()
    }

    /// The effective limits as the run's `parameters.reconGuard` shows them.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(p) = self.max_delete_percent {
            m.insert(MAX_DELETE_PERCENT.into(), number(p));
        }
        if let Some(c) = self.max_delete_count {
            m.insert(MAX_DELETE_COUNT.into(), json!(c));
        }
        if let Some(p) = self.min_source_percent_of_last_run {
            m.insert(MIN_SOURCE_PERCENT.into(), number(p));
        }
        Value::Object(m)
    }
}

/// A whole percentage shows as an integer (`10`, not `10.0`).
fn number(p: f64) -> Value {
    if p.fract() == 0.0 {
        json!(p as u64)
    } else {
        json!(p)
    }
}

fn percent(v: &Value) -> Result<f64, String> {
    match v.as_f64() {
        Some(p) if (0.0..=100.0).contains(&p) => Ok(p),
        Some(p) => Err(format!("a percentage must be between 0 and 100, got {p}")),
        None => Err(format!("expected a number (a percentage), got {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_subset_parses_and_shows_back() {
        let g = ReconGuard::parse(&json!({"maxDeletePercent": 10, "maxDeleteCount": 1000, "minSourcePercentOfLastRun": 50.5}))
            .expect("valid");
        assert_eq!(g.max_delete_percent, Some(10.0));
        assert_eq!(g.max_delete_count, Some(1000));
        assert_eq!(
            g.to_json(),
            json!({"maxDeletePercent": 10, "maxDeleteCount": 1000, "minSourcePercentOfLastRun": 50.5})
        );
        assert!(ReconGuard::parse(&json!({})).expect("empty").is_empty());
    }

    #[test]
    fn malformed_guards_name_the_key() {
        for (v, key) in [
            (
                json!({"maxDeletePercent": "10"}),
                "reconGuard.maxDeletePercent",
            ),
            (
                json!({"maxDeletePercent": 120}),
                "reconGuard.maxDeletePercent",
            ),
            (
                json!({"minSourcePercentOfLastRun": -1}),
                "reconGuard.minSourcePercentOfLastRun",
            ),
            (json!({"maxDeleteCount": -5}), "reconGuard.maxDeleteCount"),
            (json!({"maxDeleteCount": 1.5}), "reconGuard.maxDeleteCount"),
            (json!({"maxDeletes": 3}), "reconGuard.maxDeletes"),
            (json!([1]), "reconGuard"),
        ] {
            let (k, _) = ReconGuard::parse(&v).expect_err("malformed");
            assert_eq!(k, key, "{v}");
        }
    }
}
