//! Whole-environment actions: clone (configuration, and optionally a consistent copy of
//! every container database and application volume), stop, start, redeploy and delete.
//!
//! Guarantees: a clone is isolated from its source (its own network, database credentials
//! and volumes) and all or nothing — when any part fails, the new environment is marked for
//! deletion so the reconciler removes everything labelled for it, and the error says why.
//! A stopped environment keeps its containers, volumes and data; it runs nothing and
//! refuses deployments (in the store) until it is started. Its hosts stay in the route
//! table without upstreams, so the proxy answers 503 for them. Deletion goes through the
//! reconciler, which removes every object labelled for the environment, then its records.

use std::time::Duration;

use berth_domain::database::{DatabaseCredentials, DatabaseEngine, DatabaseMode};
use berth_domain::deployment::{DeploymentStatus, EnvironmentMode};
use berth_domain::labels;
use berth_domain::plan::ObjectKind;
use berth_domain::{ApplicationId, BranchName, ResourceName};
use berth_store::{
    BackupRecord, DatabaseRecord, DeploymentRecord, EnvironmentRecord, Lifecycle, ProjectRecord,
    StoreError, VariableOwner,
};
use rand::distributions::{Alphanumeric, DistString};

use crate::adapters::{ContainerSpec, VolumeMount, VolumeSpec};
use crate::backups::BackupError;
use crate::engine::{Engine, EngineError};
use crate::naming;

/// The image of the one-off container that copies a volume (built offline, see
/// MACHINE-NOTES.md).
pub const VOLUME_COPY_IMAGE: &str = "berth/busybox:1";

/// How long copying one application volume may take.
const VOLUME_COPY_TIMEOUT: Duration = Duration::from_secs(1800);

/// What to clone an environment into.
#[derive(Debug, Clone)]
pub struct CloneEnvironment {
    pub name: ResourceName,
    /// The branch the new environment follows; default the source's.
    pub branch: Option<BranchName>,
    /// Default the source's mode.
    pub mode: Option<EnvironmentMode>,
    /// Copy every container database's data and every application volume.
    pub with_data: bool,
    /// Queue a deployment of the new environment once it is complete.
    pub deploy: bool,
}

impl CloneEnvironment {
    /// A configuration-only clone under `name`, same branch and mode, deployed at once.
    pub fn new(name: ResourceName) -> Self {
        Self { name, branch: None, mode: None, with_data: false, deploy: true }
    }
}

/// Why an environment action failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// The request cannot be done in the current state (nothing was changed).
    #[error("{0}")]
    Conflict(String),
    /// The clone failed part-way; what it created is being removed.
    #[error("the clone failed, so everything it created is being removed: {0}")]
    CloneFailed(String),
    /// Starting the containers again failed.
    #[error("starting the environment failed: {0}")]
    StartFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The result of `Engine::stop_environment` / `start_environment`: the containers acted on.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentActionReport {
    pub containers: Vec<String>,
    pub already: bool,
}

/// New credentials for a database named `name` (the same shape as a created one's).
pub fn generated_database_credentials(
    name: &ResourceName,
    engine: DatabaseEngine,
) -> DatabaseCredentials {
    let password = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
    let identifier = name.as_str().replace('-', "_");
    match engine {
        DatabaseEngine::Redis => DatabaseCredentials {
            host: name.to_string(),
            port: engine.port(),
            user: "default".into(),
            password,
            database: "0".into(),
        },
        _ => DatabaseCredentials {
            host: name.to_string(),
            port: engine.port(),
            user: identifier.clone(),
            password,
            database: identifier,
        },
    }
}

/// A progress callback: one line per completed part of a long action.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

impl Engine {
    /// Clones `source` into a new environment of `project` (see the module doc).
    pub async fn clone_environment(
        &self,
        project: &ProjectRecord,
        source: &EnvironmentRecord,
        request: CloneEnvironment,
    ) -> Result<EnvironmentRecord, EnvironmentError> {
        self.clone_environment_reporting(project, source, request, &|line| tracing::info!("{line}"))
            .await
    }

