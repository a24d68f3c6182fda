//! Live synchronization by `modifyTimestamp` (contract §7): which entries of a type changed
//! since a token, read from `baseContextsToSynchronize`.
//!
//! The token is `{"modifyTimestamp": "YYYYMMDDHHMMSSZ", "seen": {"<_id>": "<_rev>", ...}}`:
//! the newest modification second answered so far and, for every entry modified in that very
//! second, the revision (content hash) that was answered. `modifyTimestamp` has a one-second
//! resolution, so the next call searches `(modifyTimestamp>=T)` (that second again) and drops
//! an entry only when it is in `seen` with the same revision: a second change of the same
//! entry within the same second has another content, so it is answered again; nothing is lost
//! and nothing answered is answered twice. Everything lives in the token, so asking again from
//! an older token (a batch the caller did not commit) answers that batch again, and
//! `token_committed` has nothing to forget.
//!
//! The first call answers no change and a token at the directory's own "now", read from the
//! directory rather than from recond's clock (the root DSE carries no time, and the two clocks
//! may differ): the newest `modifyTimestamp` of the type's entries. Every later change gets a
//! timestamp at or after it (the directory's clock does not go back), and the entries already
//! at that second are `seen`. An empty directory gives the epoch, so every entry created later
//! is a change. Finding the newest timestamp first asks only for entries modified within a day
//! of recond's clock (usually few, and any answer holds the true maximum since the search is
//! `>=`), and scans the type's timestamps only when that finds none.
//!
//! Limits, as with IDM's connector reading `modifyTimestamp`: a deleted entry (or one renamed
//! out of the synchronized bases) leaves no timestamp behind, so deletes are not reported (IDM
//! reads the directory's changelog for them; reconciliation finds them); a group membership
//! change modifies the group, not the member; in a multi-master directory a change replicated
//! late keeps its origin's (older) timestamp, so liveSync reads one server; a change that
//! leaves every mapped attribute as it was within the already answered second is not reported
//! again (there is nothing new to synchronize).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use ldap3::Scope;
use serde_json::{json, Map, Value};

use super::config::TypeConfig;
use super::entry::{to_object, Entry};
use super::pool::{Failure, Pool};
use super::search;
use crate::objects::{Change, ChangeBatch};

const MODIFY_TIMESTAMP: &str = "modifyTimestamp";
/// The token of a directory that holds no entry of the type yet.
const EPOCH: &str = "19700101000000Z";
/// How far back (by recond's clock) the first call looks for recent changes before it scans.
const RECENT_WINDOW_SECS: u64 = 86_400;

/// Why a liveSync call failed.
#[derive(Debug)]
pub enum SyncError {
    /// The token is not one this connector wrote.
    BadToken(String),
    /// An entry the directory answered cannot be used (no uid, an unreadable timestamp).
    BadEntry(String),
    Directory(Failure),
}

impl From<Failure> for SyncError {
    fn from(f: Failure) -> Self {
        SyncError::Directory(f)
    }
}

/// A parsed token: the second and what was answered in it.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    second: String,
    seen: BTreeMap<String, String>,
}

impl Token {
    fn parse(v: &Value) -> Result<Token, SyncError> {
        let bad = |m: &str| SyncError::BadToken(format!("liveSync token {v}: {m}"));
        let second = v
            .get(MODIFY_TIMESTAMP)
            .and_then(Value::as_str)
            .ok_or_else(|| bad("expected a \"modifyTimestamp\" string"))?;
        let second =
            second_of(second).ok_or_else(|| bad("modifyTimestamp is not YYYYMMDDHHMMSSZ"))?;
        let mut seen = BTreeMap::new();
        match v.get("seen") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (id, rev) in m {
                    let rev = rev
                        .as_str()
                        .ok_or_else(|| bad("\"seen\" maps ids to revision strings"))?;
                    seen.insert(id.clone(), rev.to_string());
                }
            }
            Some(_) => return Err(bad("\"seen\" must be an object")),
        }
        Ok(Token { second, seen })
    }

    fn to_json(&self) -> Value {
        let seen: Map<String, Value> = self
            .seen
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({ MODIFY_TIMESTAMP: self.second, "seen": seen })
    }
}

