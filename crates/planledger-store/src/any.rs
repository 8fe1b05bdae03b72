//! One event log whose backend is chosen by the database URL at start-up.

use std::collections::HashMap;
use std::time::Duration;

use crate::migrate::MigrationReport;
use crate::{
    AppendOutcome, Checkpoint, EventLog, MovedStream, NewEvent, PgEventLog, RecordedEvent, Snapshot, SqliteEventLog,
    StoreError, StreamAppend, StreamAppendOutcome, StreamId, Version,
};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `postgres://...` or `sqlite://path`.
    pub url: String,
    /// PostgreSQL: the pool of commands, projectors and bookkeeping (SQLite has one writer).
    pub max_connections: u32,
    /// Connections that answer read requests, apart from the others on both backends (see
    /// [`AnyEventLog::reads_only`]).
    pub readers: u32,
    /// PostgreSQL ends sessions idle inside a transaction for longer than this, so that one
    /// stuck client cannot hold back every gap-safe reader of the log.
    pub idle_in_transaction_timeout: Duration,
    /// How long a request waits for a pooled connection before the database counts as unavailable.
    pub acquire_timeout: Duration,
    /// How long SQLite waits for another process's write lock.
    pub busy_timeout: Duration,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            readers: 8,
            idle_in_transaction_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// What a database is to the ledger (see [`AnyEventLog::database_role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseRole {
    /// Takes writes.
    Primary,
    /// A standby in recovery: reads only, and behind its primary.
    Standby,
    /// Not in recovery, but its sessions refuse writes.
    ReadOnly,
}

impl DatabaseRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseRole::Primary => "primary",
            DatabaseRole::Standby => "standby",
            DatabaseRole::ReadOnly => "read-only",
        }
    }
}

/// How commits reach standbys (see [`AnyEventLog::replication`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// Standbys the primary waits for (`pg_stat_replication.sync_state` `sync` or `quorum`).
    pub synchronous_standbys: i64,
    /// The primary's `synchronous_commit`.
    pub synchronous_commit: String,
    /// The primary's `synchronous_standby_names` (empty: it waits for none).
    pub synchronous_standby_names: String,
}

impl Replication {
    fn commit_waits_for_standbys(&self) -> bool {
        matches!(self.synchronous_commit.as_str(), "on" | "remote_write" | "remote_apply")
    }

    /// Whether an acknowledged commit survives the loss of the primary: a standby confirmed
    /// it (written, flushed or applied there) before the primary answered.
    pub fn keeps_acknowledged(&self) -> bool {
        self.synchronous_standbys > 0 && self.commit_waits_for_standbys()
    }

    /// Whether every commit waits, with no end, for a synchronous standby that is not
    /// connected: the primary names standbys in `synchronous_standby_names` and none of them is
    /// there (a promoted server whose configuration still names the standby it was). Reads go
    /// on; every write hangs.
    pub fn commits_wait_for_an_absent_standby(&self) -> bool {
        !self.synchronous_standby_names.trim().is_empty()
            && self.synchronous_standbys == 0
            && self.commit_waits_for_standbys()
    }
}

/// The event log on whichever backend the URL names.
#[derive(Debug, Clone)]
pub enum AnyEventLog {
    Postgres(PgEventLog),
    Sqlite(SqliteEventLog),
}

/// A write transaction of either backend.
#[derive(Debug)]
pub enum AnyTx {
    Postgres(<PgEventLog as EventLog>::Tx),
    Sqlite(<SqliteEventLog as EventLog>::Tx),
}

impl AnyEventLog {
    /// The stream's version and the chain hash of its last event ([`crate::GENESIS`] for a
    /// stream with none), read together from the primary.
    pub async fn stream_head(&self, stream: &StreamId) -> Result<(Version, crate::Hash), StoreError> {
        let row: Option<(i64, Option<Vec<u8>>)> = match self {
            Self::Postgres(log) => {
                sqlx::query_as(crate::texts::STREAM_HEAD.postgres())
                    .bind(stream.as_str())
                    .fetch_optional(log.pool())
                    .await?
            }
            Self::Sqlite(log) => {
                sqlx::query_as(crate::texts::STREAM_HEAD.sqlite())
                    .bind(stream.as_str())
                    .fetch_optional(log.readers())
                    .await?
            }
        };
        match row {
            None => Ok((0, crate::GENESIS)),
            Some((version, head)) => Ok((version, crate::types::hash_of(head.as_deref())?)),
        }
    }
}

