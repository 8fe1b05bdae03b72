//! The read models' schemas and generations.
//!
//! Each read model's schema lives in `projections/<name>/v<N>/<backend>.sql` with a `{table}`
//! placeholder: the live table has the model's own name; a rebuild builds generation N as
//! `<name>_g<N>` beside it and renames it into place. `read_models` records, per model, the
//! live generation and the catalog fingerprint it was built with.

use chrono::{DateTime, Utc};
use planledger_store::{AnyEventLog, AnyTx, Kind, PerBackend, Statement, StoreError};

/// The read models planledger keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadModel {
    /// One row per store, written with the events (inline).
    TenantState,
    /// One row per event, written by an asynchronous projector.
    AuditLog,
}

impl ReadModel {
    pub const ALL: [ReadModel; 2] = [ReadModel::TenantState, ReadModel::AuditLog];

    pub fn name(&self) -> &'static str {
        match self {
            ReadModel::TenantState => "tenant_state",
            ReadModel::AuditLog => "audit_log",
        }
    }

    pub fn parse(name: &str) -> Option<ReadModel> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn schema(&self, log: &AnyEventLog) -> &'static str {
        log.pick(match self {
            ReadModel::TenantState => PerBackend {
                postgres: include_str!("../../../projections/tenant_state/v1/postgres.sql"),
                sqlite: include_str!("../../../projections/tenant_state/v1/sqlite.sql"),
            },
            ReadModel::AuditLog => PerBackend {
                postgres: include_str!("../../../projections/audit_log/v2/postgres.sql"),
                sqlite: include_str!("../../../projections/audit_log/v2/sqlite.sql"),
            },
        })
    }

    /// The DDL that creates `table` with this model's schema.
    pub fn ddl(&self, log: &AnyEventLog, table: &str) -> String {
        self.schema(log).replace("{table}", table)
    }

    /// The DDL of `table` without its secondary indexes, and the DDL of those indexes: a
    /// rebuild loads the rows first and builds the indexes once, after (as a bulk load should),
    /// instead of maintaining them row by row. Each `CREATE INDEX` is one line of the file.
    pub fn ddl_then_indexes(&self, log: &AnyEventLog, table: &str) -> (String, String) {
        let (indexes, rest): (Vec<&str>, Vec<&str>) =
            self.schema(log).lines().partition(|line| line.trim_start().starts_with("CREATE INDEX"));
        (rest.join("\n").replace("{table}", table), indexes.join("\n").replace("{table}", table))
    }
}

/// What `read_models` says of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModelInfo {
    pub name: String,
    pub generation: i64,
    pub catalog_fingerprint: String,
    pub built_at: DateTime<Utc>,
}

impl ReadModelInfo {
    /// Whether the model was built with other catalog versions or another fold than
    /// `catalogs` and this build's (see [`built_with`]): it is served meanwhile, and rebuilt
    /// from the log.
    pub fn is_stale(&self, catalogs: &planledger_domain::Catalogs) -> bool {
        self.catalog_fingerprint != built_with(catalogs)
    }
}

/// Brings a live table of an older schema to one this build reads and writes, where that needs
/// no rebuild. `audit_log` v1 stored each event's summary; v2 derives it when read, so a v1
/// table's `summary` column is dropped on SQLite (one process serves the file) and only made
/// nullable on PostgreSQL, where nodes not yet upgraded may still be writing it.
async fn upgrade_in_place(log: &AnyEventLog, model: ReadModel) -> Result<(), StoreError> {
    if model != ReadModel::AuditLog || !log.column_is_required(model.name(), "summary").await? {
        return Ok(());
    }
    use planledger_store::EventLog;
    let mut tx = log.begin().await?;
    let ddl = log.pick(PerBackend {
        postgres: "ALTER TABLE audit_log ALTER COLUMN summary DROP NOT NULL",
        sqlite: "ALTER TABLE audit_log DROP COLUMN summary",
    });
    execute_in(&mut tx, ddl).await?;
    log.commit(tx).await
}

/// Runs DDL (several statements) in `tx`.
pub async fn execute_in(tx: &mut AnyTx, sql: &str) -> Result<(), StoreError> {
    tx.execute_script(sql).await
}

/// What a read model records it was built with: the catalog versions' fingerprint (every
/// version, since a store's row depends on the ones that will reach it) and the fold's (its
/// version and a hash of what it does, see `planledger_domain::fold_fingerprint`). A model
/// built with anything else is stale and rebuilt from the log.
pub fn built_with(catalogs: &planledger_domain::Catalogs) -> String {
    format!("{}+fold{}", catalogs.fingerprint(), planledger_domain::fold_fingerprint())
}

/// Creates every read model that does not exist yet, recording the catalog it starts with.
pub async fn ensure(log: &AnyEventLog, catalog_fingerprint: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    use planledger_store::EventLog;
    for model in ReadModel::ALL {
        if log.table_exists(model.name()).await? {
            upgrade_in_place(log, model).await?;
            continue;
        }
        let mut tx = log.begin().await?;
        execute_in(&mut tx, &model.ddl(log, model.name())).await?;
        record_in(&mut tx, model, 1, catalog_fingerprint, now).await?;
        log.commit(tx).await?;
    }
    Ok(())
}

/// Records the live generation of `model`.
pub async fn record_in(
    tx: &mut AnyTx,
    model: ReadModel,
    generation: i64,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let statement = Statement::new(
        "INSERT INTO read_models (name, generation, catalog_fingerprint, @built_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET generation = EXCLUDED.generation,
            catalog_fingerprint = EXCLUDED.catalog_fingerprint, @built_at = EXCLUDED.@built_at",
    )
    .bind(model.name())
    .bind(generation)
    .bind(fingerprint)
    .bind(now);
    tx.execute(&statement).await?;
    Ok(())
}

pub async fn info(log: &AnyEventLog) -> Result<Vec<ReadModelInfo>, StoreError> {
    let statement =
        Statement::new("SELECT name, generation, catalog_fingerprint, @built_at FROM read_models ORDER BY name");
    let rows = log.fetch(&statement, &[Kind::Text, Kind::Int, Kind::Text, Kind::Time]).await?;
    let rows = rows
        .iter()
        .map(|row| Ok((row.text(0)?, row.int(1)?, row.text(2)?, row.time(3)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(rows
        .into_iter()
        .map(|(name, generation, catalog_fingerprint, built_at)| ReadModelInfo {
            name,
            generation,
            catalog_fingerprint,
            built_at,
        })
        .collect())
}
