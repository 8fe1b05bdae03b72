//! The handlers of SPEC 11. Each parses its input (the contract's types, then domain values:
//! 422 naming the field on failure) and hands the command to the service; the caller's role
//! was checked by the route table's middleware before the request reached it. Answers are
//! rendered by `render`, failures by `ApiError`.

use axum::extract::{FromRequest, Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use planledger_domain::{
    gate, ActionName, Amount, Command, Days, PlanId, Reason, StoreId, StoreName, SubscriptionId, TimeZoneName,
    TransitionPlan,
};
use planledger_projections::history::{fold_stream, Folded, Until};
use planledger_service::{Answer, CommandMeta, IdempotencyRequest};
use planledger_store::{EventLog, StreamId};
use planledger_wire as wire;
use uuid::Uuid;

use crate::auth::Role;
use crate::edge::{request_hash, Ctx, JsonBody, Params, RequestScope};
use crate::error::ApiError;
use crate::render::{self, Json};
use crate::responses as rs;
use crate::AppState;

type Reply = Result<Response, ApiError>;

/// A store id in a path. A string that is not a UUID cannot name a store: 404.
fn store_id(raw: &str) -> Result<StoreId, ApiError> {
    StoreId::parse(raw).map_err(|_| ApiError::store_not_found())
}

fn meta(ctx: &Ctx, path: &str, canonical_body: &str) -> CommandMeta {
    CommandMeta {
        correlation_id: ctx.correlation_id.clone(),
        actor: ctx.principal.name.clone(),
        idempotency: ctx.idempotency_key.as_ref().map(|key| IdempotencyRequest {
            key: key.clone(),
            request_hash: request_hash(&Method::POST, path, canonical_body, ctx.if_match),
        }),
        expected_version: ctx.if_match,
        causation_id: None,
    }
}

/// The service's answer as the caller gets it.
fn answer(app: &AppState, answer: Answer) -> Reply {
    match answer {
        Answer::Decided(outcome) => Ok(render::outcome(outcome, app.service.catalog())?.into_response()),
        Answer::Replayed(first) => Ok(render::replayed(first, RequestScope::current().now)),
    }
}

async fn run(app: &AppState, ctx: &Ctx, store: StoreId, command: Command, path: &str, body: &str) -> Reply {
    let meta = meta(ctx, path, body);
    answer(app, app.service.execute(store, command, meta).await?)
}

fn optional<T>(
    value: Option<String>,
    parse: fn(&str) -> Result<T, planledger_domain::InvalidValue>,
) -> Result<Option<T>, ApiError> {
    value.map(|v| parse(&v)).transpose().map_err(ApiError::from)
}

// ---- stores -----------------------------------------------------------------------------

/// Register a store (201; 200 if it exists alike).
#[utoipa::path(post, path = "/v1/stores", tag = "stores", operation_id = "registerStore",
    request_body = wire::RegisterStore,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry; without `storeId`, also names the store", pattern = r"^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Registered", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 200, description = "Already registered alike: nothing changed", body = wire::StoreView),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        (status = 409, description = "`store_exists`: registered with another name or time zone; `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "A field is invalid", body = wire::ErrorBody),
        rs::CommandUnavailable,
    ))]
pub async fn register_store(State(app): State<AppState>, ctx: Ctx, body: JsonBody<wire::RegisterStore>) -> Reply {
    let b = body.value;
    let store = match (b.store_id, &ctx.idempotency_key) {
        (Some(id), _) => StoreId::new(id),
        // A retry must register the same store: its id comes from the caller and its key.
        (None, Some(key)) => derived_store_id(&ctx.principal.name, key),
        (None, None) => StoreId::new(Uuid::new_v4()),
    };
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

/// The store's state, statuses derived at now.
#[utoipa::path(get, path = "/v1/stores/{id}", tag = "stores", operation_id = "getStore",
    params(rs::StorePath),
    responses(
        (status = 200, description = "The store; `ETag` is its version", body = wire::StoreView, headers(("ETag" = String, description = "The store's version, quoted: send it as `If-Match`"))),
        rs::Unauthorized,
        rs::StoreNotFound,
        rs::Unavailable,
    ))]
pub async fn get_store(State(app): State<AppState>, Path(id): Path<String>) -> Reply {
    let store = store_id(&id)?;
    let (state, version) = app.service.load_row(store).await?.ok_or_else(ApiError::store_not_found)?;
    let now = app.service.clock().now();
    let mut response =
        Json::ok(&render::store_view(store, &state, version, now, app.service.catalog())).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

// ---- lifecycle --------------------------------------------------------------------------

/// Start a trial (201; 200 if one is running already).
#[utoipa::path(post, path = "/v1/stores/{id}/trial", tag = "lifecycle", operation_id = "startTrial",
    request_body = wire::StartTrial,
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 201, description = "Started", body = wire::TrialAnswer, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 200, description = "A trial is running already", body = wire::TrialAnswer),
        rs::BadBody,
        rs::Unauthorized,
        (status = 403, description = "A forced reset needs an admin token", body = wire::ErrorBody),
        rs::StoreNotFound,
        (status = 409, description = "`trial_already_used`, `subscription_active`, `version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed`, `unknown_plan`, `plan_not_trial_eligible`", body = wire::ErrorBody),
        rs::CommandUnavailable,
    ))]
pub async fn start_trial(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::StartTrial>,
) -> Reply {
    let store = store_id(&id)?;
    let b = body.value;
    let force_reset = if b.force_reset {
        // The one role check a handler makes: it depends on the body.
        ctx.principal.require(Role::Admin)?;
        let reason = b.reason.ok_or_else(|| ApiError::validation("reason", "a forced reset needs a reason"))?;
        Some(Reason::parse(&reason)?)
    } else {
        optional(b.reason, Reason::parse)?;
        None
    };
    let command = Command::StartTrial {
        plan_id: optional(b.plan_id, PlanId::parse)?,
        days: b.days.map(Days::parse).transpose()?,
        force_reset,
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/trial"), &body.canonical).await
}

/// Activate a paid subscription.
#[utoipa::path(post, path = "/v1/stores/{id}/subscription", tag = "lifecycle", operation_id = "activateSubscription",
    request_body = wire::ActivateSubscription,
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Active", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        rs::StoreNotFound,
        (status = 409, description = "`version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed`, `unknown_plan`, `not_a_paid_plan`", body = wire::ErrorBody),
        rs::CommandUnavailable,
    ))]
pub async fn activate_subscription(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::ActivateSubscription>,
) -> Reply {
    let store = store_id(&id)?;
    let command = Command::ActivateSubscription {
        plan_id: PlanId::parse(&body.value.plan_id)?,
        subscription_id: SubscriptionId::parse(&body.value.subscription_id)?,
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/subscription"), &body.canonical).await
}

async fn paid_lifecycle(
    app: AppState,
    ctx: Ctx,
    id: String,
    body: JsonBody<wire::NoFields>,
    command: Command,
    suffix: &str,
) -> Reply {
    let store = store_id(&id)?;
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/subscription/{suffix}"), &body.canonical).await
}

/// Mark the subscription past due.
#[utoipa::path(post, path = "/v1/stores/{id}/subscription/past-due", tag = "lifecycle", operation_id = "markPastDue",
    request_body(content = wire::NoFields, description = "Empty, or `{}`"),
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Past due", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        rs::StoreNotFound,
        (status = 409, description = "`no_active_subscription`, `version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        rs::Invalid,
        rs::CommandUnavailable,
    ))]
