//! Identifier and time helpers: random UUIDs (for server-chosen object ids and run ids) and
//! ISO-8601 timestamps (formatted by jiff, the crate the scheduler's calendar uses too).

use std::time::{SystemTime, UNIX_EPOCH};

/// A random version-4 UUID from the operating system's randomness: server-chosen ids must not
/// be predictable from earlier ones.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Formats `units` (a count of `1/per_sec` seconds since the epoch) as UTC ISO-8601 with
/// `digits` fraction digits; out-of-range values clamp to jiff's range (years -9999..=9999).
fn iso(units: i64, per_sec: i64, digits: usize) -> String {
    let secs = units.div_euclid(per_sec);
    let frac = units.rem_euclid(per_sec);
    let ts = jiff::Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    let utc = ts.to_zoned(jiff::tz::TimeZone::UTC);
    format!("{}.{frac:0digits$}Z", utc.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// `2020-05-07T09:14:57.740Z`
pub fn iso_millis(ms: i64) -> String {
    iso(ms, 1000, 3)
}

/// `2019-05-01T23:36:24.434153Z` (the association summary's `finishTime`).
pub fn iso_micros(us: i64) -> String {
    iso(us, 1_000_000, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_well_formed_and_distinct() {
        let a = new_uuid();
        let b = new_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn iso_formats() {
        assert_eq!(iso_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_millis(1_588_842_897_740), "2020-05-07T09:14:57.740Z");
        assert_eq!(
            iso_micros(1_556_753_784_434_153),
            "2019-05-01T23:36:24.434153Z"
        );
        assert_eq!(iso_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_millis(-1), "1969-12-31T23:59:59.999Z");
        let _ = iso_millis(i64::MIN);
        let _ = iso_millis(i64::MAX);
        let _ = iso_micros(i64::MIN);
    }
}
