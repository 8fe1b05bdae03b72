//! Answers and errors.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a store is in its lifecycle (contract §3), as the gates see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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

/// The subscription status the seed's clients read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    None,
    Trial,
    Active,
    PastDue,
    Canceled,
    Expired,
}

/// A warning an allowed answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Warning {
    TrialExpiredGracePeriod,
    PaymentPastDue,
}

/// A quota window's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
    Lifetime,
}

/// One action's quota in its current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub action: String,
    pub period: Period,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub period_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub period_end: Option<DateTime<Utc>>,
    /// The plan's allowance used in the window (what grants gave is not in it).
    pub used: u64,
    /// `null`: unmetered.
    #[schema(required = true)]
    pub limit: Option<u64>,
    /// Of the plan's allowance.
    #[schema(required = true)]
    pub remaining: Option<u64>,
    /// What the store's grants for this action have left, usable once the plan's is used.
    pub granted: u64,
}

/// A grant (`POST /v1/stores/{id}/grants`) and what is left of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    /// Void it with `POST /v1/stores/{id}/grants/{grantId}/void`.
    pub grant_id: Uuid,
    pub action: String,
    pub amount: u64,
    pub used: u64,
    /// What is left to use now (0 once expired or voided).
    pub remaining: u64,
    /// `null`: it does not expire.
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time")]
    pub added_at: DateTime<Utc>,
}

/// `201`: the grant, and the store with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantAnswer {
    pub grant: GrantView,
    pub store: StoreView,
}

/// What a consumption took from one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantDraw {
    pub grant_id: Uuid,
    pub amount: u64,
}

/// `GET /v1/stores/{id}/explain`: the decision on an action, with what it was derived from and
/// the smallest changes that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub store_id: Uuid,
    pub action: String,
    /// The amount the decision is for (default 1).
    pub amount: u64,
    /// When it is decided: the request's `at`, or now.
    #[serde(with = "crate::time")]
    pub at: DateTime<Utc>,
    pub allowed: bool,
    /// The rule that refuses it (`null` if allowed).
    #[schema(required = true)]
    pub refusal: Option<ExplainedRefusal>,
    /// The store as the rules see it then.
    #[schema(required = true)]
    pub plan_id: Option<String>,
    /// The catalog version it is decided under.
    #[schema(required = true)]
    pub catalog_version: Option<i64>,
    pub subscription_status: SubscriptionStatus,
    pub internal_status: InternalStatus,
    #[schema(required = true)]
    pub tier: Option<String>,
    /// The store's next deadline (trial, grace or maintenance end, or a scheduled change).
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub next_deadline: Option<DateTime<Utc>>,
    /// The feature the action requires (`null`: none), which the store's plan must list.
    #[schema(required = true)]
    pub required_feature: Option<String>,
    /// The action's quota then: its window, the plan's limit and use, and what grants have left.
    pub quota: Usage,
    /// The smallest changes that would allow it, each checked against the rules (empty if it is
    /// allowed, or if no change of a plan, a date or an amount would).
    pub would_allow: Vec<Remedy>,
}

/// A refusal's code and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainedRefusal {
    pub error: ErrorCode,
    pub message: String,
}

/// What kind of change a remedy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemedyKind {
    /// The store on `planId` (subscribed to it).
    Plan,
    /// The same request at `at` (its quota window resets then).
    Date,
    /// `amount` more allowance (a grant of it).
    Amount,
}

/// A change that would allow the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Remedy {
    pub change: RemedyKind,
    #[schema(required = true)]
    pub plan_id: Option<String>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub amount: Option<u64>,
    /// For people.
    pub description: String,
}

/// A plan change scheduled for later (`POST /v1/stores/{id}/plan-transitions` with `at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledPlanTransition {
    /// Cancel it with `DELETE /v1/stores/{id}/plan-transitions/{scheduleId}`.
    pub schedule_id: Uuid,
    pub from_plan_id: String,
    pub to_plan_id: String,
    pub reason: crate::TransitionReason,
    #[serde(with = "crate::time")]
    pub at: DateTime<Utc>,
    /// Whether `at` is the end of the billing period, as asked.
    pub at_period_end: bool,
}

/// `202`: the change is scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledTransitionAnswer {
    pub scheduled: ScheduledPlanTransition,
    /// The pending change this one replaced (its `scheduleId`), if there was one.
    #[schema(required = true)]
    pub replaced: Option<Uuid>,
    pub store: StoreView,
}

