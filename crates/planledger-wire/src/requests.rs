//! Request bodies. Unknown fields are refused (422 naming the field); every constraint the
//! server enforces is stated on the field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/stores`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"storeId": "6f1c2a44-1d1e-4c6a-9f57-3f1f0c7e2b10", "name": "Corner Shop", "timeZone": "Europe/Paris"}))]
pub struct RegisterStore {
    /// The store's id. Without it, a request with an `Idempotency-Key` gets an id derived from
    /// the caller and the key (the same for every retry); one without gets a new id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    /// An IANA time zone name; quota windows start at its local midnight. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// `POST /v1/stores/{id}/trial`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"planId": "free_trial", "days": 14}))]
pub struct StartTrial {
    /// A trial-eligible plan; default the catalog's trial plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub plan_id: Option<String>,
    /// Default the catalog's trial length.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integer::option::deserialize"
    )]
    #[schema(minimum = 1, maximum = 3650)]
    pub days: Option<i64>,
    /// Start a trial again after one was used (admin only; needs `reason`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_reset: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 500, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub reason: Option<String>,
}

/// `POST /v1/stores/{id}/subscription`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"planId": "professional", "subscriptionId": "sub_1QfXo2"}))]
pub struct ActivateSubscription {
    /// A paid plan.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub plan_id: String,
    /// The payment provider's subscription id.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub subscription_id: String,
}

/// The body of a command that takes no fields (`{}` or none at all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// Why a plan changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    Upgrade,
    Downgrade,
    Admin,
    Migration,
}

/// `POST /v1/stores/{id}/plan-transitions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"fromPlanId": "starter", "toPlanId": "professional", "reason": "upgrade", "subscriptionId": "sub_1QfXo2"}))]
pub struct TransitionPlan {
    /// The plan the caller believes the store is on (409 `plan_mismatch` if it moved).
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub from_plan_id: String,
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub to_plan_id: String,
    pub reason: TransitionReason,
    /// Required for a paid plan, unless an admin makes the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")]
    pub subscription_id: Option<String>,
    /// Kept with the event: up to 16 fields of text (no control characters, up to 200), number,
    /// boolean or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Schedule the change instead of making it now: a time (RFC 3339, later than now), or
    /// `period_end`, the end of the store's current billing period (its monthly quotas'
    /// window). One change is pending per store; a new one replaces it (answered with
    /// `replaced`). Applied at its time by the deadline worker, or refused then (recorded as
    /// `ScheduledTransitionFailed`) if the store's state no longer allows it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "period_end")]
    pub at: Option<String>,
}

/// `period_end` in a plan transition's `at`.
pub const PERIOD_END: &str = "period_end";

/// `POST /v1/stores/{id}/authorize`: may the store do `action` now, or use `feature`? Exactly
/// one of the two (the document states it as a `oneOf`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"action": "create_article"}))]
pub struct Authorize {
    /// An action of the catalog: its status gate, and the feature it requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub action: Option<String>,
    /// A feature some plan lists: whether the store's plan lists it (and the store may read).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub feature: Option<String>,
}

impl Authorize {
    pub fn action(action: impl Into<String>) -> Self {
        Self { action: Some(action.into()), feature: None }
    }

    pub fn feature(feature: impl Into<String>) -> Self {
        Self { action: None, feature: Some(feature.into()) }
    }
}

/// A field that may be left out but, when given, is a string (`null` is refused).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

/// `POST /v1/stores/{id}/quota/consume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"action": "create_article", "amount": 3}))]
pub struct Consume {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub action: String,
    /// Default 1.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integer::option::deserialize"
    )]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub amount: Option<i64>,
}

/// `POST /v1/stores/{id}/grants`: allowance on top of the plan's for one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"action": "create_article", "amount": 50, "expiresAt": "2026-04-01T00:00:00Z", "reason": "launch campaign, ticket 4411"}))]
pub struct AddGrant {
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub action: String,
    #[serde(deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub amount: i64,
    /// When what is left of it lapses (later than now); without it, it lasts until used or
    /// voided.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present_time")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Why, for the audit.
    #[schema(min_length = 1, max_length = 500, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub reason: String,
}

/// `POST /v1/stores/{id}/grants/{grantId}/void`: withdraw what is left of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"reason": "granted twice by mistake"}))]
pub struct VoidGrant {
    #[schema(min_length = 1, max_length = 500, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub reason: String,
}

/// A time that may be left out but, when given, is an RFC 3339 time (`null` is refused).
fn present_time<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    crate::time::deserialize(deserializer).map(Some)
}

/// `POST /v1/stores/{id}/quota/refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Refund {
    /// The `consumptionId` of a consumption of this store.
    pub consumption_id: Uuid,
}

/// Which deadline an extension moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionKind {
    Trial,
    Grace,
    Maintenance,
}

/// `POST /v1/admin/stores/extensions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"storeIds": ["6f1c2a44-1d1e-4c6a-9f57-3f1f0c7e2b10"], "kind": "trial", "days": 7, "reason": "support ticket 4411"}))]
pub struct Extensions {
    /// 1 to 1,000 store ids; a store listed more than once is extended once, and answered once,
    /// where it is first listed.
    #[schema(min_items = 1, max_items = 1000)]
    pub store_ids: Vec<Uuid>,
    pub kind: ExtensionKind,
    #[serde(deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 1, maximum = 3650)]
    pub days: i64,
    #[schema(min_length = 1, max_length = 500, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub reason: String,
}

