//! Tamper evidence for planledger's log, with no IO: the store hashes with it on the append
//! path, `planledger verify` recomputes with it, and an outside auditor checks a proof with it
//! (the client crate and the TypeScript SDK carry the same rules). `docs/audit-chain.md` is the
//! specification; this crate is its reference implementation.
//!
//! - **Events.** Each event's [canonical form](canonical_event) is hashed chained to the event
//!   before it in its stream: `hash(v) = SHA-256(hash(v-1) || canonical(v))`, from 32 zero
//!   bytes ([`GENESIS`]). Changing, removing or moving one event changes every hash after it.
//! - **Digests.** A digest is a Merkle tree (RFC 9162's) over every stream's head (stream,
//!   version, hash), its root signed with an Ed25519 key. One store's place in it is proved by
//!   about log2(stores) hashes.

use chrono::{DateTime, SecondsFormat, Utc};
use ring::signature::{self, KeyPair};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash an event at version 1 is chained to.
pub const GENESIS: Hash = [0; 32];

/// The name and version of the canonical form, written into it: a later form is a new name.
pub const EVENT_FORMAT: &str = "planledger.event.v1";

/// The prefix of the bytes a digest's signature covers, naming their form.
pub const DIGEST_FORMAT: &str = "planledger.digest.v1";

/// What of an event is hashed: its whole envelope but where the database placed it (a global
/// position differs between backends and says nothing about the fact).
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub stream_id: &'a str,
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub data: &'a Value,
    pub correlation_id: &'a str,
    pub causation_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub actor: &'a str,
    pub catalog_fingerprint: &'a str,
    pub recorded_at: DateTime<Utc>,
}

/// The canonical bytes of an event: a JSON object without whitespace, keys in byte order at
/// every depth, strings escaped as JSON requires and no more (`"`, `\`, control characters),
/// times in RFC 3339 UTC with six fractional digits.
pub fn canonical_event(event: &EventFields<'_>) -> Vec<u8> {
    use std::io::Write;
    // Written member by member, the keys in their byte order: on the append path this runs for
    // every event, and a `Value` of the envelope would copy the event's data first.
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"actor\":");
    write_str(&mut out, event.actor);
    out.extend_from_slice(b",\"catalogFingerprint\":");
    write_str(&mut out, event.catalog_fingerprint);
    out.extend_from_slice(b",\"causationId\":");
    write_optional(&mut out, event.causation_id);
    out.extend_from_slice(b",\"correlationId\":");
    write_str(&mut out, event.correlation_id);
    out.extend_from_slice(b",\"data\":");
    write_canonical(event.data, &mut out);
    out.extend_from_slice(b",\"eventId\":\"");
    out.extend_from_slice(event.event_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
    out.extend_from_slice(b"\",\"format\":\"");
    out.extend_from_slice(EVENT_FORMAT.as_bytes());
    out.extend_from_slice(b"\",\"idempotencyKey\":");
    write_optional(&mut out, event.idempotency_key);
    // Writing into a Vec cannot fail.
    let _ = write!(out, ",\"recordedAt\":\"{}\"", event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true));
    let _ = write!(out, ",\"schemaVersion\":{}", event.schema_version);
    out.extend_from_slice(b",\"streamId\":");
    write_str(&mut out, event.stream_id);
    out.extend_from_slice(b",\"type\":");
    write_str(&mut out, event.event_type);
    let _ = write!(out, ",\"version\":{}}}", event.version);
    out
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
}

