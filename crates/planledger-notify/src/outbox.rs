//! The endpoints, the outbox of deliveries and the log of attempts, on both backends.
//!
//! Times are stored as microseconds since the Unix epoch on both backends (`_us` columns, bound
//! and read as integers), and each statement is written once (`planledger_store::sql`).

use chrono::{DateTime, Utc};
use planledger_store::{AnyEventLog, AnyTx, EventLog, Kind as Column, Row, Statement, StoreError};

use crate::notice::{Kind, Notice};

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

// ---- endpoints ---------------------------------------------------------------------------

/// A registered receiver of notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub kinds: Vec<Kind>,
    /// For `ledger.event`: the raw event types wanted; `None`: every type.
    pub event_types: Option<Vec<String>>,
    /// Standard Webhooks' `whsec_...` secret.
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// Whether this endpoint receives `notice`: enabled, of a kind (and event type) it chose, and
    /// due after it was registered (an endpoint hears of what comes, not of the past).
    pub fn wants(&self, notice: &Notice) -> bool {
        self.enabled
            && self.created_at <= notice.due_at
            && self.kinds.contains(&notice.kind)
            && match (&self.event_types, notice.event_type) {
                (Some(types), Some(event_type)) => types.iter().any(|t| t == event_type),
                _ => true,
            }
    }
}

const ENDPOINT_COLUMNS: &str = "id, url, description, kinds, event_types, secret, enabled, disabled_reason, \
    failing_since_us, created_at_us, updated_at_us";
const ENDPOINT_KINDS: &[Column] = {
    use Column::{Bool, Int, Text};
    &[Text, Text, Text, Text, Text, Text, Bool, Text, Int, Int, Int]
};

fn endpoint(row: &Row) -> Result<Endpoint, StoreError> {
    let id = row.text(0)?;
    let kinds = split(&row.text(3)?)
        .map(|k| Kind::parse(k).ok_or_else(|| StoreError::Corrupt(format!("endpoint {id}: kind {k:?}"))))
        .collect::<Result<_, _>>()?;
    Ok(Endpoint {
        kinds,
        event_types: row.opt_text(4)?.map(|types| split(&types).map(str::to_owned).collect()),
        url: row.text(1)?,
        description: row.opt_text(2)?,
        secret: row.text(5)?,
        enabled: row.bool(6)?,
        disabled_reason: row.opt_text(7)?,
        failing_since: row.opt_int(8)?.map(time),
        created_at: time(row.int(9)?),
        updated_at: time(row.int(10)?),
        id,
    })
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').filter(|s| !s.is_empty())
}

fn join_kinds(kinds: &[Kind]) -> String {
    kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",")
}

/// What an endpoint is registered with, or changed to (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub kinds: Option<Vec<Kind>>,
    pub event_types: Option<Option<Vec<String>>>,
    pub enabled: Option<bool>,
}

pub async fn create_endpoint(log: &AnyEventLog, endpoint: &Endpoint) -> Result<(), StoreError> {
    let sql = "INSERT INTO webhook_endpoints (id, url, description, kinds, event_types, secret, enabled, \
               disabled_reason, failing_since_us, created_at_us, updated_at_us)
               VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $8)";
    let event_types = endpoint.event_types.as_ref().map(|t| t.join(","));
    let statement = Statement::new(sql)
        .bind(&endpoint.id)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(join_kinds(&endpoint.kinds))
        .bind(event_types)
        .bind(&endpoint.secret)
        .bind(endpoint.enabled)
        .bind(micros(endpoint.created_at));
    log.execute(&statement).await?;
    Ok(())
}

async fn endpoints_where(log: &AnyEventLog, filter: &str, id: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints {filter} ORDER BY created_at_us, id");
    let mut statement = Statement::new(sql);
    if let Some(id) = id {
        statement = statement.bind(id);
    }
    log.fetch(&statement, ENDPOINT_KINDS).await?.iter().map(endpoint).collect()
}

pub async fn list_endpoints(log: &AnyEventLog) -> Result<Vec<Endpoint>, StoreError> {
    endpoints_where(log, "", None).await
}

pub async fn enabled_endpoints(log: &AnyEventLog) -> Result<Vec<Endpoint>, StoreError> {
    endpoints_where(log, "WHERE enabled", None).await
}

