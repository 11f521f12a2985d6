//! Environment endpoints: create, list, show, delete (with an optional final backup of its
//! databases), and the whole-environment actions stop, start, redeploy and clone, and the
//! preview settings of a blueprint environment (enable, disable, list previews and
//! refusals). The work itself is the engine's (`berth_engine::environments`, `previews`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api as wire;
use berth_domain::deployment::EnvironmentMode;
use berth_domain::{BranchName, ResourceName};
use berth_engine::environments::{CloneEnvironment, EnvironmentError};
use berth_store::{EnvironmentRecord, PreviewSettingsRecord, ProjectRecord};

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

fn environment_error(error: EnvironmentError) -> AppError {
    match error {
        EnvironmentError::Conflict(message) => AppError::Conflict(message),
        EnvironmentError::CloneFailed(_) | EnvironmentError::StartFailed(_) => {
            AppError::Conflict(error.to_string())
        }
        EnvironmentError::Store(error) => error.into(),
        EnvironmentError::Engine(error) => error.into(),
    }
}

fn parse_mode(mode: &str) -> ApiResult<EnvironmentMode> {
    mode.parse().map_err(|_| {
        AppError::Invalid(format!(
            "invalid environment mode {mode:?}: use production, staging, development or preview"
        ))
    })
}

/// Re-reads an environment after an action changed it.
async fn reload(state: &AppState, environment: &EnvironmentRecord) -> ApiResult<EnvironmentRecord> {
    Ok(state.store.environment(environment.id).await?.unwrap_or_else(|| environment.clone()))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct DeleteQuery {
    /// Back up every container database first; nothing is deleted unless all succeed.
    #[serde(default)]
    final_backup: bool,
}

/// Marks the environment for deletion: the reconciler removes every container, network,
/// volume and unreferenced image labelled for it, then its records. Poll until 404.
#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path), DeleteQuery),
    responses((status = 202, body = wire::Environment), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn delete_environment(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<(StatusCode, Json<wire::Environment>)> {
    let (project, mut environment) = lookup::environment(&state, &project, &environment).await?;
    let backups = state
        .engine
        .delete_environment(&project, &environment, query.final_backup)
        .await
        .map_err(environment_error)?;
    environment.lifecycle = berth_store::Lifecycle::Deleting;
    let mut view = convert::environment(&project, &environment);
    view.final_backups = backups
        .iter()
        .map(|(database, backup)| format!("{database}: {}", state.engine.backup_location(backup)))
        .collect();
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Stops every container of the environment (applications, then databases, gracefully);
/// containers, volumes and data are kept. Its hosts answer 503 and deployments are refused
/// until it is started.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/stop", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = wire::EnvironmentActionResult), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn stop_environment(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<wire::EnvironmentActionResult>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let report =
        state.engine.stop_environment(&project, &environment).await.map_err(environment_error)?;
    let message = format!(
        "environment {} stopped ({} container(s) stopped); its data is kept. Start it with `berth environment start --project {} {}`",
        environment.name,
        report.containers.len(),
        project.name,
        environment.name
    );
    let environment = reload(&state, &environment).await?;
    Ok(Json(wire::EnvironmentActionResult {
        environment: convert::environment(&project, &environment),
        containers: report.containers,
        message,
    }))
}

/// Starts a stopped environment: databases first (each waits until it answers), then the
/// applications' instances, each until it passes its health check; routes are restored.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/start", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = wire::EnvironmentActionResult), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn start_environment(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<wire::EnvironmentActionResult>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let report =
        state.engine.start_environment(&project, &environment).await.map_err(environment_error)?;
    let message = if report.already && report.containers.is_empty() {
        format!("environment {} is already running", environment.name)
    } else {
        format!(
            "environment {} started ({} container(s) started, all healthy)",
            environment.name,
            report.containers.len()
        )
    };
    let environment = reload(&state, &environment).await?;
    Ok(Json(wire::EnvironmentActionResult {
        environment: convert::environment(&project, &environment),
        containers: report.containers,
        message,
    }))
}

/// Queues a new deployment of the environment's current configuration.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/redeploy", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 202, body = wire::Deployment), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn redeploy_environment(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<wire::Deployment>)> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let trigger = format!("redeploy:user:{}", caller.token_name);
    let deployment = state
        .engine
        .redeploy_environment(&project, &environment, &trigger)
        .await
        .map_err(environment_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(super::deployments::deployment_view(&state, &deployment).await?),
    ))
}

