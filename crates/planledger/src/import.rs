//! `planledger import FILE`: tenants moving in from another system (contract §13), each one
//! `StoreImported` event through the command path, as every other fact. A row that does not
//! read, or that the rules refuse, is reported with its line and nothing is written for it; the
//! others are imported. Importing the same file again changes nothing (a store's id is derived
//! from its external id, and a store imported already is left as it is).

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use chrono::Utc;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use planledger_api::import::{self, Format};
use planledger_domain::{decide, Catalogs, Command, StoreId};
use planledger_service::{Answer, CommandMeta, CommandService, Journal, Outcome, ServiceConfig, SystemClock};
use planledger_store::AnyEventLog;
use serde_json::json;

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Imported,
    /// Imported before (the same external id): left as it is.
    Unchanged,
    /// Not imported: the row does not read, the rules refuse it, or the ledger failed.
    Problem {
        error: String,
        message: String,
    },
}

pub struct Options<'a> {
    pub file: &'a str,
    pub format: Option<Format>,
    pub dry_run: bool,
    pub json: bool,
    pub concurrency: usize,
    /// Stripe subscription objects to link to the imported stores (`stripe_links`).
    pub stripe_subscriptions: Option<&'a str>,
    /// The subscriptions' metadata key that holds the tenant's external id.
    pub stripe_external_id_key: Option<&'a str>,
}

