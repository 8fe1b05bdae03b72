//! What every request passes through: the correlation id, the panic guard, metrics; and the
//! extractors that turn a request's parts into checked values (principal, body, query).

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use chrono::{DateTime, Utc};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// What every part of a request's handling may need without being handed it: the request's
/// correlation id (the caller's `X-Correlation-Id` if it is sane, else a new one) and the
/// ledger's time when it arrived (errors carry the one, `Retry-After` needs the other).
#[derive(Debug, Clone)]
pub struct RequestScope {
    pub correlation_id: String,
    pub now: DateTime<Utc>,
}

tokio::task_local! {
    static SCOPE: RequestScope;
}

impl RequestScope {
    /// The scope of the request being handled (outside one: a fresh id and the system time).
    pub fn current() -> RequestScope {
        SCOPE
            .try_with(Clone::clone)
            .unwrap_or_else(|_| RequestScope { correlation_id: uuid::Uuid::now_v7().to_string(), now: Utc::now() })
    }
}

fn acceptable_correlation_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// The outermost middleware: correlation id in and out, a span, the panic guard, metrics.
pub async fn edge(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation_id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(acceptable_correlation_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!("request", %method, %route, correlation_id = %correlation_id);
    let scope = RequestScope { correlation_id: correlation_id.clone(), now: app.service.clock().now() };
    let handled = async {
        match AssertUnwindSafe(next.run(request)).catch_unwind().await {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(%route, correlation_id = %correlation_id, "a handler panicked");
                ApiError::Internal.into_response()
            }
        }
    };
    let mut response = SCOPE.scope(scope, handled).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    app.http_metrics.observe(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

/// Refuses a caller without the route's role before anything else of the request is looked
/// at, so an unauthorized caller learns nothing from validation errors.
pub async fn require_role(
    State((app, role)): State<(AppState, crate::auth::Role)>,
    request: Request,
    next: Next,
) -> Response {
    let header = request.headers().get(axum::http::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    match app.tokens.authenticate(header).and_then(|principal| principal.require(role)) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// A request's caller and the request's bookkeeping.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub correlation_id: String,
    pub principal: Principal,
    pub idempotency_key: Option<String>,
    /// `If-Match: "N"`: decide only if the store's stream is at version N.
    pub if_match: Option<i64>,
}

/// An `If-Match` header: one quoted store version (an `ETag` of `GET /v1/stores/{id}`).
fn if_match(parts: &Parts) -> Result<Option<i64>, ApiError> {
    // An empty field is an empty list of entity tags: no condition.
    let Some(value) = parts.headers.get(axum::http::header::IF_MATCH).filter(|v| !v.as_bytes().trim_ascii().is_empty())
    else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix('"')?.strip_suffix('"').map(str::to_owned))
        .filter(|digits| (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::validation("If-Match", "must be a quoted store version, e.g. \"7\""))
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let correlation_id = RequestScope::current().correlation_id;
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        let principal = app.tokens.authenticate(header)?;
        let idempotency_key = match parts.headers.get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value
                    .to_str()
                    .ok()
                    .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
                Some(
                    key.ok_or_else(|| {
                        ApiError::validation("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
                    })?
                    .to_owned(),
                )
            }
        };
        let if_match = if_match(parts)?;
        Ok(Ctx { correlation_id, principal, idempotency_key, if_match })
    }
}

/// A JSON body, at most 64 KiB, parsed into `T`. An empty body reads as `{}`. Syntax errors
/// are 400 `malformed_json`; a field of the wrong type or an unknown field is 422
/// `validation_failed` naming the field.
#[derive(Debug)]
pub struct JsonBody<T> {
    pub value: T,
    /// The body as normalized JSON, for idempotency hashes.
    pub canonical: String,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedJson("the body could not be read".to_owned())
            }
        })?;
        parse_json(&bytes)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { bytes };
    let json: serde_json::Value = serde_json::from_slice(text).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if !json.is_object() {
        return Err(ApiError::validation("body", "must be a JSON object"));
    }
    let canonical = json.to_string();
    let value = serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // The path names the field; at the root (a missing or unknown field) the message does.
        let field = if path == "." { message.split('`').nth(1).unwrap_or("body").to_owned() } else { path };
        ApiError::validation(field, message)
    })?;
    Ok(JsonBody { value, canonical })
}

/// The query string as name/value pairs; a malformed one is 422.
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(Params)
            .map_err(|_| ApiError::validation("query", "is not a valid query string"))
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn int(&self, name: &str, default: i64, range: std::ops::RangeInclusive<i64>) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse::<i64>().ok().filter(|v| range.contains(v)).ok_or_else(|| {
                ApiError::validation(name, format!("must be an integer from {} to {}", range.start(), range.end()))
            }),
        }
    }
}

/// A hash of the request, so that a reused `Idempotency-Key` with another request is told apart
/// (another body, or another `If-Match`).
pub fn request_hash(method: &Method, path: &str, canonical_body: &str, if_match: Option<i64>) -> String {
    let mut hasher = Sha256::new()
        .chain_update(method.as_str())
        .chain_update(b" ")
        .chain_update(path)
        .chain_update(b"\n")
        .chain_update(canonical_body);
    if let Some(version) = if_match {
        // Requests without If-Match hash as they always did, so stored answers stay reachable.
        hasher.update(format!("\nIf-Match: {version}"));
    }
    let digest = hasher.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
