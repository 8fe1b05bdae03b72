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
use planledger_domain::{
    decide, due_transitions, evolve, Catalog, Command, Consumption, DomainError, Event, StoreId, TenantState,
};
use planledger_projections::tenant_state;
use planledger_store::{
    AnyEventLog, EventLog, NewEvent, Snapshot, StoreError, StreamAppend, StreamAppendOutcome, StreamId,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::answers;
use crate::clock::Clock;
use crate::journal::{Journal, JournalEntry};
use crate::views::{self, Answer};

/// The schema of the folded state kept in snapshots; bump it when `TenantState` changes shape.
pub const STATE_SCHEMA_VERSION: i32 = 1;

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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self { max_batch: 512, max_attempts: 8, worker_idle: Duration::from_secs(30), snapshot_every: 100 }
    }
}

/// Who sent a command, and how to recognise a retry of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    pub correlation_id: String,
    /// The token's name, or `system` for the deadline worker.
    pub actor: String,
    pub idempotency: Option<IdempotencyRequest>,
}

impl CommandMeta {
    pub fn system(correlation_id: impl Into<String>) -> Self {
        Self { correlation_id: correlation_id.into(), actor: "system".to_owned(), idempotency: None }
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
    pub sweeps: AtomicU64,
    pub swept_stores: AtomicU64,
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
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    config: ServiceConfig,
    workers: Mutex<HashMap<StoreId, (u64, mpsc::Sender<Job>)>>,
    next_worker: AtomicU64,
    journal: Journal,
    metrics: Arc<ServiceMetrics>,
    committer: mpsc::Sender<CommitRequest>,
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
    answers: Vec<(IdempotencyRequest, Answer)>,
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
    ) -> Self {
        let metrics = Arc::new(ServiceMetrics::default());
        let (committer, requests) = mpsc::channel(8192);
        tokio::spawn(run_committer(log.clone(), catalog.clone(), metrics.clone(), requests));
        Self {
            inner: Arc::new(Inner {
                log,
                catalog,
                clock,
                config,
                workers: Mutex::new(HashMap::new()),
                next_worker: AtomicU64::new(0),
                journal,
                metrics,
                committer,
            }),
        }
    }

    pub fn log(&self) -> &AnyEventLog {
        &self.inner.log
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

    /// Refunds a consumption (SPEC 5): looks it up in the store's stream, then decides.
    pub async fn refund(
        &self,
        store: StoreId,
        consumption_id: Uuid,
        meta: CommandMeta,
    ) -> Result<Answer, ServiceError> {
        let event = self.inner.log.read_event(consumption_id).await?;
        let consumption = event.filter(|e| e.stream_id.as_str() == store.stream_name()).and_then(|e| {
            match Event::from_stored(&e.event_type, e.schema_version, e.data).ok()? {
                Event::QuotaConsumed { consumption_id, action, amount, period, period_start, period_end, .. } => {
                    Some(Consumption { consumption_id, action, amount, period, period_start, period_end })
                }
                _ => None,
            }
        });
        match consumption {
            Some(consumption) => self.execute(store, Command::Refund { consumption }, meta).await,
            None => {
                let answer = views::plain_error(
                    404,
                    "consumption_not_found",
                    "no consumption with this id on this store",
                    &meta.correlation_id,
                );
                self.record(store, "refund", &meta, &Ok(answer.clone()), Instant::now());
                Ok(answer)
            }
        }
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
            Ok(answer) if answer.status < 300 => ("accepted", None),
            Ok(answer) => ("refused", answer.body.get("error").and_then(|e| e.as_str()).map(str::to_owned)),
            Err(ServiceError::ConcurrencyConflict) => ("failed", Some("concurrency_conflict".to_owned())),
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
        tokio::spawn(async move { Worker { inner, store, generation, cache: None }.run(jobs).await });
        (generation, queue)
    }

    /// The store's state and version as the read model has them (read-your-writes).
    pub async fn load_row(&self, store: StoreId) -> Result<Option<(TenantState, i64)>, ServiceError> {
        Ok(tenant_state::load(&self.inner.log, store).await?.map(|row| (row.state, row.version)))
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
}

/// What became of one command in a batch, before the append.
enum Decided {
    /// Answered without writing: a refusal, a no-op or a replay.
    Answered(Answer),
    /// Accepted; its answer is final once the batch commits. `store_key` asks to store the
    /// answer for its idempotency key.
    Accepted { answer: Answer, store_key: Option<IdempotencyRequest> },
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
                    {
                        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
                        if workers.get(&self.store).is_some_and(|(g, _)| *g == self.generation) {
                            workers.remove(&self.store);
                        }
                    }
                    jobs.close();
                    // Jobs sent before the close are still served.
                    let mut rest = Vec::new();
                    while let Ok(job) = jobs.try_recv() {
                        rest.push(job);
                    }
                    if !rest.is_empty() {
                        self.process(rest, true).await;
                    }
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
        }
    }

