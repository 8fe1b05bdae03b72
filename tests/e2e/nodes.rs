//! Three servers on one PostgreSQL database: exact quotas on shared stores, each due transition
//! appended once, one active audit projector, taken over when the node holding it is killed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::{Backend, Db, Options, Server};

async fn leader_flag(server: &Server) -> Option<u8> {
    let text = server.client.get(format!("{}/metrics", server.base)).send().await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with("planledger_projector_leader{"))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_database_exactly() {
    let Some(db) = Db::create(Backend::Postgres, "three_nodes_share_one_database_exactly").await else { return };
    let mut nodes: Vec<Server> = (0..3).map(|_| Server::start(db.url(), &Options::test_clock())).collect();
    let mut stores = Vec::new();
    for i in 0..3 {
        let store = nodes[i].register(&format!("Shared {i}")).await;
        assert_eq!(nodes[(i + 1) % 3].post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
        stores.push(store);
    }

    // Mixed load from all nodes on all stores: products (limit 50 each, lifetime) and reads.
    let mut clients = Vec::new();
    for c in 0..24 {
        let (node, stores) = (&nodes[c % 3], &stores);
        clients.push(async move {
            let mut allowed = vec![0; stores.len()];
            for i in 0..12 {
                let s = (c + i) % stores.len();
                let action = if i % 4 == 3 { "view_products" } else { "create_product" };
                let (status, _) =
                    node.post(&format!("/v1/stores/{}/quota/consume", stores[s]), json!({"action": action})).await;
                assert!(status == 200 || status == 429, "status {status}");
                if status == 200 && action == "create_product" {
                    allowed[s] += 1;
                }
            }
            allowed
        });
    }
    let results = futures_util::future::join_all(clients).await;
    for (s, store) in stores.iter().enumerate() {
        let allowed: usize = results.iter().map(|r| r[s]).sum();
        assert_eq!(allowed, 50, "{store}: demand was above the limit, so exactly the limit is allowed");
        let (_, view) = nodes[2].get(&format!("/v1/stores/{store}")).await;
        let products =
            view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_product").unwrap()["used"].clone();
        assert_eq!(products, json!(allowed), "the read model agrees with what was allowed");
    }

    // Every node's clock passes the trials' end; each trial expires once.
    for node in &nodes {
        node.advance_days(15).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for store in &stores {
        let types = nodes[0].event_types(store).await;
        assert_eq!(types.iter().filter(|t| *t == "TrialExpired").count(), 1, "{types:?}");
    }

    // One audit projector is active; when its node is killed another takes over.
    let flags = [leader_flag(&nodes[0]).await, leader_flag(&nodes[1]).await, leader_flag(&nodes[2]).await];
    assert_eq!(flags.iter().map(|f| f.unwrap_or(0)).sum::<u8>(), 1, "exactly one leader: {flags:?}");
    let leader = flags.iter().position(|f| *f == Some(1)).unwrap();
    nodes[leader].kill();
    let survivor = (leader + 1) % 3;
    let store = nodes[survivor].register("After the leader died").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = nodes[survivor].get(&format!("/v1/audit?storeId={store}")).await;
        if page["items"].as_array().is_some_and(|items| items.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "no node took the audit projector over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut leaders = 0;
    for i in others {
        leaders += leader_flag(&nodes[i]).await.unwrap_or(0);
    }
    assert_eq!(leaders, 1, "exactly one leader after the takeover");
}

/// Three nodes start at once on a catalog the read models were not built with: each sees them
/// stale and starts a rebuild. One rebuild of each model runs; the read models end at
/// generation 2 with every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_starting_on_a_new_catalog_rebuild_each_model_once() {
    let Some(db) = Db::create(Backend::Postgres, "three_nodes_starting_on_a_new_catalog_rebuild_each_model_once").await
    else {
        return;
    };
    let mut events = 0;
    {
        let seeder = Server::start(db.url(), &Options::default());
        for i in 0..20 {
            let store = seeder.register(&format!("Store {i}")).await;
            assert_eq!(seeder.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
            let path = format!("/v1/stores/{store}/quota/consume");
            let consumes = (0..20).map(|_| seeder.post(&path, json!({"action": "view_products"})));
            assert!(futures_util::future::join_all(consumes).await.iter().all(|(status, _)| *status == 200));
            // Registered, trial started, 20 consumptions; and, once the new rules are
            // published, the store's move to them (recorded once, whichever node sweeps).
            events += 23;
        }
    }
    let dir = std::env::temp_dir().join(format!("planledger-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = dir.join("catalog.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalog.toml")).unwrap();
    std::fs::write(&catalog, text.replacen("create_article = { limit = 10,", "create_article = { limit = 25,", 1))
        .unwrap();
    // A rolling deploy with new rules: the nodes publish their file (the first to start does;
    // the others find it in force), and each then finds the read models stale.
    let options = Options {
        catalog: Some(catalog.display().to_string()),
        env: vec![("PLANLEDGER_PUBLISH_CATALOG", "true".into())],
        ..Options::default()
    };

    // All three at once: each starts its rebuilds before it listens.
    let starting: Vec<_> = (0..3)
        .map(|_| {
            let (url, options) = (db.url().to_owned(), options.clone());
            std::thread::spawn(move || Server::start(&url, &options))
        })
        .collect();
    let nodes: Vec<Server> = starting.into_iter().map(|t| t.join().unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        loop {
            let (_, ready) = node.get("/readyz").await;
            let (_, tenant) = node.get("/v1/admin/projections/tenant_state/rebuild").await;
            let (_, audit) = node.get("/v1/admin/projections/audit_log/rebuild").await;
            // A node that started after another had rebuilt finds nothing stale and starts none.
            let settled =
                |job: &serde_json::Value| job["lastRebuild"].is_null() || job["lastRebuild"]["state"] == "done";
            if ready["checks"]["staleReadModels"] == json!([]) && settled(&tenant) && settled(&audit) {
                assert_eq!((tenant["generation"].clone(), audit["generation"].clone()), (json!(2), json!(2)));
                break;
            }
            assert!(Instant::now() < deadline, "the read models stayed stale or a rebuild failed: {tenant} {audit}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let generations: Vec<(String, i32)> =
        sqlx::query_as("SELECT name, generation FROM read_models ORDER BY name").fetch_all(&pool).await.unwrap();
    assert_eq!(generations, [("audit_log".to_owned(), 2), ("tenant_state".to_owned(), 2)]);
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename ~ '^(tenant_state|audit_log)_(g|retired_g)[0-9]+$'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "no half-built or retired table left behind");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (rows, distinct): (i64, i64) =
            sqlx::query_as("SELECT count(*), count(DISTINCT global_position) FROM audit_log")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(rows, distinct, "no event twice in the audit log");
        if rows == events {
            break;
        }
        assert!(Instant::now() < deadline, "the audit log holds {rows} of {events} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let limits: Vec<String> =
        sqlx::query_scalar("SELECT usage::text FROM tenant_state").fetch_all(&pool).await.unwrap();
    assert!(limits.iter().all(|u| u.contains("\"limit\": 25")), "rebuilt under the new catalog: {limits:?}");
    pool.close().await;
}
