//! Application endpoints: create, update, list, show, delete. Input is validated into a
//! domain `ApplicationSpec` before anything is stored; Git credentials are encrypted.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api as wire;
use berth_domain::health::{parse_status_range, HealthCheck, HealthProbe};
use berth_domain::source::{ImageReference, RepositoryPath, RepositoryTransport, RepositoryUrl};
use berth_domain::spec::{
    validate_build_arg_key, validate_instances, validate_port, validate_release_command,
    ApplicationSource, ApplicationSpec, ApplicationVolume, GitCredentialKind, GitSource, MemoryMib,
    MilliCpu, Visibility, DEFAULT_DRAIN_MS,
};
use berth_domain::{BranchName, ResourceName};
use berth_store::{ApplicationRecord, EnvironmentRecord, ProjectRecord};

use super::{convert, lookup, ApiJson};
use crate::error::{ApiResult, AppError};
use crate::state::AppState;

/// Largest accepted Git token or SSH key, in bytes.
const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

fn git_source(
    state: &AppState,
    input: &wire::GitSourceInput,
    credential: GitCredentialKind,
) -> ApiResult<GitSource> {
    let repository = RepositoryUrl::parse(input.repository.trim())?;
    if repository.transport() == RepositoryTransport::Local {
        if !state.settings.allow_local_repositories {
            return Err(AppError::Invalid(format!(
                "local repository {repository} refused: this server does not allow local paths or file:// URLs; start it with --allow-local-repositories to allow them (it lets API users read the server's file system)"
            )));
        }
        let path = repository.as_str().strip_prefix("file://").unwrap_or(repository.as_str());
        if !std::path::Path::new(path).is_dir() {
            return Err(AppError::Invalid(format!(
                "local repository {path:?} does not exist on the server; give the absolute path of a Git repository"
            )));
        }
    }
    match (repository.transport(), credential) {
        (RepositoryTransport::Ssh, GitCredentialKind::Token) => {
            return Err(AppError::Invalid(
                "a Git token works with https:// repositories; for an SSH URL give a deploy key with --ssh-key-file".into(),
            ))
        }
        (RepositoryTransport::Https | RepositoryTransport::Http | RepositoryTransport::Local, GitCredentialKind::SshKey) => {
            return Err(AppError::Invalid(
                "an SSH deploy key works with ssh:// repositories; for an https:// URL give a token with --git-token-stdin".into(),
            ))
        }
        _ => {}
    }
    let branch = input.branch.as_deref().map(BranchName::parse).transpose()?;
    let root_path = match input.root_path.as_deref() {
        Some(path) => RepositoryPath::parse("root path", path)?,
        None => RepositoryPath::root(),
    };
    let dockerfile_path = RepositoryPath::parse(
        "Dockerfile path",
        input.dockerfile_path.as_deref().unwrap_or("Dockerfile"),
    )?;
    let mut build_args = BTreeMap::new();
    for (key, value) in &input.build_args {
        validate_build_arg_key(key)?;
        build_args.insert(key.clone(), value.clone());
    }
    Ok(GitSource { repository, branch, root_path, dockerfile_path, build_args, credential })
}

/// The credential kind and its encrypted value, from the request's write-only fields.
fn credential(
    state: &AppState,
    token: Option<&str>,
    ssh_key: Option<&str>,
) -> ApiResult<Option<(GitCredentialKind, Vec<u8>)>> {
    let (kind, secret) = match (token, ssh_key) {
        (Some(_), Some(_)) => {
            return Err(AppError::Invalid(
                "give either a Git token or an SSH deploy key, not both".into(),
            ))
        }
        (Some(token), None) => (GitCredentialKind::Token, token.trim()),
        (None, Some(key)) => {
            if !key.contains("PRIVATE KEY") {
                return Err(AppError::Invalid(
                    "the SSH deploy key is not an OpenSSH private key (expected a `-----BEGIN ... PRIVATE KEY-----` block)".into(),
                ));
            }
            (GitCredentialKind::SshKey, key)
        }
        (None, None) => return Ok(None),
    };
    if secret.is_empty() || secret.len() > MAX_CREDENTIAL_BYTES {
        return Err(AppError::Invalid(format!(
            "the Git credential must be between 1 and {MAX_CREDENTIAL_BYTES} bytes"
        )));
    }
    let sealed = state.key.encrypt(secret.as_bytes()).map_err(AppError::internal)?;
    Ok(Some((kind, sealed)))
}

fn seconds_to_ms(what: &str, seconds: f64) -> ApiResult<u64> {
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(AppError::Invalid(format!(
            "{what} must be a number of seconds between 0 and 86400"
        )));
    }
    Ok((seconds * 1000.0).round() as u64)
}

