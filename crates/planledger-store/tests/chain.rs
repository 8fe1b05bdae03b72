//! The hash chain and signed digests on both backends: every append chains its events, a
//! wrong head is a conflict, `verify` names what was changed by hand (a byte, a deleted event,
//! two events swapped, a chain rewritten whole), and a log written before the chain is hashed
//! by the migration that brings it.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use planledger_chain::SigningKey;
use planledger_store::audit::{check_digest, FindingKind, VerifyReport};
use planledger_store::{
    AnyEventLog, Chain, EventLog, NewEvent, Rechain, StoreError, StreamAppend, StreamAppendOutcome, StreamId, GENESIS,
};
use serde_json::json;

fn stream(name: &str) -> StreamId {
    StreamId::parse(format!("store-{name}")).expect("valid stream id")
}

fn event(kind: &str, note: &str) -> NewEvent {
    NewEvent::new(
        kind,
        1,
        json!({"note": note}),
        "corr-1",
        "tester",
        "fp-test",
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
    )
}

async fn sqlite() -> (AnyEventLog, planledger_testkit::SqliteTestDatabase) {
    let db = planledger_testkit::SqliteTestDatabase::create();
    let log = planledger_store::SqliteEventLog::connect(&db.url, 4, Duration::from_secs(5)).await.expect("open sqlite");
    log.migrate().await.expect("migrate");
    (AnyEventLog::Sqlite(log), db)
}

async fn postgres(test: &str) -> Option<(AnyEventLog, planledger_testkit::PgTestDatabase)> {
    let db = planledger_testkit::PgTestDatabase::create(test).await?;
    let log = planledger_store::PgEventLog::connect(&db.url, 8, Duration::from_secs(10), Duration::from_secs(10))
        .await
        .expect("connect postgres");
    log.migrate().await.expect("migrate");
    Some((AnyEventLog::Postgres(log), db))
}

/// Runs `sql` as someone with the database's password would: past the append-only triggers.
async fn by_hand(log: &AnyEventLog, sql: &[&str]) {
    match log {
        AnyEventLog::Postgres(pg) => {
            let mut tx = pg.pool().begin().await.unwrap();
            sqlx::query("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_or_delete")
                .execute(&mut *tx)
                .await
                .unwrap();
            for statement in sql {
                sqlx::query(statement).execute(&mut *tx).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            sqlx::query("ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_no_update_or_delete")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        AnyEventLog::Sqlite(sqlite) => {
            let mut tx = sqlite.writer().begin().await.unwrap();
            sqlx::query("DROP TRIGGER IF EXISTS ledger_events_no_update").execute(&mut *tx).await.unwrap();
            sqlx::query("DROP TRIGGER IF EXISTS ledger_events_no_delete").execute(&mut *tx).await.unwrap();
            for statement in sql {
                sqlx::query(statement).execute(&mut *tx).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            tx.commit().await.unwrap();
        }
    }
}

/// Three stores of four events each.
async fn three_stores(log: &AnyEventLog) {
    for name in ["a", "b", "c"] {
        log.append(&stream(name), 0, &[event("Registered", "one"), event("TrialStarted", "two")]).await.unwrap();
        log.append(&stream(name), 2, &[event("Consumed", "three")]).await.unwrap();
        log.append(&stream(name), 3, &[event("Consumed", "four")]).await.unwrap();
    }
}

fn only_finding(report: &VerifyReport) -> (FindingKind, String, i64) {
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let finding = &report.findings[0];
    (finding.kind, finding.stream.as_ref().unwrap().as_str().to_owned(), finding.version.unwrap())
}

async fn every_append_chains_its_events(log: AnyEventLog) {
    three_stores(&log).await;
    let parts = vec![
        StreamAppend::new(stream("a"), 4, vec![event("Consumed", "five"), event("Consumed", "six")]),
        StreamAppend::new(stream("d"), 0, vec![event("Registered", "one")]),
    ];
    let mut tx = log.begin().await.unwrap();
    let outcomes = log.append_many_in(&mut tx, &parts).await.unwrap();
    log.commit(tx).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, StreamAppendOutcome::Appended { .. })), "{outcomes:?}");

    let events = log.read_stream(&stream("a"), 1, 100).await.unwrap();
    assert_eq!(events.len(), 6);
    let mut chain = Rechain::default();
    for event in &events {
        assert_eq!(chain.next(event), event.hash, "version {} is chained to the one before", event.version);
    }
    let (version, head) = log.stream_head(&stream("a")).await.unwrap();
    assert_eq!((version, head), (6, events[5].hash));
    // What a writer computes for its receipts is what the log stored.
    let again = planledger_store::chain_hashes(&stream("a"), 4, &events[3].hash, &parts[0].events);
    assert_eq!(again, vec![events[4].hash, events[5].hash]);
    assert_eq!(log.stream_head(&stream("nobody")).await.unwrap(), (0, GENESIS));

    let report = log.verify_chains(None, None).await.unwrap();
    assert_eq!((report.streams, report.events, report.findings.len()), (4, 15, 0), "{report:#?}");
}

