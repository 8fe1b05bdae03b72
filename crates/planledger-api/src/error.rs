//! The one mapping of failures to statuses: every failure (a malformed request, a rule's
//! refusal, the database away) becomes an [`ApiError`], rendered here alone as
//! `{error, message, correlationId, ...}` with its status and headers (`Retry-After` on 429
//! and 503, `WWW-Authenticate` on 401). Internal error text never reaches a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use planledger_domain::{DomainError, ExtensionKind, GateReason, UPGRADE_URL};
use planledger_service::{Refusal, ServiceError};
use planledger_wire::{ErrorBody, ErrorCode};

use crate::render::{self, Json};

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE: u32 = 1;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("this token's role may not do this")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("the request did not arrive in time: its body paused too long, or the whole request took too long")]
    RequestTimeout,
    /// Failed authentications from this source are being slowed down.
    #[error("too many failed authentications from this address; wait {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error("the server is holding as many long polls as it may; retry shortly, or poll without wait")]
    TooManyLongPolls,
    /// The ledger refused the command (a rule, or the store moved past the caller's version).
    #[error("{}", refusal_message(.0))]
    Refused(Refusal),
    #[error("this Idempotency-Key was used with another request body")]
    KeyReused,
    #[error("the database is unavailable; try again shortly")]
    StorageUnavailable,
    #[error("the database reached is a standby, not a primary (a failover is under way?); try again shortly")]
    NotPrimary,
    #[error("the store kept changing under this command; try again")]
    ConcurrencyConflict,
    #[error("the database did not confirm whether this command was recorded; retry with the same Idempotency-Key to learn its answer")]
    OutcomeUnknown,
    /// A Stripe delivery whose signature does not hold (nothing was stored).
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    NotAStripeEvent(String),
    #[error("Stripe webhooks are not configured on this server (PLANLEDGER_STRIPE_WEBHOOK_SECRETS)")]
    StripeNotConfigured,
    #[error("{0}")]
    NotRetryable(String),
    #[error("the log holds no event at this cursor: it moved back (a database failover lost events you read) or the cursor is from another log; read again from 0-0, or from a cursor you kept that the log still holds, and set aside events you read that the log no longer has")]
    CursorNotInLog { head: String },
    #[error("no signed digest has this id; `GET /v1/ledger/digests` lists them, `POST /v1/ledger/digests` makes one")]
    DigestNotFound,
    #[error("the store had no events when digest {0} was made; prove it against a later digest")]
    NotInDigest(i64),
    #[error("version {version} was written after digest {digest} was made (the store was at {at} then); prove it against a later digest")]
    NotYetDigested { digest: i64, version: i64, at: i64 },
    #[error("this server has no key to sign digests with: set PLANLEDGER_DIGEST_KEY (`planledger keygen` makes one)")]
    DigestKeyMissing,
    #[error("internal error")]
    Internal,
}

