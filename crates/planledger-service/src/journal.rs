//! The command journal: every command, accepted or refused, with its outcome.
//!
//! Entries are queued and written in multi-row batches by a background task, off the hot path.
//! A crash can lose the entries of the last moments: acceptable for refusals, and accepted
//! commands are recorded by their events anyway. When the queue is full an entry is dropped
//! and counted rather than slowing a command down.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use planledger_store::{AnyEventLog, Column, OnConflict, StoreError, Table, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const QUEUE: usize = 65_536;
const BATCH: usize = 500;

/// One journal line.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub store_id: String,
    pub kind: &'static str,
    /// `accepted`, `refused`, `replayed` or `failed`.
    pub outcome: &'static str,
    pub error_code: Option<String>,
    pub correlation_id: String,
    pub actor: String,
    pub idempotency_key: Option<String>,
    pub duration_us: i64,
    pub recorded_at: DateTime<Utc>,
    /// A consumption's action and amount (what a catalog preview decides again); `None` for
    /// other commands.
    pub consumed: Option<(String, i64)>,
}

#[derive(Debug)]
pub struct Journal {
    queue: mpsc::Sender<JournalEntry>,
    dropped: Arc<AtomicU64>,
}

impl Journal {
    /// Starts the writer; it ends once every `Journal` is dropped and the queue is drained.
    pub fn spawn(log: AnyEventLog) -> (Journal, JoinHandle<()>) {
        let (queue, mut entries) = mpsc::channel::<JournalEntry>(QUEUE);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = entries.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match entries.try_recv() {
                        Ok(entry) => batch.push(entry),
                        Err(_) => break,
                    }
                }
                if let Err(error) = write(&log, &batch).await {
                    tracing::warn!(%error, entries = batch.len(), "could not write command journal entries");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                batch.clear();
            }
        });
        (Journal { queue, dropped: Arc::new(AtomicU64::new(0)) }, writer)
    }

    pub fn record(&self, entry: JournalEntry) {
        if self.queue.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The command journal, as the store writes its rows: only ever added to.
const TABLE: Table = Table {
    name: Cow::Borrowed("command_journal"),
    columns: &[
        Column::text("store_id"),
        Column::text("kind"),
        Column::text("outcome"),
        Column::text("error_code"),
        Column::text("correlation_id"),
        Column::text("actor"),
        Column::text("idempotency_key"),
        Column::int("duration_us"),
        Column::time("recorded_at"),
        Column::text("action"),
        Column::int("amount"),
    ],
    on_conflict: OnConflict::Append,
};

async fn write(log: &AnyEventLog, batch: &[JournalEntry]) -> Result<(), StoreError> {
    let rows: Vec<Vec<Value>> = batch
        .iter()
        .map(|e| {
            vec![
                e.store_id.as_str().into(),
                e.kind.into(),
                e.outcome.into(),
                e.error_code.clone().into(),
                e.correlation_id.as_str().into(),
                e.actor.as_str().into(),
                e.idempotency_key.clone().into(),
                e.duration_us.into(),
                e.recorded_at.into(),
                e.consumed.as_ref().map(|(action, _)| action.clone()).into(),
                e.consumed.as_ref().map(|(_, amount)| *amount).into(),
            ]
        })
        .collect();
    let rows: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
    log.write_rows(&TABLE, &rows).await?;
    Ok(())
}