async fn a_head_that_is_not_the_streams_is_a_conflict(log: AnyEventLog) {
    three_stores(&log).await;
    let mut wrong = StreamAppend::new(stream("a"), 4, vec![event("Consumed", "five")]);
    wrong.chain = Some(Chain::of(&wrong.stream, 4, [7; 32], &wrong.events));
    let mut right = StreamAppend::new(stream("b"), 4, vec![event("Consumed", "five")]);
    right.chain = Some(Chain::of(&right.stream, 4, log.stream_head(&stream("b")).await.unwrap().1, &right.events));
    let mut tx = log.begin().await.unwrap();
    let outcomes = log.append_many_in(&mut tx, &[wrong, right]).await.unwrap();
    log.commit(tx).await.unwrap();
    assert_eq!(outcomes[0], StreamAppendOutcome::Conflict);
    assert!(matches!(outcomes[1], StreamAppendOutcome::Appended { new_version: 5, .. }), "{outcomes:?}");
    assert_eq!(log.stream_head(&stream("a")).await.unwrap().0, 4, "nothing was written to a");
}

async fn verify_names_a_changed_byte(log: AnyEventLog) {
    three_stores(&log).await;
    by_hand(&log, &[r#"UPDATE ledger_events SET data = '{"note":"twO"}' WHERE stream_id = 'store-b' AND version = 2"#])
        .await;
    let report = log.verify_chains(None, None).await.unwrap();
    assert_eq!(only_finding(&report), (FindingKind::Altered, "store-b".into(), 2));
    let alone = log.verify_chains(Some(&stream("b")), None).await.unwrap();
    assert_eq!(only_finding(&alone), (FindingKind::Altered, "store-b".into(), 2));
    assert!(log.verify_chains(Some(&stream("a")), None).await.unwrap().findings.is_empty());
}

async fn verify_names_a_deleted_event(log: AnyEventLog) {
    three_stores(&log).await;
    by_hand(&log, &["DELETE FROM ledger_events WHERE stream_id = 'store-c' AND version = 3"]).await;
    assert_eq!(
        only_finding(&log.verify_chains(None, None).await.unwrap()),
        (FindingKind::Missing, "store-c".into(), 3)
    );
    // The last event, whose loss leaves no gap behind it.
    by_hand(&log, &["DELETE FROM ledger_events WHERE stream_id = 'store-a' AND version = 4"]).await;
    let report = log.verify_chains(Some(&stream("a")), None).await.unwrap();
    assert_eq!(only_finding(&report), (FindingKind::Missing, "store-a".into(), 4));
}

async fn verify_names_two_swapped_events(log: AnyEventLog) {
    three_stores(&log).await;
    by_hand(
        &log,
        &[
            "UPDATE ledger_events SET version = 1000 WHERE stream_id = 'store-a' AND version = 3",
            "UPDATE ledger_events SET version = 3 WHERE stream_id = 'store-a' AND version = 4",
            "UPDATE ledger_events SET version = 4 WHERE stream_id = 'store-a' AND version = 1000",
        ],
    )
    .await;
    assert_eq!(
        only_finding(&log.verify_chains(None, None).await.unwrap()),
        (FindingKind::Reordered, "store-a".into(), 3)
    );
}

/// Someone who can write the database can recompute the chain after a change; the signed
/// digest made before it cannot be recomputed without the key.
async fn a_digest_catches_a_chain_rewritten_whole(log: AnyEventLog) {
    three_stores(&log).await;
    let (key, _) = SigningKey::generate().unwrap();
    let digest = log.make_digest(&key, Utc::now()).await.unwrap();
    assert_eq!(digest.streams, 3);
    assert!(check_digest(&digest, &[key.public_key()]).is_empty());
    let stored = log.digest(Some(digest.digest_id)).await.unwrap().expect("stored");
    assert_eq!(stored, digest, "read back as made");
    assert_eq!(log.digest(None).await.unwrap().map(|d| d.digest_id), Some(digest.digest_id), "the latest");
    assert_eq!(log.digest(Some(digest.digest_id + 1)).await.unwrap(), None);

    // Change version 2 of store-b and give every event after it the hash that now follows.
    by_hand(&log, &[r#"UPDATE ledger_events SET data = '{"note":"TWO"}' WHERE stream_id = 'store-b' AND version = 2"#])
        .await;
    let mut chain = Rechain::default();
    let mut rewrites = Vec::new();
    for event in log.read_stream(&stream("b"), 1, 10).await.unwrap() {
        let hash = planledger_chain::to_hex(&chain.next(&event));
        rewrites.push(format!(
            "UPDATE ledger_events SET hash = {} WHERE stream_id = 'store-b' AND version = {}",
            bytes(&log, &hash),
            event.version
        ));
        rewrites.push(format!("UPDATE ledger_streams SET head = {} WHERE stream_id = 'store-b'", bytes(&log, &hash)));
    }
    let rewrites: Vec<&str> = rewrites.iter().map(String::as_str).collect();
    by_hand(&log, &rewrites).await;
    assert!(log.verify_chains(None, None).await.unwrap().findings.is_empty(), "the chain alone looks whole");
    let report = log.verify_chains(None, Some(&stored)).await.unwrap();
    assert_eq!(only_finding(&report), (FindingKind::DigestMismatch, "store-b".into(), 4));

    // A digest signed by another key is not trusted; one whose leaves were changed is caught.
    let (other, _) = SigningKey::generate().unwrap();
    assert_eq!(check_digest(&stored, &[other.public_key()])[0].kind, FindingKind::DigestInvalid);
    let mut forged = stored.clone();
    forged.heads[1].head = [0; 32];
    assert_eq!(check_digest(&forged, &[key.public_key()])[0].kind, FindingKind::DigestInvalid);
}

/// Nodes that make a digest at the same moment get one number each, in one order.
async fn digests_made_at_once_are_numbered_in_one_order(log: AnyEventLog) {
    three_stores(&log).await;
    let (key, _) = SigningKey::generate().unwrap();
    let made = futures_util::future::join_all((0..8).map(|_| log.make_digest(&key, Utc::now()))).await;
    let mut ids: Vec<i64> = made.into_iter().map(|d| d.expect("made").digest_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=8).collect::<Vec<_>>());
    let listed = log.digests(None, 100).await.unwrap();
    assert_eq!(listed.iter().map(|d| d.digest_id).collect::<Vec<_>>(), (1..=8).rev().collect::<Vec<_>>());
    assert!(listed.iter().all(|d| d.heads.is_empty()), "listed without their leaves");
    assert_eq!(log.digests(Some(3), 100).await.unwrap().iter().map(|d| d.digest_id).collect::<Vec<_>>(), vec![2, 1]);
    for id in 1..=8 {
        let digest = log.digest(Some(id)).await.unwrap().unwrap();
        assert!(check_digest(&digest, &[key.public_key()]).is_empty(), "digest {id}");
    }
}

fn bytes(log: &AnyEventLog, hex: &str) -> String {
    match log {
        AnyEventLog::Postgres(_) => format!("'\\x{hex}'::bytea"),
        AnyEventLog::Sqlite(_) => format!("X'{hex}'"),
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (log, _db) = super::sqlite().await;
                    super::$name(log).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((log, _db)) = super::postgres(stringify!($name)).await else { return };
                    super::$name(log).await;
                }
            )*
        }
    };
}

