//! The handlers of history.

use super::*;

pub(crate) fn envelope(e: planledger_store::RecordedEvent) -> wire::EventEnvelope {
    wire::EventEnvelope {
        event_id: e.event_id,
        stream_id: e.stream_id.as_str().to_owned(),
        version: e.version,
        global_position: e.global_position,
        event_type: e.event_type,
        schema_version: e.schema_version,
        data: e.data,
        correlation_id: e.correlation_id,
        causation_id: e.causation_id,
        idempotency_key: e.idempotency_key,
        actor: e.actor,
        catalog_fingerprint: e.catalog_fingerprint,
        recorded_at: e.recorded_at,
        hash: planledger_chain::to_hex(&e.hash),
    }
}

/// The `cursor` of a list: a non-negative integer (the position after which the page starts).
pub(crate) fn cursor_param(params: &Params) -> Result<i64, ApiError> {
    params.get("cursor").map_or(Ok(0), |c| {
        c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| ApiError::validation("cursor", "is not a cursor"))
    })
}

/// The `status` filter of a listing, parsed by `parse`; `message` says why a value is refused.
pub(crate) fn status_param<T>(
    params: &Params,
    parse: fn(&str) -> Option<T>,
    message: &'static str,
) -> Result<Option<T>, ApiError> {
    params.get("status").map(|s| parse(s).ok_or_else(|| ApiError::validation("status", message))).transpose()
}

/// One page: `limit` items at most, read one further to know whether another page follows.
pub(crate) fn page<T, V>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
    view: impl FnMut(T) -> V,
) -> wire::Page<V> {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more { rows.last().map(cursor_of) } else { None };
    wire::Page { items: rows.into_iter().map(view).collect(), next_cursor }
}

/// The store's raw stream, in version order.
#[utoipa::path(get, path = "/v1/stores/{id}/events", tag = "history", operation_id = "listEvents",
    params(
        rs::StorePath,
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page (a version: the page starts after it)", pattern = "^[0-9]{1,18}$"),
        ("fromVersion" = Option<i64>, Query, description = "The first version of the page (contract §11); `cursor` wins if both are given", minimum = 1),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of events", body = wire::Page<wire::EventEnvelope>),
        rs::Unauthorized,
        rs::StoreNotFound,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn events(State(app): State<AppState>, Path(id): Path<String>, params: Params) -> Reply {
    let store = store_id(&id)?;
    let from_version = params.int("fromVersion", 1, 1..=i64::MAX)?;
    let after = if params.get("cursor").is_some() { cursor_param(&params)? } else { from_version - 1 };
    let limit = params.int("limit", 100, 1..=1000)?;
    let log = app.service.reads();
    let stream = StreamId::parse(store.stream_name()).map_err(|_| ApiError::store_not_found())?;
    let events = log.read_stream(&stream, after.saturating_add(1), limit + 1).await?;
    if events.is_empty() && log.stream_version(&stream).await? == 0 {
        return Err(ApiError::store_not_found());
    }
    Ok(Json::ok(&page(events, limit, |e| e.version.to_string(), envelope)).into_response())
}

pub(crate) fn time_param(params: &Params, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|raw| DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)))
        .transpose()
        .map_err(|_| ApiError::validation(name, "must be an RFC 3339 time"))
}

/// The state replayed to a time, a version, or both (whichever comes first).
#[utoipa::path(get, path = "/v1/stores/{id}/state", tag = "history", operation_id = "getStateAt",
    params(
        rs::StorePath,
        ("at" = Option<DateTime<Utc>>, Query, description = "Replay the events recorded until this time; statuses are derived at it"),
        ("version" = Option<i64>, Query, description = "Replay the events up to this version", minimum = 1),
    ),
    responses(
        (status = 200, description = "The store as it was", body = wire::StateAt),
        rs::Unauthorized,
        (status = 404, description = "`store_not_found` (or no event by then)", body = wire::ErrorBody),
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn state_at(State(app): State<AppState>, Path(id): Path<String>, params: Params) -> Reply {
    let store = store_id(&id)?;
    let at = time_param(&params, "at")?;
    let version = params.get("version").map(|_| params.int("version", 0, 1..=i64::MAX)).transpose()?;
    let until = Until { version, time: at };
    let folded =
        fold_stream(app.service.reads(), store, Folded::default(), until, |_, _, _| Ok::<_, ApiError>(())).await?;
    let Some(last_at) = folded.at else {
        return Err(ApiError::store_not_found());
    };
    // Statuses are derived at `at`; at a version, when its event was recorded; else now.
    let as_of = at.or(version.map(|_| last_at)).unwrap_or_else(|| app.service.clock().now());
    let store_view = render::store_view(store, &folded.state, folded.version, as_of, &app.service.catalogs());
    Ok(Json::ok(&wire::StateAt { store: store_view, as_of }).into_response())
}

/// Why the rules answer what they answer for an action, and what would allow it.
#[utoipa::path(get, path = "/v1/stores/{id}/explain", tag = "quotas", operation_id = "explain",
    params(
        rs::StorePath,
        ("action" = String, Query, description = "An action of the catalog (`GET /v1/catalog`)", pattern = "^[a-z][a-z0-9_]{0,63}$"),
        ("at" = Option<DateTime<Utc>>, Query, description = "Decide on the store as it was at this time (its events recorded by then); default now"),
        ("amount" = Option<i64>, Query, description = "The amount to decide for; default 1", minimum = 1, maximum = 1_000_000),
    ),
    responses(
        (status = 200, description = "The decision, its derivation, and the smallest changes that would allow it", body = wire::Explanation),
        rs::Unauthorized,
        (status = 404, description = "`store_not_found` (or no event by `at`)", body = wire::ErrorBody),
        (status = 422, description = "`validation_failed`, `unknown_action`", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn explain(State(app): State<AppState>, Path(id): Path<String>, params: Params) -> Reply {
    let store = store_id(&id)?;
    let action = ActionName::parse(params.get("action").ok_or_else(|| ApiError::validation("action", "is required"))?)?;
    let at = time_param(&params, "at")?;
    let amount = Amount::parse(params.int("amount", 1, 1..=1_000_000)?)?;
    let until = Until { version: None, time: at };
    let folded =
        fold_stream(app.service.reads(), store, Folded::default(), until, |_, _, _| Ok::<_, ApiError>(())).await?;
    if folded.at.is_none() {
        return Err(ApiError::store_not_found());
    }
    let when = at.unwrap_or_else(|| app.service.clock().now());
    let catalogs = app.service.catalogs();
    let catalog = catalogs.shown_for(&folded.state, when).catalog.clone();
    let explained =
        planledger_domain::explain(&folded.state, &action, amount, when, &catalog).map_err(ApiError::refused)?;
    let body = render::explanation(store, (&action, amount.get(), when), &explained, &catalog);
    Ok(Json::ok(&body).into_response())
}
