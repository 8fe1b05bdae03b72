//! Exactness under concurrency: many clients on one store, and two servers on one database.

use planledger_client::wire::{Consume, StartTrial};
use planledger_client::{Client, Options as Send};
use uuid::Uuid;

use crate::server::{Backend, Db, Options, Server};

/// Consumes one product `times` times; the statuses answered.
async fn consume_products(client: &Client, store: Uuid, times: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(times);
    for _ in 0..times {
        let product = Consume { action: "create_product".into(), amount: None };
        statuses.push(match client.consume(store, &product, &Send::default()).await {
            Ok(reply) => reply.status,
            Err(error) => error.status().unwrap_or(0),
        });
    }
    statuses
}
use crate::{on_both_backends, server_or_skip};

/// 48 clients race for a lifetime limit of 50 products, 144 requests in all.
async fn concurrent_clients_get_exactly_the_limit(backend: Backend) {
    let (server, _db) = server_or_skip!(backend, "concurrent_clients_get_exactly_the_limit", Options::default());
    let client = server.client();
    let store = Uuid::parse_str(&server.register("Hot").await).unwrap();
    client.start_trial(store, &StartTrial::default(), &Send::default()).await.expect("trial");
    let clients: Vec<_> = (0..48).map(|_| consume_products(&client, store, 3)).collect();
    let statuses: Vec<u16> = futures_util::future::join_all(clients).await.into_iter().flatten().collect();
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((allowed, refused), (50, 94), "exactly the limit is allowed: {statuses:?}");
    let consumed = server.event_types(&store.to_string()).await.iter().filter(|t| *t == "QuotaConsumed").count();
    assert_eq!(consumed, 50, "the log holds exactly the allowed consumptions");
    let view = client.get_store(store).await.expect("store").value;
    let products = view.usage.iter().find(|u| u.action == "create_product").unwrap();
    assert_eq!(products.used, 50, "the read model agrees");
}

on_both_backends!(concurrent_clients_get_exactly_the_limit);

/// Two nodes on one PostgreSQL database serve the same store: together they allow exactly the
/// limit, and a due transition is appended once although both sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_stay_exact() {
    let Some(db) = Db::create(Backend::Postgres, "two_servers_on_one_database_stay_exact").await else { return };
    let a = Server::start(db.url(), &Options::test_clock());
    let b = Server::start(db.url(), &Options::test_clock());
    let (to_a, to_b) = (a.client(), b.client());
    let store = Uuid::parse_str(&a.register("Shared").await).unwrap();
    let trial = to_b.start_trial(store, &StartTrial::default(), &Send::default()).await.expect("trial");
    assert_eq!(trial.status, 201);
    let clients: Vec<_> = (0..32).map(|i| consume_products(if i % 2 == 0 { &to_a } else { &to_b }, store, 4)).collect();
    let statuses: Vec<u16> = futures_util::future::join_all(clients).await.into_iter().flatten().collect();
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let others: Vec<_> = statuses.iter().filter(|s| **s != 200 && **s != 429).collect();
    assert!(others.is_empty(), "only allowed or over quota: {others:?}");
    assert_eq!(allowed, 50, "exactly the limit across both nodes");
    let store_text = store.to_string();
    assert_eq!(a.event_types(&store_text).await.iter().filter(|t| *t == "QuotaConsumed").count(), 50);

    // Both clocks pass the trial's end; both sweep; the transition is appended once.
    let (a_adv, b_adv) = tokio::join!(a.advance_days(15), b.advance_days(15));
    assert_eq!(a_adv.date_naive(), b_adv.date_naive());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let types = b.event_types(&store_text).await;
    assert_eq!(types.iter().filter(|t| *t == "TrialExpired").count(), 1, "{types:?}");
    let view = to_a.get_store(store).await.expect("store").value;
    assert_eq!(view.internal_status, planledger_client::wire::InternalStatus::Grace);
}