pub async fn mark_past_due(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::NoFields>,
) -> Reply {
    paid_lifecycle(app, ctx, id, body, Command::MarkPastDue, "past-due").await
}

/// Mark a past-due subscription recovered.
#[utoipa::path(post, path = "/v1/stores/{id}/subscription/recovered", tag = "lifecycle", operation_id = "markRecovered",
    request_body(content = wire::NoFields, description = "Empty, or `{}`"),
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Active again", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        rs::StoreNotFound,
        (status = 409, description = "`not_past_due`, `version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        rs::Invalid,
        rs::CommandUnavailable,
    ))]
pub async fn mark_recovered(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::NoFields>,
) -> Reply {
    paid_lifecycle(app, ctx, id, body, Command::MarkRecovered, "recovered").await
}

/// Cancel the subscription.
#[utoipa::path(post, path = "/v1/stores/{id}/subscription/cancel", tag = "lifecycle", operation_id = "cancelSubscription",
    request_body(content = wire::NoFields, description = "Empty, or `{}`"),
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Canceled", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        rs::StoreNotFound,
        (status = 409, description = "`no_active_subscription`, `version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        rs::Invalid,
        rs::CommandUnavailable,
    ))]
pub async fn cancel_subscription(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::NoFields>,
) -> Reply {
    paid_lifecycle(app, ctx, id, body, Command::CancelSubscription, "cancel").await
}

/// Transition the store to another plan.
#[utoipa::path(post, path = "/v1/stores/{id}/plan-transitions", tag = "lifecycle", operation_id = "transitionPlan",
    request_body = wire::TransitionPlan,
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Transitioned", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        rs::StoreNotFound,
        (status = 409, description = "`plan_mismatch` (with `currentPlanId`), `version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed`, `unknown_plan`, `invalid_transition`, `internal_tier`, `subscription_required`", body = wire::ErrorBody),
        rs::CommandUnavailable,
    ))]
