//! The traits the engine drives and the adapters implement: `Source` (Git), `Builder`
//! and `Runtime` (Docker today, Kubernetes later) and `Router` (the edge proxy). Only the
//! adapter crates know bollard, kube or git; these signatures use Berth's own types.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use berth_domain::names::BranchName;
use berth_domain::plan::{ObjectKind, ObservedObject};
use berth_domain::routes::RouteTable;
use berth_domain::source::{ImageReference, RepositoryPath, RepositoryUrl};

/// Where progress and output lines of a step go (the deployment's log).
pub trait LogSink: Send + Sync {
    fn line(&self, line: &str);
}

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(********)")
    }
}

/// Credentials for a private repository, decrypted only for the duration of a fetch.
#[derive(Debug, Clone)]
pub enum GitCredentials {
    /// HTTPS: sent as basic auth (user `x-access-token`, password the token).
    Token(SecretString),
    /// SSH: an OpenSSH private key. The host key is pinned in `known_hosts` on first use
    /// and a changed host key is refused.
    SshKey { private_key: SecretString, known_hosts: PathBuf },
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub repository: RepositoryUrl,
    pub branch: BranchName,
    pub credentials: Option<GitCredentials>,
    /// Whether local paths and file:// URLs are allowed (server flag).
    pub allow_local: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSource {
    /// Full 40-hex commit id of the branch head that was checked out.
    pub commit: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository URL or branch was refused before Git ran.
    #[error("{0}")]
    Refused(String),
    #[error("repository {repository} was not found or is not readable; check the URL and the credentials")]
    RepositoryNotFound { repository: String },
    #[error("authentication to {repository} failed: {detail}")]
    AuthenticationFailed { repository: String, detail: String },
    #[error("branch {branch:?} does not exist in {repository}; push it or choose another branch")]
    BranchNotFound { repository: String, branch: String },
    #[error("the SSH host key of {host} changed since it was first recorded; if this is expected, remove its line from {known_hosts}")]
    HostKeyChanged { host: String, known_hosts: String },
    #[error("git timed out after {seconds} s while fetching {repository}")]
    Timeout { repository: String, seconds: u64 },
    #[error("git failed: {0}")]
    Git(String),
}

/// Fetches source code.
#[async_trait]
pub trait Source: Send + Sync {
    /// Checks out the head of `request.branch` into `checkout_dir` (created, must not exist),
    /// returning the commit. Secrets never reach the log.
    async fn fetch(
        &self,
        request: &FetchRequest,
        checkout_dir: &Path,
        log: &dyn LogSink,
    ) -> Result<FetchedSource, SourceError>;

    /// The commit at the head of `request.branch`, fetching nothing (dry runs, polling).
    async fn head_commit(
        &self,
        request: &FetchRequest,
        log: &dyn LogSink,
    ) -> Result<String, SourceError>;

    /// The files (paths relative to the repository root) that differ between
    /// `from_commit` and `to_commit` in a checkout made by `fetch` (which holds
    /// `to_commit`); the old commit is fetched first when the checkout lacks it. `None`
    /// when the remote no longer knows `from_commit` (e.g. after a force push): the caller
    /// treats everything as changed.
    async fn changed_files(
        &self,
        request: &FetchRequest,
        checkout_dir: &Path,
        from_commit: &str,
        to_commit: &str,
        log: &dyn LogSink,
    ) -> Result<Option<Vec<String>>, SourceError>;
}

#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The checkout directory.
    pub checkout_dir: PathBuf,
    /// Build context, relative to the checkout.
    pub root_path: RepositoryPath,
    /// Dockerfile, relative to the build context.
    pub dockerfile_path: RepositoryPath,
    pub build_args: BTreeMap<String, String>,
    /// The tag to give the image (`berth/<project-id>/<app>:<content-hash>`).
    pub tag: String,
    pub labels: BTreeMap<String, String>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no Dockerfile at {path} in the repository; check --root-path and --dockerfile")]
    DockerfileMissing { path: String },
    #[error("the build failed at {step}: {message}")]
    Failed { step: String, message: String },
    #[error("the build timed out after {seconds} s")]
    Timeout { seconds: u64 },
    #[error("image {reference} is not present locally and could not be pulled: {message}")]
    PullFailed { reference: String, message: String },
    #[error("the Docker engine failed: {0}")]
    Engine(String),
}

/// Builds images and makes images available locally.
#[async_trait]
pub trait Builder: Send + Sync {
    /// Whether an image with this tag exists locally (used to skip unchanged builds).
    async fn image_exists(&self, tag: &str) -> Result<bool, BuildError>;

    /// Builds the Dockerfile, streaming build output to `log`.
    async fn build(&self, request: &BuildRequest, log: &dyn LogSink) -> Result<(), BuildError>;

