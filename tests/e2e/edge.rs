//! The edge against the real binary, as an attacker would use it: slow clients, many
//! connections from one address, a deploy while a client holds a connection, long polls beyond
//! the cap, misspelt filters, signature headers of thousands of entries, webhook endpoints on
//! internal addresses. The limits are in docs/security.md.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{Backend, Db, Options, Server};

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Reads what the server sends until it closes the connection or `within` passes.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (true, String::from_utf8_lossy(&seen).into_owned()),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            // Reset by the server: closed too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, String::from_utf8_lossy(&seen).into_owned())
            }
            Err(_) => return (false, String::from_utf8_lossy(&seen).into_owned()),
        }
    }
}

fn with_env(env: &[(&'static str, &str)]) -> Options {
    Options { env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(), ..Options::default() }
}

#[tokio::test]
async fn a_client_that_sends_its_head_too_slowly_is_cut_off() {
    let db = Db::create(Backend::Sqlite, "slow_head").await.unwrap();
    let server = Server::start(db.url(), &with_env(&[("PLANLEDGER_HTTP_HEADER_TIMEOUT_SECONDS", "1")]));
    let mut slow = TcpStream::connect(address(&server)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n").unwrap();
    // Half a head, then nothing: the server closes it (a slowloris would hold it forever).
    let (closed, _) = read_until_closed(&mut slow, Duration::from_secs(15));
    assert!(closed, "a connection that never finished its head is still open after 15 s");
    assert_eq!(server.get("/healthz").await.0, 200, "others are served");
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let db = Db::create(Backend::Sqlite, "per_source").await.unwrap();
    let server = Server::start(db.url(), &with_env(&[("PLANLEDGER_HTTP_MAX_CONNECTIONS_PER_SOURCE", "4")]));
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(address(&server)).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await; // accepted and counted
    let mut fifth = TcpStream::connect(address(&server)).unwrap();
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n");
    let (closed, answer) = read_until_closed(&mut fifth, Duration::from_secs(10));
    assert!(closed, "the connection over the cap is closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("too_many_connections") && answer.contains("retry-after: 1"), "{answer:?}");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.get("/healthz").await.0, 200, "served again once the address holds fewer");
}

#[tokio::test]
async fn sigterm_ends_within_the_grace_while_a_client_holds_a_connection() {
    let db = Db::create(Backend::Sqlite, "sigterm_grace").await.unwrap();
    let env = [("PLANLEDGER_SHUTDOWN_GRACE_SECONDS", "2"), ("PLANLEDGER_HTTP_HEADER_TIMEOUT_SECONDS", "120")];
    let mut server = Server::start(db.url(), &with_env(&env));
    // One connection mid-request (a body that never comes), one idle after an answer.
    let mut stuck = TcpStream::connect(address(&server)).unwrap();
    stuck.write_all(b"POST /v1/stores HTTP/1.1\r\nHost: ledger\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{").unwrap();
    let mut idle = TcpStream::connect(address(&server)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    let status = server.wait_within(Duration::from_secs(30)).expect("the server still runs 30 s after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn long_polls_beyond_the_cap_are_answered_503_with_retry_after() {
    let db = Db::create(Backend::Sqlite, "long_poll_cap").await.unwrap();
    let mut options = with_env(&[("PLANLEDGER_MAX_LONG_POLLS", "2")]).with_tokens();
    options.test_clock = false;
    let server = Server::start(db.url(), &options);
    let poll = |server: &Server| {
        let request = server
            .client
            .get(format!("{}/v1/events?after=0-0&wait=20s", server.base))
            .bearer_auth(crate::server::ADMIN);
        request.send()
    };
    let waiting = [tokio::spawn(poll(&server)), tokio::spawn(poll(&server))];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = poll(&server).await.unwrap();
    assert_eq!(third.status().as_u16(), 503);
    assert!(third.headers().contains_key("retry-after"), "{:?}", third.headers());
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"], "too_many_long_polls", "{body}");
    // A poll without wait is always answered, and an event wakes the waiters.
    let (status, page) = server.get("/v1/events?after=0-0").await;
    assert_eq!((status, page["items"].as_array().map(Vec::len)), (200, Some(0)), "{page}");
    let started = Instant::now();
    server.register("Wakes the waiters").await;
    for waiter in waiting {
        let answer = waiter.await.unwrap().unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let page: Value = answer.json().await.unwrap();
        assert_eq!(page["items"][0]["type"], "StoreRegistered", "{page}");
    }
    assert!(started.elapsed() < Duration::from_secs(15), "the waiters were woken by the event, not the wait's end");
}

#[tokio::test]
async fn a_misspelt_filter_is_refused_naming_it() {
    let db = Db::create(Backend::Sqlite, "unknown_query").await.unwrap();
    let server = Server::start(db.url(), &Options::default().with_tokens());
    let (status, body) = server.get("/v1/admin/stores?status=frozen").await;
    assert_eq!(
        (status, body["error"].as_str(), body["field"].as_str()),
        (422, Some("validation_failed"), Some("status")),
        "{body}"
    );
    let (status, body) = server.get("/v1/events?after=0-0&limt=5").await;
    assert_eq!((status, body["field"].as_str()), (422, Some("limt")), "{body}");
    let (status, page) = server.get("/v1/events?after=0-0&limit=5").await;
    assert_eq!(status, 200, "{page}");
    assert!(page["items"].is_array() && page.get("nextCursor").is_some(), "a list like every other: {page}");
}

#[tokio::test]
async fn a_signature_header_of_thousands_of_entries_is_refused() {
    let db = Db::create(Backend::Sqlite, "stripe_header_flood").await.unwrap();
    let server = Server::start(db.url(), &with_env(&[("PLANLEDGER_STRIPE_WEBHOOK_SECRETS", "whsec_edge_test_secret")]));
    let now = chrono::Utc::now().timestamp();
    let entries: Vec<String> = (0..5000).map(|i| format!("v1={i:064x}")).collect();
    let header = format!("t={now},{}", entries.join(","));
    let body = vec![b'a'; 1024 * 1024 - 1];
    let answer = server
        .client
        .post(format!("{}/v1/webhooks/stripe", server.base))
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "invalid_signature", "{body}");
}

#[tokio::test]
async fn webhook_endpoints_on_internal_addresses_are_refused() {
    let db = Db::create(Backend::Sqlite, "ssrf").await.unwrap();
    // The harness allows loopback for its receivers; this server allows nothing.
    let server = Server::start(db.url(), &with_env(&[("PLANLEDGER_WEBHOOK_ALLOW", "")]).with_tokens());
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://0.0.0.0:8080/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::1]/hook",
        "http://[::ffff:192.168.1.1]/hook",
    ] {
        let (status, body) =
            server.post("/v1/admin/webhooks/endpoints", json!({"url": url, "kinds": ["store.frozen"]})).await;
        assert_eq!((status, body["field"].as_str()), (422, Some("url")), "{url}: {body}");
    }
    let (_, listed) = server.get("/v1/admin/webhooks/endpoints").await;
    assert_eq!(listed["items"], json!([]), "nothing was registered");
}