pub async fn import(log: AnyEventLog, catalogs: Catalogs, options: Options<'_>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(options.file).with_context(|| format!("could not read {}", options.file))?;
    let sha256 = import::sha256_hex(&text);
    let format = options.format.unwrap_or_else(|| Format::of_file(options.file));
    let rows = import::read(&text, format, options.file, &sha256);
    log.migrate().await.context("migration failed")?;
    let catalogs = Arc::new(catalogs);
    let built_with = planledger_projections::schema::built_with(&catalogs);
    planledger_projections::schema::ensure(&log, &built_with, Utc::now()).await?;
    let in_force = catalogs.in_force(Utc::now()).catalog.clone();
    let (journal, _writer) = Journal::spawn(log.clone());
    let service = CommandService::new(
        log,
        in_force,
        Arc::new(SystemClock),
        ServiceConfig::default(),
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    );
    service.replace_catalogs(catalogs.clone());

    let tenants = crate::stripe_links::Tenants::of(rows.iter().filter_map(|row| row.tenant.as_ref().ok()));
    let bar = progress(rows.len() as u64);
    let correlation = |line: u64| format!("import:{}:{line}", &sha256[..12]);
    let fates: Vec<(u64, Fate)> = futures_util::stream::iter(rows)
        .map(|row| {
            let (service, bar, correlation_id) = (service.clone(), bar.clone(), correlation(row.line));
            async move {
                let fate = match row.tenant {
                    Err(message) => Fate::Problem { error: "validation_failed".into(), message },
                    Ok(tenant) if options.dry_run => would(&service, tenant).await,
                    Ok(tenant) => {
                        let meta = CommandMeta {
                            correlation_id,
                            actor: "planledger import".into(),
                            idempotency: None,
                            expected_version: None,
                            causation_id: None,
                        };
                        fate_of(service.import(tenant, meta).await)
                    }
                };
                bar.inc(1);
                (row.line, fate)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let stripe = match options.stripe_subscriptions {
        Some(file) => Some(
            crate::stripe_links::link(&service, file, &tenants, options.stripe_external_id_key, options.dry_run)
                .await?,
        ),
        None => None,
    };
    report(options.file, &sha256, options.dry_run, options.json, fates, stripe)
}

/// What importing `tenant` would do, writing nothing.
async fn would(service: &CommandService, tenant: planledger_domain::command::ImportedStore) -> Fate {
    let store = StoreId::imported(&tenant.external_id);
    let state = match service.load_row(store).await {
        Ok(row) => row.map(|(state, _)| state).unwrap_or_default(),
        Err(error) => return Fate::Problem { error: "failed".into(), message: error.to_string() },
    };
    let now = service.clock().now();
    let catalogs = service.catalogs();
    let catalog = &catalogs.shown_for(&state, now).catalog;
    match decide(&state, &Command::ImportStore(Box::new(tenant)), now, catalog) {
        Ok(events) if events.is_empty() => Fate::Unchanged,
        Ok(_) => Fate::Imported,
        Err(error) => Fate::Problem { error: error.code().into(), message: error.to_string() },
    }
}

fn fate_of(result: Result<Answer, planledger_service::ServiceError>) -> Fate {
    match result {
        Ok(Answer::Decided(Outcome::Accepted(accepted))) if accepted.facts.is_empty() => Fate::Unchanged,
        Ok(Answer::Decided(Outcome::Accepted(_))) => Fate::Imported,
        Ok(Answer::Decided(Outcome::Refused(refusal))) => {
            let message = match &refusal {
                planledger_service::Refusal::Rule(error) => error.to_string(),
                other => other.code().to_owned(),
            };
            Fate::Problem { error: refusal.code().into(), message }
        }
        Ok(Answer::Replayed(_)) => Fate::Unchanged,
        Err(error) => Fate::Problem { error: "failed".into(), message: error.to_string() },
    }
}

fn progress(rows: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(rows);
    if let Ok(style) = ProgressStyle::with_template("importing [{bar:30}] {pos}/{len} tenants, {per_sec}, {eta} left") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The summary, and an error if any row was not imported (so scripts see it in the exit code).
fn report(
    file: &str,
    sha256: &str,
    dry_run: bool,
    json: bool,
    mut fates: Vec<(u64, Fate)>,
    stripe: Option<(serde_json::Value, Vec<String>)>,
) -> anyhow::Result<()> {
    fates.sort_by_key(|(line, _)| *line);
    let count = |wanted: &Fate| fates.iter().filter(|(_, fate)| fate == wanted).count();
    let (imported, unchanged) = (count(&Fate::Imported), count(&Fate::Unchanged));
    let problems: Vec<(u64, &str, &str)> = fates
        .iter()
        .filter_map(|(line, fate)| match fate {
            Fate::Problem { error, message } => Some((*line, error.as_str(), message.as_str())),
            _ => None,
        })
        .collect();
    let verb = if dry_run { "would be imported" } else { "imported" };
    if json {
        let document = json!({
            "file": file,
            "sha256": sha256,
            "dryRun": dry_run,
            "imported": imported,
            "unchanged": unchanged,
            "notImported": problems.len(),
            "problems": problems.iter().map(|(line, error, message)| json!({"line": line, "error": error, "message": message})).collect::<Vec<_>>(),
            "stripeSubscriptions": stripe.as_ref().map(|(summary, _)| summary),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        let mut out = std::io::stdout().lock();
        for (line, error, message) in &problems {
            writeln!(out, "line {line}: {error}: {message}")?;
        }
        writeln!(
            out,
            "{file}: {imported} tenants {verb}, {unchanged} unchanged (imported before), {} not imported{}",
            problems.len(),
            if dry_run { " (a dry run: nothing was written)" } else { "" }
        )?;
        if let Some((summary, not_linked)) = &stripe {
            for problem in not_linked {
                writeln!(out, "{problem}")?;
            }
            writeln!(
                out,
                "{}: {} subscriptions {}, {} linked before, {} not linked",
                summary["file"].as_str().unwrap_or(""),
                summary["linked"],
                if dry_run { "would be linked" } else { "linked" },
                summary["linkedBefore"],
                summary["notLinked"],
            )?;
        }
    }
    let not_linked = stripe.as_ref().map_or(0, |(_, problems)| problems.len());
    if !problems.is_empty() {
        Err(anyhow!("{} rows were not imported (their lines are listed above)", problems.len()))
    } else if not_linked > 0 {
        Err(anyhow!("{not_linked} subscriptions were not linked (listed above)"))
    } else {
        Ok(())
    }
}
