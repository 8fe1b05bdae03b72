//! Every route and error code of SPEC 4 to 6 and 11 over HTTP, idempotent retries, input limits,
//! authentication, operations routes.

use reqwest::Method;
use serde_json::{json, Value};

use crate::server::{Backend, Options, ADMIN, READER, SERVICE};
use crate::{on_both_backends, server_or_skip};

#[track_caller]
fn assert_error(response: (u16, Value), status: u16, code: &str) -> Value {
    let (got, body) = response;
    assert_eq!((got, body["error"].as_str()), (status, Some(code)), "{body}");
    assert!(
        body["correlationId"].as_str().is_some_and(|c| !c.is_empty()),
        "every error carries a correlation id: {body}"
    );
    body
}

async fn registering_is_idempotent_by_name(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "registering_is_idempotent_by_name", Options::default());
    let id = uuid::Uuid::new_v4().to_string();
    let (status, view) =
        server.post("/v1/stores", json!({"storeId": id, "name": "Shop", "timeZone": "Europe/Paris"})).await;
    assert_eq!(
        (status, view["timeZone"].as_str(), view["internalStatus"].as_str()),
        (201, Some("Europe/Paris"), Some("none"))
    );
    assert_eq!(server.post("/v1/stores", json!({"storeId": id, "name": "Shop"})).await.0, 200);
    assert_error(server.post("/v1/stores", json!({"storeId": id, "name": "Other"})).await, 409, "store_exists");
    let (status, generated) = server.post("/v1/stores", json!({})).await;
    assert_eq!(status, 201);
    assert!(uuid::Uuid::parse_str(generated["storeId"].as_str().unwrap()).is_ok());
    assert_error(server.post("/v1/stores", json!({"timeZone": "Mars/Base"})).await, 422, "validation_failed");
    assert_error(server.get(&format!("/v1/stores/{}", uuid::Uuid::new_v4())).await, 404, "store_not_found");
    assert_error(server.get("/v1/stores/not-a-uuid").await, 404, "store_not_found");
}

async fn trial_rules_answer_with_their_codes(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "trial_rules_answer_with_their_codes", Options::test_clock().with_tokens());
    let store = server.register("Trials").await;
    let trial = format!("/v1/stores/{store}/trial");
    let service = server.as_token(Some(SERVICE));
    assert_error(service.post(&trial, json!({"planId": "enterprise"})).await, 422, "plan_not_trial_eligible");
    assert_error(service.post(&trial, json!({"planId": "gold"})).await, 422, "unknown_plan");
    assert_eq!(service.post(&trial, json!({"days": 30})).await.0, 201);
    let (status, again) = service.post(&trial, json!({})).await;
    assert_eq!((status, again["alreadyActive"].as_bool()), (200, Some(true)), "{again}");
    server.advance_days(31).await;
    assert_error(service.post(&trial, json!({})).await, 409, "trial_already_used");
    // Only an admin may force a reset, and only with a reason.
    assert_error(service.post(&trial, json!({"forceReset": true, "reason": "x"})).await, 403, "forbidden");
    let body = assert_error(server.post(&trial, json!({"forceReset": true})).await, 422, "validation_failed");
    assert_eq!(body["field"], "reason");
    let (status, restarted) = server.post(&trial, json!({"forceReset": true, "reason": "support ticket 7"})).await;
    assert_eq!((status, restarted["internalStatus"].as_str()), (201, Some("trialing")), "{restarted}");
    assert_eq!(server.event_types(&store).await.last().map(String::as_str), Some("TrialRestarted"));
    service
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "starter", "subscriptionId": "s1"}))
        .await;
    assert_error(service.post(&trial, json!({})).await, 409, "subscription_active");
    assert_error(
        service
            .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "free_trial", "subscriptionId": "s"}))
            .await,
        422,
        "not_a_paid_plan",
    );
}

