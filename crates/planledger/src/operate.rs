//! `planledger replay` and `planledger projections`: the operator's view of the log.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use planledger_domain::{quota_position, status, Catalog, StoreId, TenantState};
use planledger_projections::audit::summary;
use planledger_projections::history::{fold_stream, Folded, Until};
use planledger_projections::rebuild::{rebuild, Progress};
use planledger_projections::runtime::audit_lag;
use planledger_projections::{schema, ReadModel};
use planledger_store::AnyEventLog;

fn line_of(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> String {
    let s = status(state, at, catalog);
    format!("{} / {}", s.internal_status.as_str(), s.plan_id.map_or("-".to_owned(), |p| p.to_string()))
}

/// The store's history, one line per event with the status and plan after it; with `other`, the
/// same under another catalog beside it, differences marked `*`.
pub async fn replay(
    log: &AnyEventLog,
    store: &str,
    at: Option<DateTime<Utc>>,
    current: &Catalog,
    other: Option<(&str, &Catalog)>,
) -> anyhow::Result<()> {
    let store = StoreId::parse(store).map_err(|_| anyhow!("--store must be a store id (a UUID), not {store:?}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>5}  {:<27} {:<24} {:<12} {:<38} {:<44} status / plan after",
        "ver", "recorded at", "type", "actor", "correlation id", "summary"
    )?;
    let until = Until { version: None, time: at };
    let folded = fold_stream(log, store, Folded::default(), until, |recorded, event, folded| {
        let mut after = line_of(&folded.state, recorded.recorded_at, current);
        if let Some((_, other)) = other {
            let theirs = line_of(&folded.state, recorded.recorded_at, other);
            let mark = if theirs == after { ' ' } else { '*' };
            after = format!("{after:<28} {mark} {theirs}");
        }
        let mut text = summary(event);
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
        anyhow::Ok(())
    })
    .await?;
    let (state, count, last_time) = (folded.state, folded.version, folded.at);
    if count == 0 {
        bail!("store {store} has no events{}", at.map_or(String::new(), |t| format!(" before {t}")));
    }
    let now = at.unwrap_or_else(Utc::now).max(last_time.unwrap_or_default());
    writeln!(out, "\nat {}: {}", now.to_rfc3339_opts(SecondsFormat::Secs, true), line_of(&state, now, current))?;
    let mut actions: Vec<_> = current.actions().map(|(a, _)| a.clone()).collect();
    actions.sort();
    let effective = planledger_domain::effective_state(&state, now, current);
    let figures = |catalog: &Catalog, action| {
        let q = quota_position(&planledger_domain::effective_state(&state, now, catalog), action, now, catalog);
        format!("{}/{}", q.used, q.limit.map_or("unmetered".to_owned(), |l| l.to_string()))
    };
    for action in &actions {
        if !effective.usage.contains_key(action) && other.is_none() {
            continue;
        }
        let mine = figures(current, action);
        match other {
            Some((name, other)) => {
                let theirs = figures(other, action);
                let mark = if theirs == mine { ' ' } else { '*' };
                writeln!(out, "  {action:<16} {mine:<16} {mark} under {name}: {theirs}")?;
            }
            None => writeln!(out, "  {action:<16} {mine}")?,
        }
    }
    if let Some((name, other)) = other {
        let (a, b) = (line_of(&state, now, current), line_of(&state, now, other));
        writeln!(out, "  status / plan    {a:<16} {} under {name}: {b}", if a == b { ' ' } else { '*' })?;
        writeln!(out, "(what-if: nothing was written)")?;
    }
    Ok(())
}

pub async fn status_report(log: &AnyEventLog, catalog: &Catalog) -> anyhow::Result<()> {
    let info = schema::info(log).await?;
    let lag = audit_lag(log, Utc::now()).await?;
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
        let catalog_state = if i.catalog_fingerprint == schema::built_with(catalog) {
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

fn bar(progress: &Progress) -> String {
    let done = progress.done.load(Ordering::Relaxed);
    let total = progress.total.load(Ordering::Relaxed).max(1);
    let fraction = (done as f64 / total as f64).min(1.0);
    let filled = (fraction * 30.0) as usize;
    let rate = progress.events_per_second();
    let left = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { 0.0 };
    format!(
        "[{}{}] {done}/{total} events, {:.0} ev/s, {left:.0}s left ({})",
        "#".repeat(filled),
        " ".repeat(30 - filled),
        rate,
        progress.phase()
    )
}

pub async fn rebuild_models(log: &AnyEventLog, names: &[ReadModel], catalog: &Catalog) -> anyhow::Result<()> {
    schema::ensure(log, &schema::built_with(catalog), Utc::now()).await?;
    for model in names {
        let progress = Arc::new(Progress::default());
        let task = {
            let (log, catalog, progress, model) = (log.clone(), catalog.clone(), progress.clone(), *model);
            tokio::spawn(async move { rebuild(&log, model, &catalog, Utc::now(), &progress).await })
        };
        let mut err = std::io::stderr();
        while !task.is_finished() {
            let _ = write!(err, "\r{:<14} {}", model.name(), bar(&progress));
            let _ = err.flush();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let report = task.await.context("the rebuild task failed")?.with_context(|| {
            format!("rebuilding {} failed; the live table is unchanged and a new rebuild starts over", model.name())
        })?;
        let _ = writeln!(err, "\r{:<14} {}", model.name(), bar(&progress));
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
