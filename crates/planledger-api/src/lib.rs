//! planledger's internal HTTP API (contract §11).
//!
//! [`app`] builds the router from [`ROUTES`], the one table of routes and the roles that may
//! call them; `/v1/openapi.json` is generated ([`openapi`]) from the handlers' annotations and
//! the contract's types (`planledger-wire`), with each route's security from the same table.
//! Every request passes [`edge::edge`] (correlation id, panic guard, metrics); handlers in
//! [`routes`] parse input into domain values and hand commands to the service; answers are
//! rendered in [`render`] and failures mapped once, in [`error::ApiError`].

pub mod auth;
pub mod console;
pub mod edge;
pub mod error;
pub mod import;
pub mod metrics;
pub mod openapi;
pub mod render;
mod responses;
pub mod routes;
pub mod server;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use planledger_projections::rebuild::{Progress, RebuildReport, When};
use planledger_projections::runtime::ProjectorState;
use planledger_projections::ReadModel;
use planledger_service::CommandService;
use planledger_wire as wire;

pub use auth::{Role, Tokens};
pub use error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The largest Stripe delivery accepted: an invoice with many lines is larger than a command.
pub const MAX_STRIPE_BODY_BYTES: usize = 1024 * 1024;

/// The limits of the HTTP edge that handlers and middleware apply (the connection-level ones
/// are [`server::ServerLimits`]). See docs/security.md.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The longest a whole request may take, body and handler included (above the longest long
    /// poll): a body dripped in a byte at a time ends here.
    pub request_timeout: std::time::Duration,
    /// Proxies whose `X-Forwarded-For` names the client (for the authentication throttle).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How many failed authentications a source may make.
    pub auth_throttle: auth::ThrottleConfig,
    /// Long polls of `GET /v1/events` held at once.
    pub max_long_polls: usize,
    /// How long `/readyz` and `/metrics` keep what they asked the database: a flood of probes
    /// costs one query of each per period.
    pub probe_cache: std::time::Duration,
}

/// The shortest whole-request deadline: a long poll may wait a minute.
pub const MIN_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(70);

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            request_timeout: std::time::Duration::from_secs(120),
            trusted_proxies: Vec::new(),
            auth_throttle: auth::ThrottleConfig::default(),
            max_long_polls: planledger_notify::feed::DEFAULT_MAX_WAITING,
            probe_cache: std::time::Duration::from_millis(500),
        }
    }
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: CommandService,
    pub tokens: Arc<Tokens>,
    pub http_metrics: Arc<metrics::HttpMetrics>,
    /// The audit projector of this process.
    pub projector: Arc<ProjectorState>,
    pub rebuilds: Arc<Rebuilds>,
    /// `/readyz` fails when the audit projector or the deadline worker is this far behind.
    pub stall_after: std::time::Duration,
    /// `/readyz` fails unless the primary has a synchronous standby (`--require-synchronous-standby`).
    pub require_synchronous_standby: bool,
    /// `/readyz` fails when the ledger's catalog version has been in force this long and this
    /// node still decides under another (it could not read it, say).
    pub catalog_grace: std::time::Duration,
    /// Stripe's webhooks (off unless signing secrets are configured).
    pub stripe: planledger_stripe::Stripe,
    /// Notifications out: webhook endpoints and their deliveries.
    pub notifier: planledger_notify::Notifier,
    /// What the admin console keeps between requests.
    pub console: Arc<console::ConsoleState>,
    pub edge: Arc<EdgeConfig>,
    /// Failed authentications, per source.
    pub throttle: Arc<auth::Throttle>,
    /// `GET /v1/events` and its long polls.
    pub feed: planledger_notify::feed::Feed,
    /// Set when the process starts to shut down: long polls answer, `/readyz` fails.
    draining: Arc<tokio::sync::watch::Sender<bool>>,
    /// The answers of the unauthenticated routes that ask the database, kept a moment so that a
    /// flood of probes costs the database one query a second.
    pub(crate) probes: Arc<routes::ProbeCache>,
    /// The key digests are signed with, and the keys `verify` trusts.
    pub digests: Arc<DigestKeys>,
}

