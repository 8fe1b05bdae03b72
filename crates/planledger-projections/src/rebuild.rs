//! Blue/green rebuilds of read models from the log.
//!
//! A rebuild creates generation N+1 (`<name>_g<N+1>`) beside the live table, fills it from the
//! log while the service keeps answering from the live one, catches up, and swaps it in within
//! one transaction; the old table is dropped after. An interrupted rebuild leaves only its
//! unfinished table, which the next rebuild drops and starts again: the live view is never
//! touched until the swap commits.
//!
//! Only one rebuild of a model runs at a time across every node: a rebuild first claims its
//! model in the database ([`crate::claim`]); another waits for the claim, and a rebuild started
//! only because the model was stale does nothing once it gets the claim and finds the model
//! current (the first node rebuilt it). The swap renews the claim in its own transaction.
//!
//! `tenant_state` is written inline by the command path. The rebuild notes the log's settled
//! head before it reads, then catches up in rounds without any lock: each round folds into the
//! new table the events committed after the last round's mark (the tail of each store they
//! touch, from the version its row already has), until a round finds little to do. Only then
//! does the swap transaction lock the live table against writes (`EXCLUSIVE`: reads go on),
//! fold what the last round left (a few statements however many stores), and rename: writers
//! wait for that, not for the whole catch-up. Writers blocked by the lock resolve the table
//! name again once it is released, and write into the new table. `audit_log` follows the log
//! through a checkpoint: the swap catches the new table up and moves the checkpoint with a
//! compare-and-set, so the projector continues from the new table's position.
//!
//! The new table is loaded as a bulk load: without its secondary indexes (built once it is
//! full), `tenant_state` one stream after another (memory holds one store's state, however many
//! stores the log has), `audit_log` in log order with `COPY`; reading, decoding and writing
//! overlap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use planledger_domain::{Catalogs, StoreId};
use planledger_store::{AnyEventLog, AnyTx, Checkpoint, EventLog, RecordedEvent, StoreError, StreamId, TableLock};

use crate::audit;
use crate::claim::{self, Claim, RebuildClaim};
use crate::history::{fold_stream, Folded, Until};
use crate::runtime::AUDIT_CONSUMER;
use crate::schema::{self, execute_in, ReadModel};
use crate::tenant_state;

const PAGE: i64 = 10_000;
/// Events per page while writers are active: a page's work holds the machine for a moment, and
/// commands that arrive meanwhile wait; short pages keep that wait short (see [`Pace`]).
const PAGE_UNDER_WRITES: i64 = 1_000;
/// Catch-up rounds before the swap, at most: each folds what committed during the one before.
const CATCH_UP_ROUNDS: usize = 20;
/// A round that found at most this many events lets the swap lock the live table: the locked
/// remainder is then about one round's worth of writes, folded in a few milliseconds. (At
/// 2,000, the swap held writers 257 ms with 64 clients writing: docs/benchmarks.md.)
const SWAP_AT_MOST_EVENTS: u64 = 200;

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
    /// The live generation after it (the one it swapped in, or the current one if it found the
    /// model already current).
    pub generation: i64,
    pub events: u64,
    /// Rows folded again after the main read because writers changed them during the rebuild.
    pub caught_up: u64,
    /// How long the swap held the live table locked (writers of `tenant_state` wait that long).
    pub swap_pause: std::time::Duration,
    /// It ran because the model was stale, and found it rebuilt (by another node) by the time it
    /// held the claim: it did nothing.
    pub already_current: bool,
}

/// Why a rebuild failed. The live read model is unchanged either way.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Its claim lapsed (the process was paused past the lease) and another rebuild took it over.
    #[error("the rebuild of {0} lost its claim to another node; it did not swap")]
    ClaimLost(&'static str),
}

/// Whether a rebuild runs when it finally holds its model's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// An operator asked for it.
    Always,
    /// Only if the model is still stale for the catalog (a start-up rebuild: with several nodes
    /// starting on a new catalog, the first one to claim the model rebuilds it, the others find
    /// it current).
    IfStale,
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
    tx.prepare_index_builds().await?;
    execute_in(&mut tx, &model.ddl_then_indexes(log, table).1).await?;
    log.commit(tx).await
}

