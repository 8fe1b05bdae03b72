//! The inbox: every verified Stripe event stored once (unique on Stripe's event id) with what
//! became of it, and the newest state applied to each subscription (its watermark).
//!
//! Every statement is written once for both backends (`planledger_store::sql`).

use chrono::{DateTime, Utc};
use planledger_store::{AnyEventLog, EventLog, Kind, Row, Statement, StoreError};

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

/// The columns an [`InboxEvent`] is read from, of [`KINDS`].
const COLUMNS: &str = "seq, event_id, event_type, @created_at, livemode, payload, @received_at, deliveries, status, \
    detail, store_id, subscription_id, attempts, @next_attempt_at, @applied_at";
const KINDS: &[Kind] = {
    use Kind::{Bool, Int, Text, Time};
    &[Int, Text, Text, Time, Bool, Text, Time, Int, Text, Text, Text, Text, Int, Time, Time]
};

fn from_row(row: &Row) -> Result<InboxEvent, StoreError> {
    let event_id = row.text(1)?;
    let status = row.text(8)?;
    Ok(InboxEvent {
        seq: row.int(0)?,
        status: InboxStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("stripe event {event_id}: status {status:?}")))?,
        event_id,
        event_type: row.text(2)?,
        created: row.time(3)?,
        livemode: row.bool(4)?,
        payload: row.text(5)?,
        received_at: row.time(6)?,
        deliveries: row.int(7)?,
        detail: row.opt_text(9)?,
        store_id: row.opt_text(10)?,
        subscription_id: row.opt_text(11)?,
        attempts: row.int(12)?,
        next_attempt_at: row.opt_time(13)?,
        applied_at: row.opt_time(14)?,
    })
}

/// The events a statement selects (`{columns}` in it), read.
async fn events(log: &AnyEventLog, statement: Statement) -> Result<Vec<InboxEvent>, StoreError> {
    log.fetch(&statement, KINDS).await?.iter().map(from_row).collect()
}

fn select(sql: &str) -> String {
    sql.replace("{columns}", COLUMNS)
}

