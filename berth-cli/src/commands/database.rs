//! `berth database create|list|show|update|delete|backup|backups|backup-delete|restore|clone
//! --project P --environment E NAME`.
//!
//! Expected flow: `create` sends the engine, the version, the mode and either the storage
//! (container mode) or the server's URL (external mode); the server validates everything
//! (an unavailable version is refused before anything is recorded). A container database
//! starts with the environment's next `berth deploy`, before the applications, which
//! receive its `BERTH_DATABASE_<NAME>_*` variables; `env-var alias` makes a variable of the
//! user's follow one of them.
//!
//! Backups: `backup` asks the server for a logical dump into its backup store and prints
//! the backup's id, size, path and SHA-256; `backups` lists them, newest first; `restore
//! --backup ID` replaces the database's data with a backup's (the server verifies the
//! checksum first); `clone SOURCE NEW [--to-environment ENV] [--method physical|dump]`
//! makes a new, started database with its own credentials holding a consistent copy of
//! the source's data, and says which method copied it.
//! `create --backup-schedule CRON` and `update --backup-schedule CRON|none
//! --backup-retention N` set scheduled backups (the server validates the expression);
//! `backup-delete NAME BACKUP_ID` removes one backup (asks first), also one of a deleted
//! database. `update --external-url URL` and `rotate-credentials` change credentials
//! (`database_credentials.rs`). These requests last as long as the work (minutes for a large database), so they get a
//! long deadline instead of the usual minute.
//!
//! Guarantees: the external URL (it holds a password) is only sent, never printed: the
//! server answers with the URL masked, and `--external-url-stdin` keeps it out of shell
//! history. The flag is not `--url`: that global option is the Berth server's URL.
//! `delete` and `restore` ask for confirmation (no terminal and no `--yes`: refused before
//! any request), and their question says what is lost: a container database's volume, its
//! data (unless `--final-backup` keeps a backup first, whose path is printed); the data
//! that a restore replaces; an external server is not touched. With `--yes`, `restore`
//! still announces on stderr what it replaces.

use berth_api::{
    Backup, CloneDatabase, ClonedDatabase, CreateDatabase, Database, RestoreRequest, UpdateDatabase,
};

use super::delete::{delete, Deletion};
use super::{ask, read_secret, unconfirmed, CliError, Context};
use crate::args::{
    BackupDeleteArgs, CloneDatabaseArgs, CreateDatabaseArgs, DatabaseCommand, RestoreDatabaseArgs,
    UpdateDatabaseArgs,
};
use crate::client::{Fetched, LONG_REQUEST_TIMEOUT};
use crate::output::{format_size, format_timestamp, or_dash, render_fields, Table};
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
                delete_question(&database, args.final_backup)
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
                query: args.final_backup.then_some("final_backup=true"),
                on_accepted: Some(final_backup_text),
                confirmed: args.confirm.yes,
                list_command: format!(
                    "berth database list --project {project} --environment {environment}"
                ),
                name: target.name.clone(),
            };
            delete(context, deletion).await?;
        }
        DatabaseCommand::Backup(args) => {
            let (project, environment) = (&args.environment.project, &args.environment.environment);
            let path = paths::database_backups(project, environment, &args.name)?;
            context.console.eprintln(&format!("backing up database {:?}...", args.name))?;
            let backup: Fetched<Backup> =
                context.client.post_within(&path, None::<&()>, LONG_REQUEST_TIMEOUT).await?;
            if context.console.is_json() {
                context.console.print_json(&backup.raw)?;
            } else {
                context.console.print(&backup_text(project, environment, &backup.value))?;
            }
        }
        DatabaseCommand::Backups(args) => {
            let (project, environment) = (&args.environment.project, &args.environment.environment);
            let path = paths::database_backups(project, environment, &args.name)?;
            let backups: Fetched<Vec<Backup>> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&backups.raw)?;
            } else {
                let text = backups_table(project, environment, &args.name, &backups.value);
                context.console.print(&text)?;
            }
        }
        DatabaseCommand::Restore(args) => restore(context, args).await?,
        DatabaseCommand::Update(args) => update(context, args).await?,
        DatabaseCommand::RotateCredentials(args) => {
            super::database_credentials::rotate(context, args).await?
        }
        DatabaseCommand::BackupDelete(args) => backup_delete(context, args).await?,
        DatabaseCommand::Clone(args) => clone(context, args).await?,
        DatabaseCommand::Connect(args) => super::database_connect::run(context, args).await?,
    }
    Ok(())
}

