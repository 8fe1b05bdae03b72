//! Exactness under concurrency: many clients on one store, and two servers on one database.

use serde_json::json;

use crate::server::{Backend, Db, Options, Server};
use crate::{on_both_backends, server_or_skip};

/// 48 clients race for a lifetime limit of 50 products, 144 requests in all.
async fn concurrent_clients_get_exactly_the_limit(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "concurrent_clients_get_exactly_the_limit", Options::default());
    let store = server.register("Hot").await;
    server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    let path = format!("/v1/stores/{store}/quota/consume");
    let clients: Vec<_> = (0..48)
        .map(|_| async {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(server.post(&path, json!({"action": "create_product"})).await.0);
            }
            statuses
        })
        .collect();
    let statuses: Vec<u16> = futures_util::future::join_all(clients).await.into_iter().flatten().collect();
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((allowed, refused), (50, 94), "exactly the limit is allowed: {statuses:?}");
    let consumed = server.event_types(&store).await.iter().filter(|t| *t == "QuotaConsumed").count();
    assert_eq!(consumed, 50, "the log holds exactly the allowed consumptions");
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    let products = view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_product").cloned().unwrap();
    assert_eq!(products["used"], 50, "the read model agrees");
}

on_both_backends!(concurrent_clients_get_exactly_the_limit);

/// Two nodes on one PostgreSQL database serve the same store: together they allow exactly the
/// limit, and a due transition is appended once although both sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_stay_exact() {
    let Some(db) = Db::create(Backend::Postgres, "two_servers_on_one_database_stay_exact").await else { return };
    let a = Server::start(db.url(), &Options::test_clock());
    let b = Server::start(db.url(), &Options::test_clock());
    let store = a.register("Shared").await;
    let (status, _) = b.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    assert_eq!(status, 201);
    let path = format!("/v1/stores/{store}/quota/consume");
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let (server, path) = (if i % 2 == 0 { &a } else { &b }, &path);
            async move {
                let mut statuses = Vec::new();
                for _ in 0..4 {
                    statuses.push(server.post(path, json!({"action": "create_product"})).await.0);
                }
                statuses
            }
        })
        .collect();
    let statuses: Vec<u16> = futures_util::future::join_all(clients).await.into_iter().flatten().collect();
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let others: Vec<_> = statuses.iter().filter(|s| **s != 200 && **s != 429).collect();
    assert!(others.is_empty(), "only allowed or over quota: {others:?}");
    assert_eq!(allowed, 50, "exactly the limit across both nodes");
    assert_eq!(a.event_types(&store).await.iter().filter(|t| *t == "QuotaConsumed").count(), 50);

    // Both clocks pass the trial's end; both sweep; the transition is appended once.
    let (a_adv, b_adv) = tokio::join!(a.advance_days(15), b.advance_days(15));
    assert_eq!(a_adv["now"].as_str().map(|s| &s[..10]), b_adv["now"].as_str().map(|s| &s[..10]));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let types = b.event_types(&store).await;
    assert_eq!(types.iter().filter(|t| *t == "TrialExpired").count(), 1, "{types:?}");
    let (_, view) = a.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(view["internalStatus"], "grace");
}
