//! Connections to the primary only, across a failover.
//!
//! Every pooled connection is checked when it is opened: one to a standby, or to a server whose
//! sessions refuse writes, is closed at once and never handed out (sqlx's `after_connect`). One
//! watcher per log asks the server in use (on an idle pooled connection, or one of its own when
//! none is idle), every second and whenever a new connection was refused, whether it still takes
//! writes. When it does not (or cannot be reached), the watcher tries each server of the URL in
//! order and moves both pools to the first primary; connections opened before the move, or
//! before the server stopped taking writes, are dropped when next acquired (`before_acquire`, a
//! clock comparison, no round trip).
//!
//! So a standby behind the address makes `/readyz` fail within about a second (the watcher's
//! role is what [`crate::AnyEventLog::database_role`] answers), writes are refused at once with
//! [`crate::StoreError::NotPrimary`] while no primary is known, and a promoted server named in a
//! multi-host URL takes the writes without a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::Connection;

use crate::servers::Server;
use crate::{DatabaseRole, StoreError};

/// How often the watcher asks the server in use whether it is still the primary.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long one probe of one server may take before it counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest time between two looks.
const NUDGED_AT_MOST_EVERY: Duration = Duration::from_millis(200);

const ROLE: &str = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'";

/// Which pool a connection is for: readers are read-only by design, so only recovery counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Writes,
    Reads,
}

/// The servers of one log and which of them its pools use.
#[derive(Debug)]
pub(crate) struct Primary {
    servers: Vec<Server>,
    /// Every session's `idle_in_transaction_session_timeout`, in milliseconds.
    idle_in_transaction_ms: String,
    state: Mutex<State>,
    nudge: tokio::sync::Notify,
    /// The reference for `dropped_before`.
    started: Instant,
    /// Connections opened before this (milliseconds after `started`) are dropped when acquired.
    dropped_before_ms: AtomicU64,
}

#[derive(Debug, Clone)]
struct State {
    current: usize,
    /// What the server in use answered last; `None` when it could not be asked.
    role: Option<DatabaseRole>,
}

fn role_of(recovering: bool, read_only: bool) -> DatabaseRole {
    if recovering {
        DatabaseRole::Standby
    } else if read_only {
        DatabaseRole::ReadOnly
    } else {
        DatabaseRole::Primary
    }
}

/// Whether the server of `connection` is in recovery, and whether its sessions refuse writes.
async fn ask_role(connection: &mut PgConnection) -> Result<(bool, bool), sqlx::Error> {
    sqlx::query_as(ROLE).fetch_one(connection).await
}

/// The role of the server `options` reach, on a connection of its own, closed after.
async fn probe(options: &PgConnectOptions) -> Result<DatabaseRole, StoreError> {
    let attempt = async {
        let mut connection = PgConnection::connect_with(options).await?;
        let (recovering, read_only) = ask_role(&mut connection).await?;
        let _ = connection.close().await;
        Ok::<_, sqlx::Error>(role_of(recovering, read_only))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
    }
}

/// A session of the ledger: named, so that an operator can tell its connections apart, and
/// bounded, so that an abandoned transaction cannot hold back the gap-safe readers for long.
fn session(options: PgConnectOptions, purpose: Purpose, idle_in_transaction_ms: &str) -> PgConnectOptions {
    let options = options.options([("idle_in_transaction_session_timeout", idle_in_transaction_ms)]);
    match purpose {
        Purpose::Writes => options.application_name("planledger"),
        // A write through the reader pool is a bug, and the server says so at once.
        Purpose::Reads => {
            options.application_name("planledger-reader").options([("default_transaction_read_only", "on")])
        }
    }
}

impl Primary {
    /// Finds the primary among `servers` (the first in order; the first reachable one if none
    /// is, so that a node can start, unready, while a failover is under way). Errs only when no
    /// server can be reached at all.
    pub(crate) async fn locate(
        servers: Vec<Server>,
        idle_in_transaction_timeout: Duration,
    ) -> Result<Arc<Self>, StoreError> {
        let idle_in_transaction_ms = idle_in_transaction_timeout.as_millis().to_string();
        let mut first_reachable = None;
        let mut last_error = None;
        for (index, server) in servers.iter().enumerate() {
            match probe(&session(server.options.clone(), Purpose::Writes, &idle_in_transaction_ms)).await {
                Ok(role) => {
                    if role == DatabaseRole::Primary {
                        first_reachable = Some((index, role));
                        break;
                    }
                    first_reachable.get_or_insert((index, role));
                }
                Err(error) => last_error = Some(error),
            }
        }
        let Some((current, role)) = first_reachable else {
            return Err(last_error.unwrap_or_else(|| StoreError::UnsupportedServerList("no hosts".into())));
        };
        if role != DatabaseRole::Primary {
            tracing::warn!(server = %servers[current].address, role = role.as_str(), "no server of the database URL takes writes: not ready until one does");
        }
        Ok(Arc::new(Self {
            servers,
            idle_in_transaction_ms,
            state: Mutex::new(State { current, role: Some(role) }),
            nudge: tokio::sync::Notify::new(),
            started: Instant::now(),
            dropped_before_ms: AtomicU64::new(0),
        }))
    }

    /// How each pool connects to the server in use.
    pub(crate) fn options_for(&self, purpose: Purpose) -> PgConnectOptions {
        self.options_of(self.state().current, purpose)
    }

