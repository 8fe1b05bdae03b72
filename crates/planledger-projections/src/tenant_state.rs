//! `tenant_state`: one row per store with its plan, statuses, deadlines, version and folded
//! state. The statuses stored are those at the time of the write; readers derive them again
//! from the folded state and `now`, so a lagging deadline worker never shows a stale status.

use chrono::{DateTime, Utc};
use planledger_domain::{status, Catalog, StoreId, TenantState};
use planledger_store::one_statement::sqlite_sql;
use std::borrow::Cow;

use planledger_store::{AnyEventLog, AnyTx, Column, OnConflict, StoreError, Table, Value};
use sqlx::Row;

/// One store's row.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantStateRow {
    pub store_id: StoreId,
    pub state: TenantState,
    pub version: i64,
    pub catalog_fingerprint: String,
    pub updated_at: DateTime<Utc>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("tenant_state {what}: {e}"))
}

/// The live table.
pub const LIVE: &str = "tenant_state";

/// Every column of a row, in the order rows are written and copied.
const ROW_COLUMNS_PG: &str = "store_id, name, time_zone, plan_id, tier, subscription_status, internal_status, \
    trial_ends_at, grace_ends_at, maintenance_ends_at, next_deadline, subscription_id, version, state, \
    catalog_fingerprint, updated_at, usage";
const ROW_COLUMNS_SQLITE: &str = "store_id, name, time_zone, plan_id, tier, subscription_status, internal_status, \
    trial_ends_at_us, grace_ends_at_us, maintenance_ends_at_us, next_deadline_us, subscription_id, version, state, \
    catalog_fingerprint, updated_at_us, usage";

/// The live table as the store writes its rows: a row replaces an older one of its store, never
/// a newer one (a late write cannot take a row back). A generation being rebuilt is
/// `TABLE.named(..)`.
pub const TABLE: Table = Table {
    name: Cow::Borrowed(LIVE),
    columns: &[
        Column::text("store_id"),
        Column::text("name"),
        Column::text("time_zone"),
        Column::text("plan_id"),
        Column::text("tier"),
        Column::text("subscription_status"),
        Column::text("internal_status"),
        Column::time("trial_ends_at"),
        Column::time("grace_ends_at"),
        Column::time("maintenance_ends_at"),
        Column::time("next_deadline"),
        Column::text("subscription_id"),
        Column::int("version"),
        Column::json("state"),
        Column::text("catalog_fingerprint"),
        Column::time("updated_at"),
        Column::json("usage"),
    ],
    on_conflict: OnConflict::KeepNewer { key: "store_id", version: "version" },
};

/// The tail of an upsert into `table` of rows with `columns` (as [`TABLE`] says), for the
/// copies of rows between generations.
fn upsert_clause(table: &str, columns: &str) -> String {
    let set: Vec<String> =
        columns.split(',').map(str::trim).filter(|c| *c != "store_id").map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    format!("ON CONFLICT (store_id) DO UPDATE SET {} WHERE {table}.version < EXCLUDED.version", set.join(", "))
}

