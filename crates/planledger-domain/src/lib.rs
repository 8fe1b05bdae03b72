//! The rules of planledger, as pure code: no IO, no clock, no async runtime.
//!
//! - [`decide`]`(state, command, now, catalog)` returns the events a command produces, or the
//!   rule that refuses it ([`DomainError`], with a stable code and HTTP status).
//! - [`evolve`]`(state, event)` folds one event into a [`TenantState`].
//! - [`due_transitions`] lists the time-driven events (trial end, grace end, maintenance end)
//!   due at `now`; `decide` applies them first.
//! - [`status`] and [`gate`] derive what a store is and may do at `now` (contract §4), so reads are
//!   right even before a lagging worker appends a due transition.
//! - [`Catalog`] is the rule set, parsed from TOML, with a fingerprint recorded on every event.
//! - [`period`] computes quota windows in the store's time zone.
//!
//! Time is data: every function that depends on time takes `now`.

pub mod catalog;
pub mod command;
pub mod decide;
pub mod error;
pub mod event;
pub mod explain;
pub mod fold_fingerprint;
pub mod gate;
pub mod period;
pub mod state;
pub mod status;
pub mod terms;
pub mod values;

pub use catalog::{ActionKind, Catalog, CatalogError, Notifications, Period, Plan, PlanKind, BUILTIN_SOURCE};
pub use command::{Command, Consumption, ExtensionKind, ScheduleAt, SchedulePlanTransition, TransitionPlan};
pub use decide::{decide, due_transitions, quota_position, usage_positions, QuotaPosition};
pub use error::{DomainError, GateReason, GateRefusal, UPGRADE_URL};
pub use event::{AdoptionReason, Event, EventDecodeError, GrantDraw, GrantTotals, TransitionReason};
pub use explain::{explain, Explanation, Remedy};
pub use fold_fingerprint::fold_fingerprint;
pub use gate::{gate, gate_feature, GateDecision};
pub use state::{evolve, Grant, Phase, ScheduledTransition, TenantState};
pub use status::{effective_state, status, InternalStatus, Status, SubscriptionStatus};
pub use terms::{Catalogs, Reach, Terms};
pub use values::{
    ActionName, Amount, Days, InvalidValue, PlanId, Reason, StoreId, StoreName, SubscriptionId, TimeZoneName,
};
