//! Schedule triggers, without I/O: `{"type": "schedule", "cron": "*/5 * * * *", "timezone":
//! "Europe/Paris", "catch_up": "latest" | "none"}` parsed and checked (standard 5-field cron or a
//! nickname such as `@hourly`, IANA time zones), the ticks it produces, and the dedup key that
//! makes each tick create exactly one run however many processes see it.
//!
//! Cron fields are read in the schedule's time zone, with croner's daylight-saving rules: a
//! fixed-time tick that falls into a skipped hour (spring forward) runs at the first valid time
//! after the gap; a fixed-time tick in a repeated hour (fall back) runs once, at its first
//! occurrence; interval and wildcard patterns (`*/5`, `*`) skip ticks inside a gap and run for
//! each matching wall-clock time in a repeated hour.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::{Value, json};
use uuid::Uuid;

pub use crate::db::schedule::{SCHEDULE_SOURCE, TICK_EVENT_KEY, tick_dedup_key};

/// What happens to ticks missed while no process was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// One run for the latest missed tick (the default).
    Latest,
    /// Missed ticks are skipped.
    None,
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    /// The pattern as given.
    pub pattern: String,
    /// What to do with missed ticks.
    pub catch_up: CatchUp,
}

impl Schedule {
    /// Parses a schedule's fields; each problem comes back with its field (`trigger.cron`, …).
    pub fn parse(
        cron: Option<&str>,
        timezone: Option<&str>,
        catch_up: Option<&str>,
    ) -> Result<Schedule, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let parsed = match cron {
            None => {
                errors.push(("trigger.cron", "is required for a schedule".to_owned()));
                None
            }
            Some(pattern) => match parse_cron(pattern) {
                Ok(c) => Some(c),
                Err(why) => {
                    errors.push(("trigger.cron", why));
                    None
                }
            },
        };
        let tz = match timezone {
            None => Some(Tz::UTC),
            Some(name) => match Tz::from_str(name) {
                Ok(tz) => Some(tz),
                Err(_) => {
                    errors.push((
                        "trigger.timezone",
                        format!("`{name}` is not an IANA time zone (e.g. Europe/Paris, UTC)"),
                    ));
                    None
                }
            },
        };
        let catch_up = match catch_up {
            None | Some("latest") => Some(CatchUp::Latest),
            Some("none") => Some(CatchUp::None),
            Some(_) => {
                errors.push(("trigger.catch_up", "must be `latest` or `none`".to_owned()));
                None
            }
        };
        match (parsed, tz, catch_up) {
            (Some(cron), Some(tz), Some(catch_up)) if errors.is_empty() => Ok(Schedule {
                pattern: cron.pattern.to_string(),
                cron,
                tz,
                catch_up,
            }),
            _ => Err(errors),
        }
    }

    /// The schedule of a stored trigger: `None` when it is not a schedule; an error string when
    /// it is one that does not parse.
    pub fn from_trigger(trigger: &Value) -> Option<Result<Schedule, String>> {
        if trigger.get("type").and_then(Value::as_str) != Some("schedule") {
            return None;
        }
        let field = |name: &str| trigger.get(name).and_then(Value::as_str);
        Some(
            Schedule::parse(field("cron"), field("timezone"), field("catch_up")).map_err(|e| {
                e.into_iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        )
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&whole_seconds(t).with_timezone(&self.tz), false)
            .ok()
            .map(|d| whole_seconds(d.with_timezone(&Utc)))
    }

    /// The latest tick at or before `t`.
    pub fn latest_until(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&whole_seconds(t).with_timezone(&self.tz), true)
            .ok()
            .map(|d| whole_seconds(d.with_timezone(&Utc)))
    }

    /// The next `n` ticks after `t`.
    pub fn next_ticks(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::with_capacity(n);
        let mut at = t;
        while ticks.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    ticks.push(next);
                    at = next;
                }
                None => break,
            }
        }
        ticks
    }

    /// The tick's payload (what the run's worker reads).
    pub fn payload(&self, automation_id: Uuid, tick: DateTime<Utc>) -> Value {
        json!({
            "automation_id": automation_id,
            "tick": tick,
            "local_time": tick.with_timezone(&self.tz).to_rfc3339(),
            "cron": self.pattern,
            "timezone": self.tz.name(),
        })
    }
}

