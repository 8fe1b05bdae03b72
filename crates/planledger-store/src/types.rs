//! The values that cross the event store's boundary: streams, events as written and as read,
//! global-log checkpoints and snapshots.

use std::fmt;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use planledger_chain::{EventFields, Hash};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::StoreError;

/// A stream's version: the number of events in it. A new stream is at version 0.
pub type Version = i64;

/// The longest stream id the store accepts, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 200;

/// The identity of one stream (one store's history). Built by [`StreamId::parse`], so an
/// empty or oversized id never reaches the database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    pub fn parse(id: impl Into<String>) -> Result<Self, StoreError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_STREAM_ID_LEN || id.chars().any(char::is_control) {
            return Err(StoreError::InvalidStreamId(id));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamId {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Both backends keep microseconds; truncating on the way in makes what `append` returns equal
/// to what a later read returns.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at)
}

/// An event about to be appended: everything of the envelope (contract §7) but what the store assigns
/// (stream, version, global position).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub data: Value,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    /// The key the event was written under, shown on the envelope. A system key is also a
    /// constraint: appends are idempotent per (stream, system key), so a system key already used
    /// on the stream makes the append write nothing and return the events first written under
    /// it, and one append may not carry a key twice. A client key is a label only (see
    /// [`KeyScope`]).
    pub idempotency_key: Option<IdempotencyKey>,
    pub actor: String,
    pub catalog_fingerprint: String,
    pub recorded_at: DateTime<Utc>,
}

impl NewEvent {
    /// An event with a fresh UUID v7 id and the given metadata; the optional parts start empty.
    pub fn new(
        event_type: impl Into<String>,
        schema_version: i32,
        data: Value,
        correlation_id: impl Into<String>,
        actor: impl Into<String>,
        catalog_fingerprint: impl Into<String>,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version,
            data,
            correlation_id: correlation_id.into(),
            causation_id: None,
            idempotency_key: None,
            actor: actor.into(),
            catalog_fingerprint: catalog_fingerprint.into(),
            recorded_at: truncate_to_micros(recorded_at),
        }
    }

    pub fn with_causation(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    /// Labels the event with a caller's key (an `Idempotency-Key` header); the log does not
    /// enforce it (see [`KeyScope::Client`]).
    pub fn with_client_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(IdempotencyKey::client(key));
        self
    }

    /// Labels the event with a key the ledger made itself (a deadline, a refund), which the log's
    /// key constraint enforces.
    pub fn with_system_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(IdempotencyKey::system(key));
        self
    }
}

/// Whose key it is, and so who enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyScope {
    /// A caller's `Idempotency-Key`: recorded on the envelope, never checked by the log. The
    /// command service enforces it where it keeps the key's first answer (`idempotent_answers`,
    /// claimed in the transaction that appends the command's events), so one constraint, not
    /// two, decides whether a keyed command already happened; and no string a client sends can
    /// take (and so block) a key the ledger needs.
    Client,
    /// A key the ledger made itself (a deadline passed, a consumption refunded): the log's key
    /// constraint makes such a fact happen at most once per stream.
    System,
}

/// An idempotency key in its scope. The envelope shows `key` as it was given; the log's key
/// constraint holds [`IdempotencyKey::namespaced`] of system keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub scope: KeyScope,
    pub key: String,
}

impl IdempotencyKey {
    pub fn client(key: impl Into<String>) -> Self {
        Self { scope: KeyScope::Client, key: key.into() }
    }

    pub fn system(key: impl Into<String>) -> Self {
        Self { scope: KeyScope::System, key: key.into() }
    }

    /// The form the key constraint holds: the scope, a colon, the key.
    pub fn namespaced(&self) -> String {
        let scope = match self.scope {
            KeyScope::Client => "client",
            KeyScope::System => "system",
        };
        format!("{scope}:{}", self.key)
    }
}

/// An event as stored: the full envelope of contract §7.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: StreamId,
    pub version: Version,
    pub global_position: i64,
    /// Where this event sits in the global reading order; feed it back to `read_all`.
    #[serde(skip)]
    pub checkpoint: Checkpoint,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    pub data: Value,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub actor: String,
    pub catalog_fingerprint: String,
    pub recorded_at: DateTime<Utc>,
    /// The event's link in its stream's hash chain (docs/audit-chain.md), as stored.
    #[serde(skip)]
    pub hash: Hash,
}

impl RecordedEvent {
    /// What the chain hashes of this event, as stored.
    pub fn chain_fields(&self) -> EventFields<'_> {
        EventFields {
            stream_id: self.stream_id.as_str(),
            version: self.version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            data: &self.data,
            correlation_id: &self.correlation_id,
            causation_id: self.causation_id.as_deref(),
            idempotency_key: self.idempotency_key.as_deref(),
            actor: &self.actor,
            catalog_fingerprint: &self.catalog_fingerprint,
            recorded_at: self.recorded_at,
        }
    }
}

