//! The lifecycle through the test clock: trial, grace, maintenance, frozen, reactivated; paid
//! protection; the deadline worker. Spoken through the typed client, as another Rust service
//! would.

use planledger_client::wire::{
    ActivateSubscription, Consume, ErrorBody, ErrorCode, ExtensionKind, Extensions, InternalStatus, StartTrial,
    SubscriptionStatus, Warning,
};
use planledger_client::{Client, Error, Options as Send, PageRequest};
use uuid::Uuid;

use crate::server::{Backend, Options};
use crate::{on_both_backends, server_or_skip};

fn consume(action: &str) -> Consume {
    Consume { action: action.to_owned(), amount: None }
}

fn subscribe(plan: &str, subscription: &str) -> ActivateSubscription {
    ActivateSubscription { plan_id: plan.to_owned(), subscription_id: subscription.to_owned() }
}

/// The refusal a call was answered with.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: planledger_client::Result<T>) -> (u16, Box<ErrorBody>) {
    match result {
        Err(Error::Api { status, body, .. }) => (status, body),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn register(client: &Client, name: &str) -> Uuid {
    Uuid::parse_str(&crate::server::register_with(client, name).await).unwrap()
}

async fn event_types(client: &Client, store: Uuid) -> Vec<String> {
    let page = client.events(store, &PageRequest { cursor: None, limit: Some(1000) }).await.expect("events");
    page.value.items.into_iter().map(|e| e.event_type).collect()
}

async fn the_full_lifecycle_runs_on_the_test_clock(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "the_full_lifecycle_runs_on_the_test_clock", Options::test_clock());
    let client = server.client();
    let store = register(&client, "Corner Shop").await;
    let trial = client.start_trial(store, &StartTrial::default(), &Send::default()).await.expect("trial");
    assert_eq!(
        (trial.status, trial.value.store.internal_status, trial.value.already_active),
        (201, InternalStatus::Trialing, false)
    );

    // 15 days: the trial ended 1 day ago; grace, with the trial's limits and a warning.
    server.advance_days(15).await;
    let view = client.get_store(store).await.expect("store").value;
    assert_eq!((view.internal_status, view.subscription_status), (InternalStatus::Grace, SubscriptionStatus::Expired));
    let consumed = client.consume(store, &consume("create_article"), &Send::default()).await.expect("consume");
    assert_eq!(consumed.value.warnings, [Warning::TrialExpiredGracePeriod]);

    // 18 days: downgraded to google_only; updates yes, growth no.
    server.advance_days(3).await;
    let view = client.get_store(store).await.expect("store").value;
    assert_eq!((view.internal_status, view.tier.as_deref()), (InternalStatus::Maintenance, Some("google_only")));
    let (status, body) = refused(client.consume(store, &consume("create_product"), &Send::default()).await);
    assert_eq!((status, body.error), (403, ErrorCode::MaintenanceNoGrowth));
    client.authorize(store, "update_product").await.expect("updates stay allowed");

    // 200 days: frozen, read-only, with the seed's error body.
    server.advance_days(182).await;
    let (status, frozen) = refused(client.authorize(store, "update_product").await);
    assert_eq!(status, 403);
    assert_eq!(frozen.error, ErrorCode::AccountFrozen);
    assert_eq!(frozen.subscription_status, Some(SubscriptionStatus::Expired));
    assert_eq!(frozen.subscription_tier, Some(Some("google_only".to_owned())));
    assert_eq!(frozen.internal_status, Some(InternalStatus::Frozen));
    assert_eq!(frozen.upgrade_url.as_deref(), Some("/settings/subscription"));
    assert!(!frozen.correlation_id.is_empty());
    client.authorize(store, "view_products").await.expect("reads stay open");

    // A paid subscription reactivates it.
    let view = client.activate_subscription(store, &subscribe("starter", "sub_42"), &Send::default()).await;
    let view = view.expect("subscribe").value;
    assert_eq!((view.internal_status, view.tier.as_deref()), (InternalStatus::Active, Some("starter")));
    assert_eq!(view.maintenance_ends_at, None);

    // The worker appended each transition once, in order.
    assert_eq!(
        event_types(&client, store).await,
        [
            "StoreRegistered",
            "TrialStarted",
            "TrialExpired",
            "QuotaConsumed",
            "DowngradedToMaintenance",
            "StoreFrozen",
            "SubscriptionActivated"
        ]
    );
    let events = client.events(store, &PageRequest::default()).await.expect("events").value;
    let expired = &events.items[2];
    assert_eq!(expired.actor, "system");
    assert!(expired.idempotency_key.as_deref().unwrap().starts_with(&format!("trial-expiry:{store}:")));
}

async fn a_paid_subscription_keeps_its_plan_when_the_trial_ends(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "a_paid_subscription_keeps_its_plan_when_the_trial_ends", Options::test_clock());
    let client = server.client();
    let store = register(&client, "Paid Shop").await;
    let trial = StartTrial { plan_id: Some("starter".into()), ..StartTrial::default() };
    client.start_trial(store, &trial, &Send::default()).await.expect("trial");
    client.activate_subscription(store, &subscribe("starter", "sub_1"), &Send::default()).await.expect("subscribe");
    server.advance_days(30).await;
    let view = client.get_store(store).await.expect("store").value;
    assert_eq!((view.internal_status, view.tier.as_deref()), (InternalStatus::Active, Some("starter")));
    assert!(!event_types(&client, store).await.contains(&"TrialExpired".to_owned()));
}

