//! Git webhooks: the receivers `POST /webhooks/{github,gitlab,gitea}?project=NAME`
//! (authenticated by the delivery's signature, not a bearer token), and the admin
//! endpoints that show or rotate a project's webhook secret and list its deliveries.
//!
//! Expected flow of a delivery: find the project → decrypt its secret → verify the
//! signature over the raw body → read the payload into a `GitEvent` → hand it to the
//! engine's dispatch → record the verdict and what it caused. Every refusal (unknown
//! project, no secret yet, missing or wrong signature) answers 401 and is recorded; the
//! record never holds the payload or the secret.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use berth_api as wire;
use berth_domain::webhook_payloads::{parse_delivery, verify_signature, DeliveryContent, GitHost};
use berth_store::{NewWebhookDelivery, ProjectRecord};
use rand::RngCore;

use super::lookup;
use crate::auth::{require_admin, Caller};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// Largest delivery accepted (GitHub caps payloads at 25 MB; pushes of many commits are
/// large, but Berth reads only the ref, commits and repository URLs).
pub(crate) const WEBHOOK_BODY_LIMIT_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct DeliveryQuery {
    /// The project the webhook belongs to.
    #[serde(default)]
    project: Option<String>,
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// How many deliveries, newest first (default 50, at most 500).
    #[serde(default)]
    limit: Option<u32>,
}