async fn drop_table(log: &AnyEventLog, table: &str) -> Result<(), StoreError> {
    let mut tx = log.begin().await?;
    execute_in(&mut tx, &format!("DROP TABLE IF EXISTS {table}")).await?;
    log.commit(tx).await
}

/// A rebuild's share of the machine while the ledger takes writes. As PostgreSQL's cost-based
/// vacuum delay does for its own background work, a rebuild that sees the log grow reads short
/// pages and rests after each for as long as it took: live commands keep about half of the
/// machine (the rest), and wait at most one short page's work for it (the page size). A rebuild
/// on a quiet ledger (at start-up, or an operator's on an idle one) runs flat out on long pages.
/// Measured with 64 clients writing during a `tenant_state` rebuild: docs/benchmarks.md.
struct Pace {
    head: Option<Checkpoint>,
    page_started: Instant,
    writers_active: bool,
}

impl Pace {
    fn new() -> Self {
        Self { head: None, page_started: Instant::now(), writers_active: false }
    }

    /// Events to read in the next page.
    fn page(&self) -> i64 {
        if self.writers_active {
            PAGE_UNDER_WRITES
        } else {
            PAGE
        }
    }

    /// Called after each page: rests if writers appended since the last page.
    async fn after_page(&mut self, log: &AnyEventLog) -> Result<(), StoreError> {
        let worked = self.page_started.elapsed();
        let head = log.settled_head().await?;
        self.writers_active = self.head.is_some_and(|seen| seen != head);
        self.head = Some(head);
        if self.writers_active {
            tokio::time::sleep(worked).await;
        }
        self.page_started = Instant::now();
        Ok(())
    }
}

fn store_of(stream: &StreamId) -> Option<StoreId> {
    StoreId::from_stream_name(stream.as_str())
}

/// Rebuilds `model` from the log under `catalog`, reporting to `progress`: claims the model
/// first, waiting while another node rebuilds it.
pub async fn rebuild(
    log: &AnyEventLog,
    model: ReadModel,
    catalogs: &Catalogs,
    now: DateTime<Utc>,
    progress: &Progress,
    when: When,
) -> Result<RebuildReport, RebuildError> {
    let claim = loop {
        match claim::try_claim(log, model).await? {
            Claim::Claimed(claim) => break claim,
            Claim::HeldBy { holder, since } => {
                progress.set_phase("waiting for another rebuild");
                tracing::info!(model = model.name(), %holder, %since, "another process is rebuilding this read model; waiting");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    };
    let outcome = rebuild_claimed(log, model, catalogs, now, progress, when, &claim).await;
    if let Err(error) = claim.release().await {
        tracing::warn!(model = model.name(), %error, "could not release the rebuild's claim; it lapses on its own");
    }
    progress.set_phase(if outcome.is_ok() { "done" } else { "failed" });
    outcome
}

async fn rebuild_claimed(
    log: &AnyEventLog,
    model: ReadModel,
    catalogs: &Catalogs,
    now: DateTime<Utc>,
    progress: &Progress,
    when: When,
    claim: &RebuildClaim,
) -> Result<RebuildReport, RebuildError> {
    let live = schema::info(log).await?.into_iter().find(|i| i.name == model.name());
    let current = live.as_ref().map_or(1, |i| i.generation);
    if when == When::IfStale && live.as_ref().is_some_and(|i| !i.is_stale(catalogs)) {
        return Ok(RebuildReport {
            model,
            generation: current,
            events: 0,
            caught_up: 0,
            swap_pause: std::time::Duration::ZERO,
            already_current: true,
        });
    }
    progress.total.store(log.event_count().await?.max(0) as u64, Ordering::Relaxed);
    let generation = current + 1;
    let table = format!("{}_g{generation}", model.name());
    // Under the claim, a table of this name can only be what an interrupted rebuild left.
    fresh_table(log, model, &table).await?;
    match model {
        ReadModel::TenantState => rebuild_tenant_state(log, &table, generation, catalogs, now, progress, claim).await,
        ReadModel::AuditLog => rebuild_audit_log(log, &table, generation, catalogs, now, progress, claim).await,
    }
}

/// Reads the log one stream after another (`EventLog::read_by_stream`), page by page.
struct StreamPages<'a> {
    log: &'a AnyEventLog,
    after: Option<(StreamId, i64)>,
    finished: bool,
}

impl StreamPages<'_> {
    async fn next(&mut self, limit: i64) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        if self.finished {
            return Ok(None);
        }
        let page = self.log.read_by_stream(self.after.as_ref().map(|(s, v)| (s, *v)), limit).await?;
        self.finished = (page.len() as i64) < limit;
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
    catalogs: &Catalogs,
) -> Result<(), StoreError> {
    if stores.is_empty() {
        return Ok(());
    }
    let rows: Vec<(StoreId, &planledger_domain::TenantState, i64, DateTime<Utc>)> =
        stores.iter().map(|(store, f)| (*store, &f.state, f.version, f.at.unwrap_or_default())).collect();
    let mut tx = log.begin().await?;
    tenant_state::write_many_into(&mut tx, table, &rows, catalogs).await?;
    log.commit(tx).await
}

