//! Notifications out (webhook endpoints, their deliveries) and the event feed. The handlers
//! parse input and hand it to `planledger-notify`; rendering follows `render`'s conventions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use planledger_notify::notice::Kind;
use planledger_notify::outbox::{Attempt, Delivery, DeliveryStatus, Endpoint, EndpointChange};
use planledger_notify::{feed, NewEndpoint, Retry};
use planledger_store::Checkpoint;
use planledger_wire as wire;

use crate::edge::{JsonBody, Params};
use crate::error::ApiError;
use crate::render::Json;
use crate::responses as rs;
use crate::AppState;

type Reply = Result<Response, ApiError>;

fn kind(kind: wire::NotificationKind) -> Kind {
    use wire::NotificationKind as W;
    match kind {
        W::TrialEndingSoon => Kind::TrialEndingSoon,
        W::TrialExpired => Kind::TrialExpired,
        W::GraceEndingSoon => Kind::GraceEndingSoon,
        W::StoreDowngradedToMaintenance => Kind::StoreDowngradedToMaintenance,
        W::StoreFreezeWarning => Kind::StoreFreezeWarning,
        W::StoreFrozen => Kind::StoreFrozen,
        W::SubscriptionChanged => Kind::SubscriptionChanged,
        W::PlanTransitioned => Kind::PlanTransitioned,
        W::QuotaThreshold => Kind::QuotaThreshold,
        W::GrantExpiringSoon => Kind::GrantExpiringSoon,
        W::LedgerEvent => Kind::LedgerEvent,
    }
}

fn wire_kind(kind: Kind) -> wire::NotificationKind {
    use wire::NotificationKind as W;
    match kind {
        Kind::TrialEndingSoon => W::TrialEndingSoon,
        Kind::TrialExpired => W::TrialExpired,
        Kind::GraceEndingSoon => W::GraceEndingSoon,
        Kind::StoreDowngradedToMaintenance => W::StoreDowngradedToMaintenance,
        Kind::StoreFreezeWarning => W::StoreFreezeWarning,
        Kind::StoreFrozen => W::StoreFrozen,
        Kind::SubscriptionChanged => W::SubscriptionChanged,
        Kind::PlanTransitioned => W::PlanTransitioned,
        Kind::QuotaThreshold => W::QuotaThreshold,
        Kind::GrantExpiringSoon => W::GrantExpiringSoon,
        Kind::LedgerEvent => W::LedgerEvent,
    }
}

fn kinds(given: &[wire::NotificationKind]) -> Result<Vec<Kind>, ApiError> {
    if given.len() > Kind::ALL.len() {
        return Err(ApiError::validation("kinds", format!("must name at most {} kinds", Kind::ALL.len())));
    }
    let mut kinds: Vec<Kind> = given.iter().copied().map(kind).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        return Err(ApiError::validation("kinds", "must name at least one notification kind"));
    }
    Ok(kinds)
}

fn url(text: &str) -> Result<String, ApiError> {
    planledger_notify::checked_url(text).map_err(|why| ApiError::validation("url", why))
}

/// A URL the outbound address policy refuses is a field at fault.
fn endpoint_error(error: planledger_notify::EndpointError) -> ApiError {
    match error {
        planledger_notify::EndpointError::Refused(refused) => ApiError::validation("url", refused.to_string()),
        planledger_notify::EndpointError::Store(error) => error.into(),
    }
}

fn event_types(types: &[String]) -> Result<Option<Vec<String>>, ApiError> {
    if types.len() > 32 {
        return Err(ApiError::validation("eventTypes", "must name at most 32 event types"));
    }
    planledger_notify::checked_event_types(types).map_err(|why| ApiError::validation("eventTypes", why))
}

fn description(text: String) -> Result<Option<String>, ApiError> {
    if text.chars().count() > 500 || text.contains('\0') {
        return Err(ApiError::validation("description", "must be at most 500 characters, without NUL"));
    }
    Ok((!text.trim().is_empty()).then_some(text))
}