    /// `clone_environment`, reporting each completed part to `progress`.
    pub async fn clone_environment_reporting(
        &self,
        project: &ProjectRecord,
        source: &EnvironmentRecord,
        request: CloneEnvironment,
        progress: Progress<'_>,
    ) -> Result<EnvironmentRecord, EnvironmentError> {
        if source.lifecycle != Lifecycle::Active {
            return Err(EnvironmentError::Conflict(format!(
                "environment {} is being deleted; it cannot be cloned",
                source.name
            )));
        }
        if self.store.environment_by_name(project.id, request.name.as_str()).await?.is_some() {
            return Err(EnvironmentError::Conflict(format!(
                "project {} already has an environment named {}; choose another name",
                project.name, request.name
            )));
        }
        if request.with_data {
            self.check_source_data(project, source).await?;
        }
        let mode = request.mode.unwrap_or(source.mode);
        let branch = request.branch.clone().unwrap_or_else(|| source.branch.clone());
        let target =
            self.store.create_environment(project.id, &request.name, mode, &branch).await?;
        progress(&format!("created environment {} (branch {branch})", target.name));
        let outcome = async {
            self.copy_configuration(project, source, &target, request.with_data, progress).await?;
            if request.deploy {
                self.queue_environment_deployment(
                    project,
                    &target,
                    &format!("clone of {}", source.name),
                )
                .await
                .map_err(|e| e.to_string())?;
                progress("queued the first deployment");
            }
            Ok::<(), String>(())
        }
        .await;
        if let Err(why) = outcome {
            tracing::warn!(environment = %target.name, %why, "clone failed; removing what it created");
            self.remove_environment(&target).await?;
            return Err(EnvironmentError::CloneFailed(why));
        }
        Ok(target)
    }

    /// With `--with-data`, every container database of the source must be running (its
    /// data is dumped from it): refuse before creating anything otherwise.
    async fn check_source_data(
        &self,
        project: &ProjectRecord,
        source: &EnvironmentRecord,
    ) -> Result<(), EnvironmentError> {
        if source.stopped {
            return Err(EnvironmentError::Conflict(format!(
                "environment {} is stopped; start it first to clone its data (or clone without --with-data)",
                source.name
            )));
        }
        for database in self.store.list_databases(source.id).await? {
            if database.lifecycle != Lifecycle::Active
                || database.spec.mode == DatabaseMode::External
            {
                continue;
            }
            let name = naming::database_container(&project.name, &source.name, &database.name);
            let running = self
                .adapters
                .runtime
                .inspect_container(&name)
                .await
                .map_err(EngineError::from)?
                .is_some_and(|c| c.running);
            if !running {
                return Err(EnvironmentError::Conflict(format!(
                    "database {} of environment {} is not running, so its data cannot be copied; deploy {} first or clone without --with-data",
                    database.name, source.name, source.name
                )));
            }
        }
        Ok(())
    }

