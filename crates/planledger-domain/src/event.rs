//! Events: the persistence contract of the ledger.
//!
//! An event's type name and its data shape are stored forever. An old event is never rewritten:
//! a shape changes only by a new schema version plus an upcaster in [`Event::from_stored`] that
//! reads the old shape, tested on stored old data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::Period;
use crate::values::{ActionName, Amount, Days, PlanId, Reason, StoreId, StoreName, SubscriptionId, TimeZoneName};

/// Why a plan changed (contract §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    Upgrade,
    Downgrade,
    Admin,
    Migration,
}

impl TransitionReason {
    pub fn parse(s: &str) -> Result<Self, crate::values::InvalidValue> {
        match s {
            "upgrade" => Ok(Self::Upgrade),
            "downgrade" => Ok(Self::Downgrade),
            "admin" => Ok(Self::Admin),
            "migration" => Ok(Self::Migration),
            _ => Err(crate::values::InvalidValue::new("reason", "must be one of upgrade, downgrade, admin, migration")),
        }
    }
}

/// Why a store moved to a later catalog version (see `terms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AdoptionReason {
    /// The version reaches existing stores at its effective time.
    EffectiveTime,
    /// The version reaches existing stores at each store's next period start.
    PeriodStart,
    /// The store changed plan, and a plan change takes the version in force.
    PlanChange,
}

impl AdoptionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AdoptionReason::EffectiveTime => "effective_time",
            AdoptionReason::PeriodStart => "period_start",
            AdoptionReason::PlanChange => "plan_change",
        }
    }
}

/// What one consumption took from one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GrantDraw {
    pub grant_id: Uuid,
    pub amount: u64,
}

/// A store's live grants for one action, summed: what they grant and what is used of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GrantTotals {
    pub amount: u64,
    pub used: u64,
}

