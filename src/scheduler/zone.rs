//! A schedule's time zone (IDM's `timeZone` key): UTC, a fixed offset written the ways Java's
//! `TimeZone.getTimeZone` accepts (`+02:00`, `GMT+2`, `UTC-03:30`), or an IANA name such as
//! `America/New_York` from the time-zone database bundled with jiff.
//!
//! Invariants: a parsed [`TimeZone`] always resolves local times (daylight-saving changes
//! included) through jiff; a name that is neither an offset form nor in the database is an
//! error, never silently UTC (Java's fallback).

use std::fmt;

/// A time zone text that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time zone {text:?}: {message}")]
pub struct ZoneError {
    text: String,
    message: String,
}

/// A schedule's time zone.
#[derive(Clone, PartialEq)]
pub struct TimeZone {
    tz: jiff::tz::TimeZone,
}

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZone({self})")
    }
}

impl fmt::Display for TimeZone {
    /// `UTC`, `+02:00`, or the IANA name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.tz.iana_name() {
            return f.write_str(name);
        }
        let secs = self.tz.to_fixed_offset().map_or(0, |o| o.seconds());
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

/// Names Java reads as UTC (case-insensitive).
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

impl TimeZone {
    pub const UTC: TimeZone = TimeZone {
        tz: jiff::tz::TimeZone::UTC,
    };

    /// A fixed offset of `secs` seconds east of UTC.
    pub fn fixed(secs: i32) -> Result<TimeZone, ZoneError> {
        let offset = jiff::tz::Offset::from_seconds(secs).map_err(|e| ZoneError {
            text: secs.to_string(),
            message: e.to_string(),
        })?;
        Ok(TimeZone {
            tz: jiff::tz::TimeZone::fixed(offset),
        })
    }

    /// Parses UTC names, offsets (`+02:00`, `-0530`, `+2`, `GMT+2`, `UTC-03:30`) and IANA
    /// names (`America/New_York`, `Etc/GMT-2`).
    pub fn parse(s: &str) -> Result<TimeZone, ZoneError> {
        let err = |message: &str| ZoneError {
            text: s.chars().take(120).collect(),
            message: message.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("empty time zone"));
        }
        let upper = t.to_ascii_uppercase();
        if UTC_NAMES.contains(&upper.as_str()) {
            return Ok(TimeZone::UTC);
        }
        let offset_text = ["UTC", "GMT", "UT"]
            .iter()
            .find_map(|p| upper.strip_prefix(p))
            .filter(|r| r.starts_with(['+', '-']))
            .or_else(|| upper.starts_with(['+', '-']).then_some(upper.as_str()));
        if let Some(rest) = offset_text {
            let secs = parse_offset(rest).ok_or_else(|| {
                err("an offset must be written +H, +HH, +HHMM or +HH:MM (sign required)")
            })?;
            if secs.abs() > 18 * 3600 {
                return Err(err("offset out of range -18:00 to +18:00"));
            }
            return TimeZone::fixed(secs).map_err(|e| err(&e.message));
        }
        jiff::tz::TimeZone::get(t)
            .map(|tz| TimeZone { tz })
            .map_err(|_| {
                err(
                    "not a known time zone: use an IANA name (such as America/New_York), UTC, \
                     or an offset (such as +02:00 or GMT-5)",
                )
            })
    }

    /// The jiff zone, for conversions.
    pub fn jiff(&self) -> &jiff::tz::TimeZone {
        &self.tz
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixed(secs: i32) -> TimeZone {
        TimeZone::fixed(secs).unwrap()
    }

    #[test]
    fn utc_offsets_and_names() {
        for z in ["UTC", "GMT", "Z", "Etc/UTC", "utc", "+00:00", "GMT+0"] {
            assert_eq!(TimeZone::parse(z).unwrap().to_string(), "UTC", "{z}");
        }
        assert_eq!(TimeZone::parse("+02:00").unwrap(), fixed(7200));
        assert_eq!(TimeZone::parse("-0530").unwrap(), fixed(-19_800));
        assert_eq!(TimeZone::parse("GMT+2").unwrap(), fixed(7200));
        assert_eq!(TimeZone::parse("UTC-03:30").unwrap(), fixed(-12_600));
        assert_eq!(TimeZone::parse("+5").unwrap(), fixed(18_000));
        assert_eq!(fixed(-12_600).to_string(), "-03:30");
        assert_eq!(fixed(7200).to_string(), "+02:00");
        // IANA names, including Etc/GMT's inverted sign (Etc/GMT-2 is UTC+2).
        let ny = TimeZone::parse("America/New_York").unwrap();
        assert_eq!(ny.to_string(), "America/New_York");
        let etc = TimeZone::parse("Etc/GMT-2").unwrap();
        let noon = jiff::Timestamp::from_second(43_200).unwrap();
        assert_eq!(etc.jiff().to_offset(noon).seconds(), 7200);
        let e = TimeZone::parse("Mars/Olympus").unwrap_err().to_string();
        assert!(e.starts_with("invalid time zone \"Mars/Olympus\": not a known time zone"));
        for bad in [
            "", "+25:00", "+02:60", "+1:2", "GMT+", "+123", "+02:00x", "PST",
        ] {
            assert!(TimeZone::parse(bad).is_err(), "{bad}");
        }
    }
}
