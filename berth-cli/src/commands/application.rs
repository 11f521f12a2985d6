//! `berth application create|update|list|show|delete --project P --environment E NAME`.
//!
//! Request bodies are built by pure functions ([`create_request`], [`update_request`]) from
//! the arguments and the credentials read beforehand (token from stdin, SSH key from a
//! file), so they are tested without a server.
//!
//! Caveat: `UpdateApplication.git` replaces the whole Git source, so changing one Git
//! option (`--branch` alone) reads the application first and sends its current source with
//! that option changed (read-modify-write; a concurrent change in between is overwritten).

use std::collections::BTreeMap;
use std::path::Path;

use berth_api::{
    Application, CreateApplication, GitSourceInput, GitSourceView, HealthCheckSettings,
    UpdateApplication,
};

use super::delete::{delete, Deletion};
use super::{read_secret, CliError, Context};
use crate::args::{
    ApplicationCommand, CreateApplicationArgs, GitSourceArgs, RuntimeArgs, UpdateApplicationArgs,
};
use crate::client::Fetched;
use crate::output::{format_timestamp, or_dash, render_fields, Table};
use crate::paths;

/// Git credentials read from stdin or a file before the request is built.
#[derive(Debug, Default)]
pub(crate) struct Credentials {
    git_token: Option<String>,
    ssh_private_key: Option<String>,
}

pub(crate) async fn run(
    context: &mut Context<'_>,
    command: ApplicationCommand,
) -> Result<(), CliError> {
    match command {
        ApplicationCommand::Create(args) => {
            let (project, environment) = (&args.environment.project, &args.environment.environment);
            let path = paths::applications(project, environment)?;
            let credentials = read_credentials(context, &args.source)?;
            let body = create_request(&args, credentials);
            let created: Fetched<Application> = context.client.post(&path, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&created.raw)?;
            } else {
                let name = &created.value.name;
                context.console.println(&format!(
                    "created application {name} in environment {environment} of project {project}"
                ))?;
                context.console.println(&format!(
                    "deploy it with `berth deploy --project {project} --environment {environment} --application {name} --wait`"
                ))?;
            }
        }
        ApplicationCommand::Update(args) => {
            let (project, environment) = (&args.environment.project, &args.environment.environment);
            let path = paths::application(project, environment, &args.name)?;
            let current_git = if args.git.is_some() || args.source.any_source_option() {
                context.client.get::<Application>(&path).await?.git
            } else {
                None
            };
            let credentials = read_credentials(context, &args.source)?;
            let body = update_request(&args, current_git.as_ref(), credentials)?;
            let updated: Fetched<Application> = context.client.patch(&path, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&updated.raw)?;
            } else {
                context.console.println(&format!("updated application {}", updated.value.name))?;
                context.console.println(&format!(
                    "deploy the change with `berth deploy --project {project} --environment {environment} --application {} --wait`",
                    updated.value.name
                ))?;
            }
        }
        ApplicationCommand::List(args) => {
            let path = paths::applications(&args.project, &args.environment)?;
            let applications: Fetched<Vec<Application>> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&applications.raw)?;
            } else {
                let text =
                    applications_table(&args.project, &args.environment, &applications.value);
                context.console.print(&text)?;
            }
        }
        ApplicationCommand::Show(args) => {
            let path = paths::application(
                &args.environment.project,
                &args.environment.environment,
                &args.name,
            )?;
            let application: Fetched<Application> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&application.raw)?;
            } else {
                context.console.print(&application_fields(&application.value))?;
            }
        }
        ApplicationCommand::Delete(args) => {
            let target = args.application;
            let (project, environment) =
                (&target.environment.project, &target.environment.environment);
            let deletion = Deletion {
                kind: "application",
                question: format!(
                    "Delete application {:?} of environment {environment:?} in project {project:?}?",
                    target.name
                ),
                path: paths::application(project, environment, &target.name)?,
                query: None,
                on_accepted: None,
                confirmed: args.confirm.yes,
                list_command: format!(
                    "berth application list --project {project} --environment {environment}"
                ),
                name: target.name.clone(),
            };
            delete(context, deletion).await?;
        }
    }
    Ok(())
}

fn read_credentials(
    context: &mut Context<'_>,
    source: &GitSourceArgs,
) -> Result<Credentials, CliError> {
    let mut credentials = Credentials::default();
    if source.git_token_stdin {
        credentials.git_token = Some(read_secret(context.console, "Git token: ", "Git token")?);
    }
    if let Some(file) = &source.ssh_key_file {
        credentials.ssh_private_key = Some(read_ssh_key(file)?);
    }
    Ok(credentials)
}

fn read_ssh_key(file: &Path) -> Result<String, CliError> {
    let key = std::fs::read_to_string(file).map_err(|error| {
        CliError::failed(format!("cannot read the SSH key file {}: {error}", file.display()), None)
    })?;
    let trimmed = key.trim_start();
    if trimmed.starts_with("ssh-") || trimmed.starts_with("ecdsa-") {
        return Err(CliError::failed(
            format!("{} is a public key", file.display()),
            Some("pass the private key (the file without .pub); the public key goes to the Git host as a deploy key".into()),
        ));
    }
    if !trimmed.contains("PRIVATE KEY") {
        return Err(CliError::failed(
            format!("{} does not look like a private key", file.display()),
            Some("pass an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`)".into()),
        ));
    }
    Ok(key)
}

