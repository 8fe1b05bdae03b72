//! The console's page frame and the pieces pages are made of. Markup is built with `maud`, which
//! escapes every value it interpolates; nothing here writes raw HTML from data.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, DOCTYPE};
use serde::Serialize;

use super::Viewer;

/// What every console page is sent with: no caching, no framing, no referrer, and a content
/// policy that allows the console's own stylesheet and script only (no inline script or style).
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Stores,
    Rebuilds,
    None,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · planledger" }
            link rel="stylesheet" href="/admin/assets/console.css";
            script src="/admin/assets/console.js" defer {}
        }
    }
}

/// A page of a signed-in viewer.
pub fn page(viewer: &Viewer, section: Section, title: &str, body: Markup) -> Response {
    let nav = [
        (Section::Overview, "/admin", "Overview"),
        (Section::Stores, "/admin/stores", "Stores"),
        (Section::Rebuilds, "/admin/rebuilds", "Rebuilds"),
    ];
    respond(
        StatusCode::OK,
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    header.top {
                        a.brand href="/admin" { "planledger" }
                        nav {
                            @for (s, href, label) in nav {
                                a href=(href) class=[(s == section).then_some("current")] { (label) }
                            }
                        }
                        div.who {
                            span #who { (viewer.principal.name) " (" (viewer.principal.role.name()) ")" }
                            form method="post" action="/admin/logout" {
                                (csrf(viewer))
                                button.link type="submit" #logout { "Log out" }
                            }
                        }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        },
    )
}

/// A page without a session (login, errors before sign-in).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    respond(
        status,
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body.bare { main { h1 { (title) } (body) } }
            }
        },
    )
}

/// The hidden field that carries the session's form token.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A time in UTC, with how far it is from `now`.
pub fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(SecondsFormat::Secs, true)) {
            (at.format("%Y-%m-%d %H:%M UTC").to_string())
        }
        " " span.muted { "(" (relative(at, now)) ")" }
    }
}

pub fn maybe_when(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match at {
        Some(at) => when(at, now),
        None => html! { span.muted { "-" } },
    }
}

/// "in 3 d 4 h", "2 h ago".
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = at - now;
    let seconds = delta.num_seconds().unsigned_abs();
    if seconds < 60 {
        return "now".to_owned();
    }
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60);
    let span = match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, h) => format!("{h} h {minutes} min"),
        (d, h) => format!("{d} d {h} h"),
    };
    if delta.num_seconds() >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A value's name in the API's JSON (its serde name: `past_due`, `grace_period_extended`, ...).
pub fn wire_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// An internal status as a badge.
pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } { (status.replace('_', " ")) } }
}

pub fn store_link(id: &str, name: Option<&str>) -> Markup {
    html! {
        a href={ "/admin/stores/" (id) } {
            @match name { Some(name) => (name), None => span.mono { (id) } }
        }
    }
}

pub fn correlation_link(id: &str) -> Markup {
    html! { a.mono href={ "/admin/correlations/" (urlencode(id)) } { (id) } }
}

pub fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}

/// A horizontal bar chart in SVG: one labelled bar per row, each a link.
pub fn bar_chart(rows: &[(String, i64, String)]) -> Markup {
    let max = rows.iter().map(|(_, n, _)| *n).max().unwrap_or(0).max(1);
    let (row_height, label_width, bar_width) = (26, 110, 420);
    let height = rows.len() as i64 * row_height + 4;
    html! {
        svg.chart #status-chart xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Stores by status"
            width=(label_width + bar_width + 80) height=(height) viewBox={ "0 0 " (label_width + bar_width + 80) " " (height) } {
            @for (i, (label, count, href)) in rows.iter().enumerate() {
                @let y = i as i64 * row_height + 2;
                @let width = (*count * bar_width / max).max(if *count > 0 { 2 } else { 0 });
                a href=(href) {
                    text.label x=(label_width - 8) y=(y + 17) text-anchor="end" { (label.replace('_', " ")) }
                    rect class={ "bar status-" (label) } x=(label_width) y=(y + 3) width=(width) height=(row_height - 8) rx="3" {}
                    text.count x=(label_width + width + 6) y=(y + 17) { (count) }
                }
            }
        }
    }
}
