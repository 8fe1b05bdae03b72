//! How long the bookkeeping beside the log is kept, and the job that deletes what has expired.
//!
//! Stored answers, the ledger's own idempotency keys and the command journal grow with traffic;
//! each is kept for a configurable period and then deleted in small batches
//! ([`CommandService::expire`], run every minute by `serve`). Events are never deleted.
//!
//! What expiry means for a client: within the answers' period a retry with the same key gets
//! its first answer; once that answer has been deleted, the key is free again and a request
//! with it is a new command, decided on the store's state then (as with Stripe, whose keys
//! expire after 24 hours). contract §8 asks that keys be kept at least 24 hours, so a shorter period
//! is refused.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use planledger_store::Expiring;

use crate::service::{CommandService, ServiceError};

/// Rows deleted per statement: small enough that a batch holds its locks for milliseconds (and
/// SQLite's one writer for as long), large enough that a busy day's rows go in one run.
pub const BATCH: i64 = 1_000;
/// Batches per table per run: a backlog (the first run after an upgrade, or a shortened period)
/// is worked off over several runs rather than in one long burst.
const MAX_BATCHES_PER_RUN: usize = 100;

/// How long each kind of bookkeeping is kept; `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Stored first answers of clients' `Idempotency-Key`s (default 7 days, at least 24 hours).
    pub answers: Option<Duration>,
    /// The ledger's own idempotency keys: deadlines' and refunds' (default 7 days). The rules
    /// they back are `decide`'s, so expiring them changes no answer.
    pub keys: Option<Duration>,
    /// The command journal (default 90 days).
    pub journal: Option<Duration>,
    /// Stripe's events once applied, ignored or stale (default 90 days); parked and failed
    /// ones are kept until an operator acts.
    pub stripe_events: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Self { answers: Some(days(7)), keys: Some(days(7)), journal: Some(days(90)), stripe_events: Some(days(90)) }
    }
}

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

impl Retention {
    /// contract §8: an answer is kept at least this long.
    pub const MIN_ANSWERS: Duration = Duration::from_secs(86_400);

    /// Keeps everything (tests that must not lose their bookkeeping, and operators who archive
    /// it another way).
    pub const FOREVER: Retention = Retention { answers: None, keys: None, journal: None, stripe_events: None };

    pub fn of(&self, what: Expiring) -> Option<Duration> {
        match what {
            Expiring::Answers => self.answers,
            Expiring::Keys => self.keys,
            Expiring::Journal => self.journal,
            Expiring::StripeEvents => self.stripe_events,
        }
    }

    /// Refuses periods that would break a promise: answers kept less than 24 hours.
    pub fn check(&self) -> Result<(), String> {
        match self.answers {
            Some(keep) if keep < Self::MIN_ANSWERS => Err(format!(
                "stored answers must be kept at least 24 hours (contract §8: keys are kept at least 24 hours), not {}",
                describe(Some(keep))
            )),
            _ => Ok(()),
        }
    }

    /// Rows of `what` older than this are expired at `now`; `None`: kept forever. (A stored
    /// answer older than this is not replayed, even from a worker's memory.)
    pub fn expired_before(&self, what: Expiring, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.of(what).and_then(|keep| TimeDelta::from_std(keep).ok()).map(|keep| now - keep)
    }
}

/// Parses a retention period: `forever`, or a whole number with a unit: `d`, `h`, `m` or `s`
/// (`7d`, `24h`, `90d`).
pub fn parse_period(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("forever") {
        return Ok(None);
    }
    let unit = text.chars().last().ok_or("a period is needed: forever, or a number and a unit like 7d")?;
    let seconds = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(format!("{text:?} is not forever, or a number and a unit (d, h, m, s) like 7d")),
    };
    let count: u64 = text[..text.len() - 1]
        .parse()
        .map_err(|_| format!("{text:?} is not forever, or a whole number and a unit (d, h, m, s) like 7d"))?;
    match count.checked_mul(seconds) {
        Some(0) => Err(format!("{text:?}: a period of zero would delete what was just written; use forever or more")),
        Some(total) => Ok(Some(Duration::from_secs(total))),
        None => Err(format!("{text:?} is too long; use forever")),
    }
}

/// A period as written in configuration.
pub fn describe(period: Option<Duration>) -> String {
    match period {
        None => "forever".to_owned(),
        Some(keep) => {
            let s = keep.as_secs();
            match s {
                s if s % 86_400 == 0 => format!("{}d", s / 86_400),
                s if s % 3_600 == 0 => format!("{}h", s / 3_600),
                s if s % 60 == 0 => format!("{}m", s / 60),
                s => format!("{s}s"),
            }
        }
    }
}

/// What one run of [`CommandService::expire`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub answers: u64,
    pub keys: u64,
    pub journal: u64,
    pub stripe_events: u64,
}

impl RetentionReport {
    fn add(&mut self, what: Expiring, count: u64) {
        match what {
            Expiring::Answers => self.answers += count,
            Expiring::Keys => self.keys += count,
            Expiring::Journal => self.journal += count,
            Expiring::StripeEvents => self.stripe_events += count,
        }
    }
}

impl CommandService {
    /// Deletes the bookkeeping older than the service's [`Retention`], as of the service's clock,
    /// in batches of [`BATCH`] rows; safe on several nodes at once. A backlog larger than one
    /// run's share is left for the next run.
    pub async fn expire(&self) -> Result<RetentionReport, ServiceError> {
        let retention = self.retention();
        let now = self.clock().now();
        let mut report = RetentionReport::default();
        let outcome = async {
            for what in Expiring::ALL {
                let Some(before) = retention.expired_before(what, now) else { continue };
                for _ in 0..MAX_BATCHES_PER_RUN {
                    let deleted = self.log().delete_expired(what, before, BATCH).await?;
                    report.add(what, deleted);
                    self.metrics().expired(what).fetch_add(deleted, Ordering::Relaxed);
                    if deleted < BATCH as u64 {
                        break;
                    }
                    // Let the command path's writes in between batches (SQLite has one writer).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Ok::<_, ServiceError>(())
        }
        .await;
        self.metrics().retention_runs.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            self.metrics().retention_failures.fetch_add(1, Ordering::Relaxed);
        }
        outcome.map(|()| report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_read_as_operators_write_them() {
        assert_eq!(parse_period("7d"), Ok(Some(days(7))));
        assert_eq!(parse_period("24h"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(parse_period(" 90d "), Ok(Some(days(90))));
        assert_eq!(parse_period("30m"), Ok(Some(Duration::from_secs(1_800))));
        assert_eq!(parse_period("Forever"), Ok(None));
        for bad in ["", "7", "d", "7w", "-1d", "1.5d", "0d", "99999999999999999d"] {
            assert!(parse_period(bad).is_err(), "{bad:?} was accepted");
        }
        for period in [Some(days(7)), Some(Duration::from_secs(3_600)), Some(Duration::from_secs(90)), None] {
            assert_eq!(parse_period(&describe(period)), Ok(period));
        }
    }

    #[test]
    fn answers_are_kept_at_least_a_day() {
        assert!(Retention::default().check().is_ok());
        assert!(Retention::FOREVER.check().is_ok());
        let short = Retention { answers: Some(Duration::from_secs(3_600)), ..Retention::default() };
        assert!(short.check().unwrap_err().contains("at least 24 hours"));
    }
}
