//! Stripe's webhooks against a real database, both backends: every mapped event type moves the
//! store as its subscription's state says; redeliveries and out-of-order deliveries change
//! nothing more; bad signatures store nothing; many concurrent deliveries apply each event once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use planledger_domain::{Catalog, Command, Phase, StoreId};
use planledger_service::{Clock, CommandMeta, CommandService, Journal, ServiceConfig, TestClock};
use planledger_store::{AnyEventLog, EventLog, StoreConfig, StreamId};
use planledger_stripe::inbox::InboxStatus;
use planledger_stripe::signature::SigningSecret;
use planledger_stripe::{ReceiveError, Stripe, StripeConfig};
use planledger_testkit::stripe::{event, signature, Price, Subscription};
use planledger_testkit::{PgTestDatabase, SqliteTestDatabase};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "whsec_test_secret_one";
const NEXT_SECRET: &str = "whsec_test_secret_two";
const PRO: Price<'static> = Price { id: "price_1QproMonthly", lookup_key: Some("pro_monthly"), unit_amount: 2900 };
const STARTER: Price<'static> = Price { id: "price_1QstarterMonthly", lookup_key: None, unit_amount: 900 };
const UNMAPPED: Price<'static> =
    Price { id: "price_1Qunknown", lookup_key: Some("enterprise_yearly"), unit_amount: 99000 };

