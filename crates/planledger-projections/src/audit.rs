//! `audit_log`: one row per event, with a summary a person can read, queryable by store, type,
//! correlation id and time range with stable cursors; and queries of the command journal.

use chrono::{DateTime, SecondsFormat, Utc};
use planledger_domain::Event;
use planledger_store::copy_text::push_field;
use planledger_store::{AnyEventLog, AnyTx, RecordedEvent, StoreError};

/// The live table.
pub const LIVE: &str = "audit_log";

/// One line of the audit view.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub store_id: String,
    pub version: i64,
    pub global_position: i64,
    pub event_type: String,
    pub correlation_id: String,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
    pub summary: String,
}

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

impl AuditRow {
    /// The row of an event; it takes the event, whose strings and data it reuses.
    pub fn from_recorded(recorded: RecordedEvent) -> AuditRow {
        let summary = match Event::from_stored(
            &recorded.event_type,
            recorded.schema_version,
            recorded.data,
            recorded.recorded_at,
        ) {
            Ok(event) => summary(&event),
            Err(e) => format!("unreadable event: {e}"),
        };
        let stream = recorded.stream_id.as_str();
        AuditRow {
            store_id: stream.strip_prefix("store-").unwrap_or(stream).to_owned(),
            version: recorded.version,
            global_position: recorded.global_position,
            event_type: recorded.event_type,
            correlation_id: recorded.correlation_id,
            actor: recorded.actor,
            recorded_at: recorded.recorded_at,
            summary,
        }
    }
}

/// Inserts rows into `table` in `tx`, in multi-row statements.
pub async fn insert_in(tx: &mut AnyTx, table: &str, rows: &[AuditRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match tx {
        AnyTx::Postgres(tx) => {
            let sql = format!(
                "INSERT INTO {table} (store_id, version, global_position, event_type, correlation_id, actor, recorded_at, summary)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[])"
            );
            sqlx::query(&sql)
                .bind(rows.iter().map(|r| r.store_id.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.global_position).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.correlation_id.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.summary.as_str()).collect::<Vec<_>>())
                .execute(&mut **tx)
                .await?;
        }
        AnyTx::Sqlite(tx) => {
            for chunk in rows.chunks(100) {
                let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let sql = format!(
                    "INSERT INTO {table} (store_id, version, global_position, event_type, correlation_id, actor, recorded_at_us, summary) VALUES {values}"
                );
                let mut query = sqlx::query(&sql);
                for r in chunk {
                    query = query
                        .bind(&r.store_id)
                        .bind(r.version)
                        .bind(r.global_position)
                        .bind(&r.event_type)
                        .bind(&r.correlation_id)
                        .bind(&r.actor)
                        .bind(r.recorded_at.timestamp_micros())
                        .bind(&r.summary);
                }
                query.execute(&mut **tx).await?;
            }
        }
    }
    Ok(())
}

/// Appends rows to `table` in bulk, for a rebuild: `COPY ... FROM STDIN` on PostgreSQL (no
/// statement to plan, no arrays to build), a multi-row insert on SQLite.
pub async fn copy_in(tx: &mut AnyTx, table: &str, rows: &[AuditRow]) -> Result<(), StoreError> {
    let AnyTx::Postgres(pg) = tx else { return insert_in(tx, table, rows).await };
    if rows.is_empty() {
        return Ok(());
    }
    let mut text = String::with_capacity(rows.len() * 192);
    for r in rows {
        push_field(&mut text, &r.store_id);
        text.push('\t');
        text.push_str(&r.version.to_string());
        text.push('\t');
        text.push_str(&r.global_position.to_string());
        text.push('\t');
        push_field(&mut text, &r.event_type);
        text.push('\t');
        push_field(&mut text, &r.correlation_id);
        text.push('\t');
        push_field(&mut text, &r.actor);
        text.push('\t');
        text.push_str(&r.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true));
        text.push('\t');
        push_field(&mut text, &r.summary);
        text.push('\n');
    }
    let statement = format!(
        "COPY {table} (store_id, version, global_position, event_type, correlation_id, actor, recorded_at, summary) FROM STDIN"
    );
    let mut copy = pg.copy_in_raw(&statement).await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// An audit row as read: sequence, store, version, type, correlation, actor, time, summary.
type AuditTuple<T> = (i64, String, i64, String, String, String, T, String);
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

/// Up to `q.limit` entries of the audit view after position `q.after`.
pub async fn query(log: &AnyEventLog, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    let rows: Vec<AuditTuple<DateTime<Utc>>> = match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query_as(
                "SELECT audit_seq, store_id, version, event_type, correlation_id, actor, recorded_at, summary FROM audit_log
                 WHERE audit_seq > $1 AND ($2::text IS NULL OR store_id = $2) AND ($3::text IS NULL OR event_type = $3)
                   AND ($4::text IS NULL OR correlation_id = $4)
                   AND ($5::timestamptz IS NULL OR recorded_at >= $5) AND ($6::timestamptz IS NULL OR recorded_at < $6)
                 ORDER BY audit_seq LIMIT $7",
            )
            .bind(q.after)
            .bind(&q.store_id)
            .bind(&q.event_type)
            .bind(&q.correlation_id)
            .bind(q.from)
            .bind(q.to)
            .bind(q.limit)
            .fetch_all(pg.pool())
            .await?
        }
        AnyEventLog::Sqlite(lite) => {
            let rows: Vec<AuditTuple<i64>> = sqlx::query_as(
                "SELECT audit_seq, store_id, version, event_type, correlation_id, actor, recorded_at_us, summary FROM audit_log
                 WHERE audit_seq > ?1 AND (?2 IS NULL OR store_id = ?2) AND (?3 IS NULL OR event_type = ?3)
                   AND (?4 IS NULL OR correlation_id = ?4)
                   AND (?5 IS NULL OR recorded_at_us >= ?5) AND (?6 IS NULL OR recorded_at_us < ?6)
                 ORDER BY audit_seq LIMIT ?7",
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
                .map(|(s, st, v, t, c, a, at, sum)| (s, st, v, t, c, a, DateTime::from_timestamp_micros(at).unwrap_or_default(), sum))
                .collect()
        }
    };
    Ok(rows
        .into_iter()
        .map(|(position, store_id, version, event_type, correlation_id, actor, recorded_at, summary)| AuditRecord {
            position,
            store_id,
            version,
            event_type,
            correlation_id,
            actor,
            recorded_at,
            summary,
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
