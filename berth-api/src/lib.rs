//! The wire types of Berth's REST API (`/api/v1`): request and response bodies and the one
//! error shape. They are plain serde structs shared by the server and the CLI, converted
//! by hand from and to domain types at the server's edge. Status-like fields are strings
//! (documented values) so that an older client tolerates values a newer server adds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The prefix every API route lives under.
pub const API_PREFIX: &str = "/api/v1";

/// Every error response: a stable machine-readable `code` and a message saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `invalid_input`,
    /// `payload_too_large`, `unsupported_media_type`, `busy`, `internal`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateProject {
    /// DNS label: lower-case letters, digits and '-', starting with a letter.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    /// `active` or `deleting`.
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateEnvironment {
    pub name: String,
    /// `production`, `staging`, `development` (default) or `preview`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Git branch the environment follows; default `main`.
    #[serde(default)]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub id: String,
    pub project: String,
    pub name: String,
    pub mode: String,
    pub branch: String,
    /// `active` or `deleting`.
    pub status: String,
    pub created_at: String,
}

/// Where the application's code comes from, as given by the user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GitSourceInput {
    /// https://, http://, ssh://, user@host:path; file:// or an absolute path only when the
    /// server allows local repositories.
    pub repository: String,
    /// Overrides the environment's branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// Build context inside the repository (default `.`).
    #[serde(default)]
    pub root_path: Option<String>,
    /// Dockerfile path relative to the root path (default `Dockerfile`).
    #[serde(default)]
    pub dockerfile_path: Option<String>,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
}

/// A health check as given and as shown. Absent fields take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheckSettings {
    /// `tcp` (default: the port accepts connections) or `http`.
    #[serde(default)]
    pub kind: Option<String>,
    /// HTTP path, e.g. `/healthz` (http only).
    #[serde(default)]
    pub path: Option<String>,
    /// Accepted HTTP statuses, e.g. `200-399` (http only; default 200-399).
    #[serde(default)]
    pub expected_status: Option<String>,
    /// Seconds to wait after start before the first check (default 0).
    #[serde(default)]
    pub start_delay_secs: Option<f64>,
    /// Seconds between checks (default 2).
    #[serde(default)]
    pub interval_secs: Option<f64>,
    /// Seconds one check may take (default 2).
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Consecutive failures that take an instance out of rotation (default 3).
    #[serde(default)]
    pub failure_threshold: Option<u32>,
}

/// A persistent named volume of an application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeSettings {
    pub name: String,
    /// Absolute mount path inside the container.
    pub path: String,
    /// Size in GB accounted for the volume (default 1; enforced only by volume drivers
    /// with quotas).
    #[serde(default)]
    pub size_gb: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateApplication {
    pub name: String,
    /// Exactly one of `git` and `image`.
    #[serde(default)]
    pub git: Option<GitSourceInput>,
    #[serde(default)]
    pub image: Option<String>,
    /// Port the application listens on; absent for a worker without a route.
    #[serde(default)]
    pub port: Option<u32>,
    /// Private applications get no public route.
    #[serde(default)]
    pub private: bool,
    /// CPU limit in cores, e.g. 0.5.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Memory limit in MiB.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// HTTPS token for a private repository (write-only, stored encrypted).
    #[serde(default)]
    pub git_token: Option<String>,
    /// SSH deploy key (OpenSSH private key; write-only, stored encrypted).
    #[serde(default)]
    pub ssh_private_key: Option<String>,
    /// Number of instances (default 1, at most 20).
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub health_check: Option<HealthCheckSettings>,
    /// Command run once in a one-off container of the new image before traffic switches.
    #[serde(default)]
    pub release_command: Option<String>,
    /// Seconds old instances keep serving in-flight requests after a switch (default 5).
    #[serde(default)]
    pub drain_secs: Option<f64>,
    /// Persistent volumes, kept across deployments and restarts.
    #[serde(default)]
    pub volumes: Vec<VolumeSettings>,
}