enum Db {
    Sqlite(#[allow(dead_code)] SqliteTestDatabase),
    Postgres(#[allow(dead_code)] Box<PgTestDatabase>),
}

struct World {
    log: AnyEventLog,
    clock: Arc<TestClock>,
    service: CommandService,
    stripe: Stripe,
    _db: Db,
}

fn catalog() -> Catalog {
    let text = format!(
        "{}\n[stripe]\nprices = {{ pro_monthly = \"professional\", price_1QstarterMonthly = \"starter\" }}\n",
        include_str!("../../../config/catalog.toml")
    );
    Catalog::parse("test catalog", &text).unwrap()
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

async fn world(postgres: bool, test: &str) -> Option<World> {
    let (url, db) = if postgres {
        let db = PgTestDatabase::create(test).await?;
        (db.url.clone(), Db::Postgres(Box::new(db)))
    } else {
        let db = SqliteTestDatabase::create();
        (db.url.clone(), Db::Sqlite(db))
    };
    let log = AnyEventLog::connect(&StoreConfig::new(url)).await.unwrap();
    log.migrate().await.unwrap();
    let catalog = Arc::new(catalog());
    let built_with = planledger_projections::schema::built_with(&planledger_domain::Catalogs::single(catalog.clone()));
    planledger_projections::schema::ensure(&log, &built_with, Utc::now()).await.unwrap();
    let clock = Arc::new(TestClock::new(start()));
    let (journal, _writer) = Journal::spawn(log.clone());
    let service = CommandService::new(
        log.clone(),
        catalog,
        clock.clone(),
        ServiceConfig::default(),
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    );
    let secrets = SigningSecret::parse_list(&format!("{SECRET},{NEXT_SECRET}")).unwrap();
    let stripe = Stripe::new(service.clone(), StripeConfig { secrets, tolerance: Duration::from_secs(300) });
    Some(World { log, clock, service, stripe, _db: db })
}

fn meta() -> CommandMeta {
    CommandMeta {
        correlation_id: "test".into(),
        actor: "tester".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    }
}

impl World {
    async fn trialing_store(&self) -> StoreId {
        let store = fresh_store(self).await;
        self.service
            .execute(store, Command::StartTrial { plan_id: None, days: None, force_reset: None }, meta())
            .await
            .unwrap();
        store
    }

    /// Delivers `event` as Stripe does: signed now with `secret`.
    async fn deliver_with(&self, event: &Value, secret: &str) -> Result<planledger_stripe::Receipt, ReceiveError> {
        let body = serde_json::to_vec(event).unwrap();
        let header = signature(secret, self.clock.now().timestamp(), &body);
        self.stripe.receive(Some(&header), &body).await
    }

    async fn deliver(&self, event: &Value) -> planledger_stripe::Receipt {
        self.deliver_with(event, SECRET).await.expect("a genuine delivery is stored")
    }

    async fn apply_all(&self) {
        while self.stripe.apply_due().await.unwrap() > 0 {}
    }

    async fn phase(&self, store: StoreId) -> (Phase, Option<String>) {
        let (state, _) = self.service.load_row(store).await.unwrap().unwrap();
        (state.phase, state.plan_id.map(|p| p.to_string()))
    }

    async fn status_of(&self, event_id: &str) -> (InboxStatus, String) {
        let event = planledger_stripe::inbox::get(&self.log, event_id).await.unwrap().expect("stored");
        (event.status, event.detail.unwrap_or_default())
    }

    async fn event_types(&self, store: StoreId) -> Vec<String> {
        let stream = StreamId::parse(store.stream_name()).unwrap();
        self.log.read_stream(&stream, 1, 1000).await.unwrap().into_iter().map(|e| e.event_type).collect()
    }
}

fn sub<'a>(id: &'a str, store: &'a str, status: &'a str, price: Price<'a>, created: i64) -> Subscription<'a> {
    Subscription {
        id,
        customer: "cus_QplanledgerTest",
        status,
        store_id: Some(store),
        price,
        created,
        trial_end: None,
        canceled_at: None,
        ended_at: None,
    }
}

/// One delivery: the event's id, type, object and previous attributes, and the phase it leaves
/// the store in.
type Step = (&'static str, &'static str, Value, Option<Value>, fn(&Phase) -> bool);

async fn every_mapped_type_moves_the_store(postgres: bool) {
    let Some(w) = world(postgres, "every_mapped_type_moves_the_store").await else { return };
    let store = w.trialing_store().await;
    let s = store.to_string();
    let t0 = start().timestamp();
    let active = sub("sub_1Qmapped", &s, "active", PRO, t0);

    // Noted only: the trial goes on.
    let mut trialing = active.clone();
    trialing.status = "trialing";
    trialing.trial_end = Some(t0 + 7 * 86_400);
    w.deliver(&event("evt_will_end", "customer.subscription.trial_will_end", t0, trialing.object(), None)).await;
    w.deliver(&event("evt_unmapped", "customer.created", t0, json!({"id": "cus_1", "object": "customer"}), None)).await;
    w.apply_all().await;
    assert_eq!(w.status_of("evt_will_end").await.0, InboxStatus::Applied);
    assert_eq!(w.status_of("evt_unmapped").await.0, InboxStatus::Ignored);
    assert!(matches!(w.phase(store).await.0, Phase::Trialing { .. }));

    let steps: Vec<Step> = vec![
        ("evt_created", "customer.subscription.created", active.object(), None, |p| matches!(p, Phase::Active { .. })),
        ("evt_failed", "invoice.payment_failed", active.invoice("in_1", t0 + 10, false), None, |p| {
            matches!(p, Phase::PastDue { .. })
        }),
        ("evt_paid", "invoice.paid", active.invoice("in_1", t0 + 20, true), None, |p| {
            matches!(p, Phase::Active { .. })
        }),
        (
            "evt_past_due",
            "customer.subscription.updated",
            sub("sub_1Qmapped", &s, "past_due", PRO, t0).object(),
            Some(json!({"status": "active"})),
            |p| matches!(p, Phase::PastDue { .. }),
        ),
        (
            "evt_unpaid",
            "customer.subscription.updated",
            sub("sub_1Qmapped", &s, "unpaid", PRO, t0).object(),
            Some(json!({"status": "past_due"})),
            |p| matches!(p, Phase::PastDue { .. }),
        ),
        (
            "evt_resumed",
            "customer.subscription.resumed",
            sub("sub_1Qmapped", &s, "active", PRO, t0).object(),
            None,
            |p| matches!(p, Phase::Active { .. }),
        ),
        (
            "evt_deleted",
            "customer.subscription.deleted",
            {
                let mut ended = sub("sub_1Qmapped", &s, "canceled", PRO, t0);
                ended.canceled_at = Some(t0 + 60);
                ended.ended_at = Some(t0 + 60);
                ended.object()
            },
            None,
            |p| matches!(p, Phase::Canceled { .. }),
        ),
    ];
    for (offset, (id, kind, object, previous, expect)) in steps.into_iter().enumerate() {
        w.deliver(&event(id, kind, t0 + 100 + offset as i64, object, previous)).await;
        w.apply_all().await;
        let (status, detail) = w.status_of(id).await;
        assert_eq!(status, InboxStatus::Applied, "{id}: {detail}");
        let (phase, plan) = w.phase(store).await;
        assert!(expect(&phase), "{id}: {phase:?} ({detail})");
        assert_eq!(plan.as_deref(), Some("professional"), "{id}");
    }
    // Every event the ledger appended names the Stripe event as its correlation and cause.
    let stream = StreamId::parse(store.stream_name()).unwrap();
    let events = w.log.read_stream(&stream, 1, 1000).await.unwrap();
    let from_stripe: Vec<_> = events.iter().filter(|e| e.actor == "stripe").collect();
    // Six changes: `unpaid` found the store past due already.
    assert_eq!(from_stripe.len(), 6, "{:?}", events.iter().map(|e| &e.event_type).collect::<Vec<_>>());
    for e in from_stripe {
        assert!(e.correlation_id.starts_with("evt_"), "{e:?}");
        assert_eq!(e.causation_id.as_deref(), Some(e.correlation_id.as_str()));
    }
}

async fn statuses_that_never_paid_leave_the_trial_alone(postgres: bool) {
    let Some(w) = world(postgres, "statuses_that_never_paid_leave_the_trial_alone").await else { return };
    let t0 = start().timestamp();
    for (id, status) in
        [("evt_paused", "paused"), ("evt_expired", "incomplete_expired"), ("evt_incomplete", "incomplete")]
    {
        let store = w.trialing_store().await;
        let s = store.to_string();
        let mut object = sub("sub_1Qnever", &s, status, PRO, t0);
        object.id = id; // one subscription per store
        object.trial_end = Some(t0 + 86_400);
        w.deliver(&event(
            id,
            "customer.subscription.updated",
            t0,
            object.object(),
            Some(json!({"status": "trialing"})),
        ))
        .await;
        w.apply_all().await;
        assert_eq!(w.status_of(id).await.0, InboxStatus::Applied);
        assert!(matches!(w.phase(store).await.0, Phase::Trialing { .. }), "{status}");
    }
}

async fn redeliveries_and_any_order_end_in_the_newest_state(postgres: bool) {
    let Some(w) = world(postgres, "redeliveries_and_any_order_end_in_the_newest_state").await else { return };
    let t0 = start().timestamp();
    for newest_first in [false, true] {
        let store = w.trialing_store().await;
        let s = store.to_string();
        let sub_id = if newest_first { "sub_1Qreversed" } else { "sub_1Qinorder" };
        let older = event(
            &format!("evt_a_{sub_id}"),
            "customer.subscription.created",
            t0,
            sub(sub_id, &s, "active", PRO, t0).object(),
            None,
        );
        let newer = event(
            &format!("evt_b_{sub_id}"),
            "customer.subscription.updated",
            t0 + 5,
            sub(sub_id, &s, "past_due", PRO, t0).object(),
            Some(json!({"status": "active"})),
        );
        let (first, second) = if newest_first { (&newer, &older) } else { (&older, &newer) };
        assert!(!w.deliver(first).await.duplicate);
        w.apply_all().await;
        assert!(!w.deliver(second).await.duplicate);
        assert!(w.deliver(first).await.duplicate, "a redelivery is recognised");
        w.apply_all().await;
        assert!(matches!(w.phase(store).await.0, Phase::PastDue { .. }), "newest first: {newest_first}");
        let second_id = second["id"].as_str().unwrap();
        let expected = if newest_first { InboxStatus::Stale } else { InboxStatus::Applied };
        assert_eq!(w.status_of(second_id).await.0, expected);
        let activations = w.event_types(store).await.iter().filter(|t| *t == "SubscriptionActivated").count();
        assert_eq!(activations, 1, "applied once, whatever was delivered twice");
    }
}

async fn bad_deliveries_store_nothing(postgres: bool) {
    let Some(w) = world(postgres, "bad_deliveries_store_nothing").await else { return };
    let store = w.trialing_store().await;
    let s = store.to_string();
    let t0 = start().timestamp();
    let genuine = event(
        "evt_genuine",
        "customer.subscription.created",
        t0,
        sub("sub_1Qbad", &s, "active", PRO, t0).object(),
        None,
    );
    let body = serde_json::to_vec(&genuine).unwrap();
    let now = w.clock.now().timestamp();
    // Tampered: the body changed after signing.
    let header = signature(SECRET, now, &body);
    let tampered = String::from_utf8(body.clone()).unwrap().replace("active", "past_due");
    assert!(matches!(w.stripe.receive(Some(&header), tampered.as_bytes()).await, Err(ReceiveError::Signature(_))));
    // Signed with a secret that is not ours.
    let foreign = signature("whsec_someone_elses", now, &body);
    assert!(matches!(w.stripe.receive(Some(&foreign), &body).await, Err(ReceiveError::Signature(_))));
    // A genuine signature replayed ten minutes later.
    let replayed = signature(SECRET, now - 600, &body);
    assert!(matches!(w.stripe.receive(Some(&replayed), &body).await, Err(ReceiveError::Signature(_))));
    assert!(matches!(w.stripe.receive(None, &body).await, Err(ReceiveError::Signature(_))));
    // Signed, but not an event.
    let not_event = br#"{"object":"customer","id":"cus_1"}"#;
    let header = signature(SECRET, now, not_event);
    assert!(matches!(w.stripe.receive(Some(&header), not_event).await, Err(ReceiveError::NotAnEvent(_))));
    assert!(w.stripe.list(None, 0, 100).await.unwrap().is_empty(), "nothing stored");
    assert_eq!(w.stripe.metrics().rejected.load(std::sync::atomic::Ordering::Relaxed), 5);
    // During a rotation, either secret signs.
    assert!(w.deliver_with(&genuine, NEXT_SECRET).await.is_ok());
    assert!(w.deliver_with(&genuine, SECRET).await.unwrap().duplicate);
}

async fn what_cannot_be_applied_is_parked_until_retried(postgres: bool) {
    let Some(w) = world(postgres, "what_cannot_be_applied_is_parked_until_retried").await else { return };
    let t0 = start().timestamp();
    let unknown_store = StoreId::new(Uuid::new_v4()).to_string();
    w.deliver(&event(
        "evt_no_store",
        "customer.subscription.created",
        t0,
        sub("sub_1Qp1", &unknown_store, "active", STARTER, t0).object(),
        None,
    ))
    .await;
    let registered = w.trialing_store().await.to_string();
    w.deliver(&event(
        "evt_no_plan",
        "customer.subscription.created",
        t0,
        sub("sub_1Qp2", &registered, "active", UNMAPPED, t0).object(),
        None,
    ))
    .await;
    let mut anonymous = sub("sub_1Qp3", "", "active", STARTER, t0);
    anonymous.store_id = None;
    anonymous.customer = "cus_Qnobody";
    w.deliver(&event("evt_anonymous", "customer.subscription.created", t0, anonymous.object(), None)).await;
    w.apply_all().await;
    let (status, detail) = w.status_of("evt_no_store").await;
    assert_eq!(status, InboxStatus::Parked);
    assert!(detail.contains("not registered"), "{detail}");
    let (status, detail) = w.status_of("evt_no_plan").await;
    assert_eq!(status, InboxStatus::Parked);
    assert!(
        detail.contains("price_1Qunknown")
            && detail.contains("enterprise_yearly")
            && detail.contains("[stripe] prices"),
        "{detail}"
    );
    let (status, detail) = w.status_of("evt_anonymous").await;
    assert_eq!(status, InboxStatus::Parked);
    assert!(detail.contains("metadata.store_id"), "{detail}");

    // The store is registered after all; the operator retries: applied.
    let store = StoreId::parse(&unknown_store).unwrap();
    w.service
        .execute(store, Command::RegisterStore { store_id: store, name: None, time_zone: None }, meta())
        .await
        .unwrap();
    assert!(matches!(w.stripe.retry("evt_no_store").await.unwrap(), planledger_stripe::Retry::Requeued(_)));
    assert!(
        matches!(w.stripe.retry("evt_no_store").await.unwrap(), planledger_stripe::Retry::NotRetryable(_)),
        "queued already"
    );
    assert!(matches!(w.stripe.retry("evt_never_sent").await.unwrap(), planledger_stripe::Retry::NotFound));
    w.apply_all().await;
    assert_eq!(w.status_of("evt_no_store").await.0, InboxStatus::Applied);
    assert!(matches!(w.phase(store).await, (Phase::Active { .. }, Some(plan)) if plan == "starter"));
}

async fn concurrent_deliveries_apply_each_event_once(postgres: bool) {
    let Some(w) = world(postgres, "concurrent_deliveries_apply_each_event_once").await else { return };
    let t0 = start().timestamp();
    let mut stores = Vec::new();
    let mut events = Vec::new();
    for i in 0..100 {
        let store = w.trialing_store().await;
        let s = store.to_string();
        let sub_id = format!("sub_1Qmany{i:03}");
        events.push(event(
            &format!("evt_many_{i:03}"),
            "customer.subscription.created",
            t0,
            sub(&sub_id, &s, "active", PRO, t0).object(),
            None,
        ));
        stores.push(store);
    }
    let w = Arc::new(w);
    // 1,000 deliveries: each event ten times, all at once, while the applier runs.
    let mut deliveries = Vec::new();
    for round in 0..10 {
        for e in &events {
            let (w, e) = (w.clone(), e.clone());
            deliveries.push(tokio::spawn(async move {
                if round % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                w.deliver(&e).await
            }));
        }
    }
    let applier = {
        let w = w.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                w.stripe.apply_due().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut new = 0;
    for d in deliveries {
        if !d.await.unwrap().duplicate {
            new += 1;
        }
    }
    applier.await.unwrap();
    w.apply_all().await;
    assert_eq!(new, 100, "each event stored once");
    let listed = w.stripe.list(None, 0, 1000).await.unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(listed.iter().map(|e| e.deliveries).sum::<i64>(), 1000);
    assert!(
        listed.iter().all(|e| e.status == InboxStatus::Applied),
        "{:?}",
        listed.iter().find(|e| e.status != InboxStatus::Applied)
    );
    for store in stores {
        let activations = w.event_types(store).await.iter().filter(|t| *t == "SubscriptionActivated").count();
        assert_eq!(activations, 1, "{store}");
    }
    let m = w.stripe.metrics();
    assert_eq!(
        (
            m.received.load(std::sync::atomic::Ordering::Relaxed),
            m.duplicates.load(std::sync::atomic::Ordering::Relaxed)
        ),
        (100, 900)
    );
}

/// A registered store that has had no trial of its own.
async fn fresh_store(w: &World) -> StoreId {
    let store = StoreId::new(Uuid::new_v4());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    w.service.execute(store, register, meta()).await.unwrap();
    store
}

/// A subscription's life as Stripe tells it: it starts trialing (its trial ends 5 s after it
/// is created), becomes active, fails a payment and recovers, moves to another price; with
/// `ended`, it then fails again and is deleted.
fn lifecycle(sub_id: &'static str, store: &str, ended: bool) -> Vec<Value> {
    let t0 = start().timestamp();
    let at = |status: &'static str, price: Price<'static>| {
        let mut s = sub(sub_id, store, status, price, t0);
        s.trial_end = Some(t0 + 5);
        s
    };
    let updated = |n: i64, status: &'static str, price: Price<'static>, previous: Value| {
        let id = format!("evt_{n}_{sub_id}");
        event(&id, "customer.subscription.updated", t0 + n, at(status, price).object(), Some(previous))
    };
    let mut events = vec![
        event(&format!("evt_0_{sub_id}"), "customer.subscription.created", t0, at("trialing", PRO).object(), None),
        updated(10, "active", PRO, json!({"status": "trialing"})),
        updated(20, "past_due", PRO, json!({"status": "active"})),
        updated(30, "active", PRO, json!({"status": "past_due"})),
        updated(40, "active", STARTER, json!({"items": {}})),
    ];
    if ended {
        events.push(updated(45, "past_due", STARTER, json!({"status": "active"})));
        let mut gone = at("canceled", STARTER);
        (gone.canceled_at, gone.ended_at) = (Some(t0 + 50), Some(t0 + 50));
        events.push(event(&format!("evt_50_{sub_id}"), "customer.subscription.deleted", t0 + 50, gone.object(), None));
    }
    events
}

/// Every order of `events`' indices (Heap's algorithm).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, items: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(items.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, items, out);
            let j = if k % 2 == 0 { i } else { 0 };
            items.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect(), &mut out);
    out
}

/// What a store ends as that the Stripe order must not change.
async fn end_state(w: &World, store: StoreId) -> (Phase, Option<String>, bool, Option<DateTime<Utc>>) {
    let (state, _) = w.service.load_row(store).await.unwrap().unwrap();
    (state.phase, state.plan_id.map(|p| p.to_string()), state.trial_used, state.trial_ends_at)
}

async fn every_order_of_a_subscriptions_events_ends_in_one_state(postgres: bool) {
    let Some(w) = world(postgres, "every_order_of_a_subscriptions_events_ends_in_one_state").await else { return };
    let trial_end = Utc.timestamp_opt(start().timestamp() + 5, 0).unwrap();
    let orders = permutations(5);
    assert_eq!(orders.len(), 120);
    for (n, order) in orders.iter().enumerate() {
        let store = fresh_store(&w).await;
        let sub_id: &'static str = Box::leak(format!("sub_perm{n}").into_boxed_str());
        let events = lifecycle(sub_id, &store.to_string(), false);
        for &i in order {
            w.deliver(&events[i]).await;
            w.apply_all().await;
        }
        let (phase, plan, used, ends) = end_state(&w, store).await;
        assert!(matches!(phase, Phase::Active { .. }), "order {order:?}: {phase:?}");
        assert_eq!((plan.as_deref(), used, ends), (Some("starter"), true, Some(trial_end)), "order {order:?}");
    }
}

async fn any_order_with_redeliveries_of_a_deleted_subscription_leaves_no_free_trial(postgres: bool) {
    let test = "any_order_with_redeliveries_of_a_deleted_subscription_leaves_no_free_trial";
    let Some(w) = world(postgres, test).await else { return };
    let trial_end = Utc.timestamp_opt(start().timestamp() + 5, 0).unwrap();
    // A fixed seed: the same 200 orders every run (SplitMix64).
    let mut seed = 0x5eed_u64;
    let mut next = move |below: usize| {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % below as u64) as usize
    };
    for n in 0..200 {
        let store = fresh_store(&w).await;
        let sub_id: &'static str = Box::leak(format!("sub_dup{n}").into_boxed_str());
        let events = lifecycle(sub_id, &store.to_string(), true);
        assert_eq!(events.len(), 7);
        // Each event once or twice, in a shuffled order (Fisher-Yates).
        let mut order: Vec<usize> = (0..7).chain((0..7).filter(|_| next(3) == 0)).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, next(i + 1));
        }
        for &i in &order {
            w.deliver(&events[i]).await;
            if next(2) == 0 {
                w.apply_all().await;
            }
        }
        w.apply_all().await;
        let (phase, plan, used, ends) = end_state(&w, store).await;
        assert!(matches!(phase, Phase::Canceled { .. }), "order {order:?}: {phase:?}");
        assert_eq!((plan.as_deref(), used, ends), (Some("starter"), true, Some(trial_end)), "order {order:?}");
        let again = Command::StartTrial { plan_id: None, days: None, force_reset: None };
        let answer = w.service.execute(store, again, meta()).await.unwrap();
        assert!(
            matches!(&answer, planledger_service::Answer::Decided(planledger_service::Outcome::Refused(r)) if r.code() == "trial_already_used"),
            "order {order:?}: a store whose Stripe subscription had a trial starts no free one: {answer:?}"
        );
    }
}

