//! Deployment endpoints: queue a deployment, list and show them, read and follow their
//! logs (Server-Sent Events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use berth_api as wire;
use berth_domain::deployment::DeploymentStatus;
use berth_domain::DeploymentId;
use berth_store::{ApplicationRecord, DeploymentRecord, Lifecycle};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::{convert, lookup, ApiJson};
use crate::auth::Caller;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// Whether a queued or running deployment covers this application.
pub(crate) async fn is_deploying(
    state: &AppState,
    application: &ApplicationRecord,
) -> ApiResult<bool> {
    let recent = state.store.list_deployments(application.environment_id, 20).await?;
    Ok(recent.iter().any(|d| {
        !d.status.is_terminal() && d.application_id.is_none_or(|only| only == application.id)
    }))
}

pub(crate) async fn deployment_view(
    state: &AppState,
    record: &DeploymentRecord,
) -> ApiResult<wire::Deployment> {
    let project = state
        .store
        .project(record.project_id)
        .await?
        .ok_or_else(|| AppError::NotFound("the deployment's project was deleted".into()))?;
    let environment = state
        .store
        .environment(record.environment_id)
        .await?
        .ok_or_else(|| AppError::NotFound("the deployment's environment was deleted".into()))?;
    let application = match record.application_id {
        Some(id) => state.store.application(id).await?.map(|a| a.name.to_string()),
        None => None,
    };
    let services = state.store.deployment_services(record.id).await?;
    let steps = state.store.deployment_steps(record.id).await?;
    Ok(convert::deployment(&project, &environment, application, record, &services, &steps))
}

async fn find_deployment(state: &AppState, id: &str) -> ApiResult<DeploymentRecord> {
    let not_found = || {
        AppError::NotFound(format!(
            "deployment {id:?} does not exist; list them with `berth deployment list`"
        ))
    };
    let id: DeploymentId = id.parse().map_err(|_| not_found())?;
    let record = state.store.deployment(id).await?.ok_or_else(not_found)?;
    // Deployments of other organizations do not exist for this caller.
    match state.store.project(record.project_id).await? {
        Some(project) if project.organization_id == state.organization => Ok(record),
        _ => Err(not_found()),
    }
}

