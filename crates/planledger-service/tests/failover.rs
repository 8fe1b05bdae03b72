//! The command path when the database goes back in time: a failover to a standby that had not
//! received the last commits (asynchronous replication) leaves the log behind what a store's
//! worker holds. The worker must notice, read the stream again and decide anew, never answer
//! 409 until a restart. The rewind is made here by deleting the stream's last events (the
//! log's triggers set aside for it), as the promoted standby would not have them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use planledger_domain::{ActionName, Amount, Command, StoreId};
use planledger_service::{CommandMeta, CommandService, ServiceConfig, TestClock};
use planledger_store::{AnyEventLog, EventLog, StreamId};
use uuid::Uuid;

mod support;

fn meta() -> CommandMeta {
    CommandMeta {
        correlation_id: "failover".into(),
        actor: "tester".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    }
}

fn consume() -> Command {
    Command::Consume {
        action: ActionName::parse("update_product").unwrap(),
        amount: Amount::ONE,
        consumption_id: Uuid::new_v4(),
    }
}

async fn version_of(log: &AnyEventLog, store: StoreId) -> i64 {
    log.stream_version(&StreamId::parse(store.stream_name()).unwrap()).await.unwrap()
}

/// The log as a standby that missed the stream's events after `keep` has it.
async fn rewind(db: &support::Db, store: StoreId, keep: i64) {
    let stream = store.stream_name();
    match db {
        support::Db::Sqlite(lite) => {
            let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
            sqlx::query("DROP TRIGGER ledger_events_no_delete").execute(&pool).await.unwrap();
            sqlx::query("DELETE FROM ledger_events WHERE stream_id = ? AND version > ?")
                .bind(&stream)
                .bind(keep)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "UPDATE ledger_streams SET version = ?1,
                     head = (SELECT hash FROM ledger_events WHERE stream_id = ?2 AND version = ?1) WHERE stream_id = ?2",
            )
                .bind(keep)
                .bind(&stream)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("UPDATE tenant_state SET version = ? WHERE store_id = ?")
                .bind(keep)
                .bind(store.to_string())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        support::Db::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_or_delete")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("DELETE FROM ledger_events WHERE stream_id = $1 AND version > $2")
                .bind(&stream)
                .bind(keep)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_no_update_or_delete")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(
                "UPDATE ledger_streams SET version = $2,
                     head = (SELECT hash FROM ledger_events WHERE stream_id = $1 AND version = $2) WHERE stream_id = $1",
            )
                .bind(&stream)
                .bind(keep)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("UPDATE tenant_state SET version = $2 WHERE store_id = $1")
                .bind(store.to_string())
                .bind(keep)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            pool.close().await;
        }
    }
}

async fn a_worker_ahead_of_a_rewound_log_reads_the_stream_again(postgres: bool) {
    let test = "a_worker_ahead_of_a_rewound_log_reads_the_stream_again";
    let Some((log, db)) = support::open(postgres, test).await else { return };
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap()));
    let service: CommandService = support::node_with(&log, clock, ServiceConfig::default());
    let store = StoreId::new(Uuid::new_v4());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    assert!(support::accepted(&service.execute(store, register, meta()).await));
    let trial = Command::StartTrial { plan_id: None, days: None, force_reset: None };
    assert!(support::accepted(&service.execute(store, trial, meta()).await));
    for _ in 0..3 {
        assert!(support::accepted(&service.execute(store, consume(), meta()).await));
    }
    assert_eq!(version_of(&log, store).await, 5, "the worker holds version 5");

    rewind(&db, store, 3).await;
    assert_eq!(version_of(&log, store).await, 3, "the log went back to version 3");

    let answer = service.execute(store, consume(), meta()).await;
    assert!(support::accepted(&answer), "decided again on the log's state, not refused 409");
    assert_eq!(version_of(&log, store).await, 4, "appended after what the log has");
    assert_eq!(service.metrics().stream_rewinds.load(Ordering::Relaxed), 1, "the rewind is counted");
    let events = log.read_stream(&StreamId::parse(store.stream_name()).unwrap(), 1, 10).await.unwrap();
    let versions: Vec<i64> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3, 4], "no gap, nothing from the lost commits");
    assert!(support::accepted(&service.execute(store, consume(), meta()).await), "and it goes on");
}

planledger_testkit::on_both_backends!(a_worker_ahead_of_a_rewound_log_reads_the_stream_again);
