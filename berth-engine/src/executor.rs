//! The deployment executor: runs the steps `clone`, `build`, `release`, `start`,
//! `health`, `route`, `retire` for each application of a deployment, records each step
//! with its duration and log, and on failure removes what it started so the previous
//! version keeps serving.
//!
//! Expected flow per application (start-first): fetch the branch head, build (or reuse)
//! the image, run the release command in a one-off container, start the new instances
//! beside the old ones, wait until every new instance passes its health check, switch the
//! proxy's route to the new instances, record them as current, let the old instances
//! drain, then stop them. A rollback skips clone and build and uses the image and
//! configuration snapshot of the deployment it returns to.
//!
//! Guarantees: every step runs under its deadline and can be cancelled before `route`;
//! traffic switches only after every new instance is healthy; a failure before the switch
//! leaves the old instances serving and removes the new ones.

use std::net::SocketAddr;
use std::time::Duration;

use berth_domain::deployment::{DeploymentStatus, FailureReason, StepName, StepStatus};
use berth_domain::labels;
use berth_domain::spec::{effective_branch, ApplicationSource, ApplicationSpec, GitCredentialKind};
use berth_store::{
    ApplicationRecord, DeploymentRecord, DeploymentServiceRecord, EnvironmentRecord, Lifecycle,
    ProjectRecord,
};
use tokio_util::sync::CancellationToken;

use crate::adapters::{
    BuildRequest, ContainerSpec, FetchRequest, GitCredentials, LogSink, NetworkSpec, SecretString,
    VolumeMount, VolumeSpec,
};
use crate::engine::{Engine, EngineError};
use crate::logsink::DeploymentLog;
use crate::naming;
use crate::snapshot::ServiceSnapshot;

/// A failed step, with a reason a person can act on.
pub(crate) struct StepFailure {
    pub(crate) step: StepName,
    pub(crate) message: String,
    cancelled: bool,
}

impl StepFailure {
    pub(crate) fn new(step: StepName, message: impl Into<String>) -> Self {
        Self { step, message: message.into(), cancelled: false }
    }
}

pub(crate) type StepResult<T> = Result<(T, Option<String>), StepFailure>;

/// What one application is deployed with: built now, or taken from an earlier deployment.
struct Release {
    image: String,
    commit: Option<String>,
    snapshot: ServiceSnapshot,
}

/// The context shared by the steps of one deployment.
pub(crate) struct Run<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) deployment: &'a DeploymentRecord,
    pub(crate) project: &'a ProjectRecord,
    pub(crate) environment: &'a EnvironmentRecord,
    pub(crate) log: DeploymentLog,
    cancel: CancellationToken,
}

impl Engine {
    /// Executes a claimed (running) deployment to a terminal state.
    pub(crate) async fn execute(&self, deployment: DeploymentRecord) {
        let id = deployment.id;
        let cancel = self.register_cancellation(id);
        let outcome = self.execute_inner(&deployment, cancel).await;
        self.forget_cancellation(id);
        let (status, failure) = match outcome {
            Ok(Ok(())) => (DeploymentStatus::Succeeded, None),
            Ok(Err((reason, true))) => (DeploymentStatus::Cancelled, Some(reason)),
            Ok(Err((reason, false))) => (DeploymentStatus::Failed, Some(reason)),
            Err(error) => (
                DeploymentStatus::Failed,
                Some(FailureReason {
                    step: StepName::Clone,
                    application: None,
                    message: format!("internal error: {error}"),
                }),
            ),
        };
        match &failure {
            Some(reason) => {
                tracing::warn!(deployment = %id, %reason, status = status.as_str(), "deployment did not complete");
                let _ = self.store.fail_open_steps(id, &reason.message).await;
            }
            None => tracing::info!(deployment = %id, "deployment succeeded"),
        }
        if let Err(error) = self.store.finish_deployment(id, status, failure.as_ref()).await {
            tracing::error!(deployment = %id, %error, "could not record the end of the deployment");
        }
    }