/// Stores a verified event, once: answers `true` if it is new, `false` for a redelivery (whose
/// delivery is counted, nothing else).
pub async fn store(
    log: &AnyEventLog,
    event: &StripeEvent,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let insert = Statement::new(
        "INSERT INTO stripe_events (event_id, event_type, @created_at, livemode, payload, @received_at, status, @next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'received', $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event.id.as_str())
    .bind(event.kind.as_str())
    .bind(event.created)
    .bind(event.livemode)
    .bind(payload)
    .bind(now);
    let mut tx = log.begin().await?;
    let inserted = tx.execute(&insert).await? == 1;
    if !inserted {
        let redelivered = Statement::new("UPDATE stripe_events SET deliveries = deliveries + 1 WHERE event_id = $1")
            .bind(event.id.as_str());
        tx.execute(&redelivered).await?;
    }
    log.commit(tx).await?;
    Ok(inserted)
}

/// Events to apply now (received, or failed and due again), oldest first by Stripe's time.
pub async fn due(log: &AnyEventLog, now: DateTime<Utc>, limit: i64) -> Result<Vec<InboxEvent>, StoreError> {
    let sql = select(
        "SELECT {columns} FROM stripe_events WHERE status IN ('received', 'failed') AND @next_attempt_at <= $1
         ORDER BY @created_at, seq LIMIT $2",
    );
    events(log, Statement::new(sql).bind(now).bind(limit)).await
}

/// Stored events (of one status, if given) after `after` in the order received.
pub async fn list(
    log: &AnyEventLog,
    status: Option<InboxStatus>,
    after: i64,
    limit: i64,
) -> Result<Vec<InboxEvent>, StoreError> {
    let sql = select(
        "SELECT {columns} FROM stripe_events WHERE (CAST($1 AS text) IS NULL OR status = $1) AND seq > $2
         ORDER BY seq LIMIT $3",
    );
    let status = status.map(|s| s.as_str().to_owned());
    events(log, Statement::new(sql).bind(status).bind(after).bind(limit)).await
}

/// The events of `subscription_id` that Stripe created at `created` (one second), as applied
/// so far: those the applier has settled, stale ones included.
pub async fn of_second(
    log: &AnyEventLog,
    subscription_id: &str,
    created: DateTime<Utc>,
) -> Result<Vec<InboxEvent>, StoreError> {
    let sql =
        select("SELECT {columns} FROM stripe_events WHERE subscription_id = $1 AND @created_at = $2 ORDER BY seq");
    events(log, Statement::new(sql).bind(subscription_id).bind(created)).await
}

pub async fn get(log: &AnyEventLog, event_id: &str) -> Result<Option<InboxEvent>, StoreError> {
    let sql = select("SELECT {columns} FROM stripe_events WHERE event_id = $1");
    Ok(events(log, Statement::new(sql).bind(event_id)).await?.pop())
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
    let statement = Statement::new(
        "UPDATE stripe_events SET status = $2, detail = $3, store_id = COALESCE($4, store_id),
            subscription_id = COALESCE($5, subscription_id), attempts = attempts + 1, @next_attempt_at = $6,
            @applied_at = $7
         WHERE event_id = $1",
    )
    .bind(event_id)
    .bind(settled.status.as_str())
    .bind(settled.detail.as_str())
    .bind(settled.store_id.clone())
    .bind(settled.subscription_id.clone())
    .bind(settled.retry_at)
    .bind(applied);
    log.execute(&statement).await?;
    Ok(())
}

/// Puts a parked or failed event back to be applied now; answers whether it was one.
pub async fn requeue(log: &AnyEventLog, event_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let statement = Statement::new(
        "UPDATE stripe_events SET status = 'received', @next_attempt_at = $2
         WHERE event_id = $1 AND status IN ('parked', 'failed')",
    )
    .bind(event_id)
    .bind(now);
    Ok(log.execute(&statement).await? == 1)
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

impl SubscriptionRow {
    /// The row of `facts` applied to `store` on `plan`, its watermark the event `event_id` made
    /// at `event_created`.
    pub fn of(
        facts: &crate::event::SubscriptionFacts,
        store: planledger_domain::StoreId,
        plan: Option<&planledger_domain::PlanId>,
        (event_id, event_created): (String, DateTime<Utc>),
        base_status: Option<String>,
    ) -> SubscriptionRow {
        SubscriptionRow {
            subscription_id: facts.subscription_id.clone(),
            store_id: store.to_string(),
            customer_id: facts.customer_id.clone(),
            plan_id: plan.map(ToString::to_string),
            price_id: facts.price.as_ref().map(|p| p.id.clone()),
            status: facts.status.as_str().to_owned(),
            event_id,
            event_created,
            base_status,
        }
    }
}

/// The newest state applied to a subscription, if any was.
pub async fn subscription(log: &AnyEventLog, subscription_id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    let statement = Statement::new(
        "SELECT subscription_id, store_id, customer_id, plan_id, price_id, status, event_id, @event_created, base_status
         FROM stripe_subscriptions WHERE subscription_id = $1",
    )
    .bind(subscription_id);
    use Kind::{Text, Time};
    let Some(row) = log.fetch_optional(&statement, &[Text, Text, Text, Text, Text, Text, Text, Time, Text]).await?
    else {
        return Ok(None);
    };
    Ok(Some(SubscriptionRow {
        subscription_id: row.text(0)?,
        store_id: row.text(1)?,
        customer_id: row.opt_text(2)?,
        plan_id: row.opt_text(3)?,
        price_id: row.opt_text(4)?,
        status: row.text(5)?,
        event_id: row.text(6)?,
        event_created: row.time(7)?,
        base_status: row.opt_text(8)?,
    }))
}

/// The store another subscription of `customer` belongs to.
pub async fn store_of_customer(log: &AnyEventLog, customer: &str) -> Result<Option<String>, StoreError> {
    let statement = Statement::new(
        "SELECT store_id FROM stripe_subscriptions WHERE customer_id = $1 ORDER BY @updated_at DESC LIMIT 1",
    )
    .bind(customer);
    log.fetch_optional(&statement, &[Kind::Text]).await?.map(|row| row.text(0)).transpose()
}

/// Links a subscription to its store as an import found it, unless one is linked already (an
/// event applied, or an earlier import): `row`'s time is the watermark, so that an event
/// Stripe created before the import is older than the state imported. Answers whether it linked.
pub async fn link(log: &AnyEventLog, row: &SubscriptionRow, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let statement = Statement::new(
        "INSERT INTO stripe_subscriptions (subscription_id, store_id, customer_id, plan_id, status, event_id,
            @event_created, @updated_at, price_id, base_status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (subscription_id) DO NOTHING",
    );
    Ok(log.execute(&bind_row(statement, row, now)).await? == 1)
}

/// Records `row` as the newest state applied to its subscription.
pub async fn remember(log: &AnyEventLog, row: &SubscriptionRow, now: DateTime<Utc>) -> Result<(), StoreError> {
    let statement = Statement::new(
        "INSERT INTO stripe_subscriptions (subscription_id, store_id, customer_id, plan_id, status, event_id,
            @event_created, @updated_at, price_id, base_status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (subscription_id) DO UPDATE SET store_id = EXCLUDED.store_id,
            customer_id = COALESCE(EXCLUDED.customer_id, stripe_subscriptions.customer_id),
            plan_id = COALESCE(EXCLUDED.plan_id, stripe_subscriptions.plan_id),
            price_id = COALESCE(EXCLUDED.price_id, stripe_subscriptions.price_id), status = EXCLUDED.status,
            event_id = EXCLUDED.event_id, @event_created = EXCLUDED.@event_created, @updated_at = EXCLUDED.@updated_at,
            base_status = EXCLUDED.base_status",
    );
    log.execute(&bind_row(statement, row, now)).await?;
    Ok(())
}

/// `row`'s columns as `$1..$10` of an insert into `stripe_subscriptions`.
fn bind_row(statement: Statement, row: &SubscriptionRow, now: DateTime<Utc>) -> Statement {
    statement
        .bind(row.subscription_id.as_str())
        .bind(row.store_id.as_str())
        .bind(row.customer_id.clone())
        .bind(row.plan_id.clone())
        .bind(row.status.as_str())
        .bind(row.event_id.as_str())
        .bind(row.event_created)
        .bind(now)
        .bind(row.price_id.clone())
        .bind(row.base_status.clone())
}
