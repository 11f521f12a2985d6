//! `berth apply -f berth.toml [--dry-run] [--prune] [--deploy]`.
//!
//! Expected flow: read and validate the whole file (every problem reported at once), read
//! the project's current state from the server, compute the plan (`diff`) and print it.
//! Then refuse, before the first write, when the plan holds something the API cannot do,
//! a referenced secret is missing at a scope that already exists, or an external
//! database's URL is not in the environment (a `--dry-run` fails the same way: the apply
//! would). Otherwise (unless `--dry-run`) apply the changes one by one in dependency
//! order. `--prune` deletions are listed first and confirmed (`--yes`
//! without a terminal). `--deploy` then deploys, and waits for, every environment the
//! apply changed; without it the `berth deploy` commands to run are printed.
//!
//! Guarantees: a file that matches the server prints "no changes" and sends no write (so
//! nothing's `updated_at` moves and no deployment is queued). Secret values are never read
//! nor written: a missing secret is reported with the `berth env-var set --secret` command.
//!
//! Caveats: the API has no transactions. Everything that can be checked is checked before
//! the first write, but a change can still fail on the server (e.g. a database version
//! whose image cannot be had); the error then says which changes were applied, and
//! running `apply` again continues from there.

use std::collections::BTreeSet;
use std::path::Path;

use super::diff::{plan, Action, MissingSecret, Operation, Plan};
use super::load::read_spec;
use super::remote;
use crate::args::{ApplyArgs, DeployArgs, EnvironmentArgs};
use crate::commands::{ask, unconfirmed, CliError, Context};

pub(crate) async fn run(context: &mut Context<'_>, args: ApplyArgs) -> Result<(), CliError> {
    let lookup_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let spec = read_spec(&args.file, &lookup_env).map_err(|errors| CliError::Failed {
        message: format!("{} is not a valid spec file:", args.file.display()),
        details: format!("{errors}\n"),
        hint: Some("see docs/spec.md for every key and its values; nothing was changed".into()),
    })?;
    let project = spec.project.clone();
    let current = remote::fetch(&context.client, &project).await?;
    let plan = plan(&spec, current.as_ref(), args.prune);
    // The diff first: it is the context of a refusal.
    print_plan(context, &plan, &project, args.prune)?;
    refuse_what_cannot_be_done(&plan, &project, &args.file)?;
    // The URLs of the external databases to create, by the index of their change.
    let mut external_urls: Vec<(usize, String)> = Vec::new();
    for (index, change) in plan.changes.iter().enumerate() {
        if let Operation::CreateDatabase { url_from: Some(variable), .. } = &change.operation {
            match lookup_env(variable) {
                Some(url) => external_urls.push((index, url)),
                None => {
                    return Err(CliError::failed(
                        format!(
                            "{} needs its URL in the environment variable {variable}; nothing was changed",
                            change.resource
                        ),
                        Some(format!(
                            "run `{variable}='postgresql://user:password@host:5432/name' berth apply -f {}` (the URL is sent once, stored encrypted, and never written to the file)",
                            args.file.display()
                        )),
                    ))
                }
            }
        }
    }

    if plan.changes.is_empty() {
        return Ok(());
    }
    if args.dry_run {
        say(context, "dry run: nothing was changed")?;
        report_new_scope_secrets(context, &plan, &project)?;
        return Ok(());
    }
    let deletions = plan.deletions().count();
    if deletions > 0 && !args.yes {
        if !context.console.stdin_is_terminal() {
            return Err(unconfirmed("prune"));
        }
        if !ask(context.console, &format!("Delete the {deletions} resources marked `-` above?"))? {
            return Err(CliError::failed("nothing was changed", None));
        }
    }

    for (index, change) in plan.changes.iter().enumerate() {
        let external_url =
            external_urls.iter().find(|(at, _)| *at == index).map(|(_, url)| url.clone());
        if let Err(error) =
            remote::perform(&context.client, &project, &change.operation, external_url).await
        {
            let hint = error.hint().unwrap_or_else(|| {
                "fix the cause and run `berth apply` again: it continues from what was applied"
                    .into()
            });
            return Err(CliError::Failed {
                message: format!("{} failed: {error}", change.line()),
                details: format!(
                    "applied {index} of {} changes before this one\n",
                    plan.changes.len()
                ),
                hint: Some(hint),
            });
        }
    }
    let count = plan.changes.len();
    say(context, &format!("applied {count} change{}", if count == 1 { "" } else { "s" }))?;
    report_new_scope_secrets(context, &plan, &project)?;

    let all_environments: Vec<String> = spec.environments.keys().cloned().collect();
    let changed_environments = changed_environments(&plan, &all_environments);
    if args.deploy {
        if plan.missing_secrets.iter().any(|missing| missing.scope_is_new) {
            return Err(CliError::failed(
                "not deploying: set the secrets listed above first",
                Some(format!("then run `berth apply -f {} --deploy` again", args.file.display())),
            ));
        }
        for environment in changed_environments {
            let deploy = DeployArgs {
                environment: EnvironmentArgs { project: project.clone(), environment },
                application: None,
                wait: true,
                dry_run: false,
            };
            crate::commands::deploy(context, deploy).await?;
        }
    } else {
        for environment in changed_environments {
            say(context, &format!(
                "deploy the changes with `berth deploy --project {project} --environment {environment} --wait`"
            ))?;
        }
    }
    Ok(())
}

