//! contract §5: limits, periods, refunds, and usage across plan changes.

use chrono::TimeDelta;
use planledger_domain::state::USAGE_RETAINED_DAYS;
use planledger_domain::*;

use crate::support::*;

/// A trial long enough to cross month ends.
fn long_trial() -> Vec<Event> {
    vec![registered(), Event::TrialStarted { plan_id: plan("free_trial"), started_at: t0(), ends_at: t0() + days(90) }]
}

/// Applies `command` and returns the history with its events appended.
#[track_caller]
fn apply(history: Vec<Event>, now: chrono::DateTime<chrono::Utc>, command: Command) -> Vec<Event> {
    let state = TenantState::from_events(&history);
    let events = decide(&state, &command, now, &catalog()).unwrap_or_else(|e| panic!("{}: {e}", e.code()));
    history.into_iter().chain(events).collect()
}

#[test]
fn consumption_is_allowed_up_to_the_limit_and_refused_past_it() {
    // free_trial: 10 articles a month.
    let now = t0() + days(1);
    let mut history = trialing();
    for _ in 0..9 {
        history = apply(history, now, consume("create_article", 1));
    }
    let (events, _) = given(history.clone()).at(now).when(consume("create_article", 1)).then_types(&["QuotaConsumed"]);
    let Event::QuotaConsumed { used_after, limit, period_start, period_end, .. } = &events[0] else { unreachable!() };
    assert_eq!((*used_after, *limit), (10, Some(10)));
    assert_eq!((*period_start, *period_end), (Some(t("2026-03-01T00:00:00Z")), Some(t("2026-04-01T00:00:00Z"))));
    let history = apply(history, now, consume("create_article", 1));
    let err = given(history).at(now).when(consume("create_article", 1)).then_err("quota_exceeded");
    assert_eq!(err, DomainError::QuotaExceeded { limit: 10, used: 10, resets_at: Some(t("2026-04-01T00:00:00Z")) });
}

#[test]
fn an_amount_larger_than_what_remains_is_refused_whole() {
    let history = apply(trialing(), t0(), consume("create_article", 7));
    let err = given(history.clone()).when(consume("create_article", 4)).then_err("quota_exceeded");
    assert_eq!(err, DomainError::QuotaExceeded { limit: 10, used: 7, resets_at: Some(t("2026-04-01T00:00:00Z")) });
    given(history).when(consume("create_article", 3)).then_types(&["QuotaConsumed"]);
}

#[test]
fn a_lifetime_limit_never_resets() {
    // free_trial: 50 products, lifetime.
    let history = apply(trialing(), t0(), consume("create_product", 50));
    let err = given(history).at(t0() + days(13)).when(consume("create_product", 1)).then_err("quota_exceeded");
    assert_eq!(err, DomainError::QuotaExceeded { limit: 50, used: 50, resets_at: None });
}

#[test]
fn an_unmetered_action_is_allowed_and_still_recorded() {
    let (events, state) = given(trialing()).when(consume("update_product", 1_000_000)).then_types(&["QuotaConsumed"]);
    let Event::QuotaConsumed { limit, used_after, period, .. } = &events[0] else { unreachable!() };
    assert_eq!((*limit, *used_after, *period), (None, 1_000_000, Period::Month));
    assert_eq!(quota_position(&state, &action("update_product"), t0(), &catalog()).used, 1_000_000);
}

#[test]
fn nothing_consumed_in_one_period_counts_in_the_next() {
    let last_second = t("2026-03-31T23:59:59.999999Z");
    let history = apply(long_trial(), last_second, consume("create_article", 10));
    given(history.clone()).at(last_second).when(consume("create_article", 1)).then_err("quota_exceeded");
    let (events, _) =
        given(history).at(t("2026-04-01T00:00:00Z")).when(consume("create_article", 10)).then_types(&["QuotaConsumed"]);
    let Event::QuotaConsumed { used_after, period_start, .. } = &events[0] else { unreachable!() };
    assert_eq!((*used_after, *period_start), (10, Some(t("2026-04-01T00:00:00Z"))));
}

#[test]
fn calendar_periods_are_taken_in_the_store_time_zone() {
    let tokyo = Event::StoreRegistered {
        store_id: store(),
        name: None,
        time_zone: TimeZoneName::parse("Asia/Tokyo").unwrap(),
        catalog_version: None,
    };
    let history = apply(vec![tokyo, long_trial()[1].clone()], t("2026-03-31T14:30:00Z"), consume("create_article", 10));
    // 14:30 UTC on 31 March is 23:30 in Tokyo; 15:00 UTC is already April there.
    given(history.clone()).at(t("2026-03-31T14:59:59Z")).when(consume("create_article", 1)).then_err("quota_exceeded");
    given(history).at(t("2026-03-31T15:00:00Z")).when(consume("create_article", 1)).then_types(&["QuotaConsumed"]);
}

fn consumption_of(events: &[Event]) -> Consumption {
    events.last().and_then(Consumption::from_event).expect("the last event is a consumption")
}

