//! The PostgreSQL backend: many API nodes may share one database.
//!
//! An append is one statement: it bumps the stream's version row only if it is at the expected
//! version (and no idempotency key of the batch was used before), and inserts the events and
//! keys from that bump, so a failed check writes nothing. Each event records the writing
//! transaction's id; `read_all` orders by (transaction id, position) and stops before the oldest
//! running transaction, which is what makes it gap-safe.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::migrate::{self, MigrationReport};
use crate::primary::{Primary, Purpose};
use crate::texts;
use crate::types::{hash_of, idempotency_keys, recorded, MovedStream};
use crate::{
    AppendOutcome, Checkpoint, EventLog, Hash, NewEvent, RecordedEvent, Snapshot, StoreError, StreamAppend,
    StreamAppendOutcome, StreamId, Version, MAX_READ_LIMIT,
};

/// The envelope columns, in the order [`event_from_row`] reads them.
pub(crate) const EVENT_COLUMNS: &str = "global_position, transaction_id::text::bigint AS transaction_id, \
    event_id, stream_id, version, event_type, schema_version, data, correlation_id, causation_id, \
    idempotency_key, actor, catalog_fingerprint, recorded_at, hash";

/// Bumps the version row of a stream that does not exist yet.
const BUMP_NEW_STREAM: &str = "WITH bumped AS (
    INSERT INTO ledger_streams (stream_id, version, head)
    SELECT $1, $3, $19
    WHERE $2 = 0 AND $20::bytea = $20::bytea AND NOT EXISTS (
        SELECT 1 FROM ledger_idempotency_keys
        WHERE stream_id = $1 AND idempotency_key = ANY($15::text[]))
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING stream_id
),";

/// Bumps the version row of an existing stream, if it is at the expected version.
const BUMP_EXISTING_STREAM: &str = "WITH bumped AS (
    UPDATE ledger_streams SET version = $3, head = $19
    WHERE stream_id = $1 AND version = $2 AND head = $20 AND NOT EXISTS (
        SELECT 1 FROM ledger_idempotency_keys
        WHERE stream_id = $1 AND idempotency_key = ANY($15::text[]))
    RETURNING stream_id
),";

/// Inserts the events and idempotency keys, only if the bump above happened.
const INSERT_FROM_BUMP: &str = "inserted AS (
    INSERT INTO ledger_events (event_id, stream_id, version, event_type, schema_version, data,
        correlation_id, causation_id, idempotency_key, actor, catalog_fingerprint, recorded_at, hash)
    SELECT e.event_id, b.stream_id, e.version, e.event_type, e.schema_version, e.data,
        e.correlation_id, e.causation_id, e.idempotency_key, e.actor, e.catalog_fingerprint, e.recorded_at, e.hash
    FROM bumped b, unnest($4::uuid[], $5::bigint[], $6::text[], $7::int4[], $8::jsonb[], $9::text[],
        $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[], $21::bytea[])
        AS e(event_id, version, event_type, schema_version, data, correlation_id, causation_id,
             idempotency_key, actor, catalog_fingerprint, recorded_at, hash)
    RETURNING global_position, version, transaction_id
), keys AS (
    INSERT INTO ledger_idempotency_keys (stream_id, idempotency_key, first_version, last_version, created_at)
    SELECT b.stream_id, k.idempotency_key, k.first_version, k.last_version, k.created_at
    FROM bumped b, unnest($15::text[], $16::bigint[], $17::bigint[], $18::timestamptz[])
        AS k(idempotency_key, first_version, last_version, created_at)
)
SELECT global_position, transaction_id::text::bigint AS transaction_id FROM inserted ORDER BY version";

