//! A database outage under load: while PostgreSQL is down the API answers 503
//! `storage_unavailable` quickly and `/readyz` says not ready; when it is back the service
//! recovers by itself, with nothing lost or doubled. The outage is staged on a private
//! PostgreSQL cluster (own data directory and port), so no other test is disturbed.

use std::time::{Duration, Instant};

use planledger_client::wire::{Consume, ErrorCode};
use planledger_client::{Error as ClientError, Options as ClientOptions, Retry};
use serde_json::json;

use crate::cluster::PrivateCluster;
use crate::server::{Options, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_503_quickly_and_recovers() {
    let Some(cluster) = PrivateCluster::create("the outage test", &[]) else { return };
    let server = Server::start(&cluster.url(), &Options::default());
    let store = server.register("Outage").await;
    server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    let consume = format!("/v1/stores/{store}/quota/consume");
    let mut allowed = 0;
    for _ in 0..5 {
        assert_eq!(server.post(&consume, json!({"action": "update_product"})).await.0, 200);
        allowed += 1;
    }
    // Sixteen more stores whose workers hold their state: their commands during the outage go
    // straight to the group commit, which must fail them together, not one acquire timeout
    // after another.
    let mut warm = Vec::new();
    for i in 0..16 {
        let other = server.register(&format!("Warm {i}")).await;
        server.post(&format!("/v1/stores/{other}/trial"), json!({})).await;
        let path = format!("/v1/stores/{other}/quota/consume");
        assert_eq!(server.post(&path, json!({"action": "update_product"})).await.0, 200);
        warm.push(path);
    }

    cluster.stop();
    let burst = Instant::now();
    let answers = futures_util::future::join_all(warm.iter().map(|path| async {
        let answer = server.post(path, json!({"action": "update_product"})).await;
        (answer, burst.elapsed())
    }))
    .await;
    for ((status, body), took) in answers {
        assert_eq!((status, body["error"].as_str()), (503, Some("storage_unavailable")), "{body}");
        assert!(took < Duration::from_secs(5), "a store of the concurrent burst was answered after {took:?}");
    }
    let client = server.client().with_retry(Retry::none());
    let store_id = uuid::Uuid::parse_str(&store).unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let consume = Consume { action: "update_product".into(), amount: None };
        match client.consume(store_id, &consume, &ClientOptions::default()).await {
            Err(ClientError::Api { status, body, retry_after }) => {
                assert_eq!((status, body.error), (503, ErrorCode::StorageUnavailable));
                assert_eq!(retry_after, Some(1), "a 503 says when to retry");
            }
            other => panic!("expected 503 storage_unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    }
    let (status, ready) = server.get("/readyz").await;
    assert_eq!((status, ready["ready"].as_bool()), (503, Some(false)), "{ready}");
    assert_eq!(server.get("/healthz").await.0, 200, "the process itself is up");

    // A client with the default retry policy, sending during the outage, gets through once the
    // database is back: one consumption, however many attempts it took.
    let patient = server.client();
    let waiting = tokio::spawn(async move {
        let consume = Consume { action: "update_product".into(), amount: None };
        patient.consume(store_id, &consume, &ClientOptions::default()).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the patient client is still retrying while the database is down");

    cluster.start();
    let retried = waiting.await.unwrap().expect("the retrying client got through once the database was back");
    assert!(retried.value.allowed);
    allowed += 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = server.post(&consume, json!({"action": "update_product"})).await;
        if status == 200 {
            allowed += 1;
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover: last status {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // `/readyz` keeps its answer for half a second (a flood of probes asks the database once
    // per period), so it says ready within that of the first command that succeeded.
    let ready_by = Instant::now() + Duration::from_secs(2);
    while server.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < ready_by, "/readyz still 503 two seconds after the database answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    let used =
        view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "update_product").unwrap()["used"].clone();
    assert_eq!(used, json!(allowed), "nothing lost or doubled across the outage: {view}");
    let consumed = server.event_types(&store).await.iter().filter(|t| *t == "QuotaConsumed").count();
    assert_eq!(consumed, allowed);
}
