//! A store's worker: the one task that decides its commands.
//!
//! The worker keeps the store's state and version cached, takes every command waiting in its
//! queue, decides them in order on that state (due transitions first; `decide_batch`, no IO)
//! and hands the batch to a committer (`committer.rs`) with the version it started from. A
//! conflict (another node appended) catches up on the stream and decides again, a bounded
//! number of times with jitter, then answers 409. Keyed commands are decided without reading
//! stored answers first; a batch the commit answers `Duplicate` is decided again with them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use planledger_domain::StoreId;
use planledger_domain::{
    decide, due_transitions, evolve, fold_fingerprint, Catalog, Catalogs, Command, DomainError, Event, TenantState,
};
use planledger_projections::history::{fold_stream, Folded, Until};
use planledger_store::{
    chain_hashes, Chain, EventLog, Expiring, Hash, IdempotencyKey, NewEvent, Snapshot, StreamAppend, StreamId, GENESIS,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::answers;
use crate::committer::{AppendFailure, CommitRequest};
use crate::outcome::{Accepted, Answer, Outcome, Receipt, Refusal, RenderedAnswer};
use crate::service::{stream_of, CommandMeta, IdempotencyRequest, Inner, ServiceError};

pub(crate) struct Job {
    pub(crate) command: Command,
    pub(crate) meta: CommandMeta,
    pub(crate) reply: oneshot::Sender<Result<Answer, ServiceError>>,
}

pub(crate) struct Loaded {
    pub(crate) version: i64,
    pub(crate) state: TenantState,
    /// The chain hash of the event at `version`, once known: receipts are chained to it.
    pub(crate) head: Option<Hash>,
}

/// `event` of `store` as the log stores it: with its correlation, causation and actor, the
/// fingerprint of the rules that decided it, and its idempotency key (the ledger's own for a
/// time-driven fact or a refund, else the caller's).
pub(crate) fn new_event(
    store: StoreId,
    event: &Event,
    meta: &CommandMeta,
    actor: &str,
    causation: &str,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> NewEvent {
    let mut new = NewEvent::new(
        event.event_type(),
        event.schema_version(),
        event.data(),
        meta.correlation_id.clone(),
        actor,
        catalog.fingerprint(),
        now,
    )
    .with_causation(causation);
    if let Event::QuotaConsumed { consumption_id, .. } = event {
        // A consumption is found again (for a refund) by its event id.
        new.event_id = *consumption_id;
    }
    // The ledger's own keys and clients' keys live in separate namespaces (see `KeyScope`).
    new.idempotency_key = match event.system_idempotency_key(store) {
        Some(key) => Some(IdempotencyKey::system(key)),
        None => meta.idempotency.as_ref().map(|i| IdempotencyKey::client(i.key.clone())),
    };
    new
}

/// One store's queue consumer.
pub(crate) struct Worker {
    pub(crate) inner: Arc<Inner>,
    pub(crate) store: StoreId,
    pub(crate) generation: u64,
    pub(crate) cache: Option<Loaded>,
    /// The catalog versions the batch in hand is decided under: the service's, taken once per
    /// batch, so that one batch never sees two sets of versions and its `tenant_state` row is
    /// built with the rules it was decided under. The store's own version picks among them.
    pub(crate) catalogs: Arc<Catalogs>,
    /// The first answers this worker committed lately, by key: a client's retry usually comes
    /// back to the same worker soon, and is then answered without a database read. A stored
    /// answer never changes, so keeping a copy is safe.
    pub(crate) recent: RecentAnswers,
}

/// A bounded memory of committed first answers (oldest forgotten first), each with the time it
/// was stored, so that an answer retention has deleted from the database is not replayed from
/// memory either.
#[derive(Default)]
pub(crate) struct RecentAnswers {
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

/// How the next attempt at a batch goes.
struct Retry {
    /// The cached state may be behind the log (another node appended).
    stale: bool,
    /// Read the stored answers of the batch's keys before deciding.
    load_answers: bool,
    /// The last attempt only lacked the stored answers (no contention: no pause).
    answers_missing: bool,
}

/// A batch decided on a state: the events to append, what each job is answered, the state
/// after the events.
struct DecidedBatch {
    events: Vec<NewEvent>,
    decided: Vec<Decided>,
    state: TenantState,
    /// The chain the events continue, as the receipts were rendered with it.
    chain: Chain,
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
    pub(crate) async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
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
        self.load_up_to(i64::MAX).await
    }

    /// As `load`, from a snapshot no newer than `version` (after a rewind, a snapshot may be
    /// of a version the log no longer has).
    async fn load_up_to(&self, version: i64) -> Result<Loaded, ServiceError> {
        let stream = stream_of(self.store)?;
        let base = match self.inner.log.load_snapshot(&stream).await? {
            Some(snapshot) if snapshot.fold_fingerprint == fold_fingerprint() && snapshot.version <= version => {
                match serde_json::from_value::<TenantState>(snapshot.state) {
                    Ok(state) => Loaded { version: snapshot.version, state, head: None },
                    Err(_) => Loaded { version: 0, state: TenantState::default(), head: None },
                }
            }
            _ => Loaded { version: 0, state: TenantState::default(), head: None },
        };
        self.catch_up(base).await
    }

    /// After a conflict: `loaded` with the events appended since (by another node); or, when
    /// the log holds fewer events than `loaded` says (the database was rewound: a failover to a
    /// standby that had not received the last commits), the stream as the log has it now.
    /// Reading forward alone would find nothing newer, and every later commit would conflict
    /// with a version the log does not have, until a restart.
    async fn refresh(&self, loaded: Loaded) -> Result<Loaded, ServiceError> {
        let cached = loaded.version;
        let caught_up = self.catch_up(loaded).await?;
        if caught_up.version > cached {
            return Ok(caught_up);
        }
        let (current, head) = self.inner.log.stream_head(&stream_of(self.store)?).await?;
        if current == cached && caught_up.head.is_some_and(|known| known != head) {
            // The log holds another event at this version than the one folded (a failover to a
            // standby that lost it, and another since): the stream is read again.
            self.inner.metrics.stream_rewinds.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(store = %self.store, version = current, "the log's last event is not the one this store's state was folded from: the stream is read again");
            return self.load_up_to(current).await;
        }
        if current >= cached {
            return Ok(caught_up);
        }
        self.inner.metrics.stream_rewinds.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            store = %self.store,
            cached,
            current,
            "the log is behind this store's cached state (a database failover?): the stream is read again"
        );
        self.load_up_to(current).await
    }

    /// Folds the events appended after `loaded` (by another node) into it.
    async fn catch_up(&self, loaded: Loaded) -> Result<Loaded, ServiceError> {
        let from = Folded::at_version(loaded.state, loaded.version);
        let folded =
            fold_stream(&self.inner.log, self.store, from, Until::END, |_, _, _| Ok::<_, ServiceError>(())).await?;
        Ok(Loaded { version: folded.version, state: folded.state, head: folded.head.or(loaded.head) })
    }

    /// `loaded` with its chain head, read if it is not known yet (a state from a snapshot);
    /// `None` if the stream moved since (the state is stale).
    async fn with_head(&self, mut loaded: Loaded) -> Result<Result<Loaded, Loaded>, ServiceError> {
        if loaded.head.is_some() {
            return Ok(Ok(loaded));
        }
        if loaded.version == 0 {
            loaded.head = Some(GENESIS);
            return Ok(Ok(loaded));
        }
        let (version, head) = self.inner.log.stream_head(&stream_of(self.store)?).await?;
        if version != loaded.version {
            return Ok(Err(loaded));
        }
        loaded.head = Some(head);
        Ok(Ok(loaded))
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
        self.catalogs = inner.catalogs();
        let all = |e: ServiceError| BatchResult::Done(jobs.iter().map(|_| Err(e.clone())).collect());
        let stream = match stream_of(self.store) {
            Ok(stream) => stream,
            Err(e) => return all(e),
        };
        let keys: Vec<&str> = jobs.iter().filter_map(|j| j.meta.idempotency.as_ref().map(|i| i.key.as_str())).collect();
        inner.metrics.batches.fetch_add(1, Ordering::Relaxed);
        // Keyed commands are decided without looking for stored answers first: the committer
        // looks for the whole group at once and answers `Duplicate` for a batch with a key
        // answered before. Then (and for a single command split out of a batch) they are read.
        let mut retry = Retry { stale: false, load_answers: !may_split, answers_missing: false };
        for attempt in 0..inner.config.max_attempts {
            if attempt > 0 && !retry.answers_missing {
                inner.metrics.retries.fetch_add(1, Ordering::Relaxed);
                let jitter = u64::from(Uuid::now_v7().as_bytes()[15] % 8);
                tokio::time::sleep(Duration::from_millis(1 + jitter * u64::from(attempt))).await;
            }
            retry.answers_missing = false;
            let loaded = match (self.cache.take(), retry.stale) {
                (Some(loaded), false) => Ok(loaded),
                (Some(loaded), true) => self.refresh(loaded).await,
                (None, _) => self.load().await,
            };
            let loaded = match loaded {
                Ok(loaded) => self.with_head(loaded).await,
                Err(e) => Err(e),
            };
            let loaded = match loaded {
                Ok(Ok(loaded)) => Ok(loaded),
                Ok(Err(stale)) => {
                    self.cache = Some(stale);
                    retry.stale = true;
                    continue;
                }
                Err(e) => Err(e),
            };
            let (loaded, stored) = match loaded {
                Ok(loaded) => match self.stored_answers(&keys, retry.load_answers).await {
                    Ok(stored) => (loaded, stored),
                    Err(e) => return all(e),
                },
                Err(e) => return all(e),
            };
            let now = inner.clock.now();
            if let Err(e) = self.know_version_of(&loaded.state, now).await {
                self.cache = Some(loaded);
                return all(e);
            }
            let DecidedBatch { events, decided, state: working, chain } =
                self.decide_batch(&stream, &loaded, jobs, &stored, now);
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
                retry.stale = true;
                continue;
            }
            let committed: Vec<(String, answers::StoredAnswer)> = answers
                .iter()
                .map(|(key, answer)| {
                    (
                        key.key.clone(),
                        answers::StoredAnswer { request_hash: key.request_hash.clone(), answer: answer.clone() },
                    )
                })
                .collect();
            let new_head = chain.hashes.last().copied().unwrap_or(chain.expected_head);
            match self.commit(&loaded, events, chain, &working, answers, now).await {
                Ok(new_version) => {
                    self.remember(loaded.version, new_version, working, Some(new_head));
                    for (key, first) in committed {
                        self.recent.remember(key, first, now);
                    }
                    return BatchResult::Done(finish(decided));
                }
                Err(failure) => {
                    if let Some(done) = self.after_failure(failure, loaded, jobs, &keys, may_split, &mut retry).await {
                        return done;
                    }
                }
            }
        }
        all(ServiceError::ConcurrencyConflict)
    }

    /// The stored first answers of `keys`, if they are to be read (see `Retry::load_answers`).
    async fn stored_answers(
        &self,
        keys: &[&str],
        load: bool,
    ) -> Result<HashMap<String, answers::StoredAnswer>, ServiceError> {
        if keys.is_empty() || !load {
            return Ok(HashMap::new());
        }
        self.inner.metrics.answer_lookups.fetch_add(1, Ordering::Relaxed);
        Ok(answers::load(&self.inner.log, self.store, keys).await?)
    }

    /// After a commit that did not write the batch: the batch's answer, or `None` to decide it
    /// again (with `retry` saying how).
    async fn after_failure(
        &mut self,
        failure: AppendFailure,
        loaded: Loaded,
        jobs: &[Job],
        keys: &[&str],
        may_split: bool,
        retry: &mut Retry,
    ) -> Option<BatchResult> {
        let all = |e: ServiceError| BatchResult::Done(jobs.iter().map(|_| Err(e.clone())).collect());
        match failure {
            AppendFailure::Conflict => {
                self.inner.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                self.cache = Some(loaded);
                retry.stale = true;
                None
            }
            AppendFailure::Duplicate if !retry.load_answers && !keys.is_empty() => {
                // A key of this batch was answered before (a retry, or a request on another
                // node): decide again with the stored answers in hand. Nothing was written.
                retry.load_answers = true;
                retry.answers_missing = true;
                self.cache = Some(loaded);
                retry.stale = true;
                None
            }
            AppendFailure::Duplicate if may_split && jobs.len() > 1 => Some(BatchResult::Split),
            AppendFailure::Duplicate => {
                // A key of this one command was used by a request that committed on another
                // node: its stored answer is the answer. Otherwise the log moved: reload.
                let request = jobs[0].meta.idempotency.as_ref()?;
                match self.stored_answers(&[request.key.as_str()], true).await {
                    Ok(stored) => {
                        stored.get(&request.key).map(|first| BatchResult::Done(vec![replay_or_reused(first, request)]))
                    }
                    Err(e) => Some(all(e)),
                }
            }
            AppendFailure::Failed(e) => {
                // Nothing was written: the cache still holds the log's latest state.
                self.cache = Some(loaded);
                Some(all(e))
            }
            // The events may or may not be in the log. Deciding again could decide twice, so
            // the commands are answered as unknown and the next batch reloads.
            AppendFailure::OutcomeUnknown => Some(all(ServiceError::OutcomeUnknown)),
        }
    }

    /// Decides `jobs` in order on `loaded` at `now`, without IO: the due transitions first,
    /// then each command on the state the ones before it left. A job whose key has a first
    /// answer (stored, or remembered by this worker) is answered with it; a repeat of a key
    /// earlier in the batch is answered as that one.
    fn decide_batch(
        &self,
        stream: &StreamId,
        loaded: &Loaded,
        jobs: &[Job],
        stored: &HashMap<String, answers::StoredAnswer>,
        now: DateTime<Utc>,
    ) -> DecidedBatch {
        let inner = &self.inner;
        let mut working = loaded.state.clone();
        let mut events: Vec<NewEvent> = Vec::new();
        // A catalog version that reached the store, then deadlines that passed, come first,
        // whatever the commands turn out to be.
        if working.is_registered() {
            let system = CommandMeta::system(jobs[0].meta.correlation_id.clone());
            let adoption = self.catalogs.adoption_due(&working, now);
            let catalog = self.catalog_for(&working, now);
            for event in adoption.iter().chain(due_transitions(&working, now, &catalog).iter()) {
                // A deadline is caused by the fact that set it (named by its key); a scheduled
                // change by the request that scheduled it.
                let key = event.system_idempotency_key(self.store).unwrap_or_default();
                let causation = working.scheduled_causation(event).map_or(key, str::to_owned);
                events.push(new_event(self.store, event, &system, "system", &causation, now, &catalog));
                working = evolve(working, event);
            }
        }
        let due_count = events.len();
        // The chain hashes of `events` so far, for the receipts.
        let head = loaded.head.unwrap_or(GENESIS);
        let mut chained: Vec<Hash> = Vec::with_capacity(events.len() + jobs.len());
        let mut decided: Vec<Decided> = Vec::with_capacity(jobs.len());
        let mut seen: HashMap<&str, (usize, &str)> = HashMap::new();
        let answers_since = inner.config.retention.expired_before(Expiring::Answers, now);
        for (index, job) in jobs.iter().enumerate() {
            if let Some(request) = &job.meta.idempotency {
                if let Some(first) = stored.get(&request.key).or_else(|| self.recent.get(&request.key, answers_since)) {
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
            // The version the caller could have seen: the log's, and the commands before this
            // one in the batch; not the due transitions this batch decided first.
            let seen_version = loaded.version + (events.len() - due_count) as i64;
            let Some(mut outcome) = self.decide_one(job, loaded.version, seen_version, &mut working, &mut events, now)
            else {
                // Nothing about an unknown store is kept, not even the answer.
                let refusal = Outcome::Refused(Refusal::Rule(DomainError::StoreNotFound));
                decided.push(Decided::Answered(Ok(Answer::Decided(refusal))));
                continue;
            };
            if let Outcome::Accepted(accepted) = &mut outcome {
                // Its own events are the batch's last; those before it were hashed first.
                let own = accepted.facts.len().min(events.len());
                let before = events.len() - own;
                chained.extend(chain_hashes(
                    stream,
                    loaded.version + chained.len() as i64,
                    &chained.last().copied().unwrap_or(head),
                    &events[chained.len()..before],
                ));
                let previous = chained.last().copied().unwrap_or(head);
                accepted.receipt = Receipt::of(stream, loaded.version + before as i64, &previous, &events[before..]);
                chained.extend(accepted.receipt.events.iter().map(|event| event.hash));
            }
            let stored = job.meta.idempotency.as_ref().map(|request| {
                (request.clone(), inner.renderer.render(&outcome, &self.catalogs, &job.meta.correlation_id))
            });
            decided.push(Decided::Recorded { outcome, stored });
        }
        // The events after the last accepted command (a batch of refusals after due
        // transitions) are hashed too.
        chained.extend(chain_hashes(
            stream,
            loaded.version + chained.len() as i64,
            &chained.last().copied().unwrap_or(head),
            &events[chained.len()..],
        ));
        DecidedBatch { events, decided, state: working, chain: Chain { expected_head: head, hashes: chained } }
    }

    /// One command on `working`, its events appended to `events`; `None` for a store that does
    /// not exist (answered, never recorded).
    fn decide_one(
        &self,
        job: &Job,
        loaded_version: i64,
        seen_version: i64,
        working: &mut TenantState,
        events: &mut Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> Option<Outcome> {
        if let Some(expected) = job.meta.expected_version {
            if working.is_registered() && expected != seen_version {
                return Some(Outcome::Refused(Refusal::VersionMoved { expected, current: seen_version }));
            }
        }
        // A plan change takes the catalog version in force: decided under it, recorded with it.
        let adoption = self.catalogs.adoption_for(working, &job.command, now);
        let base = match &adoption {
            Some(adoption) => std::borrow::Cow::Owned(evolve(working.clone(), adoption)),
            None => std::borrow::Cow::Borrowed(&*working),
        };
        let catalog = self.catalog_for(&base, now);
        match decide(&base, &job.command, now, &catalog) {
            Ok(mut own) => {
                drop(base);
                let causation = job.meta.causation_id.clone().unwrap_or_else(|| Uuid::now_v7().to_string());
                if let Some(adoption) = adoption.filter(|_| !own.is_empty()) {
                    own.insert(0, adoption);
                }
                for event in &own {
                    events.push(new_event(self.store, event, &job.meta, &job.meta.actor, &causation, now, &catalog));
                    *working = evolve(std::mem::take(working), event);
                }
                Some(Outcome::Accepted(Box::new(Accepted {
                    store: self.store,
                    command: job.command.clone(),
                    facts: own,
                    state: working.clone(),
                    version: loaded_version + events.len() as i64,
                    decided_at: now,
                    // Filled in by the batch, which knows the hashes before these events.
                    receipt: Receipt { events: Vec::new(), version: 0, head: GENESIS },
                })))
            }
            Err(DomainError::StoreNotFound) => None,
            Err(error) => Some(Outcome::Refused(Refusal::Rule(error))),
        }
    }

    /// Hands the batch to the committer, which writes it with the `tenant_state` row and the
    /// stored answers in one transaction (shared with other stores' batches), and waits. A batch
    /// with no events is a check of the stream's version, in the transaction that stores its
    /// answers.
    async fn commit(
        &self,
        loaded: &Loaded,
        events: Vec<NewEvent>,
        chain: Chain,
        working: &TenantState,
        answers: Vec<(IdempotencyRequest, RenderedAnswer)>,
        now: DateTime<Utc>,
    ) -> Result<i64, AppendFailure> {
        let stream = stream_of(self.store).map_err(AppendFailure::Failed)?;
        let (reply, outcome) = oneshot::channel();
        let request = CommitRequest {
            store: self.store,
            part: StreamAppend { stream, expected: loaded.version, events, chain: Some(chain) },
            state: working.clone(),
            now,
            answers,
            catalogs: self.catalogs.clone(),
            reply,
        };
        if self.inner.committer.send(request).await.is_err() {
            return Err(AppendFailure::Failed(ServiceError::Internal("the committer stopped".into())));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(AppendFailure::Failed(ServiceError::Internal("the committer stopped".into()))))
    }

    /// The rules `state` is decided under at `now` (see `Catalogs::for_store`; a store on a
    /// version this node has not read yet was made known by `know_version_of` first).
    fn catalog_for(&self, state: &TenantState, now: DateTime<Utc>) -> Arc<Catalog> {
        self.catalogs.shown_for(state, now).catalog.clone()
    }

    /// Makes sure this node knows the catalog version `state` is on: a store registered or
    /// moved a moment ago on another node may be on a version published since this node last
    /// looked. Then the versions are read again; a version the ledger does not have is an error
    /// (nothing is decided under rules that are not the store's).
    async fn know_version_of(&mut self, state: &TenantState, now: DateTime<Utc>) -> Result<(), ServiceError> {
        if self.catalogs.for_store(state, now).is_some() {
            return Ok(());
        }
        let fresh = crate::catalogs::load(&self.inner.log)
            .await
            .map_err(|e| ServiceError::Internal(format!("reading the catalog versions: {e}")))?;
        if let Some(fresh) = fresh.filter(|fresh| fresh.for_store(state, now).is_some()) {
            let fresh = Arc::new(fresh);
            self.inner.replace_catalogs(fresh.clone());
            self.catalogs = fresh;
            return Ok(());
        }
        Err(ServiceError::Internal(format!(
            "the store is on catalog version {}, which this ledger does not have",
            state.catalog_version.unwrap_or_default()
        )))
    }

    fn remember(&mut self, old_version: i64, new_version: i64, state: TenantState, head: Option<Hash>) {
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
        self.cache = Some(Loaded { version: new_version, state, head });
    }
}

enum BatchResult {
    Done(Vec<Result<Answer, ServiceError>>),
    /// The batch hit an idempotency key already in the log: decide its commands one by one.
    Split,
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
