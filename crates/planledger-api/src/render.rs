//! The one place answers are rendered: domain values and the service's outcomes become the
//! contract's types (`planledger-wire`), then a status and a JSON body. The service stores the
//! rendering of a keyed command's first answer through [`JsonRenderer`], the same code that
//! renders it for the caller, so a replay is the first answer word for word.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use planledger_domain::{
    effective_state, gate, status, usage_positions, Catalog, Catalogs, Command, Event, GateDecision, InternalStatus,
    Period, StoreId, SubscriptionStatus, TenantState,
};
use planledger_service::{Outcome, RenderedAnswer, Renderer};
use planledger_wire as wire;
use serde::Serialize;

use crate::error::ApiError;

pub fn internal_status(s: InternalStatus) -> wire::InternalStatus {
    match s {
        InternalStatus::None => wire::InternalStatus::None,
        InternalStatus::Trialing => wire::InternalStatus::Trialing,
        InternalStatus::Grace => wire::InternalStatus::Grace,
        InternalStatus::Active => wire::InternalStatus::Active,
        InternalStatus::PastDue => wire::InternalStatus::PastDue,
        InternalStatus::Maintenance => wire::InternalStatus::Maintenance,
        InternalStatus::Frozen => wire::InternalStatus::Frozen,
        InternalStatus::Canceled => wire::InternalStatus::Canceled,
    }
}

pub fn subscription_status(s: SubscriptionStatus) -> wire::SubscriptionStatus {
    match s {
        SubscriptionStatus::None => wire::SubscriptionStatus::None,
        SubscriptionStatus::Trial => wire::SubscriptionStatus::Trial,
        SubscriptionStatus::Active => wire::SubscriptionStatus::Active,
        SubscriptionStatus::PastDue => wire::SubscriptionStatus::PastDue,
        SubscriptionStatus::Canceled => wire::SubscriptionStatus::Canceled,
        SubscriptionStatus::Expired => wire::SubscriptionStatus::Expired,
    }
}

fn period(p: Period) -> wire::Period {
    match p {
        Period::Day => wire::Period::Day,
        Period::Week => wire::Period::Week,
        Period::Month => wire::Period::Month,
        Period::Lifetime => wire::Period::Lifetime,
    }
}

pub fn warning(code: &str) -> wire::Warning {
    if code == gate::WARNING_PAST_DUE {
        wire::Warning::PaymentPastDue
    } else {
        wire::Warning::TrialExpiredGracePeriod
    }
}

fn warnings_of(s: InternalStatus) -> Vec<wire::Warning> {
    match s {
        InternalStatus::Grace => vec![wire::Warning::TrialExpiredGracePeriod],
        InternalStatus::PastDue => vec![wire::Warning::PaymentPastDue],
        _ => vec![],
    }
}

/// The store at `now` (contract §11 `GET /v1/stores/{id}`), derived: due transitions that no worker
/// has appended yet are already reflected.
pub fn store_view(
    store: StoreId,
    state: &TenantState,
    version: i64,
    now: DateTime<Utc>,
    catalogs: &Catalogs,
) -> wire::StoreView {
    // The store's own catalog version (after any move due by now).
    let catalog = &catalogs.shown_for(state, now).catalog;
    let effective = effective_state(state, now, catalog);
    let status = status(&effective, now, catalog);
    let plan = effective.plan_id.as_ref().and_then(|id| catalog.plan(id));
    let usage = usage_positions(&effective, now, catalog)
        .into_iter()
        .map(|q| {
            let granted = effective.grants.values().filter(|g| g.action == q.action).map(|g| g.remaining(now)).sum();
            usage(&q, granted)
        })
        .collect();
    wire::StoreView {
        store_id: store.as_uuid(),
        name: effective.name.as_ref().map(|n| n.as_str().to_owned()),
        time_zone: effective.time_zone.name().to_owned(),
        plan_id: effective.plan_id.as_ref().map(ToString::to_string),
        tier: status.tier.clone(),
        subscription_status: subscription_status(status.subscription_status),
        internal_status: internal_status(status.internal_status),
        trial_ends_at: effective.trial_ends_at,
        grace_ends_at: effective.grace_ends_at,
        maintenance_ends_at: effective.maintenance_ends_at,
        next_deadline: effective.next_deadline(),
        subscription_id: effective.subscription_id.as_ref().map(|s| s.as_str().to_owned()),
        trial_used: effective.trial_used,
        features: plan.map(|p| p.features.clone()).unwrap_or_default(),
        catalog_version: (catalog.version() > 0).then_some(catalog.version()),
        external_id: effective.external_id.as_ref().map(|e| e.as_str().to_owned()),
        scheduled_plan_transition: effective.scheduled_transition.as_ref().map(scheduled_transition),
        grants: effective
            .grants
            .iter()
            .filter(|(_, grant)| grant.remaining(now) > 0)
            .map(|(id, grant)| grant_view(*id, grant, now))
            .collect(),
        version,
        warnings: warnings_of(status.internal_status),
        usage,
        receipt: None,
    }
}

