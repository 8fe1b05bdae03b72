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
        // What the event is applied as: itself, or, when it completes a second's chain that
        // ends with another event of that second, that event's state.
        let mut instead: Option<(StripeEvent, SubscriptionFacts)> = None;
        if let Some(known) = &known {
            match self.order(event, facts, known).await? {
                Order::Newest => {}
                Order::Instead(other) => instead = Some(*other),
                Order::Older => {
                    let store = StoreId::parse(&known.store_id).ok();
                    let mut detail =
                        format!("older than {} (already applied to {})", known.event_id, facts.subscription_id);
                    if let Some(store) = store {
                        if self.latch_trial(store, event, facts).await? {
                            detail.push_str("; the trial it shows is recorded");
                        }
                    }
                    return Ok((InboxStatus::Stale, detail, store));
                }
            }
        }
        let (event, facts) = match &instead {
            Some((other, other_facts)) => (other, other_facts),
            None => (event, facts),
        };
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
        let steps = match converge(&state, &target) {
            Ok(steps) => steps,
            Err(unreachable) => return Ok((InboxStatus::Parked, unreachable.to_string(), Some(store))),
        };
        let mut done = Vec::new();
        for (command, name) in steps {
            let meta = stripe_meta(event, name, &command);
            match self.inner.service.execute(store, command, meta).await? {
                Answer::Decided(Outcome::Accepted(_)) | Answer::Replayed(_) => done.push(name),
                Answer::Decided(Outcome::Refused(refusal)) => {
                    let detail = format!("the ledger refused {name} ({}) after {done:?}", refusal.code());
                    return Ok((InboxStatus::Parked, detail, Some(store)));
                }
            }
        }
        let base_status = match &known {
            Some(k) if k.event_created < event.created => Some(k.status.clone()),
            Some(k) => k.base_status.clone(),
            None => None,
        };
        let row = SubscriptionRow::of(facts, store, plan.as_ref(), (event.id.clone(), event.created), base_status);
        inbox::remember(log, &row, self.now()).await?;
        let detail = if done.is_empty() {
            format!("store already {} on {}", facts.stripe_status, facts.subscription_id)
        } else {
            format!("{} ({})", done.join(", "), facts.stripe_status)
        };
        Ok((InboxStatus::Applied, detail, Some(store)))
    }
}

/// Where an event stands against the newest one applied to its subscription.
enum Order {
    Newest,
    Older,
    /// It places another event of the same second last: that one's state is applied.
    Instead(Box<(StripeEvent, SubscriptionFacts)>),
}

/// One event of a second, as the chain sees it.
#[derive(Debug, Clone, PartialEq)]
struct Link<'a> {
    id: &'a str,
    /// The lifecycle status it moved from (`previous_attributes.status`), if it says.
    from: Option<&'static str>,
    to: &'static str,
}

/// The last of one second's events of a subscription (Stripe's times are whole seconds).
/// They are chained from `base`, the status before that second: next is the event that moved
/// from the status reached; where none did, the event nothing else leads to, the one the
/// lifecycle passes first; an end comes last. The result depends on the set of events only,
/// never on the order they arrived in. See docs/decisions.md.
fn last_of_second<'a>(base: Option<&str>, links: &[Link<'a>]) -> Option<&'a str> {
    let mut remaining: Vec<&Link<'a>> = links.iter().collect();
    remaining.sort_by_key(|l| (l.to == Status::Ended { was_paid: false }.as_str(), Status::rank_of(l.to), l.id));
    remaining.dedup_by_key(|l| l.id);
    let mut at: Option<&str> = base;
    let mut last = None;
    while !remaining.is_empty() {
        let ends = |l: &&Link<'_>| l.to == Status::Ended { was_paid: false }.as_str();
        let all_ends = remaining.iter().all(ends);
        let eligible = |l: &&Link<'_>| all_ends || !ends(l);
        let next = remaining
            .iter()
            .position(|l| eligible(l) && at.is_some() && l.from == at)
            .or_else(|| {
                remaining.iter().position(|l| {
                    eligible(l) && l.from.is_none_or(|from| !remaining.iter().any(|o| o.id != l.id && o.to == from))
                })
            })
            .or_else(|| remaining.iter().position(eligible))
            .unwrap_or(0);
        let link = remaining.remove(next);
        at = Some(link.to);
        last = Some(link.id);
    }
    last
}

fn link_of<'a>(event: &'a StripeEvent, facts: &SubscriptionFacts) -> Link<'a> {
    Link {
        id: &event.id,
        from: facts.previous_status.as_deref().and_then(|p| Status::from_stripe(p, false)).map(Status::as_str),
        to: facts.status.as_str(),
    }
}

