//! The `planledger` binary: a thin command line over the library crates.
//!
//! Each subcommand parses its arguments and configuration here and hands the work to a library;
//! `anyhow` turns their typed errors into a message that says what to do next.

mod audit;
mod import;
mod logs;
mod operate;
mod serve;
mod stripe_links;

use std::time::Duration;

// The process's allocator (jemalloc, purging after bursts).
use planledger_alloc as _;

use anyhow::Context;
use clap::{Parser, Subcommand};
use planledger_store::{AnyEventLog, StoreConfig};

/// An event-sourced ledger of stores' plans, trials and quotas.
#[derive(Debug, Parser)]
#[command(name = "planledger", version, about)]
struct Cli {
    /// postgres://... or sqlite://path (the embedded default). Its value is never printed here:
    /// it may hold a password.
    #[arg(
        long,
        global = true,
        env = "PLANLEDGER_DATABASE_URL",
        default_value = "sqlite://planledger.db",
        hide_env_values = true
    )]
    database_url: String,

    /// This node's catalog file (plans, actions, lifecycle); default: the built-in
    /// config/catalog.toml. The ledger's published version is what is in force: the file
    /// becomes its first version on a ledger with none, and is otherwise only compared with it
    /// (`serve --publish-catalog` or `catalog publish` to change the ledger's).
    #[arg(long, global = true, env = "PLANLEDGER_CATALOG")]
    catalog: Option<String>,

    /// PostgreSQL connections for commands, projectors and bookkeeping (SQLite has one writer).
    #[arg(long, global = true, env = "PLANLEDGER_DB_POOL_SIZE", default_value_t = 16)]
    db_pool_size: u32,

    /// Read-only connections that answer read requests, apart from the pool of commands.
    #[arg(long, global = true, env = "PLANLEDGER_DB_READERS", default_value_t = 8)]
    db_readers: u32,

    /// How long a request waits for a database connection before answering 503
    /// `storage_unavailable`, in milliseconds.
    #[arg(long, global = true, env = "PLANLEDGER_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    db_acquire_timeout_ms: u64,

    /// The Ed25519 key digests are signed with: its 32-byte seed in hexadecimal (`planledger
    /// keygen` makes one). Without it, no digest is made (docs/audit-chain.md).
    #[arg(long, global = true, env = "PLANLEDGER_DIGEST_KEY", hide_env_values = true)]
    digest_key: Option<String>,

    /// Public keys (hexadecimal, comma-separated) whose digests `verify` trusts beside the
    /// signing key's own: keys retired by a rotation.
    #[arg(long, global = true, env = "PLANLEDGER_TRUSTED_DIGEST_KEYS")]
    trusted_digest_keys: Option<String>,

    #[command(subcommand)]
    command: Command,
}