/// A store's state: plan, tier, statuses derived at the time of the answer, deadlines, usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreView {
    pub store_id: Uuid,
    #[schema(required = true)]
    pub name: Option<String>,
    pub time_zone: String,
    #[schema(required = true)]
    pub plan_id: Option<String>,
    #[schema(required = true)]
    pub tier: Option<String>,
    pub subscription_status: SubscriptionStatus,
    pub internal_status: InternalStatus,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub trial_ends_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub grace_ends_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub maintenance_ends_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub next_deadline: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub subscription_id: Option<String>,
    pub trial_used: bool,
    pub features: Vec<String>,
    /// The ledger's catalog version the store is decided under (`GET /v1/catalog/versions`):
    /// the one in force when it registered, until a later version reaches it or it changes
    /// plan. `null` on a node deciding under rules that are not the ledger's.
    #[schema(required = true, minimum = 1)]
    pub catalog_version: Option<i64>,
    /// The store's id in the system it was imported from (`planledger import`); `null` for a
    /// store registered here.
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// The plan change scheduled for later, if one is pending.
    #[schema(required = true)]
    pub scheduled_plan_transition: Option<ScheduledPlanTransition>,
    /// The grants that can still be used (not voided, not expired, not used up).
    pub grants: Vec<GrantView>,
    /// The store's stream version: send it as `If-Match` to make a command conditional on it.
    pub version: i64,
    pub warnings: Vec<Warning>,
    pub usage: Vec<Usage>,
    /// What the command wrote in the store's hash chain; on command answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub receipt: Option<Receipt>,
}

/// What a command wrote in its store's hash chain (docs/audit-chain.md): each event's id,
/// version and chain hash, and the stream's head after them. Keep it: checked later against a
/// signed digest (`GET /v1/stores/{id}/proof`), it shows the ledger still holds what it
/// answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// The events the command recorded, in order; none if it changed nothing.
    pub events: Vec<ReceiptEvent>,
    /// The store's stream version `head` is the hash of.
    pub version: i64,
    /// The chain hash of the event at `version`: 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub head: String,
}

/// One event of a [`Receipt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptEvent {
    pub event_id: Uuid,
    pub version: i64,
    /// The event's chain hash: 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

/// The answer to `POST /v1/stores/{id}/trial`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialAnswer {
    #[serde(flatten)]
    pub store: StoreView,
    /// The trial was already running: nothing changed (200, not 201).
    pub already_active: bool,
}

/// The answer to `GET /v1/stores/{id}/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateAt {
    #[serde(flatten)]
    pub store: StoreView,
    /// The time the statuses are derived at.
    #[serde(with = "crate::time")]
    pub as_of: DateTime<Utc>,
}

/// The answer to `POST /v1/stores/{id}/quota/consume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumed {
    pub allowed: bool,
    /// Refund with this id.
    pub consumption_id: Uuid,
    pub action: String,
    /// Used in the window, this consumption included.
    pub used: u64,
    #[schema(required = true)]
    pub limit: Option<u64>,
    #[schema(required = true)]
    pub remaining: Option<u64>,
    pub period: Period,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub period_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub period_end: Option<DateTime<Utc>>,
    pub warnings: Vec<Warning>,
    /// What it took from grants once the plan's allowance was used (`used` counts the rest).
    pub from_grants: Vec<GrantDraw>,
    /// What the command wrote in the store's hash chain; on command answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub receipt: Option<Receipt>,
}

/// The answer to `POST /v1/stores/{id}/quota/refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refunded {
    pub refunded: bool,
    pub consumption_id: Uuid,
    pub action: String,
    pub amount: u64,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub period_start: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub period_end: Option<DateTime<Utc>>,
    /// What the command wrote in the store's hash chain; on command answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub receipt: Option<Receipt>,
}

/// The answer to `POST /v1/stores/{id}/authorize` when the gate allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorized {
    pub allowed: bool,
    pub internal_status: InternalStatus,
    pub warnings: Vec<Warning>,
}

/// One page of a list. `nextCursor` is `null` on the last page; otherwise pass it as `cursor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// One recorded event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub stream_id: String,
    pub version: i64,
    pub global_position: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i32,
    #[schema(value_type = Object)]
    pub data: Value,
    pub correlation_id: String,
    #[schema(required = true)]
    pub causation_id: Option<String>,
    #[schema(required = true)]
    pub idempotency_key: Option<String>,
    pub actor: String,
    pub catalog_fingerprint: String,
    #[serde(with = "crate::time")]
    pub recorded_at: DateTime<Utc>,
    /// The event's link in its stream's hash chain: SHA-256 of the hash before it and its
    /// canonical form (docs/audit-chain.md), 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

