//! `berth project create|list|update|delete`.

use berth_api::{CreateProject, Project, ProjectSettings, UpdateProject};

use super::delete::{delete, Deletion};
use super::{CliError, Context};
use crate::args::ProjectCommand;
use crate::client::Fetched;
use crate::output::{format_timestamp, Table};
use crate::paths;

pub(crate) async fn run(
    context: &mut Context<'_>,
    command: ProjectCommand,
) -> Result<(), CliError> {
    match command {
        ProjectCommand::Create(args) => {
            let body = CreateProject { name: args.name };
            let created: Fetched<Project> = context.client.post(&paths::projects(), &body).await?;
            if context.console.is_json() {
                context.console.print_json(&created.raw)?;
            } else {
                let name = &created.value.name;
                context.console.println(&format!("created project {name}"))?;
                context.console.println(&format!(
                    "next: berth environment create --project {name} production --mode production"
                ))?;
            }
        }
        ProjectCommand::List => {
            let projects: Fetched<Vec<Project>> = context.client.get(&paths::projects()).await?;
            if context.console.is_json() {
                context.console.print_json(&projects.raw)?;
            } else {
                context.console.print(&projects_table(&projects.value))?;
            }
        }
        ProjectCommand::Delete(args) => {
            let deletion = Deletion {
                kind: "project",
                question: format!("Delete project {:?} and everything in it?", args.name),
                path: paths::project(&args.name)?,
                query: None,
                on_accepted: None,
                confirmed: args.confirm.yes,
                list_command: "berth project list".into(),
                name: args.name,
            };
            delete(context, deletion).await?;
        }
        ProjectCommand::Update(args) => {
            let with_data =
                match (args.branch_environments_with_data, args.branch_environments_without_data) {
                    (true, _) => Some(true),
                    (false, true) => Some(false),
                    (false, false) => None,
                };
            let body = UpdateProject {
                poll_interval: args.poll_interval,
                branch_environments: args.branch_environments,
                branch_blueprint: args.branch_blueprint,
                branch_environments_with_data: with_data,
            };
            if body.poll_interval.is_none()
                && body.branch_environments.is_none()
                && body.branch_blueprint.is_none()
                && body.branch_environments_with_data.is_none()
            {
                return Err(CliError::failed(
                    "nothing to change",
                    Some("pass at least one option; see `berth project update --help`".into()),
                ));
            }
            let path = paths::project(&args.project)?;
            let updated: Fetched<ProjectSettings> = context.client.patch(&path, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&updated.raw)?;
            } else {
                context.console.print(&settings_text(&updated.value))?;
            }
        }
    }
    Ok(())
}

fn settings_text(settings: &ProjectSettings) -> String {
    let polling = match settings.poll_interval_secs {
        Some(seconds) => format!("every {seconds} s"),
        None => "off".to_owned(),
    };
    let branches = match (&settings.branch_environments, &settings.branch_blueprint) {
        (Some(glob), Some(blueprint)) => format!(
            "branches matching {glob} get a clone of {blueprint}{}",
            if settings.branch_environments_with_data { " with its data" } else { "" }
        ),
        _ => "off".to_owned(),
    };
    format!(
        "updated project {}\npolling: {polling}\nbranch environments: {branches}\n",
        settings.project
    )
}

