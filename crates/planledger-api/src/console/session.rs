//! Signing in and out. The token is sent once, in the body of the login form (never in a URL),
//! and exchanged for a session cookie: `HttpOnly`, `SameSite=Strict`, `Secure` when the console
//! is served over TLS (directly or behind a proxy that says `X-Forwarded-Proto: https`). The
//! login form has its own token in a short-lived cookie (double submit), so another site cannot
//! sign a browser in as someone else.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use planledger_service::sessions;

use super::{cookie, html as h, Form, Page, Viewer};
use crate::AppState;

pub const SESSION_COOKIE: &str = "planledger_session";
const LOGIN_COOKIE: &str = "planledger_login";

fn over_tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(response: &mut Response, name: &str, value: &str, path: &str, max_age: i64, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn login_form(token: &str, status: StatusCode, problem: Option<&str>, open: bool, secure: bool) -> Response {
    let mut response = h::bare(
        status,
        "Sign in",
        html! {
            @if let Some(problem) = problem { p.error #error { (problem) } }
            form.login method="post" action="/admin/login" autocomplete="off" {
                input type="hidden" name="csrf" value=(token);
                @if open {
                    p { "This server has no tokens configured (open access on loopback): sign in as anonymous admin." }
                } @else {
                    label for="token" { "Admin or reader token" }
                    input #token type="password" name="token" required autocomplete="off" autofocus;
                }
                button type="submit" #sign-in { "Sign in" }
            }
            p.muted { "The token is exchanged for a session of 8 hours; it is not kept in the browser." }
        },
    );
    set_cookie(&mut response, LOGIN_COOKIE, token, "/admin/login", 600, secure);
    response
}

pub async fn login_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    login_form(&sessions::random_token(), StatusCode::OK, None, app.tokens.is_empty(), over_tls(&headers))
}

pub async fn login(
    State(app): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    form: Form,
) -> Page {
    let secure = over_tls(&headers);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let sent = form.get("csrf").unwrap_or_default();
    if expected.is_empty() || !crate::auth::constant_time_eq(expected.as_bytes(), sent.as_bytes()) {
        let problem = "The sign-in form expired: please sign in again.";
        return Ok(login_form(
            &sessions::random_token(),
            StatusCode::FORBIDDEN,
            Some(problem),
            app.tokens.is_empty(),
            secure,
        ));
    }
    // Sign-in is a place to guess tokens too: the same throttle as the API's bearer checks.
    let source = crate::edge::client_of(&extensions, &headers, &app.edge.trusted_proxies);
    if let Some(retry_after) = app.throttle.wait(source) {
        let problem = format!("Too many failed sign-ins from this address: wait {retry_after} s, then try again.");
        let mut page =
            login_form(&sessions::random_token(), StatusCode::TOO_MANY_REQUESTS, Some(&problem), false, secure);
        if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
            page.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(page);
    }
    let Some((principal, digest)) = app.tokens.login(form.get("token").unwrap_or_default()) else {
        app.throttle.failed(source);
        tracing::warn!("console sign-in refused: unknown token");
        let problem = "That token is not valid.";
        return Ok(login_form(&sessions::random_token(), StatusCode::UNAUTHORIZED, Some(problem), false, secure));
    };
    if principal.role == crate::auth::Role::Service {
        let problem = "Service tokens do not open the console: use an admin or reader token.";
        return Ok(login_form(&sessions::random_token(), StatusCode::FORBIDDEN, Some(problem), false, secure));
    }
    let (value, _) = sessions::open(app.service.log(), &principal.name, &digest, chrono::Utc::now()).await?;
    tracing::info!(principal = %principal.name, role = principal.role.name(), "console sign-in");
    let mut response = Redirect::to("/admin").into_response();
    set_cookie(&mut response, SESSION_COOKIE, &value, "/admin", sessions::SESSION_LIFETIME.num_seconds(), secure);
    set_cookie(&mut response, LOGIN_COOKIE, "", "/admin/login", 0, secure);
    Ok(response)
}

pub async fn logout(State(app): State<AppState>, headers: HeaderMap, viewer: Viewer, form: Form) -> Page {
    viewer.check(&form)?;
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        sessions::close(app.service.log(), value).await?;
    }
    tracing::info!(principal = %viewer.principal.name, "console sign-out");
    let mut response = Redirect::to("/admin/login").into_response();
    set_cookie(&mut response, SESSION_COOKIE, "", "/admin", 0, over_tls(&headers));
    Ok(response)
}