async fn plan_transitions_validate_like_the_spec(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "plan_transitions_validate_like_the_spec", Options::default().with_tokens());
    let store = server.register("Transitions").await;
    let service = server.as_token(Some(SERVICE));
    service
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "starter", "subscriptionId": "s1"}))
        .await;
    let path = format!("/v1/stores/{store}/plan-transitions");
    let t =
        |from: &str, to: &str| json!({"fromPlanId": from, "toPlanId": to, "reason": "upgrade", "subscriptionId": "s1"});
    let body = assert_error(service.post(&path, t("free_trial", "professional")).await, 409, "plan_mismatch");
    assert_eq!(body["currentPlanId"], "starter");
    assert_error(service.post(&path, t("starter", "platinum")).await, 422, "unknown_plan");
    assert_error(service.post(&path, t("starter", "starter")).await, 409, "invalid_transition");
    assert_error(service.post(&path, t("starter", "google_only")).await, 422, "internal_tier");
    let no_sub = json!({"fromPlanId": "starter", "toPlanId": "professional", "reason": "upgrade"});
    assert_error(service.post(&path, no_sub.clone()).await, 422, "subscription_required");
    assert_error(
        service.post(&path, json!({"fromPlanId": "starter", "toPlanId": "professional", "reason": "whim"})).await,
        422,
        "validation_failed",
    );
    let big = json!({"fromPlanId": "starter", "toPlanId": "professional", "reason": "upgrade", "subscriptionId": "s1", "metadata": {"blob": "x".repeat(9000)}});
    assert_error(service.post(&path, big).await, 422, "validation_failed");
    // An admin may move a store to a paid plan without a subscription id.
    let (status, view) = server
        .post(
            &path,
            json!({"fromPlanId": "starter", "toPlanId": "professional", "reason": "admin", "metadata": {"ticket": 9}}),
        )
        .await;
    assert_eq!((status, view["planId"].as_str()), (200, Some("professional")), "{view}");
}

async fn quotas_answer_with_limits_and_refunds(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "quotas_answer_with_limits_and_refunds", Options::default());
    let store = server.register("Quotas").await;
    let consume = format!("/v1/stores/{store}/quota/consume");
    assert_error(server.post(&consume, json!({"action": "create_article"})).await, 402, "no_subscription");
    server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    let (status, first) = server.post(&consume, json!({"action": "create_article", "amount": 4})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (first["used"].as_u64(), first["limit"].as_u64(), first["remaining"].as_u64()),
        (Some(4), Some(10), Some(6))
    );
    let (status, second) = server.post(&consume, json!({"action": "create_article", "amount": 6})).await;
    assert_eq!((status, second["remaining"].as_u64()), (200, Some(0)));
    let body = assert_error(server.post(&consume, json!({"action": "create_article"})).await, 429, "quota_exceeded");
    assert_eq!((body["limit"].as_u64(), body["used"].as_u64()), (Some(10), Some(10)));
    assert!(body["resetsAt"].as_str().is_some());
    let body = assert_error(
        server.post(&consume, json!({"action": "create_product", "amount": 51})).await,
        429,
        "quota_exceeded",
    );
    assert_eq!(body["resetsAt"], Value::Null, "a lifetime limit never resets");
    let (status, unmetered) = server.post(&consume, json!({"action": "update_product", "amount": 1000})).await;
    assert_eq!((status, unmetered["limit"].clone()), (200, Value::Null));
    assert_error(server.post(&consume, json!({"action": "launch_rocket"})).await, 422, "unknown_action");
    assert_error(server.post(&consume, json!({"action": "Bad-Name"})).await, 422, "validation_failed");
    for amount in [json!(0), json!(1_000_001), json!(1.5), json!("3"), json!(-1)] {
        let body = assert_error(
            server.post(&consume, json!({"action": "create_article", "amount": amount})).await,
            422,
            "validation_failed",
        );
        assert_eq!(body["field"], "amount", "{body}");
    }

    // A refund gives the amount back, once.
    let refund = format!("/v1/stores/{store}/quota/refund");
    let (status, refunded) = server.post(&refund, json!({"consumptionId": first["consumptionId"]})).await;
    assert_eq!((status, refunded["refunded"].as_bool()), (200, Some(true)), "{refunded}");
    assert_error(server.post(&refund, json!({"consumptionId": first["consumptionId"]})).await, 409, "already_refunded");
    assert_error(
        server.post(&refund, json!({"consumptionId": uuid::Uuid::new_v4()})).await,
        404,
        "consumption_not_found",
    );
    let (status, again) = server.post(&consume, json!({"action": "create_article", "amount": 4})).await;
    assert_eq!((status, again["remaining"].as_u64()), (200, Some(0)), "{again}");

    let (status, allowed) =
        server.post(&format!("/v1/stores/{store}/authorize"), json!({"action": "create_article"})).await;
    assert_eq!(
        (status, allowed["allowed"].as_bool(), allowed["internalStatus"].as_str()),
        (200, Some(true), Some("trialing"))
    );
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    let articles = view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").cloned().unwrap();
    assert_eq!((articles["used"].as_u64(), articles["remaining"].as_u64()), (Some(10), Some(0)), "{view}");
}

