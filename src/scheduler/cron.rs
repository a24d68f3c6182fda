//! Cron expressions in IDM's (Quartz) and the Unix form, evaluated by the `croner` crate in a
//! schedule's [`TimeZone`].
//!
//! Forms, chosen by the number of whitespace-separated fields:
//! * 5 fields: Unix `min hour day-of-month month day-of-week`, seconds fixed at 0, day-of-week
//!   0-7 with 0 and 7 = Sunday;
//! * 6 or 7 fields: Quartz `sec min hour day-of-month month day-of-week [year]`, day-of-week 1-7
//!   with 1 = Sunday.
//!
//! What is adapted before croner sees an expression (croner reads the rest as Quartz does,
//! `?`, `L`, `W`, `#` and `a/n` steps included): Quartz's `nL` (last weekday n of the month)
//! becomes croner's `n#L`, a lone `L` in day-of-week is Saturday, and wrapping ranges
//! (`22-2`, `FRI-MON`) are split in two. Forms croner does not implement (`L-3`, `LW`) are
//! refused at startup with a message naming the field.
//!
//! Invariants:
//! * when day-of-month and day-of-week are both restricted a day matches if either does
//!   (croner's default, Vixie cron's rule); Quartz itself refuses that form;
//! * an expression that can never fire (`0 0 0 30 2 ?`) is refused at parse time;
//! * daylight saving (croner's rules): a fixed time that falls in a spring-forward gap fires at
//!   the first instant after the gap; a fixed time in a repeated autumn hour fires once;
//!   interval expressions (`*/15`) fire in both passes of a repeated hour and skip the gap.

use std::fmt;

use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;

use super::zone::TimeZone;

/// Longest expression quoted back in an error message.
const MAX_QUOTED: usize = 120;

/// A cron expression that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {}: {message}", quoted(.text))]
pub struct CronError {
    text: String,
    message: String,
}

impl CronError {
    fn new(text: &str, message: impl Into<String>) -> CronError {
        CronError {
            text: text.to_string(),
            message: message.into(),
        }
    }
}

/// Quotes at most [`MAX_QUOTED`] characters so huge inputs do not produce huge messages.
fn quoted(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_QUOTED).collect();
        format!("{head:?}...")
    }
}

/// A parsed cron expression.
#[derive(Clone)]
pub struct Cron {
    text: String,
    cron: croner::Cron,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const FIELD_NAMES: [&str; 7] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses a Unix (5 fields) or Quartz (6 or 7 fields) cron expression.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let quartz = match fields.len() {
            5 => false,
            6 | 7 => true,
            n => {
                return Err(CronError::new(
                    expr,
                    format!(
                        "has {n} fields; expected 5 (Unix: minute hour day-of-month month \
                         day-of-week) or 6-7 (Quartz: second minute hour day-of-month month \
                         day-of-week [year])"
                    ),
                ))
            }
        };
        // Index into FIELD_NAMES of each field as written.
        let first = if quartz { 0 } else { 1 };
        let mut adapted = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            let name = FIELD_NAMES[first + i];
            let dow_base = if quartz { 1 } else { 0 };
            adapted.push(
                adapt_field(f, name, dow_base)
                    .map_err(|m| CronError::new(expr, format!("{name} {m}")))?,
            );
        }
        let parser = CronParser::builder()
            .seconds(if quartz {
                Seconds::Required
            } else {
                Seconds::Disallowed
            })
            .alternative_weekdays(quartz)
            .sloppy_ranges(true)
            .build();
        let cron = parser.parse(&adapted.join(" ")).map_err(|e| {
            // croner does not say which field it refused: the first field whose replacement
            // by `*` makes the expression parse is the one.
            let field = (0..adapted.len()).find(|&i| {
                let mut probe = adapted.clone();
                probe[i] = "*".into();
                parser.parse(&probe.join(" ")).is_ok()
            });
            let msg = describe(&e);
            CronError::new(
                expr,
                match field {
                    Some(i) => format!("{} {}: {msg}", FIELD_NAMES[first + i], quoted(fields[i])),
                    None => msg,
                },
            )
        })?;
        let c = Cron {
            text: fields.join(" "),
            cron,
        };
        // Refuse what can never fire instead of silently never running it. A year field
        // may legitimately end in the past; only an expression with no fire time at all since
        // 1970 is refused.
        if c.next_after(-1, &TimeZone::UTC).is_none() {
            return Err(CronError::new(
                expr,
                "never fires (no date matches every field)",
            ));
        }
        Ok(c)
    }

    /// The expression, fields separated by single spaces.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire time strictly after `after` (unix seconds), reading the fields in `tz`'s
    /// local time; None when there is none (a year field in the past, or out of range).
    pub fn next_after(&self, after: i64, tz: &TimeZone) -> Option<i64> {
        let start = Timestamp::from_second(after)
            .ok()?
            .to_zoned(tz.jiff().clone());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp().as_second())
    }
}

