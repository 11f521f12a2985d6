//! The command line: every subcommand and flag of the CLI as clap derive types. Parsing
//! only; no IO happens here. Values that clap can check (numbers, `K=V` pairs, mutually
//! exclusive flags) are checked here so that a mistake is a usage error (exit code 2).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// The server URL used when neither `--url`, `BERTH_URL` nor the config file give one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Berth's command-line client: talks to a Berth server's REST API.
#[derive(Debug, Clone, Parser)]
#[command(name = "berth", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every CLI command accepts (anywhere on the command line).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// URL of the Berth server [default: the URL saved by `berth login`, else
    /// http://127.0.0.1:8080]
    #[arg(long, env = "BERTH_URL", global = true, value_name = "URL", hide_env_values = true)]
    pub url: Option<String>,
    /// API token [default: the token saved by `berth login`, else the admin token of the
    /// local server's data directory]
    #[arg(long, env = "BERTH_TOKEN", global = true, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format: aligned tables for people, or the API's JSON for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// The CLI's commands (everything except `berth server` and `berth proxy`).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Check a token against a server and save both in the config file.
    Login(LoginArgs),
    /// Create, list, update and delete projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Show the Git webhook URLs and secret of a project, rotate it, list deliveries.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Create, list and delete environments of a project.
    #[command(subcommand, visible_alias = "env")]
    Environment(EnvironmentCommand),
    /// Create, change, inspect and delete applications.
    #[command(subcommand, visible_alias = "app")]
    Application(ApplicationCommand),
    /// Set, list, import and delete environment variables and secrets.
    #[command(subcommand, name = "env-var")]
    EnvVar(EnvVarCommand),
    /// Create, list, back up, restore, clone and delete the databases of an environment.
    #[command(subcommand, visible_alias = "db")]
    Database(DatabaseCommand),
    /// Deploy an environment (or one of its applications).
    Deploy(DeployArgs),
    /// Deploy an earlier successful deployment again: its images and its configuration.
    Rollback(RollbackArgs),
    /// List, inspect and cancel deployments and read their logs.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Show the applications of an environment: status, instances, URL, commit, restarts.
    Status(EnvironmentArgs),
    /// Show (or follow) the runtime logs of an application.
    Logs(LogsArgs),
    /// Run a one-off command in a new container of an application's current image.
    Exec(ExecArgs),
    /// Create or update a project from a spec file (berth.toml), printing the diff first.
    Apply(ApplyArgs),
    /// Write the spec file (berth.toml) of an existing project.
    Export(ExportArgs),
    /// Convert another tool's configuration into a spec file.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Read the token from standard input instead of `--token` (keeps it out of shell
    /// history).
    #[arg(long)]
    pub token_stdin: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectCommand {
    /// Create a project.
    Create(NameArg),
    /// List projects.
    List,
    /// Delete a project with all its environments and applications.
    Delete(DeleteProjectArgs),
    /// Change a project's Git automation: polling, branch environments.
    Update(UpdateProjectArgs),
}

