//! `berth deploy --dry-run`: what a deployment of an environment would do, computed
//! without changing anything. The engine gathers the facts (each Git application's branch
//! head through `Source::head_commit`, whether its image already exists) and
//! `berth_domain::deploy_plan::plan_deployment` decides the waves and the actions.
//!
//! Guarantees: reads the store, asks the Git remote for branch heads and the image store
//! whether tags exist; creates, starts and records nothing.

use berth_domain::deploy_plan::{plan_deployment, DeploymentPlan, PlanApplication, PlanSource};
use berth_domain::spec::ApplicationSource;
use berth_domain::ApplicationId;
use berth_store::{EnvironmentRecord, Lifecycle, ProjectRecord};

use crate::adapters::LogSink;
use crate::engine::{Engine, EngineError};
use crate::prepare::{build_identity, fetch_request};

/// Why no plan could be made, in words for the user.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Git's progress lines are not part of a plan.
struct Discard;

impl LogSink for Discard {
    fn line(&self, _line: &str) {}
}

impl Engine {
    /// The plan of a manual deployment of the environment (or of one application).
    pub async fn deployment_plan(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        only: Option<ApplicationId>,
    ) -> Result<DeploymentPlan, PlanError> {
        let applications: Vec<_> = self
            .store
            .list_applications(environment.id)
            .await
            .map_err(EngineError::from)?
            .into_iter()
            .filter(|a| a.lifecycle == Lifecycle::Active)
            .filter(|a| only.is_none_or(|id| id == a.id))
            .collect();
        let databases: Vec<String> = self
            .store
            .list_databases(environment.id)
            .await
            .map_err(EngineError::from)?
            .into_iter()
            .filter(|d| d.lifecycle == Lifecycle::Active)
            .map(|d| d.name.to_string())
            .collect();
        let mut planned = Vec::with_capacity(applications.len());
        for application in &applications {
            let source = match &application.spec.source {
                ApplicationSource::Image { reference } => {
                    PlanSource::Image { reference: reference.to_string() }
                }
                ApplicationSource::Git(git) => {
                    let refused = |message: String| {
                        PlanError::Refused(format!("application {}: {message}", application.name))
                    };
                    let request = fetch_request(self, application, git, &environment.branch)
                        .map_err(refused)?;
                    let commit = self
                        .adapters
                        .source
                        .head_commit(&request, &Discard)
                        .await
                        .map_err(|e| refused(e.to_string()))?;
                    let (build, image) = build_identity(project.id, application, git, &commit);
                    let image_exists = self
                        .adapters
                        .builder
                        .image_exists(&image)
                        .await
                        .map_err(|e| refused(e.to_string()))?;
                    PlanSource::Git { build, image, image_exists }
                }
            };
            planned.push(PlanApplication {
                name: application.name.to_string(),
                depends_on: application.spec.depends_on.iter().map(ToString::to_string).collect(),
                source,
                // A manual deployment deploys every application; watch paths apply to pushes.
                skip_reason: None,
            });
        }
        plan_deployment(&databases, &planned).map_err(|e| PlanError::Refused(e.to_string()))
    }
}
