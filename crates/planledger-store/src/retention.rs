//! Retention of the bookkeeping kept beside the log: the tables that would otherwise grow with
//! traffic forever, deleted by age in small batches.
//!
//! Only what [`Expiring`] names can be deleted: stored first answers of clients' keys, the
//! ledger's own idempotency keys, the command journal, and settled Stripe events. Events have no variant here, so no
//! caller can ask for them (the log's triggers refuse it anyway): the log is the truth and is
//! kept whole.

use chrono::{DateTime, Utc};

use crate::{AnyEventLog, StoreError};

/// A table that is deleted by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiring {
    /// `idempotent_answers`: the first answer to each client's `Idempotency-Key`.
    Answers,
    /// `ledger_idempotency_keys`: the ledger's own keys (deadlines, refunds), which back rules
    /// `decide` already states; the version check stands behind them too.
    Keys,
    /// `command_journal`: every command with its outcome.
    Journal,
    /// `stripe_events`: Stripe's events once settled (applied, ignored, stale); parked and
    /// failed ones wait for an operator however old they are.
    StripeEvents,
}

impl Expiring {
    pub const ALL: [Expiring; 4] = [Expiring::Answers, Expiring::Keys, Expiring::Journal, Expiring::StripeEvents];

    /// A short name, for metrics' labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            Expiring::Answers => "answers",
            Expiring::Keys => "keys",
            Expiring::Journal => "journal",
            Expiring::StripeEvents => "stripe_events",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Expiring::Answers => "idempotent_answers",
            Expiring::Keys => "ledger_idempotency_keys",
            Expiring::Journal => "command_journal",
            Expiring::StripeEvents => "stripe_events",
        }
    }

    /// Rows that are kept whatever their age.
    fn kept(self) -> &'static str {
        match self {
            Expiring::StripeEvents => "AND status IN ('applied', 'ignored', 'stale')",
            _ => "",
        }
    }

    /// The indexed column holding a row's age (PostgreSQL `timestamptz`, SQLite microseconds).
    fn age_column(self, log: &AnyEventLog) -> &'static str {
        match (self, log) {
            (Expiring::Answers | Expiring::Keys, AnyEventLog::Postgres(_)) => "created_at",
            (Expiring::Answers | Expiring::Keys, AnyEventLog::Sqlite(_)) => "created_at_us",
            (Expiring::Journal, AnyEventLog::Postgres(_)) => "recorded_at",
            (Expiring::Journal, AnyEventLog::Sqlite(_)) => "recorded_at_us",
            (Expiring::StripeEvents, AnyEventLog::Postgres(_)) => "received_at",
            (Expiring::StripeEvents, AnyEventLog::Sqlite(_)) => "received_at_us",
        }
    }
}

impl AnyEventLog {
    /// Deletes at most `limit` rows of `what` older than `before`, in one short transaction, and
    /// returns how many went. A batch is a range scan of the age index. On PostgreSQL rows
    /// another node is deleting are skipped, not waited for, so nodes running retention at once
    /// share the work.
    pub async fn delete_expired(&self, what: Expiring, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let (table, column, kept) = (what.table(), what.age_column(self), what.kept());
        Ok(match self {
            AnyEventLog::Postgres(pg) => sqlx::query(&format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM {table} WHERE {column} < $1 {kept} LIMIT $2 FOR UPDATE SKIP LOCKED))"
            ))
            .bind(before)
            .bind(limit)
            .execute(pg.pool())
            .await?
            .rows_affected(),
            AnyEventLog::Sqlite(lite) => sqlx::query(&format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {column} < ? {kept} LIMIT ?)"
            ))
            .bind(before.timestamp_micros())
            .bind(limit)
            .execute(lite.writer())
            .await?
            .rows_affected(),
        })
    }
}
