//! The handlers of gates and quotas.

use super::*;

/// Check the access gate for an action, or whether the store's plan lists a feature (nothing is
/// recorded).
#[utoipa::path(post, path = "/v1/stores/{id}/authorize", tag = "quotas", operation_id = "authorize",
    request_body = wire::Authorize,
    params(rs::StorePath),
    responses(
        (status = 200, description = "Allowed, with warnings", body = wire::Authorized),
        rs::BadBody,
        rs::Unauthorized,
        (status = 402, description = "`no_subscription`", body = wire::ErrorBody),
        (status = 403, description = "`maintenance_no_growth`, `account_frozen`, `subscription_canceled`; `feature_not_in_plan` (with `feature`): the action requires a feature the store's plan does not list; or the token's role may not do this", body = wire::ErrorBody),
        rs::StoreNotFound,
        (status = 422, description = "`validation_failed` (neither or both of `action` and `feature`), `unknown_action`, `unknown_feature`", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn authorize(State(app): State<AppState>, Path(id): Path<String>, body: JsonBody<wire::Authorize>) -> Reply {
    let store = store_id(&id)?;
    enum Asked {
        Action(ActionName),
        Feature(String),
    }
    let asked = match (&body.value.action, &body.value.feature) {
        (Some(action), None) => Asked::Action(ActionName::parse(action)?),
        (None, Some(feature)) => Asked::Feature(feature.clone()),
        _ => return Err(ApiError::validation("action", "give one of `action` or `feature`")),
    };
    let (state, _) = app.service.load_row(store).await?.ok_or_else(ApiError::store_not_found)?;
    let now = app.service.clock().now();
    let catalogs = app.service.catalogs();
    let catalog = catalogs.shown_for(&state, now).catalog.as_ref();
    let decision = match asked {
        Asked::Action(action) => gate(&state, now, catalog, &action),
        Asked::Feature(feature) => planledger_domain::gate_feature(&state, now, catalog, &feature),
    }
    .map_err(ApiError::refused)?;
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

/// Grant allowance on top of the plan's, for one action.
#[utoipa::path(post, path = "/v1/stores/{id}/grants", tag = "quotas", operation_id = "addGrant",
    request_body = wire::AddGrant,
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 201, description = "Granted: used after the plan's allowance in the window, earliest expiry first", body = wire::GrantAnswer, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        rs::StoreNotFound,
        (status = 409, description = "`version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed` (an `expiresAt` that is not later than now), `unknown_action`", body = wire::ErrorBody),
        rs::CommandUnavailable,
    ))]
pub async fn add_grant(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: JsonBody<wire::AddGrant>,
) -> Reply {
    let store = store_id(&id)?;
    let b = &body.value;
    let command = Command::AddGrant {
        grant_id: Uuid::now_v7(),
        action: ActionName::parse(&b.action)?,
        amount: Amount::parse(b.amount)?,
        expires_at: b.expires_at,
        reason: Reason::parse(&b.reason)?,
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/grants"), &body.canonical).await
}

/// Void a grant: what is left of it can no longer be used.
#[utoipa::path(post, path = "/v1/stores/{id}/grants/{grantId}/void", tag = "quotas", operation_id = "voidGrant",
    request_body = wire::VoidGrant,
    params(rs::StorePath, ("grantId" = Uuid, Path, description = "The grant's `grantId`."), rs::CommandHeaders),
    responses(
        (status = 200, description = "Voided: the store, without the grant", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        (status = 404, description = "`store_not_found`, `grant_not_found` (none with this id, or voided already)", body = wire::ErrorBody),
        (status = 409, description = "`version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        rs::Invalid,
        rs::CommandUnavailable,
    ))]
pub async fn void_grant(
    State(app): State<AppState>,
    ctx: Ctx,
    Path((id, grant)): Path<(String, String)>,
    body: JsonBody<wire::VoidGrant>,
) -> Reply {
    let store = store_id(&id)?;
    // A string that is not a UUID names no grant.
    let grant_id =
        Uuid::parse_str(&grant).map_err(|_| ApiError::refused(planledger_domain::DomainError::GrantNotFound))?;
    let command = Command::VoidGrant { grant_id, reason: Reason::parse(&body.value.reason)? };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/grants/{grant_id}/void"), &body.canonical).await
}