    /// The store's state from its latest snapshot and the events after it.
    async fn load(&self) -> Result<Loaded, ServiceError> {
        let stream = stream_of(self.store)?;
        let base = match self.inner.log.load_snapshot(&stream).await? {
            Some(snapshot) if snapshot.state_schema_version == STATE_SCHEMA_VERSION => {
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
        let log = &self.inner.log;
        let stream = stream_of(self.store)?;
        let Loaded { mut version, mut state } = loaded;
        loop {
            let page = log.read_stream(&stream, version + 1, 1000).await?;
            let full = page.len() == 1000;
            for recorded in page {
                let event = Event::from_stored(&recorded.event_type, recorded.schema_version, recorded.data, recorded.recorded_at)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                state = evolve(state, &event);
                version = recorded.version;
            }
            if !full {
                return Ok(Loaded { version, state });
            }
        }
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
        new.idempotency_key =
            event.system_idempotency_key(self.store).or_else(|| meta.idempotency.as_ref().map(|i| i.key.clone()));
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
        for attempt in 0..inner.config.max_attempts {
            if attempt > 0 {
                inner.metrics.retries.fetch_add(1, Ordering::Relaxed);
                let jitter = u64::from(Uuid::now_v7().as_bytes()[15] % 8);
                tokio::time::sleep(Duration::from_millis(1 + jitter * u64::from(attempt))).await;
            }
            let loaded = match (self.cache.take(), stale) {
                (Some(loaded), false) => Ok(loaded),
                (Some(loaded), true) => self.catch_up(loaded).await,
                (None, _) => self.load().await,
            };
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(e) => return all(e),
            };
            let stored = if keys.is_empty() {
                HashMap::new()
            } else {
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

            let mut decided: Vec<Decided> = Vec::with_capacity(jobs.len());
            let mut seen: HashMap<&str, (usize, &str)> = HashMap::new();
            for (index, job) in jobs.iter().enumerate() {
                if let Some(request) = &job.meta.idempotency {
                    if let Some(first) = stored.get(&request.key) {
                        inner.metrics.replays.fetch_add(1, Ordering::Relaxed);
                        decided.push(Decided::Answered(replay_or_reused(first, request, &job.meta)));
                        continue;
                    }
                    if let Some((earlier, hash)) = seen.get(request.key.as_str()) {
                        decided.push(if *hash == request.request_hash {
                            Decided::SameAs(*earlier)
                        } else {
                            Decided::Answered(key_reused(&job.meta))
                        });
                        continue;
                    }
                    seen.insert(request.key.as_str(), (index, request.request_hash.as_str()));
                }
                match decide(&working, &job.command, now, catalog) {
                    Ok(own) => {
                        let causation = Uuid::now_v7().to_string();
                        for event in &own {
                            events.push(self.new_event(event, &job.meta, &job.meta.actor, &causation, now));
                            working = evolve(working, event);
                        }
                        let version = loaded.version + events.len() as i64;
                        let answer = views::accepted(&job.command, &own, self.store, &working, version, now, catalog);
                        let store_key = if own.is_empty() { None } else { job.meta.idempotency.clone() };
                        decided.push(Decided::Accepted { answer, store_key });
                    }
                    Err(error) => decided.push(Decided::Answered(refusal(&error, &job.meta))),
                }
            }

            if events.is_empty() {
                // Nothing to append, so no version check vouches for these answers: make sure
                // the cached state is the log's latest before answering from it.
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

            match self.append(&loaded, events, &working, &decided, now).await {
                Ok(new_version) => {
                    self.remember(loaded.version, new_version, working);
                    return BatchResult::Done(finish(decided));
                }
                Err(AppendFailure::Conflict) => {
                    inner.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.cache = Some(loaded);
                    stale = true;
                    continue;
                }
                Err(AppendFailure::Duplicate) if may_split && jobs.len() > 1 => return BatchResult::Split,
                Err(AppendFailure::Duplicate) => {
                    // A key of this one command was used: by a request that committed on another
                    // node, or (for a refund) by an earlier refund of the same consumption.
                    let job = &jobs[0];
                    if let Some(request) = &job.meta.idempotency {
                        match answers::load(&inner.log, self.store, &[request.key.as_str()]).await {
                            Ok(stored) => {
                                if let Some(first) = stored.get(&request.key) {
                                    return BatchResult::Done(vec![Ok(replay_or_reused(first, request, &job.meta))]);
                                }
                            }
                            Err(e) => return all(e.into()),
                        }
                    }
                    if let Command::Refund { .. } = job.command {
                        let answer = views::plain_error(
                            409,
                            "already_refunded",
                            "this consumption was already refunded",
                            &job.meta.correlation_id,
                        );
                        return BatchResult::Done(vec![Ok(answer)]);
                    }
                    continue;
                }
                Err(AppendFailure::Failed(e)) => return all(e),
            }
        }
        all(ServiceError::ConcurrencyConflict)
    }

    /// Hands the batch to the committer, which writes it with the `tenant_state` row and the
    /// stored answers in one transaction (shared with other stores' batches), and waits.
    async fn append(
        &self,
        loaded: &Loaded,
        events: Vec<NewEvent>,
        working: &TenantState,
        decided: &[Decided],
        now: DateTime<Utc>,
    ) -> Result<i64, AppendFailure> {
        let answers = decided
            .iter()
            .filter_map(|item| match item {
                Decided::Accepted { answer, store_key: Some(request) } => Some((request.clone(), answer.clone())),
                _ => None,
            })
            .collect();
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
                        state_schema_version: STATE_SCHEMA_VERSION,
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

/// Writes the batches of many stores in shared transactions (group commit): one multi-stream
/// append, one multi-row `tenant_state` write, one commit for all of them. Each stream is still
/// checked on its own version, so a conflict on one store fails only that store's batch.
async fn run_committer(
    log: AnyEventLog,
    catalog: Arc<Catalog>,
    metrics: Arc<ServiceMetrics>,
    mut requests: mpsc::Receiver<CommitRequest>,
) {
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let results = match commit_group(&log, &catalog, &group).await {
            Ok(results) => results,
            // The shared statement failed as a whole (a constraint race, a lost connection):
            // write each batch on its own, so one store's trouble is not everyone's.
            Err(_) if group.len() > 1 => {
                let mut results = Vec::with_capacity(group.len());
                for request in &group {
                    results.push(match commit_group(&log, &catalog, std::slice::from_ref(request)).await {
                        Ok(mut one) => one.pop().unwrap_or(Err(AppendFailure::Conflict)),
                        Err(e) => Err(e),
                    });
                }
                results
            }
            Err(e) => vec![Err(e)],
        };
        for (request, result) in group.into_iter().zip(results) {
            if result.is_ok() {
                metrics.appends.fetch_add(1, Ordering::Relaxed);
                metrics.appended_events.fetch_add(request.part.events.len() as u64, Ordering::Relaxed);
            }
            let _ = request.reply.send(result);
        }
    }
}

async fn commit_group(
    log: &AnyEventLog,
    catalog: &Catalog,
    group: &[CommitRequest],
) -> Result<Vec<Result<i64, AppendFailure>>, AppendFailure> {
    let mut tx = log.begin().await?;
    let outcomes = log.append_many_in(&mut tx, group).await?;
    let mut rows = Vec::new();
    let mut results = Vec::with_capacity(group.len());
    for (request, outcome) in group.iter().zip(&outcomes) {
        results.push(match outcome {
            StreamAppendOutcome::Appended { new_version, .. } => {
                rows.push((request.store, &request.state, *new_version, request.now));
                Ok(*new_version)
            }
            StreamAppendOutcome::Conflict => Err(AppendFailure::Conflict),
            StreamAppendOutcome::Duplicate => Err(AppendFailure::Duplicate),
        });
    }
    if !rows.is_empty() {
        tenant_state::write_many_in(&mut tx, &rows, catalog).await?;
        for (request, outcome) in group.iter().zip(&outcomes) {
            if matches!(outcome, StreamAppendOutcome::Appended { .. }) {
                for (key, answer) in &request.answers {
                    answers::insert_in(&mut tx, request.store, &key.key, &key.request_hash, answer, request.now)
                        .await?;
                }
            }
        }
        log.commit(tx).await?;
    }
    Ok(results)
}

enum BatchResult {
    Done(Vec<Result<Answer, ServiceError>>),
    /// The batch hit an idempotency key already in the log: decide its commands one by one.
    Split,
}

enum AppendFailure {
    Conflict,
    Duplicate,
    Failed(ServiceError),
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
    let mut answers: Vec<Answer> = Vec::with_capacity(decided.len());
    for item in decided {
        let answer = match item {
            Decided::Answered(answer) | Decided::Accepted { answer, .. } => answer,
            Decided::SameAs(earlier) => answers[earlier].clone(),
        };
        answers.push(answer);
    }
    answers.into_iter().map(Ok).collect()
}

fn refusal(error: &DomainError, meta: &CommandMeta) -> Answer {
    Answer { status: error.http_status(), body: views::error_body(error, &meta.correlation_id) }
}

fn key_reused(meta: &CommandMeta) -> Answer {
    views::plain_error(
        422,
        "idempotency_key_reused",
        "this Idempotency-Key was used with another request body",
        &meta.correlation_id,
    )
}

fn replay_or_reused(first: &answers::StoredAnswer, request: &IdempotencyRequest, meta: &CommandMeta) -> Answer {
    if first.request_hash == request.request_hash {
        first.answer.clone()
    } else {
        key_reused(meta)
    }
}