/// The server's digest keys (docs/audit-chain.md), and the digest proofs were last made
/// against.
#[derive(Debug, Default)]
pub struct DigestKeys {
    /// Signs digests; none: digests are not made here.
    pub key: Option<planledger_chain::SigningKey>,
    /// How often this node makes one (if none was made since by another); `None`: only on demand.
    pub every: Option<std::time::Duration>,
    /// The last digest a proof was made against, with its leaf hashes: a digest never changes,
    /// and reading and hashing its leaves (80 bytes and a hash per store) for every proof would
    /// let a reader's flood of proofs cost the database and the node that much each.
    pub(crate) proving: Mutex<Option<Arc<routes::Proving>>>,
}

/// How far behind a background worker may fall before `/readyz` fails: well past a normal
/// sweep interval or projector pause, short of anything a client would notice for long.
pub const DEFAULT_STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

impl AppState {
    pub fn new(service: CommandService, tokens: Tokens, projector: Arc<ProjectorState>) -> Self {
        let edge = EdgeConfig::default();
        let draining = Arc::new(tokio::sync::watch::channel(false).0);
        let feed =
            planledger_notify::feed::Feed::new(service.reads().clone(), edge.max_long_polls, draining.subscribe());
        Self {
            throttle: Arc::new(auth::Throttle::new(edge.auth_throttle)),
            edge: Arc::new(edge),
            feed,
            draining,
            probes: Arc::default(),
            service: service.clone(),
            tokens: Arc::new(tokens),
            http_metrics: Arc::new(metrics::HttpMetrics::default()),
            projector,
            rebuilds: Arc::new(Rebuilds::default()),
            stall_after: DEFAULT_STALL_AFTER,
            require_synchronous_standby: false,
            catalog_grace: std::time::Duration::from_secs(5),
            stripe: planledger_stripe::Stripe::new(service.clone(), planledger_stripe::StripeConfig::default()),
            notifier: planledger_notify::Notifier::new(service, planledger_notify::NotifyConfig::default()),
            console: Arc::default(),
            digests: Arc::default(),
        }
    }

    /// With a key to sign digests, made every `every` if given.
    pub fn with_digest_key(mut self, key: planledger_chain::SigningKey, every: Option<std::time::Duration>) -> Self {
        self.digests = Arc::new(DigestKeys { key: Some(key), every, ..DigestKeys::default() });
        self
    }

    /// With the notifier the process runs (its deliveries configured otherwise).
    pub fn with_notifier(mut self, notifier: planledger_notify::Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// With Stripe's webhooks on (or configured otherwise).
    pub fn with_stripe(mut self, stripe: planledger_stripe::Stripe) -> Self {
        self.stripe = stripe;
        self
    }

    /// How long a node may decide under another catalog version than the ledger's in force.
    pub fn with_catalog_grace(mut self, grace: std::time::Duration) -> Self {
        self.catalog_grace = grace;
        self
    }

    /// Not ready unless every acknowledged commit is also on a synchronous standby.
    pub fn requiring_synchronous_standby(mut self, required: bool) -> Self {
        self.require_synchronous_standby = required;
        self
    }

    pub fn with_stall_after(mut self, stall_after: std::time::Duration) -> Self {
        self.stall_after = stall_after;
        self
    }

    /// With the edge's limits configured otherwise.
    pub fn with_edge(mut self, mut edge: EdgeConfig) -> Self {
        edge.request_timeout = edge.request_timeout.max(MIN_REQUEST_TIMEOUT);
        self.throttle = Arc::new(auth::Throttle::new(edge.auth_throttle));
        self.feed = planledger_notify::feed::Feed::new(
            self.service.reads().clone(),
            edge.max_long_polls,
            self.draining.subscribe(),
        );
        self.edge = Arc::new(edge);
        self
    }

    /// The process begins to shut down: waiting long polls answer at once, new ones do not
    /// wait, and `/readyz` fails so that a load balancer sends no more.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }
}

/// One rebuild started in this process.
#[derive(Debug)]
pub struct RebuildJob {
    pub progress: Arc<Progress>,
    /// `None` while running.
    pub outcome: Option<Result<RebuildReport, String>>,
    /// The key of the console form that started it, so that the form sent again starts nothing.
    pub started_by: Option<String>,
}

/// The rebuilds this process started, by read model.
#[derive(Debug, Default)]
pub struct Rebuilds {
    jobs: Mutex<HashMap<&'static str, RebuildJob>>,
}

impl Rebuilds {
    /// Starts a rebuild of `model` in the background unless one is running in this process;
    /// returns whether it started. It waits while another node rebuilds the model (its claim),
    /// and with [`When::IfStale`] does nothing if it then finds the model current.
    pub fn start(self: &Arc<Self>, service: &CommandService, model: ReadModel, when: When) -> bool {
        self.start_once(service, model, when, None)
    }

