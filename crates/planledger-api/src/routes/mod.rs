//! The handlers of contract §11, one file per resource (the route table is `crate::ROUTES`). Each parses its input (the contract's types, then domain values:
//! 422 naming the field on failure) and hands the command to the service; the caller's role
//! was checked by the route table's middleware before the request reached it. Answers are
//! rendered by `render`, failures by `ApiError`.

use axum::extract::{FromRequest, Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use planledger_domain::{
    gate, ActionName, Amount, Command, Days, PlanId, Reason, ScheduleAt, SchedulePlanTransition, StoreId, StoreName,
    SubscriptionId, TimeZoneName, TransitionPlan,
};
use planledger_projections::history::{fold_stream, Folded, Until};
use planledger_service::{Answer, CommandMeta, IdempotencyRequest};
use planledger_store::{EventLog, StreamId};
use planledger_wire as wire;
use uuid::Uuid;

use crate::auth::Role;
use crate::edge::{request_hash, Ctx, JsonBody, Params, RequestScope};
use crate::error::ApiError;
use crate::render::{self, Json};
use crate::responses as rs;
use crate::AppState;

pub(crate) type Reply = Result<Response, ApiError>;

/// A store id in a path. A string that is not a UUID cannot name a store: 404.
pub(crate) fn store_id(raw: &str) -> Result<StoreId, ApiError> {
    StoreId::parse(raw).map_err(|_| ApiError::store_not_found())
}

pub(crate) fn meta(ctx: &Ctx, path: &str, canonical_body: &str) -> CommandMeta {
    CommandMeta {
        correlation_id: ctx.correlation_id.clone(),
        actor: ctx.principal.name.clone(),
        idempotency: ctx.idempotency_key.as_ref().map(|key| IdempotencyRequest {
            key: key.clone(),
            request_hash: request_hash(&Method::POST, path, canonical_body, ctx.if_match),
        }),
        expected_version: ctx.if_match,
        causation_id: None,
    }
}

/// The service's answer as the caller gets it.
pub(crate) fn answer(app: &AppState, answer: Answer) -> Reply {
    match answer {
        Answer::Decided(outcome) => Ok(render::outcome(outcome, &app.service.catalogs())?.into_response()),
        Answer::Replayed(first) => Ok(render::replayed(first, RequestScope::current().now)),
    }
}

pub(crate) async fn run(app: &AppState, ctx: &Ctx, store: StoreId, command: Command, path: &str, body: &str) -> Reply {
    let meta = meta(ctx, path, body);
    answer(app, app.service.execute(store, command, meta).await?)
}

pub(crate) fn optional<T>(
    value: Option<String>,
    parse: fn(&str) -> Result<T, planledger_domain::InvalidValue>,
) -> Result<Option<T>, ApiError> {
    value.map(|v| parse(&v)).transpose().map_err(ApiError::from)
}

mod admin;
mod audit;
mod catalog;
mod history;
mod ledger;
mod lifecycle;
mod operations;
mod quota;
mod read_models;
mod stores;
mod stripe;
mod test_clock;

pub use admin::*;
pub use audit::*;
pub use catalog::*;
pub use history::*;
pub use ledger::*;
pub use lifecycle::*;
pub use operations::*;
pub use quota::*;
pub use read_models::*;
pub use stores::*;
pub use stripe::*;
pub use test_clock::*;
