//! A typed client of planledger's HTTP API for other Rust services.
//!
//! Requests and answers are the contract's own types (`planledger-wire`), the ones the server
//! parses and renders with, so a field cannot be misspelt on one side only.
//!
//! ```no_run
//! # async fn example() -> Result<(), planledger_client::Error> {
//! use planledger_client::{Client, Options};
//! use planledger_client::wire::{Consume, RegisterStore};
//!
//! let client = Client::new("http://127.0.0.1:8080").with_token("SECRET");
//! let store = client.register_store(&RegisterStore::default(), &Options::key("signup-8812")).await?;
//! let id = store.value.store_id;
//! client.start_trial(id, &Default::default(), &Options::default()).await?;
//! let consumed = client
//!     .consume(id, &Consume { action: "create_article".into(), amount: Some(3) }, &Options::key("article-77"))
//!     .await?;
//! println!("{} of {:?} used", consumed.value.used, consumed.value.limit);
//! # Ok(()) }
//! ```
//!
//! Send an `Idempotency-Key` ([`Options::key`]) with every command you may retry: a retry gets
//! the first answer ([`Reply::replayed`]) and changes nothing. A refusal is an [`Error::Api`]
//! with the contract's [`wire::ErrorBody`].
//!
//! The client itself retries what a database failover, a restart or a rolling deploy answers
//! (`503`, among them `outcome_unknown`, and connections refused) for up to a minute, with
//! backoff ([`Retry`]). A retry of a command always carries the first attempt's
//! `Idempotency-Key`, so it gets the first answer if the first attempt was recorded: a command
//! sent without a key is given one of its own for that. [`Client::with_retry`] changes the
//! budget; [`Retry::none`] turns retries off.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, AUTHORIZATION, ETAG, IF_MATCH, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

pub use planledger_wire as wire;
use wire::headers;

/// How one request is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `Idempotency-Key`: a retry with the same key and body gets the first answer.
    pub idempotency_key: Option<String>,
    /// `If-Match`: decide only if the store is at this version (409 `version_mismatch` if not).
    pub if_match: Option<i64>,
    /// `X-Correlation-Id`, recorded with the events the command appends.
    pub correlation_id: Option<String>,
}

impl Options {
    pub fn key(key: impl Into<String>) -> Self {
        Self { idempotency_key: Some(key.into()), ..Self::default() }
    }

    pub fn if_match(mut self, version: i64) -> Self {
        self.if_match = Some(version);
        self
    }

    pub fn correlation(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
}

/// A successful answer and what its headers said.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    pub value: T,
    pub status: u16,
    /// `Idempotent-Replayed: true`: the first answer to this key, sent again.
    pub replayed: bool,
    pub correlation_id: Option<String>,
    /// The store's version, from `ETag` (`GET /v1/stores/{id}`).
    pub version: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error: its status, body, and `Retry-After` in seconds.
    #[error("{status} {}: {}", serde_json::to_value(.body.error).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(), .body.message)]
    Api { status: u16, body: Box<wire::ErrorBody>, retry_after: Option<u64> },
    /// The request did not get an answer (connection refused, reset, timed out).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the contract says.
    #[error("unexpected answer {status}: {text}")]
    Unexpected { status: u16, text: String },
}

