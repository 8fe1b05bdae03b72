//! Stored first answers of requests sent with an `Idempotency-Key` (SPEC 8).
//!
//! Every command decided on a registered store with a key has its answer stored, refusals and
//! no-ops included (the answer to a key never changes), in the same commit as the events the
//! command appended (or as the check of the stream's version it was decided on), so a retry
//! either finds both or neither. The stored answer is also the key's only constraint (the log
//! labels events with client keys but does not check them): in the group's one statement on
//! PostgreSQL ([`riders`]), answers are inserted for the batches it writes, after a guard vetoed
//! those with a key already answered; in a transaction ([`claim_in`]), the committer claims a
//! group's keys by inserting their answers before it appends. Answers are kept for the service's
//! retention period (7 days by default, at least 24 hours as SPEC 8 asks) and then deleted by
//! the retention job (`retention.rs`); after that the key is free again.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use planledger_domain::StoreId;
use planledger_store::{AnyEventLog, AnyTx, Rider, StoreError};

use crate::outcome::RenderedAnswer;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub request_hash: String,
    pub answer: RenderedAnswer,
}

pub async fn load(
    log: &AnyEventLog,
    store: StoreId,
    keys: &[&str],
) -> Result<HashMap<String, StoredAnswer>, StoreError> {
    let store = store.to_string();
    let rows: Vec<(String, String, i64, String)> = match log {
        AnyEventLog::Postgres(pg) => {
            let rows: Vec<(String, String, i32, String)> = sqlx::query_as(
                "SELECT key, request_hash, status, body FROM idempotent_answers WHERE store_id = $1 AND key = ANY($2::text[])",
            )
            .bind(&store)
            .bind(keys)
            .fetch_all(pg.pool())
            .await?;
            rows.into_iter().map(|(k, h, s, b)| (k, h, i64::from(s), b)).collect()
        }
        AnyEventLog::Sqlite(lite) => {
            let mut out = Vec::new();
            for key in keys {
                let row: Option<(String, String, i64, String)> = sqlx::query_as(
                    "SELECT key, request_hash, status, body FROM idempotent_answers WHERE store_id = ? AND key = ?",
                )
                .bind(&store)
                .bind(key)
                .fetch_optional(lite.readers())
                .await?;
                out.extend(row);
            }
            out
        }
    };
    Ok(rows
        .into_iter()
        .map(|(key, request_hash, status, body)| {
            let status = u16::try_from(status).unwrap_or(500);
            (key, StoredAnswer { request_hash, answer: RenderedAnswer { status, body } })
        })
        .collect())
}

/// One answer to store: the store, its key and request hash, the answer, when.
pub struct NewAnswer<'a> {
    pub store: StoreId,
    pub key: &'a str,
    pub request_hash: &'a str,
    pub answer: &'a RenderedAnswer,
    pub at: DateTime<Utc>,
}

