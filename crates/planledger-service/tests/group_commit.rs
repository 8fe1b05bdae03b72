//! The group commit on both backends: on PostgreSQL a group is one statement that commits on its
//! own, with a transaction to fall back on; on SQLite a transaction. Each test runs on both
//! (PostgreSQL's half prints one line and passes when no server is reachable, unless
//! `PLANLEDGER_REQUIRE_POSTGRES=1`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use planledger_domain::{Command, Days, ExtensionKind, Reason, StoreId};
use planledger_service::{
    CommandMeta, CommandService, IdempotencyRequest, InjectedFaults, ServiceConfig, ServiceError, TestClock,
};
use planledger_store::{AnyEventLog, EventLog, StreamId};
use uuid::Uuid;

mod support;

fn meta(correlation: &str, key: Option<(&str, &str)>) -> CommandMeta {
    CommandMeta {
        correlation_id: correlation.into(),
        actor: "tester".into(),
        idempotency: key.map(|(key, hash)| IdempotencyRequest { key: key.into(), request_hash: hash.into() }),
        expected_version: None,
        causation_id: None,
    }
}

/// The status the API gives the answer.
fn node(log: &AnyEventLog, faults: Option<Arc<InjectedFaults>>) -> CommandService {
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap()));
    let config = ServiceConfig {
        faults: faults.map(|f| f as Arc<dyn planledger_service::FaultInjector>),
        probe_for: Duration::from_millis(300),
        ..ServiceConfig::default()
    };
    support::node_with(log, clock, config)
}

async fn trialing_store(service: &CommandService) -> StoreId {
    let store = StoreId::new(Uuid::new_v4());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    assert!(support::accepted(&service.execute(store, register, meta("setup", None)).await));
    let trial = Command::StartTrial { plan_id: None, days: None, force_reset: None };
    assert!(support::accepted(&service.execute(store, trial, meta("setup", None)).await));
    store
}

async fn version_of(log: &AnyEventLog, store: StoreId) -> i64 {
    log.stream_version(&StreamId::parse(store.stream_name()).unwrap()).await.unwrap()
}

/// A command a trialing store refuses (`not_in_grace`), the same words for the same correlation.
fn extend_grace() -> Command {
    Command::Extend {
        kind: ExtensionKind::Grace,
        days: Days::parse(3).unwrap(),
        reason: Reason::parse("support ticket").unwrap(),
    }
}

planledger_testkit::on_both_backends!(
    a_group_whose_reply_is_lost_after_it_committed_is_found_batch_by_batch,
    a_key_reused_with_another_body_never_gets_the_first_answer_when_the_reply_is_lost,
);

/// Eight stores register at once (one group or a few), and the first commit's reply is lost
/// after the commit: the committer asks the log what each batch wrote, and every store is
/// answered as registered and registered once.
async fn a_group_whose_reply_is_lost_after_it_committed_is_found_batch_by_batch(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "group reply lost").await else { return };
    let faults = Arc::new(InjectedFaults::next(0, 1, 0));
    let service = node(&log, Some(faults.clone()));
    let stores: Vec<StoreId> = (0..8).map(|_| StoreId::new(Uuid::new_v4())).collect();
    let sends = stores.iter().map(|store| {
        let register = Command::RegisterStore { store_id: *store, name: None, time_zone: None };
        service.execute(*store, register, meta("register", None))
    });
    for answer in futures_util::future::join_all(sends).await {
        assert!(support::accepted(&answer));
    }
    assert_eq!(faults.injected(), 1, "one reply was lost");
    for store in stores {
        assert_eq!(version_of(&log, store).await, 1, "registered once");
    }
}

/// A key reused with another body on another node, whose commit's reply is lost: the stored
/// answer of the first request is, word for word, what the second would have been told (same
/// correlation, same refusal), so the committer must not take it for the second's own (it would
/// answer the refusal). It answers that nothing was written; the retry is refused as a reuse.
async fn a_key_reused_with_another_body_never_gets_the_first_answer_when_the_reply_is_lost(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "reuse reply lost").await else { return };
    let first_node = node(&log, None);
    let store = trialing_store(&first_node).await;
    let first = first_node.execute(store, extend_grace(), meta("same", Some(("k", "first body")))).await;
    assert!(support::refused(&first));
    let faults = Arc::new(InjectedFaults::next(0, 1, 0));
    let second_node = node(&log, Some(faults.clone()));
    let reuse = second_node.execute(store, extend_grace(), meta("same", Some(("k", "another body")))).await;
    if postgres {
        // The statement's reply was lost and nothing of it is in the log.
        assert_eq!(faults.injected(), 1);
        assert!(matches!(reuse, Err(ServiceError::Unavailable(_))), "{reuse:?}");
    } else {
        // SQLite's transaction finds the key taken before it commits: nothing to lose.
        assert_eq!(reuse, Err(ServiceError::KeyReused));
    }
    let retry = second_node.execute(store, extend_grace(), meta("same", Some(("k", "another body")))).await;
    assert_eq!(retry, Err(ServiceError::KeyReused));
    assert_eq!(version_of(&log, store).await, 2, "nothing appended");
}

/// PostgreSQL: a key another transaction stores while the group's statement waits for the key's
/// index entry was not in the statement's snapshot, so its guard let the batch through; the
/// key's unique index fails the statement, nothing is written, and the group is written again
/// with claims that find the key taken. The request is refused as a reuse and appends nothing.
#[tokio::test]
async fn a_key_stored_while_the_group_statement_waits_is_found_taken() {
    let Some((log, _db)) = support::open(true, "key stored meanwhile").await else { return };
    let AnyEventLog::Postgres(pg) = &log else { unreachable!() };
    let service = node(&log, None);
    let store = trialing_store(&service).await;
    let mut other = pg.pool().begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO idempotent_answers (store_id, key, request_hash, status, body, created_at)
         VALUES ($1, 'k', 'another body', 200, '{}', now())",
    )
    .bind(store.to_string())
    .execute(&mut *other)
    .await
    .expect("the other transaction's answer");
    let consume = Command::Consume {
        action: planledger_domain::ActionName::parse("create_article").unwrap(),
        amount: planledger_domain::Amount::ONE,
        consumption_id: Uuid::now_v7(),
    };
    let sent = tokio::spawn({
        let service = service.clone();
        async move { service.execute(store, consume, meta("mine", Some(("k", "my body")))).await }
    });
    // Long enough for the statement to be waiting on the key.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .fetch_one(pg.pool())
    .await
    .expect("waiting statements");
    assert_eq!(waiting, 1, "the group's statement waits for the other transaction's key");
    other.commit().await.expect("commit");
    let answer = sent.await.expect("joined");
    assert_eq!(answer, Err(ServiceError::KeyReused));
    assert_eq!(version_of(&log, store).await, 2, "nothing appended");
}
