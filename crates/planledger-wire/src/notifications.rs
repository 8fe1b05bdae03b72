//! The bodies of the notifications the ledger sends to webhook endpoints (docs/notifications.md),
//! in Standard Webhooks' shape: `{"type", "timestamp", "data"}`.
//!
//! `planledger-notify` builds each body; the OpenAPI document's `webhooks` section is generated
//! from these types, and a test reads every body notify makes into its type here and writes it
//! back unchanged (unknown fields refused), so the published shapes are the delivered ones.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::NotificationKind;

/// The event a notification comes from, so a receiver can find it (and everything its
/// correlation id carries) in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotificationSource {
    pub event_id: Uuid,
    /// The event's version in its store's stream.
    pub version: i64,
    pub correlation_id: String,
    #[serde(with = "crate::time")]
    pub recorded_at: DateTime<Utc>,
}

/// A notification as delivered: its kind, when it was due, and its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification<D> {
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    /// When it was due: at once for facts, the lead time before the deadline for warnings.
    #[serde(with = "crate::time")]
    pub timestamp: DateTime<Utc>,
    pub data: D,
}

/// `trial.ending_soon`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrialEndingSoon {
    pub store_id: String,
    /// The trial's plan; `null` when the warning follows an extension of the trial.
    pub plan_id: Option<String>,
    #[serde(with = "crate::time")]
    pub trial_ends_at: DateTime<Utc>,
    /// The lead time this warning was sent at.
    pub days_before: i64,
    pub source: NotificationSource,
}

/// `trial.expired`: the store is in its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrialExpired {
    pub store_id: String,
    #[serde(with = "crate::time")]
    pub trial_ended_at: DateTime<Utc>,
    #[serde(with = "crate::time")]
    pub grace_ends_at: DateTime<Utc>,
    pub source: NotificationSource,
}

/// `grace.ending_soon`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GraceEndingSoon {
    pub store_id: String,
    #[serde(with = "crate::time")]
    pub grace_ends_at: DateTime<Utc>,
    pub days_before: i64,
    pub source: NotificationSource,
}

/// `store.downgraded_to_maintenance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreDowngradedToMaintenance {
    pub store_id: String,
    #[schema(required = true)]
    pub from_plan_id: Option<String>,
    pub plan_id: String,
    #[serde(with = "crate::time")]
    pub freezes_at: DateTime<Utc>,
    pub source: NotificationSource,
}

/// `store.freeze_warning`, once for each of the catalog's lead times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreFreezeWarning {
    pub store_id: String,
    #[serde(with = "crate::time")]
    pub freezes_at: DateTime<Utc>,
    pub days_before: i64,
    pub source: NotificationSource,
}

/// `store.frozen`: the store is read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreFrozen {
    pub store_id: String,
    #[serde(with = "crate::time")]
    pub maintenance_ended_at: DateTime<Utc>,
    pub source: NotificationSource,
}

/// The subscription's status a `subscription.changed` announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangedSubscriptionStatus {
    Active,
    PastDue,
    Canceled,
}

/// `subscription.changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionChanged {
    pub store_id: String,
    pub status: ChangedSubscriptionStatus,
    #[schema(required = true)]
    pub subscription_id: Option<String>,
    /// On activation: the plan it activated (`null` otherwise).
    pub plan_id: Option<String>,
    /// On activation: the plan before it (`null` if none, or otherwise).
    pub from_plan_id: Option<String>,
    pub source: NotificationSource,
}

/// `plan.transitioned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlanTransitioned {
    pub store_id: String,
    pub from_plan_id: String,
    pub to_plan_id: String,
    pub reason: crate::TransitionReason,
    #[schema(required = true)]
    pub subscription_id: Option<String>,
    pub source: NotificationSource,
}

/// `quota.threshold`: a limited action's window reached `percent` of its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuotaThreshold {
    pub store_id: String,
    pub action: String,
    /// Of the allowance: the plan's `limit` and what the live grants `granted`.
    pub percent: u32,
    /// What was used of the allowance (the plan's part in the window, and of the grants).
    pub used: u64,
    /// The plan's limit.
    pub limit: u64,
    /// What the store's live grants for the action grant on top of it (0: none).
    pub granted: u64,
    pub period: crate::Period,
    /// `null` for a lifetime quota.
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub window_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub window_end: Option<DateTime<Utc>>,
    pub source: NotificationSource,
}

/// `grant.expiring_soon`: a grant expires at `expiresAt` (what is left of it then lapses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrantExpiringSoon {
    pub store_id: String,
    pub grant_id: Uuid,
    pub action: String,
    /// What was granted.
    pub amount: u64,
    #[serde(with = "crate::time")]
    pub expires_at: DateTime<Utc>,
    pub days_before: i64,
    pub source: NotificationSource,
}

/// `ledger.event`: one raw event of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LedgerEvent {
    pub store_id: String,
    /// The event's type (`EventEnvelope.type`).
    pub event_type: String,
    /// The event's data, as `EventEnvelope.data` has it for its type.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    pub source: NotificationSource,
}

/// Reads a delivered body into the type of its kind and writes it back: the body as the
/// document describes it, or why it is not.
pub fn reread(body: &serde_json::Value) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::Error;
    fn again<D: Serialize + for<'de> Deserialize<'de>>(
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(serde_json::from_value::<Notification<D>>(body.clone())?)
    }
    let kind: NotificationKind = serde_json::from_value(body.get("type").cloned().unwrap_or_default())
        .map_err(|e| serde_json::Error::custom(format!("type: {e}")))?;
    match kind {
        NotificationKind::TrialEndingSoon => again::<TrialEndingSoon>(body),
        NotificationKind::TrialExpired => again::<TrialExpired>(body),
        NotificationKind::GraceEndingSoon => again::<GraceEndingSoon>(body),
        NotificationKind::StoreDowngradedToMaintenance => again::<StoreDowngradedToMaintenance>(body),
        NotificationKind::StoreFreezeWarning => again::<StoreFreezeWarning>(body),
        NotificationKind::StoreFrozen => again::<StoreFrozen>(body),
        NotificationKind::SubscriptionChanged => again::<SubscriptionChanged>(body),
        NotificationKind::PlanTransitioned => again::<PlanTransitioned>(body),
        NotificationKind::QuotaThreshold => again::<QuotaThreshold>(body),
        NotificationKind::GrantExpiringSoon => again::<GrantExpiringSoon>(body),
        NotificationKind::LedgerEvent => again::<LedgerEvent>(body),
    }
}
