//! One rebuild of a read model at a time, across every node: a claim in the database.
//!
//! Two rebuilds of one model would pick the same next generation, and one would drop the
//! other's half-built table (or swap in a copy missing what the other caught up). So a rebuild
//! first claims its model: a row in `rebuild_claims`, renewed while it runs. A claim that is not
//! renewed for [`LEASE`] lapses (its node died) and may be taken over. The swap renews the
//! claim in its own transaction and refuses to commit if it was lost: a rebuild that was paused
//! past its lease and overtaken can never swap (the claim is its fencing token).
//!
//! The database's clock decides expiry, so nodes with skewed clocks agree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use planledger_store::{AnyEventLog, AnyTx, Kind, Statement, StoreError};

use crate::schema::ReadModel;

/// How long a claim lives without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a running rebuild renews its claim.
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Who holds a claim: enough for an operator to find the process.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host} pid {} ({})", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// A rebuild's claim on its model. Renewed in the background until released or dropped.
#[derive(Debug)]
pub struct RebuildClaim {
    log: AnyEventLog,
    model: ReadModel,
    holder: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

/// What trying to claim a model found.
#[derive(Debug)]
pub enum Claim {
    Claimed(RebuildClaim),
    /// Someone else is rebuilding the model.
    HeldBy {
        holder: String,
        since: DateTime<Utc>,
    },
}

/// Claims `model` unless a live claim of someone else holds it.
pub async fn try_claim(log: &AnyEventLog, model: ReadModel) -> Result<Claim, StoreError> {
    let holder = holder_name();
    let lease = LEASE.as_secs() as i64;
    let statement = Statement::new(
        "INSERT INTO rebuild_claims (model, holder, @claimed_at, @renewed_at) VALUES ($1, $2, now(), now())
         ON CONFLICT (model) DO UPDATE SET holder = EXCLUDED.holder, @claimed_at = EXCLUDED.@claimed_at,
            @renewed_at = EXCLUDED.@renewed_at
         WHERE rebuild_claims.@renewed_at < now() - seconds($3)
         RETURNING holder",
    )
    .bind(model.name())
    .bind(holder.as_str())
    .bind(lease);
    let taken = log.fetch_written(&statement, &[Kind::Text]).await?.pop();
    if taken.is_none() {
        let (holder, since) = current(log, model).await?.unwrap_or_else(|| ("(released just now)".into(), Utc::now()));
        return Ok(Claim::HeldBy { holder, since });
    }
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = tokio::spawn(renew_while_running(log.clone(), model, holder.clone(), lost.clone()));
    Ok(Claim::Claimed(RebuildClaim { log: log.clone(), model, holder, lost, renewer }))
}

/// Who holds `model`'s claim and since when, if anyone (lapsed claims included).
async fn current(log: &AnyEventLog, model: ReadModel) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
    let statement =
        Statement::new("SELECT holder, @claimed_at FROM rebuild_claims WHERE model = $1").bind(model.name());
    match log.fetch_optional(&statement, &[Kind::Text, Kind::Time]).await? {
        Some(row) => Ok(Some((row.text(0)?, row.time(1)?))),
        None => Ok(None),
    }
}

/// Renews the claim; `Ok(false)` if it is no longer ours.
async fn renew(tx: &mut AnyTx, model: ReadModel, holder: &str) -> Result<bool, StoreError> {
    let statement = Statement::new("UPDATE rebuild_claims SET @renewed_at = now() WHERE model = $1 AND holder = $2")
        .bind(model.name())
        .bind(holder);
    Ok(tx.execute(&statement).await? == 1)
}

async fn renew_while_running(log: AnyEventLog, model: ReadModel, holder: String, lost: Arc<AtomicBool>) {
    use planledger_store::EventLog;
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let renewed = async {
            let mut tx = log.begin().await?;
            let renewed = renew(&mut tx, model, &holder).await?;
            log.commit(tx).await?;
            Ok::<_, StoreError>(renewed)
        }
        .await;
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(model = model.name(), %holder, "the rebuild lost its claim; it will not swap");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            // A failed renewal is retried; the lease outlives several.
            Err(error) => tracing::warn!(model = model.name(), %error, "could not renew the rebuild's claim"),
        }
    }
}

impl RebuildClaim {
    /// Renews the claim inside the swap's transaction: the swap commits only if the claim is
    /// still this rebuild's when it does.
    pub async fn fence_in(&self, tx: &mut AnyTx) -> Result<bool, StoreError> {
        // A renewal task that saw the claim lost settles it; otherwise the database decides.
        Ok(!self.lost.load(Ordering::Relaxed) && renew(tx, self.model, &self.holder).await?)
    }

    /// Gives the claim up (a rebuild that dies without this leaves it to lapse).
    pub async fn release(self) -> Result<(), StoreError> {
        self.renewer.abort();
        let statement = Statement::new("DELETE FROM rebuild_claims WHERE model = $1 AND holder = $2")
            .bind(self.model.name())
            .bind(self.holder.as_str());
        self.log.execute(&statement).await?;
        Ok(())
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }
}

impl Drop for RebuildClaim {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
