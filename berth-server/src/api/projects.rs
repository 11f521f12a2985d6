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

/// Longest polling interval accepted (a day): longer is better served by webhooks.
const MAX_POLL_INTERVAL_SECS: u64 = 86_400;

/// Parses `60s`, `5m`, `1h`, `90` (seconds) or `off`.
fn parse_poll_interval(value: &str) -> ApiResult<Option<u64>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (digits, unit) = match value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, _)) => value.split_at(index),
        None => (value, "s"),
    };
    let multiplier = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    let seconds = digits.parse::<u64>().ok().map(|n| n.saturating_mul(multiplier));
    match seconds {
        Some(seconds) if (1..=MAX_POLL_INTERVAL_SECS).contains(&seconds) => Ok(Some(seconds)),
        _ => Err(crate::error::AppError::Invalid(format!(
            "poll interval {value:?} is not valid; give 1s to 24h, e.g. 60s, 5m, 90, or off"
        ))),
    }
}

fn settings_view(
    project: &berth_store::ProjectRecord,
    settings: &berth_store::ProjectGitSettings,
) -> wire::ProjectSettings {
    wire::ProjectSettings {
        project: project.name.to_string(),
        poll_interval_secs: settings.poll_interval_seconds,
        branch_environments: settings.branch_environments_glob.clone(),
        branch_blueprint: settings.branch_blueprint.clone(),
        branch_environments_with_data: settings.branch_environments_with_data,
    }
}

/// Changes a project's Git automation: polling of the followed branches, and
/// environments created for pushed branches matching a glob (cloned from a blueprint).
#[utoipa::path(patch, path = "/projects/{project}", tag = "projects", request_body = wire::UpdateProject,
    params(("project" = String, Path)),
    responses((status = 200, body = wire::ProjectSettings), (status = 404, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn update_project(
    State(state): State<AppState>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<wire::UpdateProject>,
) -> ApiResult<Json<wire::ProjectSettings>> {
    use crate::error::AppError;
    let record = lookup::project(&state, &project).await?;
    lookup::ensure_active(record.lifecycle, "the project")?;
    let mut settings = state.store.project_git_settings(record.id).await?;
    if let Some(interval) = &body.poll_interval {
        settings.poll_interval_seconds = parse_poll_interval(interval)?;
    }
    if let Some(glob) = &body.branch_environments {
        settings.branch_environments_glob = if glob.trim().eq_ignore_ascii_case("off") {
            None
        } else {
            Some(berth_domain::branch_environments::BranchGlob::parse(glob.trim())?.to_string())
        };
    }
    if let Some(blueprint) = &body.branch_blueprint {
        let environment = lookup::environment(&state, &project, blueprint.trim()).await?.1;
        lookup::ensure_active(environment.lifecycle, "the blueprint environment")?;
        settings.branch_blueprint = Some(environment.name.to_string());
    }
    if let Some(with_data) = body.branch_environments_with_data {
        settings.branch_environments_with_data = with_data;
    }
    if settings.branch_environments_glob.is_some() && settings.branch_blueprint.is_none() {
        return Err(AppError::Invalid(
            "branch environments need a blueprint to clone; add --branch-blueprint ENVIRONMENT"
                .into(),
        ));
    }
    state.store.save_project_git_settings(record.id, &settings).await?;
    Ok(Json(settings_view(&record, &settings)))
}

/// A project's Git automation settings.
#[utoipa::path(get, path = "/projects/{project}/settings", tag = "projects",
    params(("project" = String, Path)),
    responses((status = 200, body = wire::ProjectSettings), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn get_project_settings(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<wire::ProjectSettings>> {
    let record = lookup::project(&state, &project).await?;
    let settings = state.store.project_git_settings(record.id).await?;
    Ok(Json(settings_view(&record, &settings)))
}

#[cfg(test)]
mod tests {
    use super::parse_poll_interval;

    #[test]
    fn poll_intervals() {
        assert_eq!(parse_poll_interval("60s").unwrap(), Some(60));
        assert_eq!(parse_poll_interval("2").unwrap(), Some(2));
        assert_eq!(parse_poll_interval("5m").unwrap(), Some(300));
        assert_eq!(parse_poll_interval("OFF").unwrap(), None);
        for bad in ["0", "", "10x", "25h", "-1", "1.5s"] {
            assert!(parse_poll_interval(bad).is_err(), "{bad}");
        }
    }
}