/// One row of the audit view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub store_id: String,
    pub version: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub correlation_id: String,
    pub actor: String,
    #[serde(with = "crate::time")]
    pub recorded_at: DateTime<Utc>,
    /// For people.
    pub summary: String,
}

/// What became of a command, in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    Accepted,
    Refused,
    /// A retry answered with the first answer to its `Idempotency-Key`.
    Replayed,
    /// The commit's outcome could not be learned (`outcome_unknown`).
    Unknown,
    Failed,
}

/// One command of the command journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    pub store_id: String,
    pub kind: String,
    pub outcome: CommandOutcome,
    #[schema(required = true)]
    pub error_code: Option<String>,
    pub correlation_id: String,
    pub actor: String,
    #[schema(required = true)]
    pub idempotency_key: Option<String>,
    pub duration_us: i64,
    #[serde(with = "crate::time")]
    pub recorded_at: DateTime<Utc>,
}

/// One store's result in a bulk extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionResult {
    pub store_id: Uuid,
    /// The status this store's command alone would have been answered with.
    pub status: u16,
    pub ok: bool,
    #[schema(required = true)]
    pub error: Option<ErrorCode>,
}

/// The answer to `POST /v1/admin/stores/extensions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionResults {
    pub results: Vec<ExtensionResult>,
}

/// A read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadModelName {
    TenantState,
    AuditLog,
}

/// A rebuild's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RebuildState {
    Running,
    Done,
    Failed,
}

/// A rebuild started by this process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebuildJob {
    pub name: ReadModelName,
    pub state: RebuildState,
    pub phase: String,
    pub events_done: u64,
    pub events_total: u64,
    pub events_per_second: f64,
    pub elapsed_seconds: f64,
    /// The generation it built, once done.
    #[schema(required = true)]
    pub generation: Option<i64>,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// `GET /v1/admin/projections/{name}/rebuild`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadModelStatus {
    pub name: ReadModelName,
    /// The live generation.
    #[schema(required = true)]
    pub generation: Option<i64>,
    #[schema(required = true)]
    pub catalog_fingerprint: Option<String>,
    /// Built under another catalog: a rebuild is due.
    pub stale: bool,
    #[schema(required = true)]
    pub last_rebuild: Option<RebuildJob>,
}

/// The test clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClockReading {
    #[serde(with = "crate::time")]
    pub now: DateTime<Utc>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /readyz`: 200 when ready, 503 when not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `database`, `databaseRole` (`primary`, `standby` or `read-only`: ready only on a
    /// primary), `migrations`, `staleReadModels`, `auditProjector`, `deadlineWorker`.
    #[schema(value_type = Object)]
    pub checks: Map<String, Value>,
}

/// Every error code the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // The request.
    MalformedJson,
    ValidationFailed,
    PayloadTooLarge,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    IdempotencyKeyReused,
    /// The request's body did not arrive in time (a pause between its parts, or the whole
    /// request, took too long).
    RequestTimeout,
    /// Too many failed authentications from this source lately: wait `Retry-After` seconds.
    TooManyAttempts,
    /// The server holds as many long polls of `GET /v1/events` as it is configured to: retry
    /// after `Retry-After` seconds, or poll without `wait`.
    TooManyLongPolls,
    /// This address holds as many connections as one address may (answered, as the connection
    /// is closed, with `503` and `Retry-After`).
    TooManyConnections,
    // The store and its rules.
    StoreNotFound,
    StoreExists,
    NoSubscription,
    MaintenanceNoGrowth,
    AccountFrozen,
    SubscriptionCanceled,
    /// 403: the action requires a feature (`feature`) the store's plan does not list.
    FeatureNotInPlan,
    TrialAlreadyUsed,
    SubscriptionActive,
    UnknownPlan,
    PlanNotTrialEligible,
    NotAPaidPlan,
    UnknownAction,
    /// 422: no plan of the catalog lists this feature.
    UnknownFeature,
    PlanMismatch,
    InvalidTransition,
    InternalTier,
    SubscriptionRequired,
    QuotaExceeded,
    NotTrialing,
    NotInGrace,
    NotInMaintenance,
    NoActiveSubscription,
    NotPastDue,
    ConsumptionNotFound,
    /// 404: the store has no pending scheduled plan change with this id (it was applied,
    /// refused when due, canceled or replaced).
    ScheduleNotFound,
    /// 404: the store has no grant with this id that is not voided.
    GrantNotFound,
    AlreadyRefunded,
    RefundWindowClosed,
    VersionMismatch,
    // Stripe's webhooks.
    InvalidSignature,
    NotAStripeEvent,
    StripeNotConfigured,
    NotRetryable,
    // The feed.
    /// `GET /v1/events`: the cursor names an event the log does not hold. The log moved back
    /// under the follower (a failover to a standby that lacked its last events) or the cursor
    /// is from another log; `head` says where the log ends now. See docs/high-availability.md.
    CursorNotInLog,
    // Audit.
    /// 404: no signed digest has this id (or none has been made: `POST /v1/ledger/digests`).
    DigestNotFound,
    /// 404: the store had no events when the digest was made.
    NotInDigest,
    /// 409: the version asked for was written after the digest; prove it against a later one.
    NotYetDigested,
    /// 409: this server has no key to sign digests with (`PLANLEDGER_DIGEST_KEY`).
    DigestKeyMissing,
    // The ledger.
    ConcurrencyConflict,
    StorageUnavailable,
    /// The server behind the database URL is a standby, or refuses writes (a failover is under
    /// way, or the address moved to a standby): retry after `Retry-After` seconds, as for
    /// `storage_unavailable`; `/readyz` says not ready meanwhile.
    DatabaseNotPrimary,
    OutcomeUnknown,
    Internal,
}

/// A field an error carries beside `error`, `message` and `correlationId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorField {
    /// Its name in `ErrorBody`.
    pub name: &'static str,
    /// Whether every error of the code carries it (`resetsAt` is absent for a lifetime quota).
    pub always: bool,
    /// Whether it may be `null` when present (`subscriptionTier`, for a store without a tier).
    pub nullable: bool,
}

