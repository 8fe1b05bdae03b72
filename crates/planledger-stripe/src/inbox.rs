//! The inbox: every verified Stripe event stored once (unique on Stripe's event id) with what
//! became of it, and the newest state applied to each subscription (its watermark).
//!
//! Both backends; times are read back as microseconds on both, so one row type serves.

use chrono::{DateTime, Utc};
use planledger_store::{AnyEventLog, StoreError};

use crate::event::StripeEvent;

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxStatus {
    /// Stored, not applied yet.
    Received,
    /// Applied: the store is in the state the event says (or was already).
    Applied,
    /// Not an event planledger applies.
    Ignored,
    /// Older than the newest event applied to its subscription: nothing to do.
    Stale,
    /// Cannot be applied as it is (no store named, a price that maps to no plan, a refusal):
    /// waits for an operator's retry.
    Parked,
    /// Applying it failed (the database was away, the store kept changing): retried by itself.
    Failed,
}

impl InboxStatus {
    pub const ALL: [InboxStatus; 6] = [
        InboxStatus::Received,
        InboxStatus::Applied,
        InboxStatus::Ignored,
        InboxStatus::Stale,
        InboxStatus::Parked,
        InboxStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Received => "received",
            InboxStatus::Applied => "applied",
            InboxStatus::Ignored => "ignored",
            InboxStatus::Stale => "stale",
            InboxStatus::Parked => "parked",
            InboxStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<InboxStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEvent {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub payload: String,
    pub received_at: DateTime<Utc>,
    pub deliveries: i64,
    pub status: InboxStatus,
    pub detail: Option<String>,
    pub store_id: Option<String>,
    pub subscription_id: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
}

type Row = (
    i64,
    String,
    String,
    i64,
    bool,
    String,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
);

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn from_row(row: Row) -> Result<InboxEvent, StoreError> {
    let (
        seq,
        event_id,
        event_type,
        created,
        livemode,
        payload,
        received,
        deliveries,
        status,
        detail,
        store,
        sub,
        attempts,
        next,
        applied,
    ) = row;
    Ok(InboxEvent {
        seq,
        status: InboxStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("stripe event {event_id}: status {status:?}")))?,
        event_id,
        event_type,
        created: time(created),
        livemode,
        payload,
        received_at: time(received),
        deliveries,
        detail,
        store_id: store,
        subscription_id: sub,
        attempts,
        next_attempt_at: next.map(time),
        applied_at: applied.map(time),
    })
}

/// The columns of [`Row`], times as microseconds.
const COLUMNS_PG: &str = "seq, event_id, event_type, (extract(epoch FROM created_at) * 1000000)::bigint, livemode, \
    payload, (extract(epoch FROM received_at) * 1000000)::bigint, deliveries::bigint, status, detail, store_id, \
    subscription_id, attempts::bigint, (extract(epoch FROM next_attempt_at) * 1000000)::bigint, \
    (extract(epoch FROM applied_at) * 1000000)::bigint";
const COLUMNS_SQLITE: &str =
    "seq, event_id, event_type, created_at_us, livemode, payload, received_at_us, deliveries, \
    status, detail, store_id, subscription_id, attempts, next_attempt_at_us, applied_at_us";

async fn rows(
    log: &AnyEventLog,
    sql_pg: &str,
    sql_sqlite: &str,
    binds: Binds<'_>,
) -> Result<Vec<InboxEvent>, StoreError> {
    let rows: Vec<Row> = match log {
        AnyEventLog::Postgres(pg) => {
            let sql = sql_pg.replace("{columns}", COLUMNS_PG);
            binds.pg(sqlx::query_as(&sql)).fetch_all(pg.pool()).await?
        }
        AnyEventLog::Sqlite(lite) => {
            let sql = sql_sqlite.replace("{columns}", COLUMNS_SQLITE);
            binds.sqlite(sqlx::query_as(&sql)).fetch_all(lite.readers()).await?
        }
    };
    rows.into_iter().map(from_row).collect()
}

/// The values a listing binds, in order, whichever the backend.
enum Bind<'a> {
    Text(Option<&'a str>),
    Int(i64),
    Time(DateTime<Utc>),
}

