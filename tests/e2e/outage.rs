//! A database outage under load: while PostgreSQL is down the API answers 503
//! `storage_unavailable` quickly and `/readyz` says not ready; when it is back the service
//! recovers by itself, with nothing lost or doubled. The outage is staged on a private
//! PostgreSQL cluster (own data directory and port), so no other test is disturbed.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use planledger_client::wire::{Consume, ErrorCode};
use planledger_client::{Error as ClientError, Options as ClientOptions};
use serde_json::json;

use crate::server::{Options, Server};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway PostgreSQL cluster, stopped and removed when dropped.
struct PrivateCluster {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(args: &[&str]) -> bool {
    Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output().is_ok_and(|o| o.status.success())
}

impl PrivateCluster {
    fn create() -> Option<PrivateCluster> {
        if !std::path::Path::new(BIN).exists() {
            if planledger_testkit::postgres_required() {
                panic!("PostgreSQL is required but {BIN} is missing");
            }
            println!("skipped the outage test: no PostgreSQL binaries at {BIN}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("planledger-outage-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Command::new("chown").args(["postgres", dir.to_str().unwrap()]).status().unwrap().success());
        let data = dir.join("data");
        assert!(
            as_postgres(&[&format!("{BIN}/initdb"), "-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust"]),
            "initdb"
        );
        // Below the kernel's ephemeral range (32768 and up), where no server of another test
        // listening on port 0, and no outgoing connection, can take it while the cluster is
        // stopped mid-test; the first free one from a place that differs per process.
        let first = 20_000 + (std::process::id() % 10_000) as u16;
        let port = (first..32_000)
            .chain(20_000..first)
            .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
            .expect("a free port below the ephemeral range");
        let cluster = PrivateCluster { dir, port };
        cluster.start();
        Some(cluster)
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.dir.join("data");
        let mut all = vec![format!("{BIN}/pg_ctl"), "-D".into(), data.display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        as_postgres(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn start(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let log = self.dir.join("log");
        assert!(self.pg_ctl(&["-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]), "pg_ctl start");
    }

    fn stop(&self) {
        assert!(self.pg_ctl(&["-m", "immediate", "-w", "stop"]), "pg_ctl stop");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_503_quickly_and_recovers() {
    let Some(cluster) = PrivateCluster::create() else { return };
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
    let client = server.client();
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

    cluster.start();
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