    /// `Ok(Err((reason, cancelled)))` for a deployment that did not complete.
    async fn execute_inner(
        &self,
        deployment: &DeploymentRecord,
        cancel: CancellationToken,
    ) -> Result<Result<(), (FailureReason, bool)>, EngineError> {
        let fail = |step, message: String| {
            Ok(Err((FailureReason { step, application: None, message }, false)))
        };
        let Some(environment) = self.store.environment(deployment.environment_id).await? else {
            return fail(StepName::Clone, "the environment was deleted".into());
        };
        let Some(project) = self.store.project(deployment.project_id).await? else {
            return fail(StepName::Clone, "the project was deleted".into());
        };
        if environment.lifecycle == Lifecycle::Deleting {
            return fail(StepName::Clone, "the environment is being deleted".into());
        }
        let mut applications: Vec<ApplicationRecord> = self
            .store
            .list_applications(environment.id)
            .await?
            .into_iter()
            .filter(|a| a.lifecycle == Lifecycle::Active)
            .filter(|a| deployment.application_id.is_none_or(|only| only == a.id))
            .collect();
        if let Some(target) = deployment.rollback_of {
            let covered: Vec<_> = self
                .store
                .deployment_services(target)
                .await?
                .iter()
                .map(|s| s.application_id)
                .collect();
            applications.retain(|a| covered.contains(&a.id));
        }
        let has_databases = self
            .store
            .list_databases(environment.id)
            .await?
            .iter()
            .any(|d| d.lifecycle == Lifecycle::Active);
        if applications.is_empty() && (!has_databases || deployment.rollback_of.is_some()) {
            return fail(
                StepName::Clone,
                "there is nothing to deploy; create an application with `berth application create` or a database with `berth database create`".into(),
            );
        }
        let (log, writer) = DeploymentLog::start(self.store.clone(), deployment.id);
        let run = Run {
            engine: self,
            deployment,
            project: &project,
            environment: &environment,
            log,
            cancel,
        };
        // Databases first: applications start only once the databases they use answer.
        let mut result = match run.ensure_databases().await? {
            Ok(()) => Ok(()),
            Err((database, failure)) => Err((
                FailureReason {
                    step: failure.step,
                    application: Some(database),
                    message: failure.message,
                },
                failure.cancelled,
            )),
        };
        for application in applications.iter().filter(|_| result.is_ok()) {
            if let Err(failure) = run.deploy_application(application).await? {
                result = Err((
                    FailureReason {
                        step: failure.step,
                        application: Some(application.name.to_string()),
                        message: failure.message,
                    },
                    failure.cancelled,
                ));
                break;
            }
        }
        drop(run);
        // Every log line is stored before the deployment is marked finished.
        let _ = writer.await;
        Ok(result)
    }
}

