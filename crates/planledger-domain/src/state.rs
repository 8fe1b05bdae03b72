//! A store's state, folded from its events by [`evolve`].
//!
//! The state holds facts only; what they mean at a given time (the statuses, the gates) is
//! derived with `now` in [`crate::status`], so a read is right even before the deadline worker
//! has appended a due transition.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Period;
use crate::event::Event;
use crate::values::{ActionName, PlanId, StoreId, StoreName, SubscriptionId, TimeZoneName};

/// Where a store is in its lifecycle (SPEC 3). One enum, so impossible combinations
/// (frozen and active, trialing and past due) cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum Phase {
    /// Registered, no trial or subscription yet.
    Unsubscribed,
    Trialing {
        ends_at: DateTime<Utc>,
    },
    /// The trial ended without a paid subscription: trial limits, with a warning.
    Grace {
        grace_ends_at: DateTime<Utc>,
    },
    /// On `google_only`: updates allowed, no growth.
    Maintenance {
        maintenance_ends_at: DateTime<Utc>,
    },
    /// Read-only.
    Frozen,
    /// On a paid plan. The subscription id is absent for an admin's transition without one.
    Active {
        subscription_id: Option<SubscriptionId>,
    },
    PastDue {
        subscription_id: Option<SubscriptionId>,
    },
    Canceled {
        subscription_id: Option<SubscriptionId>,
    },
}

/// Quota used by one action: per window (keyed by period and window start) and in total.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionUsage {
    pub lifetime: u64,
    /// Used amount per (period, window start); lifetime windows have no start.
    pub windows: BTreeMap<(Period, Option<DateTime<Utc>>), u64>,
}

impl ActionUsage {
    pub fn used_in(&self, period: Period, start: Option<DateTime<Utc>>) -> u64 {
        match period {
            Period::Lifetime => self.lifetime,
            _ => self.windows.get(&(period, start)).copied().unwrap_or(0),
        }
    }
}

/// Everything the rules need to know about one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantState {
    pub store_id: Option<StoreId>,
    pub name: Option<StoreName>,
    pub time_zone: TimeZoneName,
    pub plan_id: Option<PlanId>,
    /// When the current plan started: the anchor of subscription-anchored months.
    pub plan_started_at: Option<DateTime<Utc>>,
    pub phase: Phase,
    /// A trial was started once; only an admin's force reset starts another.
    pub trial_used: bool,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub maintenance_ends_at: Option<DateTime<Utc>>,
    /// The last subscription a payment provider reported, kept for display after cancellation.
    pub subscription_id: Option<SubscriptionId>,
    #[serde(with = "usage_as_list")]
    pub usage: BTreeMap<ActionName, ActionUsage>,
}

impl Default for TenantState {
    fn default() -> Self {
        Self {
            store_id: None,
            name: None,
            time_zone: TimeZoneName::UTC,
            plan_id: None,
            plan_started_at: None,
            phase: Phase::Unsubscribed,
            trial_used: false,
            trial_ends_at: None,
            grace_ends_at: None,
            maintenance_ends_at: None,
            subscription_id: None,
            usage: BTreeMap::new(),
        }
    }
}

impl TenantState {
    pub fn is_registered(&self) -> bool {
        self.store_id.is_some()
    }

    /// The next time-driven transition's deadline, if one is pending.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        match &self.phase {
            Phase::Trialing { ends_at } => Some(*ends_at),
            Phase::Grace { grace_ends_at } => Some(*grace_ends_at),
            Phase::Maintenance { maintenance_ends_at } => Some(*maintenance_ends_at),
            _ => None,
        }
    }

    /// Folds a whole history.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> TenantState {
        events.into_iter().fold(TenantState::default(), evolve)
    }
}