// `serve` has many settings and the others few; the command line is parsed once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the deadline worker and the journal writer.
    Serve {
        /// Publish this node's catalog file as the ledger's newest version if it differs from
        /// the one in force (otherwise the node follows the ledger and says so).
        #[arg(long, env = "PLANLEDGER_PUBLISH_CATALOG")]
        publish_catalog: bool,
        /// How often the ledger is asked for a new catalog version, in milliseconds: the
        /// longest a node decides under the old rules after a version comes into force.
        #[arg(long, env = "PLANLEDGER_CATALOG_POLL_MS", default_value_t = 1000)]
        catalog_poll_ms: u64,
        /// The address to listen on (port 0 picks a free port).
        #[arg(long, env = "PLANLEDGER_BIND", default_value = "127.0.0.1:8080")]
        bind: String,
        /// name:role:secret,... (roles reader, service, admin). Without tokens, loopback only.
        #[arg(long, env = "PLANLEDGER_TOKENS", hide_env_values = true)]
        tokens: Option<String>,
        /// Expose the settable test clock (/v1/test-clock).
        #[arg(long, env = "PLANLEDGER_TEST_CLOCK", value_parser = parse_flag, default_value = "0")]
        test_clock: bool,
        /// How often the deadline worker sweeps, in milliseconds.
        #[arg(long, env = "PLANLEDGER_SWEEP_INTERVAL_MS", default_value_t = 1000)]
        sweep_interval_ms: u64,
        /// /readyz fails when the audit projector or the deadline worker is this many seconds
        /// behind.
        #[arg(long, env = "PLANLEDGER_STALL_AFTER_SECONDS", default_value_t = 120)]
        stall_after_seconds: u64,
        /// /readyz fails unless the PostgreSQL primary has a synchronous standby and
        /// `synchronous_commit` waits for it: for deployments that promise "acknowledged means
        /// kept" across a failover (docs/high-availability.md).
        #[arg(long, env = "PLANLEDGER_REQUIRE_SYNCHRONOUS_STANDBY")]
        require_synchronous_standby: bool,
        /// How long stored answers to Idempotency-Keys are kept: forever, or a number and a unit
        /// (d, h, m, s); at least 24h.
        #[arg(long, env = "PLANLEDGER_KEEP_ANSWERS", value_parser = parse_keep, default_value = "7d")]
        keep_answers: Keep,
        /// How long the ledger's own idempotency keys (deadlines, refunds) are kept.
        #[arg(long, env = "PLANLEDGER_KEEP_KEYS", value_parser = parse_keep, default_value = "7d")]
        keep_keys: Keep,
        /// How long the command journal is kept.
        #[arg(long, env = "PLANLEDGER_KEEP_JOURNAL", value_parser = parse_keep, default_value = "90d")]
        keep_journal: Keep,
        /// How long Stripe's events are kept once applied, ignored or stale (parked and failed
        /// ones are kept until an operator acts).
        #[arg(long, env = "PLANLEDGER_KEEP_STRIPE_EVENTS", value_parser = parse_keep, default_value = "90d")]
        keep_stripe_events: Keep,
        /// How often the retention job deletes what has expired, in seconds.
        #[arg(long, env = "PLANLEDGER_RETENTION_INTERVAL_SECONDS", default_value_t = 60)]
        retention_interval_seconds: u64,
        /// The Stripe webhook endpoint's signing secrets (whsec_...), comma-separated: two during
        /// a rotation. Without them POST /v1/webhooks/stripe answers 404.
        #[arg(long, env = "PLANLEDGER_STRIPE_WEBHOOK_SECRETS", hide_env_values = true)]
        stripe_webhook_secrets: Option<String>,
        /// How far a Stripe delivery's signature time may be from now, in seconds.
        #[arg(long, env = "PLANLEDGER_STRIPE_TOLERANCE_SECONDS", default_value_t = 300)]
        stripe_tolerance_seconds: u64,
        /// How long a webhook endpoint has to answer one delivery attempt, in seconds.
        #[arg(long, env = "PLANLEDGER_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10)]
        webhook_timeout_seconds: u64,
        /// Networks, addresses and host names (comma-separated) webhook deliveries may reach
        /// beside public addresses: loopback, private, link-local and metadata addresses are
        /// refused unless listed here.
        #[arg(long, env = "PLANLEDGER_WEBHOOK_ALLOW", default_value = "")]
        webhook_allow: String,
        /// Delivery attempts in flight at once to one webhook endpoint.
        #[arg(long, env = "PLANLEDGER_WEBHOOK_CONCURRENCY", default_value_t = 4)]
        webhook_concurrency: usize,
        /// How often a signed digest is made, if none was made since (with PLANLEDGER_DIGEST_KEY):
        /// a period like 1h or 1d, or `forever` for only on demand (`POST /v1/ledger/digests`).
        #[arg(long, env = "PLANLEDGER_DIGEST_EVERY", value_parser = parse_keep, default_value = "1h")]
        digest_every: Keep,
        #[command(flatten)]
        edge: EdgeArgs,
    },
    /// Make a key to sign digests with (PLANLEDGER_DIGEST_KEY), and print its public key.
    Keygen {
        #[arg(long)]
        json: bool,
    },
    /// Make a signed digest of every stream's head now (serve makes them periodically).
    Digest {
        #[arg(long)]
        json: bool,
    },
    /// Recompute every stream's hash chain (or one store's) and check it against a signed
    /// digest: names the first altered, missing or reordered event of each stream. Fails if
    /// anything is found.
    Verify {
        /// Only this store.
        #[arg(long)]
        store: Option<String>,
        /// The digest to check against: an id, `latest` or `none`.
        #[arg(long, default_value = "latest", value_parser = audit::parse_digest_choice)]
        digest: audit::DigestChoice,
        #[arg(long)]
        json: bool,
    },
    /// Apply the event log's migrations (serve does it too).
    Migrate {
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A store's history, one line per event with the state after it.
    Replay {
        /// The store id.
        #[arg(long)]
        store: String,
        /// Replay only up to this time (RFC 3339).
        #[arg(long)]
        at: Option<String>,
        /// Also show what the state would be under this catalog (nothing is written).
        #[arg(long)]
        compare: Option<String>,
        /// Print the history as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Import tenants from another system: FILE is NDJSON (one tenant per line) or CSV (a
    /// header row, then one tenant per row), as docs/import.md describes. Each tenant becomes
    /// one store; a row that does not read or that the rules refuse is reported with its line
    /// and not imported. Importing the same file again changes nothing.
    Import {
        file: String,
        /// `ndjson` or `csv`; default by the file's name (`.csv` is CSV).
        #[arg(long, value_parser = parse_format)]
        format: Option<planledger_api::import::Format>,
        /// Report what would happen; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// How many tenants are imported at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// A file of Stripe subscription objects (as `GET /v1/subscriptions` returns them: list
        /// pages, an array, or one per line) to link to the imported stores, so that Stripe's
        /// webhooks find them without `metadata.store_id` (docs/import.md).
        #[arg(long)]
        stripe_subscriptions: Option<String>,
        /// The subscriptions' metadata key holding the tenant's external id, if they have one.
        #[arg(long, requires = "stripe_subscriptions")]
        stripe_external_id_key: Option<String>,
    },
    /// API tokens: make one for PLANLEDGER_TOKENS.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// The catalog as ledger data: publish a version, list them.
    Catalog {
        #[command(subcommand)]
        action: CatalogCommand,
    },
    /// Read models: status and rebuilds.
    Projections {
        #[command(subcommand)]
        action: ProjectionsCommand,
    },
}

/// The limits of the HTTP edge (docs/security.md).
#[derive(Debug, clap::Args)]
struct EdgeArgs {
    /// A request's head must arrive within this many seconds of the connection opening or of its
    /// last answer (so an idle kept-alive connection is closed after it too).
    #[arg(long, env = "PLANLEDGER_HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    http_header_timeout_seconds: u64,
    /// The longest pause between two parts of a request's body, in seconds.
    #[arg(long, env = "PLANLEDGER_HTTP_BODY_TIMEOUT_SECONDS", default_value_t = 10)]
    http_body_timeout_seconds: u64,
    /// The longest a whole request may take, in seconds (at least 70: a long poll waits 60).
    #[arg(long, env = "PLANLEDGER_HTTP_REQUEST_TIMEOUT_SECONDS", default_value_t = 120)]
    http_request_timeout_seconds: u64,
    /// Connections open at once (default: three quarters of the open-files limit, at most
    /// 10,000); more wait in the listen backlog.
    #[arg(long, env = "PLANLEDGER_HTTP_MAX_CONNECTIONS")]
    http_max_connections: Option<usize>,
    /// Connections open at once from one address (default: a quarter of the connection cap;
    /// trusted proxies are not counted); more are answered 503 and closed as they arrive.
    #[arg(long, env = "PLANLEDGER_HTTP_MAX_CONNECTIONS_PER_SOURCE")]
    http_max_connections_per_source: Option<usize>,
    /// Long polls of GET /v1/events held at once; more are answered 503 too_many_long_polls.
    #[arg(long, env = "PLANLEDGER_MAX_LONG_POLLS", default_value_t = planledger_notify::feed::DEFAULT_MAX_WAITING)]
    max_long_polls: usize,
    /// After SIGTERM, how many seconds requests in flight have to finish before what is left is
    /// closed.
    #[arg(long, env = "PLANLEDGER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    shutdown_grace_seconds: u64,
    /// Proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client.
    #[arg(long, env = "PLANLEDGER_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// Failed authentications one address may make at once before it is slowed down.
    #[arg(long, env = "PLANLEDGER_AUTH_FAILURE_BURST", default_value_t = 10)]
    auth_failure_burst: u32,
    /// Then one more failure is allowed every this many milliseconds.
    #[arg(long, env = "PLANLEDGER_AUTH_FAILURE_REFILL_MS", default_value_t = 1000)]
    auth_failure_refill_ms: u64,
}

impl EdgeArgs {
    fn limits(&self) -> anyhow::Result<(planledger_api::server::ServerLimits, planledger_api::EdgeConfig)> {
        let seconds = |s: u64| Duration::from_secs(s.max(1));
        let defaults = planledger_api::server::ServerLimits::default();
        let trusted_proxies: Vec<ipnet::IpNet> = self
            .trusted_proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(parse_network)
            .collect::<anyhow::Result<_>>()?;
        let max_connections = self.http_max_connections.unwrap_or(defaults.max_connections).max(1);
        let server = planledger_api::server::ServerLimits {
            header_timeout: seconds(self.http_header_timeout_seconds),
            body_timeout: seconds(self.http_body_timeout_seconds),
            max_connections,
            max_connections_per_source: self
                .http_max_connections_per_source
                .unwrap_or_else(|| planledger_api::server::default_max_connections_per_source(max_connections))
                .max(1),
            uncounted_sources: trusted_proxies.clone(),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
        };
        let edge = planledger_api::EdgeConfig {
            request_timeout: seconds(self.http_request_timeout_seconds).max(planledger_api::MIN_REQUEST_TIMEOUT),
            trusted_proxies,
            auth_throttle: planledger_api::auth::ThrottleConfig {
                burst: self.auth_failure_burst.max(1),
                refill: Duration::from_millis(self.auth_failure_refill_ms.max(1)),
            },
            max_long_polls: self.max_long_polls,
            ..Default::default()
        };
        Ok((server, edge))
    }
}

/// A network (`10.0.0.0/8`) or one address (`10.0.0.7`).
fn parse_network(text: &str) -> anyhow::Result<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| anyhow::anyhow!("{text:?} is not an address or a network like 10.0.0.0/8"))
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// A new secret (256 random bits from the operating system, hex) and the entry to add to
    /// PLANLEDGER_TOKENS. Nothing is stored: the token list is the server's configuration.
    New {
        /// Who uses it: shown in the journal and the logs as the actor.
        #[arg(long)]
        name: String,
        /// reader (reads), service (commands), or admin (everything).
        #[arg(long, default_value = "service")]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Publish FILE as the ledger's newest catalog version: every node decides under it from
    /// its effective time (within PLANLEDGER_CATALOG_POLL_MS), without a restart.
    Publish {
        /// The catalog file (TOML, as config/catalog.toml).
        file: String,
        /// When it comes into force (RFC 3339); default now. Never in the past.
        #[arg(long)]
        effective_at: Option<String>,
        /// When it reaches the stores registered under an earlier version: `effective_time`
        /// (all at once), `next_period` (each at its next month boundary) or `never`
        /// (grandfathered: they keep their version until they change plan).
        #[arg(long, default_value = "effective_time", value_parser = parse_reach)]
        existing_stores: planledger_domain::Reach,
        /// Publish only if the same file was previewed (`catalog preview`) since the newest
        /// version, and the preview found no store on a plan it lacks.
        #[arg(long)]
        require_preview: bool,
        /// Why: kept with the version.
        #[arg(long)]
        reason: Option<String>,
        /// Who: kept with the version; default the login name.
        #[arg(long, env = "USER")]
        author: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What DRAFT would change: every consumption the ledger accepted, decided again under it,
    /// against the version in force; the ones it would refuse, and the stores on a plan it does
    /// not have. Nothing is written.
    Preview {
        /// The draft catalog file.
        draft: String,
        /// Who: kept with the preview's record; default the login name.
        #[arg(long, env = "USER")]
        author: Option<String>,
        /// Print the preview as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every published version, oldest first, and which is in force now.
    Versions {
        /// Print the versions as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Each read model's generation, catalog and lag.
    Status {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild one read model (or all) from the log, blue/green, with a progress bar.
    Rebuild {
        /// tenant_state or audit_log; all when omitted.
        name: Option<String>,
    },
}

/// `planledger token new`: prints the entry (stdout) and how to use it (stderr), checked by the
/// same parser the server uses.
fn new_token(name: &str, role: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.contains([',', ':']) {
        anyhow::bail!("--name must be a name without ',' or ':'");
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no random numbers from the operating system: {e}"))?;
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let entry = format!("{name}:{role}:{secret}");
    planledger_api::Tokens::parse(&entry).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{entry}");
    eprintln!(
        "Add it to PLANLEDGER_TOKENS (comma-separated entries) on every node and restart them; the client sends \
         `Authorization: Bearer {secret}`. Keep the secret out of version control."
    );
    Ok(())
}

fn catalog_path(cli: &Cli) -> Option<&str> {
    cli.catalog.as_deref().filter(|c| !c.is_empty())
}

/// What `replay` and `projections` judge by: the ledger's catalog versions, as `serve` decides
/// under them (each store under its own); on a ledger that has none yet, this node's file.
/// Nothing is written.
async fn ledger_catalogs(cli: &Cli, log: &AnyEventLog) -> anyhow::Result<planledger_domain::Catalogs> {
    let file = serve::load_catalog(catalog_path(cli))?;
    if !log.table_exists("catalog_versions").await? {
        return Ok(planledger_domain::Catalogs::single(std::sync::Arc::new(file)));
    }
    let versions = planledger_service::catalogs::versions(log).await?;
    let Some(catalogs) = planledger_service::catalogs::catalogs_of(&versions)
        .map_err(|e| anyhow::anyhow!("the ledger has a catalog version this build cannot read: {e}"))?
    else {
        return Ok(planledger_domain::Catalogs::single(std::sync::Arc::new(file)));
    };
    let in_force = catalogs.in_force(chrono::Utc::now());
    if catalog_path(cli).is_some() && in_force.catalog.fingerprint() != file.fingerprint() {
        eprintln!(
            "note: {} differs from the ledger's catalog version {} in force; using the ledger's",
            catalog_path(cli).unwrap_or_default(),
            in_force.version()
        );
    }
    Ok(catalogs)
}

/// A retention period: `None` keeps forever.
#[derive(Debug, Clone, Copy)]
struct Keep(Option<Duration>);

fn parse_format(value: &str) -> Result<planledger_api::import::Format, String> {
    match value {
        "ndjson" => Ok(planledger_api::import::Format::Ndjson),
        "csv" => Ok(planledger_api::import::Format::Csv),
        _ => Err("must be ndjson or csv".to_owned()),
    }
}

fn parse_reach(value: &str) -> Result<planledger_domain::Reach, String> {
    planledger_domain::Reach::parse(value).map_err(|e| e.to_string())
}

fn parse_keep(value: &str) -> Result<Keep, String> {
    planledger_service::retention::parse_period(value).map(Keep)
}

fn parse_flag(value: &str) -> Result<bool, String> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        other => Err(format!("{other:?} is not 1 or 0")),
    }
}

fn store_config(cli: &Cli) -> StoreConfig {
    StoreConfig {
        max_connections: cli.db_pool_size.max(1),
        readers: cli.db_readers.max(1),
        acquire_timeout: Duration::from_millis(cli.db_acquire_timeout_ms.max(100)),
        ..StoreConfig::new(cli.database_url.clone())
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<AnyEventLog> {
    AnyEventLog::connect(&store_config(cli)).await.with_context(|| {
        format!(
            "could not open the database at {}: check PLANLEDGER_DATABASE_URL and that the server is running",
            planledger_store::servers::redacted(&cli.database_url)
        )
    })
}

async fn migrate(cli: &Cli, json: bool) -> anyhow::Result<()> {
    let log = connect(cli).await?;
    let report = log.migrate().await.context("migration failed; nothing was changed")?;
    tracing::info!(backend = log.backend_name(), applied = ?report.applied, "migrations checked");
    if json {
        let document = serde_json::json!({
            "backend": log.backend_name(),
            "applied": report.applied,
            "alreadyApplied": report.already_applied,
        });
        println!("{document}");
    } else if report.applied.is_empty() {
        println!("{}: up to date ({} migrations applied before)", log.backend_name(), report.already_applied.len());
    } else {
        println!("{}: applied migrations {:?}", log.backend_name(), report.applied);
    }
    Ok(())
}

/// Logs go to stderr: coloured only on a terminal, control characters escaped; one JSON object
/// per line with `PLANLEDGER_LOG_FORMAT=json`.
fn init_logs() -> Result<(), String> {
    use std::io::IsTerminal;
    let format = logs::LogFormat::parse(&std::env::var("PLANLEDGER_LOG_FORMAT").unwrap_or_default())?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    let subscriber = logs::subscriber(format, std::io::stderr().is_terminal(), &filter, std::io::stderr);
    tracing::subscriber::set_global_default(subscriber).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(error) = init_logs() {
        eprintln!("error: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Migrate { json } => migrate(&cli, *json).await,
        Command::Keygen { json } => audit::keygen(*json),
        Command::Digest { json } => {
            async {
                let key = audit::signing_key(cli.digest_key.as_deref())?;
                let log = connect(&cli).await?;
                audit::digest(&log, key.as_ref(), *json).await
            }
            .await
        }
        Command::Verify { store, digest, json } => {
            async {
                let key = audit::signing_key(cli.digest_key.as_deref())?;
                let trusted = audit::trusted_keys(key.as_ref(), cli.trusted_digest_keys.as_deref())?;
                let log = connect(&cli).await?;
                audit::verify(&log, store.as_deref(), *digest, &trusted, *json).await
            }
            .await
        }
        Command::Replay { store, at, compare, json } => {
            async {
                let at = at
                    .as_deref()
                    .map(|t| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&chrono::Utc)))
                    .transpose()
                    .map_err(|_| anyhow::anyhow!("--at must be an RFC 3339 time like 2026-03-01T00:00:00Z"))?;
                let other = compare.as_deref().map(|path| serve::load_catalog(Some(path))).transpose()?;
                let log = connect(&cli).await?;
                let catalogs = ledger_catalogs(&cli, &log).await?;
                let other = other.as_ref().map(|c| (compare.as_deref().unwrap_or(""), c));
                operate::replay(&log, store, at, &catalogs, other, *json).await
            }
            .await
        }
        Command::Token { action: TokenCommand::New { name, role } } => new_token(name, role),
        Command::Import { file, format, dry_run, concurrency, json, stripe_subscriptions, stripe_external_id_key } => {
            async {
                let log = connect(&cli).await?;
                let catalogs = ledger_catalogs(&cli, &log).await?;
                let options = import::Options {
                    file: file.as_str(),
                    format: *format,
                    dry_run: *dry_run,
                    json: *json,
                    concurrency: *concurrency,
                    stripe_subscriptions: stripe_subscriptions.as_deref(),
                    stripe_external_id_key: stripe_external_id_key.as_deref(),
                };
                import::import(log, catalogs, options).await
            }
            .await
        }
        Command::Catalog { action } => {
            async {
                let log = connect(&cli).await?;
                match action {
                    CatalogCommand::Publish {
                        file,
                        effective_at,
                        existing_stores,
                        require_preview,
                        reason,
                        author,
                        json,
                    } => {
                        let effective_at = effective_at
                            .as_deref()
                            .map(|t| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&chrono::Utc)))
                            .transpose()
                            .map_err(|_| {
                                anyhow::anyhow!("--effective-at must be an RFC 3339 time like 2026-03-01T00:00:00Z")
                            })?;
                        let author =
                            author.as_deref().filter(|a| !a.is_empty()).unwrap_or("planledger catalog publish");
                        operate::publish_catalog(
                            &log,
                            file,
                            effective_at,
                            (*existing_stores, *require_preview),
                            reason.as_deref(),
                            author,
                            *json,
                        )
                        .await
                    }
                    CatalogCommand::Versions { json } => operate::catalog_versions(&log, *json).await,
                    CatalogCommand::Preview { draft, author, json } => {
                        let catalogs = ledger_catalogs(&cli, &log).await?;
                        let author =
                            author.as_deref().filter(|a| !a.is_empty()).unwrap_or("planledger catalog preview");
                        operate::preview_catalog(&log, &catalogs, draft, author, *json).await
                    }
                }
            }
            .await
        }
        Command::Projections { action } => {
            async {
                let log = connect(&cli).await?;
                let catalog = ledger_catalogs(&cli, &log).await?;
                match action {
                    ProjectionsCommand::Status { json } => operate::status_report(&log, &catalog, *json).await,
                    ProjectionsCommand::Rebuild { name } => {
                        let models = match name {
                            None => planledger_projections::ReadModel::ALL.to_vec(),
                            Some(name) => vec![planledger_projections::ReadModel::parse(name).ok_or_else(|| {
                                anyhow::anyhow!("unknown read model {name:?}: use tenant_state or audit_log")
                            })?],
                        };
                        operate::rebuild_models(&log, &models, &catalog).await
                    }
                }
            }
            .await
        }
        Command::Serve {
            publish_catalog,
            catalog_poll_ms,
            bind,
            tokens,
            test_clock,
            sweep_interval_ms,
            stall_after_seconds,
            require_synchronous_standby,
            keep_answers,
            keep_keys,
            keep_journal,
            keep_stripe_events,
            retention_interval_seconds,
            stripe_webhook_secrets,
            stripe_tolerance_seconds,
            webhook_timeout_seconds,
            webhook_allow,
            webhook_concurrency,
            digest_every,
            edge,
        } => match (edge.limits(), connect(&cli).await) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok((server_limits, edge)), Ok(log)) => {
                let options = serve::ServeOptions {
                    bind: bind.clone(),
                    tokens: tokens.clone(),
                    catalog: catalog_path(&cli).map(str::to_owned),
                    publish_catalog: *publish_catalog,
                    catalog_poll: Duration::from_millis((*catalog_poll_ms).max(50)),
                    test_clock: *test_clock,
                    sweep_interval: Duration::from_millis((*sweep_interval_ms).max(10)),
                    stall_after: Duration::from_secs(*stall_after_seconds),
                    require_synchronous_standby: *require_synchronous_standby,
                    retention: planledger_service::Retention {
                        answers: keep_answers.0,
                        keys: keep_keys.0,
                        journal: keep_journal.0,
                        stripe_events: keep_stripe_events.0,
                    },
                    retention_interval: Duration::from_secs((*retention_interval_seconds).max(1)),
                    stripe_secrets: stripe_webhook_secrets.clone(),
                    stripe_tolerance: Duration::from_secs((*stripe_tolerance_seconds).max(1)),
                    webhook_timeout: Duration::from_secs((*webhook_timeout_seconds).clamp(1, 60)),
                    webhook_allow: webhook_allow.clone(),
                    webhook_concurrency: (*webhook_concurrency).max(1),
                    server_limits,
                    edge,
                    digest_key: match audit::signing_key(cli.digest_key.as_deref()) {
                        Ok(key) => key,
                        Err(e) => {
                            eprintln!("error: {e:#}");
                            return std::process::ExitCode::FAILURE;
                        }
                    },
                    digest_every: digest_every.0,
                };
                serve::serve(log, options).await
            }
        },
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
