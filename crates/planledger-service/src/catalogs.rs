//! The catalog as ledger data: the versions of the rules in `catalog_versions`, which one is in
//! force at a time, and publishing a new one.
//!
//! A version is the catalog's TOML as published, its fingerprint, who published it and why,
//! and the time from which it is in force. Versions are numbered from 1 and never changed (the
//! table refuses updates and deletes); the version in force at `t` is the newest whose
//! effective time is not after `t`. Every node decides under the version in force, whatever
//! file it was started with (see [`resolve`]), so that two nodes cannot apply two rule sets.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use planledger_domain::{Catalog, CatalogError, Catalogs, Reach, Terms};
use planledger_store::rows::Kind;
use planledger_store::sql::{Row, Statement};
use planledger_store::{AnyEventLog, StoreError};

use crate::Clock;

/// One published version of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogVersion {
    pub version: i64,
    pub fingerprint: String,
    /// The TOML as published.
    pub source: String,
    /// The name of the file it was published from.
    pub source_name: String,
    pub author: String,
    pub reason: Option<String>,
    pub effective_at: DateTime<Utc>,
    /// When it reaches the stores registered under an earlier version.
    pub existing_stores: Reach,
    pub published_at: DateTime<Utc>,
}

impl CatalogVersion {
    /// The rules of this version. A version this build cannot read (published by a newer build
    /// with keys it does not know) is an error: a node must not decide under rules it cannot
    /// read whole.
    pub fn catalog(&self) -> Result<Catalog, CatalogError> {
        Catalog::parse(&format!("catalog version {} ({})", self.version, self.source_name), &self.source)
            .map(|catalog| catalog.at_version(self.version))
    }

    fn terms(&self) -> Result<Terms, CatalogError> {
        Ok(Terms { catalog: Arc::new(self.catalog()?), effective_at: self.effective_at, reaches: self.existing_stores })
    }
}

/// Every version's rules, for deciding each store under its own (`None` before any version).
pub fn catalogs_of(versions: &[CatalogVersion]) -> Result<Option<Catalogs>, CatalogError> {
    Ok(Catalogs::new(versions.iter().map(CatalogVersion::terms).collect::<Result<_, _>>()?))
}

/// Every version the ledger has, read now (`None` before any is published).
pub async fn load(log: &AnyEventLog) -> Result<Option<Catalogs>, PublishError> {
    catalogs_of(&versions(log).await?).map_err(PublishError::Invalid)
}

/// Why a publication did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid catalog: {0}")]
    Invalid(CatalogError),
    /// Publishing asked for a preview of these rules first, and there is none that will do.
    #[error("{0}")]
    NotPreviewed(String),
    /// A version cannot take effect in the past: stores were decided under the rules then.
    #[error("the effective time {effective_at} is before now ({now}): a version takes effect now or later")]
    InThePast { effective_at: DateTime<Utc>, now: DateTime<Utc> },
    /// Another version was published while this one was being written: look again.
    #[error("another catalog version was published at the same time; look at `planledger catalog versions` and publish again if this one is still wanted")]
    Raced,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new version, in force from its effective time.
    New(CatalogVersion),
    /// The newest version already has these rules and this effective time: nothing written.
    Unchanged(CatalogVersion),
}

const COLUMNS: &str =
    "version, fingerprint, source, source_name, author, reason, @effective_at, @published_at, existing_stores";
const KINDS: [Kind; 9] =
    [Kind::Int, Kind::Text, Kind::Text, Kind::Text, Kind::Text, Kind::Text, Kind::Time, Kind::Time, Kind::Text];

