//! A PostgreSQL failover under load, on real streaming replication: a primary and a standby
//! made with `pg_basebackup -R`, the primary killed (`pg_ctl -m immediate`), the standby
//! promoted, and planledger on a multi-host URL that names both, never restarted.
//!
//! - Synchronous replication: not one acknowledged command is lost and no quota is handed out
//!   twice; clients retrying with their `Idempotency-Key` get through.
//! - Asynchronous replication, with the standby cut off before the last commits (so that the
//!   loss is certain, not left to timing): no store refuses 5 s after the promotion, the
//!   rewinds are counted, and a follower of `/v1/events` whose cursor names a lost event is told
//!   so (`409 cursor_not_in_log`) instead of skipping what comes next.
//! - The address moving to a standby: `/readyz` fails within 2 s and writes answer
//!   `503 database_not_primary`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use planledger_client::wire::{Consume, StartTrial};
use planledger_client::{Client, Options as Send, Retry};
use serde_json::json;
use uuid::Uuid;

use crate::cluster::PrivateCluster;
use crate::server::{Options, Server};

/// What the clients were told: each acknowledged consumption, and each request that failed
/// for good (its retries spent).
#[derive(Default)]
struct Acknowledged {
    consumptions: Vec<(Uuid, u64, Uuid, Instant)>,
    failures: Vec<String>,
}

/// Clients consuming on `stores` until `stop`, each command with its own key and the client's
/// retries.
fn load(
    client: &Client,
    stores: &[Uuid],
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> (Arc<Mutex<Acknowledged>>, Vec<tokio::task::JoinHandle<()>>) {
    let seen = Arc::new(Mutex::new(Acknowledged::default()));
    let tasks = (0..clients)
        .map(|worker| {
            let (client, stores, stop, seen) = (client.clone(), stores.to_vec(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut i = worker;
                while !stop.load(Ordering::Relaxed) {
                    let store = stores[i % stores.len()];
                    i += clients + 1;
                    let consume = Consume { action: "create_product".into(), amount: Some(1) };
                    match client.consume(store, &consume, &Send::key(Uuid::new_v4().to_string())).await {
                        Ok(reply) if reply.value.allowed => seen.lock().unwrap().consumptions.push((
                            store,
                            reply.value.used,
                            reply.value.consumption_id,
                            Instant::now(),
                        )),
                        Ok(reply) => seen.lock().unwrap().failures.push(format!("refused: {:?}", reply.value)),
                        Err(error) => seen.lock().unwrap().failures.push(error.to_string()),
                    }
                }
            })
        })
        .collect();
    (seen, tasks)
}

/// `n` stores on a trial of the professional plan (5,000 products, a lifetime quota).
async fn stores(client: &Client, n: usize) -> Vec<Uuid> {
    let mut stores = Vec::new();
    for i in 0..n {
        let id: Uuid = crate::server::register_with(client, &format!("Failover {i}")).await.parse().unwrap();
        let trial = StartTrial { plan_id: Some("professional".into()), ..Default::default() };
        client.start_trial(id, &trial, &Send::default()).await.expect("start a trial");
        stores.push(id);
    }
    stores
}

/// The consumption ids in a store's stream, read from the server.
async fn consumptions_in_log(server: &Server, store: Uuid) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = server.get(&format!("/v1/stores/{store}/events?limit=500{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        for event in page["items"].as_array().unwrap() {
            if event["type"] == "QuotaConsumed" {
                ids.insert(event["data"]["consumptionId"].as_str().unwrap().to_owned());
            }
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return ids,
        }
    }
}

fn multi_host(a: &PrivateCluster, b: &PrivateCluster) -> String {
    format!("postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write", a.port, b.port)
}

