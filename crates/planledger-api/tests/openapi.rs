//! The published contract cannot drift: the route table and the document name the same
//! operations, every operation documents typed answers, the document equals the committed
//! `docs/openapi.json` (regenerate with `PLANLEDGER_UPDATE_OPENAPI=1 cargo test -p
//! planledger-api --test openapi`), and every refusal's code is one the contract lists.

use std::collections::BTreeSet;

use planledger_api::{openapi, ApiError, ROUTES};
use planledger_domain::{
    Catalog, DomainError, ExtensionKind, GateReason, GateRefusal, InternalStatus, InvalidValue, PlanId,
    SubscriptionStatus,
};
use serde_json::Value;

fn document() -> Value {
    openapi::document(&Catalog::builtin())
}

#[test]
fn the_route_table_and_the_document_name_the_same_operations() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    assert_eq!(documented, served);
}

#[test]
fn every_operation_documents_typed_answers_and_its_security() {
    let doc = document();
    for route in ROUTES {
        let op = &doc["paths"][route.path][route.method.to_lowercase()];
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.contains_key("default"), "{route:?} documents a catch-all answer");
        for (status, response) in responses {
            let content = response["content"].as_object();
            assert!(content.is_some_and(|c| !c.is_empty()), "{route:?} {status} has no schema");
        }
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(secured, route.role.is_some(), "{route:?}'s security");
        if route.role.is_some() {
            assert!(responses.contains_key("401"), "{route:?} does not document 401");
        }
    }
    // Request bodies refuse unknown fields, as the server does.
    for schema in ["RegisterStore", "StartTrial", "TransitionPlan", "Consume", "Refund", "Extensions"] {
        assert_eq!(doc["components"]["schemas"][schema]["additionalProperties"], false, "{schema}");
    }
}

#[test]
fn the_document_is_the_committed_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let generated = serde_json::to_string_pretty(&document()).unwrap() + "\n";
    if std::env::var("PLANLEDGER_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is not the document the code generates: a route or a type changed without it. \
         Regenerate it with PLANLEDGER_UPDATE_OPENAPI=1 cargo test -p planledger-api --test openapi, and review the diff."
    );
}

#[test]
fn the_catalog_names_what_commands_accept() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let enumerated = |schema: &str, field: &str| -> Vec<String> {
        schemas[schema]["properties"][field]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema}.{field} has no enum"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert!(enumerated("Consume", "action").contains(&"create_article".to_owned()));
    assert!(enumerated("StartTrial", "planId").contains(&"free_trial".to_owned()));
    assert!(!enumerated("TransitionPlan", "toPlanId").contains(&"google_only".to_owned()), "internal plans");
    assert!(!enumerated("ActivateSubscription", "planId").contains(&"free_trial".to_owned()), "paid plans only");
    assert!(enumerated("RegisterStore", "timeZone").contains(&"Europe/Paris".to_owned()));
}

#[test]
fn every_refusal_code_is_one_the_contract_lists() {
    let plan = PlanId::parse("starter").unwrap();
    let gate = |reason| {
        DomainError::Gate(GateRefusal {
            reason,
            subscription_status: SubscriptionStatus::None,
            subscription_tier: None,
            internal_status: InternalStatus::None,
            feature: None,
        })
    };
    let mut errors = vec![
        DomainError::StoreNotFound,
        DomainError::StoreExists,
        DomainError::TrialAlreadyUsed,
        DomainError::SubscriptionActive,
        DomainError::UnknownPlan(plan.clone()),
        DomainError::PlanNotTrialEligible(plan.clone()),
        DomainError::NotAPaidPlan(plan.clone()),
        DomainError::UnknownAction("x".into()),
        DomainError::UnknownFeature("x".into()),
        DomainError::PlanMismatch { expected: plan.clone(), current: "pro".into() },
        DomainError::InvalidTransition("x"),
        DomainError::InternalTier(plan),
        DomainError::SubscriptionRequired,
        DomainError::QuotaExceeded { limit: 1, used: 1, resets_at: None },
        DomainError::NoActiveSubscription,
        DomainError::NotPastDue,
        DomainError::ConsumptionNotFound,
        DomainError::AlreadyRefunded,
        DomainError::RefundWindowClosed,
        DomainError::Validation(InvalidValue::new("f", "r")),
    ];
    errors.extend(GateReason::ALL.map(gate));
    errors
        .extend([ExtensionKind::Trial, ExtensionKind::Grace, ExtensionKind::Maintenance].map(DomainError::NotInPhase));
    for error in errors {
        let api = ApiError::refused(error.clone());
        assert_eq!(serde_json::to_value(api.code()).unwrap(), error.code(), "{error:?}");
        assert!(api.status().is_client_error(), "{error:?} maps to {}", api.status());
    }
}

/// A generated client types a field the server always sends (`null` when empty) as present:
/// in every schema that is not a request body, a nullable property is required. The one
/// exception is `ErrorBody`, whose extra fields are left out where they do not apply.
#[test]
fn a_nullable_field_the_server_always_sends_is_required() {
    let doc = document();
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => out.push(target.rsplit('/').next().unwrap_or("").to_owned()),
                        _ => refs(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
            _ => {}
        }
    }
    let mut request_bodies = Vec::new();
    for operations in doc["paths"].as_object().unwrap().values() {
        for operation in operations.as_object().unwrap().values() {
            refs(&operation["requestBody"], &mut request_bodies);
        }
    }
    // And what request bodies hold (an import's usage entries): requests, not answers.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut seen = 0;
    while seen < request_bodies.len() {
        let name = request_bodies[seen].clone();
        let mut nested = Vec::new();
        refs(&schemas[&name], &mut nested);
        request_bodies.extend(nested.into_iter().filter(|n| !request_bodies.contains(n)).collect::<Vec<_>>());
        seen += 1;
    }
    assert!(request_bodies.iter().any(|name| name == "Consume"), "{request_bodies:?}");
    let nullable = |property: &Value| {
        property["type"].as_array().is_some_and(|types| types.iter().any(|t| t == "null"))
            || ["oneOf", "anyOf"]
                .iter()
                .any(|k| property[k].as_array().is_some_and(|options| options.iter().any(|o| o["type"] == "null")))
    };
    let mut optional = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if request_bodies.contains(name) || name == "ErrorBody" {
            continue;
        }
        let required: Vec<&str> =
            schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        for (property, value) in schema["properties"].as_object().into_iter().flatten() {
            if nullable(value) && !required.contains(&property.as_str()) {
                optional.push(format!("{name}.{property}"));
            }
        }
    }
    assert!(optional.is_empty(), "nullable but not required (add #[schema(required = true)]): {optional:?}");
    // A body of alternatives is a body all the same: "no body" is not one of them.
    let authorize = &doc["paths"]["/v1/stores/{id}/authorize"]["post"]["requestBody"];
    assert_eq!(authorize["required"], true, "{authorize}");
    let store_view = &doc["components"]["schemas"]["StoreView"]["required"];
    assert!(store_view.as_array().unwrap().iter().any(|r| r == "trialEndsAt"), "{store_view}");
}