both!(
    every_append_chains_its_events,
    a_head_that_is_not_the_streams_is_a_conflict,
    verify_names_a_changed_byte,
    verify_names_a_deleted_event,
    verify_names_two_swapped_events,
    a_digest_catches_a_chain_rewritten_whole,
    digests_made_at_once_are_numbered_in_one_order,
);

/// A log written before the chain: the migrations up to it, events written as the binaries of
/// that time wrote them (no hash), then the rest of the migrations.
#[tokio::test]
async fn sqlite_a_log_written_before_the_chain_is_hashed_by_its_migration() {
    let db = planledger_testkit::SqliteTestDatabase::create();
    let log = planledger_store::SqliteEventLog::connect(&db.url, 2, Duration::from_secs(5)).await.unwrap();
    let before: Vec<_> = planledger_store::migrate::SQLITE.iter().take_while(|m| m.name != "event_hashes").collect();
    let mut tx = log.writer().begin().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE ledger_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    for migration in &before {
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO ledger_migrations VALUES (?, ?, ?, 'then')")
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for (name, version) in [("a", 1), ("a", 2), ("b", 1)] {
        sqlx::query(
            "INSERT INTO ledger_events (event_id, stream_id, version, event_type, schema_version, data, correlation_id,
                 causation_id, idempotency_key, actor, catalog_fingerprint, recorded_at_us)
             VALUES (?, ?, ?, 'Old', 1, '{\"n\":1}', 'c', NULL, NULL, 'old-binary', 'fp', 1800000000000000)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(format!("store-{name}"))
        .bind(version)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("INSERT INTO ledger_streams (stream_id, version) VALUES (?, ?) ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version")
            .bind(format!("store-{name}"))
            .bind(version)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let report = log.migrate().await.unwrap();
    assert_eq!(report.applied, vec![before.len() as i64 + 1, before.len() as i64 + 2]);
    let log = AnyEventLog::Sqlite(log);
    hashed_as_if_appended(&log).await;
}

#[tokio::test]
async fn postgres_a_log_written_before_the_chain_is_hashed_by_its_migration() {
    let Some(db) = planledger_testkit::PgTestDatabase::create("a_log_written_before_the_chain").await else { return };
    let log = planledger_store::PgEventLog::connect(&db.url, 4, Duration::from_secs(10), Duration::from_secs(10))
        .await
        .unwrap();
    let before: Vec<_> = planledger_store::migrate::POSTGRES.iter().take_while(|m| m.name != "event_hashes").collect();
    let mut tx = log.pool().begin().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE ledger_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    for migration in &before {
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO ledger_migrations VALUES ($1, $2, $3, 'then')")
            .bind(migration.version)
            .bind(migration.name)
            .bind(migration.checksum())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for (name, version) in [("a", 1), ("a", 2), ("b", 1)] {
        sqlx::query(
            "INSERT INTO ledger_events (event_id, stream_id, version, event_type, schema_version, data, correlation_id,
                 causation_id, idempotency_key, actor, catalog_fingerprint, recorded_at)
             VALUES ($1, $2, $3, 'Old', 1, '{\"n\":1}', 'c', NULL, NULL, 'old-binary', 'fp', '2027-01-15T08:00:00Z')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(format!("store-{name}"))
        .bind(version)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO ledger_streams (stream_id, version) VALUES ($1, $2)
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
        )
        .bind(format!("store-{name}"))
        .bind(version)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let report = log.migrate().await.unwrap();
    assert_eq!(report.applied, vec![before.len() as i64 + 1, before.len() as i64 + 2]);
    let log = AnyEventLog::Postgres(log);
    hashed_as_if_appended(&log).await;
    // From here on a writer that does not chain is refused.
    let old_writer = sqlx::query(
        "INSERT INTO ledger_events (event_id, stream_id, version, event_type, schema_version, data, correlation_id,
             actor, catalog_fingerprint, recorded_at) VALUES ($1, 'store-b', 2, 'Old', 1, '{}', 'c', 'old', 'fp', now())",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(match &log {
        AnyEventLog::Postgres(pg) => pg.pool(),
        AnyEventLog::Sqlite(_) => unreachable!(),
    })
    .await;
    assert!(old_writer.is_err(), "an event without a hash is refused");
}

async fn hashed_as_if_appended(log: &AnyEventLog) {
    let report = log.verify_chains(None, None).await.unwrap();
    assert_eq!((report.streams, report.events, report.findings.len()), (2, 3, 0), "{report:#?}");
    let events = log.read_stream(&stream("a"), 1, 10).await.unwrap();
    assert_ne!(events[1].hash, GENESIS);
    assert_eq!(log.stream_head(&stream("a")).await.unwrap(), (2, events[1].hash));
    // The next append chains on.
    match log.append(&stream("a"), 2, &[event("New", "after")]).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => panic!("the migrated head is the stream's"),
        Err(e) => panic!("{e}"),
    }
    assert!(log.verify_chains(None, None).await.unwrap().findings.is_empty());
}
