//! What clients see: the store view and the answer to each command, as JSON (camelCase).
//!
//! Answers are built here, beside the command path, so that the first answer to a request
//! with an `Idempotency-Key` can be stored in the same transaction as its events and replayed.

use chrono::{DateTime, Utc};
use planledger_domain::{
    effective_state, gate, status, Catalog, Command, DomainError, Event, GateDecision, InternalStatus, StoreId,
    TenantState, UPGRADE_URL,
};
use serde_json::{json, Map, Value};

/// A command's answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

fn rfc3339(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
}

/// The tenant state at `now` (SPEC 11 `GET /v1/stores/{id}`), derived: due transitions that no
/// worker has appended yet are already reflected.
pub fn store_view(store: StoreId, state: &TenantState, version: i64, now: DateTime<Utc>, catalog: &Catalog) -> Value {
    let effective = effective_state(state, now, catalog);
    let status = status(&effective, now, catalog);
    let plan = effective.plan_id.as_ref().and_then(|id| catalog.plan(id));
    let usage = planledger_projections::tenant_state::usage_of(&effective, now, catalog);
    let warnings: Vec<&str> = match status.internal_status {
        InternalStatus::Grace => vec![gate::WARNING_GRACE],
        InternalStatus::PastDue => vec![gate::WARNING_PAST_DUE],
        _ => vec![],
    };
    json!({
        "storeId": store,
        "name": effective.name.as_ref().map(|n| n.as_str()),
        "timeZone": effective.time_zone.name(),
        "planId": effective.plan_id,
        "tier": status.tier,
        "subscriptionStatus": status.subscription_status.as_str(),
        "internalStatus": status.internal_status.as_str(),
        "trialEndsAt": rfc3339(effective.trial_ends_at),
        "graceEndsAt": rfc3339(effective.grace_ends_at),
        "maintenanceEndsAt": rfc3339(effective.maintenance_ends_at),
        "nextDeadline": rfc3339(effective.next_deadline()),
        "subscriptionId": effective.subscription_id.as_ref().map(|s| s.as_str()),
        "trialUsed": effective.trial_used,
        "features": plan.map(|p| p.features.clone()).unwrap_or_default(),
        "version": version,
        "warnings": warnings,
        "usage": usage,
    })
}

/// The body of a refusal: code, message, correlation id, and the fields of the rule.
pub fn error_body(error: &DomainError, correlation_id: &str) -> Value {
    let mut body = Map::new();
    body.insert("error".into(), json!(error.code()));
    body.insert("message".into(), json!(error.to_string()));
    match error {
        DomainError::Gate(refusal) => {
            body.insert("subscriptionStatus".into(), json!(refusal.subscription_status.as_str()));
            body.insert("subscriptionTier".into(), json!(refusal.subscription_tier));
            body.insert("internalStatus".into(), json!(refusal.internal_status.as_str()));
            body.insert("upgradeUrl".into(), json!(UPGRADE_URL));
        }
        DomainError::QuotaExceeded { limit, used, resets_at } => {
            body.insert("limit".into(), json!(limit));
            body.insert("used".into(), json!(used));
            body.insert("resetsAt".into(), rfc3339(*resets_at));
        }
        DomainError::PlanMismatch { current, .. } => {
            body.insert("currentPlanId".into(), json!(current));
        }
        DomainError::Validation(invalid) => {
            body.insert("field".into(), json!(invalid.field));
        }
        _ => {}
    }
    body.insert("correlationId".into(), json!(correlation_id));
    Value::Object(body)
}

/// An error answer with any code (for the service's own refusals).
pub fn plain_error(status: u16, code: &str, message: &str, correlation_id: &str) -> Answer {
    Answer { status, body: json!({ "error": code, "message": message, "correlationId": correlation_id }) }
}

/// The answer to a command that was decided: `own` are its events (without the due
/// transitions decided before it), `state` the store after them.
#[allow(clippy::too_many_arguments)]
pub fn accepted(
    command: &Command,
    own: &[Event],
    store: StoreId,
    state: &TenantState,
    version: i64,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Answer {
    let view = || store_view(store, state, version, now, catalog);
    match command {
        Command::RegisterStore { .. } => Answer { status: if own.is_empty() { 200 } else { 201 }, body: view() },
        Command::StartTrial { .. } => {
            let mut body = view();
            body["alreadyActive"] = json!(own.is_empty());
            Answer { status: if own.is_empty() { 200 } else { 201 }, body }
        }
        Command::Consume { action, .. } => {
            let Some(Event::QuotaConsumed {
                consumption_id, used_after, limit, period, period_start, period_end, ..
            }) = own.iter().find(|e| matches!(e, Event::QuotaConsumed { .. }))
            else {
                return Answer { status: 200, body: view() };
            };
            let warnings = match gate(state, now, catalog, action) {
                Ok(GateDecision::Allowed { warnings, .. }) => warnings,
                _ => vec![],
            };
            Answer {
                status: 200,
                body: json!({
                    "allowed": true,
                    "consumptionId": consumption_id,
                    "action": action,
                    "used": used_after,
                    "limit": limit,
                    "remaining": limit.map(|l| l.saturating_sub(*used_after)),
                    "period": period.as_str(),
                    "periodStart": rfc3339(*period_start),
                    "periodEnd": rfc3339(*period_end),
                    "warnings": warnings,
                }),
            }
        }
        Command::Refund { consumption: Some(consumption), .. } => Answer {
            status: 200,
            body: json!({
                "refunded": true,
                "consumptionId": consumption.consumption_id,
                "action": consumption.action,
                "amount": consumption.amount,
                "periodStart": rfc3339(consumption.period_start),
                "periodEnd": rfc3339(consumption.period_end),
            }),
        },
        _ => Answer { status: 200, body: view() },
    }
}

/// The answer to an authorization check (no events).
pub fn authorization(decision: &GateDecision, correlation_id: &str) -> Answer {
    match decision {
        GateDecision::Allowed { internal_status, warnings } => Answer {
            status: 200,
            body: json!({ "allowed": true, "internalStatus": internal_status.as_str(), "warnings": warnings }),
        },
        GateDecision::Refused(refusal) => {
            let error = DomainError::Gate(refusal.clone());
            Answer { status: refusal.http_status, body: error_body(&error, correlation_id) }
        }
    }
}
