//! Cron expressions (Quartz and Unix forms), fixed-offset time zones and next-fire computation.
//!
//! Forms, chosen by the number of whitespace-separated fields:
//! * 5 fields: Unix `min hour day-of-month month day-of-week`, seconds fixed at 0, day-of-week
//!   0-7 with 0 and 7 = Sunday;
//! * 6 or 7 fields: Quartz `sec min hour day-of-month month day-of-week [year]`, day-of-week 1-7
//!   with 1 = Sunday, year 1970-2199.
//!
//! Invariants:
//! * a parsed [`Cron`] holds one bit mask per field, already normalised (seconds 0-59, minutes
//!   0-59, hours 0-23, days 1-31, months 1-12, weekdays 0-6 with 0 = Sunday), so matching never
//!   depends on the form it came from;
//! * Quartz's `L`, `W` and `#` are rejected with a "not supported" error rather than misread;
//! * day matching: when day-of-month or day-of-week is `*` or `?` the other one alone constrains
//!   (its mask is full, so an AND is exact); when both are restricted a day matches if either
//!   does (Vixie cron semantics);
//! * [`Cron::next_after`] walks forward field by field (year → month → day → hour → minute →
//!   second), so its cost is bounded by the number of days in its horizon, never by seconds;
//! * civil dates use the proleptic Gregorian calendar via the days-from-civil algorithm; only
//!   UTC and fixed offsets are supported, so local time is simply UTC shifted by a constant.

use std::fmt;

/// Lowest and highest year accepted in the year field (Quartz accepts up to 2099; a little more
/// headroom costs nothing).
const YEAR_MIN: u32 = 1970;
const YEAR_MAX: u32 = 2199;
/// Without a year field, give up after this many years. Eight years is the longest gap between
/// two February 29ths (2096 → 2104), so ten always finds a leap-day schedule.
const HORIZON_YEARS: i64 = 10;
/// Longest expression or zone text quoted back in an error message.
const MAX_QUOTED: usize = 120;

/// A cron expression or time zone that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    kind: ErrorKind,
    text: String,
    field: Option<&'static str>,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    Expression,
    TimeZone,
}

impl CronError {
    fn expr(text: &str, field: Option<&'static str>, message: impl Into<String>) -> CronError {
        CronError {
            kind: ErrorKind::Expression,
            text: text.to_string(),
            field,
            message: message.into(),
        }
    }

    fn tz(text: &str, message: impl Into<String>) -> CronError {
        CronError {
            kind: ErrorKind::TimeZone,
            text: text.to_string(),
            field: None,
            message: message.into(),
        }
    }

    /// The field at fault ("minute", "day-of-week", ...), if the error is about one field.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// What is wrong, without the expression and field prefix.
    pub fn message(&self) -> &str {
        &self.message
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

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Expression => "cron expression",
            ErrorKind::TimeZone => "time zone",
        };
        write!(f, "invalid {what} {}: ", quoted(&self.text))?;
        if let Some(field) = self.field {
            write!(f, "{field} ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CronError {}

/// A time zone without daylight saving time: UTC or a constant offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeZone {
    Utc,
    /// Seconds east of UTC.
    Fixed(i32),
}

impl TimeZone {
    /// Parses "UTC", "GMT", "Z", "Etc/UTC", "+02:00", "-0530", "+2", "GMT+2", "UTC-03:30" and
    /// "Etc/GMT-2" (IANA's inverted sign: UTC+2). Zero offsets normalise to [`TimeZone::Utc`].
    pub fn parse(s: &str) -> Result<TimeZone, CronError> {
        let t = s.trim();
        let upper = t.to_ascii_uppercase();
        const UTC_NAMES: &[&str] = &[
            "UTC",
            "GMT",
            "UT",
            "Z",
            "UCT",
            "ZULU",
            "UNIVERSAL",
            "GMT0",
            "ETC/UTC",
            "ETC/GMT",
            "ETC/UCT",
            "ETC/ZULU",
            "ETC/UNIVERSAL",
            "ETC/GMT0",
        ];
        if t.is_empty() {
            return Err(CronError::tz(s, "empty time zone"));
        }
        if UTC_NAMES.contains(&upper.as_str()) {
            return Ok(TimeZone::Utc);
        }
        let unsupported = || {
            CronError::tz(
                s,
                "only UTC and fixed offsets (such as \"+02:00\", \"-0530\", \"GMT+2\") are \
                 supported; named zones with daylight saving time (such as Europe/Paris) are not",
            )
        };
        let secs = if let Some(rest) = upper.strip_prefix("ETC/GMT") {
            // IANA's Etc/GMT+N zones are N hours *west* of UTC (POSIX sign convention).
            let east = parse_offset(rest).ok_or_else(unsupported)?;
            if east % 3600 != 0 || east.abs() > 14 * 3600 {
                return Err(CronError::tz(
                    s,
                    "Etc/GMT offsets must be whole hours between -14 and +12",
                ));
            }
            -east
        } else if let Some(rest) = ["UTC", "GMT", "UT"]
            .iter()
            .find_map(|p| upper.strip_prefix(p))
            .filter(|r| r.starts_with(['+', '-']))
        {
            parse_offset(rest).ok_or_else(unsupported)?
        } else if upper.starts_with(['+', '-']) {
            parse_offset(&upper).ok_or_else(unsupported)?
        } else {
            return Err(unsupported());
        };
        if secs.abs() > 18 * 3600 {
            return Err(CronError::tz(s, "offset out of range -18:00 to +18:00"));
        }
        Ok(if secs == 0 {
            TimeZone::Utc
        } else {
            TimeZone::Fixed(secs)
        })
    }

    /// Seconds east of UTC.
    pub fn offset_seconds(&self) -> i32 {
        match self {
            TimeZone::Utc => 0,
            TimeZone::Fixed(s) => *s,
        }
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.offset_seconds();
        if secs == 0 {
            return f.write_str("UTC");
        }
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", a / 3600, a / 60 % 60)?;
        if !a.is_multiple_of(60) {
            write!(f, ":{:02}", a % 60)?;
        }
        Ok(())
    }
}

/// Parses `+H`, `+HH`, `+HHMM`, `+HH:MM` (sign mandatory) into seconds east, or None.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) if (1..=2).contains(&h.len()) && m.len() == 2 => (h, m),
        Some(_) => return None,
        None => match rest.len() {
            1 | 2 => (rest, "0"),
            4 => rest.split_at(2),
            _ => return None,
        },
    };
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// Which textual form an expression used; decides the day-of-week numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Unix,
    Quartz,
}

