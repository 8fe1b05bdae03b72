//! Hostile input: generated malformed, oversized, deeply nested, wrong-typed, unicode-laden and
//! injection-shaped requests on every route, in-process. No 5xx, no panic, and no event is
//! written by a refused request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use planledger_api::{app, AppState, Tokens, ROUTES};
use planledger_domain::Catalog;
use planledger_service::{CommandService, Journal, ServiceConfig, SystemClock};
use planledger_store::{AnyEventLog, SqliteEventLog};
use tower::ServiceExt;

/// A small deterministic generator (xorshift), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NASTY: &[&str] = &[
    "",
    " ",
    "null",
    "0",
    "-1",
    "1e309",
    "18446744073709551616",
    "\u{0}",
    "\u{202e}",
    "🏪🧾",
    "' OR 1=1 --",
    "\"; DROP TABLE ledger_events; --",
    "../../etc/passwd",
    "%00",
    "\\u0000",
    "{}",
    "[]",
    "true",
    "Ünïcödé",
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "create_article",
    "starter",
    "google_only",
    "2026-02-30T25:61:00Z",
    "9999-12-31T23:59:59Z",
];

const FIELDS: &[&str] = &[
    "storeId",
    "name",
    "timeZone",
    "planId",
    "days",
    "forceReset",
    "reason",
    "subscriptionId",
    "fromPlanId",
    "toPlanId",
    "metadata",
    "action",
    "amount",
    "consumptionId",
    "storeIds",
    "kind",
    "now",
    "seconds",
    "extra",
];

fn value(rng: &mut Rng, depth: usize) -> serde_json::Value {
    use serde_json::json;
    match rng.below(if depth > 3 { 6 } else { 9 }) {
        0 => json!(null),
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!((rng.next() % 3_000_000) as i64 - 1_000_000),
        4 => json!(rng.pick(NASTY)),
        5 => json!(f64::from(rng.below(1000) as u32) / 7.0),
        6 => serde_json::Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        7 => object(rng, depth + 1),
        _ => json!("x".repeat(rng.below(300))),
    }
}

fn object(rng: &mut Rng, depth: usize) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for _ in 0..rng.below(5) {
        map.insert(rng.pick(FIELDS).to_owned(), value(rng, depth));
    }
    serde_json::Value::Object(map)
}

/// A body: valid-looking JSON, broken JSON, deep nesting, huge, or binary.
fn body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => Vec::new(),
        1 => b"{\"action\": ".to_vec(),
        2 => format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        3 => vec![b'a'; 70 * 1024],
        4 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        5 => format!("{{\"amount\": {}}}", "9".repeat(400)).into_bytes(),
        _ => object(rng, 0).to_string().into_bytes(),
    }
}

fn path(rng: &mut Rng, template: &str, store: &str) -> String {
    let id = match rng.below(4) {
        0 => store.to_owned(),
        1 => uuid::Uuid::new_v4().to_string(),
        2 => urlencode(rng.pick(NASTY)),
        _ => "%F0%9F%8F%AA".to_owned(),
    };
    let mut path = template.replace("{id}", &id).replace("{name}", rng.pick(&["tenant_state", "audit_log", "x%27"]));
    if rng.below(3) == 0 {
        let key =
            rng.pick(&["limit", "fromVersion", "cursor", "at", "version", "storeId", "type", "from", "internalStatus"]);
        path.push_str(&format!("?{key}={}", urlencode(rng.pick(NASTY))));
    }
    path
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_never_cause_a_5xx_or_a_write() {
    let db = planledger_testkit::SqliteTestDatabase::create();
    let log = AnyEventLog::Sqlite(SqliteEventLog::connect(&db.url, 4, Duration::from_secs(5)).await.unwrap());
    log.migrate().await.unwrap();
    planledger_projections::schema::ensure(
        &log,
        &planledger_projections::schema::built_with(&planledger_domain::Catalogs::single(Arc::new(Catalog::builtin()))),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let (journal, _writer) = Journal::spawn(log.clone());
    let service = CommandService::new(
        log.clone(),
        Arc::new(Catalog::builtin()),
        Arc::new(SystemClock),
        ServiceConfig::default(),
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    );
    let state = AppState::new(
        service,
        Tokens::parse("ops:admin:admin-secret-1,svc:service:service-secret-1").unwrap(),
        Arc::default(),
    );
    let router: Router = app(state);

    // One real store, on a trial, whose quota the fuzzer may legitimately use.
    let store = uuid::Uuid::new_v4().to_string();
    for (uri, body) in [
        ("/v1/stores".to_owned(), format!("{{\"storeId\":\"{store}\"}}")),
        (format!("/v1/stores/{store}/trial"), "{}".to_owned()),
    ] {
        let request =
            Request::post(uri).header("authorization", "Bearer admin-secret-1").body(Body::from(body)).unwrap();
        assert!(router.clone().oneshot(request).await.unwrap().status().is_success());
    }
    let count = |log: AnyEventLog| async move { log.event_count().await.unwrap() };
    let mut written_before = count(log.clone()).await;

    let requests: u64 =
        std::env::var("PLANLEDGER_HOSTILE_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut rng = Rng(0x5eed_f00d_cafe_babe);
    let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH];
    let tokens = ["", "Bearer admin-secret-1", "Bearer service-secret-1", "Bearer wrong", "Basic abc", "Bearer \u{7f}"];
    let mut rss_after_warmup = 0;
    for n in 0..requests {
        let route = &ROUTES[rng.below(ROUTES.len())];
        let method =
            if rng.below(4) == 0 { methods[rng.below(methods.len())].clone() } else { route.method.parse().unwrap() };
        let uri = path(&mut rng, route.path, &store);
        let mut builder = Request::builder().method(method.clone()).uri(&uri);
        let token = tokens[rng.below(tokens.len())];
        if !token.is_empty() {
            builder = builder.header("authorization", token);
        }
        if rng.below(5) == 0 {
            builder = builder.header("idempotency-key", rng.pick(&["k1", "k 2", "ключ", ""]));
        }
        if rng.below(5) == 0 {
            builder = builder.header("x-correlation-id", rng.pick(NASTY).replace('\u{0}', ""));
        }
        let Ok(request) = builder.body(Body::from(body(&mut rng))) else { continue };
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        assert!(status.as_u16() < 500, "request {n}: {method} {uri} answered {status}");
        if !status.is_success() {
            // A refused request wrote nothing.
            let now = count(log.clone()).await;
            assert_eq!(now, written_before, "request {n}: {method} {uri} was refused with {status} but wrote events");
        } else {
            written_before = count(log.clone()).await;
        }
        if n == requests / 10 {
            rss_after_warmup = rss_kb();
        }
    }
    let rss_end = rss_kb();
    assert!(rss_end < rss_after_warmup + 64 * 1024, "memory grew from {rss_after_warmup} kB to {rss_end} kB");
}
