//! The console's actions. Each is reviewed on a confirmation page first, which gives it a fresh
//! idempotency key; the confirmed form is then sent through the API's own handler (the same
//! parsing, command path and stored answers as `POST /v1/...` with an `Idempotency-Key`), as
//! the signed-in principal, under the request's correlation id. A form sent twice (a
//! double click, a reload, a retry after a timeout) finds each store's first answer and does
//! nothing again.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt;
use maud::{html, Markup};
use planledger_domain::StoreId;
use planledger_projections::{tenant_state, ReadModel};
use planledger_wire as wire;
use serde::Serialize;

use super::html::{self as h, Section};
use super::pages::{filter_of, filter_query};
use super::{ConsoleError, Form, Page, Viewer};
use crate::edge::{parse_json, Ctx, JsonBody, RequestScope};
use crate::error::ApiError;
use crate::{routes, AppState};

/// The most stores one console action extends (the API's bulk limit).
const MAX_STORES: i64 = 1000;
/// How many stores' commands are in flight at once during a bulk action.
const IN_FLIGHT: usize = 16;

/// The API request a console form stands for, parsed as the API parses its body.
fn api_body<T: Serialize + serde::de::DeserializeOwned>(request: &T) -> Result<JsonBody<T>, ConsoleError> {
    let json = serde_json::to_vec(request).map_err(|_| ConsoleError::Api(ApiError::Internal))?;
    Ok(parse_json(&json)?)
}

/// The caller of the API handler: the session's principal, the form's key.
fn ctx(viewer: &Viewer, key: &str) -> Ctx {
    Ctx {
        correlation_id: RequestScope::current().correlation_id,
        principal: viewer.principal.clone(),
        idempotency_key: Some(format!("console:{key}")),
        if_match: None,
    }
}

/// A form's idempotency key: the one its confirmation page gave it.
fn form_key(form: &Form) -> Result<&str, ConsoleError> {
    form.get("key")
        .filter(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ConsoleError::Invalid("key: the form has no confirmation key; review it again".to_owned()))
}

/// What the API answered: status, whether it was a replay, and the body.
async fn read_answer(response: Response) -> (StatusCode, bool, Vec<u8>) {
    let status = response.status();
    let replayed = response.headers().contains_key(wire::headers::IDEMPOTENT_REPLAYED);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.map(|b| b.to_vec()).unwrap_or_default();
    (status, replayed, body)
}

fn error_of(body: &[u8]) -> Option<wire::ErrorBody> {
    serde_json::from_slice(body).ok()
}

/// The page that confirms an action: what it will do, and the form (with a fresh idempotency key)
/// that does it; `back` is where "Cancel" leads.
fn confirmation(
    viewer: &Viewer,
    title: &str,
    action: &str,
    back: &str,
    what: Markup,
    fields: &[(&str, String)],
) -> Response {
    h::page(
        viewer,
        Section::None,
        title,
        html! {
            section.card.confirm {
                (what)
                form #confirm-form method="post" action=(action) {
                    (h::csrf(viewer))
                    input type="hidden" name="key" value=(planledger_service::sessions::random_token());
                    @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                    button #confirm type="submit" { "Confirm" }
                    " " a #cancel href=(back) { "Cancel" }
                }
            }
        },
    )
}

// ---- extensions -------------------------------------------------------------------------

/// What became of one store of an extension.
struct StoreResult {
    ok: bool,
    /// This form had been sent before: the store's first answer stands.
    replayed: bool,
    error: Option<String>,
}

/// An extension as the form states it.
struct Extension {
    kind: wire::ExtensionKind,
    days: i64,
    reason: String,
    /// One store, or the stores of a filter.
    target: Target,
}

enum Target {
    Store(StoreId),
    Filter(tenant_state::StoreFilter),
}

