//! The projector runtime: asynchronous projectors that follow the gap-safe global log.
//!
//! A projector reads a page after its checkpoint, writes its rows and moves its checkpoint
//! (compare-and-set) in one transaction, so a crash never applies an event twice or skips one.
//! On PostgreSQL one instance per projector is active across nodes: the holder of a session
//! advisory lock on a dedicated connection. When that node dies its connection closes, the lock
//! is released, and a standby takes over. The compare-and-set keeps even a split brain exact.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use planledger_store::{AnyEventLog, Checkpoint, EventLog, StoreError};
use tokio::sync::watch;

use crate::audit;

/// The checkpoint name of the audit projector.
pub const AUDIT_CONSUMER: &str = "audit_log";

const PAGE: i64 = 1000;

/// What a running projector (or another leader-elected worker) reports.
#[derive(Debug, Default)]
pub struct ProjectorState {
    /// Whether this node holds the worker's lock.
    pub leader: AtomicBool,
    /// Items (events) this node has processed.
    pub projected: AtomicU64,
}

/// One step: projects up to a page of events after the checkpoint. Returns how many.
pub async fn project_audit_page(log: &AnyEventLog) -> Result<usize, StoreError> {
    let checkpoint = log.load_checkpoint(AUDIT_CONSUMER).await?;
    let mut tx = log.begin().await?;
    let Some((last, count)) = audit::copy_from_log_in(&mut tx, audit::LIVE, checkpoint, PAGE).await? else {
        return Ok(0);
    };
    match log.compare_and_set_checkpoint_in(&mut tx, AUDIT_CONSUMER, checkpoint, last).await {
        Ok(()) => {}
        // Another instance, or a rebuild's swap, moved the checkpoint: drop this page.
        Err(StoreError::CheckpointMoved { .. }) => return Ok(0),
        Err(e) => return Err(e),
    }
    log.commit(tx).await?;
    Ok(count as usize)
}

/// Runs the audit projector until `stop` turns true: standby until it holds the lock, then
/// follows the log.
pub async fn run_audit_projector(log: AnyEventLog, state: Arc<ProjectorState>, stop: watch::Receiver<bool>) {
    let step_log = log.clone();
    run_as_leader(&log, AUDIT_CONSUMER, state, stop, move || {
        let log = step_log.clone();
        async move { project_audit_page(&log).await }
    })
    .await;
}

/// Runs `step` over and over on the one node that holds `name`'s lock (on PostgreSQL a session
/// advisory lock on a dedicated connection; SQLite serves one node), until `stop` turns true;
/// other nodes stand by and take over when the holder's connection goes. `step` answers how
/// much it did; nothing done, the loop rests a moment; a failure is logged and retried.
pub async fn run_as_leader<F, Fut>(
    log: &AnyEventLog,
    name: &str,
    state: Arc<ProjectorState>,
    mut stop: watch::Receiver<bool>,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, StoreError>>,
{
    let idle = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut leadership = match log.try_lead(name).await {
            Ok(Some(leadership)) => leadership,
            Ok(None) | Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        state.leader.store(true, Ordering::Relaxed);
        let mut checked = Instant::now();
        loop {
            if *stop.borrow() {
                state.leader.store(false, Ordering::Relaxed);
                return;
            }
            if checked.elapsed() > Duration::from_secs(1) {
                checked = Instant::now();
                if !leadership.still_held().await {
                    break;
                }
            }
            match step().await {
                Ok(0) => {
                    tokio::select! {
                        _ = tokio::time::sleep(idle) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(n) => {
                    state.projected.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, worker = name, "background step failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        state.leader.store(false, Ordering::Relaxed);
    }
}

/// How far a projector is behind the head of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub checkpoint: Checkpoint,
    pub events: i64,
    pub seconds: f64,
}

pub async fn audit_lag(log: &AnyEventLog, now: chrono::DateTime<chrono::Utc>) -> Result<Lag, StoreError> {
    let checkpoint = log.load_checkpoint(AUDIT_CONSUMER).await?;
    let (events, oldest) = log.lag_after(checkpoint).await?;
    let seconds = oldest.map_or(0.0, |t| ((now - t).num_milliseconds().max(0) as f64) / 1000.0);
    Ok(Lag { checkpoint, events, seconds })
}

/// How far the background work of the ledger is behind, read without counting a backlog: each
/// figure is one index probe, so a readiness probe can ask on every call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// How long ago the oldest event the audit projector has not projected was recorded.
    pub audit_behind: Option<chrono::TimeDelta>,
    /// How long ago the earliest deadline the deadline worker has not applied fell due.
    pub deadline_overdue: Option<chrono::TimeDelta>,
}

pub async fn backlog(log: &AnyEventLog, now: chrono::DateTime<chrono::Utc>) -> Result<Backlog, StoreError> {
    let checkpoint = log.load_checkpoint(AUDIT_CONSUMER).await?;
    let oldest = log.oldest_after(checkpoint).await?;
    let earliest = crate::tenant_state::earliest_deadline(log).await?;
    let past = |t: chrono::DateTime<chrono::Utc>| (t < now).then(|| now - t);
    Ok(Backlog { audit_behind: oldest.and_then(past), deadline_overdue: earliest.and_then(past) })
}
