//! `decide`: the rules of contract §3 to 6 as one pure function of (state, command, now, catalog).
//!
//! Time-driven transitions that are due come first, in the same result, so a command that
//! arrives after a deadline is decided on the store's real status (contract §3 rule 8).

use std::borrow::Cow;

use chrono::{DateTime, TimeDelta, Utc};

use crate::catalog::{Anchor, Catalog, Period, PlanKind};
use crate::command::{
    validate_metadata, Command, Consumption, ExtensionKind, ImportedStatus, ImportedStore, ScheduleAt,
    SchedulePlanTransition, TransitionPlan,
};
use crate::error::DomainError;
use crate::event::{Event, GrantDraw, GrantTotals};
use crate::gate::{gate_on_effective, GateDecision};
use crate::period::{local_day, window_at};
use crate::state::{evolve, ActionUsage, Grant, Phase, ScheduledTransition, TenantState};
use crate::values::{ActionName, Amount, InvalidValue, Reason, StoreId, TimeZoneName};

/// The events `command` produces on `state` at `now`, due transitions first; or why not.
pub fn decide(
    state: &TenantState,
    command: &Command,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    if let Command::RegisterStore { store_id, name, time_zone } = command {
        return register(state, *store_id, name, *time_zone, catalog);
    }
    if let Command::ImportStore(tenant) = command {
        return import(state, tenant, now, catalog);
    }
    if !state.is_registered() {
        return Err(DomainError::StoreNotFound);
    }
    let mut events = due_transitions(state, now, catalog);
    let current =
        if events.is_empty() { Cow::Borrowed(state) } else { Cow::Owned(events.iter().fold(state.clone(), evolve)) };
    events.extend(decide_now(&current, command, now, catalog)?);
    Ok(events)
}

/// The time-driven transitions due at `now`, in the order of their deadlines: trial end, grace
/// end, maintenance end, cascading if several have passed, and the scheduled plan change (applied,
/// or refused as the rules then refuse it). Each event is dated by its deadline, not by `now`.
pub fn due_transitions(state: &TenantState, now: DateTime<Utc>, catalog: &Catalog) -> Vec<Event> {
    let lifecycle = catalog.lifecycle();
    let mut events = Vec::new();
    let mut current = Cow::Borrowed(state);
    loop {
        let phase_due = current.phase_deadline().filter(|deadline| *deadline <= now);
        let scheduled_due = current.scheduled_transition.as_ref().filter(|s| s.at <= now);
        let next = match (phase_due, scheduled_due) {
            // The earlier first; a phase's deadline at the same instant before the change.
            (Some(deadline), Some(scheduled)) if scheduled.at < deadline => {
                apply_scheduled(&current, scheduled, catalog)
            }
            (None, Some(scheduled)) => apply_scheduled(&current, scheduled, catalog),
            (Some(_), _) => match &current.phase {
                Phase::Trialing { ends_at } => Event::TrialExpired {
                    trial_ends_at: *ends_at,
                    grace_ends_at: *ends_at + TimeDelta::days(lifecycle.grace_days),
                },
                Phase::Grace { grace_ends_at } => Event::DowngradedToMaintenance {
                    from_plan_id: current.plan_id.clone(),
                    plan_id: catalog.maintenance_plan(),
                    grace_ends_at: *grace_ends_at,
                    maintenance_ends_at: *grace_ends_at + TimeDelta::days(lifecycle.maintenance_days),
                },
                Phase::Maintenance { maintenance_ends_at } => {
                    Event::StoreFrozen { maintenance_ends_at: *maintenance_ends_at }
                }
                _ => return events,
            },
            (None, None) => return events,
        };
        current = Cow::Owned(evolve(current.into_owned(), &next));
        events.push(next);
    }
}

/// The scheduled change, decided at its time on the store as it is then: the transition, or its
/// refusal recorded (a plan that changed meanwhile, a subscription that ended, a plan gone).
fn apply_scheduled(state: &TenantState, scheduled: &ScheduledTransition, catalog: &Catalog) -> Event {
    let change = TransitionPlan {
        from_plan_id: scheduled.from_plan_id.clone(),
        to_plan_id: scheduled.to_plan_id.clone(),
        reason: scheduled.reason,
        subscription_id: scheduled.subscription_id.clone(),
        metadata: scheduled.metadata.clone(),
        by_admin: scheduled.by_admin,
    };
    match plan_transitioned(state, &change, scheduled.at, catalog, Some(scheduled.schedule_id)) {
        Ok(event) => event,
        Err(error) => Event::ScheduledTransitionFailed {
            schedule_id: scheduled.schedule_id,
            error: error.code().to_owned(),
            message: error.to_string(),
            at: scheduled.at,
        },
    }
}

