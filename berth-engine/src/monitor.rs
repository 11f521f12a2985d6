//! The health monitor: checks every serving instance on its health check's interval,
//! counts consecutive failures, and republishes the route table whenever the set of
//! instances that should receive traffic changes (an instance failing or recovering, a
//! container restarted by Docker on a new port).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_store::Lifecycle;
use tokio_util::sync::CancellationToken;

use crate::adapters::ContainerState;
use crate::engine::{Engine, EngineError, InstanceHealth};

impl Engine {
    pub(crate) async fn monitor(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(error) = self.monitor_pass().await {
                tracing::debug!(%error, "health monitor pass failed");
            }
        }
    }

    async fn monitor_pass(&self) -> Result<(), EngineError> {
        let now = tokio::time::Instant::now();
        let mut seen = std::collections::HashSet::new();
        let mut observed = HashMap::new();
        for application in self.store.all_applications(self.organization).await? {
            if application.lifecycle != Lifecycle::Active || application.spec.port.is_none() {
                continue;
            }
            let check = &application.spec.health_check;
            for name in self.serving_instances(&application).await? {
                seen.insert(name.clone());
                // Inspected every pass, checked only when due: a container restarted by
                // Docker on another port must be followed within a second.
                let state = self.adapters.runtime.inspect_container(&name).await?;
                if let Some(state) = &state {
                    observed.insert(name.clone(), state.clone());
                }
                let due = self
                    .health
                    .lock()
                    .map(|h| {
                        h.get(&name)
                            .and_then(|i| i.last_checked)
                            .is_none_or(|at| now >= at + check.interval())
                    })
                    .unwrap_or(true);
                if !due {
                    continue;
                }
                let result = match state.as_ref().filter(|s| s.running).and_then(|s| s.published) {
                    Some(address) => {
                        crate::probe::probe(&check.probe, address, check.timeout()).await
                    }
                    None => Err("not running".to_owned()),
                };
                if let Ok(mut health) = self.health.lock() {
                    let entry = health.entry(name.clone()).or_insert_with(InstanceHealth::default);
                    entry.last_checked = Some(now);
                    match result {
                        Ok(()) => {
                            entry.consecutive_failures = 0;
                            entry.last_error = None;
                            entry.published_failures = 0;
                        }
                        Err(error) => {
                            entry.consecutive_failures =
                                entry.consecutive_failures.saturating_add(1);
                            if entry.consecutive_failures == check.failure_threshold {
                                tracing::warn!(instance = %name, %error, "instance failed its health check; out of rotation");
                            }
                            entry.last_error = Some(error);
                        }
                    }
                }
            }
        }
        if let Ok(mut health) = self.health.lock() {
            health.retain(|name, _| seen.contains(name));
        }
        self.publish_routes_if_changed(&observed).await?;
        // The table the proxy now has was computed from these failure counts.
        if let Ok(mut health) = self.health.lock() {
            for instance in health.values_mut() {
                instance.published_failures = instance.consecutive_failures;
            }
        }
        Ok(())
    }

    /// Publishes the route table only when it differs from the last one the proxy took.
    async fn publish_routes_if_changed(
        &self,
        observed: &HashMap<String, ContainerState>,
    ) -> Result<(), EngineError> {
        let _guard = self.reconcile_lock.lock().await;
        let table = crate::routes::compute_route_table(self, None, Some(observed)).await?;
        let unchanged = self
            .last_routes
            .lock()
            .map(|last| last.as_ref() == Some(&table.routes))
            .unwrap_or(false);
        if unchanged {
            return Ok(());
        }
        self.adapters.router.apply(&table).await?;
        if let Ok(mut last) = self.last_routes.lock() {
            *last = Some(table.routes);
        }
        Ok(())
    }
}
