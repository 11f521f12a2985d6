//! The reconciler pass: removes Berth-owned runtime objects that the store no longer
//! wants (deleted projects, environments, applications; retired deployments), finishes
//! deletions whose objects are all gone, and republishes the route table.
//!
//! Guarantees: only objects labelled `berth.managed-by=berth` for this organization are
//! removed (`plan_cleanup`); images are not collected while a deployment runs, because a
//! freshly built image is referenced by its deployment only after the build step records it.
//! Idempotent: running it twice in a row does nothing the second time.

use std::collections::BTreeSet;

use berth_domain::deployment::DeploymentStatus;
use berth_domain::labels;
use berth_domain::plan::{plan_cleanup, ObjectKind, ObservedObject};
use berth_store::Lifecycle;

use crate::engine::{Engine, EngineError};

impl Engine {
    /// One reconcile pass; repeats (up to a bound) while deletions make progress, since
    /// deleting a record can release further objects (its images).
    pub async fn reconcile(&self) -> Result<(), EngineError> {
        let _guard = self.reconcile_lock.lock().await;
        for _ in 0..4 {
            if !self.reconcile_once().await? {
                break;
            }
        }
        if let Err(error) = self.publish_routes_locked(None).await {
            tracing::warn!(%error, "could not publish routes to the edge proxy; will retry");
        }
        Ok(())
    }

    /// Returns whether anything changed.
    async fn reconcile_once(&self) -> Result<bool, EngineError> {
        let desired =
            self.store.desired_state(self.organization, self.config.keep_successful_images).await?;
        let observed = self.adapters.runtime.list_managed().await?;
        let deployments_running =
            !self.store.deployments_with_status(DeploymentStatus::Running).await?.is_empty();
        let mut removed: BTreeSet<(ObjectKind, String)> = BTreeSet::new();
        for removal in plan_cleanup(&desired, &observed) {
            if removal.kind == ObjectKind::Image && deployments_running {
                continue;
            }
            let result = match removal.kind {
                ObjectKind::Container => {
                    let is_database = observed.iter().any(|o| {
                        o.id == removal.id
                            && o.labels.get(labels::SERVICE_KIND).map(String::as_str)
                                == Some("database")
                    });
                    // A database gets time to flush and shut down cleanly.
                    let grace = if is_database {
                        crate::databases::DATABASE_STOP_GRACE
                    } else {
                        self.config.deadlines.retire_grace
                    };
                    self.adapters.runtime.remove_container(&removal.id, grace).await
                }
                kind => self.adapters.runtime.remove_object(kind, &removal.id).await,
            };
            match result {
                Ok(()) => {
                    tracing::info!(kind = removal.kind.as_str(), name = %removal.name, reason = %removal.reason, "removed");
                    removed.insert((removal.kind, removal.id));
                }
                Err(error) => {
                    tracing::warn!(kind = removal.kind.as_str(), name = %removal.name, %error, "could not remove; will retry");
                }
            }
        }
        let remaining: Vec<&ObservedObject> =
            observed.iter().filter(|o| !removed.contains(&(o.kind, o.id.clone()))).collect();
        let finished = self.finish_deletions(&remaining).await?;
        Ok(!removed.is_empty() || finished)
    }

    /// Deletes the records of resources marked for deletion once nothing labelled for them
    /// remains in the runtime.
    async fn finish_deletions(&self, remaining: &[&ObservedObject]) -> Result<bool, EngineError> {
        let organization = self.organization.to_string();
        // Only this organization's objects can hold up its deletions.
        let labelled = |key: &str, id: String| {
            remaining.iter().any(|o| {
                o.labels.get(labels::MANAGED_BY).map(String::as_str)
                    == Some(labels::MANAGED_BY_VALUE)
                    && o.labels.get(labels::ORGANIZATION) == Some(&organization)
                    && o.labels.get(key) == Some(&id)
            })
        };
        let running_in = |environment| async move {
            self.store
                .deployments_with_status(DeploymentStatus::Running)
                .await
                .map(|list| list.iter().any(|d| d.environment_id == environment))
        };
        let mut changed = false;
        for application in self.store.all_applications(self.organization).await? {
            if application.lifecycle == Lifecycle::Deleting
                && !labelled(labels::SERVICE, application.id.to_string())
                && !running_in(application.environment_id).await?
            {
                self.store.delete_application(application.id).await?;
                tracing::info!(application = %application.name, "application deleted");
                changed = true;
            }
        }
        for database in self.store.all_databases(self.organization).await? {
            if database.lifecycle == Lifecycle::Deleting
                && !labelled(labels::SERVICE, database.id.to_string())
                && !running_in(database.environment_id).await?
            {
                self.store.delete_database(database.id).await?;
                tracing::info!(database = %database.name, "database deleted with its volume");
                changed = true;
            }
        }
        for environment in self.store.all_environments(self.organization).await? {
            if environment.lifecycle == Lifecycle::Deleting
                && !labelled(labels::ENVIRONMENT, environment.id.to_string())
                && !running_in(environment.id).await?
                && self.store.list_applications(environment.id).await?.is_empty()
                && self.store.list_databases(environment.id).await?.is_empty()
            {
                self.store.delete_environment(environment.id).await?;
                tracing::info!(environment = %environment.name, "environment deleted");
                changed = true;
            }
        }
        for project in self.store.list_projects(self.organization).await? {
            if project.lifecycle == Lifecycle::Deleting
                && !labelled(labels::PROJECT, project.id.to_string())
                && self.store.list_environments(project.id).await?.is_empty()
            {
                self.store.delete_project(project.id).await?;
                tracing::info!(project = %project.name, "project deleted");
                changed = true;
            }
        }
        Ok(changed)
    }
}