    /// Makes `reference` available locally: the local image if present, else pull it.
    async fn ensure_image(
        &self,
        reference: &ImageReference,
        log: &dyn LogSink,
    ) -> Result<(), BuildError>;
}

/// A named volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// Volume name (created by `ensure_volume`).
    pub volume: String,
    /// Absolute path inside the container.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A container to run: an application instance, a database, or a one-off command.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Unique name, e.g. `berth-<project>-<env>-<app>-<deployment-short>`.
    pub name: String,
    pub image: String,
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    /// Docker network (created by `ensure_network`) and the alias other services use.
    pub network: String,
    pub network_aliases: Vec<String>,
    /// Container port published on 127.0.0.1 at a port the engine picks.
    pub port: Option<u16>,
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    /// Replaces the image's command (e.g. server flags of a database).
    pub command: Option<Vec<String>>,
    pub mounts: Vec<VolumeMount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// What the runtime reports about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub restart_count: u64,
    /// The host address (127.0.0.1:port) where the container's port is published.
    pub published: Option<SocketAddr>,
    pub labels: BTreeMap<String, String>,
}

/// How a streamed command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedExit {
    pub exit_code: i64,
    /// The last lines it wrote to standard error.
    pub stderr_tail: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0} was not found")]
    NotFound(String),
    #[error("{operation} failed: {message}")]
    Engine { operation: String, message: String },
}

/// Runs containers and manages networks and volumes, all labelled.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Creates the network if no network of that name exists ("already done" is success).
    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError>;

    /// Creates the volume if no volume of that name exists ("already done" is success).
    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError>;

    /// Creates and starts a container; an existing container of the same name is replaced.
    async fn start_container(&self, spec: &ContainerSpec) -> Result<ContainerState, RuntimeError>;

    /// `Ok(None)` when no such container exists.
    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerState>, RuntimeError>;

    /// The last `tail` lines of a container's output (stdout and stderr).
    async fn container_logs(&self, name: &str, tail: usize) -> Result<Vec<String>, RuntimeError>;

    /// Follows a container's output from `tail` lines back until it stops or `log` is
    /// dropped; returns when the stream ends.
    async fn follow_container_logs(
        &self,
        name: &str,
        tail: usize,
        sender: tokio::sync::mpsc::Sender<String>,
    ) -> Result<(), RuntimeError>;

    /// Stops (SIGTERM, then SIGKILL after `grace`) and removes a container; absent is success.
    async fn remove_container(&self, name_or_id: &str, grace: Duration)
        -> Result<(), RuntimeError>;

    /// Stops a container (SIGTERM, then SIGKILL after `grace`) and keeps it with its
    /// volumes, for `berth environment stop`; Docker does not restart a container stopped
    /// this way (policy `unless-stopped`). Absent is success.
    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Starts a stopped container again with its settings and volumes (its port may be
    /// published at another host port); running is success.
    async fn resume_container(&self, name: &str) -> Result<(), RuntimeError>;

    /// Makes Docker restart the container when it exits (with its own growing backoff),
    /// or stops it doing so. Applied once an instance serves traffic: during a rollout a
    /// crash must fail the deployment, not be hidden by a restart.
    async fn set_restart_on_failure(&self, name: &str, enabled: bool) -> Result<(), RuntimeError>;

    /// Runs `command` in a new one-off container made from `spec` (its port is not
    /// published) until it exits or `timeout` passes, streaming output lines to `output`,
    /// then removes the container. Returns the exit code.
    async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        command: &[String],
        timeout: Duration,
        output: tokio::sync::mpsc::Sender<String>,
    ) -> Result<i64, RuntimeError>;

    /// Runs `command` inside a running container (like `docker exec`), streaming output
    /// lines to `output`; returns the exit code.
    async fn exec_in_container(
        &self,
        name: &str,
        command: &[String],
        output: tokio::sync::mpsc::Sender<String>,
    ) -> Result<i64, RuntimeError>;

    /// Runs `command` inside a running container with its standard input read from `stdin`
    /// (closed when the channel ends) and its standard output sent unchanged to `stdout`.
    async fn exec_streaming(
        &self,
        name: &str,
        command: &[String],
        stdin: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
        stdout: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<StreamedExit, RuntimeError>;

    /// Every object (containers, networks, volumes, images) carrying `berth.managed-by=berth`.
    async fn list_managed(&self) -> Result<Vec<ObservedObject>, RuntimeError>;

    /// Removes one object found by `list_managed`; absent is success.
    async fn remove_object(&self, kind: ObjectKind, id: &str) -> Result<(), RuntimeError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the edge proxy did not accept the route table: {0}")]
pub struct RouterError(pub String);

/// Publishes the route table to the edge proxy (or, on Kubernetes, to Ingress objects).
#[async_trait]
pub trait Router: Send + Sync {
    async fn apply(&self, table: &RouteTable) -> Result<(), RouterError>;
}
