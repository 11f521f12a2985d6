//! The desired shape of an application: where its code comes from, how it is reached and
//! what resources it may use. Validated at construction, so the engine can trust it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::health::HealthCheck;
use crate::names::{BranchName, NameError, ResourceName};
use crate::source::{ImageReference, RepositoryPath, RepositoryUrl};

/// Which kind of credential a Git source uses. The secret itself (token or private key) is
/// stored encrypted next to the application and never travels inside the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitCredentialKind {
    #[default]
    None,
    /// An HTTPS token, sent as the basic-auth password.
    Token,
    /// An SSH deploy key (private key in OpenSSH format).
    SshKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    pub repository: RepositoryUrl,
    /// `None` follows the environment's branch.
    pub branch: Option<BranchName>,
    pub root_path: RepositoryPath,
    /// Relative to `root_path`.
    pub dockerfile_path: RepositoryPath,
    pub build_args: BTreeMap<String, String>,
    pub credential: GitCredentialKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApplicationSource {
    Git(GitSource),
    Image { reference: ImageReference },
}

/// CPU limit in thousandths of a core (`--cpu 0.5` is 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MilliCpu(u32);

impl MilliCpu {
    pub fn from_cores(cores: f64) -> Result<Self, NameError> {
        if !(0.01..=256.0).contains(&cores) || !cores.is_finite() {
            return Err(NameError::new_pub(
                "CPU limit",
                &cores.to_string(),
                "give a number of cores between 0.01 and 256, e.g. 0.5",
            ));
        }
        Ok(Self((cores * 1000.0).round() as u32))
    }

    pub fn millis(self) -> u32 {
        self.0
    }

    pub fn cores(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

/// Memory limit in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemoryMib(u32);

impl MemoryMib {
    pub fn new(mib: u32) -> Result<Self, NameError> {
        // Docker refuses limits under 6 MiB; 1 TiB is a sanity bound against typos.
        if !(6..=1_048_576).contains(&mib) {
            return Err(NameError::new_pub(
                "memory limit",
                &mib.to_string(),
                "give megabytes between 6 and 1048576, e.g. 256",
            ));
        }
        Ok(Self(mib))
    }

    pub fn mib(self) -> u32 {
        self.0
    }

    pub fn bytes(self) -> u64 {
        u64::from(self.0) * 1024 * 1024
    }
}

/// Whether the application gets a public route through the edge proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    #[default]
    Public,
    /// Reachable only by the environment's other services, on the environment network.
    Private,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationSpec {
    pub source: ApplicationSource,
    /// The port the application listens on; `None` makes it a worker with no route.
    pub port: Option<u16>,
    pub visibility: Visibility,
    pub cpu: Option<MilliCpu>,
    pub memory: Option<MemoryMib>,
    /// How many containers serve the application; the proxy balances across the healthy ones.
    #[serde(default = "one_instance")]
    pub instances: u16,
    /// Defaults to a TCP check of the port.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Run once in a one-off container of the new image before traffic switches (e.g.
    /// database migrations); run by the image's `sh -c`.
    #[serde(default)]
    pub release_command: Option<String>,
    /// How long old instances keep finishing in-flight requests after traffic moved away.
    #[serde(default = "default_drain_ms")]
    pub drain_ms: u64,
    /// Persistent named volumes, kept across deployments and restarts.
    #[serde(default)]
    pub volumes: Vec<ApplicationVolume>,
    /// Applications or databases of the environment deployed before this one.
    #[serde(default)]
    pub depends_on: Vec<ResourceName>,
    /// Which changed files redeploy it on a push (monorepos); empty means its root path.
    #[serde(default)]
    pub watch_paths: Vec<crate::watch::WatchPattern>,
    /// Whether a push to the followed branch (webhook or polling) deploys the application.
    #[serde(default = "auto_deploy_on")]
    pub auto_deploy: bool,
}

/// A persistent volume of an application, mounted at `path` in every instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationVolume {
    pub name: ResourceName,
    /// Absolute path inside the container.
    pub path: String,
    /// Size accounted for the volume, in GB (enforced only by volume drivers that support
    /// quotas; Docker's `local` driver does not).
    pub size_gb: u32,
}

impl ApplicationVolume {
    /// Parses `NAME:/path`.
    pub fn parse(value: &str, size_gb: u32) -> Result<Self, NameError> {
        let fail = |reason: &str| NameError::new_pub("volume", value, reason);
        let (name, path) = value
            .split_once(':')
            .ok_or_else(|| fail("use NAME:/absolute/path, e.g. uploads:/app/uploads"))?;
        if path.is_empty() {
            return Err(fail("use NAME:/absolute/path, e.g. uploads:/app/uploads"));
        }
        let name = ResourceName::parse(name)?;
        let valid_path = path.starts_with('/')
            && path.len() <= 1024
            && path != "/"
            && !path.split('/').any(|c| c == "..")
            && !path.chars().any(|c| c.is_control() || c == ':' || c == ',');
        if !valid_path {
            return Err(fail(
                "the mount path must be an absolute path other than / without '..', ':' or ','",
            ));
        }
        if !(1..=16_384).contains(&size_gb) {
            return Err(fail("the size must be between 1 and 16384 GB"));
        }
        Ok(Self { name, path: path.trim_end_matches('/').to_owned(), size_gb })
    }
}

fn auto_deploy_on() -> bool {
    true
}

fn one_instance() -> u16 {
    1
}

fn default_drain_ms() -> u64 {
    DEFAULT_DRAIN_MS
}

/// Default drain time of old instances.
pub const DEFAULT_DRAIN_MS: u64 = 5_000;
/// Most instances of one application.
pub const MAX_INSTANCES: u16 = 20;

/// Validates an instance count.
pub fn validate_instances(instances: u32) -> Result<u16, NameError> {
    u16::try_from(instances).ok().filter(|n| (1..=MAX_INSTANCES).contains(n)).ok_or_else(|| {
        NameError::new_pub(
            "instance count",
            &instances.to_string(),
            "give between 1 and 20 instances",
        )
    })
}

/// Validates a release command (length and characters only: it runs in the user's own
/// container).
pub fn validate_release_command(command: &str) -> Result<(), NameError> {
    if command.trim().is_empty() || command.len() > 4096 || command.contains('\0') {
        return Err(NameError::new_pub(
            "release command",
            command,
            "give a non-empty command of at most 4096 characters, e.g. \"./migrate up\"",
        ));
    }
    Ok(())
}

impl ApplicationSpec {
    /// Whether the proxy should route a hostname to this application.
    pub fn is_routed(&self) -> bool {
        self.port.is_some() && self.visibility == Visibility::Public
    }
}

/// Build arguments are passed to Docker as `--build-arg KEY=VALUE`; keys follow the
/// variable-name rules so they cannot smuggle anything else.
pub fn validate_build_arg_key(key: &str) -> Result<(), NameError> {
    crate::names::EnvVarName::parse_any(key).map(|_| ()).map_err(|_| {
        NameError::new_pub(
            "build argument",
            key,
            "use letters, digits and '_', not starting with a digit (e.g. NODE_ENV=production)",
        )
    })
}

/// Validates an application's port.
pub fn validate_port(port: u32) -> Result<u16, NameError> {
    u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        NameError::new_pub("port", &port.to_string(), "give a TCP port between 1 and 65535")
    })
}

/// The environment's branch unless the application overrides it.
pub fn effective_branch(source: &GitSource, environment_branch: &BranchName) -> BranchName {
    source.branch.clone().unwrap_or_else(|| environment_branch.clone())
}
