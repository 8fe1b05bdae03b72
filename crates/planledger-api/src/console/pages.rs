//! The console's pages: what the ledger knows, read the way the API reads it.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{html, Markup};
use std::collections::HashMap;

use planledger_domain::{ActionName, Catalog, InternalStatus, StoreId};
use planledger_projections::history::{decode, fold_stream, Folded, Until};
use planledger_projections::tenant_state::{self, StoreFilter};
use planledger_projections::{audit, replay, runtime, schema, ReadModel};
use planledger_store::{EventLog, StreamId};
use planledger_wire as wire;

use super::html::{self as h, Section};
use super::{ConsoleError, Form, Page, Viewer};
use crate::edge::Params;
use crate::render;
use crate::AppState;

/// The domain's statuses in the order people think of a store's life (sized by
/// `InternalStatus::ALL`, so a new status does not compile until it has its place here).
const STATUSES: [InternalStatus; InternalStatus::ALL.len()] = [
    InternalStatus::Trialing,
    InternalStatus::Grace,
    InternalStatus::Maintenance,
    InternalStatus::Frozen,
    InternalStatus::Active,
    InternalStatus::PastDue,
    InternalStatus::Canceled,
    InternalStatus::None,
];

/// How many stores a page of the list shows.
const PAGE: i64 = 50;
/// How many events a page of a store's timeline shows.
const TIMELINE_PAGE: i64 = 100;
/// How far ahead the overview looks for deadlines.
const HORIZON: TimeDelta = TimeDelta::days(7);
/// A store page shows at most this many refusals, among the store's last `STORE_REFUSALS_AMONG`
/// commands.
const STORE_REFUSALS_SHOWN: i64 = 10;
const STORE_REFUSALS_AMONG: i64 = 500;

/// How many of the journal's most recent commands the overview counts refusals among.
const RECENT_COMMANDS: i64 = 10_000;
/// How many events a what-if page lists (the count of differences covers them all).
const WHAT_IF_ROWS: usize = 2_000;

fn now(app: &AppState) -> DateTime<Utc> {
    app.service.clock().now()
}

fn store_id(raw: &str) -> Result<StoreId, ConsoleError> {
    StoreId::parse(raw).map_err(|_| ConsoleError::NotFound(format!("{raw:?} is not a store id")))
}

fn status_filter(raw: Option<&str>) -> Result<Option<String>, ConsoleError> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            InternalStatus::parse(s)
                .map(|s| s.as_str().to_owned())
                .ok_or_else(|| ConsoleError::Invalid(format!("status: {s:?} is not an internal status")))
        })
        .transpose()
}

fn plan_filter(raw: Option<&str>, catalog: &Catalog) -> Result<Option<String>, ConsoleError> {
    raw.filter(|s| !s.is_empty())
        .map(|p| {
            catalog
                .plans()
                .find(|plan| plan.id.as_str() == p)
                .map(|plan| plan.id.to_string())
                .ok_or_else(|| ConsoleError::Invalid(format!("plan: {p:?} is not a plan of the catalog")))
        })
        .transpose()
}

/// The filter of the store list, from its query string or a form repeating it.
pub fn filter_of(get: impl Fn(&str) -> Option<String>, catalog: &Catalog) -> Result<StoreFilter, ConsoleError> {
    let text = get("q").map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    if text.as_ref().is_some_and(|q| q.chars().count() > 200 || q.contains('\0')) {
        return Err(ConsoleError::Invalid("q: at most 200 characters".to_owned()));
    }
    Ok(StoreFilter {
        internal_status: status_filter(get("status").as_deref())?,
        plan_id: plan_filter(get("plan").as_deref(), catalog)?,
        name_contains: text,
    })
}

/// The filter as a query string (for links and the bulk form).
pub fn filter_query(filter: &StoreFilter) -> Vec<(&'static str, String)> {
    [("status", &filter.internal_status), ("plan", &filter.plan_id), ("q", &filter.name_contains)]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
}

fn describe_filter(filter: &StoreFilter) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &filter.internal_status {
        parts.push(format!("status {s}"));
    }
    if let Some(p) = &filter.plan_id {
        parts.push(format!("plan {p}"));
    }
    if let Some(q) = &filter.name_contains {
        parts.push(format!("name containing {q:?}"));
    }
    if parts.is_empty() {
        "every store".to_owned()
    } else {
        parts.join(", ")
    }
}

// ---- overview ---------------------------------------------------------------------------

