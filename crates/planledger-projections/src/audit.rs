//! `audit_log`: one row per event, queryable by store, type, correlation id and time range with
//! stable cursors, each shown with a summary a person can read (derived from the event when
//! read); and queries of the command journal.

use chrono::{DateTime, SecondsFormat, Utc};
use planledger_domain::Event;
use planledger_store::{AnyEventLog, AnyTx, Checkpoint, StoreError};

/// The live table.
pub const LIVE: &str = "audit_log";

fn day(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A one-line description of an event for people.
pub fn summary(event: &Event) -> String {
    match event {
        Event::StoreRegistered { name, time_zone, .. } => {
            format!("registered {} ({})", name.as_ref().map_or("a store", |n| n.as_str()), time_zone.name())
        }
        Event::TrialStarted { plan_id, ends_at, .. } => format!("trial started on {plan_id} until {}", day(ends_at)),
        Event::TrialRestarted { plan_id, ends_at, reason, .. } => {
            format!("trial restarted on {plan_id} until {} (reason: {})", day(ends_at), reason.as_str())
        }
        Event::TrialRecorded { subscription_id, ends_at } => {
            format!("trial recorded as used: subscription {} had one until {}", subscription_id.as_str(), day(ends_at))
        }
        Event::TrialExtended { days, ends_at, reason, .. } => {
            format!("trial extended by {} days to {} (reason: {})", days.get(), day(ends_at), reason.as_str())
        }
        Event::TrialExpired { grace_ends_at, .. } => format!("trial expired; grace until {}", day(grace_ends_at)),
        Event::GracePeriodExtended { days, ends_at, reason, .. } => {
            format!("grace extended by {} days to {} (reason: {})", days.get(), day(ends_at), reason.as_str())
        }
        Event::DowngradedToMaintenance { from_plan_id, plan_id, maintenance_ends_at, .. } => format!(
            "downgraded {} -> {plan_id}; maintenance until {}",
            from_plan_id.as_ref().map_or("none".to_owned(), ToString::to_string),
            day(maintenance_ends_at)
        ),
        Event::MaintenanceExtended { days, ends_at, reason, .. } => {
            format!("maintenance extended by {} days to {} (reason: {})", days.get(), day(ends_at), reason.as_str())
        }
        Event::StoreFrozen { .. } => "frozen: read-only".to_owned(),
        Event::SubscriptionActivated { plan_id, subscription_id, from_plan_id, .. } => format!(
            "subscription {} active: {} -> {plan_id}",
            subscription_id.as_str(),
            from_plan_id.as_ref().map_or("none".to_owned(), ToString::to_string)
        ),
        Event::SubscriptionPastDue { .. } => "payment failed: past due".to_owned(),
        Event::SubscriptionRecovered { .. } => "payment recovered: active".to_owned(),
        Event::SubscriptionCanceled { .. } => "subscription canceled".to_owned(),
        Event::PlanTransitioned { from_plan_id, to_plan_id, reason, .. } => {
            format!(
                "plan {from_plan_id} -> {to_plan_id} ({})",
                serde_json::to_value(reason).unwrap_or_default().as_str().unwrap_or("?")
            )
        }
        Event::QuotaConsumed { action, amount, used_after, limit, period, .. } => match limit {
            Some(limit) => format!("consumed {} {action}: {used_after}/{limit} this {}", amount.get(), period.as_str()),
            None => format!("consumed {} {action} (unmetered): {used_after} this {}", amount.get(), period.as_str()),
        },
        Event::QuotaRefunded { action, amount, consumption_id, .. } => {
            format!("refunded {} {action} (consumption {consumption_id})", amount.get())
        }
    }
}

/// Appends to `table`, in `tx`, the rows of up to `limit` events after `after` in the order of
/// `read_all` (gap-safe on PostgreSQL: only transactions older than every running one), in the
/// database: no event leaves it, none is decoded. Answers the position of the last event copied
/// and how many were, or `None` when there was nothing to copy. The projector, a rebuild's bulk
/// load and its swap all copy with this.
pub async fn copy_from_log_in(
    tx: &mut AnyTx,
    table: &str,
    after: Checkpoint,
    limit: i64,
) -> Result<Option<(Checkpoint, u64)>, StoreError> {
    let copied = match tx {
        // One statement: the rows are inserted walking the feed's index in order, so their
        // sequence numbers follow the log; the last of them (the highest sequence) names the
        // page's last event, whose transaction one probe finds.
        AnyTx::Postgres(tx) => {
            let sql = format!(
                "WITH copied AS (
                    INSERT INTO {table} ({COLUMNS_PG})
                    SELECT {FROM_EVENT}, version, global_position, event_type, correlation_id, actor, recorded_at
                    FROM ledger_events
                    WHERE (transaction_id, global_position) > ((($1::bigint)::text)::xid8, $2)
                      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY ledger_events.transaction_id, ledger_events.global_position
                    LIMIT $3
                    RETURNING audit_seq, global_position
                 )
                 SELECT e.transaction_id::text::bigint, e.global_position, (SELECT count(*) FROM copied)
                 FROM ledger_events e
                 WHERE e.global_position = (SELECT global_position FROM copied ORDER BY audit_seq DESC LIMIT 1)"
            );
            let last: Option<(i64, i64, i64)> = sqlx::query_as(&sql)
                .bind(after.transaction_id)
                .bind(after.position)
                .bind(limit)
                .fetch_optional(&mut **tx)
                .await?;
            let Some((transaction_id, position, count)) = last else { return Ok(None) };
            (Checkpoint { transaction_id, position }, count as u64)
        }
        // One writer: this transaction holds the write lock, so nothing commits between the two
        // statements.
        AnyTx::Sqlite(tx) => {
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT max(global_position) FROM
                    (SELECT global_position FROM ledger_events WHERE global_position > ? ORDER BY global_position LIMIT ?)",
            )
            .bind(after.position)
            .bind(limit)
            .fetch_one(&mut **tx)
            .await?;
            let Some(position) = last else { return Ok(None) };
            let sql = format!(
                "INSERT INTO {table} ({COLUMNS_SQLITE})
                 SELECT {FROM_EVENT}, version, global_position, event_type, correlation_id, actor, recorded_at_us
                 FROM ledger_events WHERE global_position > ? AND global_position <= ? ORDER BY global_position"
            );
            let count = sqlx::query(&sql).bind(after.position).bind(position).execute(&mut **tx).await?.rows_affected();
            (Checkpoint { transaction_id: 0, position }, count)
        }
    };
    Ok(Some(copied))
}

