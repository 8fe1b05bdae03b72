//! The event log's contract, written once and run against both backends.
//!
//! Each `suite::*` function takes a freshly migrated log; the `backends!` macro at the bottom
//! runs every one of them on SQLite and on PostgreSQL (a fresh database per test).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use planledger_store::{AppendOutcome, Checkpoint, EventLog, NewEvent, Snapshot, StoreError, StreamId};
use serde_json::json;

fn stream(name: &str) -> StreamId {
    StreamId::parse(format!("store-{name}")).expect("valid stream id")
}

fn event(kind: &str, data: serde_json::Value) -> NewEvent {
    NewEvent::new(
        kind,
        1,
        data,
        "corr-1",
        "tester",
        "fp-test",
        Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap() + chrono::Duration::nanoseconds(123_456_789),
    )
}

fn appended(outcome: AppendOutcome) -> Vec<planledger_store::RecordedEvent> {
    match outcome {
        AppendOutcome::Appended { events, .. } => events,
        AppendOutcome::Duplicate { .. } => panic!("expected an append, got a duplicate"),
    }
}

/// Reads the global log from `after` until `count` events have been delivered.
///
/// On PostgreSQL the reader stops before the oldest running transaction of the whole server
/// (other tests' included), so a page may be short or empty for a moment: an empty page means
/// "nothing final yet", not "end of log". Followers poll, and so does this.
async fn read_all_until<L: EventLog>(
    log: &L,
    mut after: Checkpoint,
    page: i64,
    count: usize,
) -> Vec<planledger_store::RecordedEvent> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < count {
        let events = log.read_all(after, page).await.expect("read_all");
        match events.last() {
            Some(last) => after = last.checkpoint,
            None => {
                assert!(std::time::Instant::now() < deadline, "read_all delivered {} of {count} events", seen.len());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        seen.extend(events);
    }
    seen
}

mod suite {
    use super::*;

    pub async fn append_and_read_round_trip<L: EventLog>(log: L) {
        let s = stream("round-trip");
        let batch = vec![
            event("StoreRegistered", json!({"name": "Shop"})).with_causation("cmd-1"),
            event("TrialStarted", json!({"planId": "free_trial", "days": 14})).with_client_key("k-1"),
            event("QuotaConsumed", json!({"action": "create_article", "amount": 1})),
        ];
        let outcome = log.append(&s, 0, &batch).await.expect("append");
        let AppendOutcome::Appended { new_version, events } = outcome else {
            panic!("expected an append");
        };
        assert_eq!(new_version, 3);
        assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(events.windows(2).all(|w| w[0].global_position < w[1].global_position));
        let read = log.read_stream(&s, 1, 100).await.expect("read_stream");
        assert_eq!(read, events, "what is read back is exactly what append reported");
        assert_eq!(read[0].causation_id.as_deref(), Some("cmd-1"));
        assert_eq!(read[1].idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(read[1].data, json!({"planId": "free_trial", "days": 14}));
        assert_eq!(read[0].recorded_at.timestamp_subsec_micros(), 123_456, "microsecond precision");
        assert_eq!(read[0].event_id.get_version_num(), 7, "event ids are UUID v7");
        assert_eq!(log.stream_version(&s).await.expect("version"), 3);
        assert_eq!(log.read_stream(&s, 3, 100).await.expect("tail").len(), 1);
        assert_eq!(log.read_stream(&s, 1, 2).await.expect("limited").len(), 2);
        assert_eq!(log.read_event(events[1].event_id).await.expect("read_event").as_ref(), Some(&events[1]));
        assert_eq!(log.read_event(uuid::Uuid::now_v7()).await.expect("read_event"), None);
        let all = read_all_until(&log, Checkpoint::ORIGIN, 100, 3).await;
        assert_eq!(all, events);
    }

    pub async fn a_stale_version_is_a_conflict_carrying_the_actual_version<L: EventLog>(log: L) {
        let s = stream("conflict");
        log.append(&s, 0, &[event("A", json!({})), event("B", json!({}))]).await.expect("first append");
        for stale in [0, 1, 3, 7] {
            match log.append(&s, stale, &[event("C", json!({}))]).await {
                Err(StoreError::Conflict { expected, actual, .. }) => {
                    assert_eq!((expected, actual), (stale, 2));
                }
                other => panic!("expected a conflict at {stale}, got {other:?}"),
            }
        }
        match log.append(&stream("never-written"), 4, &[event("A", json!({}))]).await {
            Err(StoreError::Conflict { actual: 0, .. }) => {}
            other => panic!("a new stream is at version 0, got {other:?}"),
        }
        assert_eq!(log.read_stream(&s, 1, 100).await.expect("read").len(), 2, "a conflict writes nothing");
        assert_eq!(log.stream_version(&stream("never-written")).await.expect("version"), 0);
        assert!(matches!(log.append(&s, 2, &[]).await, Err(StoreError::EmptyAppend)));
    }

    pub async fn racing_appenders_write_every_version_exactly_once<L: EventLog + Clone + 'static>(log: L) {
        let s = stream("race");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(32));
        let mut tasks = Vec::new();
        for task in 0..32 {
            let (log, s, barrier) = (log.clone(), s.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let mine = event("Raced", json!({ "task": task }));
                barrier.wait().await;
                let mut conflicts = Vec::new();
                let mut expected = 0;
                loop {
                    match log.append(&s, expected, std::slice::from_ref(&mine)).await {
                        Ok(outcome) => return (mine.event_id, appended(outcome)[0].version, conflicts),
                        Err(StoreError::Conflict { expected: e, actual, .. }) => {
                            assert!(actual > e, "a loser learns of a newer version");
                            conflicts.push((e, actual));
                            expected = actual;
                        }
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
            }));
        }
        let mut versions = Vec::new();
        let mut ids = HashSet::new();
        let mut losses = 0;
        for task in tasks {
            let (id, version, conflicts) = task.await.expect("task");
            versions.push(version);
            ids.insert(id);
            losses += conflicts.len();
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=32).collect::<Vec<_>>(), "each version won by exactly one writer");
        assert!(losses >= 31, "every writer but the first lost at least once ({losses} conflicts)");
        let stored = log.read_stream(&s, 1, 100).await.expect("read");
        assert_eq!(stored.iter().map(|e| e.version).collect::<Vec<_>>(), (1..=32).collect::<Vec<_>>());
        assert_eq!(stored.iter().map(|e| e.event_id).collect::<HashSet<_>>(), ids, "no event lost or doubled");
    }

    pub async fn an_idempotent_retry_returns_the_original_events<L: EventLog>(log: L) {
        let s = stream("idempotent");
        let first = vec![
            event("TrialExpired", json!({"n": 1})).with_system_key("expiry-1"),
            event("QuotaRefunded", json!({"n": 2})).with_system_key("refund:c1"),
        ];
        let original = appended(log.append(&s, 0, &first).await.expect("first"));
        let original = original[1..].to_vec();
        // A retry built anew (fresh event ids), at the stream's current version and at a stale one.
        let retry = vec![event("QuotaRefunded", json!({"n": 2})).with_system_key("refund:c1")];
        for expected in [2, 0] {
            match log.append(&s, expected, &retry).await.expect("retry") {
                AppendOutcome::Duplicate { events } => assert_eq!(events, original),
                other => panic!("expected a duplicate, got {other:?}"),
            }
        }
        assert_eq!(log.stream_version(&s).await.expect("version"), 2, "a retry appends nothing");
        // A batch holding a used key among new ones is still a duplicate: nothing is written.
        let mixed = vec![
            event("X", json!({})).with_system_key("refund:c2"),
            event("Y", json!({})).with_system_key("refund:c1"),
        ];
        assert!(matches!(log.append(&s, 2, &mixed).await, Ok(AppendOutcome::Duplicate { .. })));
        let other =
            appended(log.append(&s, 2, &[event("X", json!({})).with_system_key("refund:c2")]).await.expect("new key"));
        assert_eq!(other[0].version, 3);
        // The same key on another stream is another fact.
        let elsewhere = log.append(&stream("idempotent-2"), 0, &retry).await.expect("other stream");
        assert!(matches!(elsewhere, AppendOutcome::Appended { new_version: 1, .. }));
    }

    pub async fn an_append_that_carries_a_key_twice_writes_nothing<L: EventLog>(log: L) {
        let s = stream("repeated");
        // Two refunds of one consumption in one append: one decision taken twice.
        let twice = vec![
            event("QuotaRefunded", json!({"n": 1})).with_system_key("refund:c1"),
            event("QuotaRefunded", json!({"n": 2})).with_system_key("refund:c1"),
        ];
        let error = log.append(&s, 0, &twice).await.expect_err("a repeated key is refused");
        assert!(matches!(error, StoreError::RepeatedKey { ref key, .. } if key == "system:refund:c1"), "{error}");
        assert_eq!(log.stream_version(&s).await.expect("version"), 0, "nothing was written");
    }

    pub async fn client_keys_are_labels_the_log_does_not_check<L: EventLog>(log: L) {
        let s = stream("labels");
        // The command service enforces a client's key where it stores the key's answer; the log
        // only shows it. The same client key twice is two appends here.
        for expected in [0, 1] {
            let outcome = log.append(&s, expected, &[event("QuotaConsumed", json!({})).with_client_key("req-1")]).await;
            assert!(matches!(outcome, Ok(AppendOutcome::Appended { .. })), "{outcome:?}");
        }
        // A client sends, as its Idempotency-Key, the very key the ledger will use at expiry:
        // it takes nothing from the ledger.
        let system_key = "trial-expiry:store-1:2026-03-16T10:00:00.000000Z";
        appended(
            log.append(&s, 2, &[event("QuotaConsumed", json!({})).with_client_key(system_key)]).await.expect("client"),
        );
        let expiry = log.append(&s, 3, &[event("TrialExpired", json!({})).with_system_key(system_key)]).await;
        assert!(matches!(expiry, Ok(AppendOutcome::Appended { new_version: 4, .. })), "{expiry:?}");
        let read = log.read_stream(&s, 1, 10).await.expect("read");
        assert_eq!(read[0].idempotency_key.as_deref(), Some("req-1"), "the envelope shows the key as given");
        assert_eq!(read[3].idempotency_key.as_deref(), Some(system_key));
    }

    pub async fn unicode_and_60_kib_payloads_round_trip<L: EventLog>(log: L) {
        let s = StreamId::parse("store-ünïcödé-店舗-🏪").expect("stream id");
        let mut big = String::new();
        for c in "ä漢字🎉\u{202e}'\";--\\ ".chars().cycle() {
            if big.len() + c.len_utf8() > 60 * 1024 {
                break;
            }
            big.push(c);
        }
        assert!(big.len() > 60 * 1024 - 4, "payload is 60 KiB ({} bytes)", big.len());
        let mut e = event(
            "StoreRegistered",
            json!({"name": "Café «Zoë» 🍰", "notes": big, "nested": {"ключ": ["значение", 1.5, null, true]}}),
        );
        e.correlation_id = "corr-🧭-ид".to_owned();
        e.actor = "opérateur".to_owned();
        e.idempotency_key = Some(planledger_store::IdempotencyKey::client("clé-🔑"));
        let written = appended(log.append(&s, 0, &[e]).await.expect("append"));
        let read = log.read_stream(&s, 1, 10).await.expect("read");
        assert_eq!(read, written);
        assert_eq!(read[0].data["notes"].as_str().map(str::len), Some(big.len()));
    }

    pub async fn read_all_pages_through_every_stream_in_commit_order<L: EventLog>(log: L) {
        let mut expected_ids = Vec::new();
        for round in 0..3 {
            for name in ["a", "b", "c"] {
                let s = stream(name);
                let version = log.stream_version(&s).await.expect("version");
                let written =
                    appended(log.append(&s, version, &[event("E", json!({"round": round}))]).await.expect("append"));
                expected_ids.push(written[0].event_id);
            }
        }
        let paged = read_all_until(&log, Checkpoint::ORIGIN, 2, expected_ids.len()).await;
        let seen: Vec<_> = paged.iter().map(|e| e.event_id).collect();
        assert_eq!(seen, expected_ids, "pages cover the log once, in order");
        let last = paged.last().expect("events").checkpoint;
        assert!(log.read_all(last, 100).await.expect("past the end").is_empty(), "nothing is delivered twice");
        let mut per_stream: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for e in paged {
            per_stream.entry(e.stream_id.to_string()).or_default().push(e.version);
        }
        assert!(per_stream.values().all(|v| v == &vec![1, 2, 3]));
    }

    pub async fn read_by_stream_pages_each_stream_whole_and_in_order<L: EventLog>(log: L) {
        // Written interleaved, read back one stream after another.
        for round in 0..3 {
            for name in ["c", "a", "b"] {
                let s = stream(name);
                let version = log.stream_version(&s).await.expect("version");
                log.append(&s, version, &[event("E", json!({"round": round}))]).await.expect("append");
            }
        }
        let mut seen = Vec::new();
        let mut after: Option<(StreamId, i64)> = None;
        loop {
            let page = log.read_by_stream(after.as_ref().map(|(s, v)| (s, *v)), 2).await.expect("read_by_stream");
            let Some(last) = page.last() else { break };
            after = Some((last.stream_id.clone(), last.version));
            seen.extend(page.iter().map(|e| (e.stream_id.to_string(), e.version, e.data["round"].as_i64())));
        }
        let expected: Vec<_> = ["a", "b", "c"]
            .iter()
            .flat_map(|name| (1..=3).map(move |v| (format!("store-{name}"), v, Some(v - 1))))
            .collect();
        assert_eq!(seen, expected, "every event once, each stream whole, streams by id");
    }

    pub async fn checkpoints_compare_and_set<L: EventLog>(log: L) {
        let c1 = Checkpoint { transaction_id: 0, position: 10 };
        let c2 = Checkpoint { transaction_id: 0, position: 20 };
        assert_eq!(log.load_checkpoint("audit").await.expect("load"), Checkpoint::ORIGIN);

        let mut tx = log.begin().await.expect("begin");
        log.compare_and_set_checkpoint_in(&mut tx, "audit", Checkpoint::ORIGIN, c1).await.expect("first set");
        log.commit(tx).await.expect("commit");

        let mut tx = log.begin().await.expect("begin");
        match log.compare_and_set_checkpoint_in(&mut tx, "audit", Checkpoint::ORIGIN, c2).await {
            Err(StoreError::CheckpointMoved { actual, .. }) => assert_eq!(actual, c1),
            other => panic!("a stale compare-and-set must fail, got {other:?}"),
        }
        drop(tx);
        assert_eq!(log.load_checkpoint("audit").await.expect("load"), c1);

        // In one transaction with other writes: rolled back together...
        let s = stream("checkpointed");
        let mut tx = log.begin().await.expect("begin");
        log.compare_and_set_checkpoint_in(&mut tx, "audit", c1, c2).await.expect("set");
        log.append_in(&mut tx, &s, 0, &[event("E", json!({}))]).await.expect("append in tx");
        drop(tx);
        assert_eq!(log.load_checkpoint("audit").await.expect("load"), c1, "rolled back with the transaction");
        assert_eq!(log.stream_version(&s).await.expect("version"), 0);
        // ...and committed together.
        let mut tx = log.begin().await.expect("begin");
        log.compare_and_set_checkpoint_in(&mut tx, "audit", c1, c2).await.expect("set");
        log.append_in(&mut tx, &s, 0, &[event("E", json!({}))]).await.expect("append in tx");
        log.commit(tx).await.expect("commit");
        assert_eq!(log.load_checkpoint("audit").await.expect("load"), c2);
        assert_eq!(log.stream_version(&s).await.expect("version"), 1);
        assert_eq!(log.load_checkpoint("other").await.expect("load"), Checkpoint::ORIGIN, "per consumer");
    }

    pub async fn snapshots_keep_the_newest<L: EventLog>(log: L) {
        let s = stream("snap");
        assert_eq!(log.load_snapshot(&s).await.expect("load"), None);
        let at = |version: i64| Snapshot {
            stream_id: s.clone(),
            version,
            state: json!({"version": version, "plan": "starter"}),
            fold_fingerprint: "2-aaaa".to_owned(),
        };
        log.save_snapshot(&at(5)).await.expect("save");
        log.save_snapshot(&at(3)).await.expect("save older");
        assert_eq!(log.load_snapshot(&s).await.expect("load"), Some(at(5)), "an older snapshot is ignored");
        log.save_snapshot(&at(7)).await.expect("save newer");
        assert_eq!(log.load_snapshot(&s).await.expect("load"), Some(at(7)));
        // A new fold's snapshot replaces the old fold's, even at a lower version: the old one
        // will never be read again.
        let refolded = Snapshot { fold_fingerprint: "2-bbbb".to_owned(), ..at(4) };
        log.save_snapshot(&refolded).await.expect("save under another fold");
        assert_eq!(log.load_snapshot(&s).await.expect("load"), Some(refolded));
    }
}

