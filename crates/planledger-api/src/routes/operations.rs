//! The handlers of operations.

use super::*;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "Up", body = wire::Health)))]
pub async fn healthz() -> Response {
    Json::ok(&wire::Health { status: "ok".to_owned() }).into_response()
}

/// The database is reachable and migrated, and neither the audit projector nor the deadline
/// worker has stalled (its oldest pending work is older than the stall threshold); 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = wire::Readiness),
        (status = 503, description = "Not ready", body = wire::Readiness, headers(("Retry-After" = u32))),
    ))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    let (ready, json) = app.probes.readiness.get(app.edge.probe_cache, || readiness(&app)).await;
    let mut response = json.into_response();
    if !ready {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(crate::error::RETRY_AFTER_UNAVAILABLE));
    }
    response
}

/// What the unauthenticated probes found, kept for `EdgeConfig::probe_cache`: however many
/// probes come, the database answers one of each kind per period (the first caller asks, the
/// others wait for its answer).
#[derive(Debug, Default)]
pub(crate) struct ProbeCache {
    readiness: Fresh<(bool, Json)>,
    lag: Fresh<Option<planledger_projections::runtime::Lag>>,
    /// The published document and the fingerprint of the catalog it was made under.
    openapi: std::sync::Mutex<Option<(String, Json)>>,
}

/// One value, computed at most once per period.
#[derive(Debug)]
pub(crate) struct Fresh<T>(tokio::sync::Mutex<Option<(std::time::Instant, T)>>);

impl<T> Default for Fresh<T> {
    fn default() -> Self {
        Self(tokio::sync::Mutex::new(None))
    }
}

impl<T: Clone> Fresh<T> {
    async fn get<F: std::future::Future<Output = T>>(
        &self,
        keep: std::time::Duration,
        compute: impl FnOnce() -> F,
    ) -> T {
        let mut kept = self.0.lock().await;
        if let Some((at, value)) = kept.as_ref() {
            if at.elapsed() < keep {
                return value.clone();
            }
        }
        let value = compute().await;
        *kept = Some((std::time::Instant::now(), value.clone()));
        value
    }
}