/// A plan change for later: checked now as it would be applied (so that what the rules refuse is
/// refused at once), and again when it is due.
fn schedule(
    state: &TenantState,
    request: &SchedulePlanTransition,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    let change = &request.change;
    let at = match request.at {
        ScheduleAt::Time(at) => at,
        ScheduleAt::PeriodEnd => crate::terms::period_end(state, now, catalog),
    };
    if at <= now {
        return Err(DomainError::Validation(InvalidValue::new("at", "must be later than now")));
    }
    plan_transitioned(state, change, at, catalog, None)?;
    Ok(vec![Event::PlanTransitionScheduled {
        schedule_id: request.schedule_id,
        from_plan_id: change.from_plan_id.clone(),
        to_plan_id: change.to_plan_id.clone(),
        reason: change.reason,
        subscription_id: change.subscription_id.clone(),
        metadata: change.metadata.clone(),
        by_admin: change.by_admin,
        at,
        at_period_end: request.at == ScheduleAt::PeriodEnd,
        correlation_id: request.correlation_id.clone(),
        replaces: state.scheduled_transition.as_ref().map(|pending| pending.schedule_id),
        requested_at: now,
    }])
}

fn register(
    state: &TenantState,
    store_id: StoreId,
    name: &Option<crate::values::StoreName>,
    time_zone: Option<TimeZoneName>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    if !state.is_registered() {
        return Ok(vec![Event::StoreRegistered {
            store_id,
            name: name.clone(),
            time_zone: time_zone.unwrap_or_default(),
            catalog_version: (catalog.version() > 0).then_some(catalog.version()),
        }]);
    }
    // Registering again is a retry if nothing it says differs from what is registered.
    let same_name = name.is_none() || *name == state.name;
    let same_zone = time_zone.is_none_or(|tz| tz == state.time_zone);
    if same_name && same_zone {
        Ok(vec![])
    } else {
        Err(DomainError::StoreExists)
    }
}