/// Claims the keys of `answers` in `tx` by storing their answers, and returns the keys that were
/// already taken: answered before, or claimed by a transaction that committed while this one
/// waited for it. The key's row is the only record that a keyed command happened (the log does
/// not check client keys), so a taken key means the command must not be written again.
///
/// Keys are claimed in one order (store, then key) so that two groups that share keys wait for
/// each other instead of deadlocking. One statement on PostgreSQL, whatever their number.
pub async fn claim_in<'a>(
    tx: &mut AnyTx,
    answers: &[NewAnswer<'a>],
) -> Result<HashSet<(StoreId, &'a str)>, StoreError> {
    let mut ordered: Vec<&NewAnswer<'a>> = answers.iter().collect();
    ordered.sort_unstable_by(|a, b| (a.store.as_uuid(), a.key).cmp(&(b.store.as_uuid(), b.key)));
    let mut taken: HashSet<(StoreId, &'a str)> = HashSet::new();
    match tx {
        AnyTx::Postgres(tx) => {
            if ordered.is_empty() {
                return Ok(taken);
            }
            let stores: Vec<String> = ordered.iter().map(|a| a.store.to_string()).collect();
            let claimed: Vec<(String, String)> = sqlx::query_as(
                "INSERT INTO idempotent_answers (store_id, key, request_hash, status, body, created_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::timestamptz[])
                 ON CONFLICT (store_id, key) DO NOTHING
                 RETURNING store_id, key",
            )
            .bind(&stores)
            .bind(ordered.iter().map(|a| a.key).collect::<Vec<_>>())
            .bind(ordered.iter().map(|a| a.request_hash).collect::<Vec<_>>())
            .bind(ordered.iter().map(|a| i32::from(a.answer.status)).collect::<Vec<_>>())
            .bind(ordered.iter().map(|a| a.answer.body.as_str()).collect::<Vec<_>>())
            .bind(ordered.iter().map(|a| a.at).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await?;
            let claimed: HashSet<(&str, &str)> = claimed.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect();
            for (a, store) in ordered.iter().zip(&stores) {
                if !claimed.contains(&(store.as_str(), a.key)) {
                    taken.insert((a.store, a.key));
                }
            }
        }
        // One writer in this process: a statement per answer costs no round trip to a server.
        AnyTx::Sqlite(tx) => {
            for a in ordered {
                let inserted = sqlx::query(
                    "INSERT INTO idempotent_answers (store_id, key, request_hash, status, body, created_at_us)
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (store_id, key) DO NOTHING",
                )
                .bind(a.store.to_string())
                .bind(a.key)
                .bind(a.request_hash)
                .bind(i64::from(a.answer.status))
                .bind(a.answer.body.as_str())
                .bind(a.at.timestamp_micros())
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    taken.insert((a.store, a.key));
                }
            }
        }
    }
    Ok(taken)
}

/// The keys of `answers` as riders of a group's one statement (PostgreSQL; see
/// `planledger_store::Rider`), the way of `claim_in` for a group written without a transaction
/// of its own: a guard vetoes every batch with a key answered before (the batch is answered
/// `Duplicate` and its worker replays the stored answer, as after `claim_in`), and a follower
/// stores the answers of the batches the statement writes or checks, and of no other, so no
/// claim is ever taken back.
///
/// The guard reads the statement's snapshot. A key answered after it (by another node's batch of
/// the same store, committed while this statement waited for the key's index entry) is not
/// vetoed; the follower has no `ON CONFLICT`, so the key's unique index fails the whole
/// statement, which writes nothing, and the committer writes the group again with `claim_in`.
/// Keys are stored in one order (store, then key), as `claim_in` claims them.
pub fn riders(answers: &[NewAnswer<'_>]) -> Vec<Rider<'static>> {
    if answers.is_empty() {
        return Vec::new();
    }
    let mut ordered: Vec<&NewAnswer<'_>> = answers.iter().collect();
    ordered.sort_unstable_by(|a, b| (a.store.as_uuid(), a.key).cmp(&(b.store.as_uuid(), b.key)));
    let streams: Vec<String> = ordered.iter().map(|a| a.store.stream_name()).collect();
    let stores: Vec<String> = ordered.iter().map(|a| a.store.to_string()).collect();
    let keys: Vec<String> = ordered.iter().map(|a| a.key.to_owned()).collect();
    let guard = Rider {
        sql: "answered AS (
    SELECT DISTINCT a.stream_id FROM unnest($1::text[], $2::text[], $3::text[]) AS a(stream_id, store_id, key)
    CROSS JOIN LATERAL (
        SELECT 1 FROM idempotent_answers x WHERE x.store_id = a.store_id AND x.key = a.key LIMIT 1
    ) AS hit
)"
        .to_owned(),
        vetoes: Some("answered"),
        params: 3,
        bind: Box::new({
            let (streams, stores, keys) = (streams.clone(), stores.clone(), keys.clone());
            move |query| query.bind(streams).bind(stores).bind(keys)
        }),
    };
    let request_hashes: Vec<String> = ordered.iter().map(|a| a.request_hash.to_owned()).collect();
    let statuses: Vec<i32> = ordered.iter().map(|a| i32::from(a.answer.status)).collect();
    let bodies: Vec<String> = ordered.iter().map(|a| a.answer.body.clone()).collect();
    let at: Vec<DateTime<Utc>> = ordered.iter().map(|a| a.at).collect();
    let claim = Rider {
        sql: "claimed AS (
    INSERT INTO idempotent_answers (store_id, key, request_hash, status, body, created_at)
    SELECT a.store_id, a.key, a.request_hash, a.status, a.body, a.created_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[], $7::timestamptz[])
        AS a(stream_id, store_id, key, request_hash, status, body, created_at)
    WHERE a.stream_id IN (SELECT stream_id FROM kept)
)"
        .to_owned(),
        vetoes: None,
        params: 7,
        bind: Box::new(move |query| {
            query.bind(streams).bind(stores).bind(keys).bind(request_hashes).bind(statuses).bind(bodies).bind(at)
        }),
    };
    vec![guard, claim]
}

/// Takes back, in `tx`, keys of `store` that this transaction claimed for a batch it then did
/// not write (its version moved, or another of its keys was taken): the batch will be decided
/// again, and its answers with it.
pub async fn withdraw_in(tx: &mut AnyTx, store: StoreId, keys: &[&str]) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let store = store.to_string();
    match tx {
        AnyTx::Postgres(tx) => {
            sqlx::query("DELETE FROM idempotent_answers WHERE store_id = $1 AND key = ANY($2::text[])")
                .bind(&store)
                .bind(keys)
                .execute(&mut **tx)
                .await?;
        }
        AnyTx::Sqlite(tx) => {
            for key in keys {
                sqlx::query("DELETE FROM idempotent_answers WHERE store_id = ? AND key = ?")
                    .bind(&store)
                    .bind(*key)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}
