//! The handlers of SPEC 11. Each parses its input into domain values (422 naming the field on
//! failure), checks the caller's role, and hands the command to the service.

use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use planledger_domain::{
    gate, ActionName, Amount, Command, Days, Event, ExtensionKind, InternalStatus, PlanId, Reason, StoreId, StoreName,
    SubscriptionId, TenantState, TimeZoneName, TransitionPlan, TransitionReason,
};
use planledger_service::views::{self, Answer};
use planledger_service::{CommandMeta, IdempotencyRequest};
use planledger_store::{EventLog, StreamId};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Role;
use crate::edge::{request_hash, Ctx, JsonBody, Params};
use crate::error::ApiError;
use crate::AppState;

type Reply = Result<Response, ApiError>;

fn reply(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(answer.body)).into_response()
}

/// A store id in a path. A string that is not a UUID cannot name a store: 404.
fn store_id(raw: &str) -> Result<StoreId, ApiError> {
    StoreId::parse(raw).map_err(|_| ApiError::StoreNotFound)
}

fn meta(ctx: &Ctx, method: &Method, path: &str, canonical_body: &str) -> CommandMeta {
    CommandMeta {
        correlation_id: ctx.correlation_id.clone(),
        actor: ctx.principal.name.clone(),
        idempotency: ctx.idempotency_key.as_ref().map(|key| IdempotencyRequest {
            key: key.clone(),
            request_hash: request_hash(method, path, canonical_body),
        }),
    }
}

async fn run(app: &AppState, ctx: &Ctx, store: StoreId, command: Command, path: &str, body: &str) -> Reply {
    let meta = meta(ctx, &Method::POST, path, body);
    Ok(reply(app.service.execute(store, command, meta).await?))
}

fn optional<T>(
    value: Option<String>,
    parse: fn(&str) -> Result<T, planledger_domain::InvalidValue>,
) -> Result<Option<T>, ApiError> {
    value.map(|v| parse(&v)).transpose().map_err(ApiError::from)
}

fn no_nul(field: &'static str, value: &Option<String>) -> Result<(), ApiError> {
    if value.as_deref().is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::validation(field, "must not contain NUL characters"));
    }
    Ok(())
}

// ---- stores -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterBody {
    store_id: Option<String>,
    name: Option<String>,
    time_zone: Option<String>,
}

pub async fn register_store(State(app): State<AppState>, ctx: Ctx, body: JsonBody<RegisterBody>) -> Reply {
    ctx.principal.require(Role::Service)?;
    let b = body.value;
    let store = match (&b.store_id, &ctx.idempotency_key) {
        (Some(id), _) => StoreId::parse(id)?,
        // A retry must register the same store: its id comes from the caller and its key.
        (None, Some(key)) => derived_store_id(&ctx.principal.name, key),
        (None, None) => StoreId::new(Uuid::new_v4()),
    };
    no_nul("name", &b.name)?;
    let command = Command::RegisterStore {
        store_id: store,
        name: optional(b.name, StoreName::parse)?,
        time_zone: optional(b.time_zone, TimeZoneName::parse)?,
    };
    run(&app, &ctx, store, command, "/v1/stores", &body.canonical).await
}

/// The store id a registration without `storeId` gets for `key`: the same for every retry of
/// one caller's request, another for another caller or key (a name-based UUID, version 5).
fn derived_store_id(caller: &str, key: &str) -> StoreId {
    const REGISTRATIONS: Uuid = Uuid::from_u128(0x6f1c_2a44_1d1e_4c6a_9f57_3f1f_0c7e_2b10);
    StoreId::new(Uuid::new_v5(&REGISTRATIONS, format!("{caller}\n{key}").as_bytes()))
}

pub async fn get_store(State(app): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Reply {
    ctx.principal.require(Role::Reader)?;
    let store = store_id(&id)?;
    let (state, version) = app.service.load_row(store).await?.ok_or(ApiError::StoreNotFound)?;
    let now = app.service.clock().now();
    Ok(Json(views::store_view(store, &state, version, now, app.service.catalog())).into_response())
}

// ---- lifecycle --------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrialBody {
    plan_id: Option<String>,
    days: Option<i64>,
    #[serde(default)]
    force_reset: bool,
    reason: Option<String>,
}

