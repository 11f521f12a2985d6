//! Environment status and application runtime logs.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_api as wire;
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::{convert, deployments, lookup};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/status", tag = "status",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = wire::EnvironmentStatus), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn environment_status(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<wire::EnvironmentStatus>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let mut applications = Vec::new();
    for application in state.store.list_applications(environment.id).await? {
        let deploying = deployments::is_deploying(&state, &application).await?;
        let observed = state.engine.observe_application(&application, deploying).await?;
        applications.push(wire::ApplicationStatus {
            name: application.name.to_string(),
            status: observed.status.to_owned(),
            url: convert::application_url(&state.settings, &project, &environment, &application),
            commit: observed.commit,
            deployment: application.current_deployment_id.map(|d| d.to_string()),
            instances: u32::from(application.spec.instances),
            instances_running: observed.instances.iter().filter(|c| c.running).count() as u32,
            restart_count: observed.instances.iter().map(|c| c.restart_count).sum(),
            message: observed.message,
        });
    }
    Ok(Json(wire::EnvironmentStatus {
        project: project.name.to_string(),
        environment: environment.name.to_string(),
        applications,
        last_deployment: deployments::last_deployment(&state, environment.id).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct RuntimeLogQuery {
    /// How many past lines to return (default 200, at most 10000).
    tail: Option<usize>,
    /// Keep streaming new lines (Server-Sent Events).
    #[serde(default)]
    follow: bool,
}

/// The serving container's output.
#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/applications/{application}/logs", tag = "status",
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path), RuntimeLogQuery),
    responses((status = 200, body = Vec<wire::LogLine>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn application_logs(
    State(state): State<AppState>,
    Path((project, environment, application)): Path<(String, String, String)>,
    Query(query): Query<RuntimeLogQuery>,
) -> ApiResult<Response> {
    let (_, _, application) =
        lookup::application(&state, &project, &environment, &application).await?;
    let instances = state.engine.serving_instances(&application).await?;
    if instances.is_empty() {
        return Err(AppError::NotFound(format!(
            "application {} has not been deployed yet; deploy it with `berth deploy`",
            application.name
        )));
    }
    let tail = query.tail.unwrap_or(200).min(10_000);
    let name = application.name.to_string();
    let several = instances.len() > 1;
    // Lines of several instances are prefixed with the instance number.
    let wrap = move |index: usize, line: String| wire::LogLine {
        timestamp: berth_store::now_rfc3339(),
        application: Some(name.clone()),
        step: None,
        line: if several { format!("[{index}] {line}") } else { line },
    };
    let runtime = state.engine.runtime().clone();
    if !query.follow {
        let mut lines = Vec::new();
        for (index, container) in instances.iter().enumerate() {
            let output =
                runtime.container_logs(container, tail).await.map_err(AppError::internal)?;
            lines.extend(output.into_iter().map(|line| wrap(index, line)));
        }
        return Ok(Json(lines).into_response());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    for (index, container) in instances.into_iter().enumerate() {
        let (line_sender, mut line_receiver) = tokio::sync::mpsc::channel::<String>(256);
        let runtime = runtime.clone();
        tokio::spawn(async move {
            if let Err(error) = runtime.follow_container_logs(&container, tail, line_sender).await {
                tracing::debug!(%error, "log follow ended");
            }
        });
        let sender = sender.clone();
        let wrap = wrap.clone();
        tokio::spawn(async move {
            while let Some(line) = line_receiver.recv().await {
                let event = Event::default().json_data(wrap(index, line)).unwrap_or_default();
                if sender.send(Ok(event)).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()).into_response())
}
