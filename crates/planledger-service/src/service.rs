//! The command path.
//!
//! Each store has a queue served by one task (its worker), which keeps the store's state and
//! version cached. The worker takes every command waiting in the queue, decides them in order on
//! the cached state (due transitions first), and appends all their events in one transaction
//! with the version it started from, together with the `tenant_state` row and the stored answers
//! of idempotent requests. One commit thus carries many commands: a hot store is limited by
//! commits per second only once per batch, not once per command.
//!
//! The in-process queue is not a lock: several nodes may serve the same store, and the log's
//! version check decides between them. A conflict drops the cache, reloads the stream and
//! decides the batch again, a bounded number of times with jitter, then answers 409.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use planledger_domain::command::ImportedStore;
use planledger_domain::{decide, evolve, Catalog, Catalogs, Command, Consumption, Event, StoreId, TenantState};
use planledger_projections::tenant_state;
use planledger_store::{
    AnyEventLog, Chain, EventLog, Expiring, GroupOptions, StoreError, StreamAppend, StreamId, GENESIS,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::clock::Clock;
use crate::committer::{run_committer, AppendFailure, CommitRequest};
use crate::journal::{Journal, JournalEntry};
use crate::outcome::{Accepted, Answer, Outcome, Receipt, Refusal, Renderer};
use crate::retention::Retention;
use crate::worker::{new_event, Job, RecentAnswers, Worker};

/// Faults to inject into the commit path (the store's group commit), for the simulator and the
/// tests of what the command path does when the database misbehaves.
pub use planledger_store::CommitFaults as FaultInjector;

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The most commands one batch (one transaction) decides.
    pub max_batch: usize,
    /// How many times a batch is decided again after a conflict before answering 409.
    pub max_attempts: u32,
    /// How long a store's worker waits for work before it stops and forgets the cached state.
    pub worker_idle: Duration,
    /// A snapshot of the folded state is kept every this many events.
    pub snapshot_every: i64,
    /// How long the committer keeps trying to learn whether a commit that reported an error
    /// happened, before answering `OutcomeUnknown`.
    pub probe_for: Duration,
    /// Group transactions in flight at once on PostgreSQL (one on SQLite, which has one
    /// writer). While one group waits for its commit to reach the disk, the next is written.
    pub committers: usize,
    /// Injected faults (tests and the simulator only).
    pub faults: Option<Arc<dyn FaultInjector>>,
    /// How long stored answers, the ledger's keys and the journal are kept ([`Self::expire`]).
    pub retention: Retention,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            max_attempts: 8,
            worker_idle: Duration::from_secs(30),
            snapshot_every: 100,
            probe_for: Duration::from_secs(3),
            committers: 4,
            faults: None,
            retention: Retention::default(),
        }
    }
}

/// Who sent a command, and how to recognise a retry of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    pub correlation_id: String,
    /// The token's name, or `system` for the deadline worker.
    pub actor: String,
    pub idempotency: Option<IdempotencyRequest>,
    /// Decide only if the store's stream is at this version (the caller's `If-Match`); else
    /// the command is refused with [`Refusal::VersionMoved`].
    pub expected_version: Option<i64>,
    /// What caused the command, recorded as its events' causation (a Stripe event's id, say);
    /// without it, each command's events get an id of their own.
    pub causation_id: Option<String>,
}

impl CommandMeta {
    pub fn system(correlation_id: impl Into<String>) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            actor: "system".to_owned(),
            idempotency: None,
            expected_version: None,
            causation_id: None,
        }
    }
}