/// An action's quota as the contract shows it, with what its grants have left.
fn usage(q: &planledger_domain::QuotaPosition, granted: u64) -> wire::Usage {
    wire::Usage {
        action: q.action.to_string(),
        period: period(q.window.period),
        period_start: q.window.start,
        period_end: q.window.end,
        used: q.used,
        limit: q.limit,
        remaining: q.remaining(),
        granted,
    }
}

/// An explanation (`planledger_domain::explain`) as the contract says it.
pub fn explanation(
    store: StoreId,
    (action, amount, at): (&planledger_domain::ActionName, u64, DateTime<Utc>),
    e: &planledger_domain::Explanation,
    catalog: &Catalog,
) -> wire::Explanation {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    wire::Explanation {
        store_id: store.as_uuid(),
        action: action.to_string(),
        amount,
        at,
        allowed: e.decision.is_ok(),
        refusal: e
            .decision
            .as_ref()
            .err()
            .map(|error| wire::ExplainedRefusal { error: crate::error::rule_code(error), message: error.to_string() }),
        plan_id: e.state.plan_id.as_ref().map(ToString::to_string),
        catalog_version: (catalog.version() > 0).then_some(catalog.version()),
        subscription_status: subscription_status(e.status.subscription_status),
        internal_status: internal_status(e.status.internal_status),
        tier: e.status.tier.clone(),
        next_deadline: e.state.next_deadline(),
        required_feature: e.required_feature.clone(),
        quota: usage(&e.quota, e.granted),
        would_allow: e
            .would_allow
            .iter()
            .map(|remedy| match remedy {
                planledger_domain::Remedy::Plan(plan) => wire::Remedy {
                    change: wire::RemedyKind::Plan,
                    plan_id: Some(plan.to_string()),
                    at: None,
                    amount: None,
                    description: format!("on plan {plan} (subscribed to it)"),
                },
                planledger_domain::Remedy::Date(reset) => wire::Remedy {
                    change: wire::RemedyKind::Date,
                    plan_id: None,
                    at: Some(*reset),
                    amount: None,
                    description: format!("from {}, when its window resets", time(*reset)),
                },
                planledger_domain::Remedy::Amount(more) => wire::Remedy {
                    change: wire::RemedyKind::Amount,
                    plan_id: None,
                    at: None,
                    amount: Some(*more),
                    description: format!("with {more} more allowance (a grant of {more})"),
                },
            })
            .collect(),
    }
}

/// A grant as the contract shows it.
pub fn grant_view(id: uuid::Uuid, grant: &planledger_domain::Grant, now: DateTime<Utc>) -> wire::GrantView {
    wire::GrantView {
        grant_id: id,
        action: grant.action.to_string(),
        amount: grant.amount,
        used: grant.used,
        remaining: grant.remaining(now),
        expires_at: grant.expires_at,
        added_at: grant.added_at,
    }
}

