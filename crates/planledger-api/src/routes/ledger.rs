//! The handlers of tamper evidence (docs/audit-chain.md): signed digests, and the proof that a
//! store's events are the ones a digest signed.

use std::sync::Arc;

use planledger_store::audit::Digest;

use super::*;

/// A digest and its tree, as proofs are made against it.
#[derive(Debug)]
pub struct Proving {
    digest: Digest,
    tree: planledger_chain::MerkleTree,
}

/// Digest `id` (the latest if `None`) with its leaves, from the node's copy when it is the
/// one proved against last.
async fn proving(app: &AppState, id: Option<i64>) -> Result<Arc<Proving>, ApiError> {
    let log = app.service.reads();
    let id = match id {
        Some(id) => id,
        None => log.digests(None, 1).await?.first().map(|d| d.digest_id).ok_or(ApiError::DigestNotFound)?,
    };
    let cached = app.digests.proving.lock().ok().and_then(|held| held.clone());
    if let Some(proving) = cached.filter(|p| p.digest.digest_id == id) {
        return Ok(proving);
    }
    let digest = log.digest(Some(id)).await?.ok_or(ApiError::DigestNotFound)?;
    let proving = Arc::new(Proving { tree: planledger_chain::MerkleTree::new(digest.leaves()), digest });
    if let Ok(mut held) = app.digests.proving.lock() {
        *held = Some(proving.clone());
    }
    Ok(proving)
}

/// A stored digest as the contract shows it.
pub(crate) fn signed_digest(digest: &Digest) -> wire::SignedDigest {
    wire::SignedDigest {
        digest_id: digest.digest_id,
        created_at: digest.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        streams: digest.streams,
        root: planledger_chain::to_hex(&digest.root),
        key_id: digest.key_id.clone(),
        public_key: digest.public_key.to_hex(),
        signature: planledger_chain::to_hex(&digest.signature),
    }
}

/// The signed digests, newest first.
#[utoipa::path(get, path = "/v1/ledger/digests", tag = "history", operation_id = "listDigests",
    params(
        ("before" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^[1-9][0-9]{0,17}$"),
        ("limit" = Option<i64>, Query, description = "Default 20", minimum = 1, maximum = 100),
    ),
    responses(
        (status = 200, description = "A page of digests, newest first", body = wire::DigestList),
        rs::Unauthorized,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn list_digests(State(app): State<AppState>, params: Params) -> Reply {
    let limit = params.int("limit", 20, 1..=100)?;
    let before = params.get("before").map(|_| params.int("before", 0, 1..=i64::MAX)).transpose()?;
    let mut digests = app.service.reads().digests(before, limit + 1).await?;
    let more = digests.len() as i64 > limit;
    digests.truncate(limit as usize);
    let next_cursor = if more { digests.last().map(|d| d.digest_id.to_string()) } else { None };
    Ok(Json::ok(&wire::DigestList { items: digests.iter().map(signed_digest).collect(), next_cursor }).into_response())
}

/// Makes a digest of every stream's head now, signed with the server's key.
#[utoipa::path(post, path = "/v1/ledger/digests", tag = "history", operation_id = "makeDigest",
    responses(
        (status = 201, description = "The digest, stored", body = wire::SignedDigest),
        rs::Unauthorized,
        (status = 409, description = "`digest_key_missing`: the server has no signing key", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn make_digest(State(app): State<AppState>) -> Reply {
    let key = app.digests.key.as_ref().ok_or(ApiError::DigestKeyMissing)?;
    let digest = app.service.log().make_digest(key, app.service.clock().now()).await?;
    Ok(Json::new(StatusCode::CREATED, &signed_digest(&digest)).into_response())
}

/// The most events one proof carries.
const MAX_PROVEN_EVENTS: i64 = 1_000;

/// What an auditor needs to check a store's events against a signed digest, without the
/// ledger's database: the digest, the events from `version` to the store's version in it in
/// their canonical form with their hashes, and the store's place in the digest's tree.
#[utoipa::path(get, path = "/v1/stores/{id}/proof", tag = "history", operation_id = "proveStore",
    params(
        rs::StorePath,
        ("version" = Option<i64>, Query, description = "The first version to prove; default the store's version in the digest", minimum = 1),
        ("digest" = Option<i64>, Query, description = "The digest to prove against; default the latest", minimum = 1),
    ),
    responses(
        (status = 200, description = "The proof; check it with `Proof::verify` (planledger-client) or `verifyProof` (TypeScript)", body = wire::Proof),
        rs::Unauthorized,
        (status = 404, description = "`store_not_found`, `digest_not_found`, `not_in_digest`", body = wire::ErrorBody),
        (status = 409, description = "`not_yet_digested`: the version was written after the digest", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed`: more than 1000 events from `version`", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn prove_store(State(app): State<AppState>, Path(id): Path<String>, params: Params) -> Reply {
    let store = store_id(&id)?;
    let digest_id = params.get("digest").map(|_| params.int("digest", 0, 1..=i64::MAX)).transpose()?;
    let from = params.get("version").map(|_| params.int("version", 0, 1..=i64::MAX)).transpose()?;
    let log = app.service.reads();
    let stream = StreamId::parse(store.stream_name()).map_err(|_| ApiError::store_not_found())?;
    if log.stream_version(&stream).await? == 0 {
        return Err(ApiError::store_not_found());
    }
    let proving = proving(&app, digest_id).await?;
    let digest = &proving.digest;
    let index = digest.index_of(&stream).ok_or(ApiError::NotInDigest(digest.digest_id))?;
    let leaf = &digest.heads[index];
    let from = from.unwrap_or(leaf.version);
    if from > leaf.version {
        return Err(ApiError::NotYetDigested { digest: digest.digest_id, version: from, at: leaf.version });
    }
    if leaf.version - from >= MAX_PROVEN_EVENTS {
        return Err(ApiError::validation(
            "version",
            format!(
                "a proof carries at most {MAX_PROVEN_EVENTS} events: ask from version {} or later",
                leaf.version - MAX_PROVEN_EVENTS + 1
            ),
        ));
    }
    let first = (from - 1).max(1);
    let read = log.read_stream(&stream, first, leaf.version - first + 1).await?;
    let previous_hash =
        if from == 1 { planledger_store::GENESIS } else { read.first().map_or(planledger_store::GENESIS, |e| e.hash) };
    let events = read
        .iter()
        .filter(|event| event.version >= from)
        .map(|event| wire::ProvenEvent {
            version: event.version,
            canonical: String::from_utf8_lossy(&planledger_chain::canonical_event(&event.chain_fields())).into_owned(),
            hash: planledger_chain::to_hex(&event.hash),
        })
        .collect();
    let path = proving.tree.path(index);
    let proof = wire::Proof {
        store_id: store.as_uuid(),
        stream_id: stream.as_str().to_owned(),
        digest: signed_digest(digest),
        previous_hash: planledger_chain::to_hex(&previous_hash),
        events,
        leaf: wire::ProofLeaf {
            index: index as u64,
            version: leaf.version,
            head: planledger_chain::to_hex(&leaf.head),
        },
        path: path.iter().map(|p| planledger_chain::to_hex(p)).collect(),
    };
    Ok(Json::ok(&proof).into_response())
}