#[derive(Debug, Clone, Args)]
pub struct UpdateProjectArgs {
    /// Project name.
    #[arg(long, short = 'p')]
    pub project: String,
    /// Poll the branches auto-deploying applications follow, for repositories that cannot
    /// send webhooks: `60s`, `5m`, `90` (seconds) or `off`.
    #[arg(long, value_name = "INTERVAL|off")]
    pub poll_interval: Option<String>,
    /// Create an environment for each pushed branch matching this glob (e.g. 'feature/*'),
    /// deleted with the branch; `off` stops creating them.
    #[arg(long, value_name = "GLOB|off")]
    pub branch_environments: Option<String>,
    /// The environment branch environments are cloned from.
    #[arg(long, value_name = "ENVIRONMENT")]
    pub branch_blueprint: Option<String>,
    /// Clone the blueprint's databases and volumes with their data.
    #[arg(long, conflicts_with = "branch_environments_without_data")]
    pub branch_environments_with_data: bool,
    /// Clone only the blueprint's configuration (the default).
    #[arg(long)]
    pub branch_environments_without_data: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCommand {
    /// Print the webhook URLs for GitHub, GitLab and Gitea, and the secret (admin only).
    Show(ProjectArg),
    /// Replace the webhook secret; deliveries signed with the old one are refused.
    Rotate(ProjectArg),
    /// List the deliveries received for a project: verdict, reason, what they caused.
    Deliveries(WebhookDeliveriesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WebhookDeliveriesArgs {
    /// Project name.
    #[arg(long, short = 'p')]
    pub project: String,
    /// How many deliveries, newest first.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
}

#[derive(Debug, Clone, Args)]
pub struct NameArg {
    /// Name: lower-case letters, digits and '-', starting with a letter.
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct ConfirmArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteProjectArgs {
    pub name: String,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ProjectArg {
    /// Project name.
    #[arg(long, short = 'p')]
    pub project: String,
}

#[derive(Debug, Clone, Args)]
pub struct EnvironmentArgs {
    /// Project name.
    #[arg(long, short = 'p')]
    pub project: String,
    /// Environment name.
    #[arg(long, short = 'e')]
    pub environment: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EnvironmentCommand {
    /// Create an environment.
    Create(CreateEnvironmentArgs),
    /// List the environments of a project.
    List(ProjectArg),
    /// Delete an environment with everything labelled for it (containers, networks,
    /// volumes, images no longer used).
    Delete(DeleteEnvironmentArgs),
    /// Stop every container of an environment; data and volumes are kept.
    Stop(EnvironmentNameArgs),
    /// Start a stopped environment again (health-checked, routes restored).
    Start(EnvironmentNameArgs),
    /// Deploy the environment's current configuration again.
    Redeploy(RedeployEnvironmentArgs),
    /// Copy an environment's configuration (and with --with-data its data) into a new one.
    Clone(CloneEnvironmentArgs),
    /// Preview environments of pull requests, cloned from this environment.
    #[command(subcommand)]
    Preview(PreviewCommand),
}

#[derive(Debug, Clone, Args)]
pub struct EnvironmentNameArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Environment name.
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct RedeployEnvironmentArgs {
    #[command(flatten)]
    pub environment: EnvironmentNameArgs,
    /// Wait for the deployment to finish, showing progress; exit 1 if it fails.
    #[arg(long, short = 'w')]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CloneEnvironmentArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// The environment to copy.
    pub source: String,
    /// Name of the new environment.
    pub new: String,
    /// Branch the new environment follows [default: the source's].
    #[arg(long)]
    pub branch: Option<String>,
    /// production, staging, development or preview [default: the source's].
    #[arg(long)]
    pub mode: Option<String>,
    /// Also copy every container database's data and every application volume.
    #[arg(long)]
    pub with_data: bool,
    /// Do not deploy the new environment.
    #[arg(long)]
    pub no_deploy: bool,
    /// Return once the clone exists, without waiting for its deployment.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PreviewCommand {
    /// Give each pull request opened against this environment's branch a preview.
    Enable(EnablePreviewArgs),
    /// Stop creating previews (existing ones stay until closed or expired).
    Disable(EnvironmentNameArgs),
    /// Show the settings, active previews and refused pull requests.
    List(EnvironmentNameArgs),
}

#[derive(Debug, Clone, Args)]
pub struct EnablePreviewArgs {
    #[command(flatten)]
    pub environment: EnvironmentNameArgs,
    /// Copy this environment's databases and volumes into each preview.
    #[arg(long)]
    pub with_data: bool,
    /// Concurrent previews at most [default: 5].
    #[arg(long)]
    pub max_previews: Option<u32>,
    /// Delete a preview after this long without activity, e.g. 48h, 30m, 5s [default: 48h].
    #[arg(long)]
    pub expire_after: Option<String>,
    /// Give pull requests from forks a preview too (they receive secrets and data).
    #[arg(long)]
    pub allow_forks: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CreateEnvironmentArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    /// Environment name.
    pub name: String,
    /// production, staging, development (default) or preview.
    #[arg(long)]
    pub mode: Option<String>,
    /// Git branch the environment follows [default: main].
    #[arg(long)]
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteEnvironmentArgs {
    #[command(flatten)]
    pub project: ProjectArg,
    pub name: String,
    /// Back up every container database first; nothing is deleted if a backup fails.
    #[arg(long)]
    pub final_backup: bool,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ApplicationCommand {
    // Boxed: the rollout settings make these large next to the other commands (clippy's
    // large_enum_variant).
    /// Create an application from a Git repository (`--git`) or an image (`--image`).
    Create(Box<CreateApplicationArgs>),
    /// Change an application; only the options given change.
    Update(Box<UpdateApplicationArgs>),
    /// List the applications of an environment.
    List(EnvironmentArgs),
    /// Show one application (with its public URL).
    Show(ApplicationNameArgs),
    /// Delete an application.
    Delete(DeleteApplicationArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ApplicationNameArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Application name.
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteApplicationArgs {
    #[command(flatten)]
    pub application: ApplicationNameArgs,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

/// Options of the Git source; they require `--git` on `create`.
#[derive(Debug, Clone, Default, Args)]
pub struct GitSourceArgs {
    /// Git branch to build [default: the environment's branch].
    #[arg(long)]
    pub branch: Option<String>,
    /// Directory of the build context inside the repository [default: .].
    #[arg(long, value_name = "DIR")]
    pub root_path: Option<String>,
    /// Dockerfile path relative to the root path [default: Dockerfile].
    #[arg(long, value_name = "PATH")]
    pub dockerfile: Option<String>,
    /// Docker build argument (repeatable; on `update`, replaces all build arguments).
    #[arg(long = "build-arg", value_name = "K=V", value_parser = parse_key_value)]
    pub build_args: Vec<(String, String)>,
    /// Read an HTTPS access token for a private repository from standard input.
    #[arg(long, conflicts_with = "ssh_key_file")]
    pub git_token_stdin: bool,
    /// OpenSSH private key (deploy key) for a private repository reached over SSH.
    #[arg(long, value_name = "FILE")]
    pub ssh_key_file: Option<PathBuf>,
}

impl GitSourceArgs {
    pub(crate) fn any_source_option(&self) -> bool {
        self.branch.is_some()
            || self.root_path.is_some()
            || self.dockerfile.is_some()
            || !self.build_args.is_empty()
    }
}

/// Runtime options shared by `create` and `update`.
#[derive(Debug, Clone, Default, Args)]
pub struct RuntimeArgs {
    /// Port the application listens on (omit for a worker without a route).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Give the application no public URL.
    #[arg(long)]
    pub private: bool,
    /// CPU limit in cores, e.g. 0.5.
    #[arg(long, value_name = "CORES", value_parser = parse_cpu, allow_negative_numbers = true)]
    pub cpu: Option<f64>,
    /// Memory limit in MiB.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(1..))]
    pub memory: Option<u32>,
    /// Number of instances the proxy balances across (1 to 20).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub instances: Option<u32>,
    /// Health check kind: `tcp` (the port accepts connections; the default) or `http`.
    #[arg(long, value_name = "KIND", value_parser = ["tcp", "http"])]
    pub health_check: Option<String>,
    /// HTTP health check path, e.g. /healthz (implies --health-check http).
    #[arg(long, value_name = "PATH")]
    pub health_path: Option<String>,
    /// Accepted HTTP statuses of the health check, e.g. 200-399.
    #[arg(long, value_name = "RANGE")]
    pub health_status: Option<String>,
    /// Seconds to wait after start before the first health check.
    #[arg(long, value_name = "SECS")]
    pub health_start_delay: Option<f64>,
    /// Seconds between health checks.
    #[arg(long, value_name = "SECS")]
    pub health_interval: Option<f64>,
    /// Seconds one health check may take.
    #[arg(long, value_name = "SECS")]
    pub health_timeout: Option<f64>,
    /// Consecutive failed checks that take an instance out of rotation.
    #[arg(long, value_name = "N")]
    pub health_threshold: Option<u32>,
    /// Command run once in a one-off container of the new image before traffic switches
    /// (e.g. database migrations); its failure fails the deployment.
    #[arg(long, value_name = "COMMAND")]
    pub release_command: Option<String>,
    /// Seconds old instances keep finishing in-flight requests after traffic moves.
    #[arg(long, value_name = "SECS")]
    pub drain: Option<f64>,
    /// A persistent volume mounted in every instance, kept across deployments
    /// (repeatable). On update, the list given replaces the current one.
    #[arg(long = "volume", value_name = "NAME:/PATH")]
    pub volumes: Vec<String>,
    /// Size in GB accounted for the volumes given with --volume (default 1).
    #[arg(long, value_name = "GB", requires = "volumes")]
    pub size: Option<u32>,
    /// Whether a push to the followed branch deploys the application (Git webhooks and
    /// polling); default true.
    #[arg(long, value_name = "true|false")]
    pub auto_deploy: Option<bool>,
    /// Applications or databases of the environment deployed before this one,
    /// comma-separated (on update, replaces the list; "" removes it).
    #[arg(long, value_name = "NAME[,NAME]")]
    pub depends_on: Option<String>,
    /// Globs relative to the repository root whose changes redeploy the application on a
    /// push, comma-separated; `!` excludes, e.g. 'services/api/**,!**/*.md' [default: its
    /// root path] (on update, "" goes back to the default).
    #[arg(long, value_name = "GLOB[,GLOB]")]
    pub watch_paths: Option<String>,
}

impl RuntimeArgs {
    /// A comma-separated option as a list ("" is the empty list).
    pub(crate) fn list(value: Option<&String>) -> Option<Vec<String>> {
        value.map(|v| {
            v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        })
    }
}

impl RuntimeArgs {
    /// The volumes given on the command line (the server validates them and says what
    /// is wrong with a malformed one).
    pub(crate) fn volume_settings(&self) -> Vec<berth_api::VolumeSettings> {
        self.volumes
            .iter()
            .map(|value| {
                let (name, path) = value.split_once(':').unwrap_or((value.as_str(), ""));
                berth_api::VolumeSettings {
                    name: name.to_owned(),
                    path: path.to_owned(),
                    size_gb: self.size,
                }
            })
            .collect()
    }

    /// The health-check settings given on the command line, if any.
    pub(crate) fn health_check_settings(&self) -> Option<berth_api::HealthCheckSettings> {
        let kind = self
            .health_check
            .clone()
            .or_else(|| self.health_path.as_ref().map(|_| "http".to_owned()));
        let settings = berth_api::HealthCheckSettings {
            kind,
            path: self.health_path.clone(),
            expected_status: self.health_status.clone(),
            start_delay_secs: self.health_start_delay,
            interval_secs: self.health_interval,
            timeout_secs: self.health_timeout,
            failure_threshold: self.health_threshold,
        };
        (settings != berth_api::HealthCheckSettings::default()).then_some(settings)
    }
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["git", "image"])))]
#[command(group(ArgGroup::new("git_options").multiple(true)
    .args(["branch", "root_path", "dockerfile", "build_args", "git_token_stdin", "ssh_key_file"])
    .conflicts_with("image")))]
pub struct CreateApplicationArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Application name.
    pub name: String,
    /// Git repository URL (https://, ssh://, user@host:path).
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// Container image reference to run instead of building.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    #[command(flatten)]
    pub source: GitSourceArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("git_options").multiple(true)
    .args(["branch", "root_path", "dockerfile", "build_args", "git_token_stdin", "ssh_key_file"])
    .conflicts_with("image")))]
pub struct UpdateApplicationArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Application name.
    pub name: String,
    /// Build from this Git repository (the other Git options keep their values unless given).
    #[arg(long, value_name = "URL", conflicts_with = "image")]
    pub git: Option<String>,
    /// Run this container image instead of building.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    #[command(flatten)]
    pub source: GitSourceArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Remove the port: the application becomes a worker without a route.
    #[arg(long, conflicts_with = "port")]
    pub no_port: bool,
    /// Give the application a public URL again.
    #[arg(long, conflicts_with = "private")]
    pub public: bool,
    /// Forget the stored Git token or SSH key.
    #[arg(long, conflicts_with_all = ["git_token_stdin", "ssh_key_file"])]
    pub clear_credentials: bool,
    /// Remove the release command.
    #[arg(long, conflicts_with = "release_command")]
    pub no_release_command: bool,
}

/// Where a variable lives: the project, one of its environments, or one application.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// Project name.
    #[arg(long, short = 'p')]
    pub project: String,
    /// Environment scope (omit for the project scope).
    #[arg(long, short = 'e')]
    pub environment: Option<String>,
    /// Application scope (needs `--environment`).
    #[arg(long, short = 'a', requires = "environment")]
    pub application: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EnvVarCommand {
    /// Set a variable: `KEY=VALUE`, or `KEY` alone with `--secret` to read the value from
    /// standard input.
    Set(SetVariableArgs),
    /// List the variables of a scope (secrets masked).
    List(ScopeArgs),
    /// Delete a variable.
    Delete(DeleteVariableArgs),
    /// Set every variable of a .env file (nothing is set if a line is malformed).
    Import(ImportVariablesArgs),
    /// Make a variable follow a database's built-in variable:
    /// `DATABASE_URL=BERTH_DATABASE_MAIN_URL`.
    Alias(AliasVariableArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SetVariableArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Store the value as a write-only, encrypted secret.
    #[arg(long)]
    pub secret: bool,
    /// `KEY=VALUE`, or `KEY` with `--secret` to read the value from standard input.
    #[arg(value_name = "KEY=VALUE")]
    pub assignment: String,
}

#[derive(Debug, Clone, Args)]
pub struct AliasVariableArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// `NAME=BERTH_DATABASE_<DATABASE>_<FIELD>`: NAME takes the built-in variable's value
    /// in every deployment (FIELD: URL, HOST, PORT, USER, PASSWORD or NAME).
    #[arg(value_name = "NAME=TARGET", value_parser = parse_key_value)]
    pub assignment: (String, String),
}

#[derive(Debug, Clone, Args)]
pub struct DeleteVariableArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Variable name.
    #[arg(value_name = "KEY")]
    pub key: String,
}

