//! Explain (issue 36, item 5): the decision with its derivation, and the smallest changes that
//! would allow it, each checked by the rules.

use planledger_domain::*;
use uuid::Uuid;

use crate::support::*;

fn explained(history: Vec<Event>, name: &str, n: i64, at: chrono::DateTime<chrono::Utc>) -> Explanation {
    explain(&TenantState::from_events(&history), &action(name), amount(n), at, &catalog()).unwrap()
}

#[test]
fn a_frozen_store_would_be_allowed_on_a_paid_plan() {
    let at = t0() + days(300);
    let e = explained(in_frozen(), "create_article", 1, at);
    assert_eq!(e.decision.as_ref().unwrap_err().code(), "account_frozen");
    assert_eq!(e.status.internal_status, InternalStatus::Frozen);
    assert_eq!(
        e.would_allow,
        vec![Remedy::Plan(plan("starter"))],
        "the paid plan with the least allowance that allows it"
    );
}

#[test]
fn a_quota_refusal_names_the_reset_the_amount_and_a_larger_plan() {
    let at = t0() + days(5);
    let mut history = active();
    let state = TenantState::from_events(&history);
    let used = decide(
        &state,
        &Command::Consume { action: action("create_article"), amount: amount(30), consumption_id: Uuid::from_u128(1) },
        at,
        &catalog(),
    )
    .unwrap();
    history.extend(used);
    let e = explained(history, "create_article", 3, at);
    assert_eq!(e.decision.as_ref().unwrap_err().code(), "quota_exceeded");
    assert_eq!((e.quota.limit, e.quota.used, e.granted), (Some(30), 30, 0));
    let reset = e.quota.window.end.unwrap();
    assert_eq!(e.would_allow, vec![Remedy::Date(reset), Remedy::Amount(3), Remedy::Plan(plan("professional"))]);
}

#[test]
fn a_missing_feature_names_the_first_plan_that_lists_it_and_an_allowed_action_needs_nothing() {
    let at = t0() + days(5);
    let e = explained(active(), "view_analytics", 1, at);
    assert_eq!(e.decision.as_ref().unwrap_err().code(), "feature_not_in_plan");
    assert_eq!(e.required_feature.as_deref(), Some("analytics"));
    let [Remedy::Plan(plan_id)] = e.would_allow.as_slice() else { panic!("{:?}", e.would_allow) };
    assert!(catalog().plan(plan_id).unwrap().has_feature("analytics"));
    let e = explained(active(), "create_article", 1, at);
    assert!(e.decision.is_ok());
    assert!(e.would_allow.is_empty());
    assert!(explain(&TenantState::from_events(&active()), &action("teleport"), amount(1), at, &catalog()).is_err());
}