/// croner's messages carry its own prefixes; keep the part that says what is wrong.
fn describe(e: &croner::errors::CronError) -> String {
    let s = e.to_string();
    for p in [
        "Invalid pattern: ",
        "Component error: ",
        "Pattern contains ",
    ] {
        if let Some(rest) = s.strip_prefix(p) {
            return rest.to_string();
        }
    }
    s
}

/// Rewrites one Quartz field into the form croner reads (see the module docs).
fn adapt_field(field: &str, name: &str, dow_base: u32) -> Result<String, String> {
    let upper = field.to_ascii_uppercase();
    if !upper.is_ascii() {
        return Err(format!("{} has characters outside ASCII", quoted(field)));
    }
    match name {
        "day-of-month" if upper.contains("L-") || upper.contains("LW") => {
            return Err(format!(
                "{} is not supported (Quartz's L-n and LW offsets from the last day)",
                quoted(field)
            ));
        }
        // Quartz: a lone L in day-of-week is the last day of the week, Saturday.
        "day-of-week" if upper == "L" => return Ok((6 + dow_base).to_string()),
        _ => {}
    }
    let names: &[&str] = match name {
        "month" => &MONTHS,
        "day-of-week" => &DAYS,
        _ => &[],
    };
    let (min, max) = match name {
        "second" | "minute" => (0, 59),
        "hour" => (0, 23),
        "day-of-month" => (1, 31),
        "month" => (1, 12),
        "day-of-week" => (dow_base, 6 + dow_base),
        _ => return Ok(upper),
    };
    let base = if name == "month" { 1 } else { dow_base };
    let value = |s: &str| -> Option<u32> {
        names
            .iter()
            .position(|n| *n == s)
            .map(|i| base + i as u32)
            .or_else(|| s.parse().ok().filter(|_| s.len() <= 3))
    };
    let mut out = Vec::new();
    for item in upper.split(',') {
        if item.is_empty() {
            return Err(format!("{} has an empty list element", quoted(field)));
        }
        // Quartz's `6L` / `FRIL`: the last such weekday of the month.
        if name == "day-of-week" {
            if let Some(day) = item.strip_suffix('L').filter(|d| !d.is_empty()) {
                out.push(format!("{day}#L"));
                continue;
            }
        }
        // A wrapping range (`22-2`, `FRI-MON`, no step) becomes two ranges.
        if let Some((a, b)) = item.split_once('-').filter(|_| !item.contains('/')) {
            if let (Some(a), Some(b)) = (value(a), value(b)) {
                if a > b && (min..=max).contains(&a) && (min..=max).contains(&b) {
                    out.push(format!("{a}-{max}"));
                    out.push(format!("{min}-{b}"));
                    continue;
                }
            }
        }
        out.push(item.to_string());
    }
    Ok(out.join(","))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// Unix seconds of a UTC civil time.
    fn ts(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> i64 {
        date(y, mo, d)
            .at(h, mi, s, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second()
    }

    /// Unix seconds of a civil time in `zone`.
    fn local(zone: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        date(y, mo, d)
            .at(h, mi, 0, 0)
            .in_tz(zone)
            .unwrap()
            .timestamp()
            .as_second()
    }

    fn next(expr: &str, after: i64) -> Option<i64> {
        Cron::parse(expr).unwrap().next_after(after, &TimeZone::UTC)
    }

    fn seq(expr: &str, after: i64, n: usize) -> Vec<i64> {
        seq_in(expr, &TimeZone::UTC, after, n)
    }

    /// The next `n` fire times after `after`, in `tz`.
    fn seq_in(expr: &str, tz: &TimeZone, after: i64, n: usize) -> Vec<i64> {
        let c = Cron::parse(expr).unwrap();
        let mut out = Vec::new();
        let mut t = after;
        for _ in 0..n {
            t = c.next_after(t, tz).unwrap();
            out.push(t);
        }
        out
    }

    fn err(expr: &str) -> String {
        Cron::parse(expr).unwrap_err().to_string()
    }

    #[test]
    fn quartz_and_unix_forms() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        assert_eq!(next("0 0/15 * * * ?", t0), Some(ts(2024, 3, 10, 10, 15, 0)));
        assert_eq!(next("*/15 * * * *", t0), Some(ts(2024, 3, 10, 10, 15, 0)));
        assert_eq!(next("30 2 * * *", t0), Some(ts(2024, 3, 11, 2, 30, 0)));
        assert_eq!(next("* * * * * ?", t0), Some(t0 + 1));
        assert_eq!(
            seq("5,10,50 * * * * ?", t0, 3),
            vec![t0 + 20, t0 + 35, t0 + 40]
        );
        // Extra whitespace is fine and normalised.
        assert_eq!(
            Cron::parse("  0  0/15 *\t* * ? ").unwrap().as_str(),
            "0 0/15 * * * ?"
        );
    }

    #[test]
    fn weekday_numbering() {
        // 2024-06-07 is a Friday.
        let fri = ts(2024, 6, 7, 13, 0, 0);
        let mon_noon = Some(ts(2024, 6, 10, 12, 0, 0));
        let sun_noon = Some(ts(2024, 6, 9, 12, 0, 0));
        assert_eq!(next("0 0 12 ? * MON-FRI", fri), mon_noon);
        assert_eq!(next("0 12 * * 1-5", fri), mon_noon);
        // Quartz: 1 = SUN, 7 = SAT; Unix: 0 and 7 = SUN.
        assert_eq!(next("0 0 12 ? * 1", fri), sun_noon);
        assert_eq!(next("0 12 * * 7", fri), sun_noon);
        assert_eq!(next("0 12 * * 0", fri), sun_noon);
        assert_eq!(next("0 0 12 ? * 7", fri), Some(ts(2024, 6, 8, 12, 0, 0)));
    }

    #[test]
    fn quartz_extensions() {
        // June 2024: Sat 1st, Fri 28th last Friday, Sun 30th last day.
        let t0 = ts(2024, 6, 1, 0, 0, 0);
        assert_eq!(next("0 0 0 L * ?", t0), Some(ts(2024, 6, 30, 0, 0, 0)));
        assert_eq!(next("0 0 0 15W * ?", t0), Some(ts(2024, 6, 14, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * 6L", t0), Some(ts(2024, 6, 28, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * FRIL", t0), Some(ts(2024, 6, 28, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * 6#3", t0), Some(ts(2024, 6, 21, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * MON#1", t0), Some(ts(2024, 6, 3, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * L", t0), Some(ts(2024, 6, 8, 0, 0, 0)));
        assert_eq!(next("0 0 0 l * ?", t0), Some(ts(2024, 6, 30, 0, 0, 0)));
        for e in ["0 0 0 L-3 * ?", "0 0 0 LW * ?"] {
            assert!(err(e).contains("day-of-month"), "{e}: {}", err(e));
            assert!(err(e).contains("not supported"), "{e}: {}", err(e));
        }
    }

    #[test]
    fn wrapping_ranges() {
        // 2024-06-01 is a Saturday.
        let t0 = ts(2024, 6, 1, 3, 0, 0);
        assert_eq!(
            seq("0 0 22-1 * * ?", t0, 4),
            vec![
                ts(2024, 6, 1, 22, 0, 0),
                ts(2024, 6, 1, 23, 0, 0),
                ts(2024, 6, 2, 0, 0, 0),
                ts(2024, 6, 2, 1, 0, 0)
            ]
        );
        assert_eq!(
            seq("0 0 0 ? * FRI-MON", t0, 3),
            vec![
                ts(2024, 6, 2, 0, 0, 0),
                ts(2024, 6, 3, 0, 0, 0),
                ts(2024, 6, 7, 0, 0, 0)
            ]
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        assert!(
            err("0 61 * * * ?")
                .starts_with("invalid cron expression \"0 61 * * * ?\": minute \"61\": "),
            "{}",
            err("0 61 * * * ?")
        );
        assert!(
            err("0 0 * * 8").contains("day-of-week \"8\""),
            "{}",
            err("0 0 * * 8")
        );
        for e in [
            "60 * * * * ?",
            "0 0 24 * * ?",
            "0 0 0 0 * ?",
            "0 0 0 32 * ?",
            "0 0 0 * 13 ?",
            "0 0 * * 8",
            "0 0 0 * FOO ?",
            "0 x * * * ?",
            "0 */0 * * * ?",
            "0 1,,2 * * * ?",
            "0 0 0 30 2 ?",
            "0 0 0 31 4,6,9,11 ?",
            "0 99999999999999999999 * * * ?",
            "0 é * * * ?",
        ] {
            assert!(Cron::parse(e).is_err(), "{e}");
        }
        assert!(err("").contains("has 0 fields"));
        assert!(err("* * * *").contains("has 4 fields"));
        assert!(err("0 0 0 * * ? 2030 x").contains("has 8 fields"));
        assert!(err("0 0 0 30 2 ?").contains("never fires"));
        // Huge or odd input never panics and keeps the message short.
        let huge = "1,".repeat(100_000) + "61 * * * * ?";
        assert!(err(&huge).len() < 600, "{}", err(&huge).len());
    }

    #[test]
    fn month_ends_leap_years_and_year_field() {
        assert_eq!(
            seq("0 0 0 31 * ?", ts(2023, 1, 15, 0, 0, 0), 3),
            vec![
                ts(2023, 1, 31, 0, 0, 0),
                ts(2023, 3, 31, 0, 0, 0),
                ts(2023, 5, 31, 0, 0, 0)
            ]
        );
        // 2100 is not a leap year: eight years to the next Feb 29.
        assert_eq!(
            next("0 0 0 29 2 ?", ts(2096, 3, 1, 0, 0, 0)),
            Some(ts(2104, 2, 29, 0, 0, 0))
        );
        let t0 = ts(2024, 6, 1, 0, 0, 0);
        assert_eq!(
            next("0 0 0 1 1 ? 2026,2030", t0),
            Some(ts(2026, 1, 1, 0, 0, 0))
        );
        assert_eq!(next("0 0 0 1 1 ? 2026,2030", ts(2030, 1, 1, 0, 0, 0)), None);
        // A year field in the past is valid (it just has no more fire times).
        assert_eq!(next("0 0 0 * * ? 2020-2023", t0), None);
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // 2024-06-01 is a Saturday. Both restricted: the 15th OR any Monday.
        let t0 = ts(2024, 6, 1, 0, 0, 0);
        assert_eq!(
            seq("0 0 15 * MON", t0, 4),
            vec![
                ts(2024, 6, 3, 0, 0, 0),
                ts(2024, 6, 10, 0, 0, 0),
                ts(2024, 6, 15, 0, 0, 0),
                ts(2024, 6, 17, 0, 0, 0),
            ]
        );
        assert_eq!(next("0 0 0 15 * ?", t0), Some(ts(2024, 6, 15, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * MON", t0), Some(ts(2024, 6, 3, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * ?", t0), Some(ts(2024, 6, 2, 0, 0, 0)));
    }

    #[test]
    fn fixed_offsets() {
        let plus2 = TimeZone::parse("+02:00").unwrap();
        let c = Cron::parse("0 0 2 * * ?").unwrap();
        assert_eq!(
            c.next_after(ts(2024, 6, 1, 12, 0, 0), &plus2),
            Some(ts(2024, 6, 2, 0, 0, 0))
        );
        // Day-of-week is evaluated in local time: Monday 00:30 at +02:00 is Sunday 22:30 UTC.
        let c = Cron::parse("0 30 0 ? * MON").unwrap();
        assert_eq!(
            c.next_after(ts(2024, 6, 1, 0, 0, 0), &plus2),
            Some(ts(2024, 6, 2, 22, 30, 0))
        );
    }

    #[test]
    fn new_york_across_daylight_saving_changes() {
        let ny = TimeZone::parse("America/New_York").unwrap();
        let z = "America/New_York";
        // 02:00 every day. Spring forward on 2024-03-10 (02:00 → 03:00): the fixed time falls
        // in the gap and fires at the first instant after it, 03:00 EDT; the day after is
        // 02:00 EDT again (06:00 UTC instead of 07:00 UTC before the change).
        let got = seq_in("0 0 2 * * ?", &ny, local(z, 2024, 3, 8, 12, 0), 4);
        assert_eq!(
            got,
            vec![
                ts(2024, 3, 9, 7, 0, 0),
                ts(2024, 3, 10, 7, 0, 0),
                ts(2024, 3, 11, 6, 0, 0),
                ts(2024, 3, 12, 6, 0, 0),
            ]
        );
        // 01:30 every day. Fall back on 2024-11-03 (02:00 EDT → 01:00 EST): 01:30 happens
        // twice and fires once, at the first; the next days are 06:30 UTC.
        let got = seq_in("0 30 1 * * ?", &ny, local(z, 2024, 11, 2, 12, 0), 3);
        assert_eq!(
            got,
            vec![
                ts(2024, 11, 3, 5, 30, 0),
                ts(2024, 11, 4, 6, 30, 0),
                ts(2024, 11, 5, 6, 30, 0),
            ]
        );
        // Every 30 minutes through the repeated hour: both passes fire, in real-time order.
        let got = seq_in("0 0/30 * * * ?", &ny, ts(2024, 11, 3, 4, 45, 0), 5);
        let base = ts(2024, 11, 3, 5, 0, 0); // 01:00 EDT
        assert_eq!(
            got,
            vec![base, base + 1800, base + 3600, base + 5400, base + 7200]
        );
        // Every 30 minutes through the gap: 02:00 and 02:30 do not exist and are skipped.
        // From 01:15 EST.
        let got = seq_in("0 0/30 * * * ?", &ny, ts(2024, 3, 10, 6, 15, 0), 3);
        assert_eq!(
            got,
            vec![
                ts(2024, 3, 10, 6, 30, 0),
                ts(2024, 3, 10, 7, 0, 0),
                ts(2024, 3, 10, 7, 30, 0)
            ]
        );
    }

    /// Whether the local time of `t` in `tz` matches every field, checked by an independent
    /// reading of the few field forms the oracle's expressions use.
    fn matches_at(fields: &[&str; 5], t: i64, tz: &TimeZone) -> bool {
        let dt = Timestamp::from_second(t)
            .unwrap()
            .to_zoned(tz.jiff().clone());
        let dow = i64::from(dt.weekday().to_sunday_zero_offset());
        let values = [
            i64::from(dt.minute()),
            i64::from(dt.hour()),
            i64::from(dt.day()),
            i64::from(dt.month()),
            dow,
        ];
        let field_ok = |f: &str, v: i64, min: i64, max: i64| {
            f.split(',').any(|item| {
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (r, s.parse::<i64>().unwrap()),
                    None => (item, 1),
                };
                let (lo, hi) = match range.split_once('-') {
                    _ if range == "*" => (min, max),
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None if step > 1 => (range.parse().unwrap(), max),
                    None => (range.parse().unwrap(), range.parse().unwrap()),
                };
                (lo..=hi).contains(&v) && (v - lo) % step == 0
            })
        };
        let dom = field_ok(fields[2], values[2], 1, 31);
        let dw = field_ok(fields[4], values[4], 0, 6);
        let day = match (fields[2] == "*", fields[4] == "*") {
            (false, false) => dom || dw,
            _ => dom && dw,
        };
        day && field_ok(fields[0], values[0], 0, 59)
            && field_ok(fields[1], values[1], 0, 23)
            && field_ok(fields[3], values[3], 1, 12)
    }

    /// The brute-force oracle: minute by minute over 40 days from random starts, the first
    /// matching minute is what `next_after` answers (UTC and a fixed offset, where every local
    /// minute happens exactly once).
    #[test]
    fn agrees_with_brute_force() {
        let exprs: [[&str; 5]; 6] = [
            ["*/7", "3-5,22", "*", "*", "*"],
            ["0", "0", "29-31", "*", "*"],
            ["15", "12", "13", "*", "5"],
            ["0", "0", "*", "2,3", "0"],
            ["0/20", "0-2", "*", "*", "2-4"],
            ["45", "6", "1,15", "*", "1"],
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for fields in exprs {
            let e = fields.join(" ");
            let c = Cron::parse(&e).unwrap();
            for tz in [TimeZone::UTC, TimeZone::fixed(-19_800).unwrap()] {
                for _ in 0..4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Some time between 1990 and 2060.
                    let start = 631_152_000 + (seed % 2_208_988_800) as i64;
                    let mut t = start.div_euclid(60) * 60 + 60;
                    let end = t + 40 * 86_400;
                    while t < end && !matches_at(&fields, t, &tz) {
                        t += 60;
                    }
                    let got = c.next_after(start, &tz);
                    if t < end {
                        assert_eq!(got, Some(t), "{e} after {start} in {tz}");
                    } else {
                        assert!(got.is_some_and(|g| g >= end), "{e} after {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        let c = Cron::parse("0 0 0 * * ?").unwrap();
        assert_eq!(c.next_after(i64::MAX, &TimeZone::UTC), None);
        let _ = c.next_after(i64::MIN, &TimeZone::fixed(-3600).unwrap());
        assert_eq!(c.next_after(-1, &TimeZone::UTC), Some(0));
    }
}