const fn field(name: &'static str) -> ErrorField {
    ErrorField { name, always: true, nullable: false }
}

impl ErrorCode {
    /// The fields an error of this code carries. The document's error union is built from this
    /// table, and a test renders every refusal against it.
    pub fn fields(self) -> &'static [ErrorField] {
        const TIER: ErrorField = ErrorField { name: "subscriptionTier", always: true, nullable: true };
        const GATE: &[ErrorField] = &[field("subscriptionStatus"), TIER, field("internalStatus"), field("upgradeUrl")];
        const FEATURE: &[ErrorField] =
            &[field("subscriptionStatus"), TIER, field("internalStatus"), field("upgradeUrl"), field("feature")];
        const QUOTA: &[ErrorField] =
            &[field("limit"), field("used"), ErrorField { name: "resetsAt", always: false, nullable: false }];
        const FIELD: &[ErrorField] = &[field("field")];
        const PLAN: &[ErrorField] = &[field("currentPlanId")];
        const VERSION: &[ErrorField] = &[field("currentVersion")];
        const HEAD: &[ErrorField] = &[field("head")];
        match self {
            ErrorCode::ValidationFailed => FIELD,
            ErrorCode::QuotaExceeded => QUOTA,
            ErrorCode::PlanMismatch => PLAN,
            ErrorCode::VersionMismatch => VERSION,
            ErrorCode::CursorNotInLog => HEAD,
            ErrorCode::NoSubscription
            | ErrorCode::MaintenanceNoGrowth
            | ErrorCode::AccountFrozen
            | ErrorCode::SubscriptionCanceled => GATE,
            ErrorCode::FeatureNotInPlan => FEATURE,
            _ => &[],
        }
    }

    /// Every code, in the order the document lists them.
    pub fn all() -> Vec<ErrorCode> {
        match serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema()) {
            Ok(schema) => schema["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|code| serde_json::from_value(code.clone()).ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Every error: a stable `error` code, a `message` for people, the request's correlation id,
/// and the fields of the rule that refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"error": "quota_exceeded", "message": "quota exceeded: 10 of 10 used", "correlationId": "0193a8d2-7c4e-7b1a-9d0e-2f4c5b6a7d8e", "limit": 10, "used": 10, "resetsAt": "2026-04-01T00:00:00.000000Z"}))]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
    pub correlation_id: String,
    /// `validation_failed`: the field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `quota_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// `quota_exceeded`: used before this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// `quota_exceeded`: when the window resets (absent for a lifetime quota).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::time::option")]
    pub resets_at: Option<DateTime<Utc>>,
    /// `plan_mismatch`: the store's plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_plan_id: Option<String>,
    /// `version_mismatch`: the store's stream version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    /// `cursor_not_in_log`: the cursor of the log's last event now (`0-0` if it is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Gate refusals (402, 403): the fields of contract §4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_status: Option<SubscriptionStatus>,
    /// The store's tier; `null` when it has none (present on every gate refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub subscription_tier: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_status: Option<InternalStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_url: Option<String>,
    /// `feature_not_in_plan`: the feature the action requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, message: impl Into<String>, correlation_id: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
            correlation_id: correlation_id.into(),
            field: None,
            limit: None,
            used: None,
            resets_at: None,
            current_plan_id: None,
            current_version: None,
            head: None,
            subscription_status: None,
            subscription_tier: None,
            internal_status: None,
            upgrade_url: None,
            feature: None,
        }
    }
}

