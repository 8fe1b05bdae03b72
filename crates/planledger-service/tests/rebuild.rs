//! Rebuilding read models from the log: the rebuilt copies equal the live ones row for row, and
//! nothing written during a rebuild is missing from the swapped-in copy. Both backends.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use planledger_domain::{
    ActionName, Amount, Catalog, Command, Days, ExtensionKind, PlanId, Reason, StoreId, SubscriptionId, TransitionPlan,
    TransitionReason,
};
use planledger_projections::rebuild::{rebuild, Progress, When};
use planledger_projections::runtime::project_audit_page;
use planledger_projections::ReadModel;
use planledger_service::{Clock, CommandMeta, CommandService, Journal, ServiceConfig, TestClock};
use planledger_store::AnyEventLog;
use uuid::Uuid;

mod support;
use support::open;

fn service(log: &AnyEventLog, clock: Arc<TestClock>) -> CommandService {
    support::node_with(log, clock, ServiceConfig::default())
}

fn meta() -> CommandMeta {
    CommandMeta {
        correlation_id: "workload".into(),
        actor: "tester".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    }
}

/// A small deterministic generator, so a failing workload can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Many stores, every kind of command, clock advances with sweeps.
async fn random_workload(
    service: &CommandService,
    clock: &TestClock,
    seed: u64,
    stores: usize,
    steps: usize,
) -> Vec<StoreId> {
    let mut rng = Rng(seed);
    let ids: Vec<StoreId> = (0..stores).map(|_| StoreId::new(Uuid::new_v4())).collect();
    for (i, store) in ids.iter().enumerate() {
        let register = Command::RegisterStore { store_id: *store, name: None, time_zone: None };
        service.execute(*store, register, meta()).await.unwrap();
        if i % 4 != 3 {
            let trial = Command::StartTrial { plan_id: None, days: None, force_reset: None };
            service.execute(*store, trial, meta()).await.unwrap();
        }
    }
    let plans = ["free_trial", "starter", "professional", "enterprise"];
    let actions = ["create_article", "create_product", "update_product", "sync_products", "view_analytics"];
    for _ in 0..steps {
        let store = ids[rng.next(ids.len() as u64) as usize];
        let command = match rng.next(14) {
            0 => {
                clock.advance(TimeDelta::hours(rng.next(24 * 10) as i64));
                service.sweep().await.unwrap();
                continue;
            }
            1 => Command::ActivateSubscription {
                plan_id: PlanId::parse(plans[1 + rng.next(3) as usize]).unwrap(),
                subscription_id: SubscriptionId::parse("sub_w").unwrap(),
            },
            2 => Command::MarkPastDue,
            3 => Command::MarkRecovered,
            4 => Command::CancelSubscription,
            5 => {
                let (state, _) = service.load_row(store).await.unwrap().unwrap();
                let Some(from) = state.plan_id else { continue };
                Command::TransitionPlan(TransitionPlan {
                    from_plan_id: from,
                    to_plan_id: PlanId::parse(plans[rng.next(4) as usize]).unwrap(),
                    reason: TransitionReason::Upgrade,
                    subscription_id: Some(SubscriptionId::parse("sub_t").unwrap()),
                    metadata: None,
                    by_admin: false,
                })
            }
            6 => Command::Extend {
                kind: [ExtensionKind::Trial, ExtensionKind::Grace, ExtensionKind::Maintenance][rng.next(3) as usize],
                days: Days::parse(1 + rng.next(5) as i64).unwrap(),
                reason: Reason::parse("workload").unwrap(),
            },
            7 => Command::StartTrial { plan_id: None, days: None, force_reset: None },
            _ => Command::Consume {
                action: ActionName::parse(actions[rng.next(5) as usize]).unwrap(),
                amount: Amount::parse(1 + rng.next(4) as i64).unwrap(),
                consumption_id: Uuid::now_v7(),
            },
        };
        service.execute(store, command, meta()).await.unwrap();
    }
    clock.advance(TimeDelta::seconds(1));
    service.sweep().await.unwrap();
    ids
}

