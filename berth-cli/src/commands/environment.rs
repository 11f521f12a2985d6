//! `berth environment create|list|delete|stop|start|redeploy|clone --project P`, and
//! `preview` (in `preview.rs`).
//!
//! `delete` asks for confirmation (or `--yes`; no terminal and no `--yes`: refused, nothing
//! sent) and waits until everything labelled for the environment is gone. `clone` is one
//! long request (with `--with-data` it copies every database and volume), then follows the
//! new environment's first deployment like `deploy --wait`.

use std::time::Instant;

use berth_api::{
    CloneEnvironmentRequest, ClonedEnvironment, CreateEnvironment, Deployment, Environment,
    EnvironmentActionResult,
};

use super::delete::{delete, Deletion};
use super::{CliError, Context};
use crate::args::{CloneEnvironmentArgs, EnvironmentCommand};
use crate::client::{Fetched, LONG_REQUEST_TIMEOUT};
use crate::output::{format_timestamp, Table};
use crate::paths;

pub(crate) async fn run(
    context: &mut Context<'_>,
    command: EnvironmentCommand,
) -> Result<(), CliError> {
    match command {
        EnvironmentCommand::Create(args) => {
            let project = args.project.project;
            let body = CreateEnvironment { name: args.name, mode: args.mode, branch: args.branch };
            let created: Fetched<Environment> =
                context.client.post(&paths::environments(&project)?, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&created.raw)?;
            } else {
                let environment = &created.value;
                context.console.println(&format!(
                    "created environment {} in project {project} ({}, branch {})",
                    environment.name, environment.mode, environment.branch
                ))?;
                context.console.println(&format!(
                    "next: berth application create --project {project} --environment {} NAME --git URL --port PORT",
                    environment.name
                ))?;
            }
        }
        EnvironmentCommand::List(args) => {
            let project = args.project;
            let environments: Fetched<Vec<Environment>> =
                context.client.get(&paths::environments(&project)?).await?;
            if context.console.is_json() {
                context.console.print_json(&environments.raw)?;
            } else {
                context.console.print(&environments_table(&project, &environments.value))?;
            }
        }
        EnvironmentCommand::Delete(args) => {
            let project = args.project.project;
            let deletion = Deletion {
                kind: "environment",
                question: format!(
                    "Delete environment {:?} of project {project:?} and everything in it?",
                    args.name
                ),
                path: paths::environment(&project, &args.name)?,
                query: args.final_backup.then_some("final_backup=true"),
                on_accepted: None,
                confirmed: args.confirm.yes,
                list_command: format!("berth environment list --project {project}"),
                name: args.name,
            };
            delete(context, deletion).await?;
        }
        EnvironmentCommand::Stop(args) => {
            let path = format!("{}/stop", paths::environment(&args.project.project, &args.name)?);
            action(context, &path).await?;
        }
        EnvironmentCommand::Start(args) => {
            let path = format!("{}/start", paths::environment(&args.project.project, &args.name)?);
            action(context, &path).await?;
        }
        EnvironmentCommand::Redeploy(args) => {
            let environment = &args.environment;
            let path = format!(
                "{}/redeploy",
                paths::environment(&environment.project.project, &environment.name)?
            );
            let started = Instant::now();
            let created: Fetched<Deployment> = context.client.post_empty(&path).await?;
            super::deploy::follow(context, created, args.wait, started).await?;
        }
        EnvironmentCommand::Clone(args) => clone(context, args).await?,
        EnvironmentCommand::Preview(command) => super::preview::run(context, command).await?,
    }
    Ok(())
}

/// `stop` and `start`: one request that returns once every container stopped or started.
async fn action(context: &mut Context<'_>, path: &str) -> Result<(), CliError> {
    let result: Fetched<EnvironmentActionResult> =
        context.client.post_within(path, None::<&()>, LONG_REQUEST_TIMEOUT).await?;
    if context.console.is_json() {
        context.console.print_json(&result.raw)?;
    } else {
        context.console.println(&result.value.message)?;
    }
    Ok(())
}