impl Error {
    /// The contract's error code, if the server answered with one.
    pub fn code(&self) -> Option<wire::ErrorCode> {
        match self {
            Error::Api { body, .. } => Some(body.error),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Unexpected { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
        }
    }

    fn is_retryable(&self, kind: RequestKind) -> bool {
        match self {
            // A refused connection reached nothing: any request may go again.
            Error::Transport(e) if e.is_connect() => true,
            Error::Transport(_) => kind != RequestKind::Once,
            Error::Api { status: 503, .. } | Error::Unexpected { status: 503, .. } => kind != RequestKind::Once,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<Reply<T>, Error>;

/// A client of one planledger server; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    retry: Retry,
}

/// How long the client keeps retrying a request that a failover or a restart interrupted.
///
/// An answer is retried when it is `503` (the database is unavailable or not a primary,
/// `outcome_unknown`, the server is draining or full) or when no connection could be made.
/// Reads are retried on any failure to get an answer; a command only when it carries an
/// `Idempotency-Key` (the typed command methods give each command one when the caller did not),
/// so that a retry can only ever get the first attempt's answer; any other request only when the
/// connection was refused, that is when nothing reached the server.
///
/// The waits double from `first_delay` up to `max_delay`, each drawn between half and all of
/// that (so that clients cut off together do not come back together), and never shorter than
/// the server's `Retry-After`. No retry starts after `budget` from the first attempt: the last
/// answer is returned then. The default budget, 60 s, covers a failover measured with
/// pg_auto_failover's default timeouts (docs/high-availability.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub budget: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(60),
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl Retry {
    /// Every request is sent once.
    pub fn none() -> Self {
        Self { budget: Duration::ZERO, ..Self::default() }
    }

    /// Retries for up to `budget` with the default waits.
    pub fn within(budget: Duration) -> Self {
        Self { budget, ..Self::default() }
    }

    fn enabled(&self) -> bool {
        !self.budget.is_zero()
    }

    /// How long to wait before attempt `attempt + 1`, or `None` to give `error` back.
    fn wait_before(&self, attempt: u32, elapsed: Duration, error: &Error, kind: RequestKind) -> Option<Duration> {
        if !self.enabled() || !error.is_retryable(kind) {
            return None;
        }
        let ceiling = self.first_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        let jitter = Duration::from_nanos(random_below(ceiling.as_nanos() as u64 / 2 + 1));
        let mut wait = ceiling / 2 + jitter;
        if let Error::Api { retry_after: Some(seconds), .. } = error {
            wait = wait.max(Duration::from_secs(*seconds));
        }
        (elapsed + wait <= self.budget).then_some(wait)
    }
}

/// One request, as each attempt at it sends it.
struct Call<'a, B: ?Sized> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<&'a B>,
    options: &'a Options,
}

/// What a retry of a request could do, and so when it may be retried (see [`Retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    /// Changes nothing (`GET`, `authorize`): retried on any failure to get an answer.
    Read,
    /// Carries an `Idempotency-Key`: a retry gets the first attempt's answer if it was recorded.
    Keyed,
    /// Anything else: retried only when nothing reached the server.
    Once,
}

/// A number below `bound` that differs between calls and between processes (for jitter, not
/// for secrets): the random bits of a version 4 UUID.
fn random_below(bound: u64) -> u64 {
    (Uuid::new_v4().as_u128() as u64) % bound.max(1)
}

/// A list's filters and position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /v1/audit`'s filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub store_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub correlation_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`).
    pub fn new(base: impl Into<String>) -> Self {
        Self::with_http(reqwest::Client::new(), base)
    }

    /// The same, on a `reqwest::Client` of the caller's (timeouts, pools, proxies).
    pub fn with_http(http: reqwest::Client, base: impl Into<String>) -> Self {
        Self { http, base: base.into().trim_end_matches('/').to_owned(), token: None, retry: Retry::default() }
    }

