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
use crate::output::{format_timestamp, Console, Table};
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
                on_accepted: Some(final_backups_text),
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

/// Awaits `request`, showing how long it has been running: an updating line on a
/// terminal, a line every 15 s otherwise (nothing with `--output json`).
async fn wait_showing_elapsed<T>(
    console: &mut Console,
    what: &str,
    request: impl std::future::Future<Output = Result<T, crate::client::ClientError>>,
) -> Result<T, CliError> {
    let terminal = console.stderr_is_terminal();
    let quiet = console.is_json();
    let started = Instant::now();
    let mut request = std::pin::pin!(request);
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.tick().await;
    loop {
        tokio::select! {
            result = &mut request => {
                if terminal && !quiet {
                    console.eprint(CLEAR_LINE)?;
                }
                return Ok(result?);
            }
            _ = ticks.tick() => {
                let seconds = started.elapsed().as_secs();
                if quiet {
                    continue;
                }
                if terminal {
                    console.eprint(&format!("{CLEAR_LINE}{what}... {seconds} s"))?;
                } else if seconds.is_multiple_of(15) {
                    console.eprint(&format!("{what}... {seconds} s\n"))?;
                }
            }
        }
    }
}

/// Erases the current terminal line and returns to its start.
const CLEAR_LINE: &str = "\r\u{1b}[2K";

/// The final backups a deletion took, one line each.
fn final_backups_text(answer: &serde_json::Value) -> Option<String> {
    let backups = answer["final_backups"].as_array().filter(|b| !b.is_empty())?;
    let lines: Vec<String> = backups
        .iter()
        .filter_map(|b| b.as_str())
        .map(|b| format!("final backup of {b}\n"))
        .collect();
    Some(lines.concat())
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
    let Context { client, console } = &mut *context;
    let request = client.post_within::<_, Fetched<ClonedEnvironment>>(
        &path,
        Some(&body),
        LONG_REQUEST_TIMEOUT,
    );
    let what = format!("cloning {} into {}", args.source, args.new);
    let cloned = wait_showing_elapsed(console, &what, request).await?;
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

    #[tokio::test]
    async fn stop_clone_and_preview_list_say_what_happened() {
        let copy = json!({"id": "e2", "project": "shop", "name": "copy", "mode": "staging",
            "branch": "main", "status": "active", "created_at": "2024-05-01T10:00:00Z"});
        let stopped = json!({"environment": copy, "containers": ["a", "b"],
            "message": "environment prod stopped (2 container(s) stopped); its data is kept"});
        let cloned = json!({"environment": copy, "deployment": null,
            "steps": ["created environment copy (branch main)", "database main: created with new credentials"]});
        let previews = json!({"project": "shop", "environment": "prod",
            "settings": {"with_data": false, "max_previews": 2, "expire_after_seconds": 172800, "allow_forks": false},
            "previews": [{"environment": "pr-7", "number": 7, "head_branch": "feature",
                "head_commit": "0123456789abcdef", "from_fork": false,
                "created_at": "2024-05-01T10:00:00Z", "idle_seconds": 42}],
            "refusals": [{"number": 9, "head_branch": "x", "reason": "the limit of 2 concurrent preview(s) of prod is reached",
                "created_at": "2024-05-01T11:00:00Z"}]});
        let stub = StubServer::start(vec![
            (
                "POST /api/v1/projects/shop/environments/prod/stop",
                vec![Reply::value(200, &stopped)],
            ),
            (
                "POST /api/v1/projects/shop/environments/prod/clone",
                vec![Reply::value(201, &cloned)],
            ),
            (
                "GET /api/v1/projects/shop/environments/prod/previews",
                vec![Reply::value(200, &previews)],
            ),
        ])
        .await;
        let stop =
            run_cli(&stub.url, &["env", "stop", "-p", "shop", "prod"], "", Terminals::default())
                .await;
        expect![[r#"
            environment prod stopped (2 container(s) stopped); its data is kept
        "#]]
        .assert_eq(&stop.transcript());
        let args =
            ["env", "clone", "-p", "shop", "prod", "copy", "--mode", "staging", "--no-deploy"];
        let clone = run_cli(&stub.url, &args, "", Terminals::default()).await;
        assert!(
            clone.transcript().contains("database main: created with new credentials"),
            "{}",
            clone.transcript()
        );
        assert!(clone
            .transcript()
            .contains("cloned environment prod into copy (staging, branch main)"));
        assert_eq!(
            stub.bodies("POST /api/v1/projects/shop/environments/prod/clone"),
            [r#"{"name":"copy","branch":null,"mode":"staging","with_data":false,"deploy":false}"#]
        );
        let list = run_cli(
            &stub.url,
            &["env", "preview", "list", "-p", "shop", "prod"],
            "",
            Terminals::default(),
        )
        .await;
        let text = list.transcript();
        for expected in
            ["max 2 preview(s)", "pr-7", "#7", "0123456789ab", "42 s", "#9", "limit of 2"]
        {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
    }
}