pub async fn get_endpoint(log: &AnyEventLog, id: &str) -> Result<Option<Endpoint>, StoreError> {
    Ok(endpoints_where(log, "WHERE id = $1", Some(id)).await?.pop())
}

/// Applies `change` to the endpoint; enabling it again forgets why it was disabled and since
/// when it failed. `None` if there is no such endpoint.
pub async fn update_endpoint(
    log: &AnyEventLog,
    id: &str,
    change: &EndpointChange,
    now: DateTime<Utc>,
) -> Result<Option<Endpoint>, StoreError> {
    let Some(mut endpoint) = get_endpoint(log, id).await? else {
        return Ok(None);
    };
    if let Some(url) = &change.url {
        endpoint.url.clone_from(url);
    }
    if let Some(description) = &change.description {
        endpoint.description.clone_from(description);
    }
    if let Some(kinds) = &change.kinds {
        endpoint.kinds.clone_from(kinds);
    }
    if let Some(event_types) = &change.event_types {
        endpoint.event_types.clone_from(event_types);
    }
    if let Some(enabled) = change.enabled {
        if enabled && !endpoint.enabled {
            endpoint.disabled_reason = None;
            endpoint.failing_since = None;
        }
        if !enabled && endpoint.enabled {
            endpoint.disabled_reason = Some("disabled by an operator".to_owned());
        }
        endpoint.enabled = enabled;
    }
    endpoint.updated_at = now;
    let sql = "UPDATE webhook_endpoints SET url = $2, description = $3, kinds = $4, event_types = $5, enabled = $6, \
               disabled_reason = $7, failing_since_us = $8, updated_at_us = $9 WHERE id = $1";
    let event_types = endpoint.event_types.as_ref().map(|t| t.join(","));
    let statement = Statement::new(sql)
        .bind(&endpoint.id)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(join_kinds(&endpoint.kinds))
        .bind(event_types)
        .bind(endpoint.enabled)
        .bind(&endpoint.disabled_reason)
        .bind(endpoint.failing_since.map(micros))
        .bind(micros(now));
    log.execute(&statement).await?;
    Ok(Some(endpoint))
}

