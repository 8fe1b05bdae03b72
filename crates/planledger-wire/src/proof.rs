//! Signed digests and proofs (docs/audit-chain.md), and their verifier: what an outside auditor
//! runs, with no access to the ledger's database, to check that one store's events are the ones
//! a digest signed.

use chrono::{DateTime, SecondsFormat, Utc};
/// A key that verifies digests (`PublicKey::from_hex` reads one).
pub use planledger_chain::PublicKey;
use planledger_chain::{chain, hash_from_hex, leaf_hash, verify_inclusion, DigestStatement, Hash};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A digest of every stream's head, signed with the ledger's Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedDigest {
    #[schema(minimum = 1)]
    pub digest_id: i64,
    /// When it was made, exactly as signed: RFC 3339, UTC, six fractional digits.
    #[schema(example = "2027-01-15T08:00:00.000000Z")]
    pub created_at: String,
    /// How many streams (leaves) the tree has.
    pub streams: u64,
    /// The Merkle tree's root: 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub root: String,
    /// The first 16 hexadecimal digits of SHA-256 of the public key.
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub key_id: String,
    /// The Ed25519 public key that signed it: 64 hexadecimal digits. Trust it only if you know
    /// it from elsewhere (the operator publishes it).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub public_key: String,
    /// The Ed25519 signature of `planledger.digest.v1`, a line feed, and the canonical JSON of
    /// `{createdAt, digestId, root, streams}`: 128 hexadecimal digits.
    #[schema(pattern = "^[0-9a-f]{128}$")]
    pub signature: String,
}

/// The answer to `GET /v1/ledger/digests`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigestList {
    pub items: Vec<SignedDigest>,
    /// Send as `before` for the next (older) page; `null` on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// One event of a proof, in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenEvent {
    pub version: i64,
    /// The event's canonical bytes (UTF-8): what its hash covers.
    pub canonical: String,
    /// Its chain hash: SHA-256 of the hash before it and `canonical`. 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

/// A store's leaf in a digest's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProofLeaf {
    /// Its place among the digest's leaves (streams in byte order of their ids).
    pub index: u64,
    /// The store's version when the digest was made.
    pub version: i64,
    /// The chain hash of that version: 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub head: String,
}

/// The answer to `GET /v1/stores/{id}/proof`: everything needed to check that events
/// `fromVersion..=leaf.version` of a store are the ones a signed digest covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Proof {
    pub store_id: Uuid,
    pub stream_id: String,
    pub digest: SignedDigest,
    /// The chain hash of version `fromVersion - 1` (64 zeros for version 1).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub previous_hash: String,
    /// The events from `fromVersion` to the leaf's version, in order.
    pub events: Vec<ProvenEvent>,
    pub leaf: ProofLeaf,
    /// The audit path of the leaf (RFC 9162 §2.1.3): sibling hashes from the leaf up.
    pub path: Vec<String>,
}

/// Why a proof or a digest does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the digest is signed by key {0}, which is not one of the trusted keys")]
    UntrustedKey(String),
    #[error("the digest's signature does not verify")]
    BadSignature,
    #[error("{0} is not well formed")]
    Malformed(&'static str),
    #[error("the proof's stream {0} is not the store's")]
    WrongStream(String),
    #[error("event {0} does not follow the one before it (versions must be consecutive, of this stream)")]
    OutOfPlace(i64),
    #[error("event {0}'s hash does not follow from its content and the hash before it")]
    EventHash(i64),
    #[error("the events end at version {0}, not at the leaf's version {1}")]
    NotTheLeaf(i64, i64),
    #[error("the leaf's head is not the last event's hash")]
    LeafHead,
    #[error("the leaf is not in the digest's tree")]
    NotIncluded,
}

/// What a verified proof shows.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedProof {
    pub store_id: Uuid,
    pub digest_id: i64,
    /// The events, read from their canonical form: each an envelope with `data`.
    pub events: Vec<serde_json::Value>,
    /// Each event's version and chain hash.
    pub hashes: Vec<(i64, Hash)>,
}