/// Applies one event. Total: every event is a fact already decided, so nothing here can fail.
pub fn evolve(mut state: TenantState, event: &Event) -> TenantState {
    match event {
        Event::StoreRegistered { store_id, name, time_zone } => {
            state.store_id = Some(*store_id);
            state.name = name.clone();
            state.time_zone = *time_zone;
        }
        Event::TrialStarted { plan_id, started_at, ends_at }
        | Event::TrialRestarted { plan_id, started_at, ends_at, .. } => {
            state.plan_id = Some(plan_id.clone());
            state.plan_started_at = Some(*started_at);
            state.phase = Phase::Trialing { ends_at: *ends_at };
            state.trial_used = true;
            state.trial_ends_at = Some(*ends_at);
            state.grace_ends_at = None;
            state.maintenance_ends_at = None;
        }
        Event::TrialExtended { ends_at, .. } => {
            state.phase = Phase::Trialing { ends_at: *ends_at };
            state.trial_ends_at = Some(*ends_at);
        }
        Event::TrialExpired { grace_ends_at, .. } => {
            state.phase = Phase::Grace { grace_ends_at: *grace_ends_at };
            state.grace_ends_at = Some(*grace_ends_at);
        }
        Event::GracePeriodExtended { ends_at, .. } => {
            state.phase = Phase::Grace { grace_ends_at: *ends_at };
            state.grace_ends_at = Some(*ends_at);
        }
        Event::DowngradedToMaintenance { plan_id, grace_ends_at, maintenance_ends_at, .. } => {
            state.plan_id = Some(plan_id.clone());
            state.plan_started_at = Some(*grace_ends_at);
            state.phase = Phase::Maintenance { maintenance_ends_at: *maintenance_ends_at };
            state.maintenance_ends_at = Some(*maintenance_ends_at);
        }
        Event::MaintenanceExtended { ends_at, .. } => {
            state.phase = Phase::Maintenance { maintenance_ends_at: *ends_at };
            state.maintenance_ends_at = Some(*ends_at);
        }
        Event::StoreFrozen { .. } => state.phase = Phase::Frozen,
        Event::SubscriptionActivated { plan_id, subscription_id, activated_at, .. } => {
            if state.plan_id.as_ref() != Some(plan_id) {
                state.plan_started_at = Some(*activated_at);
            }
            state.plan_id = Some(plan_id.clone());
            state.phase = Phase::Active { subscription_id: Some(subscription_id.clone()) };
            state.subscription_id = Some(subscription_id.clone());
            state.clear_deadlines();
        }
        Event::SubscriptionPastDue { .. } => {
            state.phase = Phase::PastDue { subscription_id: state.subscription_id.clone() };
        }
        Event::SubscriptionRecovered { .. } => {
            state.phase = Phase::Active { subscription_id: state.subscription_id.clone() };
        }
        Event::SubscriptionCanceled { .. } => {
            state.phase = Phase::Canceled { subscription_id: state.subscription_id.clone() };
        }
        Event::PlanTransitioned { to_plan_id, subscription_id, activates_subscription, at, .. } => {
            state.plan_id = Some(to_plan_id.clone());
            state.plan_started_at = Some(*at);
            if subscription_id.is_some() {
                state.subscription_id = subscription_id.clone();
            }
            if *activates_subscription {
                state.phase = Phase::Active { subscription_id: state.subscription_id.clone() };
                state.clear_deadlines();
            } else if let Phase::Active { .. } = state.phase {
                state.phase = Phase::Active { subscription_id: state.subscription_id.clone() };
            }
        }
        Event::QuotaConsumed { action, amount, period, period_start, .. } => {
            let usage = state.usage.entry(action.clone()).or_default();
            usage.lifetime += amount.get();
            if *period != Period::Lifetime {
                *usage.windows.entry((*period, *period_start)).or_default() += amount.get();
            }
        }
        Event::QuotaRefunded { action, amount, period, period_start, .. } => {
            let usage = state.usage.entry(action.clone()).or_default();
            usage.lifetime = usage.lifetime.saturating_sub(amount.get());
            if let Some(used) = usage.windows.get_mut(&(*period, *period_start)) {
                *used = used.saturating_sub(amount.get());
            }
        }
    }
    state
}

impl TenantState {
    fn clear_deadlines(&mut self) {
        self.grace_ends_at = None;
        self.maintenance_ends_at = None;
    }
}

/// JSON objects need string keys; the usage map is stored as a list instead.
mod usage_as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        action: ActionName,
        lifetime: u64,
        windows: Vec<(Period, Option<DateTime<Utc>>, u64)>,
    }

    pub fn serialize<S: Serializer>(usage: &BTreeMap<ActionName, ActionUsage>, s: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<Entry> = usage
            .iter()
            .map(|(action, u)| Entry {
                action: action.clone(),
                lifetime: u.lifetime,
                windows: u.windows.iter().map(|((p, start), used)| (*p, *start, *used)).collect(),
            })
            .collect();
        entries.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ActionName, ActionUsage>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let windows = e.windows.into_iter().map(|(p, start, used)| ((p, start), used)).collect();
                (e.action, ActionUsage { lifetime: e.lifetime, windows })
            })
            .collect())
    }
}
