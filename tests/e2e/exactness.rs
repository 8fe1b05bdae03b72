//! The exactness defects a review found on the release binary, each over HTTP on both backends:
//! double refunds, client keys that met system keys, plan changes that reset anchored months,
//! registrations and bulk extensions that were not idempotent, answers that changed on retry,
//! and unknown stores that left a worker behind.

use serde_json::{json, Value};

use crate::server::{Backend, Db, Options, Server};
use crate::{on_both_backends, server_or_skip};

async fn trialing(server: &Server, name: &str) -> String {
    let store = server.register(name).await;
    assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
    store
}

async fn consume(server: &Server, store: &str, action: &str) -> (u16, Value) {
    server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": action})).await
}

async fn used(server: &Server, store: &str, action: &str) -> Value {
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    view["usage"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["action"] == action))
        .map_or(Value::Null, |u| u["used"].clone())
}

async fn count(server: &Server, store: &str, event_type: &str) -> usize {
    server.event_types(store).await.iter().filter(|t| *t == event_type).count()
}

/// Holds the store's stream (its version row on PostgreSQL, the write lock on SQLite) from
/// outside the server, so that the server's commands queue up behind a commit that waits: they
/// are then decided together, in one batch.
enum Hold {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Hold {
    async fn take(db: &Db, store: &str) -> Hold {
        use sqlx::Connection;
        match db {
            Db::Postgres(pg) => {
                let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("UPDATE ledger_streams SET version = version WHERE stream_id = $1")
                    .bind(format!("store-{store}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Hold::Postgres(conn)
            }
            Db::Sqlite(lite) => {
                let mut conn = sqlx::SqliteConnection::connect(&lite.url).await.unwrap();
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
                Hold::Sqlite(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Hold::Postgres(mut conn) => sqlx::raw_sql("COMMIT").execute(&mut conn).await.map(drop).unwrap(),
            Hold::Sqlite(mut conn) => sqlx::raw_sql("COMMIT").execute(&mut conn).await.map(drop).unwrap(),
        }
    }
}

async fn sixteen_concurrent_refunds_of_one_consumption_refund_it_once(backend: Backend) {
    let (server, db) =
        server_or_skip!(backend, "sixteen_concurrent_refunds_of_one_consumption_refund_it_once", Options::default());
    let store = trialing(&server, "Refunds").await;
    let (_, first) = consume(&server, &store, "create_article").await;
    assert_eq!(consume(&server, &store, "create_article").await.0, 200);
    let refund = format!("/v1/stores/{store}/quota/refund");
    let body = json!({"consumptionId": first["consumptionId"]});
    // The store's worker waits on a commit while the sixteen refunds queue behind it: they are
    // decided in one batch (the review's failure: every refund of a batch was appended).
    let hold = Hold::take(&db, &store).await;
    let waiting = consume(&server, &store, "update_product");
    let refunds = futures_util::future::join_all((0..16).map(|_| server.post(&refund, body.clone())));
    let release = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        hold.release().await;
    };
    let (waited, answers, ()) = futures_util::future::join3(waiting, refunds, release).await;
    assert_eq!(waited.0, 200);
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "one refund accepted: {statuses:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, body["error"].as_str()), (409, Some("already_refunded")), "{body}");
    }
    assert_eq!(count(&server, &store, "QuotaRefunded").await, 1);
    assert_eq!(used(&server, &store, "create_article").await, json!(1), "one of two consumptions given back");
    // A consumption that does not exist, or belongs to another store, is refused.
    let (status, body) = server.post(&refund, json!({"consumptionId": uuid::Uuid::now_v7()})).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("consumption_not_found")), "{body}");
    let other = trialing(&server, "Other").await;
    let (status, body) = server.post(&format!("/v1/stores/{other}/quota/refund"), body_of(&first)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("consumption_not_found")), "{body}");
}

fn body_of(consumption: &Value) -> Value {
    json!({"consumptionId": consumption["consumptionId"]})
}