fn endpoint_view(e: &Endpoint) -> wire::WebhookEndpoint {
    wire::WebhookEndpoint {
        id: e.id.clone(),
        url: e.url.clone(),
        description: e.description.clone(),
        kinds: e.kinds.iter().copied().map(wire_kind).collect(),
        event_types: e.event_types.clone(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.clone(),
        failing_since: e.failing_since,
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

fn delivery_view(d: Delivery) -> wire::WebhookDelivery {
    wire::WebhookDelivery {
        status: match d.status {
            DeliveryStatus::Pending => wire::WebhookDeliveryStatus::Pending,
            DeliveryStatus::Delivered => wire::WebhookDeliveryStatus::Delivered,
            DeliveryStatus::Skipped => wire::WebhookDeliveryStatus::Skipped,
            DeliveryStatus::Failed => wire::WebhookDeliveryStatus::Failed,
        },
        next_attempt_at: (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at),
        payload: serde_json::from_str(&d.body).unwrap_or(serde_json::Value::Null),
        id: d.id,
        endpoint_id: d.endpoint_id,
        notification_id: d.notification_id,
        kind: wire_kind(d.kind),
        store_id: d.store_id,
        due_at: d.due_at,
        attempts: d.attempts,
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        settled_at: d.settled_at,
    }
}

fn attempt_view(a: Attempt) -> wire::WebhookAttempt {
    wire::WebhookAttempt {
        attempt: a.attempt,
        at: a.at,
        status_code: a.status_code,
        latency_ms: a.latency_ms,
        error: a.error,
    }
}

/// Register a webhook endpoint. The answer carries its signing secret, shown this once.
#[utoipa::path(post, path = "/v1/admin/webhooks/endpoints", tag = "notifications", operation_id = "createWebhookEndpoint",
    request_body = wire::CreateWebhookEndpoint,
    responses(
        (status = 201, description = "Registered and enabled", body = wire::CreatedWebhookEndpoint),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 422, description = "A field is invalid", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn create_endpoint(State(app): State<AppState>, body: JsonBody<wire::CreateWebhookEndpoint>) -> Reply {
    let b = body.value;
    let new = NewEndpoint {
        url: url(&b.url)?,
        description: description(b.description.unwrap_or_default())?,
        kinds: kinds(&b.kinds)?,
        event_types: event_types(&b.event_types.unwrap_or_default())?,
    };
    let endpoint = app.notifier.create_endpoint(new).await.map_err(endpoint_error)?;
    let created = wire::CreatedWebhookEndpoint { endpoint: endpoint_view(&endpoint), secret: endpoint.secret };
    Ok(Json::new(StatusCode::CREATED, &created).into_response())
}

/// The registered endpoints (without their secrets).
#[utoipa::path(get, path = "/v1/admin/webhooks/endpoints", tag = "notifications", operation_id = "listWebhookEndpoints",
    responses(
        (status = 200, description = "Every endpoint, in the order registered", body = wire::WebhookEndpoints),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Unavailable,
    ))]
pub async fn list_endpoints(State(app): State<AppState>) -> Reply {
    let items = app.notifier.endpoints().await?.iter().map(endpoint_view).collect();
    Ok(Json::ok(&wire::WebhookEndpoints { items }).into_response())
}

async fn endpoint(app: &AppState, id: &str) -> Result<Endpoint, ApiError> {
    app.notifier.endpoint(id).await?.ok_or(ApiError::NotFound)
}

/// One endpoint (without its secret).
#[utoipa::path(get, path = "/v1/admin/webhooks/endpoints/{id}", tag = "notifications", operation_id = "getWebhookEndpoint",
    params(("id" = String, Path, description = "The endpoint's id (`ep_...`)")),
    responses(
        (status = 200, description = "The endpoint", body = wire::WebhookEndpoint),
        (status = 404, description = "`not_found`: no such endpoint", body = wire::ErrorBody),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Unavailable,
    ))]
pub async fn get_endpoint(State(app): State<AppState>, Path(id): Path<String>) -> Reply {
    Ok(Json::ok(&endpoint_view(&endpoint(&app, &id).await?)).into_response())
}

