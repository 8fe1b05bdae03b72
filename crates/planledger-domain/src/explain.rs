//! Why the rules answer what they answer for one action of one store at one time, and the
//! smallest change that would turn a refusal into an allowance. Pure: the decision is
//! [`decide`]'s own for a consumption, and every remedy is checked by deciding again on the
//! store as the remedy would leave it, so an explanation never promises what the rules refuse.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::catalog::{Catalog, PlanKind};
use crate::command::Command;
use crate::decide::{decide, quota_position, QuotaPosition};
use crate::error::DomainError;
use crate::event::{Event, TransitionReason};
use crate::state::{evolve, Phase, TenantState};
use crate::status::{effective_state, status_of, Status};
use crate::values::{ActionName, Amount, PlanId, Reason};

/// A change that would allow the action, each checked against the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// The store on this paid plan (subscribed to it): of those that would allow it now, the one
    /// with the least allowance for the action.
    Plan(PlanId),
    /// The same request at this time, with nothing else changed: its quota window resets then.
    Date(DateTime<Utc>),
    /// This much more allowance (a grant of it) would let it through now.
    Amount(u64),
}

/// The decision with its derivation.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// `Ok` if a consumption of `amount` would be allowed now, else the rule that refuses it.
    pub decision: Result<(), DomainError>,
    /// The store as the rules see it at the time (due deadlines applied).
    pub state: TenantState,
    pub status: Status,
    /// The feature the action requires, if any.
    pub required_feature: Option<String>,
    /// The action's quota: its window, limit and what is used.
    pub quota: QuotaPosition,
    /// What the store's live grants for the action have left.
    pub granted: u64,
    /// The smallest changes that would allow it (none if it is allowed).
    pub would_allow: Vec<Remedy>,
}

/// Explains a consumption of `amount` of `action` on `state` at `at` under `catalog`; refused
/// only for an action the catalog does not know.
pub fn explain(
    state: &TenantState,
    action: &ActionName,
    amount: Amount,
    at: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Explanation, DomainError> {
    catalog.action_kind(action).ok_or_else(|| DomainError::UnknownAction(action.to_string()))?;
    let effective = effective_state(state, at, catalog);
    let decision = allowed(&effective, action, amount, at, catalog);
    let quota = quota_position(&effective, action, at, catalog);
    let granted = effective.grants.values().filter(|g| &g.action == action).map(|g| g.remaining(at)).sum();
    let would_allow = match &decision {
        Ok(()) => Vec::new(),
        Err(DomainError::QuotaExceeded { limit, used, resets_at }) => {
            let mut remedies = Vec::new();
            // The window's reset, if nothing else stands in the way then.
            if let Some(reset) = resets_at.filter(|reset| allowed(&effective, action, amount, *reset, catalog).is_ok())
            {
                remedies.push(Remedy::Date(reset));
            }
            let lacking = amount.get().saturating_sub(limit.saturating_sub(*used)).saturating_sub(granted);
            if lacking > 0 && with_grant(&effective, action, (amount, lacking), at, catalog) {
                remedies.push(Remedy::Amount(lacking));
            }
            remedies.extend(first_plan_allowing(&effective, action, amount, at, catalog).map(Remedy::Plan));
            remedies
        }
        Err(DomainError::Gate(_)) => {
            first_plan_allowing(&effective, action, amount, at, catalog).map(Remedy::Plan).into_iter().collect()
        }
        Err(_) => Vec::new(),
    };
    Ok(Explanation {
        status: status_of(&effective, catalog),
        required_feature: catalog.required_feature(action).map(str::to_owned),
        decision,
        quota,
        granted,
        would_allow,
        state: effective,
    })
}

/// Whether the rules would allow the consumption on `state` at `at` (the events it would
/// make are dropped: nothing is recorded).
fn allowed(
    state: &TenantState,
    action: &ActionName,
    amount: Amount,
    at: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<(), DomainError> {
    let command = Command::Consume { action: action.clone(), amount, consumption_id: Uuid::nil() };
    decide(state, &command, at, catalog).map(|_| ())
}

/// Whether a grant of `granted` would let the consumption of `amount` through.
fn with_grant(
    state: &TenantState,
    action: &ActionName,
    (amount, granted): (Amount, u64),
    at: DateTime<Utc>,
    catalog: &Catalog,
) -> bool {
    let (Ok(granted), Ok(reason)) =
        (Amount::parse(i64::try_from(granted).unwrap_or(i64::MAX)), Reason::parse("explain"))
    else {
        return false;
    };
    let grant = Event::GrantAdded {
        grant_id: Uuid::nil(),
        action: action.clone(),
        amount: granted,
        expires_at: None,
        reason,
        at,
    };
    allowed(&evolve(state.clone(), &grant), action, amount, at, catalog).is_ok()
}

/// The paid plan with the least allowance for the action (unmetered last, then by id) under
/// which the store would be allowed now, changed to it or subscribed to it: the smallest step.
fn first_plan_allowing(
    state: &TenantState,
    action: &ActionName,
    amount: Amount,
    at: DateTime<Utc>,
    catalog: &Catalog,
) -> Option<PlanId> {
    let active = matches!(state.phase, Phase::Active { .. } | Phase::PastDue { .. });
    let mut plans: Vec<_> = catalog
        .plans()
        .filter(|plan| plan.kind == PlanKind::Paid && state.plan_id.as_ref() != Some(&plan.id))
        .collect();
    plans.sort_by_key(|plan| (plan.limit_for(action).map_or(u64::MAX, |limit| limit.limit), plan.id.clone()));
    plans
        .into_iter()
        .find(|plan| {
            let moved = Event::PlanTransitioned {
                from_plan_id: state.plan_id.clone().unwrap_or_else(|| plan.id.clone()),
                to_plan_id: plan.id.clone(),
                reason: TransitionReason::Upgrade,
                subscription_id: state.subscription_id.clone(),
                metadata: None,
                activates_subscription: !active,
                at,
                schedule_id: None,
            };
            allowed(&evolve(state.clone(), &moved), action, amount, at, catalog).is_ok()
        })
        .map(|plan| plan.id.clone())
}