/// The columns of an audit row, as written.
const COLUMNS_PG: &str = "store_id, version, global_position, event_type, correlation_id, actor, recorded_at";
const COLUMNS_SQLITE: &str = "store_id, version, global_position, event_type, correlation_id, actor, recorded_at_us";
/// The store of an event's stream (`store-<id>`), in SQL.
const FROM_EVENT: &str = "CASE WHEN stream_id LIKE 'store-%' THEN substr(stream_id, 7) ELSE stream_id END";

/// The summary of a stored event, for people; a stored form no upcaster reads says so.
fn summary_of(event_type: &str, schema_version: i32, data: serde_json::Value, at: DateTime<Utc>) -> String {
    match Event::from_stored(event_type, schema_version, data, at) {
        Ok(event) => summary(&event),
        Err(e) => format!("unreadable event: {e}"),
    }
}

/// An audit row as read: sequence, store, version, type, correlation, actor, time, and its
/// event's schema version and data.
type AuditTuple<T, D = serde_json::Value> = (i64, String, i64, String, String, String, T, i32, D);
/// A journal row as read: id, store, kind, outcome, error, correlation, actor, key, duration, time.
type JournalTuple<T> = (i64, String, String, String, Option<String>, String, String, Option<String>, i64, T);

/// Filters of `GET /v1/audit`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub store_id: Option<String>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Rows after this sequence number (the previous page's cursor).
    pub after: i64,
    pub limit: i64,
}

/// One entry of the audit view, with its position (the cursor after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub position: i64,
    pub store_id: String,
    pub version: i64,
    pub event_type: String,
    pub correlation_id: String,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
    pub summary: String,
}

