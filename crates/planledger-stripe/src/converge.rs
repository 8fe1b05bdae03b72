//! From a subscription's state, as of a Stripe event, to the commands that bring a store there.
//!
//! Stripe does not deliver events in order, so each event is read as the state of its
//! subscription at the event's time, not as a step to replay: the commands are whatever moves
//! the store from where it is to that state (none if it is there). Applied in the order of the
//! events' times (older ones are skipped, see the applier), any delivery order ends where the
//! newest event says. The ledger's own rules still decide each command.

use chrono::{DateTime, Utc};
use planledger_domain::state::Phase;
use planledger_domain::{Command, PlanId, SubscriptionId, TenantState};

use crate::event::Status;

/// The state a subscription event asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub status: Status,
    pub subscription_id: SubscriptionId,
    /// The paid plan its price sells (`[stripe] prices`), when the event names a known price.
    pub plan: Option<PlanId>,
    pub trial_end: Option<DateTime<Utc>>,
}

/// One command, with the name its idempotency key carries.
pub type Step = (Command, &'static str);

/// Why a store cannot be brought to a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    #[error("no plan for subscription {0}: its price maps to no plan of the catalog ([stripe] prices)")]
    NoPlan(String),
}

/// The commands that bring `state` to `target`, in order.
pub fn converge(state: &TenantState, target: &Target) -> Result<Vec<Step>, Unreachable> {
    let sub = &target.subscription_id;
    let holds = |phase: &Phase| match phase {
        Phase::Active { subscription_id } | Phase::PastDue { subscription_id } => subscription_id.as_ref() == Some(sub),
        _ => false,
    };
    let holds_another = matches!(
        &state.phase,
        Phase::Active { subscription_id: Some(other) } | Phase::PastDue { subscription_id: Some(other) } if other != sub
    );
    // The plan to be on: the price's, else the one the store is on under this subscription.
    let plan = || -> Result<PlanId, Unreachable> {
        match (&target.plan, &state.plan_id) {
            (Some(plan), _) => Ok(plan.clone()),
            (None, Some(current)) if holds(&state.phase) => Ok(current.clone()),
            _ => Err(Unreachable::NoPlan(sub.as_str().to_owned())),
        }
    };
    let on_plan = |plan: &PlanId| state.plan_id.as_ref() == Some(plan);
    let activate =
        |plan: PlanId| (Command::ActivateSubscription { plan_id: plan, subscription_id: sub.clone() }, "activate");
    // A subscription that had a trial says so in every event of it (`trial_end`), whatever
    // its status: the store has then had its trial, in whatever order the events come.
    let adopt = adopt_trial(state, target);
    let steps = match target.status {
        Status::Incomplete => vec![],
        // Without a `trial_end` (an event that does not carry it), the catalog's trial.
        Status::Trialing => match state.phase {
            Phase::Unsubscribed if !state.trial_used && adopt.is_none() => {
                vec![(Command::StartTrial { plan_id: None, days: None, force_reset: None }, "trial")]
            }
            _ => vec![],
        },
        Status::Active => {
            let plan = plan()?;
            match &state.phase {
                phase if holds(phase) && on_plan(&plan) => match phase {
                    Phase::PastDue { .. } => vec![(Command::MarkRecovered, "recovered")],
                    _ => vec![],
                },
                _ => vec![activate(plan)],
            }
        }
        Status::PastDue => {
            let plan = plan()?;
            match &state.phase {
                phase @ Phase::PastDue { .. } if holds(phase) && on_plan(&plan) => vec![],
                phase @ Phase::Active { .. } if holds(phase) && on_plan(&plan) => {
                    vec![(Command::MarkPastDue, "past_due")]
                }
                _ => vec![activate(plan), (Command::MarkPastDue, "past_due")],
            }
        }
        Status::Ended { was_paid } => match &state.phase {
            // It ends on the price it last had, whether or not the event that moved it there
            // arrived first.
            phase if holds(phase) => match &target.plan {
                Some(plan) if !on_plan(plan) => vec![activate(plan.clone()), (Command::CancelSubscription, "cancel")],
                _ => vec![(Command::CancelSubscription, "cancel")],
            },
            Phase::Canceled { .. } => vec![],
            // The end of an older subscription leaves the one the store pays for now alone.
            _ if holds_another => vec![],
            // It had been paying, and its earlier events have not arrived (or were skipped as
            // older): the store had it, then lost it.
            _ if was_paid => vec![activate(plan()?), (Command::CancelSubscription, "cancel")],
            // A trial, or a first payment that never came: the store's own trial runs its course.
            _ => vec![],
        },
    };
    Ok(adopt.into_iter().chain(steps).collect())
}

