//! The handlers of admin.

use super::*;

/// Stores by internal status, in store id order.
#[utoipa::path(get, path = "/v1/admin/stores", tag = "admin", operation_id = "listStores",
    params(
        ("internalStatus" = Option<wire::InternalStatus>, Query, description = "Only stores with this status"),
        ("cursor" = Option<Uuid>, Query, description = "The `nextCursor` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Default 100", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "A page of stores", body = wire::Page<wire::StoreView>),
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Invalid,
        rs::Unavailable,
    ))]
pub async fn list_stores(State(app): State<AppState>, params: Params) -> Reply {
    let status = params
        .get("internalStatus")
        .map(|s| {
            planledger_domain::InternalStatus::parse(s)
                .ok_or_else(|| ApiError::validation("internalStatus", "is not an internal status"))
        })
        .transpose()?;
    let limit = params.int("limit", 100, 1..=1000)?;
    let cursor = params
        .get("cursor")
        .map(|c| StoreId::parse(c).map_err(|_| ApiError::validation("cursor", "is not a cursor")))
        .transpose()?;
    let filter = planledger_projections::tenant_state::StoreFilter {
        internal_status: status.map(|s| s.as_str().to_owned()),
        ..Default::default()
    };
    let rows = planledger_projections::tenant_state::list(app.service.reads(), &filter, cursor, limit + 1).await?;
    let now = app.service.clock().now();
    let catalogs = app.service.catalogs();
    let view =
        |r: planledger_projections::TenantStateRow| render::store_view(r.store_id, &r.state, r.version, now, &catalogs);
    Ok(Json::ok(&page(rows, limit, |r| r.store_id.to_string(), view)).into_response())
}

/// Import one tenant from another system (`planledger import` does a file of them;
/// docs/import.md). Importing it again answers the store unchanged.
#[utoipa::path(post, path = "/v1/admin/stores/import", tag = "admin", operation_id = "importStore",
    request_body = wire::ImportTenant,
    responses(
        (status = 201, description = "Imported: the store", body = wire::StoreView),
        (status = 200, description = "Imported before: the store, unchanged", body = wire::StoreView),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 409, description = "`store_exists`: a store not imported under this external id has its id", body = wire::ErrorBody),
        (status = 422, description = "A field is invalid, or does not fit the status (`validation_failed` naming it), an unknown plan or action, a paid status without a subscription", body = wire::ErrorBody),
        rs::CommandUnavailable,
    ))]
pub async fn import_store(State(app): State<AppState>, ctx: Ctx, body: JsonBody<wire::ImportTenant>) -> Reply {
    let source = planledger_domain::command::ImportSource {
        name: format!("POST /v1/admin/stores/import by {}", ctx.principal.name),
        sha256: None,
        line: None,
    };
    let tenant = crate::import::tenant(body.value, source)?;
    let meta = meta(&ctx, "/v1/admin/stores/import", &body.canonical);
    answer(&app, app.service.import(tenant, meta).await?)
}

/// Extend trials, grace periods or maintenance windows in bulk.
#[utoipa::path(post, path = "/v1/admin/stores/extensions", tag = "admin", operation_id = "extendStores",
    request_body = wire::Extensions,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry: each store keeps its first answer", pattern = r"^[!-~]{1,255}$")),
    responses(
        (status = 200, description = "Each store's result", body = wire::ExtensionResults),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        rs::Invalid,
    ))]
pub async fn bulk_extensions(State(app): State<AppState>, ctx: Ctx, body: JsonBody<wire::Extensions>) -> Reply {
    let results = extend_each(&app, &ctx, body)
        .await?
        .into_iter()
        .map(|a| wire::ExtensionResult {
            store_id: a.store.as_uuid(),
            status: a.status.as_u16(),
            ok: a.status.is_success(),
            error: a.error.or_else(|| (!a.status.is_success()).then_some(wire::ErrorCode::Internal)),
        })
        .collect();
    Ok(Json::ok(&wire::ExtensionResults { results }).into_response())
}

/// One store's part of a bulk request.
#[derive(Debug)]
pub(crate) struct StoreAnswer {
    pub store: StoreId,
    /// The status this store's command alone would have been answered with.
    pub status: StatusCode,
    pub error: Option<wire::ErrorCode>,
    /// The store had answered the request's key before (its first answer is given again).
    pub replayed: bool,
}

/// Extends each store of a bulk request, concurrently, each under the request's key.
pub(crate) async fn extend_each(
    app: &AppState,
    ctx: &Ctx,
    body: JsonBody<wire::Extensions>,
) -> Result<Vec<StoreAnswer>, ApiError> {
    let b = body.value;
    if b.store_ids.is_empty() || b.store_ids.len() > 1000 {
        return Err(ApiError::validation("storeIds", "must list 1 to 1000 stores"));
    }
    let kind = match b.kind {
        wire::ExtensionKind::Trial => planledger_domain::ExtensionKind::Trial,
        wire::ExtensionKind::Grace => planledger_domain::ExtensionKind::Grace,
        wire::ExtensionKind::Maintenance => planledger_domain::ExtensionKind::Maintenance,
    };
    let days = Days::parse(b.days)?;
    let reason = Reason::parse(&b.reason)?;
    // Each store keeps the first answer to the request's key, so a retried bulk request
    // extends no store twice (and answers as it first did).
    let meta = meta(ctx, "/v1/admin/stores/extensions", &body.canonical);
    // A store listed twice is extended once: its first mention stands for all of them, so a
    // list of a thousand copies of one id is one command, not a thousand queued on one store.
    let mut listed = std::collections::HashSet::with_capacity(b.store_ids.len());
    let stores: Vec<StoreId> = b.store_ids.into_iter().map(StoreId::new).filter(|id| listed.insert(*id)).collect();
    let extend = |store: StoreId| {
        let (service, meta) = (app.service.clone(), meta.clone());
        let command = Command::Extend { kind, days, reason: reason.clone() };
        async move { (store, service.execute(store, command, meta).await) }
    };
    // At most this many stores' commands are in flight at once, in the order listed.
    let outcomes: Vec<_> = futures_util::stream::iter(stores).map(extend).buffered(64).collect().await;
    let mut answers = Vec::with_capacity(outcomes.len());
    for (store, outcome) in outcomes {
        let (status, error, replayed) = match outcome.map_err(ApiError::from) {
            // A replay answers as the store first did: a refusal with its first code.
            Ok(Answer::Replayed(first)) => {
                let code = serde_json::from_str::<wire::ErrorBody>(&first.body).ok().map(|body| body.error);
                (StatusCode::from_u16(first.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code, true)
            }
            Ok(decided) => match answer(app, decided) {
                Ok(response) => (response.status(), None, false),
                Err(e) => (e.status(), Some(e.code()), false),
            },
            Err(e) => (e.status(), Some(e.code()), false),
        };
        answers.push(StoreAnswer { store, status, error, replayed });
    }
    Ok(answers)
}