/// Change an endpoint: its URL, kinds, event types, description, or whether it is enabled.
#[utoipa::path(patch, path = "/v1/admin/webhooks/endpoints/{id}", tag = "notifications", operation_id = "updateWebhookEndpoint",
    request_body = wire::UpdateWebhookEndpoint,
    params(("id" = String, Path, description = "The endpoint's id (`ep_...`)")),
    responses(
        (status = 200, description = "The endpoint as it now is", body = wire::WebhookEndpoint),
        (status = 404, description = "`not_found`: no such endpoint", body = wire::ErrorBody),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 422, description = "A field is invalid", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn update_endpoint(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: JsonBody<wire::UpdateWebhookEndpoint>,
) -> Reply {
    let b = body.value;
    let change = EndpointChange {
        url: b.url.as_deref().map(url).transpose()?,
        description: b.description.map(description).transpose()?,
        kinds: b.kinds.as_deref().map(kinds).transpose()?,
        event_types: b.event_types.as_deref().map(event_types).transpose()?,
        enabled: b.enabled,
    };
    let updated =
        app.notifier.update_endpoint(&id, &change).await.map_err(endpoint_error)?.ok_or(ApiError::NotFound)?;
    Ok(Json::ok(&endpoint_view(&updated)).into_response())
}

/// An endpoint's deliveries, in the order they were written, with what became of each.
#[utoipa::path(get, path = "/v1/admin/webhooks/endpoints/{id}/deliveries", tag = "notifications", operation_id = "listWebhookDeliveries",
    params(
        ("id" = String, Path, description = "The endpoint's id (`ep_...`)"),
        ("status" = Option<wire::WebhookDeliveryStatus>, Query, description = "Only deliveries with this status"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page", pattern = "^[0-9]{1,18}$"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of deliveries", body = wire::Page<wire::WebhookDelivery>),
        (status = 404, description = "`not_found`: no such endpoint", body = wire::ErrorBody),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn list_deliveries(State(app): State<AppState>, Path(id): Path<String>, params: Params) -> Reply {
    let status = crate::routes::status_param(&params, DeliveryStatus::parse, "is not a delivery status")?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let after = crate::routes::cursor_param(&params)?;
    let endpoint = endpoint(&app, &id).await?;
    let deliveries = app.notifier.deliveries(&endpoint.id, status, after, limit + 1).await?;
    Ok(Json::ok(&crate::routes::page(deliveries, limit, |d| d.seq.to_string(), delivery_view)).into_response())
}

/// One delivery with every attempt made (when, the status code, how long it took, the error).
#[utoipa::path(get, path = "/v1/admin/webhooks/deliveries/{id}", tag = "notifications", operation_id = "getWebhookDelivery",
    params(("id" = String, Path, description = "The delivery's id (`dlv_...`)")),
    responses(
        (status = 200, description = "The delivery and its attempts", body = wire::WebhookDeliveryDetail),
        (status = 404, description = "`not_found`: no such delivery", body = wire::ErrorBody),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Unavailable,
    ))]
pub async fn get_delivery(State(app): State<AppState>, Path(id): Path<String>) -> Reply {
    let (delivery, attempts) = app.notifier.delivery(&id).await?.ok_or(ApiError::NotFound)?;
    let detail = wire::WebhookDeliveryDetail {
        delivery: delivery_view(delivery),
        attempt_log: attempts.into_iter().map(attempt_view).collect(),
    };
    Ok(Json::ok(&detail).into_response())
}

/// Attempt a failed (or skipped) delivery again, with a fresh retry period.
#[utoipa::path(post, path = "/v1/admin/webhooks/deliveries/{id}/retry", tag = "notifications", operation_id = "retryWebhookDelivery",
    params(("id" = String, Path, description = "The delivery's id (`dlv_...`)")),
    responses(
        (status = 200, description = "Pending again: attempted shortly", body = wire::WebhookDelivery),
        (status = 404, description = "`not_found`: no such delivery", body = wire::ErrorBody),
        (status = 409, description = "`not_retryable`: the delivery is pending or delivered", body = wire::ErrorBody),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Unavailable,
    ))]