/// Applies the given health-check settings on top of `base` and validates the result.
fn health_check(base: &HealthCheck, input: &wire::HealthCheckSettings) -> ApiResult<HealthCheck> {
    let mut check = base.clone();
    let kind = input.kind.as_deref().unwrap_or(match check.probe {
        HealthProbe::Tcp => "tcp",
        HealthProbe::Http { .. } => "http",
    });
    check.probe = match kind {
        "tcp" => HealthProbe::Tcp,
        "http" => {
            let (old_path, old_range) = match &check.probe {
                HealthProbe::Http { path, expected_status_min, expected_status_max } => {
                    (path.clone(), (*expected_status_min, *expected_status_max))
                }
                HealthProbe::Tcp => ("/".to_owned(), (200, 399)),
            };
            let (expected_status_min, expected_status_max) = match input.expected_status.as_deref()
            {
                Some(range) => parse_status_range(range)?,
                None => old_range,
            };
            HealthProbe::Http {
                path: input.path.clone().unwrap_or(old_path),
                expected_status_min,
                expected_status_max,
            }
        }
        other => {
            return Err(AppError::Invalid(format!(
                "unknown health check kind {other:?}: use tcp or http"
            )))
        }
    };
    if let Some(seconds) = input.start_delay_secs {
        check.start_delay_ms = seconds_to_ms("the health check start delay", seconds)?;
    }
    if let Some(seconds) = input.interval_secs {
        check.interval_ms = seconds_to_ms("the health check interval", seconds)?;
    }
    if let Some(seconds) = input.timeout_secs {
        check.timeout_ms = seconds_to_ms("the health check timeout", seconds)?;
    }
    if let Some(threshold) = input.failure_threshold {
        check.failure_threshold = threshold;
    }
    check.validate()?;
    Ok(check)
}

/// Instances, health check, release command and drain from a create or update request.
fn rollout_settings(
    spec: &mut ApplicationSpec,
    instances: Option<u32>,
    check: Option<&wire::HealthCheckSettings>,
    release_command: Option<&str>,
    drain_secs: Option<f64>,
) -> ApiResult<()> {
    if let Some(instances) = instances {
        spec.instances = validate_instances(instances)?;
    }
    if let Some(check) = check {
        spec.health_check = health_check(&spec.health_check, check)?;
    }
    if let Some(command) = release_command {
        validate_release_command(command)?;
        spec.release_command = Some(command.to_owned());
    }
    if let Some(seconds) = drain_secs {
        if seconds > 600.0 {
            return Err(AppError::Invalid("the drain time must be at most 600 seconds".into()));
        }
        spec.drain_ms = seconds_to_ms("the drain time", seconds)?;
    }
    Ok(())
}

fn volumes(input: &[wire::VolumeSettings]) -> ApiResult<Vec<ApplicationVolume>> {
    let mut volumes: Vec<ApplicationVolume> = Vec::with_capacity(input.len());
    for volume in input {
        let parsed = ApplicationVolume::parse(
            &format!("{}:{}", volume.name, volume.path),
            volume.size_gb.unwrap_or(1),
        )?;
        if volumes.iter().any(|v| v.name == parsed.name || v.path == parsed.path) {
            return Err(AppError::Invalid(format!(
                "volume {} or its path {} is given twice",
                parsed.name, parsed.path
            )));
        }
        volumes.push(parsed);
    }
    if volumes.len() > 16 {
        return Err(AppError::Invalid("an application can have at most 16 volumes".into()));
    }
    Ok(volumes)
}

/// Parses `depends_on` and `watch_paths` into the spec (names are checked against the
/// environment by `check_dependencies`).
fn ordering_settings(
    spec: &mut ApplicationSpec,
    depends_on: Option<&[String]>,
    watch_paths: Option<&[String]>,
) -> ApiResult<()> {
    if let Some(names) = depends_on {
        let mut parsed: Vec<ResourceName> = Vec::new();
        for name in names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|n| !n.is_empty())
        {
            let name = ResourceName::parse(name)?;
            if !parsed.contains(&name) {
                parsed.push(name);
            }
        }
        spec.depends_on = parsed;
    }
    if let Some(patterns) = watch_paths {
        spec.watch_paths = berth_domain::watch::parse_watch_paths(patterns)?;
    }
    Ok(())
}

