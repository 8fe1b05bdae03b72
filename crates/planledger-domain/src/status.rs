//! Statuses derived from a store's state and `now` (contract §4): the single source of truth.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::decide::due_transitions;
use crate::state::{evolve, Phase, TenantState};
use crate::values::PlanId;

/// The seed's subscription vocabulary, as clients know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    None,
    Trial,
    Active,
    PastDue,
    Canceled,
    Expired,
}

/// The operational status every gate is decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InternalStatus {
    None,
    Trialing,
    Grace,
    Active,
    PastDue,
    Maintenance,
    Frozen,
    Canceled,
}

impl InternalStatus {
    pub const ALL: [InternalStatus; 8] = [
        InternalStatus::None,
        InternalStatus::Trialing,
        InternalStatus::Grace,
        InternalStatus::Active,
        InternalStatus::PastDue,
        InternalStatus::Maintenance,
        InternalStatus::Frozen,
        InternalStatus::Canceled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            InternalStatus::None => "none",
            InternalStatus::Trialing => "trialing",
            InternalStatus::Grace => "grace",
            InternalStatus::Active => "active",
            InternalStatus::PastDue => "past_due",
            InternalStatus::Maintenance => "maintenance",
            InternalStatus::Frozen => "frozen",
            InternalStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<InternalStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

impl SubscriptionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            SubscriptionStatus::None => "none",
            SubscriptionStatus::Trial => "trial",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Expired => "expired",
        }
    }
}

/// What a store is, at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub subscription_status: SubscriptionStatus,
    pub internal_status: InternalStatus,
    pub plan_id: Option<PlanId>,
    /// The plan's tier (`google_only` in maintenance); the plan id if the catalog lost the plan.
    pub tier: Option<String>,
}

/// The state as it is at `now`: the stored state with every due transition applied.
pub fn effective_state(state: &TenantState, now: DateTime<Utc>, catalog: &Catalog) -> TenantState {
    let due = due_transitions(state, now, catalog);
    if due.is_empty() {
        return state.clone();
    }
    due.iter().fold(state.clone(), evolve)
}

/// The statuses of `state` at `now`, derived: right even if no worker has appended the due
/// transitions yet.
pub fn status(state: &TenantState, now: DateTime<Utc>, catalog: &Catalog) -> Status {
    status_of(&effective_state(state, now, catalog), catalog)
}

/// The statuses of a state that has no transition due.
pub(crate) fn status_of(state: &TenantState, catalog: &Catalog) -> Status {
    let (subscription_status, internal_status) = match &state.phase {
        Phase::Unsubscribed => (SubscriptionStatus::None, InternalStatus::None),
        Phase::Trialing { .. } => (SubscriptionStatus::Trial, InternalStatus::Trialing),
        Phase::Grace { .. } => (SubscriptionStatus::Expired, InternalStatus::Grace),
        Phase::Maintenance { .. } => (SubscriptionStatus::Expired, InternalStatus::Maintenance),
        Phase::Frozen => (SubscriptionStatus::Expired, InternalStatus::Frozen),
        Phase::Active { .. } => (SubscriptionStatus::Active, InternalStatus::Active),
        Phase::PastDue { .. } => (SubscriptionStatus::PastDue, InternalStatus::PastDue),
        Phase::Canceled { .. } => (SubscriptionStatus::Canceled, InternalStatus::Canceled),
    };
    let tier =
        state.plan_id.as_ref().map(|id| catalog.plan(id).map_or_else(|| id.to_string(), |plan| plan.tier.clone()));
    Status { subscription_status, internal_status, plan_id: state.plan_id.clone(), tier }
}