/// A tenant moving in (contract §13): checked against the catalog, its plan filled in where its
/// status decides it, recorded as one `StoreImported`. Importing it again is a no-op; another
/// store under its id is `store_exists`.
fn import(
    state: &TenantState,
    tenant: &ImportedStore,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    if state.is_registered() {
        return if state.external_id.as_ref() == Some(&tenant.external_id) {
            Ok(vec![])
        } else {
            Err(DomainError::StoreExists)
        };
    }
    let invalid = |field: &'static str, rule: &str| DomainError::Validation(InvalidValue::new(field, rule));
    let needs = |date: Option<DateTime<Utc>>, field: &'static str| {
        date.map(|_| ()).ok_or_else(|| invalid(field, "is required for this status"))
    };
    let mut tenant = tenant.clone();
    let maintenance = catalog.maintenance_plan();
    let plan_id = match tenant.status {
        ImportedStatus::Unsubscribed => {
            if tenant.plan_id.is_some() {
                return Err(invalid("planId", "an unsubscribed store has no plan"));
            }
            None
        }
        ImportedStatus::Trialing | ImportedStatus::Grace => {
            let (date, field) = match tenant.status {
                ImportedStatus::Trialing => (tenant.trial_ends_at, "trialEndsAt"),
                _ => (tenant.grace_ends_at, "graceEndsAt"),
            };
            needs(date, field)?;
            tenant.trial_used = true;
            let plan_id = tenant.plan_id.clone().unwrap_or_else(|| catalog.default_trial_plan().clone());
            let plan = catalog.plan(&plan_id).ok_or_else(|| DomainError::UnknownPlan(plan_id.clone()))?;
            if !plan.trial_eligible || plan.kind == PlanKind::Internal {
                return Err(DomainError::PlanNotTrialEligible(plan_id));
            }
            Some(plan_id)
        }
        ImportedStatus::Maintenance | ImportedStatus::Frozen => {
            if tenant.status == ImportedStatus::Maintenance {
                needs(tenant.maintenance_ends_at, "maintenanceEndsAt")?;
            }
            if tenant.plan_id.as_ref().is_some_and(|plan| *plan != maintenance) {
                return Err(invalid("planId", "a store in maintenance or frozen is on the catalog's maintenance plan"));
            }
            tenant.trial_used = true;
            Some(maintenance)
        }
        ImportedStatus::Active | ImportedStatus::PastDue => {
            let plan_id = tenant.plan_id.clone().ok_or_else(|| invalid("planId", "is required for this status"))?;
            let plan = catalog.plan(&plan_id).ok_or_else(|| DomainError::UnknownPlan(plan_id.clone()))?;
            if plan.kind != PlanKind::Paid {
                return Err(DomainError::NotAPaidPlan(plan_id));
            }
            if tenant.subscription_id.is_none() {
                return Err(DomainError::SubscriptionRequired);
            }
            Some(plan_id)
        }
        ImportedStatus::Canceled => match tenant.plan_id.clone() {
            Some(plan_id) if catalog.plan(&plan_id).is_none() => return Err(DomainError::UnknownPlan(plan_id)),
            other => other,
        },
    };
    tenant.plan_id = plan_id;
    for usage in &tenant.usage {
        if catalog.action_kind(&usage.action).is_none() {
            return Err(DomainError::UnknownAction(usage.action.to_string()));
        }
        if usage.since.is_some_and(|since| since > now) {
            return Err(invalid("usage.since", "must not be in the future"));
        }
    }
    Ok(vec![Event::StoreImported {
        store_id: StoreId::imported(&tenant.external_id),
        tenant: Box::new(tenant),
        catalog_version: (catalog.version() > 0).then_some(catalog.version()),
        at: now,
    }])
}

