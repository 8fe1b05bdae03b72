//! A store's state, folded from its events by [`evolve`].
//!
//! The state holds facts only; what they mean at a given time (the statuses, the gates) is
//! derived with `now` in [`crate::status`], so a read is right even before the deadline worker
//! has appended a due transition.

use std::collections::BTreeMap;

use chrono::{DateTime, Days as ChronoDays, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Period;
use crate::command::ImportedStatus;
use crate::event::Event;
use crate::period::{local_day, Window};
use crate::values::{ActionName, ExternalId, PlanId, StoreId, StoreName, SubscriptionId, TimeZoneName};

/// Where a store is in its lifecycle (contract §3). One enum, so impossible combinations
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

/// The version of the fold: bump it whenever [`evolve`] folds an event differently or
/// [`TenantState`] changes shape. It is part of the fold's fingerprint
/// ([`crate::fold_fingerprint`]), which snapshots and read models record so that state folded by
/// another fold is never read as if this one had made it (they are folded again from the log).
/// The fingerprint also hashes what the fold does, so a forgotten bump is caught too.
/// 2: usage per local day, refunds remembered, the billing anchor.
pub const FOLD_VERSION: i32 = 2;

/// How many local days of usage a store keeps: twice the longest window (a month), so that every
/// window that can still be current and every refund the rules accept find their days.
pub const USAGE_RETAINED_DAYS: u64 = 62;

/// Quota used by one action: in total, per local day, and which consumptions were refunded.
///
/// Usage is kept per local day of the store's time zone, not per window: every window starts and
/// ends at a local midnight, so the usage of whatever window the current plan defines is the sum
/// of its days. A plan change (another period kind, another anchor) thus keeps what was used in
/// the period and applies the new limit: nothing opens a fresh window (contract §5).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionUsage {
    /// Consumed minus refunded, ever: what lifetime limits count.
    pub lifetime: u64,
    /// Consumed minus refunded per local day, for the last [`USAGE_RETAINED_DAYS`] days.
    pub days: BTreeMap<NaiveDate, u64>,
    /// Refunded consumptions, with the local day they were consumed on; `None` for consumptions
    /// under a lifetime limit, which a refund (a deleted item) may reach at any age.
    pub refunded: BTreeMap<Uuid, Option<NaiveDate>>,
}

impl ActionUsage {
    /// What was used in `window`, in the store's time zone `tz`.
    pub fn used_in(&self, window: &Window, tz: Tz) -> u64 {
        match window.local_days(tz) {
            None => self.lifetime,
            Some((first, end)) => self.days.range(first..end).map(|(_, used)| used).sum(),
        }
    }

    /// The earliest local day whose usage (and refunds) `usage` still keeps, seen from `today`:
    /// [`USAGE_RETAINED_DAYS`] before the later of today and its newest day.
    pub fn horizon(usage: Option<&ActionUsage>, today: NaiveDate) -> NaiveDate {
        let newest = usage.and_then(|u| u.days.last_key_value()).map_or(today, |(day, _)| (*day).max(today));
        newest - ChronoDays::new(USAGE_RETAINED_DAYS)
    }

    /// Forgets the days (and their refunds) that no window or refund can reach any more.
    fn prune(&mut self) {
        let Some((newest, _)) = self.days.last_key_value() else {
            return;
        };
        let horizon = Self::horizon(Some(self), *newest);
        self.days = self.days.split_off(&horizon);
        self.refunded.retain(|_, day| day.is_none_or(|d| d >= horizon));
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
    /// The store's billing anchor: when its first plan started. Subscription-anchored months
    /// count from its day. A plan change never moves it, so it never opens a fresh window.
    pub billing_anchor: Option<DateTime<Utc>>,
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
    /// The ledger's catalog version the store is decided under (`None`: the ledger's first; see
    /// `terms`).
    #[serde(default)]
    pub catalog_version: Option<i64>,
    /// The store's id in the system it was imported from, if it was imported.
    #[serde(default)]
    pub external_id: Option<ExternalId>,
    /// The plan change scheduled for later, if one is pending.
    #[serde(default)]
    pub scheduled_transition: Option<ScheduledTransition>,
    /// Allowance granted on top of the plan's, by grant id (voided and expired ones too: a
    /// refund may still give back to them, and the history shows them).
    #[serde(default)]
    pub grants: BTreeMap<Uuid, Grant>,
}

/// A grant (`GrantAdded`) and what was used of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub action: ActionName,
    pub amount: u64,
    pub used: u64,
    pub expires_at: Option<DateTime<Utc>>,
    pub added_at: DateTime<Utc>,
    pub voided: bool,
}

impl Grant {
    /// Whether it can give at `now`: not voided, not expired.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        !self.voided && self.expires_at.is_none_or(|at| now < at)
    }

    /// What is left to use at `now`: nothing once voided or expired.
    pub fn remaining(&self, now: DateTime<Utc>) -> u64 {
        if self.live_at(now) {
            self.amount.saturating_sub(self.used)
        } else {
            0
        }
    }
}

