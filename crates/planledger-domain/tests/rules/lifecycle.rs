//! contract §3: trial, grace, maintenance, frozen, reactivation, the paid lifecycle, extensions.

use planledger_domain::*;

use crate::support::*;

#[test]
fn a_trial_starts_on_the_default_plan_for_the_catalog_days() {
    given(vec![registered()])
        .when(Command::StartTrial { plan_id: None, days: None, force_reset: None })
        .then(vec![trial_started(t0())]);
}

#[test]
fn a_trial_can_start_on_a_trial_eligible_paid_plan_for_given_days() {
    let state = given(vec![registered()])
        .when(Command::StartTrial {
            plan_id: Some(plan("professional")),
            days: Some(Days::parse(30).unwrap()),
            force_reset: None,
        })
        .then(vec![Event::TrialStarted { plan_id: plan("professional"), started_at: t0(), ends_at: t0() + days(30) }]);
    assert_eq!(state.plan_id, Some(plan("professional")));
}

#[test]
fn a_plan_that_is_not_trial_eligible_cannot_be_trialed() {
    for id in ["enterprise", "google_only"] {
        given(vec![registered()])
            .when(Command::StartTrial { plan_id: Some(plan(id)), days: None, force_reset: None })
            .then_err("plan_not_trial_eligible");
    }
    given(vec![registered()])
        .when(Command::StartTrial { plan_id: Some(plan("platinum")), days: None, force_reset: None })
        .then_err("unknown_plan");
}

#[test]
fn starting_a_running_trial_again_returns_it_unchanged() {
    given(trialing())
        .at(t0() + days(5))
        .when(Command::StartTrial {
            plan_id: Some(plan("starter")),
            days: Some(Days::parse(90).unwrap()),
            force_reset: None,
        })
        .then(vec![]);
}

#[test]
fn a_used_trial_is_not_restarted_without_force() {
    for history in [in_grace(), in_maintenance(), in_frozen()] {
        given(history)
            .at(t0() + days(400))
            .when(Command::StartTrial { plan_id: None, days: None, force_reset: None })
            .then_err("trial_already_used");
    }
    // Also once a trial has run out but before any worker noticed.
    given(trialing())
        .at(t0() + days(15))
        .when(Command::StartTrial { plan_id: None, days: None, force_reset: None })
        .then_err("trial_already_used");
}

#[test]
fn an_admin_force_reset_restarts_a_used_trial_with_its_reason() {
    let now = t0() + days(20);
    given(in_maintenance())
        .at(now)
        .when(Command::StartTrial {
            plan_id: None,
            days: None,
            force_reset: Some(reason("sales promise, ticket 4711")),
        })
        .then(vec![Event::TrialRestarted {
            plan_id: plan("free_trial"),
            started_at: now,
            ends_at: now + days(14),
            reason: reason("sales promise, ticket 4711"),
        }]);
}

#[test]
fn a_trial_is_refused_while_a_paid_subscription_is_active_or_past_due() {
    for history in [active(), past_due()] {
        given(history)
            .at(t0() + days(20))
            .when(Command::StartTrial { plan_id: None, days: None, force_reset: None })
            .then_err("subscription_active");
    }
}

#[test]
fn a_providers_trial_starts_with_its_own_end_on_a_store_that_never_had_one() {
    let ends_at = t0() + days(9) + chrono::TimeDelta::seconds(1234);
    let adopt = Command::AdoptTrial { subscription_id: sub("sub_1"), ends_at };
    let state = given(vec![registered()]).when(adopt.clone()).then(vec![Event::TrialStarted {
        plan_id: plan("free_trial"),
        started_at: t0(),
        ends_at,
    }]);
    assert_eq!((state.trial_used, state.trial_ends_at), (true, Some(ends_at)), "the provider's exact end");
    // Again: the trial it started is the one, nothing more.
    given(vec![registered(), Event::TrialStarted { plan_id: plan("free_trial"), started_at: t0(), ends_at }])
        .when(adopt)
        .then(vec![]);
}

