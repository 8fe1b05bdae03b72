//! Crash safety: `planledger serve` killed with SIGKILL in the middle of a concurrent load of
//! consumptions and plan transitions, all with idempotency keys, ten times. Every command answered 2xx is in the log exactly once, stream versions have no gaps,
//! re-sending every request with its idempotency key appends nothing, and the read models catch
//! up with the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server};

/// An acknowledged request: store, route, body, and the first answer.
type Acknowledged = (String, &'static str, Value, Value);

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

/// The events whose client key another event carries too, one line each, for a failure's
/// message: which command was recorded twice, where, and when.
async fn events_of_repeated_keys(db: &Db) -> String {
    let sql = "SELECT idempotency_key || ' ' || stream_id || ' v' || CAST(version AS text) || ' ' || event_type || ' ' || CAST(event_id AS text)
               FROM ledger_events WHERE idempotency_key IN (
                   SELECT idempotency_key FROM ledger_events WHERE idempotency_key LIKE 'crash-%'
                   GROUP BY idempotency_key HAVING count(*) > 1)
               ORDER BY idempotency_key, version";
    let lines: Vec<String> = match db {
        Db::Sqlite(lite) => {
            let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
        }
        Db::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let lines = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            lines
        }
    };
    lines.join("\n")
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
    let acknowledged: Arc<Mutex<HashMap<String, Acknowledged>>> = Arc::default();
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
                    // Two clients in twelve move plans; the others consume.
                    let (path, body) = if worker < 2 {
                        let Ok(view) = client.get(format!("{base}/v1/stores/{store}")).send().await else { break };
                        let Ok(view) = view.json::<Value>().await else { break };
                        let from = view["planId"].as_str().unwrap_or("free_trial").to_owned();
                        let to = if from == "starter" { "professional" } else { "starter" };
                        ("plan-transitions", json!({"fromPlanId": from, "toPlanId": to, "reason": "upgrade", "subscriptionId": "sub_crash"}))
                    } else {
                        ("quota/consume", json!({"action": "update_product"}))
                    };
                    let response = client
                        .post(format!("{base}/v1/stores/{store}/{path}"))
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .await;
                    sent += 1;
                    let Ok(response) = response else { break };
                    let status = response.status().as_u16();
                    if status == 409 {
                        continue; // a transition decided on a plan another client had just changed
                    }
                    if status != 200 {
                        break;
                    }
                    let Ok(answer) = response.json::<Value>().await else { break };
                    acknowledged.lock().unwrap().insert(key, (store.clone(), path, body, answer));
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
    if keys_in_log != events_in_log {
        panic!(
            "a command was recorded twice: {events_in_log} events for {keys_in_log} keys:\n{}",
            events_of_repeated_keys(&db).await
        );
    }
    assert!(events_in_log as usize >= acknowledged.len(), "an acknowledged command is missing from the log");
    // No gaps in any stream's versions.
    let gaps = scalar(&db, "SELECT count(*) FROM (SELECT stream_id FROM ledger_events GROUP BY stream_id HAVING count(*) <> max(version)) g").await;
    assert_eq!(gaps, 0, "stream versions have no gaps");

    // Re-sending every acknowledged request appends nothing and answers as the first time.
    let server = Server::start(db.url(), &Options::default());
    let before = scalar(&db, "SELECT count(*) FROM ledger_events").await;
    for (key, (store, path, body, first)) in &acknowledged {
        let request = server
            .client
            .post(format!("{}/v1/stores/{store}/{path}", server.base))
            .header("Idempotency-Key", key)
            .json(body);
        let (status, answer) = server.caller().send(request).await;
        assert_eq!((status, &answer), (200, first), "{key}: the first answer, word for word");
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
    let transitions = acknowledged.values().filter(|(_, path, _, _)| *path == "plan-transitions").count();
    assert!(transitions > 0, "plan transitions were part of the load");
    println!(
        "crash cycles: {CYCLES}, requests sent: {attempted}, acknowledged: {} ({transitions} plan transitions), lost: 0, doubled: 0",
        acknowledged.len()
    );
}

on_both_backends!(killed_servers_lose_nothing_and_double_nothing);