    /// Copies databases, applications and variables (and their data with `with_data`).
    async fn copy_configuration(
        &self,
        project: &ProjectRecord,
        source: &EnvironmentRecord,
        target: &EnvironmentRecord,
        with_data: bool,
        progress: Progress<'_>,
    ) -> Result<(), String> {
        let store_error = |e: StoreError| e.to_string();
        for database in self.store.list_databases(source.id).await.map_err(store_error)? {
            if database.lifecycle != Lifecycle::Active {
                continue;
            }
            let sealed = match database.spec.mode {
                // The same external server: Berth does not own it, so it cannot copy it.
                DatabaseMode::External => database.credentials_ciphertext.clone(),
                DatabaseMode::Container { .. } => {
                    let credentials =
                        generated_database_credentials(&database.name, database.spec.engine);
                    let json = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
                    self.key.encrypt(&json).map_err(|e| e.to_string())?
                }
            };
            let copy = self
                .store
                .create_database(target.id, &database.name, &database.spec, &sealed)
                .await
                .map_err(store_error)?;
            if with_data && database.spec.mode != DatabaseMode::External {
                let bytes = self
                    .clone_database(project, source, &database, target, &copy)
                    .await
                    .map_err(|e: BackupError| format!("copying database {}: {e}", database.name))?;
                progress(&format!(
                    "database {}: new credentials, {bytes} bytes of data copied",
                    database.name
                ));
            } else {
                progress(&format!("database {}: created with new credentials", database.name));
            }
        }
        let environment_variables = self
            .store
            .list_variables(VariableOwner {
                project_id: project.id,
                environment_id: Some(source.id),
                application_id: None,
            })
            .await
            .map_err(store_error)?;
        for variable in &environment_variables {
            let owner = VariableOwner {
                project_id: project.id,
                environment_id: Some(target.id),
                application_id: None,
            };
            // Ciphertext is copied as it is (same master key); aliases name built-in
            // variables (`BERTH_DATABASE_MAIN_URL`), which resolve to the clone's databases.
            self.store
                .set_variable(owner, &variable.name, &variable.value)
                .await
                .map_err(store_error)?;
        }
        if !environment_variables.is_empty() {
            progress(&format!("{} environment variable(s) copied", environment_variables.len()));
        }
        for application in self.store.list_applications(source.id).await.map_err(store_error)? {
            if application.lifecycle != Lifecycle::Active {
                continue;
            }
            let copy = self
                .store
                .create_application(
                    target.id,
                    &application.name,
                    &application.spec,
                    application.credential_ciphertext.as_deref(),
                )
                .await
                .map_err(store_error)?;
            let variables = self
                .store
                .list_variables(VariableOwner {
                    project_id: project.id,
                    environment_id: Some(source.id),
                    application_id: Some(application.id),
                })
                .await
                .map_err(store_error)?;
            for variable in &variables {
                let owner = VariableOwner {
                    project_id: project.id,
                    environment_id: Some(target.id),
                    application_id: Some(copy.id),
                };
                self.store
                    .set_variable(owner, &variable.name, &variable.value)
                    .await
                    .map_err(store_error)?;
            }
            let mut copied_volumes = 0;
            if with_data {
                for volume in &application.spec.volumes {
                    if self
                        .copy_application_volume(
                            project,
                            target,
                            application.id,
                            copy.id,
                            &volume.name,
                        )
                        .await?
                    {
                        copied_volumes += 1;
                    }
                }
            }
            progress(&format!(
                "application {}: configuration and {} variable(s) copied{}",
                application.name,
                variables.len(),
                if with_data {
                    format!(", {copied_volumes} volume(s) copied")
                } else {
                    String::new()
                }
            ));
        }
        Ok(())
    }

