//! `audit_log`: one row per event, queryable by store, type, correlation id and time range with
//! stable cursors, each shown with a summary a person can read (derived from the event when
//! read); and queries of the command journal.

use chrono::{DateTime, SecondsFormat, Utc};
use planledger_domain::Event;
use planledger_store::{AnyEventLog, AnyTx, Checkpoint, EventCopy, Kind, Statement, StoreError};

/// The live table.
pub const LIVE: &str = "audit_log";

fn day(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A one-line description of an event for people.
pub fn summary(event: &Event) -> String {
    match event {
        Event::StoreRegistered { name, time_zone, catalog_version, .. } => {
            let under = catalog_version.map(|v| format!(" under catalog version {v}")).unwrap_or_default();
            format!("registered {} ({}){under}", name.as_ref().map_or("a store", |n| n.as_str()), time_zone.name())
        }
        Event::StoreImported { tenant, .. } => {
            let from = match (&tenant.source.line, &tenant.source.sha256) {
                (Some(line), Some(sha)) => {
                    format!("{} line {line} (sha256 {})", tenant.source.name, &sha[..sha.len().min(12)])
                }
                _ => tenant.source.name.clone(),
            };
            format!(
                "imported {} as {}{} from {from}",
                tenant.external_id.as_str(),
                tenant.status.as_str(),
                tenant.plan_id.as_ref().map(|p| format!(" on {p}")).unwrap_or_default()
            )
        }
        Event::CatalogAdopted { version, reason, at } => {
            let why = match reason {
                planledger_domain::AdoptionReason::EffectiveTime => "its effective time",
                planledger_domain::AdoptionReason::PeriodStart => "the store's period start",
                planledger_domain::AdoptionReason::PlanChange => "a plan change",
            };
            format!("now decided under catalog version {version} (reached at {why}, {})", day(at))
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
        Event::PlanTransitioned { from_plan_id, to_plan_id, reason, schedule_id, .. } => format!(
            "plan {from_plan_id} -> {to_plan_id} ({}){}",
            reason_text(reason),
            schedule_id.map(|id| format!(", as scheduled ({id})")).unwrap_or_default()
        ),
        Event::PlanTransitionScheduled {
            schedule_id,
            from_plan_id,
            to_plan_id,
            reason,
            at,
            at_period_end,
            replaces,
            ..
        } => {
            format!(
                "plan {from_plan_id} -> {to_plan_id} ({}) scheduled for {}{} ({schedule_id}){}",
                reason_text(reason),
                at.to_rfc3339_opts(SecondsFormat::Secs, true),
                if *at_period_end { ", the end of the billing period" } else { "" },
                replaces.map(|old| format!(", replacing {old}")).unwrap_or_default()
            )
        }
        Event::ScheduledTransitionCanceled { schedule_id, .. } => {
            format!("scheduled plan change {schedule_id} canceled")
        }
        Event::ScheduledTransitionFailed { schedule_id, error, message, .. } => {
            format!("scheduled plan change {schedule_id} refused when due: {error} ({message})")
        }
        Event::QuotaConsumed { action, amount, used_after, limit, period, from_grants, .. } => match limit {
            Some(limit) => format!(
                "consumed {} {action}: {used_after}/{limit} this {}{}",
                amount.get(),
                period.as_str(),
                granted(from_grants, "from")
            ),
            None => format!("consumed {} {action} (unmetered): {used_after} this {}", amount.get(), period.as_str()),
        },
        Event::QuotaRefunded { action, amount, consumption_id, from_grants, .. } => {
            format!("refunded {} {action} (consumption {consumption_id}){}", amount.get(), granted(from_grants, "to"))
        }
        Event::GrantAdded { grant_id, action, amount, expires_at, reason, .. } => format!(
            "granted {} {action}{} (grant {grant_id}; reason: {})",
            amount.get(),
            expires_at
                .map(|at| format!(" until {}", at.to_rfc3339_opts(SecondsFormat::Secs, true)))
                .unwrap_or_default(),
            reason.as_str()
        ),
        Event::GrantVoided { grant_id, reason, .. } => format!("grant {grant_id} voided (reason: {})", reason.as_str()),
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
    let copy = EventCopy {
        into: table,
        columns: "store_id, version, global_position, event_type, correlation_id, actor, @recorded_at",
        select: SELECTED,
        sequence: "audit_seq",
    };
    tx.copy_events_in(&copy, after, limit).await
}

/// An audit row's columns as selected from `ledger_events`: the store of an event's stream
/// (`store-<id>`), and the event's own columns.
const SELECTED: &str = "CASE WHEN stream_id LIKE 'store-%' THEN substr(stream_id, 7) ELSE stream_id END, \
    version, global_position, event_type, correlation_id, actor, @recorded_at";

/// `, 2 from grant g1`, or nothing.
fn granted(draws: &[planledger_domain::GrantDraw], direction: &str) -> String {
    draws.iter().map(|d| format!(", {} {direction} grant {}", d.amount, d.grant_id)).collect()
}

fn reason_text(reason: &planledger_domain::TransitionReason) -> String {
    serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "?".into())
}

/// The summary of a stored event, for people; a stored form no upcaster reads says so.
fn summary_of(event_type: &str, schema_version: i32, data: serde_json::Value, at: DateTime<Utc>) -> String {
    match Event::from_stored(event_type, schema_version, data, at) {
        Ok(event) => summary(&event),
        Err(e) => format!("unreadable event: {e}"),
    }
}

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
    let statement = Statement::new(
        "SELECT a.audit_seq, a.store_id, a.version, a.event_type, a.correlation_id, a.actor, a.@recorded_at,
                e.schema_version, e.data
         FROM audit_log a JOIN ledger_events e ON e.global_position = a.global_position
         WHERE a.audit_seq > $1 AND (CAST($2 AS text) IS NULL OR a.store_id = $2)
           AND (CAST($3 AS text) IS NULL OR a.event_type = $3) AND (CAST($4 AS text) IS NULL OR a.correlation_id = $4)
           AND ($5 IS NULL OR a.@recorded_at >= $5) AND ($6 IS NULL OR a.@recorded_at < $6)
         ORDER BY a.audit_seq LIMIT $7",
    )
    .bind(q.after)
    .bind(q.store_id.clone())
    .bind(q.event_type.clone())
    .bind(q.correlation_id.clone())
    .bind(q.from)
    .bind(q.to)
    .bind(q.limit);
    use Kind::{Int, Json, Text, Time};
    let rows = log.fetch(&statement, &[Int, Text, Int, Text, Text, Text, Time, Int, Json]).await?;
    rows.iter()
        .map(|row| {
            let (event_type, recorded_at) = (row.text(3)?, row.time(6)?);
            let data = serde_json::from_str(&row.text(8)?).unwrap_or(serde_json::Value::Null);
            let schema = i32::try_from(row.int(7)?).unwrap_or(i32::MAX);
            Ok(AuditRecord {
                position: row.int(0)?,
                store_id: row.text(1)?,
                version: row.int(2)?,
                summary: summary_of(&event_type, schema, data, recorded_at),
                event_type,
                correlation_id: row.text(4)?,
                actor: row.text(5)?,
                recorded_at,
            })
        })
        .collect()
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
    let statement = Statement::new(format!(
        "SELECT {JOURNAL_COLUMNS}
         FROM command_journal WHERE id > $1 AND (CAST($2 AS text) IS NULL OR store_id = $2)
           AND (CAST($3 AS text) IS NULL OR correlation_id = $3)
         ORDER BY id LIMIT $4"
    ))
    .bind(after)
    .bind(store_id.map(str::to_owned))
    .bind(correlation_id.map(str::to_owned))
    .bind(limit);
    journal_records(log, &statement).await
}

/// The columns of a journal record, as `journal_records` reads them.
const JOURNAL_COLUMNS: &str =
    "id, store_id, kind, outcome, error_code, correlation_id, actor, idempotency_key, duration_us, @recorded_at";

async fn journal_records(log: &AnyEventLog, statement: &Statement) -> Result<Vec<JournalRecord>, StoreError> {
    use Kind::{Int, Text, Time};
    let rows = log.fetch(statement, &[Int, Text, Text, Text, Text, Text, Text, Text, Int, Time]).await?;
    rows.iter()
        .map(|row| {
            Ok(JournalRecord {
                id: row.int(0)?,
                store_id: row.text(1)?,
                kind: row.text(2)?,
                outcome: row.text(3)?,
                error_code: row.opt_text(4)?,
                correlation_id: row.text(5)?,
                actor: row.text(6)?,
                idempotency_key: row.opt_text(7)?,
                duration_us: row.int(8)?,
                recorded_at: row.time(9)?,
            })
        })
        .collect()
}

/// A store's refused commands, newest first: at most `limit` of them, among its last `among`
/// commands (the work is bounded by `among`, whatever the store's history; the journal's
/// (store, id) index gives them in order).
pub async fn store_refusals(
    log: &AnyEventLog,
    store_id: &str,
    among: i64,
    limit: i64,
) -> Result<Vec<JournalRecord>, StoreError> {
    let statement = Statement::new(format!(
        "SELECT {JOURNAL_COLUMNS} FROM (SELECT * FROM command_journal WHERE store_id = $1 ORDER BY id DESC LIMIT $2) recent
         WHERE outcome = 'refused' ORDER BY id DESC LIMIT $3"
    ))
    .bind(store_id)
    .bind(among)
    .bind(limit);
    journal_records(log, &statement).await
}

/// A consumption the ledger refused, as the journal keeps it: what a catalog preview decides
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedConsumption {
    pub action: String,
    pub amount: i64,
    pub code: String,
    pub correlation_id: String,
    pub at: DateTime<Utc>,
}

/// Every refused consumption the journal still holds (its retention, `PLANLEDGER_KEEP_JOURNAL`,
/// bounds them), by store, oldest first. Rows written before the journal kept a consumption's
/// action and amount are left out.
pub async fn refused_consumptions(
    log: &AnyEventLog,
) -> Result<std::collections::HashMap<String, Vec<RefusedConsumption>>, StoreError> {
    let statement = Statement::new(
        "SELECT store_id, action, amount, coalesce(error_code, 'unknown'), correlation_id, @recorded_at
         FROM command_journal WHERE kind = 'consume' AND outcome = 'refused' AND action IS NOT NULL
         ORDER BY id",
    );
    let kinds = [Kind::Text, Kind::Text, Kind::Int, Kind::Text, Kind::Text, Kind::Time];
    let mut by_store: std::collections::HashMap<String, Vec<RefusedConsumption>> = Default::default();
    for row in log.fetch(&statement, &kinds).await? {
        by_store.entry(row.text(0)?).or_default().push(RefusedConsumption {
            action: row.text(1)?,
            amount: row.int(2)?,
            code: row.text(3)?,
            correlation_id: row.text(4)?,
            at: row.time(5)?,
        });
    }
    Ok(by_store)
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
    let window = "SELECT outcome, error_code, @recorded_at AS at FROM command_journal ORDER BY id DESC LIMIT $1";
    let totals = Statement::new(format!("SELECT count(*), min(at) FROM ({window}) recent")).bind(last);
    let codes = Statement::new(format!(
        "SELECT coalesce(error_code, 'unknown'), count(*) FROM ({window}) recent WHERE outcome = 'refused'
         GROUP BY 1 ORDER BY 2 DESC, 1"
    ))
    .bind(last);
    let (commands, since) = match log.fetch_optional(&totals, &[Kind::Int, Kind::Time]).await? {
        Some(row) => (row.int(0)?, row.opt_time(1)?),
        None => (0, None),
    };
    let by_code = log
        .fetch(&codes, &[Kind::Text, Kind::Int])
        .await?
        .iter()
        .map(|row| Ok((row.text(0)?, row.int(1)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(RecentRefusals { commands, since, by_code })
}
