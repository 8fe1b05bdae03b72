//! `planledger replay`, `planledger projections` and `planledger catalog`: the operator's view
//! of the log and of the rules it is decided under.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use planledger_domain::{Catalog, Catalogs, StoreId};
use planledger_projections::rebuild::{rebuild, Progress, When};
use planledger_projections::replay::{self, StatusLine};
use planledger_projections::runtime::audit_lag;
use planledger_projections::{schema, ReadModel};
use planledger_service::catalogs::{self, CatalogVersion, Publication, Published};
use planledger_store::AnyEventLog;
use serde_json::{json, Value};

fn status_json(line: &StatusLine) -> Value {
    json!({ "internalStatus": line.internal_status, "planId": line.plan_id })
}

fn usage_json(line: &replay::UsageLine) -> Value {
    let figures = |q: replay::Usage| json!({ "used": q.used, "limit": q.limit });
    json!({ "action": line.action.to_string(), "current": figures(line.current), "compared": line.compared.map(figures) })
}

/// How `replay` prints.
enum Out<'a> {
    Text(std::io::StdoutLock<'a>),
    /// Collected, printed as one JSON document at the end.
    Json(Vec<Value>),
}

/// The store's history, one line per event with the status and plan after it; with `other`, the
/// same under another catalog beside it, differences marked `*`. With `json`, one document.
pub async fn replay(
    log: &AnyEventLog,
    store: &str,
    at: Option<DateTime<Utc>>,
    current: &Catalogs,
    other: Option<(&str, &Catalog)>,
    json: bool,
) -> anyhow::Result<()> {
    let store = StoreId::parse(store).map_err(|_| anyhow!("--store must be a store id (a UUID), not {store:?}"))?;
    let mut out = if json { Out::Json(Vec::new()) } else { Out::Text(std::io::stdout().lock()) };
    if let Out::Text(out) = &mut out {
        writeln!(
            out,
            "{:>5}  {:<27} {:<24} {:<12} {:<38} {:<44} status / plan after",
            "ver", "recorded at", "type", "actor", "correlation id", "summary"
        )?;
    }
    let compared = other.map(|(_, catalog)| catalog);
    let ending = replay::replay(log, store, at, Utc::now(), current, compared, |row| {
        let recorded = row.recorded;
        match &mut out {
            Out::Json(rows) => rows.push(json!({
                "version": recorded.version,
                "recordedAt": recorded.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "type": recorded.event_type,
                "actor": recorded.actor,
                "correlationId": recorded.correlation_id,
                "summary": row.summary,
                "after": status_json(&row.after),
                "afterUnderCompared": row.after_compared.as_ref().map(status_json),
                "quotaAfter": row.quota.as_ref().map(usage_json),
            })),
            Out::Text(out) => {
                let mut after = row.after_text();
                if let Some(theirs) = row.after_compared_text() {
                    let mark = if row.differs() { '*' } else { ' ' };
                    after = format!("{after:<28} {mark} {theirs}");
                }
                let mut text = row.summary.clone();
                text.truncate(44);
                writeln!(
                    out,
                    "{:>5}  {:<27} {:<24} {:<12} {:<38} {:<44} {}",
                    recorded.version,
                    recorded.recorded_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    recorded.event_type,
                    recorded.actor,
                    recorded.correlation_id,
                    text,
                    after
                )?;
            }
        }
        anyhow::Ok(())
    })
    .await?;
    let Some(end) = ending else {
        bail!("store {store} has no events{}", at.map_or(String::new(), |t| format!(" before {t}")));
    };
    match out {
        Out::Json(events) => {
            let usage: Vec<Value> = end.usage.iter().map(usage_json).collect();
            let document = json!({
                "storeId": store.to_string(),
                "events": events,
                "at": end.at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "status": status_json(&end.status),
                "statusUnderCompared": end.status_compared.as_ref().map(status_json),
                "compared": other.map(|(name, _)| name),
                "usage": usage,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        Out::Text(mut out) => {
            writeln!(out, "\nat {}: {}", end.at.to_rfc3339_opts(SecondsFormat::Secs, true), end.status)?;
            for line in &end.usage {
                let (action, mine) = (&line.action, line.current.to_string());
                match (other, line.compared) {
                    (Some((name, _)), Some(theirs)) => {
                        let theirs = theirs.to_string();
                        let mark = if theirs == mine { ' ' } else { '*' };
                        writeln!(out, "  {action:<16} {mine:<16} {mark} under {name}: {theirs}")?;
                    }
                    _ => writeln!(out, "  {action:<16} {mine}")?,
                }
            }
            if let (Some((name, _)), Some(b)) = (other, &end.status_compared) {
                let (a, b) = (end.status.to_string(), b.to_string());
                writeln!(out, "  status / plan    {a:<16} {} under {name}: {b}", if a == b { ' ' } else { '*' })?;
                writeln!(out, "(what-if: nothing was written)")?;
            }
        }
    }
    Ok(())
}

pub async fn status_report(log: &AnyEventLog, catalog: &Catalogs, json: bool) -> anyhow::Result<()> {
    let info = schema::info(log).await?;
    let lag = audit_lag(log, Utc::now()).await?;
    if json {
        let built_with = schema::built_with(catalog);
        let models: Vec<Value> = ReadModel::ALL
            .iter()
            .map(|model| {
                let live = info.iter().find(|i| i.name == model.name());
                let (events, seconds) = match model {
                    ReadModel::TenantState => (0, 0.0),
                    ReadModel::AuditLog => (lag.events, lag.seconds),
                };
                json!({
                    "name": model.name(),
                    "created": live.is_some(),
                    "generation": live.map(|i| i.generation),
                    "catalogFingerprint": live.map(|i| i.catalog_fingerprint.clone()),
                    "stale": live.is_some_and(|i| i.is_stale(catalog)),
                    "lag": { "events": events, "seconds": seconds },
                })
            })
            .collect();
        let document = json!({ "catalogFingerprint": built_with, "readModels": models });
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<14} {:>10}  {:<34} lag", "read model", "generation", "catalog")?;
    for model in ReadModel::ALL {
        let Some(i) = info.iter().find(|i| i.name == model.name()) else {
            writeln!(
                out,
                "{:<14} {:>10}  {:<34} (not created yet: run planledger serve once)",
                model.name(),
                "-",
                "-"
            )?;
            continue;
        };
        let catalog_state = if !i.is_stale(catalog) {
            i.catalog_fingerprint.clone()
        } else {
            format!("STALE ({})", i.catalog_fingerprint)
        };
        let lag_text = match model {
            ReadModel::TenantState => "0 (written with the events)".to_owned(),
            ReadModel::AuditLog => format!("{} events, {:.1} s", lag.events, lag.seconds),
        };
        writeln!(out, "{:<14} {:>10}  {:<34} {lag_text}", i.name, i.generation, catalog_state)?;
    }
    Ok(())
}

pub async fn rebuild_models(log: &AnyEventLog, names: &[ReadModel], catalog: &Catalogs) -> anyhow::Result<()> {
    schema::ensure(log, &schema::built_with(catalog), Utc::now()).await?;
    for model in names {
        let progress = Arc::new(Progress::default());
        let task = {
            let (log, catalog, progress, model) = (log.clone(), catalog.clone(), progress.clone(), *model);
            tokio::spawn(async move { rebuild(&log, model, &catalog, Utc::now(), &progress, When::Always).await })
        };
        // A progress bar only on a terminal: a log file or a pipe gets the result line alone.
        let bar = if std::io::stderr().is_terminal() {
            let style = ProgressStyle::with_template(
                "{prefix:<14} [{bar:30}] {pos}/{len} events, {per_sec}, {eta} left ({msg})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(0).with_style(style).with_prefix(model.name())
        } else {
            ProgressBar::hidden()
        };
        while !task.is_finished() {
            bar.set_length(progress.total.load(Ordering::Relaxed));
            bar.set_position(progress.done.load(Ordering::Relaxed));
            bar.set_message(progress.phase().to_owned());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bar.finish_and_clear();
        let report = task.await.context("the rebuild task failed")?.with_context(|| {
            format!("rebuilding {} failed; the live table is unchanged and a new rebuild starts over", model.name())
        })?;
        println!(
            "{}: generation {} swapped in ({} events, {} rows caught up at the swap)",
            model.name(),
            report.generation,
            report.events,
            report.caught_up
        );
    }
    Ok(())
}

fn version_json(version: &CatalogVersion, in_force: bool) -> Value {
    serde_json::to_value(planledger_api::render::catalog_version(version, in_force)).unwrap_or_default()
}

/// `planledger catalog publish`: `file` as the ledger's newest version, unless the newest
/// already has its rules (and effective time).
pub async fn publish_catalog(
    log: &AnyEventLog,
    file: &str,
    effective_at: Option<DateTime<Utc>>,
    (existing_stores, require_preview): (planledger_domain::Reach, bool),
    reason: Option<&str>,
    author: &str,
    json: bool,
) -> anyhow::Result<()> {
    let source = std::fs::read_to_string(file).with_context(|| format!("could not read the catalog {file}"))?;
    log.migrate().await.context("migration failed")?;
    let publication = Publication {
        source_name: file,
        source: &source,
        author,
        reason,
        effective_at,
        existing_stores,
        require_preview,
    };
    let published = catalogs::publish(log, &publication, Utc::now()).await.map_err(|e| anyhow!("{e}"))?;
    let (version, new) = match &published {
        Published::New(version) => (version, true),
        Published::Unchanged(version) => (version, false),
    };
    if json {
        let mut document = version_json(version, version.effective_at <= Utc::now());
        document["published"] = json!(new);
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else if new {
        println!(
            "published catalog version {} ({}), in force from {}",
            version.version,
            version.fingerprint,
            version.effective_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    } else {
        println!("unchanged: catalog version {} already has these rules ({})", version.version, version.fingerprint);
    }
    Ok(())
}

/// `planledger catalog versions`: every version, oldest first, the one in force marked.
pub async fn catalog_versions(log: &AnyEventLog, json: bool) -> anyhow::Result<()> {
    let versions =
        if log.table_exists("catalog_versions").await? { catalogs::versions(log).await? } else { Vec::new() };
    let in_force = catalogs::in_force(&versions, Utc::now()).map(|v| v.version);
    if json {
        let items: Vec<Value> = versions.iter().map(|v| version_json(v, Some(v.version) == in_force)).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "items": items }))?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if versions.is_empty() {
        writeln!(out, "no catalog version yet: the first node to start publishes its file as version 1")?;
        return Ok(());
    }
    writeln!(
        out,
        "  {:>7}  {:<26} {:<20} {:<20} {:<16} reason",
        "version", "fingerprint", "effective", "published", "author"
    )?;
    for v in &versions {
        writeln!(
            out,
            "{} {:>7}  {:<26} {:<20} {:<20} {:<16} {}",
            if Some(v.version) == in_force { "*" } else { " " },
            v.version,
            v.fingerprint,
            v.effective_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            v.published_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            v.author,
            v.reason.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

/// `planledger catalog preview DRAFT`: the ledger's accepted consumptions decided again under
/// the draft (see `planledger_projections::preview`), against the version in force. Nothing is
/// written.
pub async fn preview_catalog(
    log: &AnyEventLog,
    versions: &Catalogs,
    file: &str,
    author: &str,
    json: bool,
) -> anyhow::Result<()> {
    let draft = crate::serve::load_catalog(Some(file))?;
    log.migrate().await.context("migration failed")?;
    let now = Utc::now();
    let report = catalogs::preview(log, log, versions, &draft, now, author).await?;
    let current = versions.in_force(now).catalog.as_ref();
    if json {
        let document = planledger_api::render::catalog_preview(&report, current, &draft);
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{file} ({}) against the rules in force ({}): {} stores, {} consumptions examined",
        draft.fingerprint(),
        current.fingerprint(),
        report.stores_examined,
        report.consumptions_examined,
    )?;
    for s in &report.stores {
        writeln!(out, "store {}: now {}, under the draft {}", s.store, s.status_now, s.status_draft)?;
        if let Some(plan) = &s.plan_missing {
            writeln!(out, "  ERROR: the draft has no plan {plan}: it cannot decide for this store")?;
        }
        for r in &s.would_refuse {
            writeln!(
                out,
                "  v{} {} {} x{} would be refused: {} ({})",
                r.version,
                r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                r.action,
                r.amount,
                r.code,
                r.correlation_id
            )?;
        }
        for a in &s.would_allow {
            writeln!(
                out,
                "  {} {} x{} was refused ({}), would be allowed ({})",
                a.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                a.action,
                a.amount,
                a.refused_with,
                a.correlation_id
            )?;
        }
    }
    writeln!(
        out,
        "{} consumptions would be refused on {} stores; {} refused ones would be allowed ({} examined); {} stores on a plan the draft does not have (the preview is recorded; nothing else is written)",
        report.refusals(),
        report.stores.iter().filter(|s| !s.would_refuse.is_empty()).count(),
        report.allowances(),
        report.refusals_examined,
        report.missing_plans()
    )?;
    Ok(())
}