/// A partial update: absent fields are left unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateApplication {
    #[serde(default)]
    pub git: Option<GitSourceInput>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub port: Option<u32>,
    /// Remove the port (the application becomes a worker).
    #[serde(default)]
    pub clear_port: bool,
    #[serde(default)]
    pub private: Option<bool>,
    #[serde(default)]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
    #[serde(default)]
    pub git_token: Option<String>,
    #[serde(default)]
    pub ssh_private_key: Option<String>,
    /// Forget the stored Git credential.
    #[serde(default)]
    pub clear_credentials: bool,
    /// Number of instances (default 1, at most 20).
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub health_check: Option<HealthCheckSettings>,
    /// Command run once in a one-off container of the new image before traffic switches.
    #[serde(default)]
    pub release_command: Option<String>,
    /// Seconds old instances keep serving in-flight requests after a switch (default 5).
    #[serde(default)]
    pub drain_secs: Option<f64>,
    /// Remove the release command.
    #[serde(default)]
    pub clear_release_command: bool,
    /// Replaces the list of volumes. A volume left out is no longer mounted; its data is
    /// kept until the application is deleted.
    #[serde(default)]
    pub volumes: Option<Vec<VolumeSettings>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GitSourceView {
    pub repository: String,
    /// The branch override, if any.
    pub branch: Option<String>,
    /// The branch that is deployed (override or the environment's).
    pub effective_branch: String,
    pub root_path: String,
    pub dockerfile_path: String,
    pub build_args: BTreeMap<String, String>,
    /// `none`, `token` or `ssh_key` (the secret itself is never returned).
    pub credential: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Application {
    pub id: String,
    pub project: String,
    pub environment: String,
    pub name: String,
    pub git: Option<GitSourceView>,
    pub image: Option<String>,
    pub port: Option<u16>,
    pub private: bool,
    pub cpu: Option<f64>,
    pub memory_mb: Option<u32>,
    #[serde(default)]
    pub instances: u32,
    #[serde(default)]
    pub health_check: HealthCheckSettings,
    #[serde(default)]
    pub release_command: Option<String>,
    #[serde(default)]
    pub drain_secs: f64,
    #[serde(default)]
    pub volumes: Vec<VolumeSettings>,
    /// Public URL through the edge proxy (absent for private applications and workers).
    pub url: Option<String>,
    /// `never_deployed`, `deploying`, `running`, `crashed`, `stopped`, `deleting`.
    pub status: String,
    pub current_deployment: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetVariable {
    pub name: String,
    /// The value (ignored for an alias).
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub secret: bool,
    /// Make this variable follow a built-in one, e.g. `BERTH_DATABASE_MAIN_URL`.
    #[serde(default)]
    pub alias_of: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateDatabase {
    pub name: String,
    /// `postgresql`, `mariadb` (or `mysql`), `redis`.
    pub engine: String,
    /// Default: the version the offline images provide (PostgreSQL 15, MariaDB 10.11,
    /// Redis 7.0).
    #[serde(default)]
    pub version: Option<String>,
    /// `container` (default) or `external`.
    #[serde(default)]
    pub mode: Option<String>,
    /// External mode: the server's URL with credentials (write-only, stored encrypted).
    #[serde(default)]
    pub url: Option<String>,
    /// Container mode: storage accounted for the volume, in GB (default 1).
    #[serde(default)]
    pub storage_gb: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Database {
    pub id: String,
    pub project: String,
    pub environment: String,
    pub name: String,
    pub engine: String,
    pub version: String,
    /// `container` or `external`.
    pub mode: String,
    pub storage_gb: Option<u32>,
    /// Host and port applications of the environment use.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    /// The connection URL with the password masked.
    pub url: String,
    /// The variables applications receive (`BERTH_DATABASE_<NAME>_URL`, ...).
    pub variables: Vec<String>,
    /// `active`, `deleting`.
    pub status: String,
    /// Container mode: `running`, `stopped`, `not_deployed`.
    pub runtime_status: String,
    pub created_at: String,
    /// On deletion with a final backup: where that backup file is kept.
    #[serde(default)]
    pub final_backup: Option<Backup>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Backup {
    pub id: String,
    pub database: String,
    /// Path of the file in the server's backup store.
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// `manual` or `final`.
    pub reason: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloneDatabase {
    /// Name of the new database.
    pub name: String,
    /// Environment (of the same project) to create it in; default the source's.
    #[serde(default)]
    pub environment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RestoreRequest {
    /// The backup to restore (see `GET .../backups`).
    pub backup: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Variable {
    pub name: String,
    /// The value; `********` for secrets, which are write-only.
    pub value: String,
    pub secret: bool,
    /// `project`, `environment` or `application`.
    pub scope: String,
    /// The built-in variable this one follows, if it is an alias.
    #[serde(default)]
    pub alias_of: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateDeployment {
    /// Deploy only this application; absent deploys every application of the environment.
    #[serde(default)]
    pub application: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// The earlier deployment whose images and configuration (variables included) to
    /// deploy again.
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecRequest {
    /// The command and its arguments (no shell is involved unless you run one).
    pub command: Vec<String>,
    /// Run inside this running instance (numbered from 0) instead of a new container.
    #[serde(default)]
    pub instance: Option<u32>,
}

/// The last event of an exec stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecExit {
    pub exit_code: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentStep {
    pub application: Option<String>,
    /// `clone`, `build`, `release`, `start`, `health`, `route`, `retire`.
    pub name: String,
    /// `running`, `succeeded`, `failed`, `skipped`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentFailure {
    pub step: String,
    pub application: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeployedService {
    pub application: String,
    pub commit: Option<String>,
    pub image: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: String,
    pub project: String,
    pub environment: String,
    /// The single application deployed, or absent for the whole environment.
    pub application: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, `superseded`.
    pub status: String,
    /// Who or what asked for it, e.g. `user:admin`.
    pub trigger: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub failure: Option<DeploymentFailure>,
    pub services: Vec<DeployedService>,
    pub steps: Vec<DeploymentStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub timestamp: String,
    pub application: Option<String>,
    pub step: Option<String>,
    pub line: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApplicationStatus {
    pub name: String,
    /// `never_deployed`, `deploying`, `running`, `degraded`, `crashed`, `stopped`, `deleting`.
    pub status: String,
    pub url: Option<String>,
    pub commit: Option<String>,
    pub deployment: Option<String>,
    /// Instances the application should run, and how many run now.
    #[serde(default)]
    pub instances: u32,
    #[serde(default)]
    pub instances_running: u32,
    pub restart_count: u64,
    /// Why the application is not running, when it is not.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentStatus {
    pub project: String,
    pub environment: String,
    pub applications: Vec<ApplicationStatus>,
    pub last_deployment: Option<Deployment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}