/// Appends to many streams in one statement: each stream's version row is bumped only at its
/// expected version (and if none of its keys was used), and only bumped streams get events.
/// Streams are independent: one's conflict does not stop the others.
///
/// The look-up of used keys is a lateral subquery with `LIMIT 1` so that it can only be an index
/// probe per key: as a plain join, a generic plan made while the key table was small hashed the
/// keys and scanned the whole table on every append, a cost that grew with the log (seen in
/// `hot_store_keyed`; docs/benchmarks.md).
fn append_many_sql(riders: &[Rider<'_>]) -> String {
    let mut sql = String::from("WITH ");
    let mut next_param = APPEND_MANY_PARAMS + 1;
    let mut placed = Vec::with_capacity(riders.len());
    for rider in riders {
        placed.push(renumber(&rider.sql, next_param - 1));
        next_param += rider.params;
    }
    let vetoes: String = riders
        .iter()
        .filter_map(|rider| rider.vetoes)
        .map(|name| format!("\n    UNION SELECT stream_id FROM {name}"))
        .collect();
    for (rider, placed) in riders.iter().zip(&placed) {
        if rider.vetoes.is_some() {
            sql.push_str(placed);
            sql.push_str(",\n");
        }
    }
    sql.push_str(&format!(
        "input AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $23::bytea[], $24::bytea[])
        AS i(stream_id, expected, new_version, expected_head, head)
), used AS (
    SELECT DISTINCT q.stream_id FROM unnest($15::text[], $16::text[]) AS q(stream_id, idempotency_key)
    CROSS JOIN LATERAL (
        SELECT 1 FROM ledger_idempotency_keys k
        WHERE k.stream_id = q.stream_id AND k.idempotency_key = q.idempotency_key LIMIT 1
    ) AS hit{vetoes}
), created AS (
    INSERT INTO ledger_streams (stream_id, version, head)
    SELECT i.stream_id, i.new_version, i.head FROM input i
    WHERE i.expected = 0 AND i.new_version > 0 AND i.stream_id NOT IN (SELECT stream_id FROM used)
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING stream_id
), moved AS (
    UPDATE ledger_streams s SET version = i.new_version, head = i.head FROM input i
    WHERE s.stream_id = i.stream_id AND i.expected > 0 AND i.new_version > i.expected AND s.version = i.expected
      AND s.head = i.expected_head
      AND i.stream_id NOT IN (SELECT stream_id FROM used)
    RETURNING s.stream_id
), checked AS (
    SELECT i.stream_id FROM input i LEFT JOIN ledger_streams s ON s.stream_id = i.stream_id
    WHERE i.new_version = i.expected AND coalesce(s.version, 0) = i.expected
      AND i.stream_id NOT IN (SELECT stream_id FROM used)
), bumped AS (
    SELECT stream_id FROM created UNION ALL SELECT stream_id FROM moved
), kept AS (
    SELECT stream_id FROM bumped UNION ALL SELECT stream_id FROM checked
), inserted AS (
    INSERT INTO ledger_events (event_id, stream_id, version, event_type, schema_version, data,
        correlation_id, causation_id, idempotency_key, actor, catalog_fingerprint, recorded_at, hash)
    SELECT e.event_id, e.stream_id, e.version, e.event_type, e.schema_version, e.data,
        e.correlation_id, e.causation_id, e.idempotency_key, e.actor, e.catalog_fingerprint, e.recorded_at, e.hash
    FROM unnest($4::text[], $5::uuid[], $6::bigint[], $7::text[], $8::int4[], $9::jsonb[], $10::text[],
        $11::text[], $12::text[], $13::text[], $14::text[], $17::timestamptz[], $25::bytea[])
        AS e(stream_id, event_id, version, event_type, schema_version, data, correlation_id, causation_id,
             idempotency_key, actor, catalog_fingerprint, recorded_at, hash)
    WHERE e.stream_id IN (SELECT stream_id FROM bumped)
    RETURNING stream_id, version, global_position, transaction_id
), keys AS (
    INSERT INTO ledger_idempotency_keys (stream_id, idempotency_key, first_version, last_version, created_at)
    SELECT k.stream_id, k.idempotency_key, k.first_version, k.last_version, k.created_at
    FROM unnest($18::text[], $19::text[], $20::bigint[], $21::bigint[], $22::timestamptz[])
        AS k(stream_id, idempotency_key, first_version, last_version, created_at)
    WHERE k.stream_id IN (SELECT stream_id FROM bumped)
)"
    ));
    for (rider, placed) in riders.iter().zip(&placed) {
        if rider.vetoes.is_none() {
            sql.push_str(",\n");
            sql.push_str(placed);
        }
    }
    sql.push_str(
        "
SELECT stream_id, version, global_position, transaction_id::text::bigint AS transaction_id, 0::int2 AS kind FROM inserted
UNION ALL
SELECT stream_id, 0, 0, 0, 1::int2 FROM used
UNION ALL
SELECT stream_id, 0, 0, 0, 2::int2 FROM checked",
    );
    sql
}

/// The parameters of the group append itself; riders' are numbered after them.
const APPEND_MANY_PARAMS: usize = 25;

/// `sql` with each parameter `$n` renumbered `$(n + by)`. Riders are written as if they stood
/// alone, so no rider needs to know what else shares its statement.
fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let digits_start = at + 1;
        let mut digits_end = digits_start;
        while let Some((i, d)) = chars.peek().copied() {
            if !d.is_ascii_digit() {
                break;
            }
            digits_end = i + 1;
            chars.next();
        }
        if digits_end > digits_start {
            let n: usize = sql[digits_start..digits_end].parse().unwrap_or(0);
            out.push_str(&(n + by).to_string());
        }
    }
    out
}

