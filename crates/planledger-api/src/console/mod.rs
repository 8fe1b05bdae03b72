//! The admin console: HTML pages under `/admin`, served by planledger itself (no build step:
//! markup rendered on the server with `maud`, one stylesheet and one small script embedded in the
//! binary).
//!
//! - Sign-in exchanges an admin or reader token for a session cookie (`session.rs`); every form
//!   carries the session's synchronizer token, checked before anything else of a POST.
//! - Pages (`pages.rs`) read what the API reads: `tenant_state`, the log, the audit view, the
//!   journal. Readers see every page; actions are for admins.
//! - Actions (`actions.rs`) are confirmed on a page of their own, which gives the action its
//!   idempotency key; the action is then sent through the API's own handlers (the same command
//!   path, the same stored answers), so a form sent twice does nothing twice.

mod actions;
mod html;
mod pages;
mod session;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::AppState;

pub use session::SESSION_COOKIE;

/// The largest form the console accepts: a what-if catalog can be larger than a command.
const MAX_FORM_BYTES: usize = 512 * 1024;

/// The console's routes (outside the API's route table: they are not part of the contract).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(pages::overview))
        .route("/admin/login", get(session::login_page).post(session::login))
        .route("/admin/logout", post(session::logout))
        .route("/admin/stores", get(pages::stores))
        .route("/admin/stores/{id}", get(pages::store))
        .route(
            "/admin/stores/{id}/what-if",
            get(pages::what_if_form).post(pages::what_if).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route("/admin/stores/{id}/trial-reset/confirm", post(actions::confirm_trial_reset))
        .route("/admin/stores/{id}/trial-reset", post(actions::trial_reset))
        .route("/admin/extensions/confirm", post(actions::confirm_extension))
        .route("/admin/extensions", post(actions::extend))
        .route("/admin/correlations/{id}", get(pages::correlation))
        .route("/admin/rebuilds", get(pages::rebuilds))
        .route("/admin/rebuilds/{name}/confirm", post(actions::confirm_rebuild))
        .route("/admin/rebuilds/{name}", post(actions::start_rebuild))
        .route("/admin/rebuilds/{name}/progress", get(actions::rebuild_progress))
        .route(
            "/admin/assets/console.css",
            get(|| asset("text/css; charset=utf-8", include_str!("assets/console.css"))),
        )
        .route(
            "/admin/assets/console.js",
            get(|| asset("text/javascript; charset=utf-8", include_str!("assets/console.js"))),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}

/// What the console keeps between requests: the last count of stores by status.
#[derive(Debug, Default)]
pub struct ConsoleState {
    status_counts: std::sync::Mutex<Option<Counted>>,
}

#[derive(Debug, Clone)]
struct Counted {
    counts: Vec<(String, i64)>,
    at: std::time::Instant,
    /// Kept this long: 30 times what the count took, so that counting a large ledger costs the
    /// console at most a few percent of its time, and a small one is counted on every visit.
    keep: std::time::Duration,
}

impl ConsoleState {
    /// The stores by status, and how long ago they were counted.
    pub async fn status_counts(
        &self,
        log: &planledger_store::AnyEventLog,
    ) -> Result<(Vec<(String, i64)>, std::time::Duration), planledger_store::StoreError> {
        let cached = self.status_counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(c) = cached.filter(|c| c.at.elapsed() < c.keep) {
            return Ok((c.counts, c.at.elapsed()));
        }
        let started = std::time::Instant::now();
        let counts = planledger_projections::tenant_state::count_by_status(log).await?;
        let keep = keep_counts_for(started.elapsed());
        *self.status_counts.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Counted { counts: counts.clone(), at: started, keep });
        Ok((counts, std::time::Duration::ZERO))
    }
}

/// How long a count that took `took` is shown again: 30 times as long (a count of a million
/// stores takes about half a second here: shown for 15 s), at most a minute.
fn keep_counts_for(took: std::time::Duration) -> std::time::Duration {
    (took * 30).min(std::time::Duration::from_secs(60))
}

