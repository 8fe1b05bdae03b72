//! The committers: they write the batches of many stores' workers together, in the store's
//! group commit (`planledger_store::group`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use planledger_domain::{Catalogs, StoreId, TenantState};
use planledger_projections::tenant_state;
use planledger_store::{
    AnyEventLog, Group, GroupError, GroupOptions, GroupPart, PartFailure, StoreError, StreamAppend,
};
use tokio::sync::{mpsc, oneshot};

use crate::answers;
use crate::outcome::RenderedAnswer;
use crate::service::{IdempotencyRequest, ServiceError, ServiceMetrics};

/// A store worker's decided batch, ready to be written.
pub(crate) struct CommitRequest {
    pub(crate) store: StoreId,
    /// The stream, the version the batch was decided on, and its events.
    pub(crate) part: StreamAppend,
    /// The store's state after the events, for its `tenant_state` row.
    pub(crate) state: TenantState,
    pub(crate) now: DateTime<Utc>,
    /// First answers to store for their idempotency keys.
    pub(crate) answers: Vec<(IdempotencyRequest, RenderedAnswer)>,
    /// The catalog versions the batch was decided under, which its `tenant_state` row is
    /// built with.
    pub(crate) catalogs: Arc<Catalogs>,
    pub(crate) reply: oneshot::Sender<Result<i64, AppendFailure>>,
}

impl AsRef<StreamAppend> for CommitRequest {
    fn as_ref(&self) -> &StreamAppend {
        &self.part
    }
}

/// The most store batches one group transaction carries.
const MAX_GROUP: usize = 256;

/// Writes the batches of many stores in shared commits (the store's group commit, see
/// `planledger_store::group`): one multi-stream append with the keys' answers and the stores'
/// `tenant_state` rows. Each stream is still checked on its own version, so a conflict on one
/// store fails only that store's batch.
///
/// Several committers share the queue: each takes what is waiting as its group and writes it
/// while the next takes the next. Groups in flight together never share a store (a store's
/// worker has at most one batch in flight), so they touch disjoint rows and cannot deadlock.
pub(crate) async fn run_committer(
    log: AnyEventLog,
    metrics: Arc<ServiceMetrics>,
    options: GroupOptions,
    requests: Arc<tokio::sync::Mutex<mpsc::Receiver<CommitRequest>>>,
) {
    loop {
        let group = {
            let mut requests = requests.lock().await;
            let Some(first) = requests.recv().await else {
                break;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            group
        };
        let results = match commit(&log, &options, &group).await {
            Ok(results) => results,
            // Nothing was written and the cause may be one batch's (a constraint race): write
            // each batch on its own, so one store's trouble is not everyone's.
            Err(GroupError::Definite { alone_may_succeed: true, .. }) if group.len() > 1 => {
                let mut results = Vec::with_capacity(group.len());
                for request in &group {
                    results.push(match commit(&log, &options, std::slice::from_ref(request)).await {
                        Ok(mut one) => one.pop().unwrap_or(Err(AppendFailure::Conflict)),
                        Err(failure) => Err(failure.into()),
                    });
                }
                results
            }
            // The database is away (every batch would wait its own acquire timeout) or the
            // outcome is unknown (trying again could write twice): one answer for all.
            Err(failure) => {
                let failure = AppendFailure::from(failure);
                group.iter().map(|_| Err(failure.clone())).collect()
            }
        };
        for (request, result) in group.into_iter().zip(results) {
            if result.is_ok() && !request.part.events.is_empty() {
                metrics.appends.fetch_add(1, Ordering::Relaxed);
                metrics.appended_events.fetch_add(request.part.events.len() as u64, Ordering::Relaxed);
            }
            let _ = request.reply.send(result);
        }
    }
}

/// Writes a group of batches: each with the answers it stores for its keys, and, once its
/// events are appended, its store's `tenant_state` row as of its new version.
async fn commit(
    log: &AnyEventLog,
    options: &GroupOptions,
    group: &[CommitRequest],
) -> Result<Vec<Result<i64, AppendFailure>>, GroupError> {
    // Built once per catalog in the group: nearly always one, two while a new version comes in.
    let mut built_with: Vec<(&Arc<Catalogs>, String)> = Vec::with_capacity(1);
    let mut parts = Vec::with_capacity(group.len());
    for request in group {
        let catalogs = &request.catalogs;
        let known = built_with.iter().position(|(c, _)| Arc::ptr_eq(c, catalogs)).unwrap_or_else(|| {
            built_with.push((catalogs, planledger_projections::schema::built_with(catalogs)));
            built_with.len() - 1
        });
        let built_with = built_with[known].1.as_str();
        let claims = request
            .answers
            .iter()
            .map(|(key, answer)| answers::row(request.store, &key.key, &key.request_hash, answer, request.now))
            .collect();
        let rows = if request.part.events.is_empty() {
            Vec::new()
        } else {
            let version = request.part.expected + request.part.events.len() as i64;
            vec![tenant_state::row(request.store, &request.state, version, request.now, catalogs, built_with)?]
        };
        parts.push(GroupPart { append: &request.part, claims, rows });
    }
    let group = Group { claims: &answers::TABLE, rows: &tenant_state::TABLE, parts };
    let outcome = log.write_group(&group, options).await?;
    Ok(outcome
        .into_iter()
        .map(|result| {
            result.map_err(|failure| match failure {
                PartFailure::Conflict => AppendFailure::Conflict,
                PartFailure::Duplicate => AppendFailure::Duplicate,
            })
        })
        .collect())
}

#[derive(Clone)]
pub(crate) enum AppendFailure {
    Conflict,
    Duplicate,
    /// Nothing was written.
    Failed(ServiceError),
    /// The commit may or may not have happened.
    OutcomeUnknown,
}

impl From<GroupError> for AppendFailure {
    fn from(failure: GroupError) -> Self {
        match failure {
            GroupError::Definite { error, .. } => error.into(),
            GroupError::Unknown => AppendFailure::OutcomeUnknown,
        }
    }
}

impl From<StoreError> for AppendFailure {
    fn from(error: StoreError) -> Self {
        if error.is_conflict() {
            AppendFailure::Conflict
        } else {
            AppendFailure::Failed(error.into())
        }
    }
}
