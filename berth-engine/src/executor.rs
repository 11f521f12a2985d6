//! The deployment executor: runs an environment deployment to a terminal state — its
//! databases first, then its applications in dependency order — and records each step
//! per application with its duration and log.
//!
//! Expected flow: ensure the databases (`databases.rs`); group the applications into
//! waves by `depends_on` (`berth_domain::ordering`); deploy the applications of a wave
//! in parallel, at most `deploy_concurrency` at once, each through `prepare.rs` (clone,
//! build or share a build, or take a rollback's image) and `rollout.rs` (release, start,
//! health, route, retire); start the next wave when the previous one ended.
//!
//! Guarantees: every step runs under its deadline and can be cancelled before `route`;
//! an application that fails keeps its previous version serving, and the applications
//! depending on it (directly or not) are recorded `skipped` ("dependency X failed") and
//! keep theirs too; independent applications still complete; the deployment is recorded
//! failed, naming the first application that failed. A cancellation stops every
//! application that has not switched traffic and starts no further wave (the applications
//! of those waves are recorded `skipped`, and the deployment cancelled even when every
//! application that started completed).
//!
//! Caveats: waves are strict (an application of wave 2 waits for all of wave 1), which
//! keeps the plan that `berth deploy --dry-run` prints exactly what runs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use berth_domain::deployment::{DeploymentStatus, FailureReason, StepName, StepStatus};
use berth_domain::ordering::{application_waves, dependents_of, DependencyNode};
use berth_domain::spec::ApplicationSource;
use berth_store::{
    ApplicationRecord, DeploymentRecord, EnvironmentRecord, Lifecycle, ProjectRecord,
};
use tokio_util::sync::CancellationToken;

use crate::adapters::LogSink;
use crate::engine::{Engine, EngineError};
use crate::logsink::DeploymentLog;
use crate::prepare::shared_build_key;
use crate::shared_builds::SharedBuilds;

/// A failed step, with a reason a person can act on.
pub(crate) struct StepFailure {
    pub(crate) step: StepName,
    pub(crate) message: String,
    pub(crate) cancelled: bool,
}

impl StepFailure {
    pub(crate) fn new(step: StepName, message: impl Into<String>) -> Self {
        Self { step, message: message.into(), cancelled: false }
    }
}

pub(crate) type StepResult<T> = Result<(T, Option<String>), StepFailure>;

/// How a deployment that did not complete ended: the reason, and whether it was cancelled.
type Unfinished = (FailureReason, bool);

/// The context shared by the steps of one deployment (and by its concurrent
/// applications: everything here is used through `&self`).
pub(crate) struct Run<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) deployment: &'a DeploymentRecord,
    pub(crate) project: &'a ProjectRecord,
    pub(crate) environment: &'a EnvironmentRecord,
    pub(crate) log: DeploymentLog,
    cancel: CancellationToken,
    /// Which applications share whose build (`shared_builds.rs`).
    pub(crate) shared_builds: SharedBuilds,
    /// Set once the environment's network exists (see `Run::ensure_network`).
    pub(crate) network_ready: tokio::sync::OnceCell<()>,
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

    async fn execute_inner(
        &self,
        deployment: &DeploymentRecord,
        cancel: CancellationToken,
    ) -> Result<Result<(), Unfinished>, EngineError> {
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
        let has_databases = self.has_active_databases(&environment).await?;
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
            shared_builds: SharedBuilds::default(),
            network_ready: tokio::sync::OnceCell::new(),
        };
        // Databases first: applications start only once the databases they use answer.
        let result = match run.ensure_databases().await? {
            Ok(()) => run.deploy_applications(&applications).await?,
            Err((database, failure)) => Err((
                FailureReason {
                    step: failure.step,
                    application: Some(database),
                    message: failure.message,
                },
                failure.cancelled,
            )),
        };
        drop(run);
        // Every log line is stored before the deployment is marked finished.
        let _ = writer.await;
        Ok(result)
    }
}