// ---- deliveries --------------------------------------------------------------------------

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its time, its turn or its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Not sent: the warning no longer applied when it was due (the store paid, the deadline
    /// moved).
    Skipped,
    /// Every attempt failed for the whole retry period; an operator may retry it.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] =
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Skipped, DeliveryStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One notification for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub seq: i64,
    pub id: String,
    pub endpoint_id: String,
    pub notification_id: String,
    pub kind: Kind,
    pub store_id: String,
    pub body: String,
    pub due_at: DateTime<Utc>,
    pub deadline: Option<DateTime<Utc>>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub settled_at: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.endpoint_id, d.notification_id, d.kind, d.store_id, d.body, \
    d.due_at_us, d.deadline_us, d.status, d.attempts, d.next_attempt_at_us, d.first_attempt_at_us, \
    d.last_status_code, d.last_error, d.settled_at_us";
const DELIVERY_KINDS: &[Column] = {
    use Column::{Int, Text};
    &[Int, Text, Text, Text, Text, Text, Text, Int, Int, Text, Int, Int, Int, Int, Text, Int]
};

fn delivery(row: &Row) -> Result<Delivery, StoreError> {
    let id = row.text(1)?;
    let (kind, status) = (row.text(4)?, row.text(9)?);
    let corrupt = |what: &str, value: &str| StoreError::Corrupt(format!("delivery {id}: {what} {value:?}"));
    Ok(Delivery {
        kind: Kind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        seq: row.int(0)?,
        endpoint_id: row.text(2)?,
        notification_id: row.text(3)?,
        store_id: row.text(5)?,
        body: row.text(6)?,
        due_at: time(row.int(7)?),
        deadline: row.opt_int(8)?.map(time),
        attempts: row.int(10)?,
        next_attempt_at: time(row.int(11)?),
        first_attempt_at: row.opt_int(12)?.map(time),
        last_status_code: row.opt_int(13)?,
        last_error: row.opt_text(14)?,
        settled_at: row.opt_int(15)?.map(time),
        id,
    })
}

/// The delivery id of `notice` for `endpoint`: deterministic, like the notice's.
pub fn delivery_id(endpoint_id: &str, notification_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{endpoint_id}\n{notification_id}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("dlv_{hex}")
}

/// Writes the deliveries of `notice` to every endpoint in `endpoints` that wants it, in `tx`;
/// a delivery already there (the same endpoint and notice) is left as it is.
pub async fn insert_deliveries_in(
    tx: &mut AnyTx,
    notice: &Notice,
    endpoints: &[Endpoint],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let sql = "INSERT INTO webhook_deliveries (id, endpoint_id, notification_id, kind, store_id, body, due_at_us, \
               deadline_us, status, next_attempt_at_us, created_at_us)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $7, $9)
               ON CONFLICT (endpoint_id, notification_id) DO NOTHING";
    let mut inserted = 0;
    for endpoint in endpoints.iter().filter(|e| e.wants(notice)) {
        let id = delivery_id(&endpoint.id, &notice.id);
        let statement = Statement::new(sql)
            .bind(id)
            .bind(&endpoint.id)
            .bind(&notice.id)
            .bind(notice.kind.as_str())
            .bind(notice.store_id.to_string())
            .bind(&notice.body)
            .bind(micros(notice.due_at))
            .bind(notice.deadline.map(micros))
            .bind(micros(now));
        inserted += tx.execute(&statement).await?;
    }
    Ok(inserted)
}

/// Deliveries to attempt now (to `endpoint`, or to any), at most `limit`, the earliest due
/// first: pending, due, to an enabled endpoint, and the first of their store's pending
/// deliveries to that endpoint (in the order they fall due), so each store's notifications
/// arrive in order.
pub async fn due_deliveries(
    log: &AnyEventLog,
    now: DateTime<Utc>,
    endpoint: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
         JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
         WHERE d.status = 'pending' AND d.next_attempt_at_us <= $1
           AND (CAST($3 AS text) IS NULL OR d.endpoint_id = CAST($3 AS text))
           AND NOT EXISTS (
               SELECT 1 FROM webhook_deliveries p
               WHERE p.endpoint_id = d.endpoint_id AND p.store_id = d.store_id AND p.status = 'pending'
                 AND (p.due_at_us < d.due_at_us OR (p.due_at_us = d.due_at_us AND p.seq < d.seq)))
         ORDER BY d.next_attempt_at_us, d.seq
         LIMIT $2"
    );
    let statement = Statement::new(sql).bind(micros(now)).bind(limit).bind(endpoint);
    log.fetch(&statement, DELIVERY_KINDS).await?.iter().map(delivery).collect()
}

/// An endpoint's deliveries (of one status, if given) after `after`, in the order written.
pub async fn list_deliveries(
    log: &AnyEventLog,
    endpoint_id: &str,
    status: Option<DeliveryStatus>,
    after: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
         WHERE d.endpoint_id = $1 AND (CAST($2 AS text) IS NULL OR d.status = CAST($2 AS text)) AND d.seq > $3 ORDER BY d.seq LIMIT $4"
    );
    let status = status.map(DeliveryStatus::as_str);
    let statement = Statement::new(sql).bind(endpoint_id).bind(status).bind(after).bind(limit);
    log.fetch(&statement, DELIVERY_KINDS).await?.iter().map(delivery).collect()
}

pub async fn get_delivery(log: &AnyEventLog, id: &str) -> Result<Option<Delivery>, StoreError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.id = $1");
    log.fetch_optional(&Statement::new(sql).bind(id), DELIVERY_KINDS).await?.as_ref().map(delivery).transpose()
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    /// `None` when no answer came (refused, timed out).
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

pub async fn attempts_of(log: &AnyEventLog, delivery_id: &str) -> Result<Vec<Attempt>, StoreError> {
    let sql = "SELECT attempt, at_us, status_code, latency_ms, error FROM webhook_attempts WHERE delivery_id = $1 \
               ORDER BY attempt";
    use Column::{Int, Text};
    let rows = log.fetch(&Statement::new(sql).bind(delivery_id), &[Int, Int, Int, Int, Text]).await?;
    rows.iter()
        .map(|row| {
            Ok(Attempt {
                attempt: row.int(0)?,
                at: time(row.int(1)?),
                status_code: row.opt_int(2)?,
                latency_ms: row.int(3)?,
                error: row.opt_text(4)?,
            })
        })
        .collect()
}

