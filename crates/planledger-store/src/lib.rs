//! The append-only event log of planledger.
//!
//! Every fact about a store is an event in that store's own stream. Writers append with the
//! version they decided on ([`EventLog::append`]); a mismatch is a [`StoreError::Conflict`] and
//! nothing is written, so the version check is the only lock. A unique (stream, version)
//! constraint stands behind it. Readers of the whole log ([`EventLog::read_all`]) follow a
//! [`Checkpoint`]; on PostgreSQL the order is (writing transaction, position) and only
//! transactions older than every running one are read, so an event that commits late is
//! delivered, never skipped.
//!
//! Two backends implement [`EventLog`]: [`PgEventLog`] (production, many nodes on one database)
//! and [`SqliteEventLog`] (the embedded default). [`AnyEventLog`] picks one from a database URL.
//! One conformance suite (`tests/conformance.rs`) runs against both.

mod any;
pub mod audit;
pub mod copy_text;
mod error;
pub mod group;
pub mod locks;
pub mod migrate;
mod postgres;
mod primary;
pub mod retention;
pub mod rows;
pub mod servers;
pub mod sql;
mod sqlite;
mod texts;
mod types;

pub use planledger_chain::{Hash, GENESIS};

use std::future::Future;

pub use any::{AnyEventLog, AnyTx, DatabaseRole, Replication, StoreConfig};
pub use error::StoreError;
pub use group::{CommitFaults, Group, GroupError, GroupOptions, GroupOutcome, GroupPart, PartFailure};
pub use locks::{Leadership, PerBackend, TableLock};
pub use postgres::{PgEventLog, PgQuery, Rider};
pub use retention::Expiring;
pub use rows::{Column, Kind, OnConflict, Table, Value};
pub use sql::{EventCopy, Row, Statement};
pub use sqlite::{SqliteEventLog, SQLITE_NOW_US};
pub use types::{
    chain_hashes, truncate_to_micros, AppendOutcome, Chain, Checkpoint, IdempotencyKey, KeyScope, MovedStream,
    NewEvent, Rechain, RecordedEvent, Snapshot, StreamAppend, StreamAppendOutcome, StreamId, Version,
    MAX_STREAM_ID_LEN,
};

/// The most events one `read_stream` or `read_all` call returns.
pub const MAX_READ_LIMIT: i64 = 10_000;

/// The event log's operations, written once and implemented by each backend.
///
/// Writes come in two forms: on the log itself (their own transaction), and `*_in` a caller's
/// transaction, so that a read-model write and a checkpoint advance commit with the events or
/// not at all.
pub trait EventLog: Send + Sync {
    /// An open write transaction. Dropping it without [`EventLog::commit`] rolls it back.
    type Tx: Send;

    fn begin(&self) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;

    fn commit(&self, tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Appends `events` to `stream` if it is at `expected` (0 for a new stream), in `tx`.
    fn append_in(
        &self,
        tx: &mut Self::Tx,
        stream: &StreamId,
        expected: Version,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// Appends in a transaction of its own: all events or none.
    fn append(
        &self,
        stream: &StreamId,
        expected: Version,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send {
        async move {
            let mut tx = self.begin().await?;
            let outcome = self.append_in(&mut tx, stream, expected, events).await?;
            self.commit(tx).await?;
            Ok(outcome)
        }
    }

    /// The stream's current version (0 if it has no events).
    fn stream_version(&self, stream: &StreamId) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// Up to `limit` events of `stream` from `from_version` (inclusive), in version order.
    fn read_stream(
        &self,
        stream: &StreamId,
        from_version: Version,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Up to `limit` events after `after` (a stream and a version in it; the log's start if
    /// `None`) in stream order: each stream's events together, in version order, streams by id.
    /// For folds that take one stream at a time in bounded memory (a rebuild of a per-store
    /// model). Not a feed: a stream already passed may grow after it was read.
    fn read_by_stream(
        &self,
        after: Option<(&StreamId, Version)>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// One event by its id, if it exists.
    fn read_event(
        &self,
        event_id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>, StoreError>> + Send;

    /// Up to `limit` events of the whole log after `after`, in commit-safe order.
    fn read_all(
        &self,
        after: Checkpoint,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// A consumer's checkpoint ([`Checkpoint::ORIGIN`] if it has none).
    fn load_checkpoint(&self, consumer: &str) -> impl Future<Output = Result<Checkpoint, StoreError>> + Send;

    /// Moves `consumer`'s checkpoint from `expected` to `new` in `tx`, or fails with
    /// [`StoreError::CheckpointMoved`] if another instance moved it first.
    fn compare_and_set_checkpoint_in(
        &self,
        tx: &mut Self::Tx,
        consumer: &str,
        expected: Checkpoint,
        new: Checkpoint,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Keeps `snapshot` unless a newer one is already stored.
    fn save_snapshot(&self, snapshot: &Snapshot) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn load_snapshot(&self, stream: &StreamId) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;
}
