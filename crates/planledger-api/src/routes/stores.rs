//! The handlers of stores.

use super::*;

/// Register a store (201; 200 if it exists alike).
/// The store imported under an external id (`planledger import`): a page of it, or of none.
#[utoipa::path(get, path = "/v1/stores", tag = "stores", operation_id = "findStores",
    params(
        ("externalId" = String, Query, description = "The tenant's id in the system it was imported from: 1 to 255 printable characters", min_length = 1, max_length = 255, pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"),
    ),
    responses(
        (status = 200, description = "The store with that external id, or none", body = wire::Page<wire::StoreView>),
        rs::Unauthorized,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn find_stores(State(app): State<AppState>, params: Params) -> Reply {
    let external = params.get("externalId").ok_or_else(|| ApiError::validation("externalId", "is required"))?;
    let external = planledger_domain::values::ExternalId::parse(external)?;
    let store = StoreId::imported(&external);
    let found = app.service.load_row(store).await?.filter(|(state, _)| state.external_id.as_ref() == Some(&external));
    let now = app.service.clock().now();
    let catalogs = app.service.catalogs();
    let items: Vec<wire::StoreView> =
        found.iter().map(|(state, version)| render::store_view(store, state, *version, now, &catalogs)).collect();
    Ok(Json::ok(&wire::Page { items, next_cursor: None }).into_response())
}

#[utoipa::path(post, path = "/v1/stores", tag = "stores", operation_id = "registerStore",
    request_body = wire::RegisterStore,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry; without `storeId`, also names the store", pattern = r"^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Registered", body = wire::StoreView, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 200, description = "Already registered alike: nothing changed", body = wire::StoreView),
        rs::BadBody,
        rs::Unauthorized,
        rs::ServiceOnly,
        (status = 409, description = "`store_exists`: registered with another name or time zone; `idempotency_key_reused`", body = wire::ErrorBody),
        (status = 422, description = "A field is invalid", body = wire::ErrorBody),
        rs::CommandUnavailable,
    ))]
pub async fn register_store(State(app): State<AppState>, ctx: Ctx, body: JsonBody<wire::RegisterStore>) -> Reply {
    let b = body.value;
    let store = match (b.store_id, &ctx.idempotency_key) {
        (Some(id), _) => StoreId::new(id),
        // A retry must register the same store: its id comes from the caller and its key.
        (None, Some(key)) => derived_store_id(&ctx.principal.name, key),
        (None, None) => StoreId::new(Uuid::new_v4()),
    };
    let command = Command::RegisterStore {
        store_id: store,
        name: optional(b.name, StoreName::parse)?,
        time_zone: optional(b.time_zone, TimeZoneName::parse)?,
    };
    run(&app, &ctx, store, command, "/v1/stores", &body.canonical).await
}

/// The store id a registration without `storeId` gets for `key`: the same for every retry of
/// one caller's request, another for another caller or key (a name-based UUID, version 5).
pub(crate) fn derived_store_id(caller: &str, key: &str) -> StoreId {
    const REGISTRATIONS: Uuid = Uuid::from_u128(0x6f1c_2a44_1d1e_4c6a_9f57_3f1f_0c7e_2b10);
    StoreId::new(Uuid::new_v5(&REGISTRATIONS, format!("{caller}\n{key}").as_bytes()))
}

/// The store's state, statuses derived at now.
#[utoipa::path(get, path = "/v1/stores/{id}", tag = "stores", operation_id = "getStore",
    params(rs::StorePath),
    responses(
        (status = 200, description = "The store; `ETag` is its version", body = wire::StoreView, headers(("ETag" = String, description = "The store's version, quoted: send it as `If-Match`"))),
        rs::Unauthorized,
        rs::StoreNotFound,
        rs::Unavailable,
    ))]
pub async fn get_store(State(app): State<AppState>, Path(id): Path<String>) -> Reply {
    let store = store_id(&id)?;
    let (state, version) = app.service.load_row(store).await?.ok_or_else(ApiError::store_not_found)?;
    let now = app.service.clock().now();
    let mut response =
        Json::ok(&render::store_view(store, &state, version, now, &app.service.catalogs())).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}