fn write_optional(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// `value` in the canonical form's JSON: compact, object keys sorted by their UTF-8 bytes.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// The hash of an event whose canonical bytes are `canonical`, chained to `previous`.
pub fn chain(previous: &Hash, canonical: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// [`chain`] of the event's canonical form.
pub fn event_hash(previous: &Hash, event: &EventFields<'_>) -> Hash {
    #[cfg(feature = "bench-baseline")]
    if baseline::is_off() {
        return GENESIS;
    }
    chain(previous, &canonical_event(event))
}

/// The benchmarks' baseline (feature `bench-baseline`): with hashing off, every event hashes to
/// [`GENESIS`], so the command path runs as it would without the chain (the hashes' 64 bytes
/// per event are still written). Only `planledger-bench` turns it off, around one scenario.
#[cfg(feature = "bench-baseline")]
pub mod baseline {
    use std::sync::atomic::{AtomicBool, Ordering};

    static OFF: AtomicBool = AtomicBool::new(false);

    pub fn set_hashing(on: bool) {
        OFF.store(!on, Ordering::SeqCst);
    }

    pub(crate) fn is_off() -> bool {
        OFF.load(Ordering::Relaxed)
    }
}

/// Lower-case hexadecimal.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Bytes from hexadecimal (either case); `None` if it is not.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// A hash from its 64 hexadecimal digits.
pub fn hash_from_hex(text: &str) -> Option<Hash> {
    from_hex(text)?.try_into().ok()
}

/// The Merkle leaf of one stream's head: `SHA-256(0x00 || len(stream) as u32 BE || stream ||
/// version as u64 BE || head)`.
pub fn leaf_hash(stream: &str, version: i64, head: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update((stream.len() as u32).to_be_bytes());
    hasher.update(stream.as_bytes());
    hasher.update((version as u64).to_be_bytes());
    hasher.update(head);
    hasher.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two smaller than `n` (`n` > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162's Merkle tree hash of `leaves` (leaf hashes, in the tree's order: streams by id).
/// The tree of no leaves is SHA-256 of nothing.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` (RFC 9162 §2.1.3.1): the sibling hashes from the leaf up.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut path = inclusion_path(&leaves[..k], index);
        path.push(merkle_root(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_path(&leaves[k..], index - k);
        path.push(merkle_root(&leaves[..k]));
        path
    }
}

/// A Merkle tree kept whole, level by level, so that each leaf's audit path is read in
/// log2(leaves) steps: pairing neighbours bottom-up and carrying a lone last node up unchanged
/// gives RFC 9162's tree (the tests hold it to [`merkle_root`] and [`inclusion_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|level| level.len() > 1) {
            let up = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [alone] => *alone,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(up);
        }
        Self { levels }
    }

    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|top| top.first()) {
            Some(root) if !self.levels[0].is_empty() => *root,
            _ => Sha256::digest([]).into(),
        }
    }

    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The audit path of leaf `index`, as [`inclusion_path`] gives it.
    pub fn path(&self, mut index: usize) -> Vec<Hash> {
        let mut path = Vec::new();
        if index >= self.len() {
            return path;
        }
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if sibling < level.len() {
                path.push(level[sibling]);
            }
            index /= 2;
        }
        path
    }
}

/// Whether `path` proves `leaf` at `index` of a tree of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// What a digest's signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestStatement {
    pub digest_id: i64,
    pub created_at: DateTime<Utc>,
    /// How many streams (leaves) the tree has.
    pub streams: u64,
    pub root: Hash,
}

impl DigestStatement {
    /// The signed bytes: `planledger.digest.v1`, a line feed, and the canonical JSON of
    /// `{createdAt, digestId, root (hex), streams}`.
    pub fn message(&self) -> Vec<u8> {
        let body = serde_json::json!({
            "digestId": self.digest_id,
            "createdAt": self.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "streams": self.streams,
            "root": to_hex(&self.root),
        });
        let mut message = format!("{DIGEST_FORMAT}\n").into_bytes();
        message.extend(canonical_json(&body));
        message
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("an Ed25519 private key is 64 hexadecimal digits (its 32-byte seed)")]
    NotASeed,
    #[error("an Ed25519 public key is 64 hexadecimal digits")]
    NotAPublicKey,
    #[error("no randomness to make a key from")]
    NoRandomness,
}

/// The key digests are signed with. Its `Debug` shows only the key id.
pub struct SigningKey {
    pair: signature::Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.public_key().key_id()).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// From the 32-byte seed, in hexadecimal (what `planledger keygen` prints).
    pub fn from_hex(seed: &str) -> Result<Self, KeyError> {
        let seed = from_hex(seed.trim()).filter(|s| s.len() == 32).ok_or(KeyError::NotASeed)?;
        let pair = signature::Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::NotASeed)?;
        Ok(Self { pair })
    }

    /// A new key; its seed in hexadecimal, to keep.
    pub fn generate() -> Result<(Self, String), KeyError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| KeyError::NoRandomness)?;
        let hex = to_hex(&seed);
        Ok((Self::from_hex(&hex)?, hex))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

