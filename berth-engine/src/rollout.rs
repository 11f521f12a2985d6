//! The rollout of one application, once its image is known: release command, start the
//! new instances beside the old ones, wait until every one is healthy, switch the route,
//! then retire the old instances (start-first).
//!
//! Guarantees: traffic switches only after every new instance is healthy; a failure
//! before the switch removes the new containers and leaves the old ones serving; a failed
//! retire leaves extra containers for the reconciler, never a failed deployment.

use std::net::SocketAddr;
use std::time::Duration;

use berth_domain::deployment::StepName;
use berth_domain::labels;
use berth_domain::spec::ApplicationSpec;
use berth_store::{ApplicationRecord, DeploymentServiceRecord};

use crate::adapters::{ContainerSpec, LogSink, NetworkSpec, VolumeMount, VolumeSpec};
use crate::engine::EngineError;
use crate::executor::{Run, StepFailure, StepResult};
use crate::naming;
use crate::prepare::{Prepared, Release};

impl Run<'_> {
    /// Prepares (clone and build, or the rollback's image) and rolls out one application.
    /// An application a push did not change ends after its skipped `clone` step.
    pub(crate) async fn deploy_application(
        &self,
        application: &ApplicationRecord,
    ) -> Result<Result<(), StepFailure>, EngineError> {
        let engine = self.engine;
        let deadlines = &engine.config.deadlines;
        let release = match self.deployment.rollback_of {
            Some(target) => self
                .rollback_release(application, target)
                .await?
                .map(|r| Prepared::Release(Box::new(r))),
            None => self.new_release(application).await?,
        };
        let release = match release {
            Ok(Prepared::Release(release)) => release,
            Ok(Prepared::Unchanged) => return Ok(Ok(())),
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

    /// Creates the environment's network once per deployment: applications starting at
    /// the same time would otherwise race, and Docker 20.10 then creates two networks of
    /// the same name (which no container can join by name).
    async fn ensure_network(&self) -> Result<(), StepFailure> {
        let engine = self.engine;
        self.network_ready
            .get_or_try_init(|| async {
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
            })
            .await
            .map(|_| ())
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
