//! Answers many routes share, documented once: each handler's `#[utoipa::path]` names the sets
//! it can answer with beside its own statuses.

#![allow(dead_code)] // The variants are read by utoipa's derive, never built.

use planledger_wire::ErrorBody;
use utoipa::IntoResponses;

/// Every route that needs a token.
#[derive(IntoResponses)]
pub enum Unauthorized {
    #[response(status = 401, description = "No valid bearer token", headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"planledger\"`")))]
    Unauthorized(ErrorBody),
    #[response(status = 429, description = "`too_many_attempts`: too many wrong tokens from this address lately; wait `Retry-After` seconds", headers(("Retry-After" = u64, description = "Seconds")))]
    TooManyAttempts(ErrorBody),
}

/// Routes that read a JSON body.
#[derive(IntoResponses)]
pub enum BadBody {
    #[response(status = 400, description = "`malformed_json`: the body is not JSON")]
    MalformedJson(ErrorBody),
    #[response(status = 413, description = "`payload_too_large`: the body is over 64 KiB")]
    TooLarge(ErrorBody),
    #[response(
        status = 408,
        description = "`request_timeout`: the body paused for longer than the server waits, or the whole request took too long"
    )]
    TooSlow(ErrorBody),
}

/// Routes that read the database.
#[derive(IntoResponses)]
pub enum Unavailable {
    #[response(status = 503, description = "`storage_unavailable`: retry after `Retry-After` seconds", headers(("Retry-After" = u32, description = "Seconds")))]
    Unavailable(ErrorBody),
}

/// Commands: the database may be away, or a commit's outcome unknown.
#[derive(IntoResponses)]
pub enum CommandUnavailable {
    #[response(status = 503, description = "`storage_unavailable`, or `outcome_unknown`: retry with the same `Idempotency-Key` to learn the answer", headers(("Retry-After" = u32, description = "Seconds")))]
    Unavailable(ErrorBody),
}

/// Routes of one store.
#[derive(IntoResponses)]
pub enum StoreNotFound {
    #[response(status = 404, description = "`store_not_found`")]
    NotFound(ErrorBody),
}

/// Routes whose only failure of their own is a field.
#[derive(IntoResponses)]
pub enum Invalid {
    #[response(status = 422, description = "`validation_failed`, naming the `field`")]
    Invalid(ErrorBody),
}

/// Admin routes.
#[derive(IntoResponses)]
pub enum AdminOnly {
    #[response(status = 403, description = "`forbidden`: admins only")]
    Forbidden(ErrorBody),
}

/// Store commands a reader's token may not send.
#[derive(IntoResponses)]
pub enum ServiceOnly {
    #[response(status = 403, description = "`forbidden`: the token's role may not do this")]
    Forbidden(ErrorBody),
}

/// The path of every route of one store.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct StorePath {
    /// The store's id.
    pub id: uuid::Uuid,
}

/// The headers every store command takes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CommandHeaders {
    /// Makes the request safe to retry: a retry with the same key and request gets the first
    /// answer (marked `Idempotent-Replayed: true`) and changes nothing.
    #[param(rename = "Idempotency-Key", pattern = r"^[!-~]{1,255}$")]
    pub idempotency_key: Option<String>,
    /// Decide only at this store version (the `ETag` of `GET /v1/stores/{id}`, quoted); else
    /// 409 `version_mismatch` with `currentVersion`. Empty: no condition.
    #[param(rename = "If-Match", pattern = r#"^("[0-9]{1,18}")?$"#)]
    pub if_match: Option<String>,
}