/// A key that verifies digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = from_hex(text.trim()).ok_or(KeyError::NotAPublicKey)?;
        Ok(Self(bytes.try_into().map_err(|_| KeyError::NotAPublicKey)?))
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// The key's name in digests: the first 16 hexadecimal digits of SHA-256 of the key.
    pub fn key_id(&self) -> String {
        to_hex(&Sha256::digest(self.0)[..8])
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, self.0).verify(message, signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&format!("store-{i}"), i as i64 + 1, &[i as u8; 32])).collect()
    }

    #[test]
    fn every_leaf_of_every_tree_size_is_proved_and_no_other() {
        for n in 1..=33 {
            let leaves = leaves(n);
            let root = merkle_root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let path = inclusion_path(&leaves, i);
                assert!(verify_inclusion(i as u64, n as u64, leaf, &path, &root), "leaf {i} of {n}");
                let other = leaf_hash("intruder", 1, &GENESIS);
                assert!(!verify_inclusion(i as u64, n as u64, &other, &path, &root));
                if n > 1 {
                    let elsewhere = (i + 1) % n;
                    assert!(!verify_inclusion(elsewhere as u64, n as u64, leaf, &path, &root), "moved {i} of {n}");
                    let other_root = merkle_root(&leaves[..n - 1]);
                    assert!(!verify_inclusion(i as u64, n as u64, leaf, &path, &other_root), "root {i} of {n}");
                }
            }
        }
    }

    #[test]
    fn the_tree_kept_whole_is_the_recursive_one() {
        for n in 0..=40 {
            let leaves = leaves(n);
            let tree = MerkleTree::new(leaves.clone());
            assert_eq!(tree.root(), merkle_root(&leaves), "root of {n}");
            for i in 0..n {
                assert_eq!(tree.path(i), inclusion_path(&leaves, i), "path of {i} of {n}");
            }
        }
    }

    #[test]
    fn the_canonical_form_sorts_keys_at_every_depth_and_has_no_whitespace() {
        let value = serde_json::json!({"b": {"z": 1, "a": [true, null, "x\"y\n"]}, "a": 2});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            r#"{"a":2,"b":{"a":[true,null,"x\"y\n"],"z":1}}"#
        );
    }

    fn event(data: &Value) -> EventFields<'_> {
        EventFields {
            stream_id: "store-1",
            version: 1,
            event_id: Uuid::nil(),
            event_type: "TrialStarted",
            schema_version: 1,
            data,
            correlation_id: "c-1",
            causation_id: None,
            idempotency_key: Some("k"),
            actor: "svc",
            catalog_fingerprint: "f",
            recorded_at: DateTime::from_timestamp_micros(1_800_000_000_000_001).unwrap(),
        }
    }

    #[test]
    fn an_event_hash_is_pinned_so_that_the_form_cannot_change_silently() {
        let data = serde_json::json!({"planId": "trial", "days": 14});
        let canonical = String::from_utf8(canonical_event(&event(&data))).unwrap();
        assert_eq!(
            canonical,
            r#"{"actor":"svc","catalogFingerprint":"f","causationId":null,"correlationId":"c-1","data":{"days":14,"planId":"trial"},"eventId":"00000000-0000-0000-0000-000000000000","format":"planledger.event.v1","idempotencyKey":"k","recordedAt":"2027-01-15T08:00:00.000001Z","schemaVersion":1,"streamId":"store-1","type":"TrialStarted","version":1}"#
        );
        let hash = event_hash(&GENESIS, &event(&data));
        assert_eq!(hash, chain(&GENESIS, canonical.as_bytes()));
        let mut changed = event(&data);
        changed.version = 2;
        assert_ne!(event_hash(&GENESIS, &changed), hash);
        assert_ne!(event_hash(&hash, &event(&data)), hash);
    }

    #[test]
    fn a_signature_verifies_with_its_key_only_and_only_over_its_statement() {
        let (key, seed) = SigningKey::generate().unwrap();
        assert_eq!(SigningKey::from_hex(&seed).unwrap().public_key(), key.public_key());
        let statement = DigestStatement {
            digest_id: 7,
            created_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            streams: 3,
            root: [9; 32],
        };
        let signature = key.sign(&statement.message());
        assert!(key.public_key().verifies(&statement.message(), &signature));
        let (other, _) = SigningKey::generate().unwrap();
        assert!(!other.public_key().verifies(&statement.message(), &signature));
        let moved = DigestStatement { streams: 4, ..statement };
        assert!(!key.public_key().verifies(&moved.message(), &signature));
        assert_eq!(key.public_key().key_id().len(), 16);
        assert!(!format!("{key:?}").contains(&seed));
        assert_eq!(SigningKey::from_hex("abc").unwrap_err(), KeyError::NotASeed);
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(from_hex(&to_hex(&[0, 1, 0xab, 0xff])).unwrap(), vec![0, 1, 0xab, 0xff]);
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
        assert_eq!(hash_from_hex(&to_hex(&[5; 32])), Some([5; 32]));
    }
}
