//! `planledger-bench`: planledger against the lock-row design it replaces and against the
//! machine's commit limit, side by side in one run, on a fresh PostgreSQL database
//! (docs/benchmarks.md). Its own binary, so that the served one carries no HTTP client and no
//! benchmark code; it runs with the served binary's allocator, so memory figures are `serve`'s.

mod bench;

use std::time::Duration;

use clap::Parser;
// The served binary's allocator (jemalloc, purging after bursts).
use planledger_alloc as _;

/// Benchmarks on a fresh PostgreSQL database: planledger against the lock-row design and the
/// machine's commit limit.
#[derive(Debug, Parser)]
#[command(name = "planledger-bench", version)]
struct Args {
    /// Every scenario briefly (under a minute in all), for CI's smoke check.
    #[arg(long)]
    quick: bool,
    /// Also write a JSON summary to this file.
    #[arg(long)]
    json: Option<String>,
    /// Concurrent clients per scenario.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per timed scenario (default 10, or 2 with --quick).
    #[arg(long)]
    duration: Option<u64>,
    /// Only these scenarios (comma-separated); `name*` selects every scenario whose name starts with `name`.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// The PostgreSQL server to create the bench database on.
    #[arg(
        long,
        env = "PLANLEDGER_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    postgres: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = bench::BenchOptions {
        server_url: args.postgres,
        clients: args.clients.max(1),
        duration: Duration::from_secs(args.duration.unwrap_or(if args.quick { 2 } else { 10 }).max(1)),
        quick: args.quick,
        json: args.json,
        only: args.only,
    };
    bench::run(options).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn help_never_prints_the_database_password() {
        // The only test of this binary that sets the variable; nothing else here reads it.
        std::env::set_var("PLANLEDGER_BENCH_POSTGRES_URL", "postgres://bench:hunter2-bench@127.0.0.1/postgres");
        let help = super::Args::command().render_long_help().to_string();
        assert!(help.contains("PLANLEDGER_BENCH_POSTGRES_URL"), "{help}");
        assert!(!help.contains("hunter2"), "{help}");
    }
}
