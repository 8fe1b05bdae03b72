//! Properties over random histories: random commands, random clock advances, 10,000 cases.
//!
//! - the allowed amount in any period never exceeds the limit, every `usedAfter` equals an
//!   independent recount of the log, windows never restart mid-period, and a consumption is
//!   refunded at most once (`planledger-oracle`, which reads only the events' stored form);
//! - a trial never restarts without an admin's force reset;
//! - `evolve` is deterministic, also over the stored (JSON) form of the events;
//! - the status derived lazily from `now` equals the status after the due transitions are
//!   appended;
//! - no command panics.

use chrono::{TimeDelta, TimeZone, Utc};
use planledger_domain::event::current_schema_version;
use planledger_domain::state::USAGE_RETAINED_DAYS;
use planledger_domain::*;
use proptest::prelude::*;
use uuid::Uuid;

const PLANS: [&str; 6] = ["free_trial", "starter", "professional", "enterprise", "google_only", "gold"];
const ACTIONS: [&str; 6] =
    ["create_article", "create_product", "update_product", "sync_products", "view_analytics", "unknown_thing"];

#[derive(Debug, Clone)]
enum Step {
    /// Moves the clock forward by this many minutes.
    Advance(i64),
    StartTrial {
        plan: Option<usize>,
        days: Option<i64>,
        force: bool,
    },
    Activate {
        plan: usize,
    },
    PastDue,
    Recovered,
    Cancel,
    Transition {
        to: usize,
        stale_from: bool,
        with_subscription: bool,
        admin: bool,
    },
    Consume {
        action: usize,
        amount: i64,
    },
    Refund {
        pick: usize,
    },
    Extend {
        kind: u8,
        days: i64,
    },
    ApplyDue,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => prop_oneof![4 => 0i64..120, 2 => 0i64..(60 * 24 * 3), 1 => 0i64..(60 * 24 * 60)].prop_map(Step::Advance),
        2 => (proptest::option::of(0usize..PLANS.len()), proptest::option::of(1i64..40), proptest::bool::weighted(0.2))
            .prop_map(|(plan, days, force)| Step::StartTrial { plan, days, force }),
        1 => (0usize..PLANS.len()).prop_map(|plan| Step::Activate { plan }),
        1 => Just(Step::PastDue),
        1 => Just(Step::Recovered),
        1 => Just(Step::Cancel),
        1 => (0usize..PLANS.len(), proptest::bool::weighted(0.2), any::<bool>(), any::<bool>())
            .prop_map(|(to, stale_from, with_subscription, admin)| Step::Transition { to, stale_from, with_subscription, admin }),
        12 => (0usize..ACTIONS.len(), prop_oneof![4 => 1i64..4, 1 => 1i64..60]).prop_map(|(action, amount)| Step::Consume { action, amount }),
        2 => any::<usize>().prop_map(|pick| Step::Refund { pick }),
        1 => (0u8..3, 1i64..10).prop_map(|(kind, days)| Step::Extend { kind, days }),
        1 => Just(Step::ApplyDue),
    ]
}