    /// The same client with another retry policy ([`Retry::none`] sends every request once).
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Sends `Authorization: Bearer token` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same client without a token.
    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// Sends a request and reads the contract's answer, retrying as [`Retry`] says: a `GET`, or
    /// a request with an `Idempotency-Key`, after any failure to get an answer or a `503`; any
    /// other request only when its connection was refused. The typed methods below all come here.
    pub async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        options: &Options,
    ) -> Result<T> {
        let kind = if method == Method::GET || method == Method::HEAD {
            RequestKind::Read
        } else if options.idempotency_key.is_some() {
            RequestKind::Keyed
        } else {
            RequestKind::Once
        };
        self.send_as(kind, &Call { method, path, query, body, options }).await
    }

    async fn send_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        kind: RequestKind,
        call: &Call<'_, B>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let answer = self.send_once(call).await;
            let Err(error) = &answer else { return answer };
            let Some(wait) = self.retry.wait_before(attempt, started.elapsed(), error, kind) else { return answer };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn send_once<B: Serialize + ?Sized, T: DeserializeOwned>(&self, call: &Call<'_, B>) -> Result<T> {
        let Call { method, path, query, body, options } = call;
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base)).query(*query);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = &options.idempotency_key {
            request = request.header(headers::IDEMPOTENCY_KEY, key);
        }
        if let Some(version) = options.if_match {
            request = request.header(IF_MATCH, format!("\"{version}\""));
        }
        if let Some(id) = &options.correlation_id {
            request = request.header(headers::CORRELATION_ID, id);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let head = response.headers().clone();
        let text = response.text().await?;
        if status.is_success() {
            let value = serde_json::from_str(&text)
                .map_err(|_| Error::Unexpected { status: status.as_u16(), text: text.clone() })?;
            Ok(Reply {
                value,
                status: status.as_u16(),
                replayed: header(&head, headers::IDEMPOTENT_REPLAYED).is_some_and(|v| v == "true"),
                correlation_id: header(&head, headers::CORRELATION_ID),
                version: header(&head, ETAG.as_str()).and_then(|v| v.trim_matches('"').parse().ok()),
            })
        } else {
            Err(api_error(status, &head, text))
        }
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        options: &Options,
    ) -> Result<T> {
        self.send(Method::POST, path, &[], Some(body), options).await
    }

    /// A command of the ledger: with retries on, one without an `Idempotency-Key` is given one
    /// of its own, so that every retry of it is answered with the first attempt's answer.
    async fn command<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        options: &Options,
    ) -> Result<T> {
        self.command_as(Method::POST, path, Some(body), options).await
    }

    /// [`Client::command`] with another method (`DELETE`) and maybe no body.
    async fn command_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        options: &Options,
    ) -> Result<T> {
        if options.idempotency_key.is_some() || !self.retry.enabled() {
            return self.send(method, path, &[], body, options).await;
        }
        let keyed =
            Options { idempotency_key: Some(format!("planledger-client:{}", Uuid::new_v4())), ..options.clone() };
        self.send_as(RequestKind::Keyed, &Call { method, path, query: &[], body, options: &keyed }).await
    }

    /// A POST that changes nothing (`authorize`): retried as a read.
    async fn post_read<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let options = Options::default();
        self.send_as(
            RequestKind::Read,
            &Call { method: Method::POST, path, query: &[], body: Some(body), options: &options },
        )
        .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        self.send::<(), T>(Method::GET, path, query, None, &Options::default()).await
    }

    // ---- stores and their lifecycle ----

    pub async fn register_store(&self, body: &wire::RegisterStore, options: &Options) -> Result<wire::StoreView> {
        self.command("/v1/stores", body, options).await
    }

    /// The store; [`Reply::version`] is its `ETag`.
    pub async fn get_store(&self, store: Uuid) -> Result<wire::StoreView> {
        self.get(&format!("/v1/stores/{store}"), &[]).await
    }

    pub async fn start_trial(
        &self,
        store: Uuid,
        body: &wire::StartTrial,
        options: &Options,
    ) -> Result<wire::TrialAnswer> {
        self.command(&format!("/v1/stores/{store}/trial"), body, options).await
    }

    pub async fn activate_subscription(
        &self,
        store: Uuid,
        body: &wire::ActivateSubscription,
        options: &Options,
    ) -> Result<wire::StoreView> {
        self.command(&format!("/v1/stores/{store}/subscription"), body, options).await
    }

    pub async fn mark_past_due(&self, store: Uuid, options: &Options) -> Result<wire::StoreView> {
        self.command(&format!("/v1/stores/{store}/subscription/past-due"), &wire::NoFields {}, options).await
    }

    pub async fn mark_recovered(&self, store: Uuid, options: &Options) -> Result<wire::StoreView> {
        self.command(&format!("/v1/stores/{store}/subscription/recovered"), &wire::NoFields {}, options).await
    }

    pub async fn cancel_subscription(&self, store: Uuid, options: &Options) -> Result<wire::StoreView> {
        self.command(&format!("/v1/stores/{store}/subscription/cancel"), &wire::NoFields {}, options).await
    }

    pub async fn transition_plan(
        &self,
        store: Uuid,
        body: &wire::TransitionPlan,
        options: &Options,
    ) -> Result<wire::StoreView> {
        self.command(&format!("/v1/stores/{store}/plan-transitions"), body, options).await
    }

    /// Schedules the change for `body.at` (a time, or `period_end`): one is pending per store,
    /// and this one replaces it (`replaced`).
    pub async fn schedule_plan_transition(
        &self,
        store: Uuid,
        body: &wire::TransitionPlan,
        options: &Options,
    ) -> Result<wire::ScheduledTransitionAnswer> {
        self.command(&format!("/v1/stores/{store}/plan-transitions"), body, options).await
    }

    /// Withdraws the pending scheduled change (`schedule_not_found` if it is not pending).
    pub async fn cancel_scheduled_transition(
        &self,
        store: Uuid,
        schedule_id: Uuid,
        options: &Options,
    ) -> Result<wire::StoreView> {
        let path = format!("/v1/stores/{store}/plan-transitions/{schedule_id}");
        self.command_as(Method::DELETE, &path, None::<&()>, options).await
    }

    // ---- gates and quotas ----

    /// May the store do `action` now (its status gate and the feature it requires, if any)?
    pub async fn authorize(&self, store: Uuid, action: &str) -> Result<wire::Authorized> {
        self.post_read(&format!("/v1/stores/{store}/authorize"), &wire::Authorize::action(action)).await
    }

    /// Does the store's plan list `feature` (and may the store read now)?
    pub async fn authorize_feature(&self, store: Uuid, feature: &str) -> Result<wire::Authorized> {
        self.post_read(&format!("/v1/stores/{store}/authorize"), &wire::Authorize::feature(feature)).await
    }

    pub async fn consume(&self, store: Uuid, body: &wire::Consume, options: &Options) -> Result<wire::Consumed> {
        self.command(&format!("/v1/stores/{store}/quota/consume"), body, options).await
    }

    pub async fn refund(&self, store: Uuid, consumption_id: Uuid, options: &Options) -> Result<wire::Refunded> {
        self.command(&format!("/v1/stores/{store}/quota/refund"), &wire::Refund { consumption_id }, options).await
    }

    /// Allowance on top of the plan's for one action, used once the plan's is used up.
    pub async fn add_grant(&self, store: Uuid, body: &wire::AddGrant, options: &Options) -> Result<wire::GrantAnswer> {
        self.command(&format!("/v1/stores/{store}/grants"), body, options).await
    }

    /// Withdraws what is left of a grant (`grant_not_found` if it is voided already).
    pub async fn void_grant(
        &self,
        store: Uuid,
        grant_id: Uuid,
        reason: &str,
        options: &Options,
    ) -> Result<wire::StoreView> {
        let body = wire::VoidGrant { reason: reason.to_owned() };
        self.command(&format!("/v1/stores/{store}/grants/{grant_id}/void"), &body, options).await
    }

    // ---- history ----

    pub async fn events(&self, store: Uuid, page: &PageRequest) -> Result<wire::Page<wire::EventEnvelope>> {
        self.get(&format!("/v1/stores/{store}/events"), &page_query(page)).await
    }

    /// The store replayed up to `version` and/or the time `at`.
    pub async fn state_at(
        &self,
        store: Uuid,
        at: Option<DateTime<Utc>>,
        version: Option<i64>,
    ) -> Result<wire::StateAt> {
        let mut query = Vec::new();
        if let Some(at) = at {
            query.push(("at", wire::time::format(&at)));
        }
        if let Some(version) = version {
            query.push(("version", version.to_string()));
        }
        self.get(&format!("/v1/stores/{store}/state"), &query).await
    }

    // ---- tamper evidence (docs/audit-chain.md) ----

    /// The signed digests, newest first, before the digest `before` if given.
    pub async fn digests(&self, before: Option<i64>, limit: Option<i64>) -> Result<wire::DigestList> {
        let mut query = Vec::new();
        query.extend(before.map(|b| ("before", b.to_string())));
        query.extend(limit.map(|l| ("limit", l.to_string())));
        self.get("/v1/ledger/digests", &query).await
    }

    /// Makes a signed digest now (admin).
    pub async fn make_digest(&self) -> Result<wire::SignedDigest> {
        self.send::<(), _>(Method::POST, "/v1/ledger/digests", &[], None, &Options::default()).await
    }

    /// The proof of a store's events from `version` (default: its version in the digest) against
    /// `digest` (default: the latest). Check it with [`wire::Proof::verify`], which needs
    /// nothing but the proof and the keys you trust.
    pub async fn proof(&self, store: Uuid, version: Option<i64>, digest: Option<i64>) -> Result<wire::Proof> {
        let mut query = Vec::new();
        query.extend(version.map(|v| ("version", v.to_string())));
        query.extend(digest.map(|d| ("digest", d.to_string())));
        self.get(&format!("/v1/stores/{store}/proof"), &query).await
    }

    pub async fn audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<wire::Page<wire::AuditEntry>> {
        let mut query = page_query(page);
        query.extend(filter.store_id.map(|s| ("storeId", s.to_string())));
        query.extend(filter.event_type.clone().map(|t| ("type", t)));
        query.extend(filter.correlation_id.clone().map(|c| ("correlationId", c)));
        query.extend(filter.from.map(|t| ("from", wire::time::format(&t))));
        query.extend(filter.to.map(|t| ("to", wire::time::format(&t))));
        self.get("/v1/audit", &query).await
    }

    pub async fn commands(
        &self,
        store_id: Option<Uuid>,
        correlation_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<wire::Page<wire::JournalEntry>> {
        let mut query = page_query(page);
        query.extend(store_id.map(|s| ("storeId", s.to_string())));
        query.extend(correlation_id.map(|c| ("correlationId", c.to_owned())));
        self.get("/v1/audit/commands", &query).await
    }

    // ---- admin ----

    pub async fn list_stores(
        &self,
        status: Option<wire::InternalStatus>,
        page: &PageRequest,
    ) -> Result<wire::Page<wire::StoreView>> {
        let mut query = page_query(page);
        if let Some(status) =
            status.and_then(|s| serde_json::to_value(s).ok()).and_then(|v| v.as_str().map(str::to_owned))
        {
            query.push(("internalStatus", status));
        }
        self.get("/v1/admin/stores", &query).await
    }

    pub async fn extend(&self, body: &wire::Extensions, options: &Options) -> Result<wire::ExtensionResults> {
        self.command("/v1/admin/stores/extensions", body, options).await
    }

    pub async fn start_rebuild(&self, model: wire::ReadModelName) -> Result<wire::RebuildJob> {
        self.send::<(), _>(Method::POST, &rebuild_path(model), &[], None, &Options::default()).await
    }

    pub async fn rebuild_status(&self, model: wire::ReadModelName) -> Result<wire::ReadModelStatus> {
        self.get(&rebuild_path(model), &[]).await
    }

    // ---- the test clock (servers started with PLANLEDGER_TEST_CLOCK=1) ----

    pub async fn test_clock(&self) -> Result<wire::ClockReading> {
        self.get("/v1/test-clock", &[]).await
    }

    pub async fn set_test_clock(&self, now: DateTime<Utc>) -> Result<wire::ClockReading> {
        self.send(Method::PUT, "/v1/test-clock", &[], Some(&wire::SetClock { now }), &Options::default()).await
    }

    pub async fn advance_test_clock(&self, seconds: i64) -> Result<wire::ClockReading> {
        self.post("/v1/test-clock/advance", &wire::AdvanceClock { seconds }, &Options::default()).await
    }

    // ---- operations ----

    pub async fn health(&self) -> Result<wire::Health> {
        self.get("/healthz", &[]).await
    }

    pub async fn readiness(&self) -> Result<wire::Readiness> {
        self.get("/readyz", &[]).await
    }
}

fn rebuild_path(model: wire::ReadModelName) -> String {
    let name = match model {
        wire::ReadModelName::TenantState => "tenant_state",
        wire::ReadModelName::AuditLog => "audit_log",
    };
    format!("/v1/admin/projections/{name}/rebuild")
}

fn page_query(page: &PageRequest) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    query.extend(page.cursor.clone().map(|c| ("cursor", c)));
    query.extend(page.limit.map(|l| ("limit", l.to_string())));
    query
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn api_error(status: StatusCode, head: &HeaderMap, text: String) -> Error {
    match serde_json::from_str::<wire::ErrorBody>(&text) {
        Ok(body) => Error::Api {
            status: status.as_u16(),
            body: Box::new(body),
            retry_after: header(head, RETRY_AFTER.as_str()).and_then(|v| v.parse().ok()),
        },
        Err(_) => Error::Unexpected { status: status.as_u16(), text },
    }
}
