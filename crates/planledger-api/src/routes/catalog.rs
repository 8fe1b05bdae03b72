//! The handlers of the catalog: the rules in force on this node, and the ledger's versions of
//! them (published with `planledger catalog publish`).

use planledger_service::catalogs;

use super::*;

/// The catalog this node decides under: plans, actions, lifecycle, and its ledger version.
#[utoipa::path(get, path = "/v1/catalog", tag = "catalog", operation_id = "getCatalog",
    responses(
        (status = 200, description = "The rules in force on this node", body = wire::CatalogView),
        rs::Unauthorized,
    ))]
pub async fn get_catalog(State(app): State<AppState>) -> Reply {
    let in_force = app.service.catalog();
    let catalog = in_force.as_ref();
    Ok(Json::ok(&render::catalog_view(catalog, app.service.catalog_version())).into_response())
}

/// What a draft catalog would change: every consumption the ledger accepted, decided again
/// under it against the version in force; the ones it would refuse, per store, and the stores
/// on a plan it does not have. Reads the whole log (`planledger catalog preview` does the same
/// from the command line); nothing is written.
#[utoipa::path(post, path = "/v1/admin/catalog/preview", tag = "catalog", operation_id = "previewCatalog",
    request_body = wire::PreviewCatalog,
    responses(
        (status = 200, description = "The preview", body = wire::CatalogPreview),
        rs::BadBody,
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 422, description = "`validation_failed`: `catalog` is not a valid catalog (the message names the line and field)", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn preview_catalog(State(app): State<AppState>, body: JsonBody<wire::PreviewCatalog>) -> Reply {
    let length = body.value.catalog.chars().count();
    if !(1..=wire::PreviewCatalog::MAX_CHARS).contains(&length) {
        return Err(ApiError::validation(
            "catalog",
            format!("must be 1 to {} characters", wire::PreviewCatalog::MAX_CHARS),
        ));
    }
    let draft = planledger_domain::Catalog::parse("draft", &body.value.catalog)
        .map_err(|error| ApiError::validation("catalog", error.to_string()))?;
    let (log, reads, now) = (app.service.log(), app.service.reads(), app.service.clock().now());
    let versions = app.service.catalogs();
    let current = &versions.in_force(now).catalog;
    let preview = catalogs::preview(log, reads, &versions, &draft, now, "POST /v1/admin/catalog/preview").await?;
    Ok(Json::ok(&render::catalog_preview(&preview, current, &draft)).into_response())
}

/// Every published version of the catalog, oldest first; `inForce` marks the one every node
/// decides under now.
#[utoipa::path(get, path = "/v1/catalog/versions", tag = "catalog", operation_id = "listCatalogVersions",
    responses(
        (status = 200, description = "Every version, in one page", body = wire::Page<wire::CatalogVersion>),
        rs::Unauthorized,
        rs::Unavailable,
    ))]
pub async fn list_catalog_versions(State(app): State<AppState>) -> Reply {
    let versions = catalogs::versions(app.service.reads()).await?;
    let in_force = catalogs::in_force(&versions, app.service.clock().now()).map(|v| v.version);
    let items = versions.iter().map(|v| render::catalog_version(v, Some(v.version) == in_force)).collect();
    Ok(Json::ok(&wire::Page { items, next_cursor: None }).into_response())
}
