//! `berth database rotate-credentials --project P --environment E NAME [--yes] [--wait]`,
//! and the part of `berth database update` that gives an external database a new URL.
//!
//! Expected flow: `rotate-credentials` asks on a terminal (no terminal and no `--yes`:
//! refused before any request), saying that the application instances running now lose
//! access to the database until the redeployment that follows replaces them; then one
//! request does the rotation (the server sets the new password in the running database,
//! stores it, restarts the database container with it) and queues that redeployment.
//! The CLI prints what happened and the deployment, which `--wait` follows like
//! `deploy --wait`. `update --external-url URL` (or `--external-url-stdin`) is refused
//! by the server when the URL does not open a session, and otherwise redeploys the same
//! way.
//!
//! Guarantees: no password is printed; the server answers with the URL masked. With
//! `--output json` the database is printed (its `queued_deployment` names the
//! deployment), or with `--wait` the finished deployment.

use std::time::Instant;

use berth_api::{Database, Deployment};

use super::{ask, unconfirmed, CliError, Context};
use crate::args::RotateCredentialsArgs;
use crate::client::{Fetched, LONG_REQUEST_TIMEOUT};
use crate::paths;

/// `rotate-credentials`: confirmation, the request, then the redeployment it queued.
pub(crate) async fn rotate(
    context: &mut Context<'_>,
    args: RotateCredentialsArgs,
) -> Result<(), CliError> {
    let target = &args.database;
    let (project, environment) = (&target.environment.project, &target.environment.environment);
    let question = format!(
        "Rotate the password of database {:?} of environment {environment:?} in project {project:?}? \
         The new password takes effect at once and the database container restarts; \
         application instances running now lose access to the database until the \
         redeployment that follows replaces them.",
        target.name
    );
    if args.confirm.yes {
        context.console.eprintln(&format!(
            "rotating the password of database {:?}: application instances running now lose access until they are redeployed",
            target.name
        ))?;
    } else {
        if !context.console.stdin_is_terminal() {
            return Err(unconfirmed("rotate credentials"));
        }
        if !ask(context.console, &question)? {
            return Err(CliError::failed(
                format!(
                    "cancelled: the credentials of database {:?} were not changed",
                    target.name
                ),
                None,
            ));
        }
    }
    let path =
        format!("{}/rotate-credentials", paths::database(project, environment, &target.name)?);
    let started = Instant::now();
    // The database restarts within the request: allow for its graceful stop.
    let rotated: Fetched<Database> =
        context.client.post_within(&path, None::<&()>, LONG_REQUEST_TIMEOUT).await?;
    let summary = format!(
        "rotated the password of database {} ({}): the new one is in effect and stored, and the database container was restarted with it",
        rotated.value.name, rotated.value.engine
    );
    follow_redeployment(context, rotated, &summary, args.wait, started).await
}

/// What `update` prints after an external database got a new URL.
pub(crate) fn external_url_summary(database: &Database) -> String {
    format!("updated database {}: it now connects to {}", database.name, database.url)
}

/// Prints the result of a change of credentials, then the deployment it queued (followed
/// to its end with `wait`).
pub(crate) async fn follow_redeployment(
    context: &mut Context<'_>,
    changed: Fetched<Database>,
    summary: &str,
    wait: bool,
    started: Instant,
) -> Result<(), CliError> {
    let Some(id) = changed.value.queued_deployment.clone() else {
        if context.console.is_json() {
            context.console.print_json(&changed.raw)?;
        } else {
            context.console.println(summary)?;
            context.console.println(
                "no application of the environment to redeploy: applications created later receive the new values",
            )?;
        }
        return Ok(());
    };
    if context.console.is_json() {
        if !wait {
            context.console.print_json(&changed.raw)?;
            return Ok(());
        }
    } else {
        context.console.println(summary)?;
        context.console.println(&format!(
            "the environment's applications are being redeployed with the new values (deployment {id})"
        ))?;
    }
    if !wait {
        context
            .console
            .println(&format!("follow it with `berth deployment logs {id} --follow`"))?;
        return Ok(());
    }
    let deployment: Fetched<Deployment> = context.client.get(&paths::deployment(&id)?).await?;
    super::deploy::follow(context, deployment, true, started).await
}

#[cfg(test)]
#[path = "database_credentials_tests.rs"]
mod tests;
