//! One error type for the HTTP edge: every failure becomes `{error, message, correlationId}`
//! with the right status. Internal error text never reaches a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use planledger_service::ServiceError;
use serde_json::json;

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
    #[error("store not found")]
    StoreNotFound,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("the database is unavailable; try again shortly")]
    StorageUnavailable,
    #[error("the store kept changing under this command; try again")]
    ConcurrencyConflict,
    #[error("the database did not confirm whether this command was recorded; retry with the same Idempotency-Key to learn its answer")]
    OutcomeUnknown,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation { field: field.into(), message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::StoreNotFound | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::StorageUnavailable | ApiError::OutcomeUnknown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ConcurrencyConflict => StatusCode::CONFLICT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::StoreNotFound => "store_not_found",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::StorageUnavailable => "storage_unavailable",
            ApiError::OutcomeUnknown => "outcome_unknown",
            ApiError::ConcurrencyConflict => "concurrency_conflict",
            ApiError::Internal => "internal",
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                ApiError::StorageUnavailable
            }
            ServiceError::ConcurrencyConflict => ApiError::ConcurrencyConflict,
            ServiceError::OutcomeUnknown => {
                tracing::warn!("a commit's outcome is unknown; its commands were answered outcome_unknown");
                ApiError::OutcomeUnknown
            }
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

impl From<planledger_domain::InvalidValue> for ApiError {
    fn from(invalid: planledger_domain::InvalidValue) -> Self {
        ApiError::validation(invalid.field, invalid.rule)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The correlation id is filled in by the correlation middleware, which sees every response.
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        if let ApiError::Validation { field, .. } = &self {
            body["field"] = json!(field);
        }
        let mut response = (self.status(), axum::Json(body)).into_response();
        response.extensions_mut().insert(NeedsCorrelationId);
        response
    }
}

/// Marks an error response whose body still lacks the correlation id.
#[derive(Debug, Clone, Copy)]
pub struct NeedsCorrelationId;