    /// Copies one application volume into the clone's volume of the same name, in a
    /// one-off container with both mounted. `Ok(false)` when the source volume does not
    /// exist (the application never ran): the clone's starts empty, like the source's.
    async fn copy_application_volume(
        &self,
        project: &ProjectRecord,
        target: &EnvironmentRecord,
        source_application: ApplicationId,
        target_application: ApplicationId,
        volume: &ResourceName,
    ) -> Result<bool, String> {
        let runtime = &self.adapters.runtime;
        let from = naming::application_volume(source_application, volume);
        let to = naming::application_volume(target_application, volume);
        // Mounting a volume that does not exist would create it without Berth's labels.
        let exists = runtime
            .list_managed()
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .any(|o| o.kind == ObjectKind::Volume && o.name == from);
        if !exists {
            return Ok(false);
        }
        let owner_labels = labels::application_volume_labels(
            self.organization,
            project.id,
            target.id,
            target_application,
        );
        runtime
            .ensure_volume(&VolumeSpec { name: to.clone(), labels: owner_labels })
            .await
            .map_err(|e| e.to_string())?;
        let network = naming::environment_network(target.id);
        runtime
            .ensure_network(&crate::adapters::NetworkSpec {
                name: network.clone(),
                labels: labels::environment_labels(self.organization, project.id, target.id),
            })
            .await
            .map_err(|e| e.to_string())?;
        let spec = ContainerSpec {
            name: format!("berth-copy-{}", uuid::Uuid::new_v4().simple()),
            image: VOLUME_COPY_IMAGE.to_owned(),
            // Labelled for the clone: if this process dies mid-copy, the reconciler
            // removes the container with the rest of a failed clone.
            labels: labels::environment_labels(self.organization, project.id, target.id),
            network,
            mounts: vec![
                VolumeMount { volume: from.clone(), path: "/from".to_owned() },
                VolumeMount { volume: to.clone(), path: "/to".to_owned() },
            ],
            ..ContainerSpec::default()
        };
        let command: Vec<String> = vec!["sh".into(), "-c".into(), "cp -a /from/. /to/".into()];
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(64);
        let collect = tokio::spawn(async move {
            let mut tail = Vec::new();
            while let Some(line) = receiver.recv().await {
                tail.push(line);
                if tail.len() > 10 {
                    tail.remove(0);
                }
            }
            tail
        });
        let code = runtime
            .run_to_completion(&spec, &command, VOLUME_COPY_TIMEOUT, sender)
            .await
            .map_err(|e| format!("copying volume {volume}: {e}"))?;
        let tail = collect.await.unwrap_or_default();
        if code != 0 {
            return Err(format!(
                "copying volume {volume} failed with exit code {code}: {}",
                tail.join("; ")
            ));
        }
        Ok(true)
    }

    /// Queues a deployment of the whole environment (refused in the store when stopped).
    pub async fn queue_environment_deployment(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        trigger: &str,
    ) -> Result<Option<DeploymentRecord>, EnvironmentError> {
        let has_applications = self
            .store
            .list_applications(environment.id)
            .await?
            .iter()
            .any(|a| a.lifecycle == Lifecycle::Active);
        let has_databases = self.has_active_databases(environment).await?;
        if !has_applications && !has_databases {
            return Ok(None);
        }
        let record =
            self.store.create_deployment(project.id, environment.id, None, trigger, None).await?;
        self.notify();
        Ok(Some(record))
    }

    /// A new deployment of the environment's current configuration.
    pub async fn redeploy_environment(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        trigger: &str,
    ) -> Result<DeploymentRecord, EnvironmentError> {
        ensure_active(environment)?;
        self.queue_environment_deployment(project, environment, trigger).await?.ok_or_else(|| {
            EnvironmentError::Conflict(format!(
                "environment {} has nothing to deploy; create an application or a database first",
                environment.name
            ))
        })
    }

    /// Deletes an environment with everything labelled for it, through the reconciler;
    /// with `final_backup`, every container database is backed up first and nothing is
    /// deleted unless all backups succeed. Returns the backups taken, by database name.
    pub async fn delete_environment(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        final_backup: bool,
    ) -> Result<Vec<(ResourceName, BackupRecord)>, EnvironmentError> {
        let mut backups = Vec::new();
        if final_backup && environment.stopped {
            return Err(EnvironmentError::Conflict(format!(
                "environment {} is stopped, so its databases cannot be backed up; start it first, or delete without --final-backup",
                environment.name
            )));
        }
        if final_backup && environment.lifecycle == Lifecycle::Active {
            for database in self.store.list_databases(environment.id).await? {
                if database.lifecycle != Lifecycle::Active
                    || database.spec.mode == DatabaseMode::External
                {
                    continue;
                }
                let backup = self
                    .backup_database(
                        project,
                        environment,
                        &database,
                        crate::backups::BackupTrigger::Final,
                    )
                    .await
                    .map_err(|e| {
                        EnvironmentError::Conflict(format!(
                            "the final backup of database {} failed, so nothing was deleted: {e}",
                            database.name
                        ))
                    })?;
                backups.push((database.name.clone(), backup));
            }
        }
        // Previews are copies of this environment made for pull requests: without their
        // blueprint no pull-request event or expiry would reach them again, so they go
        // with it.
        for preview in self.store.list_previews(environment.id).await? {
            if let Some(preview_environment) =
                self.store.environment(preview.environment_id).await?
            {
                tracing::info!(preview = %preview_environment.name, blueprint = %environment.name, "deleting a preview with its blueprint");
                self.remove_environment(&preview_environment).await?;
            }
        }
        self.remove_environment(environment).await?;
        Ok(backups)
    }

