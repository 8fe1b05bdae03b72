//! The handlers of read models.

use super::*;

pub(crate) fn read_model(name: &str) -> Result<planledger_projections::ReadModel, ApiError> {
    planledger_projections::ReadModel::parse(name).ok_or(ApiError::NotFound)
}

/// Start a blue/green rebuild of a read model (202; 200 if one is running).
#[utoipa::path(post, path = "/v1/admin/projections/{name}/rebuild", tag = "admin", operation_id = "startRebuild",
    params(("name" = wire::ReadModelName, Path, description = "The read model")),
    responses(
        (status = 202, description = "Started", body = wire::RebuildJob),
        (status = 200, description = "A rebuild is running already", body = wire::RebuildJob),
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No such read model", body = wire::ErrorBody),
    ))]
pub async fn start_rebuild(State(app): State<AppState>, Path(name): Path<String>) -> Reply {
    let model = read_model(&name)?;
    let started = app.rebuilds.start(&app.service, model, planledger_projections::rebuild::When::Always);
    let job = app.rebuilds.describe(model).ok_or(ApiError::Internal)?;
    Ok(Json::new(if started { StatusCode::ACCEPTED } else { StatusCode::OK }, &job).into_response())
}

/// The live generation of a read model and its last rebuild.
#[utoipa::path(get, path = "/v1/admin/projections/{name}/rebuild", tag = "admin", operation_id = "getRebuild",
    params(("name" = wire::ReadModelName, Path, description = "The read model")),
    responses(
        (status = 200, description = "The read model", body = wire::ReadModelStatus),
        rs::Unauthorized,
        rs::AdminOnly,
        (status = 404, description = "No such read model", body = wire::ErrorBody),
        rs::Unavailable,
    ))]
pub async fn rebuild_progress(State(app): State<AppState>, Path(name): Path<String>) -> Reply {
    let model = read_model(&name)?;
    let info = planledger_projections::schema::info(app.service.reads()).await?;
    let live = info.iter().find(|i| i.name == model.name());
    Ok(Json::ok(&wire::ReadModelStatus {
        name: crate::read_model_name(model),
        generation: live.map(|i| i.generation),
        catalog_fingerprint: live.map(|i| i.catalog_fingerprint.clone()),
        stale: live.is_some_and(|i| i.is_stale(&app.service.catalogs())),
        last_rebuild: app.rebuilds.describe(model),
    })
    .into_response())
}
