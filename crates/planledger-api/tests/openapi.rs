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

/// The catalog is data: plans, actions and time zones are strings a generated client does not
/// freeze, with today's values as `examples` (marked `x-planledger-known`, which CI's fuzzer
/// narrows to).
#[test]
fn the_catalog_is_shown_not_frozen() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let known = |schema: &str, field: &str| -> Vec<String> {
        let property = &schemas[schema]["properties"][field];
        assert!(property.get("enum").is_none(), "{schema}.{field} is an enum: {property}");
        assert!(property["x-planledger-known"].is_string(), "{schema}.{field}: {property}");
        property["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema}.{field} has no examples"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    assert!(known("Consume", "action").contains(&"create_article".to_owned()));
    assert!(known("StartTrial", "planId").contains(&"free_trial".to_owned()));
    assert!(!known("TransitionPlan", "toPlanId").contains(&"google_only".to_owned()), "internal plans");
    assert!(!known("ActivateSubscription", "planId").contains(&"free_trial".to_owned()), "paid plans only");
    assert!(known("RegisterStore", "timeZone").contains(&"Europe/Paris".to_owned()));
    assert!(!doc.to_string().contains("Africa/Abidjan"), "the time zones are listed somewhere");
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
            // A refusal for a feature always names it.
            feature: (reason == GateReason::FeatureNotInPlan).then(|| "analytics".to_owned()),
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
    let doc = document();
    for error in errors {
        let api = ApiError::refused(error.clone());
        assert_eq!(serde_json::to_value(api.code()).unwrap(), error.code(), "{error:?}");
        assert!(api.status().is_client_error(), "{error:?} maps to {}", api.status());
        conforms(&doc, "ErrorBody", &serde_json::to_value(api.body("c0")).unwrap());
    }
    // The edge's own refusals, with their fields.
    for api in [
        ApiError::Validation { field: "name".into(), message: "too long".into() },
        ApiError::CursorNotInLog { head: "0-0".into() },
        ApiError::Unauthorized,
        ApiError::StorageUnavailable,
        ApiError::Internal,
    ] {
        conforms(&doc, "ErrorBody", &serde_json::to_value(api.body("c0")).unwrap());
    }
    // A gate refusal on a feature names the feature, which its schema requires.
    let feature = DomainError::Gate(GateRefusal {
        reason: GateReason::FeatureNotInPlan,
        subscription_status: SubscriptionStatus::Active,
        subscription_tier: Some("starter".into()),
        internal_status: InternalStatus::Active,
        feature: Some("analytics".into()),
    });
    let body = serde_json::to_value(ApiError::refused(feature).body("c0")).unwrap();
    conforms(&doc, "ErrorBody", &body);
    assert_eq!(body["feature"], "analytics");
    let mut without_feature = body.clone();
    without_feature.as_object_mut().unwrap().remove("feature");
    assert!(!errors_of(&doc, "ErrorBody", &without_feature).is_empty(), "feature_not_in_plan requires `feature`");
}

/// The error union: one schema per code, each with its fields, discriminated on `error`.
#[test]
fn errors_are_a_union_on_their_code() {
    let doc = document();
    let body = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(body["discriminator"]["propertyName"], "error");
    let variants = body["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), planledger_wire::ErrorCode::all().len());
    assert!(variants.len() > 40, "{}", variants.len());
    let quota = &doc["components"]["schemas"]["QuotaExceededError"];
    assert_eq!(quota["properties"]["error"]["enum"], serde_json::json!(["quota_exceeded"]));
    assert_eq!(quota["required"], serde_json::json!(["error", "message", "correlationId", "limit", "used"]));
    assert_eq!(quota["additionalProperties"], false);
    // A field of another code is not allowed on this one.
    let foreign = serde_json::json!({
        "error": "quota_exceeded", "message": "m", "correlationId": "c", "limit": 1, "used": 1, "field": "x"
    });
    assert!(!errors_of(&doc, "ErrorBody", &foreign).is_empty());
}

/// Every event type's `data` is published (derived from the domain's event type): each
/// example the domain gives, in the envelope `/v1/events` sends, is valid against it, and an
/// unknown field is not.
#[test]
fn every_event_type_publishes_its_data() {
    let doc = document();
    let envelope = &doc["components"]["schemas"]["EventEnvelope"];
    assert_eq!(envelope["discriminator"]["propertyName"], "type");
    assert_eq!(envelope["oneOf"].as_array().unwrap().len(), planledger_domain::event::EVENT_TYPES.len());
    for event in planledger_domain::Event::examples() {
        let sent = planledger_wire::EventEnvelope {
            event_id: uuid::Uuid::from_u128(1),
            stream_id: "store-00000000-0000-0000-0000-00000005107e".into(),
            version: 1,
            global_position: 1,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.data(),
            correlation_id: "c0".into(),
            causation_id: None,
            idempotency_key: None,
            actor: "service:test".into(),
            catalog_fingerprint: "f".into(),
            recorded_at: chrono::Utc::now(),
            hash: "ab".repeat(32),
        };
        let sent = serde_json::to_value(&sent).unwrap();
        conforms(&doc, "EventEnvelope", &sent);
        let mut unknown = sent.clone();
        unknown["data"]["surprise"] = serde_json::json!(1);
        assert!(!errors_of(&doc, "EventEnvelope", &unknown).is_empty(), "{}", event.event_type());
    }
    let data = &doc["components"]["schemas"]["TrialStartedData"];
    assert_eq!(data["properties"]["planId"]["$ref"], "#/components/schemas/PlanId");
    // A field the ledger leaves out when empty is optional, and never null when present.
    let registered = &doc["components"]["schemas"]["StoreRegisteredData"];
    assert!(!registered["required"].as_array().unwrap().iter().any(|r| r == "catalogVersion"), "{registered}");
    assert!(!openapi::nullable(&registered["properties"]["catalogVersion"]), "{registered}");
}

/// Every notification the ledger sends is published under `webhooks`, as delivered: each body
/// notify makes from the domain's examples is valid against its kind's schema, and reads into
/// its wire type and back unchanged.
#[test]
fn every_notification_is_published_under_webhooks() {
    let doc = document();
    let catalog = Catalog::builtin();
    let mut kinds = BTreeSet::new();
    for (version, event) in planledger_domain::Event::examples().iter().enumerate() {
        let source = planledger_notify::notice::Source {
            store: planledger_domain::StoreId::new(uuid::Uuid::from_u128(0x5107e)),
            event_id: uuid::Uuid::from_u128(version as u128 + 1),
            version: version as i64 + 1,
            correlation_id: "c0",
            // Early enough that every warning is still ahead.
            recorded_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        };
        for notice in planledger_notify::notice::notices_of(source, event, catalog.notifications()) {
            let body: Value = serde_json::from_str(&notice.body).unwrap();
            let kind = body["type"].as_str().unwrap().to_owned();
            let schema = doc["webhooks"][&kind]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{kind} is not under webhooks"))
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            conforms(&doc, &schema, &body);
            assert_eq!(planledger_wire::notifications::reread(&body).unwrap(), body, "{kind}");
            kinds.insert(kind);
        }
    }
    let published: BTreeSet<String> = doc["webhooks"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(kinds, published, "every kind published is one the examples make, and none else");
    // An endpoint may name each kind once: as many as are published.
    for schema in ["CreateWebhookEndpoint", "UpdateWebhookEndpoint"] {
        assert_eq!(
            doc["components"]["schemas"][schema]["properties"]["kinds"]["maxItems"],
            published.len(),
            "{schema}"
        );
    }
}

/// A small JSON Schema checker for what this document uses (`$ref`, `type`, `enum`,
/// `properties`, `required`, `additionalProperties: false`, `items`, `oneOf`): what a body
/// breaks of the schema named `name`.
fn errors_of(doc: &Value, name: &str, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(doc, &serde_json::json!({ "$ref": format!("#/components/schemas/{name}") }), value, "$", &mut errors);
    errors
}

fn conforms(doc: &Value, name: &str, value: &Value) {
    let errors = errors_of(doc, name, value);
    assert!(errors.is_empty(), "{value} is not a {name}: {errors:?}");
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(target) = schema["$ref"].as_str() {
        let target = doc.pointer(target.trim_start_matches('#')).unwrap_or_else(|| panic!("no {target}"));
        return check(doc, target, value, at, errors);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options
            .iter()
            .filter(|option| {
                let mut inner = Vec::new();
                check(doc, option, value, at, &mut inner);
                inner.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} of oneOf"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        errors.push(format!("{at}: {value} is not {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(required) {
                errors.push(format!("{at}: {required} is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, field) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => check(doc, property, field, &format!("{at}.{key}"), errors),
                None if schema["additionalProperties"] == false => errors.push(format!("{at}: {key} is not allowed")),
                None => {}
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), errors);
        }
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
    let mut optional = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if request_bodies.contains(name) || name == "ErrorBody" {
            continue;
        }
        // The error union's schemas state each code's fields.
        if name.ends_with("Error") && schema["properties"]["error"].is_object() {
            continue;
        }
        let required: Vec<&str> =
            schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        for (property, value) in schema["properties"].as_object().into_iter().flatten() {
            if openapi::nullable(value) && !required.contains(&property.as_str()) {
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
