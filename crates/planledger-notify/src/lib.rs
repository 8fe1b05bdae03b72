//! The ledger tells the world: webhook notifications out, and a followable feed of its log.
//!
//! - A projector follows the gap-safe global log ([`Notifier::project_page`]): each event's
//!   notices ([`notice::notices_of`]) become deliveries, one per endpoint that wants them, in the
//!   outbox ([`outbox`]), written with the projector's checkpoint in one transaction. A notice's
//!   id is deterministic and a delivery is unique on (endpoint, notice), so projecting an event
//!   again (a restart, a second node, a replay) never sends twice; rebuilding a read model does
//!   not touch the outbox at all.
//! - A deliverer ([`Notifier::dispatch_due`]) sends what is due, signed as the Standard Webhooks
//!   specification says ([`signing`]), each store's deliveries to an endpoint in order. Each
//!   endpoint has a lane of its own: at most [`NotifyConfig::per_endpoint`] attempts in flight,
//!   and a pause after consecutive failures, so a slow or dead endpoint holds up only its own
//!   deliveries. A warning is checked against the store's state first and skipped if it no
//!   longer applies. Failures are retried with exponential backoff and jitter for
//!   [`NotifyConfig::retry_for`], then the delivery is marked failed; an endpoint that has failed
//!   for [`NotifyConfig::disable_after`] is disabled with the reason. Deliveries go only where
//!   the outbound address policy permits ([`address`]).
//! - Both run on one node at a time (`runtime::run_as_leader`); delivery is at least once, with
//!   the same `webhook-id` on every attempt, so a receiver deduplicates a redelivery.
//! - [`feed`]: `GET /v1/events`, the log itself for services that would rather follow it.

pub mod address;
pub mod feed;
pub mod notice;
pub mod outbox;
pub mod signing;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use planledger_domain::{Event, StoreId};
use planledger_projections::runtime::{run_as_leader, ProjectorState};
use planledger_service::CommandService;
use planledger_store::{EventLog, StoreError};
use tokio::sync::watch;

use crate::notice::{notices_of, still_applies, Kind, Source};
use crate::outbox::{Attempt, Delivery, DeliveryStatus, Endpoint, EndpointChange, Settle};

/// The projector's checkpoint and lock name.
pub const PROJECTOR: &str = "notifications";
/// The deliverer's lock name.
const DELIVERER: &str = "webhook_deliveries";
/// Events projected per step.
const PAGE: i64 = 500;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// How long a receiver has to answer one attempt.
    pub timeout: Duration,
    /// How long a delivery is retried after its first attempt before it is marked failed.
    pub retry_for: TimeDelta,
    /// How long an endpoint may fail every attempt before it is disabled.
    pub disable_after: TimeDelta,
    /// Attempts in flight at once to one endpoint.
    pub per_endpoint: usize,
    /// Where deliveries may go beside public addresses.
    pub address_policy: address::AddressPolicy,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_for: TimeDelta::days(3),
            disable_after: TimeDelta::days(5),
            per_endpoint: 4,
            address_policy: address::AddressPolicy::default(),
        }
    }
}

/// Why an endpoint could not be registered or changed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Its URL is one the outbound address policy refuses.
    #[error(transparent)]
    Refused(#[from] address::Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One endpoint's share of the deliverer: its attempts in flight, and its failures in a row.
#[derive(Debug, Default)]
struct Lane {
    busy: usize,
    failures: u32,
    /// After failures in a row, no new attempt starts before this. On the service's clock, as
    /// every delivery time is, so a test's clock (and a replayed history) drives it too.
    paused_until: Option<DateTime<Utc>>,
}

impl Lane {
    /// How long a lane rests after `failures` attempts in a row got no answer or an error: 5 s,
    /// doubling, at most 5 minutes. A success ends the rest.
    fn pause(failures: u32) -> Duration {
        Duration::from_secs(5 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(300))
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    pub deliveries_created: AtomicU64,
    pub delivered: AtomicU64,
    pub attempts_failed: AtomicU64,
    pub skipped: AtomicU64,
    pub gave_up: AtomicU64,
    pub endpoints_disabled: AtomicU64,
}

impl NotifyMetrics {
    /// Every delivery counter with its outcome's name.
    pub fn outcomes(&self) -> [(&'static str, u64); 5] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("created", n(&self.deliveries_created)),
            ("delivered", n(&self.delivered)),
            ("attempt_failed", n(&self.attempts_failed)),
            ("skipped", n(&self.skipped)),
            ("failed", n(&self.gave_up)),
        ]
    }
}

/// A new endpoint's registration.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub description: Option<String>,
    pub kinds: Vec<Kind>,
    pub event_types: Option<Vec<String>>,
}

/// What an operator's retry of a delivery found.
#[derive(Debug, Clone, PartialEq)]
pub enum Retry {
    Requeued(Delivery),
    /// Pending or delivered: nothing to retry.
    NotRetryable(Delivery),
    NotFound,
}

/// Notifications out; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: CommandService,
    config: NotifyConfig,
    http: reqwest::Client,
    metrics: NotifyMetrics,
    /// Deliveries being attempted now (the deliverer does not start them twice).
    in_flight: Mutex<HashSet<String>>,
    lanes: Mutex<HashMap<String, Lane>>,
}

