//! Notifications against a real database (both backends) and a real HTTP receiver that verifies
//! every delivery with the `standardwebhooks` crate (the specification's reference library, not
//! planledger's signing code): each kind fires once at its time under the test clock; warnings
//! that no longer apply are skipped; failures are retried with the same id, then given up, and
//! an endpoint failing for days is disabled; a store's deliveries arrive in order; projecting
//! the log again sends nothing twice; the feed follows the log and never skips a late commit.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use planledger_domain::{
    ActionName, Amount, Catalog, Command, Days, ExtensionKind, PlanId, Reason, StoreId, SubscriptionId,
};
use planledger_notify::address::AddressPolicy;
use planledger_notify::notice::Kind;
use planledger_notify::outbox::{self, DeliveryStatus};
use planledger_notify::{feed, NewEndpoint, Notifier, NotifyConfig, Retry};
use planledger_service::{Clock, CommandMeta, CommandService, Journal, ServiceConfig, TestClock};
use planledger_store::{AnyEventLog, AnyTx, Checkpoint, EventLog, NewEvent, StoreConfig, StreamId};
use planledger_testkit::webhooks::{Answer, Receiver};
use planledger_testkit::{PgTestDatabase, SqliteTestDatabase};
use uuid::Uuid;

enum Db {
    Sqlite(#[allow(dead_code)] SqliteTestDatabase),
    Postgres(#[allow(dead_code)] Box<PgTestDatabase>),
}

struct World {
    log: AnyEventLog,
    clock: Arc<TestClock>,
    service: CommandService,
    notifier: Notifier,
    receiver: Receiver,
    _db: Db,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

async fn world(postgres: bool, test: &str, config: NotifyConfig) -> Option<World> {
    let (url, db) = if postgres {
        let db = PgTestDatabase::create(test).await?;
        (db.url.clone(), Db::Postgres(Box::new(db)))
    } else {
        let db = SqliteTestDatabase::create();
        (db.url.clone(), Db::Sqlite(db))
    };
    let log = AnyEventLog::connect(&StoreConfig::new(url)).await.unwrap();
    log.migrate().await.unwrap();
    let catalog = Arc::new(Catalog::builtin());
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
    // The receivers run on loopback, which the outbound address policy refuses unless admitted.
    let config = NotifyConfig { address_policy: AddressPolicy::parse("127.0.0.1").unwrap(), ..config };
    let notifier = Notifier::new(service.clone(), config);
    let receiver = Receiver::start().await;
    Some(World { log, clock, service, notifier, receiver, _db: db })
}

fn meta() -> CommandMeta {
    CommandMeta {
        correlation_id: "notify-test".into(),
        actor: "tester".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    }
}

impl World {
    async fn endpoint(&self, kinds: &[Kind], event_types: Option<Vec<String>>) -> outbox::Endpoint {
        let endpoint = self
            .notifier
            .create_endpoint(NewEndpoint {
                url: self.receiver.url.clone(),
                description: None,
                kinds: kinds.to_vec(),
                event_types,
            })
            .await
            .unwrap();
        self.receiver.trust(&endpoint.secret);
        endpoint
    }

    async fn run(&self, store: StoreId, command: Command) {
        self.service.execute(store, command, meta()).await.unwrap();
    }

    async fn trialing_store(&self) -> StoreId {
        let store = StoreId::new(Uuid::new_v4());
        self.run(store, Command::RegisterStore { store_id: store, name: None, time_zone: None }).await;
        self.run(store, Command::StartTrial { plan_id: None, days: None, force_reset: None }).await;
        store
    }

    /// Moves the clock, applies due transitions, projects the log and delivers what is due.
    async fn at(&self, by: TimeDelta) {
        self.clock.advance(by);
        self.service.sweep().await.unwrap();
        self.settle().await;
    }

    /// Projects the whole log (waiting while a transaction that began before the last commit,
    /// the journal writer's say, keeps the newest events from the gap-safe feed) and delivers.
    async fn settle(&self) {
        self.project_all().await;
        while self.notifier.deliver_due().await.unwrap() > 0 {}
    }

    /// Projects the whole log into deliveries, sending none.
    async fn project_all(&self) {
        loop {
            while self.notifier.project_page().await.unwrap() > 0 {}
            let checkpoint = self.log.load_checkpoint(planledger_notify::PROJECTOR).await.unwrap();
            if self.log.lag_after(checkpoint).await.unwrap().0 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn deliveries(&self, endpoint: &str) -> Vec<outbox::Delivery> {
        self.notifier.deliveries(endpoint, None, 0, 1000).await.unwrap()
    }
}

fn all_but_raw() -> Vec<Kind> {
    Kind::ALL.into_iter().filter(|k| *k != Kind::LedgerEvent).collect()
}

async fn every_kind_fires_once_at_its_time(postgres: bool) {
    let Some(w) = world(postgres, "every_kind_fires_once_at_its_time", NotifyConfig::default()).await else { return };
    let endpoint = w.endpoint(&all_but_raw(), None).await;
    let freezes = w.trialing_store().await;
    let pays = w.trialing_store().await;
    w.settle().await;
    assert!(w.receiver.kinds_of(&freezes.to_string()).is_empty(), "nothing is due on the first day");

    // 8 of the trial's 10 articles: 80 % of the window.
    let article = ActionName::parse("create_article").unwrap();
    for _ in 0..2 {
        let consumption = Command::Consume {
            action: article.clone(),
            amount: Amount::parse(4).unwrap(),
            consumption_id: Uuid::new_v4(),
        };
        w.run(freezes, consumption).await;
    }
    w.settle().await;
    assert_eq!(w.receiver.kinds_of(&freezes.to_string()), ["quota.threshold"]);

    w.at(TimeDelta::days(11) - TimeDelta::seconds(1)).await;
    assert_eq!(w.receiver.kinds_of(&freezes.to_string()), ["quota.threshold"], "a second early");
    w.at(TimeDelta::seconds(1)).await; // 3 days before the 14-day trial ends
    w.at(TimeDelta::days(3)).await; // expired; grace ends in 3 days
    w.at(TimeDelta::days(2)).await; // a day before the grace ends
    w.at(TimeDelta::days(1)).await; // downgraded to maintenance for 180 days
                                    // The other store pays while in maintenance: it is not warned it will freeze.
    let subscription = Command::ActivateSubscription {
        plan_id: PlanId::parse("starter").unwrap(),
        subscription_id: SubscriptionId::parse("sub_1Qnotify").unwrap(),
    };
    w.run(pays, subscription).await;
    let upgrade = Command::TransitionPlan(planledger_domain::TransitionPlan {
        from_plan_id: PlanId::parse("starter").unwrap(),
        to_plan_id: PlanId::parse("professional").unwrap(),
        reason: planledger_domain::TransitionReason::Upgrade,
        subscription_id: Some(SubscriptionId::parse("sub_1Qnotify").unwrap()),
        metadata: None,
        by_admin: false,
    });
    w.run(pays, upgrade).await;
    w.at(TimeDelta::days(173)).await; // 7 days before the freeze
    w.at(TimeDelta::days(6)).await; // 1 day before
    w.at(TimeDelta::days(1)).await; // frozen
    w.at(TimeDelta::days(30)).await; // nothing more

    assert_eq!(
        w.receiver.kinds_of(&freezes.to_string()),
        [
            "quota.threshold",
            "trial.ending_soon",
            "trial.expired",
            "grace.ending_soon",
            "store.downgraded_to_maintenance",
            "store.freeze_warning",
            "store.freeze_warning",
            "store.frozen",
        ]
    );
    assert_eq!(
        w.receiver.kinds_of(&pays.to_string()),
        [
            "trial.ending_soon",
            "trial.expired",
            "grace.ending_soon",
            "store.downgraded_to_maintenance",
            "subscription.changed",
            "plan.transitioned",
        ]
    );
    {
        let inbox = w.receiver.lock();
        assert_eq!(inbox.rejected, 0, "every delivery verifies");
        let ids: std::collections::HashSet<&String> = inbox.taken.iter().map(|r| &r.webhook_id).collect();
        assert_eq!(ids.len(), inbox.taken.len(), "each notification once");
        let warning = &inbox.taken.iter().find(|r| r.kind == "trial.ending_soon").unwrap().body;
        assert_eq!(warning["data"]["daysBefore"], 3);
        assert_eq!(warning["data"]["source"]["correlationId"], "notify-test");
    }
    let skipped: Vec<_> = w
        .deliveries(&endpoint.id)
        .await
        .into_iter()
        .filter(|d| d.status == DeliveryStatus::Skipped)
        .map(|d| (d.kind, d.store_id))
        .collect();
    assert_eq!(skipped, vec![(Kind::StoreFreezeWarning, pays.to_string()); 2], "the paying store's warnings");
}

async fn an_extended_trial_is_warned_of_its_new_end_only(postgres: bool) {
    let Some(w) = world(postgres, "an_extended_trial_is_warned_of_its_new_end_only", NotifyConfig::default()).await
    else {
        return;
    };
    w.endpoint(&[Kind::TrialEndingSoon], None).await;
    let store = w.trialing_store().await;
    w.at(TimeDelta::days(5)).await;
    let extension = Command::Extend {
        kind: ExtensionKind::Trial,
        days: Days::parse(10).unwrap(),
        reason: Reason::parse("support").unwrap(),
    };
    w.run(store, extension).await;
    w.at(TimeDelta::days(6)).await; // the first end's warning time: superseded
    assert!(w.receiver.kinds_of(&store.to_string()).is_empty());
    w.at(TimeDelta::days(10)).await; // 3 days before the new end
    assert_eq!(w.receiver.kinds_of(&store.to_string()), ["trial.ending_soon"]);
}

async fn failures_are_retried_with_the_same_id_then_given_up(postgres: bool) {
    let config =
        NotifyConfig { timeout: Duration::from_millis(500), disable_after: TimeDelta::days(2), ..Default::default() };
    let Some(w) = world(postgres, "failures_are_retried_with_the_same_id_then_given_up", config).await else { return };
    let endpoint = w.endpoint(&[Kind::LedgerEvent], Some(vec!["StoreRegistered".into()])).await;
    w.receiver.script(&[Answer::Status(500), Answer::Sleep(Duration::from_secs(2))]);
    let store = StoreId::new(Uuid::new_v4());
    w.run(store, Command::RegisterStore { store_id: store, name: None, time_zone: None }).await;
    w.settle().await; // 500
    let delivery = w.deliveries(&endpoint.id).await.pop().unwrap();
    assert_eq!(
        (delivery.status, delivery.attempts, delivery.last_status_code),
        (DeliveryStatus::Pending, 1, Some(500))
    );
    let wait = delivery.next_attempt_at - w.clock.now();
    assert!(wait >= TimeDelta::seconds(4) && wait <= TimeDelta::seconds(6), "first retry after about 5 s: {wait}");
    w.settle().await;
    assert_eq!(w.deliveries(&endpoint.id).await[0].attempts, 1, "not before its time");
    w.at(TimeDelta::seconds(6)).await; // times out
    w.at(TimeDelta::seconds(30)).await; // answered
    let (delivery, attempts) = w.notifier.delivery(&delivery.id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    let codes: Vec<Option<i64>> = attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), None, Some(200)]);
    assert_eq!(
        attempts[1].error.as_deref(),
        Some(planledger_notify::NO_ANSWER),
        "one text for every failure to answer"
    );
    assert_eq!(attempts[1].latency_ms, 0, "no latency that would tell a timeout from a refusal");
    let ids: Vec<String> = w.receiver.lock().requests.iter().map(|r| r.webhook_id.clone()).collect();
    assert_eq!(ids.len(), 3, "three attempts reached the receiver");
    assert!(ids.iter().all(|id| *id == delivery.notification_id), "one webhook-id on every attempt: {ids:?}");
    assert!(w.notifier.endpoint(&endpoint.id).await.unwrap().unwrap().failing_since.is_none(), "it answers again");

    // A receiver that always fails: given up after three days, the endpoint disabled after two.
    w.receiver.script(&[Answer::Status(503); 100]);
    let other = StoreId::new(Uuid::new_v4());
    w.run(other, Command::RegisterStore { store_id: other, name: None, time_zone: None }).await;
    for _ in 0..40 {
        w.at(TimeDelta::hours(3)).await;
    }
    let failed = w.deliveries(&endpoint.id).await.pop().unwrap();
    let endpoint_now = w.notifier.endpoint(&endpoint.id).await.unwrap().unwrap();
    assert!(!endpoint_now.enabled, "disabled after failing for two days");
    assert!(
        endpoint_now.disabled_reason.as_deref().unwrap().contains("failed for 2 days"),
        "{:?}",
        endpoint_now.disabled_reason
    );
    assert_eq!(failed.status, DeliveryStatus::Pending, "a disabled endpoint's delivery waits");
    w.notifier
        .update_endpoint(&endpoint.id, &outbox::EndpointChange { enabled: Some(true), ..Default::default() })
        .await
        .unwrap();
    for _ in 0..10 {
        w.at(TimeDelta::hours(6)).await;
    }
    let failed = w.deliveries(&endpoint.id).await.pop().unwrap();
    assert_eq!(failed.status, DeliveryStatus::Failed, "given up after the retry period");
    assert!(failed.attempts >= 10, "{} attempts", failed.attempts);
    assert!(matches!(w.notifier.retry(&delivery.id).await.unwrap(), Retry::NotRetryable(_)));
    assert!(matches!(w.notifier.retry("dlv_none").await.unwrap(), Retry::NotFound));
    w.receiver.lock().script.clear();
    assert!(matches!(w.notifier.retry(&failed.id).await.unwrap(), Retry::Requeued(_)));
    w.settle().await;
    assert_eq!(w.receiver.kinds_of(&other.to_string()), ["ledger.event"], "an operator's retry delivers it");
}

async fn a_stores_deliveries_arrive_in_order_and_projecting_again_sends_nothing_twice(postgres: bool) {
    let test = "a_stores_deliveries_arrive_in_order_and_projecting_again_sends_nothing_twice";
    let Some(w) = world(postgres, test, NotifyConfig::default()).await else { return };
    let endpoint = w.endpoint(&[Kind::LedgerEvent], None).await;
    w.receiver.script(&[Answer::Status(500)]);
    let store = w.trialing_store().await;
    let article = ActionName::parse("create_article").unwrap();
    for _ in 0..3 {
        let consumption = Command::Consume {
            action: article.clone(),
            amount: Amount::parse(1).unwrap(),
            consumption_id: Uuid::new_v4(),
        };
        w.run(store, consumption).await;
    }
    w.settle().await;
    assert!(w.receiver.kinds_of(&store.to_string()).is_empty(), "the first failed: the others wait their turn");
    let pending = w.deliveries(&endpoint.id).await;
    assert_eq!(pending.iter().map(|d| d.attempts).collect::<Vec<_>>(), [1, 0, 0, 0, 0]);
    w.at(TimeDelta::minutes(1)).await;
    let versions: Vec<i64> =
        w.receiver.lock().taken.iter().map(|r| r.body["data"]["source"]["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);

    // The projector reads the whole log again (its checkpoint lost): nothing new is made or sent.
    let head = w.log.load_checkpoint(planledger_notify::PROJECTOR).await.unwrap();
    let mut tx = w.log.begin().await.unwrap();
    w.log.compare_and_set_checkpoint_in(&mut tx, planledger_notify::PROJECTOR, head, Checkpoint::ORIGIN).await.unwrap();
    w.log.commit(tx).await.unwrap();
    w.settle().await;
    assert_eq!(w.deliveries(&endpoint.id).await.len(), 5);
    assert_eq!(w.receiver.lock().taken.len(), 5);
}

async fn the_feed_follows_the_log_and_never_skips_a_late_commit(postgres: bool) {
    let test = "the_feed_follows_the_log_and_never_skips_a_late_commit";
    let Some(w) = world(postgres, test, NotifyConfig::default()).await else { return };
    let store = w.trialing_store().await;
    let first = feed::read(&w.log, Checkpoint::ORIGIN, None, 1).await.unwrap();
    assert_eq!(first.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["StoreRegistered"]);
    let rest = feed::read(&w.log, first.next, None, 100).await.unwrap();
    assert_eq!(rest.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["TrialStarted"]);
    let types = vec!["StoreFrozen".to_owned()];
    let none = feed::read(&w.log, Checkpoint::ORIGIN, Some(&types), 100).await.unwrap();
    assert!(none.events.is_empty());
    assert_eq!(none.next, rest.next, "the cursor moves past what the filter leaves out");

    // A long poll answers when an event commits.
    let service = w.service.clone();
    let (_drain, draining) = tokio::sync::watch::channel(false);
    let follow = feed::Feed::new(w.log.clone(), 8, draining);
    let waiter = tokio::spawn({
        let follow = follow.clone();
        let after = rest.next;
        async move { follow.read(after, None, 100, Duration::from_secs(20)).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let consumption = Command::Consume {
        action: ActionName::parse("create_article").unwrap(),
        amount: Amount::parse(1).unwrap(),
        consumption_id: Uuid::new_v4(),
    };
    service.execute(store, consumption, meta()).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!(woke.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["QuotaConsumed"]);

    // A transaction that began first and commits last is read before what followed it.
    if postgres {
        let late = StreamId::parse("notify-late").unwrap();
        let event = NewEvent::new("Late", 1, serde_json::json!({}), "late", "tester", "none", Utc::now());
        let mut tx = w.log.begin().await.unwrap();
        w.log.append_in(&mut tx, &late, 0, std::slice::from_ref(&event)).await.unwrap();
        let early = StreamId::parse("notify-early").unwrap();
        w.log
            .append(
                &early,
                0,
                &[NewEvent::new("Early", 1, serde_json::json!({}), "early", "tester", "none", Utc::now())],
            )
            .await
            .unwrap();
        let before = feed::read(&w.log, woke.next, None, 100).await.unwrap();
        assert!(before.events.is_empty(), "nothing past a transaction still open");
        let AnyTx::Postgres(_) = &tx else { unreachable!() };
        w.log.commit(tx).await.unwrap();
        // Read on until both are there (another transaction running, the journal writer's, may
        // hold the feed back a moment): the late one comes first.
        let (mut read, mut cursor) = (Vec::new(), before.next);
        while read.len() < 2 {
            let page = follow.read(cursor, None, 100, Duration::from_secs(5)).await.unwrap();
            assert!(!page.events.is_empty(), "both commits are read within the wait");
            read.extend(page.events.into_iter().map(|e| e.event_type));
            cursor = page.next;
        }
        assert_eq!(read, ["Late", "Early"]);
    }
}

/// A cursor naming an event the log does not hold (the log moved back in a failover, or the
/// cursor is another log's) is refused with the head, by a read and by a long poll, instead of
/// reading on after it and skipping what was written since under reused transaction ids.
async fn a_cursor_the_log_does_not_hold_is_refused_with_the_head(postgres: bool) {
    let test = "a_cursor_the_log_does_not_hold_is_refused_with_the_head";
    let Some(w) = world(postgres, test, NotifyConfig::default()).await else { return };
    w.trialing_store().await;
    let all = feed::read(&w.log, Checkpoint::ORIGIN, None, 100).await.unwrap();
    let head = all.next;
    assert_eq!(all.events.len(), 2);
    let (_drain, draining) = tokio::sync::watch::channel(false);
    let follow = feed::Feed::new(w.log.clone(), 8, draining);
    // Past the head, and at the head's position under another transaction id.
    let ahead = Checkpoint { position: head.position + 1_000, ..head };
    let other = Checkpoint { transaction_id: head.transaction_id + 1, ..head };
    for cursor in [ahead, other] {
        match feed::read(&w.log, cursor, None, 100).await {
            Err(feed::FeedError::CursorNotInLog { head: told }) => assert_eq!(told, head),
            other => panic!("{cursor:?}: expected cursor_not_in_log, got {other:?}"),
        }
        let started = std::time::Instant::now();
        match follow.read(cursor, None, 100, Duration::from_secs(20)).await {
            Err(feed::FeedError::CursorNotInLog { head: told }) => assert_eq!(told, head),
            other => panic!("{cursor:?}: expected cursor_not_in_log from a long poll, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "refused at once, not after the wait");
    }
    // Every cursor the log handed out is still good, and so is the origin.
    assert!(feed::read(&w.log, head, None, 100).await.unwrap().events.is_empty());
    assert_eq!(feed::read(&w.log, all.events[0].checkpoint, None, 100).await.unwrap().events.len(), 1);
}

/// One receiver that never answers in time must not hold up another endpoint's deliveries:
/// each endpoint has a lane of its own.
async fn a_hanging_receiver_holds_up_only_its_own_endpoint(postgres: bool) {
    let test = "a_hanging_receiver_holds_up_only_its_own_endpoint";
    let Some(w) = world(postgres, test, NotifyConfig::default()).await else { return };
    let hanging = Receiver::start().await;
    hanging.script(&[Answer::Sleep(Duration::from_secs(20)); 8]);
    let only_registrations = Some(vec!["StoreRegistered".to_owned()]);
    let stuck = w
        .notifier
        .create_endpoint(NewEndpoint {
            url: hanging.url.clone(),
            description: None,
            kinds: vec![Kind::LedgerEvent],
            event_types: only_registrations.clone(),
        })
        .await
        .unwrap();
    hanging.trust(&stuck.secret);
    let healthy = w.endpoint(&[Kind::LedgerEvent], only_registrations).await;
    for _ in 0..6 {
        let store = StoreId::new(Uuid::new_v4());
        w.run(store, Command::RegisterStore { store_id: store, name: None, time_zone: None }).await;
    }
    w.project_all().await;
    // The deliverer's loop, without waiting for any attempt: the healthy endpoint gets all six
    // while the hanging one's attempts (10 s timeout) are still in flight.
    let started = std::time::Instant::now();
    loop {
        let delivered =
            w.deliveries(&healthy.id).await.iter().filter(|d| d.status == DeliveryStatus::Delivered).count();
        if delivered == 6 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "the healthy endpoint had {delivered} of 6 delivered while the other hung"
        );
        w.notifier.dispatch_due().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.receiver.lock().requests.len(), 6, "each once");
    let stuck_pending = w.deliveries(&stuck.id).await.iter().filter(|d| d.status == DeliveryStatus::Pending).count();
    assert_eq!(stuck_pending, 6, "the hanging endpoint's deliveries wait in their own lane");
}

/// A listing of due deliveries read just before an attempt at one of them settled it (and gave
/// its lane place back) does not send it again: under load, the deliverer's next pass used to
/// list a delivery, the attempt in flight then settled and released it, and the pass claimed
/// and sent it a second time (a third freeze warning in the end-to-end lifecycle test).
async fn a_delivery_listed_before_it_settled_is_not_sent_again(postgres: bool) {
    let test = "a_delivery_listed_before_it_settled_is_not_sent_again";
    let Some(w) = world(postgres, test, NotifyConfig::default()).await else { return };
    let endpoint = w.endpoint(&[Kind::LedgerEvent], None).await;
    let store = w.trialing_store().await;
    w.project_all().await;
    let listed = outbox::due_deliveries(&w.log, w.clock.now(), Some(&endpoint.id), 100).await.unwrap();
    assert!(!listed.is_empty(), "deliveries are due");
    w.settle().await;
    let sent = w.receiver.lock().requests.len();
    assert!(sent >= listed.len(), "what was listed was delivered");
    for delivery in &listed {
        assert_eq!(w.notifier.attempt_listed(delivery).await.unwrap(), None, "{} was settled", delivery.id);
    }
    assert_eq!(w.receiver.lock().requests.len(), sent, "nothing sent twice");
    assert_eq!(w.receiver.kinds_of(&store.to_string()).len(), sent);
}

planledger_testkit::on_both_backends!(
    a_delivery_listed_before_it_settled_is_not_sent_again,
    a_hanging_receiver_holds_up_only_its_own_endpoint,
    every_kind_fires_once_at_its_time,
    an_extended_trial_is_warned_of_its_new_end_only,
    failures_are_retried_with_the_same_id_then_given_up,
    a_stores_deliveries_arrive_in_order_and_projecting_again_sends_nothing_twice,
    the_feed_follows_the_log_and_never_skips_a_late_commit,
    a_cursor_the_log_does_not_hold_is_refused_with_the_head,
);
