//! The locks the ledger takes besides the version check, and the schema work of read models.
//!
//! The version check is the only lock on the command path. Elsewhere a few things must happen
//! once at a time, and each has its lock here (ARCHITECTURE.md lists them and why):
//!
//! - [`Leadership`]: one instance of a background worker (a projector) across nodes, a session
//!   advisory lock on a connection of its own on PostgreSQL; it goes with the connection, so a
//!   dead node's lock is released by the server. SQLite serves one process: always held.
//! - [`TableLock`]: a read model's blue/green swap keeps writers (or everyone) off the live
//!   table until it commits, so that the last catch-up sees every commit. SQLite's one writer
//!   already excludes every other.
//!
//! A crate that owns a read model gives its DDL for both backends ([`PerBackend`]); the store
//! runs the one its database needs.

use sqlx::{Connection, Executor};

use crate::{AnyEventLog, AnyTx, StoreError};

/// One value per backend, of which the store takes the one its database needs: what a crate
/// declares when the text itself must differ (DDL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerBackend<T> {
    pub postgres: T,
    pub sqlite: T,
}

impl AnyEventLog {
    /// This database's one of `choices`.
    pub fn pick<T>(&self, choices: PerBackend<T>) -> T {
        match self {
            AnyEventLog::Postgres(_) => choices.postgres,
            AnyEventLog::Sqlite(_) => choices.sqlite,
        }
    }

    /// Whether a table named `table` exists.
    pub async fn table_exists(&self, table: &str) -> Result<bool, StoreError> {
        Ok(match self {
            AnyEventLog::Postgres(pg) => {
                sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(pg.pool()).await?
            }
            AnyEventLog::Sqlite(lite) => {
                sqlx::query_scalar("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?")
                    .bind(table)
                    .fetch_one(lite.readers())
                    .await?
            }
        })
    }

    /// Whether `table` has `column` and refuses rows without it.
    pub async fn column_is_required(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        Ok(match self {
            AnyEventLog::Postgres(pg) => {
                sqlx::query_scalar(
                    "SELECT count(*) > 0 FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2 AND is_nullable = 'NO'",
                )
                .bind(table)
                .bind(column)
                .fetch_one(pg.pool())
                .await?
            }
            AnyEventLog::Sqlite(lite) => {
                sqlx::query_scalar("SELECT count(*) > 0 FROM pragma_table_info(?) WHERE name = ? AND \"notnull\" = 1")
                    .bind(table)
                    .bind(column)
                    .fetch_one(lite.readers())
                    .await?
            }
        })
    }

    /// Tries to become the one instance of the worker `name` across nodes; `None` if another
    /// instance is it.
    pub async fn try_lead(&self, name: &str) -> Result<Option<Leadership>, StoreError> {
        match self {
            AnyEventLog::Postgres(pg) => {
                let mut conn = pg.pool().acquire().await?.detach();
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(lock_key(name))
                    .fetch_one(&mut conn)
                    .await?;
                if got {
                    Ok(Some(Leadership(Some(conn))))
                } else {
                    let _ = conn.close().await;
                    Ok(None)
                }
            }
            // SQLite serves one node; the checkpoint's compare-and-set guards the rest.
            AnyEventLog::Sqlite(_) => Ok(Some(Leadership(None))),
        }
    }
}

/// A stable 64-bit advisory lock key per worker name (FNV-1a).
fn lock_key(name: &str) -> i64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) as i64
}

/// Being the one instance of a worker, for as long as this lives (see [`AnyEventLog::try_lead`]).
#[derive(Debug)]
pub struct Leadership(Option<sqlx::PgConnection>);

impl Leadership {
    /// Whether the lock is still held: its connection is alive.
    pub async fn still_held(&mut self) -> bool {
        match &mut self.0 {
            Some(conn) => conn.ping().await.is_ok(),
            None => true,
        }
    }
}

/// Whom a swap keeps off a live table until its transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableLock {
    /// Writers wait; reads go on.
    Writers,
    /// Everyone waits (the table is about to be replaced under its readers' checkpoint).
    Everyone,
}

impl AnyTx {
    /// Keeps `who` off `table` until this transaction ends. Every writer of the table has
    /// committed once it is granted.
    pub async fn lock_table(&mut self, table: &str, who: TableLock) -> Result<(), StoreError> {
        if let AnyTx::Postgres(tx) = self {
            let mode = match who {
                TableLock::Writers => "EXCLUSIVE",
                TableLock::Everyone => "ACCESS EXCLUSIVE",
            };
            sqlx::query(&format!("LOCK TABLE {table} IN {mode} MODE")).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Gives this transaction's index builds memory to sort in (PostgreSQL's default 64 MB
    /// spills a large log to disk).
    pub async fn prepare_index_builds(&mut self) -> Result<(), StoreError> {
        if let AnyTx::Postgres(tx) = self {
            sqlx::query("SET LOCAL maintenance_work_mem = '256MB'").execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Runs DDL (several statements) in this transaction.
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        // A plain string runs unprepared, so several statements may go in one call. (sqlx's
        // `raw_sql` would do the same, but its future is not `Send` inside generic callers.)
        match self {
            AnyTx::Postgres(tx) => {
                (&mut **tx).execute(sql).await?;
            }
            AnyTx::Sqlite(tx) => {
                (&mut **tx).execute(sql).await?;
            }
        }
        Ok(())
    }
}