impl Notifier {
    pub fn new(service: CommandService, config: NotifyConfig) -> Self {
        // No redirects: a receiver answers where it was registered, and a redirect to another
        // host would carry the signed body somewhere nobody registered. No proxy from the
        // environment: the policy is checked on the address the client connects to, which
        // the resolver hands it (see `address`).
        let resolver = address::PolicyResolver { policy: Arc::new(config.address_policy.clone()) };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .user_agent(concat!("planledger/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                service,
                config,
                http,
                metrics: NotifyMetrics::default(),
                in_flight: Mutex::default(),
                lanes: Mutex::default(),
            }),
        }
    }

    pub fn metrics(&self) -> &NotifyMetrics {
        &self.inner.metrics
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.service.clock().now()
    }

    fn log(&self) -> &planledger_store::AnyEventLog {
        self.inner.service.log()
    }

    // ---- endpoints -----------------------------------------------------------------------

    /// Registers an endpoint, enabled, with a new secret (the only time it is shown), if the
    /// outbound address policy permits its URL.
    pub async fn create_endpoint(&self, new: NewEndpoint) -> Result<Endpoint, EndpointError> {
        self.check_url(&new.url).await?;
        let now = self.now();
        let endpoint = Endpoint {
            id: format!("ep_{}", uuid::Uuid::now_v7().simple()),
            url: new.url,
            description: new.description,
            kinds: new.kinds,
            event_types: new.event_types,
            secret: signing::new_secret(),
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        outbox::create_endpoint(self.log(), &endpoint).await?;
        Ok(endpoint)
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        outbox::list_endpoints(self.log()).await
    }

    pub async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        outbox::get_endpoint(self.log(), id).await
    }

    pub async fn update_endpoint(&self, id: &str, change: &EndpointChange) -> Result<Option<Endpoint>, EndpointError> {
        if let Some(url) = &change.url {
            self.check_url(url).await?;
        }
        Ok(outbox::update_endpoint(self.log(), id, change, self.now()).await?)
    }

    /// The outbound address policy's verdict on an endpoint's URL, as it is registered.
    pub async fn check_url(&self, url: &str) -> Result<(), address::Refused> {
        match reqwest::Url::parse(url) {
            Ok(url) => self.inner.config.address_policy.check_url(&url).await,
            // `checked_url` let it through, so it parses; nothing to resolve otherwise.
            Err(_) => Ok(()),
        }
    }

    pub async fn deliveries(
        &self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        outbox::list_deliveries(self.log(), endpoint_id, status, after, limit).await
    }

    /// A delivery with every attempt made.
    pub async fn delivery(&self, id: &str) -> Result<Option<(Delivery, Vec<Attempt>)>, StoreError> {
        let Some(delivery) = outbox::get_delivery(self.log(), id).await? else {
            return Ok(None);
        };
        let attempts = outbox::attempts_of(self.log(), id).await?;
        Ok(Some((delivery, attempts)))
    }

    /// An operator's retry of a failed (or skipped) delivery: attempted again shortly, with a
    /// fresh retry period.
    pub async fn retry(&self, id: &str) -> Result<Retry, StoreError> {
        let log = self.log();
        let requeued = outbox::requeue(log, id, self.now()).await?;
        Ok(match outbox::get_delivery(log, id).await? {
            None => Retry::NotFound,
            Some(delivery) if requeued => Retry::Requeued(delivery),
            Some(delivery) => Retry::NotRetryable(delivery),
        })
    }

    // ---- the projector -------------------------------------------------------------------

    /// One step of the projector: the notices of up to a page of events after its checkpoint
    /// become deliveries, in the transaction that moves the checkpoint. Answers how many events.
    pub async fn project_page(&self) -> Result<usize, StoreError> {
        let log = self.log();
        let checkpoint = log.load_checkpoint(PROJECTOR).await?;
        let events = log.read_all(checkpoint, PAGE).await?;
        let Some(last) = events.last().map(|e| e.checkpoint) else {
            return Ok(0);
        };
        let endpoints = outbox::enabled_endpoints(log).await?;
        let catalog = self.inner.service.catalog();
        let leads = catalog.notifications();
        let now = self.now();
        let mut tx = log.begin().await?;
        let mut created = 0;
        for recorded in &events {
            if endpoints.is_empty() {
                break;
            }
            let Some(store) = StoreId::from_stream_name(recorded.stream_id.as_str()) else {
                continue;
            };
            let event = match Event::from_stored(
                &recorded.event_type,
                recorded.schema_version,
                recorded.data.clone(),
                recorded.recorded_at,
            ) {
                Ok(event) => event,
                Err(error) => {
                    // The log is the truth; a notice is not worth stopping every other one for.
                    tracing::error!(%error, event_id = %recorded.event_id, "an event cannot be read: no notices for it");
                    continue;
                }
            };
            let source = Source {
                store,
                event_id: recorded.event_id,
                version: recorded.version,
                correlation_id: &recorded.correlation_id,
                recorded_at: recorded.recorded_at,
            };
            for notice in notices_of(source, &event, leads) {
                created += outbox::insert_deliveries_in(&mut tx, &notice, &endpoints, now).await?;
            }
        }
        match log.compare_and_set_checkpoint_in(&mut tx, PROJECTOR, checkpoint, last).await {
            Ok(()) => {}
            // Another instance moved it: its deliveries stand, this page is dropped.
            Err(StoreError::CheckpointMoved { .. }) => return Ok(0),
            Err(e) => return Err(e),
        }
        log.commit(tx).await?;
        self.inner.metrics.deliveries_created.fetch_add(created, Ordering::Relaxed);
        Ok(events.len())
    }

    // ---- the deliverer -------------------------------------------------------------------

    /// One step of the deliverer: starts an attempt at every due delivery whose endpoint's lane
    /// has room, without waiting for any of them. Answers how many started; they finish on
    /// their own (see [`Notifier::deliver_due`] to wait for them).
    pub async fn dispatch_due(&self) -> Result<usize, StoreError> {
        Ok(self.start_due().await?.len())
    }

    /// Starts what is due, as [`Notifier::dispatch_due`], and waits for those attempts. Answers
    /// how many were made.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let started = self.start_due().await?;
        let count = started.len();
        for attempt in started {
            match attempt.await {
                Ok(outcome) => outcome?,
                Err(error) => tracing::error!(%error, "a delivery attempt failed to run"),
            }
        }
        Ok(count)
    }

    async fn start_due(&self) -> Result<Vec<tokio::task::JoinHandle<Result<(), StoreError>>>, StoreError> {
        let log = self.log();
        let now = self.now();
        // The common case, every idle tick: nothing due anywhere, one index probe.
        if outbox::due_deliveries(log, now, None, 1).await?.is_empty() {
            return Ok(Vec::new());
        }
        let per_endpoint = self.inner.config.per_endpoint.max(1);
        let mut started = Vec::new();
        for endpoint in outbox::enabled_endpoints(log).await? {
            let (busy, open) = {
                let lanes = self.inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
                let lane = lanes.get(&endpoint.id);
                let busy = lane.map_or(0, |l| l.busy);
                let resting = lane.and_then(|l| l.paused_until).is_some_and(|until| now < until);
                (busy, busy < per_endpoint && !resting)
            };
            if !open {
                continue;
            }
            // The attempts in flight are still pending and due: read past them.
            let limit = i64::try_from(per_endpoint + busy).unwrap_or(i64::MAX);
            let endpoint = Arc::new(endpoint);
            for delivery in outbox::due_deliveries(log, now, Some(&endpoint.id), limit).await? {
                if started.len() >= per_endpoint * 64 || !self.claim(&delivery, per_endpoint) {
                    continue;
                }
                let (this, endpoint) = (self.clone(), endpoint.clone());
                started.push(tokio::spawn(async move { this.attempt_claimed(&delivery, &endpoint).await.map(|_| ()) }));
            }
        }
        Ok(started)
    }

    /// Attempts a delivery as a listing showed it, now, unless it has moved on since (another
    /// attempt settled it, or is in flight); answers whether an attempt went well, `None` if
    /// none was made. A listing read just before another attempt at the same delivery settled
    /// and gave its place back would otherwise send it a second time.
    pub async fn attempt_listed(&self, delivery: &Delivery) -> Result<Option<bool>, StoreError> {
        let Some(endpoint) = outbox::get_endpoint(self.log(), &delivery.endpoint_id).await? else {
            return Ok(None);
        };
        if !self.claim(delivery, self.inner.config.per_endpoint.max(1)) {
            return Ok(None);
        }
        self.attempt_claimed(delivery, &Arc::new(endpoint)).await
    }

    /// The attempt of a delivery whose lane place is taken ([`Notifier::claim`]); gives it back.
    async fn attempt_claimed(&self, delivery: &Delivery, endpoint: &Endpoint) -> Result<Option<bool>, StoreError> {
        // Read again once the place is held: what the listing showed may have been settled
        // since by an attempt that has given its place back.
        let current = outbox::get_delivery(self.log(), &delivery.id).await;
        let still_due = matches!(&current, Ok(Some(now)) if now.status == DeliveryStatus::Pending
            && now.attempts == delivery.attempts && now.next_attempt_at <= self.now());
        if !still_due {
            self.release(delivery, None);
            return current.map(|_| None);
        }
        let outcome = self.attempt(delivery, endpoint).await;
        self.release(delivery, Some(outcome.as_ref().ok().copied().unwrap_or(false)));
        outcome.map(Some)
    }

    /// Takes a place in the delivery's lane for it, unless it is in flight or the lane is full.
    fn claim(&self, delivery: &Delivery, per_endpoint: usize) -> bool {
        let mut lanes = self.inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(delivery.endpoint_id.clone()).or_default();
        if lane.busy >= per_endpoint {
            return false;
        }
        if !self.inner.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(delivery.id.clone()) {
            return false;
        }
        lane.busy += 1;
        true
    }

    /// Gives the lane's place back; `answered`: the endpoint took the delivery (or it was
    /// skipped), which ends a rest; `None`: no attempt was made, the lane's health is as it was.
    fn release(&self, delivery: &Delivery, answered: Option<bool>) {
        self.inner.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&delivery.id);
        let mut lanes = self.inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(delivery.endpoint_id.clone()).or_default();
        lane.busy = lane.busy.saturating_sub(1);
        let Some(answered) = answered else { return };
        if answered {
            lane.failures = 0;
            lane.paused_until = None;
        } else {
            lane.failures = lane.failures.saturating_add(1);
            let pause = chrono::Duration::from_std(Lane::pause(lane.failures)).unwrap_or(chrono::Duration::MAX);
            lane.paused_until = Some(self.now() + pause);
        }
    }

    /// One attempt at `delivery` (or its skip); answers whether it went well (delivered, or
    /// nothing to send), which the endpoint's lane counts.
    async fn attempt(&self, delivery: &Delivery, endpoint: &Endpoint) -> Result<bool, StoreError> {
        let metrics = &self.inner.metrics;
        if delivery.deadline.is_some() {
            let store = StoreId::parse(&delivery.store_id).ok();
            let state = match store {
                Some(store) => {
                    planledger_projections::tenant_state::load(self.log(), store).await?.map(|row| row.state)
                }
                None => None,
            };
            if !state.is_some_and(|state| still_applies(delivery.kind, delivery.deadline, &state)) {
                let reason = "not sent: the store no longer faces this deadline".to_owned();
                outbox::settle(
                    self.log(),
                    delivery,
                    None,
                    &Settle::Skipped(reason),
                    self.now(),
                    self.inner.config.disable_after,
                )
                .await?;
                metrics.skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(true);
            }
        }
        let attempt = self.send(delivery, endpoint).await;
        let now = self.now();
        let delivered = attempt.status_code.is_some_and(|code| (200..300).contains(&code));
        let settle = if delivered {
            metrics.delivered.fetch_add(1, Ordering::Relaxed);
            Settle::Delivered
        } else {
            metrics.attempts_failed.fetch_add(1, Ordering::Relaxed);
            let first = delivery.first_attempt_at.unwrap_or(attempt.at);
            let next = now + backoff(&delivery.id, delivery.attempts + 1);
            if next > first + self.inner.config.retry_for {
                metrics.gave_up.fetch_add(1, Ordering::Relaxed);
                Settle::GaveUp
            } else {
                Settle::RetryAt(next)
            }
        };
        let disabled =
            outbox::settle(self.log(), delivery, Some(&attempt), &settle, now, self.inner.config.disable_after).await?;
        if disabled {
            metrics.endpoints_disabled.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint disabled: it has failed for days");
        }
        Ok(delivered)
    }

    /// One signed POST of a delivery's body. What an attempt that got no HTTP answer records is
    /// one text whatever the cause (refused, reset, timed out, not HTTP), with no latency, so
    /// the attempt log cannot be used to tell an open port from a closed one; the cause is in
    /// the server's debug log.
    async fn send(&self, delivery: &Delivery, endpoint: &Endpoint) -> Attempt {
        let at = self.now();
        let attempt = delivery.attempts + 1;
        let no_answer = |error: String| Attempt { attempt, at, status_code: None, latency_ms: 0, error: Some(error) };
        // A URL with an IP address is not resolved, so the resolver's check does not see it.
        if let Some(refused) = self.refused_literal(&endpoint.url) {
            return no_answer(refused.to_string());
        }
        let started = Instant::now();
        // The signature's time is the wall clock's: receivers check it against theirs.
        let timestamp = Utc::now().timestamp();
        let signature = signing::sign(&endpoint.secret, &delivery.notification_id, timestamp, &delivery.body);
        let request = self
            .inner
            .http
            .post(&endpoint.url)
            .timeout(self.inner.config.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.notification_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature.unwrap_or_default())
            .body(delivery.body.clone());
        let outcome = request.send().await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match outcome {
            Ok(response) => {
                let code = i64::from(response.status().as_u16());
                let error = (!response.status().is_success()).then(|| format!("the endpoint answered {code}"));
                Attempt { attempt, at, status_code: Some(code), latency_ms, error }
            }
            Err(e) => {
                let cause = root_cause(&e);
                tracing::debug!(delivery = %delivery.id, endpoint = %endpoint.id, %cause, timeout = e.is_timeout(), "a delivery attempt got no answer");
                match find_refusal(&e) {
                    Some(refused) => no_answer(refused.to_string()),
                    None => no_answer(NO_ANSWER.to_owned()),
                }
            }
        }
    }

    /// The policy's refusal of a URL whose host is an IP address, if it refuses it.
    fn refused_literal(&self, url: &str) -> Option<address::Refused> {
        let url = reqwest::Url::parse(url).ok()?;
        let host = url.host_str()?;
        let address: std::net::IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        self.inner.config.address_policy.check(host, address).err()
    }

    /// Runs the projector and the deliverer, each on the one node holding its lock, until `stop`.
    pub async fn run(&self, stop: watch::Receiver<bool>) {
        let log = self.log().clone();
        let (projector, deliverer) = (self.clone(), self.clone());
        let project = run_as_leader(&log, PROJECTOR, Arc::new(ProjectorState::default()), stop.clone(), move || {
            let this = projector.clone();
            async move { this.project_page().await }
        });
        let deliver = run_as_leader(&log, DELIVERER, Arc::new(ProjectorState::default()), stop, move || {
            let this = deliverer.clone();
            async move { this.dispatch_due().await }
        });
        tokio::join!(project, deliver);
    }
}