impl Extension {
    fn read(form: &Form, app: &AppState) -> Result<Extension, ConsoleError> {
        let kind = match form.required("kind")? {
            "trial" => wire::ExtensionKind::Trial,
            "grace" => wire::ExtensionKind::Grace,
            "maintenance" => wire::ExtensionKind::Maintenance,
            other => return Err(ConsoleError::Invalid(format!("kind: {other:?} is not trial, grace or maintenance"))),
        };
        let days = form
            .required("days")?
            .parse::<i64>()
            .map_err(|_| ConsoleError::Invalid("days: must be an integer from 1 to 3650".to_owned()))?;
        let reason = form.required("reason")?.to_owned();
        let target = match form.optional("store") {
            Some(id) => Target::Store(
                StoreId::parse(id).map_err(|_| ConsoleError::Invalid(format!("store: {id:?} is not a store id")))?,
            ),
            None => {
                let filter = filter_of(|k| form.optional(k).map(str::to_owned), &app.service.catalog())?;
                if filter.internal_status.is_none() {
                    return Err(ConsoleError::Invalid("status: a bulk extension needs a status filter".to_owned()));
                }
                Target::Filter(filter)
            }
        };
        // The checks the API makes of these fields before it decides.
        planledger_domain::Days::parse(days).map_err(ApiError::from)?;
        planledger_domain::Reason::parse(&reason).map_err(ApiError::from)?;
        Ok(Extension { kind, days, reason, target })
    }

    fn request(&self, store: StoreId) -> wire::Extensions {
        wire::Extensions {
            store_ids: vec![store.as_uuid()],
            kind: self.kind,
            days: self.days,
            reason: self.reason.clone(),
        }
    }

    /// The form's fields, to carry to the confirmed request.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields =
            vec![("kind", h::wire_name(&self.kind)), ("days", self.days.to_string()), ("reason", self.reason.clone())];
        match &self.target {
            Target::Store(store) => fields.push(("store", store.to_string())),
            Target::Filter(filter) => fields.extend(filter_query(filter)),
        }
        fields
    }

    /// The stores it applies to now, with their names.
    async fn stores(&self, app: &AppState) -> Result<Vec<(StoreId, Option<String>)>, ConsoleError> {
        match &self.target {
            Target::Store(store) => {
                let (state, _) = app
                    .service
                    .load_row(*store)
                    .await?
                    .ok_or_else(|| ConsoleError::NotFound(format!("No store {store}.")))?;
                Ok(vec![(*store, state.name.map(|n| n.as_str().to_owned()))])
            }
            Target::Filter(filter) => {
                let rows = tenant_state::list(app.service.reads(), filter, None, MAX_STORES + 1).await?;
                if rows.len() as i64 > MAX_STORES {
                    return Err(ConsoleError::Invalid(format!(
                        "more than {MAX_STORES} stores match: narrow the filter (by plan or name)"
                    )));
                }
                Ok(rows.into_iter().map(|r| (r.store_id, r.state.name.map(|n| n.as_str().to_owned()))).collect())
            }
        }
    }

    fn describe(&self, count: usize) -> String {
        let what = match self.kind {
            wire::ExtensionKind::Trial => "the trial",
            wire::ExtensionKind::Grace => "the grace period",
            wire::ExtensionKind::Maintenance => "maintenance",
        };
        let stores = if count == 1 { "1 store".to_owned() } else { format!("{count} stores") };
        format!("Extend {what} of {stores} by {} days", self.days)
    }
}

pub async fn confirm_extension(State(app): State<AppState>, viewer: Viewer, form: Form) -> Page {
    viewer.check(&form)?;
    viewer.require_admin()?;
    let extension = Extension::read(&form, &app)?;
    let stores = extension.stores(&app).await?;
    if stores.is_empty() {
        return Err(ConsoleError::Invalid("no store matches the filter".to_owned()));
    }
    let what = html! {
        p #confirm-what { strong { (extension.describe(stores.len())) } "." }
        p { "Reason: " q { (extension.reason) } }
        ul.stores {
            @for (id, name) in stores.iter().take(20) { li { (h::store_link(&id.to_string(), name.as_deref())) } }
            @if stores.len() > 20 { li.muted { "and " (stores.len() - 20) " more" } }
        }
        @if matches!(extension.target, Target::Filter(_)) {
            p.muted { "The filter is applied again when you confirm; a store that no longer matches is left alone." }
        }
    };
    let back = match &extension.target {
        Target::Store(store) => format!("/admin/stores/{store}"),
        Target::Filter(filter) => {
            format!("/admin/stores?{}", serde_urlencoded::to_string(filter_query(filter)).unwrap_or_default())
        }
    };
    Ok(confirmation(&viewer, "Confirm the extension", "/admin/extensions", &back, what, &extension.fields()))
}