/// Every column but the write time, as text, ordered by store.
async fn tenant_rows(log: &AnyEventLog) -> Vec<String> {
    let sql = "SELECT store_id || '|' || COALESCE(name, '') || '|' || updated_at_text || '|' || time_zone || '|' || COALESCE(plan_id, '') || '|' || COALESCE(tier, '') || '|' ||
               subscription_status || '|' || internal_status || '|' || version || '|' || COALESCE(subscription_id, '') || '|' || catalog_fingerprint
               FROM tenant_state ORDER BY store_id";
    let mut rows: Vec<String> = match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query_scalar(&sql.replace("updated_at_text", "updated_at::text")).fetch_all(pg.pool()).await.unwrap()
        }
        AnyEventLog::Sqlite(lite) => sqlx::query_scalar(&sql.replace("updated_at_text", "updated_at_us"))
            .fetch_all(lite.readers())
            .await
            .unwrap(),
    };
    let extra = match log {
        AnyEventLog::Postgres(pg) => sqlx::query_scalar::<_, String>(
            "SELECT COALESCE(trial_ends_at::text,'') || '|' || COALESCE(grace_ends_at::text,'') || '|' || COALESCE(maintenance_ends_at::text,'') || '|' || COALESCE(next_deadline::text,'') || '|' || state::text || '|' || usage::text FROM tenant_state ORDER BY store_id",
        )
        .fetch_all(pg.pool())
        .await
        .unwrap(),
        AnyEventLog::Sqlite(lite) => sqlx::query_scalar::<_, String>(
            "SELECT COALESCE(trial_ends_at_us,'') || '|' || COALESCE(grace_ends_at_us,'') || '|' || COALESCE(maintenance_ends_at_us,'') || '|' || COALESCE(next_deadline_us,'') || '|' || state || '|' || usage FROM tenant_state ORDER BY store_id",
        )
        .fetch_all(lite.readers())
        .await
        .unwrap(),
    };
    for (row, more) in rows.iter_mut().zip(extra) {
        row.push('|');
        row.push_str(&more);
    }
    rows
}

/// The indexes of a live table, as their columns and conditions (their names carry the
/// generation that built them).
async fn index_shapes(log: &AnyEventLog, table: &str) -> Vec<String> {
    let mut shapes: Vec<String> = match log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = $1")
                .bind(table)
                .fetch_all(pg.pool())
                .await
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::query_scalar(
                "SELECT COALESCE(sql, 'automatic') FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
            )
            .bind(table)
            .fetch_all(lite.readers())
            .await
        }
    }
    .unwrap();
    for shape in &mut shapes {
        // `CREATE INDEX audit_log_g2_by_store ON public.audit_log_g2 USING btree (...)`: keep what follows ON.
        let columns = shape.split_once('(').map_or(shape.as_str(), |(_, rest)| rest).to_owned();
        *shape = columns;
    }
    shapes.sort();
    shapes
}

async fn audit_rows(log: &AnyEventLog) -> Vec<String> {
    match log {
        AnyEventLog::Postgres(pg) => sqlx::query_scalar(
            "SELECT store_id || '|' || version || '|' || global_position || '|' || event_type || '|' || correlation_id || '|' || actor || '|' || recorded_at::text FROM audit_log ORDER BY store_id, version",
        )
        .fetch_all(pg.pool())
        .await
        .unwrap(),
        AnyEventLog::Sqlite(lite) => sqlx::query_scalar(
            "SELECT store_id || '|' || version || '|' || global_position || '|' || event_type || '|' || correlation_id || '|' || actor || '|' || recorded_at_us FROM audit_log ORDER BY store_id, version",
        )
        .fetch_all(lite.readers())
        .await
        .unwrap(),
    }
}