pub async fn transition_plan(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::TransitionPlan>,
) -> Reply {
    let store = store_id(&id)?;
    let b = body.value;
    let command = Command::TransitionPlan(TransitionPlan {
        from_plan_id: PlanId::parse(&b.from_plan_id).map_err(|e| ApiError::validation("fromPlanId", e.rule))?,
        to_plan_id: PlanId::parse(&b.to_plan_id).map_err(|e| ApiError::validation("toPlanId", e.rule))?,
        reason: transition_reason(b.reason),
        subscription_id: optional(b.subscription_id, SubscriptionId::parse)?,
        metadata: b.metadata.map(serde_json::Value::Object),
        by_admin: ctx.principal.is_admin(),
    });
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/plan-transitions"), &body.canonical).await
}

fn transition_reason(reason: wire::TransitionReason) -> planledger_domain::TransitionReason {
    use planledger_domain::TransitionReason as R;
    match reason {
        wire::TransitionReason::Upgrade => R::Upgrade,
        wire::TransitionReason::Downgrade => R::Downgrade,
        wire::TransitionReason::Admin => R::Admin,
        wire::TransitionReason::Migration => R::Migration,
    }
}

// ---- gates and quotas -------------------------------------------------------------------

/// Check the access gate for an action (nothing is recorded).
#[utoipa::path(post, path = "/v1/stores/{id}/authorize", tag = "quotas", operation_id = "authorize",
    request_body = wire::Authorize,
    params(rs::StorePath),
    responses(
        (status = 200, description = "Allowed, with warnings", body = wire::Authorized),
        rs::BadBody,
        rs::Unauthorized,
        (status = 402, description = "`no_subscription`", body = wire::ErrorBody),
        (status = 403, description = "`maintenance_no_growth`, `account_frozen`, `subscription_canceled`; or the token's role may not do this", body = wire::ErrorBody),
        rs::StoreNotFound,
        (status = 422, description = "`validation_failed`, `unknown_action`", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn authorize(State(app): State<AppState>, Path(id): Path<String>, body: JsonBody<wire::Authorize>) -> Reply {
    let store = store_id(&id)?;
    let action = ActionName::parse(&body.value.action)?;
    let (state, _) = app.service.load_row(store).await?.ok_or_else(ApiError::store_not_found)?;
    let now = app.service.clock().now();
    let decision = gate(&state, now, app.service.catalog(), &action).map_err(ApiError::refused)?;
    Ok(render::authorization(decision)?.into_response())
}

/// Consume quota.
#[utoipa::path(post, path = "/v1/stores/{id}/quota/consume", tag = "quotas", operation_id = "consume",
    request_body = wire::Consume,
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Consumed", body = wire::Consumed, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        (status = 402, description = "`no_subscription`", body = wire::ErrorBody),
        (status = 403, description = "`maintenance_no_growth`, `account_frozen`, `subscription_canceled`; or the token's role may not do this", body = wire::ErrorBody),
        rs::StoreNotFound,
        (status = 409, description = "`version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed`, `unknown_action`", body = wire::ErrorBody),
        (status = 429, description = "`quota_exceeded`: `Retry-After` is the time to the window's reset (none for a lifetime quota); `too_many_attempts`: too many wrong tokens from this address lately", body = wire::ErrorBody, headers(("Retry-After" = u64))),
        rs::CommandUnavailable,
    ))]
pub async fn consume(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::Consume>,
) -> Reply {
    let store = store_id(&id)?;
    let command = Command::Consume {
        action: ActionName::parse(&body.value.action)?,
        amount: body.value.amount.map(Amount::parse).transpose()?.unwrap_or(Amount::ONE),
        consumption_id: Uuid::now_v7(),
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/quota/consume"), &body.canonical).await
}

/// Refund a consumption.
#[utoipa::path(post, path = "/v1/stores/{id}/quota/refund", tag = "quotas", operation_id = "refund",
    request_body = wire::Refund,
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Refunded", body = wire::Refunded, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        (status = 404, description = "`store_not_found`, `consumption_not_found`", body = wire::ErrorBody),
        (status = 409, description = "`already_refunded`, `refund_window_closed`, `version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        rs::Invalid,
        rs::CommandUnavailable,
    ))]
pub async fn refund(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::Refund>,
) -> Reply {
    let store = store_id(&id)?;
    let meta = meta(&ctx, &format!("/v1/stores/{store}/quota/refund"), &body.canonical);
    answer(&app, app.service.refund(store, body.value.consumption_id, meta).await?)
}

// ---- history ----------------------------------------------------------------------------

pub(crate) fn envelope(e: planledger_store::RecordedEvent) -> wire::EventEnvelope {
    wire::EventEnvelope {
        event_id: e.event_id,
        stream_id: e.stream_id.as_str().to_owned(),
        version: e.version,
        global_position: e.global_position,
        event_type: e.event_type,
        schema_version: e.schema_version,
        data: e.data,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        idempotency_key: e.idempotency_key,
        actor: e.actor,
        catalog_fingerprint: e.catalog_fingerprint,
        recorded_at: e.recorded_at,
    }
}