impl AnyEventLog {
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let url = config.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") || crate::servers::is_key_value(url) {
            let log = PgEventLog::connect_with_readers(
                url,
                config.max_connections,
                config.readers,
                config.idle_in_transaction_timeout,
                config.acquire_timeout,
            )
            .await?;
            Ok(Self::Postgres(log))
        } else if url.starts_with("sqlite:") {
            let log = SqliteEventLog::connect(url, config.readers, config.busy_timeout).await?;
            Ok(Self::Sqlite(log))
        } else {
            Err(StoreError::UnsupportedUrl(crate::servers::redacted(url)))
        }
    }

    /// This log for read requests: every statement runs on the reader connections, where a
    /// write is refused, so readers never take a connection a command could need.
    pub fn reads_only(&self) -> Self {
        match self {
            Self::Postgres(log) => Self::Postgres(log.reads_only()),
            Self::Sqlite(log) => Self::Sqlite(log.reads_only()),
        }
    }

    /// Resolves once the server in use is known not to take writes (never on SQLite). A new
    /// connection to a standby records that at once while the pool goes on retrying until its
    /// acquire timeout: a caller racing this against a query stops waiting for a connection the
    /// pool will not get.
    pub async fn until_not_primary(&self) {
        match self {
            Self::Postgres(log) => loop {
                if log.role().is_some_and(|role| role != DatabaseRole::Primary) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            },
            Self::Sqlite(_) => std::future::pending().await,
        }
    }

    /// What the database behind the commands' connections is: a primary that takes writes,
    /// or a standby in recovery, or a server whose sessions are read-only (a failover moved the
    /// address to a standby, say). SQLite is always its own primary.
    pub async fn database_role(&self) -> Result<DatabaseRole, StoreError> {
        match self {
            // The watcher's answer: a pooled connection to a standby is never opened to ask.
            Self::Postgres(log) => log.role().ok_or(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
            Self::Sqlite(_) => Ok(DatabaseRole::Primary),
        }
    }

    /// How many of `wanted` writers can write at once: PostgreSQL takes them all (each on a
    /// connection of its own), SQLite one (it has one writer).
    pub fn writers_at_once(&self, wanted: usize) -> usize {
        match self {
            Self::Postgres(_) => wanted.max(1),
            Self::Sqlite(_) => 1,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        match self {
            Self::Postgres(log) => log.migrate().await,
            Self::Sqlite(log) => log.migrate().await,
        }
    }

    /// How far a consumer at `after` is behind the head of the log: the number of events after
    /// it, and the time of the oldest of them.
    pub async fn lag_after(
        &self,
        after: Checkpoint,
    ) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), StoreError> {
        Ok(match self {
            Self::Postgres(log) => {
                sqlx::query_as(
                    "SELECT count(*), min(recorded_at) FROM ledger_events
                     WHERE (transaction_id, global_position) > ((($1::bigint)::text)::xid8, $2)",
                )
                .bind(after.transaction_id)
                .bind(after.position)
                .fetch_one(log.pool())
                .await?
            }
            Self::Sqlite(log) => {
                let (count, oldest): (i64, Option<i64>) =
                    sqlx::query_as("SELECT count(*), min(recorded_at_us) FROM ledger_events WHERE global_position > ?")
                        .bind(after.position)
                        .fetch_one(log.readers())
                        .await?;
                (count, oldest.and_then(chrono::DateTime::from_timestamp_micros))
            }
        })
    }

    /// When the oldest event after `after` was recorded, if there is one: one index probe,
    /// however long the backlog (what a readiness probe can afford on every call).
    pub async fn oldest_after(&self, after: Checkpoint) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        Ok(match self {
            Self::Postgres(log) => {
                sqlx::query_scalar(
                    "SELECT recorded_at FROM ledger_events
                     WHERE (transaction_id, global_position) > ((($1::bigint)::text)::xid8, $2)
                     ORDER BY transaction_id, global_position LIMIT 1",
                )
                .bind(after.transaction_id)
                .bind(after.position)
                .fetch_optional(log.pool())
                .await?
            }
            Self::Sqlite(log) => {
                let oldest: Option<i64> = sqlx::query_scalar(
                    "SELECT recorded_at_us FROM ledger_events WHERE global_position > ? ORDER BY global_position LIMIT 1",
                )
                .bind(after.position)
                .fetch_optional(log.readers())
                .await?;
                oldest.and_then(chrono::DateTime::from_timestamp_micros)
            }
        })
    }

    /// The last position `read_all` can deliver now: every event at or before it has committed,
    /// and none can still commit behind it. A reader that starts after this call sees them all.
    pub async fn settled_head(&self) -> Result<Checkpoint, StoreError> {
        let head: Option<(i64, i64)> = match self {
            Self::Postgres(log) => sqlx::query_as(crate::postgres::SETTLED_HEAD).fetch_optional(log.pool()).await?,
            Self::Sqlite(log) => {
                sqlx::query_as("SELECT 0, global_position FROM ledger_events ORDER BY global_position DESC LIMIT 1")
                    .fetch_optional(log.readers())
                    .await?
            }
        };
        Ok(head.map_or(Checkpoint::ORIGIN, |(transaction_id, position)| Checkpoint { transaction_id, position }))
    }

    /// Whether the log holds an event at `at` (the origin it always holds). A follower's cursor
    /// names the last event it read: one the log lacks was lost by a failover to a standby
    /// that had not received it (or the cursor is from another log), and reading on after it
    /// would skip, unannounced, the events written since under reused transaction ids.
    pub async fn holds(&self, at: Checkpoint) -> Result<bool, StoreError> {
        if at == Checkpoint::ORIGIN {
            return Ok(true);
        }
        Ok(match self {
            Self::Postgres(log) => {
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM ledger_events
                     WHERE transaction_id = ((($1::bigint)::text)::xid8) AND global_position = $2)",
                )
                .bind(at.transaction_id)
                .bind(at.position)
                .fetch_one(log.pool())
                .await?
            }
            Self::Sqlite(log) => {
                at.transaction_id == 0
                    && sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ledger_events WHERE global_position = ?)")
                        .bind(at.position)
                        .fetch_one(log.readers())
                        .await?
            }
        })
    }

    /// The consumers whose checkpoint names an event the log does not hold. A projector's
    /// checkpoint commits in the database after the events it names, so a physical failover
    /// keeps the two consistent; a checkpoint past the log means the database was put together
    /// from parts (a restore of one table, a dump of another), and that projector would skip
    /// events or read under reused transaction ids. One index probe per consumer (`holds`).
    pub async fn checkpoints_not_in_log(&self) -> Result<Vec<String>, StoreError> {
        use crate::rows::Kind;
        let statement = crate::sql::Statement::new(
            "SELECT consumer, transaction_id, position FROM ledger_checkpoints ORDER BY consumer",
        );
        let mut lost = Vec::new();
        for row in self.fetch(&statement, &[Kind::Text, Kind::Int, Kind::Int]).await? {
            let at = Checkpoint { transaction_id: row.int(1)?, position: row.int(2)? };
            if !self.holds(at).await? {
                lost.push(row.text(0)?);
            }
        }
        Ok(lost)
    }

    /// The streams that gained events after `after` in the order of `read_all`, counting every
    /// event committed when the statement runs (without the feed's gap-safe bound): exact for a
    /// caller that only needs what has committed, such as a rebuild's catch-up, which resumes
    /// from [`Self::settled_head`] taken before it looked, and whose last look holds writers off.
    pub async fn streams_moved_after_in(
        &self,
        tx: &mut AnyTx,
        after: Checkpoint,
    ) -> Result<Vec<MovedStream>, StoreError> {
        match (self, tx) {
            (Self::Postgres(_), AnyTx::Postgres(tx)) => PgEventLog::streams_moved_after_in(tx, after).await,
            (Self::Sqlite(_), AnyTx::Sqlite(tx)) => SqliteEventLog::streams_moved_after_in(tx, after).await,
            _ => Err(mismatched()),
        }
    }

    /// How the database replicates its commits. SQLite has no standbys.
    pub async fn replication(&self) -> Result<Replication, StoreError> {
        match self {
            Self::Postgres(log) => {
                let (synchronous_standbys, synchronous_commit, synchronous_standby_names): (i64, String, String) =
                    sqlx::query_as(
                        "SELECT (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')),
                                current_setting('synchronous_commit'), current_setting('synchronous_standby_names')",
                    )
                    .fetch_one(log.pool())
                    .await?;
                Ok(Replication { synchronous_standbys, synchronous_commit, synchronous_standby_names })
            }
            Self::Sqlite(_) => Ok(Replication {
                synchronous_standbys: 0,
                synchronous_commit: "local".into(),
                synchronous_standby_names: String::new(),
            }),
        }
    }

    /// Refuses a database whose log is ahead of its server's transaction ids (a logical dump
    /// restored into another cluster, see [`StoreError::RestoredBehindLog`]). One index probe;
    /// nothing to check on SQLite, whose order is its own row ids.
    pub async fn check_transaction_order(&self) -> Result<(), StoreError> {
        let Self::Postgres(log) = self else { return Ok(()) };
        // `pg_snapshot_xmax` is the next id to be assigned; reading it assigns none.
        let (log_head, server_next): (Option<i64>, i64) =
            sqlx::query_as(crate::postgres::LOG_HEAD_AND_NEXT_TRANSACTION).fetch_one(log.pool()).await?;
        match log_head {
            Some(log_head) if log_head >= server_next => Err(StoreError::RestoredBehindLog { log_head, server_next }),
            _ => Ok(()),
        }
    }

    /// The number of events in the log.
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(self.lag_after(Checkpoint::ORIGIN).await?.0)
    }

    /// Appends to several streams in one transaction (one statement on PostgreSQL); each stream
    /// is checked on its own, so one conflict does not stop the others. A part with no events is
    /// a version check only ([`StreamAppendOutcome::Checked`] or `Conflict`): what a decision
    /// that appends nothing but must be recorded (a stored answer) rests on.
    pub async fn append_many_in(
        &self,
        tx: &mut AnyTx,
        parts: &[impl AsRef<StreamAppend> + Sync],
    ) -> Result<Vec<StreamAppendOutcome>, StoreError> {
        let (log, tx) = match (self, &mut *tx) {
            // One statement writes the parts with events and checks the others.
            (Self::Postgres(_), AnyTx::Postgres(tx)) => return PgEventLog::append_many_in(tx, parts).await,
            (Self::Sqlite(log), AnyTx::Sqlite(tx)) => (log, tx),
            _ => return Err(mismatched()),
        };
        let (writes, checks): (Vec<&StreamAppend>, Vec<&StreamAppend>) =
            parts.iter().map(AsRef::as_ref).partition(|part| !part.events.is_empty());
        let mut written =
            if writes.is_empty() { Vec::new() } else { log.append_many_in(tx, &writes).await? }.into_iter();
        let versions = if checks.is_empty() { HashMap::new() } else { versions_in(tx, &checks).await? };
        Ok(parts
            .iter()
            .map(AsRef::as_ref)
            .map(|part| {
                if !part.events.is_empty() {
                    return written.next().unwrap_or(StreamAppendOutcome::Conflict);
                }
                match versions.get(part.stream.as_str()).copied().unwrap_or(0) {
                    version if version == part.expected => StreamAppendOutcome::Checked { version },
                    _ => StreamAppendOutcome::Conflict,
                }
            })
            .collect())
    }

    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        match self {
            Self::Postgres(log) => log.pending_migrations().await,
            Self::Sqlite(log) => log.pending_migrations().await,
        }
    }
}