async fn a_client_key_that_names_a_system_key_never_wedges_the_store(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "a_client_key_that_names_a_system_key_never_wedges_the_store", Options::test_clock());
    let store = trialing(&server, "Keys").await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    let ends_at = view["trialEndsAt"].as_str().unwrap().to_owned();
    // The exact key the deadline worker will use at expiry, and a refund's key.
    let consume_path = format!("/v1/stores/{store}/quota/consume");
    let (status, consumed) = server
        .post_keyed(&consume_path, &format!("trial-expiry:{store}:{ends_at}"), json!({"action": "create_article"}))
        .await;
    assert_eq!(status, 200, "{consumed}");
    let (status, _) = server
        .post_keyed(
            &consume_path,
            &format!("refund:{}", consumed["consumptionId"].as_str().unwrap()),
            json!({"action": "update_product"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, refunded) = server.post(&format!("/v1/stores/{store}/quota/refund"), body_of(&consumed)).await;
    assert_eq!(status, 200, "the refund is not taken for a retry of the client's request: {refunded}");
    server.advance_days(15).await;
    let (status, after) = consume(&server, &store, "create_article").await;
    assert_eq!(status, 200, "the store keeps working after its trial expired: {after}");
    assert_eq!(after["warnings"], json!(["trial_expired_grace_period"]));
    assert_eq!(count(&server, &store, "TrialExpired").await, 1);
}

async fn moving_off_an_anchored_plan_and_back_keeps_the_month_usage(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "moving_off_an_anchored_plan_and_back_keeps_the_month_usage", Options::default());
    let store = server.register("Anchored").await;
    let (status, body) = server
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "professional", "subscriptionId": "sub_1"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let consume_path = format!("/v1/stores/{store}/quota/consume");
    let (status, body) = server.post(&consume_path, json!({"action": "create_article", "amount": 150})).await;
    assert_eq!(status, 200, "{body}");
    let transitions = format!("/v1/stores/{store}/plan-transitions");
    for (from, to, reason) in [("professional", "starter", "downgrade"), ("starter", "professional", "upgrade")] {
        let body = json!({"fromPlanId": from, "toPlanId": to, "reason": reason, "subscriptionId": "sub_1"});
        let (status, answer) = server.post(&transitions, body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, refused) = server.post(&consume_path, json!({"action": "create_article", "amount": 150})).await;
    assert_eq!(
        (status, refused["error"].as_str(), refused["used"].as_u64()),
        (429, Some("quota_exceeded"), Some(150)),
        "{refused}"
    );
    assert_eq!(used(&server, &store, "create_article").await, json!(150));
}

async fn registering_without_a_store_id_is_idempotent_by_key(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "registering_without_a_store_id_is_idempotent_by_key", Options::default());
    let first = server.post_keyed("/v1/stores", "register-1", json!({"name": "Keyed"})).await;
    let retry = server.post_keyed("/v1/stores", "register-1", json!({"name": "Keyed"})).await;
    assert_eq!(first.0, 201, "{first:?}");
    assert_eq!(retry, first, "the retry gets the first answer, the same store");
    let (status, reused) = server.post_keyed("/v1/stores", "register-1", json!({"name": "Another"})).await;
    assert_eq!((status, reused["error"].as_str()), (409, Some("idempotency_key_reused")), "{reused}");
    let (_, listed) = server.get("/v1/admin/stores?limit=100").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "one store registered: {listed}");
    let (_, other) = server.post_keyed("/v1/stores", "register-2", json!({"name": "Keyed"})).await;
    assert_ne!(other["storeId"], first.1["storeId"], "another key is another store");
}

async fn a_keyed_answer_never_changes_refusals_included(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "a_keyed_answer_never_changes_refusals_included", Options::default());
    let store = trialing(&server, "Replays").await;
    let consume_path = format!("/v1/stores/{store}/quota/consume");
    let (_, first) = server.post(&consume_path, json!({"action": "create_article", "amount": 10})).await;
    let refused = server.post_keyed(&consume_path, "k-1", json!({"action": "create_article"})).await;
    assert_eq!((refused.0, refused.1["error"].as_str()), (429, Some("quota_exceeded")), "{refused:?}");
    assert_eq!(server.post(&format!("/v1/stores/{store}/quota/refund"), body_of(&first)).await.0, 200);
    let retry = server.post_keyed(&consume_path, "k-1", json!({"action": "create_article"})).await;
    assert_eq!(retry, refused, "a retry after a refund still gets the first answer, word for word");
    let (status, reused) = server.post_keyed(&consume_path, "k-1", json!({"action": "create_product"})).await;
    assert_eq!((status, reused["error"].as_str()), (409, Some("idempotency_key_reused")), "{reused}");
    // A no-op is an answer too.
    let trial = format!("/v1/stores/{store}/trial");
    let noop = server.post_keyed(&trial, "k-2", json!({})).await;
    assert_eq!((noop.0, noop.1["alreadyActive"].as_bool()), (200, Some(true)), "{noop:?}");
    assert_eq!(server.post_keyed(&trial, "k-2", json!({"days": 3})).await.1["error"], "idempotency_key_reused");
    assert_eq!(count(&server, &store, "QuotaConsumed").await, 1, "nothing appended by refusals or replays");
}