/// The `cursor` of a list: a non-negative integer (the position after which the page starts).
pub(crate) fn cursor_param(params: &Params) -> Result<i64, ApiError> {
    params.get("cursor").map_or(Ok(0), |c| {
        c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| ApiError::validation("cursor", "is not a cursor"))
    })
}

/// The `status` filter of a listing, parsed by `parse`; `message` says why a value is refused.
pub(crate) fn status_param<T>(
    params: &Params,
    parse: fn(&str) -> Option<T>,
    message: &'static str,
) -> Result<Option<T>, ApiError> {
    params.get("status").map(|s| parse(s).ok_or_else(|| ApiError::validation("status", message))).transpose()
}

/// One page: `limit` items at most, read one further to know whether another page follows.
pub(crate) fn page<T, V>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
    view: impl FnMut(T) -> V,
) -> wire::Page<V> {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more { rows.last().map(cursor_of) } else { None };
    wire::Page { items: rows.into_iter().map(view).collect(), next_cursor }
}

/// The store's raw stream, in version order.
#[utoipa::path(get, path = "/v1/stores/{id}/events", tag = "history", operation_id = "listEvents",
    params(
        rs::StorePath,
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page (a version: the page starts after it)", pattern = "^[0-9]{1,18}$"),
        ("fromVersion" = Option<i64>, Query, description = "The first version of the page (SPEC 11); `cursor` wins if both are given", minimum = 1),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of events", body = wire::Page<wire::EventEnvelope>),
        rs::Unauthorized,
        rs::StoreNotFound,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn events(State(app): State<AppState>, Path(id): Path<String>, params: Params) -> Reply {
    let store = store_id(&id)?;
    let from_version = params.int("fromVersion", 1, 1..=i64::MAX)?;
    let after = if params.get("cursor").is_some() { cursor_param(&params)? } else { from_version - 1 };
    let limit = params.int("limit", 100, 1..=1000)?;
    let log = app.service.reads();
    let stream = StreamId::parse(store.stream_name()).map_err(|_| ApiError::store_not_found())?;
    let events = log.read_stream(&stream, after.saturating_add(1), limit + 1).await?;
    if events.is_empty() && log.stream_version(&stream).await? == 0 {
        return Err(ApiError::store_not_found());
    }
    Ok(Json::ok(&page(events, limit, |e| e.version.to_string(), envelope)).into_response())
}

fn time_param(params: &Params, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|raw| DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)))
        .transpose()
        .map_err(|_| ApiError::validation(name, "must be an RFC 3339 time"))
}

/// The state replayed to a time, a version, or both (whichever comes first).
#[utoipa::path(get, path = "/v1/stores/{id}/state", tag = "history", operation_id = "getStateAt",
    params(
        rs::StorePath,
        ("at" = Option<DateTime<Utc>>, Query, description = "Replay the events recorded until this time; statuses are derived at it"),
        ("version" = Option<i64>, Query, description = "Replay the events up to this version", minimum = 1),
    ),
    responses(
        (status = 200, description = "The store as it was", body = wire::StateAt),
        rs::Unauthorized,
        (status = 404, description = "`store_not_found` (or no event by then)", body = wire::ErrorBody),
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn state_at(State(app): State<AppState>, Path(id): Path<String>, params: Params) -> Reply {
    let store = store_id(&id)?;
    let at = time_param(&params, "at")?;
    let version = params.get("version").map(|_| params.int("version", 0, 1..=i64::MAX)).transpose()?;
    let until = Until { version, time: at };
    let folded =
        fold_stream(app.service.reads(), store, Folded::default(), until, |_, _, _| Ok::<_, ApiError>(())).await?;
    let Some(last_at) = folded.at else {
        return Err(ApiError::store_not_found());
    };
    // Statuses are derived at `at`; at a version, when its event was recorded; else now.
    let as_of = at.or(version.map(|_| last_at)).unwrap_or_else(|| app.service.clock().now());
    let store_view = render::store_view(store, &folded.state, folded.version, as_of, app.service.catalog());
    Ok(Json::ok(&wire::StateAt { store: store_view, as_of }).into_response())
}

// ---- audit ------------------------------------------------------------------------------

fn short_text(params: &Params, name: &'static str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        Some(v) if v.chars().count() > 200 || v.contains('\0') => {
            Err(ApiError::validation(name, "must be at most 200 characters, without NUL"))
        }
        other => Ok(other.map(str::to_owned)),
    }
}

fn store_filter(params: &Params) -> Result<Option<String>, ApiError> {
    params.get("storeId").map(|s| StoreId::parse(s).map(|s| s.to_string())).transpose().map_err(ApiError::from)
}