/// An `Idempotency-Key` and a hash of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRequest {
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("the database is unavailable")]
    Unavailable(String),
    /// The database reached is a standby, or refuses writes: a failover is under way.
    #[error("{0}")]
    NotPrimary(String),
    #[error("the store kept changing under this command; try again")]
    ConcurrencyConflict,
    /// The commit reported an error and the database could not be asked whether it happened.
    /// Nothing is decided again: a retry with the same `Idempotency-Key` gets the answer.
    #[error("the database did not confirm whether this command was recorded")]
    OutcomeUnknown,
    /// The request's `Idempotency-Key` was first used with another request.
    #[error("this Idempotency-Key was used with another request")]
    KeyReused,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => ServiceError::Unavailable(e.to_string()),
            e @ StoreError::NotPrimary { .. } => ServiceError::NotPrimary(e.to_string()),
            e if e.is_conflict() => ServiceError::ConcurrencyConflict,
            StoreError::Database(e) => ServiceError::Unavailable(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    pub commands: AtomicU64,
    pub batches: AtomicU64,
    pub appends: AtomicU64,
    pub appended_events: AtomicU64,
    pub conflicts: AtomicU64,
    /// Streams read again because the log was behind a worker's cached state (a failover).
    pub stream_rewinds: AtomicU64,
    pub retries: AtomicU64,
    pub replays: AtomicU64,
    /// Reads of stored answers by workers (a keyed batch whose key was answered before).
    pub answer_lookups: AtomicU64,
    pub sweeps: AtomicU64,
    pub swept_stores: AtomicU64,
    /// Rows deleted by retention, per table.
    pub expired_answers: AtomicU64,
    pub expired_keys: AtomicU64,
    pub expired_journal: AtomicU64,
    pub expired_stripe_events: AtomicU64,
    pub retention_runs: AtomicU64,
    pub retention_failures: AtomicU64,
}

impl ServiceMetrics {
    /// The counter of rows of `what` deleted by retention.
    pub fn expired(&self, what: Expiring) -> &AtomicU64 {
        match what {
            Expiring::Answers => &self.expired_answers,
            Expiring::Keys => &self.expired_keys,
            Expiring::Journal => &self.expired_journal,
            Expiring::StripeEvents => &self.expired_stripe_events,
        }
    }
}

/// What the service, its workers and committers share.
pub(crate) struct Inner {
    pub(crate) log: AnyEventLog,
    /// The same log on the reader connections, for what only reads (see `reads`).
    pub(crate) reads: AnyEventLog,
    /// Every catalog version this node knows: replaced, never changed, when a new version comes
    /// in (see `replace_catalogs`); each batch takes the one current when it starts, and
    /// decides each store under its own version.
    pub(crate) catalogs: RwLock<Arc<Catalogs>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: ServiceConfig,
    pub(crate) workers: Mutex<HashMap<StoreId, (u64, mpsc::Sender<Job>)>>,
    pub(crate) next_worker: AtomicU64,
    pub(crate) journal: Journal,
    pub(crate) metrics: Arc<ServiceMetrics>,
    pub(crate) committer: mpsc::Sender<CommitRequest>,
    pub(crate) renderer: Arc<dyn Renderer>,
}

impl Inner {
    pub(crate) fn catalogs(&self) -> Arc<Catalogs> {
        self.catalogs.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub(crate) fn replace_catalogs(&self, catalogs: Arc<Catalogs>) {
        *self.catalogs.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = catalogs;
    }
}

/// The command path; cheap to clone.
#[derive(Clone)]
pub struct CommandService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CommandService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandService").field("backend", &self.inner.log.backend_name()).finish_non_exhaustive()
    }
}

pub(crate) fn stream_of(store: StoreId) -> Result<StreamId, ServiceError> {
    StreamId::parse(store.stream_name()).map_err(|e| ServiceError::Internal(e.to_string()))
}

impl CommandService {
    pub fn new(
        log: AnyEventLog,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
        journal: Journal,
        renderer: Arc<dyn Renderer>,
    ) -> Self {
        let metrics = Arc::new(ServiceMetrics::default());
        let (committer, requests) = mpsc::channel(8192);
        let requests = Arc::new(tokio::sync::Mutex::new(requests));
        let committers = log.writers_at_once(config.committers);
        for _ in 0..committers {
            tokio::spawn(run_committer(
                log.clone(),
                metrics.clone(),
                GroupOptions { probe_for: config.probe_for, faults: config.faults.clone() },
                requests.clone(),
            ));
        }
        Self {
            inner: Arc::new(Inner {
                reads: log.reads_only(),
                log,
                catalogs: RwLock::new(Arc::new(Catalogs::single(catalog))),
                clock,
                config,
                workers: Mutex::new(HashMap::new()),
                next_worker: AtomicU64::new(0),
                journal,
                metrics,
                committer,
                renderer,
            }),
        }
    }

