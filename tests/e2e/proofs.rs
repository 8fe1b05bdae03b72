//! Provable audit, end to end (issue 36): command answers carry receipts, digests are signed
//! with the configured key, a store's proof verifies with nothing but the proof and the key
//! (the database gone), a tampered proof does not, and `planledger verify` names an event
//! changed by hand.

use planledger_chain::{PublicKey, SigningKey};
use planledger_client::wire::{self, proof::ProofError};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server};

fn with_key(seed: &str) -> Options {
    Options {
        env: vec![("PLANLEDGER_DIGEST_KEY", seed.to_owned()), ("PLANLEDGER_DIGEST_EVERY", "forever".to_owned())],
        ..Options::default()
    }
}

fn receipt(answer: &Value) -> wire::Receipt {
    let receipt = answer
        .get("receipt")
        .or_else(|| answer["store"].get("receipt"))
        .unwrap_or_else(|| panic!("no receipt in {answer}"));
    serde_json::from_value(receipt.clone()).unwrap()
}

async fn proofs_verify_offline_and_tampering_fails(backend: Backend) {
    let Some(db) = Db::create(backend, "proofs_verify_offline").await else { return };
    let (key, seed) = SigningKey::generate().unwrap();
    let trusted = [key.public_key()];
    let server = Server::start(db.url(), &with_key(&seed));

    let (status, registered) = server.post("/v1/stores", json!({"name": "Proven"})).await;
    assert_eq!(status, 201, "{registered}");
    let store = registered["storeId"].as_str().unwrap().to_owned();
    let first = receipt(&registered);
    assert_eq!((first.events.len(), first.version), (1, 1));
    assert_eq!(first.head, first.events[0].hash, "the head is the last event's hash");
    for name in ["Other 1", "Other 2", "Other 3"] {
        server.register(name).await;
    }
    let (status, trial) = server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    assert_eq!(status, 201, "{trial}");
    let consume = format!("/v1/stores/{store}/quota/consume");
    let (status, consumed) = server.post_keyed(&consume, "proof-key-1", json!({"action": "create_article"})).await;
    assert_eq!(status, 200, "{consumed}");
    let consumed_receipt = receipt(&consumed);
    assert_eq!(consumed_receipt.events[0].version, receipt(&trial).version + 1, "chained after the trial");
    let (_, replayed) = server.post_keyed(&consume, "proof-key-1", json!({"action": "create_article"})).await;
    assert_eq!(receipt(&replayed), consumed_receipt, "a replay carries the first answer's receipt");
    let (status, authorized) =
        server.post(&format!("/v1/stores/{store}/authorize"), json!({"action": "create_article"})).await;
    assert_eq!(status, 200, "{authorized}");
    assert!(authorized.get("receipt").is_none(), "a check records nothing: {authorized}");

    let (status, body) = server.get(&format!("/v1/stores/{store}/proof")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("digest_not_found")), "{body}");
    let (status, made) = server.post("/v1/ledger/digests", json!({})).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["streams"], 4);
    assert_eq!(made["publicKey"], key.public_key().to_hex());
    let (status, listed) = server.get("/v1/ledger/digests").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0], made);

    let client = server.client();
    let proof = client.proof(uuid::Uuid::parse_str(&store).unwrap(), Some(1), None).await.unwrap().value;
    assert_eq!(proof.events.len() as i64, consumed_receipt.version);
    let (status, body) = server.get(&format!("/v1/stores/{store}/proof?version=99")).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("not_yet_digested")), "{body}");
    let (status, body) = server.get(&format!("/v1/stores/{store}/proof?digest=2")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("digest_not_found")), "{body}");
    let (status, body) = server.get(&format!("/v1/stores/{}/proof", uuid::Uuid::new_v4())).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("store_not_found")), "{body}");

    // A later digest covers what came after; a proof against the earlier one still holds.
    let store_id = uuid::Uuid::parse_str(&store).unwrap();
    let (status, later) = server.post(&consume, json!({"action": "create_article"})).await;
    assert_eq!(status, 200, "{later}");
    let (status, second) = server.post("/v1/ledger/digests", json!({})).await;
    assert_eq!((status, second["digestId"].as_i64()), (201, Some(2)), "{second}");
    let newer = client.proof(store_id, None, None).await.unwrap().value;
    assert_eq!((newer.digest.digest_id, newer.leaf.version), (2, receipt(&later).version));
    assert!(newer.verify(&trusted).unwrap().covers(&receipt(&later)));
    let older = client.proof(store_id, None, Some(1)).await.unwrap().value;
    assert_eq!((older.digest.digest_id, older.leaf.version), (1, consumed_receipt.version));
    older.verify(&trusted).unwrap();

    // The ledger and its database are gone: the proof and the key are all the auditor has.
    drop(server);
    drop(db);
    let verified = proof.verify(&trusted).expect("the proof verifies offline");
    assert_eq!(verified.events.len(), proof.events.len());
    assert_eq!(verified.events[0]["type"], "StoreRegistered");
    for answer in [&registered, &trial, &consumed] {
        assert!(verified.covers(&receipt(answer)), "the proof covers {answer}");
    }
    let mut forged_receipt = consumed_receipt.clone();
    forged_receipt.events[0].hash = "0".repeat(64);
    assert!(!verified.covers(&forged_receipt));

    // One byte of one event.
    let mut tampered = proof.clone();
    tampered.events[1].canonical = tampered.events[1].canonical.replacen("Trial", "Trail", 1);
    assert_eq!(tampered.verify(&trusted).unwrap_err(), ProofError::EventHash(2));
    // An event left out; two swapped.
    let mut missing = proof.clone();
    missing.events.remove(1);
    assert_eq!(missing.verify(&trusted).unwrap_err(), ProofError::OutOfPlace(3));
    let mut swapped = proof.clone();
    swapped.events.swap(1, 2);
    assert_eq!(swapped.verify(&trusted).unwrap_err(), ProofError::OutOfPlace(3));
    // Another place in the tree, another root, another key.
    let mut moved = proof.clone();
    moved.path[0] = "0".repeat(64);
    assert_eq!(moved.verify(&trusted).unwrap_err(), ProofError::NotIncluded);
    let mut resigned = proof.clone();
    let (other, _) = SigningKey::generate().unwrap();
    resigned.digest.public_key = other.public_key().to_hex();
    assert!(matches!(resigned.verify(&trusted).unwrap_err(), ProofError::UntrustedKey(_)));
    assert!(matches!(proof.verify(&[other.public_key()]).unwrap_err(), ProofError::UntrustedKey(_)));
    let mut rerooted = proof.clone();
    rerooted.digest.root = "1".repeat(64);
    assert_eq!(rerooted.verify(&trusted).unwrap_err(), ProofError::BadSignature);
}

