//! What every request passes through: the correlation id, the panic guard, metrics; and the
//! extractors that turn a request's parts into checked values (principal, body, query).

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::auth::Principal;
use crate::error::{ApiError, NeedsCorrelationId};
use crate::AppState;

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The request's correlation id: the caller's `X-Correlation-Id` if it is sane, else a new one.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

fn acceptable_correlation_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_owned())
}

/// The outermost middleware: correlation id in and out, a span, the panic guard, metrics.
pub async fn edge(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation_id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(acceptable_correlation_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    request.extensions_mut().insert(CorrelationId(correlation_id.clone()));
    let span = tracing::info_span!("request", %method, %route, correlation_id = %correlation_id);
    let outcome = AssertUnwindSafe(next.run(request)).catch_unwind().instrument(span).await;
    let mut response = match outcome {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(%route, correlation_id = %correlation_id, "a handler panicked");
            ApiError::Internal.into_response()
        }
    };
    if response.extensions().get::<NeedsCorrelationId>().is_some() {
        response = with_correlation_id(response, &correlation_id).await;
    }
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    app.http_metrics.observe(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

async fn with_correlation_id(response: Response, correlation_id: &str) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut json) => {
            json["correlationId"] = serde_json::Value::String(correlation_id.to_owned());
            Body::from(json.to_string())
        }
        Err(_) => Body::from(bytes),
    };
    let mut parts = parts;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
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
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let correlation_id =
            parts.extensions.get::<CorrelationId>().map_or_else(|| uuid::Uuid::now_v7().to_string(), |c| c.0.clone());
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
        Ok(Ctx { correlation_id, principal, idempotency_key })
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

/// A hash of the request, so that a reused `Idempotency-Key` with another body is told apart.
pub fn request_hash(method: &Method, path: &str, canonical_body: &str) -> String {
    let digest = Sha256::new()
        .chain_update(method.as_str())
        .chain_update(b" ")
        .chain_update(path)
        .chain_update(b"\n")
        .chain_update(canonical_body)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
