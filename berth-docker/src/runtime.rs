//! `Runtime` for the Docker engine: labelled bridge networks, containers that publish
//! their port on 127.0.0.1 only, logs, and listing and removing what carries
//! `berth.managed-by=berth`.
//!
//! Containers are created with restart policy `no` (during a rollout a crash must fail the
//! deployment; the engine switches Docker's restarts on once an instance serves, see
//! `commands`), Docker's init as PID 1 (signals reach the application and zombies are
//! reaped even when the application does not expect to be PID 1), `memory_swap = memory`
//! (so a memory limit cannot be escaped into swap), and a size-capped `json-file` log so
//! a chatty application cannot fill the disk.
//!
//! Caveat: Docker copies an image's labels into the containers run from it, so a container
//! that someone starts by hand from a Berth-built image carries `berth.managed-by=berth`
//! and `berth.project` too (but no organization or environment label).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use berth_domain::labels::{MANAGED_BY, MANAGED_BY_VALUE};
use berth_domain::plan::{ObjectKind, ObservedObject};
use berth_engine::adapters::{
    ContainerSpec, ContainerState, NetworkSpec, Runtime, RuntimeError, StreamedExit, VolumeSpec,
};
use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, LogsOptions, NetworkingConfig,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::errors::Error as EngineError;
use bollard::image::{ListImagesOptions, RemoveImageOptions};
use bollard::models::{
    EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountTypeEnum, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::network::{CreateNetworkOptions, InspectNetworkOptions, ListNetworksOptions};
use bollard::system::EventsOptions;
use bollard::volume::{ListVolumesOptions, RemoveVolumeOptions};
use futures_util::{Stream, StreamExt};

use crate::convert::{
    container_name, container_state, engine_message, is_conflict, is_managed, is_not_found,
    runtime_error, to_btree_map, to_hash_map, LineSplitter,
};
use crate::DockerEngine;

/// Exit code of a process killed by SIGKILL (128 + 9), as the OOM killer does.
const KILLED_EXIT_CODE: i64 = 137;

/// How long after a container's exit its OOM event may still arrive.
const OOM_EVENT_GRACE: Duration = Duration::from_secs(2);

/// Extra time given to a stop request over the grace period.
const STOP_REQUEST_MARGIN: Duration = Duration::from_secs(30);

/// Per-container log cap: 3 files of 10 MB.
const LOG_MAX_SIZE: &str = "10m";
const LOG_MAX_FILES: &str = "3";

fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![format!("{MANAGED_BY}={MANAGED_BY_VALUE}")])])
}

/// Object names reach the engine inside URL paths: refuse anything that is not a plain
/// Docker name, id or image reference.
pub(crate) fn check_object_name(operation: &str, name: &str) -> Result<(), RuntimeError> {
    let plain = !name.is_empty()
        && !name.starts_with(['-', '.', '/'])
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(RuntimeError::Engine {
            operation: operation.to_owned(),
            message: format!("{name:?} is not a valid Docker object name"),
        })
    }
}

#[async_trait]
impl Runtime for DockerEngine {
    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError> {
        let operation = format!("creating network {}", spec.name);
        check_object_name(&operation, &spec.name)?;
        if self.network_exists(&spec.name).await? {
            return Ok(());
        }
        let options = CreateNetworkOptions {
            name: spec.name.clone(),
            // Engines before API 1.44 happily create two networks of the same name unless
            // asked to check.
            check_duplicate: true,
            driver: "bridge".to_owned(),
            labels: to_hash_map(&spec.labels),
            ..Default::default()
        };
        match self.docker.create_network(options).await {
            Ok(_) => Ok(()),
            // Created concurrently by someone else: already done.
            Err(error) if is_conflict(&error) && self.network_exists(&spec.name).await? => Ok(()),
            Err(error) => Err(runtime_error(operation, &error)),
        }
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let operation = format!("creating volume {}", spec.name);
        check_object_name(&operation, &spec.name)?;
        match self.docker.inspect_volume(&spec.name).await {
            Ok(volume) => {
                // A volume of that name that Berth did not create is never adopted: its
                // data belongs to someone else.
                let owned =
                    volume.labels.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE);
                return if owned {
                    Ok(())
                } else {
                    Err(RuntimeError::Engine {
                        operation,
                        message: format!("refused: a volume named {} exists without Berth's labels, so Berth did not create it; rename or remove it", spec.name),
                    })
                };
            }
            Err(EngineError::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(error) => return Err(runtime_error(operation, &error)),
        }
        let options = bollard::volume::CreateVolumeOptions {
            name: spec.name.clone(),
            driver: "local".to_owned(),
            labels: to_hash_map(&spec.labels),
            ..Default::default()
        };
        self.docker
            .create_volume(options)
            .await
            .map(|_| ())
            .map_err(|error| runtime_error(operation, &error))
    }

