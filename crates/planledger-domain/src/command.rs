//! Commands: what callers ask the ledger to do. Built from already-parsed values, so the rules
//! never see a malformed plan id, amount or number of days.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::Period;
use crate::event::{Event, TransitionReason};
use crate::values::{
    ActionName, Amount, Days, ExternalId, PlanId, Reason, StoreId, StoreName, SubscriptionId, TimeZoneName,
};

/// A plan transition's metadata is a flat object: at most this many fields,
pub const METADATA_MAX_FIELDS: usize = 8;
/// named by 1 to this many characters (no NUL),
pub const METADATA_MAX_NAME_CHARS: usize = 40;
/// each a number, a boolean, null, or text of at most this many characters (no NUL). Together
/// these keep it under 8 KiB serialized, and every part of the rule is one a JSON Schema states.
pub const METADATA_MAX_TEXT_CHARS: usize = 120;

/// Checks a plan transition's metadata against the rule above.
pub fn validate_metadata(metadata: &Value) -> Result<(), crate::values::InvalidValue> {
    let invalid = || {
        crate::values::InvalidValue::new(
            "metadata",
            "must be an object of at most 8 fields (names of 1 to 40 characters), each text of at most 120 characters, a number, a boolean or null; no NUL characters",
        )
    };
    let fields = metadata.as_object().ok_or_else(invalid)?;
    let text_ok = |s: &str, min: usize, max: usize| (min..=max).contains(&s.chars().count()) && !s.contains('\0');
    let ok = fields.len() <= METADATA_MAX_FIELDS
        && fields.iter().all(|(name, value)| {
            text_ok(name, 1, METADATA_MAX_NAME_CHARS)
                && match value {
                    Value::String(text) => text_ok(text, 0, METADATA_MAX_TEXT_CHARS),
                    Value::Number(_) | Value::Bool(_) | Value::Null => true,
                    Value::Array(_) | Value::Object(_) => false,
                }
        });
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Which deadline an admin extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionKind {
    Trial,
    Grace,
    Maintenance,
}

impl ExtensionKind {
    pub fn parse(s: &str) -> Result<Self, crate::values::InvalidValue> {
        match s {
            "trial" => Ok(Self::Trial),
            "grace" => Ok(Self::Grace),
            "maintenance" => Ok(Self::Maintenance),
            _ => Err(crate::values::InvalidValue::new("kind", "must be one of trial, grace, maintenance")),
        }
    }
}

/// A plan change (contract §6).
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionPlan {
    /// The plan the caller believes the store is on; a mismatch means it decided on stale state.
    pub from_plan_id: PlanId,
    pub to_plan_id: PlanId,
    pub reason: TransitionReason,
    pub subscription_id: Option<SubscriptionId>,
    pub metadata: Option<Value>,
    /// Admins may move a store to a paid plan without a subscription id.
    pub by_admin: bool,
}

/// When a scheduled plan change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleAt {
    /// At this time.
    Time(DateTime<Utc>),
    /// At the end of the store's current billing period: its month window (by its plan's
    /// anchor, in its time zone) that holds the time of the request.
    PeriodEnd,
}

/// A plan change at a later time (Stripe's subscription schedules, a downgrade at period end).
/// One change is pending per store; a new one replaces it.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePlanTransition {
    /// Made by the caller, so that deciding stays deterministic.
    pub schedule_id: Uuid,
    /// The change, as it would be made now (its `fromPlanId` checked now and when due).
    pub change: TransitionPlan,
    pub at: ScheduleAt,
    /// The request's correlation id: the causation of the change when it is applied.
    pub correlation_id: String,
}

/// Where a tenant moving in stood in the system it comes from (contract §13): its status, with
/// the dates that status needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ImportedStatus {
    /// Registered, no trial or subscription.
    Unsubscribed,
    /// On a trial plan until `trialEndsAt`.
    Trialing,
    /// The trial ended; trial limits until `graceEndsAt`.
    Grace,
    /// On the maintenance plan until `maintenanceEndsAt`.
    Maintenance,
    /// Read-only.
    Frozen,
    /// On a paid plan with a subscription.
    Active,
    PastDue,
    Canceled,
}

impl ImportedStatus {
    pub const ALL: [ImportedStatus; 8] = [
        Self::Unsubscribed,
        Self::Trialing,
        Self::Grace,
        Self::Maintenance,
        Self::Frozen,
        Self::Active,
        Self::PastDue,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsubscribed => "unsubscribed",
            Self::Trialing => "trialing",
            Self::Grace => "grace",
            Self::Maintenance => "maintenance",
            Self::Frozen => "frozen",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Result<Self, crate::values::InvalidValue> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            crate::values::InvalidValue::new(
                "status",
                "must be one of unsubscribed, trialing, grace, maintenance, frozen, active, past_due, canceled",
            )
        })
    }
}

/// An action's usage in its current window when a tenant moved in: `used` since `since` (the
/// window's start; none for a lifetime count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportedUsage {
    pub action: ActionName,
    pub used: u64,
    pub since: Option<DateTime<Utc>>,
}

/// Where an imported tenant came from: the file (its name and SHA-256) and line, or the route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportSource {
    pub name: String,
    pub sha256: Option<String>,
    pub line: Option<u64>,
}

