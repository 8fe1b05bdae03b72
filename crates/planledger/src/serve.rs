//! `planledger serve`: the API, the deadline worker, the journal writer, the retention job, the
//! Stripe applier and the notifications (outbox projector and deliverer) in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use planledger_api::{AppState, Tokens};
use planledger_domain::{Catalog, Catalogs};
use planledger_projections::rebuild::When;
use planledger_projections::runtime::{run_audit_projector, ProjectorState};
use planledger_projections::ReadModel;
use planledger_service::{catalogs, Clock, CommandService, Journal, Retention, ServiceConfig, SystemClock, TestClock};
use planledger_store::AnyEventLog;
use tokio::sync::watch;

#[derive(Debug)]
pub struct ServeOptions {
    pub bind: String,
    pub tokens: Option<String>,
    pub catalog: Option<String>,
    /// Publish `catalog` as the ledger's newest version if it differs from the one in force
    /// (`--publish-catalog`); otherwise a node follows the ledger whatever its file says.
    pub publish_catalog: bool,
    /// How often the ledger is asked for a new catalog version.
    pub catalog_poll: Duration,
    pub test_clock: bool,
    pub sweep_interval: Duration,
    /// `/readyz` fails when a background worker is this far behind.
    pub stall_after: Duration,
    /// `/readyz` fails unless a synchronous standby confirms each commit.
    pub require_synchronous_standby: bool,
    /// How long stored answers, the ledger's keys and the journal are kept.
    pub retention: Retention,
    /// How often the retention job runs.
    pub retention_interval: Duration,
    /// Stripe's webhook signing secrets (comma-separated), if Stripe drives the ledger.
    pub stripe_secrets: Option<String>,
    pub stripe_tolerance: Duration,
    /// How long a webhook endpoint has to answer one delivery attempt.
    pub webhook_timeout: Duration,
    /// `PLANLEDGER_WEBHOOK_ALLOW`: where deliveries may go beside public addresses.
    pub webhook_allow: String,
    /// Attempts in flight at once to one endpoint.
    pub webhook_concurrency: usize,
    /// What a connection may hold, and the shutdown's grace.
    pub server_limits: planledger_api::server::ServerLimits,
    /// What the handlers' edge enforces.
    pub edge: planledger_api::EdgeConfig,
    /// The key digests are signed with (docs/audit-chain.md), if any.
    pub digest_key: Option<planledger_chain::SigningKey>,
    /// How often a digest is made; `None`: only on demand.
    pub digest_every: Option<Duration>,
}

pub fn load_catalog(path: Option<&str>) -> anyhow::Result<Catalog> {
    let (name, text) = catalog_file(path)?;
    parse_catalog(&name, &text)
}

fn parse_catalog(name: &str, text: &str) -> anyhow::Result<Catalog> {
    Catalog::parse(name, text).map_err(|e| anyhow::anyhow!("invalid catalog: {e}"))
}

/// A catalog file's name and text: the built-in one unless `path` is given.
pub fn catalog_file(path: Option<&str>) -> anyhow::Result<(String, String)> {
    match path {
        None => Ok(("config/catalog.toml (built in)".to_owned(), planledger_domain::BUILTIN_SOURCE.to_owned())),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("could not read the catalog {path}"))?;
            Ok((path.to_owned(), text))
        }
    }
}

/// The catalog this node decides under: the ledger's version in force (see
/// `planledger_service::catalogs::resolve`), said in the log when the node's own file differs.
pub async fn resolve_catalog(
    log: &AnyEventLog,
    (name, text): (&str, &str),
    named: bool,
    publish: bool,
    author: &str,
    clock: &dyn Clock,
) -> anyhow::Result<catalogs::Resolved> {
    let resolved = catalogs::resolve(log, (name, text), named, publish, author, clock)
        .await
        .map_err(|e| anyhow::anyhow!("the catalog: {e}"))?;
    let version = resolved.version.version;
    match &resolved.note {
        catalogs::ResolveNote::FirstVersion => {
            tracing::info!(version, file = %name, "the ledger had no catalog: this node's is its first version")
        }
        catalogs::ResolveNote::Published => tracing::info!(version, file = %name, "published this node's catalog"),
        catalogs::ResolveNote::Agrees => {}
        catalogs::ResolveNote::FileDiffers { file_fingerprint } => tracing::warn!(
            version,
            ledger = %resolved.catalog.fingerprint(),
            file = %name,
            file_fingerprint = %file_fingerprint,
            "this node's catalog file differs from the ledger's version in force: the node follows the ledger \
             (publish the file with `planledger catalog publish`, or start with --publish-catalog)"
        ),
    }
    Ok(resolved)
}

