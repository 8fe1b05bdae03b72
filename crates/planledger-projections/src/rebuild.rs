//! Blue/green rebuilds of read models from the log.
//!
//! A rebuild creates generation N+1 (`<name>_g<N+1>`) beside the live table, fills it from the
//! log while the service keeps answering from the live one, catches up, and swaps it in within
//! one transaction; the old table is dropped after. An interrupted rebuild leaves only its
//! unfinished table, which the next rebuild drops and starts again: the live view is never
//! touched until the swap commits.
//!
//! `tenant_state` is written inline by the command path, so the swap transaction first locks
//! the live table against writes (`EXCLUSIVE`: reads go on), folds in every store whose live row
//! is newer than the rebuilt one, then renames. Writers blocked by the lock resolve the table
//! name again once it is released, and write into the new table. `audit_log` follows the log
//! through a checkpoint: the swap catches the new table up and moves the checkpoint with a
//! compare-and-set, so the projector continues from the new table's position.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use planledger_domain::{Catalog, StoreId};
use planledger_store::{AnyEventLog, AnyTx, Checkpoint, EventLog, RecordedEvent, StoreError, StreamId};
use sqlx::Row;

use crate::audit::{self, AuditRow};
use crate::history::{fold_stream, Folded, Until};
use crate::runtime::AUDIT_CONSUMER;
use crate::schema::{self, execute_in, ReadModel};
use crate::tenant_state;

const PAGE: i64 = 10_000;

/// Progress of a rebuild, shared with whoever shows it.
#[derive(Debug)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub started: Instant,
    pub phase: Mutex<&'static str>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            started: Instant::now(),
            phase: Mutex::new("starting"),
        }
    }
}

impl Progress {
    fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub fn phase(&self) -> &'static str {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn events_per_second(&self) -> f64 {
        self.done.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }
}

/// What a finished rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    pub model: ReadModel,
    pub generation: i64,
    pub events: u64,
    /// Rows folded again at the swap because writers changed them during the rebuild.
    pub caught_up: u64,
}

async fn current_generation(log: &AnyEventLog, model: ReadModel) -> Result<i64, StoreError> {
    Ok(schema::info(log).await?.into_iter().find(|i| i.name == model.name()).map_or(1, |i| i.generation))
}

async fn fresh_table(log: &AnyEventLog, model: ReadModel, table: &str) -> Result<(), StoreError> {
    let mut tx = log.begin().await?;
    execute_in(&mut tx, &format!("DROP TABLE IF EXISTS {table}")).await?;
    execute_in(&mut tx, &model.ddl(log, table)).await?;
    log.commit(tx).await
}

async fn drop_table(log: &AnyEventLog, table: &str) -> Result<(), StoreError> {
    let mut tx = log.begin().await?;
    execute_in(&mut tx, &format!("DROP TABLE IF EXISTS {table}")).await?;
    log.commit(tx).await
}

/// Reads the log after `after` in pages, until the head it had when the rebuild started: what
/// writers append after that is caught up at the swap, under its lock, so a busy log cannot
/// keep the reading phase going forever.
struct LogPages<'a> {
    log: &'a AnyEventLog,
    after: Checkpoint,
    empty_pages: u32,
    at_head: bool,
}

impl<'a> LogPages<'a> {
    fn new(log: &'a AnyEventLog) -> Self {
        Self { log, after: Checkpoint::ORIGIN, empty_pages: 0, at_head: false }
    }

