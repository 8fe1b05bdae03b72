//! Stored first answers of requests sent with an `Idempotency-Key` (contract §8).
//!
//! Every command decided on a registered store with a key has its answer stored, refusals and
//! no-ops included (the answer to a key never changes), in the same commit as the events the
//! command appended (or as the check of the stream's version it was decided on), so a retry
//! either finds both or neither. The stored answer is also the key's only constraint (the log
//! labels events with client keys but does not check them): the store's group commit claims
//! them as rows of [`TABLE`] with the append they belong to. Answers are kept for the service's
//! retention period (7 days by default, at least 24 hours as contract §8 asks) and then deleted by
//! the retention job (`retention.rs`); after that the key is free again.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use planledger_domain::StoreId;
use planledger_store::{AnyEventLog, Column, Kind, OnConflict, Statement, StoreError, Table, Value};

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
    let statement = Statement::new(
        "SELECT key, request_hash, status, body FROM idempotent_answers WHERE store_id = $1 AND key = ANY($2)",
    )
    .bind(store.to_string())
    .bind(keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>());
    let rows = log.fetch(&statement, &[Kind::Text, Kind::Text, Kind::Int, Kind::Text]).await?;
    rows.iter()
        .map(|row| {
            // The edge's code, opaque here; a value it could never have stored is corruption,
            // not an answer to make up.
            let status = u16::try_from(row.int(2)?).map_err(|_| {
                StoreError::Corrupt(format!("a stored answer's status {} is out of range", row.int(2).unwrap_or(0)))
            })?;
            let answer = RenderedAnswer { status, body: row.text(3)? };
            Ok((row.text(0)?, StoredAnswer { request_hash: row.text(1)?, answer }))
        })
        .collect()
}

/// The table of stored answers, as the store's group commit writes it: each row claims its
/// store's key once (`(store_id, key)` is unique). The group commit claims a group's keys with
/// its append (see `planledger_store::group`): a batch whose key was answered before writes
/// nothing and is told `Duplicate`, and its worker replays the stored answer; claims of batches
/// not written are withdrawn. Answers are kept for the service's retention period and then
/// deleted by the retention job (`retention.rs`); after that the key is free again.
pub const TABLE: Table = Table {
    name: Cow::Borrowed("idempotent_answers"),
    columns: &[
        Column::text("store_id"),
        Column::text("key"),
        Column::text("request_hash"),
        Column::int("status"),
        Column::text("body"),
        Column::time("created_at"),
    ],
    on_conflict: OnConflict::Claim { key: &["store_id", "key"] },
};

/// One stored answer as a row of [`TABLE`].
pub fn row(store: StoreId, key: &str, request_hash: &str, answer: &RenderedAnswer, at: DateTime<Utc>) -> Vec<Value> {
    vec![
        store.to_string().into(),
        key.into(),
        request_hash.into(),
        i64::from(answer.status).into(),
        answer.body.as_str().into(),
        at.into(),
    ]
}