    /// Marks the environment and its services for deletion, cancels its deployments and
    /// wakes the reconciler.
    async fn remove_environment(&self, environment: &EnvironmentRecord) -> Result<(), StoreError> {
        self.store.mark_environment_deleting(environment.id).await?;
        self.store.cancel_queued_deployments(environment.id).await?;
        for deployment in self.store.deployments_with_status(DeploymentStatus::Running).await? {
            if deployment.environment_id == environment.id {
                self.cancel_running(deployment.id);
            }
        }
        self.notify();
        Ok(())
    }

    /// Stops every container of the environment (applications, then databases, each
    /// gracefully), keeping containers and volumes; deployments are refused until start.
    pub async fn stop_environment(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
    ) -> Result<EnvironmentActionReport, EnvironmentError> {
        ensure_active(environment)?;
        let running = self.store.deployments_with_status(DeploymentStatus::Running).await?;
        if running.iter().any(|d| d.environment_id == environment.id) {
            return Err(EnvironmentError::Conflict(format!(
                "a deployment of environment {} is running; wait for it or cancel it with `berth deployment cancel`, then stop",
                environment.name
            )));
        }
        // First, so nothing new starts while containers stop.
        self.store.set_environment_stopped(environment.id, true).await?;
        self.store.cancel_queued_deployments(environment.id).await?;
        let mut report =
            EnvironmentActionReport { already: environment.stopped, ..Default::default() };
        for application in self.store.list_applications(environment.id).await? {
            if application.lifecycle != Lifecycle::Active {
                continue;
            }
            for name in self.serving_instances(&application).await? {
                if self.stop_if_running(&name, self.config.deadlines.retire_grace).await? {
                    report.containers.push(name);
                }
            }
        }
        for database in self.store.list_databases(environment.id).await? {
            if database.lifecycle != Lifecycle::Active
                || database.spec.mode == DatabaseMode::External
            {
                continue;
            }
            let name = naming::database_container(&project.name, &environment.name, &database.name);
            if self.stop_if_running(&name, crate::databases::DATABASE_STOP_GRACE).await? {
                report.containers.push(name);
            }
        }
        self.publish_routes().await?;
        tracing::info!(environment = %environment.name, containers = report.containers.len(), "environment stopped");
        Ok(report)
    }

    /// Starts a stopped environment's containers again (databases first, each checked),
    /// waits until every application instance passes its health check, restores routes.
    pub async fn start_environment(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
    ) -> Result<EnvironmentActionReport, EnvironmentError> {
        ensure_active(environment)?;
        let mut report =
            EnvironmentActionReport { already: !environment.stopped, ..Default::default() };
        let started = self.start_containers(project, environment, &mut report).await;
        // Cleared even after a failure: the user's next step is a redeploy, which a
        // stopped environment would refuse.
        self.store.set_environment_stopped(environment.id, false).await?;
        self.publish_routes().await?;
        started.map_err(EnvironmentError::StartFailed)?;
        tracing::info!(environment = %environment.name, containers = report.containers.len(), "environment started");
        Ok(report)
    }