/// The versions of `parts`' streams, read in `tx` (SQLite; PostgreSQL checks them in the append).
async fn versions_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    parts: &[&StreamAppend],
) -> Result<HashMap<String, Version>, StoreError> {
    let mut versions = HashMap::with_capacity(parts.len());
    for part in parts {
        let version: Option<i64> = sqlx::query_scalar(crate::texts::STREAM_VERSION.sqlite())
            .bind(part.stream.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        versions.extend(version.map(|v| (part.stream.as_str().to_owned(), v)));
    }
    Ok(versions)
}

fn mismatched() -> StoreError {
    StoreError::Corrupt("a transaction of one backend was used with another".to_owned())
}

impl EventLog for AnyEventLog {
    type Tx = AnyTx;

    async fn begin(&self) -> Result<AnyTx, StoreError> {
        Ok(match self {
            Self::Postgres(log) => AnyTx::Postgres(log.begin().await?),
            Self::Sqlite(log) => AnyTx::Sqlite(log.begin().await?),
        })
    }

    async fn commit(&self, tx: AnyTx) -> Result<(), StoreError> {
        match (self, tx) {
            (Self::Postgres(log), AnyTx::Postgres(tx)) => log.commit(tx).await,
            (Self::Sqlite(log), AnyTx::Sqlite(tx)) => log.commit(tx).await,
            _ => Err(mismatched()),
        }
    }

    async fn append_in(
        &self,
        tx: &mut AnyTx,
        stream: &StreamId,
        expected: Version,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, StoreError> {
        match (self, tx) {
            (Self::Postgres(log), AnyTx::Postgres(tx)) => log.append_in(tx, stream, expected, events).await,
            (Self::Sqlite(log), AnyTx::Sqlite(tx)) => log.append_in(tx, stream, expected, events).await,
            _ => Err(mismatched()),
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        match self {
            Self::Postgres(log) => log.stream_version(stream).await,
            Self::Sqlite(log) => log.stream_version(stream).await,
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: Version,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Self::Postgres(log) => log.read_stream(stream, from_version, limit).await,
            Self::Sqlite(log) => log.read_stream(stream, from_version, limit).await,
        }
    }

    async fn read_by_stream(
        &self,
        after: Option<(&StreamId, Version)>,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Self::Postgres(log) => log.read_by_stream(after, limit).await,
            Self::Sqlite(log) => log.read_by_stream(after, limit).await,
        }
    }

    async fn read_event(&self, event_id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        match self {
            Self::Postgres(log) => log.read_event(event_id).await,
            Self::Sqlite(log) => log.read_event(event_id).await,
        }
    }

    async fn read_all(&self, after: Checkpoint, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Self::Postgres(log) => log.read_all(after, limit).await,
            Self::Sqlite(log) => log.read_all(after, limit).await,
        }
    }

    async fn load_checkpoint(&self, consumer: &str) -> Result<Checkpoint, StoreError> {
        match self {
            Self::Postgres(log) => log.load_checkpoint(consumer).await,
            Self::Sqlite(log) => log.load_checkpoint(consumer).await,
        }
    }

    async fn compare_and_set_checkpoint_in(
        &self,
        tx: &mut AnyTx,
        consumer: &str,
        expected: Checkpoint,
        new: Checkpoint,
    ) -> Result<(), StoreError> {
        match (self, tx) {
            (Self::Postgres(log), AnyTx::Postgres(tx)) => {
                log.compare_and_set_checkpoint_in(tx, consumer, expected, new).await
            }
            (Self::Sqlite(log), AnyTx::Sqlite(tx)) => {
                log.compare_and_set_checkpoint_in(tx, consumer, expected, new).await
            }
            _ => Err(mismatched()),
        }
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        match self {
            Self::Postgres(log) => log.save_snapshot(snapshot).await,
            Self::Sqlite(log) => log.save_snapshot(snapshot).await,
        }
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        match self {
            Self::Postgres(log) => log.load_snapshot(stream).await,
            Self::Sqlite(log) => log.load_snapshot(stream).await,
        }
    }
}

#[cfg(test)]
mod replication_tests {
    use super::Replication;

    #[test]
    fn an_acknowledged_commit_is_kept_only_when_a_standby_confirms_it_first() {
        let with = |standbys: i64, commit: &str| {
            let names = "standby1".into();
            let replication = Replication {
                synchronous_standbys: standbys,
                synchronous_commit: commit.into(),
                synchronous_standby_names: names,
            };
            replication.keeps_acknowledged()
        };
        for commit in ["on", "remote_write", "remote_apply"] {
            assert!(with(1, commit), "{commit}");
            assert!(!with(0, commit), "no synchronous standby: {commit}");
        }
        // A commit answered before any standby has it is lost with the primary.
        for commit in ["local", "off"] {
            assert!(!with(2, commit), "{commit}");
        }
    }

    #[test]
    fn commits_hang_when_the_standbys_named_are_absent() {
        let with = |standbys: i64, commit: &str, names: &str| Replication {
            synchronous_standbys: standbys,
            synchronous_commit: commit.into(),
            synchronous_standby_names: names.into(),
        };
        assert!(with(0, "on", "standby1").commits_wait_for_an_absent_standby());
        assert!(with(0, "remote_apply", "ANY 1 (a, b)").commits_wait_for_an_absent_standby());
        assert!(!with(1, "on", "standby1").commits_wait_for_an_absent_standby(), "the standby is there");
        assert!(!with(0, "on", "").commits_wait_for_an_absent_standby(), "no standby is named");
        assert!(!with(0, "local", "standby1").commits_wait_for_an_absent_standby(), "commits do not wait");
    }
}
