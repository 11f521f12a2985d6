//! Resolves the names in a URL path to records, with 404 messages that say what exists.

use berth_store::{ApplicationRecord, EnvironmentRecord, Lifecycle, ProjectRecord};

use crate::error::{ApiResult, AppError};
use crate::state::AppState;

pub(crate) async fn project(state: &AppState, name: &str) -> ApiResult<ProjectRecord> {
    state.store.project_by_name(state.organization, name).await?.ok_or_else(|| {
        AppError::NotFound(format!(
            "project {name:?} does not exist; list projects with `berth project list`"
        ))
    })
}

pub(crate) async fn environment(
    state: &AppState,
    project_name: &str,
    name: &str,
) -> ApiResult<(ProjectRecord, EnvironmentRecord)> {
    let project = project(state, project_name).await?;
    let environment = state.store.environment_by_name(project.id, name).await?.ok_or_else(|| {
        AppError::NotFound(format!(
            "environment {name:?} does not exist in project {project_name:?}; list them with `berth environment list --project {project_name}`"
        ))
    })?;
    Ok((project, environment))
}

pub(crate) async fn application(
    state: &AppState,
    project_name: &str,
    environment_name: &str,
    name: &str,
) -> ApiResult<(ProjectRecord, EnvironmentRecord, ApplicationRecord)> {
    let (project, environment) = environment(state, project_name, environment_name).await?;
    let application = state.store.application_by_name(environment.id, name).await?.ok_or_else(|| {
        AppError::NotFound(format!(
            "application {name:?} does not exist in {project_name}/{environment_name}; list them with `berth application list --project {project_name} --environment {environment_name}`"
        ))
    })?;
    Ok((project, environment, application))
}

/// Refuses changes inside something that is being deleted.
pub(crate) fn ensure_active(lifecycle: Lifecycle, what: &str) -> ApiResult<()> {
    match lifecycle {
        Lifecycle::Active => Ok(()),
        Lifecycle::Deleting => Err(AppError::Conflict(format!(
            "{what} is being deleted; wait until the deletion finishes"
        ))),
    }
}