#[test]
fn a_providers_trial_is_only_recorded_on_a_store_that_holds_a_subscription_or_whose_trial_ended() {
    let ends_at = t0() + days(9);
    let paying = vec![registered(), activated("starter", "sub_1", t0(), None)];
    let failing = [paying.clone(), vec![Event::SubscriptionPastDue { subscription_id: Some(sub("sub_1")) }]].concat();
    let ended = [paying.clone(), vec![Event::SubscriptionCanceled { subscription_id: Some(sub("sub_1")) }]].concat();
    for history in [paying, failing, ended] {
        let state = given(history)
            .at(t0() + days(1))
            .when(Command::AdoptTrial { subscription_id: sub("sub_1"), ends_at })
            .then(vec![Event::TrialRecorded { subscription_id: sub("sub_1"), ends_at }]);
        assert!(state.trial_used && state.trial_ends_at == Some(ends_at));
        assert!(!matches!(state.phase, Phase::Trialing { .. }), "no trial starts: {:?}", state.phase);
    }
    // A trial that is over when it is learned of is recorded, not started.
    given(vec![registered()])
        .at(ends_at + days(1))
        .when(Command::AdoptTrial { subscription_id: sub("sub_1"), ends_at })
        .then(vec![Event::TrialRecorded { subscription_id: sub("sub_1"), ends_at }]);
}

#[test]
fn a_store_whose_providers_trial_was_recorded_cannot_start_a_free_trial() {
    let ends_at = t0() + days(9);
    let mut history = vec![registered(), activated("starter", "sub_1", t0(), None)];
    history.push(Event::SubscriptionCanceled { subscription_id: Some(sub("sub_1")) });
    history.push(Event::TrialRecorded { subscription_id: sub("sub_1"), ends_at });
    given(history)
        .at(t0() + days(30))
        .when(Command::StartTrial { plan_id: None, days: None, force_reset: None })
        .then_err("trial_already_used");
    // And a store that had a trial of its own keeps it: the provider's is not recorded over it.
    given(trialing()).when(Command::AdoptTrial { subscription_id: sub("sub_1"), ends_at }).then(vec![]);
}

#[test]
fn commands_on_an_unregistered_store_are_refused() {
    given(vec![])
        .when(Command::StartTrial { plan_id: None, days: None, force_reset: None })
        .then_err("store_not_found");
    given(vec![]).when(consume("create_article", 1)).then_err("store_not_found");
}

#[test]
fn registering_again_is_a_retry_unless_the_name_differs() {
    let again = |name: &str| Command::RegisterStore {
        store_id: store(),
        name: Some(StoreName::parse(name).unwrap()),
        time_zone: None,
    };
    given(vec![registered()]).when(again("Corner Shop")).then(vec![]);
    given(vec![registered()]).when(again("Other Shop")).then_err("store_exists");
    given(vec![registered()])
        .when(Command::RegisterStore {
            store_id: store(),
            name: None,
            time_zone: Some(TimeZoneName::parse("Asia/Tokyo").unwrap()),
        })
        .then_err("store_exists");
    given(vec![]).when(again("Corner Shop")).then(vec![registered()]);
}

#[test]
fn at_trial_end_without_a_paid_subscription_the_store_enters_grace() {
    let end = t0() + days(14);
    given(trialing()).at(end - chrono::TimeDelta::seconds(1)).when(Command::ApplyDueTransitions).then(vec![]);
    let state = given(trialing()).at(end).when(Command::ApplyDueTransitions).then(vec![trial_expired(end)]);
    let status = status(&state, end, &catalog());
    assert_eq!(
        (status.subscription_status, status.internal_status),
        (SubscriptionStatus::Expired, InternalStatus::Grace)
    );
    assert_eq!(state.plan_id, Some(plan("free_trial")), "grace keeps the trial plan and its limits");
}

#[test]
fn a_paid_subscription_started_during_the_trial_keeps_its_plan_at_trial_end() {
    let (_, state) = given(active()).at(t0() + days(30)).when(Command::ApplyDueTransitions).then_types(&[]);
    let status = status(&state, t0() + days(300), &catalog());
    assert_eq!(status.internal_status, InternalStatus::Active);
    assert_eq!(status.tier.as_deref(), Some("starter"));
}