async fn a_failure_and_recovery_of_one_second_delivered_in_reverse_end_active(postgres: bool) {
    let test = "a_failure_and_recovery_of_one_second_delivered_in_reverse_end_active";
    let Some(w) = world(postgres, test).await else { return };
    let store = fresh_store(&w).await;
    let s = store.to_string();
    let t0 = start().timestamp();
    let created = event(
        "evt_1Qcreated",
        "customer.subscription.created",
        t0,
        sub("sub_1Qsecond", &s, "active", PRO, t0).object(),
        None,
    );
    let failed = event(
        "evt_1Qfailed",
        "customer.subscription.updated",
        t0 + 9,
        sub("sub_1Qsecond", &s, "past_due", PRO, t0).object(),
        Some(json!({"status": "active"})),
    );
    let recovered = event(
        "evt_1Qrecovered",
        "customer.subscription.updated",
        t0 + 9,
        sub("sub_1Qsecond", &s, "active", PRO, t0).object(),
        Some(json!({"status": "past_due"})),
    );
    for e in [&created, &recovered, &failed] {
        w.deliver(e).await;
        w.apply_all().await;
    }
    assert!(matches!(w.phase(store).await.0, Phase::Active { .. }), "{:?}", w.phase(store).await);
    assert_eq!(w.status_of("evt_1Qfailed").await.0, InboxStatus::Stale);
}

planledger_testkit::on_both_backends!(
    every_order_of_a_subscriptions_events_ends_in_one_state,
    any_order_with_redeliveries_of_a_deleted_subscription_leaves_no_free_trial,
    a_failure_and_recovery_of_one_second_delivered_in_reverse_end_active,
    every_mapped_type_moves_the_store,
    statuses_that_never_paid_leave_the_trial_alone,
    redeliveries_and_any_order_end_in_the_newest_state,
    bad_deliveries_store_nothing,
    what_cannot_be_applied_is_parked_until_retried,
    concurrent_deliveries_apply_each_event_once,
);
