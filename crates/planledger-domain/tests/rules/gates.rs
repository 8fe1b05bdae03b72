//! contract §4: every row of the gate table, for read, update and growth actions.

use planledger_domain::*;

use crate::support::*;

const READ: &str = "view_products";
/// A read that requires the `analytics` feature.
const ANALYTICS: &str = "view_analytics";
const UPDATE: &str = "update_product";
const GROWTH: &str = "create_article";

#[track_caller]
fn allowed(decision: GateDecision, warnings: &[&str]) {
    match decision {
        GateDecision::Allowed { warnings: w, .. } => assert_eq!(w, warnings),
        GateDecision::Refused(r) => panic!("expected allowed, refused with {}", r.reason.code()),
    }
}

#[track_caller]
fn refused(decision: GateDecision, code: &str) -> GateRefusal {
    match decision {
        GateDecision::Refused(r) => {
            assert_eq!(r.reason.code(), code);
            r
        }
        GateDecision::Allowed { .. } => panic!("expected {code}, was allowed"),
    }
}

#[test]
fn without_a_subscription_a_store_may_only_read() {
    let s = given(vec![registered()]);
    allowed(s.gate(READ), &[]);
    refused(s.gate(UPDATE), "no_subscription");
    let r = refused(s.gate(GROWTH), "no_subscription");
    assert_eq!(
        (r.subscription_status, r.internal_status, r.subscription_tier),
        (SubscriptionStatus::None, InternalStatus::None, None)
    );
}

#[test]
fn trialing_and_active_stores_may_do_everything() {
    for history in [trialing(), active()] {
        let s = given(history).at(t0() + days(3));
        for a in [READ, UPDATE, GROWTH] {
            allowed(s.gate(a), &[]);
        }
    }
}

#[test]
fn in_grace_a_store_may_do_everything_with_a_warning() {
    let s = given(in_grace()).at(t0() + days(15));
    for a in [READ, UPDATE, GROWTH] {
        allowed(s.gate(a), &["trial_expired_grace_period"]);
    }
}

#[test]
fn past_due_a_store_may_do_everything_with_a_warning() {
    let s = given(past_due()).at(t0() + days(40));
    for a in [READ, UPDATE, GROWTH] {
        allowed(s.gate(a), &["payment_past_due"]);
    }
}

#[test]
fn in_maintenance_a_store_may_update_but_not_grow() {
    let s = given(in_maintenance()).at(t0() + days(20));
    allowed(s.gate(READ), &[]);
    allowed(s.gate(UPDATE), &[]);
    let r = refused(s.gate(GROWTH), "maintenance_no_growth");
    assert_eq!(r.subscription_tier.as_deref(), Some("google_only"));
}

#[test]
fn a_frozen_store_is_read_only_with_the_seed_error_body() {
    let s = given(in_frozen()).at(t0() + days(200));
    allowed(s.gate(READ), &[]);
    refused(s.gate(UPDATE), "account_frozen");
    let r = refused(s.gate(GROWTH), "account_frozen");
    assert_eq!(r.subscription_status, SubscriptionStatus::Expired);
    assert_eq!(r.subscription_tier.as_deref(), Some("google_only"));
    assert_eq!(r.internal_status, InternalStatus::Frozen);
    assert!(r.reason.message().starts_with("Your account is in read-only mode."));
}

#[test]
fn a_canceled_store_is_read_only() {
    let s = given(canceled()).at(t0() + days(40));
    allowed(s.gate(READ), &[]);
    refused(s.gate(UPDATE), "subscription_canceled");
    refused(s.gate(GROWTH), "subscription_canceled");
}

#[test]
fn an_unknown_action_is_an_error_not_a_refusal() {
    let err = gate(&given(trialing()).state(), t0(), &catalog(), &action("launch_rocket")).unwrap_err();
    assert_eq!(err.code(), "unknown_action");
    given(trialing()).when(consume("launch_rocket", 1)).then_err("unknown_action");
}

#[test]
fn consuming_passes_the_gates_first() {
    given(in_frozen()).at(t0() + days(200)).when(consume(UPDATE, 1)).then_err("account_frozen");
    given(canceled()).at(t0() + days(40)).when(consume(GROWTH, 1)).then_err("subscription_canceled");
    given(vec![registered()]).when(consume(GROWTH, 1)).then_err("no_subscription");
    given(vec![registered()]).when(consume(READ, 1)).then_types(&["QuotaConsumed"]);
}

#[test]
fn an_action_that_requires_a_feature_is_refused_unless_the_plan_lists_it() {
    // The built-in catalog: view_analytics requires `analytics`, which professional and
    // enterprise list and the trial, starter and maintenance plans do not.
    for (history, at) in [(trialing(), 2), (in_grace(), 15), (in_maintenance(), 20)] {
        let s = given(history).at(t0() + days(at));
        let r = refused(s.gate(ANALYTICS), "feature_not_in_plan");
        assert_eq!(r.feature.as_deref(), Some("analytics"));
        assert_eq!(r.subscription_tier, s.status().tier, "the refusal names the store's tier");
        assert!(matches!(s.gate(UPDATE), GateDecision::Allowed { .. }), "other actions are not affected");
    }
    let starter = given(vec![registered(), activated("starter", "sub_1", t0(), None)]);
    refused(starter.gate(ANALYTICS), "feature_not_in_plan");
    let professional = given(vec![registered(), activated("professional", "sub_1", t0(), None)]);
    allowed(professional.gate(ANALYTICS), &[]);
    // The status table comes first: a frozen store is refused growth for being frozen.
    let frozen = given(in_frozen()).at(t0() + days(200));
    refused(frozen.gate(GROWTH), "account_frozen");
    // Without a plan, no feature is listed.
    refused(given(vec![registered()]).gate(ANALYTICS), "feature_not_in_plan");
    allowed(given(vec![registered()]).gate(READ), &[]);
}

#[test]
fn a_feature_is_asked_for_as_a_read_of_it() {
    let catalog = catalog();
    let trial = given(trialing()).at(t0() + days(1)).state();
    let refusal = match gate_feature(&trial, t0() + days(1), &catalog, "analytics").unwrap() {
        GateDecision::Refused(r) => r,
        allowed => panic!("{allowed:?}"),
    };
    assert_eq!((refusal.reason, refusal.feature.as_deref()), (GateReason::FeatureNotInPlan, Some("analytics")));
    assert!(matches!(gate_feature(&trial, t0(), &catalog, "articles").unwrap(), GateDecision::Allowed { .. }));
    assert_eq!(
        gate_feature(&trial, t0(), &catalog, "teleportation"),
        Err(DomainError::UnknownFeature("teleportation".into())),
        "a feature no plan lists is an error, not a refusal"
    );
}

#[test]
fn consuming_an_action_that_requires_a_feature_is_refused_too() {
    let outcome = given(trialing()).at(t0() + days(1)).when(consume(ANALYTICS, 1));
    match outcome.result {
        Err(DomainError::Gate(r)) => assert_eq!(r.reason, GateReason::FeatureNotInPlan),
        other => panic!("{other:?}"),
    }
}
