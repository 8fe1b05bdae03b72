//! The log's tamper evidence in the database (docs/audit-chain.md): every stream's chain
//! recomputed from its events, and signed digests over every stream's head.
//!
//! A chain alone catches a change made by hand (`UPDATE ledger_events ...`): the stored hashes
//! no longer follow from the events. Someone who can write the database can also recompute the
//! hashes; a digest signed with a key the database never holds catches that, for everything
//! written before the digest.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use planledger_chain::{leaf_hash, merkle_root, DigestStatement, PublicKey, SigningKey};

use crate::rows::Kind;
use crate::sql::{Row, Statement};
use crate::types::{hash_of, Rechain};
use crate::{AnyEventLog, AnyTx, Checkpoint, EventLog, Hash, StoreError, StreamId, Version};

/// One stream's last version and its chain hash: a leaf of a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub stream: StreamId,
    pub version: Version,
    pub head: Hash,
}

impl StreamHead {
    pub fn leaf(&self) -> Hash {
        leaf_hash(self.stream.as_str(), self.version, &self.head)
    }
}

/// A digest as stored: its signed statement, the key that signed it, and its leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub digest_id: i64,
    pub created_at: DateTime<Utc>,
    pub streams: u64,
    pub root: Hash,
    pub key_id: String,
    pub public_key: PublicKey,
    pub signature: Vec<u8>,
    /// The tree's leaves, streams in byte order of their ids; empty when listed without them.
    pub heads: Vec<StreamHead>,
}

impl Digest {
    pub fn statement(&self) -> DigestStatement {
        DigestStatement {
            digest_id: self.digest_id,
            created_at: self.created_at,
            streams: self.streams,
            root: self.root,
        }
    }

    /// Whether one of `trusted` signed it (its own public key counts only if trusted).
    pub fn signed_by_one_of(&self, trusted: &[PublicKey]) -> bool {
        trusted.iter().any(|key| *key == self.public_key && key.verifies(&self.statement().message(), &self.signature))
    }

    /// The place of `stream`'s leaf in the tree.
    pub fn index_of(&self, stream: &StreamId) -> Option<usize> {
        self.heads.binary_search_by(|head| head.stream.as_str().as_bytes().cmp(stream.as_str().as_bytes())).ok()
    }

    pub fn leaves(&self) -> Vec<Hash> {
        self.heads.iter().map(StreamHead::leaf).collect()
    }
}

/// What is wrong with a stream, a digest, or the log's rows for either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// An event's content no longer gives its stored hash.
    Altered,
    /// A version is missing from the stream (an event deleted).
    Missing,
    /// Events stand in another order than they were written in.
    Reordered,
    /// The stream's row (its version and head) does not match its last event.
    HeadMismatch,
    /// The stream's chain, recomputed, is not what a signed digest holds for it.
    DigestMismatch,
    /// The digest itself: not signed by a trusted key, or its stored leaves are not its root's.
    DigestInvalid,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Altered => "altered",
            FindingKind::Missing => "missing",
            FindingKind::Reordered => "reordered",
            FindingKind::HeadMismatch => "head_mismatch",
            FindingKind::DigestMismatch => "digest_mismatch",
            FindingKind::DigestInvalid => "digest_invalid",
        }
    }
}

/// One thing `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub stream: Option<StreamId>,
    pub version: Option<Version>,
    pub detail: String,
}

/// What a verification went through and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    /// The digest the chains were checked against, if any.
    pub digest: Option<i64>,
    /// For each broken stream, the first thing wrong with it, in stream order; then what is
    /// wrong with the digest.
    pub findings: Vec<Finding>,
}

/// One stream's recomputation, event by event.
struct StreamCheck {
    stream: StreamId,
    chain: Rechain,
    next_version: Version,
    last: Option<(Checkpoint, Hash)>,
    broken: bool,
    /// The digest's leaf for this stream (version, head), checked when the chain gets there.
    leaf: Option<(Version, Hash)>,
    leaf_checked: bool,
}

impl StreamCheck {
    fn new(stream: StreamId, leaf: Option<(Version, Hash)>) -> Self {
        Self {
            stream,
            chain: Rechain::default(),
            next_version: 1,
            last: None,
            broken: false,
            leaf,
            leaf_checked: false,
        }
    }

    fn finding(&self, kind: FindingKind, version: Version, detail: String) -> Finding {
        Finding { kind, stream: Some(self.stream.clone()), version: Some(version), detail }
    }

