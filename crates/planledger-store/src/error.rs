//! The store's typed errors. A version mismatch is [`StoreError::Conflict`], never a silent write.

use crate::{StreamId, Version};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the version the writer decided on. Re-read and re-decide.
    #[error("stream {stream} is at version {actual}, not the expected {expected}")]
    Conflict { stream: StreamId, expected: Version, actual: Version },
    /// A uniqueness constraint refused a concurrent write that slipped past the version check
    /// (the database's last line of defence). Treat it like a conflict.
    #[error("a concurrent write to stream {stream} was refused by the database: {constraint}")]
    ConcurrentWrite { stream: StreamId, constraint: String },
    /// A checkpoint's compare-and-set found another value: another consumer instance moved it.
    #[error("checkpoint {consumer} has moved on: expected {expected:?}, found {actual:?}")]
    CheckpointMoved { consumer: String, expected: crate::Checkpoint, actual: crate::Checkpoint },
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// Two events of one append carry the same idempotency key: a decision taken twice.
    #[error("an append to stream {stream} carries the key {key} twice")]
    RepeatedKey { stream: StreamId, key: String },
    #[error("invalid stream id {0:?}: 1 to 200 bytes, no control characters")]
    InvalidStreamId(String),
    /// One multi-stream append named a stream twice: refused whole, since its versions are
    /// checked once per stream. Write the parts one after another.
    #[error("one multi-stream append names stream {0} twice")]
    StreamTwice(StreamId),
    #[error("unsupported database url {0:?}: use postgres://... or sqlite://...")]
    UnsupportedUrl(String),
    /// A PostgreSQL URL whose list of servers, or whose way of choosing among them, the ledger
    /// cannot honour (`target_session_attrs=standby`, say): refused, never half-read.
    #[error("unsupported PostgreSQL server list: {0}")]
    UnsupportedServerList(String),
    /// No server of the URL takes writes now: a standby, or a server whose sessions refuse writes
    /// (a failover is under way, or the address moved to a standby). Writes are refused until
    /// the watcher finds a primary; retry.
    #[error("the database is a {role} and planledger writes only to a primary; waiting for one ({tried})")]
    NotPrimary { role: &'static str, tried: String },
    #[error("migration {version} ({name}) was changed after it was applied; add a new migration instead")]
    MigrationChanged { version: i64, name: String },
    #[error("the database has migration {0}, which this build does not know: it is older than the database")]
    UnknownMigration(i64),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The log's events carry transaction ids this server has not reached: the database was
    /// restored from a logical dump into another cluster. New events would sort before old
    /// ones in the global feed and every projector would stop at the old head without a word.
    #[error(
        "the event log holds transaction ids up to {log_head}, but this PostgreSQL server's next transaction id \
         is {server_next}: the database was restored from a logical dump (pg_dump) into another cluster. \
         Refusing to start: new events would sort before the restored ones and projections would stall. \
         Restore from a physical backup (pg_basebackup, which keeps transaction ids), or advance this \
         cluster's transaction counter past {log_head} first (docs/operations.md, \"Restoring a logical dump\")"
    )]
    RestoredBehindLog { log_head: i64, server_next: i64 },
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// Whether a writer should re-read the stream and decide again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::ConcurrentWrite { .. })
    }

    /// Whether a unique constraint refused the write (a key another writer took first).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
            StoreError::ConcurrentWrite { .. } => true,
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            other => StoreError::Database(other),
        }
    }
}

/// Maps a unique violation on a stream's constraints to [`StoreError::ConcurrentWrite`].
pub(crate) fn classify_write_error(error: sqlx::Error, stream: &StreamId) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_unique_violation() {
            return StoreError::ConcurrentWrite {
                stream: stream.clone(),
                constraint: db.constraint().unwrap_or("unique").to_owned(),
            };
        }
    }
    error.into()
}