impl Stripe {
    /// Whether `event` is newer than the last one applied to its subscription. Events of
    /// different seconds go by their time; within one, by [`last_of_second`] over the second's
    /// events settled so far and this one. The same event again (a retry after a crash) is
    /// applied again: bringing a store to a state it is in does nothing.
    async fn order(
        &self,
        event: &StripeEvent,
        facts: &SubscriptionFacts,
        known: &SubscriptionRow,
    ) -> Result<Order, StoreError> {
        if event.id == known.event_id {
            return Ok(Order::Newest);
        }
        if event.created != known.event_created {
            return Ok(if event.created > known.event_created { Order::Newest } else { Order::Older });
        }
        let settled = inbox::of_second(self.inner.service.log(), &facts.subscription_id, event.created).await?;
        let mut others: Vec<(StripeEvent, SubscriptionFacts)> = Vec::new();
        for stored in settled.iter().filter(|s| matches!(s.status, InboxStatus::Applied | InboxStatus::Stale)) {
            let Ok(other) = StripeEvent::parse(stored.payload.as_bytes()) else { continue };
            if let Reading::Subscription(other_facts) = Reading::of(&other) {
                if other.id != event.id && other_facts.subscription_id == facts.subscription_id {
                    others.push((other, other_facts));
                }
            }
        }
        let mut links: Vec<Link<'_>> = others.iter().map(|(e, f)| link_of(e, f)).collect();
        links.push(link_of(event, facts));
        let last = last_of_second(known.base_status.as_deref(), &links).map(str::to_owned);
        Ok(match last {
            Some(id) if id == event.id => Order::Newest,
            Some(id) if id == known.event_id => Order::Older,
            Some(id) => match others.into_iter().find(|(e, _)| e.id == id) {
                Some(other) => Order::Instead(Box::new(other)),
                None => Order::Older,
            },
            None => Order::Older,
        })
    }

    /// Records the trial an event older than what was applied shows, if the store has had
    /// none: a trial latches whatever order its news comes in. Answers whether it did.
    async fn latch_trial(
        &self,
        store: StoreId,
        event: &StripeEvent,
        facts: &SubscriptionFacts,
    ) -> Result<bool, ServiceError> {
        let (Some(_), Ok(subscription_id)) = (facts.trial_end, SubscriptionId::parse(&facts.subscription_id)) else {
            return Ok(false);
        };
        let Some((state, _)) = self.inner.service.load_row(store).await? else { return Ok(false) };
        let target = Target { status: facts.status, subscription_id, plan: None, trial_end: facts.trial_end };
        let Some((command, name)) = converge::adopt_trial(&state, &target) else { return Ok(false) };
        let meta = stripe_meta(event, name, &command);
        let answer = self.inner.service.execute(store, command, meta).await?;
        Ok(matches!(answer, Answer::Decided(Outcome::Accepted(_)) | Answer::Replayed(_)))
    }
}

/// How a command Stripe's event caused is recorded: the event's id as correlation and
/// causation, and an idempotency key of the event and the step.
fn stripe_meta(event: &StripeEvent, name: &str, command: &planledger_domain::Command) -> CommandMeta {
    CommandMeta {
        correlation_id: event.id.clone(),
        actor: "stripe".into(),
        idempotency: Some(IdempotencyRequest {
            key: format!("stripe:{}:{name}", event.id),
            request_hash: format!("stripe:{name}:{command:?}"),
        }),
        expected_version: None,
        causation_id: Some(event.id.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link<'a>(id: &'a str, from: Option<&'static str>, to: &'static str) -> Link<'a> {
        Link { id, from, to }
    }

    /// The last event whatever order the second's events are given in.
    fn last(base: Option<&str>, links: &[Link<'static>]) -> &'static str {
        let mut orders: Vec<Vec<Link<'static>>> = vec![links.to_vec()];
        let mut reversed = links.to_vec();
        reversed.reverse();
        orders.push(reversed);
        let answers: Vec<_> = orders.iter().map(|o| last_of_second(base, o).unwrap()).collect();
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "the order given changed the answer: {answers:?}");
        answers[0]
    }

    #[test]
    fn a_failed_payment_and_its_recovery_in_one_second_end_active_in_any_order() {
        let failed = link("evt_failed", Some("active"), "past_due");
        let recovered = link("evt_recovered", Some("past_due"), "active");
        assert_eq!(last(Some("active"), &[recovered.clone(), failed.clone()]), "evt_recovered");
        // And the other way round: recovered from an earlier failure, then failed again.
        assert_eq!(last(Some("past_due"), &[recovered, failed]), "evt_failed");
    }

    #[test]
    fn without_a_move_to_follow_the_status_further_along_wins_and_an_end_over_everything() {
        let created = link("evt_a", None, "incomplete");
        let active = link("evt_b", None, "active");
        let ended = link("evt_c", None, "ended");
        assert_eq!(last(None, &[created.clone(), active.clone()]), "evt_b", "created incomplete, then active");
        assert_eq!(last(Some("active"), &[ended, active.clone(), link("evt_d", Some("active"), "past_due")]), "evt_c");
        assert_eq!(last(None, &[active, link("evt_e", None, "trialing")]), "evt_b");
    }

    #[test]
    fn a_chain_is_followed_from_the_status_before_the_second() {
        let links = [
            link("evt_1", Some("trialing"), "active"),
            link("evt_2", Some("active"), "past_due"),
            link("evt_3", Some("past_due"), "active"),
        ];
        assert_eq!(last(Some("trialing"), &links), "evt_3");
    }
}
