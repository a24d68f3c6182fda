//! Identifier and time helpers: random UUIDs (for server-chosen object ids and run ids) and
//! ISO-8601 timestamps.

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

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn iso_parts(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `2020-05-07T09:14:57.740Z`
pub fn iso_millis(ms: i64) -> String {
    format!(
        "{}.{:03}Z",
        iso_parts(ms.div_euclid(1000)),
        ms.rem_euclid(1000)
    )
}

/// `2019-05-01T23:36:24.434153Z` (the association summary's `finishTime`).
pub fn iso_micros(us: i64) -> String {
    format!(
        "{}.{:06}Z",
        iso_parts(us.div_euclid(1_000_000)),
        us.rem_euclid(1_000_000)
    )
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
    }
}