/// A query of the group append, to which a rider adds its parameters.
pub type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// A write that rides in the group append's statement, so that it stands or falls with the
/// streams the append writes: one statement (one round trip) for a whole group, which on this
/// two-core machine is what a group's latency is made of (docs/benchmarks.md). The append's
/// crate knows nothing of the riders' tables; a rider knows nothing of the append's parameters.
pub struct Rider<'a> {
    /// One or more `WITH` items (`name AS (...)`, comma-separated), parameters numbered from
    /// `$1` as if the rider stood alone. A follower (no `vetoes`) comes after the append and may
    /// read `bumped(stream_id)`, the streams it appended to, and `kept(stream_id)`, those and the
    /// streams whose version was checked. A statement's sub-statements share one snapshot: a
    /// follower sees none of the append's rows, only what `bumped` and `kept` say.
    pub sql: String,
    /// For a guard: the name of its `WITH` item, whose `stream_id`s are not written and are
    /// answered `Duplicate`. A guard comes before the append and reads only.
    pub vetoes: Option<&'static str>,
    /// How many parameters `sql` numbers.
    pub params: usize,
    /// Binds them, in their order.
    pub bind: Box<dyn for<'q> FnOnce(PgQuery<'q>) -> PgQuery<'q> + Send + 'a>,
}

impl std::fmt::Debug for Rider<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rider")
            .field("sql", &self.sql)
            .field("vetoes", &self.vetoes)
            .field("params", &self.params)
            .finish()
    }
}

/// The last event `read_all` can deliver now (see `AnyEventLog::settled_head`). The order names
/// the table's columns: `transaction_id::text::bigint` is itself an output column named
/// `transaction_id`, and an ORDER BY of that name sorts by the cast, which no index has: a pass
/// over the whole log on every call (seen at 0.8 s a call on a log of a million events, during
/// a rebuild's catch-up rounds).
pub(crate) const SETTLED_HEAD: &str = "SELECT transaction_id::text::bigint, global_position FROM ledger_events
     WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY ledger_events.transaction_id DESC, ledger_events.global_position DESC LIMIT 1";

/// The log's highest transaction id and the server's next one (`check_transaction_order`).
pub(crate) const LOG_HEAD_AND_NEXT_TRANSACTION: &str =
    "SELECT (SELECT transaction_id::text::bigint FROM ledger_events ORDER BY ledger_events.transaction_id DESC LIMIT 1),
            pg_snapshot_xmax(pg_current_snapshot())::text::bigint";

/// Serializes concurrent `migrate` calls across nodes.
const MIGRATION_LOCK_KEY: i64 = 0x706c_616e_6c65_6467; // "planledg"

/// The event log on PostgreSQL.
///
/// Two pools on one server: `pool` for commands, projectors and bookkeeping, `readers` for what
/// answers read requests (see [`PgEventLog::reads_only`]). However many readers wait, they wait
/// for their own connections, so a command never queues behind them.
#[derive(Debug, Clone)]
pub struct PgEventLog {
    pool: PgPool,
    readers: PgPool,
    /// Which server of the URL the pools use, and what it is.
    primary: Arc<Primary>,
}

impl PgEventLog {
    /// Connects a pool of `max_connections`, and a reader pool of as many; see
    /// [`PgEventLog::connect_with_readers`].
    pub async fn connect(
        url: &str,
        max_connections: u32,
        idle_in_transaction_timeout: Duration,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::connect_with_readers(url, max_connections, max_connections, idle_in_transaction_timeout, acquire_timeout)
            .await
    }

    /// Connects a pool of `max_connections` and one of `readers` read-only sessions (both opened
    /// as they are needed) on the primary among the servers `url` names (see
    /// [`crate::servers`]; a URL may list several, as libpq's do). Every session gets
    /// `idle_in_transaction_session_timeout`, so an abandoned transaction cannot hold back the
    /// gap-safe readers for long. A connection to a server that refuses writes is never used
    /// (see [`crate::primary`]); a node can start while no server takes writes, and is not ready
    /// until one does.
    pub async fn connect_with_readers(
        url: &str,
        max_connections: u32,
        readers: u32,
        idle_in_transaction_timeout: Duration,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let servers = crate::servers::parse(url)?;
        let primary = Primary::locate(servers, idle_in_transaction_timeout).await?;
        let pool = Self::pool_of(&primary, Purpose::Writes, max_connections, acquire_timeout);
        // A write through the reader pool is a bug, and the server says so at once.
        let readers = Self::pool_of(&primary, Purpose::Reads, readers, acquire_timeout);
        primary.spawn_watcher(&pool, &readers);
        Ok(Self { pool, readers, primary })
    }

