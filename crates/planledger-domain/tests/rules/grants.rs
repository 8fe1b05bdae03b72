//! Grants (issue 35): allowance on top of the plan's for one action, used after the plan's in
//! the window, earliest expiry first; refunds give back to the grants they took from; expired and
//! voided grants give nothing.

use planledger_domain::*;
use uuid::Uuid;

use crate::support::*;

fn grant(id: u128, amount: i64, expires_in_days: Option<i64>) -> Command {
    Command::AddGrant {
        grant_id: Uuid::from_u128(id),
        action: action("create_article"),
        amount: amount_of(amount),
        expires_at: expires_in_days.map(|d| now() + days(d)),
        reason: reason("campaign"),
    }
}

fn amount_of(n: i64) -> Amount {
    Amount::parse(n).unwrap()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    t0() + days(5)
}

fn consume_as(n: i64, id: u128) -> Command {
    Command::Consume { action: action("create_article"), amount: amount_of(n), consumption_id: Uuid::from_u128(id) }
}

/// Runs `commands` at `now` on `history`, each on the state the ones before left.
fn run(mut history: Vec<Event>, at: chrono::DateTime<chrono::Utc>, commands: Vec<Command>) -> Vec<Event> {
    for command in commands {
        let state = TenantState::from_events(&history);
        let events = decide(&state, &command, at, &catalog()).unwrap_or_else(|e| panic!("{command:?}: {e}"));
        history.extend(events);
    }
    history
}

fn draws(event: &Event) -> Vec<(u128, u64)> {
    match event {
        Event::QuotaConsumed { from_grants, .. } | Event::QuotaRefunded { from_grants, .. } => {
            from_grants.iter().map(|d| (d.grant_id.as_u128(), d.amount)).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn grants_are_used_after_the_plan_earliest_expiry_first_and_refunds_give_back() {
    // Starter: 30 articles a month.
    let history = run(
        active(),
        now(),
        vec![grant(1, 10, Some(20)), grant(2, 5, Some(5)), grant(3, 3, None), consume_as(30, 100)],
    );
    assert_eq!(draws(history.last().unwrap()), vec![], "the plan's 30 first");
    let history = run(history, now(), vec![consume_as(1, 102)]);
    assert_eq!(draws(history.last().unwrap()), vec![(2, 1)], "then the grant that expires first");
    let history = run(history, now(), vec![consume_as(6, 103)]);
    assert_eq!(draws(history.last().unwrap()), vec![(2, 4), (1, 2)], "across grants, in order");
    let state = TenantState::from_events(&history);
    let position = quota_position(&state, &action("create_article"), now(), &catalog());
    assert_eq!((position.limit, position.used), (Some(30), 30), "the plan's window holds only its own");
    let left: Vec<u64> = [1u128, 2, 3].iter().map(|id| state.grants[&Uuid::from_u128(*id)].remaining(now())).collect();
    assert_eq!(left, vec![8, 0, 3]);

    // The refund gives back to the grants it took from.
    let consumption = Consumption::from_event(history.last().unwrap()).unwrap();
    let refunded = decide(
        &state,
        &Command::Refund { consumption_id: consumption.consumption_id, consumption: Some(consumption) },
        now(),
        &catalog(),
    )
    .unwrap();
    assert_eq!(draws(&refunded[0]), vec![(2, 4), (1, 2)]);
    let state = refunded.iter().fold(state, evolve);
    let left: Vec<u64> = [1u128, 2, 3].iter().map(|id| state.grants[&Uuid::from_u128(*id)].remaining(now())).collect();
    assert_eq!(left, vec![10, 4, 3]);
    assert_eq!(quota_position(&state, &action("create_article"), now(), &catalog()).used, 30);

    // 17 more are all the grants hold; the 18th is refused, and takes nothing.
    let history: Vec<Event> = history.into_iter().chain(refunded).collect();
    let history = run(history, now(), vec![consume_as(17, 104)]);
    let state = TenantState::from_events(&history);
    given(history).at(now()).when(consume_as(1, 105)).then_err("quota_exceeded");
    assert!(state.grants.values().all(|g| g.remaining(now()) == 0));
}

#[test]
fn an_expired_or_voided_grant_gives_nothing() {
    let history = run(active(), now(), vec![grant(1, 10, Some(2)), grant(2, 10, None), consume_as(30, 100)]);
    // After the first expires, the second is used.
    let later = now() + days(3);
    let history = run(history, later, vec![consume_as(1, 101)]);
    assert_eq!(draws(history.last().unwrap()), vec![(2, 1)]);
    let void = Command::VoidGrant { grant_id: Uuid::from_u128(2), reason: reason("by mistake") };
    let (events, state) = given(history.clone()).at(later).when(void.clone()).then_types(&["GrantVoided"]);
    assert_eq!(state.grants[&Uuid::from_u128(2)].remaining(later), 0);
    let mut history = history;
    history.extend(events);
    given(history.clone()).at(later).when(consume_as(1, 102)).then_err("quota_exceeded");
    given(history.clone()).at(later).when(void).then_err("grant_not_found");
    given(history)
        .at(later)
        .when(Command::VoidGrant { grant_id: Uuid::from_u128(9), reason: reason("x") })
        .then_err("grant_not_found");
}

#[test]
fn a_grant_is_for_an_action_of_the_catalog_and_a_later_expiry() {
    let bad_action = Command::AddGrant {
        grant_id: Uuid::from_u128(1),
        action: action("teleport"),
        amount: amount_of(5),
        expires_at: None,
        reason: reason("x"),
    };
    given(active()).at(now()).when(bad_action).then_err("unknown_action");
    given(active()).at(now()).when(grant(1, 5, Some(0))).then_err("validation_failed");
    let (events, _) = given(active()).at(now()).when(grant(1, 5, Some(1))).then_types(&["GrantAdded"]);
    let mut history = active();
    history.extend(events);
    // The same grant id again (a retry that lost its key) adds nothing.
    given(history).at(now()).when(grant(1, 5, Some(1))).then(vec![]);
}