/// How one field is written and checked.
struct FieldDef {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first entry of `names`.
    names_base: u32,
    /// `?` allowed (day-of-month and day-of-week only).
    question: bool,
}

const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: FieldDef = plain("second", 0, 59);
const MINUTE: FieldDef = plain("minute", 0, 59);
const HOUR: FieldDef = plain("hour", 0, 23);
const DOM: FieldDef = FieldDef {
    question: true,
    ..plain("day-of-month", 1, 31)
};
const MONTH: FieldDef = FieldDef {
    names: MONTH_NAMES,
    names_base: 1,
    ..plain("month", 1, 12)
};
const DOW_QUARTZ: FieldDef = FieldDef {
    names: DAY_NAMES,
    names_base: 1,
    question: true,
    ..plain("day-of-week", 1, 7)
};
const DOW_UNIX: FieldDef = FieldDef {
    names: DAY_NAMES,
    names_base: 0,
    question: true,
    ..plain("day-of-week", 0, 7)
};
const YEAR: FieldDef = plain("year", YEAR_MIN, YEAR_MAX);

const fn plain(name: &'static str, min: u32, max: u32) -> FieldDef {
    FieldDef {
        name,
        min,
        max,
        names: &[],
        names_base: 0,
        question: false,
    }
}

/// One parsed field: its values (in the field's own numbering) and whether it was `*` or `?`.
struct Parsed {
    values: Vec<u32>,
    unrestricted: bool,
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    /// Bits 1-31.
    days: u64,
    /// Bits 1-12.
    months: u64,
    /// Bits 0-6, 0 = Sunday.
    weekdays: u64,
    /// Both day fields restricted: a day matches if either matches.
    day_or: bool,
    /// Allowed years, ascending; None = any year.
    years: Option<Vec<i64>>,
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    /// Parses a Unix (5 fields) or Quartz (6 or 7 fields) cron expression.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (form, rest): (Form, &[&str]) = match fields.len() {
            5 => (Form::Unix, &fields[..]),
            6 | 7 => (Form::Quartz, &fields[1..]),
            n => {
                return Err(CronError::expr(
                    expr,
                    None,
                    format!(
                        "has {n} fields; expected 5 (Unix: minute hour day-of-month month \
                         day-of-week) or 6-7 (Quartz: second minute hour day-of-month month \
                         day-of-week [year])"
                    ),
                ))
            }
        };
        let field = |text: &str, def: &FieldDef| {
            parse_field(text, def).map_err(|m| CronError::expr(expr, Some(def.name), m))
        };
        let seconds = match form {
            Form::Unix => 1,
            Form::Quartz => mask(&field(fields[0], &SECOND)?.values),
        };
        let minutes = mask(&field(rest[0], &MINUTE)?.values);
        let hours = mask(&field(rest[1], &HOUR)?.values);
        let dom = field(rest[2], &DOM)?;
        let months = mask(&field(rest[3], &MONTH)?.values);
        let dow = match form {
            Form::Unix => field(rest[4], &DOW_UNIX)?,
            Form::Quartz => field(rest[4], &DOW_QUARTZ)?,
        };
        let weekdays = dow.values.iter().fold(0u64, |m, &v| {
            let sunday0 = match form {
                Form::Unix => v % 7,
                Form::Quartz => v - 1,
            };
            m | 1 << sunday0
        });
        let years = match rest.get(5) {
            None => None,
            Some(t) => {
                let y = field(t, &YEAR)?;
                (!y.unrestricted).then(|| y.values.iter().map(|&v| i64::from(v)).collect())
            }
        };
        let day_or = !dom.unrestricted && !dow.unrestricted;
        let days = mask(&dom.values);
        if !dom.unrestricted && dow.unrestricted {
            // Day-of-month alone constrains: refuse a schedule that can never fire, such as
            // "0 0 0 30 2 ?", instead of silently never running it.
            let occurs = (1..=12u32)
                .filter(|m| months & 1 << m != 0)
                .any(|m| (1..=max_days_in_month(m)).any(|d| days & 1 << d != 0));
            if !occurs {
                return Err(CronError::expr(
                    expr,
                    Some(DOM.name),
                    "values never occur in the selected months",
                ));
            }
        }
        Ok(Cron {
            text: fields.join(" "),
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_or,
            years,
        })
    }

    /// The expression, fields separated by single spaces.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the civil date matches the day-of-month / day-of-week / month / year fields.
    fn day_matches(&self, y: i64, m: u32, d: u32) -> bool {
        if self.months & 1 << m == 0 || !self.year_ok(y) {
            return false;
        }
        let dom = self.days & 1 << d != 0;
        let dow = self.weekdays & 1 << weekday(days_from_civil(y, m, d)) != 0;
        if self.day_or {
            dom || dow
        } else {
            dom && dow
        }
    }

    fn year_ok(&self, y: i64) -> bool {
        self.years
            .as_ref()
            .is_none_or(|ys| ys.binary_search(&y).is_ok())
    }

    /// The first fire time strictly after `after` (unix seconds), in `tz`'s local time, or None
    /// if there is none within ten years (or after the last year of the year field).
    pub fn next_after(&self, after: i64, tz: &TimeZone) -> Option<i64> {
        let offset = i64::from(tz.offset_seconds());
        let start = after.checked_add(offset)?.checked_add(1)?;
        let (mut y, mut mo, mut d) = civil_from_days(start.div_euclid(86_400));
        let sod = start.rem_euclid(86_400);
        // sod < 86400, so these fit in u32.
        let (mut h, mut mi, mut s) = (
            (sod / 3600) as u32,
            (sod / 60 % 60) as u32,
            (sod % 60) as u32,
        );
        let limit = match &self.years {
            Some(ys) => *ys.last()?,
            None => y.checked_add(HORIZON_YEARS)?,
        };
        // Each pass moves strictly forward, at least to the next day once the time-of-day
        // fields are exhausted, so the horizon bounds the loop; the cap is a second guard.
        for _ in 0..((limit - y).max(0) + 1) * 500 + 100 {
            if y > limit {
                return None;
            }
            if !self.year_ok(y) {
                let ys = self.years.as_deref().unwrap_or_default();
                y = *ys.iter().find(|&&v| v > y)?;
                (mo, d, h, mi, s) = (1, 1, 0, 0, 0);
                continue;
            }
            if self.months & 1 << mo == 0 {
                match next_bit(self.months, mo, 12) {
                    Some(m) => mo = m,
                    None => {
                        y += 1;
                        mo = 1;
                    }
                }
                (d, h, mi, s) = (1, 0, 0, 0);
                continue;
            }
            if d > days_in_month(y, mo) {
                (mo, d, h, mi, s) = (mo + 1, 1, 0, 0, 0);
                if mo > 12 {
                    (y, mo) = (y + 1, 1);
                }
                continue;
            }
            if !self.day_matches(y, mo, d) {
                (d, h, mi, s) = (d + 1, 0, 0, 0);
                continue;
            }
            match next_bit(self.hours, h, 23) {
                None => {
                    (d, h, mi, s) = (d + 1, 0, 0, 0);
                    continue;
                }
                Some(nh) if nh != h => (h, mi, s) = (nh, 0, 0),
                Some(_) => {}
            }
            match next_bit(self.minutes, mi, 59) {
                None => {
                    (h, mi, s) = (h + 1, 0, 0);
                    if h > 23 {
                        (d, h) = (d + 1, 0);
                    }
                    continue;
                }
                Some(nm) if nm != mi => (mi, s) = (nm, 0),
                Some(_) => {}
            }
            match next_bit(self.seconds, s, 59) {
                None => {
                    (mi, s) = (mi + 1, 0);
                    if mi > 59 {
                        (h, mi) = (h + 1, 0);
                    }
                    if h > 23 {
                        (d, h) = (d + 1, 0);
                    }
                    continue;
                }
                Some(ns) => s = ns,
            }
            let local = days_from_civil(y, mo, d)
                .checked_mul(86_400)?
                .checked_add(i64::from(h * 3600 + mi * 60 + s))?;
            return local.checked_sub(offset);
        }
        None
    }
}