/// Decides a command on a state with no transition due.
fn decide_now(
    state: &TenantState,
    command: &Command,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::RegisterStore { store_id, name, time_zone } => register(state, *store_id, name, *time_zone, catalog),
        Command::ImportStore(tenant) => import(state, tenant, now, catalog),
        Command::SchedulePlanTransition(request) => schedule(state, request, now, catalog),
        Command::AddGrant { grant_id, action, amount, expires_at, reason } => {
            add_grant(state, (*grant_id, action, *amount, *expires_at, reason), now, catalog)
        }
        Command::VoidGrant { grant_id, reason } => match state.grants.get(grant_id) {
            Some(grant) if !grant.voided => {
                Ok(vec![Event::GrantVoided { grant_id: *grant_id, reason: reason.clone(), at: now }])
            }
            _ => Err(DomainError::GrantNotFound),
        },
        Command::CancelScheduledTransition { schedule_id } => match &state.scheduled_transition {
            Some(pending) if pending.schedule_id == *schedule_id => {
                Ok(vec![Event::ScheduledTransitionCanceled { schedule_id: *schedule_id, at: now }])
            }
            _ => Err(DomainError::ScheduleNotFound),
        },
        Command::StartTrial { plan_id, days, force_reset } => {
            let plan_id = plan_id.clone().unwrap_or_else(|| catalog.default_trial_plan().clone());
            let plan = catalog.plan(&plan_id).ok_or_else(|| DomainError::UnknownPlan(plan_id.clone()))?;
            if !plan.trial_eligible || plan.kind == PlanKind::Internal {
                return Err(DomainError::PlanNotTrialEligible(plan_id));
            }
            match (&state.phase, force_reset) {
                (Phase::Active { .. } | Phase::PastDue { .. }, _) => return Err(DomainError::SubscriptionActive),
                // Never reset by accident: a second start returns the running trial unchanged.
                (Phase::Trialing { .. }, None) => return Ok(vec![]),
                (_, None) if state.trial_used => return Err(DomainError::TrialAlreadyUsed),
                _ => {}
            }
            let ends_at = now + TimeDelta::days(days.map_or(catalog.lifecycle().trial_days, |d| d.get()));
            Ok(vec![match force_reset {
                Some(reason) if state.trial_used => {
                    Event::TrialRestarted { plan_id, started_at: now, ends_at, reason: reason.clone() }
                }
                _ => Event::TrialStarted { plan_id, started_at: now, ends_at },
            }])
        }
        Command::AdoptTrial { subscription_id, ends_at } => {
            if state.trial_used {
                return Ok(vec![]);
            }
            Ok(vec![match state.phase {
                Phase::Unsubscribed if *ends_at > now => Event::TrialStarted {
                    plan_id: catalog.default_trial_plan().clone(),
                    started_at: now,
                    ends_at: *ends_at,
                },
                _ => Event::TrialRecorded { subscription_id: subscription_id.clone(), ends_at: *ends_at },
            }])
        }
        Command::ActivateSubscription { plan_id, subscription_id } => {
            let plan = catalog.plan(plan_id).ok_or_else(|| DomainError::UnknownPlan(plan_id.clone()))?;
            if plan.kind != PlanKind::Paid {
                return Err(DomainError::NotAPaidPlan(plan_id.clone()));
            }
            let already = matches!(&state.phase, Phase::Active { subscription_id: Some(s) } if s == subscription_id);
            if already && state.plan_id.as_ref() == Some(plan_id) {
                return Ok(vec![]);
            }
            Ok(vec![Event::SubscriptionActivated {
                plan_id: plan_id.clone(),
                subscription_id: subscription_id.clone(),
                from_plan_id: state.plan_id.clone(),
                activated_at: now,
            }])
        }
        Command::MarkPastDue => match state.phase {
            Phase::Active { .. } => {
                Ok(vec![Event::SubscriptionPastDue { subscription_id: state.subscription_id.clone() }])
            }
            Phase::PastDue { .. } => Ok(vec![]),
            _ => Err(DomainError::NoActiveSubscription),
        },
        Command::MarkRecovered => match state.phase {
            Phase::PastDue { .. } => {
                Ok(vec![Event::SubscriptionRecovered { subscription_id: state.subscription_id.clone() }])
            }
            Phase::Active { .. } => Ok(vec![]),
            _ => Err(DomainError::NotPastDue),
        },
        Command::CancelSubscription => match state.phase {
            Phase::Active { .. } | Phase::PastDue { .. } => {
                Ok(vec![Event::SubscriptionCanceled { subscription_id: state.subscription_id.clone() }])
            }
            Phase::Canceled { .. } => Ok(vec![]),
            _ => Err(DomainError::NoActiveSubscription),
        },
        Command::TransitionPlan(transition) => transition_plan(state, transition, now, catalog),
        Command::Consume { action, amount, consumption_id } => {
            consume(state, action, *amount, *consumption_id, now, catalog)
        }
        Command::Refund { consumption, .. } => refund(state, consumption.as_ref(), now),
        Command::Extend { kind, days, reason } => {
            let (days, reason) = (*days, reason.clone());
            let event = match (kind, &state.phase) {
                (ExtensionKind::Trial, Phase::Trialing { ends_at }) => Event::TrialExtended {
                    days,
                    reason,
                    previous_ends_at: *ends_at,
                    ends_at: *ends_at + days.duration(),
                },
                (ExtensionKind::Grace, Phase::Grace { grace_ends_at }) => Event::GracePeriodExtended {
                    days,
                    reason,
                    previous_ends_at: *grace_ends_at,
                    ends_at: *grace_ends_at + days.duration(),
                },
                (ExtensionKind::Maintenance, Phase::Maintenance { maintenance_ends_at }) => {
                    Event::MaintenanceExtended {
                        days,
                        reason,
                        previous_ends_at: *maintenance_ends_at,
                        ends_at: *maintenance_ends_at + days.duration(),
                    }
                }
                (kind, _) => return Err(DomainError::NotInPhase(*kind)),
            };
            Ok(vec![event])
        }
        Command::ApplyDueTransitions => Ok(vec![]),
    }
}

fn transition_plan(
    state: &TenantState,
    t: &TransitionPlan,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    Ok(vec![plan_transitioned(state, t, now, catalog, None)?])
}