/// The audit view: one entry per event, in log order.
#[utoipa::path(get, path = "/v1/audit", tag = "history", operation_id = "listAudit",
    params(
        ("storeId" = Option<Uuid>, Query, description = "Only this store"),
        ("type" = Option<String>, Query, description = "Only this event type", max_length = 200, pattern = r"^[^\u0000]*$"),
        ("correlationId" = Option<String>, Query, description = "Only this correlation id", max_length = 200, pattern = r"^[^\u0000]*$"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Recorded at or after"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Recorded before"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^[0-9]{1,18}$"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of the audit view", body = wire::Page<wire::AuditEntry>),
        rs::Unauthorized,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn audit(State(app): State<AppState>, params: Params) -> Reply {
    let limit = params.int("limit", 100, 1..=1000)?;
    let query = planledger_projections::audit::AuditQuery {
        store_id: store_filter(&params)?,
        event_type: short_text(&params, "type")?,
        correlation_id: short_text(&params, "correlationId")?,
        from: time_param(&params, "from")?,
        to: time_param(&params, "to")?,
        after: cursor_param(&params)?,
        limit: limit + 1,
    };
    let rows = planledger_projections::audit::query(app.service.reads(), &query).await?;
    let page = page(
        rows,
        limit,
        |r| r.position.to_string(),
        |r| wire::AuditEntry {
            store_id: r.store_id,
            version: r.version,
            event_type: r.event_type,
            correlation_id: r.correlation_id,
            actor: r.actor,
            recorded_at: r.recorded_at,
            summary: r.summary,
        },
    );
    Ok(Json::ok(&page).into_response())
}

fn command_outcome(outcome: &str) -> wire::CommandOutcome {
    match outcome {
        "accepted" => wire::CommandOutcome::Accepted,
        "refused" => wire::CommandOutcome::Refused,
        "replayed" => wire::CommandOutcome::Replayed,
        "unknown" => wire::CommandOutcome::Unknown,
        _ => wire::CommandOutcome::Failed,
    }
}

/// The command journal: every command, accepted or refused.
#[utoipa::path(get, path = "/v1/audit/commands", tag = "history", operation_id = "listCommands",
    params(
        ("storeId" = Option<Uuid>, Query, description = "Only this store"),
        ("correlationId" = Option<String>, Query, description = "Only this correlation id", max_length = 200, pattern = r"^[^\u0000]*$"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^[0-9]{1,18}$"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of the journal", body = wire::Page<wire::JournalEntry>),
        rs::Unauthorized,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn audit_commands(State(app): State<AppState>, params: Params) -> Reply {
    let store_id = store_filter(&params)?;
    let correlation_id = short_text(&params, "correlationId")?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let rows = planledger_projections::audit::journal(
        app.service.reads(),
        store_id.as_deref(),
        correlation_id.as_deref(),
        cursor_param(&params)?,
        limit + 1,
    )
    .await?;
    let page = page(
        rows,
        limit,
        |r| r.id.to_string(),
        |r| wire::JournalEntry {
            store_id: r.store_id,
            kind: r.kind,
            outcome: command_outcome(&r.outcome),
            error_code: r.error_code,
            correlation_id: r.correlation_id,
            actor: r.actor,
            idempotency_key: r.idempotency_key,
            duration_us: r.duration_us,
            recorded_at: r.recorded_at,
        },
    );
    Ok(Json::ok(&page).into_response())
}

// ---- read models ------------------------------------------------------------------------

fn read_model(name: &str) -> Result<planledger_projections::ReadModel, ApiError> {
    planledger_projections::ReadModel::parse(name).ok_or(ApiError::NotFound)
}

/// Start a blue/green rebuild of a read model (202; 200 if one is running).
#[utoipa::path(post, path = "/v1/admin/projections/{name}/rebuild", tag = "admin", operation_id = "startRebuild",
    params(("name" = wire::ReadModelName, Path, description = "The read model")),
    responses(
        (status = 202, description = "Started", body = wire::RebuildJob),
        (status = 200, description = "A rebuild is running already", body = wire::RebuildJob),
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No such read model", body = wire::ErrorBody),
    ))]
pub async fn start_rebuild(State(app): State<AppState>, Path(name): Path<String>) -> Reply {
    let model = read_model(&name)?;
    let started = app.rebuilds.start(&app.service, model, planledger_projections::rebuild::When::Always);
    let job = app.rebuilds.describe(model).ok_or(ApiError::Internal)?;
    Ok(Json::new(if started { StatusCode::ACCEPTED } else { StatusCode::OK }, &job).into_response())
}

/// The live generation of a read model and its last rebuild.
#[utoipa::path(get, path = "/v1/admin/projections/{name}/rebuild", tag = "admin", operation_id = "getRebuild",
    params(("name" = wire::ReadModelName, Path, description = "The read model")),
    responses(
        (status = 200, description = "The read model", body = wire::ReadModelStatus),
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No such read model", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn rebuild_progress(State(app): State<AppState>, Path(name): Path<String>) -> Reply {
    let model = read_model(&name)?;
    let info = planledger_projections::schema::info(app.service.reads()).await?;
    let live = info.iter().find(|i| i.name == model.name());
    Ok(Json::ok(&wire::ReadModelStatus {
        name: crate::read_model_name(model),
        generation: live.map(|i| i.generation),
        catalog_fingerprint: live.map(|i| i.catalog_fingerprint.clone()),
        stale: live.is_some_and(|i| i.is_stale(app.service.catalog())),
        last_rebuild: app.rebuilds.describe(model),
    })
    .into_response())
}

