//! Stripe drives the ledger: its webhook deliveries are verified ([`signature`]), stored once in
//! an inbox ([`inbox`]), and applied asynchronously, in the order of the events' times, as the
//! state each says its subscription is in ([`event`], [`converge`]).
//!
//! - Receiving answers as soon as the event is stored, so a slow ledger never makes Stripe
//!   retry a flood; a redelivery is counted and changes nothing.
//! - Applying runs on one node at a time ([`Stripe::run`]), one event after another: each is
//!   compared with the newest event applied to its subscription (older ones are `stale`), then
//!   the store is brought to its subscription's state through the command path, with Stripe's
//!   event id as the correlation and causation of every event it appends.
//! - What cannot be applied as it is (no store named, a price no plan sells, a refusal) is
//!   parked with its reason until an operator retries it; failures are retried by themselves.

pub mod converge;
pub mod event;
pub mod inbox;
pub mod signature;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use planledger_domain::{PlanId, StoreId, SubscriptionId};
use planledger_projections::runtime::{run_as_leader, ProjectorState};
use planledger_service::{Answer, CommandMeta, CommandService, IdempotencyRequest, Outcome, ServiceError};
use planledger_store::StoreError;
use tokio::sync::watch;

use crate::converge::{converge, Target};
use crate::event::{Reading, Status, StripeEvent, SubscriptionFacts};
use crate::inbox::{InboxEvent, InboxStatus, Settled, SubscriptionRow};
use crate::signature::{SignatureError, SigningSecret};

/// How Stripe's deliveries are checked.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// The endpoint's signing secrets (two during a rotation); none: the endpoint is off.
    pub secrets: Vec<SigningSecret>,
    /// How far a delivery's signature time may be from now.
    pub tolerance: Duration,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self { secrets: Vec::new(), tolerance: signature::DEFAULT_TOLERANCE }
    }
}

/// Counters for `/metrics`, by what became of a delivery or an event.
#[derive(Debug, Default)]
pub struct StripeMetrics {
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub applied: AtomicU64,
    pub ignored: AtomicU64,
    pub stale: AtomicU64,
    pub parked: AtomicU64,
    pub failed: AtomicU64,
}

impl StripeMetrics {
    /// Every counter with its outcome's name.
    pub fn outcomes(&self) -> [(&'static str, u64); 8] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("received", n(&self.received)),
            ("duplicate", n(&self.duplicates)),
            ("rejected", n(&self.rejected)),
            ("applied", n(&self.applied)),
            ("ignored", n(&self.ignored)),
            ("stale", n(&self.stale)),
            ("parked", n(&self.parked)),
            ("failed", n(&self.failed)),
        ]
    }

    fn settled(&self, status: InboxStatus) {
        let counter = match status {
            InboxStatus::Applied => &self.applied,
            InboxStatus::Ignored => &self.ignored,
            InboxStatus::Stale => &self.stale,
            InboxStatus::Parked => &self.parked,
            InboxStatus::Failed => &self.failed,
            InboxStatus::Received => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a delivery was refused. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("Stripe webhooks are not configured (PLANLEDGER_STRIPE_WEBHOOK_SECRETS)")]
    NotConfigured,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the delivery is signed but is not a Stripe event: {0}")]
    NotAnEvent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A delivery stored (or recognised as a redelivery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub event_id: String,
    pub duplicate: bool,
}

/// What an operator's retry found.
#[derive(Debug, Clone, PartialEq)]
pub enum Retry {
    /// Put back to be applied now.
    Requeued(InboxEvent),
    /// Not parked or failed: nothing to retry.
    NotRetryable(InboxEvent),
    NotFound,
}

/// Stripe's side of the ledger; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stripe {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: CommandService,
    config: StripeConfig,
    metrics: StripeMetrics,
}

/// Events applied per step of the applier.
const STEP: i64 = 64;
/// The name of the applier's lock (one node applies at a time).
const APPLIER: &str = "stripe_inbox";

impl Stripe {
    pub fn new(service: CommandService, config: StripeConfig) -> Self {
        Self { inner: Arc::new(Inner { service, config, metrics: StripeMetrics::default() }) }
    }

    /// Whether deliveries are accepted (signing secrets are configured).
    pub fn enabled(&self) -> bool {
        !self.inner.config.secrets.is_empty()
    }

    pub fn metrics(&self) -> &StripeMetrics {
        &self.inner.metrics
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.service.clock().now()
    }