async fn idempotent_retries_return_the_first_answer(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "idempotent_retries_return_the_first_answer", Options::default());
    let store = server.register("Idempotent").await;
    server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    let url = format!("{}/v1/stores/{store}/quota/consume", server.base);
    let send = |key: &str, body: Value| {
        let request = server.client.post(&url).header("Idempotency-Key", key).json(&body);
        async { server.caller().send(request).await }
    };
    let (status, first) = send("order-1", json!({"action": "create_article", "amount": 2})).await;
    assert_eq!(status, 200);
    let (status, retry) = send("order-1", json!({"amount": 2, "action": "create_article"})).await;
    assert_eq!((status, &retry), (200, &first), "same key and body: the first answer, word for word");
    assert_error(
        send("order-1", json!({"action": "create_article", "amount": 3})).await,
        409,
        "idempotency_key_reused",
    );
    let consumed = server.event_types(&store).await.iter().filter(|t| *t == "QuotaConsumed").count();
    assert_eq!(consumed, 1, "a retry appends nothing");

    // Concurrent requests with one key append once.
    let tasks: Vec<_> = (0..8).map(|_| send("order-2", json!({"action": "create_article"}))).collect();
    let answers = futures_util::future::join_all(tasks).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    let ids: std::collections::HashSet<_> = answers.iter().map(|(_, b)| b["consumptionId"].to_string()).collect();
    assert_eq!(ids.len(), 1, "one consumption for one key");
    let consumed = server.event_types(&store).await.iter().filter(|t| *t == "QuotaConsumed").count();
    assert_eq!(consumed, 2);
    assert_error(
        server
            .caller()
            .send(
                server
                    .client
                    .post(&url)
                    .header("Idempotency-Key", "bad key with spaces")
                    .json(&json!({"action": "create_article"})),
            )
            .await,
        422,
        "validation_failed",
    );
}

async fn bad_input_gets_clear_errors_and_changes_nothing(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "bad_input_gets_clear_errors_and_changes_nothing", Options::default());
    let store = server.register("Input").await;
    let path = format!("/v1/stores/{store}/trial");
    let caller = server.caller();
    assert_error(caller.raw(Method::POST, &path, b"{\"planId\": ".to_vec()).await, 400, "malformed_json");
    assert_error(caller.raw(Method::POST, &path, b"[1, 2]".to_vec()).await, 422, "validation_failed");
    let body = assert_error(
        caller.raw(Method::POST, &path, b"{\"plan\": \"starter\"}".to_vec()).await,
        422,
        "validation_failed",
    );
    assert_eq!(body["field"], "plan", "an unknown field is named");
    let body =
        assert_error(caller.raw(Method::POST, &path, b"{\"days\": \"ten\"}".to_vec()).await, 422, "validation_failed");
    assert_eq!(body["field"], "days");
    assert_error(caller.post(&path, json!({"days": 0})).await, 422, "validation_failed");
    assert_error(caller.post(&path, json!({"days": 3651})).await, 422, "validation_failed");
    let huge = format!("{{\"planId\": \"{}\"}}", "x".repeat(70 * 1024));
    assert_error(caller.raw(Method::POST, &path, huge.into_bytes()).await, 413, "payload_too_large");
    assert_error(caller.post("/v1/stores", json!({"name": "nul\u{0}byte"})).await, 422, "validation_failed");
    assert_error(caller.get("/v1/nowhere").await, 404, "not_found");
    assert_error(caller.raw(Method::DELETE, &format!("/v1/stores/{store}"), vec![]).await, 405, "method_not_allowed");
    assert_error(caller.get(&format!("/v1/stores/{store}/events?limit=5000")).await, 422, "validation_failed");
    assert_error(caller.get(&format!("/v1/stores/{store}/state?at=yesterday")).await, 422, "validation_failed");
    assert_eq!(server.event_types(&store).await, ["StoreRegistered"], "no bad request wrote anything");
}

async fn correlation_ids_are_echoed_and_recorded(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "correlation_ids_are_echoed_and_recorded", Options::default());
    let store = server.register("Correlated").await;
    let response = server
        .client
        .post(format!("{}/v1/stores/{store}/trial", server.base))
        .header("X-Correlation-Id", "checkout-7f3a")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "checkout-7f3a");
    let response = server.client.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert!(!response.headers()["x-correlation-id"].is_empty(), "a new one when none is sent");
    let (_, events) = server.get(&format!("/v1/stores/{store}/events?fromVersion=2")).await;
    assert_eq!(events["items"][0]["correlationId"], "checkout-7f3a");
    assert_eq!(events["items"][0]["type"], "TrialStarted");
    assert!(events["nextCursor"].is_null(), "the last page");
}