/// `restore`: confirmation (a question on a terminal that names the database and the
/// backup; with `--yes` an announcement), then the request, which lasts as long as the
/// restore.
async fn restore(context: &mut Context<'_>, args: RestoreDatabaseArgs) -> Result<(), CliError> {
    let target = &args.database;
    let (project, environment) = (&target.environment.project, &target.environment.environment);
    let path = paths::database_restore(project, environment, &target.name)?;
    if args.confirm.yes {
        context.console.eprintln(&format!(
            "restoring database {:?} of environment {environment:?} in project {project:?} \
             from backup {}: its current data is replaced by the backup's",
            target.name, args.backup
        ))?;
    } else {
        if !context.console.stdin_is_terminal() {
            return Err(unconfirmed("restore"));
        }
        // Read the database and its backups first so that the question says exactly what
        // is replaced by what; an unknown backup is reported before anyone is asked.
        let database: Database =
            context.client.get(&paths::database(project, environment, &target.name)?).await?;
        let backups: Vec<Backup> = context
            .client
            .get(&paths::database_backups(project, environment, &target.name)?)
            .await?;
        let Some(backup) = backups.iter().find(|backup| backup.id == args.backup) else {
            return Err(CliError::failed(
                format!("backup {:?} of database {:?} does not exist", args.backup, target.name),
                Some(format!(
                    "list them with `berth database backups --project {project} --environment {environment} {}`",
                    target.name
                )),
            ));
        };
        if !ask(context.console, &restore_question(&database, backup))? {
            return Err(CliError::failed(
                format!("cancelled: database {:?} was not restored", target.name),
                None,
            ));
        }
        context.console.eprintln(&format!("restoring database {:?}...", target.name))?;
    }
    let body = RestoreRequest { backup: args.backup.clone() };
    let restored: Fetched<Backup> =
        context.client.post_within(&path, Some(&body), LONG_REQUEST_TIMEOUT).await?;
    if context.console.is_json() {
        context.console.print_json(&restored.raw)?;
    } else {
        let backup = &restored.value;
        context.console.println(&format!(
            "restored database {} from backup {} (taken {}, {})",
            target.name,
            backup.id,
            format_timestamp(&backup.created_at),
            format_size(backup.size_bytes)
        ))?;
    }
    Ok(())
}