/// A pending scheduled plan change (`PlanTransitionScheduled`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledTransition {
    pub schedule_id: Uuid,
    pub from_plan_id: PlanId,
    pub to_plan_id: PlanId,
    pub reason: crate::event::TransitionReason,
    pub subscription_id: Option<SubscriptionId>,
    pub metadata: Option<serde_json::Value>,
    pub by_admin: bool,
    pub at: DateTime<Utc>,
    pub at_period_end: bool,
    /// The request's correlation id, which the applied change names as its causation.
    pub correlation_id: String,
}

impl Default for TenantState {
    fn default() -> Self {
        Self {
            store_id: None,
            name: None,
            time_zone: TimeZoneName::UTC,
            plan_id: None,
            billing_anchor: None,
            phase: Phase::Unsubscribed,
            trial_used: false,
            trial_ends_at: None,
            grace_ends_at: None,
            maintenance_ends_at: None,
            subscription_id: None,
            usage: BTreeMap::new(),
            catalog_version: None,
            external_id: None,
            scheduled_transition: None,
            grants: BTreeMap::new(),
        }
    }
}

impl TenantState {
    pub fn is_registered(&self) -> bool {
        self.store_id.is_some()
    }

    /// The next time-driven transition's deadline, if one is pending: the phase's or a
    /// scheduled plan change's, whichever is first.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let scheduled = self.scheduled_transition.as_ref().map(|s| s.at);
        match (self.phase_deadline(), scheduled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the store's phase ends by itself (a trial, a grace period, maintenance).
    pub fn phase_deadline(&self) -> Option<DateTime<Utc>> {
        match &self.phase {
            Phase::Trialing { ends_at } => Some(*ends_at),
            Phase::Grace { grace_ends_at } => Some(*grace_ends_at),
            Phase::Maintenance { maintenance_ends_at } => Some(*maintenance_ends_at),
            _ => None,
        }
    }

    /// What caused `event`, when it was not the command that decided it: the request that
    /// scheduled the plan change `event` applies or refuses (its correlation id).
    pub fn scheduled_causation(&self, event: &Event) -> Option<&str> {
        let id = match event {
            Event::PlanTransitioned { schedule_id: Some(id), .. }
            | Event::ScheduledTransitionFailed { schedule_id: id, .. } => id,
            _ => return None,
        };
        self.scheduled_transition.as_ref().filter(|s| s.schedule_id == *id).map(|s| s.correlation_id.as_str())
    }

    /// Folds a whole history.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> TenantState {
        events.into_iter().fold(TenantState::default(), evolve)
    }
}