pub async fn extend(State(app): State<AppState>, viewer: Viewer, form: Form) -> Page {
    viewer.check(&form)?;
    viewer.require_admin()?;
    let key = form_key(&form)?.to_owned();
    let extension = Extension::read(&form, &app)?;
    let stores = extension.stores(&app).await?;
    let results: Vec<(StoreId, Option<String>, StoreResult)> = futures_util::stream::iter(stores)
        .map(|(store, name)| {
            let ctx = ctx(&viewer, &key);
            let body = api_body(&extension.request(store));
            let app = &app;
            async move {
                let answer = match body {
                    Ok(body) => routes::extend_each(app, &ctx, body).await.map_err(ConsoleError::from),
                    Err(e) => Err(e),
                };
                let result = match answer.map(|mut answers| answers.pop()) {
                    Ok(Some(a)) => StoreResult {
                        ok: a.status.is_success(),
                        replayed: a.replayed,
                        error: a.error.map(|e| h::wire_name(&e)),
                    },
                    Ok(None) => StoreResult { ok: false, replayed: false, error: Some("internal".to_owned()) },
                    Err(ConsoleError::Api(e)) => {
                        StoreResult { ok: false, replayed: false, error: Some(h::wire_name(&e.code())) }
                    }
                    Err(_) => StoreResult { ok: false, replayed: false, error: Some("invalid".to_owned()) },
                };
                (store, name, result)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let done = results.iter().filter(|(_, _, r)| r.ok && !r.replayed).count();
    let replayed = results.iter().filter(|(_, _, r)| r.replayed).count();
    let refused = results.iter().filter(|(_, _, r)| !r.ok && !r.replayed).count();
    tracing::info!(actor = %viewer.principal.name, reason = %extension.reason, done, replayed, refused, "console extension");
    let correlation = RequestScope::current().correlation_id;
    let body = html! {
        p #result-summary.notice {
            (extension.describe(results.len())) ": "
            strong #done-count { (done) } " done, "
            strong #replayed-count { (replayed) } " already done by this form (nothing done again), "
            strong #refused-count { (refused) } " refused."
        }
        table #results {
            thead { tr { th { "Store" } th { "Result" } } }
            tbody {
                @for (id, name, r) in &results {
                    tr {
                        td { (h::store_link(&id.to_string(), name.as_deref())) }
                        td {
                            @if r.replayed { "already done" @if let Some(e) = &r.error { " (" (e) ")" } }
                            @else if r.ok { "extended" }
                            @else { span.error { "refused: " (r.error.as_deref().unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
        p { "Everything this action recorded carries the correlation id " (h::correlation_link(&correlation)) "." }
    };
    Ok(h::page(&viewer, Section::None, "Extension", body))
}

// ---- forced trial reset -----------------------------------------------------------------

fn trial_request(form: &Form, app: &AppState) -> Result<wire::StartTrial, ConsoleError> {
    let plan = form.optional("plan").map(str::to_owned);
    if let Some(plan) = &plan {
        let id = planledger_domain::PlanId::parse(plan).map_err(ApiError::from)?;
        if app.service.catalog().plan(&id).is_none_or(|p| !p.trial_eligible) {
            return Err(ConsoleError::Invalid(format!("plan: {plan:?} is not a trial plan of the catalog")));
        }
    }
    let reason = form.required("reason")?.to_owned();
    planledger_domain::Reason::parse(&reason).map_err(ApiError::from)?;
    Ok(wire::StartTrial { plan_id: plan, days: None, force_reset: true, reason: Some(reason) })
}

pub async fn confirm_trial_reset(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Form,
) -> Page {
    viewer.check(&form)?;
    viewer.require_admin()?;
    let store = StoreId::parse(&id).map_err(|_| ConsoleError::NotFound(format!("{id:?} is not a store id")))?;
    app.service.load_row(store).await?.ok_or_else(|| ConsoleError::NotFound(format!("No store {store}.")))?;
    let request = trial_request(&form, &app)?;
    let what = html! {
        p #confirm-what { strong { "Start a new trial for " (h::store_link(&store.to_string(), None)) } ", although one was used"
            @if let Some(plan) = &request.plan_id { ", on plan " (plan) } "." }
        p { "Reason: " q { (request.reason.clone().unwrap_or_default()) } }
    };
    let mut fields = vec![("reason", request.reason.clone().unwrap_or_default())];
    fields.extend(request.plan_id.clone().map(|p| ("plan", p)));
    let (action, back) = (format!("/admin/stores/{store}/trial-reset"), format!("/admin/stores/{store}"));
    Ok(confirmation(&viewer, "Confirm the new trial", &action, &back, what, &fields))
}

pub async fn trial_reset(State(app): State<AppState>, viewer: Viewer, Path(id): Path<String>, form: Form) -> Page {
    viewer.check(&form)?;
    viewer.require_admin()?;
    let key = form_key(&form)?.to_owned();
    let request = trial_request(&form, &app)?;
    let response = routes::start_trial(State(app), ctx(&viewer, &key), Path(id.clone()), api_body(&request)?)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let (status, replayed, body) = read_answer(response).await;
    let outcome = match (status.is_success(), replayed) {
        (true, false) => "A new trial was started.".to_owned(),
        (true, true) => "This form was sent before: the trial it started stands, nothing was done again.".to_owned(),
        (false, _) => {
            let e = error_of(&body);
            format!(
                "Refused: {} ({}).",
                e.as_ref().map_or("unknown", |e| e.message.as_str()),
                e.as_ref().map(|e| h::wire_name(&e.error)).unwrap_or_default()
            )
        }
    };
    tracing::info!(actor = %viewer.principal.name, store = %id, status = status.as_u16(), replayed, "console trial reset");
    let body = html! {
        p #result-summary.notice { (outcome) }
        p { a href={ "/admin/stores/" (id) } { "Back to the store" } }
    };
    Ok(h::page(&viewer, Section::None, "New trial", body))
}

// ---- rebuilds ---------------------------------------------------------------------------

fn model(name: &str) -> Result<ReadModel, ConsoleError> {
    ReadModel::parse(name).ok_or_else(|| ConsoleError::NotFound(format!("No read model {name:?}.")))
}

pub async fn confirm_rebuild(viewer: Viewer, Path(name): Path<String>, form: Form) -> Page {
    viewer.check(&form)?;
    viewer.require_admin()?;
    let model = model(&name)?;
    let reason = form.required("reason")?.to_owned();
    let what = html! {
        p #confirm-what { strong { "Rebuild " (model.name()) " from the log" } ", then swap it in." }
        p { "Reason: " q { (reason) } }
    };
    Ok(confirmation(
        &viewer,
        "Confirm the rebuild",
        &format!("/admin/rebuilds/{}", model.name()),
        "/admin/rebuilds",
        what,
        &[("reason", reason)],
    ))
}

pub async fn start_rebuild(State(app): State<AppState>, viewer: Viewer, Path(name): Path<String>, form: Form) -> Page {
    viewer.check(&form)?;
    viewer.require_admin()?;
    let model = model(&name)?;
    let key = form_key(&form)?;
    let reason = form.required("reason")?;
    let started =
        app.rebuilds.start_once(&app.service, model, planledger_projections::rebuild::When::Always, Some(key));
    tracing::info!(actor = %viewer.principal.name, model = model.name(), %reason, started, "console rebuild");
    Ok(Redirect::to(&format!("/admin/rebuilds#rebuild-{}", model.name())).into_response())
}

/// The last rebuild of a model on this node, as JSON (`null` if none): the page's script polls it.
pub async fn rebuild_progress(State(app): State<AppState>, _: Viewer, Path(name): Path<String>) -> Page {
    let job = app.rebuilds.describe(model(&name)?);
    Ok(crate::render::Json::ok(&job).into_response())
}