/// Queues a deployment of the environment (or of one application); it runs as soon as no
/// other deployment of this environment runs.
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/deployments", tag = "deployments",
    params(("project" = String, Path), ("environment" = String, Path)), request_body = wire::CreateDeployment,
    responses((status = 202, body = wire::Deployment), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn create_deployment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, environment)): Path<(String, String)>,
    ApiJson(body): ApiJson<wire::CreateDeployment>,
) -> ApiResult<(StatusCode, Json<wire::Deployment>)> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    lookup::ensure_active(environment.lifecycle, "the environment")?;
    let applications = state.store.list_applications(environment.id).await?;
    let only = match body.application.as_deref() {
        Some(name) => {
            let application =
                applications.iter().find(|a| a.name.as_str() == name).ok_or_else(|| {
                    AppError::NotFound(format!(
                        "application {name:?} does not exist in {}/{}",
                        project.name, environment.name
                    ))
                })?;
            lookup::ensure_active(application.lifecycle, "the application")?;
            Some(application.id)
        }
        None => {
            let databases = state.store.list_databases(environment.id).await?;
            let nothing = !applications.iter().any(|a| a.lifecycle == Lifecycle::Active)
                && !databases.iter().any(|d| d.lifecycle == Lifecycle::Active);
            if nothing {
                return Err(AppError::Conflict(format!(
                    "environment {}/{} has nothing to deploy; create an application with `berth application create` or a database with `berth database create`",
                    project.name, environment.name
                )));
            }
            None
        }
    };
    let trigger = format!("user:{}", caller.token_name);
    let record =
        state.store.create_deployment(project.id, environment.id, only, &trigger, None).await?;
    state.engine.notify();
    Ok((StatusCode::ACCEPTED, Json(deployment_view(&state, &record).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// Only deployments that covered this application.
    application: Option<String>,
}

/// Deployment history of an environment (or of one application), newest first.
#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/deployments", tag = "deployments",
    params(("project" = String, Path), ("environment" = String, Path), ListQuery),
    responses((status = 200, body = Vec<wire::Deployment>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_deployments(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Vec<wire::Deployment>>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let records = match query.application.as_deref() {
        Some(name) => {
            let (_, _, application) =
                lookup::application(&state, project.name.as_str(), environment.name.as_str(), name)
                    .await?;
            state.store.list_application_deployments(environment.id, application.id, 50).await?
        }
        None => state.store.list_deployments(environment.id, 50).await?,
    };
    let mut views = Vec::new();
    for record in records {
        views.push(deployment_view(&state, &record).await?);
    }
    Ok(Json(views))
}

#[utoipa::path(get, path = "/deployments/{id}", tag = "deployments",
    params(("id" = String, Path)),
    responses((status = 200, body = wire::Deployment), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn get_deployment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::Deployment>> {
    let record = find_deployment(&state, &id).await?;
    Ok(Json(deployment_view(&state, &record).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct LogQuery {
    /// Stream new lines as Server-Sent Events until the deployment ends.
    #[serde(default)]
    follow: bool,
}

fn log_line(record: &berth_store::LogRecord) -> wire::LogLine {
    wire::LogLine {
        timestamp: record.timestamp.clone(),
        application: record.application_name.clone(),
        step: record.step.clone(),
        line: record.line.clone(),
    }
}

/// A deployment's build and run log; `?follow=true` streams it (SSE) until it ends, with
/// a final `end` event carrying the deployment.
#[utoipa::path(get, path = "/deployments/{id}/logs", tag = "deployments",
    params(("id" = String, Path), LogQuery),
    responses((status = 200, body = Vec<wire::LogLine>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn deployment_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    let record = find_deployment(&state, &id).await?;
    if !query.follow {
        let mut lines = Vec::new();
        let mut after = 0;
        loop {
            let batch = state.store.deployment_logs(record.id, after, 5000).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            lines.extend(batch.iter().map(log_line));
        }
        return Ok(Json(lines).into_response());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        let mut after = 0;
        loop {
            let Ok(batch) = state.store.deployment_logs(record.id, after, 500).await else { break };
            for line in &batch {
                after = line.id;
                let event = Event::default().json_data(log_line(line)).unwrap_or_default();
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if !batch.is_empty() {
                continue;
            }
            let Ok(Some(current)) = state.store.deployment(record.id).await else { break };
            if current.status.is_terminal() {
                // Lines written just before the end are stored before the status changes.
                if let Ok(view) = deployment_view(&state, &current).await {
                    let event = Event::default().event("end").json_data(view).unwrap_or_default();
                    let _ = sender.send(Ok(event)).await;
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    Ok(Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()).into_response())
}

/// Used by status: the newest deployment of an environment.
pub(crate) async fn last_deployment(
    state: &AppState,
    environment: berth_domain::EnvironmentId,
) -> ApiResult<Option<wire::Deployment>> {
    match state.store.list_deployments(environment, 1).await?.first() {
        Some(record) => Ok(Some(deployment_view(state, record).await?)),
        None => Ok(None),
    }
}

/// Cancels a queued deployment, or stops a running one before it switches traffic (the
/// previous version keeps serving).
#[utoipa::path(post, path = "/deployments/{id}/cancel", tag = "deployments",
    params(("id" = String, Path)),
    responses((status = 202, body = wire::Deployment), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn cancel_deployment(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<wire::Deployment>)> {
    let record = find_deployment(&state, &id).await?;
    let accepted = match record.status {
        DeploymentStatus::Queued => state.store.cancel_queued_deployment(record.id).await?,
        DeploymentStatus::Running => {
            let switched = state
                .store
                .deployment_steps(record.id)
                .await?
                .iter()
                .any(|s| s.name >= berth_domain::deployment::StepName::Route);
            if switched {
                return Err(AppError::Conflict(
                    "the deployment already switched traffic; roll back with `berth rollback --to` instead".into(),
                ));
            }
            state.engine.cancel_running(record.id)
        }
        status => {
            return Err(AppError::Conflict(format!(
                "deployment {id} already ended ({status}); nothing to cancel"
            )))
        }
    };
    if !accepted {
        return Err(AppError::Conflict(format!(
            "deployment {id} could not be cancelled: it is not running here; try again"
        )));
    }
    let current = state.store.deployment(record.id).await?.unwrap_or(record);
    Ok((StatusCode::ACCEPTED, Json(deployment_view(&state, &current).await?)))
}

/// Redeploys an earlier successful deployment's images with its configuration snapshot
/// (variables included).
#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/rollback", tag = "deployments",
    params(("project" = String, Path), ("environment" = String, Path)), request_body = wire::RollbackRequest,
    responses((status = 202, body = wire::Deployment), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody)))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, environment)): Path<(String, String)>,
    ApiJson(body): ApiJson<wire::RollbackRequest>,
) -> ApiResult<(StatusCode, Json<wire::Deployment>)> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    lookup::ensure_active(environment.lifecycle, "the environment")?;
    let target = find_deployment(&state, &body.to).await?;
    if target.environment_id != environment.id {
        return Err(AppError::Invalid(format!(
            "deployment {} belongs to another environment; list this one's with `berth deployment list`",
            body.to
        )));
    }
    if target.status != DeploymentStatus::Succeeded {
        return Err(AppError::Conflict(format!(
            "deployment {} did not succeed ({}); roll back to a successful deployment",
            body.to, target.status
        )));
    }
    let services = state.store.deployment_services(target.id).await?;
    let only = match services.as_slice() {
        [single] if target.application_id.is_some() => Some(single.application_id),
        _ => None,
    };
    let trigger = format!("user:{} (rollback to {})", caller.token_name, target.id);
    let record = state
        .store
        .create_deployment(project.id, environment.id, only, &trigger, Some(target.id))
        .await?;
    state.engine.notify();
    Ok((StatusCode::ACCEPTED, Json(deployment_view(&state, &record).await?)))
}