async fn clone(context: &mut Context<'_>, args: CloneEnvironmentArgs) -> Result<(), CliError> {
    let project = &args.project.project;
    let path = format!("{}/clone", paths::environment(project, &args.source)?);
    let body = CloneEnvironmentRequest {
        name: args.new.clone(),
        branch: args.branch.clone(),
        mode: args.mode.clone(),
        with_data: args.with_data,
        deploy: !args.no_deploy,
    };
    let started = Instant::now();
    if !context.console.is_json() {
        let data = if args.with_data {
            " with its data (every database and volume is copied; this can take a while)"
        } else {
            ""
        };
        context.console.eprint(&format!("cloning {} into {}{data}...\n", args.source, args.new))?;
    }
    let cloned: Fetched<ClonedEnvironment> =
        context.client.post_within(&path, Some(&body), LONG_REQUEST_TIMEOUT).await?;
    if context.console.is_json() && (args.no_wait || cloned.value.deployment.is_none()) {
        context.console.print_json(&cloned.raw)?;
        return Ok(());
    }
    if !context.console.is_json() {
        for step in &cloned.value.steps {
            context.console.println(&format!("  {step}"))?;
        }
        context.console.println(&format!(
            "cloned environment {} into {} ({}, branch {})",
            args.source,
            cloned.value.environment.name,
            cloned.value.environment.mode,
            cloned.value.environment.branch
        ))?;
    }
    match cloned.value.deployment {
        Some(deployment) if !args.no_wait => {
            let raw = serde_json::to_value(&deployment).unwrap_or_default();
            super::deploy::follow(context, Fetched { raw, value: deployment }, true, started).await
        }
        Some(deployment) => {
            context.console.println(&format!(
                "deployment {} queued; follow it with `berth deployment logs {} --follow`",
                deployment.id, deployment.id
            ))?;
            Ok(())
        }
        None => {
            context.console.println(&format!(
                "not deployed; deploy it with `berth deploy --project {project} --environment {}`",
                args.new
            ))?;
            Ok(())
        }
    }
}

fn environments_table(project: &str, environments: &[Environment]) -> String {
    if environments.is_empty() {
        return format!(
            "no environments in project {project} yet: create one with `berth environment create --project {project} NAME`\n"
        );
    }
    let mut table = Table::new(&["NAME", "MODE", "BRANCH", "STATUS", "CREATED"]);
    for environment in environments {
        table.row(vec![
            environment.name.clone(),
            environment.mode.clone(),
            environment.branch.clone(),
            environment.status.clone(),
            format_timestamp(&environment.created_at),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use serde_json::json;

    use crate::commands::testing::run_cli;
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    #[tokio::test]
    async fn create_sends_mode_and_branch_and_list_shows_them() {
        let prod = json!({"id": "e1", "project": "shop", "name": "prod", "mode": "production",
            "branch": "main", "status": "active", "created_at": "2024-05-01T10:00:00Z"});
        let stub = StubServer::start(vec![
            ("POST /api/v1/projects/shop/environments", vec![Reply::value(201, &prod)]),
            ("GET /api/v1/projects/shop/environments", vec![Reply::value(200, &json!([prod]))]),
            ("GET /api/v1/projects/empty/environments", vec![Reply::json(200, "[]")]),
        ])
        .await;
        let args = [
            "environment",
            "create",
            "-p",
            "shop",
            "prod",
            "--mode",
            "production",
            "--branch",
            "main",
        ];
        let created = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            created environment prod in project shop (production, branch main)
            next: berth application create --project shop --environment prod NAME --git URL --port PORT
        "#]]
        .assert_eq(&created.transcript());
        assert_eq!(stub.bodies("POST"), [r#"{"name":"prod","mode":"production","branch":"main"}"#]);

        let listed =
            run_cli(&stub.url, &["env", "list", "--project", "shop"], "", Terminals::default())
                .await;
        expect![[r#"
            NAME   MODE         BRANCH   STATUS   CREATED
            prod   production   main     active   2024-05-01 10:00:00
        "#]]
        .assert_eq(&listed.transcript());

        let empty =
            run_cli(&stub.url, &["env", "list", "--project", "empty"], "", Terminals::default())
                .await;
        expect![[r#"
            no environments in project empty yet: create one with `berth environment create --project empty NAME`
        "#]]
        .assert_eq(&empty.transcript());
    }
}
