//! A webhook receiver for tests: a real HTTP server that verifies every delivery with the
//! `standardwebhooks` crate (the Standard Webhooks reference library, not planledger's signing
//! code), records what it took, and answers as a script says (a status, or a slow answer).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// Verified, then answered with this status (not taken unless it is 2xx).
    Status(u16),
    /// Verified, then answered 200 after this long (taken, unless the sender gave up first).
    Sleep(Duration),
}

/// One verified delivery.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub kind: String,
    pub store_id: String,
    pub body: Value,
}

#[derive(Debug, Default)]
pub struct Inbox {
    pub secret: String,
    /// Deliveries taken (answered 2xx), in arrival order.
    pub taken: Vec<Received>,
    /// Every verified request, taken or not.
    pub requests: Vec<Received>,
    /// Requests whose signature did not verify.
    pub rejected: usize,
    /// Scripted answers, used one per request; then 200.
    pub script: VecDeque<Answer>,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    pub inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let state = inbox.clone();
        let handler = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let inbox = state.clone();
            async move { receive(&inbox, &headers, &body).await }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, inbox }
    }

    /// The endpoint's secret, once the ledger has shown it.
    pub fn trust(&self, secret: &str) {
        self.lock().secret = secret.to_owned();
    }

    pub fn script(&self, answers: &[Answer]) {
        self.lock().script.extend(answers.iter().copied());
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kinds taken for `store`, in arrival order.
    pub fn kinds_of(&self, store: &str) -> Vec<String> {
        self.lock().taken.iter().filter(|r| r.store_id == store).map(|r| r.kind.clone()).collect()
    }
}

async fn receive(inbox: &Mutex<Inbox>, headers: &axum::http::HeaderMap, body: &[u8]) -> axum::http::StatusCode {
    let lock = || inbox.lock().unwrap_or_else(|e| e.into_inner());
    let (secret, answer) = {
        let mut inbox = lock();
        (inbox.secret.clone(), inbox.script.pop_front())
    };
    let verified = standardwebhooks::Webhook::new(&secret).and_then(|w| w.verify(body, headers));
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (Ok(()), Some(value)) = (verified, parsed) else {
        lock().rejected += 1;
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let received = Received {
        webhook_id: headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
        kind: text(&value["type"]),
        store_id: text(&value["data"]["storeId"]),
        body: value,
    };
    lock().requests.push(received.clone());
    match answer {
        Some(Answer::Status(code)) => {
            let status =
                axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_success() {
                lock().taken.push(received);
            }
            status
        }
        Some(Answer::Sleep(wait)) => {
            tokio::time::sleep(wait).await;
            lock().taken.push(received);
            axum::http::StatusCode::OK
        }
        None => {
            lock().taken.push(received);
            axum::http::StatusCode::OK
        }
    }
}