async fn rebuild_tenant_state(
    log: &AnyEventLog,
    table: &str,
    generation: i64,
    catalogs: &Catalogs,
    now: DateTime<Utc>,
    progress: &Progress,
    claim: &RebuildClaim,
) -> Result<RebuildReport, RebuildError> {
    // Everything at or before this mark is in what the stream read below sees; the catch-up
    // rounds fold what came after.
    let mut mark = log.settled_head().await?;
    progress.set_phase("folding streams");
    // One stream at a time, so memory does not grow with the number of stores; the next page
    // is read while this one is folded and its finished stores are written. Each row is written
    // as of its store's last event, as the command path wrote it: the read model is a function
    // of the log and the catalog, not of when it was rebuilt.
    // Three stages at once: a page is read, the one before folded on the blocking pool, the
    // stores finished before that written.
    let mut pages = StreamPages { log, after: None, finished: false };
    let mut fold = StreamFold::default();
    let mut pace = Pace::new();
    let mut page = pages.next(pace.page()).await?;
    let mut finished: Vec<(StoreId, Folded)> = Vec::new();
    while let Some(events) = page.take() {
        progress.done.fetch_add(events.len() as u64, Ordering::Relaxed);
        let folding = tokio::task::spawn_blocking(move || {
            let finished = fold.fold(events);
            (fold, finished)
        });
        let (next, written) = tokio::join!(pages.next(pace.page()), write_folded(log, table, &finished, catalogs));
        written?;
        let (folded, newly_finished) =
            folding.await.map_err(|e| StoreError::Corrupt(format!("folding streams: {e}")))?;
        fold = folded;
        finished = newly_finished?;
        page = next?;
        pace.after_page(log).await?;
    }
    write_folded(log, table, &finished, catalogs).await?;
    write_folded(log, table, &fold.finish(), catalogs).await?;
    progress.set_phase("indexing");
    build_indexes(log, ReadModel::TenantState, table).await?;

    progress.set_phase("catching up");
    let mut caught_up = 0;
    let mut previous = None;
    for _ in 0..CATCH_UP_ROUNDS {
        let next = log.settled_head().await?;
        let mut tx = log.begin().await?;
        let (events, stores) = catch_up_in(log, &mut tx, table, mark, catalogs).await?;
        log.commit(tx).await?;
        caught_up += stores;
        mark = next;
        if !another_round(events, previous) {
            break;
        }
        previous = Some(events);
    }

    progress.set_phase("swapping");
    let locked_at = Instant::now();
    let mut tx = log.begin().await?;
    // Holds writers off the live table (reads go on) until the swap commits. Every writer of
    // the live table has committed once this is granted, so what the last round left is
    // exactly what has committed after its mark.
    tx.lock_table(tenant_state::LIVE, TableLock::Writers).await?;
    let (_, stores) = catch_up_in(log, &mut tx, table, mark, catalogs).await?;
    caught_up += stores;
    if !claim.fence_in(&mut tx).await? {
        return Err(RebuildError::ClaimLost(ReadModel::TenantState.name()));
    }
    swap_in(&mut tx, ReadModel::TenantState, table, generation, &schema::built_with(catalogs), now).await?;
    log.commit(tx).await?;
    let swap_pause = locked_at.elapsed();
    drop_table(log, &retired(ReadModel::TenantState, generation)).await?;
    Ok(RebuildReport {
        model: ReadModel::TenantState,
        generation,
        events: progress.done.load(Ordering::Relaxed),
        caught_up,
        swap_pause,
        already_current: false,
    })
}

