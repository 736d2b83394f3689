//! Cron expressions: the 5-field Unix form, and the 6/7-field form with seconds (and years).

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

use crate::error::{Error, Result};

/// A parsed cron expression with the time zone it is read in.
#[derive(Debug, Clone)]
pub(crate) struct CronSchedule {
    schedule: cron::Schedule,
    zone: Zone,
}

/// The time zone a schedule is read in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Zone {
    Utc,
    Fixed(FixedOffset),
    /// An IANA zone, from the tz database embedded by the `tz` feature.
    #[cfg(feature = "tz")]
    Named(chrono_tz::Tz),
}

impl Zone {
    fn parse(name: &str) -> std::result::Result<Zone, String> {
        if matches!(name, "UTC" | "Etc/UTC" | "Z") {
            return Ok(Zone::Utc);
        }
        if name.starts_with(['+', '-']) {
            return FixedOffset::from_str(name)
                .map(Zone::Fixed)
                .map_err(|_| "a fixed offset is written `+HH:MM` or `-HH:MM`".to_owned());
        }
        #[cfg(feature = "tz")]
        {
            chrono_tz::Tz::from_str(name).map(Zone::Named).map_err(|_| "not in the IANA time zone database".to_owned())
        }
        #[cfg(not(feature = "tz"))]
        {
            Err("time zones by name need the `tz` feature of the `conveyor` crate (UTC and fixed offsets \
                 such as `+02:00` work without it)"
                .to_owned())
        }
    }
}

/// The first fire time of `s` strictly after `t`, read in `z` (see [`CronSchedule::next_after`]).
fn next_in<Z: TimeZone>(s: &cron::Schedule, t: DateTime<Utc>, z: &Z) -> Option<DateTime<Utc>> {
    s.after(&t.with_timezone(z)).take(1000).map(|d| d.with_timezone(&Utc)).find(|d| *d > t)
}

/// The last fire time of `s` strictly before `t`, read in `z`.
fn last_in<Z: TimeZone>(s: &cron::Schedule, t: DateTime<Utc>, z: &Z) -> Option<DateTime<Utc>> {
    s.after(&t.with_timezone(z)).rev().take(1000).map(|d| d.with_timezone(&Utc)).find(|d| *d < t)
}

impl CronSchedule {
    /// Parses `expr` (see [`PeriodicEntry`](super::PeriodicEntry) for the forms), read in UTC.
    pub(crate) fn parse(expr: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidSchedule { expr: expr.to_owned(), reason };
        let normalized = normalize(expr).map_err(bad)?;
        let schedule = cron::Schedule::from_str(&normalized).map_err(|e| bad(describe(&e.to_string(), &normalized)))?;
        let parsed = CronSchedule { schedule, zone: Zone::Utc };
        if parsed.next_after(Utc::now()).is_none() {
            return Err(bad("the expression never fires (an impossible date, or only past years)".into()));
        }
        Ok(parsed)
    }

    /// The same schedule read in the time zone `name`: `UTC`, a fixed offset (`+02:00`), or an
    /// IANA name (`Europe/Paris`, with the `tz` feature).
    pub(crate) fn in_zone(mut self, name: &str) -> Result<Self> {
        self.zone = Zone::parse(name).map_err(|reason| Error::InvalidTimeZone { name: name.to_owned(), reason })?;
        Ok(self)
    }

    /// The time zone's name.
    pub(crate) fn zone(&self) -> String {
        match self.zone {
            Zone::Utc => "UTC".to_owned(),
            Zone::Fixed(o) => o.to_string(),
            #[cfg(feature = "tz")]
            Zone::Named(tz) => tz.name().to_owned(),
        }
    }

    /// The first fire time strictly after `t`.
    ///
    /// Around a daylight-saving change the `cron` crate reads an ambiguous local time as its
    /// earlier instant, which can lie before `t`: such candidates are passed over, so fire times
    /// only move forward, and a local time that occurs twice fires once.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.zone {
            Zone::Utc => next_in(&self.schedule, t, &Utc),
            Zone::Fixed(o) => next_in(&self.schedule, t, o),
            #[cfg(feature = "tz")]
            Zone::Named(tz) => next_in(&self.schedule, t, tz),
        }
    }

    /// The last fire time strictly before `t`.
    pub(crate) fn last_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.zone {
            Zone::Utc => last_in(&self.schedule, t, &Utc),
            Zone::Fixed(o) => last_in(&self.schedule, t, o),
            #[cfg(feature = "tz")]
            Zone::Named(tz) => last_in(&self.schedule, t, tz),
        }
    }
}