#[test]
fn at_grace_end_the_store_is_downgraded_to_google_only() {
    let grace_end = t0() + days(17);
    let state = given(in_grace())
        .at(grace_end)
        .when(Command::ApplyDueTransitions)
        .then(vec![downgraded(grace_end, "free_trial")]);
    let status = status(&state, grace_end, &catalog());
    assert_eq!(status.internal_status, InternalStatus::Maintenance);
    assert_eq!(status.tier.as_deref(), Some("google_only"));
    assert_eq!(state.maintenance_ends_at, Some(grace_end + days(180)));
}

#[test]
fn at_maintenance_end_the_store_is_frozen() {
    let end = t0() + days(197);
    let state = given(in_maintenance()).at(end).when(Command::ApplyDueTransitions).then(vec![frozen(end)]);
    assert_eq!(status(&state, end, &catalog()).internal_status, InternalStatus::Frozen);
}

#[test]
fn deadlines_long_past_cascade_in_one_decision() {
    given(trialing()).at(t0() + days(400)).when(Command::ApplyDueTransitions).then(vec![
        trial_expired(t0() + days(14)),
        downgraded(t0() + days(17), "free_trial"),
        frozen(t0() + days(197)),
    ]);
}

#[test]
fn a_command_after_a_deadline_is_decided_on_the_new_status() {
    // The worker is late: the store is past its grace end but still stored as trialing.
    let now = t0() + days(20);
    given(trialing()).at(now).when(consume("create_article", 1)).then_err("maintenance_no_growth");
    let (events, _) = given(trialing()).at(now).when(consume("update_product", 1)).then_types(&[
        "TrialExpired",
        "DowngradedToMaintenance",
        "QuotaConsumed",
    ]);
    let Event::QuotaConsumed { limit, .. } = &events[2] else { unreachable!() };
    assert_eq!(*limit, Some(200), "decided under google_only's limits");
}

#[test]
fn reads_derive_the_status_from_now_before_the_worker_appends() {
    let scenario = given(trialing());
    assert_eq!(scenario.status().internal_status, InternalStatus::Trialing);
    let cases = [(15, InternalStatus::Grace), (18, InternalStatus::Maintenance), (197, InternalStatus::Frozen)];
    for (day, expected) in cases {
        assert_eq!(given(trialing()).at(t0() + days(day)).status().internal_status, expected, "day {day}");
    }
}

#[test]
fn a_paid_subscription_reactivates_a_frozen_store() {
    let now = t0() + days(250);
    let state = given(in_frozen())
        .at(now)
        .when(Command::ActivateSubscription { plan_id: plan("starter"), subscription_id: sub("sub_9") })
        .then(vec![activated("starter", "sub_9", now, Some("google_only"))]);
    let status = status(&state, now + days(1000), &catalog());
    assert_eq!((status.internal_status, status.tier.as_deref()), (InternalStatus::Active, Some("starter")));
    assert_eq!(
        (state.grace_ends_at, state.maintenance_ends_at),
        (None, None),
        "activation clears grace and maintenance"
    );
}

#[test]
fn activating_the_same_subscription_again_appends_nothing() {
    given(active())
        .at(t0() + days(3))
        .when(Command::ActivateSubscription { plan_id: plan("starter"), subscription_id: sub("sub_1") })
        .then(vec![]);
}

#[test]
fn only_a_paid_plan_can_be_activated() {
    given(trialing())
        .when(Command::ActivateSubscription { plan_id: plan("free_trial"), subscription_id: sub("s") })
        .then_err("not_a_paid_plan");
    given(trialing())
        .when(Command::ActivateSubscription { plan_id: plan("google_only"), subscription_id: sub("s") })
        .then_err("not_a_paid_plan");
    given(trialing())
        .when(Command::ActivateSubscription { plan_id: plan("gold"), subscription_id: sub("s") })
        .then_err("unknown_plan");
}