/// Whether another catch-up round is worth it before the swap locks writers out, after a round
/// that found `events` (and the one before it, `previous`). Each round folds what was written
/// during the one before, so rounds shrink until they take as long as writers need to fill
/// them; a round small enough, or one that shrank by less than a tenth, ends the rounds: another
/// would not make the locked remainder smaller.
fn another_round(events: u64, previous: Option<u64>) -> bool {
    events > SWAP_AT_MOST_EVENTS && previous.is_none_or(|previous| u128::from(events) * 10 <= u128::from(previous) * 9)
}

/// Brings `table` up to date, in `tx`, with every event committed after `mark`. The rows that
/// writers wrote meanwhile under this rebuild's catalog and fold are the rows it would make, so
/// they are copied from the live table inside the database ([`tenant_state::copy_rows_in`]);
/// the stores still behind their streams after that (rows written by a node with another
/// catalog or fold, events appended without a row) are folded from the log. Answers (events
/// committed after the mark, stores they touched).
async fn catch_up_in(
    log: &AnyEventLog,
    tx: &mut AnyTx,
    table: &str,
    mark: Checkpoint,
    catalogs: &Catalogs,
) -> Result<(u64, u64), StoreError> {
    let moved = log.streams_moved_after_in(tx, mark).await?;
    let events: i64 = moved.iter().map(|m| m.events).sum();
    let latest: HashMap<StoreId, i64> = moved.iter().filter_map(|m| Some((store_of(&m.stream)?, m.version))).collect();
    let stores: Vec<StoreId> = latest.keys().copied().collect();
    let built_with = schema::built_with(catalogs);
    let mut behind = Vec::new();
    for chunk in stores.chunks(PAGE as usize) {
        tenant_state::copy_rows_in(tx, tenant_state::LIVE, table, chunk, &built_with).await?;
        let versions = tenant_state::versions_in(tx, table, chunk).await?;
        behind.extend(chunk.iter().filter(|store| versions.get(store).copied().unwrap_or(0) < latest[store]));
    }
    for chunk in behind.chunks(1_000) {
        let mut rows: HashMap<StoreId, Folded> = tenant_state::load_many_in(tx, table, chunk)
            .await?
            .into_iter()
            .map(|row| {
                (row.store_id, Folded { state: row.state, version: row.version, at: Some(row.updated_at), head: None })
            })
            .collect();
        let mut folded = Vec::with_capacity(chunk.len());
        for store in chunk {
            let from = rows.remove(store).unwrap_or_default();
            folded.push((*store, fold_stream(log, *store, from, Until::END, |_, _, _| Ok::<_, StoreError>(())).await?));
        }
        let rows: Vec<(StoreId, &planledger_domain::TenantState, i64, DateTime<Utc>)> =
            folded.iter().map(|(store, f)| (*store, &f.state, f.version, f.at.unwrap_or_default())).collect();
        tenant_state::write_many_into(tx, table, &rows, catalogs).await?;
    }
    Ok((events as u64, stores.len() as u64))
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

async fn rebuild_audit_log(
    log: &AnyEventLog,
    table: &str,
    generation: i64,
    catalogs: &Catalogs,
    now: DateTime<Utc>,
    progress: &Progress,
    claim: &RebuildClaim,
) -> Result<RebuildReport, RebuildError> {
    progress.set_phase("copying the log");
    // Rows are copied from the log inside the database, in log order, a page per transaction
    // (so the rebuild's progress shows, and it can yield to writers between pages), into a table
    // without secondary indexes; they are built once at the end. Nothing is decoded: the summary
    // is derived when read.
    let mut after = Checkpoint::ORIGIN;
    let mut pace = Pace::new();
    let counted_at_start = progress.total.load(Ordering::Relaxed);
    let mut short_pages = 0;
    loop {
        let limit = pace.page() * 10;
        let mut tx = log.begin().await?;
        let copied = audit::copy_from_log_in(&mut tx, table, after, limit).await?;
        log.commit(tx).await?;
        let count = copied.map_or(0, |(_, count)| count);
        if let Some((last, _)) = copied {
            after = last;
        }
        let done = progress.done.fetch_add(count, Ordering::Relaxed) + count;
        if done >= counted_at_start {
            break;
        }
        if count as i64 == limit {
            pace.after_page(log).await?;
            continue;
        }
        // Short of a page before the events the start counted: an open transaction anywhere
        // holds the settled head back for a moment. Wait a little for them; the swap catches up
        // whatever is left.
        short_pages += 1;
        if short_pages > 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    progress.set_phase("indexing");
    build_indexes(log, ReadModel::AuditLog, table).await?;

    progress.set_phase("swapping");
    for _ in 0..20 {
        let locked_at = Instant::now();
        let mut tx = log.begin().await?;
        // First the table, then the checkpoint: the projector takes them in that order too.
        tx.lock_table(audit::LIVE, TableLock::Everyone).await?;
        let live = log.load_checkpoint(AUDIT_CONSUMER).await?;
        let mut position = after;
        while let Some((last, count)) = audit::copy_from_log_in(&mut tx, table, position, PAGE).await? {
            position = last;
            progress.done.fetch_add(count, Ordering::Relaxed);
        }
        match log.compare_and_set_checkpoint_in(&mut tx, AUDIT_CONSUMER, live, position).await {
            Ok(()) => {}
            Err(StoreError::CheckpointMoved { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        if !claim.fence_in(&mut tx).await? {
            return Err(RebuildError::ClaimLost(ReadModel::AuditLog.name()));
        }
        swap_in(&mut tx, ReadModel::AuditLog, table, generation, &schema::built_with(catalogs), now).await?;
        log.commit(tx).await?;
        drop_table(log, &retired(ReadModel::AuditLog, generation)).await?;
        return Ok(RebuildReport {
            model: ReadModel::AuditLog,
            generation,
            events: progress.done.load(Ordering::Relaxed),
            caught_up: 0,
            swap_pause: locked_at.elapsed(),
            already_current: false,
        });
    }
    Err(StoreError::Corrupt("the audit projector kept moving its checkpoint during the swap".into()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use planledger_store::{NewEvent, StoreConfig};

    async fn append_one(log: &AnyEventLog, stream: &StreamId) {
        let version = log.stream_version(stream).await.unwrap();
        let event = NewEvent::new("StoreRegistered", 1, serde_json::json!({}), "pace", "test", "fp", Utc::now());
        log.append(stream, version, &[event]).await.unwrap();
    }

    #[test]
    fn catch_up_rounds_go_on_while_they_shrink_and_are_large() {
        assert!(another_round(35_000, None), "the first large round");
        assert!(another_round(3_000, Some(35_000)), "shrinking");
        assert!(!another_round(150, Some(3_000)), "small enough to lock");
        assert!(!another_round(2_400, Some(2_500)), "no longer shrinking");
        assert!(!another_round(u64::MAX, Some(u64::MAX)), "no overflow");
        assert!(another_round(u64::MAX, None));
    }

    /// Alone, a rebuild reads long pages and never rests; once the log grows under it, it reads
    /// short pages and rests after each; when writes stop, it runs flat out again.
    #[tokio::test]
    async fn a_rebuild_yields_only_while_writers_append() {
        let db = planledger_testkit::SqliteTestDatabase::create();
        let log = AnyEventLog::connect(&StoreConfig::new(db.url.clone())).await.unwrap();
        log.migrate().await.unwrap();
        let stream = StreamId::parse("store-pace").unwrap();
        append_one(&log, &stream).await;
        let mut pace = Pace::new();
        for _ in 0..2 {
            let before = Instant::now();
            pace.after_page(&log).await.unwrap();
            assert_eq!(pace.page(), PAGE, "a quiet log: long pages");
            assert!(before.elapsed() < std::time::Duration::from_millis(50), "no rest on a quiet log");
        }
        append_one(&log, &stream).await;
        pace.page_started = Instant::now() - std::time::Duration::from_millis(120);
        let before = Instant::now();
        pace.after_page(&log).await.unwrap();
        assert_eq!(pace.page(), PAGE_UNDER_WRITES, "writers appended: short pages");
        assert!(before.elapsed() >= std::time::Duration::from_millis(120), "it rested as long as the page took");
        pace.after_page(&log).await.unwrap();
        assert_eq!(pace.page(), PAGE, "the writers stopped: long pages again");
    }
}