/// The step that records the trial a subscription had, for an event that is otherwise older
/// than what was applied: a trial latches whenever its news arrives.
pub fn adopt_trial(state: &TenantState, target: &Target) -> Option<Step> {
    let ends_at = target.trial_end.filter(|_| !state.trial_used)?;
    Some((Command::AdoptTrial { subscription_id: target.subscription_id.clone(), ends_at }, "adopt_trial"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use planledger_domain::{decide, evolve, Catalog, StoreId};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()
    }

    fn plan(id: &str) -> PlanId {
        PlanId::parse(id).unwrap()
    }

    fn target(status: Status, plan_id: Option<&str>, sub: &str) -> Target {
        Target {
            status,
            subscription_id: SubscriptionId::parse(sub).unwrap(),
            plan: plan_id.map(plan),
            trial_end: None,
        }
    }

    /// A store moved through `commands` by the real rules.
    fn store_after(commands: &[Command]) -> TenantState {
        let catalog = Catalog::builtin();
        let store = StoreId::new(uuid::Uuid::from_u128(7));
        let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
        let mut state = TenantState::default();
        for command in std::iter::once(&register).chain(commands) {
            for event in decide(&state, command, now(), &catalog).unwrap() {
                state = evolve(state, &event);
            }
        }
        state
    }

    /// Applies `target`'s steps with the real rules; every step must be accepted.
    fn converged(state: &TenantState, target: &Target) -> TenantState {
        let catalog = Catalog::builtin();
        let mut state = state.clone();
        for (command, _) in converge(&state, target).unwrap() {
            for event in decide(&state, &command, now(), &catalog).unwrap() {
                state = evolve(state, &event);
            }
        }
        state
    }

    fn trial() -> Command {
        Command::StartTrial { plan_id: None, days: None, force_reset: None }
    }

    fn active(plan_id: &str, sub: &str) -> Command {
        Command::ActivateSubscription { plan_id: plan(plan_id), subscription_id: SubscriptionId::parse(sub).unwrap() }
    }

    #[test]
    fn a_store_already_in_the_target_state_gets_no_command() {
        let on_pro = store_after(&[active("professional", "sub_1")]);
        assert_eq!(converge(&on_pro, &target(Status::Active, Some("professional"), "sub_1")), Ok(vec![]));
        let past_due = store_after(&[active("professional", "sub_1"), Command::MarkPastDue]);
        assert_eq!(converge(&past_due, &target(Status::PastDue, None, "sub_1")), Ok(vec![]));
        let canceled = store_after(&[active("professional", "sub_1"), Command::CancelSubscription]);
        assert_eq!(converge(&canceled, &target(Status::Ended { was_paid: true }, None, "sub_1")), Ok(vec![]));
        let trialing = store_after(&[trial()]);
        assert_eq!(converge(&trialing, &target(Status::Trialing, None, "sub_1")), Ok(vec![]));
    }

    #[test]
    fn every_status_is_reached_from_a_trial() {
        let trialing = store_after(&[trial()]);
        let state = converged(&trialing, &target(Status::Active, Some("professional"), "sub_1"));
        assert!(matches!(state.phase, Phase::Active { .. }) && state.plan_id == Some(plan("professional")));
        let state = converged(&trialing, &target(Status::PastDue, Some("professional"), "sub_1"));
        assert!(matches!(state.phase, Phase::PastDue { .. }));
        let state = converged(&trialing, &target(Status::Ended { was_paid: true }, Some("professional"), "sub_1"));
        assert!(matches!(state.phase, Phase::Canceled { .. }), "{state:?}");
        // A trial subscription that ended during its trial was never paid: the trial goes on.
        let state = converged(&trialing, &target(Status::Ended { was_paid: false }, Some("professional"), "sub_1"));
        assert!(matches!(state.phase, Phase::Trialing { .. }));
    }

    #[test]
    fn payments_move_an_active_store_to_past_due_and_back() {
        let on_pro = store_after(&[active("professional", "sub_1")]);
        let failed = converge(&on_pro, &target(Status::PastDue, None, "sub_1")).unwrap();
        assert_eq!(failed, vec![(Command::MarkPastDue, "past_due")]);
        let past_due = converged(&on_pro, &target(Status::PastDue, None, "sub_1"));
        assert_eq!(
            converge(&past_due, &target(Status::Active, None, "sub_1")),
            Ok(vec![(Command::MarkRecovered, "recovered")])
        );
        // A new price on the same subscription is a plan change.
        let changed = converge(&on_pro, &target(Status::Active, Some("starter"), "sub_1")).unwrap();
        assert_eq!(changed, vec![(active("starter", "sub_1"), "activate")]);
    }

    #[test]
    fn the_end_of_an_old_subscription_leaves_the_current_one_alone() {
        let on_new = store_after(&[active("professional", "sub_new")]);
        assert_eq!(
            converge(&on_new, &target(Status::Ended { was_paid: true }, Some("starter"), "sub_old")),
            Ok(vec![])
        );
    }

    #[test]
    fn without_a_known_plan_a_store_is_not_activated() {
        let trialing = store_after(&[trial()]);
        assert_eq!(
            converge(&trialing, &target(Status::Active, None, "sub_9")),
            Err(Unreachable::NoPlan("sub_9".into()))
        );
        // But a store on the subscription keeps its plan when an invoice names none.
        let on_pro = store_after(&[active("professional", "sub_9")]);
        assert_eq!(
            converge(&on_pro, &target(Status::PastDue, None, "sub_9")),
            Ok(vec![(Command::MarkPastDue, "past_due")])
        );
    }

    #[test]
    fn a_trial_ends_exactly_when_stripe_says() {
        let fresh = store_after(&[]);
        let mut t = target(Status::Trialing, None, "sub_1");
        let ends_at = now() + chrono::TimeDelta::seconds(6 * 86_400 + 3_601);
        t.trial_end = Some(ends_at);
        let adopt = (Command::AdoptTrial { subscription_id: t.subscription_id.clone(), ends_at }, "adopt_trial");
        assert_eq!(converge(&fresh, &t), Ok(vec![adopt.clone()]));
        let state = converged(&fresh, &t);
        assert_eq!((state.trial_ends_at, &state.phase), (Some(ends_at), &Phase::Trialing { ends_at }));
        let used = store_after(&[trial(), active("starter", "sub_0"), Command::CancelSubscription]);
        assert_eq!(converge(&used, &t), Ok(vec![]), "a used trial is not started again");
    }

    #[test]
    fn any_status_of_a_subscription_that_had_a_trial_records_it() {
        let ends_at = now() + chrono::TimeDelta::days(3);
        for status in [Status::Active, Status::PastDue, Status::Ended { was_paid: true }, Status::Incomplete] {
            let mut t = target(status, Some("professional"), "sub_1");
            t.trial_end = Some(ends_at);
            let steps = converge(&store_after(&[]), &t).unwrap();
            assert!(
                matches!(steps.first(), Some((Command::AdoptTrial { .. }, "adopt_trial"))),
                "{status:?}: {steps:?}"
            );
            let state = converged(&store_after(&[]), &t);
            assert!(state.trial_used && state.trial_ends_at == Some(ends_at), "{status:?}: {state:?}");
        }
    }
}