fn version_of(row: &Row) -> Result<CatalogVersion, StoreError> {
    Ok(CatalogVersion {
        version: row.int(0)?,
        fingerprint: row.text(1)?,
        source: row.text(2)?,
        source_name: row.text(3)?,
        author: row.text(4)?,
        reason: row.opt_text(5)?,
        effective_at: row.time(6)?,
        published_at: row.time(7)?,
        existing_stores: Reach::parse(&row.text(8)?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// Every published version, oldest first.
pub async fn versions(log: &AnyEventLog) -> Result<Vec<CatalogVersion>, StoreError> {
    let statement = Statement::new(format!("SELECT {COLUMNS} FROM catalog_versions ORDER BY version"));
    log.fetch(&statement, &KINDS).await?.iter().map(version_of).collect()
}

/// The newest version's number (0 before any): one index probe, what nodes poll.
pub async fn head(log: &AnyEventLog) -> Result<i64, StoreError> {
    let statement = Statement::new("SELECT COALESCE(MAX(version), 0) FROM catalog_versions");
    Ok(log.fetch_optional(&statement, &[Kind::Int]).await?.map(|row| row.int(0)).transpose()?.unwrap_or(0))
}

/// The version in force at `now`: the newest whose effective time is not after it.
pub fn in_force(versions: &[CatalogVersion], now: DateTime<Utc>) -> Option<&CatalogVersion> {
    versions.iter().filter(|v| v.effective_at <= now).max_by_key(|v| v.version)
}

/// A publication: the rules, where they came from, who and why, and from when.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    pub source_name: &'a str,
    pub source: &'a str,
    pub author: &'a str,
    pub reason: Option<&'a str>,
    /// Default: `now`. Never before `now`: what was decided cannot be made to have been
    /// decided under other rules.
    pub effective_at: Option<DateTime<Utc>>,
    /// When the version reaches stores registered under an earlier one.
    pub existing_stores: Reach,
    /// Publish only if these rules were previewed (`preview`) since the newest version, and
    /// the preview found no store on a plan they lack.
    pub require_preview: bool,
}

/// Publishes `publication` as the next version, unless the newest version already has the same
/// rules from the same time. `now` is the publisher's clock (the time a version without an
/// effective time takes effect).
pub async fn publish(
    log: &AnyEventLog,
    publication: &Publication<'_>,
    now: DateTime<Utc>,
) -> Result<Published, PublishError> {
    let catalog = Catalog::parse(publication.source_name, publication.source).map_err(PublishError::Invalid)?;
    let effective_at = publication.effective_at.unwrap_or(now);
    let known = versions(log).await?;
    if let Some(newest) = known.last() {
        // Asking again for what is already the newest version (a node restarted with
        // --publish-catalog, an operator's retry) changes nothing.
        let same_time = publication.effective_at.is_none_or(|at| at == newest.effective_at);
        let same_reach = publication.existing_stores == newest.existing_stores;
        if newest.fingerprint == catalog.fingerprint() && same_time && same_reach {
            return Ok(Published::Unchanged(newest.clone()));
        }
    }
    if publication.require_preview {
        require_preview(log, catalog.fingerprint(), known.last().map_or(0, |v| v.version)).await?;
    }
    // A minute's leeway for the publisher's clock against the nodes'.
    if effective_at < now - chrono::TimeDelta::minutes(1) {
        return Err(PublishError::InThePast { effective_at, now });
    }
    let version = known.last().map_or(1, |newest| newest.version + 1);
    let statement = Statement::new(format!(
        "INSERT INTO catalog_versions
             (version, fingerprint, source, source_name, author, reason, @effective_at, @published_at, existing_stores)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8) RETURNING {COLUMNS}"
    ))
    .bind(version)
    .bind(catalog.fingerprint())
    .bind(publication.source)
    .bind(publication.source_name)
    .bind(publication.author)
    .bind(publication.reason)
    .bind(effective_at)
    .bind(publication.existing_stores.as_str());
    match log.fetch_written(&statement, &KINDS).await {
        Ok(rows) => rows.first().map(version_of).transpose()?.map(Published::New).ok_or(PublishError::Raced),
        // Two publishers took the same number: the version's key kept one of them.
        Err(error) if error.is_unique_violation() => Err(PublishError::Raced),
        Err(error) => Err(error.into()),
    }
}

/// A draft previewed against the ledger (`planledger_projections::preview`): the accepted
/// consumptions and the refused ones the journal holds, decided again under `draft`; recorded
/// (`catalog_previews`) so that publishing can require it. `reads` is where the history is read.
pub async fn preview(
    log: &AnyEventLog,
    reads: &AnyEventLog,
    current: &Catalogs,
    draft: &Catalog,
    now: DateTime<Utc>,
    author: &str,
) -> Result<planledger_projections::preview::Preview, StoreError> {
    let refused = planledger_projections::audit::refused_consumptions(reads).await?;
    let report = planledger_projections::preview::preview(reads, current, draft, now, &refused).await?;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let record = Statement::new(
        "INSERT INTO catalog_previews (fingerprint, head_version, would_refuse, would_allow, plans_missing, author, @previewed_at)
         VALUES ($1, (SELECT COALESCE(MAX(version), 0) FROM catalog_versions), $2, $3, $4, $5, now())",
    )
    .bind(draft.fingerprint())
    .bind(count(report.refusals()))
    .bind(count(report.allowances()))
    .bind(count(report.missing_plans()))
    .bind(author);
    log.execute(&record).await?;
    Ok(report)
}

/// Whether the rules `fingerprint` were previewed since the newest version (`head`) with no
/// store on a plan they lack.
async fn require_preview(log: &AnyEventLog, fingerprint: &str, head: i64) -> Result<(), PublishError> {
    let statement = Statement::new(
        "SELECT head_version, plans_missing FROM catalog_previews WHERE fingerprint = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(fingerprint);
    let latest = log.fetch_optional(&statement, &[Kind::Int, Kind::Int]).await?;
    let (previewed_at, missing) = match latest {
        Some(row) => (row.int(0)?, row.int(1)?),
        None => {
            return Err(PublishError::NotPreviewed(format!(
            "these rules ({fingerprint}) were never previewed: run `planledger catalog preview` on the same file first"
        )))
        }
    };
    if previewed_at != head {
        return Err(PublishError::NotPreviewed(format!(
            "these rules were last previewed when version {previewed_at} was the newest, and version {head} is now: preview them again"
        )));
    }
    if missing > 0 {
        return Err(PublishError::NotPreviewed(format!(
            "their preview found {missing} stores on a plan these rules do not have: they could not be decided"
        )));
    }
    Ok(())
}

/// What a node decides under, and why: see [`resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The version in force, and its rules.
    pub catalog: Catalog,
    pub version: CatalogVersion,
    /// Every version's rules: each store is decided under its own.
    pub catalogs: Catalogs,
    /// What the node's own file had to do with it, for its log.
    pub note: ResolveNote,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveNote {
    /// The ledger had no version: the node's file (or the built-in catalog) became version 1.
    FirstVersion,
    /// The node's file is the version in force (or no file was named).
    Agrees,
    /// The node was started with a file whose rules differ from the version in force: it
    /// follows the ledger, and says so.
    FileDiffers { file_fingerprint: String },
    /// The node was told to publish its file, and it is now the newest version.
    Published,
}

/// The catalog a node decides under, from the ledger: the version in force on `clock` once the
/// versions are read (after any publishing: a version another node published a moment ago is
/// in force from that node's "now", which must not be judged against a time taken before it).
///
/// `file` is the node's own catalog (its name and text), if it was given one: on a ledger with
/// no version it becomes version 1; otherwise it is compared with the version in force, and a
/// difference is reported, never applied, unless `publish` says to publish it. A ledger
/// whose version in force this build cannot read is an error.
pub async fn resolve(
    log: &AnyEventLog,
    file: (&str, &str),
    named: bool,
    publish: bool,
    author: &str,
    clock: &dyn Clock,
) -> Result<Resolved, PublishError> {
    let (source_name, source) = file;
    let own = Catalog::parse(source_name, source).map_err(PublishError::Invalid)?;
    let mut note = ResolveNote::Agrees;
    let mut known = versions(log).await?;
    let publication = |reason| Publication {
        source_name,
        source,
        author,
        reason: Some(reason),
        effective_at: None,
        existing_stores: Reach::EffectiveTime,
        require_preview: false,
    };
    if known.is_empty() {
        // Another node may have been first: then follow it.
        if publish_once(log, &publication("the first node to start on this ledger"), clock.now()).await?.is_some() {
            note = ResolveNote::FirstVersion;
        }
        known = versions(log).await?;
    } else if publish && in_force(&known, clock.now()).is_none_or(|v| v.fingerprint != own.fingerprint()) {
        publish_once(log, &publication("published by a node started with --publish-catalog"), clock.now()).await?;
        note = ResolveNote::Published;
        known = versions(log).await?;
    }
    let version = in_force(&known, clock.now())
        .or(known.first())
        .cloned()
        .ok_or_else(|| PublishError::Store(StoreError::Corrupt("no catalog version after publishing one".into())))?;
    let catalog = version.catalog().map_err(PublishError::Invalid)?;
    let catalogs = catalogs_of(&known)
        .map_err(PublishError::Invalid)?
        .ok_or_else(|| PublishError::Store(StoreError::Corrupt("no catalog version after publishing one".into())))?;
    if note == ResolveNote::Agrees && named && catalog.fingerprint() != own.fingerprint() {
        note = ResolveNote::FileDiffers { file_fingerprint: own.fingerprint().to_owned() };
    }
    Ok(Resolved { catalog, version, catalogs, note })
}

/// Publishes, taking a lost race as "another node did it first" (`None`).
async fn publish_once(
    log: &AnyEventLog,
    publication: &Publication<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Published>, PublishError> {
    match publish(log, publication, now).await {
        Ok(published) => Ok(Some(published)),
        Err(PublishError::Raced) => Ok(None),
        Err(error) => Err(error),
    }
}
