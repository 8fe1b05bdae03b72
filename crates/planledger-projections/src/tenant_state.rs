//! `tenant_state`: one row per store with its plan, statuses, deadlines, version and folded
//! state. The statuses stored are those at the time of the write; readers derive them again
//! from the folded state and `now`, so a lagging deadline worker never shows a stale status.

use chrono::{DateTime, Utc};
use planledger_domain::{status, Catalog, Catalogs, StoreId, TenantState};
use std::borrow::Cow;

use planledger_store::{AnyEventLog, AnyTx, Column, Kind, OnConflict, Row, Statement, StoreError, Table, Value};

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

/// Every column of a row in the order rows are written and copied, time columns marked (see
/// `planledger_store::sql`).
fn row_columns() -> String {
    let names: Vec<String> = TABLE
        .columns
        .iter()
        .map(|c| if c.kind == Kind::Time { format!("@{}", c.name) } else { c.name.to_owned() })
        .collect();
    names.join(", ")
}

/// The tail of an upsert into `table`: a row replaces an older one of its store, never a newer.
fn upsert_clause(table: &str) -> String {
    let columns = row_columns();
    let set: Vec<String> =
        columns.split(", ").filter(|c| *c != "store_id").map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    format!("ON CONFLICT (store_id) DO UPDATE SET {} WHERE {table}.version < EXCLUDED.version", set.join(", "))
}

