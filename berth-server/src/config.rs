//! Command-line flags (and their `BERTH_*` environment variables) of `berth server` and
//! `berth proxy`, and their validation into settings. Read once in the binary and passed
//! explicitly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_domain::Hostname;

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Where Berth keeps its store, keys, checkouts and logs. Default:
    /// `$XDG_DATA_HOME/berth`, or `/var/lib/berth` when run as root.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address of the REST API.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the edge proxy that serves applications (80 in production).
    #[arg(long, env = "BERTH_PROXY_LISTEN", default_value = "127.0.0.1:8000")]
    pub proxy_listen: SocketAddr,

    /// Applications are served at `<app>.<environment>.<project>.<base-domain>`.
    #[arg(long, env = "BERTH_BASE_DOMAIN", default_value = "localhost")]
    pub base_domain: String,

    /// Allow applications to use local paths and file:// repository URLs. Off by default:
    /// with it, anyone holding an API token can make the server read any Git repository
    /// its user can read.
    #[arg(long, env = "BERTH_ALLOW_LOCAL_REPOSITORIES")]
    pub allow_local_repositories: bool,

    /// The key that encrypts secrets; default `<data-dir>/master.key` (created once).
    #[arg(long, env = "BERTH_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Docker engine socket.
    #[arg(long, env = "BERTH_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
    pub docker_socket: String,

    /// Seconds a new container has to accept connections on its port.
    #[arg(
        long = "health-timeout",
        value_name = "SECS",
        env = "BERTH_HEALTH_TIMEOUT",
        default_value_t = 60
    )]
    pub health_timeout_secs: u64,

    /// Seconds a build may take.
    #[arg(
        long = "build-timeout",
        value_name = "SECS",
        env = "BERTH_BUILD_TIMEOUT",
        default_value_t = 1800
    )]
    pub build_timeout_secs: u64,

    /// Seconds a release command may run.
    #[arg(
        long = "release-timeout",
        value_name = "SECS",
        env = "BERTH_RELEASE_TIMEOUT",
        default_value_t = 900
    )]
    pub release_timeout_secs: u64,

    /// Seconds a Git fetch may take.
    #[arg(
        long = "clone-timeout",
        value_name = "SECS",
        env = "BERTH_CLONE_TIMEOUT",
        default_value_t = 600
    )]
    pub clone_timeout_secs: u64,

    /// Seconds to create and start an application's containers.
    #[arg(
        long = "start-timeout",
        value_name = "SECS",
        env = "BERTH_START_TIMEOUT",
        default_value_t = 120
    )]
    pub start_timeout_secs: u64,

    /// Keep the images of this many most recent successful deployments per application
    /// (for rollbacks); older images are removed.
    #[arg(long, env = "BERTH_KEEP_IMAGES", default_value_t = 5)]
    pub keep_images: u32,

    /// How many independent applications of one deployment deploy at once (applications
    /// that depend on others always wait for them).
    #[arg(long, env = "BERTH_DEPLOY_CONCURRENCY", default_value_t = 2)]
    pub deploy_concurrency: usize,

    /// Test hook: pause the engine when a deployment reaches this step (clone, build,
    /// release, start, health, route, retire), writing `<data-dir>/paused-at-<step>`.
    #[arg(long, env = "BERTH_TEST_PAUSE_AT", hide = true)]
    pub test_pause_at: Option<String>,

    /// Do not start a `berth proxy` process (for tests that run their own).
    #[arg(long, env = "BERTH_NO_PROXY", hide = true)]
    pub no_proxy: bool,

    /// Where database backups are kept: `local` (`<data-dir>/backups`) or `s3` (an
    /// S3-compatible bucket, see the --s3-* options).
    #[arg(long, env = "BERTH_BACKUP_STORE", default_value = "local", value_parser = ["local", "s3"])]
    pub backup_store: String,

    /// S3 store: the endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com or
    /// http://127.0.0.1:9000 (path-style requests).
    #[arg(long, env = "BERTH_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// S3 store: the bucket (it must exist).
    #[arg(long, env = "BERTH_S3_BUCKET", value_name = "BUCKET")]
    pub s3_bucket: Option<String>,

    /// S3 store: a prefix for every object key, e.g. `berth/`.
    #[arg(long, env = "BERTH_S3_PREFIX", value_name = "PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// S3 store: the region the requests are signed for.
    #[arg(long, env = "BERTH_S3_REGION", value_name = "REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// S3 store: the access key id (prefer the environment variable).
    #[arg(long, env = "BERTH_S3_ACCESS_KEY_ID", value_name = "ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// S3 store: the secret access key (prefer the environment variable: a flag shows in
    /// the process list).
    #[arg(long, env = "BERTH_S3_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true)]
    pub s3_secret_access_key: Option<SecretArg>,
}

