//! SPEC 5: limits, periods, refunds, and usage across plan changes.

use chrono::TimeDelta;
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
    assert_eq!(err.http_status(), 429);
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
    let tokyo =
        Event::StoreRegistered { store_id: store(), name: None, time_zone: TimeZoneName::parse("Asia/Tokyo").unwrap() };
    let history = apply(vec![tokyo, long_trial()[1].clone()], t("2026-03-31T14:30:00Z"), consume("create_article", 10));
    // 14:30 UTC on 31 March is 23:30 in Tokyo; 15:00 UTC is already April there.
    given(history.clone()).at(t("2026-03-31T14:59:59Z")).when(consume("create_article", 1)).then_err("quota_exceeded");
    given(history).at(t("2026-03-31T15:00:00Z")).when(consume("create_article", 1)).then_types(&["QuotaConsumed"]);
}

fn consumption_of(events: &[Event]) -> Consumption {
    match events.last() {
        Some(Event::QuotaConsumed { consumption_id, action, amount, period, period_start, period_end, .. }) => {
            Consumption {
                consumption_id: *consumption_id,
                action: action.clone(),
                amount: *amount,
                period: *period,
                period_start: *period_start,
                period_end: *period_end,
            }
        }
        other => panic!("expected a consumption, found {other:?}"),
    }
}

#[test]
fn a_refund_gives_the_amount_back_to_its_own_period() {
    let history = apply(trialing(), t0(), consume("create_article", 10));
    let refund = Command::Refund { consumption: consumption_of(&history) };
    let history = apply(history, t0() + TimeDelta::minutes(1), refund);
    assert_eq!(history.last().map(Event::event_type), Some("QuotaRefunded"));
    given(history).at(t0() + TimeDelta::minutes(2)).when(consume("create_article", 10)).then_types(&["QuotaConsumed"]);
}

#[test]
fn a_refund_of_an_earlier_period_changes_nothing_in_the_current_one() {
    let march = apply(long_trial(), t0(), consume("create_article", 5));
    let march_consumption = consumption_of(&march);
    let april = t("2026-04-02T00:00:00Z");
    let history = apply(march, april, consume("create_article", 10));
    let history = apply(history, april, Command::Refund { consumption: march_consumption });
    let state = TenantState::from_events(&history);
    assert_eq!(quota_position(&state, &action("create_article"), april, &catalog()).used, 10);
    given(history).at(april).when(consume("create_article", 1)).then_err("quota_exceeded");
}

#[test]
fn a_refund_is_keyed_so_the_log_takes_it_at_most_once() {
    let history = apply(trialing(), t0(), consume("create_article", 1));
    let c = consumption_of(&history);
    let (events, _) = given(history).when(Command::Refund { consumption: c.clone() }).then_types(&["QuotaRefunded"]);
    assert_eq!(events[0].system_idempotency_key(store()), Some(format!("refund:{}", c.consumption_id)));
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
fn subscription_anchored_months_start_on_the_plan_start_day() {
    // professional counts months from its start: activated on 31 January.
    let jan31 = t("2026-01-31T09:00:00Z");
    let history = vec![registered(), activated("professional", "sub_p", jan31, None)];
    let history = apply(history, t("2026-02-27T00:00:00Z"), consume("create_article", 150));
    given(history.clone()).at(t("2026-02-28T08:59:59Z")).when(consume("create_article", 1)).then_err("quota_exceeded");
    let (events, _) =
        given(history).at(t("2026-02-28T09:00:00Z")).when(consume("create_article", 1)).then_types(&["QuotaConsumed"]);
    let Event::QuotaConsumed { period_start, period_end, .. } = &events[0] else { unreachable!() };
    assert_eq!((*period_start, *period_end), (Some(t("2026-02-28T09:00:00Z")), Some(t("2026-03-31T09:00:00Z"))));
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