impl Run<'_> {
    /// Deploys the applications wave by wave (see the module documentation).
    async fn deploy_applications(
        &self,
        applications: &[ApplicationRecord],
    ) -> Result<Result<(), Unfinished>, EngineError> {
        let nodes: Vec<DependencyNode> = applications
            .iter()
            .map(|a| DependencyNode {
                name: a.name.to_string(),
                depends_on: a.spec.depends_on.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let waves = match application_waves(&nodes) {
            Ok(waves) => waves,
            Err(error) => {
                let reason = FailureReason {
                    step: StepName::Clone,
                    application: None,
                    message: error.to_string(),
                };
                return Ok(Err((reason, false)));
            }
        };
        let by_name: HashMap<&str, &ApplicationRecord> =
            applications.iter().map(|a| (a.name.as_str(), a)).collect();
        self.designate_shared_builds(&waves, &by_name);
        let concurrency = self.engine.config.deploy_concurrency.max(1);
        let mut failures: Vec<(String, StepFailure)> = Vec::new();
        // Application → the failed dependency that keeps it from deploying.
        let mut blocked: BTreeMap<String, String> = BTreeMap::new();
        // Applications of waves that a cancellation kept from starting.
        let mut not_started: Vec<String> = Vec::new();
        for wave in &waves {
            // A cancellation starts no further wave; it must not end as a success with the
            // applications of the waves it kept from starting never deployed.
            let cancelled = self.cancel.is_cancelled();
            let mut runnable = Vec::new();
            for name in wave {
                match blocked.get(name) {
                    Some(dependency) => {
                        self.record_skipped(name, &format!("dependency {dependency} failed"))
                            .await?;
                    }
                    None if cancelled => {
                        self.record_skipped(name, "cancelled by request before it started").await?;
                        not_started.push(name.clone());
                    }
                    None => runnable.extend(by_name.get(name.as_str()).copied()),
                }
            }
            if cancelled {
                continue;
            }
            // At most `concurrency` applications between their first and last step.
            let permits = tokio::sync::Semaphore::new(concurrency);
            let deployments: Vec<_> = runnable
                .into_iter()
                .map(|application| {
                    let permits = &permits;
                    async move {
                        let _permit = permits.acquire().await;
                        let result = self.deploy_application(application).await;
                        // Whatever happened, applications waiting for its build go on.
                        self.shared_builds.publish_not_built(application.name.as_str());
                        (application, result)
                    }
                })
                .collect();
            let results = futures_util::future::join_all(deployments).await;
            for (application, result) in results {
                if let Err(failure) = result? {
                    let name = application.name.to_string();
                    for dependent in dependents_of(&nodes, &name) {
                        blocked.entry(dependent).or_insert_with(|| name.clone());
                    }
                    failures.push((name, failure));
                }
            }
        }
        let Some((application, first)) = failures.first() else {
            if not_started.is_empty() {
                return Ok(Ok(()));
            }
            let reason = FailureReason {
                step: StepName::Clone,
                application: None,
                message: format!(
                    "cancelled by request before {} started; their previous versions keep serving",
                    not_started.join(", ")
                ),
            };
            return Ok(Err((reason, true)));
        };
        let mut message = first.message.clone();
        if failures.len() > 1 {
            let others: Vec<&str> = failures[1..].iter().map(|(name, _)| name.as_str()).collect();
            message.push_str(&format!(" (also failed: {})", others.join(", ")));
        }
        if !blocked.is_empty() {
            let skipped: Vec<String> = blocked
                .iter()
                .map(|(name, dependency)| format!("{name} (dependency {dependency} failed)"))
                .collect();
            message.push_str(&format!("; not deployed: {}", skipped.join(", ")));
        }
        if !not_started.is_empty() {
            message
                .push_str(&format!("; cancelled before they started: {}", not_started.join(", ")));
        }
        let cancelled =
            !not_started.is_empty() || failures.iter().any(|(_, failure)| failure.cancelled);
        let reason =
            FailureReason { step: first.step, application: Some(application.clone()), message };
        Ok(Err((reason, cancelled)))
    }

    /// Groups the Git applications that would build the same sources (a rollback builds
    /// nothing); the first of each group in wave order builds for the others.
    fn designate_shared_builds(
        &self,
        waves: &[Vec<String>],
        by_name: &HashMap<&str, &ApplicationRecord>,
    ) {
        if self.deployment.rollback_of.is_some() {
            return;
        }
        let order: Vec<(String, Option<String>)> = waves
            .iter()
            .flatten()
            .filter_map(|name| by_name.get(name.as_str()))
            .map(|application| {
                let key = match &application.spec.source {
                    ApplicationSource::Git(git) => {
                        Some(shared_build_key(git, &self.environment.branch))
                    }
                    ApplicationSource::Image { .. } => None,
                };
                (application.name.to_string(), key)
            })
            .collect();
        self.shared_builds.designate(&order);
    }

    /// Records that an application was not deployed, as its `clone` step.
    pub(crate) async fn record_skipped(
        &self,
        application: &str,
        reason: &str,
    ) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let step = store.start_step(self.deployment.id, Some(application), StepName::Clone).await?;
        self.log.for_step(Some(application), StepName::Clone.as_str()).line(reason);
        store.finish_step(step, StepStatus::Skipped, Some(reason)).await?;
        self.shared_builds.publish_not_built(application);
        Ok(())
    }

    /// Runs one recorded step under its deadline, cancellable until `route`.
    pub(crate) async fn step<T>(
        &self,
        service: &str,
        name: StepName,
        deadline: Duration,
        work: impl std::future::Future<Output = StepResult<T>>,
    ) -> Result<Result<T, StepFailure>, EngineError> {
        let work =
            async { work.await.map(|(value, message)| (value, StepStatus::Succeeded, message)) };
        self.step_with_status(service, name, deadline, work).await
    }

    /// Like `step`, for work that decides the recorded status itself (a skipped clone).
    pub(crate) async fn step_with_status<T>(
        &self,
        service: &str,
        name: StepName,
        deadline: Duration,
        work: impl std::future::Future<Output = Result<(T, StepStatus, Option<String>), StepFailure>>,
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
            Ok((_, status, message)) => {
                store.finish_step(step_id, *status, message.as_deref()).await?
            }
            Err(failure) => {
                store.finish_step(step_id, StepStatus::Failed, Some(&failure.message)).await?
            }
        }
        Ok(outcome.map(|(value, _, _)| value))
    }
}