/// One store's row of [`TABLE`]: `state` at `version`, its statuses as of `at`. A row records
/// what it was built with (`built_with`, `schema::built_with(catalog)`: the catalog and the
/// fold, made once for many rows), so that a rebuild under the same may take it as it is (see
/// `copy_rows_in`).
pub fn row(
    store: StoreId,
    state: &TenantState,
    version: i64,
    at: DateTime<Utc>,
    catalogs: &Catalogs,
    built_with: &str,
) -> Result<Vec<Value>, StoreError> {
    // The store's own catalog version; a later one that will reach it is a deadline like the
    // lifecycle's, so that the deadline worker records the move.
    let catalog = &catalogs.shown_for(state, at).catalog;
    let status = status(state, at, catalog);
    let next_deadline = match (state.next_deadline(), catalogs.next_adoption(state)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
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
        next_deadline.into(),
        state.subscription_id.as_ref().map(|s| s.as_str().to_owned()).into(),
        version.into(),
        Value::Json(serde_json::to_string(state).map_err(|e| corrupt("state", e))?),
        built_with.into(),
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
    catalogs: &Catalogs,
) -> Result<(), StoreError> {
    let built_with = crate::schema::built_with(catalogs);
    let values = rows
        .iter()
        .map(|(store, state, version, at)| row(*store, state, *version, *at, catalogs, &built_with))
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
    let columns = row_columns();
    let statement = Statement::new(format!(
        "INSERT INTO {to} ({columns}) SELECT {columns} FROM {from}
         WHERE store_id = ANY($1) AND catalog_fingerprint = $2 {}",
        upsert_clause(to)
    ))
    .bind(ids(stores))
    .bind(built_with);
    tx.execute(&statement).await
}

fn ids(stores: &[StoreId]) -> Vec<String> {
    stores.iter().map(ToString::to_string).collect()
}

/// The versions of the rows `table` holds of `stores`, read in `tx`.
pub async fn versions_in(
    tx: &mut AnyTx,
    table: &str,
    stores: &[StoreId],
) -> Result<std::collections::HashMap<StoreId, i64>, StoreError> {
    let statement =
        Statement::new(format!("SELECT store_id, version FROM {table} WHERE store_id = ANY($1)")).bind(ids(stores));
    tx.fetch(&statement, &[Kind::Text, Kind::Int])
        .await?
        .iter()
        .map(|row| Ok((StoreId::parse(&row.text(0)?).map_err(|e| corrupt("store_id", e))?, row.int(1)?)))
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

/// The columns a `TenantStateRow` is read from, of [`ROW_KINDS`].
const COLUMNS: &str = "store_id, state, version, catalog_fingerprint, @updated_at";
const ROW_KINDS: &[Kind] = &[Kind::Text, Kind::Json, Kind::Int, Kind::Text, Kind::Time];

fn parse_row(row: &Row) -> Result<TenantStateRow, StoreError> {
    Ok(TenantStateRow {
        store_id: StoreId::parse(&row.text(0)?).map_err(|e| corrupt("store_id", e))?,
        state: serde_json::from_str(&row.text(1)?).map_err(|e| corrupt("state", e))?,
        version: row.int(2)?,
        catalog_fingerprint: row.text(3)?,
        updated_at: row.time(4)?,
    })
}

fn parse_rows(rows: Vec<Row>) -> Result<Vec<TenantStateRow>, StoreError> {
    rows.iter().map(parse_row).collect()
}

/// The row of one store.
pub async fn load(log: &AnyEventLog, store: StoreId) -> Result<Option<TenantStateRow>, StoreError> {
    let statement =
        Statement::new(format!("SELECT {COLUMNS} FROM tenant_state WHERE store_id = $1")).bind(store.to_string());
    log.fetch_optional(&statement, ROW_KINDS).await?.as_ref().map(parse_row).transpose()
}

/// The rows of `stores` in `table` (the live one or a generation being rebuilt), read in `tx`.
pub async fn load_many_in(tx: &mut AnyTx, table: &str, stores: &[StoreId]) -> Result<Vec<TenantStateRow>, StoreError> {
    let statement = Statement::new(format!("SELECT {COLUMNS} FROM {table} WHERE store_id = ANY($1)")).bind(ids(stores));
    parse_rows(tx.fetch(&statement, ROW_KINDS).await?)
}

/// The earliest pending deadline of any store (one probe of the deadline index).
pub async fn earliest_deadline(log: &AnyEventLog) -> Result<Option<DateTime<Utc>>, StoreError> {
    let statement = Statement::new("SELECT min(@next_deadline) FROM tenant_state");
    match log.fetch_optional(&statement, &[Kind::Time]).await? {
        Some(row) => row.opt_time(0),
        None => Ok(None),
    }
}

/// Stores whose next deadline is at or before `now`, earliest first.
pub async fn due(log: &AnyEventLog, now: DateTime<Utc>, limit: i64) -> Result<Vec<StoreId>, StoreError> {
    let statement =
        Statement::new("SELECT store_id FROM tenant_state WHERE @next_deadline <= $1 ORDER BY @next_deadline LIMIT $2")
            .bind(now)
            .bind(limit);
    log.fetch(&statement, &[Kind::Text])
        .await?
        .iter()
        .map(|row| StoreId::parse(&row.text(0)?).map_err(|e| corrupt("store_id", e)))
        .collect()
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
    let statement = Statement::new(format!(
        "SELECT {COLUMNS} FROM tenant_state
         WHERE (CAST($1 AS text) IS NULL OR internal_status = $1) AND store_id > $2
           AND (CAST($4 AS text) IS NULL OR plan_id = $4)
           AND (CAST($5 AS text) IS NULL OR lower(name) LIKE $5 ESCAPE '\\')
         ORDER BY store_id LIMIT $3"
    ))
    .bind(filter.internal_status.clone())
    .bind(after)
    .bind(limit)
    .bind(filter.plan_id.clone())
    .bind(name);
    parse_rows(log.fetch(&statement, ROW_KINDS).await?)
}

/// How many stores have each stored internal status (one pass over the status index).
pub async fn count_by_status(log: &AnyEventLog) -> Result<Vec<(String, i64)>, StoreError> {
    let statement = Statement::new(
        "SELECT internal_status, count(*) FROM tenant_state GROUP BY internal_status ORDER BY internal_status",
    );
    log.fetch(&statement, &[Kind::Text, Kind::Int]).await?.iter().map(|row| Ok((row.text(0)?, row.int(1)?))).collect()
}

/// Stores of stored status `internal_status` whose next deadline falls before `until` (overdue
/// ones included), earliest first: what is about to happen to them, read from the deadline index.
pub async fn deadlines_before(
    log: &AnyEventLog,
    internal_status: &str,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<TenantStateRow>, StoreError> {
    let statement = Statement::new(format!(
        "SELECT {COLUMNS} FROM tenant_state WHERE @next_deadline < $1 AND internal_status = $2
         ORDER BY @next_deadline LIMIT $3"
    ))
    .bind(until)
    .bind(internal_status)
    .bind(limit);
    parse_rows(log.fetch(&statement, ROW_KINDS).await?)
}