/// `POST /v1/webhooks/stripe`: the event is stored (once) and will be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StripeReceipt {
    pub received: bool,
    pub event_id: String,
    /// Stripe delivered this event before: nothing was done again.
    pub duplicate: bool,
}

/// What became of a Stripe event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StripeEventStatus {
    /// Stored, not applied yet.
    Received,
    /// Applied: the store is in the state the event says.
    Applied,
    /// Not an event planledger applies.
    Ignored,
    /// Older than the newest event applied to its subscription.
    Stale,
    /// Cannot be applied as it is (see `detail`); waits for a retry.
    Parked,
    /// Applying it failed; it is retried by itself at `nextAttemptAt`.
    Failed,
}

/// One received Stripe event (`GET /v1/admin/webhooks/stripe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StripeEventView {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// When Stripe created it.
    #[serde(with = "crate::time")]
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub status: StripeEventStatus,
    /// What applying it did, why it was parked or ignored, or the last error.
    #[schema(required = true)]
    pub detail: Option<String>,
    #[schema(required = true)]
    pub store_id: Option<String>,
    #[schema(required = true)]
    pub subscription_id: Option<String>,
    pub attempts: i64,
    /// How many times Stripe delivered it.
    pub deliveries: i64,
    #[serde(with = "crate::time")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub applied_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A registered webhook endpoint. Its secret is shown once, when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    /// `ep_` and 32 hex digits.
    pub id: String,
    pub url: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub kinds: Vec<crate::NotificationKind>,
    /// For `ledger.event`; `null`: every type.
    #[schema(required = true)]
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    /// Why it was disabled (by an operator, or after failing for days).
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// Since when every attempt to it has failed; `null` while it answers.
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(with = "crate::time")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time")]
    pub updated_at: DateTime<Utc>,
}

/// A new endpoint and its signing secret, which no later answer shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhookEndpoint {
    pub endpoint: WebhookEndpoint,
    /// Standard Webhooks' `whsec_...` secret: verify deliveries with it.
    pub secret: String,
}

/// The endpoints, in the order registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoints {
    pub items: Vec<WebhookEndpoint>,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDeliveryStatus {
    /// Waiting for its time, its turn (its store's earlier deliveries) or its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Not sent: the warning no longer applied when it was due.
    Skipped,
    /// Every attempt failed for the whole retry period (3 days).
    Failed,
}

/// One notification for one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// `dlv_` and 32 hex digits.
    pub id: String,
    pub endpoint_id: String,
    /// The notification's id: the `webhook-id` header, the same on every attempt.
    pub notification_id: String,
    pub kind: crate::NotificationKind,
    pub store_id: String,
    pub status: WebhookDeliveryStatus,
    #[serde(with = "crate::time")]
    pub due_at: DateTime<Utc>,
    pub attempts: i64,
    /// While pending.
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_status_code: Option<i64>,
    /// The last attempt's error, or why it was skipped.
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[serde(with = "crate::time::option")]
    #[schema(required = true)]
    pub settled_at: Option<DateTime<Utc>>,
    /// The body delivered, byte for byte the same on every attempt.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    pub attempt: i64,
    #[serde(with = "crate::time")]
    pub at: DateTime<Utc>,
    /// `null` when no answer came (refused, timed out).
    #[schema(required = true)]
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// A delivery with every attempt made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryDetail {
    pub delivery: WebhookDelivery,
    pub attempt_log: Vec<WebhookAttempt>,
}

/// `GET /v1/events`: events of the whole log in its gap-safe order. The list shape of every
/// list (`items`, `nextCursor`), except that a feed has no last page: `nextCursor` is never null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventFeed {
    pub items: Vec<EventEnvelope>,
    /// Pass it as `after` to read on: after the last event returned, or past the events the
    /// `types` filter left out. The same on every node.
    pub next_cursor: String,
}