/// A secret given as a flag or variable: `Debug` output shows only that it is set.
#[derive(Clone)]
pub struct SecretArg(String);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArg(********)")
    }
}

/// Where backups are kept, validated.
#[derive(Clone)]
pub enum BackupStoreSettings {
    Local,
    S3(berth_s3::S3Settings),
}

impl std::fmt::Debug for BackupStoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("Local"),
            // S3Settings' Debug leaves the credentials out.
            Self::S3(settings) => write!(f, "S3({settings:?})"),
        }
    }
}

impl ServerArgs {
    fn backup_store_settings(&self) -> Result<BackupStoreSettings, String> {
        if self.backup_store == "local" {
            return Ok(BackupStoreSettings::Local);
        }
        let required = |value: &Option<String>, flag: &str, variable: &str| {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("--backup-store s3 needs {flag} (or {variable})"))
        };
        let prefix = match self.s3_prefix.trim_matches('/') {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        };
        Ok(BackupStoreSettings::S3(berth_s3::S3Settings {
            endpoint: required(&self.s3_endpoint, "--s3-endpoint URL", "BERTH_S3_ENDPOINT")?,
            bucket: required(&self.s3_bucket, "--s3-bucket BUCKET", "BERTH_S3_BUCKET")?,
            prefix,
            region: self.s3_region.clone(),
            credentials: berth_s3::Credentials::new(
                required(&self.s3_access_key_id, "an access key id", "BERTH_S3_ACCESS_KEY_ID")?,
                required(
                    &self.s3_secret_access_key.as_ref().map(|secret| secret.0.clone()),
                    "a secret access key",
                    "BERTH_S3_SECRET_ACCESS_KEY",
                )?,
            ),
        }))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Data directory of the server (the admin socket and saved routes live there).
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to serve applications on.
    #[arg(long, env = "BERTH_PROXY_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
}

/// The default data directory: `/var/lib/berth` for root, else `$XDG_DATA_HOME/berth`
/// (`~/.local/share/berth`).
pub fn default_data_dir() -> PathBuf {
    if running_as_root() {
        return PathBuf::from("/var/lib/berth");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("berth");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/berth")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub proxy_listen: SocketAddr,
    pub base_domain: Hostname,
    pub allow_local_repositories: bool,
    pub master_key_file: PathBuf,
    pub docker_socket: String,
    pub health_timeout: Duration,
    pub build_timeout: Duration,
    pub release_timeout: Duration,
    pub clone_timeout: Duration,
    pub start_timeout: Duration,
    pub keep_images: u32,
    pub deploy_concurrency: usize,
    pub pause_at: Option<berth_domain::deployment::StepName>,
    pub start_proxy: bool,
    pub backup_store: BackupStoreSettings,
}

impl ServerArgs {
    pub fn validate(self) -> Result<ServerSettings, String> {
        let backup_store = self.backup_store_settings()?;
        let data_dir = self.data_dir.unwrap_or_else(default_data_dir);
        let base_domain =
            Hostname::parse(&self.base_domain).map_err(|e| format!("--base-domain: {e}"))?;
        let timeouts = [
            self.health_timeout_secs,
            self.build_timeout_secs,
            self.release_timeout_secs,
            self.clone_timeout_secs,
            self.start_timeout_secs,
        ];
        if timeouts.contains(&0) {
            return Err("timeouts must be at least 1 second".into());
        }
        if self.keep_images == 0 {
            return Err(
                "--keep-images must be at least 1 (the serving image is always kept)".into()
            );
        }
        if !(1..=32).contains(&self.deploy_concurrency) {
            return Err("--deploy-concurrency must be between 1 and 32".into());
        }
        let pause_at = self
            .test_pause_at
            .as_deref()
            .map(|step| step.parse().map_err(|_| format!("--test-pause-at: unknown step {step:?}")))
            .transpose()?;
        Ok(ServerSettings {
            backup_store,
            master_key_file: self.master_key_file.unwrap_or_else(|| data_dir.join("master.key")),
            data_dir,
            listen: self.listen,
            proxy_listen: self.proxy_listen,
            base_domain,
            allow_local_repositories: self.allow_local_repositories,
            docker_socket: self.docker_socket,
            health_timeout: Duration::from_secs(self.health_timeout_secs),
            build_timeout: Duration::from_secs(self.build_timeout_secs),
            release_timeout: Duration::from_secs(self.release_timeout_secs),
            clone_timeout: Duration::from_secs(self.clone_timeout_secs),
            start_timeout: Duration::from_secs(self.start_timeout_secs),
            keep_images: self.keep_images,
            deploy_concurrency: self.deploy_concurrency,
            pause_at,
            start_proxy: !self.no_proxy,
        })
    }
}