struct Binds<'a>(Vec<Bind<'a>>);

impl<'a> Binds<'a> {
    fn pg(
        self,
        mut query: sqlx::query::QueryAs<'a, sqlx::Postgres, Row, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'a, sqlx::Postgres, Row, sqlx::postgres::PgArguments> {
        for bind in self.0 {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(n) => query.bind(n),
                Bind::Time(at) => query.bind(at),
            };
        }
        query
    }

    fn sqlite(
        self,
        mut query: sqlx::query::QueryAs<'a, sqlx::Sqlite, Row, sqlx::sqlite::SqliteArguments<'a>>,
    ) -> sqlx::query::QueryAs<'a, sqlx::Sqlite, Row, sqlx::sqlite::SqliteArguments<'a>> {
        for bind in self.0 {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Int(n) => query.bind(n),
                Bind::Time(at) => query.bind(micros(at)),
            };
        }
        query
    }
}

/// Stores a verified event, once: answers `true` if it is new, `false` for a redelivery (whose
/// delivery is counted, nothing else).
pub async fn store(
    log: &AnyEventLog,
    event: &StripeEvent,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(match log {
        AnyEventLog::Postgres(pg) => {
            // `xmax = 0` on the row returned: it was inserted now, not updated.
            sqlx::query_scalar(
                "INSERT INTO stripe_events (event_id, event_type, created_at, livemode, payload, received_at, status, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'received', $6)
                 ON CONFLICT (event_id) DO UPDATE SET deliveries = stripe_events.deliveries + 1
                 RETURNING xmax = 0",
            )
            .bind(&event.id)
            .bind(&event.kind)
            .bind(event.created)
            .bind(event.livemode)
            .bind(payload)
            .bind(now)
            .fetch_one(pg.pool())
            .await?
        }
        AnyEventLog::Sqlite(lite) => {
            let mut tx = lite.writer().begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO stripe_events (event_id, event_type, created_at_us, livemode, payload, received_at_us, status, next_attempt_at_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'received', ?6) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(&event.id)
            .bind(&event.kind)
            .bind(micros(event.created))
            .bind(event.livemode)
            .bind(payload)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !inserted {
                sqlx::query("UPDATE stripe_events SET deliveries = deliveries + 1 WHERE event_id = ?")
                    .bind(&event.id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            inserted
        }
    })
}

/// Events to apply now (received, or failed and due again), oldest first by Stripe's time.
pub async fn due(log: &AnyEventLog, now: DateTime<Utc>, limit: i64) -> Result<Vec<InboxEvent>, StoreError> {
    rows(
        log,
        "SELECT {columns} FROM stripe_events WHERE status IN ('received', 'failed') AND next_attempt_at <= $1
         ORDER BY created_at, seq LIMIT $2",
        "SELECT {columns} FROM stripe_events WHERE status IN ('received', 'failed') AND next_attempt_at_us <= ?1
         ORDER BY created_at_us, seq LIMIT ?2",
        Binds(vec![Bind::Time(now), Bind::Int(limit)]),
    )
    .await
}

/// Stored events (of one status, if given) after `after` in the order received.
pub async fn list(
    log: &AnyEventLog,
    status: Option<InboxStatus>,
    after: i64,
    limit: i64,
) -> Result<Vec<InboxEvent>, StoreError> {
    rows(
        log,
        "SELECT {columns} FROM stripe_events WHERE ($1::text IS NULL OR status = $1) AND seq > $2 ORDER BY seq LIMIT $3",
        "SELECT {columns} FROM stripe_events WHERE (?1 IS NULL OR status = ?1) AND seq > ?2 ORDER BY seq LIMIT ?3",
        Binds(vec![Bind::Text(status.map(InboxStatus::as_str)), Bind::Int(after), Bind::Int(limit)]),
    )
    .await
}

/// The events of `subscription_id` that Stripe created at `created` (one second), as applied
/// so far: those the applier has settled, stale ones included.
pub async fn of_second(
    log: &AnyEventLog,
    subscription_id: &str,
    created: DateTime<Utc>,
) -> Result<Vec<InboxEvent>, StoreError> {
    rows(
        log,
        "SELECT {columns} FROM stripe_events WHERE subscription_id = $1 AND created_at = $2 ORDER BY seq",
        "SELECT {columns} FROM stripe_events WHERE subscription_id = ?1 AND created_at_us = ?2 ORDER BY seq",
        Binds(vec![Bind::Text(Some(subscription_id)), Bind::Time(created)]),
    )
    .await
}

pub async fn get(log: &AnyEventLog, event_id: &str) -> Result<Option<InboxEvent>, StoreError> {
    Ok(rows(
        log,
        "SELECT {columns} FROM stripe_events WHERE event_id = $1",
        "SELECT {columns} FROM stripe_events WHERE event_id = ?1",
        Binds(vec![Bind::Text(Some(event_id))]),
    )
    .await?
    .pop())
}

/// What applying an event came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub status: InboxStatus,
    pub detail: String,
    pub store_id: Option<String>,
    pub subscription_id: Option<String>,
    /// When to try again (a failure).
    pub retry_at: Option<DateTime<Utc>>,
}

/// Records what became of an event (one more attempt).
pub async fn settle(
    log: &AnyEventLog,
    event_id: &str,
    settled: &Settled,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let applied =
        matches!(settled.status, InboxStatus::Applied | InboxStatus::Ignored | InboxStatus::Stale).then_some(now);
    match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query(
                "UPDATE stripe_events SET status = $2, detail = $3, store_id = COALESCE($4, store_id),
                    subscription_id = COALESCE($5, subscription_id), attempts = attempts + 1, next_attempt_at = $6,
                    applied_at = $7
                 WHERE event_id = $1",
            )
            .bind(event_id)
            .bind(settled.status.as_str())
            .bind(&settled.detail)
            .bind(&settled.store_id)
            .bind(&settled.subscription_id)
            .bind(settled.retry_at)
            .bind(applied)
            .execute(pg.pool())
            .await?;
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::query(
                "UPDATE stripe_events SET status = ?2, detail = ?3, store_id = COALESCE(?4, store_id),
                    subscription_id = COALESCE(?5, subscription_id), attempts = attempts + 1, next_attempt_at_us = ?6,
                    applied_at_us = ?7
                 WHERE event_id = ?1",
            )
            .bind(event_id)
            .bind(settled.status.as_str())
            .bind(&settled.detail)
            .bind(&settled.store_id)
            .bind(&settled.subscription_id)
            .bind(settled.retry_at.map(micros))
            .bind(applied.map(micros))
            .execute(lite.writer())
            .await?;
        }
    }
    Ok(())
}