impl Run<'_> {
    /// Runs one recorded step under its deadline, cancellable unless `cancellable` is off.
    pub(crate) async fn step<T>(
        &self,
        service: &str,
        name: StepName,
        deadline: Duration,
        work: impl std::future::Future<Output = StepResult<T>>,
    ) -> Result<Result<T, StepFailure>, EngineError> {
        let store = &self.engine.store;
        let step_id = store.start_step(self.deployment.id, Some(service), name).await?;
        self.engine.pause_if_requested(name).await;
        let outcome = tokio::select! {
            biased;
            () = self.cancel.cancelled(), if name < StepName::Route => Err(StepFailure {
                step: name,
                message: "cancelled by request; the previous version keeps serving".to_owned(),
                cancelled: true,
            }),
            timed = tokio::time::timeout(deadline, work) => match timed {
                Ok(outcome) => outcome,
                Err(_) => Err(StepFailure::new(
                    name,
                    format!("the {name} step did not finish within its deadline of {} s", deadline.as_secs()),
                )),
            },
        };
        match &outcome {
            Ok((_, message)) => {
                store.finish_step(step_id, StepStatus::Succeeded, message.as_deref()).await?
            }
            Err(failure) => {
                store.finish_step(step_id, StepStatus::Failed, Some(&failure.message)).await?
            }
        }
        Ok(outcome.map(|(value, _)| value))
    }

    async fn deploy_application(
        &self,
        application: &ApplicationRecord,
    ) -> Result<Result<(), StepFailure>, EngineError> {
        let engine = self.engine;
        let deadlines = &engine.config.deadlines;
        let release = match self.deployment.rollback_of {
            Some(target) => self.rollback_release(application, target).await?,
            None => self.new_release(application).await?,
        };
        let release = match release {
            Ok(release) => release,
            Err(failure) => return Ok(Err(failure)),
        };
        let spec = &release.snapshot.spec;
        let base_name = naming::application_container(
            &self.project.name,
            &self.environment.name,
            &application.name,
            self.deployment.id,
        );
        let sealed =
            release.snapshot.seal(&engine.key).map_err(|e| EngineError::Internal(e.to_string()))?;
        // Recorded before any container exists, so a crash right after start still finds
        // (and garbage-collects) them through their labels and this record.
        engine
            .store
            .record_service(&DeploymentServiceRecord {
                deployment_id: self.deployment.id,
                application_id: application.id,
                application_name: application.name.to_string(),
                git_commit: release.commit.clone(),
                image: Some(release.image.clone()),
                container_name: Some(base_name.clone()),
                instances: spec.instances,
                config_snapshot: Some(sealed),
            })
            .await?;
        let env = self.container_environment(application, &release);

        // release
        if let Some(command) = &spec.release_command {
            let done = self
                .step(
                    application.name.as_str(),
                    StepName::Release,
                    deadlines.release,
                    self.run_release_command(application, &release, &env, &base_name, command),
                )
                .await?;
            if let Err(failure) = done {
                return Ok(Err(failure));
            }
        }

        // start
        let instance_names: Vec<String> =
            (0..spec.instances).map(|i| naming::instance_container(&base_name, i)).collect();
        let started = self
            .step(
                application.name.as_str(),
                StepName::Start,
                deadlines.start,
                self.start_instances(application, spec, &release.image, &env, &instance_names),
            )
            .await?;
        let addresses = match started {
            Ok(addresses) => addresses,
            Err(failure) => {
                self.discard_containers(&instance_names).await;
                return Ok(Err(failure));
            }
        };

        // health
        let healthy = self
            .step(
                application.name.as_str(),
                StepName::Health,
                deadlines.health + spec.health_check.start_delay() + Duration::from_secs(5),
                self.wait_all_healthy(spec, &instance_names, &addresses),
            )
            .await?;
        if let Err(failure) = healthy {
            for name in &instance_names {
                self.capture_container_output(application.name.as_str(), name).await;
            }
            self.discard_containers(&instance_names).await;
            return Ok(Err(failure));
        }

        // route: switch traffic, then record the new instances as current.
        let previous = engine.serving_instances(application).await?;
        let routed = self
            .step(
                application.name.as_str(),
                StepName::Route,
                deadlines.route,
                self.switch_traffic(application, spec, &instance_names, &addresses),
            )
            .await?;
        if let Err(failure) = routed {
            self.discard_containers(&instance_names).await;
            return Ok(Err(failure));
        }

        // retire: old instances drain, then stop.
        let old: Vec<String> =
            previous.into_iter().filter(|p| !instance_names.contains(p)).collect();
        let drain = Duration::from_millis(spec.drain_ms);
        let grace = deadlines.retire_grace;
        let retired = self
            .step(
                application.name.as_str(),
                StepName::Retire,
                drain + grace + Duration::from_secs(30),
                async {
                    if old.is_empty() {
                        return Ok(((), Some("no previous version to retire".to_owned())));
                    }
                    tokio::time::sleep(drain).await;
                    for name in &old {
                        engine
                            .adapters
                            .runtime
                            .remove_container(name, grace)
                            .await
                            .map_err(|e| StepFailure::new(StepName::Retire, e.to_string()))?;
                    }
                    Ok((
                        (),
                        Some(format!(
                            "drained {} ms, then stopped {}",
                            drain.as_millis(),
                            old.join(", ")
                        )),
                    ))
                },
            )
            .await?;
        // A failed retire leaves extra containers that the reconciler collects; the new
        // version already serves, so the deployment itself succeeded.
        if let Err(failure) = retired {
            tracing::warn!(application = %application.name, reason = %failure.message, "retire failed; the reconciler will collect the old containers");
        }
        Ok(Ok(()))
    }

    /// Clone and build (or pull) for a normal deployment.
    async fn new_release(
        &self,
        application: &ApplicationRecord,
    ) -> Result<Result<Release, StepFailure>, EngineError> {
        let engine = self.engine;
        let deadlines = &engine.config.deadlines;
        let app_name = application.name.as_str();
        // Database coordinates first, so a user variable of the same name wins; aliases
        // follow them.
        let mut variables = match engine.database_variables(self.environment.id).await {
            Ok(variables) => variables,
            Err(error) => return Ok(Err(StepFailure::new(StepName::Start, error.to_string()))),
        };
        let env = match self.resolve_variables(application, &variables).await {
            Ok(env) => env,
            Err(failure) => return Ok(Err(failure)),
        };
        variables.extend(env);
        let snapshot = ServiceSnapshot { spec: application.spec.clone(), variables };
        match &application.spec.source {
            ApplicationSource::Git(git) => {
                let checkout = engine
                    .config
                    .checkouts_dir()
                    .join(self.deployment.id.to_string())
                    .join(app_name);
                let fetched = self
                    .step(
                        application.name.as_str(),
                        StepName::Clone,
                        deadlines.clone,
                        self.clone_source(application, &checkout),
                    )
                    .await?;
                let commit = match fetched {
                    Ok(commit) => commit,
                    Err(failure) => {
                        remove_dir(&checkout).await;
                        return Ok(Err(failure));
                    }
                };
                let tag = naming::image_tag(&naming::BuildInputs {
                    project: self.project.id,
                    application: application.id,
                    commit: &commit,
                    root_path: git.root_path.as_str(),
                    dockerfile_path: git.dockerfile_path.as_str(),
                    build_args: &git.build_args,
                });
                let request = BuildRequest {
                    checkout_dir: checkout.clone(),
                    root_path: git.root_path.clone(),
                    dockerfile_path: git.dockerfile_path.clone(),
                    build_args: git.build_args.clone(),
                    tag: tag.clone(),
                    labels: labels::image_labels(engine.organization, self.project.id),
                    timeout: deadlines.build,
                };
                let built = self
                    .step(
                        application.name.as_str(),
                        StepName::Build,
                        deadlines.build,
                        self.build_image(request, app_name),
                    )
                    .await?;
                remove_dir(&checkout).await;
                Ok(built.map(|()| Release { image: tag, commit: Some(commit), snapshot }))
            }
            ApplicationSource::Image { reference } => {
                let sink = self.log.for_step(Some(app_name), StepName::Build.as_str());
                let pulled = self
                    .step(application.name.as_str(), StepName::Build, deadlines.build, async {
                        engine
                            .adapters
                            .builder
                            .ensure_image(reference, &sink)
                            .await
                            .map(|()| ((), Some(format!("using image {reference}"))))
                            .map_err(|e| StepFailure::new(StepName::Build, e.to_string()))
                    })
                    .await?;
                Ok(pulled.map(|()| Release {
                    image: reference.to_string(),
                    commit: None,
                    snapshot,
                }))
            }
        }
    }

    /// The image and configuration of an earlier deployment, for a rollback.
    async fn rollback_release(
        &self,
        application: &ApplicationRecord,
        target: berth_domain::DeploymentId,
    ) -> Result<Result<Release, StepFailure>, EngineError> {
        let engine = self.engine;
        let service = engine
            .store
            .deployment_services(target)
            .await?
            .into_iter()
            .find(|s| s.application_id == application.id);
        let work = async {
            let fail = |message: String| StepFailure::new(StepName::Build, message);
            let service = service.ok_or_else(|| {
                fail(format!("deployment {target} did not deploy {}", application.name))
            })?;
            let image = service
                .image
                .clone()
                .ok_or_else(|| fail(format!("deployment {target} recorded no image")))?;
            let sealed = service.config_snapshot.as_deref().ok_or_else(|| {
                fail(format!("deployment {target} has no configuration snapshot"))
            })?;
            let snapshot =
                ServiceSnapshot::open(&engine.key, sealed).map_err(|e| fail(e.to_string()))?;
            let exists = engine
                .adapters
                .builder
                .image_exists(&image)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !exists {
                return Err(fail(format!(
                    "the image of deployment {target} was pruned (Berth keeps the images of the last {} successful deployments); deploy its commit again instead",
                    engine.config.keep_successful_images
                )));
            }
            let message = format!("rolling back to deployment {target}: reusing {image}");
            Ok((Release { image, commit: service.git_commit.clone(), snapshot }, Some(message)))
        };
        self.step(application.name.as_str(), StepName::Build, engine.config.deadlines.build, work)
            .await
    }

    async fn clone_source(
        &self,
        application: &ApplicationRecord,
        checkout: &std::path::Path,
    ) -> StepResult<String> {
        let engine = self.engine;
        let ApplicationSource::Git(git) = &application.spec.source else {
            return Err(StepFailure::new(StepName::Clone, "not a Git application"));
        };
        let credentials = self.git_credentials(application, git.credential)?;
        let branch = effective_branch(git, &self.environment.branch);
        remove_dir(checkout).await;
        if let Some(parent) = checkout.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                StepFailure::new(
                    StepName::Clone,
                    format!("cannot create {}: {e}", parent.display()),
                )
            })?;
        }
        let request = FetchRequest {
            repository: git.repository.clone(),
            branch: branch.clone(),
            credentials,
            allow_local: engine.config.allow_local_repositories,
            timeout: engine.config.deadlines.clone,
        };
        let sink = self.log.for_step(Some(application.name.as_str()), StepName::Clone.as_str());
        sink.line(&format!("fetching {} at branch {branch}", git.repository));
        let fetched = engine
            .adapters
            .source
            .fetch(&request, checkout, &sink)
            .await
            .map_err(|e| StepFailure::new(StepName::Clone, e.to_string()))?;
        let message = format!("{branch} is at {}", &fetched.commit[..fetched.commit.len().min(12)]);
        Ok((fetched.commit, Some(message)))
    }

    fn git_credentials(
        &self,
        application: &ApplicationRecord,
        kind: GitCredentialKind,
    ) -> Result<Option<GitCredentials>, StepFailure> {
        let decrypt = || -> Result<SecretString, StepFailure> {
            let sealed = application.credential_ciphertext.as_deref().ok_or_else(|| {
                StepFailure::new(
                    StepName::Clone,
                    "the Git credential is missing; set it again with `berth application update`",
                )
            })?;
            self.engine
                .key
                .decrypt_string(sealed)
                .map(SecretString::new)
                .map_err(|e| StepFailure::new(StepName::Clone, e.to_string()))
        };
        Ok(match kind {
            GitCredentialKind::None => None,
            GitCredentialKind::Token => Some(GitCredentials::Token(decrypt()?)),
            GitCredentialKind::SshKey => Some(GitCredentials::SshKey {
                private_key: decrypt()?,
                known_hosts: self.engine.config.known_hosts_file(),
            }),
        })
    }

    async fn build_image(&self, request: BuildRequest, application: &str) -> StepResult<()> {
        let builder = &self.engine.adapters.builder;
        let as_failure =
            |e: crate::adapters::BuildError| StepFailure::new(StepName::Build, e.to_string());
        if builder.image_exists(&request.tag).await.map_err(as_failure)? {
            return Ok((
                (),
                Some(format!("reused {} (same commit and build settings)", request.tag)),
            ));
        }
        let sink = self.log.for_step(Some(application), StepName::Build.as_str());
        match builder.build(&request, &sink).await {
            // A cached layer removed while the build used it (image cleanup by another Berth
            // sharing the engine, or by hand): the engine rebuilds it on a second try.
            Err(error) if is_vanished_layer(&error) => {
                sink.line("a cached layer disappeared during the build; building once more");
                builder.build(&request, &sink).await.map_err(as_failure)?;
            }
            result => result.map_err(as_failure)?,
        }
        Ok(((), Some(format!("built {}", request.tag))))
    }

    /// Project, environment and application variables, secrets decrypted.
    async fn resolve_variables(
        &self,
        application: &ApplicationRecord,
        builtins: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StepFailure> {
        crate::snapshot::resolve_application_variables(
            self.engine,
            self.project.id,
            self.environment.id,
            application.id,
            builtins,
        )
        .await
        .map_err(|message| StepFailure::new(StepName::Start, message))
    }

    /// The release's variables plus the built-ins of this deployment.
    fn container_environment(
        &self,
        application: &ApplicationRecord,
        release: &Release,
    ) -> Vec<(String, String)> {
        let mut env = release.snapshot.variables.clone();
        env.extend(
            berth_domain::variables::BuiltinVariables {
                port: release.snapshot.spec.port,
                project_name: self.project.name.as_str(),
                environment_name: self.environment.name.as_str(),
                application_name: application.name.as_str(),
                git_commit: release.commit.as_deref(),
                deployment_id: self.deployment.id.to_string(),
            }
            .to_pairs(),
        );
        env
    }

    fn container_spec(
        &self,
        application: &ApplicationRecord,
        spec: &ApplicationSpec,
        image: &str,
        env: &[(String, String)],
        name: &str,
    ) -> ContainerSpec {
        let engine = self.engine;
        ContainerSpec {
            name: name.to_owned(),
            image: image.to_owned(),
            env: env.to_vec(),
            labels: labels::application_container_labels(
                engine.organization,
                self.project.id,
                self.environment.id,
                application.id,
                self.deployment.id,
            ),
            network: naming::environment_network(self.environment.id),
            network_aliases: vec![application.name.to_string()],
            port: spec.port,
            cpu_millis: spec.cpu.map(|c| c.millis()),
            memory_bytes: spec.memory.map(|m| m.bytes()),
            command: None,
            mounts: spec
                .volumes
                .iter()
                .map(|v| VolumeMount {
                    volume: naming::application_volume(application.id, &v.name),
                    path: v.path.clone(),
                })
                .collect(),
        }
    }

    async fn ensure_network(&self) -> Result<(), StepFailure> {
        let engine = self.engine;
        engine
            .adapters
            .runtime
            .ensure_network(&NetworkSpec {
                name: naming::environment_network(self.environment.id),
                labels: labels::environment_labels(
                    engine.organization,
                    self.project.id,
                    self.environment.id,
                ),
            })
            .await
            .map_err(|e| StepFailure::new(StepName::Start, e.to_string()))
    }

    async fn run_release_command(
        &self,
        application: &ApplicationRecord,
        release: &Release,
        env: &[(String, String)],
        base_name: &str,
        command: &str,
    ) -> StepResult<()> {
        let fail = |message: String| StepFailure::new(StepName::Release, message);
        self.ensure_network().await.map_err(|f| fail(f.message))?;
        let spec = self.container_spec(
            application,
            &release.snapshot.spec,
            &release.image,
            env,
            &format!("{base_name}-release"),
        );
        let sink = self.log.for_step(Some(application.name.as_str()), StepName::Release.as_str());
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(256);
        let argv = vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()];
        let runtime = &self.engine.adapters.runtime;
        let run =
            runtime.run_to_completion(&spec, &argv, self.engine.config.deadlines.release, sender);
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let collect = async {
            while let Some(line) = receiver.recv().await {
                sink.line(&line);
                if tail.len() == 15 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        };
        let (code, ()) = tokio::join!(run, collect);
        let code = code.map_err(|e| fail(e.to_string()))?;
        if code != 0 {
            let mut message = format!(
                "the release command `{command}` exited with code {code}; nothing was switched"
            );
            if !tail.is_empty() {
                message.push_str("; last output:\n");
                message.push_str(&tail.into_iter().collect::<Vec<_>>().join("\n"));
            }
            return Err(fail(message));
        }
        Ok(((), Some(format!("`{command}` exited with code 0"))))
    }

    async fn start_instances(
        &self,
        application: &ApplicationRecord,
        spec: &ApplicationSpec,
        image: &str,
        env: &[(String, String)],
        names: &[String],
    ) -> StepResult<Vec<Option<SocketAddr>>> {
        self.ensure_network().await?;
        let runtime = &self.engine.adapters.runtime;
        for volume in &spec.volumes {
            let labels = labels::application_volume_labels(
                self.engine.organization,
                self.project.id,
                self.environment.id,
                application.id,
            );
            let name = naming::application_volume(application.id, &volume.name);
            runtime
                .ensure_volume(&VolumeSpec { name, labels })
                .await
                .map_err(|e| StepFailure::new(StepName::Start, e.to_string()))?;
        }
        let starts = names.iter().map(|name| {
            let container = self.container_spec(application, spec, image, env, name);
            async move { runtime.start_container(&container).await }
        });
        let mut addresses = Vec::with_capacity(names.len());
        for state in futures_util::future::join_all(starts).await {
            let state = state.map_err(|e| StepFailure::new(StepName::Start, e.to_string()))?;
            addresses.push(state.published);
        }
        let shown: Vec<String> = addresses.iter().flatten().map(ToString::to_string).collect();
        let message = if shown.is_empty() {
            format!("started {} instance(s)", names.len())
        } else {
            format!("started {} instance(s) on {}", names.len(), shown.join(", "))
        };
        Ok((addresses, Some(message)))
    }

    async fn wait_all_healthy(
        &self,
        spec: &ApplicationSpec,
        names: &[String],
        addresses: &[Option<SocketAddr>],
    ) -> StepResult<()> {
        tokio::time::sleep(spec.health_check.start_delay()).await;
        let waits = names
            .iter()
            .zip(addresses)
            .map(|(name, address)| self.wait_healthy(spec, name, *address));
        for result in futures_util::future::join_all(waits).await {
            result?;
        }
        let what = match (&spec.health_check.probe, spec.port) {
            (_, None) => "running (no port to check)".to_owned(),
            (berth_domain::health::HealthProbe::Tcp, Some(port)) => {
                format!("accepting connections on port {port}")
            }
            (berth_domain::health::HealthProbe::Http { path, .. }, Some(_)) => {
                format!("GET {path} answers as expected")
            }
        };
        Ok(((), Some(format!("{} instance(s) {what}", names.len()))))
    }

    /// Waits until one instance passes its check (or, for a worker, stays up for a
    /// moment), failing early when it exits.
    async fn wait_healthy(
        &self,
        spec: &ApplicationSpec,
        container_name: &str,
        published: Option<SocketAddr>,
    ) -> Result<(), StepFailure> {
        let runtime = &self.engine.adapters.runtime;
        let deadline = tokio::time::Instant::now() + self.engine.config.deadlines.health;
        let worker_settle = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut last_error = String::from("no check ran yet");
        loop {
            let state = runtime
                .inspect_container(container_name)
                .await
                .map_err(|e| StepFailure::new(StepName::Health, e.to_string()))?;
            let Some(state) = state else {
                return Err(StepFailure::new(
                    StepName::Health,
                    format!("{container_name} disappeared while starting"),
                ));
            };
            if !state.running {
                let tail = runtime.container_logs(container_name, 15).await.unwrap_or_default();
                let mut message = if state.oom_killed {
                    format!(
                        "{container_name} was killed because it exceeded its memory limit{} (OOM); raise it with `berth application update --memory MB`",
                        spec.memory.map(|m| format!(" of {} MiB", m.mib())).unwrap_or_default()
                    )
                } else {
                    format!(
                        "{container_name} exited with code {} before it became healthy",
                        state.exit_code.unwrap_or(-1)
                    )
                };
                if !tail.is_empty() {
                    message.push_str("; last output:\n");
                    message.push_str(&tail.join("\n"));
                }
                return Err(StepFailure::new(StepName::Health, message));
            }
            match published {
                Some(address) => match crate::probe::probe(
                    &spec.health_check.probe,
                    address,
                    spec.health_check.timeout(),
                )
                .await
                {
                    Ok(()) => return Ok(()),
                    Err(error) => last_error = error,
                },
                None if tokio::time::Instant::now() >= worker_settle => return Ok(()),
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepFailure::new(
                    StepName::Health,
                    format!(
                        "{container_name} did not pass its health check on port {} within {} s (last result: {last_error}); make sure the application listens on 0.0.0.0 at the port given in $PORT",
                        spec.port.unwrap_or(0),
                        self.engine.config.deadlines.health.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn switch_traffic(
        &self,
        application: &ApplicationRecord,
        spec: &ApplicationSpec,
        names: &[String],
        addresses: &[Option<SocketAddr>],
    ) -> StepResult<()> {
        let engine = self.engine;
        let fail = |message: String| StepFailure::new(StepName::Route, message);
        let _guard = engine.reconcile_lock.lock().await;
        let upstreams: Vec<SocketAddr> = addresses.iter().flatten().copied().collect();
        let message = if spec.is_routed() {
            engine
                .publish_routes_locked(Some((application.id, upstreams.clone())))
                .await
                .map_err(|e| fail(e.to_string()))?;
            let host = berth_domain::Hostname::for_application(
                &application.name,
                &self.environment.name,
                &self.project.name,
                &engine.config.base_domain,
            );
            let shown: Vec<String> = upstreams.iter().map(ToString::to_string).collect();
            Some(format!("{host} now routes to {}", shown.join(", ")))
        } else {
            Some("no public route (private application or worker)".to_owned())
        };
        engine
            .store
            .set_current_deployment(application.id, self.deployment.id)
            .await
            .map_err(|e| fail(e.to_string()))?;
        // From now on a crash is Docker's to restart (with backoff), not a failed rollout.
        for name in names {
            if let Err(error) = engine.adapters.runtime.set_restart_on_failure(name, true).await {
                tracing::warn!(container = %name, %error, "could not enable restarts");
            }
        }
        Ok(((), message))
    }

    async fn capture_container_output(&self, application: &str, container_name: &str) {
        let sink = self.log.for_step(Some(application), StepName::Health.as_str());
        if let Ok(lines) = self.engine.adapters.runtime.container_logs(container_name, 50).await {
            if lines.is_empty() {
                return;
            }
            sink.line(&format!("--- last output of {container_name} ---"));
            for line in lines {
                sink.line(&line);
            }
        }
    }

    async fn discard_containers(&self, names: &[String]) {
        for name in names {
            if let Err(error) =
                self.engine.adapters.runtime.remove_container(name, Duration::from_secs(2)).await
            {
                tracing::warn!(container = %name, %error, "could not remove a failed container; the reconciler will");
            }
        }
    }
}

/// Whether a build failed because a layer it was reusing vanished under it.
fn is_vanished_layer(error: &crate::adapters::BuildError) -> bool {
    let text = error.to_string();
    text.contains("failed to get digest")
        || text.contains("unknown parent image")
        || text.contains("No such image")
}

async fn remove_dir(path: &std::path::Path) {
    if tokio::fs::metadata(path).await.is_ok() {
        if let Err(error) = tokio::fs::remove_dir_all(path).await {
            tracing::warn!(path = %path.display(), %error, "could not remove a checkout");
        }
    }
}