fn refund(c: &Consumption) -> Command {
    Command::Refund { consumption_id: c.consumption_id, consumption: Some(c.clone()) }
}

#[test]
fn a_refund_gives_the_amount_back_to_its_own_period() {
    let history = apply(trialing(), t0(), consume("create_article", 10));
    let consumption = consumption_of(&history);
    let history = apply(history, t0() + TimeDelta::minutes(1), refund(&consumption));
    assert_eq!(history.last().map(Event::event_type), Some("QuotaRefunded"));
    given(history).at(t0() + TimeDelta::minutes(2)).when(consume("create_article", 10)).then_types(&["QuotaConsumed"]);
}

#[test]
fn a_refund_of_an_earlier_period_changes_nothing_in_the_current_one() {
    let march = apply(long_trial(), t0(), consume("create_article", 5));
    let march_consumption = consumption_of(&march);
    let april = t("2026-04-02T00:00:00Z");
    let history = apply(march, april, consume("create_article", 10));
    let history = apply(history, april, refund(&march_consumption));
    let state = TenantState::from_events(&history);
    assert_eq!(quota_position(&state, &action("create_article"), april, &catalog()).used, 10);
    given(history).at(april).when(consume("create_article", 1)).then_err("quota_exceeded");
}

#[test]
fn a_consumption_is_refunded_at_most_once() {
    let history = apply(trialing(), t0(), consume("create_article", 1));
    let c = consumption_of(&history);
    let history = apply(history, t0(), refund(&c));
    given(history).when(refund(&c)).then_err("already_refunded");
}

#[test]
fn a_refund_of_an_unknown_consumption_is_refused() {
    let command = Command::Refund { consumption_id: uuid::Uuid::from_u128(99), consumption: None };
    given(trialing()).when(command).then_err("consumption_not_found");
}

#[test]
fn a_refund_is_keyed_so_the_log_backs_the_rule() {
    let history = apply(trialing(), t0(), consume("create_article", 1));
    let c = consumption_of(&history);
    let (events, _) = given(history).when(refund(&c)).then_types(&["QuotaRefunded"]);
    assert_eq!(events[0].system_idempotency_key(store()), Some(format!("refund:{}", c.consumption_id)));
}

#[test]
fn a_refund_reaches_back_as_far_as_usage_is_kept_and_lifetime_ones_at_any_age() {
    let history = apply(long_trial(), t0(), consume("create_article", 1));
    let article = consumption_of(&history);
    let history = apply(history, t0(), consume("create_product", 1));
    let product = consumption_of(&history);
    let reach = days(USAGE_RETAINED_DAYS as i64);
    given(history.clone()).at(t0() + reach).when(refund(&article)).then_types(&["QuotaRefunded"]);
    given(history.clone()).at(t0() + reach + days(1)).when(refund(&article)).then_err("refund_window_closed");
    given(history).at(t0() + days(200)).when(refund(&product)).then_types(&[
        "TrialExpired",
        "DowngradedToMaintenance",
        "QuotaRefunded",
    ]);
}

#[test]
fn usage_keeps_only_the_days_windows_and_refunds_can_reach() {
    let mut history = long_trial();
    for day in 0..80 {
        history = apply(history, t0() + days(day), consume("update_product", 1));
    }
    let state = TenantState::from_events(&history);
    let usage = &state.usage[&action("update_product")];
    assert_eq!(usage.days.len() as u64, USAGE_RETAINED_DAYS + 1);
    assert_eq!(usage.lifetime, 80, "the lifetime total stays whole");
}

#[test]
fn a_plan_change_mid_period_keeps_the_usage_and_applies_the_new_limit() {
    let now = t0() + days(3);
    let history = apply(trialing(), now, consume("create_article", 10));
    given(history.clone()).at(now).when(consume("create_article", 1)).then_err("quota_exceeded");
    let upgrade = Command::TransitionPlan(TransitionPlan {
        from_plan_id: plan("free_trial"),
        to_plan_id: plan("starter"),
        reason: TransitionReason::Upgrade,
        subscription_id: Some(sub("sub_2")),
        metadata: None,
        by_admin: false,
    });
    let history = apply(history, now, upgrade);
    let (events, _) = given(history.clone()).at(now).when(consume("create_article", 20)).then_types(&["QuotaConsumed"]);
    let Event::QuotaConsumed { used_after, limit, .. } = &events[0] else { unreachable!() };
    assert_eq!((*used_after, *limit), (30, Some(30)), "10 kept from the trial, 20 more under starter's 30");
    let history = apply(history, now, consume("create_article", 20));
    given(history).at(now).when(consume("create_article", 1)).then_err("quota_exceeded");
}