/// Puts a parked or failed event back to be applied now; answers whether it was one.
pub async fn requeue(log: &AnyEventLog, event_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let changed = match log {
        AnyEventLog::Postgres(pg) => sqlx::query(
            "UPDATE stripe_events SET status = 'received', next_attempt_at = $2 WHERE event_id = $1 AND status IN ('parked', 'failed')",
        )
        .bind(event_id)
        .bind(now)
        .execute(pg.pool())
        .await?
        .rows_affected(),
        AnyEventLog::Sqlite(lite) => sqlx::query(
            "UPDATE stripe_events SET status = 'received', next_attempt_at_us = ?2 WHERE event_id = ?1 AND status IN ('parked', 'failed')",
        )
        .bind(event_id)
        .bind(micros(now))
        .execute(lite.writer())
        .await?
        .rows_affected(),
    };
    Ok(changed == 1)
}

/// The newest state applied to a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    pub subscription_id: String,
    pub store_id: String,
    pub customer_id: Option<String>,
    pub plan_id: Option<String>,
    /// The price the plan was found from.
    pub price_id: Option<String>,
    /// The status the newest event said (`Status::as_str`).
    pub status: String,
    pub event_id: String,
    pub event_created: DateTime<Utc>,
    /// The status before the watermark's second (that of the newest event of an earlier
    /// second): where the chain of the second's events starts.
    pub base_status: Option<String>,
}

type SubscriptionTuple =
    (String, String, Option<String>, Option<String>, Option<String>, String, String, i64, Option<String>);

