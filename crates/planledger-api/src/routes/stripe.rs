//! The handlers of Stripe.

use super::*;

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

pub(crate) fn stripe_event_view(event: planledger_stripe::inbox::InboxEvent) -> wire::StripeEventView {
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
