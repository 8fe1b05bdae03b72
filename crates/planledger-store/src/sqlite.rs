//! The SQLite backend: the embedded, zero-setup default.
//!
//! SQLite has one writer at a time, so the backend keeps one writer connection (transactions
//! begin `IMMEDIATE`, taking the write lock up front instead of failing on upgrade) and a pool
//! of readers, which WAL mode lets run beside it. Commit order is rowid order, so `read_all`
//! needs no transaction guard. `synchronous = FULL` makes every acknowledged commit durable.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use crate::migrate::{self, MigrationReport};
use crate::texts;
use crate::types::{hash_of, idempotency_keys, recorded, MovedStream};
use crate::{
    AppendOutcome, Checkpoint, EventLog, Hash, NewEvent, RecordedEvent, Snapshot, StoreError, StreamAppend,
    StreamAppendOutcome, StreamId, Version, MAX_READ_LIMIT,
};

/// The database's own clock, for bookkeeping times (like PostgreSQL's `now()`): decisions never
/// read it.
/// SQLite's "now" in microseconds since the epoch, for SQL that records the database's time.
pub const SQLITE_NOW_US: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";
const NOW_US: &str = SQLITE_NOW_US;

pub(crate) const EVENT_COLUMNS: &str = "global_position, event_id, stream_id, version, event_type, schema_version, \
    data, correlation_id, causation_id, idempotency_key, actor, catalog_fingerprint, recorded_at_us, hash";

/// The event log on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteEventLog {
    writer: SqlitePool,
    readers: SqlitePool,
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt(format!("time out of range: {us}")))
}

impl SqliteEventLog {
    /// Opens (creating if missing) the database file of `url` (`sqlite://path`).
    pub async fn connect(url: &str, readers: u32, busy_timeout: Duration) -> Result<Self, StoreError> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            // Each pool would get a database of its own.
            return Err(StoreError::UnsupportedUrl(format!(
                "{url} (in-memory SQLite is not supported: use a file, e.g. sqlite://planledger.db)"
            )));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let readers =
            SqlitePoolOptions::new().max_connections(readers.max(1)).connect_with(options.read_only(true)).await?;
        Ok(Self { writer, readers })
    }

    /// The pool of the single writer connection.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The pool of read-only connections.
    pub fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    /// This log with its "writer" a read-only connection too: what a read request is given,
    /// so that a write through it fails instead of taking the one writer.
    pub fn reads_only(&self) -> Self {
        Self { writer: self.readers.clone(), readers: self.readers.clone() }
    }

    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::raw_sql(migrate::CREATE_MIGRATIONS_TABLE).execute(&mut *tx).await?;
        let applied: Vec<(i64, String)> = sqlx::query_as(migrate::APPLIED).fetch_all(&mut *tx).await?;
        let mut report = MigrationReport {
            already_applied: applied.iter().map(|(v, _)| *v).collect(),
            ..MigrationReport::default()
        };
        for migration in migrate::pending(migrate::SQLITE, &applied)? {
            sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO ledger_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, datetime('now'))",
            )
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await?;
            if migration.name == migrate::EVENT_HASHES {
                Self::hash_existing_events(&mut tx).await?;
            }
            report.applied.push(migration.version);
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Hashes the events written before the chain (migration `event_hashes`), stream by
    /// stream in version order, and sets each stream's head.
    async fn hash_existing_events(tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        let mut chain = crate::types::Rechain::default();
        let mut after = (String::new(), 0i64);
        loop {
            let rows = sqlx::query(texts::READ_BY_STREAM.sqlite())
                .bind(&after.0)
                .bind(after.1)
                .bind(crate::types::HASHING_PAGE)
                .fetch_all(&mut **tx)
                .await?;
            let events: Vec<RecordedEvent> = rows.iter().map(event_from_row).collect::<Result<_, _>>()?;
            let Some(last) = events.last() else { break };
            after = (last.stream_id.as_str().to_owned(), last.version);
            for event in &events {
                sqlx::query("UPDATE ledger_events SET hash = ? WHERE global_position = ?")
                    .bind(chain.next(event).as_slice())
                    .bind(event.global_position)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        sqlx::query(
            "UPDATE ledger_streams SET head = (SELECT e.hash FROM ledger_events e
                 WHERE e.stream_id = ledger_streams.stream_id AND e.version = ledger_streams.version)",
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_migrations'",
        )
        .fetch_one(&self.readers)
        .await?;
        if !exists {
            return Ok(migrate::SQLITE.len());
        }
        let applied: Vec<(i64, String)> = sqlx::query_as(migrate::APPLIED).fetch_all(&self.readers).await?;
        Ok(migrate::pending(migrate::SQLITE, &applied)?.len())
    }

    /// The streams that moved after `after` (see `AnyEventLog::streams_moved_after_in`).
    pub async fn streams_moved_after_in(
        tx: &mut Transaction<'static, Sqlite>,
        after: Checkpoint,
    ) -> Result<Vec<MovedStream>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT stream_id, count(*), max(version) FROM ledger_events WHERE global_position > ? GROUP BY stream_id",
        )
        .bind(after.position)
        .fetch_all(&mut **tx)
        .await?;
        rows.into_iter().map(MovedStream::from_row).collect()
    }

    /// Appends to several streams in `tx`, each independently; see [`StreamAppendOutcome`].
    pub async fn append_many_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        parts: &[impl AsRef<StreamAppend> + Sync],
    ) -> Result<Vec<StreamAppendOutcome>, StoreError> {
        crate::types::one_part_per_stream(parts)?;
        let mut outcomes = Vec::with_capacity(parts.len());
        for part in parts {
            let part = part.as_ref();
            // A refused part writes nothing (the checks come before the writes), so the
            // transaction goes on with the next.
            if let Some(chain) = &part.chain {
                let (version, head) = Self::head_in(tx, &part.stream).await?;
                if version == part.expected && head != chain.expected_head {
                    outcomes.push(StreamAppendOutcome::Conflict);
                    continue;
                }
            }
            outcomes.push(match self.append_in(tx, &part.stream, part.expected, &part.events).await {
                Ok(AppendOutcome::Appended { new_version, events }) => StreamAppendOutcome::Appended {
                    new_version,
                    positions: events.iter().map(|event| event.checkpoint).collect(),
                },
                Ok(AppendOutcome::Duplicate { .. }) => StreamAppendOutcome::Duplicate,
                Err(StoreError::Conflict { .. }) => StreamAppendOutcome::Conflict,
                Err(e) => return Err(e),
            });
        }
        Ok(outcomes)
    }

    /// The stream's version and the chain hash of its last event ([`crate::GENESIS`] for a
    /// stream with none), in `tx`.
    async fn head_in(tx: &mut Transaction<'static, Sqlite>, stream: &StreamId) -> Result<(Version, Hash), StoreError> {
        let row: Option<(i64, Option<Vec<u8>>)> =
            sqlx::query_as(texts::STREAM_HEAD.sqlite()).bind(stream.as_str()).fetch_optional(&mut **tx).await?;
        match row {
            None => Ok((0, crate::GENESIS)),
            Some((version, head)) => Ok((version, hash_of(head.as_deref())?)),
        }
    }

    async fn checkpoint_in(tx: &mut Transaction<'static, Sqlite>, consumer: &str) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as(texts::LOAD_CHECKPOINT.sqlite()).bind(consumer).fetch_optional(&mut **tx).await?;
        Ok(row.map_or(Checkpoint::ORIGIN, |(transaction_id, position)| Checkpoint { transaction_id, position }))
    }
}

