//! What the command path answers, in types: a command is accepted (with the facts it recorded
//! and the store after them) or refused (with the rule's reason); a retry of a keyed request is
//! answered with the first answer as it was rendered then.
//!
//! The service never renders: how an outcome reaches a caller (a status, a body) belongs to the
//! edge, which hands the service a [`Renderer`]. The service calls it only to store the first
//! answer to an `Idempotency-Key` in the same transaction as the command's events, so that a
//! retry replays it word for word.

use chrono::{DateTime, Utc};
use planledger_domain::{Catalogs, Command, DomainError, Event, StoreId, TenantState};
use planledger_store::{chain_hashes, Hash, NewEvent, StreamId};
use uuid::Uuid;

/// A command decided on the store's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(Box<Accepted>),
    Refused(Refusal),
}

/// An accepted command: what it recorded and the store after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub store: StoreId,
    pub command: Command,
    /// The events this command recorded, without the due transitions decided before it. Empty
    /// when there was nothing to change (registering a store again alike, a trial already
    /// running).
    pub facts: Vec<Event>,
    /// The store after `facts`.
    pub state: TenantState,
    /// The store's stream version after `facts`.
    pub version: i64,
    pub decided_at: DateTime<Utc>,
    /// What `facts` wrote in the store's hash chain.
    pub receipt: Receipt,
}

/// What a command wrote, checkable later against a signed digest (docs/audit-chain.md): each
/// event's id, version and chain hash, and the stream's head after them (for a command that
/// recorded nothing, the head it was decided on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub events: Vec<ReceiptEvent>,
    /// The stream's version `head` is the hash of.
    pub version: i64,
    pub head: Hash,
}

/// One event of a [`Receipt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptEvent {
    pub event_id: Uuid,
    pub version: i64,
    pub hash: Hash,
}

impl Receipt {
    /// The receipt of `events`, appended after `expected` where the head was `head`.
    pub fn of(stream: &StreamId, expected: i64, head: &Hash, events: &[NewEvent]) -> Self {
        let hashes = chain_hashes(stream, expected, head, events);
        Self {
            version: expected + events.len() as i64,
            head: hashes.last().copied().unwrap_or(*head),
            events: events
                .iter()
                .zip(hashes)
                .enumerate()
                .map(|(offset, (event, hash))| ReceiptEvent {
                    event_id: event.event_id,
                    version: expected + 1 + offset as i64,
                    hash,
                })
                .collect(),
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A rule of the ledger refused it.
    Rule(DomainError),
    /// The caller made the command conditional on the stream's version (`If-Match`), and the
    /// store has moved since.
    VersionMoved { expected: i64, current: i64 },
}

impl Refusal {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Rule(error) => error.code(),
            Refusal::VersionMoved { .. } => "version_mismatch",
        }
    }
}

/// The service's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Decided now (or, for a request whose key appeared twice in one batch, decided once for
    /// both: see [`Answer::Replayed`]).
    Decided(Outcome),
    /// A retry of a keyed request: the first answer, as it was rendered and stored.
    Replayed(RenderedAnswer),
}

/// An outcome as the edge renders it for its callers: opaque to the service, which stores it
/// and hands it back unchanged. `status` and `body` are whatever the edge's protocol needs;
/// no crate below the edge reads either (the service's own tests render with a renderer of
/// their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedAnswer {
    pub status: u16,
    pub body: String,
}

/// Renders outcomes for storage; the edge's one renderer, so that a replay equals the answer
/// first given.
pub trait Renderer: Send + Sync + std::fmt::Debug {
    /// `catalogs`: the versions the command was decided under; an accepted command's store is
    /// shown under its own (`Catalogs::shown_for`).
    fn render(&self, outcome: &Outcome, catalogs: &Catalogs, correlation_id: &str) -> RenderedAnswer;
}