/// The environments whose configuration this plan changes (deleted ones excepted): the
/// ones to deploy. A project variable changes every environment of the file.
fn changed_environments(plan: &Plan, all_environments: &[String]) -> BTreeSet<String> {
    let mut environments = BTreeSet::new();
    for change in &plan.changes {
        if let Operation::SetVariable { scope: super::diff::ScopeRef::Project, .. }
        | Operation::DeleteVariable { scope: super::diff::ScopeRef::Project, .. } =
            &change.operation
        {
            environments.extend(all_environments.iter().cloned());
        }
        let environment = match &change.operation {
            Operation::CreateEnvironment(body) => Some(&body.name),
            Operation::CreateDatabase { environment, .. }
            | Operation::CreateApplication { environment, .. }
            | Operation::UpdateApplication { environment, .. }
            | Operation::DeleteApplication { environment, .. }
            | Operation::DeleteDatabase { environment, .. } => Some(environment),
            Operation::SetVariable { scope, .. } | Operation::DeleteVariable { scope, .. } => {
                match scope {
                    super::diff::ScopeRef::Project => None,
                    super::diff::ScopeRef::Environment { environment }
                    | super::diff::ScopeRef::Application { environment, .. } => Some(environment),
                }
            }
            Operation::CreateProject | Operation::DeleteEnvironment { .. } => None,
        };
        if let Some(environment) = environment {
            environments.insert(environment.clone());
        }
    }
    let deleted: Vec<&String> = plan
        .changes
        .iter()
        .filter_map(|change| match &change.operation {
            Operation::DeleteEnvironment { name } => Some(name),
            _ => None,
        })
        .collect();
    environments.retain(|environment| !deleted.contains(&environment));
    environments
}

fn set_secret_command(project: &str, missing: &MissingSecret) -> String {
    format!("berth env-var set {} --secret {}", missing.scope.flags(project), missing.name)
}

/// Fails, before any change, on what the API cannot do and on missing secrets at scopes
/// that already exist.
fn refuse_what_cannot_be_done(plan: &Plan, project: &str, file: &Path) -> Result<(), CliError> {
    if !plan.refusals.is_empty() {
        return Err(CliError::Failed {
            message: format!(
                "{} asks for changes the API cannot make; nothing was changed:",
                file.display()
            ),
            details: plan.refusals.iter().map(|refusal| format!("  {refusal}\n")).collect(),
            hint: None,
        });
    }
    let missing: Vec<&MissingSecret> =
        plan.missing_secrets.iter().filter(|missing| !missing.scope_is_new).collect();
    if !missing.is_empty() {
        return Err(CliError::Failed {
            message: format!(
                "{} references secrets that do not exist; nothing was changed:",
                file.display()
            ),
            details: missing
                .iter()
                .map(|missing| format!("  {}\n", set_secret_command(project, missing)))
                .collect(),
            hint: Some(
                "run these commands (each reads the value from standard input), then apply again"
                    .into(),
            ),
        });
    }
    Ok(())
}

fn report_new_scope_secrets(
    context: &mut Context<'_>,
    plan: &Plan,
    project: &str,
) -> Result<(), CliError> {
    let missing: Vec<&MissingSecret> =
        plan.missing_secrets.iter().filter(|missing| missing.scope_is_new).collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(context, "set the secrets the file references before deploying:")?;
    for missing in missing {
        say(context, &format!("  {}", set_secret_command(project, missing)))?;
    }
    Ok(())
}

/// A line for people on stdout; `--output json` prints only the plan's JSON there.
fn say(context: &mut Context<'_>, text: &str) -> Result<(), CliError> {
    if !context.console.is_json() {
        context.console.println(text)?;
    }
    Ok(())
}

/// The plan as JSON: `{"changes": [{"action", "resource", "details"}], "refusals",
/// "missing_secrets", "unmanaged"}`.
fn plan_json(plan: &Plan, project: &str) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|change| {
            serde_json::json!({
                "action": match change.action {
                    Action::Create => "create",
                    Action::Update => "update",
                    Action::Delete => "delete",
                },
                "resource": change.resource,
                "details": change.details,
            })
        })
        .collect();
    let missing: Vec<String> =
        plan.missing_secrets.iter().map(|missing| set_secret_command(project, missing)).collect();
    serde_json::json!({
        "project": project,
        "changes": changes,
        "refusals": plan.refusals,
        "missing_secrets": missing,
        "unmanaged": plan.unmanaged,
    })
}

fn print_plan(
    context: &mut Context<'_>,
    plan: &Plan,
    project: &str,
    prune: bool,
) -> Result<(), CliError> {
    if context.console.is_json() {
        context.console.print_json(&plan_json(plan, project))?;
        return Ok(());
    }
    if plan.changes.is_empty() {
        say(context, "no changes")?;
    }
    let creates = plan.changes.iter().filter(|c| c.action == Action::Create).count();
    let updates = plan.changes.iter().filter(|c| c.action == Action::Update).count();
    let deletes = plan.changes.iter().filter(|c| c.action == Action::Delete).count();
    for change in &plan.changes {
        say(context, &change.line())?;
    }
    if !plan.changes.is_empty() {
        say(
            context,
            &format!("plan: {creates} to create, {updates} to update, {deletes} to delete"),
        )?;
    }
    if !prune && !plan.unmanaged.is_empty() {
        say(
            context,
            &format!(
                "not in the file, left alone (--prune deletes them): {}",
                plan.unmanaged.join(", ")
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
