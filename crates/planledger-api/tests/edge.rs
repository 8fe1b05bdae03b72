//! The edge middleware: a panic in a handler is a 500 with a correlation id, and the process
//! (and the connection's next request) go on.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use planledger_api::{edge, AppState, Tokens};
use planledger_domain::Catalog;
use planledger_service::{CommandService, Journal, ServiceConfig, SystemClock};
use planledger_store::{AnyEventLog, SqliteEventLog};
use tower::ServiceExt;

/// The API's state on a fresh, migrated SQLite database, with `tokens`.
async fn state(tokens: Tokens) -> (AppState, planledger_testkit::SqliteTestDatabase) {
    let db = planledger_testkit::SqliteTestDatabase::create();
    let log = AnyEventLog::Sqlite(SqliteEventLog::connect(&db.url, 2, Duration::from_secs(5)).await.unwrap());
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
        log,
        Arc::new(Catalog::builtin()),
        Arc::new(SystemClock),
        ServiceConfig::default(),
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    );
    (AppState::new(service, tokens, Arc::default()), db)
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_a_correlation_id() {
    let (state, _db) = state(Tokens::none()).await;
    let router: Router = Router::new()
        .route(
            "/boom",
            get(|| async {
                if true {
                    panic!("a bug")
                }
            }),
        )
        .route("/fine", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::edge))
        .with_state(state);
    let request = Request::get("/boom").header("x-correlation-id", "trace-77").body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-correlation-id"], "trace-77");
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "internal");
    assert_eq!(json["correlationId"], "trace-77");
    assert!(!json.to_string().contains("a bug"), "internal text never reaches a client");
    let response = router.oneshot(Request::get("/fine").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the service goes on");
}

/// Every route against every kind of caller: no token, a wrong token, and each role.
#[tokio::test]
async fn every_route_enforces_its_role() {
    use planledger_api::{Role, ROUTES};
    let tokens = Tokens::parse("r:reader:reader-secret-1,s:service:service-secret-1,a:admin:admin-secret-1").unwrap();
    let (state, _db) = state(tokens).await;
    // Every wrong token here comes from one source: this test is not about the throttle.
    let unthrottled = planledger_api::auth::ThrottleConfig { burst: 100_000, refill: Duration::from_millis(1) };
    let state = state.with_edge(planledger_api::EdgeConfig { auth_throttle: unthrottled, ..Default::default() });
    let router = planledger_api::app(state);
    let callers: [(&str, Option<&str>, Option<Role>); 5] = [
        ("no token", None, None),
        ("wrong token", Some("Bearer nope-nope-nope"), None),
        ("reader", Some("Bearer reader-secret-1"), Some(Role::Reader)),
        ("service", Some("Bearer service-secret-1"), Some(Role::Service)),
        ("admin", Some("Bearer admin-secret-1"), Some(Role::Admin)),
    ];
    let mut checked = 0;
    for route in ROUTES {
        let uri = route.path.replace("{id}", &uuid::Uuid::new_v4().to_string()).replace("{name}", "audit_log");
        for (who, header, role) in &callers {
            let mut request = Request::builder().method(route.method).uri(&uri);
            if let Some(header) = header {
                request = request.header("authorization", *header);
            }
            let response = router.clone().oneshot(request.body(Body::from("{}")).unwrap()).await.unwrap();
            let status = response.status().as_u16();
            let expected = match (route.role, role) {
                (None, _) => "open",
                (Some(_), None) => "401",
                (Some(needed), Some(has)) if has < &needed => "403",
                _ => "allowed",
            };
            match expected {
                "401" => assert_eq!(status, 401, "{} {} as {who}", route.method, route.path),
                "403" => assert_eq!(status, 403, "{} {} as {who}", route.method, route.path),
                _ => assert!(
                    status != 401 && status != 403 && status < 500,
                    "{} {} as {who}: {status}",
                    route.method,
                    route.path
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * 5);
}

/// The console's sign-in is held to the same throttle as Bearer checks: a source that keeps
/// guessing is answered 429 with Retry-After (its guesses not even checked), another is not.
#[tokio::test]
async fn console_sign_in_guesses_are_throttled_per_source() {
    let (state, _db) = state(Tokens::parse("a:admin:admin-secret-1").unwrap()).await;
    let burst = planledger_api::auth::ThrottleConfig { burst: 3, refill: Duration::from_secs(60) };
    let router =
        planledger_api::app(state.with_edge(planledger_api::EdgeConfig { auth_throttle: burst, ..Default::default() }));
    let sign_in = |from: [u8; 4], token: &str| {
        let mut request = Request::post("/admin/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", "planledger_login=form-1")
            .body(Body::from(format!("csrf=form-1&token={token}")))
            .unwrap();
        let peer = std::net::SocketAddr::from((from, 40_000));
        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        router.clone().oneshot(request)
    };
    let guesser = [192, 0, 2, 7];
    // The burst is three failures; the fourth is the one beyond it, and after it the source waits.
    for guess in 0..4 {
        let response = sign_in(guesser, &format!("guess-{guess}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "guess {guess}: checked");
    }
    let response = sign_in(guesser, "admin-secret-1").await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "over the burst even the right token waits");
    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let other = sign_in([192, 0, 2, 8], "admin-secret-1").await.unwrap();
    assert_eq!(other.status(), StatusCode::SEE_OTHER, "another source signs in");
}