/// Without a key, no digest is made, and saying so is a clear 409.
async fn without_a_key_no_digest_is_made(backend: Backend) {
    let Some(db) = Db::create(backend, "without_a_key_no_digest").await else { return };
    let server = Server::start(db.url(), &Options::default());
    let (status, body) = server.post("/v1/ledger/digests", json!({})).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("digest_key_missing")), "{body}");
    let (status, body) = server.get("/v1/ledger/digests").await;
    assert_eq!((status, body), (200, json!({"items": [], "nextCursor": null})));
}

/// `planledger verify` against the log a server wrote, then after one byte of one event was
/// changed by someone with the database's password.
async fn verify_names_the_changed_event(backend: Backend) {
    let Some(db) = Db::create(backend, "verify_names_the_changed_event").await else { return };
    let (key, seed) = SigningKey::generate().unwrap();
    let server = Server::start(db.url(), &with_key(&seed));
    let store = server.register("Audited").await;
    let untouched = server.register("Untouched").await;
    let (status, body) = server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    assert_eq!(status, 201, "{body}");
    drop(server);
    let env = [("PLANLEDGER_DIGEST_KEY", seed.as_str())];
    let made = run(db.url(), &["digest", "--json"], &env);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let clean = run(db.url(), &["verify"], &env);
    assert!(
        clean.status.success(),
        "{}{}",
        String::from_utf8_lossy(&clean.stdout),
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(String::from_utf8_lossy(&clean.stdout).contains("2 streams, 3 events checked against digest 1: intact"));

    let stream = format!("store-{store}");
    change_by_hand(&db, &stream).await;
    let found = run(db.url(), &["verify", "--json"], &env);
    assert!(!found.status.success(), "verify fails when the log was changed");
    let report: Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["findings"][0]["kind"], "altered", "{report}");
    assert_eq!(report["findings"][0]["stream"], stream.as_str());
    assert_eq!(report["findings"][0]["version"], 2);
    // The other store is intact on its own; a key nobody trusts is said so.
    let alone = run(db.url(), &["verify", "--store", &untouched], &env);
    assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stdout));
    let stranger = SigningKey::generate().unwrap().1;
    let untrusted = run(db.url(), &["verify", "--store", &untouched], &[("PLANLEDGER_DIGEST_KEY", stranger.as_str())]);
    assert!(!untrusted.status.success());
    assert!(String::from_utf8_lossy(&untrusted.stdout).contains("not signed by a trusted key"));
    // A retired key is trusted when named.
    let public = key.public_key().to_hex();
    let retired = run(
        db.url(),
        &["verify", "--store", &untouched],
        &[("PLANLEDGER_DIGEST_KEY", stranger.as_str()), ("PLANLEDGER_TRUSTED_DIGEST_KEYS", public.as_str())],
    );
    assert!(retired.status.success(), "{}", String::from_utf8_lossy(&retired.stdout));
    let _: PublicKey = key.public_key();
}

fn run(url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_planledger"));
    command.args(args).env("PLANLEDGER_DATABASE_URL", url).env("RUST_LOG", "warn");
    command.env_remove("PLANLEDGER_DIGEST_KEY").env_remove("PLANLEDGER_TRUSTED_DIGEST_KEYS");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run planledger")
}

/// Changes one byte of version 2's data (the trial's plan), past the append-only trigger.
async fn change_by_hand(db: &Db, stream: &str) {
    match db {
        Db::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_no_update_or_delete")
                .execute(&mut *tx)
                .await
                .unwrap();
            let changed = sqlx::query(
                "UPDATE ledger_events SET data = jsonb_set(data, '{planId}', '\"free_trail\"')
                 WHERE stream_id = $1 AND version = 2",
            )
            .bind(stream)
            .execute(&mut *tx)
            .await
            .unwrap();
            assert_eq!(changed.rows_affected(), 1);
            tx.commit().await.unwrap();
        }
        Db::Sqlite(lite) => {
            let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
            sqlx::query("DROP TRIGGER ledger_events_no_update").execute(&pool).await.unwrap();
            let changed = sqlx::query(
                "UPDATE ledger_events SET data = json_set(data, '$.planId', 'free_trail')
                 WHERE stream_id = ? AND version = 2",
            )
            .bind(stream)
            .execute(&pool)
            .await
            .unwrap();
            assert_eq!(changed.rows_affected(), 1);
        }
    }
}

on_both_backends!(
    proofs_verify_offline_and_tampering_fails,
    without_a_key_no_digest_is_made,
    verify_names_the_changed_event,
);