/// The plan change `t` at `now` (of the scheduled change `schedule_id`), or why not.
fn plan_transitioned(
    state: &TenantState,
    t: &TransitionPlan,
    now: DateTime<Utc>,
    catalog: &Catalog,
    schedule_id: Option<uuid::Uuid>,
) -> Result<Event, DomainError> {
    if state.plan_id.as_ref() != Some(&t.from_plan_id) {
        return Err(DomainError::PlanMismatch {
            expected: t.from_plan_id.clone(),
            current: state.plan_id.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string),
        });
    }
    let to = catalog.plan(&t.to_plan_id).ok_or_else(|| DomainError::UnknownPlan(t.to_plan_id.clone()))?;
    if t.to_plan_id == t.from_plan_id {
        return Err(DomainError::InvalidTransition("the store is already on this plan"));
    }
    if to.kind == PlanKind::Internal {
        return Err(DomainError::InternalTier(t.to_plan_id.clone()));
    }
    if to.kind == PlanKind::Paid && t.subscription_id.is_none() && !t.by_admin {
        return Err(DomainError::SubscriptionRequired);
    }
    if to.kind == PlanKind::Trial && !matches!(state.phase, Phase::Trialing { .. } | Phase::Grace { .. }) {
        return Err(DomainError::InvalidTransition(
            "a trial plan can only be chosen during a trial or its grace period",
        ));
    }
    if let Some(metadata) = &t.metadata {
        validate_metadata(metadata).map_err(DomainError::Validation)?;
    }
    let activates_subscription =
        to.kind == PlanKind::Paid && !matches!(state.phase, Phase::Active { .. } | Phase::PastDue { .. });
    Ok(Event::PlanTransitioned {
        from_plan_id: t.from_plan_id.clone(),
        to_plan_id: t.to_plan_id.clone(),
        reason: t.reason,
        subscription_id: t.subscription_id.clone(),
        metadata: t.metadata.clone(),
        activates_subscription,
        at: now,
        schedule_id,
    })
}

/// The quota an action has at `now`: its limit (None: unmetered), window and use so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPosition {
    pub action: ActionName,
    pub limit: Option<u64>,
    pub window: crate::period::Window,
    pub used: u64,
}

impl QuotaPosition {
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|limit| limit.saturating_sub(self.used))
    }
}