    async fn start_container(&self, spec: &ContainerSpec) -> Result<ContainerState, RuntimeError> {
        let operation = format!("starting container {}", spec.name);
        check_object_name(&operation, &spec.name)?;
        // Replace a previous container of ours, never someone else's of the same name.
        if self.present_and_owned(ObjectKind::Container, &spec.name, &operation).await? {
            self.force_remove(&spec.name).await?;
        }

        let config = container_config(spec, Role::Serving);
        let create = CreateContainerOptions { name: spec.name.clone(), platform: None };
        self.docker
            .create_container(Some(create), config)
            .await
            .map_err(|error| runtime_error(&operation, &error))?;
        if let Err(error) = self.docker.start_container::<String>(&spec.name, None).await {
            // A container that never started holds nothing worth keeping, and leaving it
            // would hold its name.
            let _ = self.force_remove(&spec.name).await;
            return Err(runtime_error(&operation, &error));
        }
        let state =
            self.inspect_container(&spec.name).await?.ok_or_else(|| RuntimeError::Engine {
                operation: operation.clone(),
                message: "the container disappeared right after it started".to_owned(),
            })?;
        if spec.port.is_some() && state.running && state.published.is_none() {
            return Err(RuntimeError::Engine {
                operation,
                message: "the engine did not report the published port".to_owned(),
            });
        }
        Ok(state)
    }

    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerState>, RuntimeError> {
        let operation = format!("inspecting container {name}");
        check_object_name(&operation, name)?;
        let inspected = match self.docker.inspect_container(name, None).await {
            Ok(inspected) => inspected,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(runtime_error(operation, &error)),
        };
        let times = inspected
            .state
            .as_ref()
            .and_then(|state| Some((state.started_at.clone()?, state.finished_at.clone()?)));
        let mut state = container_state(inspected);
        if !state.running && state.exit_code == Some(KILLED_EXIT_CODE) && !state.oom_killed {
            if let Some((started_at, finished_at)) = times {
                state.oom_killed = self.oom_event_seen(&state.id, &started_at, &finished_at).await;
            }
        }
        Ok(Some(state))
    }