    fn options_of(&self, server: usize, purpose: Purpose) -> PgConnectOptions {
        session(self.servers[server].options.clone(), purpose, &self.idle_in_transaction_ms)
    }

    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set_state(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    /// The role of the server in use, as last seen; `None` if it could not be reached.
    pub(crate) fn role(&self) -> Option<DatabaseRole> {
        self.state().role
    }

    /// The error a command gets when the pool could not give it a connection: the reason, if
    /// the server in use is known not to take writes.
    pub(crate) fn explain(&self, error: sqlx::Error) -> StoreError {
        match (self.state().role, &error) {
            (Some(role), sqlx::Error::PoolTimedOut) if role != DatabaseRole::Primary => self.not_primary(role),
            _ => StoreError::from(error),
        }
    }

    /// Refuses a write at once while the server in use is known not to take writes: waiting
    /// for the pool's timeout would only make every command of a failover take that long, and
    /// the watcher moves the pools as soon as a primary answers.
    pub(crate) fn refuse_unless_primary(&self) -> Result<(), StoreError> {
        match self.state().role {
            Some(role) if role != DatabaseRole::Primary => Err(self.not_primary(role)),
            _ => Ok(()),
        }
    }

    fn not_primary(&self, role: DatabaseRole) -> StoreError {
        StoreError::NotPrimary {
            role: role.as_str(),
            tried: self.servers.iter().map(|s| s.address.as_str()).collect::<Vec<_>>().join(", "),
        }
    }

    /// Checks a new connection: `Err` closes it (sqlx then tries again until its timeout).
    pub(crate) async fn check_new(&self, connection: &mut PgConnection, purpose: Purpose) -> Result<(), sqlx::Error> {
        let (recovering, read_only) = ask_role(connection).await?;
        let role = role_of(recovering, read_only && purpose == Purpose::Writes);
        if role == DatabaseRole::Primary {
            return Ok(());
        }
        self.set_state(|state| state.role = Some(role));
        self.nudge.notify_one();
        Err(sqlx::Error::Configuration(
            format!("the server is a {} and planledger connects only to a primary", role.as_str()).into(),
        ))
    }

    /// Whether a pooled connection of `age` may still be used (see `dropped_before_ms`).
    pub(crate) fn keeps(&self, age: Duration) -> bool {
        let opened = self.started.elapsed().saturating_sub(age);
        opened.as_millis() as u64 >= self.dropped_before_ms.load(Ordering::Relaxed)
    }

    fn drop_open_connections(&self) {
        self.dropped_before_ms.store(self.started.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
    }

    /// Watches the server in use for as long as the log exists (see the module's comment).
    pub(crate) fn spawn_watcher(self: &Arc<Self>, writers: &PgPool, readers: &PgPool) {
        let primary = Arc::downgrade(self);
        let (writers, readers) = (writers.clone(), readers.clone());
        tokio::spawn(async move {
            loop {
                let Some(watch) = primary.upgrade() else { return };
                tokio::select! {
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                    () = watch.nudge.notified() => {}
                }
                // The pools' hooks hold it weakly: this task alone keeps it, the log is gone.
                if Arc::strong_count(&watch) == 1 || writers.is_closed() {
                    return;
                }
                watch.check(&writers, &readers).await;
                drop(watch);
                // A refused connection nudges at each of sqlx's retries: one look in a while.
                tokio::time::sleep(NUDGED_AT_MOST_EVERY).await;
            }
        });
    }

    /// The role of the server in use: asked on an idle pooled connection (what commands use),
    /// or on a connection of its own when none is idle.
    async fn ask(&self, writers: &PgPool) -> Option<DatabaseRole> {
        if let Some(mut pooled) = writers.try_acquire() {
            if let Ok(Ok((recovering, read_only))) = tokio::time::timeout(PROBE_TIMEOUT, ask_role(&mut pooled)).await {
                return Some(role_of(recovering, read_only));
            }
            pooled.close_on_drop();
        }
        probe(&self.options_for(Purpose::Writes)).await.ok()
    }

    async fn check(&self, writers: &PgPool, readers: &PgPool) {
        let role = self.ask(writers).await;
        let before = self.state();
        if role == Some(DatabaseRole::Primary) {
            self.set_state(|state| state.role = role);
            return;
        }
        if let Some(role) = role {
            if before.role == Some(DatabaseRole::Primary) {
                tracing::warn!(server = %self.servers[before.current].address, role = role.as_str(), "the database stopped taking writes: its connections are dropped");
            }
            // Sessions that refuse writes (a fenced old primary, a reload that set
            // `default_transaction_read_only`) are of no use to commands.
            self.drop_open_connections();
        }
        // Another server may have been promoted: the first primary of the list wins.
        let mut found = None;
        for index in 0..self.servers.len() {
            if index == before.current {
                continue; // just asked
            }
            if let Ok(DatabaseRole::Primary) = probe(&self.options_of(index, Purpose::Writes)).await {
                found = Some(index);
                break;
            }
        }
        match found {
            Some(index) => {
                self.set_state(|state| {
                    state.current = index;
                    state.role = Some(DatabaseRole::Primary);
                });
                writers.set_connect_options(self.options_for(Purpose::Writes));
                readers.set_connect_options(self.options_for(Purpose::Reads));
                self.drop_open_connections();
                tracing::warn!(from = %self.servers[before.current].address, to = %self.servers[index].address, "the database's primary moved: connections follow it");
            }
            None => self.set_state(|state| state.role = role),
        }
    }
}
