//! The access gates (contract §4): what a store may do, by action kind and internal status.

use chrono::{DateTime, Utc};

use crate::catalog::{ActionKind, Catalog};
use crate::error::{DomainError, GateReason, GateRefusal};
use crate::state::TenantState;
use crate::status::{status, status_of, InternalStatus, Status};
use crate::values::ActionName;

/// A warning carried by an allowed response.
pub const WARNING_GRACE: &str = "trial_expired_grace_period";
pub const WARNING_PAST_DUE: &str = "payment_past_due";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    Allowed { internal_status: InternalStatus, warnings: Vec<&'static str> },
    Refused(GateRefusal),
}

/// Decides the gate for `action` on `state` at `now`: the contract §4 table for its kind, then the
/// feature it requires, if the catalog says one. An action the catalog does not know is an
/// error, not a refusal.
pub fn gate(
    state: &TenantState,
    now: DateTime<Utc>,
    catalog: &Catalog,
    action: &ActionName,
) -> Result<GateDecision, DomainError> {
    let kind = catalog.action_kind(action).ok_or_else(|| DomainError::UnknownAction(action.to_string()))?;
    let status = status(state, now, catalog);
    Ok(with_feature(gate_for(&status, kind), &status, catalog, catalog.required_feature(action)))
}

/// May the store use `feature` at `now`: as a read (any status may read) of an action that
/// requires it. A feature no plan lists is an error, not a refusal.
pub fn gate_feature(
    state: &TenantState,
    now: DateTime<Utc>,
    catalog: &Catalog,
    feature: &str,
) -> Result<GateDecision, DomainError> {
    if !catalog.knows_feature(feature) {
        return Err(DomainError::UnknownFeature(feature.to_owned()));
    }
    let status = status(state, now, catalog);
    Ok(with_feature(gate_for(&status, ActionKind::Read), &status, catalog, Some(feature)))
}

/// The gate on a state that has no transition due (the command path applies them first).
pub(crate) fn gate_on_effective(
    state: &TenantState,
    catalog: &Catalog,
    action: &ActionName,
    kind: ActionKind,
) -> GateDecision {
    let status = status_of(state, catalog);
    with_feature(gate_for(&status, kind), &status, catalog, catalog.required_feature(action))
}

/// An allowed decision is refused when the store's plan does not list the feature required.
/// A store on no plan, or on a plan the catalog no longer has, lists none.
fn with_feature(decision: GateDecision, status: &Status, catalog: &Catalog, feature: Option<&str>) -> GateDecision {
    let (GateDecision::Allowed { .. }, Some(feature)) = (&decision, feature) else { return decision };
    let listed =
        status.plan_id.as_ref().and_then(|plan| catalog.plan(plan)).is_some_and(|plan| plan.has_feature(feature));
    if listed {
        return decision;
    }
    GateDecision::Refused(GateRefusal {
        reason: GateReason::FeatureNotInPlan,
        subscription_status: status.subscription_status,
        subscription_tier: status.tier.clone(),
        internal_status: status.internal_status,
        feature: Some(feature.to_owned()),
    })
}

/// The contract §4 table.
pub fn gate_for(status: &Status, kind: ActionKind) -> GateDecision {
    use ActionKind::{Growth, Read, Update};
    use InternalStatus as S;
    let refuse = |reason: GateReason| {
        GateDecision::Refused(GateRefusal {
            reason,
            subscription_status: status.subscription_status,
            subscription_tier: status.tier.clone(),
            internal_status: status.internal_status,
            feature: None,
        })
    };
    let allow =
        |warnings: Vec<&'static str>| GateDecision::Allowed { internal_status: status.internal_status, warnings };
    match (status.internal_status, kind) {
        (_, Read) => allow(match status.internal_status {
            S::Grace => vec![WARNING_GRACE],
            S::PastDue => vec![WARNING_PAST_DUE],
            _ => vec![],
        }),
        (S::Trialing | S::Active, Update | Growth) => allow(vec![]),
        (S::Grace, Update | Growth) => allow(vec![WARNING_GRACE]),
        (S::PastDue, Update | Growth) => allow(vec![WARNING_PAST_DUE]),
        (S::Maintenance, Update) => allow(vec![]),
        (S::None, Update | Growth) => refuse(GateReason::NoSubscription),
        (S::Maintenance, Growth) => refuse(GateReason::MaintenanceNoGrowth),
        (S::Frozen, Update | Growth) => refuse(GateReason::AccountFrozen),
        (S::Canceled, Update | Growth) => refuse(GateReason::SubscriptionCanceled),
    }
}