/// A pending scheduled plan change as the contract shows it.
fn scheduled_transition(pending: &planledger_domain::ScheduledTransition) -> wire::ScheduledPlanTransition {
    wire::ScheduledPlanTransition {
        schedule_id: pending.schedule_id,
        from_plan_id: pending.from_plan_id.to_string(),
        to_plan_id: pending.to_plan_id.to_string(),
        reason: match pending.reason {
            planledger_domain::TransitionReason::Upgrade => wire::TransitionReason::Upgrade,
            planledger_domain::TransitionReason::Downgrade => wire::TransitionReason::Downgrade,
            planledger_domain::TransitionReason::Admin => wire::TransitionReason::Admin,
            planledger_domain::TransitionReason::Migration => wire::TransitionReason::Migration,
        },
        at: pending.at,
        at_period_end: pending.at_period_end,
    }
}

/// A draft's preview (`planledger_projections::preview`) against `current`, as the contract
/// says it: the route's answer and the command line's JSON alike.
pub fn catalog_preview(
    preview: &planledger_projections::preview::Preview,
    current: &Catalog,
    draft: &Catalog,
) -> wire::CatalogPreview {
    let status = |line: &planledger_projections::replay::StatusLine| wire::PreviewStatus {
        internal_status: line.internal_status.to_owned(),
        plan_id: line.plan_id.clone(),
    };
    wire::CatalogPreview {
        draft_fingerprint: draft.fingerprint().to_owned(),
        current_fingerprint: current.fingerprint().to_owned(),
        stores_examined: preview.stores_examined,
        consumptions_examined: preview.consumptions_examined,
        refusals_examined: preview.refusals_examined,
        would_refuse: preview.refusals() as u64,
        would_allow: preview.allowances() as u64,
        plans_missing: preview.missing_plans() as u64,
        stores: preview
            .stores
            .iter()
            .map(|s| wire::CatalogPreviewStore {
                store_id: s.store.as_uuid(),
                plan_missing: s.plan_missing.clone(),
                status_now: status(&s.status_now),
                status_under_draft: status(&s.status_draft),
                would_refuse: s
                    .would_refuse
                    .iter()
                    .map(|r| wire::PreviewRefusal {
                        version: r.version,
                        at: r.at,
                        action: r.action.clone(),
                        amount: r.amount,
                        error: r.code.to_owned(),
                        correlation_id: r.correlation_id.clone(),
                    })
                    .collect(),
                would_allow: s
                    .would_allow
                    .iter()
                    .map(|a| wire::PreviewAllowance {
                        at: a.at,
                        action: a.action.clone(),
                        amount: a.amount,
                        refused_with: a.refused_with.clone(),
                        correlation_id: a.correlation_id.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// One published version of the catalog (`GET /v1/catalog/versions`, `planledger catalog
/// versions --json`).
pub fn catalog_version(version: &planledger_service::catalogs::CatalogVersion, in_force: bool) -> wire::CatalogVersion {
    wire::CatalogVersion {
        version: version.version,
        fingerprint: version.fingerprint.clone(),
        source_name: version.source_name.clone(),
        author: version.author.clone(),
        reason: version.reason.clone(),
        effective_at: version.effective_at,
        published_at: version.published_at,
        existing_stores: match version.existing_stores {
            planledger_domain::Reach::EffectiveTime => wire::ExistingStores::EffectiveTime,
            planledger_domain::Reach::NextPeriod => wire::ExistingStores::NextPeriod,
            planledger_domain::Reach::Never => wire::ExistingStores::Never,
        },
        in_force,
    }
}

/// The rules of `catalog`, the ledger's `version`, as data (`GET /v1/catalog`).
pub fn catalog_view(catalog: &Catalog, version: i64) -> wire::CatalogView {
    use planledger_domain::catalog::Anchor;
    use planledger_domain::{ActionKind, PlanKind};
    let kind = |k: ActionKind| match k {
        ActionKind::Read => "read",
        ActionKind::Update => "update",
        ActionKind::Growth => "growth",
    };
    let lifecycle = catalog.lifecycle();
    wire::CatalogView {
        version,
        fingerprint: catalog.fingerprint().to_owned(),
        default_trial_plan: catalog.default_trial_plan().to_string(),
        lifecycle: wire::CatalogLifecycle {
            trial_days: lifecycle.trial_days,
            grace_days: lifecycle.grace_days,
            maintenance_days: lifecycle.maintenance_days,
        },
        plans: catalog
            .plans()
            .map(|plan| wire::CatalogPlan {
                id: plan.id.to_string(),
                tier: plan.tier.clone(),
                kind: match plan.kind {
                    PlanKind::Trial => "trial",
                    PlanKind::Paid => "paid",
                    PlanKind::Internal => "internal",
                }
                .to_owned(),
                trial_eligible: plan.trial_eligible,
                features: plan.features.clone(),
                anchor: match plan.anchor {
                    Anchor::Calendar => "calendar",
                    Anchor::Subscription => "subscription",
                }
                .to_owned(),
                limits: plan
                    .limits
                    .iter()
                    .map(|(action, limit)| wire::CatalogLimit {
                        action: action.to_string(),
                        limit: limit.limit,
                        period: period(limit.period),
                    })
                    .collect(),
            })
            .collect(),
        actions: catalog
            .actions()
            .map(|(name, k)| wire::CatalogAction {
                name: name.to_string(),
                kind: kind(k).to_owned(),
                requires: catalog.required_feature(name).map(str::to_owned),
            })
            .collect(),
    }
}

/// An answer ready to send: a status and a JSON body.
#[derive(Debug, Clone)]
pub struct Json {
    pub status: StatusCode,
    pub body: String,
}

impl Json {
    pub fn new(status: StatusCode, body: &impl Serialize) -> Self {
        // The contract's types serialize infallibly (no maps with non-string keys).
        Self { status, body: serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned()) }
    }

    pub fn ok(body: &impl Serialize) -> Self {
        Self::new(StatusCode::OK, body)
    }
}

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.body).into_response()
    }
}

/// An accepted command's answer.
fn accepted(accepted: &planledger_service::Accepted, catalogs: &Catalogs) -> Json {
    let created = if accepted.facts.is_empty() { StatusCode::OK } else { StatusCode::CREATED };
    let receipt = Some(receipt(&accepted.receipt));
    let view = || wire::StoreView {
        receipt: receipt.clone(),
        ..store_view(accepted.store, &accepted.state, accepted.version, accepted.decided_at, catalogs)
    };
    let catalog = &catalogs.shown_for(&accepted.state, accepted.decided_at).catalog;
    match &accepted.command {
        Command::RegisterStore { .. } | Command::ImportStore(_) => Json::new(created, &view()),
        Command::AddGrant { grant_id, .. } => match accepted.state.grants.get(grant_id) {
            Some(grant) => Json::new(
                created,
                &wire::GrantAnswer { grant: grant_view(*grant_id, grant, accepted.decided_at), store: view() },
            ),
            None => Json::ok(&view()),
        },
        Command::SchedulePlanTransition(_) => {
            let scheduled = accepted.facts.iter().find_map(|e| match e {
                Event::PlanTransitionScheduled { replaces, .. } => Some(*replaces),
                _ => None,
            });
            match (scheduled, &accepted.state.scheduled_transition) {
                (Some(replaced), Some(pending)) => Json::new(
                    StatusCode::ACCEPTED,
                    &wire::ScheduledTransitionAnswer {
                        scheduled: scheduled_transition(pending),
                        replaced,
                        store: view(),
                    },
                ),
                _ => Json::ok(&view()),
            }
        }
        Command::StartTrial { .. } => {
            Json::new(created, &wire::TrialAnswer { store: view(), already_active: accepted.facts.is_empty() })
        }
        Command::Consume { action, .. } => {
            let Some(Event::QuotaConsumed {
                consumption_id,
                used_after,
                limit,
                period: p,
                period_start,
                period_end,
                from_grants,
                ..
            }) = accepted.facts.iter().find(|e| matches!(e, Event::QuotaConsumed { .. }))
            else {
                // `decide` records a consumption for every accepted consume; were it not to,
                // the store is the answer.
                return Json::ok(&view());
            };
            let warnings = match gate(&accepted.state, accepted.decided_at, catalog, action) {
                Ok(GateDecision::Allowed { warnings, .. }) => warnings.iter().map(|w| warning(w)).collect(),
                _ => vec![],
            };
            Json::ok(&wire::Consumed {
                allowed: true,
                consumption_id: *consumption_id,
                action: action.to_string(),
                used: *used_after,
                limit: *limit,
                remaining: limit.map(|l| l.saturating_sub(*used_after)),
                period: period(*p),
                period_start: *period_start,
                period_end: *period_end,
                warnings,
                from_grants: from_grants
                    .iter()
                    .map(|d| wire::GrantDraw { grant_id: d.grant_id, amount: d.amount })
                    .collect(),
                receipt,
            })
        }
        Command::Refund { consumption: Some(c), .. } => Json::ok(&wire::Refunded {
            refunded: true,
            consumption_id: c.consumption_id,
            action: c.action.to_string(),
            amount: c.amount.get(),
            period_start: c.period_start,
            period_end: c.period_end,
            receipt,
        }),
        _ => Json::ok(&view()),
    }
}

/// A command's receipt as its answer carries it.
pub fn receipt(receipt: &planledger_service::Receipt) -> wire::Receipt {
    wire::Receipt {
        events: receipt
            .events
            .iter()
            .map(|e| wire::ReceiptEvent {
                event_id: e.event_id,
                version: e.version,
                hash: planledger_chain::to_hex(&e.hash),
            })
            .collect(),
        version: receipt.version,
        head: planledger_chain::to_hex(&receipt.head),
    }
}

/// The answer to an authorization check (no events).
pub fn authorization(decision: GateDecision) -> Result<Json, ApiError> {
    match decision {
        GateDecision::Allowed { internal_status: s, warnings } => Ok(Json::ok(&wire::Authorized {
            allowed: true,
            internal_status: internal_status(s),
            warnings: warnings.iter().map(|w| warning(w)).collect(),
        })),
        GateDecision::Refused(refusal) => Err(ApiError::refused(planledger_domain::DomainError::Gate(refusal))),
    }
}

/// An outcome as the caller gets it: an accepted command's answer, or its refusal as an error.
pub fn outcome(outcome: Outcome, catalogs: &Catalogs) -> Result<Json, ApiError> {
    match outcome {
        Outcome::Accepted(a) => Ok(accepted(&a, catalogs)),
        Outcome::Refused(refusal) => Err(ApiError::Refused(refusal)),
    }
}

/// The renderer the service stores first answers with: the same rendering as [`outcome`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRenderer;

impl Renderer for JsonRenderer {
    fn render(&self, o: &Outcome, catalogs: &Catalogs, correlation_id: &str) -> RenderedAnswer {
        let json = match o {
            Outcome::Accepted(a) => accepted(a, catalogs),
            Outcome::Refused(refusal) => ApiError::Refused(refusal.clone()).json(correlation_id),
        };
        RenderedAnswer { status: json.status.as_u16(), body: json.body }
    }
}

/// A stored first answer, sent again for a retry: marked `Idempotent-Replayed: true`.
pub fn replayed(answer: RenderedAnswer, now: DateTime<Utc>) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
        .then(|| serde_json::from_str::<wire::ErrorBody>(&answer.body).ok())
        .flatten()
        .and_then(|body| crate::error::retry_after(&body, now));
    let mut response = Json { status, body: answer.body }.into_response();
    let headers = response.headers_mut();
    headers.insert(wire::headers::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The status and body a caller gets for the service's `result`: the routes' rendering, without
/// headers (for callers of the service that are not HTTP, and tests).
pub fn rendered(
    result: Result<planledger_service::Answer, planledger_service::ServiceError>,
    catalogs: &Catalogs,
    correlation_id: &str,
) -> RenderedAnswer {
    match result {
        Ok(planledger_service::Answer::Decided(o)) => JsonRenderer.render(&o, catalogs, correlation_id),
        Ok(planledger_service::Answer::Replayed(first)) => first,
        Err(error) => {
            let json = ApiError::from(error).json(correlation_id);
            RenderedAnswer { status: json.status.as_u16(), body: json.body }
        }
    }
}