fn run(steps: Vec<Step>) {
    let catalog = Catalog::builtin();
    let store = StoreId::new(Uuid::from_u128(42));
    let mut now = Utc.with_ymd_and_hms(2026, 1, 28, 9, 0, 0).unwrap();
    let mut history: Vec<(Event, chrono::DateTime<Utc>)> = Vec::new();
    let mut state = TenantState::default();
    let mut consumptions: Vec<Consumption> = Vec::new();
    let mut ids = 0u128;

    let register = Command::RegisterStore {
        store_id: store,
        name: None,
        time_zone: Some(TimeZoneName::parse("Europe/Berlin").unwrap()),
    };
    // Most histories start with a trial, so that quotas are reached often.
    let trial = Command::StartTrial { plan_id: None, days: None, force_reset: None };
    for command in [register, trial] {
        for event in decide(&state, &command, now, &catalog).unwrap() {
            state = evolve(state, &event);
            history.push((event, now));
        }
    }
    for step in steps {
        let command = match step {
            Step::Advance(minutes) => {
                now += TimeDelta::minutes(minutes);
                continue;
            }
            Step::StartTrial { plan, days, force } => Command::StartTrial {
                plan_id: plan.map(|p| PlanId::parse(PLANS[p]).unwrap()),
                days: days.map(|d| Days::parse(d).unwrap()),
                force_reset: force.then(|| Reason::parse("property test").unwrap()),
            },
            Step::Activate { plan } => Command::ActivateSubscription {
                plan_id: PlanId::parse(PLANS[plan]).unwrap(),
                subscription_id: SubscriptionId::parse("sub_prop").unwrap(),
            },
            Step::PastDue => Command::MarkPastDue,
            Step::Recovered => Command::MarkRecovered,
            Step::Cancel => Command::CancelSubscription,
            Step::Transition { to, stale_from, with_subscription, admin } => {
                let current = state.plan_id.clone().unwrap_or_else(|| PlanId::parse("free_trial").unwrap());
                Command::TransitionPlan(TransitionPlan {
                    from_plan_id: if stale_from { PlanId::parse("enterprise").unwrap() } else { current },
                    to_plan_id: PlanId::parse(PLANS[to]).unwrap(),
                    reason: TransitionReason::Upgrade,
                    subscription_id: with_subscription.then(|| SubscriptionId::parse("sub_t").unwrap()),
                    metadata: None,
                    by_admin: admin,
                })
            }
            Step::Consume { action, amount } => {
                ids += 1;
                Command::Consume {
                    action: ActionName::parse(ACTIONS[action]).unwrap(),
                    amount: Amount::parse(amount).unwrap(),
                    consumption_id: Uuid::from_u128(ids),
                }
            }
            // Any consumption, refunded or not, or one that does not exist: the rules decide.
            Step::Refund { pick } => {
                let consumption = consumptions.get(pick % (consumptions.len() + 1)).cloned();
                Command::Refund {
                    consumption_id: consumption.as_ref().map_or(Uuid::nil(), |c| c.consumption_id),
                    consumption,
                }
            }
            Step::Extend { kind, days } => Command::Extend {
                kind: [ExtensionKind::Trial, ExtensionKind::Grace, ExtensionKind::Maintenance][usize::from(kind)],
                days: Days::parse(days).unwrap(),
                reason: Reason::parse("property test").unwrap(),
            },
            Step::ApplyDue => Command::ApplyDueTransitions,
        };
        let forced = matches!(&command, Command::StartTrial { force_reset: Some(_), .. });

        // Lazily derived status equals the status after appending the due transitions.
        let lazy = status(&state, now, &catalog);
        let due = due_transitions(&state, now, &catalog);
        let applied = due.iter().fold(state.clone(), evolve);
        assert_eq!(lazy, status(&applied, now, &catalog));
        assert!(due_transitions(&applied, now, &catalog).is_empty(), "due transitions reach a fixed point");

        let Ok(events) = decide(&state, &command, now, &catalog) else { continue };
        for event in &events {
            match event {
                Event::TrialStarted { .. } => assert!(!state.trial_used, "a used trial restarted without force"),
                Event::TrialRestarted { .. } => assert!(forced, "a trial restarted without force"),
                Event::QuotaConsumed { .. } => consumptions.extend(Consumption::from_event(event)),
                _ => {}
            }
            state = evolve(state, event);
        }
        history.extend(events.into_iter().map(|e| (e, now)));
    }

    // The log holds what an independent recount says it must.
    let stored: Vec<planledger_oracle::StoredEvent> = history
        .iter()
        .enumerate()
        .map(|(i, (e, at))| planledger_oracle::StoredEvent {
            version: i as i64 + 1,
            event_type: e.event_type().to_owned(),
            data: e.data(),
            recorded_at: *at,
        })
        .collect();
    let violations = planledger_oracle::check_stream(&stored);
    assert!(violations.is_empty(), "{}", violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    // Usage keeps only the days that windows and refunds can still reach.
    for usage in state.usage.values() {
        assert!(usage.days.len() as u64 <= USAGE_RETAINED_DAYS + 1, "{} days kept", usage.days.len());
    }

    // evolve is deterministic, over the events and over their stored form.
    let events: Vec<Event> = history.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(TenantState::from_events(&events), state);
    let decoded: Vec<Event> = stored
        .iter()
        .map(|e| {
            let text = serde_json::to_string(&e.data).unwrap();
            Event::from_stored(
                &e.event_type,
                current_schema_version(&e.event_type),
                serde_json::from_str(&text).unwrap(),
                e.recorded_at,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(TenantState::from_events(&decoded), state);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(10_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_histories_keep_every_invariant(steps in proptest::collection::vec(step(), 1..60)) {
        run(steps);
    }
}
