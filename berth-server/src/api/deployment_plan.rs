//! The dry run of a deployment: `GET .../deployment-plan` answers what `berth deploy`
//! would do (waves, and per application build, reuse, shared build, image or skip)
//! without changing anything.

use axum::extract::{Path, Query, State};
use axum::Json;
use berth_api as wire;
use berth_domain::deploy_plan::{DeploymentPlan, PlannedAction};
use berth_engine::PlanError;
use serde::Deserialize;

use super::lookup;
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct PlanQuery {
    /// Plan the deployment of only this application.
    application: Option<String>,
}

/// What a deployment of the environment (or of one application) would do, in waves:
/// databases first, then applications in dependency order. Nothing is changed.
#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/deployment-plan", tag = "deployments",
    params(("project" = String, Path), ("environment" = String, Path), PlanQuery),
    responses((status = 200, body = wire::DeploymentPlan), (status = 404, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn deployment_plan(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<PlanQuery>,
) -> ApiResult<Json<wire::DeploymentPlan>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let only = match query.application.as_deref() {
        Some(name) => {
            let (_, _, application) =
                lookup::application(&state, project.name.as_str(), environment.name.as_str(), name)
                    .await?;
            lookup::ensure_active(application.lifecycle, "the application")?;
            Some(application.id)
        }
        None => None,
    };
    let plan =
        state.engine.deployment_plan(&project, &environment, only).await.map_err(|error| {
            match error {
                PlanError::Refused(message) => AppError::Invalid(message),
                PlanError::Engine(error) => AppError::from(error),
            }
        })?;
    Ok(Json(plan_view(project.name.as_str(), environment.name.as_str(), &plan)))
}

fn plan_view(project: &str, environment: &str, plan: &DeploymentPlan) -> wire::DeploymentPlan {
    wire::DeploymentPlan {
        project: project.to_owned(),
        environment: environment.to_owned(),
        waves: plan
            .waves
            .iter()
            .zip(1..)
            .map(|(wave, number)| wire::DeploymentPlanWave {
                wave: number,
                services: wave
                    .services
                    .iter()
                    .map(|service| wire::PlannedService {
                        name: service.name.clone(),
                        kind: service.kind.to_owned(),
                        action: service.action.kind().to_owned(),
                        commit: match &service.action {
                            PlannedAction::Build { commit } => Some(commit.clone()),
                            _ => None,
                        },
                        shared_with: match &service.action {
                            PlannedAction::SharedBuild { with } => Some(with.clone()),
                            _ => None,
                        },
                        detail: service.action.describe(),
                    })
                    .collect(),
            })
            .collect(),
    }
}