/// Parses one field into its values (the field's own numbering, ascending, deduplicated).
fn parse_field(text: &str, def: &FieldDef) -> Result<Parsed, String> {
    if text.contains('#') {
        return Err(not_supported(text));
    }
    if text == "?" {
        if !def.question {
            return Err("\"?\" is only allowed in the day-of-month and day-of-week fields".into());
        }
        return Ok(Parsed {
            values: (def.min..=def.max).collect(),
            unrestricted: true,
        });
    }
    let mut seen = vec![false; (def.max + 1) as usize];
    for item in text.split(',') {
        parse_item(item, def, &mut seen)?;
    }
    Ok(Parsed {
        values: (def.min..=def.max).filter(|&v| seen[v as usize]).collect(),
        unrestricted: text == "*",
    })
}

fn not_supported(text: &str) -> String {
    format!(
        "{} is not supported (the Quartz extensions L, W and # are not implemented)",
        quoted(text)
    )
}

/// Parses one list item (`*`, `a`, `a-b`, each optionally `/step`) into `seen`.
fn parse_item(item: &str, def: &FieldDef, seen: &mut [bool]) -> Result<(), String> {
    if item.is_empty() {
        return Err("has an empty list element".into());
    }
    let (range, step) = match item.split_once('/') {
        Some((r, st)) => {
            let span = def.max - def.min + 1;
            let n = parse_number(st)
                .filter(|n| (1..=span).contains(n))
                .ok_or_else(|| format!("step {} must be a number from 1 to {span}", quoted(st)))?;
            (r, Some(n))
        }
        None => (item, None),
    };
    let (start, end) = if range == "*" {
        (def.min, def.max)
    } else if range == "?" {
        return Err("\"?\" must be the whole field".into());
    } else {
        match range.split_once('-') {
            Some((a, b)) => (atom(a, def)?, atom(b, def)?),
            // `a/n` means from a to the end of the field.
            None if step.is_some() => (atom(range, def)?, def.max),
            None => {
                let v = atom(range, def)?;
                (v, v)
            }
        }
    };
    let step = step.unwrap_or(1);
    if start <= end {
        for v in (start..=end).step_by(step as usize) {
            seen[v as usize] = true;
        }
    } else if def.name == YEAR.name {
        return Err(format!("range {start}-{end} runs backwards"));
    } else {
        // Wrapping range such as FRI-MON or 22-2: count on past the end back to the start.
        let span = def.max - def.min + 1;
        let len = (def.max - start) + (end - def.min) + 2;
        for k in (0..len).step_by(step as usize) {
            let v = def.min + (start - def.min + k) % span;
            seen[v as usize] = true;
        }
    }
    Ok(())
}

fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a single value: a number within the field's range or one of its names.
fn atom(s: &str, def: &FieldDef) -> Result<u32, String> {
    if s.is_empty() {
        return Err("has an empty value".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match parse_number(s) {
            Some(v) if (def.min..=def.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "value {} out of range {}-{}",
                if s.len() > 20 { "(too long)" } else { s },
                def.min,
                def.max
            )),
        };
    }
    let upper = s.to_ascii_uppercase();
    if let Some(i) = def.names.iter().position(|n| *n == upper) {
        // At most twelve names, so the index fits in u32.
        return Ok(def.names_base + i as u32);
    }
    // Quartz extensions: L, LW, 5L, 15W, L-3 (the '-' split leaves "L").
    let ext = upper == "L"
        || upper == "LW"
        || ((upper.ends_with('L') || upper.ends_with('W'))
            && upper[..upper.len() - 1].bytes().all(|b| b.is_ascii_digit()))
        || (upper.ends_with('L') && def.names.contains(&&upper[..upper.len() - 1]));
    if ext {
        return Err(not_supported(s));
    }
    if def.names.is_empty() {
        Err(format!("value {} is not a number", quoted(s)))
    } else {
        Err(format!(
            "value {} is neither a number nor one of {}",
            quoted(s),
            def.names.join(",")
        ))
    }
}

fn mask(values: &[u32]) -> u64 {
    values.iter().fold(0, |m, &v| m | 1 << v)
}

/// The lowest set bit of `mask` in `from..=max`.
fn next_bit(mask: u64, from: u32, max: u32) -> Option<u32> {
    if from > max {
        return None;
    }
    let rest = mask >> from;
    if rest == 0 {
        return None;
    }
    let v = from + rest.trailing_zeros();
    (v <= max).then_some(v)
}