impl NewEvent {
    /// What the chain hashes of this event once it is `version` of `stream`.
    pub fn chain_fields<'a>(&'a self, stream: &'a StreamId, version: Version) -> EventFields<'a> {
        EventFields {
            stream_id: stream.as_str(),
            version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            data: &self.data,
            correlation_id: &self.correlation_id,
            causation_id: self.causation_id.as_deref(),
            idempotency_key: self.idempotency_key.as_ref().map(|k| k.key.as_str()),
            actor: &self.actor,
            catalog_fingerprint: &self.catalog_fingerprint,
            recorded_at: truncate_to_micros(self.recorded_at),
        }
    }
}

/// The chain hashes `events` get when appended to `stream` after `expected`, whose event there
/// has the hash `head` ([`planledger_chain::GENESIS`] for a new stream). The writer that
/// renders a receipt and the log that stores the hashes compute the same.
pub fn chain_hashes(stream: &StreamId, expected: Version, head: &Hash, events: &[NewEvent]) -> Vec<Hash> {
    let mut previous = *head;
    events
        .iter()
        .enumerate()
        .map(|(offset, event)| {
            previous =
                planledger_chain::event_hash(&previous, &event.chain_fields(stream, expected + 1 + offset as Version));
            previous
        })
        .collect()
}

/// How many events the migration that introduced the chain hashes at a time.
pub(crate) const HASHING_PAGE: i64 = 5_000;

/// Chains events read in stream order (each stream's in version order): what the migration
/// that introduced the chain hashes the log with, and what `verify` recomputes.
#[derive(Debug, Default)]
pub struct Rechain {
    stream: Option<StreamId>,
    previous: Hash,
}

impl Rechain {
    /// The hash `event` gets chained to the events of its stream passed before it.
    pub fn next(&mut self, event: &RecordedEvent) -> Hash {
        if self.stream.as_ref() != Some(&event.stream_id) {
            self.stream = Some(event.stream_id.clone());
            self.previous = planledger_chain::GENESIS;
        }
        self.previous = planledger_chain::event_hash(&self.previous, &event.chain_fields());
        self.previous
    }
}

/// A stored hash; a missing one (an event of a log being hashed by the migration) reads as
/// [`planledger_chain::GENESIS`], which no event's hash is, so that verifying it fails.
pub(crate) fn hash_of(stored: Option<&[u8]>) -> Result<Hash, StoreError> {
    match stored {
        None => Ok(planledger_chain::GENESIS),
        Some(bytes) => bytes.try_into().map_err(|_| StoreError::Corrupt(format!("a hash of {} bytes", bytes.len()))),
    }
}

/// A place in the global log: the writing transaction and the position within it.
/// On SQLite the transaction is always 0 and the position alone orders the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub transaction_id: i64,
    pub position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const ORIGIN: Checkpoint = Checkpoint { transaction_id: 0, position: 0 };
}

/// What an append did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// The events were written; the stream is now at `new_version`.
    Appended { new_version: Version, events: Vec<RecordedEvent> },
    /// An idempotency key of the batch was already used on this stream: nothing was written,
    /// and these are the events first written under that key.
    Duplicate { events: Vec<RecordedEvent> },
}

impl AppendOutcome {
    pub fn events(&self) -> &[RecordedEvent] {
        match self {
            AppendOutcome::Appended { events, .. } | AppendOutcome::Duplicate { events } => events,
        }
    }
}

/// A stream's folded state at a version, kept so that loading a long stream reads only its tail.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub stream_id: StreamId,
    pub version: Version,
    pub state: Value,
    /// The fingerprint of the fold that made `state`: a snapshot made by another fold is not
    /// read (the stream is folded from its start instead).
    pub fold_fingerprint: String,
}

/// A system key an append records: the namespaced key, the version of the event that carries it,
/// and that event's time (the key's age, for retention).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyRow {
    pub key: String,
    pub version: Version,
    pub at: DateTime<Utc>,
}

/// The system keys an append of `events` at `expected` records; refused if two events carry the
/// same system key (one decision cannot happen twice in one append). Client keys are labels (see
/// [`KeyScope::Client`]): not recorded here.
pub(crate) fn idempotency_keys(
    stream: &StreamId,
    events: &[NewEvent],
    expected: Version,
) -> Result<Vec<KeyRow>, StoreError> {
    let mut keys: Vec<KeyRow> = Vec::new();
    for (offset, event) in events.iter().enumerate() {
        let Some(key) = event.idempotency_key.as_ref().filter(|key| key.scope == KeyScope::System) else {
            continue;
        };
        let key = key.namespaced();
        if keys.iter().any(|k| k.key == key) {
            return Err(StoreError::RepeatedKey { stream: stream.clone(), key });
        }
        keys.push(KeyRow { key, version: expected + 1 + offset as Version, at: truncate_to_micros(event.recorded_at) });
    }
    Ok(keys)
}

