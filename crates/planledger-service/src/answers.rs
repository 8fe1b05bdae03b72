//! Stored first answers of requests sent with an `Idempotency-Key` (SPEC 8).
//!
//! Every command decided on a registered store with a key has its answer stored, refusals and
//! no-ops included (the answer to a key never changes), in the same transaction as the events
//! the command appended (or as the check of the stream's version it was decided on), so a retry
//! either finds both or neither. Keys are kept (never deleted), which is "at least 24 hours".

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use planledger_domain::StoreId;
use planledger_store::{AnyEventLog, AnyTx, StoreError};

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

/// Stores `answers` in `tx`: one statement on PostgreSQL, whatever their number.
pub async fn insert_many_in(tx: &mut AnyTx, answers: &[NewAnswer<'_>]) -> Result<(), StoreError> {
    let Some(first) = answers.first() else {
        return Ok(());
    };
    // Two nodes that decided the same key at once: the second insert finds the first. Like a
    // version conflict, the loser reloads and replays the stored answer (a group that fails
    // this way is written again batch by batch, which names the store).
    let stream = planledger_store::StreamId::parse(first.store.stream_name())?;
    let raced = |error: sqlx::Error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::ConcurrentWrite { stream: stream.clone(), constraint: "idempotent_answers".to_owned() }
        }
        _ => StoreError::from(error),
    };
    match tx {
        AnyTx::Postgres(tx) => {
            sqlx::query(
                "INSERT INTO idempotent_answers (store_id, key, request_hash, status, body, created_at)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::timestamptz[])",
            )
            .bind(answers.iter().map(|a| a.store.to_string()).collect::<Vec<_>>())
            .bind(answers.iter().map(|a| a.key).collect::<Vec<_>>())
            .bind(answers.iter().map(|a| a.request_hash).collect::<Vec<_>>())
            .bind(answers.iter().map(|a| i32::from(a.answer.status)).collect::<Vec<_>>())
            .bind(answers.iter().map(|a| a.answer.body.as_str()).collect::<Vec<_>>())
            .bind(answers.iter().map(|a| a.at).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .map_err(raced)?;
        }
        // One writer in this process: a statement per answer costs no round trip to a server.
        AnyTx::Sqlite(tx) => {
            for a in answers {
                sqlx::query(
                    "INSERT INTO idempotent_answers (store_id, key, request_hash, status, body, created_at_us)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(a.store.to_string())
                .bind(a.key)
                .bind(a.request_hash)
                .bind(i64::from(a.answer.status))
                .bind(a.answer.body.as_str())
                .bind(a.at.timestamp_micros())
                .execute(&mut **tx)
                .await
                .map_err(raced)?;
            }
        }
    }
    Ok(())
}

/// Which of `keys` (store, key) already have a stored answer, read in `tx`: the committer's
/// one look-up per group, so that workers need not look before deciding.
pub async fn existing_in(
    tx: &mut AnyTx,
    keys: &[(StoreId, &str)],
) -> Result<std::collections::HashSet<(StoreId, String)>, StoreError> {
    let mut found = std::collections::HashSet::new();
    if keys.is_empty() {
        return Ok(found);
    }
    match tx {
        AnyTx::Postgres(tx) => {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT a.store_id, a.key FROM idempotent_answers a
                 JOIN unnest($1::text[], $2::text[]) AS k(store_id, key) ON a.store_id = k.store_id AND a.key = k.key",
            )
            .bind(keys.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>())
            .bind(keys.iter().map(|(_, k)| *k).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await?;
            for (store, key) in rows {
                if let Ok(store) = StoreId::parse(&store) {
                    found.insert((store, key));
                }
            }
        }
        // One writer in this process: a statement per key costs no round trip to a server.
        AnyTx::Sqlite(tx) => {
            for (store, key) in keys {
                let row: Option<(i64,)> =
                    sqlx::query_as("SELECT 1 FROM idempotent_answers WHERE store_id = ? AND key = ?")
                        .bind(store.to_string())
                        .bind(*key)
                        .fetch_optional(&mut **tx)
                        .await?;
                if row.is_some() {
                    found.insert((*store, (*key).to_owned()));
                }
            }
        }
    }
    Ok(found)
}
