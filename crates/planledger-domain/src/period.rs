//! Quota periods: half-open windows `[start, end)` in a store's time zone.
//!
//! Every window is computed from its anchor as anchor + n intervals, never by stepping from the
//! previous window, so month ends (31 January, 29 February) never drift: the window after
//! "31 January" starts on the last day of February and the one after that on 31 March.

use chrono::{DateTime, Datelike, Days as ChronoDays, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::catalog::{Anchor, Period};

/// One quota window. `start` and `end` are `None` for a lifetime limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub period: Period,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl Window {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| s <= at) && self.end.is_none_or(|e| at < e)
    }

    /// The local days `[first, end)` the window covers in `tz`; `None` for a lifetime window.
    pub fn local_days(&self, tz: Tz) -> Option<(NaiveDate, NaiveDate)> {
        Some((local_day(self.start?, tz), local_day(self.end?, tz)))
    }
}

/// The store's local calendar day of an instant: the unit usage is kept in.
pub fn local_day(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The instant a local wall-clock time names in `tz`. In a daylight-saving gap (the clock jumps
/// over it) the window starts at the first instant after the gap; when a time occurs twice, at
/// the first of them.
fn instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    // Gaps are at most a few hours; step forward by minutes until the wall time exists.
    for _ in 0..(24 * 60) {
        if let Some(at) = tz.from_local_datetime(&probe).earliest() {
            return at.with_timezone(&Utc);
        }
        probe += chrono::TimeDelta::minutes(1);
    }
    Utc.from_utc_datetime(&local)
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(NaiveTime::MIN)
}

/// The `n`-th month after `anchor` (local), with the day clamped to the month's length.
fn add_months(anchor: NaiveDateTime, n: i64) -> Option<NaiveDateTime> {
    if n >= 0 {
        anchor.checked_add_months(Months::new(u32::try_from(n).ok()?))
    } else {
        anchor.checked_sub_months(Months::new(u32::try_from(-n).ok()?))
    }
}

/// The window of `period` that contains `now`, for a store in `tz` on a plan with `anchor`.
/// `billing_anchor` is the store's billing anchor (used only by subscription-anchored months).
///
/// Every window starts and ends at a local midnight (anchored months too, on the anchor's day),
/// so the usage of any window is the sum of whole local days: what lets usage carry across a
/// change of period kind or anchor (see `state::ActionUsage`).
pub fn window_at(
    period: Period,
    now: DateTime<Utc>,
    tz: Tz,
    anchor: Anchor,
    billing_anchor: Option<DateTime<Utc>>,
) -> Window {
    let local = now.with_timezone(&tz).naive_local();
    let (start, end) = match period {
        Period::Lifetime => return Window { period, start: None, end: None },
        Period::Day => {
            let day = local.date();
            (midnight(day), midnight(day + ChronoDays::new(1)))
        }
        Period::Week => {
            let monday = local.date() - ChronoDays::new(u64::from(local.weekday().num_days_from_monday()));
            (midnight(monday), midnight(monday + ChronoDays::new(7)))
        }
        Period::Month => match (anchor, billing_anchor) {
            (Anchor::Subscription, Some(started)) => anchored_month(tz, started, local),
            _ => {
                let first = local.date().with_day(1).unwrap_or(local.date());
                let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
                (midnight(first), midnight(next))
            }
        },
    };
    Window { period, start: Some(instant(tz, start)), end: Some(instant(tz, end)) }
}

/// The month window counted from the local midnight of `started`'s day (anchor + n months) that
/// holds `local`.
fn anchored_month(tz: Tz, started: DateTime<Utc>, local: NaiveDateTime) -> (NaiveDateTime, NaiveDateTime) {
    let anchor = midnight(started.with_timezone(&tz).date_naive());
    let months_between =
        i64::from(local.year() - anchor.year()) * 12 + i64::from(local.month()) - i64::from(anchor.month());
    // The estimate is off by at most one either way; settle it against the real boundaries.
    let mut n = months_between;
    loop {
        let (Some(start), Some(end)) = (add_months(anchor, n), add_months(anchor, n + 1)) else {
            return (local, local);
        };
        if local < start {
            n -= 1;
        } else if local >= end {
            n += 1;
        } else {
            return (start, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(period: Period, now: &str, tz: Tz) -> (String, String) {
        let w = window_at(period, utc(now), tz, Anchor::Calendar, None);
        (w.start.unwrap().to_rfc3339(), w.end.unwrap().to_rfc3339())
    }

    fn anchored(started: &str, now: &str) -> (String, String) {
        let w = window_at(Period::Month, utc(now), Tz::UTC, Anchor::Subscription, Some(utc(started)));
        (w.start.unwrap().to_rfc3339(), w.end.unwrap().to_rfc3339())
    }

    #[test]
    fn calendar_months_are_half_open() {
        assert_eq!(
            window(Period::Month, "2026-01-31T23:59:59Z", Tz::UTC),
            ("2026-01-01T00:00:00+00:00".into(), "2026-02-01T00:00:00+00:00".into())
        );
        assert_eq!(
            window(Period::Month, "2026-02-01T00:00:00Z", Tz::UTC).0,
            "2026-02-01T00:00:00+00:00",
            "the end belongs to the next window"
        );
        let last_second = window_at(Period::Month, utc("2026-03-31T23:59:59.999999Z"), Tz::UTC, Anchor::Calendar, None);
        assert!(
            last_second.contains(utc("2026-03-31T23:59:59.999999Z"))
                && !last_second.contains(utc("2026-04-01T00:00:00Z"))
        );
        assert_eq!(window(Period::Month, "2026-12-15T00:00:00Z", Tz::UTC).1, "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn a_leap_february_has_29_days() {
        assert_eq!(
            window(Period::Month, "2028-02-29T12:00:00Z", Tz::UTC),
            ("2028-02-01T00:00:00+00:00".into(), "2028-03-01T00:00:00+00:00".into())
        );
        assert_eq!(window(Period::Day, "2028-02-29T23:00:00Z", Tz::UTC).1, "2028-03-01T00:00:00+00:00");
    }

    #[test]
    fn anchored_months_from_31_january_never_drift() {
        let started = "2026-01-31T10:00:00Z";
        assert_eq!(
            anchored(started, "2026-02-15T00:00:00Z"),
            ("2026-01-31T00:00:00+00:00".into(), "2026-02-28T00:00:00+00:00".into()),
            "an anchored month starts at midnight of the anchor's day"
        );
        assert_eq!(
            anchored(started, "2026-03-01T00:00:00Z"),
            ("2026-02-28T00:00:00+00:00".into(), "2026-03-31T00:00:00+00:00".into()),
            "back to the 31st after February"
        );
        assert_eq!(
            anchored(started, "2026-04-30T10:00:00Z"),
            ("2026-04-30T00:00:00+00:00".into(), "2026-05-31T00:00:00+00:00".into())
        );
        assert_eq!(
            anchored("2028-01-31T00:00:00Z", "2028-02-29T12:00:00Z").0,
            "2028-02-29T00:00:00+00:00",
            "29 February in a leap year"
        );
        assert_eq!(
            anchored(started, "2026-01-30T23:59:59Z").1,
            "2026-01-31T00:00:00+00:00",
            "before the anchor counts backwards"
        );
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        // 2026-01-01 is a Thursday: its ISO week began on Monday 2025-12-29.
        assert_eq!(
            window(Period::Week, "2026-01-01T08:00:00Z", Tz::UTC),
            ("2025-12-29T00:00:00+00:00".into(), "2026-01-05T00:00:00+00:00".into())
        );
        assert_eq!(window(Period::Week, "2026-01-04T23:59:59Z", Tz::UTC).1, "2026-01-05T00:00:00+00:00");
    }

    #[test]
    fn calendar_periods_follow_the_store_time_zone() {
        // 23:30 UTC on 31 January is already 1 February in Paris.
        let (start, end) = window(Period::Month, "2026-01-31T23:30:00Z", chrono_tz::Europe::Paris);
        assert_eq!((start.as_str(), end.as_str()), ("2026-01-31T23:00:00+00:00", "2026-02-28T23:00:00+00:00"));
    }

    #[test]
    fn a_daylight_saving_day_is_23_or_25_hours_long() {
        // Europe/Paris springs forward on 2026-03-29 and falls back on 2026-10-25.
        let w = window_at(Period::Day, utc("2026-03-29T12:00:00Z"), chrono_tz::Europe::Paris, Anchor::Calendar, None);
        assert_eq!(w.end.unwrap() - w.start.unwrap(), chrono::TimeDelta::hours(23));
        let w = window_at(Period::Day, utc("2026-10-25T12:00:00Z"), chrono_tz::Europe::Paris, Anchor::Calendar, None);
        assert_eq!(w.end.unwrap() - w.start.unwrap(), chrono::TimeDelta::hours(25));
        // A month that contains the change still starts at local midnight on both ends.
        assert_eq!(
            window(Period::Month, "2026-03-15T00:00:00Z", chrono_tz::Europe::Paris),
            ("2026-02-28T23:00:00+00:00".into(), "2026-03-31T22:00:00+00:00".into())
        );
    }

    #[test]
    fn a_midnight_that_does_not_exist_starts_the_day_after_the_gap() {
        // America/Santiago skips 00:00-01:00 when DST starts (2026-09-06).
        let w =
            window_at(Period::Day, utc("2026-09-06T12:00:00Z"), chrono_tz::America::Santiago, Anchor::Calendar, None);
        assert_eq!(
            w.start.unwrap().with_timezone(&chrono_tz::America::Santiago).naive_local().time(),
            NaiveTime::from_hms_opt(1, 0, 0).unwrap()
        );
    }

    #[test]
    fn lifetime_has_no_bounds() {
        let w = window_at(Period::Lifetime, utc("2026-01-01T00:00:00Z"), Tz::UTC, Anchor::Calendar, None);
        assert_eq!((w.start, w.end), (None, None));
    }
}