fn projects_table(projects: &[Project]) -> String {
    if projects.is_empty() {
        return "no projects yet: create one with `berth project create NAME`\n".into();
    }
    let mut table = Table::new(&["NAME", "STATUS", "CREATED"]);
    for project in projects {
        table.row(vec![
            project.name.clone(),
            project.status.clone(),
            format_timestamp(&project.created_at),
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
    async fn create_then_list_as_table_and_json() {
        let shop = json!({"id": "p1", "name": "shop", "status": "active", "created_at": "2024-05-01T10:00:00Z", "new_field": 1});
        let blog = json!({"id": "p2", "name": "blog-site", "status": "deleting", "created_at": "2024-05-02T11:30:00Z"});
        let stub = StubServer::start(vec![
            ("POST /api/v1/projects", vec![Reply::value(201, &shop)]),
            ("GET /api/v1/projects", vec![Reply::value(200, &json!([shop, blog]))]),
        ])
        .await;
        let created =
            run_cli(&stub.url, &["project", "create", "shop"], "", Terminals::default()).await;
        expect![[r#"
            created project shop
            next: berth environment create --project shop production --mode production
        "#]]
        .assert_eq(&created.transcript());
        assert_eq!(stub.bodies("POST"), [r#"{"name":"shop"}"#]);

        let listed = run_cli(&stub.url, &["project", "list"], "", Terminals::default()).await;
        expect![[r#"
            NAME        STATUS     CREATED
            shop        active     2024-05-01 10:00:00
            blog-site   deleting   2024-05-02 11:30:00
        "#]]
        .assert_eq(&listed.transcript());

        let json =
            run_cli(&stub.url, &["project", "list", "-o", "json"], "", Terminals::default()).await;
        let printed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(printed[0]["new_field"], 1, "the API's JSON is printed unchanged");
    }

    #[tokio::test]
    async fn update_sends_only_the_given_settings() {
        let settings = json!({"project": "shop", "poll_interval_secs": 60,
            "branch_environments": "feature/*", "branch_blueprint": "staging",
            "branch_environments_with_data": true});
        let stub = StubServer::start(vec![(
            "PATCH /api/v1/projects/shop",
            vec![Reply::value(200, &settings)],
        )])
        .await;
        let args = [
            "project",
            "update",
            "--project",
            "shop",
            "--poll-interval",
            "60s",
            "--branch-environments",
            "feature/*",
            "--branch-blueprint",
            "staging",
            "--branch-environments-with-data",
        ];
        let updated = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            updated project shop
            polling: every 60 s
            branch environments: branches matching feature/* get a clone of staging with its data
        "#]]
        .assert_eq(&updated.transcript());
        assert_eq!(
            stub.bodies("PATCH"),
            [
                r#"{"poll_interval":"60s","branch_environments":"feature/*","branch_blueprint":"staging","branch_environments_with_data":true}"#
            ]
        );
        let nothing = run_cli(
            &stub.url,
            &["project", "update", "--project", "shop"],
            "",
            Terminals::default(),
        )
        .await;
        assert!(nothing.transcript().contains("nothing to change"), "{}", nothing.transcript());
    }

    #[tokio::test]
    async fn an_empty_list_says_what_to_do() {
        let stub =
            StubServer::start(vec![("GET /api/v1/projects", vec![Reply::json(200, "[]")])]).await;
        let listed = run_cli(&stub.url, &["project", "list"], "", Terminals::default()).await;
        expect![[r#"
            no projects yet: create one with `berth project create NAME`
        "#]]
        .assert_eq(&listed.transcript());
    }

    #[tokio::test]
    async fn the_servers_validation_message_is_shown() {
        let stub = StubServer::start(vec![(
            "POST /api/v1/projects",
            vec![Reply::json(
                422,
                r#"{"error":{"code":"invalid_input","message":"project name \"Shop\" is invalid: use 1 to 63 lower-case letters"}}"#,
            )],
        )])
        .await;
        let outcome =
            run_cli(&stub.url, &["project", "create", "Shop"], "", Terminals::default()).await;
        expect![[r#"
            --- stderr
            error: project name "Shop" is invalid: use 1 to 63 lower-case letters
            --- failed
        "#]]
        .assert_eq(&outcome.transcript());
    }

    #[tokio::test]
    async fn a_refused_token_gets_a_hint() {
        let stub = StubServer::start(vec![(
            "GET /api/v1/projects",
            vec![Reply::json(
                401,
                r#"{"error":{"code":"unauthorized","message":"the API token is not valid"}}"#,
            )],
        )])
        .await;
        let outcome = run_cli(&stub.url, &["project", "list"], "", Terminals::default()).await;
        expect![[r#"
            --- stderr
            error: the API token is not valid
            hint: the token came from --token / BERTH_TOKEN; run `berth login --url URL --token TOKEN` with a valid one, or pass --token
            --- failed
        "#]]
        .assert_eq(&outcome.transcript());
    }
}
