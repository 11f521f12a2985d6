//! Environment endpoints.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api as wire;
use berth_domain::deployment::EnvironmentMode;
use berth_domain::{BranchName, ResourceName};

use super::{convert, lookup, ApiJson};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

#[utoipa::path(get, path = "/projects/{project}/environments", tag = "environments",
    params(("project" = String, Path)),
    responses((status = 200, body = Vec<wire::Environment>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_environments(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<wire::Environment>>> {
    let project = lookup::project(&state, &project).await?;
    let environments = state.store.list_environments(project.id).await?;
    Ok(Json(environments.iter().map(|e| convert::environment(&project, e)).collect()))
}

#[utoipa::path(post, path = "/projects/{project}/environments", tag = "environments",
    params(("project" = String, Path)), request_body = wire::CreateEnvironment,
    responses((status = 201, body = wire::Environment), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn create_environment(
    State(state): State<AppState>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<wire::CreateEnvironment>,
) -> ApiResult<(StatusCode, Json<wire::Environment>)> {
    let name = ResourceName::parse(&body.name)?;
    let mode = match body.mode.as_deref() {
        None => EnvironmentMode::Development,
        Some(mode) => mode.parse().map_err(|_| {
            AppError::Invalid(format!(
                "invalid environment mode {mode:?}: use production, staging, development or preview"
            ))
        })?,
    };
    let branch = match body.branch.as_deref() {
        None => BranchName::main(),
        Some(branch) => BranchName::parse(branch)?,
    };
    let project = lookup::project(&state, &project).await?;
    lookup::ensure_active(project.lifecycle, "the project")?;
    let environment = state.store.create_environment(project.id, &name, mode, &branch).await?;
    Ok((StatusCode::CREATED, Json(convert::environment(&project, &environment))))
}

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = wire::Environment), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn get_environment(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<wire::Environment>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    Ok(Json(convert::environment(&project, &environment)))
}

#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 202, body = wire::Environment), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn delete_environment(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<wire::Environment>)> {
    let (project, mut environment) = lookup::environment(&state, &project, &environment).await?;
    state.store.mark_environment_deleting(environment.id).await?;
    state.store.cancel_queued_deployments(environment.id).await?;
    state.engine.notify();
    environment.lifecycle = berth_store::Lifecycle::Deleting;
    Ok((StatusCode::ACCEPTED, Json(convert::environment(&project, &environment))))
}