    /// Verifies a delivery (`Stripe-Signature` and the raw body, before anything parses it),
    /// then stores its event once.
    pub async fn receive(&self, header: Option<&str>, body: &[u8]) -> Result<Receipt, ReceiveError> {
        let signed = self.check_header(header)?;
        self.receive_signed(&signed, body).await
    }

    /// The first half of [`Stripe::receive`], which needs no body: the route is configured and
    /// the header is readable and of now. The handler calls it before it reads the body, so a
    /// forged or replayed header costs neither the read nor an HMAC.
    pub fn check_header(&self, header: Option<&str>) -> Result<signature::SignedHeader, ReceiveError> {
        let checked = if self.enabled() {
            signature::SignedHeader::parse(header, self.now(), self.inner.config.tolerance).map_err(ReceiveError::from)
        } else {
            Err(ReceiveError::NotConfigured)
        };
        if checked.is_err() {
            self.inner.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    /// The second half of [`Stripe::receive`]: the body against the header's signatures (one HMAC
    /// per configured secret), then the event stored once.
    pub async fn receive_signed(&self, signed: &signature::SignedHeader, body: &[u8]) -> Result<Receipt, ReceiveError> {
        let outcome = self.store_signed(signed, body).await;
        let counter = match &outcome {
            Ok(Receipt { duplicate: false, .. }) => &self.inner.metrics.received,
            Ok(Receipt { duplicate: true, .. }) => &self.inner.metrics.duplicates,
            Err(ReceiveError::Store(_)) => return outcome,
            Err(_) => &self.inner.metrics.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    async fn store_signed(&self, signed: &signature::SignedHeader, body: &[u8]) -> Result<Receipt, ReceiveError> {
        signed.verify(body, &self.inner.config.secrets)?;
        let event = StripeEvent::parse(body).map_err(ReceiveError::NotAnEvent)?;
        let payload =
            std::str::from_utf8(body).map_err(|_| ReceiveError::NotAnEvent("the body is not UTF-8".into()))?;
        let new = inbox::store(self.inner.service.log(), &event, payload, self.now()).await?;
        Ok(Receipt { event_id: event.id, duplicate: !new })
    }

    /// Applies the events that are due, oldest first; answers how many.
    pub async fn apply_due(&self) -> Result<usize, StoreError> {
        let due = inbox::due(self.inner.service.log(), self.now(), STEP).await?;
        let count = due.len();
        for event in due {
            let settled = self.apply(&event).await;
            inbox::settle(self.inner.service.log(), &event.event_id, &settled, self.now()).await?;
            self.inner.metrics.settled(settled.status);
        }
        Ok(count)
    }

    /// Applies due events on the one node holding the applier's lock, until `stop`.
    pub async fn run(&self, state: Arc<ProjectorState>, stop: watch::Receiver<bool>) {
        let log = self.inner.service.log().clone();
        let this = self.clone();
        run_as_leader(&log, APPLIER, state, stop, move || {
            let this = this.clone();
            async move { this.apply_due().await }
        })
        .await;
    }

    /// Stored events (of one status, if given), in the order received, after `after`.
    pub async fn list(
        &self,
        status: Option<InboxStatus>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<InboxEvent>, StoreError> {
        inbox::list(self.inner.service.log(), status, after, limit).await
    }

    /// An operator's retry of a parked or failed event (after fixing the catalog's price
    /// mapping, say): it is applied again shortly, by whichever node applies.
    pub async fn retry(&self, event_id: &str) -> Result<Retry, StoreError> {
        let log = self.inner.service.log();
        if inbox::requeue(log, event_id, self.now()).await? {
            return Ok(inbox::get(log, event_id).await?.map_or(Retry::NotFound, Retry::Requeued));
        }
        Ok(inbox::get(log, event_id).await?.map_or(Retry::NotFound, Retry::NotRetryable))
    }

    /// What applying one stored event comes to.
    async fn apply(&self, stored: &InboxEvent) -> Settled {
        let settled =
            |status, detail: String| Settled { status, detail, store_id: None, subscription_id: None, retry_at: None };
        let event = match StripeEvent::parse(stored.payload.as_bytes()) {
            Ok(event) => event,
            Err(e) => return settled(InboxStatus::Parked, format!("the stored event cannot be read: {e}")),
        };
        match Reading::of(&event) {
            Reading::Ignored(why) => settled(InboxStatus::Ignored, why),
            Reading::Noted { subscription_id } => {
                Settled { subscription_id, ..settled(InboxStatus::Applied, "recorded; nothing to change".into()) }
            }
            Reading::Subscription(facts) => {
                let mut outcome = match self.apply_subscription(&event, &facts).await {
                    Ok((status, detail, store)) => {
                        Settled { store_id: store.map(|s| s.to_string()), ..settled(status, detail) }
                    }
                    Err(error) => {
                        // Retried by itself: soon at first, then less often (at most hourly).
                        let wait = TimeDelta::seconds(1_i64 << stored.attempts.clamp(0, 12)).min(TimeDelta::hours(1));
                        Settled { retry_at: Some(self.now() + wait), ..settled(InboxStatus::Failed, error.to_string()) }
                    }
                };
                outcome.subscription_id = Some(facts.subscription_id.clone());
                outcome
            }
        }
    }

    /// Brings the store of `facts`' subscription to the state `event` says, unless a newer
    /// event of that subscription was applied. Answers the status to record, what was done,
    /// and the store; an error is a failure to retry.
    async fn apply_subscription(
        &self,
        event: &StripeEvent,
        facts: &SubscriptionFacts,
    ) -> Result<(InboxStatus, String, Option<StoreId>), ServiceError> {
        let log = self.inner.service.log();
        let known = inbox::subscription(log, &facts.subscription_id).await?;
        if let Some(known) = &known {
            if !is_newer(event, facts, known) {
                let detail = format!("older than {} (already applied to {})", known.event_id, facts.subscription_id);
                return Ok((InboxStatus::Stale, detail, StoreId::parse(&known.store_id).ok()));
            }
        }
        let parked = |detail: String| Ok((InboxStatus::Parked, detail, None));
        let store_text = match (&facts.store_id, &known) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(known)) => Some(known.store_id.clone()),
            (None, None) => match &facts.customer_id {
                Some(customer) => inbox::store_of_customer(log, customer).await?,
                None => None,
            },
        };
        let Some(store_text) = store_text else {
            return parked(format!(
                "no store: subscription {} carries no metadata.store_id and no earlier event of it or its customer named one",
                facts.subscription_id
            ));
        };
        let Ok(store) = StoreId::parse(&store_text) else {
            return parked(format!("metadata.store_id {store_text:?} is not a store id"));
        };
        let catalog = self.inner.service.catalog();
        // The price's plan: by the catalog's mapping, or, for a price named by id alone (as
        // invoices name it), the plan the subscription was applied with under that same price.
        let known_plan = |price_id: Option<&str>| {
            known
                .as_ref()
                .filter(|k| price_id.is_none() || k.price_id.as_deref() == price_id)
                .and_then(|k| k.plan_id.as_deref())
                .and_then(|p| PlanId::parse(p).ok())
        };
        let plan = match &facts.price {
            Some(price) => match catalog
                .plan_for_stripe_price(price.lookup_key.as_deref(), &price.id)
                .cloned()
                .or_else(|| known_plan(Some(&price.id)))
            {
                Some(plan) => Some(plan),
                None => {
                    return Ok((
                        InboxStatus::Parked,
                        format!(
                            "price {}{} maps to no plan: add it to [stripe] prices in the catalog, then retry",
                            price.id,
                            price.lookup_key.as_ref().map_or(String::new(), |k| format!(" (lookup key {k:?})"))
                        ),
                        Some(store),
                    ))
                }
            },
            None => known_plan(None),
        };
        let Ok(subscription_id) = SubscriptionId::parse(&facts.subscription_id) else {
            return parked(format!("subscription id {:?} is not one the ledger can hold", facts.subscription_id));
        };
        let Some((state, _)) = self.inner.service.load_row(store).await? else {
            return Ok((InboxStatus::Parked, format!("store {store} is not registered in the ledger"), Some(store)));
        };
        let target = Target { status: facts.status, subscription_id, plan: plan.clone(), trial_end: facts.trial_end };
        let steps = match converge(&state, &target, self.now()) {
            Ok(steps) => steps,
            Err(unreachable) => return Ok((InboxStatus::Parked, unreachable.to_string(), Some(store))),
        };
        let mut done = Vec::new();
        for (command, name) in steps {
            let meta = CommandMeta {
                correlation_id: event.id.clone(),
                actor: "stripe".into(),
                idempotency: Some(IdempotencyRequest {
                    key: format!("stripe:{}:{name}", event.id),
                    request_hash: format!("stripe:{name}:{command:?}"),
                }),
                expected_version: None,
                causation_id: Some(event.id.clone()),
            };
            match self.inner.service.execute(store, command, meta).await? {
                Answer::Decided(Outcome::Accepted(_)) | Answer::Replayed(_) => done.push(name),
                Answer::Decided(Outcome::Refused(refusal)) => {
                    let detail = format!("the ledger refused {name} ({}) after {done:?}", refusal.code());
                    return Ok((InboxStatus::Parked, detail, Some(store)));
                }
            }
        }
        let row = SubscriptionRow {
            subscription_id: facts.subscription_id.clone(),
            store_id: store.to_string(),
            customer_id: facts.customer_id.clone(),
            plan_id: plan.map(|p| p.to_string()),
            price_id: facts.price.as_ref().map(|p| p.id.clone()),
            status: facts.status.as_str().to_owned(),
            event_id: event.id.clone(),
            event_created: event.created,
        };
        inbox::remember(log, &row, self.now()).await?;
        let detail = if done.is_empty() {
            format!("store already {} on {}", facts.stripe_status, facts.subscription_id)
        } else {
            format!("{} ({})", done.join(", "), facts.stripe_status)
        };
        Ok((InboxStatus::Applied, detail, Some(store)))
    }
}

/// Whether `event` is newer than the last one applied to its subscription. Events of different
/// seconds go by their time. Within one second (Stripe's times are whole seconds), an update
/// whose previous status is the known one came after it; otherwise the status further along the
/// lifecycle wins, an end over everything (see docs/decisions.md). The same event again (a retry
/// after a crash) is applied again: bringing a store to a state it is in does nothing.
fn is_newer(event: &StripeEvent, facts: &SubscriptionFacts, known: &SubscriptionRow) -> bool {
    if event.id == known.event_id {
        return true;
    }
    if event.created != known.event_created {
        return event.created > known.event_created;
    }
    let previous = facts.previous_status.as_deref().and_then(|p| Status::from_stripe(p, false));
    if previous.is_some_and(|p| p.as_str() == known.status) {
        return true;
    }
    facts.status.rank() > Status::rank_of(&known.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(second: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + second, 0).unwrap()
    }

    fn update(id: &str, second: i64, status: &str, previous: Option<&str>) -> (StripeEvent, SubscriptionFacts) {
        let mut data = json!({"object": {"id": "sub_1", "object": "subscription", "status": status}});
        if let Some(previous) = previous {
            data["previous_attributes"] = json!({"status": previous});
        }
        let body = json!({"id": id, "object": "event", "type": "customer.subscription.updated", "created": at(second).timestamp(), "data": data});
        let event = StripeEvent::parse(body.to_string().as_bytes()).unwrap();
        let Reading::Subscription(facts) = Reading::of(&event) else { panic!("a subscription event") };
        (event, facts)
    }

    fn applied(id: &str, second: i64, status: Status) -> SubscriptionRow {
        SubscriptionRow {
            subscription_id: "sub_1".into(),
            store_id: "s".into(),
            customer_id: None,
            plan_id: None,
            price_id: None,
            status: status.as_str().into(),
            event_id: id.into(),
            event_created: at(second),
        }
    }

    #[test]
    fn events_of_one_second_are_ordered_by_what_they_moved_from_then_by_how_far_along() {
        // Different seconds: time decides.
        let (e, f) = update("evt_b", 5, "active", None);
        assert!(is_newer(&e, &f, &applied("evt_a", 4, Status::PastDue)));
        assert!(!is_newer(&e, &f, &applied("evt_a", 6, Status::Trialing)));
        // The same second: an update from the applied status came after it ...
        let (e, f) = update("evt_b", 5, "active", Some("past_due"));
        assert!(is_newer(&e, &f, &applied("evt_a", 5, Status::PastDue)), "recovered after failing");
        let (e, f) = update("evt_c", 5, "past_due", Some("active"));
        assert!(is_newer(&e, &f, &applied("evt_b", 5, Status::Active)), "failed after being active");
        // Otherwise a status the lifecycle passes first came first.
        let (e, f) = update("evt_a", 5, "incomplete", None);
        assert!(!is_newer(&e, &f, &applied("evt_b", 5, Status::Active)), "created incomplete, then active");
        // Otherwise the further status wins; an end over everything.
        let (e, f) = update("evt_c", 5, "canceled", None);
        assert!(is_newer(&e, &f, &applied("evt_b", 5, Status::PastDue)));
        let (e, f) = update("evt_c", 5, "trialing", None);
        assert!(!is_newer(&e, &f, &applied("evt_b", 5, Status::Active)));
        // The same event again is applied again (a retry after a crash).
        let (e, f) = update("evt_b", 5, "active", None);
        assert!(is_newer(&e, &f, &applied("evt_b", 5, Status::Active)));
    }
}
