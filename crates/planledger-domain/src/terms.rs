//! Which catalog version decides for which store: versions that keep their word.
//!
//! The ledger keeps every version of its catalog. A store is registered under the version in
//! force then and stays on it until a later version reaches it, which each version states when
//! it is published ([`Reach`]): at its effective time, at each store's next period start, or
//! never (the store is grandfathered). A plan change always takes the version in force: a store
//! that changes its terms takes today's. Moving a store to a later version is a fact in its
//! stream (`CatalogAdopted`), decided here like every time-driven transition, so that replay
//! and audit show which rules decided each command.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{Anchor, Catalog, Period};
use crate::command::Command;
use crate::event::{AdoptionReason, Event};
use crate::period::window_at;
use crate::state::TenantState;

/// When a version reaches the stores registered under an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// At the version's effective time, every store at once.
    #[default]
    EffectiveTime,
    /// At each store's first month boundary at or after the effective time (its billing
    /// period's, for a plan anchored on the subscription; the calendar month's otherwise, in
    /// the store's time zone), so that no store's terms change in the middle of a period.
    NextPeriod,
    /// Never: the stores registered before it keep their version (grandfathered) until they
    /// change plan or a later version reaches them.
    Never,
}

impl Reach {
    pub const ALL: [Reach; 3] = [Reach::EffectiveTime, Reach::NextPeriod, Reach::Never];

    pub fn as_str(self) -> &'static str {
        match self {
            Reach::EffectiveTime => "effective_time",
            Reach::NextPeriod => "next_period",
            Reach::Never => "never",
        }
    }

    pub fn parse(text: &str) -> Result<Reach, crate::values::InvalidValue> {
        Reach::ALL.into_iter().find(|reach| reach.as_str() == text).ok_or_else(|| {
            crate::values::InvalidValue::new("existingStores", "must be one of effective_time, next_period, never")
        })
    }
}

/// One version of the rules with when it applies.
#[derive(Debug, Clone)]
pub struct Terms {
    /// The rules; `catalog.version()` is the version's number.
    pub catalog: Arc<Catalog>,
    pub effective_at: DateTime<Utc>,
    pub reaches: Reach,
}

impl Terms {
    pub fn version(&self) -> i64 {
        self.catalog.version()
    }
}

/// Every version a node knows, oldest first; never empty.
#[derive(Debug, Clone)]
pub struct Catalogs {
    terms: Vec<Terms>,
    fingerprint: String,
}