/// Up to `q.limit` entries of the audit view after position `q.after`, each with the summary of
/// its event (read from the log by position, one index probe a row).
pub async fn query(log: &AnyEventLog, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    let rows: Vec<AuditTuple<DateTime<Utc>>> = match log {
        AnyEventLog::Postgres(pg) => {
            let rows: Vec<AuditTuple<DateTime<Utc>, sqlx::types::Json<serde_json::Value>>> = sqlx::query_as(
                "SELECT a.audit_seq, a.store_id, a.version, a.event_type, a.correlation_id, a.actor, a.recorded_at,
                        e.schema_version, e.data
                 FROM audit_log a JOIN ledger_events e ON e.global_position = a.global_position
                 WHERE a.audit_seq > $1 AND ($2::text IS NULL OR a.store_id = $2) AND ($3::text IS NULL OR a.event_type = $3)
                   AND ($4::text IS NULL OR a.correlation_id = $4)
                   AND ($5::timestamptz IS NULL OR a.recorded_at >= $5) AND ($6::timestamptz IS NULL OR a.recorded_at < $6)
                 ORDER BY a.audit_seq LIMIT $7",
            )
            .bind(q.after)
            .bind(&q.store_id)
            .bind(&q.event_type)
            .bind(&q.correlation_id)
            .bind(q.from)
            .bind(q.to)
            .bind(q.limit)
            .fetch_all(pg.pool())
            .await?;
            rows.into_iter()
                .map(|(s, st, v, t, c, a, at, schema, data)| (s, st, v, t, c, a, at, schema, data.0))
                .collect()
        }
        AnyEventLog::Sqlite(lite) => {
            let rows: Vec<AuditTuple<i64, String>> = sqlx::query_as(
                "SELECT a.audit_seq, a.store_id, a.version, a.event_type, a.correlation_id, a.actor, a.recorded_at_us,
                        e.schema_version, e.data
                 FROM audit_log a JOIN ledger_events e ON e.global_position = a.global_position
                 WHERE a.audit_seq > ?1 AND (?2 IS NULL OR a.store_id = ?2) AND (?3 IS NULL OR a.event_type = ?3)
                   AND (?4 IS NULL OR a.correlation_id = ?4)
                   AND (?5 IS NULL OR a.recorded_at_us >= ?5) AND (?6 IS NULL OR a.recorded_at_us < ?6)
                 ORDER BY a.audit_seq LIMIT ?7",
            )
            .bind(q.after)
            .bind(&q.store_id)
            .bind(&q.event_type)
            .bind(&q.correlation_id)
            .bind(q.from.map(|t| t.timestamp_micros()))
            .bind(q.to.map(|t| t.timestamp_micros()))
            .bind(q.limit)
            .fetch_all(lite.readers())
            .await?;
            rows.into_iter()
                .map(|(s, st, v, t, c, a, at, schema, data)| {
                    let at = DateTime::from_timestamp_micros(at).unwrap_or_default();
                    let data = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                    (s, st, v, t, c, a, at, schema, data)
                })
                .collect()
        }
    };
    Ok(rows
        .into_iter()
        .map(|(position, store_id, version, event_type, correlation_id, actor, recorded_at, schema, data)| {
            let summary = summary_of(&event_type, schema, data, recorded_at);
            AuditRecord { position, store_id, version, event_type, correlation_id, actor, recorded_at, summary }
        })
        .collect())
}

/// One command of the journal, with its id (the cursor after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    pub id: i64,
    pub store_id: String,
    pub kind: String,
    pub outcome: String,
    pub error_code: Option<String>,
    pub correlation_id: String,
    pub actor: String,
    pub idempotency_key: Option<String>,
    pub duration_us: i64,
    pub recorded_at: DateTime<Utc>,
}

