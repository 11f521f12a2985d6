//! The deployment executor: runs the steps `clone`, `build`, `start`, `health`, `route`,
//! `retire` for each application of a deployment, records each step with its duration
//! and log, and on failure removes what it started so the previous version keeps serving.
//!
//! Expected flow per application: fetch the branch head, build (or reuse) the image,
//! start a new container beside the old one, wait until it accepts connections, switch
//! the proxy route to it, record it as current, then stop the old container.
//!
//! Guarantees: every step runs under its deadline; the route switches only after the new
//! container is healthy; a failure before the switch leaves the old container serving
//! and removes the new one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_domain::deployment::{DeploymentStatus, FailureReason, StepName, StepStatus};
use berth_domain::labels;
use berth_domain::spec::{effective_branch, ApplicationSource, GitCredentialKind};
use berth_domain::variables::{resolve, BuiltinVariables, ResolvedVariable};
use berth_store::{
    ApplicationRecord, DeploymentRecord, DeploymentServiceRecord, EnvironmentRecord, Lifecycle,
    ProjectRecord, StoredValue, VariableOwner,
};
use tokio::io::AsyncReadExt;

use crate::adapters::{
    BuildRequest, ContainerSpec, FetchRequest, GitCredentials, LogSink, NetworkSpec, SecretString,
};
use crate::engine::{Engine, EngineError};
use crate::logsink::DeploymentLog;
use crate::naming;

/// A failed step, with a reason a person can act on.
struct StepFailure {
    step: StepName,
    message: String,
}

impl StepFailure {
    fn new(step: StepName, message: impl Into<String>) -> Self {
        Self { step, message: message.into() }
    }
}

/// The context shared by the steps of one deployment.
struct Run<'a> {
    engine: &'a Engine,
    deployment: &'a DeploymentRecord,
    project: &'a ProjectRecord,
    environment: &'a EnvironmentRecord,
    log: DeploymentLog,
}

impl Engine {
    /// Executes a claimed (running) deployment to a terminal state.
    pub(crate) async fn execute(&self, deployment: DeploymentRecord) {
        let id = deployment.id;
        let outcome = self.execute_inner(&deployment).await;
        let (status, failure) = match outcome {
            Ok(Ok(())) => (DeploymentStatus::Succeeded, None),
            Ok(Err(reason)) => (DeploymentStatus::Failed, Some(reason)),
            Err(error) => (
                DeploymentStatus::Failed,
                Some(FailureReason {
                    step: StepName::Clone,
                    application: None,
                    message: format!("internal error: {error}"),
                }),
            ),
        };
        if let Some(reason) = &failure {
            tracing::warn!(deployment = %id, %reason, "deployment failed");
            let _ = self.store.fail_open_steps(id, &reason.message).await;
        } else {
            tracing::info!(deployment = %id, "deployment succeeded");
        }
        if let Err(error) = self.store.finish_deployment(id, status, failure.as_ref()).await {
            tracing::error!(deployment = %id, %error, "could not record the end of the deployment");
        }
    }