// ---- admin ------------------------------------------------------------------------------

/// Stores by internal status, in store id order.
#[utoipa::path(get, path = "/v1/admin/stores", tag = "admin", operation_id = "listStores",
    params(
        ("internalStatus" = Option<wire::InternalStatus>, Query, description = "Only stores with this status"),
        ("cursor" = Option<Uuid>, Query, description = "The `nextCursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of stores", body = wire::Page<wire::StoreView>),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn list_stores(State(app): State<AppState>, params: Params) -> Reply {
    let status = params
        .get("internalStatus")
        .map(|s| {
            planledger_domain::InternalStatus::parse(s)
                .ok_or_else(|| ApiError::validation("internalStatus", "is not an internal status"))
        })
        .transpose()?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let cursor = params
        .get("cursor")
        .map(|c| StoreId::parse(c).map_err(|_| ApiError::validation("cursor", "is not a cursor")))
        .transpose()?;
    let filter = planledger_projections::tenant_state::StoreFilter {
        internal_status: status.map(|s| s.as_str().to_owned()),
        ..Default::default()
    };
    let rows = planledger_projections::tenant_state::list(app.service.reads(), &filter, cursor, limit + 1).await?;
    let now = app.service.clock().now();
    let catalog = app.service.catalog();
    let view =
        |r: planledger_projections::TenantStateRow| render::store_view(r.store_id, &r.state, r.version, now, catalog);
    Ok(Json::ok(&page(rows, limit, |r| r.store_id.to_string(), view)).into_response())
}

/// Extend trials, grace periods or maintenance windows in bulk.
#[utoipa::path(post, path = "/v1/admin/stores/extensions", tag = "admin", operation_id = "extendStores",
    request_body = wire::Extensions,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry: each store keeps its first answer", pattern = r"^[!-~]{1,255}$")),
    responses(
        (status = 200, description = "Each store's result", body = wire::ExtensionResults),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Invalid,
    ))]
pub async fn bulk_extensions(State(app): State<AppState>, ctx: Ctx, body: JsonBody<wire::Extensions>) -> Reply {
    let results = extend_each(&app, &ctx, body)
        .await?
        .into_iter()
        .map(|a| wire::ExtensionResult {
            store_id: a.store.as_uuid(),
            status: a.status.as_u16(),
            ok: a.status.is_success(),
            error: a.error.or_else(|| (!a.status.is_success()).then_some(wire::ErrorCode::Internal)),
        })
        .collect();
    Ok(Json::ok(&wire::ExtensionResults { results }).into_response())
}

/// One store's part of a bulk request.
#[derive(Debug)]
pub(crate) struct StoreAnswer {
    pub store: StoreId,
    /// The status this store's command alone would have been answered with.
    pub status: StatusCode,
    pub error: Option<wire::ErrorCode>,
    /// The store had answered the request's key before (its first answer is given again).
    pub replayed: bool,
}

