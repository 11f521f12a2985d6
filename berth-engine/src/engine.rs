//! The engine: owns the adapters and the store, runs queued deployments (one at a time per
//! environment) and the reconciler, and answers questions about what is running.
//!
//! Expected flow: `Engine::run` first recovers from a previous crash (deployments left
//! `running` are marked failed as interrupted), reconciles, then loops: claim queued
//! deployments, execute them in tasks, reconcile after each and every few seconds.
//!
//! Guarantees: nothing depends on in-memory state surviving; the store is the truth.
//! Garbage collection only removes objects with Berth's labels (see `plan_cleanup`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_domain::deployment::DeploymentStatus;
use berth_domain::deployment::{StepName, StepStatus};
use berth_domain::{ApplicationId, DeploymentId, OrganizationId};
use berth_store::{ApplicationRecord, Store, StoreError};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::adapters::{Builder, ContainerState, Router, Runtime, RuntimeError, Source};
use crate::config::EngineConfig;
use crate::secrets::MasterKey;

/// The adapters the engine drives.
#[derive(Clone)]
pub struct Adapters {
    pub source: Arc<dyn Source>,
    pub builder: Arc<dyn Builder>,
    pub runtime: Arc<dyn Runtime>,
    pub router: Arc<dyn Router>,
    /// Checks an external database's credentials before it is recorded.
    pub database_verifier: Arc<dyn crate::database_access::DatabaseVerifier>,
    /// Where database backups are kept (a local directory, or an S3-compatible store).
    pub backup_store: Arc<dyn crate::backup_store::BackupStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Router(#[from] crate::adapters::RouterError),
}

pub struct Engine {
    pub(crate) store: Store,
    pub(crate) adapters: Adapters,
    pub(crate) key: MasterKey,
    pub(crate) config: EngineConfig,
    pub(crate) organization: OrganizationId,
    /// Wakes the queue loop (a deployment was queued or ended).
    wake: Notify,
    /// Wakes the reconciler (something was marked for deletion, a deployment ended).
    reconcile_wake: Notify,
    running: AtomicUsize,
    last_generation: AtomicU64,
    /// Serialises reconciler passes and route publication.
    pub(crate) reconcile_lock: Mutex<()>,
    /// Cancellation handles of the deployments running in this process.
    cancellations: std::sync::Mutex<HashMap<DeploymentId, CancellationToken>>,
    /// Health of serving instances by container name (observation, rebuilt after restart).
    pub(crate) health: std::sync::Mutex<HashMap<String, InstanceHealth>>,
    /// The routes last accepted by the proxy, to publish only changes.
    pub(crate) last_routes: std::sync::Mutex<Option<Vec<berth_domain::routes::Route>>>,
}

/// What the health monitor knows of one serving instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceHealth {
    pub(crate) consecutive_failures: u32,
    pub(crate) last_checked: Option<tokio::time::Instant>,
    pub(crate) last_error: Option<String>,
    /// The consecutive failures the last published route table was computed from:
    /// status reports an instance as failing only once that table left it out, so
    /// "degraded" never shows while the proxy still sends it traffic.
    pub(crate) published_failures: u32,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("organization", &self.organization).finish_non_exhaustive()
    }
}

/// What the runtime says about an application's serving container.
#[derive(Debug, Clone)]
pub struct ObservedApplication {
    /// `never_deployed`, `deploying`, `running`, `degraded`, `crashed`, `stopped`, `deleting`.
    pub status: &'static str,
    pub instances: Vec<ContainerState>,
    pub commit: Option<String>,
    pub message: Option<String>,
}

impl Engine {
    pub fn new(
        store: Store,
        adapters: Adapters,
        key: MasterKey,
        config: EngineConfig,
        organization: OrganizationId,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            adapters,
            key,
            config,
            organization,
            wake: Notify::new(),
            reconcile_wake: Notify::new(),
            running: AtomicUsize::new(0),
            last_generation: AtomicU64::new(0),
            reconcile_lock: Mutex::new(()),
            cancellations: std::sync::Mutex::new(HashMap::new()),
            health: std::sync::Mutex::new(HashMap::new()),
            last_routes: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.adapters.runtime
    }

    /// Wakes the queue loop and the reconciler: a deployment was queued or ended, or
    /// something was marked for deletion.
    pub fn notify(&self) {
        self.wake.notify_one();
        self.reconcile_wake.notify_one();
    }

