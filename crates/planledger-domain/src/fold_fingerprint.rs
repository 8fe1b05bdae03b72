//! A fingerprint of what [`evolve`] does, not of what someone remembered to say it does.
//!
//! Snapshots and read models hold state folded by some version of `evolve`. A number bumped by
//! hand ([`FOLD_VERSION`]) protects them only if whoever changes the fold remembers to bump it.
//! So the fingerprint is also measured: a fixed corpus of histories (every kind of event, in
//! orders the rules would and would not produce, over more days than usage keeps) is folded, and
//! the stored form of the state after every event is hashed. A change to how any event folds, or
//! to the state's shape or serialization, changes the hash; state recorded under another
//! fingerprint is folded again from the log instead of being trusted.
//!
//! The corpus is generated from a fixed seed by code in this file: changing the generator also
//! changes the fingerprint (one needless refold, never a stale read).

use std::sync::OnceLock;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::catalog::Period;
use crate::event::{AdoptionReason, Event, TransitionReason};
use crate::state::{evolve, TenantState, FOLD_VERSION};
use crate::values::{ActionName, Amount, Days, PlanId, Reason, StoreId, StoreName, SubscriptionId, TimeZoneName};

/// The fingerprint of this build's fold: `"<FOLD_VERSION>-<hash of the corpus folded>"`.
/// Computed once per process (a few milliseconds).
pub fn fold_fingerprint() -> &'static str {
    static FINGERPRINT: OnceLock<String> = OnceLock::new();
    FINGERPRINT.get_or_init(|| fingerprint_of(evolve))
}

/// The fingerprint `fold` would have: what [`fold_fingerprint`] measures, for any fold (tests
/// show that plausible changes to `evolve` change it).
pub fn fingerprint_of(fold: impl Fn(TenantState, &Event) -> TenantState) -> String {
    let mut hash = Sha256::new();
    for history in corpus() {
        let mut state = TenantState::default();
        for event in &history {
            state = fold(state, event);
            // The stored form, exactly as snapshots and read models keep it.
            hash.update(serde_json::to_vec(&state).unwrap_or_default());
            hash.update(b"\n");
        }
        hash.update(b"--\n");
    }
    let hex: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{FOLD_VERSION}-{hex}")
}

/// SplitMix64: a fixed, dependency-free sequence, the same on every platform and build.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The histories the fingerprint folds: every event kind, in random orders, with consumptions
/// and refunds spread over 150 days in several time zones.
pub fn corpus() -> Vec<Vec<Event>> {
    let mut seq = Sequence(0x706c_616e_6c65_6467); // "planledg"
    (0..12).map(|n| history(&mut seq, n)).collect()
}