/// Extends each store of a bulk request, concurrently, each under the request's key.
pub(crate) async fn extend_each(
    app: &AppState,
    ctx: &Ctx,
    body: JsonBody<wire::Extensions>,
) -> Result<Vec<StoreAnswer>, ApiError> {
    let b = body.value;
    if b.store_ids.is_empty() || b.store_ids.len() > 1000 {
        return Err(ApiError::validation("storeIds", "must list 1 to 1000 stores"));
    }
    let kind = match b.kind {
        wire::ExtensionKind::Trial => planledger_domain::ExtensionKind::Trial,
        wire::ExtensionKind::Grace => planledger_domain::ExtensionKind::Grace,
        wire::ExtensionKind::Maintenance => planledger_domain::ExtensionKind::Maintenance,
    };
    let days = Days::parse(b.days)?;
    let reason = Reason::parse(&b.reason)?;
    // Each store keeps the first answer to the request's key, so a retried bulk request
    // extends no store twice (and answers as it first did).
    let meta = meta(ctx, "/v1/admin/stores/extensions", &body.canonical);
    // A store listed twice is extended once: its first mention stands for all of them, so a
    // list of a thousand copies of one id is one command, not a thousand queued on one store.
    let mut listed = std::collections::HashSet::with_capacity(b.store_ids.len());
    let stores: Vec<StoreId> = b.store_ids.into_iter().map(StoreId::new).filter(|id| listed.insert(*id)).collect();
    let extend = |store: StoreId| {
        let (service, meta) = (app.service.clone(), meta.clone());
        let command = Command::Extend { kind, days, reason: reason.clone() };
        async move { (store, service.execute(store, command, meta).await) }
    };
    // At most this many stores' commands are in flight at once, in the order listed.
    let outcomes: Vec<_> = futures_util::stream::iter(stores).map(extend).buffered(64).collect().await;
    let mut answers = Vec::with_capacity(outcomes.len());
    for (store, outcome) in outcomes {
        let (status, error, replayed) = match outcome.map_err(ApiError::from) {
            // A replay answers as the store first did: a refusal with its first code.
            Ok(Answer::Replayed(first)) => {
                let code = serde_json::from_str::<wire::ErrorBody>(&first.body).ok().map(|body| body.error);
                (StatusCode::from_u16(first.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code, true)
            }
            Ok(decided) => match answer(app, decided) {
                Ok(response) => (response.status(), None, false),
                Err(e) => (e.status(), Some(e.code()), false),
            },
            Err(e) => (e.status(), Some(e.code()), false),
        };
        answers.push(StoreAnswer { store, status, error, replayed });
    }
    Ok(answers)
}

// ---- test clock -------------------------------------------------------------------------

fn test_clock(app: &AppState) -> Result<&planledger_service::TestClock, ApiError> {
    app.service.clock().as_test_clock().ok_or(ApiError::NotFound)
}

fn clock_reading(now: DateTime<Utc>) -> Response {
    Json::ok(&wire::ClockReading { now }).into_response()
}

/// The test clock (`PLANLEDGER_TEST_CLOCK=1` only; 404 otherwise).
#[utoipa::path(get, path = "/v1/test-clock", tag = "test clock", operation_id = "getTestClock",
    responses(
        (status = 200, description = "The clock", body = wire::ClockReading),
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No test clock", body = wire::ErrorBody),
    ))]
pub async fn get_test_clock(State(app): State<AppState>) -> Reply {
    let clock = test_clock(&app)?;
    Ok(clock_reading(planledger_service::Clock::now(clock)))
}

