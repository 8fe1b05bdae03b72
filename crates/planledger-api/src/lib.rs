//! planledger's internal HTTP API (SPEC 11).
//!
//! [`app`] builds the router from [`ROUTES`], the one table of routes; `/v1/openapi.json` is
//! generated from the same table, so the document cannot drift from what is served. Every
//! request passes [`edge::edge`] (correlation id, panic guard, metrics); handlers in
//! [`routes`] parse input into domain values and hand commands to the service; errors are
//! mapped once, in [`error::ApiError`].

pub mod auth;
pub mod edge;
pub mod error;
pub mod metrics;
pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use planledger_projections::rebuild::{Progress, RebuildReport};
use planledger_projections::runtime::ProjectorState;
use planledger_projections::ReadModel;
use planledger_service::CommandService;
use serde_json::{json, Value};

pub use auth::{Role, Tokens};
pub use error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: CommandService,
    pub tokens: Arc<Tokens>,
    pub http_metrics: Arc<metrics::HttpMetrics>,
    /// The audit projector of this process.
    pub projector: Arc<ProjectorState>,
    pub rebuilds: Arc<Rebuilds>,
}

impl AppState {
    pub fn new(service: CommandService, tokens: Tokens, projector: Arc<ProjectorState>) -> Self {
        Self {
            service,
            tokens: Arc::new(tokens),
            http_metrics: Arc::new(metrics::HttpMetrics::default()),
            projector,
            rebuilds: Arc::new(Rebuilds::default()),
        }
    }
}

/// One rebuild started in this process.
#[derive(Debug)]
pub struct RebuildJob {
    pub progress: Arc<Progress>,
    /// `None` while running.
    pub outcome: Option<Result<RebuildReport, String>>,
}

/// The rebuilds this process started, by read model.
#[derive(Debug, Default)]
pub struct Rebuilds {
    jobs: Mutex<HashMap<&'static str, RebuildJob>>,
}

impl Rebuilds {
    /// Starts a rebuild of `model` in the background unless one is running; returns whether it
    /// started.
    pub fn start(self: &Arc<Self>, service: &CommandService, model: ReadModel) -> bool {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.get(model.name()).is_some_and(|job| job.outcome.is_none()) {
            return false;
        }
        let progress = Arc::new(Progress::default());
        jobs.insert(model.name(), RebuildJob { progress: progress.clone(), outcome: None });
        let (rebuilds, service) = (self.clone(), service.clone());
        tokio::spawn(async move {
            let now = service.clock().now();
            let outcome =
                planledger_projections::rebuild::rebuild(service.log(), model, service.catalog(), now, &progress)
                    .await
                    .map_err(|e| e.to_string());
            if let Err(error) = &outcome {
                tracing::error!(model = model.name(), %error, "rebuild failed; the live read model is unchanged");
            }
            let mut jobs = rebuilds.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(job) = jobs.get_mut(model.name()) {
                job.outcome = Some(outcome);
            }
        });
        true
    }

    /// The state of the last rebuild of `model` as JSON, if any.
    pub fn describe(&self, model: ReadModel) -> Option<Value> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let job = jobs.get(model.name())?;
        let p = &job.progress;
        let (state, error, generation) = match &job.outcome {
            None => ("running", None, None),
            Some(Ok(report)) => ("done", None, Some(report.generation)),
            Some(Err(e)) => ("failed", Some(e.clone()), None),
        };
        Some(json!({
            "name": model.name(),
            "state": state,
            "phase": p.phase(),
            "eventsDone": p.done.load(std::sync::atomic::Ordering::Relaxed),
            "eventsTotal": p.total.load(std::sync::atomic::Ordering::Relaxed),
            "eventsPerSecond": p.events_per_second().round(),
            "elapsedSeconds": p.started.elapsed().as_secs_f64(),
            "generation": generation,
            "error": error,
        }))
    }
}

