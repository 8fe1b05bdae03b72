//! contract §7: events as a persistence contract.

use planledger_domain::event::{current_schema_version, EVENT_TYPES};
use planledger_domain::*;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

#[test]
fn a_registration_names_its_catalog_version_only_when_it_has_one() {
    let registered = |catalog_version| Event::StoreRegistered {
        store_id: store(),
        name: None,
        time_zone: TimeZoneName::UTC,
        catalog_version,
    };
    assert_eq!(registered(Some(4)).data()["catalogVersion"], json!(4));
    // Stores registered before versions were kept per store have no such field: they read as
    // being on the ledger's first version.
    assert!(registered(None).data().get("catalogVersion").is_none());
    let stored = json!({"storeId": store().to_string(), "name": null, "timeZone": "UTC"});
    assert_eq!(Event::from_stored("StoreRegistered", 2, stored, t0()).unwrap(), registered(None));
}

#[test]
fn every_event_type_round_trips_through_its_stored_form() {
    let events = Event::examples();
    let types: Vec<&str> = events.iter().map(Event::event_type).collect();
    assert_eq!(types, EVENT_TYPES, "one of each type, in the contract's order");
    for event in events {
        let stored = serde_json::to_string(&event.data()).unwrap();
        let data = serde_json::from_str(&stored).unwrap();
        let read = Event::from_stored(event.event_type(), event.schema_version(), data, t0()).unwrap();
        assert_eq!(read, event, "{stored}");
    }
}

#[test]
fn stored_data_is_camel_case_with_stable_names() {
    let data = trial_expired(t("2026-03-16T10:00:00Z")).data();
    assert_eq!(data, json!({"trialEndsAt": "2026-03-16T10:00:00Z", "graceEndsAt": "2026-03-19T10:00:00Z"}));
}

#[test]
fn an_old_store_registered_without_a_time_zone_is_read_as_utc() {
    // As written by schema version 1, before stores had time zones.
    let stored_v1 = json!({"storeId": "00000000-0000-0000-0000-00000005107e", "name": "Corner Shop"});
    let event = Event::from_stored("StoreRegistered", 1, stored_v1, t0()).unwrap();
    assert_eq!(event, registered());
    assert_eq!(current_schema_version("StoreRegistered"), 2);
}

#[test]
fn an_unknown_type_or_a_newer_schema_is_refused_not_guessed() {
    assert!(Event::from_stored("StoreRegistered", 3, json!({}), t0()).is_err());
    assert!(Event::from_stored("StoreDeleted", 1, json!({}), t0()).is_err());
    assert!(Event::from_stored("TrialExpired", 1, json!({"trialEndsAt": "yesterday"}), t0()).is_err());
}

#[test]
fn evolve_is_deterministic_over_a_stored_history() {
    let history = Event::examples();
    let stored: Vec<(String, i32, serde_json::Value)> =
        history.iter().map(|e| (e.event_type().to_owned(), e.schema_version(), e.data())).collect();
    let replayed: Vec<Event> =
        stored.into_iter().map(|(t, v, d)| Event::from_stored(&t, v, d, t0()).unwrap()).collect();
    assert_eq!(TenantState::from_events(&replayed), TenantState::from_events(&history));
    let state = TenantState::from_events(&history);
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(serde_json::from_value::<TenantState>(json).unwrap(), state, "state snapshots round-trip");
}

#[test]
fn an_old_consumption_without_its_time_counts_at_its_recorded_time() {
    // As written by schema version 1, before usage was kept per local day.
    let stored_v1 = json!({"consumptionId": Uuid::from_u128(7), "action": "create_article", "amount": 3,
        "period": "month", "periodStart": "2026-03-01T00:00:00Z", "periodEnd": "2026-04-01T00:00:00Z",
        "usedAfter": 3, "limit": 10});
    let recorded_at = t("2026-03-09T08:00:00Z");
    let Event::QuotaConsumed { at, .. } = Event::from_stored("QuotaConsumed", 1, stored_v1, recorded_at).unwrap()
    else {
        panic!("a consumption")
    };
    assert_eq!(at, recorded_at);
    assert_eq!(current_schema_version("QuotaConsumed"), 2);
}

#[test]
fn an_old_refund_counts_against_its_window_start() {
    let stored_v1 = json!({"consumptionId": Uuid::from_u128(7), "action": "create_article", "amount": 3,
        "period": "month", "periodStart": "2026-03-01T00:00:00Z", "periodEnd": "2026-04-01T00:00:00Z"});
    let Event::QuotaRefunded { consumed_at, .. } =
        Event::from_stored("QuotaRefunded", 1, stored_v1, t("2026-03-09T08:00:00Z")).unwrap()
    else {
        panic!("a refund")
    };
    assert_eq!(consumed_at, t("2026-03-01T00:00:00Z"), "the nearest fact a v1 refund has: its window's start");
}
