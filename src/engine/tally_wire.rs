//! A node's statistics as JSON, for the reports nodes leave each other in a clustered run
//! (`runner::worker::clustered`): every counter of a [`Tally`], situations and actions by
//! name (not by position, so nodes of different versions never misread a cell), durations
//! with their aggregates. Reading is strict: a report that does not parse is an error, never
//! a silent zero.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::model::{Action, Situation};
use super::stats::{Dur, Tally, ACTIONS};

/// The tally as JSON.
pub fn to_json(t: &Tally) -> Value {
    let counters = json!({
        "sourceProcessed": t.source_processed,
        "targetProcessed": t.target_processed,
        "created": t.created,
        "updated": t.updated,
        "unchanged": t.unchanged,
        "deleted": t.deleted,
        "linksProcessed": t.links_processed,
        "linksCreated": t.links_created,
        "success": t.success,
        "failure": t.failure,
    });
    let mut situations = Map::new();
    let mut actions = Map::new();
    for s in Situation::ALL {
        let n = t.situations[s.index()];
        if n > 0 {
            situations.insert(s.as_str().into(), json!(n));
        }
        let row: Map<String, Value> = ACTIONS
            .iter()
            .zip(&t.situation_actions[s.index()])
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| (a.as_str().to_string(), json!(n)))
            .collect();
        if !row.is_empty() {
            actions.insert(s.as_str().into(), Value::Object(row));
        }
    }
    let durations: Map<String, Value> = t
        .durations
        .iter()
        .map(|(k, d)| {
            let sum = u64::try_from(d.sum).unwrap_or(u64::MAX);
            let v = json!({"count": d.count, "sum": sum, "min": d.min, "max": d.max, "sumSq": d.sum_sq});
            ((*k).to_string(), v)
        })
        .collect();
    json!({
        "counters": counters,
        "situations": situations,
        "situationActions": actions,
        "durations": durations,
    })
}

/// The tally a report holds.
pub fn from_json(v: &Value) -> Result<Tally, String> {
    let u = |v: &Value, what: &str| -> Result<u64, String> {
        v.as_u64()
            .ok_or_else(|| format!("{what} is not a count: {v}"))
    };
    let obj = |v: &Value, what: &str| -> Result<Map<String, Value>, String> {
        match v {
            Value::Object(m) => Ok(m.clone()),
            Value::Null => Ok(Map::new()),
            other => Err(format!("{what} is not an object: {other}")),
        }
    };
    let c = obj(&v["counters"], "counters")?;
    let get = |name: &str| u(c.get(name).unwrap_or(&json!(0)), name);
    let mut t = Tally {
        source_processed: get("sourceProcessed")?,
        target_processed: get("targetProcessed")?,
        created: get("created")?,
        updated: get("updated")?,
        unchanged: get("unchanged")?,
        deleted: get("deleted")?,
        links_processed: get("linksProcessed")?,
        links_created: get("linksCreated")?,
        success: get("success")?,
        failure: get("failure")?,
        ..Tally::default()
    };
    for (name, n) in obj(&v["situations"], "situations")? {
        let s = Situation::parse(&name).ok_or_else(|| format!("unknown situation {name}"))?;
        t.situations[s.index()] = u(&n, &name)?;
    }
    for (name, row) in obj(&v["situationActions"], "situationActions")? {
        let s = Situation::parse(&name).ok_or_else(|| format!("unknown situation {name}"))?;
        for (action, n) in obj(&row, &name)? {
            let a = Action::parse(&action).ok_or_else(|| format!("unknown action {action}"))?;
            let i = ACTIONS
                .iter()
                .position(|x| *x == a)
                .ok_or_else(|| format!("action {action} has no cell"))?;
            t.situation_actions[s.index()][i] = u(&n, &action)?;
        }
    }
    let mut durations = BTreeMap::new();
    for (name, d) in obj(&v["durations"], "durations")? {
        let dur = Dur {
            count: u(&d["count"], "count")?,
            sum: u128::from(u(&d["sum"], "sum")?),
            min: u(&d["min"], "min")?,
            max: u(&d["max"], "max")?,
            sum_sq: d["sumSq"]
                .as_f64()
                .ok_or_else(|| format!("sumSq of {name} is not a number"))?,
        };
        durations.insert(metric_name(&name), dur);
    }
    t.durations = durations;
    Ok(t)
}

/// The `'static` name of a duration metric read from a report. Metric names are a small
/// fixed set (the code's own `time("…")` calls), so each distinct name is interned once and
/// lives for the process.
fn metric_name(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_survives_its_json_exactly() {
        let mut t = Tally {
            source_processed: 7,
            target_processed: 3,
            created: 4,
            updated: 1,
            unchanged: 2,
            deleted: 1,
            links_processed: 3,
            links_created: 4,
            success: 6,
            failure: 1,
            ..Tally::default()
        };
        t.situations[Situation::Absent.index()] = 4;
        t.situations[Situation::Confirmed.index()] = 3;
        t.situation_actions[Situation::Absent.index()][0] = 4;
        t.time("sourcePagePhase", 5_000_000);
        t.time("sourcePagePhase", 9_000_000);
        t.time("someFutureMetric", 1);
        let back = from_json(&to_json(&t)).expect("reads back");
        assert_eq!(to_json(&back), to_json(&t));
        assert_eq!(back.situations, t.situations);
        assert_eq!(back.situation_actions, t.situation_actions);
        let d = back.durations["sourcePagePhase"];
        assert_eq!(
            (d.count, d.sum, d.min, d.max),
            (2, 14_000_000, 5_000_000, 9_000_000)
        );
    }

    #[test]
    fn a_malformed_report_is_an_error_not_zeroes() {
        assert!(from_json(&json!({"counters": {"created": "many"}})).is_err());
        assert!(from_json(&json!({"situations": {"NOT_A_SITUATION": 1}})).is_err());
        assert!(from_json(&json!({"counters": []})).is_err());
        assert!(from_json(&json!({"durations": {"x": {"count": 1}}})).is_err());
    }
}