fn refusal_message(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Rule(error) => error.to_string(),
        Refusal::VersionMoved { expected, current } => {
            format!("the store is at version {current}, not {expected}: it changed since the caller looked")
        }
    }
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation { field: field.into(), message: message.into() }
    }

    pub fn refused(error: DomainError) -> Self {
        ApiError::Refused(Refusal::Rule(error))
    }

    pub fn store_not_found() -> Self {
        Self::refused(DomainError::StoreNotFound)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            // The request may be fine; its key's first use conflicts with it.
            ApiError::KeyReused => StatusCode::CONFLICT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManyLongPolls => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Refused(Refusal::Rule(error)) => rule_status(error),
            ApiError::Refused(Refusal::VersionMoved { .. }) => StatusCode::CONFLICT,
            ApiError::StorageUnavailable | ApiError::NotPrimary | ApiError::OutcomeUnknown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::ConcurrencyConflict => StatusCode::CONFLICT,
            ApiError::InvalidSignature(_) | ApiError::NotAStripeEvent(_) => StatusCode::BAD_REQUEST,
            ApiError::StripeNotConfigured => StatusCode::NOT_FOUND,
            ApiError::NotRetryable(_) | ApiError::CursorNotInLog { .. } => StatusCode::CONFLICT,
            ApiError::DigestNotFound | ApiError::NotInDigest(_) => StatusCode::NOT_FOUND,
            ApiError::NotYetDigested { .. } | ApiError::DigestKeyMissing => StatusCode::CONFLICT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::MalformedJson(_) => ErrorCode::MalformedJson,
            ApiError::Validation { .. } => ErrorCode::ValidationFailed,
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::Forbidden => ErrorCode::Forbidden,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::RequestTimeout => ErrorCode::RequestTimeout,
            ApiError::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            ApiError::TooManyLongPolls => ErrorCode::TooManyLongPolls,
            ApiError::Refused(Refusal::Rule(error)) => rule_code(error),
            ApiError::Refused(Refusal::VersionMoved { .. }) => ErrorCode::VersionMismatch,
            ApiError::KeyReused => ErrorCode::IdempotencyKeyReused,
            ApiError::StorageUnavailable => ErrorCode::StorageUnavailable,
            ApiError::NotPrimary => ErrorCode::DatabaseNotPrimary,
            ApiError::OutcomeUnknown => ErrorCode::OutcomeUnknown,
            ApiError::ConcurrencyConflict => ErrorCode::ConcurrencyConflict,
            ApiError::InvalidSignature(_) => ErrorCode::InvalidSignature,
            ApiError::NotAStripeEvent(_) => ErrorCode::NotAStripeEvent,
            ApiError::StripeNotConfigured => ErrorCode::StripeNotConfigured,
            ApiError::NotRetryable(_) => ErrorCode::NotRetryable,
            ApiError::CursorNotInLog { .. } => ErrorCode::CursorNotInLog,
            ApiError::DigestNotFound => ErrorCode::DigestNotFound,
            ApiError::NotInDigest(_) => ErrorCode::NotInDigest,
            ApiError::NotYetDigested { .. } => ErrorCode::NotYetDigested,
            ApiError::DigestKeyMissing => ErrorCode::DigestKeyMissing,
            ApiError::Internal => ErrorCode::Internal,
        }
    }

    /// The body, with the fields of the rule that refused.
    pub fn body(&self, correlation_id: &str) -> ErrorBody {
        let mut body = ErrorBody::new(self.code(), self.to_string(), correlation_id);
        match self {
            ApiError::Validation { field, .. } => body.field = Some(field.clone()),
            ApiError::Refused(Refusal::VersionMoved { current, .. }) => body.current_version = Some(*current),
            ApiError::CursorNotInLog { head } => body.head = Some(head.clone()),
            ApiError::Refused(Refusal::Rule(error)) => match error {
                DomainError::Gate(refusal) => {
                    body.subscription_status = Some(render::subscription_status(refusal.subscription_status));
                    body.subscription_tier = Some(refusal.subscription_tier.clone());
                    body.internal_status = Some(render::internal_status(refusal.internal_status));
                    body.upgrade_url = Some(UPGRADE_URL.to_owned());
                    body.feature = refusal.feature.clone();
                }
                DomainError::QuotaExceeded { limit, used, resets_at } => {
                    body.limit = Some(*limit);
                    body.used = Some(*used);
                    body.resets_at = *resets_at;
                }
                DomainError::PlanMismatch { current, .. } => body.current_plan_id = Some(current.clone()),
                DomainError::Validation(invalid) => body.field = Some(invalid.field.to_owned()),
                _ => {}
            },
            _ => {}
        }
        body
    }

    /// The status and body, for storage as a first answer and for sending.
    pub fn json(&self, correlation_id: &str) -> Json {
        Json::new(self.status(), &self.body(correlation_id))
    }
}

