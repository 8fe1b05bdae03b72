//! The client's retries against a real HTTP listener that answers `503` a given number of times:
//! a command is retried with one `Idempotency-Key` (its own, if the caller gave none), waits at
//! least `Retry-After`, gives up at its budget, and a request that is neither a read nor keyed
//! is sent once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use planledger_client::wire::{Consume, ErrorCode, StartTrial};
use planledger_client::{Client, Error, Options, Retry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

/// What the listener saw of one request: its request line and its `Idempotency-Key`.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    key: Option<String>,
}

/// A server that answers the first `failures` requests `503 storage_unavailable` with
/// `Retry-After: retry_after`, then `200` with `ok_body`.
async fn flaky(failures: usize, retry_after: u64, ok_body: String) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; length];
            socket.read_exact(&mut body).await.unwrap();
            let n = {
                let mut seen = log.lock().unwrap();
                seen.push(Seen {
                    line: head.lines().next().unwrap_or_default().to_owned(),
                    key: header("idempotency-key"),
                });
                seen.len()
            };
            let answer = if n <= failures {
                let body =
                    r#"{"error":"storage_unavailable","message":"the database is unavailable","correlationId":"c"}"#;
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {retry_after}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ok_body}",
                    ok_body.len()
                )
            };
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    (base, seen)
}

/// A consumption's answer, as the server renders it.
fn consumed() -> String {
    serde_json::to_string(&planledger_client::wire::Consumed {
        allowed: true,
        consumption_id: Uuid::new_v4(),
        action: "create_article".into(),
        used: 1,
        limit: Some(30),
        remaining: Some(29),
        period: planledger_client::wire::Period::Month,
        period_start: None,
        period_end: None,
        warnings: Vec::new(),
        from_grants: Vec::new(),
        receipt: None,
    })
    .unwrap()
}

fn quick(budget: Duration) -> Retry {
    Retry { budget, first_delay: Duration::from_millis(10), max_delay: Duration::from_millis(40) }
}

fn consume() -> Consume {
    Consume { action: "create_article".into(), amount: Some(1) }
}

#[tokio::test]
async fn a_command_is_retried_through_503s_with_one_idempotency_key_of_its_own() {
    let (base, seen) = flaky(3, 0, consumed()).await;
    let client = Client::new(base).with_retry(quick(Duration::from_secs(10)));
    let reply = client.consume(Uuid::new_v4(), &consume(), &Options::default()).await.unwrap();
    assert_eq!(reply.value.used, 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "three 503s, then the answer: {seen:?}");
    let key = seen[0].key.clone().expect("a command sent without a key is given one, so that it may be retried");
    assert!(key.starts_with("planledger-client:"), "{key}");
    assert!(seen.iter().all(|s| s.key.as_deref() == Some(key.as_str())), "every retry carries the first key: {seen:?}");

    // Two commands are two keys: a generated key never makes two calls one.
    let (base, seen) = flaky(0, 0, consumed()).await;
    let client = Client::new(base).with_retry(quick(Duration::from_secs(10)));
    for _ in 0..2 {
        client.consume(Uuid::new_v4(), &consume(), &Options::default()).await.unwrap();
    }
    let keys: Vec<_> = seen.lock().unwrap().iter().map(|s| s.key.clone().unwrap()).collect();
    assert_ne!(keys[0], keys[1]);
}

#[tokio::test]
async fn the_callers_key_is_kept_and_retry_after_is_waited_for() {
    let (base, seen) = flaky(1, 1, consumed()).await;
    let client = Client::new(base).with_retry(quick(Duration::from_secs(10)));
    let started = Instant::now();
    client.consume(Uuid::new_v4(), &consume(), &Options::key("article-77")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not waited for: {:?}", started.elapsed());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.key.as_deref() == Some("article-77")), "{seen:?}");
}

#[tokio::test]
async fn the_budget_bounds_the_retries_and_the_last_answer_is_returned() {
    let (base, seen) = flaky(usize::MAX, 0, consumed()).await;
    let client = Client::new(base).with_retry(quick(Duration::from_millis(300)));
    let started = Instant::now();
    let error = client.consume(Uuid::new_v4(), &consume(), &Options::default()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Api { status: 503, body, .. } if body.error == ErrorCode::StorageUnavailable),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "gave up after {:?}", started.elapsed());
    let attempts = seen.lock().unwrap().len();
    assert!(attempts >= 4, "retried within the budget: {attempts} attempts");

    // Off: sent once.
    let (base, seen) = flaky(usize::MAX, 0, consumed()).await;
    let client = Client::new(base).with_retry(Retry::none());
    client.start_trial(Uuid::new_v4(), &StartTrial::default(), &Options::default()).await.unwrap_err();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].key, None, "without retries a command is sent as the caller gave it");
}

#[tokio::test]
async fn a_request_that_is_neither_a_read_nor_keyed_is_sent_once() {
    // A POST without a key through the generic `send` might be recorded twice: not retried.
    let (base, seen) = flaky(usize::MAX, 0, "{}".into()).await;
    let client = Client::new(base).with_retry(quick(Duration::from_secs(10)));
    let error = client
        .send::<_, serde_json::Value>(
            reqwest::Method::POST,
            "/v1/anything",
            &[],
            Some(&serde_json::json!({})),
            &Options::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A read is retried.
    let (base, seen) = flaky(2, 0, r#"{"status":"ok"}"#.into()).await;
    let client = Client::new(base).with_retry(quick(Duration::from_secs(10)));
    client
        .send::<(), serde_json::Value>(reqwest::Method::GET, "/healthz", &[], None, &Options::default())
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(seen.lock().unwrap()[0].line.starts_with("GET /healthz"));
}

#[tokio::test]
async fn a_refused_connection_is_retried_until_the_server_is_there() {
    // A port with nobody listening, then a server on it: a rolling restart, seen by a client.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = probe.local_addr().unwrap();
    drop(probe);
    let client = Client::new(format!("http://{address}")).with_retry(quick(Duration::from_secs(10)));
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = TcpListener::bind(address).await.unwrap();
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4096];
        let _ = socket.read(&mut buffer).await;
        let body = r#"{"status":"ok"}"#;
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        socket.write_all(answer.as_bytes()).await.unwrap();
    });
    let reply =
        client.send::<(), serde_json::Value>(reqwest::Method::GET, "/healthz", &[], None, &Options::default()).await;
    assert_eq!(reply.unwrap().value["status"], "ok");
    late.await.unwrap();
}