/// Why a console request was not served, as a page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: to the login page.
    SignIn,
    /// A reader asked for an action.
    Forbidden,
    /// A form without this session's token.
    BadForm,
    NotFound(String),
    /// Input refused: the field and why. Nothing was changed.
    Invalid(String),
    /// A form over the size the route accepts.
    TooLarge,
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<planledger_store::StoreError> for ConsoleError {
    fn from(e: planledger_store::StoreError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl From<planledger_service::ServiceError> for ConsoleError {
    fn from(e: planledger_service::ServiceError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let correlation = crate::edge::RequestScope::current().correlation_id;
        let (status, title, message) = match self {
            ConsoleError::SignIn => return Redirect::to("/admin/login").into_response(),
            ConsoleError::Forbidden => {
                (StatusCode::FORBIDDEN, "Not allowed", "This needs an admin token; readers see pages only.".to_owned())
            }
            ConsoleError::BadForm => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form did not carry this session's token (it was sent from elsewhere, or before a new login). \
                 Nothing was changed; open the page again."
                    .to_owned(),
            ),
            ConsoleError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what),
            ConsoleError::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, "Not accepted", why),
            ConsoleError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is larger than this page accepts (a catalog up to 512 KiB, other forms 64 KiB).".to_owned(),
            ),
            ConsoleError::Api(e) => {
                let body = e.body(&correlation);
                (e.status(), "Not done", format!("{} ({})", body.message, html::wire_name(&body.error)))
            }
        };
        html::bare(
            status,
            title,
            html! {
                p.error #error { (message) }
                p.muted { "Nothing was changed. Correlation id " span.mono { (correlation) } "." }
                p { a href="/admin" { "Back to the console" } }
            },
        )
    }
}

type Page = Result<Response, ConsoleError>;

/// The signed-in user of a console request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub principal: Principal,
    pub csrf: String,
}

impl Viewer {
    pub fn require_admin(&self) -> Result<(), ConsoleError> {
        if self.principal.role >= Role::Admin {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden)
        }
    }

    pub fn is_admin(&self) -> bool {
        self.principal.role >= Role::Admin
    }

    /// Refuses a form that does not carry this session's token.
    pub fn check(&self, form: &Form) -> Result<(), ConsoleError> {
        let sent = form.get("csrf").unwrap_or_default();
        if crate::auth::constant_time_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(ConsoleError::BadForm)
        }
    }
}

/// The value of the cookie `name` of a request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE).filter(|v| v.len() == 64) else {
            return Err(ConsoleError::SignIn);
        };
        let now = chrono::Utc::now();
        let session =
            planledger_service::sessions::find(app.service.log(), value, now).await?.ok_or(ConsoleError::SignIn)?;
        let principal =
            app.tokens.session_principal(&session.principal, &session.token_digest).ok_or(ConsoleError::SignIn)?;
        Ok(Viewer { principal, csrf: session.csrf })
    }
}

/// A form body (`application/x-www-form-urlencoded`) as name/value pairs.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ConsoleError::TooLarge
            } else {
                ConsoleError::Invalid("the form could not be read".to_owned())
            }
        })?;
        serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|_| ConsoleError::Invalid("the form is malformed".into()))
    }
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A field that must be present and not blank.
    pub fn required(&self, name: &str) -> Result<&str, ConsoleError> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConsoleError::Invalid(format!("{name}: is required")))
    }

    /// A field that may be absent or blank.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_slow_count_is_kept_longer_and_never_past_a_minute() {
        assert_eq!(super::keep_counts_for(Duration::from_millis(1)), Duration::from_millis(30));
        assert_eq!(super::keep_counts_for(Duration::from_millis(450)), Duration::from_millis(13_500));
        assert_eq!(super::keep_counts_for(Duration::from_secs(5)), Duration::from_secs(60));
    }
}
