//! Organization and project endpoints.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api as wire;
use berth_domain::ResourceName;

use super::{convert, lookup, ApiJson};
use crate::error::ApiResult;
use crate::state::AppState;

/// The organization this server runs for.
#[utoipa::path(get, path = "/organization", tag = "organization",
    responses((status = 200, body = wire::Organization), (status = 401, body = wire::ErrorBody)))]
pub(crate) async fn get_organization(
    State(state): State<AppState>,
) -> ApiResult<Json<wire::Organization>> {
    let organization = state
        .store
        .first_organization()
        .await?
        .ok_or_else(|| crate::error::AppError::internal("no organization in the store"))?;
    Ok(Json(wire::Organization {
        id: organization.id.to_string(),
        name: organization.name,
        created_at: organization.created_at,
    }))
}

#[utoipa::path(get, path = "/projects", tag = "projects",
    responses((status = 200, body = Vec<wire::Project>), (status = 401, body = wire::ErrorBody)))]
pub(crate) async fn list_projects(
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<wire::Project>>> {
    let projects = state.store.list_projects(state.organization).await?;
    Ok(Json(projects.iter().map(convert::project).collect()))
}

#[utoipa::path(post, path = "/projects", tag = "projects", request_body = wire::CreateProject,
    responses((status = 201, body = wire::Project), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn create_project(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<wire::CreateProject>,
) -> ApiResult<(StatusCode, Json<wire::Project>)> {
    let name = ResourceName::parse(&body.name)?;
    let project = state.store.create_project(state.organization, &name).await?;
    Ok((StatusCode::CREATED, Json(convert::project(&project))))
}

#[utoipa::path(get, path = "/projects/{project}", tag = "projects",
    params(("project" = String, Path)),
    responses((status = 200, body = wire::Project), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn get_project(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<wire::Project>> {
    Ok(Json(convert::project(&lookup::project(&state, &project).await?)))
}

/// Marks the project for deletion; the reconciler removes every container, network,
/// volume and image labelled for it, then its records. Poll until 404.
#[utoipa::path(delete, path = "/projects/{project}", tag = "projects",
    params(("project" = String, Path)),
    responses((status = 202, body = wire::Project), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn delete_project(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<(StatusCode, Json<wire::Project>)> {
    let mut record = lookup::project(&state, &project).await?;
    state.store.mark_project_deleting(record.id).await?;
    for environment in state.store.list_environments(record.id).await? {
        state.store.cancel_queued_deployments(environment.id).await?;
    }
    state.engine.notify();
    record.lifecycle = berth_store::Lifecycle::Deleting;
    Ok((StatusCode::ACCEPTED, Json(convert::project(&record))))
}
