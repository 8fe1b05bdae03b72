//! The scenarios of `planledger-bench`: planledger against the lock-row design it replaces and against the
//! machine's commit limit, side by side in one run, on a fresh PostgreSQL database.
//!
//! Every scenario checks exactness afterwards (allowed = events in the log = usage in the read
//! model; allowed over the limit: 0) and fails loudly otherwise. Figures are meant as ratios
//! within one run: the machine is shared and noisy.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use planledger_domain::{evolve, ActionName, Amount, Catalog, Command, Event, StoreId, TenantState};
use planledger_projections::rebuild::{rebuild, Progress, When};
use planledger_projections::ReadModel;
use planledger_service::{CommandMeta, CommandService, IdempotencyRequest, Journal, ServiceConfig, SystemClock};
use planledger_store::{AnyEventLog, EventLog, Snapshot, StoreConfig, StreamId};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub server_url: String,
    pub clients: usize,
    pub duration: Duration,
    pub quick: bool,
    pub json: Option<String>,
    pub only: Option<Vec<String>>,
}

/// One scenario's figures.
#[derive(Debug, Clone, Default)]
struct Figures {
    name: String,
    clients: usize,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    peak_rss_mb: f64,
    overshoot: u64,
    /// Resident memory at the end, where the scenario measures it (`serve_*`).
    rss_after_mb: Option<f64>,
    /// How long a rebuild's swap held writers off the live table (`writes_during_rebuild`).
    swap_pause_ms: Option<f64>,
    ratio: Option<(String, f64)>,
    note: String,
}

type Op = Arc<dyn Fn(usize) -> Pin<Box<dyn Future<Output = anyhow::Result<bool>> + Send>> + Send + Sync>;

/// What a timed run of clients did.
struct Run {
    ops: u64,
    allowed: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Run {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index] as f64 / 1000.0
    }

    fn figures(&self, name: &str, clients: usize) -> Figures {
        Figures {
            name: name.to_owned(),
            clients,
            ops_per_sec: self.ops as f64 / self.seconds,
            p50_ms: self.percentile_ms(0.50),
            p99_ms: self.percentile_ms(0.99),
            peak_rss_mb: planledger_alloc::peak_resident_mb(),
            ..Figures::default()
        }
    }
}

/// Runs `clients` loops of `op` for `duration`.
async fn run_clients(clients: usize, duration: Duration, op: Op) -> anyhow::Result<Run> {
    let deadline = Instant::now() + duration;
    run_until(clients, op, Arc::new(move || Instant::now() >= deadline)).await
}