async fn project_all(log: &AnyEventLog) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lag = planledger_projections::runtime::audit_lag(log, Utc::now()).await.unwrap();
        if lag.events == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the projector did not catch up: {lag:?}");
        if project_audit_page(log).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn rebuilt_copies_equal_the_live_ones(postgres: bool) {
    let Some((log, _db)) = open(postgres, "rebuilt_copies_equal_the_live_ones").await else { return };
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 1, 20, 8, 0, 0).unwrap()));
    let service = service(&log, clock.clone());
    random_workload(&service, &clock, 0x9e37_79b9_7f4a_7c15, 40, 600).await;
    project_all(&log).await;
    let (live_tenants, live_audit) = (tenant_rows(&log).await, audit_rows(&log).await);
    assert_eq!(live_tenants.len(), 40);
    assert!(live_audit.len() > 300, "a real workload: {} events", live_audit.len());

    let live_indexes = [index_shapes(&log, "tenant_state").await, index_shapes(&log, "audit_log").await];
    assert!(live_indexes.iter().all(|shapes| shapes.len() >= 3), "{live_indexes:?}");

    for model in ReadModel::ALL {
        let report =
            rebuild(&log, model, &service.catalogs(), clock.now(), &Progress::default(), When::Always).await.unwrap();
        assert_eq!(report.generation, 2);
    }
    // Loaded without secondary indexes, then indexed: the swapped-in tables have them all.
    let rebuilt_indexes = [index_shapes(&log, "tenant_state").await, index_shapes(&log, "audit_log").await];
    assert_eq!(rebuilt_indexes, live_indexes);
    let rebuilt_tenants = tenant_rows(&log).await;
    for (live, rebuilt) in live_tenants.iter().zip(&rebuilt_tenants) {
        assert_eq!(live, rebuilt);
    }
    assert_eq!(live_tenants.len(), rebuilt_tenants.len());
    assert_eq!(audit_rows(&log).await, live_audit, "audit_log rebuilt row for row");
    let info = planledger_projections::schema::info(&log).await.unwrap();
    assert!(info.iter().all(|i| i.generation == 2), "{info:?}");
}