/// One published version of the catalog (`GET /v1/catalog/versions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogVersion {
    /// 1, 2, ...: versions are never changed; a rule change is a new version.
    pub version: i64,
    /// The hash of the rules: every event records the fingerprint it was decided under.
    pub fingerprint: String,
    /// The file it was published from.
    pub source_name: String,
    pub author: String,
    #[schema(required = true)]
    pub reason: Option<String>,
    /// From when it is in force.
    #[serde(with = "crate::time")]
    pub effective_at: DateTime<Utc>,
    #[serde(with = "crate::time")]
    pub published_at: DateTime<Utc>,
    /// When it reaches the stores registered under an earlier version: at its effective time,
    /// at each store's next month boundary, or never (they keep their version until they
    /// change plan). Stores registered after its effective time are registered under it.
    pub existing_stores: ExistingStores,
    /// The newest version whose effective time has come: the one a store registered now gets.
    pub in_force: bool,
}

/// When a catalog version reaches the stores registered under an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExistingStores {
    EffectiveTime,
    NextPeriod,
    Never,
}

/// `GET /v1/catalog`: the rules this node decides under, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogView {
    /// The ledger's version number of these rules (see `GET /v1/catalog/versions`).
    pub version: i64,
    pub fingerprint: String,
    pub default_trial_plan: String,
    pub lifecycle: CatalogLifecycle,
    pub plans: Vec<CatalogPlan>,
    pub actions: Vec<CatalogAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogLifecycle {
    pub trial_days: i64,
    pub grace_days: i64,
    pub maintenance_days: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogPlan {
    pub id: String,
    pub tier: String,
    /// `trial`, `paid` or `internal` (never chosen by a client).
    pub kind: String,
    pub trial_eligible: bool,
    pub features: Vec<String>,
    /// `calendar` months in the store's time zone, or `subscription` months from the plan's start.
    pub anchor: String,
    /// The metered actions; an action not listed is unmetered.
    pub limits: Vec<CatalogLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogLimit {
    pub action: String,
    pub limit: u64,
    pub period: Period,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogAction {
    pub name: String,
    /// `growth`, `update` or `read`: how the status gates treat it.
    pub kind: String,
    /// A feature the store's plan must list, else `403 feature_not_in_plan`.
    #[schema(required = true)]
    pub requires: Option<String>,
}

/// `POST /v1/admin/catalog/preview` and `planledger catalog preview --json`: what a draft
/// catalog would change, decided again over the history (nothing is written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogPreview {
    pub draft_fingerprint: String,
    /// The rules in force it is compared with.
    pub current_fingerprint: String,
    pub stores_examined: u64,
    pub consumptions_examined: u64,
    /// Refused consumptions decided again: those the command journal still holds.
    pub refusals_examined: u64,
    /// Consumptions the ledger accepted that the draft would refuse, over every store.
    pub would_refuse: u64,
    /// Consumptions the ledger refused that the draft would allow, over every store.
    pub would_allow: u64,
    /// Stores on a plan the draft does not have: the draft cannot decide for them.
    pub plans_missing: u64,
    /// The stores the draft changes.
    pub stores: Vec<CatalogPreviewStore>,
}

/// One store in a catalog preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogPreviewStore {
    pub store_id: Uuid,
    /// The store's plan, if the draft does not have it.
    #[schema(required = true)]
    pub plan_missing: Option<String>,
    pub status_now: PreviewStatus,
    pub status_under_draft: PreviewStatus,
    pub would_refuse: Vec<PreviewRefusal>,
    pub would_allow: Vec<PreviewAllowance>,
}

/// A consumption the ledger refused that the draft would allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewAllowance {
    /// When it was refused.
    #[serde(with = "crate::time")]
    pub at: DateTime<Utc>,
    pub action: String,
    pub amount: u64,
    /// The code the ledger refused it with.
    pub refused_with: String,
    pub correlation_id: String,
}

/// A store's status and plan in a preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStatus {
    pub internal_status: String,
    #[schema(required = true)]
    pub plan_id: Option<String>,
}

/// A consumption the draft would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewRefusal {
    /// The store's stream version of the consumption.
    pub version: i64,
    #[serde(with = "crate::time")]
    pub at: DateTime<Utc>,
    pub action: String,
    pub amount: u64,
    /// The code the draft would refuse it with (`quota_exceeded`, `feature_not_in_plan`, ...).
    pub error: String,
    pub correlation_id: String,
}
