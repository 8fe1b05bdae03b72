//! Scheduled plan changes (issue 35): a change for later, one pending per store, applied by the
//! deadline at its time or refused then with its reason, cancellable, replaced by a newer one.

use planledger_domain::*;
use uuid::Uuid;

use crate::support::*;

fn schedule(id: u128, to: &str, at: ScheduleAt) -> Command {
    Command::SchedulePlanTransition(Box::new(SchedulePlanTransition {
        schedule_id: Uuid::from_u128(id),
        change: TransitionPlan {
            from_plan_id: plan("professional"),
            to_plan_id: plan(to),
            reason: TransitionReason::Downgrade,
            subscription_id: Some(sub("sub_1")),
            metadata: None,
            by_admin: false,
        },
        at,
        correlation_id: format!("corr-{id}"),
    }))
}

/// A store on professional (150 articles a month), paid since its trial's third day.
fn on_professional() -> Vec<Event> {
    let mut h = trialing();
    h.push(activated("professional", "sub_1", t0() + days(2), Some("free_trial")));
    h
}

fn consume_id(name: &str, n: i64, id: u128) -> Command {
    Command::Consume { action: action(name), amount: amount(n), consumption_id: Uuid::from_u128(0xc0de_0000 + id) }
}

fn limit(state: &TenantState, now: chrono::DateTime<chrono::Utc>) -> (Option<u64>, u64) {
    let position = quota_position(state, &action("create_article"), now, &catalog());
    (position.limit, position.used)
}

#[test]
fn a_downgrade_at_period_end_keeps_the_allowance_until_the_boundary() {
    let now = t0() + days(5);
    let mut history = on_professional();
    let (events, state) = given(history.clone())
        .at(now)
        .when(schedule(1, "starter", ScheduleAt::PeriodEnd))
        .then_types(&["PlanTransitionScheduled"]);
    history.extend(events.clone());
    let Event::PlanTransitionScheduled { at, at_period_end, from_plan_id, replaces, .. } = &events[0] else { panic!() };
    let at = *at;
    // The end of the window the store's monthly quotas count in now.
    let window = quota_position(&state, &action("create_article"), now, &catalog()).window;
    assert_eq!(Some(at), window.end);
    assert!(*at_period_end);
    assert_eq!(from_plan_id, &plan("professional"));
    assert_eq!(*replaces, None);
    assert_eq!(state.next_deadline(), Some(at));

    // Until the boundary, the higher allowance: 40 articles go through (on the day it was
    // scheduled), and one more just before the boundary.
    let just_before = at - chrono::TimeDelta::microseconds(1);
    let mut busy = history.clone();
    for i in 0..40 {
        let events =
            given(busy.clone()).at(now).when(consume_id("create_article", 1, i)).then_types(&["QuotaConsumed"]).0;
        busy.extend(events);
    }
    let events =
        given(busy.clone()).at(just_before).when(consume_id("create_article", 1, 40)).then_types(&["QuotaConsumed"]).0;
    busy.extend(events);
    assert_eq!(limit(&TenantState::from_events(&busy), just_before), (Some(150), 41));
    assert_eq!(
        given(busy.clone()).at(just_before).when(Command::ApplyDueTransitions).then(vec![]).plan_id,
        Some(plan("professional"))
    );

    // At it, the change applies, dated by its time, and the new window starts at the lower limit.
    let (applied, after) = given(busy).at(at).when(Command::ApplyDueTransitions).then_types(&["PlanTransitioned"]);
    let Event::PlanTransitioned { schedule_id, at: applied_at, to_plan_id, .. } = &applied[0] else { panic!() };
    assert_eq!((*schedule_id, *applied_at, to_plan_id), (Some(Uuid::from_u128(1)), at, &plan("starter")));
    assert_eq!(after.scheduled_transition, None);
    // Usage across the change is what the new plan's window holds (docs/decisions.md): starter
    // counts calendar months, so the article of the boundary's calendar month counts, and the
    // 40 of the month before do not.
    assert!(window.start.unwrap() < at && at.format("%d").to_string() != "01", "an anchored boundary mid-month: {at}");
    assert_eq!(limit(&after, at), (Some(30), 1));
    assert_eq!(
        applied[0].system_idempotency_key(store()),
        Some(format!("scheduled-transition:{}:{}", store(), Uuid::from_u128(1)))
    );
}