fn sqlite_versions() -> Vec<i64> {
    planledger_store::migrate::SQLITE.iter().map(|m| m.version).collect()
}

/// Opens a migrated log on a fresh SQLite file.
async fn sqlite_log() -> (planledger_store::SqliteEventLog, planledger_testkit::SqliteTestDatabase) {
    let db = planledger_testkit::SqliteTestDatabase::create();
    let log = planledger_store::SqliteEventLog::connect(&db.url, 4, Duration::from_secs(5)).await.expect("open sqlite");
    let report = log.migrate().await.expect("migrate");
    assert_eq!(report.applied, sqlite_versions());
    (log, db)
}

/// Opens a migrated log on a fresh PostgreSQL database, or `None` if skipped.
async fn pg_log(test: &str) -> Option<(planledger_store::PgEventLog, planledger_testkit::PgTestDatabase)> {
    let db = planledger_testkit::PgTestDatabase::create(test).await?;
    let log = planledger_store::PgEventLog::connect(&db.url, 40, Duration::from_secs(10), Duration::from_secs(10))
        .await
        .expect("connect postgres");
    log.migrate().await.expect("migrate");
    Some((log, db))
}

macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (log, _db) = super::sqlite_log().await;
                    super::suite::$name(log).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some((log, _db)) = super::pg_log(stringify!($name)).await else { return };
                    super::suite::$name(log).await;
                }
            )*
        }
    };
}