/// Every fact the ledger records about a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "data")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    StoreRegistered {
        store_id: StoreId,
        name: Option<StoreName>,
        time_zone: TimeZoneName,
        /// The ledger's catalog version the store was registered under, which it is decided
        /// under until a later version reaches it (`CatalogAdopted`). Absent from stores
        /// registered before versions were kept per store, and from rules that are not the
        /// ledger's (version 0): such a store is on the ledger's first version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(nullable = false))]
        catalog_version: Option<i64>,
    },
    /// A tenant moved in from another system, as it stood there (`planledger import`): the
    /// whole store in one fact, with where it came from.
    #[serde(rename_all = "camelCase")]
    StoreImported {
        store_id: StoreId,
        tenant: Box<crate::command::ImportedStore>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(nullable = false))]
        catalog_version: Option<i64>,
        at: DateTime<Utc>,
    },
    /// A later catalog version reached the store: it is decided under `version` from `at` on.
    #[serde(rename_all = "camelCase")]
    CatalogAdopted {
        version: i64,
        reason: AdoptionReason,
        /// When the version reached the store (its effective time, the store's period start,
        /// or the plan change that moved it).
        at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    TrialStarted { plan_id: PlanId, started_at: DateTime<Utc>, ends_at: DateTime<Utc> },
    /// An admin restarted a used trial (`forceReset`), with a reason.
    #[serde(rename_all = "camelCase")]
    TrialRestarted { plan_id: PlanId, started_at: DateTime<Utc>, ends_at: DateTime<Utc>, reason: Reason },
    /// A trial the billing provider ran, recorded as used without starting one here (the store
    /// held a subscription, or the trial had ended): see `Command::AdoptTrial`.
    #[serde(rename_all = "camelCase")]
    TrialRecorded { subscription_id: SubscriptionId, ends_at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    TrialExtended { days: Days, reason: Reason, previous_ends_at: DateTime<Utc>, ends_at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    TrialExpired { trial_ends_at: DateTime<Utc>, grace_ends_at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    GracePeriodExtended { days: Days, reason: Reason, previous_ends_at: DateTime<Utc>, ends_at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    DowngradedToMaintenance {
        from_plan_id: Option<PlanId>,
        plan_id: PlanId,
        grace_ends_at: DateTime<Utc>,
        maintenance_ends_at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    MaintenanceExtended { days: Days, reason: Reason, previous_ends_at: DateTime<Utc>, ends_at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    StoreFrozen { maintenance_ends_at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    SubscriptionActivated {
        plan_id: PlanId,
        subscription_id: SubscriptionId,
        from_plan_id: Option<PlanId>,
        activated_at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    SubscriptionPastDue { subscription_id: Option<SubscriptionId> },
    #[serde(rename_all = "camelCase")]
    SubscriptionRecovered { subscription_id: Option<SubscriptionId> },
    #[serde(rename_all = "camelCase")]
    SubscriptionCanceled { subscription_id: Option<SubscriptionId> },
    #[serde(rename_all = "camelCase")]
    PlanTransitioned {
        from_plan_id: PlanId,
        to_plan_id: PlanId,
        reason: TransitionReason,
        subscription_id: Option<SubscriptionId>,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
        metadata: Option<Value>,
        /// Whether the store became `active` on a paid plan by this transition: a fact of the
        /// moment, so that replaying under another catalog does not change history.
        activates_subscription: bool,
        at: DateTime<Utc>,
        /// The scheduled change this applies (`PlanTransitionScheduled`), if it was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(nullable = false))]
        schedule_id: Option<Uuid>,
    },
    /// A plan change at a later time (`at`), pending until it is applied (`PlanTransitioned`
    /// with its `scheduleId`), refused when due (`ScheduledTransitionFailed`) or canceled.
    #[serde(rename_all = "camelCase")]
    PlanTransitionScheduled {
        schedule_id: Uuid,
        from_plan_id: PlanId,
        to_plan_id: PlanId,
        reason: TransitionReason,
        subscription_id: Option<SubscriptionId>,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
        metadata: Option<Value>,
        by_admin: bool,
        at: DateTime<Utc>,
        /// Whether `at` is the end of the store's billing period, as asked.
        at_period_end: bool,
        /// The request's correlation id: the applied change's causation.
        correlation_id: String,
        /// The pending change this one replaced.
        replaces: Option<Uuid>,
        /// When it was asked for.
        requested_at: DateTime<Utc>,
    },
    /// The pending scheduled change was withdrawn before it was due.
    #[serde(rename_all = "camelCase")]
    ScheduledTransitionCanceled { schedule_id: Uuid, at: DateTime<Utc> },
    /// The scheduled change came due and the rules refused it then (the store's state no longer
    /// allowed it): `error` is the refusal's code, `message` why.
    #[serde(rename_all = "camelCase")]
    ScheduledTransitionFailed { schedule_id: Uuid, error: String, message: String, at: DateTime<Utc> },
    #[serde(rename_all = "camelCase")]
    QuotaConsumed {
        consumption_id: Uuid,
        action: ActionName,
        amount: Amount,
        period: Period,
        period_start: Option<DateTime<Utc>>,
        period_end: Option<DateTime<Utc>>,
        /// The plan's allowance used in the window after it (what grants gave is not in it).
        used_after: u64,
        /// `None` for an unmetered action.
        limit: Option<u64>,
        /// When it was decided: the local day it counts in (v2; v1 events take `recordedAt`).
        at: DateTime<Utc>,
        /// What it took from grants, once the plan's allowance was used (the rest of `amount`
        /// is the plan's). Absent when none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        from_grants: Vec<GrantDraw>,
        /// The store's grants for the action that were live when it was decided, after it:
        /// what they grant and what is used of them (a fact of the moment, for the usage
        /// thresholds that count grants). Absent when there were none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(nullable = false))]
        grants: Option<GrantTotals>,
    },
    #[serde(rename_all = "camelCase")]
    QuotaRefunded {
        consumption_id: Uuid,
        action: ActionName,
        amount: Amount,
        period: Period,
        period_start: Option<DateTime<Utc>>,
        period_end: Option<DateTime<Utc>>,
        /// When the refunded consumption was decided (v2; v1 events take its `periodStart`).
        consumed_at: DateTime<Utc>,
        /// What goes back to grants (as the consumption took it). Absent when none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        from_grants: Vec<GrantDraw>,
    },
    /// Allowance on top of the plan's, for one action: used after the plan's allowance in the
    /// window, earliest expiry first, until `expiresAt` (`null`: until it is used or voided).
    #[serde(rename_all = "camelCase")]
    GrantAdded {
        grant_id: Uuid,
        action: ActionName,
        amount: Amount,
        expires_at: Option<DateTime<Utc>>,
        reason: Reason,
        at: DateTime<Utc>,
    },
    /// What was left of a grant is withdrawn.
    #[serde(rename_all = "camelCase")]
    GrantVoided { grant_id: Uuid, reason: Reason, at: DateTime<Utc> },
}

/// Why a stored event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read event {event_type} v{schema_version}: {reason}")]
pub struct EventDecodeError {
    pub event_type: String,
    pub schema_version: i32,
    pub reason: String,
}

/// Every event type name, as stored.
pub const EVENT_TYPES: [&str; 24] = [
    "StoreRegistered",
    "StoreImported",
    "CatalogAdopted",
    "TrialStarted",
    "TrialRestarted",
    "TrialRecorded",
    "TrialExtended",
    "TrialExpired",
    "GracePeriodExtended",
    "DowngradedToMaintenance",
    "MaintenanceExtended",
    "StoreFrozen",
    "SubscriptionActivated",
    "SubscriptionPastDue",
    "SubscriptionRecovered",
    "SubscriptionCanceled",
    "PlanTransitioned",
    "PlanTransitionScheduled",
    "ScheduledTransitionCanceled",
    "ScheduledTransitionFailed",
    "QuotaConsumed",
    "QuotaRefunded",
    "GrantAdded",
    "GrantVoided",
];

/// The schema version written for an event type today.
pub fn current_schema_version(event_type: &str) -> i32 {
    match event_type {
        // v2 added timeZone (v1 stores were all on UTC).
        "StoreRegistered" => 2,
        // v2 added the decision time (`at`, `consumedAt`): usage is kept per local day.
        "QuotaConsumed" | "QuotaRefunded" => 2,
        _ => 1,
    }
}

impl Event {
    /// One event of every type, in [`EVENT_TYPES`]' order, with realistic data: the examples
    /// the API's document shows (and checks against each type's published schema), and the
    /// round trip every type is tested on.
    pub fn examples() -> Vec<Event> {
        use crate::command::{ImportSource, ImportedStatus, ImportedStore, ImportedUsage};
        use crate::values::ExternalId;
        let at = |text: &str| text.parse::<DateTime<Utc>>().expect("an example time");
        let t0 = at("2026-03-02T10:00:00Z");
        let plan = |id: &str| PlanId::parse(id).expect("an example plan");
        let action = |name: &str| ActionName::parse(name).expect("an example action");
        let sub = |id: &str| SubscriptionId::parse(id).expect("an example subscription");
        let days = chrono::TimeDelta::days;
        let d = Days::parse(7).expect("an example number of days");
        let r = Reason::parse("ticket 1").expect("an example reason");
        let store = StoreId::new(Uuid::from_u128(0x5107e));
        vec![
            Event::StoreRegistered {
                store_id: store,
                name: Some(StoreName::parse("Corner Shop").expect("an example name")),
                time_zone: TimeZoneName::UTC,
                catalog_version: None,
            },
            Event::StoreImported {
                store_id: store,
                tenant: Box::new(ImportedStore {
                    external_id: ExternalId::parse("clx0k2m1q0000abcd").expect("an example external id"),
                    name: None,
                    time_zone: TimeZoneName::UTC,
                    plan_id: Some(plan("starter")),
                    status: ImportedStatus::Active,
                    trial_ends_at: None,
                    grace_ends_at: None,
                    maintenance_ends_at: None,
                    trial_used: true,
                    subscription_id: Some(sub("sub_1")),
                    customer_id: None,
                    billing_anchor: None,
                    usage: vec![ImportedUsage { action: action("create_article"), used: 40, since: Some(t0) }],
                    source: ImportSource { name: "tenants.ndjson".into(), sha256: None, line: Some(3) },
                }),
                catalog_version: Some(1),
                at: t0,
            },
            Event::CatalogAdopted { version: 3, reason: AdoptionReason::PeriodStart, at: t0 },
            Event::TrialStarted { plan_id: plan("free_trial"), started_at: t0, ends_at: t0 + days(14) },
            Event::TrialRestarted {
                plan_id: plan("starter"),
                started_at: t0,
                ends_at: t0 + days(14),
                reason: r.clone(),
            },
            Event::TrialRecorded { subscription_id: sub("sub_0"), ends_at: t0 + days(14) },
            Event::TrialExtended { days: d, reason: r.clone(), previous_ends_at: t0, ends_at: t0 + days(7) },
            Event::TrialExpired { trial_ends_at: t0, grace_ends_at: t0 + days(3) },
            Event::GracePeriodExtended { days: d, reason: r.clone(), previous_ends_at: t0, ends_at: t0 + days(7) },
            Event::DowngradedToMaintenance {
                from_plan_id: Some(plan("free_trial")),
                plan_id: plan("google_only"),
                grace_ends_at: t0,
                maintenance_ends_at: t0 + days(180),
            },
            Event::MaintenanceExtended { days: d, reason: r, previous_ends_at: t0, ends_at: t0 + days(7) },
            Event::StoreFrozen { maintenance_ends_at: t0 },
            Event::SubscriptionActivated {
                plan_id: plan("starter"),
                subscription_id: sub("sub_1"),
                from_plan_id: None,
                activated_at: t0,
            },
            Event::SubscriptionPastDue { subscription_id: Some(sub("sub_1")) },
            Event::SubscriptionRecovered { subscription_id: None },
            Event::SubscriptionCanceled { subscription_id: Some(sub("sub_1")) },
            Event::PlanTransitioned {
                from_plan_id: plan("starter"),
                to_plan_id: plan("professional"),
                reason: TransitionReason::Migration,
                subscription_id: None,
                metadata: Some(serde_json::json!({"ticket": "é🎉"})),
                activates_subscription: false,
                at: t0 + chrono::TimeDelta::microseconds(123_456),
                schedule_id: None,
            },
            Event::PlanTransitionScheduled {
                schedule_id: Uuid::from_u128(0x5c4ed),
                from_plan_id: plan("professional"),
                to_plan_id: plan("starter"),
                reason: TransitionReason::Downgrade,
                subscription_id: Some(sub("sub_1")),
                metadata: None,
                by_admin: false,
                at: at("2026-04-01T00:00:00Z"),
                at_period_end: true,
                correlation_id: "0193a8d2-7c4e-7b1a-9d0e-2f4c5b6a7d8e".into(),
                replaces: None,
                requested_at: t0,
            },
            Event::ScheduledTransitionCanceled { schedule_id: Uuid::from_u128(0x5c4ed), at: t0 },
            Event::ScheduledTransitionFailed {
                schedule_id: Uuid::from_u128(0x5c4ee),
                error: "plan_mismatch".into(),
                message: "the store is on plan enterprise, not professional: it changed since the caller looked".into(),
                at: at("2026-04-01T00:00:00Z"),
            },
            Event::QuotaConsumed {
                consumption_id: Uuid::from_u128(7),
                action: action("create_article"),
                amount: Amount::parse(3).expect("an example amount"),
                period: Period::Month,
                period_start: Some(at("2026-03-01T00:00:00Z")),
                period_end: Some(at("2026-04-01T00:00:00Z")),
                used_after: 8,
                limit: Some(10),
                at: t0,
                from_grants: vec![],
                grants: Some(GrantTotals { amount: 5, used: 4 }),
            },
            Event::QuotaRefunded {
                consumption_id: Uuid::from_u128(7),
                action: action("create_product"),
                amount: Amount::ONE,
                period: Period::Lifetime,
                period_start: None,
                period_end: None,
                consumed_at: t0 + days(1),
                from_grants: vec![GrantDraw { grant_id: Uuid::from_u128(0x64a7), amount: 1 }],
            },
            Event::GrantAdded {
                grant_id: Uuid::from_u128(0x64a7),
                action: action("create_article"),
                amount: Amount::parse(50).expect("an example amount"),
                expires_at: Some(at("2026-04-01T00:00:00Z")),
                reason: Reason::parse("launch campaign, ticket 4411").expect("an example reason"),
                at: t0,
            },
            Event::GrantVoided {
                grant_id: Uuid::from_u128(0x64a7),
                reason: Reason::parse("granted twice by mistake").expect("an example reason"),
                at: t0 + days(1),
            },
        ]
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            Event::StoreRegistered { .. } => "StoreRegistered",
            Event::CatalogAdopted { .. } => "CatalogAdopted",
            Event::StoreImported { .. } => "StoreImported",
            Event::TrialStarted { .. } => "TrialStarted",
            Event::TrialRestarted { .. } => "TrialRestarted",
            Event::TrialRecorded { .. } => "TrialRecorded",
            Event::TrialExtended { .. } => "TrialExtended",
            Event::TrialExpired { .. } => "TrialExpired",
            Event::GracePeriodExtended { .. } => "GracePeriodExtended",
            Event::DowngradedToMaintenance { .. } => "DowngradedToMaintenance",
            Event::MaintenanceExtended { .. } => "MaintenanceExtended",
            Event::StoreFrozen { .. } => "StoreFrozen",
            Event::SubscriptionActivated { .. } => "SubscriptionActivated",
            Event::SubscriptionPastDue { .. } => "SubscriptionPastDue",
            Event::SubscriptionRecovered { .. } => "SubscriptionRecovered",
            Event::SubscriptionCanceled { .. } => "SubscriptionCanceled",
            Event::PlanTransitioned { .. } => "PlanTransitioned",
            Event::PlanTransitionScheduled { .. } => "PlanTransitionScheduled",
            Event::ScheduledTransitionCanceled { .. } => "ScheduledTransitionCanceled",
            Event::ScheduledTransitionFailed { .. } => "ScheduledTransitionFailed",
            Event::QuotaConsumed { .. } => "QuotaConsumed",
            Event::QuotaRefunded { .. } => "QuotaRefunded",
            Event::GrantAdded { .. } => "GrantAdded",
            Event::GrantVoided { .. } => "GrantVoided",
        }
    }

    pub fn schema_version(&self) -> i32 {
        current_schema_version(self.event_type())
    }

    /// The data to store, without the type tag.
    pub fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Reads a stored event, upcasting an old schema version to today's shape first.
    /// `recorded_at` is the envelope's time, which some upcasters need.
    pub fn from_stored(
        event_type: &str,
        schema_version: i32,
        data: Value,
        recorded_at: DateTime<Utc>,
    ) -> Result<Event, EventDecodeError> {
        let error = |reason: String| EventDecodeError { event_type: event_type.to_owned(), schema_version, reason };
        let current = current_schema_version(event_type);
        if schema_version > current || schema_version < 1 {
            return Err(error(format!("this build reads schema versions 1 to {current}")));
        }
        let data = upcast(event_type, schema_version, data, recorded_at).map_err(error)?;
        // The tag first, then the data: serde then reads the data straight into its variant. A
        // `{"type", "data"}` object would present "data" first (its keys are sorted), and serde
        // would buffer the whole payload before it knew the variant.
        let tagged = [("type", Value::String(event_type.to_owned())), ("data", data)];
        Event::deserialize(serde::de::value::MapDeserializer::<_, serde_json::Error>::new(tagged.into_iter()))
            .map_err(|e| error(e.to_string()))
    }

    /// The deterministic idempotency key of a time-driven transition (contract §8), so that two
    /// workers on two nodes append it once.
    pub fn system_idempotency_key(&self, store: StoreId) -> Option<String> {
        let at = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        match self {
            Event::TrialExpired { trial_ends_at, .. } => Some(format!("trial-expiry:{store}:{}", at(trial_ends_at))),
            Event::DowngradedToMaintenance { grace_ends_at, .. } => {
                Some(format!("grace-end:{store}:{}", at(grace_ends_at)))
            }
            Event::StoreFrozen { maintenance_ends_at } => {
                Some(format!("maintenance-end:{store}:{}", at(maintenance_ends_at)))
            }
            // Two nodes that see one version due append it once.
            Event::CatalogAdopted { version, .. } => Some(format!("catalog-adopted:{store}:{version}")),
            // A scheduled change is applied or refused once, whichever node finds it due.
            Event::PlanTransitioned { schedule_id: Some(id), .. }
            | Event::ScheduledTransitionFailed { schedule_id: id, .. } => {
                Some(format!("scheduled-transition:{store}:{id}"))
            }
            // A consumption is refunded at most once: the log's key constraint guarantees it.
            Event::QuotaRefunded { consumption_id, .. } => Some(format!("refund:{consumption_id}")),
            _ => None,
        }
    }
}

/// Rewrites the data of an old schema version into the next, until it is current.
fn upcast(event_type: &str, mut version: i32, mut data: Value, recorded_at: DateTime<Utc>) -> Result<Value, String> {
    let recorded_at = Value::String(recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    while version < current_schema_version(event_type) {
        let mut object = match data {
            Value::Object(object) => object,
            other => return Err(format!("expected an object, found {other}")),
        };
        match (event_type, version) {
            ("StoreRegistered", 1) => {
                object.entry("timeZone").or_insert_with(|| Value::String("UTC".to_owned()));
            }
            // A consumption was decided when it was recorded.
            ("QuotaConsumed", 1) => {
                object.entry("at").or_insert_with(|| recorded_at.clone());
            }
            // A v1 refund does not say when its consumption was decided: the start of the
            // consumption's window is the nearest fact it has (its own time for lifetime ones).
            ("QuotaRefunded", 1) => {
                let start = object.get("periodStart").filter(|v| !v.is_null()).cloned();
                object.entry("consumedAt").or_insert_with(|| start.unwrap_or_else(|| recorded_at.clone()));
            }
            _ => return Err(format!("no upcaster from schema version {version}")),
        }
        data = Value::Object(object);
        version += 1;
    }
    Ok(data)
}