    async fn container_logs(&self, name: &str, tail: usize) -> Result<Vec<String>, RuntimeError> {
        let operation = format!("reading the logs of container {name}");
        check_object_name(&operation, name)?;
        let mut stream = self.log_stream(name, tail, false);
        let mut lines = LineSplitter::default();
        let mut collected = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => collected.extend(lines.push(&chunk)),
                Err(error) if is_not_found(&error) => {
                    return Err(RuntimeError::NotFound(format!("container {name}")))
                }
                Err(error) => return Err(runtime_error(operation, &error)),
            }
        }
        collected.extend(lines.finish());
        Ok(collected)
    }

    async fn follow_container_logs(
        &self,
        name: &str,
        tail: usize,
        sender: tokio::sync::mpsc::Sender<String>,
    ) -> Result<(), RuntimeError> {
        let operation = format!("following the logs of container {name}");
        check_object_name(&operation, name)?;
        let mut stream = self.log_stream(name, tail, true);
        let mut lines = LineSplitter::default();
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                // Nobody listens any more; a quiet container would otherwise keep this
                // request open forever.
                () = sender.closed() => return Ok(()),
            };
            match item {
                Some(Ok(chunk)) => {
                    for line in lines.push(&chunk) {
                        if sender.send(line).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Some(Err(error)) if is_not_found(&error) => {
                    return Err(RuntimeError::NotFound(format!("container {name}")))
                }
                Some(Err(error)) => return Err(runtime_error(operation, &error)),
                None => break,
            }
        }
        if let Some(line) = lines.finish() {
            let _ = sender.send(line).await;
        }
        Ok(())
    }

    async fn remove_container(
        &self,
        name_or_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let operation = format!("stopping container {name_or_id}");
        check_object_name(&operation, name_or_id)?;
        if !self.present_and_owned(ObjectKind::Container, name_or_id, &operation).await? {
            return Ok(());
        }
        // Docker takes whole seconds; round up so the application gets at least `grace`.
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let docker = self.docker.clone().with_timeout(grace + STOP_REQUEST_MARGIN);
        let stop = StopContainerOptions { t: seconds.try_into().unwrap_or(i64::MAX) };
        match docker.stop_container(name_or_id, Some(stop)).await {
            // bollard maps 304 (already stopped) to success.
            Ok(()) => {}
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(runtime_error(operation, &error)),
        }
        self.force_remove(name_or_id).await
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        let operation = format!("stopping container {name}");
        check_object_name(&operation, name)?;
        if !self.present_and_owned(ObjectKind::Container, name, &operation).await? {
            return Ok(());
        }
        let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let docker = self.docker.clone().with_timeout(grace + STOP_REQUEST_MARGIN);
        let stop = StopContainerOptions { t: seconds.try_into().unwrap_or(i64::MAX) };
        match docker.stop_container(name, Some(stop)).await {
            // bollard maps 304 (already stopped) to success.
            Ok(()) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(runtime_error(operation, &error)),
        }
    }

    async fn resume_container(&self, name: &str) -> Result<(), RuntimeError> {
        let operation = format!("starting container {name}");
        check_object_name(&operation, name)?;
        if !self.present_and_owned(ObjectKind::Container, name, &operation).await? {
            return Err(RuntimeError::NotFound(format!("container {name}")));
        }
        // bollard maps 304 (already running) to success.
        match self.docker.start_container::<String>(name, None).await {
            Ok(()) => Ok(()),
            Err(error) if is_not_found(&error) => {
                Err(RuntimeError::NotFound(format!("container {name}")))
            }
            Err(error) => Err(runtime_error(operation, &error)),
        }
    }

    async fn set_restart_on_failure(&self, name: &str, enabled: bool) -> Result<(), RuntimeError> {
        self.update_restart_policy(name, enabled).await
    }

    async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        command: &[String],
        timeout: Duration,
        output: tokio::sync::mpsc::Sender<String>,
    ) -> Result<i64, RuntimeError> {
        self.run_one_off(spec, command, timeout, output).await
    }

    async fn exec_in_container(
        &self,
        name: &str,
        command: &[String],
        output: tokio::sync::mpsc::Sender<String>,
    ) -> Result<i64, RuntimeError> {
        self.exec_command(name, command, output).await
    }

    async fn exec_streaming(
        &self,
        name: &str,
        command: &[String],
        stdin: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
        stdout: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<StreamedExit, RuntimeError> {
        self.exec_with_streams(name, command, stdin, stdout).await
    }

    async fn list_managed(&self) -> Result<Vec<ObservedObject>, RuntimeError> {
        let mut objects = Vec::new();

        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: managed_filter(),
                ..Default::default()
            }))
            .await
            .map_err(|error| runtime_error("listing containers", &error))?;
        objects.extend(containers.into_iter().filter_map(|container| {
            let id = container.id?;
            let name = container
                .names
                .and_then(|names| names.first().map(|name| container_name(name)))
                .unwrap_or_else(|| id.clone());
            Some(ObservedObject {
                kind: ObjectKind::Container,
                id,
                name,
                labels: to_btree_map(container.labels),
            })
        }));

        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions { filters: managed_filter() }))
            .await
            .map_err(|error| runtime_error("listing networks", &error))?;
        objects.extend(networks.into_iter().filter_map(|network| {
            let id = network.id?;
            Some(ObservedObject {
                kind: ObjectKind::Network,
                name: network.name.unwrap_or_else(|| id.clone()),
                id,
                labels: to_btree_map(network.labels),
            })
        }));

        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions { filters: managed_filter() }))
            .await
            .map_err(|error| runtime_error("listing volumes", &error))?;
        objects.extend(volumes.volumes.unwrap_or_default().into_iter().map(|volume| {
            ObservedObject {
                kind: ObjectKind::Volume,
                id: volume.name.clone(),
                name: volume.name,
                labels: volume.labels.into_iter().collect(),
            }
        }));

        let images = self
            .docker
            .list_images(Some(ListImagesOptions {
                all: false,
                filters: managed_filter(),
                ..Default::default()
            }))
            .await
            .map_err(|error| runtime_error("listing images", &error))?;
        for image in images {
            let labels: std::collections::BTreeMap<_, _> = image.labels.into_iter().collect();
            // One object per tag: removing a tag only untags while another tag (perhaps
            // still referenced) keeps the image. Engines before API 1.43 list an untagged
            // image with the tag `<none>:<none>`.
            let tags: Vec<String> =
                image.repo_tags.into_iter().filter(|tag| tag != "<none>:<none>").collect();
            if tags.is_empty() {
                objects.push(ObservedObject {
                    kind: ObjectKind::Image,
                    id: image.id.clone(),
                    name: image.id,
                    labels,
                });
            } else {
                objects.extend(tags.into_iter().map(|tag| ObservedObject {
                    kind: ObjectKind::Image,
                    id: tag.clone(),
                    name: tag,
                    labels: labels.clone(),
                }));
            }
        }
        Ok(objects)
    }

    async fn remove_object(&self, kind: ObjectKind, id: &str) -> Result<(), RuntimeError> {
        let operation = format!("removing {} {id}", kind.as_str());
        check_object_name(&operation, id)?;
        // Only what carries Berth's label is ever removed, whatever the caller passes.
        if !self.present_and_owned(kind, id, &operation).await? {
            return Ok(());
        }
        let result = match kind {
            ObjectKind::Container => return self.force_remove(id).await,
            ObjectKind::Network => self.docker.remove_network(id).await,
            ObjectKind::Volume => {
                self.docker.remove_volume(id, Some(RemoveVolumeOptions { force: false })).await
            }
            ObjectKind::Image => self
                .docker
                .remove_image(id, Some(RemoveImageOptions { force: false, noprune: false }), None)
                .await
                .map(drop),
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) if is_conflict(&error) || in_use(&error) => {
                let users = match kind {
                    ObjectKind::Network => "the containers attached to it",
                    ObjectKind::Volume => "the containers that mount it",
                    ObjectKind::Image | ObjectKind::Container => {
                        "the containers run from it (or images built on it)"
                    }
                };
                Err(RuntimeError::Engine {
                    operation,
                    message: format!(
                        "it is still in use ({}); remove {users} first",
                        engine_message(&error)
                    ),
                })
            }
            Err(error) => Err(runtime_error(operation, &error)),
        }
    }
}

