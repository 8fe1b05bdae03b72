//! The rules' refusals: each with a stable code and a message for people. How a refusal is
//! carried to a caller (an HTTP status, a body) is the edge's business, not the rules'.

use chrono::{DateTime, Utc};

use crate::command::ExtensionKind;
use crate::status::{InternalStatus, SubscriptionStatus};
use crate::values::{InvalidValue, PlanId};

/// Why a gate refused (contract §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateReason {
    /// No trial and no subscription.
    NoSubscription,
    /// In maintenance: may update, not grow.
    MaintenanceNoGrowth,
    /// Frozen: read-only.
    AccountFrozen,
    /// Canceled: read-only.
    SubscriptionCanceled,
    /// The action needs a feature (`requires` in the catalog) that the store's plan does not list.
    FeatureNotInPlan,
}

impl GateReason {
    pub const ALL: [GateReason; 5] = [
        Self::NoSubscription,
        Self::MaintenanceNoGrowth,
        Self::AccountFrozen,
        Self::SubscriptionCanceled,
        Self::FeatureNotInPlan,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::NoSubscription => "no_subscription",
            Self::MaintenanceNoGrowth => "maintenance_no_growth",
            Self::AccountFrozen => "account_frozen",
            Self::SubscriptionCanceled => "subscription_canceled",
            Self::FeatureNotInPlan => "feature_not_in_plan",
        }
    }

    /// What the store's people read.
    pub fn message(self) -> &'static str {
        match self {
            Self::NoSubscription => "This store has no trial or subscription. Start a trial or subscribe to continue.",
            Self::MaintenanceNoGrowth => "Your trial has ended and your account is in maintenance mode: you can update what you have, but not add anything new. Upgrade to grow again.",
            Self::AccountFrozen => "Your account is in read-only mode. Your storefront and directory listing remain visible, but you cannot make changes. Please upgrade to regain full access.",
            Self::SubscriptionCanceled => "Your subscription was canceled, so your account is read-only. Subscribe again or contact support to make changes.",
            Self::FeatureNotInPlan => "Your plan does not include this feature. Upgrade to a plan that does to use it.",
        }
    }
}

/// A refused access gate, with the fields the seed's clients expect (contract §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRefusal {
    pub reason: GateReason,
    pub subscription_status: SubscriptionStatus,
    pub subscription_tier: Option<String>,
    pub internal_status: InternalStatus,
    /// `FeatureNotInPlan`: the feature the action requires.
    pub feature: Option<String>,
}

/// Where a refused store can go to fix it.
pub const UPGRADE_URL: &str = "/settings/subscription";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("store not found")]
    StoreNotFound,
    #[error("the store is already registered with another name or time zone")]
    StoreExists,
    #[error("{}", .0.reason.message())]
    Gate(GateRefusal),
    #[error("a trial was already used on this store; an admin can restart it with forceReset and a reason")]
    TrialAlreadyUsed,
    #[error("the store has a paid subscription that is active or past due")]
    SubscriptionActive,
    #[error("plan {0} does not exist")]
    UnknownPlan(PlanId),
    #[error("plan {0} is not eligible for a trial")]
    PlanNotTrialEligible(PlanId),
    #[error("plan {0} is not a paid plan")]
    NotAPaidPlan(PlanId),
    #[error("action {0} does not exist")]
    UnknownAction(String),
    #[error("no plan of the catalog lists the feature {0}")]
    UnknownFeature(String),
    #[error("the store is on plan {current}, not {expected}: it changed since the caller looked")]
    PlanMismatch { expected: PlanId, current: String },
    #[error("{0}")]
    InvalidTransition(&'static str),
    #[error("plan {0} is internal and cannot be chosen")]
    InternalTier(PlanId),
    #[error("a paid plan needs a subscriptionId")]
    SubscriptionRequired,
    #[error("quota exceeded: {used} of {limit} used")]
    QuotaExceeded { limit: u64, used: u64, resets_at: Option<DateTime<Utc>> },
    #[error("the store is not {}", match .0 { ExtensionKind::Trial => "trialing", ExtensionKind::Grace => "in its grace period", ExtensionKind::Maintenance => "in maintenance" })]
    NotInPhase(ExtensionKind),
    #[error("the store has no active subscription")]
    NoActiveSubscription,
    #[error("the subscription is not past due")]
    NotPastDue,
    #[error("no consumption with this id on this store")]
    ConsumptionNotFound,
    #[error("this consumption was already refunded")]
    AlreadyRefunded,
    #[error("this consumption is older than the {} days a refund can reach", crate::state::USAGE_RETAINED_DAYS)]
    RefundWindowClosed,
    #[error("the store has no pending scheduled plan change with this id")]
    ScheduleNotFound,
    #[error("the store has no grant with this id that is not voided")]
    GrantNotFound,
    #[error("{0}")]
    Validation(InvalidValue),
}

impl DomainError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::StoreNotFound => "store_not_found",
            DomainError::StoreExists => "store_exists",
            DomainError::Gate(refusal) => refusal.reason.code(),
            DomainError::TrialAlreadyUsed => "trial_already_used",
            DomainError::SubscriptionActive => "subscription_active",
            DomainError::UnknownPlan(_) => "unknown_plan",
            DomainError::PlanNotTrialEligible(_) => "plan_not_trial_eligible",
            DomainError::NotAPaidPlan(_) => "not_a_paid_plan",
            DomainError::UnknownAction(_) => "unknown_action",
            DomainError::UnknownFeature(_) => "unknown_feature",
            DomainError::PlanMismatch { .. } => "plan_mismatch",
            DomainError::InvalidTransition(_) => "invalid_transition",
            DomainError::InternalTier(_) => "internal_tier",
            DomainError::SubscriptionRequired => "subscription_required",
            DomainError::QuotaExceeded { .. } => "quota_exceeded",
            DomainError::NotInPhase(ExtensionKind::Trial) => "not_trialing",
            DomainError::NotInPhase(ExtensionKind::Grace) => "not_in_grace",
            DomainError::NotInPhase(ExtensionKind::Maintenance) => "not_in_maintenance",
            DomainError::NoActiveSubscription => "no_active_subscription",
            DomainError::NotPastDue => "not_past_due",
            DomainError::ConsumptionNotFound => "consumption_not_found",
            DomainError::AlreadyRefunded => "already_refunded",
            DomainError::RefundWindowClosed => "refund_window_closed",
            DomainError::ScheduleNotFound => "schedule_not_found",
            DomainError::GrantNotFound => "grant_not_found",
            DomainError::Validation(_) => "validation_failed",
        }
    }
}
