//! Variable endpoints at project, environment and application scope. Secret values are
//! encrypted before they reach the store and are never returned.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api as wire;
use berth_domain::EnvVarName;
use berth_store::{StoredValue, VariableOwner};

use super::{convert, lookup, ApiJson};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// Largest accepted variable value.
const MAX_VALUE_BYTES: usize = 64 * 1024;

async fn set(
    state: &AppState,
    owner: VariableOwner,
    body: wire::SetVariable,
) -> ApiResult<(StatusCode, Json<wire::Variable>)> {
    let name = EnvVarName::parse(&body.name)?;
    let value = if let Some(target) = body.alias_of.as_deref() {
        let target = EnvVarName::parse_any(target)?;
        if !target.as_str().starts_with("BERTH_DATABASE_") {
            return Err(AppError::Invalid(format!(
                "{name} can follow a database's built-in variable (BERTH_DATABASE_<NAME>_URL, _HOST, _PORT, _USER, _PASSWORD, _NAME), not {target}"
            )));
        }
        StoredValue::Alias(target)
    } else {
        if body.value.len() > MAX_VALUE_BYTES {
            return Err(AppError::Invalid(format!(
                "the value of {name} is longer than {} KiB",
                MAX_VALUE_BYTES / 1024
            )));
        }
        if body.value.contains('\0') {
            return Err(AppError::Invalid(format!(
                "the value of {name} contains a NUL byte, which environment variables cannot hold"
            )));
        }
        if body.secret {
            StoredValue::Encrypted(
                state.key.encrypt(body.value.as_bytes()).map_err(AppError::internal)?,
            )
        } else {
            StoredValue::Plain(body.value)
        }
    };
    state.store.set_variable(owner, &name, &value).await?;
    let stored = state
        .store
        .list_variables(owner)
        .await?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| AppError::internal("variable vanished after it was written"))?;
    Ok((StatusCode::OK, Json(convert::variable(&stored))))
}

async fn list(state: &AppState, owner: VariableOwner) -> ApiResult<Json<Vec<wire::Variable>>> {
    Ok(Json(state.store.list_variables(owner).await?.iter().map(convert::variable).collect()))
}

async fn delete(state: &AppState, owner: VariableOwner, name: &str) -> ApiResult<StatusCode> {
    if state.store.delete_variable(owner, name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound(format!(
            "no variable named {name:?} at this scope; list them with `berth env-var list`"
        )))
    }
}

async fn project_owner(state: &AppState, project: &str) -> ApiResult<VariableOwner> {
    let project = lookup::project(state, project).await?;
    Ok(VariableOwner { project_id: project.id, environment_id: None, application_id: None })
}

async fn environment_owner(
    state: &AppState,
    project: &str,
    environment: &str,
) -> ApiResult<VariableOwner> {
    let (project, environment) = lookup::environment(state, project, environment).await?;
    Ok(VariableOwner {
        project_id: project.id,
        environment_id: Some(environment.id),
        application_id: None,
    })
}

async fn application_owner(
    state: &AppState,
    project: &str,
    environment: &str,
    application: &str,
) -> ApiResult<VariableOwner> {
    let (project, environment, application) =
        lookup::application(state, project, environment, application).await?;
    Ok(VariableOwner {
        project_id: project.id,
        environment_id: Some(environment.id),
        application_id: Some(application.id),
    })
}

#[utoipa::path(get, path = "/projects/{project}/variables", tag = "variables",
    params(("project" = String, Path)), responses((status = 200, body = Vec<wire::Variable>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_project_variables(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<wire::Variable>>> {
    list(&state, project_owner(&state, &project).await?).await
}

#[utoipa::path(put, path = "/projects/{project}/variables", tag = "variables", request_body = wire::SetVariable,
    params(("project" = String, Path)), responses((status = 200, body = wire::Variable), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn set_project_variable(
    State(state): State<AppState>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<wire::SetVariable>,
) -> ApiResult<(StatusCode, Json<wire::Variable>)> {
    set(&state, project_owner(&state, &project).await?, body).await
}

#[utoipa::path(delete, path = "/projects/{project}/variables/{name}", tag = "variables",
    params(("project" = String, Path), ("name" = String, Path)), responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn delete_project_variable(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    delete(&state, project_owner(&state, &project).await?, &name).await
}

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/variables", tag = "variables",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = Vec<wire::Variable>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_environment_variables(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<Vec<wire::Variable>>> {
    list(&state, environment_owner(&state, &project, &environment).await?).await
}

#[utoipa::path(put, path = "/projects/{project}/environments/{environment}/variables", tag = "variables", request_body = wire::SetVariable,
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = wire::Variable), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn set_environment_variable(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    ApiJson(body): ApiJson<wire::SetVariable>,
) -> ApiResult<(StatusCode, Json<wire::Variable>)> {
    set(&state, environment_owner(&state, &project, &environment).await?, body).await
}

#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}/variables/{name}", tag = "variables",
    params(("project" = String, Path), ("environment" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn delete_environment_variable(
    State(state): State<AppState>,
    Path((project, environment, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    delete(&state, environment_owner(&state, &project, &environment).await?, &name).await
}

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/applications/{application}/variables", tag = "variables",
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path)),
    responses((status = 200, body = Vec<wire::Variable>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_application_variables(
    State(state): State<AppState>,
    Path((project, environment, application)): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<wire::Variable>>> {
    list(&state, application_owner(&state, &project, &environment, &application).await?).await
}

#[utoipa::path(put, path = "/projects/{project}/environments/{environment}/applications/{application}/variables", tag = "variables",
    request_body = wire::SetVariable,
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path)),
    responses((status = 200, body = wire::Variable), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn set_application_variable(
    State(state): State<AppState>,
    Path((project, environment, application)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<wire::SetVariable>,
) -> ApiResult<(StatusCode, Json<wire::Variable>)> {
    set(&state, application_owner(&state, &project, &environment, &application).await?, body).await
}

#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}/applications/{application}/variables/{name}", tag = "variables",
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn delete_application_variable(
    State(state): State<AppState>,
    Path((project, environment, application, name)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    delete(&state, application_owner(&state, &project, &environment, &application).await?, &name)
        .await
}