/// `clone`: one request that creates, starts and fills the new database.
async fn clone(context: &mut Context<'_>, args: CloneDatabaseArgs) -> Result<(), CliError> {
    let (project, environment) = (&args.environment.project, &args.environment.environment);
    let path = paths::database_clone(project, environment, &args.source)?;
    context
        .console
        .eprintln(&format!("cloning database {:?} into {:?}...", args.source, args.new))?;
    let body = CloneDatabase {
        name: args.new.clone(),
        environment: args.to_environment.clone(),
        method: args.method.clone(),
    };
    let cloned: Fetched<ClonedDatabase> =
        context.client.post_within(&path, Some(&body), LONG_REQUEST_TIMEOUT).await?;
    if context.console.is_json() {
        context.console.print_json(&cloned.raw)?;
    } else {
        context.console.print(&cloned_text(&args.source, &cloned.value.database))?;
        if let Some(method) = &cloned.value.clone_method {
            context.console.eprintln(&format!(
                "copied {} with the {method} method",
                format_size(cloned.value.copied_bytes)
            ))?;
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
        backup_schedule: args.backup_schedule.clone(),
        backup_retention: args.backup_retention,
    }
}

/// `update`: changes the backup schedule and retention, and an external database's URL
/// (then follows the redeployment it queued, see `database_credentials.rs`).
async fn update(context: &mut Context<'_>, args: UpdateDatabaseArgs) -> Result<(), CliError> {
    let target = &args.database;
    let (project, environment) = (&target.environment.project, &target.environment.environment);
    if args.backup_schedule.is_none()
        && args.backup_retention.is_none()
        && args.external_url.is_none()
        && !args.external_url_stdin
    {
        return Err(CliError::failed(
            "nothing to change".to_owned(),
            Some("give --backup-schedule CRON|none and/or --backup-retention N, or --external-url URL for an external database".into()),
        ));
    }
    let path = paths::database(project, environment, &target.name)?;
    let external_url = if args.external_url_stdin {
        Some(read_secret(context.console, "new URL of the database server: ", "URL")?)
    } else {
        args.external_url.clone()
    };
    let started = std::time::Instant::now();
    let body = UpdateDatabase {
        backup_schedule: args.backup_schedule.clone(),
        backup_retention: args.backup_retention,
        external_url: external_url.clone(),
    };
    // With a URL the server opens a session on it first (seconds at most).
    let updated: Fetched<Database> = context.client.patch(&path, &body).await?;
    if external_url.is_some() {
        let summary = super::database_credentials::external_url_summary(&updated.value);
        return super::database_credentials::follow_redeployment(
            context, updated, &summary, args.wait, started,
        )
        .await;
    }
    if context.console.is_json() {
        context.console.print_json(&updated.raw)?;
    } else {
        let database = &updated.value;
        let schedule = match (&database.backup_schedule, &database.next_backup_at) {
            (Some(cron), Some(next)) => {
                format!("backups on schedule {cron:?} (UTC), next at {}", format_timestamp(next))
            }
            (Some(cron), None) => format!("backups on schedule {cron:?} (UTC)"),
            (None, _) => "no scheduled backups".to_owned(),
        };
        context.console.println(&format!(
            "updated database {}: {schedule}; the newest {} scheduled backups are kept",
            database.name,
            database.backup_retention.unwrap_or_default()
        ))?;
    }
    Ok(())
}

/// `backup-delete`: removes one backup from the store (asks first).
async fn backup_delete(context: &mut Context<'_>, args: BackupDeleteArgs) -> Result<(), CliError> {
    let target = &args.database;
    let (project, environment) = (&target.environment.project, &target.environment.environment);
    let path = paths::database_backup(project, environment, &target.name, &args.backup)?;
    if !args.confirm.yes {
        if !context.console.stdin_is_terminal() {
            return Err(unconfirmed("delete a backup"));
        }
        let question = format!(
            "Delete backup {} of database {:?} of environment {environment:?} in project {project:?}? Its file is deleted from the backup store; it can no longer be restored.",
            args.backup, target.name
        );
        if !ask(context.console, &question)? {
            return Err(CliError::failed(
                format!("cancelled: backup {} was not deleted", args.backup),
                None,
            ));
        }
    }
    let deleted = context.client.delete(&path).await?;
    if context.console.is_json() {
        context.console.print_json(&deleted)?;
    } else {
        context
            .console
            .println(&format!("deleted backup {} of database {}", args.backup, target.name))?;
    }
    Ok(())
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
    ]);
    if database.mode == "container" {
        let schedule = match &database.backup_schedule {
            Some(cron) => format!("{cron} (UTC)"),
            None => "none (manual backups only)".to_owned(),
        };
        fields.push(("backup schedule", schedule));
        if let Some(next) = &database.next_backup_at {
            fields.push(("next backup", format_timestamp(next)));
        }
        if let Some(retention) = database.backup_retention {
            fields.push((
                "backups kept",
                format!("{retention} newest scheduled (manual until deleted)"),
            ));
        }
        if let Some(error) = &database.last_backup_error {
            fields.push(("last backup error", format!("{error} (retried every minute)")));
        }
    }
    fields
        .extend([("id", database.id.clone()), ("created", format_timestamp(&database.created_at))]);
    render_fields(&fields)
}