/// `t` without its fraction of a second: croner keeps the start time's fraction in what it
/// finds, and a tick must be the same instant (hence the same dedup key) whenever it is computed.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let fields = pattern.split_whitespace().count();
    if !pattern.trim_start().starts_with('@') && fields != 5 {
        return Err(format!(
            "must have 5 fields (minute hour day-of-month month day-of-week), found {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| format!("not a valid cron pattern: {e}"))
}

/// What makes `pattern` (one that parses) unfit for a new or changed schedule: an extension of
/// some cron implementations, or no date it ever matches. Checked by the API only: a schedule
/// stored before these rules keeps running.
pub fn standard_cron_problem(pattern: &str) -> Option<String> {
    if let Some(why) = extension_in(pattern) {
        return Some(why);
    }
    let cron = parse_cron(pattern).ok()?;
    cron.find_next_occurrence(&Utc::now(), false)
        .is_err()
        .then(|| "never matches a date (e.g. the 30th of February)".to_owned())
}

/// Month and weekday names, the only words standard cron takes.
const NAMES: [&str; 19] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC", "SUN",
    "MON", "TUE", "WED", "THU", "FRI", "SAT",
];

/// Why a 5-field pattern is not standard cron: the extensions `L`, `W`, `#` and `?` that some
/// implementations add (the parser would take them), or a word that is not a month or weekday.
fn extension_in(pattern: &str) -> Option<String> {
    if pattern.trim_start().starts_with('@') {
        return None;
    }
    for (field, text) in ["minute", "hour", "day-of-month", "month", "day-of-week"]
        .iter()
        .zip(pattern.split_whitespace())
    {
        let mut rest = text.to_ascii_uppercase();
        for name in NAMES {
            rest = rest.replace(name, "");
        }
        if let Some(c) = rest
            .chars()
            .find(|c| c.is_ascii_alphabetic() || matches!(c, '#' | '?'))
        {
            return Some(format!(
                "`{c}` in the {field} field is not standard 5-field cron (digits, `*`, `,`, `-`, `/`, month and weekday names)"
            ));
        }
    }
    None
}

/// The ticks to fire for a schedule first seen (after a start, or after it was created) at `now`:
/// with `catch_up: latest` the latest tick at or before `now` if it is after the automation's
/// creation; none otherwise.
pub fn catch_up_tick(
    schedule: &Schedule,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match schedule.catch_up {
        CatchUp::None => None,
        CatchUp::Latest => schedule.latest_until(now).filter(|t| *t > created_at),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_and_names_bad_fields() {
        let s = Schedule::parse(Some("*/5 * * * *"), Some("Europe/Paris"), None).unwrap();
        assert_eq!(s.catch_up, CatchUp::Latest);
        let errors =
            Schedule::parse(Some("* * * * * *"), Some("Mars/Olympus"), Some("all")).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            ["trigger.cron", "trigger.timezone", "trigger.catch_up"]
        );
        assert!(Schedule::parse(Some("61 * * * *"), None, None).is_err());
        assert!(Schedule::parse(None, None, None).is_err());
        assert!(Schedule::parse(Some("@hourly"), None, Some("none")).is_ok());
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        let s = Schedule::parse(Some("0 9 * * *"), Some("Europe/Paris"), None).unwrap();
        // 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            s.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T07:00:00Z"))
        );
        let every5 = Schedule::parse(Some("*/5 * * * *"), None, None).unwrap();
        assert_eq!(
            every5.next_ticks(at("2026-01-01T00:00:00Z"), 2),
            vec![at("2026-01-01T00:05:00Z"), at("2026-01-01T00:10:00Z")]
        );
        assert_eq!(
            every5.latest_until(at("2026-01-01T00:07:00Z")),
            Some(at("2026-01-01T00:05:00Z"))
        );
        // The same tick whatever the fraction of a second it is computed at.
        assert_eq!(
            every5.latest_until(at("2026-01-01T00:05:00.746Z")),
            Some(at("2026-01-01T00:05:00Z"))
        );
        assert_eq!(
            every5.next_after(at("2026-01-01T00:04:59.999Z")),
            Some(at("2026-01-01T00:05:00Z"))
        );
    }

    #[test]
    fn daylight_saving_gaps_and_overlaps() {
        // Paris springs forward on 2026-03-29 at 02:00 → 03:00: a 02:30 job runs right after
        // the gap, at 03:00 local (01:00 UTC).
        let fixed = Schedule::parse(Some("30 2 * * *"), Some("Europe/Paris"), None).unwrap();
        let tick = fixed.next_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(tick, at("2026-03-29T01:00:00Z"));
        // Falls back on 2026-10-25 at 03:00 → 02:00: the 02:30 job runs once.
        let ticks = fixed.next_ticks(at("2026-10-24T12:00:00Z"), 2);
        assert_eq!(ticks[0], at("2026-10-25T00:30:00Z"));
        assert_eq!(ticks[1], at("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn catch_up_fires_only_the_latest_tick_after_creation() {
        let s = Schedule::parse(Some("*/5 * * * *"), None, None).unwrap();
        let created = at("2026-01-01T00:00:30Z");
        assert_eq!(
            catch_up_tick(&s, created, at("2026-01-01T00:17:00Z")),
            Some(at("2026-01-01T00:15:00Z"))
        );
        assert_eq!(catch_up_tick(&s, created, at("2026-01-01T00:03:00Z")), None);
        let none = Schedule::parse(Some("*/5 * * * *"), None, Some("none")).unwrap();
        assert_eq!(
            catch_up_tick(&none, created, at("2026-01-01T00:17:00Z")),
            None
        );
        assert_ne!(
            tick_dedup_key(Uuid::nil(), at("2026-01-01T00:05:00Z")),
            tick_dedup_key(Uuid::nil(), at("2026-01-01T00:10:00Z"))
        );
    }
}
