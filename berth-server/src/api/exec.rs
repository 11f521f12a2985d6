//! `berth exec`: runs a one-off command in a new container of the serving image (or in
//! a running instance) and streams its output as Server-Sent Events, ending with an
//! `exit` event that carries the exit code.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_api as wire;
use tokio_stream::wrappers::ReceiverStream;

use super::{lookup, ApiJson};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/applications/{application}/exec", tag = "applications",
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path)),
    request_body = wire::ExecRequest,
    responses((status = 200, description = "text/event-stream of output lines, then an `exit` event with wire::ExecExit"), (status = 404, body = wire::ErrorBody), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn exec(
    State(state): State<AppState>,
    Path((project, environment, application)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<wire::ExecRequest>,
) -> ApiResult<Response> {
    if body.command.is_empty()
        || body.command.iter().any(|a| a.contains('\0'))
        || body.command.len() > 1024
    {
        return Err(AppError::Invalid(
            "give the command to run after `--`, e.g. `berth exec ... -- ls -l`".into(),
        ));
    }
    let (project, environment, application) =
        lookup::application(&state, &project, &environment, &application).await?;
    if application.current_deployment_id.is_none() {
        return Err(AppError::Conflict(format!(
            "application {} is not deployed; deploy it first with `berth deploy`",
            application.name
        )));
    }
    if let Some(index) = body.instance {
        if index >= u32::from(application.spec.instances) {
            return Err(AppError::Invalid(format!(
                "instance {index} does not exist: {} has {} instance(s), numbered from 0",
                application.name, application.spec.instances
            )));
        }
    }
    let (events, receiver) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    let (lines, mut line_receiver) = tokio::sync::mpsc::channel::<String>(256);
    let forward_events = events.clone();
    tokio::spawn(async move {
        while let Some(line) = line_receiver.recv().await {
            if forward_events.send(Ok(Event::default().data(line))).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let result = state
            .engine
            .exec(&project, &environment, &application, &body.command, body.instance, lines)
            .await;
        let event = match result {
            Ok(exit_code) => Event::default()
                .event("exit")
                .json_data(wire::ExecExit { exit_code })
                .unwrap_or_default(),
            Err(error) => Event::default().event("error").data(error.to_string()),
        };
        let _ = events.send(Ok(event)).await;
    });
    Ok(Sse::new(ReceiverStream::new(receiver)).keep_alive(KeepAlive::default()).into_response())
}
