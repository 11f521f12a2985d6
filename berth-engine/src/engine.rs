//! The engine: owns the adapters and the store, runs queued deployments (one at a time per
//! environment) and the reconciler, and answers questions about what is running.
//!
//! Expected flow: `Engine::run` first recovers from a previous crash (deployments left
//! `running` are marked failed as interrupted), reconciles, then loops: claim queued
//! deployments, execute them in tasks, reconcile after each and every few seconds.
//!
//! Guarantees: nothing depends on in-memory state surviving; the store is the truth.
//! Garbage collection only removes objects with Berth's labels (see `plan_cleanup`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_domain::deployment::DeploymentStatus;
use berth_domain::{ApplicationId, OrganizationId};
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
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
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
    wake: Notify,
    running: AtomicUsize,
    last_generation: AtomicU64,
    /// Serialises reconciler passes and route publication.
    pub(crate) reconcile_lock: Mutex<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("organization", &self.organization).finish_non_exhaustive()
    }
}

/// What the runtime says about an application's serving container.
#[derive(Debug, Clone)]
pub struct ObservedApplication {
    /// `never_deployed`, `deploying`, `running`, `crashed`, `stopped`, `deleting`.
    pub status: &'static str,
    pub container: Option<ContainerState>,
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
            running: AtomicUsize::new(0),
            last_generation: AtomicU64::new(0),
            reconcile_lock: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.adapters.runtime
    }

    /// Wakes the loop: a deployment was queued or something was marked for deletion.
    pub fn notify(&self) {
        self.wake.notify_one();
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
        let mut last_reconcile: Option<tokio::time::Instant> = None;
        let mut woken = true;
        loop {
            if let Err(error) = self.start_queued(&shutdown).await {
                tracing::error!(%error, "could not start queued deployments");
            }
            // A wake-up means a deletion was requested or a deployment ended: reconcile
            // now. Otherwise a periodic pass catches drift (a crashed container, a
            // restarted engine that republished ports).
            let periodic_due =
                last_reconcile.is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
            if woken || periodic_due {
                if let Err(error) = self.reconcile().await {
                    tracing::warn!(%error, "reconcile pass failed; retrying soon");
                }
                last_reconcile = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => woken = true,
                () = tokio::time::sleep(Duration::from_secs(2)) => woken = false,
            }
        }
    }

    async fn recover_interrupted(&self) -> Result<(), EngineError> {
        for deployment in self.store.deployments_with_status(DeploymentStatus::Running).await? {
            let reason = berth_domain::deployment::FailureReason {
                step: self
                    .store
                    .deployment_steps(deployment.id)
                    .await?
                    .last()
                    .map(|s| s.name)
                    .unwrap_or(berth_domain::deployment::StepName::Clone),
                application: None,
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

    /// The container serving an application now, from its current deployment.
    pub async fn serving_container_name(
        &self,
        application: &ApplicationRecord,
    ) -> Result<Option<String>, EngineError> {
        let Some(deployment) = application.current_deployment_id else {
            return Ok(None);
        };
        Ok(self
            .store
            .deployment_services(deployment)
            .await?
            .into_iter()
            .find(|s| s.application_id == application.id)
            .and_then(|s| s.container_name))
    }

    /// Observes an application: its serving container's state and a status word.
    pub async fn observe_application(
        &self,
        application: &ApplicationRecord,
        deploying: bool,
    ) -> Result<ObservedApplication, EngineError> {
        if application.lifecycle == berth_store::Lifecycle::Deleting {
            return Ok(ObservedApplication {
                status: "deleting",
                container: None,
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
        let container = match self.serving_container_name(application).await? {
            Some(name) => self.adapters.runtime.inspect_container(&name).await?,
            None => None,
        };
        let (status, message) = match (&container, deploying, application.current_deployment_id) {
            (_, true, _) => ("deploying", None),
            (_, false, None) => {
                ("never_deployed", Some("deploy it with `berth deploy`".to_owned()))
            }
            (Some(c), false, Some(_)) if c.running => ("running", None),
            (Some(c), false, Some(_)) => (
                "crashed",
                Some(if c.oom_killed {
                    "the container was killed because it exceeded its memory limit (OOM); raise --memory".to_owned()
                } else {
                    format!("the container exited with code {}", c.exit_code.unwrap_or(-1))
                }),
            ),
            (None, false, Some(_)) => {
                ("stopped", Some("the container is gone; redeploy to start it again".to_owned()))
            }
        };
        Ok(ObservedApplication { status, container, commit, message })
    }

    /// The address where an application's current container is published.
    pub(crate) async fn serving_address(
        &self,
        application: &ApplicationRecord,
    ) -> Result<Option<SocketAddr>, EngineError> {
        let Some(name) = self.serving_container_name(application).await? else {
            return Ok(None);
        };
        Ok(self
            .adapters
            .runtime
            .inspect_container(&name)
            .await?
            .filter(|c| c.running)
            .and_then(|c| c.published))
    }

    /// Publishes the route table, with `override_route` standing in for one application's
    /// current address (used to switch traffic before the store records the switch).
    pub async fn publish_routes(
        &self,
        override_route: Option<(ApplicationId, SocketAddr)>,
    ) -> Result<usize, EngineError> {
        let table = crate::routes::compute_route_table(self, override_route).await?;
        let count = table.routes.len();
        self.adapters.router.apply(&table).await?;
        Ok(count)
    }
}