    async fn execute_inner(
        &self,
        deployment: &DeploymentRecord,
    ) -> Result<Result<(), FailureReason>, EngineError> {
        let fail =
            |step, message: String| Ok(Err(FailureReason { step, application: None, message }));
        let Some(environment) = self.store.environment(deployment.environment_id).await? else {
            return fail(StepName::Clone, "the environment was deleted".into());
        };
        let Some(project) = self.store.project(deployment.project_id).await? else {
            return fail(StepName::Clone, "the project was deleted".into());
        };
        if environment.lifecycle == Lifecycle::Deleting {
            return fail(StepName::Clone, "the environment is being deleted".into());
        }
        let applications: Vec<ApplicationRecord> = self
            .store
            .list_applications(environment.id)
            .await?
            .into_iter()
            .filter(|a| a.lifecycle == Lifecycle::Active)
            .filter(|a| deployment.application_id.is_none_or(|only| only == a.id))
            .collect();
        if applications.is_empty() {
            return fail(
                StepName::Clone,
                "there is no application to deploy; create one with `berth application create`"
                    .into(),
            );
        }
        let (log, writer) = DeploymentLog::start(self.store.clone(), deployment.id);
        let run =
            Run { engine: self, deployment, project: &project, environment: &environment, log };
        let mut result = Ok(());
        for application in &applications {
            if let Err(failure) = run.deploy_application(application).await? {
                result = Err(FailureReason {
                    step: failure.step,
                    application: Some(application.name.to_string()),
                    message: failure.message,
                });
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
    async fn step<T>(
        &self,
        application: &ApplicationRecord,
        name: StepName,
        deadline: Duration,
        work: impl std::future::Future<Output = Result<(T, Option<String>), StepFailure>>,
    ) -> Result<Result<T, StepFailure>, EngineError> {
        let store = &self.engine.store;
        let step_id =
            store.start_step(self.deployment.id, Some(application.name.as_str()), name).await?;
        let outcome = match tokio::time::timeout(deadline, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StepFailure::new(
                name,
                format!(
                    "the {name} step did not finish within its deadline of {} s",
                    deadline.as_secs()
                ),
            )),
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
        let app_name = application.name.as_str();

        // clone + build (or pull)
        let (image, commit) = match &application.spec.source {
            ApplicationSource::Git(git) => {
                let checkout = engine
                    .config
                    .checkouts_dir()
                    .join(self.deployment.id.to_string())
                    .join(app_name);
                let fetched = self
                    .step(
                        application,
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
                    labels: labels::image_labels(self.project.id),
                    timeout: deadlines.build,
                };
                let built = self
                    .step(
                        application,
                        StepName::Build,
                        deadlines.build,
                        self.build_image(request, app_name),
                    )
                    .await?;
                remove_dir(&checkout).await;
                if let Err(failure) = built {
                    return Ok(Err(failure));
                }
                (tag, Some(commit))
            }
            ApplicationSource::Image { reference } => {
                let sink = self.log.for_step(Some(app_name), StepName::Build.as_str());
                let pulled = self
                    .step(application, StepName::Build, deadlines.build, async {
                        engine
                            .adapters
                            .builder
                            .ensure_image(reference, &sink)
                            .await
                            .map(|()| ((), Some(format!("using image {reference}"))))
                            .map_err(|e| StepFailure::new(StepName::Build, e.to_string()))
                    })
                    .await?;
                if let Err(failure) = pulled {
                    return Ok(Err(failure));
                }
                (reference.to_string(), None)
            }
        };
        let mut service = DeploymentServiceRecord {
            deployment_id: self.deployment.id,
            application_id: application.id,
            application_name: app_name.to_owned(),
            git_commit: commit.clone(),
            image: Some(image.clone()),
            container_name: None,
        };
        engine.store.record_service(&service).await?;

        // start
        let container_name = naming::application_container(
            &self.project.name,
            &self.environment.name,
            &application.name,
            self.deployment.id,
        );
        service.container_name = Some(container_name.clone());
        // Recorded before the container exists, so a crash right after start still finds
        // (and garbage-collects) it through its labels and this record.
        engine.store.record_service(&service).await?;
        let started = self
            .step(
                application,
                StepName::Start,
                deadlines.start,
                self.start_container(application, &image, &container_name, commit.as_deref()),
            )
            .await?;
        let published = match started {
            Ok(published) => published,
            Err(failure) => {
                self.discard_container(&container_name).await;
                return Ok(Err(failure));
            }
        };

        // health
        let healthy = self
            .step(
                application,
                StepName::Health,
                deadlines.health + Duration::from_secs(5),
                self.wait_healthy(application, &container_name, published),
            )
            .await?;
        if let Err(failure) = healthy {
            self.capture_container_output(app_name, &container_name).await;
            self.discard_container(&container_name).await;
            return Ok(Err(failure));
        }

        // route: switch traffic, then record the new container as current.
        let previous = engine.serving_container_name(application).await?;
        let routed = self
            .step(application, StepName::Route, deadlines.route, async {
                let _guard = engine.reconcile_lock.lock().await;
                let override_route = published.map(|address| (application.id, address));
                let message = if application.spec.is_routed() {
                    engine
                        .publish_routes(override_route)
                        .await
                        .map_err(|e| StepFailure::new(StepName::Route, e.to_string()))?;
                    let host = berth_domain::Hostname::for_application(
                        &application.name,
                        &self.environment.name,
                        &self.project.name,
                        &engine.config.base_domain,
                    );
                    Some(format!(
                        "{host} now routes to {}",
                        published.map(|a| a.to_string()).unwrap_or_default()
                    ))
                } else {
                    Some("no public route (private application or worker)".to_owned())
                };
                engine
                    .store
                    .set_current_deployment(application.id, self.deployment.id)
                    .await
                    .map_err(|e| StepFailure::new(StepName::Route, e.to_string()))?;
                Ok(((), message))
            })
            .await?;
        if let Err(failure) = routed {
            self.discard_container(&container_name).await;
            return Ok(Err(failure));
        }

        // retire
        let grace = deadlines.retire_grace;
        let retired = self
            .step(application, StepName::Retire, grace + Duration::from_secs(30), async {
                match previous.filter(|p| *p != container_name) {
                    Some(old) => engine
                        .adapters
                        .runtime
                        .remove_container(&old, grace)
                        .await
                        .map(|()| ((), Some(format!("stopped {old}"))))
                        .map_err(|e| StepFailure::new(StepName::Retire, e.to_string())),
                    None => Ok(((), Some("no previous version to retire".to_owned()))),
                }
            })
            .await?;
        // A failed retire leaves an extra container that the reconciler collects; the new
        // version already serves, so the deployment itself succeeded.
        if let Err(failure) = retired {
            tracing::warn!(application = app_name, reason = %failure.message, "retire failed; the reconciler will collect the old container");
        }
        Ok(Ok(()))
    }

    async fn clone_source(
        &self,
        application: &ApplicationRecord,
        checkout: &std::path::Path,
    ) -> Result<(String, Option<String>), StepFailure> {
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

    async fn build_image(
        &self,
        request: BuildRequest,
        application: &str,
    ) -> Result<((), Option<String>), StepFailure> {
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
        builder.build(&request, &sink).await.map_err(as_failure)?;
        Ok(((), Some(format!("built {}", request.tag))))
    }

    async fn start_container(
        &self,
        application: &ApplicationRecord,
        image: &str,
        container_name: &str,
        commit: Option<&str>,
    ) -> Result<(Option<SocketAddr>, Option<String>), StepFailure> {
        let engine = self.engine;
        let env = self.container_environment(application, commit).await?;
        let network = naming::environment_network(self.environment.id);
        let fail =
            |e: crate::adapters::RuntimeError| StepFailure::new(StepName::Start, e.to_string());
        engine
            .adapters
            .runtime
            .ensure_network(&NetworkSpec {
                name: network.clone(),
                labels: labels::environment_labels(
                    engine.organization,
                    self.project.id,
                    self.environment.id,
                ),
            })
            .await
            .map_err(fail)?;
        let spec = ContainerSpec {
            name: container_name.to_owned(),
            image: image.to_owned(),
            env,
            labels: labels::application_container_labels(
                engine.organization,
                self.project.id,
                self.environment.id,
                application.id,
                self.deployment.id,
            ),
            network,
            network_aliases: vec![application.name.to_string()],
            port: application.spec.port,
            cpu_millis: application.spec.cpu.map(|c| c.millis()),
            memory_bytes: application.spec.memory.map(|m| m.bytes()),
        };
        let state = engine.adapters.runtime.start_container(&spec).await.map_err(fail)?;
        let message = match state.published {
            Some(address) => format!(
                "started {container_name}, port {} published on {address}",
                spec.port.unwrap_or(0)
            ),
            None => format!("started {container_name}"),
        };
        Ok((state.published, Some(message)))
    }

    /// Project, environment and application variables (secrets decrypted) plus built-ins.
    async fn container_environment(
        &self,
        application: &ApplicationRecord,
        commit: Option<&str>,
    ) -> Result<Vec<(String, String)>, StepFailure> {
        let engine = self.engine;
        let fail = |message: String| StepFailure::new(StepName::Start, message);
        let records = engine
            .store
            .variables_for_application(VariableOwner {
                project_id: self.project.id,
                environment_id: Some(self.environment.id),
                application_id: Some(application.id),
            })
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut resolved = Vec::with_capacity(records.len());
        for record in records {
            let (value, secret) = match &record.value {
                StoredValue::Plain(text) => (text.clone(), false),
                StoredValue::Encrypted(sealed) => (
                    engine
                        .key
                        .decrypt_string(sealed)
                        .map_err(|e| fail(format!("variable {}: {e}", record.name)))?,
                    true,
                ),
            };
            resolved.push(ResolvedVariable {
                scope: record.owner.scope(),
                name: record.name,
                value,
                secret,
            });
        }
        let mut env: Vec<(String, String)> =
            resolve(&resolved).into_values().map(|v| (v.name.to_string(), v.value)).collect();
        env.extend(
            BuiltinVariables {
                port: application.spec.port,
                project_name: self.project.name.as_str(),
                environment_name: self.environment.name.as_str(),
                application_name: application.name.as_str(),
                git_commit: commit,
                deployment_id: self.deployment.id.to_string(),
            }
            .to_pairs(),
        );
        Ok(env)
    }

    /// Waits until the container accepts connections on its published port (or, for a
    /// worker, stays up for a moment), failing early when it exits.
    async fn wait_healthy(
        &self,
        application: &ApplicationRecord,
        container_name: &str,
        published: Option<SocketAddr>,
    ) -> Result<((), Option<String>), StepFailure> {
        let runtime = &self.engine.adapters.runtime;
        let deadline = tokio::time::Instant::now() + self.engine.config.deadlines.health;
        let worker_settle = tokio::time::Instant::now() + Duration::from_secs(2);
        let memory = application.spec.memory.map(|m| m.mib());
        loop {
            let state = runtime
                .inspect_container(container_name)
                .await
                .map_err(|e| StepFailure::new(StepName::Health, e.to_string()))?;
            let Some(state) = state else {
                return Err(StepFailure::new(
                    StepName::Health,
                    "the container disappeared while starting",
                ));
            };
            if !state.running {
                let tail = runtime.container_logs(container_name, 15).await.unwrap_or_default();
                let mut message = if state.oom_killed {
                    format!(
                        "the container was killed because it exceeded its memory limit{} (OOM); raise it with `berth application update --memory MB`",
                        memory.map(|m| format!(" of {m} MiB")).unwrap_or_default()
                    )
                } else {
                    format!(
                        "the container exited with code {} before it became healthy",
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
                Some(address) if accepts_connections(address).await => {
                    return Ok((
                        (),
                        Some(format!(
                            "accepting connections on port {}",
                            application.spec.port.unwrap_or(0)
                        )),
                    ));
                }
                Some(_) => {}
                None if tokio::time::Instant::now() >= worker_settle => {
                    return Ok(((), Some("running (no port to check)".to_owned())));
                }
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepFailure::new(
                    StepName::Health,
                    format!(
                        "the application did not accept connections on port {} within {} s; make sure it listens on 0.0.0.0 at the port given in $PORT",
                        application.spec.port.unwrap_or(0),
                        self.engine.config.deadlines.health.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn capture_container_output(&self, application: &str, container_name: &str) {
        let sink = self.log.for_step(Some(application), StepName::Health.as_str());
        if let Ok(lines) = self.engine.adapters.runtime.container_logs(container_name, 50).await {
            sink.line(&format!("--- last output of {container_name} ---"));
            for line in lines {
                sink.line(&line);
            }
        }
    }

    async fn discard_container(&self, container_name: &str) {
        if let Err(error) = self
            .engine
            .adapters
            .runtime
            .remove_container(container_name, Duration::from_secs(2))
            .await
        {
            tracing::warn!(container = container_name, %error, "could not remove a failed container; the reconciler will");
        }
    }
}

/// A TCP check through the published port. Docker's userland proxy accepts connections
/// on a published port even when nothing listens in the container, and then closes them
/// at once; so a connection counts only if it stays open (or the server speaks first).
async fn accepts_connections(address: SocketAddr) -> bool {
    let connect =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(address)).await;
    let Ok(Ok(mut stream)) = connect else {
        return false;
    };
    let mut buffer = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(150), stream.read(&mut buffer)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

async fn remove_dir(path: &std::path::Path) {
    let path: PathBuf = path.to_owned();
    if tokio::fs::metadata(&path).await.is_ok() {
        if let Err(error) = tokio::fs::remove_dir_all(&path).await {
            tracing::warn!(path = %path.display(), %error, "could not remove a checkout");
        }
    }
}