backends!(
    append_and_read_round_trip,
    a_stale_version_is_a_conflict_carrying_the_actual_version,
    racing_appenders_write_every_version_exactly_once,
    an_idempotent_retry_returns_the_original_events,
    an_append_that_carries_a_key_twice_writes_nothing,
    client_keys_are_labels_the_log_does_not_check,
    unicode_and_60_kib_payloads_round_trip,
    read_all_pages_through_every_stream_in_commit_order,
    read_by_stream_pages_each_stream_whole_and_in_order,
    checkpoints_compare_and_set,
    snapshots_keep_the_newest,
);

#[tokio::test]
async fn sqlite_events_cannot_be_updated_or_deleted() {
    let (log, _db) = sqlite_log().await;
    log.append(&stream("immutable"), 0, &[event("E", json!({}))]).await.expect("append");
    for sql in ["UPDATE ledger_events SET event_type = 'Forged'", "DELETE FROM ledger_events"] {
        let error = sqlx::query(sql).execute(log.writer()).await.expect_err(sql);
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(log.read_stream(&stream("immutable"), 1, 10).await.expect("read")[0].event_type, "E");
}

#[tokio::test]
async fn postgres_events_cannot_be_updated_deleted_or_truncated() {
    let Some((log, _db)) = pg_log("postgres_events_cannot_be_updated_deleted_or_truncated").await else { return };
    log.append(&stream("immutable"), 0, &[event("E", json!({}))]).await.expect("append");
    for sql in ["UPDATE ledger_events SET event_type = 'Forged'", "DELETE FROM ledger_events", "TRUNCATE ledger_events"]
    {
        let error = sqlx::query(sql).execute(log.pool()).await.expect_err(sql);
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(log.read_stream(&stream("immutable"), 1, 10).await.expect("read")[0].event_type, "E");
}

/// The reason for the transaction-id guard: a transaction that took its positions early but
/// commits late must be delivered, not skipped by a reader that already passed those positions.
#[tokio::test]
async fn postgres_read_all_never_skips_a_late_commit() {
    let Some((log, _db)) = pg_log("postgres_read_all_never_skips_a_late_commit").await else { return };
    let e0 = appended(log.append(&stream("early"), 0, &[event("E0", json!({}))]).await.expect("e0"));

    let mut held = log.begin().await.expect("begin");
    let e1 = appended(log.append_in(&mut held, &stream("late"), 0, &[event("E1", json!({}))]).await.expect("e1"));
    let e2 = appended(log.append(&stream("quick"), 0, &[event("E2", json!({}))]).await.expect("e2"));
    assert!(e1[0].global_position < e2[0].global_position, "the late event holds the earlier position");

    let first = read_all_until(&log, Checkpoint::ORIGIN, 100, 1).await;
    assert_eq!(first.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![e0[0].event_id]);
    let after = first[0].checkpoint;
    // However long the reader waits, it does not pass the open transaction.
    for _ in 0..20 {
        assert!(log.read_all(after, 100).await.expect("again").is_empty(), "the reader passed an open transaction");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    log.commit(held).await.expect("commit late");
    let rest = read_all_until(&log, after, 100, 2).await;
    assert_eq!(
        rest.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        vec![e1[0].event_id, e2[0].event_id],
        "the late commit is delivered, in order, before what committed after it began"
    );
}

#[tokio::test]
async fn migrating_twice_applies_nothing_the_second_time() {
    let (log, _db) = sqlite_log().await;
    let again = log.migrate().await.expect("migrate again");
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, sqlite_versions());
    assert_eq!(log.pending_migrations().await.expect("pending"), 0);
    if let Some((pg, _db)) = pg_log("migrating_twice_applies_nothing_the_second_time").await {
        assert!(pg.migrate().await.expect("again").applied.is_empty());
        assert_eq!(pg.pending_migrations().await.expect("pending"), 0);
    }
}

/// Several streams in one transaction: each checked on its own.
async fn appending_to_many_streams_checks_each_on_its_own(log: planledger_store::AnyEventLog) {
    use planledger_store::{StreamAppend, StreamAppendOutcome};
    let (a, b, c, d) = (stream("many-a"), stream("many-b"), stream("many-c"), stream("many-d"));
    log.append(&b, 0, &[event("E", json!({}))]).await.expect("b");
    log.append(&d, 0, &[event("E", json!({})).with_system_key("k-d")]).await.expect("d");
    let parts = vec![
        StreamAppend::new(a.clone(), 0, vec![event("A1", json!({})), event("A2", json!({}))]),
        StreamAppend::new(b.clone(), 0, vec![event("B2", json!({}))]),
        StreamAppend::new(c.clone(), 0, vec![event("C1", json!({}))]),
        StreamAppend::new(d.clone(), 1, vec![event("D2", json!({})).with_system_key("k-d")]),
    ];
    let mut tx = log.begin().await.expect("begin");
    let outcomes = log.append_many_in(&mut tx, &parts).await.expect("append many");
    log.commit(tx).await.expect("commit");
    assert!(
        matches!(&outcomes[0], StreamAppendOutcome::Appended { new_version: 2, positions } if positions.len() == 2)
    );
    assert_eq!(outcomes[1], StreamAppendOutcome::Conflict, "b is at version 1, not 0");
    assert!(matches!(&outcomes[2], StreamAppendOutcome::Appended { new_version: 1, .. }));
    assert_eq!(outcomes[3], StreamAppendOutcome::Duplicate, "d's key was used");
    assert_eq!(log.stream_version(&a).await.unwrap(), 2);
    assert_eq!(log.stream_version(&b).await.unwrap(), 1, "the conflicting part wrote nothing");
    assert_eq!(log.stream_version(&d).await.unwrap(), 1);
    let read = log.read_stream(&a, 1, 10).await.unwrap();
    let StreamAppendOutcome::Appended { positions, .. } = &outcomes[0] else { unreachable!() };
    let stored: Vec<Checkpoint> = read.iter().map(|event| event.checkpoint).collect();
    assert_eq!(&stored, positions, "where the multi-append said the events landed is where they are");
}

#[tokio::test]
async fn sqlite_appending_to_many_streams_checks_each_on_its_own() {
    let (log, _db) = sqlite_log().await;
    appending_to_many_streams_checks_each_on_its_own(planledger_store::AnyEventLog::Sqlite(log)).await;
}

#[tokio::test]
async fn postgres_appending_to_many_streams_checks_each_on_its_own() {
    let Some((log, _db)) = pg_log("postgres_appending_to_many_streams_checks_each_on_its_own").await else { return };
    appending_to_many_streams_checks_each_on_its_own(planledger_store::AnyEventLog::Postgres(log)).await;
}

/// Every connection of `pool`, held.
async fn hold_every_connection<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Vec<sqlx::pool::PoolConnection<DB>> {
    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        held.push(pool.acquire().await.expect("a reader connection"));
    }
    held
}

/// With every reader connection taken (a flood of reads), reads wait for a reader while
/// appends go through on the commands' own connections; and a write through the readers'
/// log is refused by the database rather than taking a writer.
async fn readers_never_take_a_connection_from_commands(log: planledger_store::AnyEventLog) {
    use planledger_store::AnyEventLog;
    let s = stream("reader-flood");
    let reads = log.reads_only();
    log.append(&s, 0, &[event("E", json!({}))]).await.expect("append before the flood");
    assert_eq!(reads.read_stream(&s, 1, 10).await.expect("read").len(), 1, "the readers see committed events");
    assert!(reads.append(&s, 1, &[event("E", json!({}))]).await.is_err(), "a write through the readers is refused");

    let (_pg_held, _lite_held) = match &log {
        AnyEventLog::Postgres(pg) => (hold_every_connection(pg.readers()).await, Vec::new()),
        AnyEventLog::Sqlite(lite) => (Vec::new(), hold_every_connection(lite.readers()).await),
    };
    let waiting = tokio::time::timeout(Duration::from_millis(300), reads.read_stream(&s, 1, 10)).await;
    assert!(waiting.is_err(), "with every reader busy a read waits for one");
    let appended = tokio::time::timeout(Duration::from_secs(10), log.append(&s, 1, &[event("E", json!({}))]))
        .await
        .expect("the append does not wait for a reader")
        .expect("append during the flood");
    assert!(matches!(appended, AppendOutcome::Appended { new_version: 2, .. }), "{appended:?}");
    let mut tx = log.begin().await.expect("a command's transaction");
    let outcome = log.append_in(&mut tx, &s, 2, &[event("E", json!({}))]).await.expect("append in a transaction");
    log.commit(tx).await.expect("commit");
    assert!(matches!(outcome, AppendOutcome::Appended { new_version: 3, .. }), "{outcome:?}");
}

#[tokio::test]
async fn sqlite_readers_never_take_a_connection_from_commands() {
    let (log, _db) = sqlite_log().await;
    readers_never_take_a_connection_from_commands(planledger_store::AnyEventLog::Sqlite(log)).await;
}

#[tokio::test]
async fn postgres_readers_never_take_a_connection_from_commands() {
    let Some((log, _db)) = pg_log("postgres_readers_never_take_a_connection_from_commands").await else { return };
    readers_never_take_a_connection_from_commands(planledger_store::AnyEventLog::Postgres(log)).await;
}

/// Two parts of one stream in one multi-append (the command path never sends them: a store has
/// one worker, with one batch in flight) are refused whole: the one statement on PostgreSQL
/// checks versions per stream but inserted events per stream too, so the second part's events
/// were written beside the first's while both were answered `Conflict`, and decided again.
async fn two_parts_of_one_stream_are_refused_whole(log: planledger_store::AnyEventLog) {
    use planledger_store::StreamAppend;
    let s = stream("one-stream-twice");
    let parts = vec![
        StreamAppend::new(s.clone(), 0, vec![event("A", json!({}))]),
        StreamAppend::new(s.clone(), 1, vec![event("B", json!({}))]),
    ];
    let mut tx = log.begin().await.expect("begin");
    let refused = log.append_many_in(&mut tx, &parts).await;
    drop(tx);
    assert!(matches!(refused, Err(StoreError::StreamTwice(_))), "{refused:?}");
    assert_eq!(log.stream_version(&s).await.unwrap(), 0, "nothing was written");
    assert!(log.read_stream(&s, 1, 10).await.unwrap().is_empty(), "no event was written");
}

#[tokio::test]
async fn sqlite_two_parts_of_one_stream_are_refused_whole() {
    let (log, _db) = sqlite_log().await;
    two_parts_of_one_stream_are_refused_whole(planledger_store::AnyEventLog::Sqlite(log)).await;
}

#[tokio::test]
async fn postgres_two_parts_of_one_stream_are_refused_whole() {
    let Some((log, _db)) = pg_log("postgres_two_parts_of_one_stream_are_refused_whole").await else { return };
    two_parts_of_one_stream_are_refused_whole(planledger_store::AnyEventLog::Postgres(log)).await;
}