pub async fn overview(State(app): State<AppState>, viewer: Viewer) -> Page {
    let log = app.service.reads();
    let now = now(&app);
    let (counts, counted_ago) = app.console.status_counts(log).await?;
    let rows: Vec<(String, i64, String)> = STATUSES
        .iter()
        .map(InternalStatus::as_str)
        .filter_map(|status| {
            let count = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            (status != InternalStatus::None.as_str() || count > 0)
                .then(|| (status.to_string(), count, format!("/admin/stores?status={status}")))
        })
        .collect();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let trials = tenant_state::deadlines_before(log, "trialing", now + HORIZON, 20).await?;
    let freezes = tenant_state::deadlines_before(log, "maintenance", now + HORIZON, 20).await?;
    let lag = runtime::audit_lag(log, now).await?;
    let models = schema::info(log).await?;
    let refusals = audit::recent_refusals(log, RECENT_COMMANDS).await?;
    let deadline_table = |rows: &[planledger_projections::TenantStateRow], what: &str, id: &str| {
        html! {
            @if rows.is_empty() {
                p.muted #(id) { "None in the next 7 days." }
            } @else {
                table #(id) {
                    thead { tr { th { "Store" } th { "Plan" } th { (what) } } }
                    tbody {
                        @for row in rows {
                            tr {
                                td { (h::store_link(&row.store_id.to_string(), row.state.name.as_ref().map(|n| n.as_str()))) }
                                td { (row.state.plan_id.as_ref().map_or("-".to_owned(), ToString::to_string)) }
                                td { (h::maybe_when(row.state.next_deadline(), now)) }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        div.grid {
            section.card {
                h2 { "Stores by status" }
                p.muted {
                    (total) " stores; the statuses stored with each store's last event"
                    @if counted_ago.as_secs() >= 1 { ", counted " (counted_ago.as_secs()) " s ago" }
                    "."
                }
                (h::bar_chart(&rows))
            }
            section.card {
                h2 { "Read models" }
                table #read-models {
                    thead { tr { th { "Model" } th { "Generation" } th { "Current" } } }
                    tbody {
                        @for info in &models {
                            tr {
                                td { (info.name) }
                                td { (info.generation) }
                                td { @if info.is_stale(&app.service.catalogs()) { span.badge.warn { "stale: rebuild" } } @else { "yes" } }
                            }
                        }
                    }
                }
                p #audit-lag {
                    "Audit view lag: " strong { (lag.events) " events" } ", " (format!("{:.1}", lag.seconds)) " s behind the log. "
                    span.muted { "tenant_state is written with the events: no lag." }
                }
            }
            section.card {
                h2 { "Trials ending in the next 7 days" }
                (deadline_table(&trials, "Trial ends", "trials-ending"))
            }
            section.card {
                h2 { "Freezes due in the next 7 days" }
                (deadline_table(&freezes, "Freezes", "freezes-due"))
            }
            section.card {
                h2 { "Recent refusals by code" }
                p.muted {
                    "Among the last " (refusals.commands) " commands"
                    @if let Some(since) = refusals.since { ", since " (h::when(since, now)) }
                    "."
                }
                @if refusals.by_code.is_empty() {
                    p #refusals { "No refusals." }
                } @else {
                    table #refusals {
                        thead { tr { th { "Code" } th.num { "Refusals" } } }
                        tbody { @for (code, n) in &refusals.by_code { tr { td.mono { (code) } td.num { (n) } } } }
                    }
                }
            }
        }
    };
    Ok(h::page(&viewer, Section::Overview, "Overview", body))
}

// ---- stores -----------------------------------------------------------------------------

pub async fn stores(State(app): State<AppState>, viewer: Viewer, params: Params) -> Page {
    let catalogs = app.service.catalogs();
    let in_force = app.service.catalog();
    let catalog = in_force.as_ref();
    let filter = filter_of(|k| params.get(k).map(str::to_owned), catalog)?;
    // An id typed into the search box goes to the store.
    if let Some(id) = filter.name_contains.as_deref().and_then(|q| StoreId::parse(q).ok()) {
        if tenant_state::load(app.service.reads(), id).await?.is_some() {
            return Ok(Redirect::to(&format!("/admin/stores/{id}")).into_response());
        }
    }
    let after = params
        .get("cursor")
        .map(|c| StoreId::parse(c).map_err(|_| ConsoleError::Invalid(format!("cursor: {c:?} is not a cursor"))))
        .transpose()?;
    let mut rows = tenant_state::list(app.service.reads(), &filter, after, PAGE + 1).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let now = now(&app);
    let next = more.then(|| {
        let mut query = filter_query(&filter);
        query.push(("cursor", rows.last().map(|r| r.store_id.to_string()).unwrap_or_default()));
        format!("/admin/stores?{}", serde_urlencoded::to_string(query).unwrap_or_default())
    });
    let selected = |a: &Option<String>, b: &str| a.as_deref() == Some(b);
    let body = html! {
        form.filters #filters method="get" action="/admin/stores" {
            label { "Status " select name="status" {
                option value="" { "any" }
                @for s in STATUSES.map(|s| s.as_str()) { option value=(s) selected[selected(&filter.internal_status, s)] { (s.replace('_', " ")) } }
            } }
            label { "Plan " select name="plan" {
                option value="" { "any" }
                @for plan in catalog.plans() {
                    option value=(plan.id.as_str()) selected[selected(&filter.plan_id, plan.id.as_str())] { (plan.id.as_str()) }
                }
            } }
            label { "Search " input type="search" name="q" placeholder="store id or name" value=[filter.name_contains.as_deref()]; }
            button type="submit" { "Filter" }
            a href="/admin/stores" { "Clear" }
        }
        @if rows.is_empty() {
            p #no-stores { "No store matches " (describe_filter(&filter)) "." }
        } @else {
            table #stores {
                thead { tr { th { "Store" } th { "Status" } th { "Plan" } th { "Next deadline" } th.num { "Version" } } }
                tbody {
                    @for row in &rows {
                        @let view = render::store_view(row.store_id, &row.state, row.version, now, &catalogs);
                        tr {
                            td {
                                (h::store_link(&row.store_id.to_string(), view.name.as_deref()))
                                br; span.mono.muted { (row.store_id) }
                            }
                            td { (h::status_badge(&h::wire_name(&view.internal_status))) }
                            td { (view.plan_id.as_deref().unwrap_or("-")) }
                            td { (h::maybe_when(view.next_deadline, now)) }
                            td.num { (row.version) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next { p { a #next-page href=(next) { "Next page →" } } }
        @if viewer.is_admin() && filter.internal_status.is_some() {
            section.card.action {
                h2 { "Extend every store of this filter" }
                p.muted { "Applies to " (describe_filter(&filter)) " (at most 1,000 stores). You confirm on the next page." }
                form #bulk-extend method="post" action="/admin/extensions/confirm" {
                    (h::csrf(&viewer))
                    @for (k, v) in filter_query(&filter) { input type="hidden" name=(k) value=(v); }
                    (extension_fields(&EVERY_EXTENSION))
                    button type="submit" { "Review" }
                }
            }
        }
    };
    Ok(h::page(&viewer, Section::Stores, "Stores", body))
}

/// Every kind of extension, as the bulk form offers them (its filter may match any state).
const EVERY_EXTENSION: [&str; 3] = ["trial", "grace", "maintenance"];

/// The extension that applies to a store in `status`: a trial can be extended while it runs, a
/// grace period during grace, maintenance during maintenance; nothing else (the rules refuse it).
fn extension_for(status: wire::InternalStatus) -> Option<&'static str> {
    match status {
        wire::InternalStatus::Trialing => Some("trial"),
        wire::InternalStatus::Grace => Some("grace"),
        wire::InternalStatus::Maintenance => Some("maintenance"),
        _ => None,
    }
}

/// The fields of an extension: which of `kinds`, how many days, why.
pub fn extension_fields(kinds: &[&str]) -> Markup {
    let label = |kind: &str| {
        match kind {
            "grace" => "grace period",
            other => other,
        }
        .to_owned()
    };
    html! {
        label { "Extend " select name="kind" {
            @for kind in kinds { option value=(kind) { (label(kind)) } }
        } }
        label { "by " input type="number" name="days" min="1" max="3650" value="3" required; " days" }
        label.wide { "Reason " input type="text" name="reason" maxlength="500" required placeholder="why (recorded with the event)"; }
    }
}

// ---- one store --------------------------------------------------------------------------

/// The quota windows; an action the gate refuses now says so (`refused`: its code) instead of
/// what is left, which would not be granted.
fn quota_bars(usage: &[wire::Usage], now: DateTime<Utc>, refused: &HashMap<String, &'static str>) -> Markup {
    html! {
        @if usage.is_empty() { p.muted { "No quota windows." } }
        @for u in usage {
            div.quota data-action=(u.action) {
                div.quota-head {
                    strong { (u.action) }
                    span {
                        (u.used) " used"
                        @if let Some(code) = refused.get(&u.action) {
                            " " span.badge.bad.refused { "refused: " (code) }
                        } @else {
                            @match u.limit { Some(limit) => { " of " (limit) " (" (u.remaining.unwrap_or(0)) " left)" }, None => { ", unmetered" } }
                        }
                    }
                }
                @match u.limit {
                    Some(limit) => meter min="0" max=(limit.max(1)) low=(limit * 8 / 10) high=(limit * 95 / 100) optimum="0" value=(u.used.min(limit)) {}
                    None => meter min="0" max="1" value="0" {}
                }
                div.muted.small {
                    (h::wire_name(&u.period)) " window"
                    @if let Some(start) = u.period_start { " from " (start.format("%Y-%m-%d %H:%M")) }
                    @if let Some(end) = u.period_end { " to " (end.format("%Y-%m-%d %H:%M UTC")) " (" (h::relative(end, now)) ")" }
                }
            }
        }
    }
}

/// A deadline as it stands at `now`: to come while its phase runs, passed, or one that will not
/// come because the store left the phase first (a paid subscription replaced the trial).
fn deadline(at: Option<DateTime<Utc>>, running: bool, now: DateTime<Utc>) -> Markup {
    match at {
        None => html! { span.muted { "-" } },
        Some(at) if running => html! { "ends " (h::when(at, now)) },
        Some(at) if at <= now => html! { "ended " (h::when(at, now)) },
        Some(at) => {
            html! { span.muted { "will not come: the store left this phase (it was due " (h::when(at, now)) ")" } }
        }
    }
}

fn state_table(view: &wire::StoreView, now: DateTime<Utc>) -> Markup {
    use wire::InternalStatus as S;
    let status = view.internal_status;
    html! {
        table.facts #state {
            tr { th { "Status" } td { (h::status_badge(&h::wire_name(&view.internal_status))) " " span.muted { "subscription " (h::wire_name(&view.subscription_status)) } } }
            @if status == S::Frozen {
                tr #frozen-since { th { "Frozen since" } td { (h::maybe_when(view.maintenance_ends_at, now)) " " span.muted { "read-only: every change is refused" } } }
            }
            tr { th { "Plan" } td { (view.plan_id.as_deref().unwrap_or("-")) " " span.muted { "tier " (view.tier.as_deref().unwrap_or("-")) } } }
            tr { th { "Trial" } td #trial-ends { (deadline(view.trial_ends_at, status == S::Trialing, now)) } }
            tr { th { "Grace" } td #grace-ends { (deadline(view.grace_ends_at, status == S::Grace, now)) } }
            tr { th { "Maintenance" } td #maintenance-ends { (deadline(view.maintenance_ends_at, status == S::Maintenance, now)) } }
            tr { th { "Next deadline" } td { (h::maybe_when(view.next_deadline, now)) } }
            tr { th { "Grants" } td #grants {
                @if view.grants.is_empty() { "none" }
                @for g in &view.grants {
                    div { (g.remaining) " of " (g.amount) " " (g.action) " left"
                        @if let Some(at) = g.expires_at { ", until " (h::when(at, now)) } }
                }
            } }
            tr { th { "Scheduled change" } td #scheduled-change {
                @match &view.scheduled_plan_transition {
                    Some(s) => {
                        (s.from_plan_id) " → " (s.to_plan_id) " " (h::when(s.at, now))
                        @if s.at_period_end { " " span.muted { "(end of the billing period)" } }
                    }
                    None => { "none" }
                }
            } }
            tr { th { "Subscription" } td { (view.subscription_id.as_deref().unwrap_or("-")) } }
            tr { th { "Trial used" } td { (if view.trial_used { "yes" } else { "no" }) } }
            tr { th { "Time zone" } td { (view.time_zone) } }
            tr { th { "Features" } td { (view.features.join(", ")) } }
            tr { th { "Catalog" } td #catalog-version {
                @match view.catalog_version {
                    Some(v) => { "version " (v) " " span.muted { "the rules this store is decided under" } }
                    None => { "the node's own rules " span.muted { "(not a ledger version)" } }
                }
            } }
            @if !view.warnings.is_empty() {
                tr { th { "Warnings" } td { @for w in &view.warnings { span.badge.warn { (h::wire_name(w)) } " " } } }
            }
        }
    }
}

/// Why each action of the catalog is allowed or refused for `amount` at `at`, and the smallest
/// changes that would allow it (`planledger_domain::explain`, as `GET /v1/stores/{id}/explain`
/// answers it).
fn explain_panel(
    store: StoreId,
    state: &planledger_domain::TenantState,
    (amount, at): (planledger_domain::Amount, DateTime<Utc>),
    catalog: &Catalog,
) -> Markup {
    let explained: Vec<wire::Explanation> = catalog
        .actions()
        .filter_map(|(action, _)| {
            let explained = planledger_domain::explain(state, action, amount, at, catalog).ok()?;
            Some(render::explanation(store, (action, amount.get(), at), &explained, catalog))
        })
        .collect();
    html! {
        table #explain {
            thead { tr { th { "Action" } th { "Decision" } th { "Window" } th { "Would allow it" } } }
            tbody {
                @for e in &explained {
                    tr data-action=(e.action) {
                        td.mono { (e.action) @if let Some(feature) = &e.required_feature { br; span.muted.small { "requires " (feature) } } }
                        td {
                            @match &e.refusal {
                                None => span.badge.ok { "allowed" },
                                Some(refusal) => {
                                    span.badge.bad.refusal { (h::wire_name(&refusal.error)) }
                                    br; span.small { (refusal.message) }
                                }
                            }
                        }
                        td.small {
                            (e.quota.used) " used"
                            @match e.quota.limit { Some(limit) => { " of " (limit) }, None => { ", unmetered" } }
                            @if e.quota.granted > 0 { ", " (e.quota.granted) " granted" }
                        }
                        td.small {
                            @if e.would_allow.is_empty() { span.muted { "-" } }
                            @for remedy in &e.would_allow { div.remedy { (remedy.description) } }
                        }
                    }
                }
            }
        }
    }
}

pub async fn store(State(app): State<AppState>, viewer: Viewer, Path(id): Path<String>, params: Params) -> Page {
    let store = store_id(&id)?;
    let log = app.service.reads();
    let catalogs = app.service.catalogs();
    let now = now(&app);
    let Some((latest_state, latest)) = app.service.load_row(store).await? else {
        return Err(ConsoleError::NotFound(format!("No store {store}.")));
    };
    let version = params.get("version").map(|_| params.int("version", latest, 1..=latest)).transpose()?;
    // The store as it was at the version asked for (statuses as of when that event was recorded),
    // or as it is now.
    let (view, state, as_of) = match version.filter(|v| *v < latest) {
        Some(v) => {
            let until = Until { version: Some(v), time: None };
            let folded = fold_stream(log, store, Folded::default(), until, |_, _, _| Ok::<_, ConsoleError>(())).await?;
            let at = folded.at.unwrap_or(now);
            (render::store_view(store, &folded.state, folded.version, at, &catalogs), folded.state, at)
        }
        None => (render::store_view(store, &latest_state, latest, now, &catalogs), latest_state, now),
    };
    // The store's own catalog version, then.
    let catalog = catalogs.shown_for(&state, as_of).catalog.as_ref();
    // What the gate refuses now, per action of a quota window: such a window's "left" would
    // not be granted.
    let refused: HashMap<String, &'static str> = view
        .usage
        .iter()
        .filter_map(|u| {
            let action = ActionName::parse(&u.action).ok()?;
            match planledger_domain::gate(&state, as_of, catalog, &action).ok()? {
                planledger_domain::GateDecision::Refused(refusal) => Some((u.action.clone(), refusal.reason.code())),
                planledger_domain::GateDecision::Allowed { .. } => None,
            }
        })
        .collect();
    let amount = planledger_domain::Amount::parse(params.int("amount", 1, 1..=1_000_000)?)
        .map_err(|e| ConsoleError::Invalid(format!("amount: {e}")))?;
    let refusals = audit::store_refusals(log, &store.to_string(), STORE_REFUSALS_AMONG, STORE_REFUSALS_SHOWN).await?;
    let shown = view.version;
    // The timeline, newest first, a page at a time going back.
    let before = params.int("before", latest + 1, 2..=latest + 1)?;
    let from = (before - TIMELINE_PAGE).max(1);
    let stream = StreamId::parse(store.stream_name()).map_err(|_| ConsoleError::NotFound(store.to_string()))?;
    let mut events = log.read_stream(&stream, from, before - from).await?;
    events.reverse();
    let title = view.name.clone().unwrap_or_else(|| store.to_string());
    let body = html! {
        p.mono.muted #store-id { (store) }
        form.version #version-picker method="get" action={ "/admin/stores/" (store) } {
            label for="version" { "State at version" }
            input #version type="range" min="1" max=(latest) value=(shown);
            input #version-number type="number" name="version" min="1" max=(latest) value=(shown) aria-label="version";
            span { "of " (latest) }
            button type="submit" { "Show" }
            @if shown < latest { a href={ "/admin/stores/" (store) } { "Latest" } }
        }
        @if shown < latest {
            p.notice #as-of { "As it was at version " (shown) ", recorded " (h::when(as_of, now)) "; the store is at version " (latest) " now." }
        }
        div.grid {
            section.card { h2 { "State" } (state_table(&view, as_of)) }
            section.card #quotas { h2 { "Quota windows" } (quota_bars(&view.usage, as_of, &refused)) }
        }
        section.card #why {
            h2 { "Why: each action, decided now" }
            form.inline #explain-amount method="get" action={ "/admin/stores/" (store) } {
                @if shown < latest { input type="hidden" name="version" value=(shown); }
                label { "For an amount of " input type="number" name="amount" min="1" max="1000000" value=(amount.get()); }
                button type="submit" { "Explain" }
            }
            p.muted.small { "The rule that decides each action for the store as shown, and the smallest change of plan, date or allowance that would allow it, each checked against the rules." }
            (explain_panel(store, &state, (amount, as_of), catalog))
        }
        section.card #store-refusals {
            h2 { "Recent refusals" }
            p.muted.small { "Among the store's last " (STORE_REFUSALS_AMONG) " commands, newest first (the journal, written within a second)." }
            @if refusals.is_empty() {
                p { "No refusals." }
            } @else {
                table {
                    thead { tr { th { "Recorded" } th { "Command" } th { "Refused with" } th { "Actor" } th { "Correlation id" } } }
                    tbody {
                        @for r in &refusals {
                            tr {
                                td { (h::when(r.recorded_at, now)) }
                                td.mono { (r.kind) }
                                td.mono.refusal { (r.error_code.as_deref().unwrap_or("-")) }
                                td { (r.actor) }
                                td.mono { (r.correlation_id) }
                            }
                        }
                    }
                }
            }
        }
        @if viewer.is_admin() && shown == latest {
            div.grid {
                section.card.action {
                    h2 { "Extend" }
                    @match extension_for(view.internal_status) {
                        Some(kind) => form #extend method="post" action="/admin/extensions/confirm" {
                            (h::csrf(&viewer))
                            input type="hidden" name="store" value=(store);
                            (extension_fields(&[kind]))
                            button type="submit" { "Review" }
                        },
                        None => p.muted #no-extension {
                            "No extension applies to a store that is " (h::wire_name(&view.internal_status))
                            ": a trial, a grace period or a maintenance window is extended while it runs."
                        },
                    }
                }
                section.card.action {
                    h2 { "Force a new trial" }
                    p.muted { "Starts a trial again although one was used. Admins only; the reason is recorded." }
                    form #trial-reset method="post" action={ "/admin/stores/" (store) "/trial-reset/confirm" } {
                        (h::csrf(&viewer))
                        label { "Plan " select name="plan" {
                            option value="" { "the catalog's trial plan" }
                            @for plan in catalog.plans().filter(|p| p.trial_eligible) { option value=(plan.id.as_str()) { (plan.id.as_str()) } }
                        } }
                        label.wide { "Reason " input type="text" name="reason" maxlength="500" required; }
                        button type="submit" { "Review" }
                    }
                }
            }
        }
        p { a #what-if-link href={ "/admin/stores/" (store) "/what-if" } { "What if the rules were different? Replay under another catalog →" } }
        section.card {
            h2 { "Timeline" }
            table #timeline {
                thead { tr { th.num { "Version" } th { "Recorded" } th { "Event" } th { "Summary" } th { "Actor" } th { "Correlation id" } } }
                tbody {
                    @for e in &events {
                        @let summary = decode(e).map(|event| audit::summary(&event)).unwrap_or_else(|err| format!("(cannot be read: {err})"));
                        tr class=[(e.version == shown && shown < latest).then_some("selected")] data-version=(e.version) {
                            td.num { a href={ "/admin/stores/" (store) "?version=" (e.version) } { (e.version) } }
                            td { (h::when(e.recorded_at, now)) }
                            td.mono.event-type { (e.event_type) }
                            td { (summary) }
                            td { (e.actor) }
                            td { (h::correlation_link(&e.correlation_id)) }
                        }
                    }
                }
            }
            @if from > 1 { p { a #older href={ "/admin/stores/" (store) "?before=" (from) } { "Older events →" } } }
        }
    };
    Ok(h::page(&viewer, Section::Stores, &title, body))
}

