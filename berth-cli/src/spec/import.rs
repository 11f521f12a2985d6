//! `berth import compose docker-compose.yml [-f berth.toml] [--project NAME] [--git URL]`:
//! converts a compose file into a spec file. It needs no server.
//!
//! Expected flow: find where `build` services come from (`--git URL`, else the local Git
//! repository holding the compose file: its absolute path, its current branch), convert
//! (`compose`), check the result with the same validation as `apply`, write it (or print
//! it), and report on stderr what was converted, what was dropped and why, and the
//! `berth env-var set --secret` commands for the variables that became secret references.

use std::path::{Component, Path, PathBuf};

use super::compose::{convert, ComposeContext};
use super::export::{render, write_or_print};
use super::load::parse_spec;
use crate::args::{ImportCommand, ImportComposeArgs};
use crate::commands::CliError;
use crate::output::Console;

pub(crate) fn run(console: &mut Console, command: ImportCommand) -> Result<(), CliError> {
    match command {
        ImportCommand::Compose(args) => compose(console, &args),
    }
}

/// The Git repository holding `directory`: its root and its current branch (`None` when
/// HEAD is detached).
fn enclosing_repository(directory: &Path) -> Option<(PathBuf, Option<String>)> {
    let mut candidate = Some(directory);
    while let Some(path) = candidate {
        let git = path.join(".git");
        if git.is_dir() {
            let head = std::fs::read_to_string(git.join("HEAD")).ok();
            let branch = head
                .as_deref()
                .and_then(|head| head.trim().strip_prefix("ref: refs/heads/"))
                .map(str::to_owned);
            return Some((path.to_path_buf(), branch));
        }
        candidate = path.parent();
    }
    None
}

/// `shop_app` (a directory name) → `shop-app`; `None` when nothing usable is left.
fn project_name_from(text: &str) -> Option<String> {
    let name: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_owned();
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase())).then_some(name)
}

fn compose(console: &mut Console, args: &ImportComposeArgs) -> Result<(), CliError> {
    let read_error = |error: std::io::Error| {
        CliError::failed(format!("cannot read {}: {error}", args.compose_file.display()), None)
    };
    let text = std::fs::read_to_string(&args.compose_file).map_err(read_error)?;
    let compose_path = std::fs::canonicalize(&args.compose_file).map_err(read_error)?;
    let directory = compose_path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let local = enclosing_repository(&directory);

    let (repository, directory_in_repository) = match (&args.git, &local) {
        (Some(url), Some((root, _))) => (Some(url.clone()), relative_path(root, &directory)),
        (Some(url), None) => (Some(url.clone()), String::new()),
        (None, Some((root, _))) => {
            (Some(root.display().to_string()), relative_path(root, &directory))
        }
        (None, None) => (None, String::new()),
    };
    let detected_branch = local.as_ref().and_then(|(_, branch)| branch.clone());
    let branch = args.branch.clone().or(detected_branch).unwrap_or_else(|| "main".into());
    let document_name = serde_yaml::from_str::<serde_yaml::Value>(&text)
        .ok()
        .and_then(|document| document.get("name").and_then(|n| n.as_str().map(str::to_owned)));
    let project = match &args.project {
        Some(project) => project.clone(),
        None => document_name
            .as_deref()
            .and_then(project_name_from)
            .or_else(|| {
                directory.file_name().and_then(|name| project_name_from(&name.to_string_lossy()))
            })
            .ok_or_else(|| {
                CliError::failed(
                    "cannot derive a project name from the compose file",
                    Some("pass --project NAME".into()),
                )
            })?,
    };
    let context = ComposeContext {
        project: project.clone(),
        environment: args.environment.clone(),
        branch,
        repository: repository.clone(),
        directory_in_repository,
    };
    let conversion = convert(&text, &context).map_err(|error| {
        CliError::failed(
            format!("{}: {error}", args.compose_file.display()),
            Some("fix the compose file or the options; nothing was written".into()),
        )
    })?;
    let rendered = render(&conversion.spec)?;
    // The same checks as `apply`, so that a spec that cannot be applied is not written.
    let no_environment = |_: &str| None;
    if let Err(errors) = parse_spec("the converted spec", &rendered, &no_environment) {
        return Err(CliError::Failed {
            message: "the compose file converts into a spec Berth refuses:".into(),
            details: format!("{errors}\n"),
            hint: Some("rename what is named above in the compose file (or pass --project), then import again".into()),
        });
    }
    if let Some(path) = &args.file {
        if path.exists() && !args.force {
            return Err(CliError::failed(
                format!("{} already exists", path.display()),
                Some("pass --force to overwrite it, or choose another file with -f".into()),
            ));
        }
    }
    write_or_print(console, args.file.as_deref(), &rendered)?;

    let mut report = String::new();
    for line in &conversion.converted {
        report.push_str(&format!("converted: {line}\n"));
    }
    for line in &conversion.dropped {
        report.push_str(&format!("dropped: {line}\n"));
    }
    if local.is_some() && args.git.is_none() && repository.is_some() {
        report.push_str(&format!(
            "note: applications build from the local repository {}; the server needs --allow-local-repositories (or pass --git URL)\n",
            repository.as_deref().unwrap_or_default()
        ));
    }
    if !conversion.secrets.is_empty() {
        report.push_str(
            "warning: these variables look secret (or take their value from the host) and became secret references; set their values with:\n",
        );
        for (application, variable) in &conversion.secrets {
            report.push_str(&format!(
                "  berth env-var set --project {project} --environment {} --application {application} --secret {variable}\n",
                args.environment
            ));
        }
    }
    if let Some(path) = &args.file {
        report.push_str(&format!(
            "wrote {}; review it, then run `berth apply -f {}`\n",
            path.display(),
            path.display()
        ));
    }
    console.eprint(&report)?;
    Ok(())
}

/// `directory` relative to `root` with `/` separators (`""` when equal).
fn relative_path(root: &Path, directory: &Path) -> String {
    directory
        .strip_prefix(root)
        .map(|relative| {
            relative
                .components()
                .filter_map(|component| match component {
                    Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}