async fn nothing_written_during_a_rebuild_is_missing(postgres: bool) {
    let Some((log, _db)) = open(postgres, "nothing_written_during_a_rebuild_is_missing").await else { return };
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 1, 20, 8, 0, 0).unwrap()));
    let service = service(&log, clock.clone());
    let stores = random_workload(&service, &clock, 7, 30, 400).await;

    // Writers keep consuming on every store while both read models are rebuilt, and the
    // projector keeps following the log.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for chunk in stores.chunks(10) {
        let (service, stop, chunk) = (service.clone(), stop.clone(), chunk.to_vec());
        writers.push(tokio::spawn(async move {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for store in &chunk {
                    let command = Command::Consume {
                        action: ActionName::parse("view_products").unwrap(),
                        amount: Amount::ONE,
                        consumption_id: Uuid::now_v7(),
                    };
                    if matches!(
                        service.execute(*store, command, meta()).await.unwrap(),
                        planledger_service::Answer::Decided(planledger_service::Outcome::Accepted(_))
                    ) {
                        written += 1;
                    }
                }
            }
            written
        }));
    }
    let projector_log = log.clone();
    let projector_stop = stop.clone();
    let projector = tokio::spawn(async move {
        while !projector_stop.load(std::sync::atomic::Ordering::Relaxed) {
            if project_audit_page(&projector_log).await.unwrap() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for model in ReadModel::ALL {
        let progress = Progress::default();
        rebuild(&log, model, &service.catalogs(), clock.now(), &progress, When::Always).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for writer in writers {
        written += writer.await.unwrap();
    }
    projector.await.unwrap();
    assert!(written > 0, "writers wrote during the rebuild");

    // Every store's row is at its stream's version, with the same state a fold of its stream gives.
    for store in &stores {
        let stream = planledger_store::StreamId::parse(store.stream_name()).unwrap();
        let version = planledger_store::EventLog::stream_version(&log, &stream).await.unwrap();
        let (state, row_version) = service.load_row(*store).await.unwrap().unwrap();
        assert_eq!(row_version, version, "tenant_state of {store} is at its stream's version");
        let events = planledger_store::EventLog::read_stream(&log, &stream, 1, 10_000).await.unwrap();
        let folded = events.iter().fold(planledger_domain::TenantState::default(), |s, e| {
            planledger_domain::evolve(
                s,
                &planledger_domain::Event::from_stored(&e.event_type, e.schema_version, e.data.clone(), e.recorded_at)
                    .unwrap(),
            )
        });
        assert_eq!(state, folded);
    }
    // Every event is in the audit log exactly once.
    project_all(&log).await;
    let audit = audit_rows(&log).await;
    let total = log.event_count().await.unwrap() as usize;
    assert_eq!(audit.len(), total, "one audit row per event");
    let unique: std::collections::HashSet<_> =
        audit.iter().map(|r| r.split('|').take(2).collect::<Vec<_>>().join("|")).collect();
    assert_eq!(unique.len(), total, "no event twice");
}

/// The catch-up copies the rows writers wrote during a rebuild only when they were built with
/// the rebuild's catalog and fold: a node running another catalog (B) writes all through a
/// rebuild under the built-in one (A), and every row it wrote before the swap is folded again
/// under A. The oracle is a second rebuild under A with no writer at all.
async fn rows_another_build_wrote_during_a_rebuild_are_folded_again(postgres: bool) {
    let Some((log, _db)) = open(postgres, "rows_another_build_wrote_during_a_rebuild_are_folded_again").await else {
        return;
    };
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 1, 20, 8, 0, 0).unwrap()));
    let service = service(&log, clock.clone());
    let stores = random_workload(&service, &clock, 0x51_7cc1_b727_220a, 30, 400).await;
    let other = Catalog::parse(
        "another catalog",
        &include_str!("../../../config/catalog.toml").replacen(
            "create_article = { limit = 10, period = \"month\" }",
            "create_article = { limit = 11, period = \"month\" }",
            1,
        ),
    )
    .unwrap();
    assert_ne!(other.fingerprint(), service.catalog().fingerprint());
    let (journal, _writer) = Journal::spawn(log.clone());
    let node_b = CommandService::new(
        log.clone(),
        Arc::new(other),
        clock.clone(),
        ServiceConfig::default(),
        journal,
        Arc::new(support::Verdicts),
    );

    let progress = Arc::new(Progress::default());
    // B's writers stop once they see the swap begin, so at most the command each has in flight
    // then may land after the swap (those stores are left out of the comparison).
    let mut writers = Vec::new();
    for chunk in stores.chunks(10) {
        let (node_b, progress, chunk) = (node_b.clone(), progress.clone(), chunk.to_vec());
        writers.push(tokio::spawn(async move {
            let (mut during, mut late) = (std::collections::HashSet::new(), std::collections::HashSet::new());
            'writing: loop {
                for store in &chunk {
                    if matches!(progress.phase(), "swapping" | "done" | "failed") {
                        break 'writing;
                    }
                    let command = Command::Consume {
                        action: ActionName::parse("view_products").unwrap(),
                        amount: Amount::ONE,
                        consumption_id: Uuid::now_v7(),
                    };
                    node_b.execute(*store, command, meta()).await.unwrap();
                    match progress.phase() {
                        "folding streams" | "indexing" | "catching up" => during.insert(*store),
                        "starting" => false,
                        _ => late.insert(*store),
                    };
                }
            }
            (during, late)
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let catalog = service.catalog().clone();
    rebuild(
        &log,
        ReadModel::TenantState,
        &planledger_domain::Catalogs::single(catalog.clone()),
        clock.now(),
        &progress,
        When::Always,
    )
    .await
    .unwrap();
    let (mut during, mut late) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for writer in writers {
        let (d, l) = writer.await.unwrap();
        during.extend(d);
        late.extend(l);
    }
    let compared: Vec<String> = stores.iter().filter(|s| !late.contains(*s)).map(ToString::to_string).collect();
    assert!(
        during.iter().any(|s| !late.contains(s)),
        "B wrote during the rebuild and before its swap: during {during:?}, late {late:?}"
    );
    let rows_of = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter().filter(|r| compared.iter().any(|s| r.starts_with(s.as_str()))).collect()
    };
    let after_catch_up = rows_of(tenant_rows(&log).await);
    let built_with = planledger_projections::schema::built_with(&planledger_domain::Catalogs::single(catalog.clone()));
    assert!(after_catch_up.iter().all(|row| row.contains(&built_with)), "rows of A's rebuild: {after_catch_up:?}");
    rebuild(
        &log,
        ReadModel::TenantState,
        &planledger_domain::Catalogs::single(catalog.clone()),
        clock.now(),
        &Progress::default(),
        When::Always,
    )
    .await
    .unwrap();
    assert_eq!(after_catch_up, rows_of(tenant_rows(&log).await), "each row as a rebuild under A folds it");
}

/// A database whose `audit_log` was made by the first schema (which stored each summary, NOT
/// NULL) keeps working after an upgrade: the projector appends rows without a summary, and the
/// audit view shows every row's summary, derived from its event.
async fn an_audit_log_of_the_first_schema_keeps_working(postgres: bool) {
    let Some((log, _db)) = open(postgres, "an_audit_log_of_the_first_schema_keeps_working").await else { return };
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 1, 20, 8, 0, 0).unwrap()));
    let service = service(&log, clock.clone());
    let v1 = match &log {
        AnyEventLog::Postgres(_) => "DROP TABLE audit_log; CREATE TABLE audit_log (
            audit_seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, store_id text NOT NULL, version bigint NOT NULL,
            global_position bigint NOT NULL, event_type text NOT NULL, correlation_id text NOT NULL, actor text NOT NULL,
            recorded_at timestamptz NOT NULL, summary text NOT NULL)",
        AnyEventLog::Sqlite(_) => "DROP TABLE audit_log; CREATE TABLE audit_log (
            audit_seq INTEGER PRIMARY KEY AUTOINCREMENT, store_id TEXT NOT NULL, version INTEGER NOT NULL,
            global_position INTEGER NOT NULL, event_type TEXT NOT NULL, correlation_id TEXT NOT NULL, actor TEXT NOT NULL,
            recorded_at_us INTEGER NOT NULL, summary TEXT NOT NULL)",
    };
    let mut tx = planledger_store::EventLog::begin(&log).await.unwrap();
    planledger_projections::schema::execute_in(&mut tx, v1).await.unwrap();
    planledger_store::EventLog::commit(&log, tx).await.unwrap();
    random_workload(&service, &clock, 11, 3, 20).await;

    planledger_projections::schema::ensure(&log, "any", clock.now()).await.unwrap();
    project_all(&log).await;
    let query = planledger_projections::audit::AuditQuery { limit: 1000, ..Default::default() };
    let rows = planledger_projections::audit::query(&log, &query).await.unwrap();
    assert_eq!(rows.len() as i64, log.event_count().await.unwrap(), "every event projected");
    assert!(rows.iter().any(|r| r.summary.starts_with("registered a store")), "{rows:?}");
    assert!(rows.iter().all(|r| !r.summary.is_empty() && !r.summary.starts_with("unreadable")), "{rows:?}");
}

