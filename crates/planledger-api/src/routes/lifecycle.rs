//! The handlers of lifecycle.

use super::*;

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

pub(crate) async fn paid_lifecycle(
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

/// Transition the store to another plan, now or at a later time (`at`).
#[utoipa::path(post, path = "/v1/stores/{id}/plan-transitions", tag = "lifecycle", operation_id = "transitionPlan",
    request_body = wire::TransitionPlan,
    params(rs::StorePath, rs::CommandHeaders),
    responses(
        (status = 200, description = "Transitioned", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 202, description = "Scheduled for `at` (replacing the pending change, if any: `replaced`)", body = wire::ScheduledTransitionAnswer, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        rs::StoreNotFound,
        (status = 409, description = "`plan_mismatch` (with `currentPlanId`), `version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed` (an `at` that is not a time later than now, nor `period_end`), `unknown_plan`, `invalid_transition`, `internal_tier`, `subscription_required`", body = wire::ErrorBody),
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
    let change = TransitionPlan {
        from_plan_id: PlanId::parse(&b.from_plan_id).map_err(|e| ApiError::validation("fromPlanId", e.rule))?,
        to_plan_id: PlanId::parse(&b.to_plan_id).map_err(|e| ApiError::validation("toPlanId", e.rule))?,
        reason: transition_reason(b.reason),
        subscription_id: optional(b.subscription_id, SubscriptionId::parse)?,
        metadata: b.metadata.map(serde_json::Value::Object),
        by_admin: ctx.principal.is_admin(),
    };
    let command = match b.at.as_deref() {
        None => Command::TransitionPlan(change),
        Some(at) => Command::SchedulePlanTransition(Box::new(SchedulePlanTransition {
            schedule_id: Uuid::now_v7(),
            change,
            at: schedule_at(at)?,
            correlation_id: ctx.correlation_id.clone(),
        })),
    };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/plan-transitions"), &body.canonical).await
}

/// `period_end`, or a time.
fn schedule_at(text: &str) -> Result<ScheduleAt, ApiError> {
    if text == wire::PERIOD_END {
        return Ok(ScheduleAt::PeriodEnd);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|at| ScheduleAt::Time(at.with_timezone(&Utc)))
        .map_err(|_| ApiError::validation("at", "must be an RFC 3339 time or period_end"))
}

/// Cancel a scheduled plan change before its time.
#[utoipa::path(delete, path = "/v1/stores/{id}/plan-transitions/{scheduleId}", tag = "lifecycle", operation_id = "cancelScheduledTransition",
    params(rs::StorePath, ("scheduleId" = Uuid, Path, description = "The pending change's `scheduleId`."), rs::CommandHeaders),
    responses(
        (status = 200, description = "Canceled: the store, with no pending change", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        rs::Unauthorized,
        rs::ServiceOnly,
        (status = 404, description = "`store_not_found`, `schedule_not_found` (no pending change with this id: it was applied, refused when due, canceled or replaced)", body = wire::ErrorBody),
        (status = 409, description = "`version_mismatch`, `idempotency_key_reused`", body = wire::ErrorBody),
        rs::Invalid,
        rs::CommandUnavailable,
    ))]
pub async fn cancel_scheduled_transition(
    State(app): State<AppState>,
    ctx: Ctx,
    Path((id, schedule)): Path<(String, String)>,
) -> Reply {
    let store = store_id(&id)?;
    // A string that is not a UUID names no schedule.
    let schedule_id =
        Uuid::parse_str(&schedule).map_err(|_| ApiError::refused(planledger_domain::DomainError::ScheduleNotFound))?;
    let command = Command::CancelScheduledTransition { schedule_id };
    run(&app, &ctx, store, command, &format!("/v1/stores/{store}/plan-transitions/{schedule_id}"), "").await
}

pub(crate) fn transition_reason(reason: wire::TransitionReason) -> planledger_domain::TransitionReason {
    use planledger_domain::TransitionReason as R;
    match reason {
        wire::TransitionReason::Upgrade => R::Upgrade,
        wire::TransitionReason::Downgrade => R::Downgrade,
        wire::TransitionReason::Admin => R::Admin,
        wire::TransitionReason::Migration => R::Migration,
    }
}
