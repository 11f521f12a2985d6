//! `berth database create|list|show|delete --project P --environment E NAME`.
//!
//! Expected flow: `create` sends the engine, the version, the mode and either the storage
//! (container mode) or the server's URL (external mode); the server validates everything
//! (an unavailable version is refused before anything is recorded). A container database
//! starts with the environment's next `berth deploy`, before the applications, which
//! receive its `BERTH_DATABASE_<NAME>_*` variables; `env-var alias` makes a variable of the
//! user's follow one of them.
//!
//! Guarantees: the external URL (it holds a password) is only sent, never printed: the
//! server answers with the URL masked, and `--external-url-stdin` keeps it out of shell
//! history. The flag is not `--url`: that global option is the Berth server's URL.
//! `delete` asks for confirmation like every delete (no terminal and no `--yes`: refused
//! before any request), and its question says what is lost: a container database's
//! volume, its data; an external server is not touched.

use berth_api::{CreateDatabase, Database};

use super::delete::{delete, Deletion};
use super::{read_secret, CliError, Context};
use crate::args::{CreateDatabaseArgs, DatabaseCommand};
use crate::client::Fetched;
use crate::output::{format_timestamp, or_dash, render_fields, Table};
use crate::paths;

pub(crate) async fn run(
    context: &mut Context<'_>,
    command: DatabaseCommand,
) -> Result<(), CliError> {
    match command {
        DatabaseCommand::Create(args) => {
            let (project, environment) = (&args.environment.project, &args.environment.environment);
            let path = paths::databases(project, environment)?;
            let url = if args.external_url_stdin {
                Some(read_secret(context.console, "URL of the database server: ", "URL")?)
            } else {
                args.external_url.clone()
            };
            let body = create_request(&args, url);
            let created: Fetched<Database> = context.client.post(&path, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&created.raw)?;
            } else {
                context.console.print(&created_text(&created.value))?;
            }
        }
        DatabaseCommand::List(args) => {
            let path = paths::databases(&args.project, &args.environment)?;
            let databases: Fetched<Vec<Database>> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&databases.raw)?;
            } else {
                let text = databases_table(&args.project, &args.environment, &databases.value);
                context.console.print(&text)?;
            }
        }
        DatabaseCommand::Show(args) => {
            let path = paths::database(
                &args.environment.project,
                &args.environment.environment,
                &args.name,
            )?;
            let database: Fetched<Database> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&database.raw)?;
            } else {
                context.console.print(&database_fields(&database.value))?;
            }
        }
        DatabaseCommand::Delete(args) => {
            let target = args.database;
            let (project, environment) =
                (&target.environment.project, &target.environment.environment);
            let path = paths::database(project, environment, &target.name)?;
            // Only a user at a terminal is asked; reading the database first lets the
            // question say exactly what is lost. Without a terminal nothing is sent.
            let question = if !args.confirm.yes && context.console.stdin_is_terminal() {
                let database: Database = context.client.get(&path).await?;
                delete_question(&database)
            } else {
                format!(
                    "Delete database {:?} of environment {environment:?} in project {project:?}? \
                     A container database's volume and all its data are deleted.",
                    target.name
                )
            };
            let deletion = Deletion {
                kind: "database",
                question,
                path,
                confirmed: args.confirm.yes,
                list_command: format!(
                    "berth database list --project {project} --environment {environment}"
                ),
                name: target.name.clone(),
            };
            delete(context, deletion).await?;
        }
    }
    Ok(())
}

/// The POST body; an external URL without `--mode` means external mode (an explicit
/// `--mode container` with a URL is the server's to refuse).
pub(crate) fn create_request(args: &CreateDatabaseArgs, url: Option<String>) -> CreateDatabase {
    let mode = match (&args.mode, &url) {
        (Some(mode), _) => Some(mode.clone()),
        (None, Some(_)) => Some("external".to_owned()),
        (None, None) => None,
    };
    CreateDatabase {
        name: args.name.clone(),
        engine: args.engine.clone(),
        version: args.version.clone(),
        mode,
        url,
        storage_gb: args.storage,
    }
}

/// `BERTH_DATABASE_MAIN`: the prefix of the database's variables (from the names the
/// server lists, e.g. `BERTH_DATABASE_MAIN_URL`).
fn variables_prefix(database: &Database) -> Option<&str> {
    database.variables.iter().find_map(|name| name.strip_suffix("_URL"))
}

fn created_text(database: &Database) -> String {
    let (project, environment, name) = (&database.project, &database.environment, &database.name);
    let mut text = format!(
        "created database {name} ({} {}, {}) in environment {environment} of project {project}\n",
        database.engine, database.version, database.mode
    );
    if let Some(prefix) = variables_prefix(database) {
        text.push_str(&format!(
            "applications of the environment receive {prefix}_URL, _HOST, _PORT, _USER, _PASSWORD and _NAME\n"
        ));
        text.push_str(&format!(
            "to give one the name it expects: berth env-var alias --project {project} --environment {environment} DATABASE_URL={prefix}_URL\n"
        ));
    }
    let next = if database.mode == "external" {
        "applications get its variables with their next deployment"
    } else {
        "it starts with the environment's next deployment, before the applications"
    };
    text.push_str(&format!(
        "{next}: berth deploy --project {project} --environment {environment} --wait\n"
    ));
    text
}

/// `running`, `stopped`, `not_deployed`, `external`; `deleting` while it goes.
fn status_word(database: &Database) -> String {
    if database.status == "active" {
        database.runtime_status.clone()
    } else {
        database.status.clone()
    }
}

fn databases_table(project: &str, environment: &str, databases: &[Database]) -> String {
    if databases.is_empty() {
        return format!(
            "no databases in environment {environment} of project {project} yet: create one with \
             `berth database create --project {project} --environment {environment} NAME --engine postgresql`\n"
        );
    }
    let mut table = Table::new(&["NAME", "ENGINE", "MODE", "STATUS", "ADDRESS", "VARIABLES"]);
    for database in databases {
        table.row(vec![
            database.name.clone(),
            format!("{} {}", database.engine, database.version),
            database.mode.clone(),
            status_word(database),
            format!("{}:{}", database.host, database.port),
            or_dash(variables_prefix(database).map(|prefix| format!("{prefix}_*"))),
        ]);
    }
    table.render()
}

fn database_fields(database: &Database) -> String {
    let mut fields = vec![
        ("name", database.name.clone()),
        ("project", database.project.clone()),
        ("environment", database.environment.clone()),
        ("engine", format!("{} {}", database.engine, database.version)),
        ("mode", database.mode.clone()),
        ("status", status_word(database)),
    ];
    if let Some(storage) = database.storage_gb {
        fields.push(("storage", format!("{storage} GB")));
    }
    fields.extend([
        ("host", database.host.clone()),
        ("port", database.port.to_string()),
        ("user", database.user.clone()),
        ("database", database.database.clone()),
        ("url", database.url.clone()),
        ("variables", database.variables.join(", ")),
        ("id", database.id.clone()),
        ("created", format_timestamp(&database.created_at)),
    ]);
    render_fields(&fields)
}

fn delete_question(database: &Database) -> String {
    let what = format!(
        "Delete database {:?} ({} {}) of environment {:?} in project {:?}?",
        database.name, database.engine, database.version, database.environment, database.project
    );
    if database.mode == "external" {
        format!(
            "{what} Berth forgets it and its variables; the external server and its data are not touched."
        )
    } else {
        format!("{what} Its volume and ALL ITS DATA are deleted; this cannot be undone.")
    }
}

#[cfg(test)]
#[path = "database_tests.rs"]
mod tests;