/// The events an append would store, before the database assigns their positions.
pub(crate) fn recorded(
    stream: &StreamId,
    expected: Version,
    events: &[NewEvent],
    positions: &[(i64, Checkpoint)],
    hashes: &[Hash],
) -> Vec<RecordedEvent> {
    events
        .iter()
        .zip(positions)
        .zip(hashes)
        .enumerate()
        .map(|(offset, ((event, (global_position, checkpoint)), hash))| RecordedEvent {
            event_id: event.event_id,
            stream_id: stream.clone(),
            version: expected + 1 + offset as Version,
            global_position: *global_position,
            checkpoint: *checkpoint,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: event.data.clone(),
            correlation_id: event.correlation_id.clone(),
            causation_id: event.causation_id.clone(),
            idempotency_key: event.idempotency_key.as_ref().map(|k| k.key.clone()),
            actor: event.actor.clone(),
            catalog_fingerprint: event.catalog_fingerprint.clone(),
            recorded_at: truncate_to_micros(event.recorded_at),
            hash: *hash,
        })
        .collect()
}

/// A stream that moved after some point of the log: how many events it gained, and its version
/// after the last of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedStream {
    pub stream: StreamId,
    pub events: i64,
    pub version: Version,
}

impl MovedStream {
    pub(crate) fn from_row((stream, events, version): (String, i64, i64)) -> Result<Self, StoreError> {
        Ok(Self { stream: StreamId::parse(stream).map_err(|e| StoreError::Corrupt(e.to_string()))?, events, version })
    }
}

/// One stream's part of a multi-stream append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: Version,
    pub events: Vec<NewEvent>,
    /// The chain the writer continues, if it knows the stream's head (it rendered receipts
    /// with it); else the log reads the head and hashes the events itself.
    pub chain: Option<Chain>,
}

impl StreamAppend {
    /// A part whose writer leaves the stream's head to the log.
    pub fn new(stream: StreamId, expected: Version, events: Vec<NewEvent>) -> Self {
        Self { stream, expected, events, chain: None }
    }

    /// The hash of the stream's event at `expected` and the hashes of `events` after it: the
    /// writer's chain if it gave one that covers every event, else computed on `head`.
    pub(crate) fn chained_on(&self, head: &Hash) -> (Hash, std::borrow::Cow<'_, [Hash]>) {
        match &self.chain {
            Some(chain) if chain.hashes.len() == self.events.len() => {
                (chain.expected_head, std::borrow::Cow::Borrowed(chain.hashes.as_slice()))
            }
            Some(chain) => (
                chain.expected_head,
                std::borrow::Cow::Owned(chain_hashes(&self.stream, self.expected, &chain.expected_head, &self.events)),
            ),
            None => (*head, std::borrow::Cow::Owned(chain_hashes(&self.stream, self.expected, head, &self.events))),
        }
    }
}

/// The chain an append continues: the hash of the stream's event at the expected version (the
/// head the writer decided on, checked like the version: a head that is not the stream's is a
/// conflict), and the hashes the append's events get after it ([`chain_hashes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub expected_head: Hash,
    pub hashes: Vec<Hash>,
}

impl Chain {
    /// `events` chained onto `head`, the hash of `stream`'s event at `expected`.
    pub fn of(stream: &StreamId, expected: Version, head: Hash, events: &[NewEvent]) -> Self {
        Self { hashes: chain_hashes(stream, expected, &head, events), expected_head: head }
    }
}

/// Refuses parts that name one stream twice (see [`crate::StoreError::StreamTwice`]).
pub(crate) fn one_part_per_stream(parts: &[impl AsRef<StreamAppend>]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(parts.len());
    for part in parts {
        let stream = &part.as_ref().stream;
        if !seen.insert(stream.as_str()) {
            return Err(StoreError::StreamTwice(stream.clone()));
        }
    }
    Ok(())
}

impl AsRef<StreamAppend> for StreamAppend {
    fn as_ref(&self) -> &StreamAppend {
        self
    }
}

/// What a multi-stream append did to one stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamAppendOutcome {
    /// Where each event landed in the log's reading order, in version order (not the events
    /// themselves: a group commit writes thousands a second and its callers need only the
    /// version; building each `RecordedEvent` again cost the committer a tenth of its time).
    Appended { new_version: Version, positions: Vec<Checkpoint> },
    /// A part with no events: the stream is at the expected version, as of this transaction.
    Checked { version: Version },
    /// Nothing written: the stream was not at the expected version.
    Conflict,
    /// Nothing written: an idempotency key of the part was already used on the stream.
    Duplicate,
}