#[derive(Debug, Clone, Args)]
pub struct ImportVariablesArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Store every value as a secret.
    #[arg(long)]
    pub secret: bool,
    /// The .env file to read.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DatabaseCommand {
    /// Create a database; it starts with the environment's next deployment, before the
    /// applications, which receive its `BERTH_DATABASE_<NAME>_*` variables.
    Create(CreateDatabaseArgs),
    /// List the databases of an environment.
    List(EnvironmentArgs),
    /// Show one database: engine, address, user, masked URL, variables.
    Show(DatabaseNameArgs),
    /// Delete a database. For a container database, its volume - its data - is deleted
    /// (`--final-backup` keeps a backup of it first).
    Delete(DeleteDatabaseArgs),
    /// Take a backup now (a logical dump into the server's backup store, with its SHA-256).
    Backup(DatabaseNameArgs),
    /// List the backups of a database, newest first.
    Backups(DatabaseNameArgs),
    /// Replace a database's data with a backup's (asks for confirmation).
    Restore(RestoreDatabaseArgs),
    /// Change a database's backup schedule and retention, or an external database's URL
    /// (checked first; the environment's applications are then redeployed).
    Update(UpdateDatabaseArgs),
    /// Give a container database a new generated password, then redeploy the
    /// environment's applications with it (asks for confirmation: old application
    /// instances lose access until they are replaced).
    RotateCredentials(RotateCredentialsArgs),
    /// Delete one backup from the backup store (asks for confirmation).
    BackupDelete(BackupDeleteArgs),
    /// Copy a database with its data into a new database with its own credentials.
    Clone(CloneDatabaseArgs),
    /// Open a tunnel to a database through the API on 127.0.0.1 and run its client
    /// (psql, mariadb, redis-cli) through it, or print how to connect.
    Connect(ConnectDatabaseArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConnectDatabaseArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Database name.
    pub name: String,
    /// Local port of the tunnel on 127.0.0.1 (default: a free port).
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// Do not run a client: print the connection details and keep the tunnel open until
    /// Ctrl-C.
    #[arg(long)]
    pub no_client: bool,
    /// Print the password with the connection details.
    #[arg(long)]
    pub show_password: bool,
    /// Arguments passed to the client after `--` (e.g. `-- -c 'select 1'` for psql).
    #[arg(last = true, value_name = "CLIENT_ARGS")]
    pub client_args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseNameArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Database name.
    pub name: String,
}

