//! The command path against a real database: conflicts from another writer, the bounded retry,
//! the journal, snapshots.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use planledger_domain::{ActionName, Amount, Catalog, Command, Event, StoreId};
use planledger_service::{
    Answer, Clock, CommandMeta, CommandService, InjectedFaults, Journal, ServiceConfig, ServiceError, TestClock,
};
use planledger_store::{AnyEventLog, EventLog, NewEvent, SqliteEventLog, StreamId};
use planledger_testkit::SqliteTestDatabase;
use uuid::Uuid;

async fn setup(
    config: ServiceConfig,
) -> (CommandService, AnyEventLog, tokio::task::JoinHandle<()>, SqliteTestDatabase) {
    let db = SqliteTestDatabase::create();
    let log = AnyEventLog::Sqlite(SqliteEventLog::connect(&db.url, 4, Duration::from_secs(5)).await.expect("open"));
    log.migrate().await.expect("migrate");
    planledger_projections::schema::ensure(&log, "fp", Utc::now()).await.expect("schema");
    let (service, writer) = node(&log, config);
    (service, log, writer, db)
}

/// A command service (a node) on `log`, and its journal writer.
fn node(log: &AnyEventLog, config: ServiceConfig) -> (CommandService, tokio::task::JoinHandle<()>) {
    let clock: Arc<dyn Clock> = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap()));
    let (journal, writer) = Journal::spawn(log.clone());
    let renderer = Arc::new(planledger_api::render::JsonRenderer);
    (CommandService::new(log.clone(), Arc::new(Catalog::builtin()), clock, config, journal, renderer), writer)
}

fn meta() -> CommandMeta {
    CommandMeta {
        correlation_id: "test".into(),
        actor: "tester".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    }
}

/// An answer as a caller of the API sees it: a status and a JSON body.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    body: serde_json::Value,
}

trait SeenAs {
    fn seen(self) -> Seen;
}

impl SeenAs for Result<Answer, ServiceError> {
    fn seen(self) -> Seen {
        let rendered = planledger_api::render::rendered(
            self,
            &planledger_domain::Catalogs::single(Arc::new(Catalog::builtin())),
            "test",
        );
        Seen { status: rendered.status, body: serde_json::from_str(&rendered.body).expect("JSON") }
    }
}

impl SeenAs for Answer {
    fn seen(self) -> Seen {
        Ok(self).seen()
    }
}

fn consume() -> Command {
    Command::Consume {
        action: ActionName::parse("create_article").unwrap(),
        amount: Amount::ONE,
        consumption_id: Uuid::now_v7(),
    }
}

async fn trialing_store(service: &CommandService) -> StoreId {
    let store = StoreId::new(Uuid::new_v4());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    assert_eq!(service.execute(store, register, meta()).await.expect("register").seen().status, 201);
    let trial = Command::StartTrial { plan_id: None, days: None, force_reset: None };
    assert_eq!(service.execute(store, trial, meta()).await.expect("trial").seen().status, 201);
    store
}

/// Another node appends `event` behind this node's cache.
async fn append_event_elsewhere(log: &AnyEventLog, store: StoreId, event: Event) {
    let stream = StreamId::parse(store.stream_name()).unwrap();
    let version = log.stream_version(&stream).await.unwrap();
    let new = NewEvent::new(
        event.event_type(),
        event.schema_version(),
        event.data(),
        "other-node",
        "other",
        "fp",
        Utc::now(),
    );
    log.append(&stream, version, &[new]).await.expect("append elsewhere");
}

/// Another node consumes 9 articles behind this node's cache.
async fn append_elsewhere(log: &AnyEventLog, store: StoreId) {
    let event = Event::QuotaConsumed {
        consumption_id: Uuid::now_v7(),
        action: ActionName::parse("create_article").unwrap(),
        amount: Amount::parse(9).unwrap(),
        period: planledger_domain::Period::Month,
        period_start: Some(Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()),
        period_end: Some(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()),
        used_after: 9,
        limit: Some(10),
        at: Utc.with_ymd_and_hms(2026, 5, 4, 11, 0, 0).unwrap(),
        from_grants: vec![],
        grants: None,
    };
    append_event_elsewhere(log, store, event).await;
}

