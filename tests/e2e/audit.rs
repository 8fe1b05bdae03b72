//! Audit views, replay, and rebuilding read models after a rule change.

use serde_json::{json, Value};

use crate::server::{Backend, Db, Options, Server};
use crate::{on_both_backends, planledger};

/// Waits until the audit projector has applied every event.
async fn audit_caught_up(server: &Server, store: &str, events: usize) -> Value {
    for _ in 0..100 {
        let (status, page) = server.get(&format!("/v1/audit?storeId={store}&limit=1000")).await;
        assert_eq!(status, 200, "{page}");
        if page["items"].as_array().map(Vec::len) == Some(events) {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the audit projector did not catch up");
}

async fn the_audit_view_filters_and_pages(backend: Backend) {
    let (server, _db) = crate::server_or_skip!(backend, "the_audit_view_filters_and_pages", Options::default());
    let store = server.register("Audited").await;
    let other = server.register("Other").await;
    let request = server
        .client
        .post(format!("{}/v1/stores/{store}/trial", server.base))
        .header("X-Correlation-Id", "onboarding-42")
        .json(&json!({}));
    server.caller().send(request).await;
    for _ in 0..5 {
        server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article"})).await;
    }
    let all = audit_caught_up(&server, &store, 7).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items[0]["summary"], "registered Audited (UTC) under catalog version 1");
    assert!(items[1]["summary"].as_str().unwrap().starts_with("trial started on free_trial until"), "{}", items[1]);
    assert_eq!(items[6]["summary"], "consumed 1 create_article: 5/10 this month");

    let (_, by_type) = server.get(&format!("/v1/audit?storeId={store}&type=QuotaConsumed&limit=2")).await;
    assert_eq!(by_type["items"].as_array().map(Vec::len), Some(2));
    let cursor = by_type["nextCursor"].as_str().expect("a next page").to_owned();
    let (_, second) =
        server.get(&format!("/v1/audit?storeId={store}&type=QuotaConsumed&limit=2&cursor={cursor}")).await;
    assert_eq!(second["items"][0]["version"], 5, "the next page starts after the cursor: {second}");
    let (_, correlated) = server.get("/v1/audit?correlationId=onboarding-42").await;
    assert_eq!(correlated["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(correlated["items"][0]["type"], "TrialStarted");
    let (_, others) = server.get(&format!("/v1/audit?storeId={other}")).await;
    assert_eq!(others["items"].as_array().map(Vec::len), Some(1));
    let (_, future) = server.get("/v1/audit?from=2100-01-01T00:00:00Z").await;
    assert_eq!(future["items"], json!([]));
    let (status, _) = server.get("/v1/audit?from=last-tuesday").await;
    assert_eq!(status, 422);
    let (_, journal) = server.get(&format!("/v1/audit/commands?storeId={store}")).await;
    let kinds: Vec<&str> = journal["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["register_store", "start_trial", "consume", "consume", "consume", "consume", "consume"]);
}

async fn a_rule_change_rebuilds_tenant_state_and_leaves_events_untouched(backend: Backend) {
    let Some(db) = Db::create(backend, "a_rule_change_rebuilds_tenant_state_and_leaves_events_untouched").await else {
        return;
    };
    let store;
    {
        let server = Server::start(db.url(), &Options::default());
        store = server.register("Rules").await;
        server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
        server
            .post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article", "amount": 3}))
            .await;
    }
    let events_before = events_as_text(&db).await;
    let usage_before = tenant_usage(&db, &store).await;
    assert!(usage_before.contains("\"limit\":10") || usage_before.contains("\"limit\": 10"), "{usage_before}");

    // free_trial allowing 25 articles a month, published while a node runs: the node takes it
    // and rebuilds the read model built under the old rules, without a restart.
    let dir = tempfile_dir();
    let catalog = dir.join("catalog.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalog.toml")).unwrap();
    std::fs::write(&catalog, text.replacen("create_article = { limit = 10,", "create_article = { limit = 25,", 1))
        .unwrap();
    let options = Options { env: vec![("PLANLEDGER_CATALOG_POLL_MS", "100".into())], ..Options::default() };
    let server = Server::start(db.url(), &options);
    let published = planledger(db.url(), &["catalog", "publish", &catalog.display().to_string()]);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let mut rebuilt = Value::Null;
    for _ in 0..100 {
        let (_, progress) = server.get("/v1/admin/projections/tenant_state/rebuild").await;
        if progress["lastRebuild"]["state"] == "done" && progress["stale"] == false {
            rebuilt = progress;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rebuilt["generation"], 2, "a background rebuild swapped in generation 2: {rebuilt}");
    // The store's view is under the new version at once; its row once the deadline worker has
    // recorded the store's move to it (the version reaches existing stores at its effective
    // time), the one event the rule change adds.
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(view["usage"][0]["limit"], 25, "{view}");
    assert_eq!(view["catalogVersion"], 2, "{view}");
    let mut usage = String::new();
    for _ in 0..200 {
        usage = tenant_usage(&db, &store).await;
        if usage.contains("\"limit\":25") || usage.contains("\"limit\": 25") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(usage.contains("\"limit\":25") || usage.contains("\"limit\": 25"), "{usage}");
    assert!(usage.contains("\"remaining\":22") || usage.contains("\"remaining\": 22"), "{usage}");
    let (_, ready) = server.get("/readyz").await;
    let events_after = events_as_text(&db).await;
    assert_eq!(events_after[..events_before.len()], events_before[..], "events are byte-for-byte unchanged");
    assert_eq!(events_after.len(), events_before.len() + 1, "one event added");
    assert!(events_after.last().unwrap().contains("CatalogAdopted"), "{events_after:?}");
    for _ in 0..100 {
        let (_, ready) = server.get("/readyz").await;
        if ready["checks"]["staleReadModels"] == json!([]) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("read models stayed stale: {ready}");
}

async fn replay_shows_history_and_what_if(backend: Backend) {
    let Some(db) = Db::create(backend, "replay_shows_history_and_what_if").await else { return };
    let store;
    {
        let server = Server::start(db.url(), &Options::test_clock());
        // Mid-month, so that the trial's end (15 days on) is in the next month, and in the
        // future, so that the replay ends at the last event (not at the real now): whatever
        // today is.
        let mid_may = chrono::DateTime::parse_from_rfc3339("2036-05-20T12:00:00Z").unwrap().to_utc();
        server.client().set_test_clock(mid_may).await.expect("set the test clock");
        store = server.register("Replayed").await;
        server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
        server
            .post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article", "amount": 8}))
            .await;
        server.advance_days(15).await;
    }
    let events_before = events_as_text(&db).await;
    let out = planledger(db.url(), &["replay", "--store", &store]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].contains("StoreRegistered") && lines[1].contains("none / -"), "{text}");
    assert!(lines[2].contains("TrialStarted") && lines[2].contains("trialing / free_trial"), "{text}");
    assert!(lines[3].contains("consumed 8 create_article: 8/10 this month"), "{text}");
    assert!(lines[4].contains("TrialExpired") && lines[4].contains("grace / free_trial"), "{text}");
    // Replayed to the last event (a new month on the test clock): nothing used in June yet.
    assert!(text.contains("create_article   0/10"), "{text}");

    let dir = tempfile_dir();
    let catalog = dir.join("generous.toml");
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalog.toml")).unwrap();
    std::fs::write(&catalog, base.replacen("create_article = { limit = 10,", "create_article = { limit = 100,", 1))
        .unwrap();
    let out = planledger(db.url(), &["replay", "--store", &store, "--compare", &catalog.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0/10") && text.contains("* under"), "the difference is marked: {text}");
    assert!(text.contains("0/100"), "{text}");
    assert!(text.contains("(what-if: nothing was written)"));
    assert_eq!(events_as_text(&db).await, events_before, "a what-if replay writes nothing");
    // The same as one JSON document; the rules in force are the ledger's (a --catalog file that
    // differs is noted, not applied), and once published they are the ones replayed under.
    let out = planledger(db.url(), &["replay", "--store", &store, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed: Value = serde_json::from_slice(&out.stdout).expect("replay --json is JSON");
    assert_eq!(replayed["events"][1]["type"], "TrialStarted");
    assert_eq!(replayed["events"][1]["after"]["internalStatus"], "trialing");
    let article = |doc: &Value| {
        doc["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap()["current"]["limit"]
            .clone()
    };
    assert_eq!(article(&replayed), 10);
    let out =
        planledger(db.url(), &["replay", "--store", &store, "--json", "--catalog", &catalog.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(article(&serde_json::from_slice(&out.stdout).unwrap()), 10, "the ledger's rules, not the file's");
    assert!(String::from_utf8_lossy(&out.stderr).contains("differs from the ledger's catalog version 1"));

    let out = planledger(db.url(), &["replay", "--store", &uuid::Uuid::new_v4().to_string()]);
    assert!(!out.status.success());
    let out = planledger(db.url(), &["projections", "rebuild", "audit_log"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit_log: generation 2 swapped in"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\r') && !stderr.contains("events,"), "no progress bar off a terminal: {stderr:?}");
    let out = planledger(db.url(), &["projections", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("audit_log") && text.contains("tenant_state"), "{text}");
    let status = |extra: &[&str]| {
        let mut args = vec!["projections", "status", "--json"];
        args.extend_from_slice(extra);
        let out = planledger(db.url(), &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
        report["readModels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap().to_owned(), m["stale"].as_bool().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(status(&[]), [("tenant_state".to_owned(), false), ("audit_log".to_owned(), false)]);
    let other = catalog.display().to_string();
    assert_eq!(status(&["--catalog", &other]), status(&[]), "a file that differs is noted; the ledger's rules judge");
    // Published, the other rules are in force: the read models are stale for them (until a node
    // or an operator rebuilds them), and a replay is under them.
    let published = planledger(db.url(), &["catalog", "publish", &other]);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    assert!(status(&[]).iter().all(|(_, stale)| *stale), "under the new version both are stale");
    let out = planledger(db.url(), &["replay", "--store", &store, "--json"]);
    assert_eq!(article(&serde_json::from_slice(&out.stdout).unwrap()), 100, "the published rules are replayed under");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("planledger-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn events_as_text(db: &Db) -> Vec<String> {
    let sql = "SELECT * FROM ledger_events ORDER BY global_position";
    match db {
        Db::Sqlite(lite) => {
            let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
            let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
            rows.iter().map(|r| format!("{:?}", sqlx::Row::columns(r).len()) + &row_text_sqlite(r)).collect()
        }
        Db::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let rows: Vec<String> = sqlx::query_scalar("SELECT e::text FROM ledger_events e ORDER BY global_position")
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            rows
        }
    }
}

fn row_text_sqlite(row: &sqlx::sqlite::SqliteRow) -> String {
    use sqlx::Row;
    (0..row.columns().len())
        .map(|i| {
            row.try_get::<String, _>(i).or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string())).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("|")
}

async fn tenant_usage(db: &Db, store: &str) -> String {
    match db {
        Db::Sqlite(lite) => {
            let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
            sqlx::query_scalar("SELECT usage FROM tenant_state WHERE store_id = ?")
                .bind(store)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        Db::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let usage = sqlx::query_scalar("SELECT usage::text FROM tenant_state WHERE store_id = $1")
                .bind(store)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            usage
        }
    }
}

on_both_backends!(
    the_audit_view_filters_and_pages,
    a_rule_change_rebuilds_tenant_state_and_leaves_events_untouched,
    replay_shows_history_and_what_if,
);