/// One route: how it is served and how it is documented.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// The least role that may call it; `None` for the unauthenticated operations routes.
    pub role: Option<Role>,
    /// Body fields: (name, JSON type, required).
    pub body: &'static [(&'static str, &'static str, bool)],
    pub handler: fn() -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

use routes as r;

/// Every route the API serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/stores",
        summary: "Register a store (201; 200 if it exists alike)",
        role: Some(Role::Service),
        body: &[("storeId", "string", false), ("name", "string", false), ("timeZone", "string", false)],
        handler: || post(r::register_store),
    },
    Route {
        method: "GET",
        path: "/v1/stores/{id}",
        summary: "The store's state, statuses derived at now",
        role: Some(Role::Reader),
        body: &[],
        handler: || get(r::get_store),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/trial",
        summary: "Start a trial",
        role: Some(Role::Service),
        body: &[
            ("planId", "string", false),
            ("days", "integer", false),
            ("forceReset", "boolean", false),
            ("reason", "string", false),
        ],
        handler: || post(r::start_trial),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription",
        summary: "Activate a paid subscription",
        role: Some(Role::Service),
        body: &[("planId", "string", true), ("subscriptionId", "string", true)],
        handler: || post(r::activate_subscription),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription/past-due",
        summary: "Mark the subscription past due",
        role: Some(Role::Service),
        body: &[],
        handler: || post(r::mark_past_due),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription/recovered",
        summary: "Mark a past-due subscription recovered",
        role: Some(Role::Service),
        body: &[],
        handler: || post(r::mark_recovered),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription/cancel",
        summary: "Cancel the subscription",
        role: Some(Role::Service),
        body: &[],
        handler: || post(r::cancel_subscription),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/plan-transitions",
        summary: "Transition the store to another plan",
        role: Some(Role::Service),
        body: &[
            ("fromPlanId", "string", true),
            ("toPlanId", "string", true),
            ("reason", "string", true),
            ("subscriptionId", "string", false),
            ("metadata", "object", false),
        ],
        handler: || post(r::transition_plan),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/authorize",
        summary: "Check the access gate for an action",
        role: Some(Role::Service),
        body: &[("action", "string", true)],
        handler: || post(r::authorize),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/quota/consume",
        summary: "Consume quota",
        role: Some(Role::Service),
        body: &[("action", "string", true), ("amount", "integer", false)],
        handler: || post(r::consume),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/quota/refund",
        summary: "Refund a consumption",
        role: Some(Role::Service),
        body: &[("consumptionId", "string", true)],
        handler: || post(r::refund),
    },
    Route {
        method: "GET",
        path: "/v1/stores/{id}/events",
        summary: "The store's raw stream (fromVersion, limit)",
        role: Some(Role::Reader),
        body: &[],
        handler: || get(r::events),
    },
    Route {
        method: "GET",
        path: "/v1/stores/{id}/state",
        summary: "The state replayed to a time (at) or version",
        role: Some(Role::Reader),
        body: &[],
        handler: || get(r::state_at),
    },
    Route {
        method: "GET",
        path: "/v1/audit",
        summary: "The audit view (storeId, type, correlationId, from, to, limit, cursor)",
        role: Some(Role::Reader),
        body: &[],
        handler: || get(r::audit),
    },
    Route {
        method: "GET",
        path: "/v1/audit/commands",
        summary: "The command journal (storeId, correlationId, limit, cursor)",
        role: Some(Role::Reader),
        body: &[],
        handler: || get(r::audit_commands),
    },
    Route {
        method: "POST",
        path: "/v1/admin/projections/{name}/rebuild",
        summary: "Start a blue/green rebuild of a read model",
        role: Some(Role::Admin),
        body: &[],
        handler: || post(r::start_rebuild),
    },
    Route {
        method: "GET",
        path: "/v1/admin/projections/{name}/rebuild",
        summary: "Progress of the last rebuild of a read model",
        role: Some(Role::Admin),
        body: &[],
        handler: || get(r::rebuild_progress),
    },
    Route {
        method: "GET",
        path: "/v1/admin/stores",
        summary: "Stores by internal status (internalStatus, limit, cursor)",
        role: Some(Role::Admin),
        body: &[],
        handler: || get(r::list_stores),
    },
    Route {
        method: "POST",
        path: "/v1/admin/stores/extensions",
        summary: "Extend trials, grace periods or maintenance windows in bulk",
        role: Some(Role::Admin),
        body: &[
            ("storeIds", "array", true),
            ("kind", "string", true),
            ("days", "integer", true),
            ("reason", "string", true),
        ],
        handler: || post(r::bulk_extensions),
    },
    Route {
        method: "GET",
        path: "/v1/test-clock",
        summary: "The test clock (PLANLEDGER_TEST_CLOCK=1 only)",
        role: Some(Role::Admin),
        body: &[],
        handler: || get(r::get_test_clock),
    },
    Route {
        method: "PUT",
        path: "/v1/test-clock",
        summary: "Set the test clock, then sweep deadlines",
        role: Some(Role::Admin),
        body: &[("now", "string", true)],
        handler: || axum::routing::put(r::set_test_clock),
    },
    Route {
        method: "POST",
        path: "/v1/test-clock/advance",
        summary: "Advance the test clock, then sweep deadlines",
        role: Some(Role::Admin),
        body: &[("seconds", "integer", true)],
        handler: || post(r::advance_test_clock),
    },
    Route {
        method: "GET",
        path: "/v1/openapi.json",
        summary: "This document",
        role: None,
        body: &[],
        handler: || get(r::openapi),
    },
    Route {
        method: "GET",
        path: "/healthz",
        summary: "The process is up",
        role: None,
        body: &[],
        handler: || get(r::healthz),
    },
    Route {
        method: "GET",
        path: "/readyz",
        summary: "The database is reachable and migrated",
        role: None,
        body: &[],
        handler: || get(r::readyz),
    },
    Route {
        method: "GET",
        path: "/metrics",
        summary: "Prometheus metrics",
        role: None,
        body: &[],
        handler: || get(r::metrics),
    },
];