fn event_from_row(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what}: {e}"));
    let stream_id: String = row.try_get("stream_id")?;
    let event_id: String = row.try_get("event_id")?;
    let data: String = row.try_get("data")?;
    let global_position: i64 = row.try_get("global_position")?;
    Ok(RecordedEvent {
        event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt("event_id", &e))?,
        stream_id: StreamId::parse(stream_id).map_err(|e| corrupt("stream_id", &e))?,
        version: row.try_get("version")?,
        global_position,
        checkpoint: Checkpoint { transaction_id: 0, position: global_position },
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", &e))?,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        actor: row.try_get("actor")?,
        catalog_fingerprint: row.try_get("catalog_fingerprint")?,
        recorded_at: from_micros(row.try_get("recorded_at_us")?)?,
        hash: hash_of(row.try_get::<Option<Vec<u8>>, _>("hash")?.as_deref())?,
    })
}

impl EventLog for SqliteEventLog {
    type Tx = Transaction<'static, Sqlite>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn commit(&self, tx: Self::Tx) -> Result<(), StoreError> {
        Ok(tx.commit().await?)
    }

    async fn append_in(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        expected: Version,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        // The transaction holds the write lock, so these checks and the writes below are atomic.
        let keys = idempotency_keys(stream, events, expected)?;
        for key in &keys {
            let used: Option<(i64, i64)> = sqlx::query_as(
                "SELECT first_version, last_version FROM ledger_idempotency_keys WHERE stream_id = ? AND idempotency_key = ?",
            )
            .bind(stream.as_str())
            .bind(&key.key)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some((first, last)) = used {
                let rows = sqlx::query(texts::READ_RANGE.sqlite())
                    .bind(stream.as_str())
                    .bind(first)
                    .bind(last)
                    .fetch_all(&mut **tx)
                    .await?;
                let events = rows.iter().map(event_from_row).collect::<Result<_, _>>()?;
                return Ok(AppendOutcome::Duplicate { events });
            }
        }
        let (actual, head) = Self::head_in(tx, stream).await?;
        if actual != expected {
            return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
        }
        let hashes = crate::types::chain_hashes(stream, expected, &head, events);
        let new_version = expected + events.len() as Version;
        let write_error = |e| crate::error::classify_write_error(e, stream);
        sqlx::query(
            "INSERT INTO ledger_streams (stream_id, version, head) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, head = excluded.head",
        )
        .bind(stream.as_str())
        .bind(new_version)
        .bind(hashes.last().map(|h| h.as_slice()))
        .execute(&mut **tx)
        .await
        .map_err(write_error)?;
        let mut positions = Vec::with_capacity(events.len());
        for (offset, event) in events.iter().enumerate() {
            let data = serde_json::to_string(&event.data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let position: i64 = sqlx::query_scalar(
                "INSERT INTO ledger_events (event_id, stream_id, version, event_type, schema_version, data,
                    correlation_id, causation_id, idempotency_key, actor, catalog_fingerprint, recorded_at_us, hash)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING global_position",
            )
            .bind(event.event_id.to_string())
            .bind(stream.as_str())
            .bind(expected + 1 + offset as Version)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(data)
            .bind(&event.correlation_id)
            .bind(&event.causation_id)
            .bind(event.idempotency_key.as_ref().map(|k| k.key.as_str()))
            .bind(&event.actor)
            .bind(&event.catalog_fingerprint)
            .bind(micros(event.recorded_at))
            .bind(hashes[offset].as_slice())
            .fetch_one(&mut **tx)
            .await
            .map_err(write_error)?;
            positions.push((position, Checkpoint { transaction_id: 0, position }));
        }
        for key in &keys {
            sqlx::query(
                "INSERT INTO ledger_idempotency_keys (stream_id, idempotency_key, first_version, last_version, created_at_us)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(stream.as_str())
            .bind(&key.key)
            .bind(key.version)
            .bind(key.version)
            .bind(micros(key.at))
            .execute(&mut **tx)
            .await
            .map_err(write_error)?;
        }
        Ok(AppendOutcome::Appended { new_version, events: recorded(stream, expected, events, &positions, &hashes) })
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let version: Option<i64> = sqlx::query_scalar(texts::STREAM_VERSION.sqlite())
            .bind(stream.as_str())
            .fetch_optional(&self.readers)
            .await?;
        Ok(version.unwrap_or(0))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: Version,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(texts::READ_STREAM.sqlite())
            .bind(stream.as_str())
            .bind(from_version)
            .bind(limit.clamp(0, MAX_READ_LIMIT))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_by_stream(
        &self,
        after: Option<(&StreamId, Version)>,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (stream, version) = after.map_or(("", 0), |(stream, version)| (stream.as_str(), version));
        let rows = sqlx::query(texts::READ_BY_STREAM.sqlite())
            .bind(stream)
            .bind(version)
            .bind(limit.clamp(0, MAX_READ_LIMIT))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row =
            sqlx::query(texts::READ_EVENT.sqlite()).bind(event_id.to_string()).fetch_optional(&self.readers).await?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn read_all(&self, after: Checkpoint, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM ledger_events WHERE global_position > ? ORDER BY global_position LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(after.position)
            .bind(limit.clamp(0, MAX_READ_LIMIT))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn load_checkpoint(&self, consumer: &str) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as(texts::LOAD_CHECKPOINT.sqlite()).bind(consumer).fetch_optional(&self.readers).await?;
        Ok(row.map_or(Checkpoint::ORIGIN, |(transaction_id, position)| Checkpoint { transaction_id, position }))
    }

    async fn compare_and_set_checkpoint_in(
        &self,
        tx: &mut Self::Tx,
        consumer: &str,
        expected: Checkpoint,
        new: Checkpoint,
    ) -> Result<(), StoreError> {
        let actual = Self::checkpoint_in(tx, consumer).await?;
        if actual != expected {
            return Err(StoreError::CheckpointMoved { consumer: consumer.to_owned(), expected, actual });
        }
        sqlx::query(&format!(
            "INSERT INTO ledger_checkpoints (consumer, transaction_id, position, updated_at_us) VALUES (?, ?, ?, {NOW_US})
             ON CONFLICT (consumer) DO UPDATE
                SET transaction_id = excluded.transaction_id, position = excluded.position, updated_at_us = excluded.updated_at_us"
        ))
        .bind(consumer)
        .bind(new.transaction_id)
        .bind(new.position)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let state = serde_json::to_string(&snapshot.state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(texts::SAVE_SNAPSHOT.sqlite())
            .bind(snapshot.stream_id.as_str())
            .bind(snapshot.version)
            .bind(state)
            .bind(&snapshot.fold_fingerprint)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as(texts::LOAD_SNAPSHOT.sqlite()).bind(stream.as_str()).fetch_optional(&self.readers).await?;
        row.map(|(version, state, fold_fingerprint)| {
            Ok(Snapshot {
                stream_id: stream.clone(),
                version,
                state: serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                fold_fingerprint,
            })
        })
        .transpose()
    }
}