// `--version` is the engine's version here, not berth's.
#[derive(Debug, Clone, Args)]
#[command(disable_version_flag = true)]
pub struct CreateDatabaseArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Database name: lower-case letters, digits and '-', starting with a letter; also its
    /// host name on the environment's network.
    pub name: String,
    /// Database engine (`mysql` is the MySQL-compatible MariaDB).
    #[arg(long, value_parser = ["postgresql", "mariadb", "mysql", "redis"])]
    pub engine: String,
    /// Engine version, e.g. 15 or 10.11 [default: the version of the local images].
    #[arg(long)]
    pub version: Option<String>,
    /// `container` (Berth runs it, with a volume; the default) or `external` (an existing
    /// server, given by --external-url).
    #[arg(long, value_parser = ["container", "external"])]
    pub mode: Option<String>,
    /// The existing server's URL with its credentials, e.g.
    /// postgresql://user:password@host:5432/name (stored encrypted); implies --mode
    /// external. (Not `--url`: that is the Berth server's URL, a global option.)
    #[arg(long, value_name = "URL", conflicts_with_all = ["external_url_stdin", "storage"])]
    pub external_url: Option<String>,
    /// Like --external-url, reading the URL from standard input (keeps the password out
    /// of shell history).
    #[arg(long, conflicts_with = "storage")]
    pub external_url_stdin: bool,
    /// Container mode: storage accounted for the volume, in GB [default: 1].
    #[arg(long, value_name = "GB", value_parser = clap::value_parser!(u32).range(1..=16_384))]
    pub storage: Option<u32>,
    /// Take a backup on this schedule: a cron expression in UTC, e.g. "0 3 * * *" (5
    /// fields, or 6 with seconds first).
    #[arg(long, value_name = "CRON")]
    pub backup_schedule: Option<String>,
    /// Keep this many scheduled backups (the newest) [default: 7].
    #[arg(long, value_name = "N")]
    pub backup_retention: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct UpdateDatabaseArgs {
    #[command(flatten)]
    pub database: DatabaseNameArgs,
    /// A cron expression in UTC, e.g. "0 3 * * *" (5 fields, or 6 with seconds first), or
    /// `none` to stop scheduled backups.
    #[arg(long, value_name = "CRON|none")]
    pub backup_schedule: Option<String>,
    /// Keep this many scheduled backups (the newest); older ones are deleted now.
    #[arg(long, value_name = "N")]
    pub backup_retention: Option<u32>,
    /// External databases: the server's new URL with its credentials, e.g.
    /// postgresql://user:password@host:5432/name. The server opens a session with it
    /// before storing it, then redeploys the environment's applications.
    #[arg(long, value_name = "URL", conflicts_with = "external_url_stdin")]
    pub external_url: Option<String>,
    /// Like --external-url, reading the URL from standard input.
    #[arg(long)]
    pub external_url_stdin: bool,
    /// With a new URL: wait for the redeployment to finish, showing progress.
    #[arg(long, short = 'w')]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RotateCredentialsArgs {
    #[command(flatten)]
    pub database: DatabaseNameArgs,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
    /// Wait for the redeployment of the applications to finish, showing progress.
    #[arg(long, short = 'w')]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackupDeleteArgs {
    #[command(flatten)]
    pub database: DatabaseNameArgs,
    /// The backup to delete (an ID from `berth database backups`).
    #[arg(value_name = "BACKUP_ID")]
    pub backup: String,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteDatabaseArgs {
    #[command(flatten)]
    pub database: DatabaseNameArgs,
    /// Take a backup first and keep it in the backup store; nothing is deleted if the
    /// backup fails.
    #[arg(long)]
    pub final_backup: bool,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreDatabaseArgs {
    #[command(flatten)]
    pub database: DatabaseNameArgs,
    /// The backup to restore (an ID from `berth database backups`).
    #[arg(long, value_name = "ID")]
    pub backup: String,
    #[command(flatten)]
    pub confirm: ConfirmArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CloneDatabaseArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// The database to copy (it keeps running).
    pub source: String,
    /// Name of the new database: lower-case letters, digits and '-', starting with a
    /// letter.
    pub new: String,
    /// Create the copy in this environment of the same project [default: the source's].
    #[arg(long, value_name = "ENVIRONMENT")]
    pub to_environment: Option<String>,
    /// How to copy the data: `physical` (online pg_basebackup, PostgreSQL only) or `dump`
    /// (logical dump streamed into a restore) [default: physical for PostgreSQL, dump for
    /// the other engines].
    #[arg(long, value_name = "METHOD", value_parser = ["physical", "dump"])]
    pub method: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Deploy only this application.
    #[arg(long, short = 'a')]
    pub application: Option<String>,
    /// Wait for the deployment to finish, showing progress; exit 1 if it fails.
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// Print the plan (waves, and per application build, reuse, shared build or skip)
    /// without deploying anything.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// The earlier, successful deployment to deploy again (its images and its
    /// configuration, variables included).
    #[arg(long, value_name = "DEPLOYMENT_ID")]
    pub to: String,
    /// Wait for the deployment to finish, showing progress; exit 1 if it fails.
    #[arg(long, short = 'w')]
    pub wait: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DeploymentCommand {
    /// List the deployments of an environment (or of one application), newest first.
    List(DeploymentListArgs),
    /// Show one deployment with its steps.
    Show(DeploymentIdArg),
    /// Print a deployment's build and deploy logs.
    Logs(DeploymentLogsArgs),
    /// Cancel a queued deployment, or stop a running one before it switches traffic (the
    /// previous version keeps serving).
    Cancel(DeploymentIdArg),
}

#[derive(Debug, Clone, Args)]
pub struct DeploymentListArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Only the deployments that covered this application.
    #[arg(long, short = 'a')]
    pub application: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeploymentIdArg {
    /// Deployment id.
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct DeploymentLogsArgs {
    /// Deployment id.
    pub id: String,
    /// Keep printing lines until the deployment ends (exit 1 if it failed).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Application name.
    #[arg(long, short = 'a')]
    pub application: String,
    /// Keep printing new lines until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Number of most recent lines to show.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub tail: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    /// Application name.
    #[arg(long, short = 'a')]
    pub application: String,
    /// Run inside this running instance (numbered from 0) instead of a new container.
    #[arg(long, value_name = "N")]
    pub instance: Option<u32>,
    /// The command and its arguments, after `--` (no shell unless you run one, e.g.
    /// `-- sh -c 'echo $PORT'`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

fn parse_cpu(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(cores) if cores.is_finite() && cores > 0.0 => Ok(cores),
        _ => Err(format!("expected a positive number of cores such as 0.5 or 2, got {raw:?}")),
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The spec file (see docs/spec.md).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Print the diff only; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete what exists on the server but not in the file (listed first).
    #[arg(long)]
    pub prune: bool,
    /// Deploy (and wait for) every environment the apply changed.
    #[arg(long)]
    pub deploy: bool,
    /// Do not ask before the deletions of --prune.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Project name.
    #[arg(long, short = 'p')]
    pub project: String,
    /// Write the spec to this file instead of standard output.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ImportCommand {
    /// Convert a docker-compose.yml into a spec file (printed, or written with -f).
    Compose(ImportComposeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ImportComposeArgs {
    /// The compose file.
    #[arg(value_name = "COMPOSE_FILE")]
    pub compose_file: PathBuf,
    /// Write the spec to this file instead of standard output (an existing file is kept
    /// unless --force).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Overwrite the file given with -f.
    #[arg(long)]
    pub force: bool,
    /// Project name [default: the compose file's `name`, else its directory's name].
    #[arg(long, short = 'p')]
    pub project: Option<String>,
    /// Environment the services go to.
    #[arg(long, short = 'e', default_value = "production")]
    pub environment: String,
    /// Repository of the services with `build` [default: the local Git repository that
    /// holds the compose file, which needs a server started with
    /// --allow-local-repositories].
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// Branch the environment follows [default: the local repository's current branch,
    /// else main].
    #[arg(long)]
    pub branch: Option<String>,
}