/// What an endpoint's URL may be: `http` or `https`, a host name (letters, digits, single
/// hyphens; the last label not a number) or an IPv4 address, an optional port, an optional path
/// of printable ASCII. No user name or password (a secret in a URL ends up in logs), no IPv6
/// literal, no internationalized name (use an ASCII alias). The contract publishes this pattern,
/// so a URL it calls valid is one the server accepts, and the other way round.
pub const URL_PATTERN: &str = concat!(
    r"^[hH][tT][tT][pP][sS]?://",
    r"(([A-Za-z0-9]+(-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*",
    r"|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9]))",
    r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"(/[!-~]*)?$",
);

/// The longest URL an endpoint may have.
pub const URL_MAX_LENGTH: usize = 2048;

/// An endpoint's URL as it is stored (normalized), or why it cannot be one ([`URL_PATTERN`]).
pub fn checked_url(text: &str) -> Result<String, &'static str> {
    static PATTERN: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(URL_PATTERN).ok());
    if text.len() > URL_MAX_LENGTH {
        return Err("must be at most 2048 characters");
    }
    let why = "must be an http or https URL with an ASCII host name or IPv4 address, no user name or password";
    if !PATTERN.as_ref().is_some_and(|p| p.is_match(text)) {
        return Err(why);
    }
    reqwest::Url::parse(text).map(|url| url.to_string()).map_err(|_| why)
}

