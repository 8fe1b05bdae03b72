//! The conventions of the HTTP contract that clients' tooling relies on, through the typed
//! client (`planledger-client`): replayed answers marked and word for word, `If-Match` on store
//! commands, `Retry-After`, `WWW-Authenticate`, `Allow`, one pagination shape on every list,
//! and the published OpenAPI document.

use planledger_client::wire::{
    Consume, ErrorCode, ExtensionKind, Extensions, RegisterStore, StartTrial, TransitionPlan, TransitionReason,
};
use planledger_client::{AuditFilter, Client, Error, Options as Send, PageRequest};
use serde_json::json;
use uuid::Uuid;

use crate::on_both_backends;
use crate::server::{Backend, Options, READER};

on_both_backends!(
    a_replayed_answer_is_marked_and_is_the_first_answer_word_for_word,
    if_match_makes_a_store_command_conditional_on_the_version,
    errors_carry_the_headers_clients_expect,
    every_list_pages_the_same_way,
);

fn consume(action: &str) -> Consume {
    Consume { action: action.to_owned(), amount: None }
}

async fn trialing(client: &Client) -> Uuid {
    let store = Uuid::new_v4();
    let register = RegisterStore { store_id: Some(store), name: Some("Contract".into()), time_zone: None };
    client.register_store(&register, &Send::default()).await.expect("register");
    client.start_trial(store, &StartTrial::default(), &Send::default()).await.expect("trial");
    store
}