fn history(seq: &mut Sequence, n: u64) -> Vec<Event> {
    // Values are made from literals that always parse; a failure here is a bug in this file,
    // caught by the tests (`expect` keeps the corpus honest rather than silently shorter).
    let plan = |s: &str| PlanId::parse(s).expect("a valid plan id");
    let reason = Reason::parse("corpus").expect("a valid reason");
    let days = |d: i64| Days::parse(d).expect("a valid number of days");
    let subscription = |i: u64| SubscriptionId::parse(&format!("sub_{i}")).expect("a valid subscription id");
    let plans = [plan("trial"), plan("basic"), plan("pro"), plan("google_only")];
    let actions = [ActionName::parse("export").expect("an action"), ActionName::parse("sync").expect("an action")];
    let zones = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Auckland"];
    let periods = [Period::Day, Period::Week, Period::Month, Period::Lifetime];
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default();
    let mut at = start + Duration::hours((n * 7) as i64);
    let mut consumed: Vec<(Uuid, ActionName, Amount, Period, DateTime<Utc>)> = Vec::new();
    let mut events = vec![Event::StoreRegistered {
        store_id: StoreId::new(Uuid::from_u64_pair(n, n)),
        name: (n % 2 == 0).then(|| StoreName::parse(&format!("Store {n}")).expect("a valid name")),
        time_zone: TimeZoneName::parse(zones[(n % 4) as usize]).expect("a known zone"),
        catalog_version: (n % 3 != 0).then_some(1 + (n % 2) as i64),
    }];
    for i in 0..160u64 {
        // Time moves on by up to a day and a half, so the history spans more than the 62 days
        // of usage a state keeps.
        at += Duration::minutes(seq.below(36 * 60) as i64);
        let later = at + Duration::days(1 + seq.below(30) as i64);
        let earlier = at - Duration::days(seq.below(5) as i64);
        let event = match seq.below(28) {
            0 => Event::TrialStarted { plan_id: seq.pick(&plans).clone(), started_at: at, ends_at: later },
            1 => Event::TrialRestarted {
                plan_id: seq.pick(&plans).clone(),
                started_at: at,
                ends_at: later,
                reason: reason.clone(),
            },
            2 => Event::TrialExtended { days: days(3), reason: reason.clone(), previous_ends_at: at, ends_at: later },
            3 => Event::TrialExpired { trial_ends_at: at, grace_ends_at: later },
            4 => Event::GracePeriodExtended {
                days: days(2),
                reason: reason.clone(),
                previous_ends_at: at,
                ends_at: later,
            },
            5 => Event::DowngradedToMaintenance {
                from_plan_id: (seq.below(2) == 0).then(|| seq.pick(&plans).clone()),
                plan_id: plans[3].clone(),
                grace_ends_at: earlier,
                maintenance_ends_at: later,
            },
            6 => Event::MaintenanceExtended {
                days: days(7),
                reason: reason.clone(),
                previous_ends_at: at,
                ends_at: later,
            },
            7 => Event::StoreFrozen { maintenance_ends_at: at },
            8 => Event::SubscriptionActivated {
                plan_id: seq.pick(&plans).clone(),
                subscription_id: subscription(i),
                from_plan_id: (seq.below(2) == 0).then(|| seq.pick(&plans).clone()),
                activated_at: at,
            },
            9 => Event::SubscriptionPastDue { subscription_id: (seq.below(2) == 0).then(|| subscription(i)) },
            10 => Event::SubscriptionRecovered { subscription_id: (seq.below(2) == 0).then(|| subscription(i)) },
            11 => Event::SubscriptionCanceled { subscription_id: (seq.below(2) == 0).then(|| subscription(i)) },
            12 => Event::PlanTransitioned {
                from_plan_id: seq.pick(&plans).clone(),
                to_plan_id: seq.pick(&plans).clone(),
                reason: *seq.pick(&[
                    TransitionReason::Upgrade,
                    TransitionReason::Downgrade,
                    TransitionReason::Admin,
                    TransitionReason::Migration,
                ]),
                subscription_id: (seq.below(2) == 0).then(|| subscription(i)),
                metadata: None,
                activates_subscription: seq.below(2) == 0,
                at,
                schedule_id: (seq.below(2) == 0).then(|| Uuid::from_u64_pair(n, i % 3)),
            },
            23 => Event::PlanTransitionScheduled {
                schedule_id: Uuid::from_u64_pair(n, i % 3),
                from_plan_id: seq.pick(&plans).clone(),
                to_plan_id: seq.pick(&plans).clone(),
                reason: TransitionReason::Downgrade,
                subscription_id: (seq.below(2) == 0).then(|| subscription(i)),
                metadata: None,
                by_admin: seq.below(2) == 0,
                at: later,
                at_period_end: seq.below(2) == 0,
                correlation_id: format!("corr-{i}"),
                replaces: None,
                requested_at: at,
            },
            26 => Event::GrantAdded {
                grant_id: Uuid::from_u64_pair(n, i % 2),
                action: seq.pick(&actions).clone(),
                amount: Amount::parse(1 + seq.below(50) as i64).expect("a valid amount"),
                expires_at: (seq.below(2) == 0).then_some(later),
                reason: reason.clone(),
                at,
            },
            27 => Event::GrantVoided { grant_id: Uuid::from_u64_pair(n, i % 2), reason: reason.clone(), at },
            24 => Event::ScheduledTransitionCanceled { schedule_id: Uuid::from_u64_pair(n, i % 3), at },
            25 => Event::ScheduledTransitionFailed {
                schedule_id: Uuid::from_u64_pair(n, i % 3),
                error: "plan_mismatch".into(),
                message: "changed".into(),
                at,
            },
            20 => Event::TrialRecorded { subscription_id: subscription(i), ends_at: earlier },
            22 => Event::StoreImported {
                store_id: StoreId::new(Uuid::from_u64_pair(n, n)),
                tenant: Box::new(crate::command::ImportedStore {
                    external_id: crate::values::ExternalId::parse(&format!("tenant-{n}")).expect("an external id"),
                    name: None,
                    time_zone: TimeZoneName::parse(zones[(i % 4) as usize]).expect("a known zone"),
                    plan_id: Some(seq.pick(&plans).clone()),
                    status: *seq.pick(&crate::command::ImportedStatus::ALL),
                    trial_ends_at: Some(later),
                    grace_ends_at: Some(later),
                    maintenance_ends_at: (seq.below(2) == 0).then_some(later),
                    trial_used: seq.below(2) == 0,
                    subscription_id: (seq.below(2) == 0).then(|| subscription(i)),
                    customer_id: None,
                    billing_anchor: (seq.below(2) == 0).then_some(earlier),
                    usage: vec![crate::command::ImportedUsage {
                        action: seq.pick(&actions).clone(),
                        used: seq.below(50),
                        since: (seq.below(2) == 0).then_some(earlier),
                    }],
                    source: crate::command::ImportSource { name: "corpus".into(), sha256: None, line: Some(i) },
                }),
                catalog_version: None,
                at,
            },
            21 => Event::CatalogAdopted {
                version: 2 + i as i64,
                reason: *seq.pick(&[
                    AdoptionReason::EffectiveTime,
                    AdoptionReason::PeriodStart,
                    AdoptionReason::PlanChange,
                ]),
                at,
            },
            13..=16 => {
                let action = seq.pick(&actions).clone();
                let amount = Amount::parse(1 + seq.below(5) as i64).expect("a valid amount");
                let period = *seq.pick(&periods);
                let id = Uuid::from_u64_pair(n, i);
                consumed.push((id, action.clone(), amount, period, at));
                Event::QuotaConsumed {
                    consumption_id: id,
                    action,
                    amount,
                    period,
                    period_start: Some(earlier),
                    period_end: Some(later),
                    used_after: i,
                    limit: (period != Period::Lifetime).then_some(100),
                    at,
                    from_grants: if seq.below(3) == 0 {
                        vec![crate::event::GrantDraw { grant_id: Uuid::from_u64_pair(n, i % 2), amount: 1 }]
                    } else {
                        vec![]
                    },
                    grants: (seq.below(3) == 0).then_some(crate::event::GrantTotals { amount: 10, used: i % 10 }),
                }
            }
            _ => match consumed.get(seq.below(consumed.len().max(1) as u64) as usize).cloned() {
                Some((consumption_id, action, amount, period, consumed_at)) => Event::QuotaRefunded {
                    consumption_id,
                    action,
                    amount,
                    period,
                    period_start: Some(consumed_at),
                    period_end: Some(later),
                    consumed_at,
                    from_grants: vec![],
                },
                None => Event::StoreFrozen { maintenance_ends_at: at },
            },
        };
        events.push(event);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EVENT_TYPES;
    use crate::state::Phase;

    #[test]
    fn the_corpus_folds_every_kind_of_event() {
        let mut seen: Vec<&str> = corpus().iter().flatten().map(Event::event_type).collect();
        seen.sort_unstable();
        seen.dedup();
        let mut every: Vec<&str> = EVENT_TYPES.to_vec();
        every.sort_unstable();
        assert_eq!(seen, every, "add the missing kinds to the corpus: a fold change there would go unseen");
    }

    #[test]
    fn the_fingerprint_is_stable_within_a_build_and_names_the_fold_version() {
        assert_eq!(fold_fingerprint(), fingerprint_of(evolve));
        assert!(fold_fingerprint().starts_with(&format!("{FOLD_VERSION}-")));
    }

    type Fold = dyn Fn(TenantState, &Event) -> TenantState;

    /// Plausible edits to `evolve` that nobody would remember to bump `FOLD_VERSION` for, each
    /// one a real way to corrupt stored state: every one must change the fingerprint.
    #[test]
    fn a_change_to_how_any_event_folds_changes_the_fingerprint() {
        let ours = fingerprint_of(evolve);
        let edits: Vec<(&str, Box<Fold>)> = vec![
            (
                "refunds no longer lower lifetime usage",
                Box::new(|state: TenantState, event: &Event| match event {
                    Event::QuotaRefunded { .. } => {
                        let lifetime: Vec<_> = state.usage.iter().map(|(a, u)| (a.clone(), u.lifetime)).collect();
                        let mut after = evolve(state, event);
                        for (action, lifetime) in lifetime {
                            if let Some(usage) = after.usage.get_mut(&action) {
                                usage.lifetime = lifetime;
                            }
                        }
                        after
                    }
                    _ => evolve(state, event),
                }),
            ),
            (
                "a restarted trial moves the billing anchor",
                Box::new(|state: TenantState, event: &Event| {
                    let mut after = evolve(state, event);
                    if let Event::TrialRestarted { started_at, .. } = event {
                        after.billing_anchor = Some(*started_at);
                    }
                    after
                }),
            ),
            (
                "a freeze forgets the maintenance deadline",
                Box::new(|state: TenantState, event: &Event| {
                    let mut after = evolve(state, event);
                    if matches!(event, Event::StoreFrozen { .. }) {
                        after.maintenance_ends_at = None;
                    }
                    after
                }),
            ),
            (
                "past due forgets the subscription",
                Box::new(|state: TenantState, event: &Event| {
                    let mut after = evolve(state, event);
                    if matches!(event, Event::SubscriptionPastDue { .. }) {
                        after.phase = Phase::PastDue { subscription_id: None };
                    }
                    after
                }),
            ),
            (
                "usage counted in UTC days instead of the store's",
                Box::new(|state: TenantState, event: &Event| {
                    let zone = state.time_zone;
                    let mut utc = state;
                    utc.time_zone = TimeZoneName::UTC;
                    let mut after = evolve(utc, event);
                    if !matches!(event, Event::StoreRegistered { .. }) {
                        after.time_zone = zone;
                    }
                    after
                }),
            ),
        ];
        for (edit, fold) in edits {
            assert_ne!(fingerprint_of(fold), ours, "the fingerprint missed: {edit}");
        }
    }
}