#[tokio::test]
async fn a_conflict_catches_up_and_decides_again_on_the_new_state() {
    let (service, log, _writer, _db) = setup(ServiceConfig::default()).await;
    let store = trialing_store(&service).await;
    append_elsewhere(&log, store).await;
    // The cache says 0 of 10 used; the log says 9. The append conflicts, the worker catches up
    // and decides again: 1 more fits, the next does not.
    let first = service.execute(store, consume(), meta()).await.expect("consume").seen();
    assert_eq!((first.status, first.body["used"].as_u64()), (200, Some(10)), "{}", first.body);
    let second = service.execute(store, consume(), meta()).await.expect("consume").seen();
    assert_eq!((second.status, second.body["error"].as_str()), (429, Some("quota_exceeded")));
    assert!(service.metrics().conflicts.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_refusal_is_never_answered_from_a_stale_cache() {
    let (service, log, _writer, _db) = setup(ServiceConfig::default()).await;
    let store = trialing_store(&service).await;
    for _ in 0..10 {
        service.execute(store, consume(), meta()).await.expect("consume");
    }
    // This node's cache says 10 of 10 articles: a refusal, which appends nothing. Meanwhile
    // another node moved the store to the unmetered enterprise plan.
    let activated = Event::SubscriptionActivated {
        plan_id: planledger_domain::PlanId::parse("enterprise").unwrap(),
        subscription_id: planledger_domain::SubscriptionId::parse("sub_e").unwrap(),
        from_plan_id: None,
        activated_at: Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap(),
    };
    append_event_elsewhere(&log, store, activated).await;
    let answer = service.execute(store, consume(), meta()).await.expect("consume").seen();
    assert_eq!(
        (answer.status, answer.body["limit"].clone()),
        (200, serde_json::Value::Null),
        "decided on the log's latest state: {}",
        answer.body
    );
}

#[tokio::test]
async fn conflicts_past_the_bound_answer_concurrency_conflict() {
    let (service, log, _writer, _db) = setup(ServiceConfig { max_attempts: 1, ..ServiceConfig::default() }).await;
    let store = trialing_store(&service).await;
    append_elsewhere(&log, store).await;
    let result: Result<Answer, ServiceError> = service.execute(store, consume(), meta()).await;
    assert_eq!(result, Err(ServiceError::ConcurrencyConflict));
}

#[tokio::test]
async fn the_journal_records_accepted_and_refused_commands() {
    let (service, log, writer, _db) = setup(ServiceConfig::default()).await;
    let store = trialing_store(&service).await;
    let unknown = StoreId::new(Uuid::new_v4());
    let refused = service.execute(unknown, consume(), meta()).await.expect("answer").seen();
    assert_eq!(refused.status, 404);
    service.shutdown();
    drop(service);
    tokio::time::timeout(Duration::from_secs(5), writer).await.expect("journal drained").expect("writer");
    let AnyEventLog::Sqlite(lite) = &log else { unreachable!() };
    let rows: Vec<(String, String, String, Option<String>, String)> =
        sqlx::query_as("SELECT store_id, kind, outcome, error_code, actor FROM command_journal ORDER BY id")
            .fetch_all(lite.readers())
            .await
            .expect("journal");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()),
        (store.to_string().as_str(), "register_store", "accepted")
    );
    assert_eq!(
        (rows[2].1.as_str(), rows[2].2.as_str(), rows[2].3.as_deref()),
        ("consume", "refused", Some("store_not_found"))
    );
    assert_eq!(rows[2].4, "tester");
}

