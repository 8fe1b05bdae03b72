//! Stripe drives the ledger, end to end: a real `serve` with a webhook secret, deliveries signed
//! as Stripe signs, and the store's state read back through the API.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server};
use planledger_testkit::stripe::{event, signature, Price, Subscription};

pub(crate) const SECRET: &str = "whsec_e2e_signing_secret";
pub(crate) const PRO: Price<'static> =
    Price { id: "price_1Qe2ePro", lookup_key: Some("pro_monthly"), unit_amount: 2900 };

fn options(catalog: &std::path::Path) -> Options {
    Options {
        catalog: Some(catalog.display().to_string()),
        env: vec![("PLANLEDGER_STRIPE_WEBHOOK_SECRETS", format!("whsec_previous_secret,{SECRET}"))],
        ..Options::test_clock().with_tokens()
    }
}

pub(crate) fn catalog_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("planledger-stripe-catalog-{}.toml", uuid::Uuid::new_v4()));
    let text = format!(
        "{}\n[stripe]\nprices = {{ pro_monthly = \"professional\" }}\n",
        include_str!("../../config/catalog.toml")
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn now(server: &Server) -> i64 {
    let (_, clock) = server.get("/v1/test-clock").await;
    chrono::DateTime::parse_from_rfc3339(clock["now"].as_str().unwrap()).unwrap().timestamp()
}

/// POSTs `event` to the webhook endpoint as Stripe would, signed at `t` with `secret`.
pub(crate) async fn deliver(server: &Server, event: &Value, secret: &str, t: i64) -> (u16, Value) {
    let body = serde_json::to_vec(event).unwrap();
    let request = server
        .client
        .post(format!("{}/v1/webhooks/stripe", server.base))
        .header("Stripe-Signature", signature(secret, t, &body))
        .header("content-type", "application/json")
        .body(body);
    server.as_token(None).send(request).await
}

/// The five events of a subscription's life: created active, a payment fails, it is paid, it is
/// deleted (Stripe's times one minute apart).
fn lifecycle(store: &str, sub_id: &str, t0: i64) -> Vec<Value> {
    let sub = |status| Subscription {
        id: sub_id,
        customer: "cus_Qe2eCustomer",
        status,
        store_id: Some(store),
        price: PRO,
        created: t0,
        trial_end: None,
        canceled_at: None,
        ended_at: None,
    };
    let mut deleted = sub("canceled");
    deleted.canceled_at = Some(t0 + 240);
    deleted.ended_at = Some(t0 + 240);
    vec![
        event(&format!("evt_created_{sub_id}"), "customer.subscription.created", t0, sub("active").object(), None),
        event(
            &format!("evt_failed_{sub_id}"),
            "invoice.payment_failed",
            t0 + 60,
            sub("past_due").invoice("in_e2e_1", t0 + 60, false),
            None,
        ),
        event(
            &format!("evt_paid_{sub_id}"),
            "invoice.paid",
            t0 + 120,
            sub("active").invoice("in_e2e_1", t0 + 120, true),
            None,
        ),
        event(
            &format!("evt_updated_{sub_id}"),
            "customer.subscription.updated",
            t0 + 180,
            sub("active").object(),
            Some(json!({"status": "past_due"})),
        ),
        event(&format!("evt_deleted_{sub_id}"), "customer.subscription.deleted", t0 + 240, deleted.object(), None),
    ]
}

/// Waits until no received event is left to apply; answers the listing.
pub(crate) async fn applied(server: &Server) -> Vec<Value> {
    for _ in 0..200 {
        let (status, page) = server.get("/v1/admin/webhooks/stripe?limit=1000").await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.iter().all(|e| e["status"] != "received") {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("events were not applied");
}

fn summary(view: &Value) -> Value {
    json!({
        "planId": view["planId"], "tier": view["tier"], "subscriptionStatus": view["subscriptionStatus"],
        "internalStatus": view["internalStatus"], "subscriptionId": view["subscriptionId"],
    })
}

async fn a_shuffled_duplicated_lifecycle_ends_where_the_ordered_one_does(backend: Backend) {
    let Some(db) = Db::create(backend, "a_shuffled_duplicated_lifecycle_ends_where_the_ordered_one_does").await else {
        return;
    };
    let catalog = catalog_file();
    let server = Server::start(db.url(), &options(&catalog));
    let t = now(&server).await;
    let ordered = server.register("Ordered").await;
    let shuffled = server.register("Shuffled").await;
    for store in [&ordered, &shuffled] {
        assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
    }

    for e in lifecycle(&ordered, "sub_1Qordered", t - 600) {
        let (status, receipt) = deliver(&server, &e, SECRET, t).await;
        assert_eq!((status, &receipt["duplicate"]), (200, &json!(false)), "{receipt}");
        applied(&server).await;
    }
    // The same life, delivered newest first, with every event delivered twice and some signed
    // with the previous secret (a rotation under way).
    let mut events = lifecycle(&shuffled, "sub_1Qshuffled", t - 600);
    events.swap(0, 4);
    events.swap(1, 3);
    for (i, e) in events.iter().chain(events.iter().rev()).enumerate() {
        let secret = if i % 3 == 0 { "whsec_previous_secret" } else { SECRET };
        let (status, receipt) = deliver(&server, e, secret, t).await;
        assert_eq!(status, 200, "{receipt}");
        assert_eq!(receipt["duplicate"], json!(i >= events.len()), "{receipt}");
    }
    let listing = applied(&server).await;
    assert_eq!(listing.len(), 10);
    assert!(listing.iter().all(|e| ["applied", "stale"].contains(&e["status"].as_str().unwrap())), "{listing:?}");
    let redelivered = listing.iter().filter(|e| e["deliveries"] == 2).count();
    assert_eq!(redelivered, 5, "each shuffled event counted twice");

    let (_, a) = server.get(&format!("/v1/stores/{ordered}")).await;
    let (_, b) = server.get(&format!("/v1/stores/{shuffled}")).await;
    assert_eq!(a["internalStatus"], "canceled", "{a}");
    assert_eq!(a["planId"], "professional", "{a}");
    let mut expected = summary(&a);
    expected["subscriptionId"] = json!("sub_1Qshuffled");
    assert_eq!(summary(&b), expected);

    // Every event the ledger appended for it carries the Stripe event as its correlation id.
    let (_, history) = server.get(&format!("/v1/stores/{shuffled}/events?limit=100")).await;
    let from_stripe: Vec<&Value> =
        history["items"].as_array().unwrap().iter().filter(|e| e["actor"] == "stripe").collect();
    assert!(!from_stripe.is_empty());
    assert!(from_stripe.iter().all(|e| e["correlationId"].as_str().unwrap().starts_with("evt_")), "{from_stripe:?}");
    let _ = std::fs::remove_file(catalog);
}

async fn the_webhook_refuses_what_it_cannot_verify_and_operators_retry(backend: Backend) {
    let Some(db) = Db::create(backend, "the_webhook_refuses_what_it_cannot_verify_and_operators_retry").await else {
        return;
    };
    let catalog = catalog_file();
    let server = Server::start(db.url(), &options(&catalog));
    let t = now(&server).await;
    let e = event("evt_unsigned", "invoice.paid", t, json!({"id": "in_1", "object": "invoice"}), None);
    let (status, body) = deliver(&server, &e, "whsec_not_ours_at_all", t).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_signature")), "{body}");
    let (status, body) = deliver(&server, &e, SECRET, t - 3_600).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_signature")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("tolerance"), "{body}");
    let unsigned = server.client.post(format!("{}/v1/webhooks/stripe", server.base)).body("{}");
    let (status, body) = server.as_token(None).send(unsigned).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_signature")), "{body}");
    let (_, page) = server.get("/v1/admin/webhooks/stripe").await;
    assert_eq!(page["items"], json!([]), "nothing stored");

    // A subscription for a store the ledger does not know: parked, then retried once it exists.
    let store = uuid::Uuid::new_v4().to_string();
    let later = lifecycle(&store, "sub_1Qlater", t - 60);
    assert_eq!(deliver(&server, &later[0], SECRET, t).await.0, 200);
    let listing = applied(&server).await;
    assert_eq!(listing[0]["status"], "parked", "{listing:?}");
    assert!(listing[0]["detail"].as_str().unwrap().contains("not registered"), "{listing:?}");
    let (status, parked) = server.get("/v1/admin/webhooks/stripe?status=parked").await;
    assert_eq!((status, parked["items"].as_array().map(Vec::len)), (200, Some(1)));
    let register = json!({"storeId": store, "name": "Late"});
    assert_eq!(server.post("/v1/stores", register).await.0, 201);
    let id = later[0]["id"].as_str().unwrap();
    let (status, retried) = server.post(&format!("/v1/admin/webhooks/stripe/{id}/retry"), json!({})).await;
    assert_eq!((status, retried["status"].as_str()), (200, Some("received")), "{retried}");
    assert_eq!(applied(&server).await[0]["status"], "applied");
    let (status, again) = server.post(&format!("/v1/admin/webhooks/stripe/{id}/retry"), json!({})).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("not_retryable")), "{again}");
    let (status, _) = server.post("/v1/admin/webhooks/stripe/evt_nope/retry", json!({})).await;
    assert_eq!(status, 404);
    // Operators only.
    let (status, _) = server.as_token(Some(crate::server::SERVICE)).get("/v1/admin/webhooks/stripe").await;
    assert_eq!(status, 403);
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("planledger_stripe_events_total{outcome=\"rejected\"} 3"), "{metrics}");
    let _ = std::fs::remove_file(catalog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_webhook_is_not_there() {
    let Some(db) = Db::create(Backend::Sqlite, "without_a_secret_the_webhook_is_not_there").await else { return };
    let server = Server::start(db.url(), &Options::default());
    let (status, body) = deliver(&server, &json!({"id": "evt_1"}), SECRET, chrono::Utc::now().timestamp()).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("stripe_not_configured")), "{body}");
}

on_both_backends!(
    a_shuffled_duplicated_lifecycle_ends_where_the_ordered_one_does,
    the_webhook_refuses_what_it_cannot_verify_and_operators_retry
);
