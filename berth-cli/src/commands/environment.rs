//! `berth environment create|list|delete --project P`.

use berth_api::{CreateEnvironment, Environment};

use super::delete::{delete, Deletion};
use super::{CliError, Context};
use crate::args::EnvironmentCommand;
use crate::client::Fetched;
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
                query: None,
                on_accepted: None,
                confirmed: args.confirm.yes,
                list_command: format!("berth environment list --project {project}"),
                name: args.name,
            };
            delete(context, deletion).await?;
        }
    }
    Ok(())
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
