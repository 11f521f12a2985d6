//! One-off commands (`berth exec`): in a new container of the serving image with the
//! serving configuration, or inside a running instance.

use std::time::Duration;

use berth_domain::labels;
use berth_store::{ApplicationRecord, EnvironmentRecord, ProjectRecord};
use tokio::sync::mpsc;

use crate::adapters::ContainerSpec;
use crate::engine::{Engine, EngineError};
use crate::naming;
use crate::snapshot::ServiceSnapshot;

/// How long a one-off command may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("application {0} is not deployed; deploy it first with `berth deploy`")]
    NotDeployed(String),
    #[error("instance {index} does not exist: application {application} has {count} instance(s), numbered from 0")]
    NoSuchInstance { application: String, index: u32, count: usize },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Runs `command` and streams its output to `output`; returns the exit code.
    pub async fn exec(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        application: &ApplicationRecord,
        command: &[String],
        instance: Option<u32>,
        output: mpsc::Sender<String>,
    ) -> Result<i64, ExecError> {
        let not_deployed = || ExecError::NotDeployed(application.name.to_string());
        let deployment = application.current_deployment_id.ok_or_else(not_deployed)?;
        let runtime = &self.adapters.runtime;
        if let Some(index) = instance {
            let instances = self.serving_instances(application).await?;
            let name = instances.get(index as usize).ok_or(ExecError::NoSuchInstance {
                application: application.name.to_string(),
                index,
                count: instances.len(),
            })?;
            return Ok(runtime
                .exec_in_container(name, command, output)
                .await
                .map_err(EngineError::from)?);
        }
        let service = self
            .store
            .deployment_services(deployment)
            .await
            .map_err(EngineError::from)?
            .into_iter()
            .find(|s| s.application_id == application.id)
            .ok_or_else(not_deployed)?;
        let image = service.image.clone().ok_or_else(not_deployed)?;
        let sealed = service.config_snapshot.as_deref().ok_or_else(not_deployed)?;
        let snapshot = ServiceSnapshot::open(&self.key, sealed)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        let mut env = snapshot.variables.clone();
        env.extend(
            berth_domain::variables::BuiltinVariables {
                port: snapshot.spec.port,
                project_name: project.name.as_str(),
                environment_name: environment.name.as_str(),
                application_name: application.name.as_str(),
                git_commit: service.git_commit.as_deref(),
                deployment_id: deployment.to_string(),
            }
            .to_pairs(),
        );
        let base = naming::application_container(
            &project.name,
            &environment.name,
            &application.name,
            deployment,
        );
        let spec = ContainerSpec {
            name: format!(
                "{base}-exec-{}",
                uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap_or("0")
            ),
            image,
            env,
            labels: labels::application_container_labels(
                self.organization,
                project.id,
                environment.id,
                application.id,
                deployment,
            ),
            network: naming::environment_network(environment.id),
            network_aliases: Vec::new(),
            port: None,
            cpu_millis: snapshot.spec.cpu.map(|c| c.millis()),
            memory_bytes: snapshot.spec.memory.map(|m| m.bytes()),
            command: None,
            mounts: Vec::new(),
        };
        Ok(runtime
            .run_to_completion(&spec, command, EXEC_TIMEOUT, output)
            .await
            .map_err(EngineError::from)?)
    }
}