impl DockerEngine {
    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_network(name, None::<InspectNetworkOptions<String>>).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(runtime_error(format!("inspecting network {name}"), &error)),
        }
    }

    /// Kills and removes a container, keeping its volumes; absent is success.
    pub(crate) async fn force_remove(&self, name_or_id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions { force: true, v: false, link: false };
        match self.docker.remove_container(name_or_id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            // Another caller is already removing it.
            Err(error) if is_conflict(&error) && engine_message(&error).contains("in progress") => {
                Ok(())
            }
            Err(error) => Err(runtime_error(format!("removing container {name_or_id}"), &error)),
        }
    }

    /// `false` when the object does not exist, `true` when it carries Berth's label, and
    /// an error (refusing `operation`) when it exists without it.
    pub(crate) async fn present_and_owned(
        &self,
        kind: ObjectKind,
        id: &str,
        operation: &str,
    ) -> Result<bool, RuntimeError> {
        match self.object_labels(kind, id).await? {
            None => Ok(false),
            Some(labels) if is_managed(&labels) => Ok(true),
            Some(_) => Err(RuntimeError::Engine {
                operation: operation.to_owned(),
                message: format!(
                    "refused: a {} named {id} exists without the label \
                     {MANAGED_BY}={MANAGED_BY_VALUE}, so Berth did not create it; rename or \
                     remove it yourself",
                    kind.as_str()
                ),
            }),
        }
    }

    /// The labels of an object, `None` when it does not exist.
    async fn object_labels(
        &self,
        kind: ObjectKind,
        id: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, RuntimeError> {
        let result = match kind {
            ObjectKind::Container => self
                .docker
                .inspect_container(id, None)
                .await
                .map(|container| container.config.and_then(|config| config.labels)),
            ObjectKind::Network => self
                .docker
                .inspect_network(id, None::<InspectNetworkOptions<String>>)
                .await
                .map(|network| network.labels),
            ObjectKind::Volume => {
                self.docker.inspect_volume(id).await.map(|volume| Some(volume.labels))
            }
            ObjectKind::Image => self
                .docker
                .inspect_image(id)
                .await
                .map(|image| image.config.and_then(|config| config.labels)),
        };
        match result {
            Ok(labels) => Ok(Some(to_btree_map(labels))),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(runtime_error(format!("inspecting {} {id}", kind.as_str()), &error)),
        }
    }

    /// Whether the engine emitted an `oom` event for the container during its last run.
    ///
    /// Docker 20.10 sets `State.OOMKilled` only when containerd's OOM event is processed
    /// before the exit event; measured here under load, `die` came 280 ms before `oom`
    /// and the state then says `OOMKilled: false` for good. The `oom` event is still
    /// published, so for a container killed by SIGKILL this asks the event log, waiting
    /// up to `OOM_EVENT_GRACE` after the exit for a late event.
    ///
    /// Caveat: the engine keeps only its most recent events (256 in 20.10), so on a busy
    /// engine an old OOM kill may no longer be found; the answer is then `false`.
    async fn oom_event_seen(&self, id: &str, started_at: &str, finished_at: &str) -> bool {
        use time::format_description::well_known::Rfc3339;
        let parse = |text: &str| time::OffsetDateTime::parse(text, &Rfc3339).ok();
        let (Some(started), Some(finished)) = (parse(started_at), parse(finished_at)) else {
            return false;
        };
        let until = (finished + OOM_EVENT_GRACE).max(time::OffsetDateTime::now_utc());
        // The events API takes Unix timestamps (`seconds.nanoseconds`), not RFC 3339.
        let timestamp =
            |at: time::OffsetDateTime| format!("{}.{:09}", at.unix_timestamp(), at.nanosecond());
        let options = EventsOptions::<String> {
            since: Some(timestamp(started)),
            until: Some(timestamp(until)),
            filters: HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                ("container".to_owned(), vec![id.to_owned()]),
                ("event".to_owned(), vec!["oom".to_owned()]),
            ]),
        };
        let search = async {
            let mut events = self.docker.events(Some(options));
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) if event.action.as_deref() == Some("oom") => return true,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(container = id, error = %error, "cannot read the engine's events");
                        return false;
                    }
                }
            }
            false
        };
        tokio::time::timeout(OOM_EVENT_GRACE + Duration::from_secs(5), search)
            .await
            .unwrap_or(false)
    }

    /// Output chunks of a container (stdout and stderr interleaved as the engine stored them).
    fn log_stream(
        &self,
        name: &str,
        tail: usize,
        follow: bool,
    ) -> impl Stream<Item = Result<String, EngineError>> + '_ {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        self.docker.logs(name, Some(options)).map(|item| {
            item.map(|output| String::from_utf8_lossy(&output.into_bytes()).into_owned())
        })
    }
}

