//! `tenant_state`: one row per store with its plan, statuses, deadlines, version and folded
//! state. The statuses stored are those at the time of the write; readers derive them again
//! from the folded state and `now`, so a lagging deadline worker never shows a stale status.

use chrono::{DateTime, Utc};
use planledger_domain::{status, Catalog, StoreId, TenantState};
use planledger_store::{AnyEventLog, AnyTx, StoreError};
use sqlx::Row;

const POSTGRES_SCHEMA: &str = include_str!("../../../projections/tenant_state/v1/postgres.sql");
const SQLITE_SCHEMA: &str = include_str!("../../../projections/tenant_state/v1/sqlite.sql");

/// One store's row.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantStateRow {
    pub store_id: StoreId,
    pub state: TenantState,
    pub version: i64,
    pub catalog_fingerprint: String,
    pub updated_at: DateTime<Utc>,
}

/// Creates the table and its indexes if they are missing.
pub async fn ensure_schema(log: &AnyEventLog) -> Result<(), StoreError> {
    match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::raw_sql(POSTGRES_SCHEMA).execute(pg.pool()).await?;
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::raw_sql(SQLITE_SCHEMA).execute(lite.writer()).await?;
        }
    }
    Ok(())
}

fn micros(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(|t| t.timestamp_micros())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("tenant_state {what}: {e}"))
}

/// Writes the row of `store` at `version` in `tx`; a row already at a newer version is kept.
pub async fn write_in(
    tx: &mut AnyTx,
    store: StoreId,
    state: &TenantState,
    version: i64,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<(), StoreError> {
    let status = status(state, now, catalog);
    let json = serde_json::to_value(state).map_err(|e| corrupt("state", e))?;
    let store_id = store.to_string();
    let name = state.name.as_ref().map(|n| n.as_str().to_owned());
    let plan_id = state.plan_id.as_ref().map(ToString::to_string);
    let subscription_id = state.subscription_id.as_ref().map(|s| s.as_str().to_owned());
    let columns = "store_id, name, time_zone, plan_id, tier, subscription_status, internal_status";
    match tx {
        AnyTx::Postgres(tx) => {
            let sql = format!(
                "INSERT INTO tenant_state ({columns}, trial_ends_at, grace_ends_at, maintenance_ends_at, next_deadline,
                    subscription_id, version, state, catalog_fingerprint, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (store_id) DO UPDATE SET
                    name = EXCLUDED.name, time_zone = EXCLUDED.time_zone, plan_id = EXCLUDED.plan_id,
                    tier = EXCLUDED.tier, subscription_status = EXCLUDED.subscription_status,
                    internal_status = EXCLUDED.internal_status, trial_ends_at = EXCLUDED.trial_ends_at,
                    grace_ends_at = EXCLUDED.grace_ends_at, maintenance_ends_at = EXCLUDED.maintenance_ends_at,
                    next_deadline = EXCLUDED.next_deadline, subscription_id = EXCLUDED.subscription_id,
                    version = EXCLUDED.version, state = EXCLUDED.state,
                    catalog_fingerprint = EXCLUDED.catalog_fingerprint, updated_at = EXCLUDED.updated_at
                 WHERE tenant_state.version < EXCLUDED.version"
            );
            sqlx::query(&sql)
                .bind(&store_id)
                .bind(name)
                .bind(state.time_zone.name())
                .bind(plan_id)
                .bind(status.tier)
                .bind(status.subscription_status.as_str())
                .bind(status.internal_status.as_str())
                .bind(state.trial_ends_at)
                .bind(state.grace_ends_at)
                .bind(state.maintenance_ends_at)
                .bind(state.next_deadline())
                .bind(subscription_id)
                .bind(version)
                .bind(sqlx::types::Json(&json))
                .bind(catalog.fingerprint())
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        AnyTx::Sqlite(tx) => {
            let sql = format!(
                "INSERT INTO tenant_state ({columns}, trial_ends_at_us, grace_ends_at_us, maintenance_ends_at_us,
                    next_deadline_us, subscription_id, version, state, catalog_fingerprint, updated_at_us)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (store_id) DO UPDATE SET
                    name = excluded.name, time_zone = excluded.time_zone, plan_id = excluded.plan_id,
                    tier = excluded.tier, subscription_status = excluded.subscription_status,
                    internal_status = excluded.internal_status, trial_ends_at_us = excluded.trial_ends_at_us,
                    grace_ends_at_us = excluded.grace_ends_at_us, maintenance_ends_at_us = excluded.maintenance_ends_at_us,
                    next_deadline_us = excluded.next_deadline_us, subscription_id = excluded.subscription_id,
                    version = excluded.version, state = excluded.state,
                    catalog_fingerprint = excluded.catalog_fingerprint, updated_at_us = excluded.updated_at_us
                 WHERE tenant_state.version < excluded.version"
            );
            sqlx::query(&sql)
                .bind(&store_id)
                .bind(name)
                .bind(state.time_zone.name())
                .bind(plan_id)
                .bind(status.tier)
                .bind(status.subscription_status.as_str())
                .bind(status.internal_status.as_str())
                .bind(micros(state.trial_ends_at))
                .bind(micros(state.grace_ends_at))
                .bind(micros(state.maintenance_ends_at))
                .bind(micros(state.next_deadline()))
                .bind(subscription_id)
                .bind(version)
                .bind(json.to_string())
                .bind(catalog.fingerprint())
                .bind(now.timestamp_micros())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
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

const SELECT_PG: &str = "SELECT store_id, state, version, catalog_fingerprint, updated_at FROM tenant_state";
const SELECT_SQLITE: &str = "SELECT store_id, state, version, catalog_fingerprint, updated_at_us FROM tenant_state";

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
            let row =
                sqlx::query(&format!("{SELECT_PG} WHERE store_id = $1")).bind(id).fetch_optional(pg.pool()).await?;
            row.as_ref().map(from_pg).transpose()
        }
        AnyEventLog::Sqlite(lite) => {
            let row = sqlx::query(&format!("{SELECT_SQLITE} WHERE store_id = ?"))
                .bind(id)
                .fetch_optional(lite.readers())
                .await?;
            row.as_ref().map(from_sqlite).transpose()
        }
    }
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

/// Stores (optionally of one stored internal status), by store id after `after`.
pub async fn list(
    log: &AnyEventLog,
    internal_status: Option<&str>,
    after: Option<StoreId>,
    limit: i64,
) -> Result<Vec<TenantStateRow>, StoreError> {
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    match log {
        AnyEventLog::Postgres(pg) => {
            let sql = format!(
                "{SELECT_PG} WHERE ($1::text IS NULL OR internal_status = $1) AND store_id > $2 ORDER BY store_id LIMIT $3"
            );
            let rows = sqlx::query(&sql).bind(internal_status).bind(after).bind(limit).fetch_all(pg.pool()).await?;
            rows.iter().map(from_pg).collect()
        }
        AnyEventLog::Sqlite(lite) => {
            let sql = format!(
                "{SELECT_SQLITE} WHERE (?1 IS NULL OR internal_status = ?1) AND store_id > ?2 ORDER BY store_id LIMIT ?3"
            );
            let rows =
                sqlx::query(&sql).bind(internal_status).bind(after).bind(limit).fetch_all(lite.readers()).await?;
            rows.iter().map(from_sqlite).collect()
        }
    }
}