pub async fn serve(log: AnyEventLog, options: ServeOptions) -> anyhow::Result<()> {
    let tokens = match options.tokens.as_deref() {
        Some(spec) if !spec.trim().is_empty() => Tokens::parse(spec)?,
        _ => Tokens::none(),
    };
    let addr: SocketAddr = options
        .bind
        .parse()
        .with_context(|| format!("--bind {:?} is not an address like 127.0.0.1:8080", options.bind))?;
    if tokens.is_empty() {
        if !addr.ip().is_loopback() {
            bail!("refusing to bind {addr} without tokens: set PLANLEDGER_TOKENS=name:role:secret,... or bind to 127.0.0.1");
        }
        tracing::warn!(
            "NO TOKENS CONFIGURED (PLANLEDGER_TOKENS): every caller is admin; binding to loopback {addr} only"
        );
    }
    options.retention.check().map_err(|e| anyhow::anyhow!("PLANLEDGER_KEEP_ANSWERS: {e}"))?;
    let stripe_secrets =
        planledger_stripe::signature::SigningSecret::parse_list(options.stripe_secrets.as_deref().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("PLANLEDGER_STRIPE_WEBHOOK_SECRETS: each must be {e}"))?;
    // A file that does not parse is refused before anything else, as it always was.
    let (file_name, file_text) = catalog_file(options.catalog.as_deref())?;
    parse_catalog(&file_name, &file_text)?;
    log.migrate().await.context("migration failed")?;
    log.check_transaction_order().await?;
    let clock: Arc<dyn Clock> = if options.test_clock {
        tracing::warn!("PLANLEDGER_TEST_CLOCK=1: decisions use a settable test clock");
        Arc::new(TestClock::new(SystemClock.now()))
    } else {
        Arc::new(SystemClock)
    };
    let resolved = resolve_catalog(
        &log,
        (&file_name, &file_text),
        options.catalog.is_some(),
        options.publish_catalog,
        "planledger serve",
        clock.as_ref(),
    )
    .await?;
    let catalog = Arc::new(resolved.catalog);
    let catalogs = Arc::new(resolved.catalogs);
    planledger_projections::schema::ensure(
        &log,
        &planledger_projections::schema::built_with(&catalogs),
        SystemClock.now(),
    )
    .await
    .context("could not create the read models")?;

    let (journal, journal_writer) = Journal::spawn(log.clone());
    let service = CommandService::new(
        log.clone(),
        catalog.clone(),
        clock,
        ServiceConfig { retention: options.retention, ..ServiceConfig::default() },
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    );
    service.replace_catalogs(catalogs);
    let projector = Arc::new(ProjectorState::default());
    let stripe_enabled = !stripe_secrets.is_empty();
    let stripe = planledger_stripe::Stripe::new(
        service.clone(),
        planledger_stripe::StripeConfig { secrets: stripe_secrets, tolerance: options.stripe_tolerance },
    );
    let notifier = planledger_notify::Notifier::new(
        service.clone(),
        planledger_notify::NotifyConfig {
            timeout: options.webhook_timeout,
            per_endpoint: options.webhook_concurrency,
            address_policy: planledger_notify::address::AddressPolicy::parse(&options.webhook_allow)
                .map_err(|e| anyhow::anyhow!("PLANLEDGER_WEBHOOK_ALLOW: {e}"))?,
            ..Default::default()
        },
    );
    let state = AppState::new(service.clone(), tokens, projector.clone())
        .with_edge(options.edge.clone())
        .with_stall_after(options.stall_after)
        .requiring_synchronous_standby(options.require_synchronous_standby)
        .with_catalog_grace(options.catalog_poll * 5)
        .with_stripe(stripe.clone())
        .with_notifier(notifier.clone());
    let state = match options.digest_key {
        Some(key) => {
            tracing::info!(key_id = %key.public_key().key_id(), public_key = %key.public_key().to_hex(), "digests are signed with this key");
            state.with_digest_key(key, options.digest_every)
        }
        None => state,
    };

    rebuild_stale_read_models(&state, &service.catalogs()).await?;

    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("could not bind {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, catalog = catalog.fingerprint(), backend = service.log().backend_name(), "planledger listening");
    // Tests and scripts read the bound address (port 0 picks a free one) from this line.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "planledger listening on http://{local}")?;
        stdout.flush()?;
    }

    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(deadline_worker(service.clone(), options.sweep_interval, stopped.clone()));
    let retention_task = tokio::spawn(retention_job(service.clone(), options.retention_interval, stopped.clone()));
    // Events already in the inbox are applied whether or not deliveries are accepted now.
    let stripe_task = {
        let stopped = stopped.clone();
        tokio::spawn(async move { stripe.run(Arc::default(), stopped).await })
    };
    // Notifications: the outbox projector and the deliverer, each on one node at a time.
    let notify_task = {
        let stopped = stopped.clone();
        tokio::spawn(async move { notifier.run(stopped).await })
    };
    if stripe_enabled {
        tracing::info!("Stripe webhooks accepted at POST /v1/webhooks/stripe");
    }
    let catalog_task = tokio::spawn(follow_catalog(state.clone(), options.catalog_poll, stopped.clone()));
    let digest_task = tokio::spawn(digest_job(state.clone(), stopped.clone()));
    let projector_task = tokio::spawn(run_audit_projector(log, projector, stopped));
    let draining = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        // Long polls answer now and /readyz fails, while requests in flight finish.
        draining.drain();
    };
    planledger_api::server::serve(listener, planledger_api::app(state), options.server_limits, shutdown).await?;
    tracing::info!("shutting down: requests in flight finished or the grace is over");
    let _ = stop.send(true);
    let _ = worker.await;
    let _ = retention_task.await;
    let _ = stripe_task.await;
    let _ = notify_task.await;
    let _ = projector_task.await;
    let _ = catalog_task.await;
    let _ = digest_task.await;
    service.shutdown();
    drop(service);
    let _ = tokio::time::timeout(Duration::from_secs(5), journal_writer).await;
    Ok(())
}