// ---- correlation ------------------------------------------------------------------------

pub async fn correlation(State(app): State<AppState>, viewer: Viewer, Path(id): Path<String>) -> Page {
    if id.is_empty() || id.chars().count() > 200 || id.contains('\0') {
        return Err(ConsoleError::Invalid("a correlation id is 1 to 200 characters".to_owned()));
    }
    let log = app.service.reads();
    let now = now(&app);
    let query = audit::AuditQuery { correlation_id: Some(id.clone()), limit: 1000, ..Default::default() };
    let events = audit::query(log, &query).await?;
    let commands = audit::journal(log, None, Some(&id), 0, 1000).await?;
    let lag = runtime::audit_lag(log, now).await?;
    let body = html! {
        p.mono #correlation { (id) }
        @if lag.events > 0 { p.notice { "The audit view is " (lag.events) " events behind the log: recent events may not be listed yet." } }
        section.card {
            h2 { "Events" }
            @if events.is_empty() { p.muted { "No event carries this correlation id." } } @else {
                table #correlated-events {
                    thead { tr { th { "Store" } th.num { "Version" } th { "Event" } th { "Summary" } th { "Actor" } th { "Recorded" } } }
                    tbody {
                        @for e in &events {
                            tr {
                                td { a.mono href={ "/admin/stores/" (e.store_id) } { (e.store_id) } }
                                td.num { a href={ "/admin/stores/" (e.store_id) "?version=" (e.version) } { (e.version) } }
                                td.mono { (e.event_type) }
                                td { (e.summary) }
                                td { (e.actor) }
                                td { (h::when(e.recorded_at, now)) }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Commands" }
            @if commands.is_empty() { p.muted { "No command in the journal carries this correlation id." } } @else {
                table #correlated-commands {
                    thead { tr { th { "Store" } th { "Command" } th { "Outcome" } th { "Code" } th { "Actor" } th { "Recorded" } } }
                    tbody {
                        @for c in &commands {
                            tr {
                                td { a.mono href={ "/admin/stores/" (c.store_id) } { (c.store_id) } }
                                td.mono { (c.kind) }
                                td { (c.outcome) }
                                td.mono { (c.error_code.as_deref().unwrap_or("")) }
                                td { (c.actor) }
                                td { (h::when(c.recorded_at, now)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(h::page(&viewer, Section::None, "Correlation", body))
}

// ---- what-if ----------------------------------------------------------------------------

fn what_if_input(viewer: &Viewer, store: StoreId, catalog_text: &str) -> Markup {
    html! {
        form #what-if method="post" action={ "/admin/stores/" (store) "/what-if" } {
            (h::csrf(viewer))
            p.muted { "Replays the store's events under another catalog (TOML, as " span.mono { "config/catalog.toml" } "). Nothing is written." }
            label { "Catalog file " input #catalog-file type="file" accept=".toml,text/plain" data-fills="catalog"; }
            textarea #catalog name="catalog" rows="16" spellcheck="false" required { (catalog_text) }
            button type="submit" { "Compare" }
        }
    }
}

pub async fn what_if_form(State(app): State<AppState>, viewer: Viewer, Path(id): Path<String>) -> Page {
    let store = store_id(&id)?;
    app.service.load_row(store).await?.ok_or_else(|| ConsoleError::NotFound(format!("No store {store}.")))?;
    let body = html! {
        p { a href={ "/admin/stores/" (store) } { "← " span.mono { (store) } } }
        (what_if_input(&viewer, store, ""))
    };
    Ok(h::page(&viewer, Section::Stores, "What if", body))
}

pub async fn what_if(State(app): State<AppState>, viewer: Viewer, Path(id): Path<String>, form: Form) -> Page {
    viewer.check(&form)?;
    let store = store_id(&id)?;
    let text = form.required("catalog")?;
    let other = Catalog::parse("uploaded catalog", text).map_err(|e| ConsoleError::Invalid(e.to_string()))?;
    let catalogs = app.service.catalogs();
    let now = now(&app);
    let mut rows = Vec::new();
    let (mut total, mut differing) = (0usize, 0usize);
    let ending = replay::replay(app.service.reads(), store, None, now, &catalogs, Some(&other), |row| {
        total += 1;
        differing += usize::from(row.differs());
        if rows.len() < WHAT_IF_ROWS {
            let r = row.recorded;
            let (mine, theirs) = (row.after_text(), row.after_compared_text().unwrap_or_default());
            rows.push((
                r.version,
                r.recorded_at,
                r.event_type.clone(),
                row.summary.clone(),
                row.differs(),
                mine,
                theirs,
            ));
        }
        Ok::<_, ConsoleError>(())
    })
    .await?;
    let Some(end) = ending else { return Err(ConsoleError::NotFound(format!("No store {store}."))) };
    let end_differs = end.status_compared.as_ref().is_some_and(|s| *s != end.status);
    let body = html! {
        p { a href={ "/admin/stores/" (store) } { "← " span.mono { (store) } } }
        p #what-if-summary.notice {
            (differing) " of " (total) " events leave the store otherwise under the uploaded catalog"
            " (its fingerprint " span.mono { (&other.fingerprint()[..12.min(other.fingerprint().len())]) } "). Nothing was written."
        }
        section.card {
            h2 { "Now" }
            table #what-if-ending {
                thead { tr { th {} th { "Current catalog" } th { "Uploaded catalog" } } }
                tbody {
                    tr class=[end_differs.then_some("differs")] {
                        th { "Status / plan" } td { (end.status) } td { (end.status_compared.as_ref().map(ToString::to_string).unwrap_or_default()) }
                    }
                    @for line in &end.usage {
                        @let theirs = line.compared.map(|u| u.to_string()).unwrap_or_default();
                        tr class=[(theirs != line.current.to_string()).then_some("differs")] {
                            th.mono { (line.action) } td { (line.current) } td { (theirs) }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Event by event" }
            table #what-if-events {
                thead { tr { th.num { "Version" } th { "Recorded" } th { "Event" } th { "Summary" } th { "After, current" } th { "After, uploaded" } } }
                tbody {
                    @for (version, at, event_type, summary, differs, mine, theirs) in &rows {
                        tr class=[differs.then_some("differs")] {
                            td.num { (version) } td { (h::when(*at, now)) } td.mono { (event_type) } td { (summary) } td { (mine) } td { (theirs) }
                        }
                    }
                }
            }
            @if total > rows.len() { p.muted { "The first " (rows.len()) " of " (total) " events are listed." } }
        }
        (what_if_input(&viewer, store, text))
    };
    Ok(h::page(&viewer, Section::Stores, "What if", body))
}

// ---- rebuilds ---------------------------------------------------------------------------

pub async fn rebuilds(State(app): State<AppState>, viewer: Viewer) -> Page {
    let models = schema::info(app.service.reads()).await?;
    let body = html! {
        p.muted { "A rebuild builds a new generation of a read model from the log beside the live one and swaps it in; commands go on meanwhile. The progress shown is of rebuilds this node started." }
        @for model in [ReadModel::TenantState, ReadModel::AuditLog] {
            @let info = models.iter().find(|i| i.name == model.name());
            @let job = app.rebuilds.describe(model);
            section.card.rebuild #{ "rebuild-" (model.name()) } data-model=(model.name()) {
                h2 { (model.name()) }
                p {
                    "Live generation " strong.generation { (info.map_or("none".to_owned(), |i| i.generation.to_string())) }
                    @if info.is_some_and(|i| i.is_stale(&app.service.catalogs())) { " " span.badge.warn { "stale for the catalog" } }
                }
                div.progress data-progress-url={ "/admin/rebuilds/" (model.name()) "/progress" } data-running=(job.as_ref().is_some_and(|j| j.state == wire::RebuildState::Running)) {
                    @match &job {
                        Some(job) => (progress(job)),
                        None => p.muted.state { "No rebuild started on this node since it started." },
                    }
                }
                @if viewer.is_admin() {
                    form.start-rebuild method="post" action={ "/admin/rebuilds/" (model.name()) "/confirm" } {
                        (h::csrf(&viewer))
                        label.wide { "Reason " input type="text" name="reason" maxlength="500" required; }
                        button type="submit" { "Review" }
                    }
                }
            }
        }
    };
    Ok(h::page(&viewer, Section::Rebuilds, "Rebuilds", body))
}

/// A rebuild's progress, as the page first shows it (the script then keeps it current).
pub fn progress(job: &wire::RebuildJob) -> Markup {
    html! {
        progress max=(job.events_total.max(1)) value=(job.events_done.min(job.events_total.max(1))) {}
        p.state {
            span.rebuild-state { (h::wire_name(&job.state)) }
            " · " span.phase { (job.phase) } " · "
            span.done { (job.events_done) } " of " span.total { (job.events_total) } " events · "
            (format!("{:.1}", job.elapsed_seconds)) " s"
            @if let Some(g) = job.generation { " · generation " span.new-generation { (g) } }
            @if let Some(e) = &job.error { " · " span.error { (e) } }
        }
    }
}