async fn history_can_be_read_and_replayed(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "history_can_be_read_and_replayed", Options::test_clock());
    let store = server.register("History").await;
    server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    server.advance_days(20).await;
    let (status, at_version) = server.get(&format!("/v1/stores/{store}/state?version=2")).await;
    assert_eq!(
        (status, at_version["internalStatus"].as_str(), at_version["version"].as_u64()),
        (200, Some("trialing"), Some(2)),
        "{at_version}"
    );
    let (_, now) = server.get(&format!("/v1/stores/{store}/state")).await;
    assert_eq!(now["internalStatus"], "maintenance");
    let (_, page) = server.get(&format!("/v1/stores/{store}/events?fromVersion=1&limit=2")).await;
    assert_eq!((page["items"].as_array().map(Vec::len), page["nextCursor"].as_str()), (Some(2), Some("2")));
}

async fn operations_routes_answer_without_a_token(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "operations_routes_answer_without_a_token", Options::default().with_tokens());
    let anonymous = server.as_token(None);
    assert_eq!(anonymous.get("/healthz").await, (200, json!({"status": "ok"})));
    let (status, ready) = anonymous.get("/readyz").await;
    assert_eq!((status, ready["ready"].as_bool()), (200, Some(true)), "{ready}");
    server.register("Metered").await;
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("planledger_http_requests_total{method=\"POST\",route=\"/v1/stores\",status=\"201\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("planledger_appends_total 1"), "{metrics}");
    assert!(metrics.contains("planledger_http_request_duration_seconds_bucket"));
    let (status, doc) = anonymous.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    for route in planledger_routes() {
        assert!(doc["paths"][route.1][route.0].is_object(), "{} {} is documented", route.0, route.1);
    }
    // The test clock does not exist unless enabled.
    assert_error(server.get("/v1/test-clock").await, 404, "not_found");
}

/// Every (method, path) the README and SPEC 11 promise.
fn planledger_routes() -> Vec<(&'static str, &'static str)> {
    vec![
        ("post", "/v1/stores"),
        ("get", "/v1/stores/{id}"),
        ("post", "/v1/stores/{id}/trial"),
        ("post", "/v1/stores/{id}/subscription"),
        ("post", "/v1/stores/{id}/subscription/past-due"),
        ("post", "/v1/stores/{id}/subscription/recovered"),
        ("post", "/v1/stores/{id}/subscription/cancel"),
        ("post", "/v1/stores/{id}/plan-transitions"),
        ("post", "/v1/stores/{id}/authorize"),
        ("post", "/v1/stores/{id}/quota/consume"),
        ("post", "/v1/stores/{id}/quota/refund"),
        ("get", "/v1/stores/{id}/events"),
        ("get", "/v1/stores/{id}/state"),
        ("get", "/v1/admin/stores"),
        ("post", "/v1/admin/stores/extensions"),
        ("get", "/v1/test-clock"),
        ("put", "/v1/test-clock"),
        ("post", "/v1/test-clock/advance"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ]
}

async fn tokens_and_roles_are_enforced(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "tokens_and_roles_are_enforced", Options::test_clock().with_tokens());
    let store = server.register("Guarded").await;
    let view = format!("/v1/stores/{store}");
    assert_error(server.as_token(None).get(&view).await, 401, "unauthorized");
    assert_error(server.as_token(Some("not-a-token")).get(&view).await, 401, "unauthorized");
    assert_eq!(server.as_token(Some(READER)).get(&view).await.0, 200);
    assert_error(server.as_token(Some(READER)).post(&format!("{view}/trial"), json!({})).await, 403, "forbidden");
    assert_eq!(server.as_token(Some(SERVICE)).post(&format!("{view}/trial"), json!({})).await.0, 201);
    assert_error(server.as_token(Some(SERVICE)).get("/v1/admin/stores").await, 403, "forbidden");
    assert_error(
        server.as_token(Some(SERVICE)).post("/v1/test-clock/advance", json!({"seconds": 1})).await,
        403,
        "forbidden",
    );
    assert_eq!(server.as_token(Some(ADMIN)).get("/v1/test-clock").await.0, 200);
}

on_both_backends!(
    registering_is_idempotent_by_name,
    trial_rules_answer_with_their_codes,
    plan_transitions_validate_like_the_spec,
    quotas_answer_with_limits_and_refunds,
    idempotent_retries_return_the_first_answer,
    bad_input_gets_clear_errors_and_changes_nothing,
    correlation_ids_are_echoed_and_recorded,
    history_can_be_read_and_replayed,
    operations_routes_answer_without_a_token,
    tokens_and_roles_are_enforced,
);