/// The status of each rule's refusal.
fn rule_status(error: &DomainError) -> StatusCode {
    match error {
        DomainError::StoreNotFound
        | DomainError::ConsumptionNotFound
        | DomainError::ScheduleNotFound
        | DomainError::GrantNotFound => StatusCode::NOT_FOUND,
        DomainError::Gate(refusal) => match refusal.reason {
            GateReason::NoSubscription => StatusCode::PAYMENT_REQUIRED,
            GateReason::MaintenanceNoGrowth
            | GateReason::AccountFrozen
            | GateReason::SubscriptionCanceled
            | GateReason::FeatureNotInPlan => StatusCode::FORBIDDEN,
        },
        DomainError::StoreExists
        | DomainError::TrialAlreadyUsed
        | DomainError::SubscriptionActive
        | DomainError::PlanMismatch { .. }
        | DomainError::NotInPhase(_)
        | DomainError::NoActiveSubscription
        | DomainError::NotPastDue
        | DomainError::AlreadyRefunded
        | DomainError::RefundWindowClosed
        | DomainError::InvalidTransition(_) => StatusCode::CONFLICT,
        DomainError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        DomainError::UnknownPlan(_)
        | DomainError::PlanNotTrialEligible(_)
        | DomainError::NotAPaidPlan(_)
        | DomainError::UnknownAction(_)
        | DomainError::UnknownFeature(_)
        | DomainError::InternalTier(_)
        | DomainError::SubscriptionRequired
        | DomainError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The contract's code of each rule's refusal (the domain's `code()`, typed).
pub(crate) fn rule_code(error: &DomainError) -> ErrorCode {
    match error {
        DomainError::StoreNotFound => ErrorCode::StoreNotFound,
        DomainError::StoreExists => ErrorCode::StoreExists,
        DomainError::Gate(refusal) => match refusal.reason {
            GateReason::NoSubscription => ErrorCode::NoSubscription,
            GateReason::MaintenanceNoGrowth => ErrorCode::MaintenanceNoGrowth,
            GateReason::AccountFrozen => ErrorCode::AccountFrozen,
            GateReason::SubscriptionCanceled => ErrorCode::SubscriptionCanceled,
            GateReason::FeatureNotInPlan => ErrorCode::FeatureNotInPlan,
        },
        DomainError::TrialAlreadyUsed => ErrorCode::TrialAlreadyUsed,
        DomainError::SubscriptionActive => ErrorCode::SubscriptionActive,
        DomainError::UnknownPlan(_) => ErrorCode::UnknownPlan,
        DomainError::PlanNotTrialEligible(_) => ErrorCode::PlanNotTrialEligible,
        DomainError::NotAPaidPlan(_) => ErrorCode::NotAPaidPlan,
        DomainError::UnknownAction(_) => ErrorCode::UnknownAction,
        DomainError::UnknownFeature(_) => ErrorCode::UnknownFeature,
        DomainError::PlanMismatch { .. } => ErrorCode::PlanMismatch,
        DomainError::InvalidTransition(_) => ErrorCode::InvalidTransition,
        DomainError::InternalTier(_) => ErrorCode::InternalTier,
        DomainError::SubscriptionRequired => ErrorCode::SubscriptionRequired,
        DomainError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
        DomainError::NotInPhase(ExtensionKind::Trial) => ErrorCode::NotTrialing,
        DomainError::NotInPhase(ExtensionKind::Grace) => ErrorCode::NotInGrace,
        DomainError::NotInPhase(ExtensionKind::Maintenance) => ErrorCode::NotInMaintenance,
        DomainError::NoActiveSubscription => ErrorCode::NoActiveSubscription,
        DomainError::NotPastDue => ErrorCode::NotPastDue,
        DomainError::ConsumptionNotFound => ErrorCode::ConsumptionNotFound,
        DomainError::ScheduleNotFound => ErrorCode::ScheduleNotFound,
        DomainError::GrantNotFound => ErrorCode::GrantNotFound,
        DomainError::AlreadyRefunded => ErrorCode::AlreadyRefunded,
        DomainError::RefundWindowClosed => ErrorCode::RefundWindowClosed,
        DomainError::Validation(_) => ErrorCode::ValidationFailed,
    }
}

/// `Retry-After` of a 429: the seconds until the quota's window resets (at least 1). A lifetime
/// quota never resets, so it has none: retrying would not help.
pub fn retry_after(body: &ErrorBody, now: DateTime<Utc>) -> Option<u64> {
    let resets_at = body.resets_at?;
    let seconds = (resets_at - now).num_seconds().max(1);
    u64::try_from(seconds).ok()
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                ApiError::StorageUnavailable
            }
            ServiceError::NotPrimary(detail) => {
                tracing::warn!(%detail, "the database is not a primary");
                ApiError::NotPrimary
            }
            ServiceError::ConcurrencyConflict => ApiError::ConcurrencyConflict,
            ServiceError::OutcomeUnknown => {
                tracing::warn!("a commit's outcome is unknown; its commands were answered outcome_unknown");
                ApiError::OutcomeUnknown
            }
            ServiceError::KeyReused => ApiError::KeyReused,
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ApiError::Internal
            }
        }
    }
}

impl From<planledger_store::StoreError> for ApiError {
    fn from(error: planledger_store::StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<planledger_stripe::ReceiveError> for ApiError {
    fn from(error: planledger_stripe::ReceiveError) -> Self {
        use planledger_stripe::ReceiveError;
        match error {
            ReceiveError::NotConfigured => ApiError::StripeNotConfigured,
            ReceiveError::Signature(e) => ApiError::InvalidSignature(e.to_string()),
            ReceiveError::NotAnEvent(why) => ApiError::NotAStripeEvent(why),
            ReceiveError::Store(e) => e.into(),
        }
    }
}

impl From<planledger_domain::InvalidValue> for ApiError {
    fn from(invalid: planledger_domain::InvalidValue) -> Self {
        ApiError::validation(invalid.field, invalid.rule)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let scope = crate::edge::RequestScope::current();
        let body = self.body(&scope.correlation_id);
        let retry_after = match (&self, self.status()) {
            (ApiError::TooManyAttempts { retry_after }, _) => Some(*retry_after),
            (_, StatusCode::TOO_MANY_REQUESTS) => retry_after(&body, scope.now),
            (_, StatusCode::SERVICE_UNAVAILABLE) => Some(u64::from(RETRY_AFTER_UNAVAILABLE)),
            _ => None,
        };
        let mut response = Json::new(self.status(), &body).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self == ApiError::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"planledger\""));
        }
        response
    }
}

/// 405, with the methods the path does serve in `Allow`.
pub fn method_not_allowed(allow: String) -> Response {
    let mut response = ApiError::MethodNotAllowed.into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