fn delete_question(database: &Database, final_backup: bool) -> String {
    let what = format!(
        "Delete database {:?} ({} {}) of environment {:?} in project {:?}?",
        database.name, database.engine, database.version, database.environment, database.project
    );
    if database.mode == "external" {
        format!(
            "{what} Berth forgets it and its variables; the external server and its data are not touched."
        )
    } else if final_backup {
        format!(
            "{what} A final backup is taken first and kept in the backup store; then its volume and ALL ITS DATA are deleted."
        )
    } else {
        format!("{what} Its volume and ALL ITS DATA are deleted; this cannot be undone.")
    }
}

/// Where the final backup of a deleted database is kept (from the DELETE's answer).
fn final_backup_text(accepted: &serde_json::Value) -> Option<String> {
    let backup: Backup = serde_json::from_value(accepted.get("final_backup")?.clone()).ok()?;
    Some(format!(
        "final backup {} of database {} ({}) is kept at {}\n",
        backup.id,
        backup.database,
        format_size(backup.size_bytes),
        backup.path
    ))
}

fn backup_text(project: &str, environment: &str, backup: &Backup) -> String {
    let mut text = format!("backed up database {}\n", backup.database);
    text.push_str(&render_fields(&[
        ("backup", backup.id.clone()),
        ("size", format!("{} ({} bytes)", format_size(backup.size_bytes), backup.size_bytes)),
        ("path", backup.path.clone()),
        ("sha256", backup.sha256.clone()),
        ("created", format_timestamp(&backup.created_at)),
    ]));
    text.push_str(&format!(
        "restore it with: berth database restore --project {project} --environment {environment} {} --backup {}\n",
        backup.database, backup.id
    ));
    text
}

/// The first 12 hex digits of a SHA-256: enough to compare by eye.
fn short_sha256(sha256: &str) -> String {
    sha256.chars().take(12).collect()
}

fn backups_table(project: &str, environment: &str, name: &str, backups: &[Backup]) -> String {
    if backups.is_empty() {
        return format!(
            "no backups of database {name} yet: take one with \
             `berth database backup --project {project} --environment {environment} {name}`\n"
        );
    }
    let mut table = Table::new(&["ID", "CREATED", "SIZE", "TRIGGER", "STORE", "SHA256"]);
    for backup in backups {
        table.row(vec![
            backup.id.clone(),
            format_timestamp(&backup.created_at),
            format_size(backup.size_bytes),
            backup.reason.clone(),
            backup.store.clone(),
            short_sha256(&backup.sha256),
        ]);
    }
    table.render()
}

fn restore_question(database: &Database, backup: &Backup) -> String {
    format!(
        "Restore database {:?} ({} {}) of environment {:?} in project {:?} from backup {} \
         ({}, taken {}, {})? Its current data is replaced by the backup's: what changed since \
         then is lost. Applications keep running and see the restored data.",
        database.name,
        database.engine,
        database.version,
        database.environment,
        database.project,
        backup.id,
        backup.reason,
        format_timestamp(&backup.created_at),
        format_size(backup.size_bytes)
    )
}

fn cloned_text(source: &str, database: &Database) -> String {
    let (project, environment, name) = (&database.project, &database.environment, &database.name);
    let mut text = format!(
        "cloned database {source} into {name} ({} {}) in environment {environment} of project {project}, with its own credentials\n",
        database.engine, database.version
    );
    if let Some(prefix) = variables_prefix(database) {
        text.push_str(&format!(
            "applications of the environment receive {prefix}_URL, _HOST, _PORT, _USER, _PASSWORD and _NAME with their next deployment: berth deploy --project {project} --environment {environment} --wait\n"
        ));
    }
    text
}

#[cfg(test)]
#[path = "database_tests.rs"]
mod tests;