impl VerifiedProof {
    /// Whether the proof covers what `receipt` says a command wrote: each of its events, at
    /// its version, with its id and hash. A receipt older than the proof's first version is
    /// not covered (ask for a proof from its first version).
    pub fn covers(&self, receipt: &crate::Receipt) -> bool {
        receipt.events.iter().all(|event| {
            let Some(hash) = hash_from_hex(&event.hash) else { return false };
            let at = self.hashes.iter().position(|(version, _)| *version == event.version);
            at.is_some_and(|i| {
                self.hashes[i].1 == hash
                    && self.events[i].get("eventId").and_then(|id| id.as_str())
                        == Some(event.event_id.to_string().as_str())
            })
        })
    }
}

fn hash(text: &str, what: &'static str) -> Result<Hash, ProofError> {
    hash_from_hex(text).ok_or(ProofError::Malformed(what))
}

impl SignedDigest {
    /// What the signature covers.
    pub fn statement(&self) -> Result<DigestStatement, ProofError> {
        let created_at = DateTime::parse_from_rfc3339(&self.created_at)
            .map_err(|_| ProofError::Malformed("the digest's createdAt"))?
            .with_timezone(&Utc);
        if created_at.to_rfc3339_opts(SecondsFormat::Micros, true) != self.created_at {
            return Err(ProofError::Malformed("the digest's createdAt"));
        }
        Ok(DigestStatement {
            digest_id: self.digest_id,
            created_at,
            streams: self.streams,
            root: hash(&self.root, "the digest's root")?,
        })
    }

    /// Checks the signature with one of `trusted`; the statement it signs.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<DigestStatement, ProofError> {
        let key = PublicKey::from_hex(&self.public_key).map_err(|_| ProofError::Malformed("the digest's publicKey"))?;
        if !trusted.contains(&key) {
            return Err(ProofError::UntrustedKey(key.key_id()));
        }
        let signature =
            planledger_chain::from_hex(&self.signature).ok_or(ProofError::Malformed("the digest's signature"))?;
        let statement = self.statement()?;
        if !key.verifies(&statement.message(), &signature) {
            return Err(ProofError::BadSignature);
        }
        Ok(statement)
    }
}

impl Proof {
    /// Checks the proof with `trusted` keys only: the digest's signature, the chain from
    /// `previousHash` through every event, and the leaf's place in the signed tree.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<VerifiedProof, ProofError> {
        let statement = self.digest.verify(trusted)?;
        if self.events.is_empty() {
            return Err(ProofError::Malformed("events (there are none)"));
        }
        if self.stream_id != format!("store-{}", self.store_id) {
            return Err(ProofError::WrongStream(self.stream_id.clone()));
        }
        let mut previous = hash(&self.previous_hash, "previousHash")?;
        let mut events = Vec::with_capacity(self.events.len());
        let mut hashes = Vec::with_capacity(self.events.len());
        for (i, event) in self.events.iter().enumerate() {
            let envelope: serde_json::Value = serde_json::from_str(&event.canonical)
                .map_err(|_| ProofError::Malformed("an event's canonical form"))?;
            let expected_version = self.events[0].version + i as i64;
            if event.version != expected_version
                || envelope.get("version").and_then(|v| v.as_i64()) != Some(event.version)
                || envelope.get("streamId").and_then(|s| s.as_str()) != Some(self.stream_id.as_str())
            {
                return Err(ProofError::OutOfPlace(event.version));
            }
            let recomputed = chain(&previous, event.canonical.as_bytes());
            if recomputed != hash(&event.hash, "an event's hash")? {
                return Err(ProofError::EventHash(event.version));
            }
            previous = recomputed;
            events.push(envelope);
            hashes.push((event.version, recomputed));
        }
        let last_version = self.events.last().map_or(0, |e| e.version);
        if last_version != self.leaf.version {
            return Err(ProofError::NotTheLeaf(last_version, self.leaf.version));
        }
        let head = hash(&self.leaf.head, "the leaf's head")?;
        if head != previous {
            return Err(ProofError::LeafHead);
        }
        let path = self.path.iter().map(|p| hash(p, "the path")).collect::<Result<Vec<_>, _>>()?;
        let leaf = leaf_hash(&self.stream_id, self.leaf.version, &head);
        if !verify_inclusion(self.leaf.index, statement.streams, &leaf, &path, &statement.root) {
            return Err(ProofError::NotIncluded);
        }
        Ok(VerifiedProof { store_id: self.store_id, digest_id: self.digest.digest_id, events, hashes })
    }
}