fn api_error(
    result: Result<impl std::fmt::Debug, Error>,
) -> (u16, ErrorCode, Option<u64>, Box<planledger_client::wire::ErrorBody>) {
    match result {
        Err(Error::Api { status, body, retry_after }) => (status, body.error, retry_after, body),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn a_replayed_answer_is_marked_and_is_the_first_answer_word_for_word(backend: Backend) {
    let (server, _db) = crate::server_or_skip!(backend, "replayed_answer_is_marked", Options::default());
    let client = server.client();
    let store = trialing(&client).await;
    let first = client.consume(store, &consume("create_article"), &Send::key("article-1")).await.expect("first");
    assert!(!first.replayed, "a first answer is not marked");
    let again = client.consume(store, &consume("create_article"), &Send::key("article-1")).await.expect("retry");
    assert!(again.replayed, "the retry's answer is marked Idempotent-Replayed: true");
    assert_eq!(again.value, first.value);
    // Word for word, as bytes, over a raw request.
    let url = format!("{}/v1/stores/{store}/quota/consume", server.base);
    let send =
        || server.client.post(&url).header("Idempotency-Key", "article-2").json(&json!({"action": "create_article"}));
    let raw_first = send().send().await.unwrap();
    assert!(raw_first.headers().get("idempotent-replayed").is_none());
    let raw_first = raw_first.text().await.unwrap();
    let raw_again = send().send().await.unwrap();
    assert_eq!(raw_again.headers()["idempotent-replayed"], "true");
    assert_eq!(raw_again.text().await.unwrap(), raw_first, "the replay is the stored text itself");
    // A refusal replays the same way.
    let unknown = Uuid::new_v4();
    let refused = client.refund(store, unknown, &Send::key("refund-1")).await;
    let (status, code, _, _) = api_error(refused);
    assert_eq!((status, code), (404, ErrorCode::ConsumptionNotFound));
    let url = format!("{}/v1/stores/{store}/quota/refund", server.base);
    let replay = server
        .client
        .post(&url)
        .header("Idempotency-Key", "refund-1")
        .json(&json!({"consumptionId": unknown}))
        .send()
        .await
        .unwrap();
    assert_eq!((replay.status().as_u16(), &replay.headers()["idempotent-replayed"]), (404, &"true".parse().unwrap()));
}

async fn if_match_makes_a_store_command_conditional_on_the_version(backend: Backend) {
    let (server, _db) = crate::server_or_skip!(backend, "if_match_makes_commands_conditional", Options::default());
    let client = server.client();
    let store = trialing(&client).await;
    let seen = client.get_store(store).await.expect("get");
    let version = seen.version.expect("GET answers an ETag");
    assert_eq!(version, seen.value.version);
    let consumed = client
        .consume(store, &consume("create_article"), &Send::default().if_match(version))
        .await
        .expect("at the version it saw, the command is decided");
    assert_eq!(consumed.value.used, 1);
    // The store moved: the same condition is refused with the current version, and nothing changes.
    let stale = client.consume(store, &consume("create_article"), &Send::default().if_match(version)).await;
    let (status, code, _, body) = api_error(stale);
    assert_eq!((status, code, body.current_version), (409, ErrorCode::VersionMismatch, Some(version + 1)));
    let transition = TransitionPlan {
        from_plan_id: "free_trial".into(),
        to_plan_id: "starter".into(),
        reason: TransitionReason::Upgrade,
        subscription_id: Some("sub_1".into()),
        metadata: None,
        at: None,
    };
    let (status, code, _, _) =
        api_error(client.transition_plan(store, &transition, &Send::default().if_match(1)).await);
    assert_eq!((status, code), (409, ErrorCode::VersionMismatch));
    assert_eq!(client.get_store(store).await.unwrap().value.version, version + 1, "nothing was appended");
    // A malformed condition is a clear 422, not a guess.
    let url = format!("{}/v1/stores/{store}/quota/consume", server.base);
    let response = server
        .client
        .post(&url)
        .header("If-Match", "W/\"3\"")
        .json(&json!({"action": "create_article"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
}

async fn errors_carry_the_headers_clients_expect(backend: Backend) {
    let (server, _db) = crate::server_or_skip!(
        backend,
        "errors_carry_the_headers",
        Options { test_clock: true, ..Options::default() }.with_tokens()
    );
    let client = server.client();
    // 401: WWW-Authenticate names the scheme.
    let response = server.client.get(format!("{}/v1/audit", server.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let (status, code, _, _) =
        api_error(client.clone().without_token().audit(&AuditFilter::default(), &PageRequest::default()).await);
    assert_eq!((status, code), (401, ErrorCode::Unauthorized));
    // 403 for a reader's command: no WWW-Authenticate (the token is valid).
    let reader = client.clone().with_token(READER);
    let (status, code, _, _) =
        api_error(reader.consume(Uuid::new_v4(), &consume("create_article"), &Send::default()).await);
    assert_eq!((status, code), (403, ErrorCode::Forbidden));
    // 429: Retry-After is the time to the window's reset.
    client.set_test_clock("2026-03-31T23:00:00Z".parse().unwrap()).await.expect("clock");
    let store = trialing(&client).await;
    for _ in 0..10 {
        client.consume(store, &consume("create_article"), &Send::default()).await.expect("within the limit");
    }
    let (status, code, retry_after, body) =
        api_error(client.consume(store, &consume("create_article"), &Send::default()).await);
    assert_eq!((status, code), (429, ErrorCode::QuotaExceeded));
    let resets_at = body.resets_at.expect("a monthly window resets");
    assert_eq!(
        retry_after,
        Some(
            (resets_at - "2026-03-31T23:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap()).num_seconds() as u64
        )
    );
    // 405: Allow lists the methods the path serves.
    let response = server
        .client
        .delete(format!("{}/v1/test-clock", server.base))
        .bearer_auth(crate::server::ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
}

/// Reads every page of a list, `limit` 1, following `nextCursor` until it is null.
async fn all_pages<T, F, Fut>(fetch: F) -> Vec<T>
where
    F: Fn(PageRequest) -> Fut,
    Fut: std::future::Future<Output = planledger_client::Result<planledger_client::wire::Page<T>>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = fetch(PageRequest { cursor: cursor.clone(), limit: Some(1) }).await.expect("page").value;
        assert!(page.items.len() <= 1);
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
    panic!("the list never ended");
}

async fn every_list_pages_the_same_way(backend: Backend) {
    let (server, _db) = crate::server_or_skip!(backend, "every_list_pages_the_same_way", Options::default());
    let client = server.client();
    let stores = [trialing(&client).await, trialing(&client).await];
    client
        .extend(
            &Extensions { store_ids: stores.to_vec(), kind: ExtensionKind::Trial, days: 3, reason: "pages".into() },
            &Send::default(),
        )
        .await
        .expect("extend");
    let events = all_pages(|page| {
        let client = client.clone();
        async move { client.events(stores[0], &page).await }
    })
    .await;
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    let listed = all_pages(|page| {
        let client = client.clone();
        async move { client.list_stores(None, &page).await }
    })
    .await;
    assert_eq!(listed.len(), 2);
    // The journal and the audit view are written off the command path, a moment behind.
    let mut journal = Vec::new();
    for _ in 0..100 {
        journal = all_pages(|page| {
            let client = client.clone();
            async move { client.commands(Some(stores[1]), None, &page).await }
        })
        .await;
        if journal.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        journal.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
        ["register_store", "start_trial", "extend"]
    );
    let filter = AuditFilter { store_id: Some(stores[0]), ..AuditFilter::default() };
    let mut audit = Vec::new();
    for _ in 0..100 {
        audit = all_pages(|page| {
            let (client, filter) = (client.clone(), filter.clone());
            async move { client.audit(&filter, &page).await }
        })
        .await;
        if audit.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(audit.iter().map(|a| a.version).collect::<Vec<_>>(), vec![1, 2, 3]);
}
