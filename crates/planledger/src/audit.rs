//! `planledger keygen`, `planledger digest` and `planledger verify` (docs/audit-chain.md).

use anyhow::{anyhow, bail};
use planledger_chain::{PublicKey, SigningKey};
use planledger_store::audit::{check_digest, Finding};
use planledger_store::{AnyEventLog, StreamId};
use serde_json::json;

/// The keys a digest may be signed with: the configured signing key's, and the retired or
/// outside keys given (comma-separated hexadecimal public keys).
pub fn trusted_keys(signing: Option<&SigningKey>, trusted: Option<&str>) -> anyhow::Result<Vec<PublicKey>> {
    let mut keys: Vec<PublicKey> = signing.map(SigningKey::public_key).into_iter().collect();
    for text in trusted.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
        keys.push(PublicKey::from_hex(text).map_err(|e| anyhow!("PLANLEDGER_TRUSTED_DIGEST_KEYS: {text:?}: {e}"))?);
    }
    Ok(keys)
}

pub fn signing_key(text: Option<&str>) -> anyhow::Result<Option<SigningKey>> {
    text.filter(|t| !t.trim().is_empty())
        .map(|t| SigningKey::from_hex(t).map_err(|e| anyhow!("PLANLEDGER_DIGEST_KEY: {e}")))
        .transpose()
}

pub fn keygen(json: bool) -> anyhow::Result<()> {
    let (key, seed) = SigningKey::generate().map_err(|e| anyhow!("{e}"))?;
    let public = key.public_key();
    if json {
        println!("{}", json!({"privateKey": seed, "publicKey": public.to_hex(), "keyId": public.key_id()}));
    } else {
        println!("PLANLEDGER_DIGEST_KEY={seed}");
        println!("# public key (publish it; auditors verify digests with it): {}", public.to_hex());
        println!("# key id: {}", public.key_id());
    }
    Ok(())
}

pub async fn digest(log: &AnyEventLog, key: Option<&SigningKey>, json: bool) -> anyhow::Result<()> {
    let Some(key) = key else {
        bail!("no key to sign with: set PLANLEDGER_DIGEST_KEY (`planledger keygen` makes one)")
    };
    let digest = log.make_digest(key, chrono::Utc::now()).await?;
    if json {
        println!(
            "{}",
            json!({
                "digestId": digest.digest_id,
                "createdAt": digest.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "streams": digest.streams,
                "root": planledger_chain::to_hex(&digest.root),
                "keyId": digest.key_id,
            })
        );
    } else {
        println!(
            "digest {} of {} streams, root {}, signed by key {}",
            digest.digest_id,
            digest.streams,
            planledger_chain::to_hex(&digest.root),
            digest.key_id
        );
    }
    Ok(())
}

/// Which digest `verify` checks against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestChoice {
    Latest,
    Id(i64),
    None,
}

pub fn parse_digest_choice(text: &str) -> Result<DigestChoice, String> {
    match text {
        "latest" => Ok(DigestChoice::Latest),
        "none" => Ok(DigestChoice::None),
        id => id
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 1)
            .map(DigestChoice::Id)
            .ok_or_else(|| format!("{id:?} is not a digest id, latest or none")),
    }
}

/// Recomputes the chains (of one store, or all) and checks them against a digest; fails if
/// anything was found.
pub async fn verify(
    log: &AnyEventLog,
    store: Option<&str>,
    choice: DigestChoice,
    trusted: &[PublicKey],
    json: bool,
) -> anyhow::Result<()> {
    let stream = store
        .map(|s| {
            let id = planledger_domain::StoreId::parse(s).map_err(|_| anyhow!("--store: {s:?} is not a store id"))?;
            StreamId::parse(id.stream_name()).map_err(|e| anyhow!("{e}"))
        })
        .transpose()?;
    let digest = match choice {
        DigestChoice::None => None,
        DigestChoice::Latest => log.digest(None).await?,
        DigestChoice::Id(id) => Some(log.digest(Some(id)).await?.ok_or_else(|| anyhow!("there is no digest {id}"))?),
    };
    let mut findings: Vec<Finding> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if let Some(digest) = &digest {
        if trusted.is_empty() {
            notes.push(format!(
                "digest {}'s signature was not checked: no trusted key (PLANLEDGER_DIGEST_KEY or PLANLEDGER_TRUSTED_DIGEST_KEYS)",
                digest.digest_id
            ));
            findings.extend(check_digest(digest, &[digest.public_key]));
        } else {
            findings.extend(check_digest(digest, trusted));
        }
    } else if choice == DigestChoice::Latest {
        notes.push("no digest has been made yet: the chains were checked on their own".into());
    }
    let report = log.verify_chains(stream.as_ref(), digest.as_ref()).await?;
    let mut all = report.findings.clone();
    all.extend(findings);
    if json {
        let findings: Vec<_> = all
            .iter()
            .map(|f| {
                json!({
                    "kind": f.kind.as_str(),
                    "stream": f.stream.as_ref().map(|s| s.as_str().to_owned()),
                    "version": f.version,
                    "detail": f.detail,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "ok": all.is_empty(),
                "streams": report.streams,
                "events": report.events,
                "digest": report.digest,
                "notes": notes,
                "findings": findings,
            })
        );
    } else {
        for note in &notes {
            println!("note: {note}");
        }
        for finding in &all {
            match (&finding.stream, finding.version) {
                (Some(stream), Some(version)) => {
                    println!("{} {stream} version {version}: {}", finding.kind.as_str(), finding.detail)
                }
                _ => println!("{}: {}", finding.kind.as_str(), finding.detail),
            }
        }
        let against = report.digest.map(|d| format!(" against digest {d}")).unwrap_or_default();
        println!(
            "{} streams, {} events checked{against}: {}",
            report.streams,
            report.events,
            if all.is_empty() { "intact".to_owned() } else { format!("{} finding(s)", all.len()) }
        );
    }
    if all.is_empty() {
        Ok(())
    } else {
        bail!("the log does not verify: {} finding(s)", all.len())
    }
}