/// The readiness of this node, as `/readyz` answers it.
pub(crate) async fn readiness(app: &AppState) -> (bool, Json) {
    use serde_json::{json, Map};
    let log = app.service.log();
    let mut checks = Map::new();
    // Commands need a primary: a node whose database is a standby (a failover moved the
    // address, say) would answer every write 503. The role is the store's watcher's, known
    // without a connection to a standby.
    let mut ready = match log.database_role().await {
        Ok(role) if role != planledger_store::DatabaseRole::Primary => {
            checks.insert("database".into(), json!("ok"));
            checks.insert("databaseRole".into(), json!(role.as_str()));
            false
        }
        Ok(role) => {
            checks.insert("database".into(), json!("ok"));
            checks.insert("databaseRole".into(), json!(role.as_str()));
            // The address may move to a standby while this waits for a connection: answer as
            // soon as that is known rather than after the pool's timeout.
            let pending = tokio::select! {
                pending = log.pending_migrations() => Some(pending),
                () = log.until_not_primary() => None,
            };
            match pending {
                None => {
                    if let Ok(role) = log.database_role().await {
                        checks.insert("databaseRole".into(), json!(role.as_str()));
                    }
                    false
                }
                Some(Ok(0)) => {
                    checks.insert("migrations".into(), json!("applied"));
                    true
                }
                Some(Ok(pending)) => {
                    checks.insert("migrations".into(), json!(format!("{pending} pending")));
                    false
                }
                Some(Err(_)) => {
                    checks.insert("database".into(), json!("unreachable"));
                    false
                }
            }
        }
        Err(_) => {
            checks.insert("database".into(), json!("unreachable"));
            false
        }
    };
    if ready {
        // A projector whose checkpoint is past the log would skip events (see
        // `checkpoints_not_in_log`): not ready, and named.
        match log.checkpoints_not_in_log().await {
            Ok(lost) if lost.is_empty() => {}
            Ok(lost) => {
                checks.insert("checkpointsNotInLog".into(), json!(lost));
                ready = false;
            }
            Err(_) => {
                checks.insert("database".into(), json!("unreachable"));
                ready = false;
            }
        }
    }
    if ready {
        // A primary that names synchronous standbys none of which is connected holds every
        // commit forever while reads go on: not ready, whatever was asked. With
        // `--require-synchronous-standby`, also not ready unless a standby confirms each commit
        // ("acknowledged means kept" holds only then).
        match log.replication().await {
            Ok(replication) => {
                let status = if replication.commits_wait_for_an_absent_standby() {
                    Some("absent")
                } else if app.require_synchronous_standby {
                    Some(if replication.keeps_acknowledged() { "ok" } else { "missing" })
                } else {
                    None
                };
                if let Some(status) = status {
                    checks.insert(
                        "synchronousStandby".into(),
                        json!({
                            "status": status,
                            "standbys": replication.synchronous_standbys,
                            "synchronousCommit": replication.synchronous_commit,
                            "synchronousStandbyNames": replication.synchronous_standby_names,
                        }),
                    );
                    ready = status == "ok";
                }
            }
            Err(_) => {
                checks.insert("database".into(), json!("unreachable"));
                ready = false;
            }
        }
    }
    if ready {
        // The rules this node decides under, beside the ledger's version in force: every node
        // of a deployment shows the same. A node still under another version after the grace
        // (it could not read the new one) is not ready: it would decide under rules the ledger
        // has replaced.
        let catalog = app.service.catalog();
        let node = app.service.catalog_version();
        let mut check = json!({ "status": "ok", "version": node, "fingerprint": catalog.fingerprint() });
        match planledger_service::catalogs::versions(app.service.reads()).await {
            Ok(versions) => {
                let now = app.service.clock().now();
                if let Some(in_force) = planledger_service::catalogs::in_force(&versions, now) {
                    check["ledgerVersion"] = json!(in_force.version);
                    let since = (now - in_force.effective_at).to_std().unwrap_or_default();
                    if node != 0 && in_force.version != node && since > app.catalog_grace {
                        check["status"] = json!("behind");
                        ready = false;
                    }
                }
            }
            Err(_) => {
                checks.insert("database".into(), json!("unreachable"));
                ready = false;
            }
        }
        checks.insert("catalog".into(), check);
    }
    if ready {
        // Read models built under another catalog are served while they are rebuilt: say so.
        if let Ok(info) = planledger_projections::schema::info(log).await {
            let stale: Vec<&str> =
                info.iter().filter(|i| i.is_stale(&app.service.catalogs())).map(|i| i.name.as_str()).collect();
            checks.insert("staleReadModels".into(), json!(stale));
        }
        // A stalled background worker makes the node unready: its work is older than the
        // threshold (two index probes, never a count of the backlog).
        match planledger_projections::runtime::backlog(log, app.service.clock().now()).await {
            Ok(backlog) => {
                let limit = TimeDelta::from_std(app.stall_after).unwrap_or(TimeDelta::MAX);
                let mut check = |name: &str, behind: Option<TimeDelta>, field: &str| {
                    let stalled = behind.is_some_and(|b| b > limit);
                    let seconds = behind.map_or(0.0, |b| b.num_milliseconds() as f64 / 1000.0);
                    checks.insert(
                        name.into(),
                        json!({ "status": if stalled { "stalled" } else { "ok" }, field: seconds }),
                    );
                    !stalled
                };
                let audit_ok = check("auditProjector", backlog.audit_behind, "behindSeconds");
                let deadlines_ok = check("deadlineWorker", backlog.deadline_overdue, "overdueSeconds");
                ready = audit_ok && deadlines_ok;
            }
            Err(_) => {
                checks.insert("database".into(), json!("unreachable"));
                ready = false;
            }
        }
    }
    // A node shutting down takes no new work: a load balancer should stop sending it any.
    if app.is_draining() {
        checks.insert("draining".into(), json!(true));
        ready = false;
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (ready, Json::new(status, &wire::Readiness { ready, checks }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut text = app.http_metrics.render(&app.service);
    text.push_str("# HELP planledger_stripe_events_total Stripe deliveries and events, by what became of them.\n");
    text.push_str("# TYPE planledger_stripe_events_total counter\n");
    for (outcome, count) in app.stripe.metrics().outcomes() {
        text.push_str(&format!("planledger_stripe_events_total{{outcome=\"{outcome}\"}} {count}\n"));
    }
    text.push_str(
        "# HELP planledger_webhook_deliveries_total Webhook deliveries of notifications, by what became of them.\n",
    );
    text.push_str("# TYPE planledger_webhook_deliveries_total counter\n");
    for (outcome, count) in app.notifier.metrics().outcomes() {
        text.push_str(&format!("planledger_webhook_deliveries_total{{outcome=\"{outcome}\"}} {count}\n"));
    }
    let lag = app
        .probes
        .lag
        .get(app.edge.probe_cache, || async {
            planledger_projections::runtime::audit_lag(app.service.reads(), app.service.clock().now()).await.ok()
        })
        .await;
    if let Some(lag) = lag {
        let leader = u8::from(app.projector.leader.load(std::sync::atomic::Ordering::Relaxed));
        text.push_str(&format!(
            "# HELP planledger_projector_lag_events Events the projector has yet to apply.\n# TYPE planledger_projector_lag_events gauge\nplanledger_projector_lag_events{{projector=\"audit_log\"}} {}\n\
             # HELP planledger_projector_lag_seconds Age of the oldest event the projector has yet to apply.\n# TYPE planledger_projector_lag_seconds gauge\nplanledger_projector_lag_seconds{{projector=\"audit_log\"}} {}\n\
             # HELP planledger_projector_leader Whether this node runs the projector.\n# TYPE planledger_projector_leader gauge\nplanledger_projector_leader{{projector=\"audit_log\"}} {leader}\n",
            lag.events, lag.seconds
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi(State(app): State<AppState>) -> Response {
    let in_force = app.service.catalog();
    let catalog = in_force.as_ref();
    let mut kept = app.probes.openapi.lock().unwrap_or_else(|e| e.into_inner());
    match kept.as_ref() {
        // Made once per catalog: it is a large document, and anyone may ask for it.
        Some((fingerprint, document)) if fingerprint == catalog.fingerprint() => document.clone().into_response(),
        _ => {
            let document = Json::ok(&crate::openapi::document(catalog));
            *kept = Some((catalog.fingerprint().to_owned(), document.clone()));
            document.into_response()
        }
    }
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
