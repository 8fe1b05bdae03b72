//! `planledger replay` and `planledger projections`: the operator's view of the log.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use planledger_domain::{quota_position, status, Catalog, StoreId, TenantState};
use planledger_projections::audit::summary;
use planledger_projections::history::{fold_stream, Folded, Until};
use planledger_projections::rebuild::{rebuild, Progress, When};
use planledger_projections::runtime::audit_lag;
use planledger_projections::{schema, ReadModel};
use planledger_store::AnyEventLog;
use serde_json::{json, Value};

fn status_and_plan(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> (&'static str, Option<String>) {
    let s = status(state, at, catalog);
    (s.internal_status.as_str(), s.plan_id.map(|p| p.to_string()))
}

fn line_of(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> String {
    let (status, plan) = status_and_plan(state, at, catalog);
    format!("{status} / {}", plan.as_deref().unwrap_or("-"))
}

fn status_json(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> Value {
    let (status, plan) = status_and_plan(state, at, catalog);
    json!({ "internalStatus": status, "planId": plan })
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
    current: &Catalog,
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
    let until = Until { version: None, time: at };
    let folded = fold_stream(log, store, Folded::default(), until, |recorded, event, folded| {
        let at = recorded.recorded_at;
        match &mut out {
            Out::Json(rows) => rows.push(json!({
                "version": recorded.version,
                "recordedAt": at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "type": recorded.event_type,
                "actor": recorded.actor,
                "correlationId": recorded.correlation_id,
                "summary": summary(event),
                "after": status_json(&folded.state, at, current),
                "afterUnderCompared": other.map(|(_, other)| status_json(&folded.state, at, other)),
            })),
            Out::Text(out) => {
                let mut after = line_of(&folded.state, at, current);
                if let Some((_, other)) = other {
                    let theirs = line_of(&folded.state, at, other);
                    let mark = if theirs == after { ' ' } else { '*' };
                    after = format!("{after:<28} {mark} {theirs}");
                }
                let mut text = summary(event);
                text.truncate(44);
                writeln!(
                    out,
                    "{:>5}  {:<27} {:<24} {:<12} {:<38} {:<44} {}",
                    recorded.version,
                    at.to_rfc3339_opts(SecondsFormat::Millis, true),
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
    let (state, count, last_time) = (folded.state, folded.version, folded.at);
    if count == 0 {
        bail!("store {store} has no events{}", at.map_or(String::new(), |t| format!(" before {t}")));
    }
    let now = at.unwrap_or_else(Utc::now).max(last_time.unwrap_or_default());
    let mut actions: Vec<_> = current.actions().map(|(a, _)| a.clone()).collect();
    actions.sort();
    let effective = planledger_domain::effective_state(&state, now, current);
    let position = |catalog: &Catalog, action| {
        quota_position(&planledger_domain::effective_state(&state, now, catalog), action, now, catalog)
    };
    let shown: Vec<_> = actions.iter().filter(|a| effective.usage.contains_key(*a) || other.is_some()).collect();
    match out {
        Out::Json(events) => {
            let usage: Vec<Value> = shown
                .iter()
                .map(|action| {
                    let figures = |q: planledger_domain::QuotaPosition| json!({ "used": q.used, "limit": q.limit });
                    json!({
                        "action": action.to_string(),
                        "current": figures(position(current, action)),
                        "compared": other.map(|(_, other)| figures(position(other, action))),
                    })
                })
                .collect();
            let document = json!({
                "storeId": store.to_string(),
                "events": events,
                "at": now.to_rfc3339_opts(SecondsFormat::Micros, true),
                "status": status_json(&state, now, current),
                "statusUnderCompared": other.map(|(_, other)| status_json(&state, now, other)),
                "compared": other.map(|(name, _)| name),
                "usage": usage,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        Out::Text(mut out) => {
            writeln!(
                out,
                "\nat {}: {}",
                now.to_rfc3339_opts(SecondsFormat::Secs, true),
                line_of(&state, now, current)
            )?;
            let figures = |catalog: &Catalog, action| {
                let q = position(catalog, action);
                format!("{}/{}", q.used, q.limit.map_or("unmetered".to_owned(), |l| l.to_string()))
            };
            for action in shown {
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
        }
    }
    Ok(())
}

pub async fn status_report(log: &AnyEventLog, catalog: &Catalog, json: bool) -> anyhow::Result<()> {
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

pub async fn rebuild_models(log: &AnyEventLog, names: &[ReadModel], catalog: &Catalog) -> anyhow::Result<()> {
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