#[tokio::test]
async fn snapshots_make_a_cold_load_read_only_the_tail() {
    let config =
        ServiceConfig { snapshot_every: 10, worker_idle: Duration::from_millis(50), ..ServiceConfig::default() };
    let (service, log, _writer, _db) = setup(config).await;
    let store = trialing_store(&service).await;
    for _ in 0..10 {
        let answer = service
            .execute(
                store,
                Command::Consume {
                    action: ActionName::parse("update_product").unwrap(),
                    amount: Amount::ONE,
                    consumption_id: Uuid::now_v7(),
                },
                meta(),
            )
            .await
            .unwrap()
            .seen();
        assert_eq!(answer.status, 200);
    }
    let stream = StreamId::parse(store.stream_name()).unwrap();
    let mut snapshot = None;
    for _ in 0..50 {
        snapshot = log.load_snapshot(&stream).await.unwrap();
        if snapshot.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(snapshot.map(|s| s.version), Some(10), "a snapshot at the 10th event");
    // The worker went idle and forgot the store; the next command loads snapshot + tail.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = service.execute(store, consume(), meta()).await.unwrap().seen();
    assert_eq!((answer.status, answer.body["used"].as_u64()), (200, Some(1)));
    let (state, version) = service.load_row(store).await.unwrap().unwrap();
    assert_eq!(version, 13);
    assert_eq!(state.usage[&ActionName::parse("update_product").unwrap()].lifetime, 10);
}

/// A snapshot made by another fold is never read, even one that claims this fold's version
/// number: the fold is fingerprinted by what it does (`planledger_domain::fold_fingerprint`).
#[tokio::test]
async fn a_snapshot_made_by_another_fold_is_folded_again_from_the_log() {
    let config = ServiceConfig { worker_idle: Duration::from_millis(50), ..ServiceConfig::default() };
    let (service, log, _writer, _db) = setup(config).await;
    let store = trialing_store(&service).await;
    let action = ActionName::parse("create_article").unwrap();
    for _ in 0..3 {
        assert_eq!(service.execute(store, consume(), meta()).await.unwrap().seen().status, 200);
    }
    let (mut state, version) = service.load_row(store).await.unwrap().unwrap();
    // What an older fold might have made of the same events: usage it counted differently.
    state.usage.get_mut(&action).unwrap().lifetime = 999;
    let stream = StreamId::parse(store.stream_name()).unwrap();
    let same_version_number = planledger_domain::state::FOLD_VERSION;
    log.save_snapshot(&planledger_store::Snapshot {
        stream_id: stream.clone(),
        version,
        state: serde_json::to_value(&state).unwrap(),
        fold_fingerprint: format!("{same_version_number}-0123456789abcdef"),
    })
    .await
    .unwrap();
    assert_ne!(
        log.load_snapshot(&stream).await.unwrap().unwrap().fold_fingerprint,
        planledger_domain::fold_fingerprint()
    );
    // The worker forgets the store; the next command loads it cold.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(service.execute(store, consume(), meta()).await.unwrap().seen().status, 200);
    let (state, _) = service.load_row(store).await.unwrap().unwrap();
    assert_eq!(state.usage[&action].lifetime, 4, "counted from the log, not from the foreign snapshot");
}

fn extend_trial() -> Command {
    Command::Extend {
        kind: planledger_domain::ExtensionKind::Trial,
        days: planledger_domain::Days::parse(3).unwrap(),
        reason: planledger_domain::Reason::parse("support ticket").unwrap(),
    }
}

async fn count_of(log: &AnyEventLog, store: StoreId, event_type: &str) -> usize {
    let stream = StreamId::parse(store.stream_name()).unwrap();
    log.read_stream(&stream, 1, 1000).await.unwrap().iter().filter(|e| e.event_type == event_type).count()
}

fn with_faults(faults: InjectedFaults) -> (ServiceConfig, Arc<InjectedFaults>) {
    let faults = Arc::new(faults);
    let config = ServiceConfig {
        faults: Some(faults.clone()),
        probe_for: Duration::from_millis(300),
        ..ServiceConfig::default()
    };
    (config, faults)
}

#[tokio::test]
async fn a_commit_that_errors_after_committing_is_found_in_the_log_not_decided_again() {
    let (config, faults) = with_faults(InjectedFaults::next(0, 1, 0));
    let (service, log, _writer, _db) = setup(config).await;
    let store = trialing_store(&service).await;
    // The commit happens, then reports an error (a connection lost after the server
    // committed). The committer asks the log, finds the event, and answers what happened.
    let answer = service.execute(store, extend_trial(), meta()).await.expect("the extension is confirmed").seen();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(faults.injected(), 1);
    assert_eq!(count_of(&log, store, "TrialExtended").await, 1, "decided once, appended once");
    // The worker's state is right: a transition from the trial plan is decided on it.
    let next = service.execute(store, extend_trial(), meta()).await.expect("next").seen();
    assert_eq!(next.status, 200);
    assert_eq!(count_of(&log, store, "TrialExtended").await, 2);
}

#[tokio::test]
async fn a_commit_whose_outcome_cannot_be_learned_is_answered_unknown_and_never_decided_twice() {
    let (config, _faults) = with_faults(InjectedFaults::next(0, 1, u32::MAX));
    let (service, log, _writer, _db) = setup(config).await;
    let store = StoreId::new(Uuid::new_v4());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    let answer = service.execute(store, register, meta()).await;
    assert_eq!(answer, Err(ServiceError::OutcomeUnknown));
    let stream = StreamId::parse(store.stream_name()).unwrap();
    assert_eq!(log.stream_version(&stream).await.unwrap(), 1, "it did commit, once");
}

#[tokio::test]
async fn a_commit_that_fails_before_committing_writes_nothing_and_keeps_the_cache_right() {
    let (config, _faults) = with_faults(InjectedFaults::next(1, 0, 0));
    let (service, log, _writer, _db) = setup(config).await;
    let store = StoreId::new(Uuid::new_v4());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    let refused = service.execute(store, register.clone(), meta()).await;
    assert!(matches!(refused, Err(ServiceError::Unavailable(_))), "a refused commit is a 503, not a 500: {refused:?}");
    let stream = StreamId::parse(store.stream_name()).unwrap();
    assert_eq!(log.stream_version(&stream).await.unwrap(), 0);
    assert_eq!(service.execute(store, register, meta()).await.expect("again").seen().status, 201);
}

#[tokio::test]
async fn a_keyed_refusal_is_stored_so_a_retry_gets_it_even_after_the_state_changed() {
    let (service, _log, _writer, _db) = setup(ServiceConfig::default()).await;
    let store = trialing_store(&service).await;
    let mut consumptions = Vec::new();
    for _ in 0..10 {
        consumptions
            .push(service.execute(store, consume(), meta()).await.unwrap().seen().body["consumptionId"].clone());
    }
    let keyed = CommandMeta {
        idempotency: Some(planledger_service::IdempotencyRequest { key: "k-429".into(), request_hash: "h".into() }),
        ..meta()
    };
    let first = service.execute(store, consume(), keyed.clone()).await.unwrap().seen();
    assert_eq!(first.status, 429);
    let id = Uuid::parse_str(consumptions[0].as_str().unwrap()).unwrap();
    assert_eq!(service.refund(store, id, meta()).await.unwrap().seen().status, 200, "room again");
    let retry = service.execute(store, consume(), keyed.clone()).await.unwrap().seen();
    assert_eq!(retry, first, "the answer to a key never changes");
    let other_body = CommandMeta {
        idempotency: Some(planledger_service::IdempotencyRequest { key: "k-429".into(), request_hash: "h2".into() }),
        ..meta()
    };
    let reused = service.execute(store, consume(), other_body).await.seen();
    assert_eq!((reused.status, reused.body["error"].as_str()), (409, Some("idempotency_key_reused")));
}

#[tokio::test]
async fn commands_to_unknown_stores_leave_no_worker_behind() {
    let (service, _log, _writer, _db) = setup(ServiceConfig::default()).await;
    let store = trialing_store(&service).await;
    for _ in 0..200 {
        let answer = service.execute(StoreId::new(Uuid::new_v4()), consume(), meta()).await.unwrap().seen();
        assert_eq!(answer.status, 404);
    }
    // Workers retire as soon as their batch is answered; the one registered store stays.
    for _ in 0..100 {
        if service.active_workers() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(service.active_workers(), 1, "only the registered store keeps a worker");
    assert_eq!(service.execute(store, consume(), meta()).await.unwrap().seen().status, 200);
}

#[tokio::test]
async fn fresh_keys_cost_no_lookup_and_a_retry_still_gets_the_first_answer() {
    let (service, log, _writer, _db) = setup(ServiceConfig::default()).await;
    let store = trialing_store(&service).await;
    let keyed = |key: &str, hash: &str| CommandMeta {
        idempotency: Some(planledger_service::IdempotencyRequest { key: key.into(), request_hash: hash.into() }),
        ..meta()
    };
    let lookups = || service.metrics().answer_lookups.load(std::sync::atomic::Ordering::Relaxed);
    let firsts = futures_util::future::join_all((0..8).map(|i| {
        let service = service.clone();
        let meta = keyed(&format!("k-{i}"), "h");
        async move { service.execute(store, update(), meta).await.seen() }
    }))
    .await;
    assert!(firsts.iter().all(|a| a.status == 200), "{firsts:?}");
    assert_eq!(lookups(), 0, "a fresh key is decided without reading stored answers");
    // A retry of each, concurrently with new keys: the retries replay, the new ones are decided.
    let mixed = futures_util::future::join_all((0..16).map(|i| {
        let service = service.clone();
        let meta = keyed(&format!("k-{}", i % 8 + if i < 8 { 0 } else { 100 }), "h");
        async move { service.execute(store, update(), meta).await.seen() }
    }))
    .await;
    for (i, answer) in mixed.iter().take(8).enumerate() {
        assert_eq!(answer, &firsts[i], "the retry of k-{i} is its first answer");
    }
    assert_eq!(lookups(), 0, "the worker remembers the answers it committed");
    assert_eq!(count_of(&log, store, "QuotaConsumed").await, 16, "8 + 8 new, none twice");
    // Another node never saw these keys: its commit finds them answered, it reads, it replays.
    let (other, _other_writer) = node(&log, ServiceConfig::default());
    let elsewhere = other.execute(store, update(), keyed("k-3", "h")).await.seen();
    assert_eq!(elsewhere, firsts[3], "the first answer, from another node");
    assert!(other.metrics().answer_lookups.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(count_of(&log, store, "QuotaConsumed").await, 16, "nothing appended by the replay");
}

fn update() -> Command {
    Command::Consume {
        action: ActionName::parse("update_product").unwrap(),
        amount: Amount::ONE,
        consumption_id: Uuid::now_v7(),
    }
}