/// Three nodes start on a catalog the read models were not built with, at once: each starts a
/// rebuild of both models. One rebuild of each model runs (the claim); the others wait, find the
/// model current and do nothing. The live copies equal the log, with every event once.
async fn three_nodes_rebuild_a_stale_model_once(postgres: bool) {
    let Some((log, _db)) = open(postgres, "three_nodes_rebuild_a_stale_model_once").await else { return };
    let clock = Arc::new(TestClock::new(Utc.with_ymd_and_hms(2026, 1, 20, 8, 0, 0).unwrap()));
    let service = service(&log, clock.clone());
    random_workload(&service, &clock, 0x2545_f491_4f6c_dd1d, 40, 600).await;
    project_all(&log).await;
    let (live_tenants, live_audit) = (tenant_rows(&log).await, audit_rows(&log).await);
    // The models were built with another catalog.
    let mut tx = planledger_store::EventLog::begin(&log).await.unwrap();
    for model in ReadModel::ALL {
        planledger_projections::schema::record_in(&mut tx, model, 1, "an-older-catalog", clock.now()).await.unwrap();
    }
    planledger_store::EventLog::commit(&log, tx).await.unwrap();

    let start = Arc::new(tokio::sync::Barrier::new(6));
    let mut nodes = Vec::new();
    for _node in 0..3 {
        for model in ReadModel::ALL {
            let (log, catalog, start, now) = (log.clone(), service.catalog().clone(), start.clone(), clock.now());
            nodes.push(tokio::spawn(async move {
                start.wait().await;
                rebuild(
                    &log,
                    model,
                    &planledger_domain::Catalogs::single(catalog.clone()),
                    now,
                    &Progress::default(),
                    When::IfStale,
                )
                .await
            }));
        }
    }
    let mut reports = Vec::new();
    for node in nodes {
        reports.push(node.await.unwrap().expect("no rebuild fails"));
    }
    for model in ReadModel::ALL {
        let of_model: Vec<_> = reports.iter().filter(|r| r.model == model).collect();
        let rebuilt = of_model.iter().filter(|r| !r.already_current).count();
        assert_eq!(rebuilt, 1, "{model:?} rebuilt once: {of_model:?}");
        assert!(of_model.iter().all(|r| r.generation == 2), "{of_model:?}");
    }
    let info = planledger_projections::schema::info(&log).await.unwrap();
    assert!(info.iter().all(|i| i.generation == 2 && i.catalog_fingerprint != "an-older-catalog"), "{info:?}");
    assert_eq!(tenant_rows(&log).await, live_tenants);
    assert_eq!(audit_rows(&log).await, live_audit, "every event once in the audit log");
}

