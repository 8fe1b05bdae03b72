//! Retention: stored answers, the ledger's own keys and the command journal are deleted once
//! older than their period (as of the service's clock), events never; a retry whose answer
//! expired is a new command; expiring the ledger's keys changes no answer. Both backends.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use planledger_domain::{ActionName, Amount, Command, Event, StoreId};
use planledger_service::{
    Answer, CommandMeta, IdempotencyRequest, Outcome, Refusal, Retention, RetentionReport, ServiceConfig, TestClock,
};
use planledger_store::AnyEventLog;
use uuid::Uuid;

mod support;

fn meta(key: Option<&str>) -> CommandMeta {
    CommandMeta {
        correlation_id: "retention".into(),
        actor: "tester".into(),
        idempotency: key.map(|key| IdempotencyRequest { key: key.into(), request_hash: "same body".into() }),
        expected_version: None,
        causation_id: None,
    }
}

fn consume(id: Uuid) -> Command {
    Command::Consume { action: ActionName::parse("create_article").unwrap(), amount: Amount::ONE, consumption_id: id }
}

fn used(answer: &Answer) -> u64 {
    match answer {
        Answer::Decided(Outcome::Accepted(accepted)) => accepted
            .facts
            .iter()
            .find_map(|fact| match fact {
                Event::QuotaConsumed { used_after, .. } => Some(*used_after),
                _ => None,
            })
            .expect("a consumption"),
        other => panic!("not accepted: {other:?}"),
    }
}

async fn count(log: &AnyEventLog, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    match log {
        AnyEventLog::Postgres(pg) => sqlx::query_scalar(&sql).fetch_one(pg.pool()).await.unwrap(),
        AnyEventLog::Sqlite(lite) => sqlx::query_scalar(&sql).fetch_one(lite.readers()).await.unwrap(),
    }
}

