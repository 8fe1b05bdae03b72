//! Backups and restores as docs/operations.md describes them: a PostgreSQL logical dump
//! restored into a fresh database, and a SQLite copy made with `VACUUM INTO`, keep working (new
//! commands continue the restored history, the audit projector follows); a log whose
//! transaction ids are ahead of its server (a dump restored into another cluster) is refused at
//! start with an error that says what to do.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{Backend, Db, Options, Server};

async fn history(server: &Server) -> (String, usize) {
    let store = server.register("Restored").await;
    assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
    for _ in 0..3 {
        let path = format!("/v1/stores/{store}/quota/consume");
        assert_eq!(server.post(&path, json!({"action": "create_article"})).await.0, 200);
    }
    (store, 5)
}

/// The audit view of `store` once it holds `events` rows.
async fn audit_of(server: &Server, store: &str, events: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = server.get(&format!("/v1/audit?storeId={store}")).await;
        if page["items"].as_array().is_some_and(|items| items.len() == events) {
            return page;
        }
        assert!(Instant::now() < deadline, "the audit log of the restored database stalled: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn keeps_working(server: &Server, store: &str, events: usize) {
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    let used = |view: &Value| {
        view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap()["used"].clone()
    };
    assert_eq!(used(&view), json!(3), "the restored state: {view}");
    let (status, consumed) =
        server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article"})).await;
    assert_eq!((status, consumed["used"].clone()), (200, json!(4)), "new commands continue the history");
    audit_of(server, store, events + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_restored_into_a_fresh_database_keeps_working() {
    let Some(source) =
        Db::create(Backend::Postgres, "a_postgres_dump_restored_into_a_fresh_database_keeps_working").await
    else {
        return;
    };
    let (store, events) = {
        let server = Server::start(source.url(), &Options::default());
        let (store, events) = history(&server).await;
        audit_of(&server, &store, events).await;
        (store, events)
    };
    let dump = std::env::temp_dir().join(format!("planledger-{}.dump", uuid::Uuid::new_v4()));
    let dumped =
        Command::new("pg_dump").args(["--format=custom", "--file"]).arg(&dump).arg(source.url()).output().unwrap();
    assert!(dumped.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dumped.stderr));
    let Some(target) = Db::create(Backend::Postgres, "restored").await else { return };
    let restored = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(target.url())
        .arg(&dump)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&dump);
    assert!(restored.status.success(), "pg_restore: {}", String::from_utf8_lossy(&restored.stderr));

    let server = Server::start(target.url(), &Options::default());
    keeps_working(&server, &store, events).await;
    drop(server);

    // The same dump in a younger cluster: its events' transaction ids are ahead of the server.
    // (Simulated here by one event written with such an id.)
    let pool = sqlx::PgPool::connect(target.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO ledger_events (transaction_id, event_id, stream_id, version, event_type, schema_version, data,
            correlation_id, actor, catalog_fingerprint, recorded_at, hash)
         SELECT ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint + 1000000)::text)::xid8, gen_random_uuid(),
            stream_id, version + 100, event_type, schema_version, data, correlation_id, actor, catalog_fingerprint, recorded_at,
            hash
         FROM ledger_events ORDER BY global_position DESC LIMIT 1",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_planledger"))
        .arg("serve")
        .env("PLANLEDGER_DATABASE_URL", target.url())
        .env("PLANLEDGER_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("PLANLEDGER_TOKENS")
        .env_remove("PLANLEDGER_CATALOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while serve.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("serve started on a log whose transaction ids are ahead of its server");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "serve refuses the database");
    assert!(stderr.contains("restored from a logical dump") && stderr.contains("docs/operations.md"), "{stderr}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("listening"), "it never listened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_copy_made_with_vacuum_into_keeps_working() {
    let Some(source) = Db::create(Backend::Sqlite, "a_sqlite_copy_made_with_vacuum_into_keeps_working").await else {
        return;
    };
    let server = Server::start(source.url(), &Options::default());
    let (store, events) = history(&server).await;
    audit_of(&server, &store, events).await;
    // A consistent copy while the server runs (what docs/operations.md tells operators to do).
    let copy = planledger_testkit::SqliteTestDatabase::create();
    let pool = sqlx::SqlitePool::connect(source.url()).await.unwrap();
    sqlx::query("VACUUM INTO ?").bind(copy.path.display().to_string()).execute(&pool).await.unwrap();
    pool.close().await;
    drop(server);
    let server = Server::start(&copy.url, &Options::default());
    keeps_working(&server, &store, events).await;
}