/// Receives a delivery from GitHub (`X-Hub-Signature-256`), GitLab (`X-Gitlab-Token`) or
/// Gitea (`X-Gitea-Signature`). No bearer token: the signature authenticates it.
#[utoipa::path(post, path = "/webhooks/{provider}", tag = "webhooks",
    params(("provider" = String, Path, description = "github, gitlab or gitea"), DeliveryQuery),
    request_body(content = String, description = "The Git host's JSON payload, as sent"),
    security(()),
    responses((status = 200, body = wire::WebhookAnswer), (status = 401, body = wire::ErrorBody),
        (status = 404, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn receive_delivery(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<DeliveryQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<wire::WebhookAnswer>> {
    let Some(host) = GitHost::parse(&provider) else {
        return Err(AppError::NotFound(format!(
            "no webhook receiver for {provider:?}; use /api/v1/webhooks/github, /gitlab or /gitea"
        )));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event_name: String = header(host.event_header())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let project_name: String = query.project.unwrap_or_default().chars().take(64).collect();
    let delivery =
        Delivery { state: &state, host, event: &event_name, project_name: &project_name };

    // Unknown project and project without a secret get one answer, so a caller without
    // the secret cannot probe which projects exist; the record keeps the precise reason.
    let not_accepting = format!(
        "project {project_name:?} accepts no webhooks: it does not exist or has no webhook secret yet (an admin runs `berth webhook show --project NAME` to create it)"
    );
    let project = match state.store.project_by_name(state.organization, &project_name).await? {
        Some(project) if project.lifecycle == berth_store::Lifecycle::Active => project,
        _ => {
            let reason = if project_name.is_empty() {
                "the URL names no project; add ?project=NAME (see `berth webhook show`)".to_owned()
            } else {
                format!("project {project_name:?} does not exist")
            };
            return Err(delivery.refuse_with(None, &reason, &not_accepting).await);
        }
    };
    let settings = state.store.project_git_settings(project.id).await?;
    let Some(sealed) = settings.webhook_secret_ciphertext else {
        let reason = format!(
            "project {project_name} has no webhook secret yet; run `berth webhook show --project {project_name}` and configure the Git host with it"
        );
        return Err(delivery.refuse_with(Some(&project), &reason, &not_accepting).await);
    };
    let secret = state.key.decrypt_string(&sealed).map_err(AppError::internal)?;
    if let Err(refused) = verify_signature(host, header(host.signature_header()), &body, &secret) {
        return Err(delivery.refuse(Some(&project), &refused.to_string()).await);
    }
    let content = match parse_delivery(host, header(host.event_header()), &body) {
        Ok(content) => content,
        Err(error) => {
            let message = error.to_string();
            delivery.record(Some(&project), "refused", &message, "").await;
            return Err(AppError::Invalid(message));
        }
    };
    let event = match content {
        DeliveryContent::Event(event) => event,
        DeliveryContent::Ping => {
            let message = "ping received: the webhook is set up".to_owned();
            delivery.record(Some(&project), "accepted", &message, "").await;
            return Ok(Json(answer("accepted", message, Vec::new())));
        }
        DeliveryContent::Ignored { reason } => {
            delivery.record(Some(&project), "ignored", &reason, "").await;
            return Ok(Json(answer("ignored", reason, Vec::new())));
        }
    };
    // The dispatch runs as a task of its own: a Git host that gives up waiting (GitHub
    // after 10 s) drops the request, and a clone with data must not be cut off half-way.
    // The answer waits for it up to `DISPATCH_ANSWER_BUDGET`; the task records the
    // delivery's outcome either way.
    let (done, outcome) = tokio::sync::oneshot::channel();
    let task = DispatchTask {
        state: state.clone(),
        host,
        event_name: event_name.clone(),
        project_name: project_name.clone(),
    };
    tokio::spawn(async move {
        let result = task.run(project, event).await;
        let _ = done.send(result);
    });
    match tokio::time::timeout(DISPATCH_ANSWER_BUDGET, outcome).await {
        Ok(Ok(Ok(report))) => {
            let deployments = report.deployments.iter().map(|d| d.deployment.to_string()).collect();
            Ok(Json(answer("accepted", report.summary(), deployments)))
        }
        Ok(Ok(Err(message))) => Err(AppError::Internal(message)),
        Ok(Err(_)) => Err(AppError::Internal("the dispatch of the delivery stopped".to_owned())),
        Err(_) => Ok(Json(answer(
            "accepted",
            "accepted and still being acted on (cloning an environment can take a while); `berth webhook deliveries` shows what it caused".to_owned(),
            Vec::new(),
        ))),
    }
}

/// How long a delivery's answer waits for its dispatch: under GitHub's 10 s timeout.
const DISPATCH_ANSWER_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

/// A verified delivery's dispatch, owned so it can outlive the request.
struct DispatchTask {
    state: AppState,
    host: GitHost,
    event_name: String,
    project_name: String,
}

impl DispatchTask {
    /// Dispatches the event and records the delivery with what it caused.
    async fn run(
        self,
        project: ProjectRecord,
        event: berth_domain::git_events::GitEvent,
    ) -> Result<berth_engine::git_dispatch::DispatchReport, String> {
        let delivery = Delivery {
            state: &self.state,
            host: self.host,
            event: &self.event_name,
            project_name: &self.project_name,
        };
        match self.state.engine.dispatch_git_event(&project, &event, self.host.as_str()).await {
            Ok(report) => {
                let summary = report.summary();
                delivery.record(Some(&project), "accepted", "signature verified", &summary).await;
                Ok(report)
            }
            Err(error) => {
                tracing::error!(%error, project = %project.name, "dispatching a webhook delivery failed");
                delivery
                    .record(Some(&project), "accepted", "signature verified", "dispatch failed")
                    .await;
                Err("acting on the delivery failed; the server log has the details".to_owned())
            }
        }
    }
}

fn answer(verdict: &str, message: String, deployments: Vec<String>) -> wire::WebhookAnswer {
    wire::WebhookAnswer { verdict: verdict.to_owned(), message, deployments }
}

/// The parts of a delivery its record needs.
struct Delivery<'a> {
    state: &'a AppState,
    host: GitHost,
    event: &'a str,
    project_name: &'a str,
}

impl Delivery<'_> {
    async fn record(
        &self,
        project: Option<&ProjectRecord>,
        verdict: &str,
        reason: &str,
        triggered: &str,
    ) {
        let record = NewWebhookDelivery {
            project_id: project.map(|p| p.id),
            project_name: self.project_name,
            provider: self.host.as_str(),
            event: self.event,
            verdict,
            reason,
            triggered,
        };
        if let Err(error) = self.state.store.record_webhook_delivery(&record).await {
            tracing::error!(%error, "cannot record a webhook delivery");
        }
    }

    /// Records a refusal and returns the 401 to answer with.
    async fn refuse(&self, project: Option<&ProjectRecord>, reason: &str) -> AppError {
        self.refuse_with(project, reason, reason).await
    }

    /// Records a refusal for `reason` and answers 401 with `answer`.
    async fn refuse_with(
        &self,
        project: Option<&ProjectRecord>,
        reason: &str,
        answer: &str,
    ) -> AppError {
        tracing::warn!(provider = self.host.as_str(), project = self.project_name, %reason, "webhook delivery refused");
        self.record(project, "refused", reason, "").await;
        AppError::Unauthorized(format!("webhook delivery refused: {answer}"))
    }
}

/// A new secret: 32 random bytes as 64 hex digits.
fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn settings_view(project: &ProjectRecord, secret: String) -> wire::WebhookSettings {
    let endpoints = GitHost::ALL
        .into_iter()
        .map(|host| wire::WebhookEndpoint {
            provider: host.as_str().to_owned(),
            path: format!(
                "{}/webhooks/{}?project={}",
                berth_api::API_PREFIX,
                host.as_str(),
                project.name
            ),
            events: match host {
                GitHost::GitHub => "push, pull_request (content type application/json)",
                GitHost::GitLab => "Push events, Merge request events",
                GitHost::Gitea => "push, delete, pull_request (content type application/json)",
            }
            .to_owned(),
        })
        .collect();
    wire::WebhookSettings { project: project.name.to_string(), secret, endpoints }
}

/// The webhook URLs and secret of a project (the secret is created on first use). Admin only.
#[utoipa::path(get, path = "/projects/{project}/webhook", tag = "webhooks",
    params(("project" = String, Path)),
    responses((status = 200, body = wire::WebhookSettings), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn show_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
) -> ApiResult<Json<wire::WebhookSettings>> {
    require_admin(&caller, "reading the webhook secret")?;
    let project = lookup::project(&state, &project).await?;
    let sealed = match state.store.project_git_settings(project.id).await?.webhook_secret_ciphertext
    {
        Some(sealed) => sealed,
        None => {
            let fresh =
                state.key.encrypt(generate_secret().as_bytes()).map_err(AppError::internal)?;
            state.store.ensure_webhook_secret(project.id, &fresh).await?
        }
    };
    let secret = state.key.decrypt_string(&sealed).map_err(AppError::internal)?;
    Ok(Json(settings_view(&project, secret)))
}

/// Replaces the project's webhook secret: deliveries signed with the old one are refused.
/// Admin only.
#[utoipa::path(post, path = "/projects/{project}/webhook/rotate", tag = "webhooks",
    params(("project" = String, Path)),
    responses((status = 200, body = wire::WebhookSettings), (status = 403, body = wire::ErrorBody), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn rotate_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
) -> ApiResult<Json<wire::WebhookSettings>> {
    require_admin(&caller, "rotating the webhook secret")?;
    let project = lookup::project(&state, &project).await?;
    lookup::ensure_active(project.lifecycle, "the project")?;
    let secret = generate_secret();
    let sealed = state.key.encrypt(secret.as_bytes()).map_err(AppError::internal)?;
    state.store.replace_webhook_secret(project.id, &sealed).await?;
    Ok(Json(settings_view(&project, secret)))
}

/// The deliveries addressed to a project, newest first: verdict, reason and what they
/// caused (never the payload).
#[utoipa::path(get, path = "/projects/{project}/webhook/deliveries", tag = "webhooks",
    params(("project" = String, Path), ListQuery),
    responses((status = 200, body = Vec<wire::WebhookDelivery>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<(StatusCode, Json<Vec<wire::WebhookDelivery>>)> {
    let project = lookup::project(&state, &project).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let deliveries = state.store.list_webhook_deliveries(project.name.as_str(), limit).await?;
    let views = deliveries
        .into_iter()
        .map(|d| wire::WebhookDelivery {
            id: d.id,
            project: d.project_name,
            provider: d.provider,
            event: d.event,
            verdict: d.verdict,
            reason: d.reason,
            triggered: d.triggered,
            received_at: d.received_at,
        })
        .collect();
    Ok((StatusCode::OK, Json(views)))
}