/// A claim whose holder stopped renewing it lapses and is taken over; the old holder's swap is
/// then fenced off.
async fn a_lapsed_claim_is_taken_over_and_fences_its_old_holder(postgres: bool) {
    use planledger_projections::claim::{try_claim, Claim, LEASE};
    let Some((log, _db)) = open(postgres, "a_lapsed_claim_is_taken_over_and_fences_its_old_holder").await else {
        return;
    };
    let Claim::Claimed(first) = try_claim(&log, ReadModel::AuditLog).await.unwrap() else { panic!("free") };
    let Claim::HeldBy { holder, .. } = try_claim(&log, ReadModel::AuditLog).await.unwrap() else {
        panic!("a live claim is not taken")
    };
    assert_eq!(holder, first.holder());
    // Another model is claimed on its own.
    let Claim::Claimed(other) = try_claim(&log, ReadModel::TenantState).await.unwrap() else { panic!("free") };
    // The first holder stalls past its lease (its renewals stop).
    let stale = (LEASE.as_secs() + 5) as i64;
    match &log {
        AnyEventLog::Postgres(pg) => {
            sqlx::query(
                "UPDATE rebuild_claims SET renewed_at = now() - make_interval(secs => $1) WHERE model = 'audit_log'",
            )
            .bind(stale as f64)
            .execute(pg.pool())
            .await
            .unwrap();
        }
        AnyEventLog::Sqlite(lite) => {
            sqlx::query(
                "UPDATE rebuild_claims SET renewed_at_us = renewed_at_us - ? * 1000000 WHERE model = 'audit_log'",
            )
            .bind(stale)
            .execute(lite.writer())
            .await
            .unwrap();
        }
    }
    let Claim::Claimed(second) = try_claim(&log, ReadModel::AuditLog).await.unwrap() else {
        panic!("a lapsed claim is taken over")
    };
    let mut tx = planledger_store::EventLog::begin(&log).await.unwrap();
    assert!(!first.fence_in(&mut tx).await.unwrap(), "the old holder may not swap");
    assert!(second.fence_in(&mut tx).await.unwrap(), "the new holder may");
    planledger_store::EventLog::commit(&log, tx).await.unwrap();
    second.release().await.unwrap();
    other.release().await.unwrap();
    assert!(matches!(try_claim(&log, ReadModel::AuditLog).await.unwrap(), Claim::Claimed(_)), "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_three_nodes_rebuild_a_stale_model_once() {
    three_nodes_rebuild_a_stale_model_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_three_nodes_rebuild_a_stale_model_once() {
    three_nodes_rebuild_a_stale_model_once(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_lapsed_claim_is_taken_over_and_fences_its_old_holder() {
    a_lapsed_claim_is_taken_over_and_fences_its_old_holder(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_lapsed_claim_is_taken_over_and_fences_its_old_holder() {
    a_lapsed_claim_is_taken_over_and_fences_its_old_holder(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rebuilt_copies_equal_the_live_ones() {
    rebuilt_copies_equal_the_live_ones(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rebuilt_copies_equal_the_live_ones() {
    rebuilt_copies_equal_the_live_ones(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_nothing_written_during_a_rebuild_is_missing() {
    nothing_written_during_a_rebuild_is_missing(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_nothing_written_during_a_rebuild_is_missing() {
    nothing_written_during_a_rebuild_is_missing(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rows_another_build_wrote_during_a_rebuild_are_folded_again() {
    rows_another_build_wrote_during_a_rebuild_are_folded_again(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rows_another_build_wrote_during_a_rebuild_are_folded_again() {
    rows_another_build_wrote_during_a_rebuild_are_folded_again(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_an_audit_log_of_the_first_schema_keeps_working() {
    an_audit_log_of_the_first_schema_keeps_working(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_an_audit_log_of_the_first_schema_keeps_working() {
    an_audit_log_of_the_first_schema_keeps_working(true).await;
}