    /// As [`Rebuilds::start`]; with a `key`, also nothing if the last rebuild of `model` was
    /// started with the same key (a console form sent twice).
    pub fn start_once(
        self: &Arc<Self>,
        service: &CommandService,
        model: ReadModel,
        when: When,
        key: Option<&str>,
    ) -> bool {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get(model.name()) {
            if job.outcome.is_none() || (key.is_some() && job.started_by.as_deref() == key) {
                return false;
            }
        }
        let progress = Arc::new(Progress::default());
        jobs.insert(
            model.name(),
            RebuildJob { progress: progress.clone(), outcome: None, started_by: key.map(str::to_owned) },
        );
        let (rebuilds, service) = (self.clone(), service.clone());
        tokio::spawn(async move {
            let now = service.clock().now();
            let outcome = planledger_projections::rebuild::rebuild(
                service.log(),
                model,
                &service.catalogs(),
                now,
                &progress,
                when,
            )
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

    /// The state of the last rebuild of `model`, if any.
    pub fn describe(&self, model: ReadModel) -> Option<wire::RebuildJob> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let job = jobs.get(model.name())?;
        let p = &job.progress;
        let (state, error, generation) = match &job.outcome {
            None => (wire::RebuildState::Running, None, None),
            Some(Ok(report)) => (wire::RebuildState::Done, None, Some(report.generation)),
            Some(Err(e)) => (wire::RebuildState::Failed, Some(e.clone()), None),
        };
        Some(wire::RebuildJob {
            name: read_model_name(model),
            state,
            phase: p.phase().to_owned(),
            events_done: p.done.load(std::sync::atomic::Ordering::Relaxed),
            events_total: p.total.load(std::sync::atomic::Ordering::Relaxed),
            events_per_second: p.events_per_second().round(),
            elapsed_seconds: p.started.elapsed().as_secs_f64(),
            generation,
            error,
        })
    }
}

pub fn read_model_name(model: ReadModel) -> wire::ReadModelName {
    match model {
        ReadModel::TenantState => wire::ReadModelName::TenantState,
        ReadModel::AuditLog => wire::ReadModelName::AuditLog,
    }
}

/// One route: its method and path, who may call it, its handler. Its documentation is the
/// handler's `#[utoipa::path]`; a test holds the two to the same method and path.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// The least role that may call it; `None` for the unauthenticated operations routes.
    pub role: Option<Role>,
    pub handler: fn() -> MethodRouter<AppState>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

use routes as r;
use webhooks as w;

/// Every route the API serves.
pub const ROUTES: &[Route] = &[
    Route { method: "POST", path: "/v1/stores", role: Some(Role::Service), handler: || post(r::register_store) },
    Route { method: "GET", path: "/v1/stores", role: Some(Role::Reader), handler: || get(r::find_stores) },
    Route {
        method: "POST",
        path: "/v1/admin/stores/import",
        role: Some(Role::Admin),
        handler: || post(r::import_store),
    },
    Route { method: "GET", path: "/v1/stores/{id}", role: Some(Role::Reader), handler: || get(r::get_store) },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/trial",
        role: Some(Role::Service),
        handler: || post(r::start_trial),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription",
        role: Some(Role::Service),
        handler: || post(r::activate_subscription),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription/past-due",
        role: Some(Role::Service),
        handler: || post(r::mark_past_due),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription/recovered",
        role: Some(Role::Service),
        handler: || post(r::mark_recovered),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/subscription/cancel",
        role: Some(Role::Service),
        handler: || post(r::cancel_subscription),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/plan-transitions",
        role: Some(Role::Service),
        handler: || post(r::transition_plan),
    },
    Route {
        method: "DELETE",
        path: "/v1/stores/{id}/plan-transitions/{scheduleId}",
        role: Some(Role::Service),
        handler: || delete(r::cancel_scheduled_transition),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/authorize",
        role: Some(Role::Service),
        handler: || post(r::authorize),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/quota/consume",
        role: Some(Role::Service),
        handler: || post(r::consume),
    },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/quota/refund",
        role: Some(Role::Service),
        handler: || post(r::refund),
    },
    Route { method: "POST", path: "/v1/stores/{id}/grants", role: Some(Role::Service), handler: || post(r::add_grant) },
    Route { method: "GET", path: "/v1/stores/{id}/explain", role: Some(Role::Reader), handler: || get(r::explain) },
    Route { method: "GET", path: "/v1/stores/{id}/proof", role: Some(Role::Reader), handler: || get(r::prove_store) },
    Route { method: "GET", path: "/v1/ledger/digests", role: Some(Role::Reader), handler: || get(r::list_digests) },
    Route { method: "POST", path: "/v1/ledger/digests", role: Some(Role::Admin), handler: || post(r::make_digest) },
    Route {
        method: "POST",
        path: "/v1/stores/{id}/grants/{grantId}/void",
        role: Some(Role::Service),
        handler: || post(r::void_grant),
    },
    Route { method: "GET", path: "/v1/stores/{id}/events", role: Some(Role::Reader), handler: || get(r::events) },
    Route { method: "GET", path: "/v1/stores/{id}/state", role: Some(Role::Reader), handler: || get(r::state_at) },
    Route { method: "GET", path: "/v1/audit", role: Some(Role::Reader), handler: || get(r::audit) },
    Route { method: "GET", path: "/v1/catalog", role: Some(Role::Reader), handler: || get(r::get_catalog) },
    Route {
        method: "POST",
        path: "/v1/admin/catalog/preview",
        role: Some(Role::Admin),
        handler: || post(r::preview_catalog),
    },
    Route {
        method: "GET",
        path: "/v1/catalog/versions",
        role: Some(Role::Reader),
        handler: || get(r::list_catalog_versions),
    },
    Route { method: "GET", path: "/v1/audit/commands", role: Some(Role::Reader), handler: || get(r::audit_commands) },
    Route {
        method: "POST",
        path: "/v1/admin/projections/{name}/rebuild",
        role: Some(Role::Admin),
        handler: || post(r::start_rebuild),
    },
    Route {
        method: "GET",
        path: "/v1/admin/projections/{name}/rebuild",
        role: Some(Role::Admin),
        handler: || get(r::rebuild_progress),
    },
    Route { method: "GET", path: "/v1/admin/stores", role: Some(Role::Admin), handler: || get(r::list_stores) },
    Route {
        method: "POST",
        path: "/v1/admin/stores/extensions",
        role: Some(Role::Admin),
        handler: || post(r::bulk_extensions),
    },
    Route {
        method: "GET",
        path: "/v1/admin/webhooks/stripe",
        role: Some(Role::Admin),
        handler: || get(r::list_stripe_events),
    },
    Route {
        method: "POST",
        path: "/v1/admin/webhooks/stripe/{id}/retry",
        role: Some(Role::Admin),
        handler: || post(r::retry_stripe_event),
    },
    // Stripe cannot send a bearer token: its signature is the credential, checked by the handler.
    Route {
        method: "POST",
        path: "/v1/webhooks/stripe",
        role: None,
        handler: || post(r::stripe_webhook).layer(DefaultBodyLimit::max(MAX_STRIPE_BODY_BYTES)),
    },
    Route {
        method: "POST",
        path: "/v1/admin/webhooks/endpoints",
        role: Some(Role::Admin),
        handler: || post(w::create_endpoint),
    },
    Route {
        method: "GET",
        path: "/v1/admin/webhooks/endpoints",
        role: Some(Role::Admin),
        handler: || get(w::list_endpoints),
    },
    Route {
        method: "GET",
        path: "/v1/admin/webhooks/endpoints/{id}",
        role: Some(Role::Admin),
        handler: || get(w::get_endpoint),
    },
    Route {
        method: "PATCH",
        path: "/v1/admin/webhooks/endpoints/{id}",
        role: Some(Role::Admin),
        handler: || axum::routing::patch(w::update_endpoint),
    },
    Route {
        method: "GET",
        path: "/v1/admin/webhooks/endpoints/{id}/deliveries",
        role: Some(Role::Admin),
        handler: || get(w::list_deliveries),
    },
    Route {
        method: "GET",
        path: "/v1/admin/webhooks/deliveries/{id}",
        role: Some(Role::Admin),
        handler: || get(w::get_delivery),
    },
    Route {
        method: "POST",
        path: "/v1/admin/webhooks/deliveries/{id}/retry",
        role: Some(Role::Admin),
        handler: || post(w::retry_delivery),
    },
    Route { method: "GET", path: "/v1/events", role: Some(Role::Reader), handler: || get(w::follow_events) },
    Route { method: "GET", path: "/v1/test-clock", role: Some(Role::Admin), handler: || get(r::get_test_clock) },
    Route {
        method: "PUT",
        path: "/v1/test-clock",
        role: Some(Role::Admin),
        handler: || axum::routing::put(r::set_test_clock),
    },
    Route {
        method: "POST",
        path: "/v1/test-clock/advance",
        role: Some(Role::Admin),
        handler: || post(r::advance_test_clock),
    },
    Route { method: "GET", path: "/v1/openapi.json", role: None, handler: || get(r::openapi) },
    Route { method: "GET", path: "/healthz", role: None, handler: || get(r::healthz) },
    Route { method: "GET", path: "/readyz", role: None, handler: || get(r::readyz) },
    Route { method: "GET", path: "/metrics", role: None, handler: || get(r::metrics) },
];

/// The router, with every route of [`ROUTES`] and the edge middleware.
pub fn app(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut by_path: Vec<(&str, MethodRouter<AppState>)> = Vec::new();
    let document = openapi::generated();
    for route in ROUTES {
        let allowed: Arc<[String]> = openapi::query_parameters(&document, route.method, route.path).into();
        let handler = (route.handler)().layer(axum::middleware::from_fn_with_state(allowed, edge::known_query));
        let handler = match route.role {
            Some(role) => {
                handler.layer(axum::middleware::from_fn_with_state((state.clone(), role), edge::require_role))
            }
            None => handler,
        };
        match by_path.iter_mut().find(|(path, _)| *path == route.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => by_path.push((route.path, handler)),
        }
    }
    for (path, methods) in by_path {
        let allowed: Vec<&str> = ROUTES.iter().filter(|r| r.path == path).map(|r| r.method).collect();
        let allow = allowed.join(", ");
        let fallback = move || {
            let allow = allow.clone();
            async move { error::method_not_allowed(allow) }
        };
        router = router.route(path, methods.fallback(fallback));
    }
    router
        .merge(console::router())
        .fallback(r::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge::edge))
        .with_state(state)
}
