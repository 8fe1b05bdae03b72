//! Notifications end to end: a real `serve` with the test clock, an endpoint registered over the
//! API, and a real receiver that verifies each delivery with the Standard Webhooks reference
//! library. One store goes through its whole lifecycle; the receiver sees exactly the expected
//! notifications, in order. A server killed mid-delivery makes no second notification; the feed
//! follows the log over HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server};
use planledger_testkit::webhooks::{Answer, Receiver};

const KINDS: [&str; 9] = [
    "trial.ending_soon",
    "trial.expired",
    "grace.ending_soon",
    "store.downgraded_to_maintenance",
    "store.freeze_warning",
    "store.frozen",
    "subscription.changed",
    "plan.transitioned",
    "quota.threshold",
];

async fn register_endpoint(server: &Server, receiver: &Receiver, kinds: &[&str]) -> String {
    let (status, created) =
        server.post("/v1/admin/webhooks/endpoints", json!({"url": receiver.url, "kinds": kinds})).await;
    assert_eq!(status, 201, "{created}");
    receiver.trust(created["secret"].as_str().unwrap());
    created["endpoint"]["id"].as_str().unwrap().to_owned()
}

/// Waits until the receiver has taken `count` notifications of `store`; answers their kinds.
async fn taken(receiver: &Receiver, store: &str, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let kinds = receiver.kinds_of(store);
        if kinds.len() >= count {
            return kinds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the receiver has {:?}, expected {count}", receiver.kinds_of(store));
}

async fn a_stores_whole_lifecycle_is_told_in_order(backend: Backend) {
    let Some(db) = Db::create(backend, "a_stores_whole_lifecycle_is_told_in_order").await else { return };
    let server = Server::start(db.url(), &Options::test_clock().with_tokens());
    let receiver = Receiver::start().await;
    let endpoint = register_endpoint(&server, &receiver, &KINDS).await;
    let (_, listed) = server.get("/v1/admin/webhooks/endpoints").await;
    assert_eq!(listed["items"][0]["id"], endpoint.as_str());
    assert!(listed["items"][0].get("secret").is_none(), "the secret is shown once: {listed}");

    let store = server.register("Told").await;
    assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
    let mut expected = Vec::new();
    for (days, kind) in [
        (11, "trial.ending_soon"),
        (3, "trial.expired"),
        (2, "grace.ending_soon"),
        (1, "store.downgraded_to_maintenance"),
        (173, "store.freeze_warning"),
        (6, "store.freeze_warning"),
        (1, "store.frozen"),
    ] {
        server.advance_days(days).await;
        expected.push(kind.to_owned());
        assert_eq!(taken(&receiver, &store, expected.len()).await, expected);
    }
    server.advance_days(30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.kinds_of(&store), expected, "nothing more");
    assert_eq!(receiver.lock().rejected, 0, "every delivery verified");

    let (status, page) = server.get(&format!("/v1/admin/webhooks/endpoints/{endpoint}/deliveries")).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    assert!(items.iter().all(|d| d["status"] == "delivered"), "{page}");
    let id = items[0]["id"].as_str().unwrap();
    let (_, detail) = server.get(&format!("/v1/admin/webhooks/deliveries/{id}")).await;
    assert_eq!(detail["attemptLog"][0]["statusCode"], 200, "{detail}");
    let (status, again) = server.post(&format!("/v1/admin/webhooks/deliveries/{id}/retry"), json!({})).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("not_retryable")), "{again}");
    let (status, _) = server.get("/v1/admin/webhooks/deliveries/dlv_none").await;
    assert_eq!(status, 404);
    let (_, metrics) = server.get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(metrics.contains("planledger_webhook_deliveries_total{outcome=\"delivered\"} 7"), "{metrics}");

    // The feed: the store's freeze, found by type, and the cursor goes on from there.
    let (status, feed) = server.get("/v1/events?after=0-0&types=StoreFrozen").await;
    assert_eq!(status, 200, "{feed}");
    assert_eq!(feed["items"].as_array().unwrap().len(), 1, "{feed}");
    let cursor = feed["nextCursor"].as_str().unwrap();
    let (_, rest) = server.get(&format!("/v1/events?after={cursor}")).await;
    assert_eq!(rest["items"], json!([]), "{rest}");
    assert_eq!(rest["nextCursor"].as_str(), Some(cursor));
    for bad in [
        "/v1/events?after=12",
        "/v1/events?after=1000000000000000000-1",
        "/v1/events?types=Nope",
        "/v1/events?types=StoreFrozen,",
        "/v1/events?types=",
        "/v1/events?wait=61s",
        "/v1/events?wait=06",
        "/v1/events?limit=0",
    ] {
        let (status, body) = server.get(bad).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("validation_failed")), "{bad}: {body}");
    }
    let (status, body) = server.as_token(Some(crate::server::READER)).get("/v1/admin/webhooks/endpoints").await;
    assert_eq!(status, 403, "{body}");
}