/// Turns the accepted forms into the `cron` crate's (seconds first, days of week 1–7 from
/// Sunday): a 5-field expression gets second 0, and its Unix day-of-week numbers (0–7, Sunday
/// being 0 or 7) are translated.
fn normalize(expr: &str) -> std::result::Result<String, String> {
    let trimmed = expr.trim();
    if let Some(word) = trimmed.strip_prefix('@') {
        return match word {
            "yearly" | "annually" => Ok("@yearly".into()),
            "monthly" | "weekly" | "daily" | "hourly" => Ok(format!("@{word}")),
            "midnight" => Ok("@daily".into()),
            _ => Err(format!("unknown shorthand `@{word}` (known: @yearly, @monthly, @weekly, @daily, @hourly)")),
        };
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    match fields.len() {
        5 => {
            let days = unix_days(fields[4]).map_err(|e| format!("bad day-of-week field `{}`: {e}", fields[4]))?;
            Ok(format!("0 {} {} {} {} {days}", fields[0], fields[1], fields[2], fields[3]))
        }
        6 | 7 => Ok(fields.join(" ")),
        n => Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), or 6 or 7 with a seconds field \
             first (and a year last); found {n}"
        )),
    }
}

/// Translates a Unix day-of-week field (0–7, Sunday = 0 or 7, names, ranges, steps, lists)
/// into an explicit list in the `cron` crate's numbering (1–7, Sunday = 1).
fn unix_days(field: &str) -> std::result::Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let mut days = [false; 7];
    for part in field.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((b, s)) => {
                let step: u32 =
                    s.parse().ok().filter(|s| *s > 0).ok_or_else(|| format!("bad step `{s}` in `{part}`"))?;
                (b, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match base.split_once('-') {
            _ if base == "*" => (0, 6),
            Some((a, b)) => (day(a)?, day(b)?),
            None if part.contains('/') => (day(base)?, 6),
            None => (day(base)?, day(base)?),
        };
        if lo > hi {
            return Err(format!("day-of-week range `{base}` runs backwards"));
        }
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    let list: Vec<String> = (0..7).filter(|d| days[*d]).map(|d| (d + 1).to_string()).collect();
    Ok(list.join(","))
}

/// A Unix day of week: 0–7 or a three-letter English name.
fn day(s: &str) -> std::result::Result<u32, String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Ok(n) = s.parse::<u32>() {
        return if n <= 7 { Ok(n) } else { Err(format!("day of week {n} is out of range (0-7, Sunday is 0 or 7)")) };
    }
    let lower = s.to_ascii_lowercase();
    NAMES
        .iter()
        .position(|n| *n == lower)
        .map(|p| p as u32)
        .ok_or_else(|| format!("`{s}` is not a day of week (0-7 or sun, mon, ...)"))
}