impl Catalogs {
    /// The versions given, ordered by number; `None` if there is none.
    pub fn new(mut terms: Vec<Terms>) -> Option<Catalogs> {
        terms.sort_by_key(Terms::version);
        let fingerprint = match terms.as_slice() {
            [] => return None,
            [only] if only.effective_at == DateTime::<Utc>::MIN_UTC => only.catalog.fingerprint().to_owned(),
            all => {
                let mut hash = Sha256::new();
                for t in all {
                    let line = format!(
                        "{} {} {} {}\n",
                        t.version(),
                        t.catalog.fingerprint(),
                        t.effective_at.timestamp_micros(),
                        t.reaches.as_str()
                    );
                    hash.update(line.as_bytes());
                }
                let hex: String = hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        Some(Catalogs { terms, fingerprint })
    }

    /// One set of rules for every store and every time (a node given a file, tests).
    pub fn single(catalog: Arc<Catalog>) -> Catalogs {
        let fingerprint = catalog.fingerprint().to_owned();
        Catalogs {
            terms: vec![Terms { catalog, effective_at: DateTime::<Utc>::MIN_UTC, reaches: Reach::EffectiveTime }],
            fingerprint,
        }
    }

    /// A hash of every version (its rules, effective time and reach): what read models record
    /// they were built with, since a store's row depends on the versions that will reach it.
    /// One set of rules for all time has the rules' own fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// When the next later version reaches `state` (at or before `now` if one is due already):
    /// a deadline, so that the deadline worker records the move even for a store nobody asks
    /// about.
    pub fn next_adoption(&self, state: &TenantState) -> Option<DateTime<Utc>> {
        let current = self.adopted(state)?;
        self.later_than(current).filter_map(|later| reaches_at(later, state, current)).map(|(at, _)| at).min()
    }

    /// The versions after `current`, oldest first.
    fn later_than<'a>(&'a self, current: &'a Terms) -> impl Iterator<Item = &'a Terms> {
        self.terms.iter().filter(move |t| t.version() > current.version())
    }

    /// The newest version that has reached `state` by `now`, when and why; see
    /// [`Catalogs::adoption_due`].
    fn due(&self, state: &TenantState, now: DateTime<Utc>) -> Option<(&Terms, DateTime<Utc>, AdoptionReason)> {
        if !state.is_registered() {
            return None;
        }
        let current = self.adopted(state)?;
        self.later_than(current)
            .filter_map(|later| reaches_at(later, state, current).map(|(at, why)| (later, at, why)))
            .filter(|(_, at, _)| *at <= now)
            .last()
    }

    pub fn terms(&self) -> &[Terms] {
        &self.terms
    }

    pub fn newest(&self) -> &Terms {
        self.terms.last().unwrap_or_else(|| unreachable!("Catalogs is never empty"))
    }

    fn first(&self) -> &Terms {
        self.terms.first().unwrap_or_else(|| unreachable!("Catalogs is never empty"))
    }

    /// The version in force at `now`: the newest whose effective time has come (the first, if
    /// none has: a ledger's first version is in force from its start).
    pub fn in_force(&self, now: DateTime<Utc>) -> &Terms {
        self.terms.iter().rev().find(|t| t.effective_at <= now).unwrap_or_else(|| self.first())
    }

    /// Version `version`, if this node knows it.
    pub fn version(&self, version: i64) -> Option<&Terms> {
        self.terms.iter().find(|t| t.version() == version)
    }

    /// The version `state` was last moved to (a store without one is on the first).
    pub fn adopted(&self, state: &TenantState) -> Option<&Terms> {
        match state.catalog_version {
            Some(version) => self.version(version),
            None => Some(self.first()),
        }
    }

    /// The move to a later version that is due for `state` at `now`, if one is: the newest
    /// version that has reached the store by then. A store that is not registered has none (it
    /// is registered under the version in force). `None` too if the store is on a version this
    /// node does not know yet (see [`Catalogs::for_store`]).
    pub fn adoption_due(&self, state: &TenantState, now: DateTime<Utc>) -> Option<Event> {
        self.due(state, now).map(|(later, at, reason)| Event::CatalogAdopted { version: later.version(), reason, at })
    }

    /// The move a command needs before it is decided: a plan change takes the version in force.
    pub fn adoption_for(&self, state: &TenantState, command: &Command, now: DateTime<Utc>) -> Option<Event> {
        let changes_plan = match command {
            Command::TransitionPlan(transition) => state.plan_id.as_ref() != Some(&transition.to_plan_id),
            Command::ActivateSubscription { plan_id, .. } => state.plan_id.as_ref() != Some(plan_id),
            _ => false,
        };
        let in_force = self.in_force(now);
        let behind = self.adopted(state).is_none_or(|current| current.version() < in_force.version());
        (state.is_registered() && changes_plan && behind).then(|| Event::CatalogAdopted {
            version: in_force.version(),
            reason: AdoptionReason::PlanChange,
            at: now,
        })
    }

    /// The rules that decide for `state` at `now`: the version in force for a store not yet
    /// registered, else the store's version after any move due. `None`: the store is on a
    /// version this node has not read yet (published a moment ago on another node): read the
    /// versions again before deciding.
    pub fn for_store(&self, state: &TenantState, now: DateTime<Utc>) -> Option<&Terms> {
        if !state.is_registered() {
            return Some(self.in_force(now));
        }
        match self.due(state, now) {
            Some((later, _, _)) => Some(later),
            None => self.adopted(state),
        }
    }

    /// The rules a reader shows `state` under at `now`: the store's, or, for a store on a
    /// version this node has not read yet, the newest it knows.
    pub fn shown_for(&self, state: &TenantState, now: DateTime<Utc>) -> &Terms {
        self.for_store(state, now).unwrap_or_else(|| self.newest())
    }
}

/// When `later` reaches `state`, on `current` until then, and why; `None` for a version that
/// never reaches existing stores. Every reach is at or after the version's effective time.
fn reaches_at(later: &Terms, state: &TenantState, current: &Terms) -> Option<(DateTime<Utc>, AdoptionReason)> {
    match later.reaches {
        Reach::EffectiveTime => Some((later.effective_at, AdoptionReason::EffectiveTime)),
        Reach::NextPeriod => {
            Some((next_period_start(state, later.effective_at, &current.catalog), AdoptionReason::PeriodStart))
        }
        Reach::Never => None,
    }
}

/// The store's month window (its billing period: by its plan's anchor, in its time zone) that
/// holds `at`.
fn month_window(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> crate::period::Window {
    let anchor = state.plan_id.as_ref().and_then(|id| catalog.plan(id)).map_or(Anchor::Calendar, |plan| plan.anchor);
    window_at(Period::Month, at, state.time_zone.tz(), anchor, state.billing_anchor)
}

/// The end of the store's billing period that holds `at`.
pub(crate) fn period_end(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> DateTime<Utc> {
    month_window(state, at, catalog).end.unwrap_or(at)
}

/// The first start of a month window of the store at or after `at`.
fn next_period_start(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> DateTime<Utc> {
    let window = month_window(state, at, catalog);
    match (window.start, window.end) {
        (Some(start), _) if start == at => start,
        (_, Some(end)) => end,
        _ => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::evolve;
    use crate::values::{PlanId, StoreId, TimeZoneName};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn terms(version: i64, effective_at: &str, reaches: Reach) -> Terms {
        Terms { catalog: Arc::new(Catalog::builtin().at_version(version)), effective_at: utc(effective_at), reaches }
    }

    fn store_in(zone: &str, version: Option<i64>) -> TenantState {
        evolve(
            TenantState::default(),
            &Event::StoreRegistered {
                store_id: StoreId::new(uuid::Uuid::now_v7()),
                name: None,
                time_zone: TimeZoneName::parse(zone).unwrap(),
                catalog_version: version,
            },
        )
    }

    fn due_version(catalogs: &Catalogs, state: &TenantState, now: &str) -> Option<(i64, AdoptionReason, String)> {
        match catalogs.adoption_due(state, utc(now)) {
            Some(Event::CatalogAdopted { version, reason, at }) => Some((version, reason, at.to_rfc3339())),
            _ => None,
        }
    }

    #[test]
    fn a_version_reaching_at_its_effective_time_moves_every_store_then() {
        let catalogs = Catalogs::new(vec![
            terms(1, "2026-01-01T00:00:00Z", Reach::EffectiveTime),
            terms(2, "2026-03-10T12:00:00Z", Reach::EffectiveTime),
        ])
        .unwrap();
        let store = store_in("UTC", Some(1));
        assert_eq!(due_version(&catalogs, &store, "2026-03-10T11:59:59Z"), None);
        assert_eq!(
            due_version(&catalogs, &store, "2026-03-10T12:00:00Z"),
            Some((2, AdoptionReason::EffectiveTime, "2026-03-10T12:00:00+00:00".into()))
        );
    }

    #[test]
    fn a_grandfathering_version_never_moves_existing_stores() {
        let catalogs = Catalogs::new(vec![
            terms(1, "2026-01-01T00:00:00Z", Reach::EffectiveTime),
            terms(2, "2026-03-10T12:00:00Z", Reach::Never),
        ])
        .unwrap();
        let store = store_in("UTC", Some(1));
        assert_eq!(due_version(&catalogs, &store, "2030-01-01T00:00:00Z"), None);
        assert_eq!(catalogs.for_store(&store, utc("2030-01-01T00:00:00Z")).unwrap().version(), 1);
        // A store registered now is registered under the version in force.
        assert_eq!(catalogs.for_store(&TenantState::default(), utc("2026-03-11T00:00:00Z")).unwrap().version(), 2);
    }

    #[test]
    fn a_version_reaching_at_the_next_period_waits_for_the_local_month_boundary() {
        let catalogs = Catalogs::new(vec![
            terms(1, "2026-01-01T00:00:00Z", Reach::EffectiveTime),
            terms(2, "2026-02-10T00:00:00Z", Reach::NextPeriod),
        ])
        .unwrap();
        // A calendar-month store in Auckland: its March starts on 28 February at 11:00 UTC.
        let store = store_in("Pacific/Auckland", Some(1));
        assert_eq!(due_version(&catalogs, &store, "2026-02-28T10:59:59Z"), None);
        assert_eq!(
            due_version(&catalogs, &store, "2026-02-28T11:00:00Z"),
            Some((2, AdoptionReason::PeriodStart, "2026-02-28T11:00:00+00:00".into()))
        );
    }

    #[test]
    fn the_newest_version_that_reached_a_store_wins() {
        let catalogs = Catalogs::new(vec![
            terms(1, "2026-01-01T00:00:00Z", Reach::EffectiveTime),
            terms(2, "2026-02-10T00:00:00Z", Reach::EffectiveTime),
            terms(3, "2026-02-11T00:00:00Z", Reach::Never),
            terms(4, "2026-02-12T00:00:00Z", Reach::EffectiveTime),
        ])
        .unwrap();
        let store = store_in("UTC", None);
        assert_eq!(due_version(&catalogs, &store, "2026-02-11T12:00:00Z").map(|d| d.0), Some(2));
        assert_eq!(due_version(&catalogs, &store, "2026-02-13T00:00:00Z").map(|d| d.0), Some(4));
        let moved = evolve(store, &catalogs.adoption_due(&store_in("UTC", None), utc("2026-02-13T00:00:00Z")).unwrap());
        assert_eq!(due_version(&catalogs, &moved, "2030-01-01T00:00:00Z"), None, "never moved twice, never back");
    }

    #[test]
    fn a_plan_change_takes_the_version_in_force_and_nothing_else_does() {
        let catalogs = Catalogs::new(vec![
            terms(1, "2026-01-01T00:00:00Z", Reach::EffectiveTime),
            terms(2, "2026-03-01T00:00:00Z", Reach::Never),
        ])
        .unwrap();
        let mut store = store_in("UTC", Some(1));
        store.plan_id = Some(PlanId::parse("starter").unwrap());
        let now = utc("2026-04-01T00:00:00Z");
        let to = |plan: &str| Command::ActivateSubscription {
            plan_id: PlanId::parse(plan).unwrap(),
            subscription_id: crate::values::SubscriptionId::parse("sub_1").unwrap(),
        };
        assert!(catalogs.adoption_for(&store, &to("starter"), now).is_none(), "a renewal keeps the terms");
        assert_eq!(
            catalogs.adoption_for(&store, &to("pro"), now),
            Some(Event::CatalogAdopted { version: 2, reason: AdoptionReason::PlanChange, at: now })
        );
        assert!(catalogs.adoption_for(&store, &Command::MarkPastDue, now).is_none());
    }

    #[test]
    fn a_store_on_a_version_this_node_has_not_read_is_not_decided() {
        let catalogs = Catalogs::new(vec![terms(1, "2026-01-01T00:00:00Z", Reach::EffectiveTime)]).unwrap();
        let store = store_in("UTC", Some(2));
        assert!(catalogs.for_store(&store, utc("2026-02-01T00:00:00Z")).is_none());
        assert_eq!(catalogs.shown_for(&store, utc("2026-02-01T00:00:00Z")).version(), 1);
    }
}
