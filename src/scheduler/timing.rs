//! When a schedule fires: a cron trigger (an expression read in the schedule's time zone) or a
//! Quartz simple trigger (every `repeatInterval` ms, `repeatCount` more times or forever), both
//! bounded by optional `startTime` / `endTime`.
//!
//! Invariants: all times are unix seconds; a fire time is never before `startTime` nor after
//! `endTime`; a simple trigger's fire times are `anchor + k·interval` (k = 0, 1, …,
//! repeatCount), where the anchor is `startTime` or, without one, the moment the scheduler
//! loaded the schedule (Quartz's "start now"), rounded up to whole seconds.

use super::cron::Cron;
use super::zone::TimeZone;

/// A simple trigger's `repeatCount` meaning "forever" (Quartz's REPEAT_INDEFINITELY).
pub const REPEAT_FOREVER: i64 = -1;

/// How a schedule's fire times are computed.
#[derive(Debug, Clone)]
pub enum Timing {
    Cron(Box<Cron>),
    Simple {
        /// Milliseconds between fire times (> 0).
        interval_ms: i64,
        /// Fire times after the first; [`REPEAT_FOREVER`] for no limit.
        repeat_count: i64,
    },
}

/// A trigger (cron or simple) with its time zone and window.
#[derive(Debug, Clone)]
pub struct FireRule {
    pub timing: Timing,
    pub tz: TimeZone,
    /// `startTime`, unix seconds.
    pub start: Option<i64>,
    /// `endTime`, unix seconds.
    pub end: Option<i64>,
}

impl FireRule {
    /// The first fire time strictly after `after`; `anchor` is when the scheduler loaded the
    /// schedule (a simple trigger without `startTime` counts from it).
    pub fn next_after(&self, after: i64, anchor: i64) -> Option<i64> {
        let t = match &self.timing {
            Timing::Cron(c) => {
                let from = match self.start {
                    Some(s) => after.max(s.checked_sub(1)?),
                    None => after,
                };
                c.next_after(from, &self.tz)?
            }
            Timing::Simple {
                interval_ms,
                repeat_count,
            } => {
                let anchor_ms = self.start.unwrap_or(anchor).checked_mul(1000)?;
                let after_ms = after.checked_mul(1000)?;
                // The first k with anchor + k·interval > after.
                let k = if after_ms < anchor_ms {
                    0
                } else {
                    (after_ms - anchor_ms) / interval_ms + 1
                };
                if *repeat_count != REPEAT_FOREVER && k > *repeat_count {
                    return None;
                }
                let t_ms = anchor_ms.checked_add(k.checked_mul(*interval_ms)?)?;
                t_ms.div_euclid(1000) + i64::from(t_ms.rem_euclid(1000) != 0)
            }
        };
        self.end.is_none_or(|e| t <= e).then_some(t)
    }

    /// The fire time a freshly loaded schedule waits for: a simple trigger fires at its
    /// anchor itself (Quartz starts a simple trigger at once), a cron one strictly after now.
    pub fn first_from(&self, now: i64, anchor: i64) -> Option<i64> {
        match self.timing {
            Timing::Simple { .. } => self.next_after(now.checked_sub(1)?, anchor),
            Timing::Cron(_) => self.next_after(now, anchor),
        }
    }
}

/// Parses IDM's `startTime` / `endTime`: an ISO-8601 date-time with an offset (`Z`,
/// `+02:00`), or without one, read as local time in `tz` (`2024-03-10T02:30:00`).
pub fn parse_instant(text: &str, tz: &TimeZone) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts.as_second());
    }
    let dt: jiff::civil::DateTime = t.parse().map_err(|_| {
        format!(
            "{t:?} is not an ISO-8601 date-time (such as 2024-03-10T02:30:00 or \
             2024-03-10T02:30:00Z)"
        )
    })?;
    dt.to_zoned(tz.jiff().clone())
        .map(|z| z.timestamp().as_second())
        .map_err(|e| format!("{t:?}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn simple(interval_ms: i64, repeat_count: i64) -> FireRule {
        FireRule {
            timing: Timing::Simple {
                interval_ms,
                repeat_count,
            },
            tz: TimeZone::UTC,
            start: None,
            end: None,
        }
    }

    #[test]
    fn simple_trigger_counts_from_its_anchor() {
        let t = simple(15_000, REPEAT_FOREVER);
        assert_eq!(t.first_from(1000, 1000), Some(1000));
        assert_eq!(t.next_after(1000, 1000), Some(1015));
        assert_eq!(t.next_after(1014, 1000), Some(1015));
        assert_eq!(t.next_after(1015, 1000), Some(1030));
        assert_eq!(t.next_after(500, 1000), Some(1000));
        // repeatCount 2: three fire times in all.
        let t = simple(60_000, 2);
        assert_eq!(t.next_after(0, 0), Some(60));
        assert_eq!(t.next_after(60, 0), Some(120));
        assert_eq!(t.next_after(120, 0), None);
        // repeatCount 0: once.
        assert_eq!(simple(1000, 0).first_from(7, 7), Some(7));
        assert_eq!(simple(1000, 0).next_after(7, 7), None);
        // Sub-second intervals fire on the next whole second.
        let t = simple(1500, REPEAT_FOREVER);
        assert_eq!(t.next_after(0, 0), Some(2));
        assert_eq!(t.next_after(2, 0), Some(3));
        assert_eq!(t.next_after(3, 0), Some(5));
    }

    #[test]
    fn start_and_end_bound_every_trigger() {
        let mut t = simple(10_000, REPEAT_FOREVER);
        t.start = Some(100);
        t.end = Some(125);
        // The anchor is startTime, whenever the schedule was loaded.
        assert_eq!(t.first_from(50, 50), Some(100));
        assert_eq!(t.next_after(100, 50), Some(110));
        assert_eq!(t.next_after(120, 50), None);
        let mut c = FireRule {
            timing: Timing::Cron(Box::new(Cron::parse("0 * * * * ?").unwrap())),
            tz: TimeZone::UTC,
            start: Some(600),
            end: Some(720),
        };
        assert_eq!(c.next_after(0, 0), Some(600));
        assert_eq!(c.next_after(600, 0), Some(660));
        assert_eq!(c.next_after(720, 0), None);
        c.start = Some(601);
        assert_eq!(c.next_after(0, 0), Some(660));
    }

    #[test]
    fn instants() {
        let ny = TimeZone::parse("America/New_York").unwrap();
        assert_eq!(parse_instant("1970-01-01T00:01:00Z", &ny), Ok(60));
        assert_eq!(parse_instant("1970-01-01T02:00:00+02:00", &ny), Ok(0));
        // Local time in the schedule's zone: 1970-01-01 00:00 EST is 05:00 UTC.
        assert_eq!(parse_instant("1970-01-01T00:00:00", &ny), Ok(5 * 3600));
        assert_eq!(parse_instant("1970-01-01T00:00:00", &TimeZone::UTC), Ok(0));
        assert!(parse_instant("tomorrow", &ny)
            .unwrap_err()
            .contains("not an ISO-8601"));
    }
}