/// Where `action` stands on `state` (with no transition due) at `now`. Unmetered actions are
/// counted per calendar month, so that usage is known for every action.
pub fn quota_position(
    state: &TenantState,
    action: &ActionName,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> QuotaPosition {
    let plan = state.plan_id.as_ref().and_then(|id| catalog.plan(id));
    let limit = plan.and_then(|p| p.limit_for(action));
    let (period, anchor) = match (limit, plan) {
        (Some(limit), Some(plan)) => (limit.period, plan.anchor),
        _ => (Period::Month, Anchor::Calendar),
    };
    let tz = state.time_zone.tz();
    let window = window_at(period, now, tz, anchor, state.billing_anchor);
    let used = state.usage.get(action).map_or(0, |u| u.used_in(&window, tz));
    QuotaPosition { action: action.clone(), limit: limit.map(|l| l.limit), window, used }
}

fn consume(
    state: &TenantState,
    action: &ActionName,
    amount: Amount,
    consumption_id: uuid::Uuid,
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    let kind = catalog.action_kind(action).ok_or_else(|| DomainError::UnknownAction(action.to_string()))?;
    if let GateDecision::Refused(refusal) = gate_on_effective(state, catalog, action, kind) {
        return Err(DomainError::Gate(refusal));
    }
    let position = quota_position(state, action, now, catalog);
    // The plan's allowance first, then grants for what it lacks.
    let (own, from_grants) = match position.limit {
        None => (amount.get(), Vec::new()),
        Some(limit) => {
            let left = limit.saturating_sub(position.used);
            match amount.get().checked_sub(left).filter(|lacking| *lacking > 0) {
                None => (amount.get(), Vec::new()),
                Some(lacking) => match draw_from_grants(state, action, lacking, now) {
                    Some(draws) => (left, draws),
                    None => {
                        return Err(DomainError::QuotaExceeded {
                            limit,
                            used: position.used,
                            resets_at: position.window.end,
                        })
                    }
                },
            }
        }
    };
    let used_after = position.used + own;
    let drawn: u64 = from_grants.iter().map(|d| d.amount).sum();
    let live: Vec<&Grant> = state.grants.values().filter(|g| &g.action == action && g.live_at(now)).collect();
    let grants = (position.limit.is_some() && !live.is_empty()).then(|| GrantTotals {
        amount: live.iter().map(|g| g.amount).sum(),
        used: live.iter().map(|g| g.used).sum::<u64>() + drawn,
    });
    Ok(vec![Event::QuotaConsumed {
        consumption_id,
        action: action.clone(),
        amount,
        period: position.window.period,
        period_start: position.window.start,
        period_end: position.window.end,
        used_after,
        limit: position.limit,
        at: now,
        from_grants,
        grants,
    }])
}

/// `amount` taken from the store's usable grants for `action`, earliest expiry first (grants
/// that never expire last, then the oldest first); `None` if they hold less.
fn draw_from_grants(
    state: &TenantState,
    action: &ActionName,
    amount: u64,
    now: DateTime<Utc>,
) -> Option<Vec<GrantDraw>> {
    let mut usable: Vec<(&uuid::Uuid, &Grant)> =
        state.grants.iter().filter(|(_, g)| &g.action == action && g.remaining(now) > 0).collect();
    usable.sort_by_key(|(id, g)| (g.expires_at.is_none(), g.expires_at, g.added_at, **id));
    let mut lacking = amount;
    let mut draws = Vec::new();
    for (id, grant) in usable {
        if lacking == 0 {
            break;
        }
        let take = grant.remaining(now).min(lacking);
        draws.push(GrantDraw { grant_id: *id, amount: take });
        lacking -= take;
    }
    (lacking == 0).then_some(draws)
}

/// A consumption is refunded at most once, only on its own store, and only while its day is
/// still kept (lifetime ones at any age: a refund is how a deleted item gives its quota back).
fn refund(
    state: &TenantState,
    consumption: Option<&Consumption>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let c = consumption.ok_or(DomainError::ConsumptionNotFound)?;
    let usage = state.usage.get(&c.action);
    if usage.is_some_and(|u| u.refunded.contains_key(&c.consumption_id)) {
        return Err(DomainError::AlreadyRefunded);
    }
    if c.period != Period::Lifetime {
        let tz = state.time_zone.tz();
        if local_day(c.consumed_at, tz) < ActionUsage::horizon(usage, local_day(now, tz)) {
            return Err(DomainError::RefundWindowClosed);
        }
    }
    Ok(vec![Event::QuotaRefunded {
        consumption_id: c.consumption_id,
        action: c.action.clone(),
        amount: c.amount,
        period: c.period,
        period_start: c.period_start,
        period_end: c.period_end,
        consumed_at: c.consumed_at,
        from_grants: c.from_grants.clone(),
    }])
}

/// A grant: for an action of the catalog, expiring later than now if it expires.
fn add_grant(
    state: &TenantState,
    (grant_id, action, amount, expires_at, reason): (uuid::Uuid, &ActionName, Amount, Option<DateTime<Utc>>, &Reason),
    now: DateTime<Utc>,
    catalog: &Catalog,
) -> Result<Vec<Event>, DomainError> {
    catalog.action_kind(action).ok_or_else(|| DomainError::UnknownAction(action.to_string()))?;
    if expires_at.is_some_and(|at| at <= now) {
        return Err(DomainError::Validation(InvalidValue::new("expiresAt", "must be later than now")));
    }
    if state.grants.contains_key(&grant_id) {
        return Ok(vec![]);
    }
    Ok(vec![Event::GrantAdded {
        grant_id,
        action: action.clone(),
        amount,
        expires_at,
        reason: reason.clone(),
        at: now,
    }])
}

/// The quota position at `now` of every action a store's usage shows: those its plan limits and
/// those it has used, by name. `effective` is the store as it is at `now`, due transitions
/// applied (`effective_state`): callers have it already, so it is not folded twice.
pub fn usage_positions(effective: &TenantState, now: DateTime<Utc>, catalog: &Catalog) -> Vec<QuotaPosition> {
    let plan = effective.plan_id.as_ref().and_then(|id| catalog.plan(id));
    let mut actions: Vec<_> = catalog
        .actions()
        .map(|(name, _)| name.clone())
        .filter(|name| plan.is_some_and(|p| p.limit_for(name).is_some()) || effective.usage.contains_key(name))
        .collect();
    actions.sort();
    actions.iter().map(|action| quota_position(effective, action, now, catalog)).collect()
}
