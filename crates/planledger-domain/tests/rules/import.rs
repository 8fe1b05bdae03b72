//! contract §13: tenants moving in.

use planledger_domain::command::{ImportSource, ImportedStatus, ImportedStore, ImportedUsage};
use planledger_domain::values::ExternalId;
use planledger_domain::*;

use crate::support::*;

fn tenant(status: ImportedStatus) -> ImportedStore {
    ImportedStore {
        external_id: ExternalId::parse("clx0k2m1q0000abcd").unwrap(),
        name: None,
        time_zone: TimeZoneName::parse("Asia/Tokyo").unwrap(),
        plan_id: None,
        status,
        trial_ends_at: None,
        grace_ends_at: None,
        maintenance_ends_at: None,
        trial_used: false,
        subscription_id: None,
        customer_id: None,
        billing_anchor: None,
        usage: vec![],
        source: ImportSource { name: "tenants.ndjson".into(), sha256: None, line: Some(1) },
    }
}

fn import(state: &TenantState, tenant: ImportedStore) -> Result<Vec<Event>, DomainError> {
    decide(state, &Command::ImportStore(Box::new(tenant)), t0(), &Catalog::builtin())
}

#[test]
fn a_trialing_tenant_keeps_its_exact_end_and_its_trial_is_used() {
    let ends_at = t0() + days(5);
    let events = import(
        &TenantState::default(),
        ImportedStore { trial_ends_at: Some(ends_at), ..tenant(ImportedStatus::Trialing) },
    )
    .unwrap();
    let state = TenantState::from_events(&events);
    assert_eq!((state.phase.clone(), state.trial_used), (Phase::Trialing { ends_at }, true));
    assert_eq!(state.plan_id, Some(plan("free_trial")), "the catalog's trial plan");
    assert_eq!(state.store_id, Some(StoreId::imported(&ExternalId::parse("clx0k2m1q0000abcd").unwrap())));
}

#[test]
fn a_status_without_its_date_is_refused_naming_the_field() {
    let refused = import(&TenantState::default(), tenant(ImportedStatus::Trialing)).unwrap_err();
    assert_eq!(refused.code(), "validation_failed");
    assert!(matches!(refused, DomainError::Validation(ref v) if v.field == "trialEndsAt"), "{refused:?}");
    let refused = import(&TenantState::default(), tenant(ImportedStatus::Maintenance)).unwrap_err();
    assert!(matches!(refused, DomainError::Validation(ref v) if v.field == "maintenanceEndsAt"), "{refused:?}");
}

#[test]
fn a_paid_status_needs_a_paid_plan_and_a_subscription() {
    let no_plan = import(&TenantState::default(), tenant(ImportedStatus::Active)).unwrap_err();
    assert!(matches!(no_plan, DomainError::Validation(ref v) if v.field == "planId"), "{no_plan:?}");
    let on_trial = ImportedStore {
        plan_id: Some(plan("free_trial")),
        subscription_id: Some(sub("sub_1")),
        ..tenant(ImportedStatus::Active)
    };
    assert_eq!(import(&TenantState::default(), on_trial).unwrap_err().code(), "not_a_paid_plan");
    let no_subscription = ImportedStore { plan_id: Some(plan("starter")), ..tenant(ImportedStatus::PastDue) };
    assert_eq!(import(&TenantState::default(), no_subscription).unwrap_err().code(), "subscription_required");
}

#[test]
fn usage_counts_in_its_window_only() {
    // Tokyo's March starts on 1 March at 00:00 local time, 28 February 15:00 UTC.
    let since = t("2026-02-28T15:00:00Z");
    let active = ImportedStore {
        plan_id: Some(plan("starter")),
        subscription_id: Some(sub("sub_1")),
        usage: vec![ImportedUsage { action: action("create_article"), used: 28, since: Some(since) }],
        ..tenant(ImportedStatus::Active)
    };
    let state = TenantState::from_events(&import(&TenantState::default(), active).unwrap());
    let here = quota_position(&state, &action("create_article"), t0(), &Catalog::builtin());
    assert_eq!((here.used, here.limit), (28, Some(30)));
    let next_month = quota_position(&state, &action("create_article"), t("2026-04-02T00:00:00Z"), &Catalog::builtin());
    assert_eq!(next_month.used, 0, "a new window starts from nothing");
}

#[test]
fn importing_again_is_a_no_op_and_another_store_under_the_id_is_refused() {
    let active = ImportedStore {
        plan_id: Some(plan("starter")),
        subscription_id: Some(sub("sub_1")),
        ..tenant(ImportedStatus::Active)
    };
    let state = TenantState::from_events(&import(&TenantState::default(), active.clone()).unwrap());
    assert_eq!(import(&state, active.clone()).unwrap(), vec![], "imported already: unchanged");
    let other = ImportedStore { external_id: ExternalId::parse("someone-else").unwrap(), ..active };
    assert_eq!(import(&state, other).unwrap_err().code(), "store_exists");
}

#[test]
fn maintenance_and_frozen_tenants_are_on_the_maintenance_plan() {
    let frozen = TenantState::from_events(&import(&TenantState::default(), tenant(ImportedStatus::Frozen)).unwrap());
    assert_eq!((frozen.phase.clone(), frozen.plan_id.clone()), (Phase::Frozen, Some(plan("google_only"))));
    let elsewhere = ImportedStore { plan_id: Some(plan("starter")), ..tenant(ImportedStatus::Frozen) };
    assert!(
        matches!(import(&TenantState::default(), elsewhere).unwrap_err(), DomainError::Validation(ref v) if v.field == "planId")
    );
}