    async fn next(&mut self, progress: &Progress) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        loop {
            if self.at_head {
                return Ok(None);
            }
            let page = self.log.read_all(self.after, PAGE).await?;
            let counted_at_start = progress.total.load(Ordering::Relaxed);
            if let Some(last) = page.last() {
                self.after = last.checkpoint;
                self.empty_pages = 0;
                let done = progress.done.fetch_add(page.len() as u64, Ordering::Relaxed) + page.len() as u64;
                self.at_head = done >= counted_at_start;
                return Ok(Some(page));
            }
            // An open transaction anywhere holds the gap-safe reader back for a moment; wait a
            // little for the events counted at the start, and let the swap catch up the rest.
            if progress.done.load(Ordering::Relaxed) >= counted_at_start || self.empty_pages >= 20 {
                return Ok(None);
            }
            self.empty_pages += 1;
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

fn store_of(stream: &StreamId) -> Option<StoreId> {
    stream.as_str().strip_prefix("store-").and_then(|id| StoreId::parse(id).ok())
}

/// Rebuilds `model` from the log under `catalog`, reporting to `progress`.
pub async fn rebuild(
    log: &AnyEventLog,
    model: ReadModel,
    catalog: &Catalog,
    now: DateTime<Utc>,
    progress: &Progress,
) -> Result<RebuildReport, StoreError> {
    progress.total.store(log.event_count().await?.max(0) as u64, Ordering::Relaxed);
    let generation = current_generation(log, model).await? + 1;
    let table = format!("{}_g{generation}", model.name());
    fresh_table(log, model, &table).await?;
    let report = match model {
        ReadModel::TenantState => rebuild_tenant_state(log, &table, generation, catalog, now, progress).await?,
        ReadModel::AuditLog => rebuild_audit_log(log, &table, generation, catalog, now, progress).await?,
    };
    progress.set_phase("done");
    Ok(report)
}

async fn rebuild_tenant_state(
    log: &AnyEventLog,
    table: &str,
    generation: i64,
    catalog: &Catalog,
    now: DateTime<Utc>,
    progress: &Progress,
) -> Result<RebuildReport, StoreError> {
    progress.set_phase("reading the log");
    // Each row is written as of its store's last event, as the command path wrote it: the
    // read model is a function of the log and the catalog, not of when it was rebuilt.
    let mut states: HashMap<StoreId, Folded> = HashMap::new();
    let mut pages = LogPages::new(log);
    while let Some(page) = pages.next(progress).await? {
        for recorded in &page {
            let Some(store) = store_of(&recorded.stream_id) else { continue };
            let entry = states.entry(store).or_default();
            if recorded.version == entry.version + 1 {
                entry.apply(recorded)?;
            }
        }
    }

    progress.set_phase("writing rows");
    let stores: Vec<(&StoreId, &Folded)> = states.iter().collect();
    for chunk in stores.chunks(1000) {
        let mut tx = log.begin().await?;
        for (store, folded) in chunk {
            let at = folded.at.unwrap_or_default();
            tenant_state::write_into(&mut tx, table, **store, &folded.state, folded.version, at, catalog).await?;
        }
        log.commit(tx).await?;
    }

    progress.set_phase("swapping");
    let mut tx = log.begin().await?;
    if let AnyTx::Postgres(pg) = &mut tx {
        // Holds writers off the live table (reads go on) until the swap commits.
        sqlx::query("LOCK TABLE tenant_state IN EXCLUSIVE MODE").execute(&mut **pg).await?;
    }
    let changed = changed_since_build(&mut tx, table).await?;
    let mut caught_up = 0;
    for (store, built_version) in changed {
        let known = match states.remove(&store) {
            Some(known) if known.version == built_version => known,
            _ => Folded::default(),
        };
        let folded = fold_stream(log, store, known, Until::END, |_, _, _| Ok::<_, StoreError>(())).await?;
        let at = folded.at.unwrap_or_default();
        tenant_state::write_into(&mut tx, table, store, &folded.state, folded.version, at, catalog).await?;
        caught_up += 1;
    }
    swap_in(&mut tx, ReadModel::TenantState, table, generation, &schema::built_with(catalog), now).await?;
    log.commit(tx).await?;
    drop_table(log, &retired(ReadModel::TenantState, generation)).await?;
    Ok(RebuildReport {
        model: ReadModel::TenantState,
        generation,
        events: progress.done.load(Ordering::Relaxed),
        caught_up,
    })
}

fn retired(model: ReadModel, generation: i64) -> String {
    format!("{}_retired_g{generation}", model.name())
}

/// Renames the live table away and `table` into its place, and records the new generation.
async fn swap_in(
    tx: &mut AnyTx,
    model: ReadModel,
    table: &str,
    generation: i64,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let live = model.name();
    let old = retired(model, generation);
    execute_in(tx, &format!("ALTER TABLE {live} RENAME TO {old}")).await?;
    execute_in(tx, &format!("ALTER TABLE {table} RENAME TO {live}")).await?;
    schema::record_in(tx, model, generation, fingerprint, now).await
}

/// Stores whose live row is newer than (or missing from) the rebuilt `table`, with the rebuilt
/// version.
async fn changed_since_build(tx: &mut AnyTx, table: &str) -> Result<Vec<(StoreId, i64)>, StoreError> {
    let sql = format!(
        "SELECT l.store_id, COALESCE(r.version, 0) FROM tenant_state l LEFT JOIN {table} r ON r.store_id = l.store_id
         WHERE r.version IS NULL OR l.version > r.version"
    );
    let rows: Vec<(String, i64)> = match tx {
        AnyTx::Postgres(tx) => sqlx::query(&sql)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?,
        AnyTx::Sqlite(tx) => sqlx::query(&sql)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?,
    };
    Ok(rows.into_iter().filter_map(|(id, v)| StoreId::parse(&id).ok().map(|s| (s, v))).collect())
}

async fn rebuild_audit_log(
    log: &AnyEventLog,
    table: &str,
    generation: i64,
    catalog: &Catalog,
    now: DateTime<Utc>,
    progress: &Progress,
) -> Result<RebuildReport, StoreError> {
    progress.set_phase("reading the log");
    let mut pages = LogPages::new(log);
    while let Some(page) = pages.next(progress).await? {
        let rows: Vec<AuditRow> = page.iter().map(AuditRow::from_recorded).collect();
        let mut tx = log.begin().await?;
        audit::insert_in(&mut tx, table, &rows).await?;
        log.commit(tx).await?;
    }
    let after = pages.after;

    progress.set_phase("swapping");
    for _ in 0..20 {
        let mut tx = log.begin().await?;
        if let AnyTx::Postgres(pg) = &mut tx {
            // First the table, then the checkpoint: the projector takes them in that order too.
            sqlx::query("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE").execute(&mut **pg).await?;
        }
        let live = log.load_checkpoint(AUDIT_CONSUMER).await?;
        let mut position = after;
        loop {
            let page = log.read_all(position, PAGE).await?;
            let Some(last) = page.last() else { break };
            position = last.checkpoint;
            let rows: Vec<AuditRow> = page.iter().map(AuditRow::from_recorded).collect();
            audit::insert_in(&mut tx, table, &rows).await?;
            progress.done.fetch_add(page.len() as u64, Ordering::Relaxed);
        }
        match log.compare_and_set_checkpoint_in(&mut tx, AUDIT_CONSUMER, live, position).await {
            Ok(()) => {}
            Err(StoreError::CheckpointMoved { .. }) => continue,
            Err(e) => return Err(e),
        }
        swap_in(&mut tx, ReadModel::AuditLog, table, generation, &schema::built_with(catalog), now).await?;
        log.commit(tx).await?;
        drop_table(log, &retired(ReadModel::AuditLog, generation)).await?;
        return Ok(RebuildReport {
            model: ReadModel::AuditLog,
            generation,
            events: progress.done.load(Ordering::Relaxed),
            caught_up: 0,
        });
    }
    Err(StoreError::Corrupt("the audit projector kept moving its checkpoint during the swap".into()))
}