pub async fn start_trial(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<TrialBody>,
) -> Reply {
    ctx.principal.require(Role::Service)?;
    let store = store_id(&id)?;
    let b = body.value;
    let force_reset = if b.force_reset {
        ctx.principal.require(Role::Admin)?;
        let reason = b.reason.ok_or_else(|| ApiError::validation("reason", "a forced reset needs a reason"))?;
        Some(Reason::parse(&reason)?)
    } else {
        None
    };
    let command = Command::StartTrial {
        plan_id: optional(b.plan_id, PlanId::parse)?,
        days: b.days.map(Days::parse).transpose()?,
        force_reset,
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/trial"), &body.canonical).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionBody {
    plan_id: String,
    subscription_id: String,
}

pub async fn activate_subscription(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<SubscriptionBody>,
) -> Reply {
    ctx.principal.require(Role::Service)?;
    let store = store_id(&id)?;
    let command = Command::ActivateSubscription {
        plan_id: PlanId::parse(&body.value.plan_id)?,
        subscription_id: SubscriptionId::parse(&body.value.subscription_id)?,
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/subscription"), &body.canonical).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

async fn paid_lifecycle(
    app: AppState,
    ctx: Ctx,
    id: String,
    body: JsonBody<EmptyBody>,
    command: Command,
    suffix: &str,
) -> Reply {
    ctx.principal.require(Role::Service)?;
    let store = store_id(&id)?;
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/subscription/{suffix}"), &body.canonical).await
}

pub async fn mark_past_due(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<EmptyBody>,
) -> Reply {
    paid_lifecycle(app, ctx, id, body, Command::MarkPastDue, "past-due").await
}

pub async fn mark_recovered(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<EmptyBody>,
) -> Reply {
    paid_lifecycle(app, ctx, id, body, Command::MarkRecovered, "recovered").await
}

pub async fn cancel_subscription(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<EmptyBody>,
) -> Reply {
    paid_lifecycle(app, ctx, id, body, Command::CancelSubscription, "cancel").await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransitionBody {
    from_plan_id: String,
    to_plan_id: String,
    reason: String,
    subscription_id: Option<String>,
    metadata: Option<Value>,
}

pub async fn transition_plan(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<TransitionBody>,
) -> Reply {
    ctx.principal.require(Role::Service)?;
    let store = store_id(&id)?;
    let b = body.value;
    if b.metadata.as_ref().is_some_and(|m| m.to_string().contains("\\u0000")) {
        return Err(ApiError::validation("metadata", "must not contain NUL characters"));
    }
    let command = Command::TransitionPlan(TransitionPlan {
        from_plan_id: PlanId::parse(&b.from_plan_id).map_err(|e| ApiError::validation("fromPlanId", e.rule))?,
        to_plan_id: PlanId::parse(&b.to_plan_id).map_err(|e| ApiError::validation("toPlanId", e.rule))?,
        reason: TransitionReason::parse(&b.reason)?,
        subscription_id: optional(b.subscription_id, SubscriptionId::parse)?,
        metadata: b.metadata,
        by_admin: ctx.principal.is_admin(),
    });
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/plan-transitions"), &body.canonical).await
}

// ---- gates and quotas -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizeBody {
    action: String,
}

pub async fn authorize(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<AuthorizeBody>,
) -> Reply {
    ctx.principal.require(Role::Service)?;
    let store = store_id(&id)?;
    let action = ActionName::parse(&body.value.action)?;
    let (state, _) = app.service.load_row(store).await?.ok_or(ApiError::StoreNotFound)?;
    let now = app.service.clock().now();
    match gate(&state, now, app.service.catalog(), &action) {
        Ok(decision) => Ok(reply(views::authorization(&decision, &ctx.correlation_id))),
        Err(error) => {
            Ok(reply(Answer { status: error.http_status(), body: views::error_body(&error, &ctx.correlation_id) }))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumeBody {
    action: String,
    amount: Option<i64>,
}

pub async fn consume(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<ConsumeBody>,
) -> Reply {
    ctx.principal.require(Role::Service)?;
    let store = store_id(&id)?;
    let command = Command::Consume {
        action: ActionName::parse(&body.value.action)?,
        amount: body.value.amount.map(Amount::parse).transpose()?.unwrap_or(Amount::ONE),
        consumption_id: Uuid::now_v7(),
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/quota/consume"), &body.canonical).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefundBody {
    consumption_id: String,
}

pub async fn refund(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<RefundBody>,
) -> Reply {
    ctx.principal.require(Role::Service)?;
    let store = store_id(&id)?;
    let consumption = Uuid::parse_str(&body.value.consumption_id)
        .map_err(|_| ApiError::validation("consumptionId", "must be a UUID"))?;
    let meta = meta(&ctx, &Method::POST, &format!("/v1/stores/{store}/quota/refund"), &body.canonical);
    Ok(reply(app.service.refund(store, consumption, meta).await?))
}

// ---- history ----------------------------------------------------------------------------

fn envelope(e: &planledger_store::RecordedEvent) -> Value {
    json!({
        "eventId": e.event_id,
        "streamId": e.stream_id,
        "version": e.version,
        "globalPosition": e.global_position,
        "type": e.event_type,
        "schemaVersion": e.schema_version,
        "data": e.data,
        "correlationId": e.correlation_id,
        "causationId": e.causation_id,
        "idempotencyKey": e.idempotency_key,
        "actor": e.actor,
        "catalogFingerprint": e.catalog_fingerprint,
        "recordedAt": e.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

fn stream(store: StoreId) -> Result<StreamId, ApiError> {
    StreamId::parse(store.stream_name()).map_err(|_| ApiError::StoreNotFound)
}

pub async fn events(State(app): State<AppState>, ctx: Ctx, Path(id): Path<String>, params: Params) -> Reply {
    ctx.principal.require(Role::Reader)?;
    let store = store_id(&id)?;
    let from = params.int("fromVersion", 1, 1..=i64::MAX)?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let log = app.service.log();
    let s = stream(store)?;
    let events = log.read_stream(&s, from, limit).await?;
    if events.is_empty() && log.stream_version(&s).await? == 0 {
        return Err(ApiError::StoreNotFound);
    }
    let next = events.last().map_or(from, |e| e.version + 1);
    Ok(Json(json!({ "events": events.iter().map(envelope).collect::<Vec<_>>(), "nextVersion": next })).into_response())
}

pub async fn state_at(State(app): State<AppState>, ctx: Ctx, Path(id): Path<String>, params: Params) -> Reply {
    ctx.principal.require(Role::Reader)?;
    let store = store_id(&id)?;
    let at = params
        .get("at")
        .map(|raw| DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)))
        .transpose()
        .map_err(|_| ApiError::validation("at", "must be an RFC 3339 time"))?;
    let until = params.get("version").map(|_| params.int("version", 0, 1..=i64::MAX)).transpose()?;
    if at.is_some() && until.is_some() {
        return Err(ApiError::validation("at", "give either at or version, not both"));
    }
    let log = app.service.log();
    let s = stream(store)?;
    let mut state = TenantState::default();
    let mut version = 0;
    let mut last_time = None;
    let mut from = 1;
    'pages: loop {
        let page = log.read_stream(&s, from, 1000).await?;
        let full = page.len() == 1000;
        for recorded in page {
            if until.is_some_and(|v| recorded.version > v) || at.is_some_and(|t| recorded.recorded_at > t) {
                break 'pages;
            }
            let event =
                Event::from_stored(&recorded.event_type, recorded.schema_version, recorded.data, recorded.recorded_at)
                    .map_err(|_| ApiError::Internal)?;
            state = planledger_domain::evolve(state, &event);
            version = recorded.version;
            last_time = Some(recorded.recorded_at);
            from = recorded.version + 1;
        }
        if !full {
            break;
        }
    }
    if version == 0 {
        return Err(ApiError::StoreNotFound);
    }
    let now = at.or(if until.is_some() { last_time } else { None }).unwrap_or_else(|| app.service.clock().now());
    let mut view = views::store_view(store, &state, version, now, app.service.catalog());
    view["asOf"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    Ok(Json(view).into_response())
}

// ---- audit ------------------------------------------------------------------------------

fn time_param(params: &Params, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|raw| DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)))
        .transpose()
        .map_err(|_| ApiError::validation(name, "must be an RFC 3339 time"))
}

fn cursor_param(params: &Params) -> Result<i64, ApiError> {
    params.get("cursor").map_or(Ok(0), |c| {
        c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| ApiError::validation("cursor", "is not a cursor"))
    })
}

fn short_text(params: &Params, name: &'static str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.len() > 200 || v.contains('\0') => {
            Err(ApiError::validation(name, "must be at most 200 characters"))
        }
        other => Ok(other.map(str::to_owned)),
    }
}

pub async fn audit(State(app): State<AppState>, ctx: Ctx, params: Params) -> Reply {
    ctx.principal.require(Role::Reader)?;
    let store_id = params.get("storeId").map(|s| StoreId::parse(s).map(|s| s.to_string())).transpose()?;
    let query = planledger_projections::audit::AuditQuery {
        store_id,
        event_type: short_text(&params, "type")?,
        correlation_id: short_text(&params, "correlationId")?,
        from: time_param(&params, "from")?,
        to: time_param(&params, "to")?,
        after: cursor_param(&params)?,
        limit: params.int("limit", 100, 1..=1000)?,
    };
    let (items, next) = planledger_projections::audit::query(app.service.log(), &query).await?;
    Ok(Json(json!({ "items": items, "nextCursor": next.map(|n| n.to_string()) })).into_response())
}

pub async fn audit_commands(State(app): State<AppState>, ctx: Ctx, params: Params) -> Reply {
    ctx.principal.require(Role::Reader)?;
    let store_id = params.get("storeId").map(|s| StoreId::parse(s).map(|s| s.to_string())).transpose()?;
    let correlation_id = short_text(&params, "correlationId")?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let (items, next) = planledger_projections::audit::journal(
        app.service.log(),
        store_id.as_deref(),
        correlation_id.as_deref(),
        cursor_param(&params)?,
        limit,
    )
    .await?;
    Ok(Json(json!({ "items": items, "nextCursor": next.map(|n| n.to_string()) })).into_response())
}

fn read_model(name: &str) -> Result<planledger_projections::ReadModel, ApiError> {
    planledger_projections::ReadModel::parse(name).ok_or(ApiError::NotFound)
}

pub async fn start_rebuild(State(app): State<AppState>, ctx: Ctx, Path(name): Path<String>) -> Reply {
    ctx.principal.require(Role::Admin)?;
    let model = read_model(&name)?;
    let started = app.rebuilds.start(&app.service, model);
    let body = app.rebuilds.describe(model).unwrap_or(Value::Null);
    Ok((if started { StatusCode::ACCEPTED } else { StatusCode::OK }, Json(body)).into_response())
}

pub async fn rebuild_progress(State(app): State<AppState>, ctx: Ctx, Path(name): Path<String>) -> Reply {
    ctx.principal.require(Role::Admin)?;
    let model = read_model(&name)?;
    let info = planledger_projections::schema::info(app.service.log()).await?;
    let live = info.iter().find(|i| i.name == model.name());
    Ok(Json(json!({
        "name": model.name(),
        "generation": live.map(|i| i.generation),
        "catalogFingerprint": live.map(|i| i.catalog_fingerprint.clone()),
        "stale": live.is_some_and(|i| i.catalog_fingerprint != planledger_projections::schema::built_with(app.service.catalog())),
        "lastRebuild": app.rebuilds.describe(model),
    }))
    .into_response())
}

// ---- admin ------------------------------------------------------------------------------

pub async fn list_stores(State(app): State<AppState>, ctx: Ctx, params: Params) -> Reply {
    ctx.principal.require(Role::Admin)?;
    let status = params
        .get("internalStatus")
        .map(|s| {
            InternalStatus::parse(s).ok_or_else(|| ApiError::validation("internalStatus", "is not an internal status"))
        })
        .transpose()?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let cursor = params
        .get("cursor")
        .map(|c| StoreId::parse(c).map_err(|_| ApiError::validation("cursor", "is not a cursor")))
        .transpose()?;
    let rows = planledger_projections::tenant_state::list(app.service.log(), status.map(|s| s.as_str()), cursor, limit)
        .await?;
    let now = app.service.clock().now();
    let catalog = app.service.catalog();
    let next = if rows.len() as i64 == limit { rows.last().map(|r| r.store_id.to_string()) } else { None };
    let items: Vec<Value> =
        rows.iter().map(|r| views::store_view(r.store_id, &r.state, r.version, now, catalog)).collect();
    Ok(Json(json!({ "items": items, "nextCursor": next })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtensionsBody {
    store_ids: Vec<String>,
    kind: String,
    days: i64,
    reason: String,
}

pub async fn bulk_extensions(State(app): State<AppState>, ctx: Ctx, body: JsonBody<ExtensionsBody>) -> Reply {
    ctx.principal.require(Role::Admin)?;
    let b = body.value;
    if b.store_ids.is_empty() || b.store_ids.len() > 1000 {
        return Err(ApiError::validation("storeIds", "must list 1 to 1000 stores"));
    }
    let stores = b
        .store_ids
        .iter()
        .map(|id| StoreId::parse(id).map_err(|_| ApiError::validation("storeIds", format!("{id:?} is not a UUID"))))
        .collect::<Result<Vec<_>, _>>()?;
    let kind = ExtensionKind::parse(&b.kind)?;
    let days = Days::parse(b.days)?;
    let reason = Reason::parse(&b.reason)?;
    // Each store keeps the first answer to the request's key, so a retried bulk request
    // extends no store twice (and answers as it first did).
    let meta = meta(&ctx, &Method::POST, "/v1/admin/stores/extensions", &body.canonical);
    let mut tasks = Vec::with_capacity(stores.len());
    for store in stores {
        let service = app.service.clone();
        let command = Command::Extend { kind, days, reason: reason.clone() };
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move { (store, service.execute(store, command, meta).await) }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (store, outcome) = task.await.map_err(|_| ApiError::Internal)?;
        results.push(match outcome {
            Ok(answer) => json!({ "storeId": store, "status": answer.status, "ok": answer.status < 300,
                                  "error": answer.body.get("error").cloned() }),
            Err(e) => {
                let error = ApiError::from(e);
                json!({ "storeId": store, "status": error.status().as_u16(), "ok": false, "error": error.code() })
            }
        });
    }
    Ok(Json(json!({ "results": results })).into_response())
}

// ---- test clock -------------------------------------------------------------------------

fn test_clock(app: &AppState) -> Result<&planledger_service::TestClock, ApiError> {
    app.service.clock().as_test_clock().ok_or(ApiError::NotFound)
}

fn clock_body(now: DateTime<Utc>) -> Response {
    Json(json!({ "now": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true) })).into_response()
}

pub async fn get_test_clock(State(app): State<AppState>, ctx: Ctx) -> Reply {
    ctx.principal.require(Role::Admin)?;
    let clock = test_clock(&app)?;
    Ok(clock_body(planledger_service::Clock::now(clock)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetClockBody {
    now: String,
}

pub async fn set_test_clock(State(app): State<AppState>, ctx: Ctx, body: JsonBody<SetClockBody>) -> Reply {
    ctx.principal.require(Role::Admin)?;
    let clock = test_clock(&app)?;
    let now = DateTime::parse_from_rfc3339(&body.value.now)
        .map_err(|_| ApiError::validation("now", "must be an RFC 3339 time"))?
        .with_timezone(&Utc);
    clock.set(now);
    app.service.sweep().await?;
    Ok(clock_body(planledger_service::Clock::now(clock)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    seconds: i64,
}

pub async fn advance_test_clock(State(app): State<AppState>, ctx: Ctx, body: JsonBody<AdvanceBody>) -> Reply {
    ctx.principal.require(Role::Admin)?;
    let clock = test_clock(&app)?;
    let seconds = body.value.seconds;
    if !(0..=10 * 366 * 86_400).contains(&seconds) {
        return Err(ApiError::validation("seconds", "must be from 0 to ten years"));
    }
    let now = clock.advance(TimeDelta::seconds(seconds));
    // Deadlines that passed are appended before the answer, as the deadline worker would.
    app.service.sweep().await?;
    Ok(clock_body(now))
}

// ---- operations -------------------------------------------------------------------------

pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn readyz(State(app): State<AppState>) -> Response {
    let log = app.service.log();
    let (ready, mut checks) = match log.pending_migrations().await {
        Ok(0) => (true, json!({ "database": "ok", "migrations": "applied" })),
        Ok(pending) => (false, json!({ "database": "ok", "migrations": format!("{pending} pending") })),
        Err(_) => (false, json!({ "database": "unreachable" })),
    };
    if ready {
        // Read models built under another catalog are served while they are rebuilt: say so.
        if let Ok(info) = planledger_projections::schema::info(log).await {
            let stale: Vec<&str> = info
                .iter()
                .filter(|i| i.catalog_fingerprint != planledger_projections::schema::built_with(app.service.catalog()))
                .map(|i| i.name.as_str())
                .collect();
            checks["staleReadModels"] = json!(stale);
        }
        if let Ok(lag) = planledger_projections::runtime::audit_lag(log, app.service.clock().now()).await {
            checks["auditLag"] = json!({ "events": lag.events, "seconds": lag.seconds });
        }
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": ready, "checks": checks }))).into_response()
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut text = app.http_metrics.render(&app.service);
    if let Ok(lag) = planledger_projections::runtime::audit_lag(app.service.log(), app.service.clock().now()).await {
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

pub async fn openapi(State(_app): State<AppState>) -> Response {
    Json(crate::openapi_document()).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