    async fn start_containers(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        report: &mut EnvironmentActionReport,
    ) -> Result<(), String> {
        let runtime = &self.adapters.runtime;
        let databases: Vec<DatabaseRecord> =
            self.store.list_databases(environment.id).await.map_err(|e| e.to_string())?;
        for database in databases {
            if database.lifecycle != Lifecycle::Active
                || database.spec.mode == DatabaseMode::External
            {
                continue;
            }
            let name = naming::database_container(&project.name, &environment.name, &database.name);
            let state = runtime.inspect_container(&name).await.map_err(|e| e.to_string())?;
            match state {
                Some(state) if state.running => {}
                Some(_) => {
                    runtime.resume_container(&name).await.map_err(|e| e.to_string())?;
                    report.containers.push(name.clone());
                }
                // Never deployed: the next deployment creates it.
                None => continue,
            }
            self.wait_database_ready(&database, &name)
                .await
                .map_err(|e| format!("database {}: {e}", database.name))?;
        }
        let applications =
            self.store.list_applications(environment.id).await.map_err(|e| e.to_string())?;
        for application in applications {
            if application.lifecycle != Lifecycle::Active {
                continue;
            }
            for name in self.serving_instances(&application).await.map_err(|e| e.to_string())? {
                let state = runtime.inspect_container(&name).await.map_err(|e| e.to_string())?;
                let Some(state) = state else { continue };
                if !state.running {
                    runtime.resume_container(&name).await.map_err(|e| e.to_string())?;
                    report.containers.push(name.clone());
                }
                // Failures counted while it was stopped no longer mean anything.
                if let Ok(mut health) = self.health.lock() {
                    health.remove(&name);
                }
                if application.spec.port.is_some() {
                    self.wait_instance_healthy(&application, &name)
                        .await
                        .map_err(|e| format!("application {}: {e}", application.name))?;
                }
            }
        }
        Ok(())
    }

    /// Probes an instance until it passes its health check or the health deadline passes.
    async fn wait_instance_healthy(
        &self,
        application: &berth_store::ApplicationRecord,
        container: &str,
    ) -> Result<(), String> {
        let check = &application.spec.health_check;
        let deadline = tokio::time::Instant::now() + self.config.deadlines.health;
        let mut last_error = "not checked yet".to_owned();
        loop {
            let state = self
                .adapters
                .runtime
                .inspect_container(container)
                .await
                .map_err(|e| e.to_string())?;
            match state {
                Some(state) if state.running => {
                    if let Some(address) = state.published {
                        match crate::probe::probe(&check.probe, address, check.timeout()).await {
                            Ok(()) => return Ok(()),
                            Err(error) => last_error = error,
                        }
                    }
                }
                Some(state) => {
                    return Err(format!(
                        "instance {container} exited with code {}",
                        state.exit_code.unwrap_or(-1)
                    ))
                }
                None => return Err(format!("instance {container} is gone; redeploy")),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "instance {container} did not pass its health check within {} s: {last_error}",
                    self.config.deadlines.health.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether `environment` has a database that is not being deleted.
    pub(crate) async fn has_active_databases(
        &self,
        environment: &EnvironmentRecord,
    ) -> Result<bool, StoreError> {
        let databases = self.store.list_databases(environment.id).await?;
        Ok(databases.iter().any(|d| d.lifecycle == Lifecycle::Active))
    }

    /// Stops container `name` within `grace` when it is running; `true` when it was.
    async fn stop_if_running(&self, name: &str, grace: Duration) -> Result<bool, EngineError> {
        let runtime = &self.adapters.runtime;
        if !runtime.inspect_container(name).await?.is_some_and(|c| c.running) {
            return Ok(false);
        }
        runtime.stop_container(name, grace).await?;
        Ok(true)
    }
}

fn ensure_active(environment: &EnvironmentRecord) -> Result<(), EnvironmentError> {
    if environment.lifecycle == Lifecycle::Active {
        Ok(())
    } else {
        Err(EnvironmentError::Conflict(format!(
            "environment {} is being deleted",
            environment.name
        )))
    }
}
