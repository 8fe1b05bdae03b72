//! The access gates (SPEC 4): what a store may do, by action kind and internal status.

use chrono::{DateTime, Utc};

use crate::catalog::{ActionKind, Catalog};
use crate::error::{DomainError, GateRefusal};
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

/// Decides the gate for `action` on `state` at `now`. An action the catalog does not know is
/// an error, not a refusal.
pub fn gate(
    state: &TenantState,
    now: DateTime<Utc>,
    catalog: &Catalog,
    action: &ActionName,
) -> Result<GateDecision, DomainError> {
    let kind = catalog.action_kind(action).ok_or_else(|| DomainError::UnknownAction(action.to_string()))?;
    Ok(gate_for(&status(state, now, catalog), kind))
}

/// The gate on a state that has no transition due (the command path applies them first).
pub(crate) fn gate_on_effective(state: &TenantState, catalog: &Catalog, kind: ActionKind) -> GateDecision {
    gate_for(&status_of(state, catalog), kind)
}

/// The SPEC 4 table.
pub fn gate_for(status: &Status, kind: ActionKind) -> GateDecision {
    use ActionKind::{Growth, Read, Update};
    use InternalStatus as S;
    let refuse = |code: &'static str, http_status: u16, message: &'static str| {
        GateDecision::Refused(GateRefusal {
            code,
            http_status,
            message,
            subscription_status: status.subscription_status,
            subscription_tier: status.tier.clone(),
            internal_status: status.internal_status,
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
        (S::None, Update | Growth) => refuse(
            "no_subscription",
            402,
            "This store has no trial or subscription. Start a trial or subscribe to continue.",
        ),
        (S::Maintenance, Growth) => refuse(
            "maintenance_no_growth",
            403,
            "Your trial has ended and your account is in maintenance mode: you can update what you have, but not add anything new. Upgrade to grow again.",
        ),
        (S::Frozen, Update | Growth) => refuse(
            "account_frozen",
            403,
            "Your account is in read-only mode. Your storefront and directory listing remain visible, but you cannot make changes. Please upgrade to regain full access.",
        ),
        (S::Canceled, Update | Growth) => refuse(
            "subscription_canceled",
            403,
            "Your subscription was canceled, so your account is read-only. Subscribe again or contact support to make changes.",
        ),
    }
}