#[test]
fn the_paid_lifecycle_goes_past_due_recovers_and_cancels() {
    let now = t0() + days(40);
    let state = given(active())
        .at(now)
        .when(Command::MarkPastDue)
        .then(vec![Event::SubscriptionPastDue { subscription_id: Some(sub("sub_1")) }]);
    assert_eq!(status(&state, now, &catalog()).internal_status, InternalStatus::PastDue);
    given(past_due()).at(now).when(Command::MarkPastDue).then(vec![]);
    given(past_due())
        .at(now)
        .when(Command::MarkRecovered)
        .then(vec![Event::SubscriptionRecovered { subscription_id: Some(sub("sub_1")) }]);
    given(past_due())
        .at(now)
        .when(Command::CancelSubscription)
        .then(vec![Event::SubscriptionCanceled { subscription_id: Some(sub("sub_1")) }]);
    let state = given(active()).at(now).when(Command::CancelSubscription).then_types(&["SubscriptionCanceled"]).1;
    let status = status(&state, now, &catalog());
    assert_eq!(
        (status.subscription_status, status.internal_status),
        (SubscriptionStatus::Canceled, InternalStatus::Canceled)
    );
    given(canceled()).at(now).when(Command::CancelSubscription).then(vec![]);
}

#[test]
fn the_paid_lifecycle_needs_a_paid_subscription() {
    given(trialing()).when(Command::MarkPastDue).then_err("no_active_subscription");
    given(trialing()).when(Command::CancelSubscription).then_err("no_active_subscription");
    given(active()).when(Command::MarkRecovered).then(vec![]);
    given(trialing()).when(Command::MarkRecovered).then_err("not_past_due");
}

#[test]
fn an_admin_extends_a_trial_a_grace_period_or_a_maintenance_window() {
    let extend = |kind| Command::Extend { kind, days: Days::parse(7).unwrap(), reason: reason("support") };
    let now = t0() + days(1);
    let state = given(trialing()).at(now).when(extend(ExtensionKind::Trial)).then(vec![Event::TrialExtended {
        days: Days::parse(7).unwrap(),
        reason: reason("support"),
        previous_ends_at: t0() + days(14),
        ends_at: t0() + days(21),
    }]);
    assert_eq!(status(&state, t0() + days(20), &catalog()).internal_status, InternalStatus::Trialing);

    let state =
        given(in_grace()).at(t0() + days(15)).when(extend(ExtensionKind::Grace)).then_types(&["GracePeriodExtended"]).1;
    assert_eq!(state.grace_ends_at, Some(t0() + days(24)));
    assert_eq!(status(&state, t0() + days(23), &catalog()).internal_status, InternalStatus::Grace);

    let state = given(in_maintenance())
        .at(t0() + days(30))
        .when(extend(ExtensionKind::Maintenance))
        .then_types(&["MaintenanceExtended"])
        .1;
    assert_eq!(state.maintenance_ends_at, Some(t0() + days(204)));
}

#[test]
fn an_extension_needs_the_store_in_that_phase() {
    let extend = |kind| Command::Extend { kind, days: Days::parse(7).unwrap(), reason: reason("support") };
    given(in_grace()).at(t0() + days(15)).when(extend(ExtensionKind::Trial)).then_err("not_trialing");
    given(trialing()).when(extend(ExtensionKind::Grace)).then_err("not_in_grace");
    given(in_frozen()).at(t0() + days(300)).when(extend(ExtensionKind::Maintenance)).then_err("not_in_maintenance");
    // A trial that ran out unnoticed is no longer extendable: the deadline is applied first.
    given(trialing()).at(t0() + days(14)).when(extend(ExtensionKind::Trial)).then_err("not_trialing");
}

#[test]
fn time_driven_transitions_carry_deterministic_idempotency_keys() {
    let event = trial_expired(t0() + days(14));
    assert_eq!(
        event.system_idempotency_key(store()).as_deref(),
        Some("trial-expiry:00000000-0000-0000-0000-00000005107e:2026-03-16T10:00:00.000000Z")
    );
    assert!(downgraded(t0(), "free_trial").system_idempotency_key(store()).unwrap().starts_with("grace-end:"));
    assert!(frozen(t0()).system_idempotency_key(store()).unwrap().starts_with("maintenance-end:"));
    assert_eq!(trial_started(t0()).system_idempotency_key(store()), None);
}

#[test]
fn the_next_deadline_follows_the_phase() {
    assert_eq!(given(trialing()).state().next_deadline(), Some(t0() + days(14)));
    assert_eq!(given(in_grace()).state().next_deadline(), Some(t0() + days(17)));
    assert_eq!(given(in_maintenance()).state().next_deadline(), Some(t0() + days(197)));
    assert_eq!(given(in_frozen()).state().next_deadline(), None);
    assert_eq!(given(active()).state().next_deadline(), None);
}