/// Read models built under other catalog versions are rebuilt in the background, blue/green:
/// the live ones keep answering meanwhile.
/// A rebuild already running (for an older version, say) is left to finish; the next look
/// starts the one still needed.
async fn rebuild_stale_read_models(state: &AppState, catalogs: &Catalogs) -> anyhow::Result<()> {
    for info in planledger_projections::schema::info(state.service.log()).await? {
        if info.is_stale(catalogs) {
            if let Some(model) = ReadModel::parse(&info.name) {
                if state.rebuilds.start(&state.service, model, When::IfStale) {
                    tracing::warn!(read_model = %info.name, built_with = %info.catalog_fingerprint, "read model is stale for the catalog versions; rebuilding in the background");
                }
            }
        }
    }
    Ok(())
}

/// How many catalog polls between two looks for read models still stale.
const STALE_RECHECK_TICKS: u64 = 30;

/// Follows the ledger's catalog: every `interval`, one index probe for a new version. A new
/// version is read with all the others and replaces the node's set for every decision from the
/// next batch on (each store is decided under its own version, and moves to a later one when
/// that version says: see `planledger_domain::terms`); read models built under the old set are
/// rebuilt. A set with a version this build cannot read is not applied: the node keeps its
/// versions and says so (the operator must upgrade the node). A store already on such a version
/// is refused, not decided under other rules (see the worker's `know_version_of`).
async fn follow_catalog(state: AppState, interval: Duration, mut stop: watch::Receiver<bool>) {
    let service = state.service.clone();
    let mut head = service.catalogs().newest().version();
    let mut refused = None;
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        ticks += 1;
        let now_head = match catalogs::head(service.log()).await {
            Ok(now_head) => now_head,
            Err(error) => {
                tracing::debug!(%error, "could not ask the ledger for a new catalog version");
                continue;
            }
        };
        // A worker may have read the new versions already (for a store on one of them).
        let known = service.catalogs().newest().version();
        if now_head <= known || refused == Some(now_head) {
            // Nothing this node lacks. Now and then, and once after a worker brought new
            // versions in, a read model still stale for them (its rebuild was refused while one
            // for the set before ran, or failed) is started.
            if known != head || ticks % STALE_RECHECK_TICKS == 0 {
                head = known;
                if let Err(error) = rebuild_stale_read_models(&state, &service.catalogs()).await {
                    tracing::debug!(%error, "could not look for stale read models");
                }
            }
            continue;
        }
        match catalogs::load(service.log()).await {
            Ok(Some(fresh)) => {
                let fresh = Arc::new(fresh);
                let newest = fresh.newest();
                tracing::info!(
                    version = newest.version(),
                    fingerprint = %newest.catalog.fingerprint(),
                    effective_at = %newest.effective_at,
                    existing_stores = newest.reaches.as_str(),
                    from = head,
                    "a new catalog version is published: deciding under the ledger's versions"
                );
                service.replace_catalogs(fresh.clone());
                head = fresh.newest().version();
                if let Err(error) = rebuild_stale_read_models(&state, &fresh).await {
                    tracing::warn!(%error, "could not look for read models to rebuild under the new catalog");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(version = now_head, %error, "the ledger's catalog versions cannot be read by this build: keeping the versions this node has; upgrade this node");
                refused = Some(now_head);
            }
        }
    }
}

