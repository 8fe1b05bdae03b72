//! The rules' refusals: each with a stable code, an HTTP status and a message for people.

use chrono::{DateTime, Utc};

use crate::command::ExtensionKind;
use crate::status::{InternalStatus, SubscriptionStatus};
use crate::values::{InvalidValue, PlanId};

/// A refused access gate, with the body fields the seed's clients expect (SPEC 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRefusal {
    pub code: &'static str,
    pub http_status: u16,
    pub message: &'static str,
    pub subscription_status: SubscriptionStatus,
    pub subscription_tier: Option<String>,
    pub internal_status: InternalStatus,
}

/// Where a refused store can go to fix it.
pub const UPGRADE_URL: &str = "/settings/subscription";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("store not found")]
    StoreNotFound,
    #[error("the store is already registered with another name or time zone")]
    StoreExists,
    #[error("{}", .0.message)]
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
    #[error("{0}")]
    Validation(InvalidValue),
}

impl DomainError {
    /// The stable machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::StoreNotFound => "store_not_found",
            DomainError::StoreExists => "store_exists",
            DomainError::Gate(refusal) => refusal.code,
            DomainError::TrialAlreadyUsed => "trial_already_used",
            DomainError::SubscriptionActive => "subscription_active",
            DomainError::UnknownPlan(_) => "unknown_plan",
            DomainError::PlanNotTrialEligible(_) => "plan_not_trial_eligible",
            DomainError::NotAPaidPlan(_) => "not_a_paid_plan",
            DomainError::UnknownAction(_) => "unknown_action",
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
            DomainError::Validation(_) => "validation_failed",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            DomainError::StoreNotFound | DomainError::ConsumptionNotFound => 404,
            DomainError::Gate(refusal) => refusal.http_status,
            DomainError::StoreExists
            | DomainError::TrialAlreadyUsed
            | DomainError::SubscriptionActive
            | DomainError::PlanMismatch { .. }
            | DomainError::NotInPhase(_)
            | DomainError::NoActiveSubscription
            | DomainError::NotPastDue
            | DomainError::AlreadyRefunded
            | DomainError::RefundWindowClosed => 409,
            DomainError::QuotaExceeded { .. } => 429,
            DomainError::UnknownPlan(_)
            | DomainError::PlanNotTrialEligible(_)
            | DomainError::NotAPaidPlan(_)
            | DomainError::UnknownAction(_)
            | DomainError::InvalidTransition(_)
            | DomainError::InternalTier(_)
            | DomainError::SubscriptionRequired
            | DomainError::Validation(_) => 422,
        }
    }
}
