//! The `planledger` binary: a thin command line over the library crates.
//!
//! Each subcommand parses its arguments and configuration here and hands the work to a library;
//! `anyhow` turns their typed errors into a message that says what to do next.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use planledger_store::{AnyEventLog, StoreConfig};

/// An event-sourced ledger of stores' plans, trials and quotas.
#[derive(Debug, Parser)]
#[command(name = "planledger", version, about)]
struct Cli {
    /// postgres://... or sqlite://path (the embedded default).
    #[arg(long, global = true, env = "PLANLEDGER_DATABASE_URL", default_value = "sqlite://planledger.db")]
    database_url: String,

    /// Connections in the PostgreSQL pool (readers on SQLite).
    #[arg(long, global = true, env = "PLANLEDGER_DB_POOL_SIZE", default_value_t = 16)]
    db_pool_size: u32,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the event log's migrations (serve does it too).
    Migrate,
}

fn store_config(cli: &Cli) -> StoreConfig {
    StoreConfig {
        max_connections: cli.db_pool_size.max(1),
        acquire_timeout: Duration::from_secs(5),
        ..StoreConfig::new(cli.database_url.clone())
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<AnyEventLog> {
    AnyEventLog::connect(&store_config(cli)).await.with_context(|| {
        format!(
            "could not open the database at {}: check PLANLEDGER_DATABASE_URL and that the server is running",
            redact(&cli.database_url)
        )
    })
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn migrate(cli: &Cli) -> anyhow::Result<()> {
    let log = connect(cli).await?;
    let report = log.migrate().await.context("migration failed; nothing was changed")?;
    if report.applied.is_empty() {
        println!("{}: up to date ({} migrations applied before)", log.backend_name(), report.already_applied.len());
    } else {
        println!("{}: applied migrations {:?}", log.backend_name(), report.applied);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Migrate => migrate(&cli).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/ledger"), "postgres://app:***@db:5432/ledger");
        assert_eq!(redact("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redact("sqlite://planledger.db"), "sqlite://planledger.db");
    }
}