/// Refuses unknown dependency names and cycles, with `application` given `spec`.
async fn check_dependencies(
    state: &AppState,
    environment: &EnvironmentRecord,
    application: &ResourceName,
    spec: &ApplicationSpec,
) -> ApiResult<()> {
    use berth_domain::ordering::DependencyNode;
    let node = |name: &ResourceName, spec: &ApplicationSpec| DependencyNode {
        name: name.to_string(),
        depends_on: spec.depends_on.iter().map(ToString::to_string).collect(),
    };
    let mut nodes: Vec<DependencyNode> = state
        .store
        .list_applications(environment.id)
        .await?
        .iter()
        .filter(|a| a.lifecycle == berth_store::Lifecycle::Active && &a.name != application)
        .map(|a| node(&a.name, &a.spec))
        .collect();
    // First, so that a cycle is named starting from the application being changed.
    nodes.insert(0, node(application, spec));
    let databases: Vec<String> = state
        .store
        .list_databases(environment.id)
        .await?
        .iter()
        .filter(|d| d.lifecycle == berth_store::Lifecycle::Active)
        .map(|d| d.name.to_string())
        .collect();
    berth_domain::ordering::check_dependencies(&nodes, &databases)
        .map_err(|e| AppError::Invalid(e.to_string()))
}

fn limits(
    cpu: Option<f64>,
    memory_mb: Option<u32>,
) -> ApiResult<(Option<MilliCpu>, Option<MemoryMib>)> {
    Ok((cpu.map(MilliCpu::from_cores).transpose()?, memory_mb.map(MemoryMib::new).transpose()?))
}

async fn status_of(state: &AppState, application: &ApplicationRecord) -> ApiResult<&'static str> {
    let deploying = super::deployments::is_deploying(state, application).await?;
    Ok(state.engine.observe_application(application, deploying).await?.status)
}

async fn view(
    state: &AppState,
    project: &ProjectRecord,
    environment: &EnvironmentRecord,
    application: &ApplicationRecord,
) -> ApiResult<wire::Application> {
    let status = status_of(state, application).await?;
    Ok(convert::application(&state.settings, project, environment, application, status))
}

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/applications", tag = "applications",
    params(("project" = String, Path), ("environment" = String, Path)),
    responses((status = 200, body = Vec<wire::Application>), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn list_applications(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
) -> ApiResult<Json<Vec<wire::Application>>> {
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    let mut views = Vec::new();
    for application in state.store.list_applications(environment.id).await? {
        views.push(view(&state, &project, &environment, &application).await?);
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/projects/{project}/environments/{environment}/applications", tag = "applications",
    params(("project" = String, Path), ("environment" = String, Path)), request_body = wire::CreateApplication,
    responses((status = 201, body = wire::Application), (status = 409, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn create_application(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    ApiJson(body): ApiJson<wire::CreateApplication>,
) -> ApiResult<(StatusCode, Json<wire::Application>)> {
    let name = ResourceName::parse(&body.name)?;
    let sealed = credential(&state, body.git_token.as_deref(), body.ssh_private_key.as_deref())?;
    let credential_kind = sealed.as_ref().map_or(GitCredentialKind::None, |(kind, _)| *kind);
    let source =
        match (&body.git, &body.image) {
            (Some(git), None) => ApplicationSource::Git(git_source(&state, git, credential_kind)?),
            (None, Some(image)) => {
                if sealed.is_some() {
                    return Err(AppError::Invalid(
                        "Git credentials only apply to applications built from Git".into(),
                    ));
                }
                ApplicationSource::Image { reference: ImageReference::parse(image.trim())? }
            }
            _ => return Err(AppError::Invalid(
                "give exactly one source: a Git repository (--git URL) or an image (--image REF)"
                    .into(),
            )),
        };
    let port = body.port.map(validate_port).transpose()?;
    let (cpu, memory) = limits(body.cpu, body.memory_mb)?;
    let mut spec = ApplicationSpec {
        source,
        port,
        visibility: if body.private { Visibility::Private } else { Visibility::Public },
        cpu,
        memory,
        instances: 1,
        health_check: HealthCheck::default(),
        release_command: None,
        drain_ms: DEFAULT_DRAIN_MS,
        volumes: volumes(&body.volumes)?,
        depends_on: Vec::new(),
        watch_paths: Vec::new(),
        auto_deploy: body.auto_deploy.unwrap_or(true),
    };
    ordering_settings(&mut spec, Some(&body.depends_on), Some(&body.watch_paths))?;
    rollout_settings(
        &mut spec,
        body.instances,
        body.health_check.as_ref(),
        body.release_command.as_deref(),
        body.drain_secs,
    )?;
    let (project, environment) = lookup::environment(&state, &project, &environment).await?;
    lookup::ensure_active(environment.lifecycle, "the environment")?;
    check_dependencies(&state, &environment, &name, &spec).await?;
    let record = state
        .store
        .create_application(
            environment.id,
            &name,
            &spec,
            sealed.as_ref().map(|(_, bytes)| bytes.as_slice()),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, &project, &environment, &record).await?)))
}

#[utoipa::path(get, path = "/projects/{project}/environments/{environment}/applications/{application}", tag = "applications",
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path)),
    responses((status = 200, body = wire::Application), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn get_application(
    State(state): State<AppState>,
    Path((project, environment, application)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Application>> {
    let (project, environment, application) =
        lookup::application(&state, &project, &environment, &application).await?;
    Ok(Json(view(&state, &project, &environment, &application).await?))
}

/// Changes an application's settings; they take effect at its next deployment.
#[utoipa::path(patch, path = "/projects/{project}/environments/{environment}/applications/{application}", tag = "applications",
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path)),
    request_body = wire::UpdateApplication,
    responses((status = 200, body = wire::Application), (status = 404, body = wire::ErrorBody), (status = 422, body = wire::ErrorBody)))]