/// The `cron` crate reports a syntax error as the expression with a caret under the culprit:
/// name the field the caret is in.
fn describe(message: &str, normalized: &str) -> String {
    const FIELDS: [&str; 7] = ["second", "minute", "hour", "day-of-month", "month", "day-of-week", "year"];
    let caret = message.lines().nth(1).and_then(|l| l.find('^'));
    let Some(col) = caret else { return message.replace('\n', " ") };
    let mut start = 0;
    for (i, field) in normalized.split(' ').enumerate() {
        if col < start + field.len() + 1 || i == FIELDS.len() - 1 {
            let name = FIELDS.get(i).copied().unwrap_or("last");
            return format!("bad {name} field `{field}`");
        }
        start += field.len() + 1;
    }
    "the expression ends too early".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_fields_fire_on_the_minute() {
        let s = CronSchedule::parse("*/10 * * * *").unwrap();
        assert_eq!(s.next_after(at("2026-01-05T10:03:07Z")), Some(at("2026-01-05T10:10:00Z")));
        assert_eq!(s.last_before(at("2026-01-05T10:03:07Z")), Some(at("2026-01-05T10:00:00Z")));
    }

    #[test]
    fn unix_days_of_week_are_translated() {
        // 2026-01-05 is a Monday.
        let monday = CronSchedule::parse("0 9 * * 1").unwrap();
        assert_eq!(monday.next_after(at("2026-01-03T00:00:00Z")), Some(at("2026-01-05T09:00:00Z")));
        for sunday in ["0 9 * * 0", "0 9 * * 7", "0 9 * * sun", "0 9 * * 6-7"] {
            let s = CronSchedule::parse(sunday).unwrap();
            let next = s.next_after(at("2026-01-03T10:00:00Z")).unwrap(); // after Saturday 09:00
            assert_eq!(next, at("2026-01-04T09:00:00Z"), "{sunday}");
        }
        assert_eq!(unix_days("1-5").unwrap(), "2,3,4,5,6");
        assert_eq!(unix_days("*/2").unwrap(), "1,3,5,7");
        assert_eq!(unix_days("MON,wed,5/2").unwrap(), "2,4,6");
    }

    #[test]
    fn seconds_form_and_shorthands() {
        let s = CronSchedule::parse("*/15 * * * * *").unwrap();
        assert_eq!(s.next_after(at("2026-01-05T10:00:01Z")), Some(at("2026-01-05T10:00:15Z")));
        let s = CronSchedule::parse("0 30 9 * * Mon-Fri 2026-2030").unwrap();
        assert_eq!(s.next_after(at("2026-01-03T00:00:00Z")), Some(at("2026-01-05T09:30:00Z")));
        assert!(CronSchedule::parse("@daily").is_ok());
        assert!(CronSchedule::parse("@midnight").is_ok());
    }

    #[test]
    fn fixed_offsets_and_utc_need_no_feature() {
        let s = CronSchedule::parse("0 9 * * *").unwrap().in_zone("+02:00").unwrap();
        assert_eq!(s.zone(), "+02:00");
        assert_eq!(s.next_after(at("2026-01-05T00:00:00Z")), Some(at("2026-01-05T07:00:00Z")));
        assert_eq!(CronSchedule::parse("0 9 * * *").unwrap().in_zone("UTC").unwrap().zone(), "UTC");
        let e = CronSchedule::parse("* * * * *").unwrap().in_zone("+25:00").unwrap_err();
        assert!(matches!(e, Error::InvalidTimeZone { .. }), "{e}");
    }

    #[cfg(feature = "tz")]
    #[test]
    fn time_zones_shift_fire_times() {
        let s = CronSchedule::parse("0 9 * * *").unwrap().in_zone("Europe/Paris").unwrap();
        assert_eq!(s.zone(), "Europe/Paris");
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(s.next_after(at("2026-01-05T00:00:00Z")), Some(at("2026-01-05T08:00:00Z")));
        assert_eq!(s.next_after(at("2026-07-06T00:00:00Z")), Some(at("2026-07-06T07:00:00Z")));
    }

    #[cfg(feature = "tz")]
    #[test]
    fn daylight_saving_changes_fire_once_and_move_forward() {
        // Europe/Paris falls back on 2026-10-25: 03:00 CEST (01:00 UTC) becomes 02:00 CET, so
        // 02:30 happens at 00:30 UTC and again at 01:30 UTC.
        let daily = CronSchedule::parse("30 2 * * *").unwrap().in_zone("Europe/Paris").unwrap();
        let first = daily.next_after(at("2026-10-24T12:00:00Z")).unwrap();
        let next = daily.next_after(first).unwrap();
        assert!(next > first + chrono::Duration::hours(12), "{first} then {next}");
        assert!(daily.last_before(at("2026-10-25T00:45:00Z")).unwrap() < at("2026-10-25T00:45:00Z"));
        let every10 = CronSchedule::parse("*/10 * * * *").unwrap().in_zone("Europe/Paris").unwrap();
        let mut t = at("2026-10-24T23:00:00Z");
        for _ in 0..30 {
            let n = every10.next_after(t).unwrap();
            assert!(n > t, "{n} after {t}");
            t = n;
        }
        // Spring forward (2026-03-29): 02:30 does not exist that day.
        let spring = daily.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(spring, at("2026-03-30T00:30:00Z"));
    }

    #[test]
    fn bad_input_is_a_typed_error_naming_the_expression() {
        let e = CronSchedule::parse("*/61 * * * *").unwrap_err().to_string();
        assert!(e.contains("bad minute field `*/61`"), "{e}");
        for expr in [
            "",
            "* * *",
            "61 * * * *",
            "0 0 25 * * *",
            "* * * * 8",
            "*/0 * * * *",
            "0 0 30 2 *",
            "@sometimes",
            "x * * * *",
        ] {
            match CronSchedule::parse(expr) {
                Err(Error::InvalidSchedule { expr: e, reason }) => {
                    assert_eq!(e, expr);
                    assert!(!reason.is_empty() && !reason.contains('\n'), "{expr}: {reason}");
                }
                other => panic!("{expr}: {other:?}"),
            }
        }
        let e = CronSchedule::parse("* * * * *").unwrap().in_zone("Mars/Olympus").unwrap_err();
        assert!(matches!(e, Error::InvalidTimeZone { ref name, .. } if name == "Mars/Olympus"), "{e}");
    }
}