/// Up to `limit` commands of the journal after id `after`, by store and/or correlation id.
pub async fn journal(
    log: &AnyEventLog,
    store_id: Option<&str>,
    correlation_id: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<JournalRecord>, StoreError> {
    type Row = (i64, String, String, String, Option<String>, String, String, Option<String>, i64);
    let rows: Vec<(Row, DateTime<Utc>)> = match log {
        AnyEventLog::Postgres(pg) => {
            let rows: Vec<JournalTuple<DateTime<Utc>>> = sqlx::query_as(
                "SELECT id, store_id, kind, outcome, error_code, correlation_id, actor, idempotency_key, duration_us, recorded_at
                 FROM command_journal WHERE id > $1 AND ($2::text IS NULL OR store_id = $2) AND ($3::text IS NULL OR correlation_id = $3)
                 ORDER BY id LIMIT $4",
            )
            .bind(after)
            .bind(store_id)
            .bind(correlation_id)
            .bind(limit)
            .fetch_all(pg.pool())
            .await?;
            rows.into_iter().map(|(a, b, c, d, e, f, g, h, i, t)| ((a, b, c, d, e, f, g, h, i), t)).collect()
        }
        AnyEventLog::Sqlite(lite) => {
            let rows: Vec<JournalTuple<i64>> = sqlx::query_as(
                "SELECT id, store_id, kind, outcome, error_code, correlation_id, actor, idempotency_key, duration_us, recorded_at_us
                 FROM command_journal WHERE id > ?1 AND (?2 IS NULL OR store_id = ?2) AND (?3 IS NULL OR correlation_id = ?3)
                 ORDER BY id LIMIT ?4",
            )
            .bind(after)
            .bind(store_id)
            .bind(correlation_id)
            .bind(limit)
            .fetch_all(lite.readers())
            .await?;
            rows.into_iter()
                .map(|(a, b, c, d, e, f, g, h, i, t)| {
                    ((a, b, c, d, e, f, g, h, i), DateTime::from_timestamp_micros(t).unwrap_or_default())
                })
                .collect()
        }
    };
    Ok(rows
        .into_iter()
        .map(|((id, store_id, kind, outcome, error_code, correlation_id, actor, idempotency_key, duration_us), at)| {
            JournalRecord {
                id,
                store_id,
                kind,
                outcome,
                error_code,
                correlation_id,
                actor,
                idempotency_key,
                duration_us,
                recorded_at: at,
            }
        })
        .collect())
}

/// The refusals among the journal's most recent commands, by error code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecentRefusals {
    /// How many commands were looked at (at most the number asked for).
    pub commands: i64,
    /// When the oldest of them was recorded.
    pub since: Option<DateTime<Utc>>,
    /// Refusals by error code, most frequent first.
    pub by_code: Vec<(String, i64)>,
}

/// The refusals among the last `last` commands of the journal: a bounded read from the end of its
/// primary key, whatever the size of the journal.
pub async fn recent_refusals(log: &AnyEventLog, last: i64) -> Result<RecentRefusals, StoreError> {
    let time = match log {
        AnyEventLog::Postgres(_) => "recorded_at",
        AnyEventLog::Sqlite(_) => "recorded_at_us",
    };
    let window = format!("SELECT outcome, error_code, {time} AS at FROM command_journal ORDER BY id DESC LIMIT $1");
    let totals = format!("SELECT count(*), min(at) FROM ({window}) recent");
    let codes = format!(
        "SELECT coalesce(error_code, 'unknown'), count(*) FROM ({window}) recent WHERE outcome = 'refused'
         GROUP BY 1 ORDER BY 2 DESC, 1"
    );
    let (commands, since, by_code) = match log {
        AnyEventLog::Postgres(pg) => {
            let (commands, since): (i64, Option<DateTime<Utc>>) =
                sqlx::query_as(&totals).bind(last).fetch_one(pg.pool()).await?;
            let by_code: Vec<(String, i64)> = sqlx::query_as(&codes).bind(last).fetch_all(pg.pool()).await?;
            (commands, since, by_code)
        }
        AnyEventLog::Sqlite(lite) => {
            let (commands, since): (i64, Option<i64>) =
                sqlx::query_as(&planledger_store::one_statement::sqlite_sql(&totals))
                    .bind(last)
                    .fetch_one(lite.readers())
                    .await?;
            let by_code: Vec<(String, i64)> = sqlx::query_as(&planledger_store::one_statement::sqlite_sql(&codes))
                .bind(last)
                .fetch_all(lite.readers())
                .await?;
            (commands, since.and_then(DateTime::from_timestamp_micros), by_code)
        }
    };
    Ok(RecentRefusals { commands, since, by_code })
}
