//! The records the store returns: rows already parsed into domain types, so callers never
//! handle raw strings from the database.

use berth_domain::deployment::{
    DeploymentStatus, EnvironmentMode, FailureReason, StepName, StepStatus,
};
use berth_domain::spec::ApplicationSpec;
use berth_domain::variables::VariableScope;
use berth_domain::{
    ApiTokenId, ApplicationId, BranchName, DeploymentId, EnvVarName, EnvironmentId, OrganizationId,
    ProjectId, ResourceName, VariableId,
};

use crate::StoreError;

/// Whether a resource is in use or being torn down by the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Active,
    Deleting,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleting => "deleting",
        }
    }

    pub(crate) fn parse(value: &str) -> Result<Self, StoreError> {
        match value {
            "active" => Ok(Self::Active),
            "deleting" => Ok(Self::Deleting),
            other => Err(StoreError::corrupt("lifecycle status", other)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OrganizationRecord {
    pub id: OrganizationId,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct ApiTokenRecord {
    pub id: ApiTokenId,
    pub organization_id: OrganizationId,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone)]
pub struct ProjectRecord {
    pub id: ProjectId,
    pub organization_id: OrganizationId,
    pub name: ResourceName,
    pub lifecycle: Lifecycle,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct EnvironmentRecord {
    pub id: EnvironmentId,
    pub project_id: ProjectId,
    pub name: ResourceName,
    pub mode: EnvironmentMode,
    pub branch: BranchName,
    pub lifecycle: Lifecycle,
    /// Stopped by `berth environment stop`: containers stopped, data kept, deployments
    /// refused until it is started.
    pub stopped: bool,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct ApplicationRecord {
    pub id: ApplicationId,
    pub environment_id: EnvironmentId,
    pub name: ResourceName,
    pub spec: ApplicationSpec,
    /// Git token or SSH key, encrypted; `None` when the source needs no credential.
    pub credential_ciphertext: Option<Vec<u8>>,
    pub lifecycle: Lifecycle,
    /// The deployment whose container serves this application now.
    pub current_deployment_id: Option<DeploymentId>,
    pub created_at: String,
    pub updated_at: String,
}

/// Who owns a variable: the scope and the ids along its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariableOwner {
    pub project_id: ProjectId,
    pub environment_id: Option<EnvironmentId>,
    pub application_id: Option<ApplicationId>,
}

impl VariableOwner {
    pub fn scope(&self) -> VariableScope {
        match (self.environment_id, self.application_id) {
            (_, Some(_)) => VariableScope::Application,
            (Some(_), None) => VariableScope::Environment,
            (None, None) => VariableScope::Project,
        }
    }
}

/// A variable's value as stored: plain text, or ciphertext for secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredValue {
    Plain(String),
    Encrypted(Vec<u8>),
    /// Follows a built-in variable (e.g. `BERTH_DATABASE_MAIN_URL`), resolved at deploy time.
    Alias(EnvVarName),
}

impl std::fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain(v) => write!(f, "Plain({v:?})"),
            Self::Encrypted(v) => write!(f, "Encrypted({} bytes)", v.len()),
            Self::Alias(name) => write!(f, "Alias({name})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VariableRecord {
    pub id: VariableId,
    pub owner: VariableOwner,
    pub name: EnvVarName,
    pub value: StoredValue,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct DatabaseRecord {
    pub id: berth_domain::DatabaseId,
    pub environment_id: EnvironmentId,
    pub name: ResourceName,
    pub spec: berth_domain::database::DatabaseSpec,
    /// `DatabaseCredentials` as JSON, encrypted.
    pub credentials_ciphertext: Vec<u8>,
    pub lifecycle: Lifecycle,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct BackupRecord {
    pub id: berth_domain::BackupId,
    /// The database it was taken of; the record outlives it.
    pub database_id: berth_domain::DatabaseId,
    pub environment_id: EnvironmentId,
    pub database_name: ResourceName,
    pub engine: berth_domain::database::DatabaseEngine,
    /// File name inside the database's folder of the backup store.
    pub file_name: String,
    /// The backup store holding the file: `local` or `s3`.
    pub store: String,
    pub size_bytes: u64,
    pub sha256: String,
    /// `manual`, `scheduled` or `final` (taken before the database was deleted).
    pub reason: String,
    /// Scheduled backups: the schedule slot it was taken for.
    pub scheduled_slot: Option<String>,
    pub created_at: String,
}

/// A database's backup schedule and retention.
#[derive(Debug, Clone)]
pub struct BackupScheduleRecord {
    pub database_id: berth_domain::DatabaseId,
    /// Cron expression; `None`: no scheduled backups (the retention still applies).
    pub cron: Option<String>,
    /// How many scheduled backups are kept.
    pub retention: u32,
    /// The last slot handled; the next run is the first slot after it.
    pub last_slot: String,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeploymentRecord {
    pub id: DeploymentId,
    pub project_id: ProjectId,
    pub environment_id: EnvironmentId,
    /// Set when only one application is deployed.
    pub application_id: Option<ApplicationId>,
    pub status: DeploymentStatus,
    pub trigger: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub failure: Option<FailureReason>,
    /// Set when this deployment redeploys an earlier one's images and configuration.
    pub rollback_of: Option<DeploymentId>,
}

#[derive(Debug, Clone)]
pub struct DeploymentServiceRecord {
    pub deployment_id: DeploymentId,
    pub application_id: ApplicationId,
    pub application_name: String,
    pub git_commit: Option<String>,
    pub image: Option<String>,
    /// Base name of the instances' containers (`<base>-<index>`).
    pub container_name: Option<String>,
    pub instances: u16,
    /// The application's spec and resolved environment at deploy time, encrypted.
    pub config_snapshot: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct StepRecord {
    pub id: i64,
    pub deployment_id: DeploymentId,
    pub application_name: Option<String>,
    pub name: StepName,
    pub status: StepStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LogRecord {
    pub id: i64,
    pub deployment_id: DeploymentId,
    pub application_name: Option<String>,
    pub step: Option<String>,
    pub timestamp: String,
    pub line: String,
}

pub(crate) fn parse_id<T: std::str::FromStr>(
    what: &'static str,
    value: &str,
) -> Result<T, StoreError> {
    value.parse().map_err(|_| StoreError::corrupt(what, value))
}

pub(crate) fn parse_opt_id<T: std::str::FromStr>(
    what: &'static str,
    value: Option<String>,
) -> Result<Option<T>, StoreError> {
    value.map(|v| parse_id(what, &v)).transpose()
}

pub(crate) fn parse_name(value: &str) -> Result<ResourceName, StoreError> {
    ResourceName::parse(value).map_err(|e| StoreError::corrupt("name", e))
}
