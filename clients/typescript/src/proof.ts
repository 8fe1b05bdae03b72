// Checks a store's proof (`GET /v1/stores/{id}/proof`) against a signed digest with nothing but
// the proof and the public keys you trust: no access to the ledger or its database. The rules
// are docs/audit-chain.md's; `planledger-chain` (Rust) is the reference implementation.

import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";

import type { components } from "./schema.js";

export type Proof = components["schemas"]["Proof"];
export type SignedDigest = components["schemas"]["SignedDigest"];
export type Receipt = components["schemas"]["Receipt"];

/** Why a proof does not verify: `reason` is stable, `message` says where. */
export class ProofError extends Error {
  constructor(
    readonly reason:
      | "untrusted_key"
      | "bad_signature"
      | "malformed"
      | "wrong_stream"
      | "out_of_place"
      | "event_hash"
      | "not_the_leaf"
      | "leaf_head"
      | "not_included",
    message: string,
  ) {
    super(message);
    this.name = "ProofError";
  }
}

/** What a verified proof shows. */
export interface VerifiedProof {
  storeId: string;
  digestId: number;
  /** The events, read from their canonical form: envelopes with `data`. */
  events: Record<string, unknown>[];
  /** Each event's version and chain hash (hexadecimal). */
  hashes: { version: number; hash: string }[];
  /** Whether the proof covers what `receipt` says a command wrote: each event at its version, with its id and hash. */
  covers(receipt: Receipt): boolean;
}

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part);
  return hash.digest();
}

function hashOf(text: string, what: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(text)) throw new ProofError("malformed", `${what} is not 64 hexadecimal digits`);
  return Buffer.from(text, "hex");
}

function nodeHash(left: Buffer, right: Buffer): Buffer {
  return sha256(Buffer.from([1]), left, right);
}

function leafHash(streamId: string, version: number, head: Buffer): Buffer {
  const id = Buffer.from(streamId, "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32BE(id.length);
  const at = Buffer.alloc(8);
  at.writeBigUInt64BE(BigInt(version));
  return sha256(Buffer.from([0]), length, id, at, head);
}

/** RFC 9162 §2.1.3.2: whether `path` proves `leaf` at `index` of a tree of `size` leaves with `root`. */
function verifyInclusion(index: number, size: number, leaf: Buffer, path: Buffer[], root: Buffer): boolean {
  if (index >= size) return false;
  let f = BigInt(index);
  let s = BigInt(size - 1);
  let r = leaf;
  for (const p of path) {
    if (s === 0n) return false;
    if ((f & 1n) === 1n || f === s) {
      r = nodeHash(p, r);
      while ((f & 1n) === 0n && f !== 0n) {
        f >>= 1n;
        s >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    f >>= 1n;
    s >>= 1n;
  }
  return s === 0n && r.equals(root);
}

/** The bytes a digest's signature covers. */
function digestMessage(digest: SignedDigest): Buffer {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(digest.createdAt)) {
    throw new ProofError("malformed", "the digest's createdAt is not RFC 3339 with six fractional digits");
  }
  // Keys in byte order, no whitespace: the canonical JSON of docs/audit-chain.md.
  const body = JSON.stringify({
    createdAt: digest.createdAt,
    digestId: digest.digestId,
    root: digest.root,
    streams: digest.streams,
  });
  return Buffer.from(`planledger.digest.v1\n${body}`, "utf8");
}

/** Checks the digest's signature with one of `trustedKeys` (hexadecimal Ed25519 public keys). */
export function verifyDigest(digest: SignedDigest, trustedKeys: readonly string[]): void {
  if (!trustedKeys.map((k) => k.toLowerCase()).includes(digest.publicKey)) {
    throw new ProofError("untrusted_key", `the digest is signed by key ${digest.keyId}, which is not trusted`);
  }
  hashOf(digest.root, "the digest's root");
  const raw = hashOf(digest.publicKey, "the digest's publicKey");
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
  if (!/^[0-9a-f]{128}$/.test(digest.signature)) throw new ProofError("malformed", "the digest's signature");
  if (!verifySignature(null, digestMessage(digest), key, Buffer.from(digest.signature, "hex"))) {
    throw new ProofError("bad_signature", "the digest's signature does not verify");
  }
}

/**
 * Checks `proof` with `trustedKeys` only: the digest's signature, the chain from `previousHash`
 * through every event, and the store's leaf in the signed tree. Throws `ProofError`.
 */
export function verifyProof(proof: Proof, trustedKeys: readonly string[]): VerifiedProof {
  verifyDigest(proof.digest, trustedKeys);
  if (proof.streamId !== `store-${proof.storeId}`) {
    throw new ProofError("wrong_stream", `the proof's stream ${proof.streamId} is not the store's`);
  }
  if (proof.events.length === 0) throw new ProofError("malformed", "the proof has no events");
  let previous = hashOf(proof.previousHash, "previousHash");
  const events: Record<string, unknown>[] = [];
  const hashes: { version: number; hash: string }[] = [];
  const first = proof.events[0]!.version;
  proof.events.forEach((event, i) => {
    let envelope: Record<string, unknown>;
    try {
      envelope = JSON.parse(event.canonical) as Record<string, unknown>;
    } catch {
      throw new ProofError("malformed", `event ${event.version}'s canonical form is not JSON`);
    }
    if (event.version !== first + i || envelope.version !== event.version || envelope.streamId !== proof.streamId) {
      throw new ProofError("out_of_place", `event ${event.version} does not follow the one before it`);
    }
    const recomputed = sha256(previous, Buffer.from(event.canonical, "utf8"));
    if (!recomputed.equals(hashOf(event.hash, "an event's hash"))) {
      throw new ProofError("event_hash", `event ${event.version}'s hash does not follow from its content`);
    }
    previous = recomputed;
    events.push(envelope);
    hashes.push({ version: event.version, hash: recomputed.toString("hex") });
  });
  const last = proof.events[proof.events.length - 1]!.version;
  if (last !== proof.leaf.version) {
    throw new ProofError("not_the_leaf", `the events end at version ${last}, not at the leaf's ${proof.leaf.version}`);
  }
  const head = hashOf(proof.leaf.head, "the leaf's head");
  if (!head.equals(previous)) throw new ProofError("leaf_head", "the leaf's head is not the last event's hash");
  const path = proof.path.map((p) => hashOf(p, "the path"));
  const root = hashOf(proof.digest.root, "the digest's root");
  if (!verifyInclusion(proof.leaf.index, proof.digest.streams, leafHash(proof.streamId, last, head), path, root)) {
    throw new ProofError("not_included", "the leaf is not in the digest's tree");
  }
  return {
    storeId: proof.storeId,
    digestId: proof.digest.digestId,
    events,
    hashes,
    covers(receipt: Receipt): boolean {
      return receipt.events.every((event) => {
        const at = hashes.findIndex((h) => h.version === event.version);
        return at >= 0 && hashes[at]!.hash === event.hash && events[at]!.eventId === event.eventId;
      });
    },
  };
}