#[test]
fn subscription_anchored_months_start_at_midnight_of_the_anchor_day() {
    // professional counts months from the store's billing anchor: activated on 31 January.
    let jan31 = t("2026-01-31T09:00:00Z");
    let history = vec![registered(), activated("professional", "sub_p", jan31, None)];
    let history = apply(history, t("2026-02-27T00:00:00Z"), consume("create_article", 150));
    given(history.clone()).at(t("2026-02-27T23:59:59Z")).when(consume("create_article", 1)).then_err("quota_exceeded");
    let (events, _) =
        given(history).at(t("2026-02-28T00:00:00Z")).when(consume("create_article", 1)).then_types(&["QuotaConsumed"]);
    let Event::QuotaConsumed { period_start, period_end, .. } = &events[0] else { unreachable!() };
    assert_eq!((*period_start, *period_end), (Some(t("2026-02-28T00:00:00Z")), Some(t("2026-03-31T00:00:00Z"))));
}

fn transition(from: &str, to: &str) -> Command {
    Command::TransitionPlan(TransitionPlan {
        from_plan_id: plan(from),
        to_plan_id: plan(to),
        reason: TransitionReason::Admin,
        subscription_id: Some(sub("sub_1")),
        metadata: None,
        by_admin: true,
    })
}

#[test]
fn moving_away_from_an_anchored_plan_and_back_keeps_the_month_usage() {
    // The review's case: professional (150 a month, anchored) -> starter -> professional.
    let start = t("2026-01-15T10:00:00Z");
    let history = vec![registered(), activated("professional", "sub_1", start, None)];
    let now = t("2026-03-20T12:00:00Z");
    let history = apply(history, now, consume("create_article", 150));
    let history = apply(history, now, transition("professional", "starter"));
    let history = apply(history, now + TimeDelta::hours(1), transition("starter", "professional"));
    let err =
        given(history).at(now + TimeDelta::hours(2)).when(consume("create_article", 1)).then_err("quota_exceeded");
    assert_eq!(err, DomainError::QuotaExceeded { limit: 150, used: 150, resets_at: Some(t("2026-04-15T00:00:00Z")) });
}

/// A catalog with one plan per kind of period, each limiting `a` to 10.
fn every_period_catalog() -> Catalog {
    Catalog::parse(
        "periods.toml",
        r#"
[lifecycle]
trial_days = 14
grace_days = 3
maintenance_days = 180
default_trial_plan = "day"

[actions.a]
kind = "growth"

[plans.day]
tier = "day"
kind = "paid"
trial_eligible = true
[plans.day.limits]
a = { limit = 10, period = "day" }

[plans.week]
tier = "week"
kind = "paid"
trial_eligible = false
[plans.week.limits]
a = { limit = 10, period = "week" }

[plans.month]
tier = "month"
kind = "paid"
trial_eligible = false
[plans.month.limits]
a = { limit = 10, period = "month" }

[plans.anchored]
tier = "anchored"
kind = "paid"
trial_eligible = false
anchor = "subscription"
[plans.anchored.limits]
a = { limit = 10, period = "month" }

[plans.lifetime]
tier = "lifetime"
kind = "paid"
trial_eligible = false
[plans.lifetime.limits]
a = { limit = 10, period = "lifetime" }

[plans.google_only]
tier = "google_only"
kind = "internal"
trial_eligible = false
"#,
    )
    .expect("the test catalog parses")
}

#[test]
fn every_pair_of_periods_carries_the_usage_across_a_plan_change() {
    // Billing anchor: the 5th. Consumption on the 20th (a Friday), plan change the same day:
    // whatever the next plan's period, the 10 used today are inside its current window.
    let catalog = every_period_catalog();
    let plans = ["day", "week", "month", "anchored", "lifetime"];
    let anchor = t("2026-03-05T10:00:00Z");
    let now = t("2026-03-20T12:00:00Z");
    for from in plans {
        for to in plans.iter().filter(|p| **p != from) {
            let mut state = TenantState::default();
            let mut run = |command: Command, at| {
                let events = decide(&state, &command, at, &catalog).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
                state = events.iter().fold(state.clone(), evolve);
            };
            run(Command::RegisterStore { store_id: store(), name: None, time_zone: None }, anchor);
            run(Command::ActivateSubscription { plan_id: plan(from), subscription_id: sub("sub_1") }, anchor);
            run(
                Command::Consume { action: action("a"), amount: amount(10), consumption_id: uuid::Uuid::from_u128(1) },
                now,
            );
            run(transition(from, to), now + TimeDelta::hours(1));
            let refused = decide(
                &state,
                &Command::Consume { action: action("a"), amount: amount(1), consumption_id: uuid::Uuid::from_u128(2) },
                now + TimeDelta::hours(2),
                &catalog,
            );
            assert!(
                matches!(refused, Err(DomainError::QuotaExceeded { used: 10, limit: 10, .. })),
                "{from} -> {to}: the period's usage must carry, got {refused:?}"
            );
        }
    }
}

#[test]
fn grace_keeps_the_trial_limits() {
    let history = apply(trialing(), t0(), consume("create_article", 9));
    let now = t0() + days(15);
    let (events, _) = given(history.clone())
        .at(now)
        .when(consume("create_article", 1))
        .then_types(&["TrialExpired", "QuotaConsumed"]);
    let Event::QuotaConsumed { limit, .. } = &events[1] else { unreachable!() };
    assert_eq!(*limit, Some(10));
}
