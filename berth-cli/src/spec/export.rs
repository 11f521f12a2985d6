//! `berth export --project P [-f FILE]`: the spec file of an existing project, read
//! through the API, so that `berth apply` of it prints "no changes".
//!
//! Secrets are written as references (`{ secret = true }`), never with values (the API
//! does not return them). An external database's URL becomes a reference to the
//! environment variable `<NAME>_DATABASE_URL`, which `apply` reads only when it has to
//! create that database again (e.g. on another server).

use std::path::Path;

use super::model::ProjectSpec;
use super::remote;
use crate::args::ExportArgs;
use crate::commands::{CliError, Context};

const HEADER: &str = "# Berth spec file written by `berth export`; see docs/spec.md.\n\
# Secrets are references: their values stay on the server.\n\n";

/// The TOML text of a spec, with the header comment.
pub(crate) fn render(spec: &ProjectSpec) -> Result<String, CliError> {
    let failed = |error: &dyn std::fmt::Display| {
        CliError::failed(format!("cannot write the spec as TOML: {error}"), None)
    };
    let body = toml::to_string(spec).map_err(|error| failed(&error))?;
    let mut document: toml_edit::DocumentMut = body.parse().map_err(|error| failed(&error))?;
    inline_small_tables(document.as_table_mut(), None);
    Ok(format!("{HEADER}{document}"))
}

/// Writes small tables the way a person would: `API_KEY = { secret = true }`,
/// `health_check = { kind = "http", ... }`, `volumes = [{ name = ..., path = ... }]`,
/// instead of a `[section]` each.
fn inline_small_tables(table: &mut toml_edit::Table, parent_key: Option<&str>) {
    let keys: Vec<String> = table.iter().map(|(key, _)| key.to_owned()).collect();
    for key in keys {
        let Some(item) = table.get_mut(&key) else { continue };
        let inline = matches!(key.as_str(), "health_check" | "build_args" | "url")
            || parent_key == Some("variables");
        match item {
            toml_edit::Item::Table(child) if inline => {
                let mut value = child.clone().into_inline_table();
                value.fmt();
                *item = toml_edit::Item::Value(toml_edit::Value::InlineTable(value));
            }
            toml_edit::Item::Table(child) => {
                inline_small_tables(child, Some(&key));
                continue;
            }
            toml_edit::Item::ArrayOfTables(array) if key == "volumes" => {
                let mut value = array.clone().into_array();
                value.fmt();
                *item = toml_edit::Item::Value(toml_edit::Value::Array(value));
            }
            _ => continue,
        }
        if let Some(mut key) = table.key_mut(&key) {
            key.fmt();
        }
    }
    if parent_key == Some("variables") {
        table.sort_values();
    }
}

/// Writes `text` to `file`, or prints it when there is no file.
pub(crate) fn write_or_print(
    context_console: &mut crate::output::Console,
    file: Option<&Path>,
    text: &str,
) -> Result<(), CliError> {
    match file {
        Some(path) => std::fs::write(path, text).map_err(|error| {
            CliError::failed(format!("cannot write {}: {error}", path.display()), None)
        }),
        None => Ok(context_console.print(text)?),
    }
}

pub(crate) async fn run(context: &mut Context<'_>, args: ExportArgs) -> Result<(), CliError> {
    let Some(spec) = remote::fetch(&context.client, &args.project).await? else {
        return Err(CliError::failed(
            format!("project {:?} does not exist", args.project),
            Some("list the projects with `berth project list`".into()),
        ));
    };
    let text = render(&spec)?;
    write_or_print(context.console, args.file.as_deref(), &text)?;
    if let Some(path) = &args.file {
        context.console.eprintln(&format!(
            "wrote the spec of project {} to {}",
            args.project,
            path.display()
        ))?;
    }
    Ok(())
}