async fn the_paid_lifecycle_and_extensions_work_over_http(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "the_paid_lifecycle_and_extensions_work_over_http", Options::test_clock());
    let client = server.client();
    let none = Send::default();
    let store = register(&client, "Lifecycle").await;
    assert_eq!(refused(client.mark_past_due(store, &none).await).1.error, ErrorCode::NoActiveSubscription);
    client.activate_subscription(store, &subscribe("professional", "sub_p"), &none).await.expect("subscribe");
    let view = client.mark_past_due(store, &none).await.expect("past due").value;
    assert_eq!(view.internal_status, InternalStatus::PastDue);
    let consumed = client.consume(store, &consume("create_article"), &none).await.expect("consume").value;
    assert_eq!(consumed.warnings, [Warning::PaymentPastDue]);
    assert_eq!(
        client.mark_recovered(store, &none).await.expect("recovered").value.internal_status,
        InternalStatus::Active
    );
    assert_eq!(
        client.cancel_subscription(store, &none).await.expect("cancel").value.internal_status,
        InternalStatus::Canceled
    );
    let (status, body) = refused(client.consume(store, &consume("update_product"), &none).await);
    assert_eq!((status, body.error), (403, ErrorCode::SubscriptionCanceled));
    assert_eq!(refused(client.mark_recovered(store, &none).await).1.error, ErrorCode::NotPastDue);

    // Bulk extension: one store in trial is extended, one that is not reports its refusal.
    let trialing = register(&client, "Trialing").await;
    client.start_trial(trialing, &StartTrial::default(), &none).await.expect("trial");
    let extensions = Extensions {
        store_ids: vec![trialing, store],
        kind: ExtensionKind::Trial,
        days: 7,
        reason: "outage credit".into(),
    };
    let bulk = client.extend(&extensions, &none).await.expect("extend").value;
    assert!(bulk.results[0].ok);
    assert_eq!(bulk.results[1].error, Some(ErrorCode::NotTrialing));
    let view = client.get_store(trialing).await.expect("store").value;
    let days = (view.trial_ends_at.expect("a trial end") - chrono::Utc::now()).num_minutes() as f64 / 1440.0;
    assert_eq!(days.round(), 21.0, "14 + 7 days");
    let listed = client.list_stores(Some(InternalStatus::Canceled), &PageRequest::default()).await.expect("list");
    assert_eq!(listed.value.items.iter().map(|s| s.store_id).collect::<Vec<_>>(), [store]);
}

/// An action that requires a feature (the default catalog: `view_analytics` requires
/// `analytics`) is refused to a store whose plan does not list it, with the seed's fields and
/// the feature; asked by feature, the same; a plan that lists it allows it.
async fn a_feature_the_plan_lacks_is_refused_and_named(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "a_feature_the_plan_lacks_is_refused_and_named", Options::default());
    let client = server.client();
    let store = register(&client, "Curious").await;
    client.start_trial(store, &StartTrial::default(), &Send::default()).await.expect("trial");
    let view = client.get_store(store).await.expect("store").value;
    assert!(!view.features.contains(&"analytics".to_owned()), "{:?}", view.features);

    for answer in [client.authorize(store, "view_analytics").await, client.authorize_feature(store, "analytics").await]
    {
        let (status, body) = refused(answer);
        assert_eq!(
            (status, body.error, body.feature.as_deref()),
            (403, ErrorCode::FeatureNotInPlan, Some("analytics"))
        );
        assert_eq!(body.subscription_tier, Some(Some("trial".to_owned())), "{body:?}");
        assert_eq!(body.subscription_status, Some(SubscriptionStatus::Trial));
        assert_eq!(body.upgrade_url.as_deref(), Some("/settings/subscription"));
    }
    let (status, body) = refused(client.consume(store, &consume("view_analytics"), &Send::default()).await);
    assert_eq!((status, body.error), (403, ErrorCode::FeatureNotInPlan), "the command path asks the same");
    assert!(client.authorize_feature(store, "articles").await.expect("a listed feature").value.allowed);
    let (status, body) = refused(client.authorize_feature(store, "teleportation").await);
    assert_eq!((status, body.error), (422, ErrorCode::UnknownFeature));
    for bad in [
        serde_json::json!({}),
        serde_json::json!({"action": "view_analytics", "feature": "analytics"}),
        serde_json::json!({"action": null}),
        serde_json::json!({"feature": 7}),
    ] {
        let (status, body) = server.post(&format!("/v1/stores/{store}/authorize"), bad.clone()).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("validation_failed")), "{bad}: {body}");
    }

    client
        .activate_subscription(store, &subscribe("professional", "sub_analytics"), &Send::default())
        .await
        .expect("pay");
    let view = client.get_store(store).await.expect("store").value;
    assert!(view.features.contains(&"analytics".to_owned()), "{:?}", view.features);
    assert!(client.authorize(store, "view_analytics").await.expect("now allowed").value.allowed);
    assert!(client.authorize_feature(store, "analytics").await.expect("now allowed").value.allowed);
}

on_both_backends!(
    a_feature_the_plan_lacks_is_refused_and_named,
    the_full_lifecycle_runs_on_the_test_clock,
    a_paid_subscription_keeps_its_plan_when_the_trial_ends,
    the_paid_lifecycle_and_extensions_work_over_http,
);