/// The router, with every route of [`ROUTES`] and the edge middleware.
pub fn app(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut by_path: Vec<(&str, MethodRouter<AppState>)> = Vec::new();
    for route in ROUTES {
        let handler = match route.role {
            Some(role) => {
                (route.handler)().layer(axum::middleware::from_fn_with_state((state.clone(), role), edge::require_role))
            }
            None => (route.handler)(),
        };
        match by_path.iter_mut().find(|(path, _)| *path == route.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => by_path.push((route.path, handler)),
        }
    }
    for (path, methods) in by_path {
        router = router.route(path, methods.fallback(r::method_not_allowed));
    }
    router
        .fallback(r::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::edge))
        .with_state(state)
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut operation = json!({
            "summary": route.summary,
            "responses": { "default": { "description": "JSON; errors are {error, message, correlationId}" } },
        });
        if route.path.contains("{id}") {
            operation["parameters"] = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }]);
        }
        if route.path.contains("{name}") {
            operation["parameters"] = json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "enum": ["tenant_state", "audit_log"] } }]);
        }
        if let Some(role) = route.role {
            operation["security"] = json!([{ "bearer": [] }]);
            operation["x-role"] = json!(format!("{role:?}").to_lowercase());
        }
        if !route.body.is_empty() {
            let properties: serde_json::Map<String, Value> =
                route.body.iter().map(|(name, ty, _)| ((*name).to_owned(), json!({ "type": ty }))).collect();
            let required: Vec<&str> = route.body.iter().filter(|(_, _, req)| *req).map(|(name, _, _)| *name).collect();
            operation["requestBody"] = json!({ "content": { "application/json": { "schema": {
                "type": "object", "properties": properties, "required": required, "additionalProperties": false } } } });
        }
        let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "planledger", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": paths,
    })
}