/// A tenant moving in from another system, as it stands there (contract §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportedStore {
    pub external_id: ExternalId,
    pub name: Option<StoreName>,
    pub time_zone: TimeZoneName,
    /// The store's plan; none only for an unsubscribed store. Grace keeps the trial's plan;
    /// maintenance and frozen stores are on the catalog's maintenance plan whatever is given.
    pub plan_id: Option<PlanId>,
    pub status: ImportedStatus,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub maintenance_ends_at: Option<DateTime<Utc>>,
    /// Whether the tenant ever had a trial (always, for the statuses a trial leads to).
    pub trial_used: bool,
    pub subscription_id: Option<SubscriptionId>,
    pub customer_id: Option<ExternalId>,
    /// When its billing months start (for plans anchored on the subscription).
    pub billing_anchor: Option<DateTime<Utc>>,
    pub usage: Vec<ImportedUsage>,
    pub source: ImportSource,
}

/// A recorded consumption, as read back from the log, that a refund rolls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumption {
    pub consumption_id: Uuid,
    pub action: ActionName,
    pub amount: Amount,
    pub period: Period,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub consumed_at: DateTime<Utc>,
    /// What it took from grants (the rest from the plan's allowance): a refund gives it back there.
    pub from_grants: Vec<crate::event::GrantDraw>,
}

impl Consumption {
    /// The consumption a `QuotaConsumed` event records; `None` for any other event.
    pub fn from_event(event: &Event) -> Option<Consumption> {
        match event {
            Event::QuotaConsumed {
                consumption_id,
                action,
                amount,
                period,
                period_start,
                period_end,
                at,
                from_grants,
                ..
            } => Some(Consumption {
                consumption_id: *consumption_id,
                action: action.clone(),
                amount: *amount,
                period: *period,
                period_start: *period_start,
                period_end: *period_end,
                consumed_at: *at,
                from_grants: from_grants.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RegisterStore {
        store_id: StoreId,
        name: Option<StoreName>,
        time_zone: Option<TimeZoneName>,
    },
    StartTrial {
        plan_id: Option<PlanId>,
        days: Option<Days>,
        /// An admin's reason to start a trial again after one was used.
        force_reset: Option<Reason>,
    },
    ActivateSubscription {
        plan_id: PlanId,
        subscription_id: SubscriptionId,
    },
    /// The billing provider ran (or runs) a trial on `subscription_id` ending at `ends_at`: a
    /// store that never had a trial gets that one, starting now if it holds nothing and the
    /// trial has not ended, else recorded as used. Either way it can never start a free trial
    /// of its own afterwards. A store that had a trial already is left as it is.
    AdoptTrial {
        subscription_id: SubscriptionId,
        ends_at: DateTime<Utc>,
    },
    MarkPastDue,
    MarkRecovered,
    CancelSubscription,
    TransitionPlan(TransitionPlan),
    /// Allowance on top of the plan's for `action` (support's or sales' one-off): used after the
    /// plan's allowance in the window, earliest expiry first. `grant_id` is made by the caller.
    AddGrant {
        grant_id: Uuid,
        action: ActionName,
        amount: Amount,
        expires_at: Option<DateTime<Utc>>,
        reason: Reason,
    },
    /// Withdraws what is left of a grant.
    VoidGrant {
        grant_id: Uuid,
        reason: Reason,
    },
    /// A plan change at a later time; applied (or refused, with its reason) when it is due.
    SchedulePlanTransition(Box<SchedulePlanTransition>),
    /// Withdraws the pending scheduled change `schedule_id`.
    CancelScheduledTransition {
        schedule_id: Uuid,
    },
    /// `consumption_id` is made by the caller, so that deciding stays deterministic.
    Consume {
        action: ActionName,
        amount: Amount,
        consumption_id: Uuid,
    },
    /// Rolls back the consumption `consumption_id`. The command path looks it up in the store's
    /// own stream: `consumption` is what it found there (`None`: no such consumption).
    Refund {
        consumption_id: Uuid,
        consumption: Option<Consumption>,
    },
    Extend {
        kind: ExtensionKind,
        days: Days,
        reason: Reason,
    },
    /// The deadline worker's command: only the due transitions.
    ApplyDueTransitions,
    /// A tenant moving in (`planledger import`): the store, as it stands, in one event. The
    /// store's id is `StoreId::imported` of its external id.
    ImportStore(Box<ImportedStore>),
}

impl Command {
    /// A short name for journals and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::RegisterStore { .. } => "register_store",
            Command::StartTrial { .. } => "start_trial",
            Command::ActivateSubscription { .. } => "activate_subscription",
            Command::AdoptTrial { .. } => "adopt_trial",
            Command::MarkPastDue => "mark_past_due",
            Command::MarkRecovered => "mark_recovered",
            Command::CancelSubscription => "cancel_subscription",
            Command::TransitionPlan(_) => "transition_plan",
            Command::SchedulePlanTransition(_) => "schedule_plan_transition",
            Command::AddGrant { .. } => "add_grant",
            Command::VoidGrant { .. } => "void_grant",
            Command::CancelScheduledTransition { .. } => "cancel_scheduled_transition",
            Command::Consume { .. } => "consume",
            Command::Refund { .. } => "refund",
            Command::Extend { .. } => "extend",
            Command::ApplyDueTransitions => "apply_due_transitions",
            Command::ImportStore(_) => "import_store",
        }
    }
}