/// Applies one event. Total: every event is a fact already decided, so nothing here can fail.
pub fn evolve(mut state: TenantState, event: &Event) -> TenantState {
    match event {
        Event::StoreRegistered { store_id, name, time_zone, catalog_version } => {
            state.store_id = Some(*store_id);
            state.name = name.clone();
            state.time_zone = *time_zone;
            state.catalog_version = *catalog_version;
        }
        Event::CatalogAdopted { version, .. } => state.catalog_version = Some(*version),
        Event::StoreImported { store_id, tenant, catalog_version, at } => {
            state.store_id = Some(*store_id);
            state.external_id = Some(tenant.external_id.clone());
            state.name = tenant.name.clone();
            state.time_zone = tenant.time_zone;
            state.plan_id = tenant.plan_id.clone();
            state.billing_anchor = tenant.billing_anchor;
            state.trial_used = tenant.trial_used;
            state.trial_ends_at = tenant.trial_ends_at;
            state.grace_ends_at = tenant.grace_ends_at;
            state.maintenance_ends_at = tenant.maintenance_ends_at;
            state.subscription_id = tenant.subscription_id.clone();
            state.catalog_version = *catalog_version;
            // `decide` made sure each status has its date; a missing one reads as "now".
            let subscription_id = tenant.subscription_id.clone();
            state.phase = match tenant.status {
                ImportedStatus::Unsubscribed => Phase::Unsubscribed,
                ImportedStatus::Trialing => Phase::Trialing { ends_at: tenant.trial_ends_at.unwrap_or(*at) },
                ImportedStatus::Grace => Phase::Grace { grace_ends_at: tenant.grace_ends_at.unwrap_or(*at) },
                ImportedStatus::Maintenance => {
                    Phase::Maintenance { maintenance_ends_at: tenant.maintenance_ends_at.unwrap_or(*at) }
                }
                ImportedStatus::Frozen => Phase::Frozen,
                ImportedStatus::Active => Phase::Active { subscription_id },
                ImportedStatus::PastDue => Phase::PastDue { subscription_id },
                ImportedStatus::Canceled => Phase::Canceled { subscription_id },
            };
            // Each window's usage on its first local day: every window starts at a local
            // midnight, so it counts in that window and no earlier one.
            for imported in &tenant.usage {
                let day = local_day(imported.since.unwrap_or(*at), state.time_zone.tz());
                let usage = state.usage.entry(imported.action.clone()).or_default();
                usage.lifetime += imported.used;
                *usage.days.entry(day).or_default() += imported.used;
                usage.prune();
            }
        }
        Event::TrialStarted { plan_id, started_at, ends_at }
        | Event::TrialRestarted { plan_id, started_at, ends_at, .. } => {
            state.plan_id = Some(plan_id.clone());
            state.billing_anchor.get_or_insert(*started_at);
            state.phase = Phase::Trialing { ends_at: *ends_at };
            state.trial_used = true;
            state.trial_ends_at = Some(*ends_at);
            state.grace_ends_at = None;
            state.maintenance_ends_at = None;
        }
        Event::TrialRecorded { ends_at, .. } => {
            state.trial_used = true;
            state.trial_ends_at = Some(*ends_at);
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
            state.billing_anchor.get_or_insert(*grace_ends_at);
            state.phase = Phase::Maintenance { maintenance_ends_at: *maintenance_ends_at };
            state.maintenance_ends_at = Some(*maintenance_ends_at);
        }
        Event::MaintenanceExtended { ends_at, .. } => {
            state.phase = Phase::Maintenance { maintenance_ends_at: *ends_at };
            state.maintenance_ends_at = Some(*ends_at);
        }
        Event::StoreFrozen { .. } => state.phase = Phase::Frozen,
        Event::SubscriptionActivated { plan_id, subscription_id, activated_at, .. } => {
            state.billing_anchor.get_or_insert(*activated_at);
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
        Event::PlanTransitioned { to_plan_id, subscription_id, activates_subscription, at, schedule_id, .. } => {
            if schedule_id.is_some() {
                state.scheduled_transition = None;
            }
            state.plan_id = Some(to_plan_id.clone());
            state.billing_anchor.get_or_insert(*at);
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
        Event::PlanTransitionScheduled {
            schedule_id,
            from_plan_id,
            to_plan_id,
            reason,
            subscription_id,
            metadata,
            by_admin,
            at,
            at_period_end,
            correlation_id,
            ..
        } => {
            state.scheduled_transition = Some(ScheduledTransition {
                schedule_id: *schedule_id,
                from_plan_id: from_plan_id.clone(),
                to_plan_id: to_plan_id.clone(),
                reason: *reason,
                subscription_id: subscription_id.clone(),
                metadata: metadata.clone(),
                by_admin: *by_admin,
                at: *at,
                at_period_end: *at_period_end,
                correlation_id: correlation_id.clone(),
            });
        }
        Event::ScheduledTransitionCanceled { .. } | Event::ScheduledTransitionFailed { .. } => {
            state.scheduled_transition = None;
        }
        Event::QuotaConsumed { action, amount, at, from_grants, .. } => {
            let day = local_day(*at, state.time_zone.tz());
            // The plan's allowance counts what grants did not give.
            let own = amount.get().saturating_sub(from_grants.iter().map(|d| d.amount).sum());
            let usage = state.usage.entry(action.clone()).or_default();
            usage.lifetime += own;
            *usage.days.entry(day).or_default() += own;
            usage.prune();
            for draw in from_grants {
                if let Some(grant) = state.grants.get_mut(&draw.grant_id) {
                    grant.used += draw.amount;
                }
            }
        }
        Event::QuotaRefunded { consumption_id, action, amount, period, consumed_at, from_grants, .. } => {
            let day = local_day(*consumed_at, state.time_zone.tz());
            let own = amount.get().saturating_sub(from_grants.iter().map(|d| d.amount).sum());
            let usage = state.usage.entry(action.clone()).or_default();
            usage.lifetime = usage.lifetime.saturating_sub(own);
            if let Some(used) = usage.days.get_mut(&day) {
                *used = used.saturating_sub(own);
            }
            usage.refunded.insert(*consumption_id, (*period != Period::Lifetime).then_some(day));
            // Back to the grants it came from.
            for draw in from_grants {
                if let Some(grant) = state.grants.get_mut(&draw.grant_id) {
                    grant.used = grant.used.saturating_sub(draw.amount);
                }
            }
        }
        Event::GrantAdded { grant_id, action, amount, expires_at, at, .. } => {
            state.grants.insert(
                *grant_id,
                Grant {
                    action: action.clone(),
                    amount: amount.get(),
                    used: 0,
                    expires_at: *expires_at,
                    added_at: *at,
                    voided: false,
                },
            );
        }
        Event::GrantVoided { grant_id, .. } => {
            if let Some(grant) = state.grants.get_mut(grant_id) {
                grant.voided = true;
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

    #[derive(Deserialize)]
    struct Entry {
        action: ActionName,
        #[serde(flatten)]
        usage: ActionUsage,
    }

    #[derive(Serialize)]
    struct EntryRef<'a> {
        action: &'a ActionName,
        #[serde(flatten)]
        usage: &'a ActionUsage,
    }

    pub fn serialize<S: Serializer>(usage: &BTreeMap<ActionName, ActionUsage>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(usage.iter().map(|(action, usage)| EntryRef { action, usage }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ActionName, ActionUsage>, D::Error> {
        Ok(Vec::<Entry>::deserialize(d)?.into_iter().map(|e| (e.action, e.usage)).collect())
    }
}