async fn endpoints_refuse_bad_input_and_can_be_disabled(backend: Backend) {
    let Some(db) = Db::create(backend, "endpoints_refuse_bad_input_and_can_be_disabled").await else { return };
    let server = Server::start(db.url(), &Options::test_clock().with_tokens());
    for (body, field) in [
        (json!({"url": "ftp://x.example/hook", "kinds": ["store.frozen"]}), "url"),
        (json!({"url": "https://user:pw@x.example/hook", "kinds": ["store.frozen"]}), "url"),
        (json!({"url": "https://x.example/hook", "kinds": []}), "kinds"),
        (json!({"url": "https://x.example/hook", "kinds": ["ledger.event"], "eventTypes": ["Nope"]}), "eventTypes"),
    ] {
        let (status, error) = server.post("/v1/admin/webhooks/endpoints", body.clone()).await;
        assert_eq!(status, 422, "{body}: {error}");
        assert_eq!(error["field"].as_str(), Some(field), "{error}");
    }
    let (status, error) =
        server.post("/v1/admin/webhooks/endpoints", json!({"url": "https://x.example", "kinds": ["nope"]})).await;
    assert_eq!(status, 422, "{error}");
    let (_, listed) = server.get("/v1/admin/webhooks/endpoints").await;
    assert_eq!(listed["items"], json!([]), "nothing was registered");

    let receiver = Receiver::start().await;
    let endpoint = register_endpoint(&server, &receiver, &["ledger.event"]).await;
    let path = format!("/v1/admin/webhooks/endpoints/{endpoint}");
    let caller = server.caller();
    let patch = |body: Value| caller.raw(reqwest::Method::PATCH, &path, body.to_string().into_bytes());
    let (status, disabled) = patch(json!({"enabled": false})).await;
    assert_eq!((status, &disabled["enabled"]), (200, &json!(false)), "{disabled}");
    assert_eq!(disabled["disabledReason"], "disabled by an operator");
    let store = server.register("Unheard").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(receiver.kinds_of(&store).is_empty(), "a disabled endpoint hears nothing");
    let (status, enabled) = patch(json!({"enabled": true, "description": "CRM"})).await;
    assert_eq!(
        (status, &enabled["enabled"], &enabled["disabledReason"]),
        (200, &json!(true), &Value::Null),
        "{enabled}"
    );
    let (status, _) = patch(json!({"url": "not a url"})).await;
    assert_eq!(status, 422);
    let heard = server.register("Heard").await;
    assert_eq!(taken(&receiver, &heard, 1).await, ["ledger.event"]);
}

async fn a_server_killed_mid_delivery_makes_no_second_notification(backend: Backend) {
    let Some(db) = Db::create(backend, "a_server_killed_mid_delivery_makes_no_second_notification").await else {
        return;
    };
    let options = Options::test_clock().with_tokens();
    let mut server = Server::start(db.url(), &options);
    let receiver = Receiver::start().await;
    register_endpoint(&server, &receiver, &["ledger.event"]).await;
    receiver.script(&[Answer::Sleep(Duration::from_secs(30))]);
    let store = server.register("Interrupted").await;
    for _ in 0..200 {
        if !receiver.lock().requests.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(receiver.lock().requests.len(), 1, "the delivery is under way");
    // A receiver that hangs slows no command: these are answered while it still holds the request.
    for i in 0..20 {
        server.register(&format!("Meanwhile {i}")).await;
    }
    // The hung delivery is still held (it sleeps 30 s): the commands did not wait for it. Other
    // stores' deliveries may have been taken meanwhile; they run in their own attempts.
    assert!(receiver.kinds_of(&store).is_empty(), "the commands did not wait for the hung delivery");
    server.kill();

    let server = Server::start(db.url(), &options);
    server.advance_days(1).await; // past the first retry's time
    let store_requests = || -> Vec<String> {
        receiver.lock().requests.iter().filter(|r| r.store_id == store).map(|r| r.webhook_id.clone()).collect()
    };
    for _ in 0..200 {
        if store_requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = store_requests();
    assert_eq!(ids.len(), 2, "attempted again after the restart: {ids:?}");
    assert_eq!(ids[0], ids[1], "with the same webhook-id: a receiver that deduplicates takes it once");
    let (_, page) = server.get("/v1/admin/webhooks/endpoints").await;
    let endpoint = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (_, deliveries) = server.get(&format!("/v1/admin/webhooks/endpoints/{endpoint}/deliveries")).await;
    let of_store: Vec<&Value> =
        deliveries["items"].as_array().unwrap().iter().filter(|d| d["storeId"] == store.as_str()).collect();
    assert_eq!(of_store.len(), 1, "one notification for the interrupted store: {of_store:?}");
    assert_eq!(of_store[0]["notificationId"].as_str(), Some(ids[0].as_str()));
}

on_both_backends!(
    a_stores_whole_lifecycle_is_told_in_order,
    endpoints_refuse_bad_input_and_can_be_disabled,
    a_server_killed_mid_delivery_makes_no_second_notification,
);