/// Clones the environment: applications, databases (new credentials), variables with their
/// scopes and aliases, volumes' definitions; with `with_data`, a consistent copy of every
/// container database and application volume. All or nothing. Custom domains are not copied.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/clone", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)), request_body = wire::CloneEnvironmentRequest,
    responses((status = 201, body = wire::ClonedEnvironment), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn clone_environment(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    ApiJson(body): ApiJson<wire::CloneEnvironmentRequest>,
) -> ApiResult<(StatusCode, Json<wire::ClonedEnvironment>)> {
    let name = ResourceName::parse(&body.name)?;
    let branch = body.branch.as_deref().map(BranchName::parse).transpose()?;
    let mode = body.mode.as_deref().map(parse_mode).transpose()?;
    let (project, source) = lookup::environment(&state, &project, &environment).await?;
    let request =
        CloneEnvironment { name, branch, mode, with_data: body.with_data, deploy: body.deploy };
    let steps = std::sync::Mutex::new(Vec::<String>::new());
    let record = state
        .engine
        .clone_environment_reporting(&project, &source, request, &|line| {
            if let Ok(mut steps) = steps.lock() {
                steps.push(line.to_owned());
            }
        })
        .await
        .map_err(environment_error)?;
    let deployment = match state.store.list_deployments(record.id, 1).await?.first() {
        Some(deployment) => Some(super::deployments::deployment_view(&state, deployment).await?),
        None => None,
    };
    Ok((
        StatusCode::CREATED,
        Json(wire::ClonedEnvironment {
            environment: convert::environment(&project, &record),
            steps: steps.into_inner().unwrap_or_default(),
            deployment,
        }),
    ))
}

/// Parses `48h`, `30m`, `5s`, `2d` (a number and a unit) into seconds.
fn parse_duration_seconds(value: &str) -> ApiResult<u64> {
    let invalid = || {
        AppError::Invalid(format!(
            "invalid duration {value:?}: give a number and a unit, e.g. 48h, 30m, 5s or 2d"
        ))
    };
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    match number.checked_mul(factor) {
        Some(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(invalid()),
    }
}

async fn preview_list(
    state: &AppState,
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
) -> ApiResult<wire::PreviewList> {
    let settings =
        state.store.preview_settings(environment.id).await?.map(|s| wire::PreviewSettings {
            with_data: s.with_data,
            max_previews: s.max_previews,
            expire_after_seconds: s.expire_after_seconds,
            allow_forks: s.allow_forks,
        });
    let now = berth_store::now_unix_seconds();
    let mut previews = Vec::new();
    for preview in state.store.list_previews(environment.id).await? {
        let name = match state.store.environment(preview.environment_id).await? {
            Some(environment) => environment.name.to_string(),
            None => continue,
        };
        previews.push(wire::Preview {
            environment: name,
            number: preview.number,
            head_branch: preview.head_branch.to_string(),
            head_commit: preview.head_commit.clone(),
            from_fork: preview.from_fork,
            created_at: preview.created_at.clone(),
            idle_seconds: u64::try_from(now - preview.last_activity_unix).unwrap_or(0),
        });
    }
    let refusals = state
        .store
        .list_preview_refusals(environment.id, 50)
        .await?
        .into_iter()
        .map(|r| wire::PreviewRefusal {
            number: r.number,
            head_branch: r.head_branch,
            reason: r.reason,
            created_at: r.created_at,
        })
        .collect();
    Ok(wire::PreviewList {
        project: project.name.to_string(),
        environment: environment.name.to_string(),
        settings,
        previews,
        refusals,
    })
}

/// Enables previews on this environment (the blueprint): each pull request opened against
/// its branch gets `pr-<number>`, cloned from it.
#[utoipa::path(put, path = "/projects/{project}/environments/{environment}/previews", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)), request_body = wire::EnablePreviews,
    responses((status = 200, body = wire::PreviewList), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn enable_previews(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    ApiJson(body): ApiJson<wire::EnablePreviews>,
) -> ApiResult<Json<wire::PreviewList>> {
    let max_previews = body.max_previews.unwrap_or(5);
    if !(1..=1000).contains(&max_previews) {
        return Err(AppError::Invalid("--max-previews must be between 1 and 1000".into()));
    }
    let expire_after_seconds =
        parse_duration_seconds(body.expire_after.as_deref().unwrap_or("48h"))?;
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    lookup::ensure_active(environment.lifecycle, "the environment")?;
    state
        .store
        .set_preview_settings(&PreviewSettingsRecord {
            environment_id: environment.id,
            with_data: body.with_data,
            max_previews,
            expire_after_seconds,
            allow_forks: body.allow_forks,
            updated_at: berth_store::now_rfc3339(),
        })
        .await?;
    Ok(Json(preview_list(&state, &project, &environment).await?))
}

/// Disables previews; existing previews stay until their pull requests close or expire.
#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}/previews", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = wire::PreviewList), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn disable_previews(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<wire::PreviewList>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    if !state.store.delete_preview_settings(environment.id).await? {
        return Err(AppError::NotFound(format!(
            "previews are not enabled on {}/{}",
            project.name, environment.name
        )));
    }
    Ok(Json(preview_list(&state, &project, &environment).await?))
}

/// The blueprint's preview settings, active previews and recorded refusals.
#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/previews", tag = "environments",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = wire::PreviewList), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_previews(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<wire::PreviewList>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    Ok(Json(preview_list(&state, &project, &environment).await?))
}

#[cfg(test)]
mod tests {
    use super::parse_duration_seconds;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse_duration_seconds("48h").ok(), Some(172_800));
        assert_eq!(parse_duration_seconds("5s").ok(), Some(5));
        assert_eq!(parse_duration_seconds("30m").ok(), Some(1800));
        assert_eq!(parse_duration_seconds("2d").ok(), Some(172_800));
        for bad in ["", "h", "5", "0s", "5w", "-5s", "5 s"] {
            assert!(parse_duration_seconds(bad).is_err(), "{bad}");
        }
    }
}