/// One store's row of [`TABLE`]: `state` at `version`, its statuses as of `at`. A row records
/// what it was built with (`schema::built_with`: the catalog and the fold), so that a rebuild
/// under the same may take it as it is (see `copy_rows_in`).
pub fn row(
    store: StoreId,
    state: &TenantState,
    version: i64,
    at: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Value>, StoreError> {
    let status = status(state, at, catalog);
    Ok(vec![
        store.to_string().into(),
        state.name.as_ref().map(|n| n.as_str().to_owned()).into(),
        state.time_zone.name().into(),
        state.plan_id.as_ref().map(ToString::to_string).into(),
        status.tier.into(),
        status.subscription_status.as_str().into(),
        status.internal_status.as_str().into(),
        state.trial_ends_at.into(),
        state.grace_ends_at.into(),
        state.maintenance_ends_at.into(),
        state.next_deadline().into(),
        state.subscription_id.as_ref().map(|s| s.as_str().to_owned()).into(),
        version.into(),
        Value::Json(serde_json::to_string(state).map_err(|e| corrupt("state", e))?),
        crate::schema::built_with(catalog).into(),
        at.into(),
        Value::Json(usage_of(state, at, catalog)),
    ])
}

/// Writes the rows of many stores into `table` (the live one or a generation being rebuilt) in
/// `tx`. Each row is `(store, state, version, as of)`.
pub async fn write_many_into(
    tx: &mut AnyTx,
    table: &str,
    rows: &[(StoreId, &TenantState, i64, DateTime<Utc>)],
    catalog: &Catalog,
) -> Result<(), StoreError> {
    let values = rows
        .iter()
        .map(|(store, state, version, at)| row(*store, state, *version, *at, catalog))
        .collect::<Result<Vec<_>, _>>()?;
    let values: Vec<&[Value]> = values.iter().map(Vec::as_slice).collect();
    planledger_store::group::write_rows_in(tx, &TABLE.named(table.to_owned()), &values).await?;
    Ok(())
}

/// Copies into `to` the rows `from` holds of `stores` that were built with `built_with` and are
/// newer than `to`'s, in the server (no row leaves the database); answers how many it copied.
///
/// A row written by the command path under a catalog and fold is exactly the row a rebuild
/// under the same would make of its store's stream at that version (rows are written as of
/// their store's last event; the read model is a function of the log and `built_with`), so a
/// rebuild's catch-up takes the rows writers wrote during it instead of folding their events
/// again. Rows built otherwise (another node's catalog or fold) are not copied: the caller
/// folds those stores from the log.
pub async fn copy_rows_in(
    tx: &mut AnyTx,
    from: &str,
    to: &str,
    stores: &[StoreId],
    built_with: &str,
) -> Result<u64, StoreError> {
    if stores.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = stores.iter().map(ToString::to_string).collect();
    Ok(match tx {
        AnyTx::Postgres(tx) => {
            let sql = format!(
                "INSERT INTO {to} ({ROW_COLUMNS_PG}) SELECT {ROW_COLUMNS_PG} FROM {from}
                 WHERE store_id = ANY($1) AND catalog_fingerprint = $2 {}",
                upsert_clause(to, ROW_COLUMNS_PG)
            );
            sqlx::query(&sql).bind(&ids).bind(built_with).execute(&mut **tx).await?.rows_affected()
        }
        AnyTx::Sqlite(tx) => {
            let ids = serde_json::to_string(&ids).map_err(|e| corrupt("store ids", e))?;
            let sql = format!(
                "INSERT INTO {to} ({ROW_COLUMNS_SQLITE}) SELECT {ROW_COLUMNS_SQLITE} FROM {from}
                 WHERE store_id IN (SELECT value FROM json_each(?)) AND catalog_fingerprint = ? {}",
                upsert_clause(to, ROW_COLUMNS_SQLITE)
            );
            sqlx::query(&sql).bind(ids).bind(built_with).execute(&mut **tx).await?.rows_affected()
        }
    })
}

/// The versions of the rows `table` holds of `stores`, read in `tx`.
pub async fn versions_in(
    tx: &mut AnyTx,
    table: &str,
    stores: &[StoreId],
) -> Result<std::collections::HashMap<StoreId, i64>, StoreError> {
    let ids: Vec<String> = stores.iter().map(ToString::to_string).collect();
    let rows: Vec<(String, i64)> = match tx {
        AnyTx::Postgres(tx) => {
            let sql = format!("SELECT store_id, version FROM {table} WHERE store_id = ANY($1)");
            sqlx::query_as(&sql).bind(&ids).fetch_all(&mut **tx).await?
        }
        AnyTx::Sqlite(tx) => {
            let ids = serde_json::to_string(&ids).map_err(|e| corrupt("store ids", e))?;
            let sql =
                format!("SELECT store_id, version FROM {table} WHERE store_id IN (SELECT value FROM json_each(?))");
            sqlx::query_as(&sql).bind(ids).fetch_all(&mut **tx).await?
        }
    };
    rows.into_iter()
        .map(|(id, version)| Ok((StoreId::parse(&id).map_err(|e| corrupt("store_id", e))?, version)))
        .collect()
}

/// Usage per action in its current period at `now`, with the limit and what remains: every
/// action the plan limits or the store has used, by name.
fn usage_of(state: &TenantState, now: DateTime<Utc>, catalog: &Catalog) -> String {
    let effective = planledger_domain::effective_state(state, now, catalog);
    let usage: Vec<StoredUsage> = planledger_domain::usage_positions(&effective, now, catalog)
        .into_iter()
        .map(|q| StoredUsage {
            action: q.action.to_string(),
            period: q.window.period.as_str(),
            period_start: rfc3339_micros(q.window.start),
            period_end: rfc3339_micros(q.window.end),
            used: q.used,
            limit: q.limit,
            remaining: q.remaining(),
        })
        .collect();
    serde_json::to_string(&usage).unwrap_or_else(|_| "[]".to_owned())
}

fn rfc3339_micros(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// One action's usage as the `usage` column keeps it (for SQL readers of the read model).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredUsage {
    action: String,
    period: &'static str,
    period_start: Option<String>,
    period_end: Option<String>,
    used: u64,
    limit: Option<u64>,
    remaining: Option<u64>,
}

fn parse_row(
    store_id: String,
    state: serde_json::Value,
    version: i64,
    fingerprint: String,
    updated_at: DateTime<Utc>,
) -> Result<TenantStateRow, StoreError> {
    Ok(TenantStateRow {
        store_id: StoreId::parse(&store_id).map_err(|e| corrupt("store_id", e))?,
        state: serde_json::from_value(state).map_err(|e| corrupt("state", e))?,
        version,
        catalog_fingerprint: fingerprint,
        updated_at,
    })
}

/// The columns a `TenantStateRow` is read from, in `from_pg` / `from_sqlite` order.
const COLUMNS_PG: &str = "store_id, state, version, catalog_fingerprint, updated_at";
const COLUMNS_SQLITE: &str = "store_id, state, version, catalog_fingerprint, updated_at_us";

fn from_pg(row: &sqlx::postgres::PgRow) -> Result<TenantStateRow, StoreError> {
    let sqlx::types::Json(state) = row.try_get::<sqlx::types::Json<serde_json::Value>, _>(1)?;
    parse_row(row.try_get(0)?, state, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?)
}

fn from_sqlite(row: &sqlx::sqlite::SqliteRow) -> Result<TenantStateRow, StoreError> {
    let text: String = row.try_get(1)?;
    let state = serde_json::from_str(&text).map_err(|e| corrupt("state", e))?;
    let updated =
        DateTime::from_timestamp_micros(row.try_get(4)?).ok_or_else(|| corrupt("updated_at", "out of range"))?;
    parse_row(row.try_get(0)?, state, row.try_get(2)?, row.try_get(3)?, updated)
}

/// The row of one store.
pub async fn load(log: &AnyEventLog, store: StoreId) -> Result<Option<TenantStateRow>, StoreError> {
    let id = store.to_string();
    match log {
        AnyEventLog::Postgres(pg) => {
            let row = sqlx::query(&format!("SELECT {COLUMNS_PG} FROM tenant_state WHERE store_id = $1"))
                .bind(id)
                .fetch_optional(pg.pool())
                .await?;
            row.as_ref().map(from_pg).transpose()
        }
        AnyEventLog::Sqlite(lite) => {
            let row = sqlx::query(&format!("SELECT {COLUMNS_SQLITE} FROM tenant_state WHERE store_id = ?"))
                .bind(id)
                .fetch_optional(lite.readers())
                .await?;
            row.as_ref().map(from_sqlite).transpose()
        }
    }
}

/// The rows of `stores` in `table` (the live one or a generation being rebuilt), read in `tx`.
pub async fn load_many_in(tx: &mut AnyTx, table: &str, stores: &[StoreId]) -> Result<Vec<TenantStateRow>, StoreError> {
    let ids: Vec<String> = stores.iter().map(ToString::to_string).collect();
    match tx {
        AnyTx::Postgres(tx) => {
            let sql = format!("SELECT {COLUMNS_PG} FROM {table} WHERE store_id = ANY($1)");
            let rows = sqlx::query(&sql).bind(&ids).fetch_all(&mut **tx).await?;
            rows.iter().map(from_pg).collect()
        }
        AnyTx::Sqlite(tx) => {
            let sql = format!("SELECT {COLUMNS_SQLITE} FROM {table} WHERE store_id = ?");
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await? {
                    found.push(from_sqlite(&row)?);
                }
            }
            Ok(found)
        }
    }
}