fn build_args(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

pub(crate) fn create_request(
    args: &CreateApplicationArgs,
    credentials: Credentials,
) -> CreateApplication {
    let git = args.git.as_ref().map(|repository| GitSourceInput {
        repository: repository.clone(),
        branch: args.source.branch.clone(),
        root_path: args.source.root_path.clone(),
        dockerfile_path: args.source.dockerfile.clone(),
        build_args: build_args(&args.source.build_args),
    });
    CreateApplication {
        name: args.name.clone(),
        git,
        image: args.image.clone(),
        port: args.runtime.port.map(u32::from),
        private: args.runtime.private,
        cpu: args.runtime.cpu,
        memory_mb: args.runtime.memory,
        git_token: credentials.git_token,
        ssh_private_key: credentials.ssh_private_key,
        instances: args.runtime.instances,
        health_check: args.runtime.health_check_settings(),
        release_command: args.runtime.release_command.clone(),
        drain_secs: args.runtime.drain,
        volumes: args.runtime.volume_settings(),
        auto_deploy: args.runtime.auto_deploy,
        depends_on: RuntimeArgs::list(args.runtime.depends_on.as_ref()).unwrap_or_default(),
        watch_paths: RuntimeArgs::list(args.runtime.watch_paths.as_ref()).unwrap_or_default(),
    }
}

/// The PATCH body: only what was given. `current_git` is the application's Git source,
/// read when a Git option changes (see the module's caveat).
pub(crate) fn update_request(
    args: &UpdateApplicationArgs,
    current_git: Option<&GitSourceView>,
    credentials: Credentials,
) -> Result<UpdateApplication, CliError> {
    let git = if args.git.is_some() || args.source.any_source_option() {
        let mut input = match current_git {
            Some(view) => GitSourceInput {
                repository: view.repository.clone(),
                branch: view.branch.clone(),
                root_path: Some(view.root_path.clone()),
                dockerfile_path: Some(view.dockerfile_path.clone()),
                build_args: view.build_args.clone(),
            },
            None if args.git.is_none() => {
                return Err(CliError::failed(
                    format!("application {:?} is not built from a Git repository", args.name),
                    Some("pass --git URL to build it from a repository".into()),
                ));
            }
            None => GitSourceInput::default(),
        };
        if let Some(repository) = &args.git {
            input.repository = repository.clone();
        }
        if let Some(branch) = &args.source.branch {
            input.branch = Some(branch.clone());
        }
        if let Some(root_path) = &args.source.root_path {
            input.root_path = Some(root_path.clone());
        }
        if let Some(dockerfile) = &args.source.dockerfile {
            input.dockerfile_path = Some(dockerfile.clone());
        }
        if !args.source.build_args.is_empty() {
            input.build_args = build_args(&args.source.build_args);
        }
        Some(input)
    } else {
        None
    };
    let private = match (args.runtime.private, args.public) {
        (true, _) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    let update = UpdateApplication {
        git,
        image: args.image.clone(),
        port: args.runtime.port.map(u32::from),
        clear_port: args.no_port,
        private,
        cpu: args.runtime.cpu,
        memory_mb: args.runtime.memory,
        git_token: credentials.git_token,
        ssh_private_key: credentials.ssh_private_key,
        clear_credentials: args.clear_credentials,
        instances: args.runtime.instances,
        health_check: args.runtime.health_check_settings(),
        release_command: args.runtime.release_command.clone(),
        drain_secs: args.runtime.drain,
        clear_release_command: args.no_release_command,
        volumes: (!args.runtime.volumes.is_empty()).then(|| args.runtime.volume_settings()),
        auto_deploy: args.runtime.auto_deploy,
        depends_on: RuntimeArgs::list(args.runtime.depends_on.as_ref()),
        watch_paths: RuntimeArgs::list(args.runtime.watch_paths.as_ref()),
    };
    let nothing = update.git.is_none()
        && update.image.is_none()
        && update.port.is_none()
        && !update.clear_port
        && update.private.is_none()
        && update.cpu.is_none()
        && update.memory_mb.is_none()
        && update.git_token.is_none()
        && update.ssh_private_key.is_none()
        && !update.clear_credentials
        && update.instances.is_none()
        && update.health_check.is_none()
        && update.release_command.is_none()
        && update.drain_secs.is_none()
        && update.volumes.is_none()
        && update.auto_deploy.is_none()
        && update.depends_on.is_none()
        && update.watch_paths.is_none()
        && !update.clear_release_command;
    if nothing {
        return Err(CliError::failed(
            "nothing to change",
            Some("pass at least one option; see `berth application update --help`".into()),
        ));
    }
    Ok(update)
}

fn list_or_dash(values: &[String]) -> String {
    if values.is_empty() {
        "-".to_owned()
    } else {
        values.join(", ")
    }
}

fn source_summary(application: &Application) -> String {
    match (&application.git, &application.image) {
        (Some(git), _) => {
            let mut summary = format!("{} ({}", git.repository, git.effective_branch);
            if git.root_path != "." && !git.root_path.is_empty() {
                summary.push_str(&format!(", {}", git.root_path));
            }
            summary.push(')');
            summary
        }
        (None, Some(image)) => format!("image {image}"),
        (None, None) => "-".into(),
    }
}

fn url_or_reason(application: &Application) -> String {
    match (&application.url, application.port, application.private) {
        (Some(url), _, _) => url.clone(),
        (None, None, _) => "- (worker: no port)".into(),
        (None, _, true) => "- (private)".into(),
        (None, _, false) => "-".into(),
    }
}

fn applications_table(project: &str, environment: &str, applications: &[Application]) -> String {
    if applications.is_empty() {
        return format!(
            "no applications in environment {environment} of project {project} yet: create one with \
             `berth application create --project {project} --environment {environment} NAME --git URL --port PORT`\n"
        );
    }
    let mut table = Table::new(&["NAME", "STATUS", "PORT", "URL", "SOURCE"]);
    for application in applications {
        table.row(vec![
            application.name.clone(),
            application.status.clone(),
            or_dash(application.port),
            url_or_reason(application),
            source_summary(application),
        ]);
    }
    table.render()
}

/// `2s`, `0.5s`: seconds as the user would type them.
fn seconds(value: f64) -> String {
    format!("{value}s")
}

/// `http GET /healthz expecting 200-399, every 2s, timeout 2s, 3 failures`. Absent
/// settings show the API's documented defaults.
fn health_check_summary(check: &HealthCheckSettings, port: Option<u16>) -> String {
    let target = match (check.kind.as_deref().unwrap_or("tcp"), port) {
        // The engine only waits for a worker's container to keep running.
        (_, None) => return "none (no port: the instance only has to keep running)".into(),
        ("http", Some(_)) => format!(
            "http GET {} expecting {}",
            check.path.as_deref().unwrap_or("/"),
            check.expected_status.as_deref().unwrap_or("200-399")
        ),
        ("tcp", Some(port)) => format!("tcp port {port}"),
        (other, Some(port)) => format!("{other} port {port}"),
    };
    let mut summary = target;
    if let Some(delay) = check.start_delay_secs.filter(|delay| *delay > 0.0) {
        summary.push_str(&format!(", first after {}", seconds(delay)));
    }
    summary.push_str(&format!(
        ", every {}, timeout {}, {} failures",
        seconds(check.interval_secs.unwrap_or(2.0)),
        seconds(check.timeout_secs.unwrap_or(2.0)),
        check.failure_threshold.unwrap_or(3)
    ));
    summary
}

fn application_fields(application: &Application) -> String {
    let mut fields = vec![
        ("name", application.name.clone()),
        ("project", application.project.clone()),
        ("environment", application.environment.clone()),
        ("status", application.status.clone()),
        ("url", url_or_reason(application)),
    ];
    if let Some(git) = &application.git {
        fields.push(("repository", git.repository.clone()));
        let branch = match &git.branch {
            Some(_) => git.effective_branch.clone(),
            None => format!("{} (the environment's)", git.effective_branch),
        };
        fields.push(("branch", branch));
        fields.push(("root path", git.root_path.clone()));
        fields.push(("dockerfile", git.dockerfile_path.clone()));
        let args: Vec<String> = git.build_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        fields.push(("build args", if args.is_empty() { "-".into() } else { args.join(" ") }));
        fields.push(("credential", git.credential.clone()));
    }
    if let Some(image) = &application.image {
        fields.push(("image", image.clone()));
    }
    fields.extend([
        ("port", application.port.map(|p| p.to_string()).unwrap_or_else(|| "- (worker)".into())),
        ("visibility", if application.private { "private" } else { "public" }.into()),
        ("cpu", application.cpu.map(|c| format!("{c} cores")).unwrap_or_else(|| "no limit".into())),
        (
            "memory",
            application.memory_mb.map(|m| format!("{m} MiB")).unwrap_or_else(|| "no limit".into()),
        ),
        ("instances", application.instances.to_string()),
        ("health check", health_check_summary(&application.health_check, application.port)),
        ("release command", or_dash(application.release_command.as_ref())),
        ("drain", seconds(application.drain_secs)),
        (
            "volumes",
            if application.volumes.is_empty() {
                "-".into()
            } else {
                let shown: Vec<String> = application
                    .volumes
                    .iter()
                    .map(|v| format!("{} at {} ({} GB)", v.name, v.path, v.size_gb.unwrap_or(1)))
                    .collect();
                shown.join(", ")
            },
        ),
        ("depends on", list_or_dash(&application.depends_on)),
        ("watch paths", list_or_dash(&application.watch_paths)),
        ("deployment", or_dash(application.current_deployment.as_ref())),
        ("created", format_timestamp(&application.created_at)),
        ("updated", format_timestamp(&application.updated_at)),
    ]);
    render_fields(&fields)
}

#[cfg(test)]
#[path = "application_tests.rs"]
mod tests;
