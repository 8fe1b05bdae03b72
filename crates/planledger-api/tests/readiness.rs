//! `/readyz` means something: it fails when the audit projector or the deadline worker has
//! stalled (its oldest pending work is older than the threshold), and recovers when they catch up.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeDelta, TimeZone, Utc};
use planledger_api::{AppState, Tokens};
use planledger_domain::{Catalog, Command, StoreId};
use planledger_service::{Clock, CommandMeta, CommandService, Journal, ServiceConfig, TestClock};
use planledger_store::{AnyEventLog, EventLog, SqliteEventLog};
use serde_json::Value;
use tower::ServiceExt;

async fn ready(state: &AppState) -> (StatusCode, Value) {
    let response =
        planledger_api::app(state.clone()).oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// A projector whose checkpoint names an event the log does not hold (the database was put
/// together from parts, or its log moved back) would skip events: not ready, and named.
async fn a_checkpoint_past_the_log_makes_the_node_unready(log: &AnyEventLog, state: &AppState) {
    use planledger_projections::runtime::AUDIT_CONSUMER;
    let at = log.load_checkpoint(AUDIT_CONSUMER).await.unwrap();
    let past = planledger_store::Checkpoint { position: at.position + 1_000, ..at };
    let set = |from, to| async move {
        let mut tx = log.begin().await.unwrap();
        log.compare_and_set_checkpoint_in(&mut tx, AUDIT_CONSUMER, from, to).await.unwrap();
        log.commit(tx).await.unwrap();
    };
    set(at, past).await;
    let (status, body) = ready(state).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["checkpointsNotInLog"], serde_json::json!([AUDIT_CONSUMER]), "{body}");
    set(past, at).await;
    let (status, body) = ready(state).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Creates the read models, as built under `catalog` alone.
async fn read_models_for(log: &AnyEventLog, catalog: &Catalog) {
    let catalogs = planledger_domain::Catalogs::single(Arc::new(catalog.clone()));
    planledger_projections::schema::ensure(log, &planledger_projections::schema::built_with(&catalogs), Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stalled_projector_or_deadline_worker_makes_the_node_unready() {
    let db = planledger_testkit::SqliteTestDatabase::create();
    let log = AnyEventLog::Sqlite(SqliteEventLog::connect(&db.url, 2, Duration::from_secs(5)).await.unwrap());
    log.migrate().await.unwrap();
    let catalog = Catalog::builtin();
    read_models_for(&log, &catalog).await;
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()));
    let (journal, _writer) = Journal::spawn(log.clone());
    let service = CommandService::new(
        log.clone(),
        Arc::new(catalog),
        clock.clone(),
        ServiceConfig::default(),
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    );
    // Neither the projector nor the deadline worker runs: this node's background work stalls.
    // Each probe below must see the clock it set, not the answer a moment ago.
    let uncached = planledger_api::EdgeConfig { probe_cache: Duration::ZERO, ..Default::default() };
    let state = AppState::new(service.clone(), Tokens::none(), Arc::default())
        .with_stall_after(Duration::from_secs(60))
        .with_edge(uncached);
    let store = StoreId::new(uuid::Uuid::new_v4());
    let meta = || CommandMeta {
        correlation_id: "readiness".into(),
        actor: "tester".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    };
    service
        .execute(store, Command::RegisterStore { store_id: store, name: None, time_zone: None }, meta())
        .await
        .unwrap();
    service.execute(store, Command::StartTrial { plan_id: None, days: None, force_reset: None }, meta()).await.unwrap();

    let (status, body) = ready(&state).await;
    assert_eq!(status, StatusCode::OK, "fresh work is not a stall: {body}");
    assert_eq!(body["checks"]["auditProjector"]["status"], "ok", "{body}");

    // Two minutes on, the events are still unprojected: the projector has stalled.
    clock.set(clock.now() + TimeDelta::minutes(2));
    let (status, body) = ready(&state).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["auditProjector"]["status"], "stalled", "{body}");
    assert!(body["checks"]["auditProjector"]["behindSeconds"].as_f64().unwrap() >= 120.0, "{body}");
    assert_eq!(body["checks"]["deadlineWorker"]["status"], "ok", "the trial has not ended: {body}");
    while planledger_projections::runtime::project_audit_page(&log).await.unwrap() > 0 {}
    assert_eq!(ready(&state).await.0, StatusCode::OK, "caught up, ready again");

    a_checkpoint_past_the_log_makes_the_node_unready(&log, &state).await;

    // The trial ended an hour ago and nothing expired it: the deadline worker has stalled.
    let (_, view) = ready(&state).await;
    assert_eq!(view["checks"]["deadlineWorker"]["status"], "ok");
    let row = planledger_projections::tenant_state::load(&log, store).await.unwrap().unwrap();
    clock.set(row.state.trial_ends_at.unwrap() + TimeDelta::hours(1));
    let (status, body) = ready(&state).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["deadlineWorker"]["status"], "stalled", "{body}");
    assert!(body["checks"]["deadlineWorker"]["overdueSeconds"].as_f64().unwrap() >= 3600.0, "{body}");
    service.sweep().await.unwrap();
    while planledger_projections::runtime::project_audit_page(&log).await.unwrap() > 0 {}
    let (status, body) = ready(&state).await;
    assert_eq!(status, StatusCode::OK, "the sweep applied the deadline: {body}");
}

/// A node whose database refuses writes (the address moved to a standby after a failover, or
/// the sessions are read-only) is not ready, and says why; on a primary it is.
#[tokio::test]
async fn a_node_on_a_database_that_refuses_writes_is_not_ready() {
    let test = "a_node_on_a_database_that_refuses_writes_is_not_ready";
    let Some(db) = planledger_testkit::PgTestDatabase::create(test).await else { return };
    let state_on = |url: String| async move {
        let log = AnyEventLog::connect(&planledger_store::StoreConfig::new(url)).await.unwrap();
        let (journal, _writer) = Journal::spawn(log.clone());
        let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()));
        let service = CommandService::new(
            log.clone(),
            Arc::new(Catalog::builtin()),
            clock,
            ServiceConfig::default(),
            journal,
            Arc::new(planledger_api::render::JsonRenderer),
        );
        let uncached = planledger_api::EdgeConfig { probe_cache: Duration::ZERO, ..Default::default() };
        (log, AppState::new(service, Tokens::none(), Arc::default()).with_edge(uncached))
    };
    let (log, primary) = state_on(db.url.clone()).await;
    log.migrate().await.unwrap();
    let catalog = Catalog::builtin();
    read_models_for(&log, &catalog).await;
    let (status, body) = ready(&primary).await;
    assert_eq!((status, &body["checks"]["databaseRole"]), (StatusCode::OK, &Value::from("primary")), "{body}");
    log.append(
        &planledger_store::StreamId::parse("readiness").unwrap(),
        0,
        &[planledger_store::NewEvent::new("Probe", 1, serde_json::json!({}), "c", "tester", "none", Utc::now())],
    )
    .await
    .unwrap();
    while planledger_projections::runtime::project_audit_page(&log).await.unwrap() > 0 {}
    a_checkpoint_past_the_log_makes_the_node_unready(&log, &primary).await;

    let separator = if db.url.contains('?') { '&' } else { '?' };
    let read_only = format!("{}{separator}options=-c%20default_transaction_read_only%3Don", db.url);
    let (_, standby) = state_on(read_only).await;
    let (status, body) = ready(&standby).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["databaseRole"], "read-only", "{body}");
    assert_eq!(body["ready"], false);
}
