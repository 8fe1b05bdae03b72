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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use planledger_domain::fold_fingerprint;
use planledger_domain::{
    decide, due_transitions, evolve, Catalog, Command, Consumption, DomainError, Event, StoreId, TenantState,
};
use planledger_projections::history::{fold_stream, Folded, Until};
use planledger_projections::tenant_state;
use planledger_store::{
    AnyEventLog, EventLog, Expiring, Group, GroupError, GroupOptions, GroupPart, IdempotencyKey, NewEvent, PartFailure,
    Snapshot, StoreError, StreamAppend, StreamId,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::answers;
use crate::clock::Clock;
use crate::journal::{Journal, JournalEntry};
use crate::outcome::{Accepted, Answer, Outcome, Refusal, RenderedAnswer, Renderer};
use crate::retention::Retention;

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

struct Job {
    command: Command,
    meta: CommandMeta,
    reply: oneshot::Sender<Result<Answer, ServiceError>>,
}

struct Loaded {
    version: i64,
    state: TenantState,
}

struct Inner {
    log: AnyEventLog,
    /// The same log on the reader connections, for what only reads (see `reads`).
    reads: AnyEventLog,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    config: ServiceConfig,
    workers: Mutex<HashMap<StoreId, (u64, mpsc::Sender<Job>)>>,
    next_worker: AtomicU64,
    journal: Journal,
    metrics: Arc<ServiceMetrics>,
    committer: mpsc::Sender<CommitRequest>,
    renderer: Arc<dyn Renderer>,
}

/// A store worker's decided batch, ready to be written.
struct CommitRequest {
    store: StoreId,
    /// The stream, the version the batch was decided on, and its events.
    part: StreamAppend,
    /// The store's state after the events, for its `tenant_state` row.
    state: TenantState,
    now: DateTime<Utc>,
    /// First answers to store for their idempotency keys.
    answers: Vec<(IdempotencyRequest, RenderedAnswer)>,
    reply: oneshot::Sender<Result<i64, AppendFailure>>,
}

impl AsRef<StreamAppend> for CommitRequest {
    fn as_ref(&self) -> &StreamAppend {
        &self.part
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

fn stream_of(store: StoreId) -> Result<StreamId, ServiceError> {
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
                catalog.clone(),
                metrics.clone(),
                GroupOptions { probe_for: config.probe_for, faults: config.faults.clone() },
                requests.clone(),
            ));
        }
        Self {
            inner: Arc::new(Inner {
                reads: log.reads_only(),
                log,
                catalog,
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

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
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

    /// Decides and records `command` for `store`, through the store's queue.
    pub async fn execute(&self, store: StoreId, command: Command, meta: CommandMeta) -> Result<Answer, ServiceError> {
        let started = Instant::now();
        self.inner.metrics.commands.fetch_add(1, Ordering::Relaxed);
        let kind = command.kind();
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
        self.record(store, kind, &journal_meta, &result, started);
        result
    }

    /// Stops taking commands: every store's worker finishes what is queued and stops, after
    /// which the last handle's drop ends the journal writer (it drains first).
    pub fn shutdown(&self) {
        self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Refunds a consumption (SPEC 5): looks it up in the store's own stream, then the rules
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
        kind: &'static str,
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
            Worker { inner, store, generation, cache: None, recent: RecentAnswers::default() }.run(jobs).await
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

/// One store's queue consumer.
struct Worker {
    inner: Arc<Inner>,
    store: StoreId,
    generation: u64,
    cache: Option<Loaded>,
    /// The first answers this worker committed lately, by key: a client's retry usually comes
    /// back to the same worker soon, and is then answered without a database read. A stored
    /// answer never changes, so keeping a copy is safe.
    recent: RecentAnswers,
}

/// A bounded memory of committed first answers (oldest forgotten first), each with the time it
/// was stored, so that an answer retention has deleted from the database is not replayed from
/// memory either.
#[derive(Default)]
struct RecentAnswers {
    by_key: HashMap<String, (answers::StoredAnswer, DateTime<Utc>)>,
    order: std::collections::VecDeque<String>,
}

impl RecentAnswers {
    const CAPACITY: usize = 1024;

    /// The answer to `key`, if it was stored at or after `since` (`None`: any time).
    fn get(&self, key: &str, since: Option<DateTime<Utc>>) -> Option<&answers::StoredAnswer> {
        self.by_key.get(key).filter(|(_, at)| since.is_none_or(|since| *at >= since)).map(|(answer, _)| answer)
    }

    fn remember(&mut self, key: String, answer: answers::StoredAnswer, at: DateTime<Utc>) {
        if self.by_key.insert(key.clone(), (answer, at)).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
    }
}

/// What became of one command in a batch, before the commit.
enum Decided {
    /// Answered with nothing to record: a replay of a stored answer, a key reused with another
    /// body, or a command to a store that does not exist (nothing executes, nothing is kept).
    Answered(Result<Answer, ServiceError>),
    /// Decided on the batch's state, accepted or refused: its answer holds once the batch
    /// commits (or, if the batch appends nothing, once the stream's version is confirmed).
    /// `stored` is its rendering, kept as the first answer to its `Idempotency-Key`.
    Recorded { outcome: Outcome, stored: Option<(IdempotencyRequest, RenderedAnswer)> },
    /// The same key appeared earlier in this batch: answer as that job did.
    SameAs(usize),
}

impl Worker {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            let first = match tokio::time::timeout(self.inner.config.worker_idle, jobs.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_idle) => {
                    // Jobs sent before the queue closes are still served.
                    self.retire(&mut jobs).await;
                    return;
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.inner.config.max_batch {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.process(batch, true).await;
            if self.cache.as_ref().is_some_and(|c| !c.state.is_registered()) {
                // A store that does not exist keeps nothing once its requests are answered: a
                // flood of commands to random ids must not leave a worker per id behind.
                self.retire(&mut jobs).await;
                return;
            }
        }
    }

    /// Leaves the workers' table, then serves what was queued before the queue closed.
    async fn retire(&mut self, jobs: &mut mpsc::Receiver<Job>) {
        {
            let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
            if workers.get(&self.store).is_some_and(|(g, _)| *g == self.generation) {
                workers.remove(&self.store);
            }
            // A map never gives back the room a burst of stores made it grow to: shrink it once
            // it is mostly empty, so memory follows the active stores, not the busiest moment.
            if workers.capacity() > 4 * workers.len() + 1024 {
                let keep = 2 * workers.len();
                workers.shrink_to(keep);
            }
        }
        let rest = drain_closed(jobs).await;
        if !rest.is_empty() {
            self.process(rest, true).await;
        }
    }

    /// The store's state from its latest snapshot and the events after it.
    async fn load(&self) -> Result<Loaded, ServiceError> {
        let stream = stream_of(self.store)?;
        let base = match self.inner.log.load_snapshot(&stream).await? {
            Some(snapshot) if snapshot.fold_fingerprint == fold_fingerprint() => {
                match serde_json::from_value::<TenantState>(snapshot.state) {
                    Ok(state) => Loaded { version: snapshot.version, state },
                    Err(_) => Loaded { version: 0, state: TenantState::default() },
                }
            }
            _ => Loaded { version: 0, state: TenantState::default() },
        };
        self.catch_up(base).await
    }

    /// Folds the events appended after `loaded` (by another node) into it.
    async fn catch_up(&self, loaded: Loaded) -> Result<Loaded, ServiceError> {
        let from = Folded::at_version(loaded.state, loaded.version);
        let folded =
            fold_stream(&self.inner.log, self.store, from, Until::END, |_, _, _| Ok::<_, ServiceError>(())).await?;
        Ok(Loaded { version: folded.version, state: folded.state })
    }

    fn new_event(
        &self,
        event: &Event,
        meta: &CommandMeta,
        actor: &str,
        causation: &str,
        now: DateTime<Utc>,
    ) -> NewEvent {
        let mut new = NewEvent::new(
            event.event_type(),
            event.schema_version(),
            event.data(),
            meta.correlation_id.clone(),
            actor,
            self.inner.catalog.fingerprint(),
            now,
        )
        .with_causation(causation);
        if let Event::QuotaConsumed { consumption_id, .. } = event {
            // A consumption is found again (for a refund) by its event id.
            new.event_id = *consumption_id;
        }
        // The ledger's own keys and clients' keys live in separate namespaces (see `KeyScope`).
        new.idempotency_key = match event.system_idempotency_key(self.store) {
            Some(key) => Some(IdempotencyKey::system(key)),
            None => meta.idempotency.as_ref().map(|i| IdempotencyKey::client(i.key.clone())),
        };
        new
    }

    /// Decides and appends a batch, answering every job.
    async fn process(&mut self, jobs: Vec<Job>, may_split: bool) {
        let results = self.decide_and_append(&jobs, may_split).await;
        let results = match results {
            BatchResult::Done(results) => results,
            BatchResult::Split => {
                for job in jobs {
                    Box::pin(self.process(vec![job], false)).await;
                }
                return;
            }
        };
        for (job, result) in jobs.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }

    async fn decide_and_append(&mut self, jobs: &[Job], may_split: bool) -> BatchResult {
        let inner = self.inner.clone();
        let catalog = inner.catalog.as_ref();
        let all = |e: ServiceError| BatchResult::Done(jobs.iter().map(|_| Err(e.clone())).collect());
        let stream = match stream_of(self.store) {
            Ok(stream) => stream,
            Err(e) => return all(e),
        };
        let keys: Vec<&str> = jobs.iter().filter_map(|j| j.meta.idempotency.as_ref().map(|i| i.key.as_str())).collect();
        inner.metrics.batches.fetch_add(1, Ordering::Relaxed);
        // Set when the cached state may be behind the log (another node appended).
        let mut stale = false;
        // Keyed commands are decided without looking for stored answers first: the committer
        // looks for the whole group at once and answers `Duplicate` for a batch with a key
        // answered before. Then (and for a single command split out of a batch) they are read.
        let mut load_answers = !may_split;
        // Set when the last attempt only lacked the stored answers (no contention: no pause).
        let mut answers_missing = false;
        for attempt in 0..inner.config.max_attempts {
            if attempt > 0 && !answers_missing {
                inner.metrics.retries.fetch_add(1, Ordering::Relaxed);
                let jitter = u64::from(Uuid::now_v7().as_bytes()[15] % 8);
                tokio::time::sleep(Duration::from_millis(1 + jitter * u64::from(attempt))).await;
            }
            answers_missing = false;
            let loaded = match (self.cache.take(), stale) {
                (Some(loaded), false) => Ok(loaded),
                (Some(loaded), true) => self.catch_up(loaded).await,
                (None, _) => self.load().await,
            };
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(e) => return all(e),
            };
            let stored = if keys.is_empty() || !load_answers {
                HashMap::new()
            } else {
                inner.metrics.answer_lookups.fetch_add(1, Ordering::Relaxed);
                match answers::load(&inner.log, self.store, &keys).await {
                    Ok(stored) => stored,
                    Err(e) => return all(e.into()),
                }
            };
            let now = inner.clock.now();
            let mut working = loaded.state.clone();
            let mut events: Vec<NewEvent> = Vec::new();

            // Deadlines that passed come first, whatever the commands turn out to be.
            if working.is_registered() {
                let due = due_transitions(&working, now, catalog);
                let first_meta = &jobs[0].meta;
                for event in &due {
                    let key = event.system_idempotency_key(self.store).unwrap_or_default();
                    events.push(self.new_event(
                        event,
                        &CommandMeta::system(first_meta.correlation_id.clone()),
                        "system",
                        &key,
                        now,
                    ));
                    working = evolve(working, event);
                }
            }
            let due_count = events.len();

            let mut decided: Vec<Decided> = Vec::with_capacity(jobs.len());
            let mut seen: HashMap<&str, (usize, &str)> = HashMap::new();
            let answers_since = inner.config.retention.expired_before(Expiring::Answers, now);
            for (index, job) in jobs.iter().enumerate() {
                if let Some(request) = &job.meta.idempotency {
                    if let Some(first) =
                        stored.get(&request.key).or_else(|| self.recent.get(&request.key, answers_since))
                    {
                        inner.metrics.replays.fetch_add(1, Ordering::Relaxed);
                        decided.push(Decided::Answered(replay_or_reused(first, request)));
                        continue;
                    }
                    if let Some((earlier, hash)) = seen.get(request.key.as_str()) {
                        decided.push(if *hash == request.request_hash {
                            Decided::SameAs(*earlier)
                        } else {
                            Decided::Answered(Err(ServiceError::KeyReused))
                        });
                        continue;
                    }
                    seen.insert(request.key.as_str(), (index, request.request_hash.as_str()));
                }
                // The version the caller could have seen: the log's, and the commands before
                // this one in the batch; not the due transitions this batch decided first.
                let seen_version = loaded.version + (events.len() - due_count) as i64;
                let outcome = match job.meta.expected_version {
                    Some(expected) if working.is_registered() && expected != seen_version => {
                        Outcome::Refused(Refusal::VersionMoved { expected, current: seen_version })
                    }
                    _ => match decide(&working, &job.command, now, catalog) {
                        Ok(own) => {
                            let causation = job.meta.causation_id.clone().unwrap_or_else(|| Uuid::now_v7().to_string());
                            for event in &own {
                                events.push(self.new_event(event, &job.meta, &job.meta.actor, &causation, now));
                                working = evolve(working, event);
                            }
                            Outcome::Accepted(Box::new(Accepted {
                                store: self.store,
                                command: job.command.clone(),
                                facts: own,
                                state: working.clone(),
                                version: loaded.version + events.len() as i64,
                                decided_at: now,
                            }))
                        }
                        Err(DomainError::StoreNotFound) => {
                            // Nothing about an unknown store is kept, not even the answer.
                            decided.push(Decided::Answered(Ok(Answer::Decided(Outcome::Refused(Refusal::Rule(
                                DomainError::StoreNotFound,
                            ))))));
                            continue;
                        }
                        Err(error) => Outcome::Refused(Refusal::Rule(error)),
                    },
                };
                let stored = job.meta.idempotency.as_ref().map(|request| {
                    (request.clone(), inner.renderer.render(&outcome, catalog, &job.meta.correlation_id))
                });
                decided.push(Decided::Recorded { outcome, stored });
            }
            let answers: Vec<(IdempotencyRequest, RenderedAnswer)> = decided
                .iter()
                .filter_map(|item| match item {
                    Decided::Recorded { stored: Some(stored), .. } => Some(stored.clone()),
                    _ => None,
                })
                .collect();

            if events.is_empty() && answers.is_empty() {
                // Nothing to record, so no commit vouches for these answers: make sure the
                // cached state is the log's latest before answering from it.
                let current = match inner.log.stream_version(&stream).await {
                    Ok(version) => version,
                    Err(e) => return all(e.into()),
                };
                let fresh = current == loaded.version;
                self.cache = Some(loaded);
                if fresh {
                    return BatchResult::Done(finish(decided));
                }
                stale = true;
                continue;
            }

            let committed: Vec<(String, answers::StoredAnswer)> = answers
                .iter()
                .map(|(key, answer)| {
                    let first =
                        answers::StoredAnswer { request_hash: key.request_hash.clone(), answer: answer.clone() };
                    (key.key.clone(), first)
                })
                .collect();
            match self.commit(&loaded, events, &working, answers, now).await {
                Ok(new_version) => {
                    self.remember(loaded.version, new_version, working);
                    for (key, first) in committed {
                        self.recent.remember(key, first, now);
                    }
                    return BatchResult::Done(finish(decided));
                }
                Err(AppendFailure::Conflict) => {
                    inner.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.cache = Some(loaded);
                    stale = true;
                    continue;
                }
                Err(AppendFailure::Duplicate) if !load_answers && !keys.is_empty() => {
                    // A key of this batch was answered before (a retry, or a request on another
                    // node): decide again with the stored answers in hand. Nothing was written.
                    load_answers = true;
                    answers_missing = true;
                    self.cache = Some(loaded);
                    stale = true;
                    continue;
                }
                Err(AppendFailure::Duplicate) if may_split && jobs.len() > 1 => return BatchResult::Split,
                Err(AppendFailure::Duplicate) => {
                    // A key of this one command was used by a request that committed on another
                    // node: its stored answer is the answer. Otherwise the log moved: reload.
                    let job = &jobs[0];
                    if let Some(request) = &job.meta.idempotency {
                        inner.metrics.answer_lookups.fetch_add(1, Ordering::Relaxed);
                        match answers::load(&inner.log, self.store, &[request.key.as_str()]).await {
                            Ok(stored) => {
                                if let Some(first) = stored.get(&request.key) {
                                    return BatchResult::Done(vec![replay_or_reused(first, request)]);
                                }
                            }
                            Err(e) => return all(e.into()),
                        }
                    }
                    continue;
                }
                Err(AppendFailure::Failed(e)) => {
                    // Nothing was written: the cache still holds the log's latest state.
                    self.cache = Some(loaded);
                    return all(e);
                }
                Err(AppendFailure::OutcomeUnknown) => {
                    // The events may or may not be in the log. Deciding again could decide twice,
                    // so the commands are answered as unknown and the next batch reloads.
                    return all(ServiceError::OutcomeUnknown);
                }
            }
        }
        all(ServiceError::ConcurrencyConflict)
    }

    /// Hands the batch to the committer, which writes it with the `tenant_state` row and the
    /// stored answers in one transaction (shared with other stores' batches), and waits. A batch
    /// with no events is a check of the stream's version, in the transaction that stores its
    /// answers.
    async fn commit(
        &self,
        loaded: &Loaded,
        events: Vec<NewEvent>,
        working: &TenantState,
        answers: Vec<(IdempotencyRequest, RenderedAnswer)>,
        now: DateTime<Utc>,
    ) -> Result<i64, AppendFailure> {
        let stream = stream_of(self.store).map_err(AppendFailure::Failed)?;
        let (reply, outcome) = oneshot::channel();
        let request = CommitRequest {
            store: self.store,
            part: StreamAppend { stream, expected: loaded.version, events },
            state: working.clone(),
            now,
            answers,
            reply,
        };
        if self.inner.committer.send(request).await.is_err() {
            return Err(AppendFailure::Failed(ServiceError::Internal("the committer stopped".into())));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(AppendFailure::Failed(ServiceError::Internal("the committer stopped".into()))))
    }

    fn remember(&mut self, old_version: i64, new_version: i64, state: TenantState) {
        let every = self.inner.config.snapshot_every.max(1);
        if new_version / every > old_version / every {
            // Snapshots only speed up cold loads; the log stays the truth, so this may lag.
            if let (Ok(stream), Ok(json)) = (stream_of(self.store), serde_json::to_value(&state)) {
                let log = self.inner.log.clone();
                tokio::spawn(async move {
                    let snapshot = Snapshot {
                        stream_id: stream,
                        version: new_version,
                        state: json,
                        fold_fingerprint: fold_fingerprint().to_owned(),
                    };
                    if let Err(error) = log.save_snapshot(&snapshot).await {
                        tracing::debug!(%error, "snapshot not saved");
                    }
                });
            }
        }
        self.cache = Some(Loaded { version: new_version, state });
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
async fn run_committer(
    log: AnyEventLog,
    catalog: Arc<Catalog>,
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
        let results = match commit(&log, &catalog, &options, &group).await {
            Ok(results) => results,
            // Nothing was written and the cause may be one batch's (a constraint race): write
            // each batch on its own, so one store's trouble is not everyone's.
            Err(GroupError::Definite { alone_may_succeed: true, .. }) if group.len() > 1 => {
                let mut results = Vec::with_capacity(group.len());
                for request in &group {
                    results.push(match commit(&log, &catalog, &options, std::slice::from_ref(request)).await {
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
    catalog: &Catalog,
    options: &GroupOptions,
    group: &[CommitRequest],
) -> Result<Vec<Result<i64, AppendFailure>>, GroupError> {
    let mut parts = Vec::with_capacity(group.len());
    for request in group {
        let claims = request
            .answers
            .iter()
            .map(|(key, answer)| answers::row(request.store, &key.key, &key.request_hash, answer, request.now))
            .collect();
        let rows = if request.part.events.is_empty() {
            Vec::new()
        } else {
            let version = request.part.expected + request.part.events.len() as i64;
            vec![tenant_state::row(request.store, &request.state, version, request.now, catalog)?]
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

enum BatchResult {
    Done(Vec<Result<Answer, ServiceError>>),
    /// The batch hit an idempotency key already in the log: decide its commands one by one.
    Split,
}

#[derive(Clone)]
enum AppendFailure {
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

fn finish(decided: Vec<Decided>) -> Vec<Result<Answer, ServiceError>> {
    let mut results: Vec<Result<Answer, ServiceError>> = Vec::with_capacity(decided.len());
    let mut renderings: Vec<Option<RenderedAnswer>> = Vec::with_capacity(decided.len());
    for item in decided {
        let (result, rendering) = match item {
            Decided::Answered(result) => (result, None),
            Decided::Recorded { outcome, stored } => (Ok(Answer::Decided(outcome)), stored.map(|(_, r)| r)),
            // A request sent twice at once is decided once: the second is a replay of the first.
            Decided::SameAs(earlier) => match &renderings[earlier] {
                Some(rendered) => (Ok(Answer::Replayed(rendered.clone())), None),
                None => (results[earlier].clone(), None),
            },
        };
        results.push(result);
        renderings.push(rendering);
    }
    results
}

/// Closes a queue and takes everything sent to it. A sender may hold a permit taken before the
/// close and put its job in just after it, so the queue is read until it says it is finished
/// (`recv` answers `None`), not until it looks empty: a job left behind would be dropped with
/// the queue, and its caller would never learn what became of its command.
async fn drain_closed<T>(queue: &mut mpsc::Receiver<T>) -> Vec<T> {
    queue.close();
    let mut rest = Vec::new();
    while let Some(item) = queue.recv().await {
        rest.push(item);
    }
    rest
}

fn replay_or_reused(first: &answers::StoredAnswer, request: &IdempotencyRequest) -> Result<Answer, ServiceError> {
    if first.request_hash == request.request_hash {
        Ok(Answer::Replayed(first.answer.clone()))
    } else {
        Err(ServiceError::KeyReused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retiring_queue_keeps_a_job_sent_on_a_permit_taken_before_it_closed() {
        let (sender, mut queue) = mpsc::channel::<u32>(4);
        sender.send(1).await.unwrap();
        // `Sender::send` takes a permit, then puts the job in: a close can fall in between.
        let permit = sender.reserve().await.unwrap();
        let drained = tokio::spawn(async move { drain_closed(&mut queue).await });
        tokio::task::yield_now().await;
        permit.send(2);
        // Finished once the permit is used, though a sender is still alive.
        assert_eq!(drained.await.unwrap(), vec![1, 2]);
        drop(sender);
    }
}