async fn a_retried_bulk_extension_extends_every_store_once(backend: Backend) {
    let (server, _db) =
        server_or_skip!(backend, "a_retried_bulk_extension_extends_every_store_once", Options::default());
    let stores = vec![trialing(&server, "Bulk A").await, trialing(&server, "Bulk B").await];
    let body = json!({"storeIds": stores, "kind": "trial", "days": 7, "reason": "incident 42"});
    let first = server.post_keyed("/v1/admin/stores/extensions", "bulk-1", body.clone()).await;
    assert_eq!(first.0, 200, "{first:?}");
    assert!(first.1["results"].as_array().unwrap().iter().all(|r| r["ok"] == true), "{first:?}");
    let retry = server.post_keyed("/v1/admin/stores/extensions", "bulk-1", body).await;
    assert_eq!(retry, first);
    for store in &stores {
        assert_eq!(count(&server, store, "TrialExtended").await, 1, "extended once: {store}");
    }
}

async fn a_retried_bulk_extension_answers_a_refused_store_as_it_first_did(backend: Backend) {
    let test = "a_retried_bulk_extension_answers_a_refused_store_as_it_first_did";
    let (server, _db) = server_or_skip!(backend, test, Options::default());
    let on_trial = trialing(&server, "Bulk On Trial").await;
    let without_trial = server.register("Bulk Without Trial").await;
    let body = json!({"storeIds": [on_trial, without_trial], "kind": "trial", "days": 7, "reason": "incident 43"});
    let first = server.post_keyed("/v1/admin/stores/extensions", "bulk-2", body.clone()).await;
    assert_eq!(first.0, 200, "{first:?}");
    let refused = &first.1["results"][1];
    assert_eq!(refused["ok"], false, "{first:?}");
    assert_ne!(refused["error"], "internal", "a refusal names its rule: {first:?}");
    // The retry replays both stores' first answers: the refusal keeps its code.
    let retry = server.post_keyed("/v1/admin/stores/extensions", "bulk-2", body).await;
    assert_eq!(retry, first);
}

async fn commands_to_unknown_stores_leave_nothing_behind(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "commands_to_unknown_stores_leave_nothing_behind", Options::default());
    let store = trialing(&server, "Known").await;
    let flood = |n: usize| {
        futures_util::future::join_all((0..n).map(|_| async {
            let (status, body) = consume(&server, &uuid::Uuid::new_v4().to_string(), "create_article").await;
            assert_eq!((status, body["error"].as_str()), (404, Some("store_not_found")), "{body}");
        }))
    };
    // Warm up (connections, caches, the allocator's arenas), then measure across 16,000 more.
    for _ in 0..4 {
        flood(500).await;
    }
    let before = server.rss_kib();
    for _ in 0..32 {
        flood(500).await;
    }
    let workers = |metrics: &str| -> Option<u64> {
        metrics.lines().find(|l| l.starts_with("planledger_store_workers "))?.split_whitespace().nth(1)?.parse().ok()
    };
    let (_, metrics) = server.get("/metrics").await;
    assert_eq!(workers(metrics.as_str().unwrap_or_default()), Some(1), "only the known store has a worker");
    let after = server.rss_kib();
    // The defect kept ~8.6 KiB per unknown store (16,000 here: ~134 MiB). Resident memory may
    // also hold what the allocator keeps free by design (freed pages stay about a second before
    // its background thread purges them, crates/planledger/src/memory.rs) and arenas that grew
    // under a loaded machine: a bound of 48 MiB leaves room for both.
    assert!(after < before + 48 * 1024, "16,000 unknown stores grew the server from {before} KiB to {after} KiB");
    assert_eq!(consume(&server, &store, "create_article").await.0, 200);
}

on_both_backends!(
    a_retried_bulk_extension_answers_a_refused_store_as_it_first_did,
    sixteen_concurrent_refunds_of_one_consumption_refund_it_once,
    a_client_key_that_names_a_system_key_never_wedges_the_store,
    moving_off_an_anchored_plan_and_back_keeps_the_month_usage,
    registering_without_a_store_id_is_idempotent_by_key,
    a_keyed_answer_never_changes_refusals_included,
    a_retried_bulk_extension_extends_every_store_once,
    commands_to_unknown_stores_leave_nothing_behind,
);
