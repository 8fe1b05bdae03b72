//! The command journal: every command, accepted or refused, with its outcome.
//!
//! Entries are queued and written in multi-row batches by a background task, off the hot path.
//! A crash can lose the entries of the last moments: acceptable for refusals, and accepted
//! commands are recorded by their events anyway. When the queue is full an entry is dropped
//! and counted rather than slowing a command down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use planledger_store::{AnyEventLog, StoreError};
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

async fn write(log: &AnyEventLog, batch: &[JournalEntry]) -> Result<(), StoreError> {
    match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query(
                "INSERT INTO command_journal (store_id, kind, outcome, error_code, correlation_id, actor,
                    idempotency_key, duration_us, recorded_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::bigint[], $9::timestamptz[])",
            )
            .bind(batch.iter().map(|e| e.store_id.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.kind).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.outcome).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.error_code.as_deref()).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.correlation_id.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.idempotency_key.as_deref()).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.duration_us).collect::<Vec<_>>())
            .bind(batch.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
            .execute(pg.pool())
            .await?;
        }
        AnyEventLog::Sqlite(lite) => {
            for chunk in batch.chunks(100) {
                let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let sql = format!(
                    "INSERT INTO command_journal (store_id, kind, outcome, error_code, correlation_id, actor,
                        idempotency_key, duration_us, recorded_at_us) VALUES {rows}"
                );
                let mut query = sqlx::query(&sql);
                for e in chunk {
                    query = query
                        .bind(&e.store_id)
                        .bind(e.kind)
                        .bind(e.outcome)
                        .bind(&e.error_code)
                        .bind(&e.correlation_id)
                        .bind(&e.actor)
                        .bind(&e.idempotency_key)
                        .bind(e.duration_us)
                        .bind(e.recorded_at.timestamp_micros());
                }
                query.execute(lite.writer()).await?;
            }
        }
    }
    Ok(())
}