/// The newest state applied to a subscription, if any was.
pub async fn subscription(log: &AnyEventLog, subscription_id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    let row: Option<SubscriptionTuple> =
        match log {
            AnyEventLog::Postgres(pg) => {
                sqlx::query_as(
                    "SELECT subscription_id, store_id, customer_id, plan_id, price_id, status, event_id,
                (extract(epoch FROM event_created) * 1000000)::bigint, base_status
             FROM stripe_subscriptions WHERE subscription_id = $1",
                )
                .bind(subscription_id)
                .fetch_optional(pg.pool())
                .await?
            }
            AnyEventLog::Sqlite(lite) => sqlx::query_as(
                "SELECT subscription_id, store_id, customer_id, plan_id, price_id, status, event_id, event_created_us,
                base_status
             FROM stripe_subscriptions WHERE subscription_id = ?",
            )
            .bind(subscription_id)
            .fetch_optional(lite.readers())
            .await?,
        };
    Ok(row.map(
        |(subscription_id, store_id, customer_id, plan_id, price_id, status, event_id, created, base_status)| {
            SubscriptionRow {
                base_status,
                subscription_id,
                store_id,
                customer_id,
                plan_id,
                price_id,
                status,
                event_id,
                event_created: time(created),
            }
        },
    ))
}

/// The store another subscription of `customer` belongs to.
pub async fn store_of_customer(log: &AnyEventLog, customer: &str) -> Result<Option<String>, StoreError> {
    Ok(match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query_scalar(
                "SELECT store_id FROM stripe_subscriptions WHERE customer_id = $1 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind(customer)
            .fetch_optional(pg.pool())
            .await?
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::query_scalar(
                "SELECT store_id FROM stripe_subscriptions WHERE customer_id = ? ORDER BY updated_at_us DESC LIMIT 1",
            )
            .bind(customer)
            .fetch_optional(lite.readers())
            .await?
        }
    })
}

/// Records `row` as the newest state applied to its subscription.
pub async fn remember(log: &AnyEventLog, row: &SubscriptionRow, now: DateTime<Utc>) -> Result<(), StoreError> {
    match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query(
                "INSERT INTO stripe_subscriptions (subscription_id, store_id, customer_id, plan_id, status, event_id, event_created, updated_at, price_id, base_status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (subscription_id) DO UPDATE SET store_id = EXCLUDED.store_id,
                    customer_id = COALESCE(EXCLUDED.customer_id, stripe_subscriptions.customer_id),
                    plan_id = COALESCE(EXCLUDED.plan_id, stripe_subscriptions.plan_id),
                    price_id = COALESCE(EXCLUDED.price_id, stripe_subscriptions.price_id), status = EXCLUDED.status,
                    event_id = EXCLUDED.event_id, event_created = EXCLUDED.event_created, updated_at = EXCLUDED.updated_at,
                    base_status = EXCLUDED.base_status",
            )
            .bind(&row.subscription_id)
            .bind(&row.store_id)
            .bind(&row.customer_id)
            .bind(&row.plan_id)
            .bind(&row.status)
            .bind(&row.event_id)
            .bind(row.event_created)
            .bind(now)
            .bind(&row.price_id)
            .bind(&row.base_status)
            .execute(pg.pool())
            .await?;
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::query(
                "INSERT INTO stripe_subscriptions (subscription_id, store_id, customer_id, plan_id, status, event_id, event_created_us, updated_at_us, price_id, base_status)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (subscription_id) DO UPDATE SET store_id = excluded.store_id,
                    customer_id = COALESCE(excluded.customer_id, stripe_subscriptions.customer_id),
                    plan_id = COALESCE(excluded.plan_id, stripe_subscriptions.plan_id),
                    price_id = COALESCE(excluded.price_id, stripe_subscriptions.price_id), status = excluded.status,
                    event_id = excluded.event_id, event_created_us = excluded.event_created_us, updated_at_us = excluded.updated_at_us,
                    base_status = excluded.base_status",
            )
            .bind(&row.subscription_id)
            .bind(&row.store_id)
            .bind(&row.customer_id)
            .bind(&row.plan_id)
            .bind(&row.status)
            .bind(&row.event_id)
            .bind(micros(row.event_created))
            .bind(micros(now))
            .bind(&row.price_id)
            .bind(&row.base_status)
            .execute(lite.writer())
            .await?;
        }
    }
    Ok(())
}
