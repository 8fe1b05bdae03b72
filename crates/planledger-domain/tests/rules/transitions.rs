//! contract §6: plan transitions and their validation errors.

use planledger_domain::*;
use serde_json::json;

use crate::support::*;

fn transition(from: &str, to: &str) -> TransitionPlan {
    TransitionPlan {
        from_plan_id: plan(from),
        to_plan_id: plan(to),
        reason: TransitionReason::Upgrade,
        subscription_id: Some(sub("sub_t")),
        metadata: None,
        by_admin: false,
    }
}

#[test]
fn an_upgrade_moves_the_store_to_the_new_plan() {
    let now = t0() + days(5);
    let state =
        given(active()).at(now).when(Command::TransitionPlan(transition("starter", "professional"))).then(vec![
            Event::PlanTransitioned {
                from_plan_id: plan("starter"),
                to_plan_id: plan("professional"),
                reason: TransitionReason::Upgrade,
                subscription_id: Some(sub("sub_t")),
                metadata: None,
                activates_subscription: false,
                at: now,
                schedule_id: None,
            },
        ]);
    assert_eq!(status(&state, now, &catalog()).tier.as_deref(), Some("professional"));
}

#[test]
fn a_stale_from_plan_is_a_mismatch() {
    given(active()).when(Command::TransitionPlan(transition("free_trial", "professional"))).then_err("plan_mismatch");
    given(vec![registered()])
        .when(Command::TransitionPlan(transition("free_trial", "starter")))
        .then_err("plan_mismatch");
}

#[test]
fn the_target_plan_must_exist() {
    given(active()).when(Command::TransitionPlan(transition("starter", "platinum"))).then_err("unknown_plan");
}

#[test]
fn the_target_plan_must_differ() {
    given(active()).when(Command::TransitionPlan(transition("starter", "starter"))).then_err("invalid_transition");
}

#[test]
fn the_internal_tier_cannot_be_chosen() {
    given(active()).when(Command::TransitionPlan(transition("starter", "google_only"))).then_err("internal_tier");
}

#[test]
fn a_paid_target_needs_a_subscription_id_unless_an_admin_asks() {
    let mut t = transition("free_trial", "starter");
    t.subscription_id = None;
    given(trialing()).when(Command::TransitionPlan(t.clone())).then_err("subscription_required");
    t.by_admin = true;
    t.reason = TransitionReason::Admin;
    let state = given(trialing()).when(Command::TransitionPlan(t)).then_types(&["PlanTransitioned"]).1;
    assert_eq!(state.phase, Phase::Active { subscription_id: None });
}

#[test]
fn a_trial_plan_is_only_chosen_during_a_trial() {
    let mut t = transition("starter", "free_trial");
    t.reason = TransitionReason::Downgrade;
    given(active()).when(Command::TransitionPlan(t)).then_err("invalid_transition");
    given(trialing())
        .when(Command::TransitionPlan(transition("free_trial", "professional")))
        .then_types(&["PlanTransitioned"]);
}

#[test]
fn metadata_is_a_json_object_of_at_most_8_kib() {
    let mut t = transition("starter", "professional");
    t.metadata = Some(json!({ "blob": "x".repeat(8 * 1024) }));
    let err = given(active()).when(Command::TransitionPlan(t.clone())).then_err("validation_failed");
    assert!(err.to_string().contains("metadata"));
    t.metadata = Some(json!(["not", "an", "object"]));
    given(active()).when(Command::TransitionPlan(t.clone())).then_err("validation_failed");
    t.metadata = Some(json!({ "ticket": 42, "note": "annual deal" }));
    given(active()).when(Command::TransitionPlan(t)).then_types(&["PlanTransitioned"]);
}

#[test]
fn a_transition_to_a_paid_plan_reactivates_a_maintenance_or_frozen_store() {
    for (history, day) in [(in_maintenance(), 30), (in_frozen(), 300)] {
        let now = t0() + days(day);
        let (events, state) = given(history)
            .at(now)
            .when(Command::TransitionPlan(transition("google_only", "starter")))
            .then_types(&["PlanTransitioned"]);
        assert!(matches!(events[0], Event::PlanTransitioned { activates_subscription: true, .. }));
        let status = status(&state, now + days(1000), &catalog());
        assert_eq!((status.internal_status, status.tier.as_deref()), (InternalStatus::Active, Some("starter")));
    }
}