/// The earliest pending deadline of any store (one probe of the deadline index).
pub async fn earliest_deadline(log: &AnyEventLog) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query_scalar("SELECT min(next_deadline) FROM tenant_state").fetch_one(pg.pool()).await?
        }
        AnyEventLog::Sqlite(lite) => {
            let us: Option<i64> =
                sqlx::query_scalar("SELECT min(next_deadline_us) FROM tenant_state").fetch_one(lite.readers()).await?;
            us.and_then(DateTime::from_timestamp_micros)
        }
    })
}

/// Stores whose next deadline is at or before `now`, earliest first.
pub async fn due(log: &AnyEventLog, now: DateTime<Utc>, limit: i64) -> Result<Vec<StoreId>, StoreError> {
    let ids: Vec<String> = match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query_scalar(
                "SELECT store_id FROM tenant_state WHERE next_deadline <= $1 ORDER BY next_deadline LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pg.pool())
            .await?
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::query_scalar(
                "SELECT store_id FROM tenant_state WHERE next_deadline_us <= ? ORDER BY next_deadline_us LIMIT ?",
            )
            .bind(now.timestamp_micros())
            .bind(limit)
            .fetch_all(lite.readers())
            .await?
        }
    };
    ids.iter().map(|id| StoreId::parse(id).map_err(|e| corrupt("store_id", e))).collect()
}