    pub fn log(&self) -> &AnyEventLog {
        &self.inner.log
    }

    /// The log for answering read requests: on connections of their own, where writes are
    /// refused, so that however many readers wait, commands never wait for them.
    pub fn reads(&self) -> &AnyEventLog {
        &self.inner.reads
    }

    /// The catalog in force now, the one a store registered now gets (a new version may come
    /// in at any time: keep this one for as long as one answer needs the same rules). A store
    /// is decided under its own version: see [`CommandService::catalogs`].
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalogs().in_force(self.inner.clock.now()).catalog.clone()
    }

    /// Every catalog version this node knows.
    pub fn catalogs(&self) -> Arc<Catalogs> {
        self.inner.catalogs()
    }

    /// Puts `catalogs` in place for every decision from now on: each store's next batch takes
    /// them.
    pub fn replace_catalogs(&self, catalogs: Arc<Catalogs>) {
        self.inner.replace_catalogs(catalogs);
    }

    /// The ledger's number of the catalog in force on this node (0 if it is not the ledger's).
    pub fn catalog_version(&self) -> i64 {
        self.catalog().version()
    }

    pub fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    pub fn metrics(&self) -> &ServiceMetrics {
        &self.inner.metrics
    }

    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// How long this service keeps stored answers, its keys and the journal.
    pub fn retention(&self) -> Retention {
        self.inner.config.retention
    }

    /// How many stores have a worker (and a cached state) right now.
    pub fn active_workers(&self) -> usize {
        self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Imports one tenant (`planledger import`): decided on a store that does not exist yet and
    /// appended at version 0 straight through the committers, with its `tenant_state` row,
    /// without a worker or a read: a new store has nothing to load, and many imports at once
    /// share group commits. If the store exists after all, the version check says so: a store
    /// imported before under this external id is answered unchanged from its row; any other
    /// goes through the store's queue like any command (`store_exists`).
    pub async fn import(&self, tenant: ImportedStore, meta: CommandMeta) -> Result<Answer, ServiceError> {
        let started = Instant::now();
        let store = StoreId::imported(&tenant.external_id);
        let command = Command::ImportStore(Box::new(tenant));
        let now = self.inner.clock.now();
        let catalogs = self.inner.catalogs();
        let catalog = catalogs.in_force(now).catalog.clone();
        let facts = match decide(&TenantState::default(), &command, now, &catalog) {
            Ok(facts) => facts,
            // Refused whether or not the store exists: the rules refuse the row itself.
            Err(error) => {
                self.inner.metrics.commands.fetch_add(1, Ordering::Relaxed);
                let result = Ok(Answer::Decided(Outcome::Refused(Refusal::Rule(error))));
                self.record(store, (command.kind(), None), &meta, &result, started);
                return result;
            }
        };
        let causation = meta.causation_id.clone().unwrap_or_else(|| Uuid::now_v7().to_string());
        let events = facts
            .iter()
            .map(|e| new_event(store, e, &meta, &meta.actor, &causation, now, &catalog))
            .collect::<Vec<_>>();
        let state = facts.iter().fold(TenantState::default(), evolve);
        let stream = stream_of(store)?;
        let receipt = Receipt::of(&stream, 0, &GENESIS, &events);
        let chain = Chain { expected_head: GENESIS, hashes: receipt.events.iter().map(|e| e.hash).collect() };
        let (reply, outcome) = oneshot::channel();
        let request = CommitRequest {
            store,
            part: StreamAppend { stream: stream.clone(), expected: 0, events, chain: Some(chain) },
            state: state.clone(),
            now,
            answers: vec![],
            catalogs,
            reply,
        };
        if self.inner.committer.send(request).await.is_err() {
            return Err(ServiceError::Internal("the committer stopped".into()));
        }
        let committed = outcome
            .await
            .unwrap_or_else(|_| Err(AppendFailure::Failed(ServiceError::Internal("the committer stopped".into()))));
        let kind = command.kind();
        let result = match committed {
            Ok(version) => Ok(Answer::Decided(Outcome::Accepted(Box::new(Accepted {
                store,
                command,
                facts,
                state,
                version,
                decided_at: now,
                receipt,
            })))),
            // The store exists. Imported before under this external id (the usual case: the
            // same file again), its row says so in one read; otherwise its own queue decides.
            Err(AppendFailure::Conflict | AppendFailure::Duplicate) => {
                let imported_before = self.load_row(store).await?.filter(|(state, _)| {
                    matches!(&command, Command::ImportStore(t) if state.external_id.as_ref() == Some(&t.external_id))
                });
                let Some((state, version)) = imported_before else {
                    return self.execute(store, command, meta).await;
                };
                let (at, head) = self.inner.log.stream_head(&stream).await?;
                Ok(Answer::Decided(Outcome::Accepted(Box::new(Accepted {
                    store,
                    command,
                    facts: vec![],
                    state,
                    version,
                    decided_at: now,
                    receipt: Receipt { events: vec![], version: at, head },
                }))))
            }
            Err(AppendFailure::Failed(error)) => Err(error),
            Err(AppendFailure::OutcomeUnknown) => Err(ServiceError::OutcomeUnknown),
        };
        self.inner.metrics.commands.fetch_add(1, Ordering::Relaxed);
        self.record(store, (kind, None), &meta, &result, started);
        result
    }

    /// Decides and records `command` for `store`, through the store's queue.
    pub async fn execute(&self, store: StoreId, command: Command, meta: CommandMeta) -> Result<Answer, ServiceError> {
        let started = Instant::now();
        self.inner.metrics.commands.fetch_add(1, Ordering::Relaxed);
        let kind = command.kind();
        let consumed = match &command {
            Command::Consume { action, amount, .. } => {
                Some((action.to_string(), i64::try_from(amount.get()).unwrap_or(i64::MAX)))
            }
            _ => None,
        };
        let journal_meta = meta.clone();
        let (reply, answer) = oneshot::channel();
        let mut job = Job { command, meta, reply };
        loop {
            let (generation, queue) = self.worker_for(store);
            match queue.send(job).await {
                Ok(()) => break,
                Err(mpsc::error::SendError(returned)) => {
                    // The worker stopped after we took its queue: forget it and start another.
                    job = returned;
                    let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
                    if workers.get(&store).is_some_and(|(g, _)| *g == generation) {
                        workers.remove(&store);
                    }
                }
            }
        }
        let result = answer.await.unwrap_or_else(|_| Err(ServiceError::Internal("the store's worker stopped".into())));
        self.record(store, (kind, consumed), &journal_meta, &result, started);
        result
    }

    /// Stops taking commands: every store's worker finishes what is queued and stops, after
    /// which the last handle's drop ends the journal writer (it drains first).
    pub fn shutdown(&self) {
        self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Refunds a consumption (contract §5): looks it up in the store's own stream, then the rules
    /// decide (an unknown or already refunded consumption is refused there).
    pub async fn refund(
        &self,
        store: StoreId,
        consumption_id: Uuid,
        meta: CommandMeta,
    ) -> Result<Answer, ServiceError> {
        let event = self.inner.log.read_event(consumption_id).await?;
        let consumption = event
            .filter(|e| e.stream_id.as_str() == store.stream_name())
            .and_then(|e| Event::from_stored(&e.event_type, e.schema_version, e.data, e.recorded_at).ok())
            .and_then(|event| Consumption::from_event(&event));
        self.execute(store, Command::Refund { consumption_id, consumption }, meta).await
    }

    fn record(
        &self,
        store: StoreId,
        (kind, consumed): (&'static str, Option<(String, i64)>),
        meta: &CommandMeta,
        result: &Result<Answer, ServiceError>,
        started: Instant,
    ) {
        let (outcome, error_code) = match result {
            Ok(Answer::Decided(Outcome::Accepted(_))) => ("accepted", None),
            Ok(Answer::Decided(Outcome::Refused(refusal))) => ("refused", Some(refusal.code().to_owned())),
            Ok(Answer::Replayed(_)) => ("replayed", None),
            Err(ServiceError::KeyReused) => ("refused", Some("idempotency_key_reused".to_owned())),
            Err(ServiceError::ConcurrencyConflict) => ("failed", Some("concurrency_conflict".to_owned())),
            Err(ServiceError::OutcomeUnknown) => ("unknown", Some("outcome_unknown".to_owned())),
            Err(ServiceError::Unavailable(_)) => ("failed", Some("storage_unavailable".to_owned())),
            Err(ServiceError::NotPrimary(_)) => ("failed", Some("database_not_primary".to_owned())),
            Err(ServiceError::Internal(_)) => ("failed", Some("internal".to_owned())),
        };
        self.inner.journal.record(JournalEntry {
            store_id: store.to_string(),
            kind,
            outcome,
            error_code,
            correlation_id: meta.correlation_id.clone(),
            actor: meta.actor.clone(),
            idempotency_key: meta.idempotency.as_ref().map(|i| i.key.clone()),
            duration_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
            recorded_at: self.inner.clock.now(),
            consumed,
        });
    }

    fn worker_for(&self, store: StoreId) -> (u64, mpsc::Sender<Job>) {
        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((generation, queue)) = workers.get(&store) {
            if !queue.is_closed() {
                return (*generation, queue.clone());
            }
        }
        let generation = self.inner.next_worker.fetch_add(1, Ordering::Relaxed);
        let (queue, jobs) = mpsc::channel(4096);
        workers.insert(store, (generation, queue.clone()));
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let catalogs = inner.catalogs();
            Worker { inner, store, generation, cache: None, catalogs, recent: RecentAnswers::default() }.run(jobs).await
        });
        (generation, queue)
    }

    /// The store's state and version as the read model has them (read-your-writes).
    pub async fn load_row(&self, store: StoreId) -> Result<Option<(TenantState, i64)>, ServiceError> {
        Ok(tenant_state::load(&self.inner.reads, store).await?.map(|row| (row.state, row.version)))
    }

    /// Appends the due transitions of every store whose deadline has passed; returns how many
    /// stores were swept. Safe on several nodes: the version check and the transitions'
    /// idempotency keys let each transition be appended once.
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        self.inner.metrics.sweeps.fetch_add(1, Ordering::Relaxed);
        let mut swept = 0;
        // A bound on rounds keeps one sweep finite even if a row never stops being due.
        for _ in 0..20 {
            let now = self.inner.clock.now();
            let due = tenant_state::due(&self.inner.log, now, 256).await?;
            if due.is_empty() {
                break;
            }
            let count = due.len();
            let correlation = format!("deadline-sweep-{}", Uuid::now_v7());
            let mut tasks = Vec::with_capacity(count);
            for store in due {
                let service = self.clone();
                let meta = CommandMeta::system(correlation.clone());
                tasks.push(tokio::spawn(
                    async move { service.execute(store, Command::ApplyDueTransitions, meta).await },
                ));
            }
            for task in tasks {
                match task.await {
                    Ok(Ok(_)) => swept += 1,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "a due transition could not be appended; the next sweep retries")
                    }
                    Err(e) => tracing::warn!(error = %e, "a sweep task failed"),
                }
            }
            if count < 256 {
                break;
            }
        }
        self.inner.metrics.swept_stores.fetch_add(swept as u64, Ordering::Relaxed);
        Ok(swept)
    }
}