/// Waits until the journal writer has written at least `n` entries.
async fn journal_has(log: &AnyEventLog, n: i64) {
    for _ in 0..200 {
        if count(log, "command_journal").await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the journal never reached {n} entries");
}

async fn expired_bookkeeping_goes_and_the_log_stays(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "expired_bookkeeping_goes_and_the_log_stays").await else {
        return;
    };
    let start = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let clock = Arc::new(TestClock::new(start));
    let config = ServiceConfig {
        retention: Retention {
            answers: Some(Duration::from_secs(7 * 86_400)),
            keys: Some(Duration::from_secs(7 * 86_400)),
            journal: Some(Duration::from_secs(90 * 86_400)),
            stripe_events: None,
        },
        ..ServiceConfig::default()
    };
    let service = support::node_with(&log, clock.clone(), config);
    let store = StoreId::new(Uuid::new_v4());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    service.execute(store, register, meta(None)).await.unwrap();
    let trial = Command::StartTrial {
        plan_id: None,
        days: Some(planledger_domain::Days::parse(60).unwrap()),
        force_reset: None,
    };
    service.execute(store, trial, meta(None)).await.unwrap();
    // One keyed consumption (a stored answer), one refunded (the ledger's key `refund:...`).
    let first = service.execute(store, consume(Uuid::now_v7()), meta(Some("order-1"))).await.unwrap();
    assert_eq!(used(&first), 1);
    let refunded = Uuid::now_v7();
    service.execute(store, consume(refunded), meta(None)).await.unwrap();
    let refund = service.refund(store, refunded, meta(None)).await.unwrap();
    assert!(matches!(refund, Answer::Decided(Outcome::Accepted(_))), "{refund:?}");
    journal_has(&log, 5).await;
    let events = log.event_count().await.unwrap();
    assert_eq!((count(&log, "idempotent_answers").await, count(&log, "ledger_idempotency_keys").await), (1, 1));

    // Six days on, everything is within its period: nothing goes, the retry is the first answer.
    clock.set(start + TimeDelta::days(6));
    assert_eq!(service.expire().await.unwrap(), RetentionReport::default());
    let retry = service.execute(store, consume(Uuid::now_v7()), meta(Some("order-1"))).await.unwrap();
    assert!(matches!(retry, Answer::Replayed(_)), "a retry within the period is the first answer: {retry:?}");

    // Eight days on, the answer and the key have expired; the journal has not.
    clock.set(start + TimeDelta::days(8));
    let report = service.expire().await.unwrap();
    assert_eq!((report.answers, report.keys, report.journal), (1, 1, 0));
    assert_eq!((count(&log, "idempotent_answers").await, count(&log, "ledger_idempotency_keys").await), (0, 0));
    assert_eq!(log.event_count().await.unwrap(), events, "events are never deleted");
    assert_eq!(service.metrics().expired_answers.load(std::sync::atomic::Ordering::Relaxed), 1);

    // The refund-once rule is decide's: with the log's key gone, a second refund is still refused.
    let again = service.refund(store, refunded, meta(None)).await.unwrap();
    assert!(
        matches!(&again, Answer::Decided(Outcome::Refused(Refusal::Rule(e))) if e.code() == "already_refunded"),
        "{again:?}"
    );
    // The key is free again: a request with it is a new command, decided now (this worker still
    // remembers the first answer, and must not replay it either).
    let after_expiry = service.execute(store, consume(Uuid::now_v7()), meta(Some("order-1"))).await.unwrap();
    assert_eq!(used(&after_expiry), 2, "decided as a new command: {after_expiry:?}");
    assert_eq!(count(&log, "idempotent_answers").await, 1, "its answer is stored afresh");

    // Ninety-one days after the start, the journal of the first days goes; the rest stays.
    // Eight commands were journalled: five on day 0, one on day 6, two on day 8.
    journal_has(&log, 8).await;
    let written = count(&log, "command_journal").await;
    clock.set(start + TimeDelta::days(91));
    let report = service.expire().await.unwrap();
    assert_eq!((written, report.journal), (8, 5), "the entries of day 0 are older than 90 days");
    assert_eq!(count(&log, "command_journal").await, 3, "those of days 6 and 8 are 85 and 83 days old: kept");
    assert_eq!(log.event_count().await.unwrap(), events + 1);
    assert_eq!(service.metrics().retention_runs.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[tokio::test]
async fn expired_bookkeeping_goes_and_the_log_stays_on_sqlite() {
    expired_bookkeeping_goes_and_the_log_stays(false).await;
}

#[tokio::test]
async fn expired_bookkeeping_goes_and_the_log_stays_on_postgres() {
    expired_bookkeeping_goes_and_the_log_stays(true).await;
}

/// A backlog bigger than a batch goes in batches, and one run stops at its share.
async fn a_backlog_goes_in_batches(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "a_backlog_goes_in_batches").await else { return };
    let old = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let rows = 2_500_i64;
    let sql = match log {
        AnyEventLog::Postgres(_) => {
            "INSERT INTO command_journal (store_id, kind, outcome, correlation_id, actor, duration_us, recorded_at)
             SELECT 's', 'consume', 'accepted', 'c', 'a', 1, $1::timestamptz FROM generate_series(1, $2)"
        }
        AnyEventLog::Sqlite(_) => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
             INSERT INTO command_journal (store_id, kind, outcome, correlation_id, actor, duration_us, recorded_at_us)
             SELECT 's', 'consume', 'accepted', 'c', 'a', 1, ?1 FROM n"
        }
    };
    match &log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query(sql).bind(old).bind(rows).execute(pg.pool()).await.unwrap();
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::query(sql).bind(old.timestamp_micros()).bind(rows).execute(lite.writer()).await.unwrap();
        }
    }
    let clock = Arc::new(TestClock::new(old + TimeDelta::days(100)));
    let service = support::node_with(&log, clock, ServiceConfig::default());
    // Stripe's events: settled ones go, parked and failed ones wait for an operator.
    for (id, status) in
        [("evt_applied", "applied"), ("evt_stale", "stale"), ("evt_parked", "parked"), ("evt_failed", "failed")]
    {
        let sql = match log {
            AnyEventLog::Postgres(_) => "INSERT INTO stripe_events (event_id, event_type, created_at, livemode, payload, received_at, status)
                 VALUES ($1, 'invoice.paid', $3, false, '{}', $3, $2)",
            AnyEventLog::Sqlite(_) => "INSERT INTO stripe_events (event_id, event_type, created_at_us, livemode, payload, received_at_us, status)
                 VALUES (?1, 'invoice.paid', ?3, 0, '{}', ?3, ?2)",
        };
        match &log {
            AnyEventLog::Postgres(pg) => {
                sqlx::query(sql).bind(id).bind(status).bind(old).execute(pg.pool()).await.unwrap();
            }
            AnyEventLog::Sqlite(lite) => {
                sqlx::query(sql)
                    .bind(id)
                    .bind(status)
                    .bind(old.timestamp_micros())
                    .execute(lite.writer())
                    .await
                    .unwrap();
            }
        }
    }
    let report = service.expire().await.unwrap();
    assert_eq!(report.journal, rows as u64);
    assert_eq!(count(&log, "command_journal").await, 0, "2,500 rows go in one run, in batches of 1,000");
    assert_eq!(report.stripe_events, 2);
    assert_eq!(count(&log, "stripe_events").await, 2, "the parked and the failed event stay");
}

#[tokio::test]
async fn a_backlog_goes_in_batches_on_sqlite() {
    a_backlog_goes_in_batches(false).await;
}

#[tokio::test]
async fn a_backlog_goes_in_batches_on_postgres() {
    a_backlog_goes_in_batches(true).await;
}
