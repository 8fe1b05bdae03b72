//! The lifecycle through the test clock: trial, grace, maintenance, frozen, reactivated; paid
//! protection; the deadline worker.

use serde_json::json;

use crate::server::{Backend, Options};
use crate::{on_both_backends, server_or_skip};

async fn the_full_lifecycle_runs_on_the_test_clock(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "the_full_lifecycle_runs_on_the_test_clock", Options::test_clock());
    let store = server.register("Corner Shop").await;
    let (status, body) = server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    assert_eq!(
        (status, body["internalStatus"].as_str(), body["alreadyActive"].as_bool()),
        (201, Some("trialing"), Some(false)),
        "{body}"
    );

    // 15 days: the trial ended 1 day ago; grace, with the trial's limits and a warning.
    server.advance_days(15).await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(
        (view["internalStatus"].as_str(), view["subscriptionStatus"].as_str()),
        (Some("grace"), Some("expired")),
        "{view}"
    );
    let (status, consumed) =
        server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article"})).await;
    assert_eq!(status, 200, "{consumed}");
    assert_eq!(consumed["warnings"], json!(["trial_expired_grace_period"]));

    // 18 days: downgraded to google_only; updates yes, growth no.
    server.advance_days(3).await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(
        (view["internalStatus"].as_str(), view["tier"].as_str()),
        (Some("maintenance"), Some("google_only")),
        "{view}"
    );
    let (status, refused) =
        server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_product"})).await;
    assert_eq!((status, refused["error"].as_str()), (403, Some("maintenance_no_growth")), "{refused}");
    let (status, _) = server.post(&format!("/v1/stores/{store}/authorize"), json!({"action": "update_product"})).await;
    assert_eq!(status, 200);

    // 200 days: frozen, read-only, with the seed's error body.
    server.advance_days(182).await;
    let (status, frozen) =
        server.post(&format!("/v1/stores/{store}/authorize"), json!({"action": "update_product"})).await;
    assert_eq!(status, 403, "{frozen}");
    assert_eq!(frozen["error"], "account_frozen");
    assert_eq!(frozen["subscriptionStatus"], "expired");
    assert_eq!(frozen["subscriptionTier"], "google_only");
    assert_eq!(frozen["internalStatus"], "frozen");
    assert_eq!(frozen["upgradeUrl"], "/settings/subscription");
    assert!(frozen["correlationId"].as_str().is_some_and(|c| !c.is_empty()));
    let (status, _) = server.post(&format!("/v1/stores/{store}/authorize"), json!({"action": "view_analytics"})).await;
    assert_eq!(status, 200, "reads stay open");

    // A paid subscription reactivates it.
    let (status, view) = server
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "starter", "subscriptionId": "sub_42"}))
        .await;
    assert_eq!(
        (status, view["internalStatus"].as_str(), view["tier"].as_str()),
        (200, Some("active"), Some("starter")),
        "{view}"
    );
    assert_eq!(view["maintenanceEndsAt"], serde_json::Value::Null);

    // The worker appended each transition once, in order.
    let types = server.event_types(&store).await;
    assert_eq!(
        types,
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
    let (_, events) = server.get(&format!("/v1/stores/{store}/events")).await;
    let expired = &events["items"][2];
    assert_eq!(expired["actor"], "system");
    assert!(expired["idempotencyKey"].as_str().unwrap().starts_with(&format!("trial-expiry:{store}:")));
}

async fn a_paid_subscription_keeps_its_plan_when_the_trial_ends(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "a_paid_subscription_keeps_its_plan_when_the_trial_ends", Options::test_clock());
    let store = server.register("Paid Shop").await;
    server.post(&format!("/v1/stores/{store}/trial"), json!({"planId": "starter"})).await;
    let (status, _) = server
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "starter", "subscriptionId": "sub_1"}))
        .await;
    assert_eq!(status, 200);
    server.advance_days(30).await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!((view["internalStatus"].as_str(), view["tier"].as_str()), (Some("active"), Some("starter")), "{view}");
    assert!(!server.event_types(&store).await.contains(&"TrialExpired".to_owned()));
}

async fn the_paid_lifecycle_and_extensions_work_over_http(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "the_paid_lifecycle_and_extensions_work_over_http", Options::test_clock());
    let store = server.register("Lifecycle").await;
    let path = |suffix: &str| format!("/v1/stores/{store}{suffix}");
    assert_eq!(server.post(&path("/subscription/past-due"), json!({})).await.1["error"], "no_active_subscription");
    server.post(&path("/subscription"), json!({"planId": "professional", "subscriptionId": "sub_p"})).await;
    let (status, view) = server.post(&path("/subscription/past-due"), json!({})).await;
    assert_eq!((status, view["internalStatus"].as_str()), (200, Some("past_due")));
    let (_, consumed) = server.post(&path("/quota/consume"), json!({"action": "create_article"})).await;
    assert_eq!(consumed["warnings"], json!(["payment_past_due"]));
    let (status, view) = server.post(&path("/subscription/recovered"), json!({})).await;
    assert_eq!((status, view["internalStatus"].as_str()), (200, Some("active")));
    let (status, view) = server.post(&path("/subscription/cancel"), json!({})).await;
    assert_eq!((status, view["internalStatus"].as_str()), (200, Some("canceled")));
    let (status, refused) = server.post(&path("/quota/consume"), json!({"action": "update_product"})).await;
    assert_eq!((status, refused["error"].as_str()), (403, Some("subscription_canceled")));
    assert_eq!(server.post(&path("/subscription/recovered"), json!({})).await.1["error"], "not_past_due");

    // Bulk extension: one store in trial is extended, one that is not reports its refusal.
    let trialing = server.register("Trialing").await;
    server.post(&format!("/v1/stores/{trialing}/trial"), json!({})).await;
    let (status, bulk) = server
        .post(
            "/v1/admin/stores/extensions",
            json!({"storeIds": [trialing, store], "kind": "trial", "days": 7, "reason": "outage credit"}),
        )
        .await;
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(bulk["results"][0]["ok"], true);
    assert_eq!(bulk["results"][1]["error"], "not_trialing");
    let (_, view) = server.get(&format!("/v1/stores/{trialing}")).await;
    let ends = chrono_days(&view["trialEndsAt"]);
    assert_eq!(ends, 21, "14 + 7 days");
    let (_, listed) = server.get("/v1/admin/stores?internalStatus=canceled").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["items"][0]["storeId"], store.as_str());
}

/// Days from the test clock's start (the first store's registration) to `at`, rounded.
fn chrono_days(at: &serde_json::Value) -> i64 {
    let at = at.as_str().expect("a time");
    let at = chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
    let now = chrono::Utc::now();
    ((at.timestamp() - now.timestamp()) as f64 / 86_400.0).round() as i64
}

on_both_backends!(
    the_full_lifecycle_runs_on_the_test_clock,
    a_paid_subscription_keeps_its_plan_when_the_trial_ends,
    the_paid_lifecycle_and_extensions_work_over_http,
);
