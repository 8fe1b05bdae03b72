// Receipts, a signed digest and a store's proof from a real `planledger serve`, checked offline
// by `verifyProof`; tampering with the proof fails it.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";

import { PlanledgerClient, ProofError, verifyProof, type Proof, type Receipt } from "../src/index.js";
import { binary, startLedger, type Ledger } from "./ledger.js";

let ledger: Ledger;
let publicKey: string;
let otherKey: string;

function keygen(): { privateKey: string; publicKey: string } {
  return JSON.parse(execFileSync(binary(), ["keygen", "--json"], { encoding: "utf8" })) as {
    privateKey: string;
    publicKey: string;
  };
}

before(async () => {
  const key = keygen();
  publicKey = key.publicKey;
  otherKey = keygen().publicKey;
  ledger = await startLedger({ PLANLEDGER_DIGEST_KEY: key.privateKey, PLANLEDGER_DIGEST_EVERY: "forever" });
});

after(async () => {
  await ledger?.stop();
});

function rejects(proof: Proof, reason: ProofError["reason"], keys = [publicKey]) {
  assert.throws(() => verifyProof(proof, keys), (error: unknown) => error instanceof ProofError && error.reason === reason);
}

test("a proof from the ledger verifies offline, covers the receipts, and fails when tampered with", async () => {
  const service = new PlanledgerClient({ baseUrl: ledger.url, token: ledger.serviceToken });
  const admin = new PlanledgerClient({ baseUrl: ledger.url, token: ledger.adminToken });
  const receipts: Receipt[] = [];
  const store = await service.registerStore({ name: "Audited" });
  receipts.push(store.receipt!);
  for (const name of ["Neighbour 1", "Neighbour 2"]) await service.registerStore({ name });
  const trial = await service.startTrial(store.storeId, {});
  receipts.push(trial.receipt!);
  const consumed = await service.consume(store.storeId, { action: "create_article" });
  receipts.push(consumed.receipt!);
  assert.equal(consumed.receipt!.events[0]!.version, trial.receipt!.version + 1);

  const digest = await admin.makeDigest();
  assert.equal(digest.publicKey, publicKey);
  assert.equal((await service.digests()).items[0]!.digestId, digest.digestId);
  const proof = await service.proof(store.storeId, { version: 1 });

  const verified = verifyProof(proof, [publicKey]);
  assert.equal(verified.events[0]!.type, "StoreRegistered");
  for (const receipt of receipts) assert.ok(verified.covers(receipt));
  assert.equal(verified.covers({ ...consumed.receipt!, events: [{ ...consumed.receipt!.events[0]!, hash: "0".repeat(64) }] }), false);

  rejects({ ...proof, events: proof.events.map((e, i) => (i === 1 ? { ...e, canonical: e.canonical.replace("Trial", "Trail") } : e)) }, "event_hash");
  rejects({ ...proof, events: [proof.events[0]!, proof.events[2]!, proof.events[1]!] }, "out_of_place");
  rejects({ ...proof, path: proof.path.map((p, i) => (i === 0 ? "0".repeat(64) : p)) }, "not_included");
  rejects({ ...proof, digest: { ...proof.digest, root: "1".repeat(64) } }, "bad_signature");
  rejects(proof, "untrusted_key", [otherKey]);
});
