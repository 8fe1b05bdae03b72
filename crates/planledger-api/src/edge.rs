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
    let deadline = app.edge.request_timeout;
    let handled = async {
        match tokio::time::timeout(deadline, AssertUnwindSafe(next.run(request)).catch_unwind()).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => {
                tracing::error!(%route, correlation_id = %correlation_id, "a handler panicked");
                ApiError::Internal.into_response()
            }
            // A body dripped in a byte at a time passes every per-part timeout: the whole
            // request has a deadline too.
            Err(_) => ApiError::RequestTimeout.into_response(),
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
/// at, so an unauthorized caller learns nothing from validation errors. A source that has
/// failed too often lately is answered `429 too_many_attempts` before its credential is looked
/// at (see [`crate::auth::Throttle`]).
pub async fn require_role(
    State((app, role)): State<(AppState, crate::auth::Role)>,
    request: Request,
    next: Next,
) -> Response {
    let header = request.headers().get(axum::http::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let source = client_address(&request, &app.edge.trusted_proxies);
    if header.is_some() && !app.tokens.is_empty() {
        if let Some(retry_after) = app.throttle.wait(source) {
            return ApiError::TooManyAttempts { retry_after }.into_response();
        }
    }
    match app.tokens.authenticate(header) {
        Ok(principal) => match principal.require(role) {
            Ok(()) => next.run(request).await,
            Err(error) => error.into_response(),
        },
        Err(error) => {
            // A credential that was presented and is wrong is a guess; no credential is not.
            if header.is_some() {
                app.throttle.failed(source);
            }
            error.into_response()
        }
    }
}

/// The address a request comes from: its peer's, or, when the peer is a trusted proxy
/// (`PLANLEDGER_TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not one.
/// A request with no peer (a test calling the router directly) comes from `0.0.0.0`.
pub fn client_address(request: &Request, trusted: &[ipnet::IpNet]) -> std::net::IpAddr {
    client_of(request.extensions(), request.headers(), trusted)
}

/// [`client_address`] from a request's extensions and headers (for a handler that has them).
pub fn client_of(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    forwarded_client(peer, forwarded, trusted)
}

/// [`client_address`] from the peer and `X-Forwarded-For`: entries are read from the right
/// (the nearest hop first), trusted proxies skipped; the first other address is the client. An
/// untrusted peer's header is ignored: anyone can write one.
pub fn forwarded_client(peer: std::net::IpAddr, forwarded: Option<&str>, trusted: &[ipnet::IpNet]) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(forwarded) = forwarded else { return peer };
    let mut nearest = peer;
    for hop in forwarded.rsplit(',') {
        match hop.trim().parse::<std::net::IpAddr>() {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return ip,
            // An entry that is not an address: the chain cannot be followed further.
            Err(_) => return nearest,
        }
    }
    nearest
}

/// Refuses a query parameter the route does not take (`422 validation_failed` naming it), or
/// one given twice: a misspelt filter (`?status=` for `?internalStatus=`) must not silently
/// answer everything. `allowed` is the route's query parameters in the published document.
pub async fn known_query(State(allowed): State<std::sync::Arc<[String]>>, request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(query) {
        Ok(pairs) => pairs,
        Err(_) => return ApiError::validation("query", "is not a valid query string").into_response(),
    };
    for (index, (name, _)) in pairs.iter().enumerate() {
        if !allowed.iter().any(|a| a == name) {
            let takes = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
            let message = format!("is not a parameter of this route (it takes: {takes})");
            return ApiError::validation(name.clone(), message).into_response();
        }
        if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
            return ApiError::validation(name.clone(), "is given more than once").into_response();
        }
    }
    next.run(request).await
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
        let bytes = Bytes::from_request(request, state).await.map_err(body_rejection)?;
        parse_json(&bytes)
    }
}

/// Why a body could not be read: over the route's limit (413), too slow (408), or cut off.
pub fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::RequestTimeout;
        }
        cause = error.source();
    }
    ApiError::MalformedJson("the body could not be read".to_owned())
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