pub(crate) async fn update_application(
    State(state): State<AppState>,
    Path((project, environment, application)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<wire::UpdateApplication>,
) -> ApiResult<Json<wire::Application>> {
    let (project, environment, mut record) =
        lookup::application(&state, &project, &environment, &application).await?;
    lookup::ensure_active(record.lifecycle, "the application")?;
    let new_credential =
        credential(&state, body.git_token.as_deref(), body.ssh_private_key.as_deref())?;
    let (mut credential_kind, mut sealed) = match (&record.spec.source, body.clear_credentials) {
        (ApplicationSource::Git(git), false) => {
            (git.credential, record.credential_ciphertext.clone())
        }
        _ => (GitCredentialKind::None, None),
    };
    if let Some((kind, bytes)) = new_credential {
        credential_kind = kind;
        sealed = Some(bytes);
    }
    let mut spec = record.spec.clone();
    match (&body.git, &body.image) {
        (Some(_), Some(_)) => {
            return Err(AppError::Invalid("give either --git or --image, not both".into()))
        }
        (Some(git), None) => {
            spec.source = ApplicationSource::Git(git_source(&state, git, credential_kind)?)
        }
        (None, Some(image)) => {
            spec.source =
                ApplicationSource::Image { reference: ImageReference::parse(image.trim())? };
        }
        (None, None) => {
            if let ApplicationSource::Git(git) = &spec.source {
                // Re-validate: a credential change must still match the transport.
                let input = wire::GitSourceInput {
                    repository: git.repository.to_string(),
                    branch: git.branch.as_ref().map(ToString::to_string),
                    root_path: Some(git.root_path.to_string()),
                    dockerfile_path: Some(git.dockerfile_path.to_string()),
                    build_args: git.build_args.clone(),
                };
                spec.source = ApplicationSource::Git(git_source(&state, &input, credential_kind)?);
            }
        }
    }
    if matches!(spec.source, ApplicationSource::Image { .. }) {
        if body.git_token.is_some() || body.ssh_private_key.is_some() {
            return Err(AppError::Invalid(
                "Git credentials only apply to applications built from Git".into(),
            ));
        }
        sealed = None;
    }
    if body.clear_port {
        spec.port = None;
    }
    if let Some(port) = body.port {
        spec.port = Some(validate_port(port)?);
    }
    if let Some(private) = body.private {
        spec.visibility = if private { Visibility::Private } else { Visibility::Public };
    }
    let (cpu, memory) = limits(body.cpu, body.memory_mb)?;
    spec.cpu = cpu.or(spec.cpu);
    spec.memory = memory.or(spec.memory);
    if body.clear_release_command {
        spec.release_command = None;
    }
    if let Some(input) = &body.volumes {
        spec.volumes = volumes(input)?;
    }
    rollout_settings(
        &mut spec,
        body.instances,
        body.health_check.as_ref(),
        body.release_command.as_deref(),
        body.drain_secs,
    )?;
    ordering_settings(&mut spec, body.depends_on.as_deref(), body.watch_paths.as_deref())?;
    if let Some(auto_deploy) = body.auto_deploy {
        spec.auto_deploy = auto_deploy;
    }
    if body.depends_on.is_some() {
        check_dependencies(&state, &environment, &record.name, &spec).await?;
    }
    state.store.update_application(record.id, &spec, sealed.as_deref()).await?;
    record.spec = spec;
    record.credential_ciphertext = sealed;
    Ok(Json(view(&state, &project, &environment, &record).await?))
}

#[utoipa::path(delete, path = "/projects/{project}/environments/{environment}/applications/{application}", tag = "applications",
    params(("project" = String, Path), ("environment" = String, Path), ("application" = String, Path)),
    responses((status = 202, body = wire::Application), (status = 404, body = wire::ErrorBody)))]
pub(crate) async fn delete_application(
    State(state): State<AppState>,
    Path((project, environment, application)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<wire::Application>)> {
    let (project, environment, mut record) =
        lookup::application(&state, &project, &environment, &application).await?;
    state.store.mark_application_deleting(record.id).await?;
    state.engine.notify();
    record.lifecycle = berth_store::Lifecycle::Deleting;
    Ok((
        StatusCode::ACCEPTED,
        Json(convert::application(&state.settings, &project, &environment, &record, "deleting")),
    ))
}