    fn pool_of(primary: &Arc<Primary>, purpose: Purpose, size: u32, acquire_timeout: Duration) -> PgPool {
        let (opened, acquired) = (Arc::downgrade(primary), Arc::downgrade(primary));
        PgPoolOptions::new()
            .max_connections(size.max(1))
            .acquire_timeout(acquire_timeout)
            .after_connect(move |connection, _| {
                let primary = opened.upgrade();
                Box::pin(async move {
                    match primary {
                        Some(primary) => primary.check_new(connection, purpose).await,
                        None => Ok(()),
                    }
                })
            })
            .before_acquire(move |_, meta| {
                let keeps = acquired.upgrade().is_none_or(|primary| primary.keeps(meta.age));
                Box::pin(async move { Ok(keeps) })
            })
            .connect_lazy_with(primary.options_for(purpose))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The role of the server the commands' connections use, as the watcher last saw it
    /// (within about a second); `None` when it could not be reached.
    pub fn role(&self) -> Option<crate::DatabaseRole> {
        self.primary.role()
    }

    /// A connection for a write, or why there is none (see [`StoreError::NotPrimary`]).
    pub(crate) async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, StoreError> {
        self.primary.refuse_unless_primary()?;
        self.pool.acquire().await.map_err(|e| self.primary.explain(e))
    }

    /// The pool of read-only sessions.
    pub fn readers(&self) -> &PgPool {
        &self.readers
    }

    /// This log with every statement on the reader pool: what a read request is given, so
    /// that it can only read, and only ever waits for a reader's connection.
    pub fn reads_only(&self) -> Self {
        Self { pool: self.readers.clone(), readers: self.readers.clone(), primary: self.primary.clone() }
    }

    /// Applies the pending migrations in one transaction, under an advisory lock.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK_KEY).execute(&mut *tx).await?;
        sqlx::raw_sql(migrate::CREATE_MIGRATIONS_TABLE).execute(&mut *tx).await?;
        let applied: Vec<(i64, String)> = sqlx::query_as(migrate::APPLIED).fetch_all(&mut *tx).await?;
        let mut report = MigrationReport {
            already_applied: applied.iter().map(|(v, _)| *v).collect(),
            ..MigrationReport::default()
        };
        for migration in migrate::pending(migrate::POSTGRES, &applied)? {
            sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO ledger_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, now()::text)",
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
    async fn hash_existing_events(tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
        let mut chain = crate::types::Rechain::default();
        let mut after = (String::new(), 0i64);
        loop {
            let rows = sqlx::query(texts::READ_BY_STREAM.postgres())
                .bind(&after.0)
                .bind(after.1)
                .bind(crate::types::HASHING_PAGE)
                .fetch_all(&mut **tx)
                .await?;
            let events: Vec<RecordedEvent> = rows.iter().map(event_from_row).collect::<Result<_, _>>()?;
            let Some(last) = events.last() else { break };
            after = (last.stream_id.as_str().to_owned(), last.version);
            let hashes: Vec<Vec<u8>> = events.iter().map(|event| chain.next(event).to_vec()).collect();
            sqlx::query(
                "UPDATE ledger_events e SET hash = u.hash FROM unnest($1::bigint[], $2::bytea[]) AS u(position, hash)
                 WHERE e.global_position = u.position",
            )
            .bind(events.iter().map(|e| e.global_position).collect::<Vec<_>>())
            .bind(&hashes)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query(
            "UPDATE ledger_streams s SET head = e.hash FROM ledger_events e
             WHERE e.stream_id = s.stream_id AND e.version = s.version",
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The number of migrations this build knows that the database lacks.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('ledger_migrations') IS NOT NULL").fetch_one(&self.pool).await?;
        if !exists {
            return Ok(migrate::POSTGRES.len());
        }
        let applied: Vec<(i64, String)> = sqlx::query_as(migrate::APPLIED).fetch_all(&self.pool).await?;
        Ok(migrate::pending(migrate::POSTGRES, &applied)?.len())
    }

    /// The streams that moved after `after` in the feed's order, committed ones only but
    /// without the feed's gap-safe bound (see `AnyEventLog::streams_moved_after_in`).
    pub async fn streams_moved_after_in(
        tx: &mut Transaction<'static, Postgres>,
        after: Checkpoint,
    ) -> Result<Vec<MovedStream>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT stream_id, count(*), max(version) FROM ledger_events
             WHERE (transaction_id, global_position) > ((($1::bigint)::text)::xid8, $2)
             GROUP BY stream_id",
        )
        .bind(after.transaction_id)
        .bind(after.position)
        .fetch_all(&mut **tx)
        .await?;
        rows.into_iter().map(MovedStream::from_row).collect()
    }

    /// Appends to several streams in one statement, in `tx`; see [`StreamAppendOutcome`].
    pub async fn append_many_in(
        tx: &mut Transaction<'static, Postgres>,
        parts: &[impl AsRef<StreamAppend> + Sync],
    ) -> Result<Vec<StreamAppendOutcome>, StoreError> {
        Self::append_group(tx, parts, Vec::new()).await
    }

    /// Appends to several streams, and checks the version of parts without events, in one
    /// statement with `riders` (see [`Rider`]) on `executor`: in a transaction, or on a
    /// connection where the statement commits on its own, whole or not at all. Each stream is
    /// bumped only at its expected version and if no guard vetoes it; only bumped streams get
    /// events. Streams are independent: one's conflict does not stop the others.
    pub async fn append_group(
        connection: &mut sqlx::PgConnection,
        parts: &[impl AsRef<StreamAppend> + Sync],
        riders: Vec<Rider<'_>>,
    ) -> Result<Vec<StreamAppendOutcome>, StoreError> {
        // Versions are checked, and events inserted, per stream: a stream named twice would
        // have the second part's events written under the first part's check.
        crate::types::one_part_per_stream(parts)?;
        // The heads the writers did not give are read (one round trip, for all of them); a
        // head read here of a stream that moves before the statement fails its check there.
        let unknown: Vec<(&str, Version)> = parts
            .iter()
            .map(AsRef::as_ref)
            .filter(|part| part.chain.is_none() && part.expected > 0)
            .map(|part| (part.stream.as_str(), part.expected))
            .collect();
        let mut read =
            if unknown.is_empty() { Vec::new() } else { Self::heads_in(&mut *connection, &unknown).await? }.into_iter();
        let (mut expected_heads, mut heads, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        let mut streams = Vec::new();
        let (mut expected, mut new_version) = (Vec::new(), Vec::new());
        let mut e_stream = Vec::new();
        let mut e_version = Vec::new();
        let mut all_events: Vec<&NewEvent> = Vec::new();
        let (mut used_stream, mut used_key) = (Vec::new(), Vec::new());
        let (mut k_stream, mut k_key, mut k_first, mut k_last) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut k_at = Vec::new();
        for part in parts {
            let part = part.as_ref();
            streams.push(part.stream.as_str());
            expected.push(part.expected);
            new_version.push(part.expected + part.events.len() as Version);
            let read_head = match part.chain {
                None if part.expected > 0 => read.next().unwrap_or(crate::GENESIS),
                _ => crate::GENESIS,
            };
            let (expected_head, chained) = part.chained_on(&read_head);
            expected_heads.push(expected_head.to_vec());
            heads.push(chained.last().copied().unwrap_or(expected_head).to_vec());
            hashes.extend(chained.iter().map(|h| h.to_vec()));
            for (offset, event) in part.events.iter().enumerate() {
                e_stream.push(part.stream.as_str());
                e_version.push(part.expected + 1 + offset as Version);
                all_events.push(event);
            }
            for key in idempotency_keys(&part.stream, &part.events, part.expected)? {
                used_stream.push(part.stream.as_str());
                used_key.push(key.key.clone());
                k_stream.push(part.stream.as_str());
                k_key.push(key.key);
                k_first.push(key.version);
                k_last.push(key.version);
                k_at.push(key.at);
            }
        }
        let sql = append_many_sql(&riders);
        let mut query = sqlx::query(&sql)
            .bind(&streams)
            .bind(&expected)
            .bind(&new_version)
            .bind(&e_stream)
            .bind(all_events.iter().map(|e| e.event_id).collect::<Vec<_>>())
            .bind(&e_version)
            .bind(all_events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
            .bind(all_events.iter().map(|e| e.schema_version).collect::<Vec<_>>())
            .bind(all_events.iter().map(|e| Json(&e.data)).collect::<Vec<_>>())
            .bind(all_events.iter().map(|e| e.correlation_id.as_str()).collect::<Vec<_>>())
            .bind(all_events.iter().map(|e| e.causation_id.as_deref()).collect::<Vec<_>>())
            .bind(all_events.iter().map(|e| e.idempotency_key.as_ref().map(|k| k.key.as_str())).collect::<Vec<_>>())
            .bind(all_events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
            .bind(all_events.iter().map(|e| e.catalog_fingerprint.as_str()).collect::<Vec<_>>())
            .bind(&used_stream)
            .bind(&used_key)
            .bind(all_events.iter().map(|e| crate::truncate_to_micros(e.recorded_at)).collect::<Vec<_>>())
            .bind(&k_stream)
            .bind(&k_key)
            .bind(&k_first)
            .bind(&k_last)
            .bind(&k_at)
            .bind(&expected_heads)
            .bind(&heads)
            .bind(&hashes);
        for rider in riders {
            query = (rider.bind)(query);
        }
        let rows: Vec<(String, i64, i64, i64, i16)> =
            query.try_map(|row: PgRow| sqlx::FromRow::from_row(&row)).fetch_all(&mut *connection).await?;
        let mut positions: std::collections::HashMap<&str, Vec<(i64, Checkpoint)>> = std::collections::HashMap::new();
        let mut duplicates = std::collections::HashSet::new();
        let mut checked = std::collections::HashSet::new();
        for (stream, version, position, transaction_id, kind) in &rows {
            match kind {
                0 => positions
                    .entry(stream.as_str())
                    .or_default()
                    .push((*version, Checkpoint { transaction_id: *transaction_id, position: *position })),
                1 => {
                    duplicates.insert(stream.as_str());
                }
                _ => {
                    checked.insert(stream.as_str());
                }
            }
        }
        Ok(parts
            .iter()
            .map(AsRef::as_ref)
            .map(|part| match positions.get_mut(part.stream.as_str()) {
                _ if part.events.is_empty() && checked.contains(part.stream.as_str()) => {
                    StreamAppendOutcome::Checked { version: part.expected }
                }
                Some(found) if found.len() == part.events.len() && !part.events.is_empty() => {
                    found.sort_unstable_by_key(|(version, _)| *version);
                    StreamAppendOutcome::Appended {
                        new_version: part.expected + part.events.len() as Version,
                        positions: found.iter().map(|(_, checkpoint)| *checkpoint).collect(),
                    }
                }
                _ if duplicates.contains(part.stream.as_str()) => StreamAppendOutcome::Duplicate,
                _ => StreamAppendOutcome::Conflict,
            })
            .collect())
    }

    /// The chain hash of each stream's event at the given version, in their order; the genesis
    /// hash for version 0, or for a stream no longer (or not yet) at that version, whose append
    /// will then fail its check.
    async fn heads_in(connection: &mut sqlx::PgConnection, at: &[(&str, Version)]) -> Result<Vec<Hash>, StoreError> {
        let streams: Vec<&str> = at.iter().map(|(stream, _)| *stream).collect();
        let rows: Vec<(String, i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT stream_id, version, head FROM ledger_streams WHERE stream_id = ANY($1::text[])")
                .bind(&streams)
                .fetch_all(connection)
                .await?;
        at.iter()
            .map(|(stream, version)| match rows.iter().find(|(s, v, _)| s == stream && v == version) {
                Some((_, _, head)) => hash_of(head.as_deref()),
                None => Ok(crate::GENESIS),
            })
            .collect()
    }

    async fn read_range_in(
        tx: &mut Transaction<'static, Postgres>,
        stream: &StreamId,
        first: Version,
        last: Version,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(texts::READ_RANGE.postgres())
            .bind(stream.as_str())
            .bind(first)
            .bind(last)
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}

/// A page of events after `after` in the global order (transaction, position).
async fn feed_page<'c>(
    executor: impl sqlx::Executor<'c, Database = Postgres>,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    // Sequence numbers are taken before commit, so a later position may commit first.
    // Reading only transactions older than the oldest running one (the snapshot's xmin)
    // and ordering by transaction makes the order final: nothing can appear behind it.
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM ledger_events
         WHERE (transaction_id, global_position) > ((($1::bigint)::text)::xid8, $2)
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY ledger_events.transaction_id, ledger_events.global_position
         LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit.clamp(0, MAX_READ_LIMIT))
        .fetch_all(executor)
        .await?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let stream_id: String = row.try_get("stream_id")?;
    let global_position: i64 = row.try_get("global_position")?;
    let Json(data) = row.try_get::<Json<serde_json::Value>, _>("data")?;
    Ok(RecordedEvent {
        event_id: row.try_get("event_id")?,
        stream_id: StreamId::parse(stream_id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        version: row.try_get("version")?,
        global_position,
        checkpoint: Checkpoint { transaction_id: row.try_get("transaction_id")?, position: global_position },
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        data,
        correlation_id: row.try_get("correlation_id")?,
        causation_id: row.try_get("causation_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        actor: row.try_get("actor")?,
        catalog_fingerprint: row.try_get("catalog_fingerprint")?,
        recorded_at: row.try_get("recorded_at")?,
        hash: hash_of(row.try_get::<Option<Vec<u8>>, _>("hash")?.as_deref())?,
    })
}

impl EventLog for PgEventLog {
    type Tx = Transaction<'static, Postgres>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        self.primary.refuse_unless_primary()?;
        self.pool.begin().await.map_err(|e| self.primary.explain(e))
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
        let new_version = expected + events.len() as Version;
        let keys = idempotency_keys(stream, events, expected)?;
        let expected_head = Self::heads_in(tx, std::slice::from_ref(&(stream.as_str(), expected)))
            .await?
            .pop()
            .unwrap_or(crate::GENESIS);
        let hashes = crate::types::chain_hashes(stream, expected, &expected_head, events);
        let bump = if expected == 0 { BUMP_NEW_STREAM } else { BUMP_EXISTING_STREAM };
        let sql = format!("{bump}\n{INSERT_FROM_BUMP}");
        let rows: Vec<(i64, i64)> = sqlx::query_as(&sql)
            .bind(stream.as_str())
            .bind(expected)
            .bind(new_version)
            .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
            .bind((expected + 1..=new_version).collect::<Vec<Version>>())
            .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.schema_version).collect::<Vec<_>>())
            .bind(events.iter().map(|e| Json(&e.data)).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.correlation_id.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.causation_id.as_deref()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.idempotency_key.as_ref().map(|k| k.key.as_str())).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.catalog_fingerprint.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| crate::truncate_to_micros(e.recorded_at)).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.key.as_str()).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.version).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.version).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.at).collect::<Vec<_>>())
            .bind(hashes.last().map(|h| h.as_slice()))
            .bind(expected_head.as_slice())
            .bind(hashes.iter().map(|h| h.as_slice()).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| crate::error::classify_write_error(e, stream))?;

        if rows.len() == events.len() {
            let positions: Vec<(i64, Checkpoint)> = rows
                .into_iter()
                .map(|(position, transaction_id)| (position, Checkpoint { transaction_id, position }))
                .collect();
            return Ok(AppendOutcome::Appended {
                new_version,
                events: recorded(stream, expected, events, &positions, &hashes),
            });
        }

        // Nothing was written: either a key of the batch was used before, or the version moved.
        let key_names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        let used: Option<(i64, i64)> = sqlx::query_as(
            "SELECT first_version, last_version FROM ledger_idempotency_keys
             WHERE stream_id = $1 AND idempotency_key = ANY($2::text[])
             ORDER BY array_position($2::text[], idempotency_key) LIMIT 1",
        )
        .bind(stream.as_str())
        .bind(&key_names)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((first, last)) = used {
            let events = Self::read_range_in(tx, stream, first, last).await?;
            return Ok(AppendOutcome::Duplicate { events });
        }
        let actual: Option<i64> = sqlx::query_scalar(texts::STREAM_VERSION.postgres())
            .bind(stream.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        Err(StoreError::Conflict { stream: stream.clone(), expected, actual: actual.unwrap_or(0) })
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let version: Option<i64> = sqlx::query_scalar(texts::STREAM_VERSION.postgres())
            .bind(stream.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(version.unwrap_or(0))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: Version,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(texts::READ_STREAM.postgres())
            .bind(stream.as_str())
            .bind(from_version)
            .bind(limit.clamp(0, MAX_READ_LIMIT))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_by_stream(
        &self,
        after: Option<(&StreamId, Version)>,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (stream, version) = after.map_or(("", 0), |(stream, version)| (stream.as_str(), version));
        let rows = sqlx::query(texts::READ_BY_STREAM.postgres())
            .bind(stream)
            .bind(version)
            .bind(limit.clamp(0, MAX_READ_LIMIT))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_event(&self, event_id: uuid::Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(texts::READ_EVENT.postgres()).bind(event_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn read_all(&self, after: Checkpoint, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        feed_page(&self.pool, after, limit).await
    }

    async fn load_checkpoint(&self, consumer: &str) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as(texts::LOAD_CHECKPOINT.postgres()).bind(consumer).fetch_optional(&self.pool).await?;
        Ok(row.map_or(Checkpoint::ORIGIN, |(transaction_id, position)| Checkpoint { transaction_id, position }))
    }

    async fn compare_and_set_checkpoint_in(
        &self,
        tx: &mut Self::Tx,
        consumer: &str,
        expected: Checkpoint,
        new: Checkpoint,
    ) -> Result<(), StoreError> {
        let sql = if expected == Checkpoint::ORIGIN {
            "INSERT INTO ledger_checkpoints (consumer, transaction_id, position, updated_at)
             VALUES ($1, $4, $5, now())
             ON CONFLICT (consumer) DO UPDATE
                SET transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position, updated_at = now()
             WHERE ledger_checkpoints.transaction_id = $2 AND ledger_checkpoints.position = $3"
        } else {
            "UPDATE ledger_checkpoints SET transaction_id = $4, position = $5, updated_at = now()
             WHERE consumer = $1 AND transaction_id = $2 AND position = $3"
        };
        let done = sqlx::query(sql)
            .bind(consumer)
            .bind(expected.transaction_id)
            .bind(expected.position)
            .bind(new.transaction_id)
            .bind(new.position)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let actual: Option<(i64, i64)> =
            sqlx::query_as(texts::LOAD_CHECKPOINT.postgres()).bind(consumer).fetch_optional(&mut **tx).await?;
        Err(StoreError::CheckpointMoved {
            consumer: consumer.to_owned(),
            expected,
            actual: actual
                .map_or(Checkpoint::ORIGIN, |(transaction_id, position)| Checkpoint { transaction_id, position }),
        })
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        sqlx::query(texts::SAVE_SNAPSHOT.postgres())
            .bind(snapshot.stream_id.as_str())
            .bind(snapshot.version)
            .bind(Json(&snapshot.state))
            .bind(&snapshot.fold_fingerprint)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<(i64, Json<serde_json::Value>, String)> =
            sqlx::query_as(texts::LOAD_SNAPSHOT.postgres()).bind(stream.as_str()).fetch_optional(&self.pool).await?;
        Ok(row.map(|(version, Json(state), fold_fingerprint)| Snapshot {
            stream_id: stream.clone(),
            version,
            state,
            fold_fingerprint,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated test database and one connection of it, to ask the planner with.
    async fn planner(test: &str) -> Option<(planledger_testkit::PgTestDatabase, sqlx::pool::PoolConnection<Postgres>)> {
        let db = planledger_testkit::PgTestDatabase::create(test).await?;
        let log = PgEventLog::connect(&db.url, 2, Duration::from_secs(10), Duration::from_secs(10))
            .await
            .expect("connect postgres");
        log.migrate().await.expect("migrate");
        let conn = log.pool().acquire().await.expect("connection");
        Some((db, conn))
    }

    /// A rider's parameters follow the append's and the riders' before it; nothing else in its
    /// text changes.
    #[test]
    fn riders_are_numbered_after_the_append_and_each_other() {
        assert_eq!(
            renumber("a AS (SELECT $1::text[], $2, $10 FROM t WHERE x = $2)", 22),
            "a AS (SELECT $23::text[], $24, $32 FROM t WHERE x = $24)"
        );
        assert_eq!(renumber("no parameters, a $ sign", 5), "no parameters, a $ sign");
        let rider = |name: &str, vetoes| Rider {
            sql: format!("{name} AS (SELECT $1::text AS stream_id, $2::int)"),
            vetoes,
            params: 2,
            bind: Box::new(|query| query),
        };
        let sql = append_many_sql(&[rider("first", Some("first")), rider("second", None)]);
        assert!(sql.contains("first AS (SELECT $26::text AS stream_id, $27::int)"), "{sql}");
        assert!(sql.contains("second AS (SELECT $28::text AS stream_id, $29::int)"), "{sql}");
        assert!(sql.find("first AS").unwrap() < sql.find("used AS").unwrap(), "a guard comes before what it guards");
        assert!(sql.contains("UNION SELECT stream_id FROM first"), "its streams are not written");
        assert!(sql.find("second AS").unwrap() > sql.find("keys AS").unwrap(), "a follower comes after the append");
        assert!(!sql.contains("FROM second"), "a follower vetoes nothing");
    }

    /// A pooled connection keeps a prepared statement's generic plan for as long as it lives,
    /// and that plan is made from what the planner knew of the tables then: on a young log,
    /// nothing. Forced generic on empty tables, the group commit's append must still find each
    /// stream row and each key by its primary key, never by reading the table (an earlier plan
    /// hashed the keys and scanned the whole key table on every append).
    #[tokio::test]
    async fn the_group_append_finds_rows_by_key_even_in_a_plan_made_on_empty_tables() {
        let Some((_db, mut conn)) = planner("append_many_plan").await else { return };
        sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await.expect("generic plans");
        let sql = append_many_sql(&[]);
        sqlx::raw_sql(&format!("PREPARE append_many AS {sql}")).execute(&mut *conn).await.expect("prepare");
        let nulls = vec!["NULL"; APPEND_MANY_PARAMS].join(", ");
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE append_many({nulls})"))
            .fetch_all(&mut *conn)
            .await
            .expect("explain");
        let plan = plan.join("\n");
        for table in ["ledger_streams", "ledger_idempotency_keys"] {
            assert!(!plan.contains(&format!("Seq Scan on {table}")), "{table} is read whole:\n{plan}");
        }
        assert!(plan.contains("ledger_idempotency_keys_pkey"), "keys are looked up by key:\n{plan}");
    }

    /// The head of the log is found at the end of the feed's index, never by sorting the log.
    #[tokio::test]
    async fn the_log_head_is_read_from_the_end_of_its_index() {
        let Some((_db, mut conn)) = planner("log_head_plan").await else { return };
        // A small table would be read whole whatever the query says: ask for the index's plan.
        sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.expect("no sequential scans");
        for sql in [SETTLED_HEAD, LOG_HEAD_AND_NEXT_TRANSACTION] {
            let plan: Vec<String> =
                sqlx::query_scalar(&format!("EXPLAIN {sql}")).fetch_all(&mut *conn).await.expect("explain");
            let plan = plan.join("\n");
            assert!(!plan.contains("Sort"), "the log is sorted to find its head:\n{plan}");
            assert!(plan.contains("Scan Backward using ledger_events_global_order"), "{plan}");
        }
    }
}