/// Which stores a listing shows: every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFilter {
    /// The internal status stored with the row (as of its last write).
    pub internal_status: Option<String>,
    pub plan_id: Option<String>,
    /// A part of the store's name, in any case.
    pub name_contains: Option<String>,
}

/// Stores matching `filter`, by store id after `after`. The status filter reads its index in
/// store id order; the plan and name filters are checked on the rows that index (or the primary
/// key) yields, so a page costs at most a scan until `limit` rows match.
pub async fn list(
    log: &AnyEventLog,
    filter: &StoreFilter,
    after: Option<StoreId>,
    limit: i64,
) -> Result<Vec<TenantStateRow>, StoreError> {
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    // A part of the name, matched literally: LIKE's wildcards in it are escaped.
    let name = filter.name_contains.as_deref().map(|n| {
        let literal = n.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        format!("%{literal}%")
    });
    // One statement for both backends (only the columns read differ).
    let sql = |columns: &str| {
        format!(
            "SELECT {columns} FROM tenant_state
             WHERE (CAST($1 AS text) IS NULL OR internal_status = $1) AND store_id > $2
               AND (CAST($4 AS text) IS NULL OR plan_id = $4)
               AND (CAST($5 AS text) IS NULL OR lower(name) LIKE $5 ESCAPE '\\')
             ORDER BY store_id LIMIT $3"
        )
    };
    macro_rules! fetch {
        ($sql:expr, $pool:expr) => {
            sqlx::query($sql)
                .bind(&filter.internal_status)
                .bind(after)
                .bind(limit)
                .bind(&filter.plan_id)
                .bind(name)
                .fetch_all($pool)
                .await?
        };
    }
    match log {
        AnyEventLog::Postgres(pg) => fetch!(&sql(COLUMNS_PG), pg.pool()).iter().map(from_pg).collect(),
        AnyEventLog::Sqlite(lite) => {
            fetch!(&sqlite_sql(&sql(COLUMNS_SQLITE)), lite.readers()).iter().map(from_sqlite).collect()
        }
    }
}

/// How many stores have each stored internal status (one pass over the status index).
pub async fn count_by_status(log: &AnyEventLog) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = "SELECT internal_status, count(*) FROM tenant_state GROUP BY internal_status ORDER BY internal_status";
    Ok(match log {
        AnyEventLog::Postgres(pg) => sqlx::query_as(sql).fetch_all(pg.pool()).await?,
        AnyEventLog::Sqlite(lite) => sqlx::query_as(sql).fetch_all(lite.readers()).await?,
    })
}

/// Stores of stored status `internal_status` whose next deadline falls before `until` (overdue
/// ones included), earliest first: what is about to happen to them, read from the deadline index.
pub async fn deadlines_before(
    log: &AnyEventLog,
    internal_status: &str,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<TenantStateRow>, StoreError> {
    match log {
        AnyEventLog::Postgres(pg) => {
            let sql = format!(
                "SELECT {COLUMNS_PG} FROM tenant_state WHERE next_deadline < $1 AND internal_status = $2
                 ORDER BY next_deadline LIMIT $3"
            );
            let rows = sqlx::query(&sql).bind(until).bind(internal_status).bind(limit).fetch_all(pg.pool()).await?;
            rows.iter().map(from_pg).collect()
        }
        AnyEventLog::Sqlite(lite) => {
            let sql = format!(
                "SELECT {COLUMNS_SQLITE} FROM tenant_state WHERE next_deadline_us < ?1 AND internal_status = ?2
                 ORDER BY next_deadline_us LIMIT ?3"
            );
            let rows = sqlx::query(&sql)
                .bind(until.timestamp_micros())
                .bind(internal_status)
                .bind(limit)
                .fetch_all(lite.readers())
                .await?;
            rows.iter().map(from_sqlite).collect()
        }
    }
}
