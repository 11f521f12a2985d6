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
    /// `active`, `stopped` or `deleting`.
    pub status: String,
    pub created_at: String,
    /// Set by a deletion with `final_backup`: `<database>: <where the backup is kept>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_backups: Vec<String>,
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
    /// Applications or databases of the environment deployed before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Globs relative to the repository root (`!` excludes) whose changes redeploy it on
    /// a push; absent means its root path.
    #[serde(default)]
    pub watch_paths: Vec<String>,
    /// Whether a push to the followed branch deploys it (webhooks, polling); default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<bool>,
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
    /// Replaces the dependencies (an empty list removes them).
    #[serde(default)]
    pub depends_on: Option<Vec<String>>,
    /// Replaces the watch paths (an empty list goes back to the root path).
    #[serde(default)]
    pub watch_paths: Option<Vec<String>>,
    /// Whether a push to the followed branch deploys it (webhooks, polling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<bool>,
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
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub watch_paths: Vec<String>,
    /// Whether a push to the followed branch deploys it (webhooks, polling).
    #[serde(default = "default_true")]
    pub auto_deploy: bool,
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
    /// Scheduled backups: a cron expression in UTC (5 fields, or 6 with seconds first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<String>,
    /// How many scheduled backups are kept (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_retention: Option<u32>,
}

/// Changes to a database's settings; absent fields are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateDatabase {
    /// A cron expression in UTC (5 fields, or 6 with seconds first), or `none` to stop
    /// scheduled backups.
    #[serde(default)]
    pub backup_schedule: Option<String>,
    /// How many scheduled backups are kept; older ones are deleted.
    #[serde(default)]
    pub backup_retention: Option<u32>,
    /// External databases: the server's new URL (with its new credentials). It is checked
    /// by opening a session before it is stored; the environment's applications are then
    /// redeployed (`queued_deployment` in the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
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
    /// The backup schedule (cron, UTC), if any.
    #[serde(default)]
    pub backup_schedule: Option<String>,
    /// How many scheduled backups are kept.
    #[serde(default)]
    pub backup_retention: Option<u32>,
    /// When the next scheduled backup is due.
    #[serde(default)]
    pub next_backup_at: Option<String>,
    /// Why the last scheduled backup failed (it is retried), if it did.
    #[serde(default)]
    pub last_backup_error: Option<String>,
    /// After a change of credentials (`rotate-credentials`, a new external URL): the
    /// deployment queued to give the environment's applications the new values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_deployment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Backup {
    pub id: String,
    pub database: String,
    /// `postgresql`, `mariadb`, `redis`: it restores only into a database of this engine.
    #[serde(default)]
    pub engine: String,
    /// Where the file is: a path in the local store, or an `s3://bucket/key` URL.
    pub path: String,
    /// `local` or `s3`.
    #[serde(default)]
    pub store: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// What took it: `manual`, `scheduled` or `final` (before the database was deleted).
    pub reason: String,
    /// Scheduled backups: the schedule's slot (UTC) it was taken for.
    #[serde(default)]
    pub scheduled_slot: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloneDatabase {
    /// Name of the new database.
    pub name: String,
    /// Environment (of the same project) to create it in; default the source's.
    #[serde(default)]
    pub environment: Option<String>,
    /// How the data is copied: `physical` (an online `pg_basebackup`, PostgreSQL only) or
    /// `dump` (a logical dump streamed into a restore). Default: `physical` for PostgreSQL
    /// container databases, `dump` for the other engines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// The answer to a clone: the new database, and how its data was copied.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClonedDatabase {
    #[serde(flatten)]
    pub database: Database,
    /// The method used: `physical` or `dump` (absent from servers older than the field).
    #[serde(default)]
    pub clone_method: Option<String>,
    /// Bytes streamed from the source (the dump, or the base backup).
    #[serde(default)]
    pub copied_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RestoreRequest {
    /// The backup to restore (see `GET .../backups`).
    pub backup: String,
}

/// A database's connection credentials in clear (`GET .../databases/{d}/credentials`,
/// admin tokens only): what `berth database connect` needs to run a client through its
/// tunnel. Every other response masks the password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseCredentials {
    pub database_name: String,
    /// `postgresql`, `mariadb`, `redis`.
    pub engine: String,
    /// Host and port applications of the environment use (not the tunnel's).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Database name (PostgreSQL, MariaDB) or index (Redis).
    pub database: String,
}

impl std::fmt::Debug for DatabaseCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCredentials")
            .field("database_name", &self.database_name)
            .field("engine", &self.engine)
            .field("user", &self.user)
            .field("password", &"********")
            .finish_non_exhaustive()
    }
}

/// The `Upgrade` token of `GET .../databases/{d}/tunnel`: after `101 Switching Protocols`
/// the connection carries the database's own protocol, byte for byte.
pub const DATABASE_TUNNEL_PROTOCOL: &str = "berth-database-tunnel";

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