/// Set the test clock, then sweep deadlines.
#[utoipa::path(put, path = "/v1/test-clock", tag = "test clock", operation_id = "setTestClock",
    request_body = wire::SetClock,
    responses(
        (status = 200, description = "The clock", body = wire::ClockReading),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No test clock", body = wire::ErrorBody),
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn set_test_clock(State(app): State<AppState>, body: JsonBody<wire::SetClock>) -> Reply {
    let clock = test_clock(&app)?;
    clock.set(body.value.now);
    app.service.sweep().await?;
    Ok(clock_reading(planledger_service::Clock::now(clock)))
}

/// Advance the test clock, then sweep deadlines.
#[utoipa::path(post, path = "/v1/test-clock/advance", tag = "test clock", operation_id = "advanceTestClock",
    request_body = wire::AdvanceClock,
    responses(
        (status = 200, description = "The clock", body = wire::ClockReading),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No test clock", body = wire::ErrorBody),
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn advance_test_clock(State(app): State<AppState>, body: JsonBody<wire::AdvanceClock>) -> Reply {
    let clock = test_clock(&app)?;
    let seconds = body.value.seconds;
    if !(0..=wire::MAX_ADVANCE_SECONDS).contains(&seconds) {
        return Err(ApiError::validation("seconds", "must be from 0 to ten years"));
    }
    let now = clock.advance(TimeDelta::seconds(seconds));
    // Deadlines that passed are appended before the answer, as the deadline worker would.
    app.service.sweep().await?;
    Ok(clock_reading(now))
}

// ---- Stripe ------------------------------------------------------------------------------

/// A Stripe webhook delivery. Its raw body is checked against `Stripe-Signature` before it is
/// read (HMAC-SHA256 of `"{t}.{body}"` with the endpoint's signing secret; two secrets during a
/// rotation; `t` within the tolerance, 300 s by default), then its event is stored once and
/// applied in the background: the answer does not wait for the ledger. A redelivery answers
/// 200 and changes nothing. No bearer token: the signature is the credential.
#[utoipa::path(post, path = "/v1/webhooks/stripe", tag = "stripe", operation_id = "receiveStripeEvent",
    request_body(content = Object, description = "A Stripe event, byte for byte as Stripe sent it", content_type = "application/json"),
    params(("Stripe-Signature" = Option<String>, Header, description = "`t=<Unix time>,v1=<hex HMAC-SHA256>`, as Stripe signs")),
    responses(
        (status = 200, description = "Stored (once): it will be applied", body = wire::StripeReceipt),
        (status = 400, description = "`invalid_signature`: no configured secret signed this body within the tolerance; or `not_a_stripe_event`. Nothing is stored", body = wire::ErrorBody),
        (status = 404, description = "`stripe_not_configured`: no signing secret is configured", body = wire::ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 1 MiB", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn stripe_webhook(State(app): State<AppState>, request: axum::extract::Request) -> Reply {
    // Anyone may call this route: the header is checked first, so a forged or replayed one
    // costs neither reading the body nor an HMAC over it.
    let signature = request.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    let signed = app.stripe.check_header(signature)?;
    let body = axum::body::Bytes::from_request(request, &app).await.map_err(crate::edge::body_rejection)?;
    let receipt = app.stripe.receive_signed(&signed, &body).await?;
    Ok(Json::ok(&wire::StripeReceipt { received: true, event_id: receipt.event_id, duplicate: receipt.duplicate })
        .into_response())
}

fn stripe_event_view(event: planledger_stripe::inbox::InboxEvent) -> wire::StripeEventView {
    use planledger_stripe::inbox::InboxStatus;
    wire::StripeEventView {
        event_id: event.event_id,
        event_type: event.event_type,
        created: event.created,
        livemode: event.livemode,
        status: match event.status {
            InboxStatus::Received => wire::StripeEventStatus::Received,
            InboxStatus::Applied => wire::StripeEventStatus::Applied,
            InboxStatus::Ignored => wire::StripeEventStatus::Ignored,
            InboxStatus::Stale => wire::StripeEventStatus::Stale,
            InboxStatus::Parked => wire::StripeEventStatus::Parked,
            InboxStatus::Failed => wire::StripeEventStatus::Failed,
        },
        detail: event.detail,
        store_id: event.store_id,
        subscription_id: event.subscription_id,
        attempts: event.attempts,
        deliveries: event.deliveries,
        received_at: event.received_at,
        applied_at: event.applied_at,
        next_attempt_at: event.next_attempt_at.filter(|_| event.status == InboxStatus::Failed),
    }
}

/// Received Stripe events, in the order they arrived, with what became of each.
#[utoipa::path(get, path = "/v1/admin/webhooks/stripe", tag = "stripe", operation_id = "listStripeEvents",
    params(
        ("status" = Option<wire::StripeEventStatus>, Query, description = "Only events with this status"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^[0-9]{1,18}$"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of events", body = wire::Page<wire::StripeEventView>),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn list_stripe_events(State(app): State<AppState>, params: Params) -> Reply {
    use planledger_stripe::inbox::InboxStatus;
    let status = status_param(&params, InboxStatus::parse, "is not a Stripe event status")?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let events = app.stripe.list(status, cursor_param(&params)?, limit + 1).await?;
    Ok(Json::ok(&page(events, limit, |e| e.seq.to_string(), stripe_event_view)).into_response())
}

/// Applies a parked (or failed) Stripe event again, after the cause was fixed (a price added to
/// the catalog's `[stripe] prices`, the store registered).
#[utoipa::path(post, path = "/v1/admin/webhooks/stripe/{id}/retry", tag = "stripe", operation_id = "retryStripeEvent",
    params(("id" = String, Path, description = "Stripe's event id (`evt_...`)")),
    responses(
        (status = 200, description = "Put back to be applied shortly", body = wire::StripeEventView),
        (status = 404, description = "`not_found`: no such event was received", body = wire::ErrorBody),
        (status = 409, description = "`not_retryable`: the event is not parked or failed", body = wire::ErrorBody),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Unavailable,
    ))]
pub async fn retry_stripe_event(State(app): State<AppState>, Path(id): Path<String>) -> Reply {
    match app.stripe.retry(&id).await? {
        planledger_stripe::Retry::Requeued(event) => Ok(Json::ok(&stripe_event_view(event)).into_response()),
        planledger_stripe::Retry::NotRetryable(event) => Err(ApiError::NotRetryable(format!(
            "event {} is {}, not parked or failed: there is nothing to retry",
            event.event_id,
            event.status.as_str()
        ))),
        planledger_stripe::Retry::NotFound => Err(ApiError::NotFound),
    }
}

// ---- operations -------------------------------------------------------------------------

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
struct Fresh<T>(tokio::sync::Mutex<Option<(std::time::Instant, T)>>);

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
async fn readiness(app: &AppState) -> (bool, Json) {
    use serde_json::{json, Map};
    let log = app.service.log();
    let mut checks = Map::new();
    let mut ready = match log.pending_migrations().await {
        Ok(0) => {
            checks.insert("database".into(), json!("ok"));
            checks.insert("migrations".into(), json!("applied"));
            true
        }
        Ok(pending) => {
            checks.insert("database".into(), json!("ok"));
            checks.insert("migrations".into(), json!(format!("{pending} pending")));
            false
        }
        Err(_) => {
            checks.insert("database".into(), json!("unreachable"));
            false
        }
    };
    if ready {
        // Read models built under another catalog are served while they are rebuilt: say so.
        if let Ok(info) = planledger_projections::schema::info(log).await {
            let stale: Vec<&str> =
                info.iter().filter(|i| i.is_stale(app.service.catalog())).map(|i| i.name.as_str()).collect();
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
    let catalog = app.service.catalog();
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