/// `PUT /v1/test-clock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetClock {
    #[serde(with = "crate::time")]
    pub now: DateTime<Utc>,
}

/// The most `POST /v1/test-clock/advance` moves the clock: ten years.
pub const MAX_ADVANCE_SECONDS: i64 = 10 * 366 * 86_400;

/// `POST /v1/test-clock/advance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    #[serde(deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 0, maximum = 316_224_000)]
    pub seconds: i64,
}

/// A kind of notification a webhook endpoint may receive (docs/notifications.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum NotificationKind {
    /// The trial ends soon (the catalog's lead time before, or at once if less remains).
    #[serde(rename = "trial.ending_soon")]
    TrialEndingSoon,
    #[serde(rename = "trial.expired")]
    TrialExpired,
    /// The grace period ends soon.
    #[serde(rename = "grace.ending_soon")]
    GraceEndingSoon,
    #[serde(rename = "store.downgraded_to_maintenance")]
    StoreDowngradedToMaintenance,
    /// A store in maintenance freezes soon (once for each of the catalog's lead times).
    #[serde(rename = "store.freeze_warning")]
    StoreFreezeWarning,
    #[serde(rename = "store.frozen")]
    StoreFrozen,
    /// The subscription became active, past due or canceled.
    #[serde(rename = "subscription.changed")]
    SubscriptionChanged,
    #[serde(rename = "plan.transitioned")]
    PlanTransitioned,
    /// A limited action's window reached a threshold (80 % and 100 % by default).
    #[serde(rename = "quota.threshold")]
    QuotaThreshold,
    /// A grant with something left expires soon (the catalog's lead time before).
    #[serde(rename = "grant.expiring_soon")]
    GrantExpiringSoon,
    /// Every raw event of the ledger (of the endpoint's `eventTypes`, if given).
    #[serde(rename = "ledger.event")]
    LedgerEvent,
}

/// `POST /v1/admin/webhooks/endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"url": "https://crm.internal/hooks/planledger", "kinds": ["trial.ending_soon", "store.frozen"]}))]
pub struct CreateWebhookEndpoint {
    /// Where deliveries are POSTed: an `http` or `https` URL (the served document states its
    /// pattern).
    #[schema(min_length = 8, max_length = 2048)]
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// The notifications it receives.
    /// At most one of each kind (the document states how many there are).
    #[schema(min_items = 1)]
    pub kinds: Vec<NotificationKind>,
    /// For `ledger.event`: the raw event types it receives (`QuotaConsumed`, ...); absent or
    /// empty: every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 32)]
    pub event_types: Option<Vec<String>>,
}

/// `PATCH /v1/admin/webhooks/endpoints/{id}`: the fields given change, the others stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"enabled": true}))]
pub struct UpdateWebhookEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 8, max_length = 2048)]
    pub url: Option<String>,
    /// An empty description removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1)]
    pub kinds: Option<Vec<NotificationKind>>,
    /// An empty list: every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 32)]
    pub event_types: Option<Vec<String>>,
    /// Enabling a disabled endpoint clears its reason; deliveries that failed meanwhile are
    /// retried one by one (`POST .../deliveries/{id}/retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `POST /v1/admin/catalog/preview`: a draft catalog, as the TOML text of a catalog file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreviewCatalog {
    #[schema(min_length = 1, max_length = 60000)]
    pub catalog: String,
}

impl PreviewCatalog {
    /// The longest catalog text a preview takes (the schema's `maxLength`); a body is also at
    /// most 64 KiB.
    pub const MAX_CHARS: usize = 60_000;
}

/// A tenant moving in from another system (`planledger import`: one per NDJSON line, or one CSV
/// row with the same names as columns, contract §13).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"externalId": "clx0k2m1q0000abcd", "name": "Corner Shop", "timeZone": "Europe/Paris", "status": "trialing", "trialEndsAt": "2026-12-12T09:00:00Z", "usage": [{"action": "create_article", "used": 40, "since": "2026-12-01T00:00:00+01:00"}]}))]
pub struct ImportTenant {
    /// The tenant's id where it comes from: any 1 to 255 printable characters. The store's id
    /// is derived from it, so importing it again finds the same store.
    #[schema(min_length = 1, max_length = 255)]
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An IANA time zone name; default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Required for `active` and `past_due`; default the catalog's trial plan for `trialing`
    /// and `grace`, its maintenance plan for `maintenance` and `frozen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// `unsubscribed`, `trialing` (needs `trialEndsAt`), `grace` (needs `graceEndsAt`),
    /// `maintenance` (needs `maintenanceEndsAt`), `frozen`, `active`, `past_due` (both need
    /// `subscriptionId`), `canceled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_ends_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ends_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_ends_at: Option<DateTime<Utc>>,
    /// Whether the tenant ever had a trial; implied by the statuses a trial leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_used: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// When its billing months start, for plans counted from the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_anchor: Option<DateTime<Utc>>,
    /// Usage in the current windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<ImportUsage>,
}

/// An action's usage in its current window, for an imported tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImportUsage {
    pub action: String,
    #[schema(minimum = 0)]
    pub used: u64,
    /// When the window it was used in started (the month's first day, the anchored month's
    /// start, ...); leave it out for a lifetime count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}