/// What `berth deploy --dry-run` shows: the waves of a deployment and what it would do
/// with each service. Nothing is changed by computing it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentPlan {
    pub project: String,
    pub environment: String,
    /// In order; the services of one wave deploy in parallel.
    pub waves: Vec<DeploymentPlanWave>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentPlanWave {
    /// Numbered from 1.
    pub wave: u32,
    pub services: Vec<PlannedService>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlannedService {
    pub name: String,
    /// `database` or `application`.
    pub kind: String,
    /// `ensure`, `build`, `reuse`, `shared`, `image`, `skip`.
    pub action: String,
    /// The commit that would be built or deployed, for Git applications.
    #[serde(default)]
    pub commit: Option<String>,
    /// The application whose build would be shared, for `shared`.
    #[serde(default)]
    pub shared_with: Option<String>,
    /// A sentence saying what would happen.
    pub detail: String,
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

fn default_true() -> bool {
    true
}

// ---- environment actions, clones and previews ----

/// `POST /projects/{project}/environments/{environment}/clone`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloneEnvironmentRequest {
    /// Name of the new environment.
    pub name: String,
    /// Branch the new environment follows; default the source's.
    #[serde(default)]
    pub branch: Option<String>,
    /// Mode of the new environment; default the source's.
    #[serde(default)]
    pub mode: Option<String>,
    /// Copy every container database's data and every application volume.
    #[serde(default)]
    pub with_data: bool,
    /// Queue a deployment of the new environment (default true).
    #[serde(default = "default_true")]
    pub deploy: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClonedEnvironment {
    pub environment: Environment,
    /// What the clone did, in order.
    pub steps: Vec<String>,
    /// The first deployment of the new environment, when one was queued.
    pub deployment: Option<Deployment>,
}

/// The answer to `stop` and `start`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentActionResult {
    pub environment: Environment,
    /// Containers stopped or started.
    pub containers: Vec<String>,
    pub message: String,
}

/// `PUT /projects/{project}/environments/{environment}/previews`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnablePreviews {
    /// Copy the blueprint's databases and volumes into each preview.
    #[serde(default)]
    pub with_data: bool,
    /// Concurrent previews at most (default 5).
    #[serde(default)]
    pub max_previews: Option<u32>,
    /// Delete a preview after this long without activity, e.g. `48h`, `30m`, `5s`
    /// (default 48h).
    #[serde(default)]
    pub expire_after: Option<String>,
    /// Give pull requests from forks a preview (they receive secrets and data).
    #[serde(default)]
    pub allow_forks: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewSettings {
    pub with_data: bool,
    pub max_previews: u32,
    pub expire_after_seconds: u64,
    pub allow_forks: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// The preview environment (`pr-<number>`).
    pub environment: String,
    pub number: u64,
    pub head_branch: String,
    pub head_commit: String,
    pub from_fork: bool,
    pub created_at: String,
    /// Seconds since the last pull-request activity.
    pub idle_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewRefusal {
    pub number: u64,
    pub head_branch: String,
    pub reason: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreviewList {
    pub project: String,
    /// The blueprint environment.
    pub environment: String,
    /// `None` when previews are disabled.
    pub settings: Option<PreviewSettings>,
    pub previews: Vec<Preview>,
    /// Newest first.
    pub refusals: Vec<PreviewRefusal>,
}

/// Where and how a Git host delivers webhooks for a project (`berth webhook show`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookSettings {
    pub project: String,
    /// The secret to paste into the Git host (GitHub/Gitea: "Secret"; GitLab: "Secret
    /// token"). Only admins can read it.
    pub secret: String,
    /// One entry per supported host; `path` is relative to the server URL.
    pub endpoints: Vec<WebhookEndpoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpoint {
    /// `github`, `gitlab` or `gitea`.
    pub provider: String,
    /// e.g. `/api/v1/webhooks/github?project=shop`.
    pub path: String,
    /// The events to enable in the host.
    pub events: String,
}

/// One webhook delivery as Berth recorded it (never the payload).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    pub project: String,
    pub provider: String,
    pub event: String,
    /// `accepted`, `ignored` or `refused`.
    pub verdict: String,
    pub reason: String,
    /// What it caused: deployments queued, environments created or deleted.
    pub triggered: String,
    pub received_at: String,
}

/// Berth's answer to a Git host's delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookAnswer {
    /// `accepted` or `ignored`.
    pub verdict: String,
    /// What the delivery caused, or why nothing.
    pub message: String,
    /// Ids of the deployments it queued.
    #[serde(default)]
    pub deployments: Vec<String>,
}

/// Changes a project's Git automation; absent fields are left unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateProject {
    /// How often to poll the followed branches: `60s`, `5m`, `90` (seconds) or `off`.
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// Branch glob (e.g. `feature/*`) whose pushes create environments; `off` disables.
    #[serde(default)]
    pub branch_environments: Option<String>,
    /// The environment branch environments are cloned from.
    #[serde(default)]
    pub branch_blueprint: Option<String>,
    /// Clone the blueprint's databases and volumes with their data.
    #[serde(default)]
    pub branch_environments_with_data: Option<bool>,
}

/// A project's Git automation settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectSettings {
    pub project: String,
    /// Seconds between polls of the followed branches; absent: no polling.
    pub poll_interval_secs: Option<u64>,
    pub branch_environments: Option<String>,
    pub branch_blueprint: Option<String>,
    #[serde(default)]
    pub branch_environments_with_data: bool,
}