pub async fn retry_delivery(State(app): State<AppState>, Path(id): Path<String>) -> Reply {
    match app.notifier.retry(&id).await? {
        Retry::Requeued(delivery) => Ok(Json::ok(&delivery_view(delivery)).into_response()),
        Retry::NotRetryable(delivery) => Err(ApiError::NotRetryable(format!(
            "delivery {} is {}, not failed or skipped: there is nothing to retry",
            delivery.id,
            delivery.status.as_str()
        ))),
        Retry::NotFound => Err(ApiError::NotFound),
    }
}

/// `wait`: seconds, with or without an `s` (`30s`, `30`), up to 60, without leading zeros.
fn wait_param(params: &Params) -> Result<std::time::Duration, ApiError> {
    let Some(raw) = params.get("wait") else {
        return Ok(std::time::Duration::ZERO);
    };
    let digits = raw.strip_suffix('s').unwrap_or(raw);
    let canonical =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    canonical
        .then(|| digits.parse::<u64>().ok())
        .flatten()
        .filter(|s| *s <= feed::MAX_WAIT.as_secs())
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| ApiError::validation("wait", "must be a number of seconds from 0 to 60 (`30s` or `30`)"))
}

/// The whole log, in the order projectors read it, to follow from a cursor: build your own
/// projection from it. A transaction that commits late is never skipped; `nextCursor` is the
/// same on every node. With `wait`, an answer with no new event waits (long poll) until one
/// commits or the wait is over; a server holds a bounded number of waiting polls (503
/// `too_many_long_polls` beyond it) and answers them at once when it shuts down.
#[utoipa::path(get, path = "/v1/events", tag = "history", operation_id = "followEvents",
    params(
        ("after" = Option<String>, Query, description = "The `nextCursor` of the previous answer; absent or `0-0`: from the start", pattern = "^[0-9]{1,18}-[0-9]{1,18}$"),
        ("types" = Option<String>, Query, description = "Comma-separated event types (`QuotaConsumed,StoreFrozen`); absent: every type"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
        ("wait" = Option<String>, Query, description = "Wait up to this long for a first event: `30s` (at most 60)", pattern = "^([0-9]|[1-5][0-9]|60)s?$"),
    ),
    responses(
        (status = 200, description = "Events after the cursor (none if the wait ran out)", body = wire::EventFeed),
        rs::Unauthorized,
        rs::Invalid,
        (status = 409, description = "`cursor_not_in_log`: the log holds no event at `after` (it moved back in a database failover, or the cursor is from another log); `head` is where it ends now", body = wire::ErrorBody),
        (status = 503, description = "`too_many_long_polls`: as many polls wait as the server holds (retry after `Retry-After`); `storage_unavailable`", body = wire::ErrorBody, headers(("Retry-After" = u32))),
    ))]
pub async fn follow_events(State(app): State<AppState>, params: Params) -> Reply {
    let after = match params.get("after") {
        None => Checkpoint::ORIGIN,
        Some(raw) => feed::parse_cursor(raw).ok_or_else(|| {
            ApiError::validation("after", "is not a cursor: the `nextCursor` of an earlier answer, or `0-0`")
        })?,
    };
    let types = match params.get("types") {
        None => None,
        Some(raw) => {
            // Exactly as the contract's pattern says: names separated by commas, nothing else.
            let list: Vec<String> = raw.split(',').map(str::to_owned).collect();
            planledger_notify::checked_event_types(&list).map_err(|why| ApiError::validation("types", why))?
        }
    };
    let limit = params.int("limit", 100, 1..=1000)?;
    let wait = wait_param(&params)?;
    let page = app.feed.read(after, types.as_deref(), limit as usize, wait).await.map_err(|error| match error {
        feed::FeedError::TooManyWaiting => ApiError::TooManyLongPolls,
        feed::FeedError::CursorNotInLog { head } => ApiError::CursorNotInLog { head: feed::cursor_text(head) },
        feed::FeedError::Store(error) => error.into(),
    })?;
    let items = page.events.into_iter().map(crate::routes::envelope).collect();
    Ok(Json::ok(&wire::EventFeed { items, next_cursor: feed::cursor_text(page.next) }).into_response())
}
