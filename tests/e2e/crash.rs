//! Crash safety: `planledger serve` killed with SIGKILL in the middle of a concurrent load, ten
//! times. Every command answered 2xx is in the log exactly once, stream versions have no gaps,
//! re-sending every request with its idempotency key appends nothing, and the read models catch
//! up with the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server};

const CYCLES: usize = 10;
const CLIENTS: usize = 12;

async fn scalar(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Sqlite(lite) => {
            let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        }
        Db::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let value = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            value
        }
    }
}

async fn killed_servers_lose_nothing_and_double_nothing(backend: Backend) {
    let Some(db) = Db::create(backend, "killed_servers_lose_nothing_and_double_nothing").await else { return };
    let stores: Vec<String> = {
        let server = Server::start(db.url(), &Options::default());
        let mut stores = Vec::new();
        for i in 0..4 {
            let store = server.register(&format!("Crash {i}")).await;
            server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
            stores.push(store);
        }
        stores
    };
    // key -> (store, the first answer's consumption id)
    let acknowledged: Arc<Mutex<HashMap<String, (String, Value)>>> = Arc::default();
    let mut attempted = 0;
    for cycle in 0..CYCLES {
        let mut server = Server::start(db.url(), &Options::default());
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut tasks = Vec::new();
        for worker in 0..CLIENTS {
            let (client, base, stores, acknowledged) =
                (client.clone(), server.base.clone(), stores.clone(), acknowledged.clone());
            tasks.push(tokio::spawn(async move {
                let mut sent = 0;
                for i in 0.. {
                    let store = &stores[(worker + i) % stores.len()];
                    let key = format!("crash-{cycle}-{worker}-{i}");
                    let response = client
                        .post(format!("{base}/v1/stores/{store}/quota/consume"))
                        .header("Idempotency-Key", &key)
                        .json(&json!({"action": "update_product"}))
                        .send()
                        .await;
                    sent += 1;
                    let Ok(response) = response else { break };
                    if response.status().as_u16() != 200 {
                        break;
                    }
                    let Ok(body) = response.json::<Value>().await else { break };
                    acknowledged.lock().unwrap().insert(key, (store.clone(), body["consumptionId"].clone()));
                }
                sent
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + 20 * cycle as u64)).await;
        server.kill();
        for task in tasks {
            attempted += task.await.unwrap();
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 100, "the load got going: {} acknowledged of {attempted}", acknowledged.len());

    // Every acknowledged command is in the log exactly once.
    let keys_in_log =
        scalar(&db, "SELECT count(DISTINCT idempotency_key) FROM ledger_events WHERE idempotency_key LIKE 'crash-%'")
            .await;
    let events_in_log = scalar(&db, "SELECT count(*) FROM ledger_events WHERE idempotency_key LIKE 'crash-%'").await;
    assert_eq!(keys_in_log, events_in_log, "no command was recorded twice");
    assert!(events_in_log as usize >= acknowledged.len(), "an acknowledged command is missing from the log");
    // No gaps in any stream's versions.
    let gaps = scalar(&db, "SELECT count(*) FROM (SELECT stream_id FROM ledger_events GROUP BY stream_id HAVING count(*) <> max(version)) g").await;
    assert_eq!(gaps, 0, "stream versions have no gaps");

    // Re-sending every acknowledged request appends nothing and answers as the first time.
    let server = Server::start(db.url(), &Options::default());
    let before = scalar(&db, "SELECT count(*) FROM ledger_events").await;
    for (key, (store, consumption)) in &acknowledged {
        let request = server
            .client
            .post(format!("{}/v1/stores/{store}/quota/consume", server.base))
            .header("Idempotency-Key", key)
            .json(&json!({"action": "update_product"}));
        let (status, body) = server.caller().send(request).await;
        assert_eq!((status, &body["consumptionId"]), (200, consumption), "{key}");
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM ledger_events").await, before, "retries appended nothing");

    // The read models catch up with the log.
    let total = scalar(&db, "SELECT count(*) FROM ledger_events").await;
    for _ in 0..200 {
        if scalar(&db, "SELECT count(*) FROM audit_log").await == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM audit_log").await, total, "the audit log caught up");
    let behind = scalar(
        &db,
        "SELECT count(*) FROM tenant_state t JOIN ledger_streams s ON s.stream_id = 'store-' || t.store_id WHERE t.version <> s.version",
    )
    .await;
    assert_eq!(behind, 0, "every tenant_state row is at its stream's version");
    println!(
        "crash cycles: {CYCLES}, requests sent: {attempted}, acknowledged: {}, lost: 0, doubled: 0",
        acknowledged.len()
    );
}

on_both_backends!(killed_servers_lose_nothing_and_double_nothing);