/// Runs `clients` loops of `op`, each until `done` says so.
async fn run_until(clients: usize, op: Op, done: Arc<dyn Fn() -> bool + Send + Sync>) -> anyhow::Result<Run> {
    let started = Instant::now();
    let allowed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (op, allowed, done) = (op.clone(), allowed.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !done() {
                let t = Instant::now();
                if op(client).await? {
                    allowed.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(t.elapsed().as_micros() as u64);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await.context("a bench client panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Run { ops: latencies_us.len() as u64, allowed: allowed.load(Ordering::Relaxed), seconds, latencies_us })
}

/// Starts a scenario's own peak: free memory earlier scenarios left with the allocator goes
/// back to the system first (as it does in `serve`), or it would count in this peak.
async fn reset_peak_rss() {
    tokio::time::sleep(planledger_alloc::RETURNED_WITHIN).await;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A fresh database on the server, dropped when the guard is dropped.
struct BenchDb {
    server: PgConnectOptions,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(server_url: &str) -> anyhow::Result<BenchDb> {
        let server: PgConnectOptions = server_url.parse().context("the bench needs a PostgreSQL server URL")?;
        let mut admin =
            server.connect().await.with_context(|| format!("could not reach PostgreSQL at {server_url}"))?;
        let name = format!("planledger_bench_{}", Uuid::new_v4().simple());
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str()).await?;
        admin.close().await?;
        let url = format!("{}/{name}", server_url.rsplit_once('/').map_or(server_url, |(base, _)| base));
        Ok(BenchDb { server, name, url })
    }

    async fn drop_now(self) {
        if let Ok(mut admin) = self.server.connect().await {
            let _ = sqlx::Executor::execute(
                &mut admin,
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str(),
            )
            .await;
            let _ = admin.close().await;
        }
    }
}

/// The default catalog with limits far above any run's volume, so throughput is measured and
/// exactness still checked.
fn bench_catalog() -> anyhow::Result<Catalog> {
    let text = include_str!("../../../config/catalog.toml").replacen(
        "create_article = { limit = 10, period = \"month\" }",
        "create_article = { limit = 1000000000, period = \"month\" }",
        1,
    );
    Catalog::parse("bench catalog", &text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The ledger under test, reached through the store like `serve` reaches it, and a PostgreSQL
/// pool of the bench's own on the same database: for the baselines (the designs compared
/// with), the generated histories (`COPY`), and checking afterwards what the ledger wrote.
struct Ledger {
    log: AnyEventLog,
    direct: sqlx::PgPool,
}

impl std::ops::Deref for Ledger {
    type Target = AnyEventLog;
    fn deref(&self) -> &AnyEventLog {
        &self.log
    }
}

async fn open_log(url: &str, pool: u32) -> anyhow::Result<Ledger> {
    let config = StoreConfig {
        max_connections: pool,
        idle_in_transaction_timeout: Duration::from_secs(30),
        acquire_timeout: Duration::from_secs(30),
        ..StoreConfig::new(url)
    };
    let log = AnyEventLog::connect(&config).await?;
    log.migrate().await?;
    planledger_projections::schema::ensure(&log, bench_catalog()?.fingerprint(), Utc::now()).await?;
    let direct = sqlx::postgres::PgPoolOptions::new().max_connections(pool.max(2)).connect(url).await?;
    Ok(Ledger { log, direct })
}

/// `tenants` tenants moving in (`planledger import`'s path: NDJSON read, then each through
/// `CommandService::import`, `clients` at a time): every status, ids that are not UUIDs,
/// trials mid-way, usage mid-month. Then the same file again, which must change nothing.
async fn scenario_import(url: &str, tenants: usize, clients: usize) -> anyhow::Result<Vec<Figures>> {
    let ledger = open_log(url, 32).await?;
    let catalog = Arc::new(bench_catalog()?);
    let service = service(&ledger.log, &catalog);
    let now = Utc::now();
    let month = now.format("%Y-%m-01T00:00:00Z").to_string();
    let at = |days: i64| (now + chrono::TimeDelta::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text: String = (0..tenants)
        .map(|i| {
            let id = format!("cl{i:010x}q0");
            let row = match i % 8 {
                0 => serde_json::json!({"externalId": id, "status": "trialing", "trialEndsAt": at(5),
                      "usage": [{"action": "create_article", "used": 4, "since": month}]}),
                1 => serde_json::json!({"externalId": id, "status": "grace", "graceEndsAt": at(2)}),
                2 => serde_json::json!({"externalId": id, "status": "maintenance", "maintenanceEndsAt": at(90)}),
                3 => serde_json::json!({"externalId": id, "status": "frozen"}),
                4 => serde_json::json!({"externalId": id, "status": "past_due", "planId": "starter", "subscriptionId": format!("sub_{i}")}),
                5 => serde_json::json!({"externalId": id, "status": "canceled", "planId": "starter"}),
                _ => serde_json::json!({"externalId": id, "status": "active", "planId": "starter",
                      "subscriptionId": format!("sub_{i}"), "usage": [{"action": "create_article", "used": 12, "since": month}]}),
            };
            format!("{row}\n")
        })
        .collect();
    let mut figures = Vec::new();
    for name in ["import", "import_again"] {
        let started = Instant::now();
        let rows = planledger_api::import::read(&text, planledger_api::import::Format::Ndjson, "bench.ndjson", "bench");
        let rows: Arc<Vec<_>> = Arc::new(
            rows.into_iter().map(|row| row.tenant).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow::anyhow!(e))?,
        );
        let next = Arc::new(AtomicU64::new(0));
        let op: Op = {
            let (service, rows, next) = (service.clone(), rows.clone(), next.clone());
            Arc::new(move |_| {
                let (service, rows, next) = (service.clone(), rows.clone(), next.clone());
                Box::pin(async move {
                    let Some(tenant) = rows.get(next.fetch_add(1, Ordering::Relaxed) as usize) else {
                        return Ok(false);
                    };
                    match service.import(tenant.clone(), meta()).await? {
                        planledger_service::Answer::Decided(planledger_service::Outcome::Accepted(a)) => {
                            Ok(!a.facts.is_empty())
                        }
                        other => bail!("an import was not accepted: {other:?}"),
                    }
                })
            })
        };
        let done = {
            let next = next.clone();
            Arc::new(move || next.load(Ordering::Relaxed) as usize >= tenants)
        };
        let mut run = run_until(clients, op, done).await?;
        // The file's reading counts in the rate.
        run.seconds = started.elapsed().as_secs_f64();
        let expected = if name == "import" { tenants as u64 } else { 0 };
        if run.allowed != expected {
            bail!("{name}: {} tenants imported, {expected} expected", run.allowed);
        }
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_events").fetch_one(&ledger.direct).await?;
        if events != tenants as i64 {
            bail!("{name}: {events} events for {tenants} tenants");
        }
        let mut f = run.figures(name, clients);
        f.note = format!(
            "{tenants} tenants in 8 statuses; events = tenants{}",
            if name == "import" { "" } else { "; nothing appended" }
        );
        figures.push(f);
    }
    Ok(figures)
}

fn service(log: &AnyEventLog, catalog: &Arc<Catalog>) -> CommandService {
    let (journal, _writer) = Journal::spawn(log.clone());
    CommandService::new(
        log.clone(),
        catalog.clone(),
        Arc::new(SystemClock),
        ServiceConfig::default(),
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    )
}

fn meta() -> CommandMeta {
    CommandMeta {
        correlation_id: "bench".into(),
        actor: "bench".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    }
}

fn consume() -> Command {
    Command::Consume {
        action: ActionName::parse("create_article").unwrap_or_else(|_| unreachable!()),
        amount: Amount::ONE,
        consumption_id: Uuid::now_v7(),
    }
}

/// Registers `count` stores on a long trial, in parallel.
async fn trialing_stores(service: &CommandService, count: usize) -> anyhow::Result<Vec<StoreId>> {
    let stores: Vec<StoreId> = (0..count).map(|_| StoreId::new(Uuid::new_v4())).collect();
    let mut tasks = Vec::new();
    for chunk in stores.chunks(count.div_ceil(32).max(1)) {
        let (service, chunk) = (service.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for store in chunk {
                let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
                service.execute(store, register, meta()).await?;
                let days = planledger_domain::Days::parse(3650).ok();
                service.execute(store, Command::StartTrial { plan_id: None, days, force_reset: None }, meta()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(stores)
}

/// Allowed consumptions = QuotaConsumed events = usage in tenant_state; over-limit allowed: 0.
async fn check_exact(log: &Ledger, name: &str, allowed: u64, limit: u64) -> anyhow::Result<u64> {
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_events WHERE event_type = 'QuotaConsumed'")
        .fetch_one(&log.direct)
        .await?;
    let (used, over): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT sum((u->>'used')::bigint)::bigint, count(*) FILTER (WHERE (u->>'used')::bigint > $1)
         FROM tenant_state, jsonb_array_elements(usage) u WHERE u->>'action' = 'create_article'",
    )
    .bind(limit as i64)
    .fetch_one(&log.direct)
    .await?;
    let used = used.unwrap_or(0) as u64;
    if events as u64 != allowed || used != allowed {
        bail!("{name}: NOT EXACT: {allowed} allowed, {events} QuotaConsumed events, {used} used in tenant_state");
    }
    Ok(over.unwrap_or(0) as u64)
}

/// What each kind of row costs on disk, indexes included (the growth figures of
/// docs/operations.md): the log's events, stored answers, journal entries, `tenant_state` rows.
async fn storage_per_row(log: &Ledger) -> anyhow::Result<String> {
    // The journal is written behind the commands: let it catch up before it is measured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut parts = Vec::new();
    for (what, table) in [
        ("event", "ledger_events"),
        ("answer", "idempotent_answers"),
        ("journal entry", "command_journal"),
        ("tenant_state row", "tenant_state"),
    ] {
        let (bytes, rows): (i64, i64) =
            sqlx::query_as(&format!("SELECT pg_total_relation_size('{table}'), (SELECT count(*) FROM {table})"))
                .fetch_one(&log.direct)
                .await?;
        parts.push(format!("{what} {} B", bytes / rows.max(1)));
    }
    Ok(format!("on disk with indexes, per row: {}", parts.join(", ")))
}

async fn scenario_raw(url: &str, clients: usize, duration: Duration) -> anyhow::Result<Figures> {
    let log = open_log(url, clients as u32).await?;
    let pool = log.direct.clone();
    sqlx::Executor::execute(&pool, "CREATE TABLE bench_raw (LIKE ledger_events INCLUDING DEFAULTS)").await?;
    let op: Op = Arc::new(move |client| {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO bench_raw (global_position, event_id, stream_id, version, event_type, schema_version, data,
                    correlation_id, actor, catalog_fingerprint, recorded_at, hash)
                 VALUES (nextval(pg_get_serial_sequence('ledger_events', 'global_position')), $1, $2, 1, 'QuotaConsumed', 1, $3, 'bench', 'bench', 'fp', now(), $4)",
            )
            .bind(Uuid::now_v7())
            .bind(format!("store-{client}"))
            .bind(sqlx::types::Json(json!({"action": "create_article", "amount": 1})))
            .bind([0u8; 32].as_slice())
            .execute(&pool)
            .await?;
            Ok(true)
        })
    });
    let run = run_clients(clients, duration, op).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_raw").fetch_one(&log.direct).await?;
    if rows as u64 != run.ops {
        bail!("raw: NOT EXACT: {} inserts acknowledged, {rows} rows", run.ops);
    }
    Ok(run.figures("raw", clients))
}

/// The seed's design: a lock row per store with a 30-second expiry, then count, insert the usage
/// row and an audit row, then delete the lock; one statement per call, 2 ms back-off.
async fn scenario_lockrow(
    url: &str,
    name: &str,
    stores: usize,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Figures> {
    let log = open_log(url, clients as u32).await?;
    let pool = log.direct.clone();
    sqlx::Executor::execute(
        &pool,
        "CREATE TABLE plan_operation_locks (store_id text PRIMARY KEY, lock_id uuid NOT NULL, expires_at timestamptz NOT NULL);
         CREATE TABLE usage_rows (id bigserial PRIMARY KEY, store_id text NOT NULL, action text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX ON usage_rows (store_id, action, created_at);
         CREATE TABLE plan_audit_log (id bigserial PRIMARY KEY, store_id text NOT NULL, event_type text NOT NULL, correlation_id text, metadata jsonb, created_at timestamptz NOT NULL DEFAULT now());",
    )
    .await?;
    let limit: i64 = 1_000_000_000;
    let store_ids: Arc<Vec<String>> = Arc::new((0..stores).map(|_| Uuid::new_v4().to_string()).collect());
    let op: Op = Arc::new(move |client| {
        let (pool, store_ids) = (pool.clone(), store_ids.clone());
        Box::pin(async move {
            let store = &store_ids[(client + fastrand_index(store_ids.len())) % store_ids.len()];
            let lock = Uuid::new_v4();
            loop {
                let got: Option<Uuid> = sqlx::query_scalar(
                    "INSERT INTO plan_operation_locks (store_id, lock_id, expires_at) VALUES ($1, $2, now() + interval '30 seconds')
                     ON CONFLICT (store_id) DO UPDATE SET lock_id = EXCLUDED.lock_id, expires_at = EXCLUDED.expires_at
                     WHERE plan_operation_locks.expires_at < now() RETURNING lock_id",
                )
                .bind(store)
                .bind(lock)
                .fetch_optional(&pool)
                .await?;
                if got.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let used: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM usage_rows WHERE store_id = $1 AND action = 'create_article' AND created_at >= date_trunc('month', now())",
            )
            .bind(store)
            .fetch_one(&pool)
            .await?;
            let allowed = used < limit;
            if allowed {
                sqlx::query("INSERT INTO usage_rows (store_id, action) VALUES ($1, 'create_article')")
                    .bind(store)
                    .execute(&pool)
                    .await?;
                sqlx::query("INSERT INTO plan_audit_log (store_id, event_type, correlation_id, metadata) VALUES ($1, 'quota_consumed', 'bench', '{}')")
                    .bind(store)
                    .execute(&pool)
                    .await?;
            }
            sqlx::query("DELETE FROM plan_operation_locks WHERE store_id = $1 AND lock_id = $2")
                .bind(store)
                .bind(lock)
                .execute(&pool)
                .await?;
            Ok(allowed)
        })
    });
    let run = run_clients(clients, duration, op).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_rows").fetch_one(&log.direct).await?;
    if rows as u64 != run.allowed {
        bail!("{name}: NOT EXACT: {} allowed, {rows} usage rows", run.allowed);
    }
    let mut figures = run.figures(name, clients);
    figures.note = format!("{stores} store(s)");
    Ok(figures)
}

/// A cheap per-call spread of clients over stores.
fn fastrand_index(n: usize) -> usize {
    (Uuid::now_v7().as_u128() as usize) % n.max(1)
}

/// How a scenario's clients send: without keys, or with a fresh `Idempotency-Key` on every
/// command, as clients that retry safely do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    None,
    /// Every hundredth command is sent twice with its key: the second answer must be the first,
    /// marked replayed, and append nothing (the run's exactness check counts the log).
    Fresh,
}

/// The key of the `n`th keyed command, and whether this one is sent again as a retry.
fn next_key(counter: &AtomicU64) -> (String, bool) {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (format!("bench-{n}"), n % 100 == 99)
}

#[allow(clippy::too_many_arguments)]
async fn scenario_service(
    url: &str,
    name: &str,
    stores: usize,
    clients: usize,
    duration: Duration,
    http: bool,
    keys: Keys,
) -> anyhow::Result<Figures> {
    let catalog = Arc::new(bench_catalog()?);
    let log = open_log(url, 32).await?;
    let service = service(&log, &catalog);
    let ids = Arc::new(trialing_stores(&service, stores).await?);
    let counter = Arc::new(AtomicU64::new(0));
    let replays = Arc::new(AtomicU64::new(0));
    let op: Op = if http {
        let state = planledger_api::AppState::new(service.clone(), planledger_api::Tokens::none(), Arc::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, planledger_api::app(state)).await });
        let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
        let (counter, replays) = (counter.clone(), replays.clone());
        Arc::new(move |worker| {
            let (client, ids, base) = (client.clone(), ids.clone(), base.clone());
            let (counter, replays) = (counter.clone(), replays.clone());
            Box::pin(async move {
                let store = ids[(worker + fastrand_index(ids.len())) % ids.len()];
                let url = format!("{base}/v1/stores/{store}/quota/consume");
                let send = |key: Option<&str>| {
                    let mut request = client.post(&url).json(&json!({"action": "create_article"}));
                    if let Some(key) = key {
                        request = request.header("Idempotency-Key", key);
                    }
                    request.send()
                };
                if keys == Keys::None {
                    return Ok(send(None).await?.status().as_u16() == 200);
                }
                let (key, retry) = next_key(&counter);
                let first = send(Some(&key)).await?;
                let ok = first.status().as_u16() == 200;
                let first_body = first.bytes().await?;
                if retry {
                    let again = send(Some(&key)).await?;
                    let marked = again.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
                    if !marked || again.bytes().await? != first_body {
                        bail!("{key}: the retry was not the first answer, replayed");
                    }
                    replays.fetch_add(1, Ordering::Relaxed);
                }
                Ok(ok)
            })
        })
    } else {
        let service = service.clone();
        let (counter, replays) = (counter.clone(), replays.clone());
        Arc::new(move |worker| {
            let (service, ids) = (service.clone(), ids.clone());
            let (counter, replays) = (counter.clone(), replays.clone());
            Box::pin(async move {
                let store = ids[(worker + fastrand_index(ids.len())) % ids.len()];
                if keys == Keys::None {
                    return Ok(accepted(&service.execute(store, consume(), meta()).await?));
                }
                let (key, retry) = next_key(&counter);
                let keyed = CommandMeta {
                    idempotency: Some(IdempotencyRequest { key: key.clone(), request_hash: "bench".into() }),
                    ..meta()
                };
                let first = service.execute(store, consume(), keyed.clone()).await?;
                let ok = accepted(&first);
                if retry {
                    let again = service.execute(store, consume(), keyed).await?;
                    let rendered = planledger_api::render::rendered(Ok(first), &service.catalogs(), "bench");
                    if again != planledger_service::Answer::Replayed(rendered) {
                        bail!("{key}: the retry was not the first answer, replayed: {again:?}");
                    }
                    replays.fetch_add(1, Ordering::Relaxed);
                }
                Ok(ok)
            })
        })
    };
    let run = run_clients(clients, duration, op).await?;
    let overshoot = check_exact(&log, name, run.allowed, 1_000_000_000).await?;
    let mut figures = run.figures(name, clients);
    figures.overshoot = overshoot;
    figures.note = match keys {
        Keys::None => format!("{stores} store(s), {} allowed", run.allowed),
        Keys::Fresh => format!(
            "{stores} store(s), {} allowed, a fresh key each, {} retries replayed; {}",
            run.allowed,
            replays.load(Ordering::Relaxed),
            storage_per_row(&log).await?
        ),
    };
    service.shutdown();
    Ok(figures)
}

/// Writes a history straight into the log with `COPY` (a busy ledger's past, in seconds rather
/// than through the command path): each store registered and on a trial, then
/// `events_per_store - 2` consumptions. Stores with a long stream get a snapshot at the end, as
/// the command path keeps them.
async fn generate_history(
    log: &Ledger,
    stores: usize,
    events_per_store: usize,
    catalog: &Catalog,
) -> anyhow::Result<Vec<StoreId>> {
    let pg = &log.direct;
    let ids: Vec<StoreId> = (0..stores).map(|_| StoreId::new(Uuid::new_v4())).collect();
    let now = Utc::now();
    let window = planledger_domain::period::window_at(
        planledger_domain::Period::Month,
        now,
        planledger_domain::TimeZoneName::UTC.tz(),
        planledger_domain::catalog::Anchor::Calendar,
        None,
    );
    let mut copy = HistoryCopy::new(catalog.fingerprint(), now);
    for store in &ids {
        let mut state = TenantState::default();
        let mut version = 0;
        let mut append = |copy: &mut HistoryCopy, event: Event| {
            version += 1;
            copy.event(*store, version, &event);
            state = evolve(std::mem::take(&mut state), &event);
        };
        append(
            &mut copy,
            Event::StoreRegistered {
                store_id: *store,
                name: None,
                time_zone: planledger_domain::TimeZoneName::UTC,
                catalog_version: None,
            },
        );
        append(
            &mut copy,
            Event::TrialStarted {
                plan_id: planledger_domain::PlanId::parse("free_trial")?,
                started_at: now,
                ends_at: now + chrono::TimeDelta::days(3650),
            },
        );
        for i in 0..events_per_store.saturating_sub(2) {
            append(
                &mut copy,
                Event::QuotaConsumed {
                    consumption_id: Uuid::now_v7(),
                    action: ActionName::parse("update_product")?,
                    amount: Amount::ONE,
                    period: window.period,
                    period_start: window.start,
                    period_end: window.end,
                    used_after: i as u64 + 1,
                    limit: None,
                    at: now,
                    from_grants: vec![],
                    grants: None,
                },
            );
            if copy.full() {
                copy.flush(pg).await?;
            }
        }
        copy.stream(*store, version);
        if version > 1000 {
            let snapshot = Snapshot {
                stream_id: StreamId::parse(store.stream_name())?,
                version,
                state: serde_json::to_value(&state)?,
                fold_fingerprint: planledger_domain::fold_fingerprint().to_owned(),
            };
            copy.flush(pg).await?;
            log.save_snapshot(&snapshot).await?;
        }
        if copy.full() {
            copy.flush(pg).await?;
        }
    }
    copy.flush(pg).await?;
    sqlx::Executor::execute(pg, "ANALYZE ledger_events").await?;
    Ok(ids)
}

/// Rows of `ledger_events` and `ledger_streams` in `COPY`'s text format, sent in chunks.
struct HistoryCopy {
    events: String,
    streams: String,
    fingerprint: String,
    at: String,
    recorded_at: chrono::DateTime<Utc>,
    /// The chain hash of the last event written of the store being written.
    head: planledger_chain::Hash,
}

impl HistoryCopy {
    /// About this many bytes of rows per `COPY` (and per transaction).
    const CHUNK: usize = 32 << 20;

    fn new(fingerprint: &str, at: chrono::DateTime<Utc>) -> Self {
        let at = planledger_store::truncate_to_micros(at);
        Self {
            events: String::new(),
            streams: String::new(),
            fingerprint: fingerprint.to_owned(),
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            recorded_at: at,
            head: planledger_chain::GENESIS,
        }
    }

    fn full(&self) -> bool {
        self.events.len() >= Self::CHUNK
    }

    fn event(&mut self, store: StoreId, version: i64, event: &Event) {
        use planledger_store::copy_text::{push_field, push_nullable};
        let id = match event {
            // A consumption is found again (for a refund) by its event id.
            Event::QuotaConsumed { consumption_id, .. } => *consumption_id,
            _ => Uuid::now_v7(),
        };
        let (stream, data) = (store.stream_name(), event.data());
        // Chained as the log chains what it appends (docs/audit-chain.md).
        let previous = if version == 1 { planledger_chain::GENESIS } else { self.head };
        self.head = planledger_chain::event_hash(
            &previous,
            &planledger_chain::EventFields {
                stream_id: &stream,
                version,
                event_id: id,
                event_type: event.event_type(),
                schema_version: event.schema_version(),
                data: &data,
                correlation_id: "bench",
                causation_id: None,
                idempotency_key: None,
                actor: "bench",
                catalog_fingerprint: &self.fingerprint,
                recorded_at: self.recorded_at,
            },
        );
        let out = &mut self.events;
        for field in [
            id.to_string(),
            stream,
            version.to_string(),
            event.event_type().to_owned(),
            event.schema_version().to_string(),
            data.to_string(),
        ] {
            push_field(out, &field);
            out.push('\t');
        }
        for field in [Some("bench"), None, None, Some("bench"), Some(self.fingerprint.as_str()), Some(self.at.as_str())]
        {
            push_nullable(out, field);
            out.push('\t');
        }
        push_field(out, &format!("\\x{}", planledger_chain::to_hex(&self.head)));
        out.push('\n');
    }

    /// The store's row, after its last event.
    fn stream(&mut self, store: StoreId, version: i64) {
        planledger_store::copy_text::push_field(&mut self.streams, &store.stream_name());
        self.streams.push_str(&format!("\t{version}\t"));
        planledger_store::copy_text::push_field(
            &mut self.streams,
            &format!("\\x{}", planledger_chain::to_hex(&self.head)),
        );
        self.streams.push('\n');
    }

    async fn flush(&mut self, pg: &sqlx::PgPool) -> anyhow::Result<()> {
        let mut tx = pg.begin().await?;
        for (statement, rows) in [
            (
                "COPY ledger_events (event_id, stream_id, version, event_type, schema_version, data, correlation_id,
                    causation_id, idempotency_key, actor, catalog_fingerprint, recorded_at, hash) FROM STDIN",
                std::mem::take(&mut self.events),
            ),
            ("COPY ledger_streams (stream_id, version, head) FROM STDIN", std::mem::take(&mut self.streams)),
        ] {
            if rows.is_empty() {
                continue;
            }
            let mut copy = tx.copy_in_raw(statement).await?;
            copy.send(rows.into_bytes()).await?;
            copy.finish().await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The machine's in-database ceiling for a rebuild, on the log the rebuild then reads: every
/// event read in log order (`COPY (SELECT ...) TO STDOUT`), and an audit-shaped table of as many
/// rows written (`INSERT ... SELECT`) with its indexes built after. Its rate is rows written and
/// indexed per second; the read's time is in the note.
async fn scenario_copy_limit(log: &Ledger) -> anyhow::Result<Figures> {
    use futures_util::StreamExt;
    let total = log.event_count().await? as f64;
    let mut conn = log.direct.acquire().await?;
    let started = Instant::now();
    let mut bytes = 0usize;
    {
        let mut out = conn
            .copy_out_raw("COPY (SELECT * FROM ledger_events ORDER BY transaction_id, global_position) TO STDOUT")
            .await?;
        while let Some(chunk) = out.next().await {
            bytes += chunk?.len();
        }
    }
    let read = started.elapsed().as_secs_f64();
    let (table, indexes) = ReadModel::AuditLog.ddl_then_indexes(log, "copy_limit_audit");
    sqlx::raw_sql(&table).execute(&mut *conn).await?;
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO copy_limit_audit (store_id, version, global_position, event_type, correlation_id, actor, recorded_at)
         SELECT substr(stream_id, 7), version, global_position, event_type, correlation_id, actor, recorded_at
         FROM ledger_events ORDER BY transaction_id, global_position",
    )
    .execute(&mut *conn)
    .await?;
    // As the rebuild builds its indexes.
    sqlx::raw_sql(&format!("SET maintenance_work_mem = '256MB'; {indexes}")).execute(&mut *conn).await?;
    let write = started.elapsed().as_secs_f64();
    sqlx::raw_sql("RESET maintenance_work_mem; DROP TABLE copy_limit_audit").execute(&mut *conn).await?;
    Ok(Figures {
        name: "copy_limit".into(),
        clients: 1,
        ops_per_sec: total / write,
        peak_rss_mb: planledger_alloc::peak_resident_mb(),
        note: format!(
            "{total} events: read in log order in {read:.1}s ({:.0} MB), written and indexed in {write:.1}s; ops/s = rows written and indexed per second",
            bytes as f64 / 1e6
        ),
        ..Figures::default()
    })
}

/// The ceiling (`copy_limit`), then the rebuild of both read models, on one generated log.
async fn scenario_rebuild(url: &str, stores: usize, events_per_store: usize) -> anyhow::Result<Vec<Figures>> {
    let catalog = bench_catalog()?;
    let log = open_log(url, 16).await?;
    generate_history(&log, stores, events_per_store, &catalog).await?;
    let mut figures = vec![scenario_copy_limit(&log).await?];
    figures.extend(rebuild_figures(&log, "rebuild", stores).await?);
    Ok(figures)
}

/// Rebuilds both read models of `log`'s history (of `stores` stores) and checks them.
async fn rebuild_figures(log: &Ledger, name: &str, stores: usize) -> anyhow::Result<Vec<Figures>> {
    let catalog = bench_catalog()?;
    let mut figures = Vec::new();
    let total = log.event_count().await? as u64;
    reset_peak_rss().await;
    let started = Instant::now();
    let mut worst_rate = f64::MAX;
    let mut each = Vec::new();
    for model in ReadModel::ALL {
        let progress = Progress::default();
        let t = Instant::now();
        rebuild(
            log,
            model,
            &planledger_domain::Catalogs::single(Arc::new(catalog.clone())),
            Utc::now(),
            &progress,
            When::Always,
        )
        .await?;
        let seconds = t.elapsed().as_secs_f64();
        worst_rate = worst_rate.min(total as f64 / seconds);
        each.push(format!("{} {seconds:.1}s", model.name()));
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rows, audit): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM tenant_state), (SELECT count(*) FROM audit_log)")
            .fetch_one(&log.direct)
            .await?;
    if rows as usize != stores || audit as u64 != total {
        bail!("{name}: NOT EXACT: {rows} tenant_state rows for {stores} stores, {audit} audit rows for {total} events");
    }
    figures.push(Figures {
        name: name.into(),
        clients: 1,
        ops_per_sec: worst_rate,
        p50_ms: 0.0,
        p99_ms: 0.0,
        peak_rss_mb: planledger_alloc::peak_resident_mb(),
        note: format!(
            "{total} events over {stores} stores; both models in {seconds:.1}s ({}); ops/s = events/s of the slower model",
            each.join(", ")
        ),
        ..Figures::default()
    });
    Ok(figures)
}

/// Commands while `tenant_state` is rebuilt (issue 14): 64 clients consume on a log of `stores`
/// stores, first for `duration` with no rebuild (every store warmed up before, so both phases
/// are served from cached states), then for as long as a rebuild of `tenant_state` runs. The
/// figures are the p99 of each phase and the time the swap held writers off the live table.
/// Exact: every consumption acknowledged is in the log, and every rebuilt row is at its stream's
/// version (nothing written during the rebuild is missing from the swapped-in table).
async fn scenario_rebuild_under_load(
    url: &str,
    stores: usize,
    events_per_store: usize,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Figures>> {
    let catalog = Arc::new(bench_catalog()?);
    let log = open_log(url, 32).await?;
    let ids = Arc::new(generate_history(&log, stores, events_per_store, &catalog).await?);
    let catalogs = Arc::new(planledger_domain::Catalogs::single(catalog.clone()));
    // The live table as production has it: full.
    rebuild(&log, ReadModel::TenantState, &catalogs, Utc::now(), &Progress::default(), When::Always).await?;
    let service = service(&log, &catalog);
    let allowed = Arc::new(AtomicU64::new(0));
    // Every store once, so that its worker holds its state before anything is timed.
    let next = Arc::new(AtomicU64::new(0));
    let warm_up: Op = {
        let (service, ids, next) = (service.clone(), ids.clone(), next.clone());
        Arc::new(move |_| {
            let (service, ids, next) = (service.clone(), ids.clone(), next.clone());
            Box::pin(async move {
                let Some(store) = ids.get(next.fetch_add(1, Ordering::Relaxed) as usize) else { return Ok(false) };
                Ok(accepted(&service.execute(*store, consume(), meta()).await?))
            })
        })
    };
    let warmed = run_until(clients, warm_up, Arc::new(move || next.load(Ordering::Relaxed) as usize >= stores)).await?;
    allowed.fetch_add(warmed.allowed, Ordering::Relaxed);

    let quiet = run_clients(clients, duration, consume_on(&service, &ids)).await?;
    allowed.fetch_add(quiet.allowed, Ordering::Relaxed);

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rebuilding = {
        let (log, catalogs, done) = (log.clone(), catalogs.clone(), done.clone());
        tokio::spawn(async move {
            let report =
                rebuild(&log, ReadModel::TenantState, &catalogs, Utc::now(), &Progress::default(), When::Always).await;
            done.store(true, Ordering::Relaxed);
            report
        })
    };
    let during = run_until(clients, consume_on(&service, &ids), {
        let done = done.clone();
        Arc::new(move || done.load(Ordering::Relaxed))
    })
    .await?;
    let report = rebuilding.await.context("the rebuild panicked")??;
    allowed.fetch_add(during.allowed, Ordering::Relaxed);
    service.shutdown();

    let (consumed, rows, behind): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ledger_events
                 WHERE event_type = 'QuotaConsumed' AND data->>'action' = 'create_article'),
                (SELECT count(*) FROM tenant_state),
                (SELECT count(*) FROM tenant_state t JOIN ledger_streams s ON s.stream_id = 'store-' || t.store_id
                 WHERE s.version <> t.version)",
    )
    .fetch_one(&log.direct)
    .await?;
    let allowed = allowed.load(Ordering::Relaxed);
    if consumed as u64 != allowed || rows as usize != stores || behind != 0 {
        bail!(
            "rebuild_under_load: NOT EXACT: {allowed} allowed, {consumed} in the log; {rows} rows for {stores} stores, {behind} behind their stream"
        );
    }
    let mut without = quiet.figures("writes_without_rebuild", clients);
    without.note = format!("{stores} stores, {} commands, no rebuild", quiet.ops);
    let mut with = during.figures("writes_during_rebuild", clients);
    with.note = format!(
        "{} commands during a tenant_state rebuild of {} events ({:.1}s; {} rows caught up); the swap held writers {:.1} ms",
        during.ops,
        report.events,
        during.seconds,
        report.caught_up,
        report.swap_pause.as_secs_f64() * 1000.0
    );
    with.swap_pause_ms = Some(report.swap_pause.as_secs_f64() * 1000.0);
    Ok(vec![without, with])
}

/// Clients that consume once per call on a random store of `ids`.
fn consume_on(service: &CommandService, ids: &Arc<Vec<StoreId>>) -> Op {
    let (service, ids) = (service.clone(), ids.clone());
    Arc::new(move |worker| {
        let (service, ids) = (service.clone(), ids.clone());
        Box::pin(async move {
            let store = ids[(worker + fastrand_index(ids.len())) % ids.len()];
            Ok(accepted(&service.execute(store, consume(), meta()).await?))
        })
    })
}

/// Waits until every worker of `service` has idled out (at most `limit`).
async fn until_idle(service: &CommandService, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while service.active_workers() > 0 {
        if Instant::now() > deadline {
            bail!("{} workers still active after {limit:?}", service.active_workers());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `serve`'s memory with many stores, on the rebuild's log of `stores` stores: each store sends
/// one command through the command path, and resident memory is read once their workers have
/// idled out; then a flood of `flood` commands to stores that do not exist, and memory is read
/// again once they are answered (no worker may be left behind).
async fn scenario_memory(
    log: &Ledger,
    ids: Vec<StoreId>,
    flood: usize,
    clients: usize,
) -> anyhow::Result<Vec<Figures>> {
    let catalog = Arc::new(bench_catalog()?);
    let idle = Duration::from_secs(2);
    let (journal, _writer) = Journal::spawn(log.log.clone());
    let service = CommandService::new(
        log.log.clone(),
        catalog,
        Arc::new(SystemClock),
        ServiceConfig { worker_idle: idle, ..ServiceConfig::default() },
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    );
    reset_peak_rss().await;
    let before = planledger_alloc::resident_mb();
    let stores = ids.len();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let run = {
        let (service, ids, counter) = (service.clone(), ids.clone(), next.clone());
        let op: Op = Arc::new(move |_| {
            let next = counter.clone();
            let (service, ids) = (service.clone(), ids.clone());
            Box::pin(async move {
                let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(store) = ids.get(index) else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    return Ok(false);
                };
                Ok(accepted(&service.execute(*store, consume(), meta()).await?))
            })
        });
        let next = next.clone();
        run_until(clients, op, Arc::new(move || next.load(Ordering::Relaxed) as usize >= stores)).await?
    };
    if run.allowed as usize != stores {
        bail!("serve_many_stores: {} of {stores} first commands accepted", run.allowed);
    }
    check_exact(log, "serve_many_stores", run.allowed, 1_000_000_000).await?;
    let peak = planledger_alloc::peak_resident_mb();
    until_idle(&service, Duration::from_secs(120)).await?;
    tokio::time::sleep(planledger_alloc::RETURNED_WITHIN).await;
    let after_stores = planledger_alloc::resident_mb();
    let mut first = run.figures("serve_many_stores", clients);
    first.ops_per_sec = stores as f64 / run.seconds;
    first.peak_rss_mb = peak;
    first.rss_after_mb = Some(after_stores);
    first.note = format!(
        "one command to each of {stores} stores; resident {before:.0} MiB before, {after_stores:.0} MiB once their workers idled out ({idle:?}) and memory was released"
    );

    let sent = Arc::new(AtomicU64::new(0));
    let run = {
        let (service, counter) = (service.clone(), sent.clone());
        let op: Op = Arc::new(move |_| {
            let (service, sent) = (service.clone(), counter.clone());
            Box::pin(async move {
                sent.fetch_add(1, Ordering::Relaxed);
                let answer = service.execute(StoreId::new(Uuid::new_v4()), consume(), meta()).await?;
                if accepted(&answer) {
                    bail!("a command to a store that does not exist was accepted");
                }
                Ok(false)
            })
        });
        let sent = sent.clone();
        run_until(clients, op, Arc::new(move || sent.load(Ordering::Relaxed) as usize >= flood)).await?
    };
    // Unknown stores' workers stop as soon as they have answered: no idle wait.
    until_idle(&service, Duration::from_secs(5)).await?;
    tokio::time::sleep(planledger_alloc::RETURNED_WITHIN).await;
    let after_flood = planledger_alloc::resident_mb();
    let mut second = run.figures("serve_unknown_flood", clients);
    second.rss_after_mb = Some(after_flood);
    second.note = format!(
        "{} commands to stores that do not exist; resident {after_flood:.0} MiB after ({:+.0} MiB), no worker left",
        run.ops,
        after_flood - after_stores
    );
    service.shutdown();
    Ok(vec![first, second])
}

async fn scenario_long_stream(url: &str, events: usize, samples: usize) -> anyhow::Result<(Figures, Figures)> {
    let catalog = Arc::new(bench_catalog()?);
    let log = open_log(url, 16).await?;
    let long = generate_history(&log, 1, events, &catalog).await?[0];
    let short = generate_history(&log, 1, 10, &catalog).await?[0];
    let service = service(&log, &catalog);
    let mut figures = Vec::new();
    for (name, store) in [("long_stream_short", short), ("long_stream", long)] {
        let mut latencies = Vec::with_capacity(samples);
        let started = Instant::now();
        for _ in 0..samples {
            let t = Instant::now();
            let answer = service.execute(store, consume(), meta()).await?;
            if !accepted(&answer) {
                bail!("{name}: consume refused: {answer:?}");
            }
            latencies.push(t.elapsed().as_micros() as u64);
        }
        let run = Run {
            ops: samples as u64,
            allowed: samples as u64,
            seconds: started.elapsed().as_secs_f64(),
            latencies_us: latencies,
        };
        let mut f = run.figures(name, 1);
        f.note = format!("{} events in the stream before", if name == "long_stream" { events } else { 10 });
        figures.push(f);
    }
    service.shutdown();
    let long_figures = figures.pop().unwrap_or_default();
    let short_figures = figures.pop().unwrap_or_default();
    Ok((short_figures, long_figures))
}

fn print_table(figures: &[Figures]) {
    println!(
        "\n{:<20} {:>7} {:>12} {:>9} {:>9} {:>9} {:>9}  {:<26} note",
        "scenario", "clients", "ops/s", "p50 ms", "p99 ms", "RSS MiB", "overshoot", "ratio"
    );
    for f in figures {
        let ratio = f.ratio.as_ref().map_or(String::new(), |(vs, x)| format!("{x:.2}x {vs}"));
        println!(
            "{:<20} {:>7} {:>12.0} {:>9.2} {:>9.2} {:>9.0} {:>9}  {:<26} {}",
            f.name, f.clients, f.ops_per_sec, f.p50_ms, f.p99_ms, f.peak_rss_mb, f.overshoot, ratio, f.note
        );
    }
}

fn ratio(figures: &mut [Figures], name: &str, vs: &str, p99: bool) {
    let base = figures.iter().find(|f| f.name == vs).map(|f| if p99 { f.p99_ms } else { f.ops_per_sec });
    if let (Some(base), Some(f)) = (base, figures.iter_mut().find(|f| f.name == name)) {
        let mine = if p99 { f.p99_ms } else { f.ops_per_sec };
        if base > 0.0 {
            f.ratio = Some((if p99 { format!("{vs} (p99)") } else { vs.to_owned() }, mine / base));
        }
    }
}

pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    // `copy_limit` is measured within `rebuild`, on its log.
    let wanted = |name: &str| {
        options.only.as_ref().is_none_or(|only| {
            only.iter().any(|o| match o.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == o || (name == "rebuild" && o == "copy_limit"),
            })
        })
    };
    let (clients, duration) = (options.clients, options.duration);
    let quick = options.quick;
    let many = if quick { 500 } else { 10_000 };
    let mut figures: Vec<Figures> = Vec::new();
    let scenarios: Vec<&str> = vec![
        "raw",
        "lockrow_hot",
        "lockrow_many",
        "hot_store",
        "hot_store_unhashed",
        "many_stores",
        "http_hot_store",
        "http_many_stores",
        "hot_store_keyed",
        "many_stores_keyed",
        "http_hot_store_keyed",
        "http_many_stores_keyed",
        "rebuild",
        "rebuild_under_load",
        "many_stores_memory",
        "long_stream",
        "import",
    ];
    for scenario in scenarios {
        if !wanted(scenario) {
            continue;
        }
        eprintln!("running {scenario} ...");
        let db = BenchDb::create(&options.server_url).await?;
        let outcome: anyhow::Result<Vec<Figures>> = async {
            Ok(match scenario {
                "raw" => vec![scenario_raw(&db.url, clients, duration).await?],
                "lockrow_hot" => vec![scenario_lockrow(&db.url, "lockrow_hot", 1, clients, duration).await?],
                "lockrow_many" => vec![scenario_lockrow(&db.url, "lockrow_many", many, clients, duration).await?],
                // The command path with the hash chain's hashing turned off: its cost is the
                // ratio of `hot_store` to this, in one run.
                "hot_store_unhashed" => {
                    planledger_chain::baseline::set_hashing(false);
                    let figures = scenario_service(&db.url, scenario, 1, clients, duration, false, Keys::None).await;
                    planledger_chain::baseline::set_hashing(true);
                    vec![figures?]
                }
                name @ ("hot_store"
                | "many_stores"
                | "http_hot_store"
                | "http_many_stores"
                | "hot_store_keyed"
                | "many_stores_keyed"
                | "http_hot_store_keyed"
                | "http_many_stores_keyed") => {
                    let stores = if name.contains("hot_store") { 1 } else { many };
                    let http = name.starts_with("http_");
                    let keys = if name.ends_with("_keyed") { Keys::Fresh } else { Keys::None };
                    vec![scenario_service(&db.url, name, stores, clients, duration, http, keys).await?]
                }
                "rebuild" => {
                    let (stores, per_store) = if quick { (500, 100) } else { (10_000, 100) };
                    scenario_rebuild(&db.url, stores, per_store).await?
                }
                "rebuild_under_load" => {
                    let (stores, per_store) = if quick { (500, 100) } else { (10_000, 100) };
                    scenario_rebuild_under_load(&db.url, stores, per_store, clients, duration).await?
                }
                "many_stores_memory" => {
                    // A million stores with two events each: the rebuild's memory must not grow
                    // with them, nor serve's once their workers idle out.
                    let (stores, flood) = if quick { (5_000, 5_000) } else { (1_000_000, 100_000) };
                    let catalog = bench_catalog()?;
                    let log = open_log(&db.url, 32).await?;
                    let ids = generate_history(&log, stores, 2, &catalog).await?;
                    let mut figures = rebuild_figures(&log, "rebuild_many_stores", stores).await?;
                    figures.extend(scenario_memory(&log, ids, flood, clients).await?);
                    figures
                }
                "import" => scenario_import(&db.url, if quick { 5_000 } else { 100_000 }, clients).await?,
                "long_stream" => {
                    let (events, samples) = if quick { (20_000, 200) } else { (1_000_000, 2_000) };
                    let (short, long) = scenario_long_stream(&db.url, events, samples).await?;
                    vec![short, long]
                }
                _ => vec![],
            })
        }
        .await;
        db.drop_now().await;
        figures.extend(outcome.with_context(|| format!("scenario {scenario} failed"))?);
    }
    ratio(&mut figures, "lockrow_hot", "raw", false);
    ratio(&mut figures, "lockrow_many", "raw", false);
    ratio(&mut figures, "hot_store", "raw", false);
    // The hash chain's cost on the hottest path, shown on the baseline's row (`hot_store`'s
    // own is against raw): hashed over unhashed, target at least 0.95x.
    let hashed = figures.iter().find(|f| f.name == "hot_store").map(|f| f.ops_per_sec);
    if let (Some(hashed), Some(unhashed)) = (hashed, figures.iter_mut().find(|f| f.name == "hot_store_unhashed")) {
        if unhashed.ops_per_sec > 0.0 {
            unhashed.ratio = Some(("hot_store over this".to_owned(), hashed / unhashed.ops_per_sec));
        }
    }
    ratio(&mut figures, "many_stores", "raw", false);
    ratio(&mut figures, "http_hot_store", "hot_store", false);
    ratio(&mut figures, "http_many_stores", "many_stores", false);
    // Keyed against unkeyed, same scenario (target 0.9x); many stores keyed against raw (1.0x).
    ratio(&mut figures, "hot_store_keyed", "hot_store", false);
    ratio(&mut figures, "many_stores_keyed", "raw", false);
    ratio(&mut figures, "http_hot_store_keyed", "http_hot_store", false);
    ratio(&mut figures, "http_many_stores_keyed", "http_many_stores", false);
    ratio(&mut figures, "long_stream", "long_stream_short", true);
    ratio(&mut figures, "rebuild", "copy_limit", false);
    // Commands during a rebuild against without one (target: p99 at most 2x).
    ratio(&mut figures, "writes_during_rebuild", "writes_without_rebuild", true);
    print_table(&figures);
    if let Some(path) = &options.json {
        let summary = json!({
            "machine": machine(),
            "quick": quick,
            "clients": clients,
            "durationSeconds": duration.as_secs_f64(),
            "scenarios": figures.iter().map(|f| json!({
                "name": f.name, "clients": f.clients, "opsPerSec": f.ops_per_sec, "p50Ms": f.p50_ms, "p99Ms": f.p99_ms,
                "peakRssMb": f.peak_rss_mb, "rssAfterMb": f.rss_after_mb, "swapPauseMs": f.swap_pause_ms,
                "overshoot": f.overshoot,
                "ratio": f.ratio.as_ref().map(|(vs, value)| json!({"vs": vs, "value": value})),
                "note": f.note,
            })).collect::<Vec<Value>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("could not write {path}"))?;
        println!("\nwrote {path}");
    }
    Ok(())
}

fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024 / 1024);
    json!({ "cpus": cpus, "memoryGiB": memory, "os": std::env::consts::OS })
}

fn accepted(answer: &planledger_service::Answer) -> bool {
    matches!(answer, planledger_service::Answer::Decided(planledger_service::Outcome::Accepted(_)))
}