/// The raw event types an endpoint chose for `ledger.event`: each one of the ledger's (`None`
/// for an empty list: every type), sorted, once each.
pub fn checked_event_types(types: &[String]) -> Result<Option<Vec<String>>, String> {
    let mut checked = Vec::new();
    for t in types {
        if !planledger_domain::event::EVENT_TYPES.contains(&t.as_str()) {
            return Err(format!(
                "{t:?} is not an event type of the ledger ({})",
                planledger_domain::event::EVENT_TYPES.join(", ")
            ));
        }
        checked.push(t.clone());
    }
    checked.sort();
    checked.dedup();
    Ok((!checked.is_empty()).then_some(checked))
}

/// What an attempt that got no HTTP answer records.
pub const NO_ANSWER: &str = "no HTTP answer from the endpoint (connection failed, reset or timed out)";

/// The address policy's refusal somewhere in `e`'s causes.
fn find_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a address::Refused> {
    let mut cause = Some(e);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<address::Refused>() {
            return Some(refused);
        }
        cause = error.source();
    }
    None
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// How long to wait after the `failures`-th failed attempt: 5 s, then four times longer each
/// time, at most 6 h, each spread by up to ±20 % (derived from the delivery and the attempt, so
/// the endpoints of a burst do not all come back at once, and a test can predict it).
pub fn backoff(delivery_id: &str, failures: i64) -> TimeDelta {
    use sha2::{Digest, Sha256};
    let exponent = u32::try_from(failures.clamp(1, 12) - 1).unwrap_or(0);
    let base = (5_i64 * 4_i64.pow(exponent)).min(6 * 3600);
    let digest = Sha256::digest(format!("{delivery_id}\n{failures}").as_bytes());
    let spread = i64::from(u16::from_be_bytes([digest[0], digest[1]]) % 401) - 200; // -200..=200 per mille
    TimeDelta::milliseconds(base * 1000 + base * spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_patterns_and_every_match_parses() {
        for good in [
            "https://crm.internal/hooks/planledger",
            "HTTP://localhost:8080",
            "http://10.0.0.255:65535/a?b=c#d",
            "http://a-b.c1/%zz",
        ] {
            assert!(checked_url(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://x.example/",
            "https://user:pw@x.example/",
            "https://x.example?q",
            "http://1.2.3.4.5/",
            "http://256.1.1.1/",
            "http://a.1/",
            "http://xn--a.example/",
            "http://[::1]/",
            "http://caf\u{e9}.example/",
            "http://a:0/",
            "http://a:65536/",
            "http://a/ b",
            "http://",
        ] {
            assert!(checked_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_fourfold_to_six_hours_with_a_bounded_spread() {
        for failures in 1..=20 {
            let base = (5_i64 * 4_i64.pow(u32::try_from(failures.min(12) - 1).unwrap())).min(6 * 3600);
            let wait = backoff("dlv_x", failures).num_milliseconds();
            assert!(wait >= base * 800 && wait <= base * 1200, "attempt {failures}: {wait} ms");
        }
        assert_eq!(backoff("dlv_x", 3), backoff("dlv_x", 3));
        // Over three days a delivery is attempted about a dozen times.
        let mut elapsed = TimeDelta::zero();
        let mut attempts = 1;
        while elapsed + backoff("dlv_y", attempts) <= TimeDelta::days(3) {
            elapsed += backoff("dlv_y", attempts);
            attempts += 1;
        }
        assert!((12..=20).contains(&attempts), "{attempts} attempts in three days");
    }
}