/// Docker reports "in use" conflicts of networks with status 403 on some versions.
fn in_use(error: &EngineError) -> bool {
    matches!(error, EngineError::DockerResponseServerError { status_code: 403, message }
        if message.contains("active endpoints") || message.contains("in use"))
}

/// What a container is for: serving traffic (its port published, its aliases on the
/// network) or a one-off command (neither, so it receives none of the service's traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Serving,
    OneOff,
}

/// The engine's configuration for a container of `spec`: limits, init, restart policy `no`,
/// a capped log, and (when serving) the published port and network aliases.
pub(crate) fn container_config(spec: &ContainerSpec, role: Role) -> Config<String> {
    let serving = role == Role::Serving;
    let exposed = spec.port.filter(|_| serving).map(|port| format!("{port}/tcp"));
    let port_bindings = exposed.as_ref().map(|port| {
        HashMap::from([(
            port.clone(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".to_owned()),
                // Empty: the engine picks a free port.
                host_port: Some(String::new()),
            }]),
        )])
    });
    let host_config = HostConfig {
        port_bindings,
        nano_cpus: spec.cpu_millis.map(|millis| i64::from(millis) * 1_000_000),
        memory: spec.memory_bytes.map(saturating_i64),
        memory_swap: spec.memory_bytes.map(saturating_i64),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        init: Some(true),
        network_mode: Some(spec.network.clone()),
        mounts: (!spec.mounts.is_empty()).then(|| {
            spec.mounts
                .iter()
                .map(|mount| Mount {
                    target: Some(mount.path.clone()),
                    source: Some(mount.volume.clone()),
                    typ: Some(MountTypeEnum::VOLUME),
                    ..Default::default()
                })
                .collect()
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), LOG_MAX_SIZE.to_owned()),
                ("max-file".to_owned(), LOG_MAX_FILES.to_owned()),
            ])),
        }),
        ..Default::default()
    };
    let aliases = spec.network_aliases.clone();
    let endpoint = EndpointSettings {
        aliases: (serving && !aliases.is_empty()).then_some(aliases),
        ..Default::default()
    };
    Config {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(key, value)| format!("{key}={value}")).collect()),
        labels: Some(to_hash_map(&spec.labels)),
        exposed_ports: exposed.map(|port| HashMap::from([(port, HashMap::new())])),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: HashMap::from([(spec.network.clone(), endpoint)]),
        }),
        ..Default::default()
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