/// The second of a GeneralizedTime as `YYYYMMDDHHMMSSZ` (fractions dropped; UTC only, which
/// is what directories write for operational timestamps).
fn second_of(t: &str) -> Option<String> {
    let t = t.trim();
    let digits = t.get(..14)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = &t[14..];
    let rest = match rest.strip_prefix(['.', ',']) {
        Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    (rest == "Z").then(|| format!("{digits}Z"))
}

fn bases(cfg: &TypeConfig) -> Vec<(&str, Scope)> {
    cfg.sync_base_contexts
        .iter()
        .map(|b| (b.as_str(), Scope::Subtree))
        .collect()
}

fn since_filter(cfg: &TypeConfig, second: &str) -> String {
    format!("(&{}({MODIFY_TIMESTAMP}>={second}))", cfg.type_filter())
}

fn stamp(e: &Entry) -> Result<String, SyncError> {
    let raw = e.values(MODIFY_TIMESTAMP).first().ok_or_else(|| {
        SyncError::BadEntry(format!(
            "entry {} has no {MODIFY_TIMESTAMP} (is the attribute readable by the principal?)",
            e.dn
        ))
    })?;
    std::str::from_utf8(raw)
        .ok()
        .and_then(second_of)
        .ok_or_else(|| {
            SyncError::BadEntry(format!(
                "entry {}: {MODIFY_TIMESTAMP} {} is not a UTC GeneralizedTime",
                e.dn,
                String::from_utf8_lossy(raw)
            ))
        })
}

/// The changes since `token` (see the module doc); `None` answers the current token only.
pub fn changes_since(
    pool: &Pool,
    cfg: &TypeConfig,
    token: Option<&Value>,
) -> Result<ChangeBatch, SyncError> {
    match token {
        Some(t) => read_since(pool, cfg, &Token::parse(t)?),
        None => {
            let newest = newest_second(pool, cfg)?;
            let start = Token {
                second: newest.unwrap_or_else(|| EPOCH.to_string()),
                seen: BTreeMap::new(),
            };
            // The entries of that second (and any change since) make the token; none is
            // answered: the first liveSync synchronizes nothing.
            let mut batch = read_since(pool, cfg, &start)?;
            batch.changes.clear();
            Ok(batch)
        }
    }
}

/// The entries modified at or after the token's second, less those already answered.
fn read_since(pool: &Pool, cfg: &TypeConfig, token: &Token) -> Result<ChangeBatch, SyncError> {
    let mut attrs = cfg.read_attributes();
    attrs.push(MODIFY_TIMESTAMP.to_string());
    let mut found: BTreeMap<String, (String, Map<String, Value>)> = BTreeMap::new();
    let mut bad: Option<SyncError> = None;
    search::search_in(
        pool,
        cfg,
        &bases(cfg),
        &since_filter(cfg, &token.second),
        &attrs,
        &mut |e| {
            let step = || -> Result<(String, Map<String, Value>), SyncError> {
                let ts = stamp(&e)?;
                let groups = match cfg.groups_property() {
                    Some(_) => Some(search::groups_of(pool, cfg, &e.dn)?),
                    None => None,
                };
                let obj = to_object(&e, cfg, groups).map_err(SyncError::BadEntry)?;
                Ok((ts, obj))
            };
            match step() {
                Ok((ts, obj)) => {
                    let id = obj
                        .get("_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    // Overlapping bases answer an entry twice: once is enough.
                    found.insert(id, (ts, obj));
                    ControlFlow::Continue(())
                }
                Err(err) => {
                    bad = Some(err);
                    ControlFlow::Break(())
                }
            }
        },
    )?;
    if let Some(e) = bad {
        return Err(e);
    }
    let newest = found
        .values()
        .map(|(ts, _)| ts.as_str())
        .max()
        .unwrap_or(&token.second)
        .max(token.second.as_str())
        .to_string();
    let mut next = Token {
        second: newest.clone(),
        seen: BTreeMap::new(),
    };
    let mut changes: Vec<(String, String, Map<String, Value>)> = Vec::new();
    for (id, (ts, obj)) in found {
        let rev = obj
            .get("_rev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if ts == newest {
            next.seen.insert(id.clone(), rev.clone());
        }
        let answered = ts == token.second && token.seen.get(&id) == Some(&rev);
        if !answered {
            changes.push((ts, id, obj));
        }
    }
    // In the order they happened, as far as one-second timestamps tell.
    changes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(ChangeBatch {
        changes: changes
            .into_iter()
            .map(|(_, id, obj)| Change {
                id,
                object: Some(Value::Object(obj)),
            })
            .collect(),
        token: next.to_json(),
    })
}

/// The newest `modifyTimestamp` among the type's entries, or None when there is none.
fn newest_second(pool: &Pool, cfg: &TypeConfig) -> Result<Option<String>, SyncError> {
    let attrs = vec![MODIFY_TIMESTAMP.to_string()];
    let scan = |filter: &str| -> Result<Option<String>, SyncError> {
        let mut newest: Option<String> = None;
        let mut bad = None;
        search::search_in(
            pool,
            cfg,
            &bases(cfg),
            filter,
            &attrs,
            &mut |e| match stamp(&e) {
                Ok(ts) => {
                    if newest.as_deref().is_none_or(|n| ts.as_str() > n) {
                        newest = Some(ts);
                    }
                    ControlFlow::Continue(())
                }
                Err(err) => {
                    bad = Some(err);
                    ControlFlow::Break(())
                }
            },
        )?;
        match bad {
            Some(e) => Err(e),
            None => Ok(newest),
        }
    };
    let recent = std::time::SystemTime::now()
        .checked_sub(std::time::Duration::from_secs(RECENT_WINDOW_SECS))
        .map(generalized);
    if let Some(since) = recent {
        if let Some(n) = scan(&since_filter(cfg, &since))? {
            return Ok(Some(n));
        }
    }
    scan(&cfg.type_filter())
}

/// A system time as `YYYYMMDDHHMMSSZ` (UTC).
fn generalized(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_of_generalized_times() {
        assert_eq!(
            second_of("20261201123456Z").as_deref(),
            Some("20261201123456Z")
        );
        assert_eq!(
            second_of("20261201123456.123456Z").as_deref(),
            Some("20261201123456Z")
        );
        assert_eq!(
            second_of("20261201123456.0Z").as_deref(),
            Some("20261201123456Z")
        );
        assert_eq!(second_of("20261201123456+0100"), None);
        assert_eq!(second_of("2026120112345Z"), None);
        assert_eq!(second_of("x"), None);
    }

    #[test]
    fn tokens_round_trip_and_bad_tokens_are_refused() {
        let t = Token {
            second: "20261201123456Z".into(),
            seen: [("a".to_string(), "r1".to_string())].into_iter().collect(),
        };
        assert_eq!(Token::parse(&t.to_json()).expect("parses"), t);
        assert_eq!(
            t.to_json(),
            json!({"modifyTimestamp": "20261201123456Z", "seen": {"a": "r1"}})
        );
        for bad in [
            json!({}),
            json!({"modifyTimestamp": "now"}),
            json!({"modifyTimestamp": "20261201123456Z", "seen": ["a"]}),
            json!("20261201123456Z"),
        ] {
            assert!(
                matches!(Token::parse(&bad), Err(SyncError::BadToken(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn system_times_as_generalized_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_128_496);
        assert_eq!(generalized(t), "20261201123456Z");
        assert_eq!(generalized(std::time::UNIX_EPOCH), EPOCH);
    }
}