async fn metric(server: &Server, name: &str) -> f64 {
    let response = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap();
    let text = response.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn synchronous_replication_loses_no_acknowledged_command_across_a_failover() {
    let Some(primary) = PrivateCluster::create("the synchronous failover test", &[]) else { return };
    let standby = PrivateCluster::standby_of(&primary, "standby1");
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby1'");
    primary.sql("SELECT pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(10);
    while primary.sql("SELECT sync_state FROM pg_stat_replication") != "sync" {
        assert!(Instant::now() < deadline, "the standby did not become synchronous");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options =
        Options { env: vec![("PLANLEDGER_REQUIRE_SYNCHRONOUS_STANDBY", "true".into())], ..Options::default() };
    let server = Server::start(&multi_host(&primary, &standby), &options);
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "a primary with a synchronous standby is ready: {ready}");
    assert_eq!(ready["checks"]["synchronousStandby"]["status"], "ok", "{ready}");

    let client = server.client().with_retry(Retry::within(Duration::from_secs(30)));
    let stores = stores(&client, 40).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(&client, &stores, 16, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    primary.stop();
    let killed = Instant::now();
    let before_kill = seen.lock().unwrap().consumptions.len();
    standby.promote();
    let promoted = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.failures.is_empty(), "every command got through with the client's retries: {:?}", seen.failures);
    let first_after =
        seen.consumptions.iter().map(|c| c.3).filter(|at| *at > killed).min().expect("writes after the kill");
    let after_kill = seen.consumptions.len() - before_kill;
    assert!(before_kill > 0 && after_kill > 0, "load on both sides of the failover: {before_kill} / {after_kill}");

    // Not one acknowledged consumption is missing from the promoted server's log, and no
    // store's quota position was handed out twice.
    let mut by_store: HashMap<Uuid, Vec<(u64, Uuid)>> = HashMap::new();
    for (store, used, id, _) in &seen.consumptions {
        by_store.entry(*store).or_default().push((*used, *id));
    }
    let mut lost = 0;
    for (store, acknowledged) in &by_store {
        let in_log = consumptions_in_log(&server, *store).await;
        lost += acknowledged.iter().filter(|(_, id)| !in_log.contains(&id.to_string())).count();
        let positions: HashSet<u64> = acknowledged.iter().map(|(used, _)| *used).collect();
        assert_eq!(positions.len(), acknowledged.len(), "a quota position acknowledged twice on {store}");
        let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
        let used = view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_product").unwrap()["used"]
            .as_u64()
            .unwrap();
        assert_eq!(used as usize, in_log.len(), "the view counts what the log holds: {view}");
    }
    println!(
        "synchronous failover: {} acknowledged ({before_kill} before the kill), {lost} lost; promoted {promoted:?} \
         after the kill, first write {:?} after it",
        seen.consumptions.len(),
        first_after - killed
    );
    assert_eq!(lost, 0, "synchronous replication lost acknowledged consumptions");

    // The promoted server has no standby of its own: the option says so.
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["synchronousStandby"]["status"], "missing", "{ready}");
    assert_eq!(ready["checks"]["databaseRole"], "primary", "{ready}");

    // The pitfall: the promoted server is told to wait for the standby it was. Every commit
    // would hang while reads go on; `/readyz` says so (with or without the option).
    standby.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby1'");
    standby.sql("SELECT pg_reload_conf()");
    let told = Instant::now();
    loop {
        let (status, ready) = server.get("/readyz").await;
        if status == 503 && ready["checks"]["synchronousStandby"]["status"] == "absent" {
            assert_eq!(ready["checks"]["synchronousStandby"]["synchronousStandbyNames"], "standby1", "{ready}");
            break;
        }
        assert!(told.elapsed() < Duration::from_secs(3), "/readyz did not see the absent standby: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asynchronous_replication_rewinds_and_tells_the_feed_follower() {
    let Some(primary) = PrivateCluster::create("the asynchronous failover test", &[]) else { return };
    let standby = PrivateCluster::standby_of(&primary, "standby1");
    let server = Server::start(&multi_host(&primary, &standby), &Options::default());
    let client = server.client().with_retry(Retry::within(Duration::from_secs(30)));
    let stores = stores(&client, 30).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, tasks) = load(&client, &stores, 8, &stop);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The standby falls behind (stopped), and the primary goes on acknowledging without it: the
    // commits from here on are the ones an asynchronous failover loses.
    standby.stop();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    // A follower of the feed reads to the head, lost events included.
    let mut cursor = "0-0".to_owned();
    loop {
        let (status, page) = server.get(&format!("/v1/events?after={cursor}&limit=1000")).await;
        assert_eq!(status, 200, "{page}");
        let next = page["nextCursor"].as_str().unwrap().to_owned();
        if next == cursor {
            break;
        }
        cursor = next;
    }

    primary.stop();
    standby.start();
    standby.promote();
    let promoted = Instant::now();

    // Every store takes a command within 5 s of the promotion, however far its worker had got
    // on the lost log: a 409 here would be the wedge that only a restart cleared.
    let mut first_write = Duration::ZERO;
    for store in &stores {
        let path = format!("/v1/stores/{store}/quota/consume");
        loop {
            let (status, body) = server.post(&path, json!({"action": "create_product"})).await;
            if status == 200 {
                first_write = first_write.max(promoted.elapsed());
                break;
            }
            assert_ne!(status, 409, "a store refused after the failover: {body}");
            assert!(
                promoted.elapsed() < Duration::from_secs(5),
                "{store} still answers {status} 5 s after the promotion: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let lost = {
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let mut lost = 0;
        for store in &stores {
            let in_log = consumptions_in_log(&server, *store).await;
            lost += seen.consumptions.iter().filter(|c| c.0 == *store && !in_log.contains(&c.2.to_string())).count();
        }
        lost
    };
    let rewinds = metric(&server, "planledger_stream_rewinds_total").await;
    println!(
        "asynchronous failover: {lost} acknowledged consumptions lost, {rewinds} rewinds, every store writable {first_write:?} after the promotion"
    );
    assert!(lost > 0, "the standby was cut off before the last commits: some must be lost");
    assert!(rewinds >= 1.0, "the workers that held the lost versions rewound");

    // The follower's cursor names an event the promoted log does not hold: it is told, with
    // the head to start again from, rather than skipping the events written since.
    let (status, body) = server.get(&format!("/v1/events?after={cursor}")).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("cursor_not_in_log")), "{body}");
    let head = body["head"].as_str().expect("the head of the log");
    let (status, page) = server.get(&format!("/v1/events?after={head}")).await;
    assert_eq!(status, 200, "reading on from the head works: {page}");
    let (status, _) = server.get("/v1/events?after=0-0&limit=10").await;
    assert_eq!(status, 200, "reading again from the start works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_behind_the_address_makes_the_node_unready_and_writes_answer_503() {
    let Some(primary) = PrivateCluster::create("the standby-behind-the-address test", &[]) else { return };
    let standby = PrivateCluster::standby_of(&primary, "standby1");
    // A single-host URL: the address, not the list, is what moves.
    let server = Server::start(&primary.url(), &Options::default());
    let store = server.register("Moved").await;
    assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
    assert_eq!(server.get("/readyz").await.0, 200);

    // The primary goes, and a standby answers at its address.
    primary.stop();
    standby.stop();
    standby.start_on(primary.port);
    // Not ready within 2 s (the database unreachable, then a standby), and the role named
    // once the watcher has asked the server now at the address.
    let moved = Instant::now();
    let mut unready_after = None;
    loop {
        let (status, ready) = server.get("/readyz").await;
        if status == 503 {
            unready_after.get_or_insert(moved.elapsed());
            if ready["checks"]["databaseRole"] == "standby" {
                break;
            }
        }
        assert!(
            unready_after.is_some() || moved.elapsed() < Duration::from_secs(2),
            "/readyz still said ready 2 s after the standby took the address: {status} {ready}"
        );
        assert!(moved.elapsed() < Duration::from_secs(10), "/readyz never named the standby: {status} {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unready_after = unready_after.unwrap_or_default();
    assert!(unready_after < Duration::from_secs(2), "not ready only after {unready_after:?}");
    println!("a standby at the address: not ready after {unready_after:?}, named after {:?}", moved.elapsed());
    let started = Instant::now();
    let (status, body) =
        server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "update_product"})).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("database_not_primary")), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not after a timeout: {:?}",
        started.elapsed()
    );
}