    /// A route-table generation greater than every earlier one, across restarts too
    /// (wall-clock milliseconds, bumped when the clock has not moved).
    pub(crate) fn next_generation(&self) -> u64 {
        let now =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut previous = self.last_generation.load(Ordering::SeqCst);
        loop {
            let next = now.max(previous + 1);
            match self.last_generation.compare_exchange(
                previous,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return next,
                Err(actual) => previous = actual,
            }
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if let Err(error) = self.recover_interrupted().await {
            tracing::error!(%error, "could not recover interrupted deployments");
        }
        tokio::spawn(Arc::clone(&self).monitor(shutdown.clone()));
        tokio::spawn(Arc::clone(&self).backup_scheduler(shutdown.clone()));
        tokio::spawn(Arc::clone(&self).preview_expiry(shutdown.clone()));
        tokio::spawn(Arc::clone(&self).poll_git_heads(shutdown.clone()));
        // The reconciler runs beside the queue, so a queued deployment never waits for a
        // reconcile pass to finish (deployments already run beside it).
        tokio::spawn(Arc::clone(&self).reconcile_loop(shutdown.clone()));
        loop {
            if let Err(error) = self.start_queued(&shutdown).await {
                tracing::error!(%error, "could not start queued deployments");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Reconciles when woken (a deletion was requested or a deployment ended) and every
    /// 10 s otherwise, to catch drift (a crashed container, a restarted engine that
    /// republished ports).
    async fn reconcile_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.reconcile().await {
                tracing::warn!(%error, "reconcile pass failed; retrying soon");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.reconcile_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    }

    /// Deployments left `running` by a previous process: those that had already switched
    /// every application they cover are complete; the others are marked failed as
    /// interrupted (their new containers are no longer live and get collected).
    async fn recover_interrupted(&self) -> Result<(), EngineError> {
        for deployment in self.store.deployments_with_status(DeploymentStatus::Running).await? {
            let services = self.store.deployment_services(deployment.id).await?;
            let steps = self.store.deployment_steps(deployment.id).await?;
            // An application a push left alone (no watched file changed) is as done as
            // one that switched, unless something in the deployment failed.
            let any_failed = steps.iter().any(|s| s.status == StepStatus::Failed);
            let left_alone = |name: &str| {
                !any_failed
                    && steps.iter().any(|s| {
                        s.status == StepStatus::Skipped
                            && s.application_name.as_deref() == Some(name)
                    })
            };
            let mut switched =
                !services.is_empty() || steps.iter().any(|s| s.status == StepStatus::Skipped);
            for service in &services {
                let current = self
                    .store
                    .application(service.application_id)
                    .await?
                    .and_then(|a| a.current_deployment_id);
                switched &= current == Some(deployment.id);
            }
            let covers_all = match deployment.application_id {
                Some(_) => services.len() == 1,
                None => {
                    let active = self.store.list_applications(deployment.environment_id).await?;
                    active.iter().filter(|a| a.lifecycle == berth_store::Lifecycle::Active).all(
                        |a| {
                            services.iter().any(|s| s.application_id == a.id)
                                || left_alone(a.name.as_str())
                        },
                    )
                }
            };
            if switched && covers_all {
                self.store.fail_open_steps(deployment.id, "interrupted after traffic switched; old instances are collected by the reconciler").await?;
                self.store
                    .finish_deployment(deployment.id, DeploymentStatus::Succeeded, None)
                    .await?;
                tracing::warn!(deployment = %deployment.id, "interrupted deployment had switched traffic: recorded as succeeded");
                continue;
            }
            let reason = berth_domain::deployment::FailureReason {
                step: steps.last().map(|s| s.name).unwrap_or(StepName::Clone),
                application: steps.last().and_then(|s| s.application_name.clone()),
                message: "interrupted: the Berth server stopped during this deployment; the previous version kept serving. Deploy again.".to_owned(),
            };
            self.store.fail_open_steps(deployment.id, "interrupted").await?;
            self.store
                .finish_deployment(deployment.id, DeploymentStatus::Failed, Some(&reason))
                .await?;
            tracing::warn!(deployment = %deployment.id, "marked interrupted deployment as failed");
        }
        Ok(())
    }

    pub(crate) fn register_cancellation(&self, deployment: DeploymentId) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut map) = self.cancellations.lock() {
            map.insert(deployment, token.clone());
        }
        token
    }

    pub(crate) fn forget_cancellation(&self, deployment: DeploymentId) {
        if let Ok(mut map) = self.cancellations.lock() {
            map.remove(&deployment);
        }
    }

    /// Asks a running deployment to stop before it switches traffic. `false` when it does
    /// not run in this process.
    pub fn cancel_running(&self, deployment: DeploymentId) -> bool {
        let token = self.cancellations.lock().ok().and_then(|map| map.get(&deployment).cloned());
        token.map(|t| t.cancel()).is_some()
    }

    /// The crash-test hook (see `EngineConfig::pause_at`).
    pub(crate) async fn pause_if_requested(&self, step: StepName) {
        if self.config.pause_at != Some(step) {
            return;
        }
        let marker = self.config.data_dir.join(format!("paused-at-{}", step.as_str()));
        if let Err(error) = std::fs::write(&marker, b"paused\n") {
            tracing::error!(%error, "cannot write the pause marker");
        }
        tracing::warn!(step = step.as_str(), "test hook: engine paused; kill the server now");
        std::future::pending::<()>().await;
    }

    async fn start_queued(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Result<(), EngineError> {
        while self.running.load(Ordering::SeqCst) < self.config.max_parallel_deployments.max(1) {
            let Some(deployment) = self.store.claim_next_deployment().await? else {
                break;
            };
            self.running.fetch_add(1, Ordering::SeqCst);
            let engine = Arc::clone(self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let id = deployment.id;
                tokio::select! {
                    () = engine.execute(deployment) => {}
                    // On shutdown the deployment is left `running`; the next start marks
                    // it interrupted, which is the honest record.
                    () = shutdown.cancelled() => tracing::warn!(deployment = %id, "server stopping during deployment"),
                }
                engine.running.fetch_sub(1, Ordering::SeqCst);
                engine.notify();
            });
        }
        Ok(())
    }

    /// The containers serving an application now, from its current deployment.
    pub async fn serving_instances(
        &self,
        application: &ApplicationRecord,
    ) -> Result<Vec<String>, EngineError> {
        let Some(deployment) = application.current_deployment_id else {
            return Ok(Vec::new());
        };
        let service = self
            .store
            .deployment_services(deployment)
            .await?
            .into_iter()
            .find(|s| s.application_id == application.id);
        Ok(match service.and_then(|s| s.container_name.map(|base| (base, s.instances))) {
            Some((base, instances)) => {
                (0..instances).map(|i| crate::naming::instance_container(&base, i)).collect()
            }
            None => Vec::new(),
        })
    }

    /// Observes an application: its serving instances' states and a status word.
    pub async fn observe_application(
        &self,
        application: &ApplicationRecord,
        deploying: bool,
    ) -> Result<ObservedApplication, EngineError> {
        if application.lifecycle == berth_store::Lifecycle::Deleting {
            return Ok(ObservedApplication {
                status: "deleting",
                instances: Vec::new(),
                commit: None,
                message: None,
            });
        }
        let commit = match application.current_deployment_id {
            Some(d) => self
                .store
                .deployment_services(d)
                .await?
                .into_iter()
                .find(|s| s.application_id == application.id)
                .and_then(|s| s.git_commit),
            None => None,
        };
        let names = self.serving_instances(application).await?;
        let expected = names.len();
        let mut instances = Vec::new();
        for name in names {
            if let Some(state) = self.adapters.runtime.inspect_container(&name).await? {
                instances.push(state);
            }
        }
        let unhealthy: Vec<String> = {
            let health = self.health.lock().map(|h| h.clone()).unwrap_or_default();
            let threshold = application.spec.health_check.failure_threshold;
            instances
                .iter()
                .filter(|c| {
                    health.get(&c.name).is_some_and(|h| {
                        h.consecutive_failures >= threshold && h.published_failures >= threshold
                    })
                })
                .map(|c| c.name.clone())
                .collect()
        };
        let running = instances.iter().filter(|c| c.running).count();
        let restarts: u64 = instances.iter().map(|c| c.restart_count).sum();
        // Docker keeps the last exit of a restarted container: say why it crashed even
        // when it is running again.
        let memory =
            application.spec.memory.map(|m| format!(" of {} MiB", m.mib())).unwrap_or_default();
        let last_crash = if instances.iter().any(|c| c.oom_killed) {
            Some(format!(
                "killed because it exceeded its memory limit{memory} (OOM); raise it with --memory"
            ))
        } else {
            instances
                .iter()
                .filter(|c| c.restart_count > 0 || !c.running)
                .find_map(|c| c.exit_code.filter(|code| *code != 0))
                .map(|code| format!("exited with code {code}"))
        };
        let environment_stopped = running == 0
            && self.store.environment(application.environment_id).await?.is_some_and(|e| e.stopped);
        let (status, message) = if deploying {
            ("deploying", None)
        } else if environment_stopped {
            (
                "stopped",
                Some(
                    "the environment is stopped; start it with `berth environment start`"
                        .to_owned(),
                ),
            )
        } else if application.current_deployment_id.is_none() {
            ("never_deployed", Some("deploy it with `berth deploy`".to_owned()))
        } else if instances.is_empty() {
            ("stopped", Some("the containers are gone; redeploy to start them again".to_owned()))
        } else if running == 0 {
            let why = last_crash.clone().unwrap_or_else(|| "stopped".to_owned());
            (
                "crashed",
                Some(format!(
                    "{why}; Docker restarts it with a growing delay ({restarts} restart(s) so far)"
                )),
            )
        } else {
            let mut parts = Vec::new();
            if running < expected {
                parts.push(format!("{running} of {expected} instance(s) running"));
            }
            if !unhealthy.is_empty() {
                parts.push(format!("failing health checks: {}", unhealthy.join(", ")));
            }
            if restarts > 0 {
                let why = last_crash.map(|w| format!(": last {w}")).unwrap_or_default();
                parts.push(format!("restarted {restarts} time(s) after crashing{why}"));
            }
            let degraded = running < expected || !unhealthy.is_empty();
            (
                if degraded { "degraded" } else { "running" },
                (!parts.is_empty()).then(|| parts.join("; ")),
            )
        };
        Ok(ObservedApplication { status, instances, commit, message })
    }

    /// Addresses of the serving instances that should receive traffic: running, published,
    /// and not failing their health check. When every running instance fails its check,
    /// all of them stay in rotation (a broken health endpoint should not take the whole
    /// application offline).
    ///
    /// `observed` holds container states the caller already inspected in this pass (the
    /// health monitor's), so they are not inspected twice.
    pub(crate) async fn serving_addresses(
        &self,
        application: &ApplicationRecord,
        observed: Option<&HashMap<String, ContainerState>>,
    ) -> Result<Vec<SocketAddr>, EngineError> {
        let threshold = application.spec.health_check.failure_threshold;
        let mut running = Vec::new();
        for name in self.serving_instances(application).await? {
            let state = match observed.and_then(|o| o.get(&name)) {
                Some(state) => Some(state.clone()),
                None => self.adapters.runtime.inspect_container(&name).await?,
            };
            if let Some(state) = state {
                if let (true, Some(address)) = (state.running, state.published) {
                    running.push((name, address));
                }
            }
        }
        let health = self.health.lock().map(|h| h.clone()).unwrap_or_default();
        let healthy: Vec<SocketAddr> = running
            .iter()
            .filter(|(name, _)| health.get(name).is_none_or(|h| h.consecutive_failures < threshold))
            .map(|(_, address)| *address)
            .collect();
        Ok(if healthy.is_empty() { running.into_iter().map(|(_, a)| a).collect() } else { healthy })
    }

    /// Publishes the route table (taking the reconcile lock).
    pub async fn publish_routes(&self) -> Result<usize, EngineError> {
        let _guard = self.reconcile_lock.lock().await;
        self.publish_routes_locked(None).await
    }

    /// Publishes the route table, with `override_route` standing in for one application's
    /// upstreams (used to switch traffic before the store records the switch). The caller
    /// holds `reconcile_lock`.
    pub(crate) async fn publish_routes_locked(
        &self,
        override_route: Option<(ApplicationId, Vec<SocketAddr>)>,
    ) -> Result<usize, EngineError> {
        let table = crate::routes::compute_route_table(self, override_route, None).await?;
        let count = table.routes.len();
        self.adapters.router.apply(&table).await?;
        if let Ok(mut last) = self.last_routes.lock() {
            *last = Some(table.routes);
        }
        Ok(count)
    }
}
