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
    let items = versions
        .into_iter()
        .map(|v| wire::CatalogVersion {
            in_force: Some(v.version) == in_force,
            version: v.version,
            fingerprint: v.fingerprint,
            source_name: v.source_name,
            author: v.author,
            reason: v.reason,
            effective_at: v.effective_at,
            published_at: v.published_at,
        })
        .collect();
    Ok(Json::ok(&wire::Page { items, next_cursor: None }).into_response())
}