    /// Takes the next event as read (in version order); returns what is wrong, once per stream.
    fn next(&mut self, event: &crate::RecordedEvent, following: Option<&crate::RecordedEvent>) -> Vec<Finding> {
        let mut found = Vec::new();
        if self.broken {
            return found;
        }
        if event.version != self.next_version {
            self.broken = true;
            found.push(self.finding(
                FindingKind::Missing,
                self.next_version,
                format!("version {} is missing: the next event stored is version {}", self.next_version, event.version),
            ));
            return found;
        }
        let recomputed = self.chain.next(event);
        if recomputed != event.hash {
            self.broken = true;
            // Written out of order: an event whose neighbour in the stream was written after it
            // stands before it, or the other way round.
            let written_before = |a: Checkpoint, b: Checkpoint| a < b;
            let out_of_order = self.last.is_some_and(|(previous, _)| written_before(event.checkpoint, previous))
                || following.is_some_and(|next| {
                    next.version == event.version + 1 && written_before(next.checkpoint, event.checkpoint)
                });
            let (kind, what) = if out_of_order {
                (FindingKind::Reordered, "stands out of the order it was written in")
            } else {
                (FindingKind::Altered, "does not give its stored hash: it was changed")
            };
            found.push(self.finding(
                kind,
                event.version,
                format!("event {} at version {} {what}", event.event_id, event.version),
            ));
        }
        if let Some((version, head)) = self.leaf.filter(|(version, _)| *version == event.version) {
            self.leaf_checked = true;
            if recomputed != head {
                found.push(self.finding(
                    FindingKind::DigestMismatch,
                    version,
                    format!("the chain up to version {version} is not what the digest signed"),
                ));
            }
        }
        self.last = Some((event.checkpoint, event.hash));
        self.next_version = event.version + 1;
        found
    }

    /// After the stream's last event: its row and the digest's leaf agree with it.
    fn finish(&self, row: Option<&(Version, Hash)>) -> Vec<Finding> {
        let mut found = Vec::new();
        let last_version = self.next_version - 1;
        if let Some((version, head)) = row {
            if !self.broken && *version > last_version {
                found.push(self.finding(
                    FindingKind::Missing,
                    last_version + 1,
                    format!("the stream is at version {version} but its events end at {last_version}"),
                ));
            } else if !self.broken && (*version != last_version || Some(*head) != self.last.map(|(_, h)| h)) {
                found.push(self.finding(
                    FindingKind::HeadMismatch,
                    *version,
                    format!("the stream's row says version {version}, which is not its last event's"),
                ));
            }
        }
        if let Some((version, _)) = self.leaf.filter(|_| !self.leaf_checked) {
            found.push(self.finding(
                FindingKind::DigestMismatch,
                version,
                format!("the digest holds version {version} of this stream, which the log does not have"),
            ));
        }
        found
    }
}

/// How many events a verification reads at a time.
const PAGE: i64 = 5_000;

