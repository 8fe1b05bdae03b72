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
//!
//! The new table is loaded as a bulk load: without its secondary indexes (built once it is
//! full), `tenant_state` one stream after another (memory holds one store's state, however many
//! stores the log has), `audit_log` in log order with `COPY`; reading, decoding and writing
//! overlap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use planledger_domain::{Catalog, StoreId};
use planledger_store::{AnyEventLog, AnyTx, Checkpoint, EventLog, RecordedEvent, StoreError, StreamId};

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

/// Creates `table` afresh without its secondary indexes: the rows are loaded first.
async fn fresh_table(log: &AnyEventLog, model: ReadModel, table: &str) -> Result<(), StoreError> {
    let mut tx = log.begin().await?;
    execute_in(&mut tx, &format!("DROP TABLE IF EXISTS {table}")).await?;
    execute_in(&mut tx, &model.ddl_then_indexes(log, table).0).await?;
    log.commit(tx).await
}

/// Builds `table`'s secondary indexes once its rows are loaded: one sort per index instead of
/// a B-tree insertion per row.
async fn build_indexes(log: &AnyEventLog, model: ReadModel, table: &str) -> Result<(), StoreError> {
    let mut tx = log.begin().await?;
    if let AnyTx::Postgres(pg) = &mut tx {
        // The sorts run in the server's memory; the default 64 MB spills a large log to disk.
        sqlx::query("SET LOCAL maintenance_work_mem = '256MB'").execute(&mut **pg).await?;
    }
    execute_in(&mut tx, &model.ddl_then_indexes(log, table).1).await?;
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

/// Reads the log one stream after another (`EventLog::read_by_stream`), page by page.
struct StreamPages<'a> {
    log: &'a AnyEventLog,
    after: Option<(StreamId, i64)>,
    finished: bool,
}

impl StreamPages<'_> {
    async fn next(&mut self) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        if self.finished {
            return Ok(None);
        }
        let page = self.log.read_by_stream(self.after.as_ref().map(|(s, v)| (s, *v)), PAGE).await?;
        self.finished = (page.len() as i64) < PAGE;
        match page.last() {
            Some(last) => {
                self.after = Some((last.stream_id.clone(), last.version));
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }
}

/// Folds events that come one stream after another, holding only the stream being folded.
#[derive(Default)]
struct StreamFold {
    current: Option<(StoreId, Folded)>,
}

impl StreamFold {
    /// Folds a page in; answers the stores the page finished (their last event was before it
    /// ended).
    fn fold(&mut self, page: Vec<RecordedEvent>) -> Result<Vec<(StoreId, Folded)>, StoreError> {
        let mut finished = Vec::new();
        for recorded in page {
            let Some(store) = store_of(&recorded.stream_id) else { continue };
            if self.current.as_ref().is_none_or(|(current, _)| *current != store) {
                finished.extend(self.current.replace((store, Folded::default())));
            }
            if let Some((_, folded)) = &mut self.current {
                if recorded.version == folded.version + 1 {
                    folded.apply_owned(recorded)?;
                }
            }
        }
        Ok(finished)
    }

    fn finish(self) -> Vec<(StoreId, Folded)> {
        self.current.into_iter().collect()
    }
}

/// Writes folded stores into `table`, as of each one's last event, in one transaction.
async fn write_folded(
    log: &AnyEventLog,
    table: &str,
    stores: &[(StoreId, Folded)],
    catalog: &Catalog,
) -> Result<(), StoreError> {
    if stores.is_empty() {
        return Ok(());
    }
    let rows: Vec<(StoreId, &planledger_domain::TenantState, i64, DateTime<Utc>)> =
        stores.iter().map(|(store, f)| (*store, &f.state, f.version, f.at.unwrap_or_default())).collect();
    let mut tx = log.begin().await?;
    tenant_state::write_many_into(&mut tx, table, &rows, catalog).await?;
    log.commit(tx).await
}