#[test]
fn a_canceled_change_never_applies() {
    let now = t0() + days(5);
    let (events, _) = given(on_professional())
        .at(now)
        .when(schedule(2, "starter", ScheduleAt::Time(now + days(3))))
        .then_types(&["PlanTransitionScheduled"]);
    let mut history = on_professional();
    history.extend(events);
    given(history.clone())
        .at(now)
        .when(Command::CancelScheduledTransition { schedule_id: Uuid::from_u128(9) })
        .then_err("schedule_not_found");
    let (canceled, state) = given(history.clone())
        .at(now + days(1))
        .when(Command::CancelScheduledTransition { schedule_id: Uuid::from_u128(2) })
        .then_types(&["ScheduledTransitionCanceled"]);
    assert_eq!(state.scheduled_transition, None);
    assert_eq!(state.next_deadline(), None);
    history.extend(canceled);
    let state = given(history).at(now + days(30)).when(Command::ApplyDueTransitions).then(vec![]);
    assert_eq!(state.plan_id, Some(plan("professional")));
}

#[test]
fn a_newer_change_replaces_the_pending_one() {
    let now = t0() + days(5);
    let (first, _) = given(on_professional())
        .at(now)
        .when(schedule(3, "starter", ScheduleAt::PeriodEnd))
        .then_types(&["PlanTransitionScheduled"]);
    let mut history = on_professional();
    history.extend(first);
    let (second, state) = given(history)
        .at(now)
        .when(schedule(4, "enterprise", ScheduleAt::Time(now + days(1))))
        .then_types(&["PlanTransitionScheduled"]);
    let Event::PlanTransitionScheduled { replaces, .. } = &second[0] else { panic!() };
    assert_eq!(*replaces, Some(Uuid::from_u128(3)));
    let pending = state.scheduled_transition.unwrap();
    assert_eq!((pending.schedule_id, pending.to_plan_id), (Uuid::from_u128(4), plan("enterprise")));
}

#[test]
fn a_change_the_rules_refuse_when_due_is_recorded_with_its_reason() {
    let now = t0() + days(5);
    let (events, _) = given(on_professional())
        .at(now)
        .when(schedule(5, "starter", ScheduleAt::Time(now + days(3))))
        .then_types(&["PlanTransitionScheduled"]);
    let mut history = on_professional();
    history.extend(events);
    // Meanwhile the store moved up at once: the change scheduled from professional no longer fits.
    let upgrade = TransitionPlan {
        from_plan_id: plan("professional"),
        to_plan_id: plan("enterprise"),
        reason: TransitionReason::Upgrade,
        subscription_id: Some(sub("sub_1")),
        metadata: None,
        by_admin: false,
    };
    let (moved, _) = given(history.clone())
        .at(now + days(1))
        .when(Command::TransitionPlan(upgrade))
        .then_types(&["PlanTransitioned"]);
    history.extend(moved);
    let (failed, state) =
        given(history).at(now + days(4)).when(Command::ApplyDueTransitions).then_types(&["ScheduledTransitionFailed"]);
    let Event::ScheduledTransitionFailed { error, at, .. } = &failed[0] else { panic!() };
    assert_eq!((error.as_str(), *at), ("plan_mismatch", now + days(3)));
    assert_eq!(state.plan_id, Some(plan("enterprise")));
    assert_eq!(state.scheduled_transition, None);
}

#[test]
fn a_schedule_the_rules_refuse_now_is_refused_at_once() {
    let now = t0() + days(5);
    given(on_professional()).at(now).when(schedule(6, "starter", ScheduleAt::Time(now))).then_err("validation_failed");
    given(on_professional()).at(now).when(schedule(7, "platinum", ScheduleAt::PeriodEnd)).then_err("unknown_plan");
    given(on_professional()).at(now).when(schedule(8, "google_only", ScheduleAt::PeriodEnd)).then_err("internal_tier");
    given(on_professional())
        .at(now)
        .when(schedule(9, "professional", ScheduleAt::PeriodEnd))
        .then_err("invalid_transition");
    given(vec![registered()]).at(now).when(schedule(10, "starter", ScheduleAt::PeriodEnd)).then_err("plan_mismatch");
}

#[test]
fn a_period_end_is_the_stores_own_month_in_its_time_zone() {
    // Registered in Auckland; February 2027 has 28 days.
    let mut history = vec![Event::StoreRegistered {
        store_id: store(),
        name: None,
        time_zone: TimeZoneName::parse("Pacific/Auckland").unwrap(),
        catalog_version: None,
    }];
    let started = t("2027-02-01T09:00:00Z");
    history.push(Event::TrialStarted { plan_id: plan("free_trial"), started_at: started, ends_at: started + days(14) });
    history.push(activated("professional", "sub_1", started + days(1), Some("free_trial")));
    let now = t("2027-02-20T12:00:00Z");
    let (events, state) = given(history)
        .at(now)
        .when(schedule(11, "starter", ScheduleAt::PeriodEnd))
        .then_types(&["PlanTransitionScheduled"]);
    let Event::PlanTransitionScheduled { at, .. } = &events[0] else { panic!() };
    let window = quota_position(&state, &action("create_article"), now, &catalog()).window;
    assert_eq!(Some(*at), window.end);
    assert!(*at < t("2027-03-01T00:00:00Z"), "Auckland's March starts on the 28th of February in UTC: {at}");
}