impl AnyEventLog {
    /// Every stream's version and head, streams in byte order of their ids.
    pub async fn stream_heads(&self) -> Result<Vec<StreamHead>, StoreError> {
        let sql = "SELECT stream_id, version, head FROM ledger_streams";
        let rows: Vec<(String, i64, Option<Vec<u8>>)> = match self {
            Self::Postgres(log) => sqlx::query_as(sql).fetch_all(log.pool()).await?,
            Self::Sqlite(log) => sqlx::query_as(sql).fetch_all(log.readers()).await?,
        };
        let mut heads = rows
            .into_iter()
            .map(|(stream, version, head)| {
                Ok(StreamHead {
                    stream: StreamId::parse(stream).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    version,
                    head: hash_of(head.as_deref())?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        heads.sort_unstable_by(|a, b| a.stream.as_str().as_bytes().cmp(b.stream.as_str().as_bytes()));
        Ok(heads)
    }

    /// Recomputes the chain of every stream (or of `only`) from its events, and checks it
    /// against `digest`'s leaves (whose signature the caller checked) if one is given.
    pub async fn verify_chains(
        &self,
        only: Option<&StreamId>,
        digest: Option<&Digest>,
    ) -> Result<VerifyReport, StoreError> {
        let rows: HashMap<String, (Version, Hash)> = self
            .stream_heads()
            .await?
            .into_iter()
            .filter(|head| only.is_none_or(|only| *only == head.stream))
            .map(|head| (head.stream.as_str().to_owned(), (head.version, head.head)))
            .collect();
        let leaves: HashMap<&str, (Version, Hash)> = digest
            .map(|d| d.heads.iter().map(|h| (h.stream.as_str(), (h.version, h.head))).collect())
            .unwrap_or_default();
        let mut report = VerifyReport { digest: digest.map(|d| d.digest_id), ..VerifyReport::default() };
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut current: Option<StreamCheck> = None;
        let mut after: Option<(StreamId, Version)> = None;
        loop {
            let page = match only {
                Some(stream) => self.read_stream(stream, after.as_ref().map_or(1, |(_, v)| v + 1), PAGE).await?,
                None => self.read_by_stream(after.as_ref().map(|(s, v)| (s, *v)), PAGE).await?,
            };
            for (i, event) in page.iter().enumerate() {
                if current.as_ref().is_none_or(|c| c.stream != event.stream_id) {
                    if let Some(done) = current.take() {
                        report.findings.extend(done.finish(rows.get(done.stream.as_str())));
                    }
                    report.streams += 1;
                    seen.insert(event.stream_id.as_str().to_owned());
                    let leaf = leaves.get(event.stream_id.as_str()).copied();
                    current = Some(StreamCheck::new(event.stream_id.clone(), leaf));
                }
                report.events += 1;
                if let Some(check) = current.as_mut() {
                    report.findings.extend(check.next(event, page.get(i + 1)));
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = Some((last.stream_id.clone(), last.version)),
                _ => break,
            }
        }
        if let Some(done) = current.take() {
            report.findings.extend(done.finish(rows.get(done.stream.as_str())));
        }
        // Streams with a row or a leaf but no events at all.
        let mut empty: Vec<(&str, Version)> = rows
            .iter()
            .map(|(s, (v, _))| (s.as_str(), *v))
            .chain(leaves.iter().map(|(s, (v, _))| (*s, *v)))
            .filter(|(s, _)| !seen.contains(*s) && only.is_none_or(|only| only.as_str() == *s))
            .collect();
        empty.sort_unstable();
        empty.dedup_by_key(|(s, _)| *s);
        for (stream, version) in empty {
            report.findings.push(Finding {
                kind: FindingKind::Missing,
                stream: StreamId::parse(stream).ok(),
                version: Some(1),
                detail: format!("the stream is at version {version} but none of its events is in the log"),
            });
        }
        Ok(report)
    }

    /// Signs a digest of every stream's head now with `key`, stores it and returns it. Digests
    /// are numbered in one order: a digest's number is taken under a lock on the table (on
    /// SQLite, the one writer), so two nodes making one at once wait for each other.
    pub async fn make_digest(&self, key: &SigningKey, now: DateTime<Utc>) -> Result<Digest, StoreError> {
        let created_at = crate::truncate_to_micros(now);
        let heads = self.stream_heads().await?;
        let leaves: Vec<Hash> = heads.iter().map(StreamHead::leaf).collect();
        let root = merkle_root(&leaves);
        let public_key = key.public_key();
        let mut tx = self.begin().await?;
        if let AnyTx::Postgres(pg) = &mut tx {
            sqlx::query("LOCK TABLE ledger_digests IN SHARE ROW EXCLUSIVE MODE").execute(&mut **pg).await?;
        }
        let next = Statement::new("SELECT coalesce(max(digest_id), 0) + 1 FROM ledger_digests");
        let digest_id = match tx.fetch_optional(&next, &[Kind::Int]).await? {
            Some(row) => row.int(0)?,
            None => 1,
        };
        let statement = DigestStatement { digest_id, created_at, streams: heads.len() as u64, root };
        let digest = Digest {
            digest_id,
            created_at,
            streams: statement.streams,
            root,
            key_id: public_key.key_id(),
            public_key,
            signature: key.sign(&statement.message()).to_vec(),
            heads,
        };
        let insert = Statement::new(
            "INSERT INTO ledger_digests (digest_id, @created_at, streams, root, key_id, public_key, signature, heads)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(digest.digest_id)
        .bind(digest.created_at)
        .bind(digest.streams as i64)
        .bind(digest.root.as_slice())
        .bind(&digest.key_id)
        .bind(digest.public_key.0.as_slice())
        .bind(digest.signature.as_slice())
        .bind(encode_heads(&digest.heads).as_slice());
        tx.execute(&insert).await?;
        self.commit(tx).await?;
        Ok(digest)
    }

    /// Up to `limit` digests before `before` (all if `None`), newest first, without their leaves.
    pub async fn digests(&self, before: Option<i64>, limit: i64) -> Result<Vec<Digest>, StoreError> {
        let statement = Statement::new(format!(
            "SELECT {DIGEST_COLUMNS} FROM ledger_digests WHERE digest_id < $1 ORDER BY digest_id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit);
        self.fetch(&statement, &DIGEST_KINDS).await?.iter().map(|row| digest_of(row, false)).collect()
    }

    /// Digest `id` with its leaves (the latest if `None`), if there is one.
    pub async fn digest(&self, id: Option<i64>) -> Result<Option<Digest>, StoreError> {
        let statement = Statement::new(format!(
            "SELECT {DIGEST_COLUMNS}, heads FROM ledger_digests WHERE digest_id <= $1 ORDER BY digest_id DESC LIMIT 1"
        ))
        .bind(id.unwrap_or(i64::MAX));
        let kinds: Vec<Kind> = DIGEST_KINDS.iter().copied().chain([Kind::Bytes]).collect();
        match self.fetch_optional(&statement, &kinds).await?.map(|row| digest_of(&row, true)).transpose()? {
            Some(digest) if id.is_some_and(|id| id != digest.digest_id) => Ok(None),
            found => Ok(found),
        }
    }
}

/// A digest's columns but its leaves, and their kinds.
const DIGEST_COLUMNS: &str = "digest_id, @created_at, streams, root, key_id, public_key, signature";
const DIGEST_KINDS: [Kind; 7] = [Kind::Int, Kind::Time, Kind::Int, Kind::Bytes, Kind::Text, Kind::Bytes, Kind::Bytes];

/// A digest from its row; with its leaves (the row's last column) if `with_heads`.
fn digest_of(row: &Row, with_heads: bool) -> Result<Digest, StoreError> {
    let digest_id = row.int(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("digest {digest_id}: {what}"));
    Ok(Digest {
        digest_id,
        created_at: row.time(1)?,
        streams: row.int(2)? as u64,
        root: row.bytes(3)?.try_into().map_err(|_| corrupt("root is not 32 bytes"))?,
        key_id: row.text(4)?,
        public_key: PublicKey(row.bytes(5)?.try_into().map_err(|_| corrupt("public key is not 32 bytes"))?),
        signature: row.bytes(6)?,
        heads: if with_heads { decode_heads(&row.bytes(7)?)? } else { Vec::new() },
    })
}

/// The leaves as stored: for each, the stream id's length (u32, big-endian), the id, the
/// version (u64, big-endian) and the head: the same bytes a leaf hash covers.
fn encode_heads(heads: &[StreamHead]) -> Vec<u8> {
    let mut out = Vec::with_capacity(heads.len() * 84);
    for head in heads {
        out.extend((head.stream.as_str().len() as u32).to_be_bytes());
        out.extend(head.stream.as_str().as_bytes());
        out.extend((head.version as u64).to_be_bytes());
        out.extend(head.head);
    }
    out
}

fn decode_heads(mut bytes: &[u8]) -> Result<Vec<StreamHead>, StoreError> {
    let corrupt = || StoreError::Corrupt("a digest's stored heads are cut short".into());
    let mut heads = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes.get(..4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as usize;
        bytes = &bytes[4..];
        let stream = std::str::from_utf8(bytes.get(..len).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        let stream = StreamId::parse(stream).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        bytes = &bytes[len..];
        let version = u64::from_be_bytes(bytes.get(..8).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
        let head: Hash = bytes.get(8..40).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?;
        bytes = &bytes[40..];
        heads.push(StreamHead { stream, version: version as Version, head });
    }
    Ok(heads)
}

/// Checks a digest itself: signed by one of `trusted`, and its stored leaves give its root.
pub fn check_digest(digest: &Digest, trusted: &[PublicKey]) -> Vec<Finding> {
    let mut found = Vec::new();
    let invalid = |detail: String| Finding { kind: FindingKind::DigestInvalid, stream: None, version: None, detail };
    if !digest.signed_by_one_of(trusted) {
        found.push(invalid(format!(
            "digest {} is not signed by a trusted key (it names key {})",
            digest.digest_id, digest.key_id
        )));
    }
    if merkle_root(&digest.leaves()) != digest.root || digest.heads.len() as u64 != digest.streams {
        found
            .push(invalid(format!("digest {}'s stored heads are not the ones its root was made of", digest.digest_id)));
    }
    found
}