/// Appends due transitions every `interval` until told to stop.
async fn deadline_worker(service: CommandService, interval: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(error) = service.sweep().await {
            tracing::warn!(%error, "deadline sweep failed; retrying at the next interval");
        }
    }
}

/// Deletes expired bookkeeping (answers, keys, journal, settled Stripe events) every `interval`
/// until told to stop.
async fn retention_job(service: CommandService, interval: Duration, mut stop: watch::Receiver<bool>) {
    let retention = service.retention();
    tracing::info!(
        answers = %planledger_service::retention::describe(retention.answers),
        keys = %planledger_service::retention::describe(retention.keys),
        journal = %planledger_service::retention::describe(retention.journal),
        stripe_events = %planledger_service::retention::describe(retention.stripe_events),
        "retention"
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        match service.expire().await {
            Ok(report) if report != planledger_service::RetentionReport::default() => {
                tracing::info!(
                    answers = report.answers,
                    keys = report.keys,
                    journal = report.journal,
                    stripe_events = report.stripe_events,
                    "expired bookkeeping deleted"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "retention failed; retrying at the next interval"),
        }
    }
}

/// Makes a signed digest every `every`, unless one (from any node) is younger than that: nodes
/// that look at once may make one each, which is harmless.
async fn digest_job(state: AppState, mut stop: watch::Receiver<bool>) {
    let (Some(key), Some(every)) = (state.digests.key.as_ref(), state.digests.every) else { return };
    let look = every.min(Duration::from_secs(60));
    loop {
        let now = state.service.clock().now();
        let due = match state.service.log().digests(None, 1).await {
            Ok(latest) => latest
                .first()
                .is_none_or(|d| now - d.created_at >= chrono::TimeDelta::from_std(every).unwrap_or_default()),
            Err(error) => {
                tracing::warn!(%error, "could not read the latest digest; retrying");
                false
            }
        };
        if due {
            match state.service.log().make_digest(key, now).await {
                Ok(digest) => tracing::info!(digest = digest.digest_id, streams = digest.streams, "signed a digest"),
                Err(error) => tracing::warn!(%error, "could not make a digest; retrying"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(look) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