/// What an attempt (or the check before it) settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    Delivered,
    /// Not sent, with the reason.
    Skipped(String),
    /// Failed this time; tried again at this time.
    RetryAt(DateTime<Utc>),
    /// Failed this time, and the retry period is over.
    GaveUp,
}

/// Records an attempt (if one was made) and what it settled, and the endpoint's health: an
/// answer clears its failing streak; a failure starts one, and a streak longer than
/// `disable_after` disables the endpoint with the reason. Returns whether it was disabled now.
pub async fn settle(
    log: &AnyEventLog,
    delivery: &Delivery,
    attempt: Option<&Attempt>,
    settle: &Settle,
    now: DateTime<Utc>,
    disable_after: chrono::TimeDelta,
) -> Result<bool, StoreError> {
    let mut tx = log.begin().await?;
    let (status, next, settled) = match settle {
        Settle::Delivered => (DeliveryStatus::Delivered, delivery.next_attempt_at, Some(now)),
        Settle::Skipped(_) => (DeliveryStatus::Skipped, delivery.next_attempt_at, Some(now)),
        Settle::RetryAt(at) => (DeliveryStatus::Pending, *at, None),
        Settle::GaveUp => (DeliveryStatus::Failed, delivery.next_attempt_at, Some(now)),
    };
    let error = match (settle, attempt) {
        (Settle::Skipped(reason), _) => Some(reason.clone()),
        (_, Some(attempt)) => attempt.error.clone(),
        (_, None) => None,
    };
    let attempts = delivery.attempts + i64::from(attempt.is_some());
    let sql = "UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at_us = $4, \
               first_attempt_at_us = COALESCE(first_attempt_at_us, $5), last_status_code = COALESCE($6, last_status_code), \
               last_error = $7, settled_at_us = $8 WHERE id = $1";
    let first = attempt.map(|a| micros(a.at));
    let code = attempt.and_then(|a| a.status_code);
    let statement = Statement::new(sql)
        .bind(&delivery.id)
        .bind(status.as_str())
        .bind(attempts)
        .bind(micros(next))
        .bind(first)
        .bind(code)
        .bind(error)
        .bind(settled.map(micros));
    tx.execute(&statement).await?;
    let mut disabled = false;
    if let Some(attempt) = attempt {
        let sql = "INSERT INTO webhook_attempts (delivery_id, attempt, at_us, status_code, latency_ms, error) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id, attempt) DO NOTHING";
        let statement = Statement::new(sql)
            .bind(&delivery.id)
            .bind(attempts)
            .bind(micros(attempt.at))
            .bind(attempt.status_code)
            .bind(attempt.latency_ms)
            .bind(&attempt.error);
        tx.execute(&statement).await?;
        if *settle == Settle::Delivered {
            let sql = "UPDATE webhook_endpoints SET failing_since_us = NULL WHERE id = $1";
            tx.execute(&Statement::new(sql).bind(&delivery.endpoint_id)).await?;
        } else {
            let sql = "UPDATE webhook_endpoints SET failing_since_us = COALESCE(failing_since_us, $2) WHERE id = $1";
            tx.execute(&Statement::new(sql).bind(&delivery.endpoint_id).bind(micros(now))).await?;
            let limit = micros(now - disable_after);
            let reason = format!(
                "every delivery failed for {} days or more (last: {})",
                disable_after.num_days(),
                attempt.error.as_deref().unwrap_or("no answer")
            );
            let sql = "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, updated_at_us = $3 \
                       WHERE id = $1 AND enabled AND failing_since_us <= $4";
            let statement = Statement::new(sql).bind(&delivery.endpoint_id).bind(reason).bind(micros(now)).bind(limit);
            disabled = tx.execute(&statement).await? == 1;
        }
    }
    log.commit(tx).await?;
    Ok(disabled)
}

/// Puts a failed or skipped delivery back to be attempted now, with a fresh retry period.
/// `Ok(false)` if it is not failed or skipped.
pub async fn requeue(log: &AnyEventLog, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let sql = "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at_us = $2, first_attempt_at_us = NULL, \
               settled_at_us = NULL WHERE id = $1 AND status IN ('failed', 'skipped')";
    Ok(log.execute(&Statement::new(sql).bind(id).bind(micros(now))).await? == 1)
}