pub(crate) fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn max_days_in_month(m: u32) -> u32 {
    days_in_month(2000, m)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // mp is 0..=11 and the day 1..=31, so the casts are lossless.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day of week of a day count since 1970-01-01 (a Thursday), 0 = Sunday.
fn weekday(days: i64) -> u32 {
    // rem_euclid(7) is 0..=6.
    (days + 4).rem_euclid(7) as u32
}

#[cfg(test)]
// Tests may unwrap: a failure there is the test's report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC civil time.
    fn ts(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s)
    }

    fn next(expr: &str, after: i64) -> Option<i64> {
        Cron::parse(expr).unwrap().next_after(after, &TimeZone::Utc)
    }

    /// The first `n` fire times after `after`.
    fn seq(expr: &str, after: i64, n: usize) -> Vec<i64> {
        let c = Cron::parse(expr).unwrap();
        let mut out = Vec::new();
        let mut t = after;
        for _ in 0..n {
            t = c.next_after(t, &TimeZone::Utc).unwrap();
            out.push(t);
        }
        out
    }

    fn err(expr: &str) -> String {
        Cron::parse(expr).unwrap_err().to_string()
    }

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(ts(2020, 5, 7, 9, 14, 57), 1_588_842_897);
        for z in [-800_000i64, -1, 0, 59, 60, 11_016, 18_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(weekday(0), 4);
        assert_eq!(weekday(days_from_civil(2024, 6, 2)), 0); // a Sunday
    }

    #[test]
    fn quartz_every_fifteen_minutes() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        assert_eq!(
            seq("0 0/15 * * * ?", t0, 4),
            vec![
                ts(2024, 3, 10, 10, 15, 0),
                ts(2024, 3, 10, 10, 30, 0),
                ts(2024, 3, 10, 10, 45, 0),
                ts(2024, 3, 10, 11, 0, 0),
            ]
        );
        // Strictly after: a fire time itself is not returned again.
        let at = ts(2024, 3, 10, 10, 15, 0);
        assert_eq!(next("0 0/15 * * * ?", at), Some(ts(2024, 3, 10, 10, 30, 0)));
        assert_eq!(next("0 0/15 * * * ?", at - 1), Some(at));
        // Crosses midnight and the year end.
        let late = ts(2024, 12, 31, 23, 50, 0);
        assert_eq!(next("0 0/15 * * * ?", late), Some(ts(2025, 1, 1, 0, 0, 0)));
    }

    #[test]
    fn unix_form_has_zero_seconds() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        assert_eq!(next("*/15 * * * *", t0), Some(ts(2024, 3, 10, 10, 15, 0)));
        assert_eq!(next("* * * * *", t0), Some(ts(2024, 3, 10, 10, 8, 0)));
        assert_eq!(next("30 2 * * *", t0), Some(ts(2024, 3, 11, 2, 30, 0)));
    }

    #[test]
    fn every_second_and_seconds_lists() {
        let t0 = ts(2024, 3, 10, 10, 7, 30);
        assert_eq!(next("* * * * * ?", t0), Some(t0 + 1));
        assert_eq!(
            seq("5,10,50 * * * * ?", t0, 3),
            vec![t0 + 20, t0 + 30 + 5, t0 + 30 + 10]
        );
        assert_eq!(
            next("59 59 23 * * ?", t0),
            Some(ts(2024, 3, 10, 23, 59, 59))
        );
    }

    #[test]
    fn ranges_steps_lists_and_names() {
        let c = Cron::parse("0 10-20/5,45 8-10 * * ?").unwrap();
        assert_eq!(c.minutes, mask(&[10, 15, 20, 45]));
        assert_eq!(c.hours, mask(&[8, 9, 10]));
        let c = Cron::parse("0 0 12 ? jan,Mar-MAY mon-fri").unwrap();
        assert_eq!(c.months, mask(&[1, 3, 4, 5]));
        assert_eq!(c.weekdays, mask(&[1, 2, 3, 4, 5]));
        // Quartz 1 = SUN, 7 = SAT.
        let c = Cron::parse("0 0 12 ? * 1,7").unwrap();
        assert_eq!(c.weekdays, mask(&[0, 6]));
        // Unix 0 and 7 = SUN; names number from SUN = 0.
        let c = Cron::parse("0 12 * * 7").unwrap();
        assert_eq!(c.weekdays, mask(&[0]));
        let c = Cron::parse("0 12 * * 0,sat").unwrap();
        assert_eq!(c.weekdays, mask(&[0, 6]));
        let c = Cron::parse("0 12 * * 5-7").unwrap();
        assert_eq!(c.weekdays, mask(&[0, 5, 6]));
        // `a/n` runs to the end of the field; `*/n` from its start.
        let c = Cron::parse("0 50/4 */6 * * ?").unwrap();
        assert_eq!(c.minutes, mask(&[50, 54, 58]));
        assert_eq!(c.hours, mask(&[0, 6, 12, 18]));
        // Quartz day-of-week */2 starts at 1 = SUN.
        let c = Cron::parse("0 0 0 ? * */2").unwrap();
        assert_eq!(c.weekdays, mask(&[0, 2, 4, 6]));
        // Wrapping ranges.
        let c = Cron::parse("0 0 22-2 * * ?").unwrap();
        assert_eq!(c.hours, mask(&[22, 23, 0, 1, 2]));
        let c = Cron::parse("0 0 0 ? * FRI-MON").unwrap();
        assert_eq!(c.weekdays, mask(&[5, 6, 0, 1]));
        let c = Cron::parse("0 0 0 1 NOV-FEB/2 ?").unwrap();
        assert_eq!(c.months, mask(&[11, 1]));
        // Extra whitespace is fine and normalised.
        assert_eq!(
            Cron::parse("  0  0/15 *\t* * ? ").unwrap().as_str(),
            "0 0/15 * * * ?"
        );
    }

    #[test]
    fn weekday_schedule() {
        // 2024-06-07 is a Friday; next weekday noon after Friday 13:00 is Monday.
        let fri = ts(2024, 6, 7, 13, 0, 0);
        assert_eq!(
            next("0 0 12 ? * MON-FRI", fri),
            Some(ts(2024, 6, 10, 12, 0, 0))
        );
        assert_eq!(next("0 12 * * 1-5", fri), Some(ts(2024, 6, 10, 12, 0, 0)));
        assert_eq!(next("0 0 12 ? * 1", fri), Some(ts(2024, 6, 9, 12, 0, 0)));
    }

    #[test]
    fn rejects_quartz_extensions() {
        for e in [
            "0 0 0 L * ?",
            "0 0 0 LW * ?",
            "0 0 0 15W * ?",
            "0 0 0 L-3 * ?",
            "0 0 0 ? * 6L",
            "0 0 0 ? * FRIL",
            "0 0 0 ? * 6#3",
            "0 0 0 ? * MON#1",
            "0 0 0 l * ?",
        ] {
            let m = err(e);
            assert!(m.contains("not supported"), "{e}: {m}");
        }
        assert_eq!(
            err("0 0 0 ? * 6#3"),
            "invalid cron expression \"0 0 0 ? * 6#3\": day-of-week \"6#3\" is not supported \
             (the Quartz extensions L, W and # are not implemented)"
        );
        // Names that merely contain L or W still parse.
        Cron::parse("0 0 0 ? JUL WED").unwrap();
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(
            err("0 61 * * * ?"),
            "invalid cron expression \"0 61 * * * ?\": minute value 61 out of range 0-59"
        );
        assert!(err("60 * * * * ?").contains("second value 60 out of range 0-59"));
        assert!(err("0 0 24 * * ?").contains("hour value 24 out of range 0-23"));
        assert!(err("0 0 0 0 * ?").contains("day-of-month value 0 out of range 1-31"));
        assert!(err("0 0 0 32 * ?").contains("day-of-month value 32"));
        assert!(err("0 0 0 * 13 ?").contains("month value 13 out of range 1-12"));
        assert!(err("0 0 0 ? * 0").contains("day-of-week value 0 out of range 1-7"));
        assert!(err("0 0 * * 8").contains("day-of-week value 8 out of range 0-7"));
        assert!(err("0 0 0 * * ? 1969").contains("year value 1969 out of range 1970-2199"));
        assert!(err("0 0 0 * * ? 2030-2025").contains("runs backwards"));
        assert!(err("0 0 0 * FOO ?").contains("month value \"FOO\" is neither"));
        assert!(err("0 x * * * ?").contains("minute value \"x\" is not a number"));
        assert!(err("0 */0 * * * ?").contains("step \"0\" must be a number from 1 to 60"));
        assert!(err("0 */61 * * * ?").contains("step"));
        assert!(err("0 1,,2 * * * ?").contains("empty list element"));
        assert!(err("0 1- * * * ?").contains("empty value"));
        assert!(err("0 -1 * * * ?").contains("empty value"));
        assert!(err("? 0 * * * ?").contains("second \"?\" is only allowed"));
        assert!(err("0 0 0 1,? * ?").contains("\"?\" must be the whole field"));
        assert!(err("0 0 0 30 2 ?").contains("never occur"));
        assert!(err("0 0 0 31 4,6,9,11 ?").contains("never occur"));
        assert!(err("").contains("has 0 fields"));
        assert!(err("* * * *").contains("has 4 fields"));
        assert!(err("0 0 0 * * ? 2030 x").contains("has 8 fields"));
        assert!(err("0 99999999999999999999 * * * ?").contains("out of range"));
        // Huge or odd input never panics and keeps the message short.
        let huge = "1,".repeat(100_000) + "61 * * * * ?";
        assert!(err(&huge).len() < 400);
        assert!(Cron::parse("0 é * * * ?").is_err());
        assert!(Cron::parse("0 0 0 ? * É").is_err());
    }

    #[test]
    fn month_ends_and_leap_years() {
        // Jan 31 → Feb.
        let jan31 = ts(2023, 1, 31, 12, 0, 0);
        assert_eq!(next("0 0 0 * * ?", jan31), Some(ts(2023, 2, 1, 0, 0, 0)));
        assert_eq!(next("0 0 0 1 * ?", jan31), Some(ts(2023, 2, 1, 0, 0, 0)));
        // The 31st skips the short months.
        assert_eq!(
            seq("0 0 0 31 * ?", ts(2023, 1, 15, 0, 0, 0), 4),
            vec![
                ts(2023, 1, 31, 0, 0, 0),
                ts(2023, 3, 31, 0, 0, 0),
                ts(2023, 5, 31, 0, 0, 0),
                ts(2023, 7, 31, 0, 0, 0),
            ]
        );
        // Feb 29 only in leap years.
        assert_eq!(
            seq("0 0 0 29 2 ?", ts(2023, 1, 1, 0, 0, 0), 3),
            vec![
                ts(2024, 2, 29, 0, 0, 0),
                ts(2028, 2, 29, 0, 0, 0),
                ts(2032, 2, 29, 0, 0, 0),
            ]
        );
        // 2100 is not a leap year: eight years to the next Feb 29.
        assert_eq!(
            next("0 0 0 29 2 ?", ts(2096, 3, 1, 0, 0, 0)),
            Some(ts(2104, 2, 29, 0, 0, 0))
        );
        assert_eq!(
            next("0 0 0 * * ?", ts(2024, 2, 28, 1, 0, 0)),
            Some(ts(2024, 2, 29, 0, 0, 0))
        );
        assert_eq!(
            next("0 0 0 * * ?", ts(2023, 2, 28, 1, 0, 0)),
            Some(ts(2023, 3, 1, 0, 0, 0))
        );
        // Dec 31 → Jan 1.
        assert_eq!(
            next("0 30 12 * * ?", ts(2023, 12, 31, 13, 0, 0)),
            Some(ts(2024, 1, 1, 12, 30, 0))
        );
        assert_eq!(
            next("0 0 0 1 1 ?", ts(2023, 12, 31, 23, 59, 59)),
            Some(ts(2024, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            next("59 59 23 31 12 ?", ts(2023, 12, 31, 23, 59, 59)),
            Some(ts(2024, 12, 31, 23, 59, 59))
        );
    }

    #[test]
    fn day_of_month_and_week_combinations() {
        // 2024-06-01 is a Saturday.
        let t0 = ts(2024, 6, 1, 0, 0, 0);
        // Both restricted (Unix style): the 15th OR any Monday.
        assert_eq!(
            seq("0 0 15 * MON", t0, 4),
            vec![
                ts(2024, 6, 3, 0, 0, 0),
                ts(2024, 6, 10, 0, 0, 0),
                ts(2024, 6, 15, 0, 0, 0),
                ts(2024, 6, 17, 0, 0, 0),
            ]
        );
        // Day-of-week `*`: the 15th alone.
        assert_eq!(next("0 0 15 * *", t0), Some(ts(2024, 6, 15, 0, 0, 0)));
        assert_eq!(next("0 0 0 15 * *", t0), Some(ts(2024, 6, 15, 0, 0, 0)));
        // Day-of-month `?` or `*`: Monday alone.
        assert_eq!(next("0 0 0 ? * MON", t0), Some(ts(2024, 6, 3, 0, 0, 0)));
        assert_eq!(next("0 0 0 * * MON", t0), Some(ts(2024, 6, 3, 0, 0, 0)));
        // Both `*` or both `?`: every day.
        assert_eq!(next("0 0 0 * * *", t0), Some(ts(2024, 6, 2, 0, 0, 0)));
        assert_eq!(next("0 0 0 ? * ?", t0), Some(ts(2024, 6, 2, 0, 0, 0)));
    }

    #[test]
    fn year_field() {
        let t0 = ts(2024, 6, 1, 0, 0, 0);
        assert_eq!(
            next("0 0 0 1 1 ? 2026,2030", t0),
            Some(ts(2026, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            next("0 0 0 1 1 ? 2026,2030", ts(2026, 1, 1, 0, 0, 0)),
            Some(ts(2030, 1, 1, 0, 0, 0))
        );
        assert_eq!(next("0 0 0 1 1 ? 2026,2030", ts(2030, 1, 1, 0, 0, 0)), None);
        assert_eq!(next("0 0 0 * * ? 2020-2023", t0), None);
        assert_eq!(next("0 0 0 * * ? *", t0), Some(ts(2024, 6, 2, 0, 0, 0)));
        assert_eq!(next("0 0 0 1 1 ? 2150", t0), Some(ts(2150, 1, 1, 0, 0, 0)));
        assert_eq!(
            next("0 0 0 1 1 ? 2030/10", t0),
            Some(ts(2030, 1, 1, 0, 0, 0))
        );
        // Feb 29 in a non-leap year only: never, but computed quickly.
        assert_eq!(next("0 0 0 29 2 ? 2025-2027", t0), None);
    }

    #[test]
    fn time_zones() {
        assert_eq!(TimeZone::parse("UTC").unwrap(), TimeZone::Utc);
        for z in ["GMT", "Z", "Etc/UTC", "utc", "+00:00", "GMT+0", "Etc/GMT"] {
            assert_eq!(TimeZone::parse(z).unwrap(), TimeZone::Utc, "{z}");
        }
        assert_eq!(TimeZone::parse("+02:00").unwrap(), TimeZone::Fixed(7200));
        assert_eq!(TimeZone::parse("-0530").unwrap(), TimeZone::Fixed(-19_800));
        assert_eq!(TimeZone::parse("GMT+2").unwrap(), TimeZone::Fixed(7200));
        assert_eq!(
            TimeZone::parse("UTC-03:30").unwrap(),
            TimeZone::Fixed(-12_600)
        );
        assert_eq!(TimeZone::parse("+5").unwrap(), TimeZone::Fixed(18_000));
        assert_eq!(TimeZone::parse("Etc/GMT-2").unwrap(), TimeZone::Fixed(7200));
        assert_eq!(
            TimeZone::parse("Etc/GMT+5").unwrap(),
            TimeZone::Fixed(-18_000)
        );
        assert_eq!(TimeZone::Fixed(-12_600).to_string(), "-03:30");
        assert_eq!(TimeZone::Fixed(7200).to_string(), "+02:00");
        assert_eq!(TimeZone::Utc.to_string(), "UTC");
        let e = TimeZone::parse("Europe/Paris").unwrap_err().to_string();
        assert!(e.starts_with("invalid time zone \"Europe/Paris\": only UTC and fixed offsets"));
        for bad in [
            "",
            "+25:00",
            "+02:60",
            "+1:2",
            "GMT+",
            "+123",
            "PST",
            "+02:00x",
            "Etc/GMT+15",
        ] {
            assert!(TimeZone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fixed_offset_next_fire() {
        let tz = TimeZone::parse("+02:00").unwrap();
        let c = Cron::parse("0 0 2 * * ?").unwrap();
        // 02:00 at +02:00 is 00:00 UTC.
        let t0 = ts(2024, 6, 1, 12, 0, 0);
        assert_eq!(c.next_after(t0, &tz), Some(ts(2024, 6, 2, 0, 0, 0)));
        // Local midnight at -05:30 on Jan 1 is 05:30 UTC; the local date decides the day.
        let tz = TimeZone::parse("-0530").unwrap();
        let c = Cron::parse("0 0 0 1 1 ?").unwrap();
        assert_eq!(
            c.next_after(ts(2024, 1, 1, 3, 0, 0), &tz),
            Some(ts(2024, 1, 1, 5, 30, 0))
        );
        assert_eq!(
            c.next_after(ts(2024, 1, 1, 6, 0, 0), &tz),
            Some(ts(2025, 1, 1, 5, 30, 0))
        );
        // Day-of-week is evaluated in local time: Monday 00:30 at +02:00 is Sunday 22:30 UTC.
        let tz = TimeZone::Fixed(7200);
        let c = Cron::parse("0 30 0 ? * MON").unwrap();
        assert_eq!(
            c.next_after(ts(2024, 6, 1, 0, 0, 0), &tz),
            Some(ts(2024, 6, 2, 22, 30, 0))
        );
    }

    /// Whether local time `t` matches every field, checked directly.
    fn matches_at(c: &Cron, t: i64) -> bool {
        let (y, m, d) = civil_from_days(t.div_euclid(86_400));
        let sod = t.rem_euclid(86_400);
        c.day_matches(y, m, d)
            && c.hours & 1 << (sod / 3600) != 0
            && c.minutes & 1 << (sod / 60 % 60) != 0
            && c.seconds & 1 << (sod % 60) != 0
    }

    #[test]
    fn agrees_with_brute_force() {
        // Minute-resolution expressions, checked minute by minute over 40 days.
        let exprs = [
            "*/7 3-5,22 * * *",
            "0 0 29-31 * *",
            "15 12 13 * FRI",
            "0 0 * FEB,MAR SUN",
            "0 0/20 0-2 ? * TUE-THU",
            "0 45 6 1,15 * MON",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for e in exprs {
            let c = Cron::parse(e).unwrap();
            for tz in [TimeZone::Utc, TimeZone::Fixed(-19_800)] {
                for _ in 0..4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Some time between 1990 and 2060.
                    let start = 631_152_000 + (seed % 2_208_988_800) as i64;
                    let off = i64::from(tz.offset_seconds());
                    let mut t = (start + off).div_euclid(60) * 60 + 60;
                    let end = t + 40 * 86_400;
                    while t < end && !matches_at(&c, t) {
                        t += 60;
                    }
                    let got = c.next_after(start, &tz);
                    if t < end {
                        assert_eq!(got, Some(t - off), "{e} after {start}");
                    } else {
                        assert!(got.is_some_and(|g| g + off >= end), "{e} after {start}");
                    }
                }
            }
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        let c = Cron::parse("0 0 0 * * ?").unwrap();
        assert_eq!(c.next_after(i64::MAX, &TimeZone::Utc), None);
        assert_eq!(c.next_after(i64::MAX - 1, &TimeZone::Fixed(3600)), None);
        let _ = c.next_after(i64::MIN, &TimeZone::Fixed(-3600));
        let _ = c.next_after(i64::MAX / 2, &TimeZone::Utc);
        assert_eq!(
            c.next_after(-1, &TimeZone::Utc),
            Some(0),
            "1970-01-01 00:00 is after -1"
        );
        assert_eq!(c.next_after(-86_401, &TimeZone::Utc), Some(-86_400));
    }
}