async fn rebuild_tenant_state(
    log: &AnyEventLog,
    table: &str,
    generation: i64,
    catalog: &Catalog,
    now: DateTime<Utc>,
    progress: &Progress,
) -> Result<RebuildReport, StoreError> {
    progress.set_phase("folding streams");
    // One stream at a time, so memory does not grow with the number of stores; the next page
    // is read while this one is folded and its finished stores are written. Each row is written
    // as of its store's last event, as the command path wrote it: the read model is a function
    // of the log and the catalog, not of when it was rebuilt.
    // Three stages at once: a page is read, the one before folded on the blocking pool, the
    // stores finished before that written.
    let mut pages = StreamPages { log, after: None, finished: false };
    let mut fold = StreamFold::default();
    let mut page = pages.next().await?;
    let mut finished: Vec<(StoreId, Folded)> = Vec::new();
    while let Some(events) = page.take() {
        progress.done.fetch_add(events.len() as u64, Ordering::Relaxed);
        let folding = tokio::task::spawn_blocking(move || {
            let finished = fold.fold(events);
            (fold, finished)
        });
        let (next, written) = tokio::join!(pages.next(), write_folded(log, table, &finished, catalog));
        written?;
        let (folded, newly_finished) =
            folding.await.map_err(|e| StoreError::Corrupt(format!("folding streams: {e}")))?;
        fold = folded;
        finished = newly_finished?;
        page = next?;
    }
    write_folded(log, table, &finished, catalog).await?;
    write_folded(log, table, &fold.finish(), catalog).await?;
    progress.set_phase("indexing");
    build_indexes(log, ReadModel::TenantState, table).await?;

    progress.set_phase("swapping");
    let mut tx = log.begin().await?;
    if let AnyTx::Postgres(pg) = &mut tx {
        // Holds writers off the live table (reads go on) until the swap commits.
        sqlx::query("LOCK TABLE tenant_state IN EXCLUSIVE MODE").execute(&mut **pg).await?;
    }
    let changed = changed_since_build(&mut tx, table).await?;
    let mut caught_up = 0;
    for store in changed {
        let folded = fold_stream(log, store, Folded::default(), Until::END, |_, _, _| Ok::<_, StoreError>(())).await?;
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

/// Stores whose live row is newer than (or missing from) the rebuilt `table`.
async fn changed_since_build(tx: &mut AnyTx, table: &str) -> Result<Vec<StoreId>, StoreError> {
    let sql = format!(
        "SELECT l.store_id FROM tenant_state l LEFT JOIN {table} r ON r.store_id = l.store_id
         WHERE r.version IS NULL OR l.version > r.version"
    );
    let ids: Vec<String> = match tx {
        AnyTx::Postgres(tx) => sqlx::query_scalar(&sql).fetch_all(&mut **tx).await?,
        AnyTx::Sqlite(tx) => sqlx::query_scalar(&sql).fetch_all(&mut **tx).await?,
    };
    Ok(ids.iter().filter_map(|id| StoreId::parse(id).ok()).collect())
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
    // The next page is read while this one's rows are written, in bulk, to a table without
    // secondary indexes; they are built once at the end.
    // Three stages at once: page N+2 is read, page N+1 turned into rows on the blocking pool
    // (decoding events is this process's main cost), page N's rows written. Writes stay in log
    // order.
    let mut pages = LogPages::new(log);
    let mut page = pages.next(progress).await?;
    let mut ready: Option<Vec<AuditRow>> = None;
    while page.is_some() || ready.is_some() {
        let converting = page.take().map(|events| {
            tokio::task::spawn_blocking(move || events.into_iter().map(AuditRow::from_recorded).collect::<Vec<_>>())
        });
        let rows = ready.take();
        let write = async {
            let Some(rows) = rows else { return Ok(()) };
            let mut tx = log.begin().await?;
            audit::copy_in(&mut tx, table, &rows).await?;
            log.commit(tx).await
        };
        let read = async {
            if converting.is_some() {
                pages.next(progress).await
            } else {
                Ok(None)
            }
        };
        let (next, written) = tokio::join!(read, write);
        written?;
        if let Some(converting) = converting {
            ready = Some(converting.await.map_err(|e| StoreError::Corrupt(format!("converting events: {e}")))?);
        }
        page = next?;
    }
    let after = pages.after;
    progress.set_phase("indexing");
    build_indexes(log, ReadModel::AuditLog, table).await?;

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
            progress.done.fetch_add(page.len() as u64, Ordering::Relaxed);
            let rows: Vec<AuditRow> = page.into_iter().map(AuditRow::from_recorded).collect();
            audit::insert_in(&mut tx, table, &rows).await?;
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
