//! `berth deployment list|show|logs|cancel`: the record of deployments, their steps and
//! logs, and stopping one.

use berth_api::{Deployment, LogLine};
use time::OffsetDateTime;

use super::deploy::{failure_error, is_finished};
use super::logs::{print_lines, print_stream};
use super::{CliError, Context};
use crate::args::DeploymentCommand;
use crate::client::Fetched;
use crate::output::{
    elapsed_ms, format_duration_ms, format_timestamp, or_dash, render_fields, Table,
};
use crate::paths;
use crate::progress::step_label;

pub(crate) async fn run(
    context: &mut Context<'_>,
    command: DeploymentCommand,
) -> Result<(), CliError> {
    match command {
        DeploymentCommand::List(args) => {
            let (project, environment) = (&args.environment.project, &args.environment.environment);
            let application = args.application.as_deref();
            let path = paths::deployment_history(project, environment, application)?;
            let deployments: Fetched<Vec<Deployment>> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&deployments.raw)?;
            } else if deployments.value.is_empty() {
                let (of, only) = match application {
                    Some(application) => (
                        format!(" of application {application}"),
                        format!(" --application {application}"),
                    ),
                    None => (String::new(), String::new()),
                };
                context.console.println(&format!(
                    "no deployments{of} in environment {environment} of project {project} yet: start one with `berth deploy --project {project} --environment {environment}{only}`"
                ))?;
            } else {
                let now = OffsetDateTime::now_utc();
                context.console.print(&deployments_table(&deployments.value, now))?;
            }
        }
        DeploymentCommand::Show(args) => {
            let deployment: Fetched<Deployment> =
                context.client.get(&paths::deployment(&args.id)?).await?;
            if context.console.is_json() {
                context.console.print_json(&deployment.raw)?;
            } else {
                let now = OffsetDateTime::now_utc();
                context.console.print(&deployment_details(&deployment.value, now))?;
            }
        }
        DeploymentCommand::Cancel(args) => cancel(context, &args.id).await?,
        DeploymentCommand::Logs(args) => {
            if !args.follow {
                let lines: Fetched<Vec<LogLine>> =
                    context.client.get(&paths::deployment_logs(&args.id, false)?).await?;
                return print_lines(context, &lines);
            }
            let mut stream =
                context.client.events(&paths::deployment_logs(&args.id, true)?).await?;
            let Some(end) = print_stream(context, &mut stream).await? else {
                return Err(CliError::failed(
                    "the server closed the log stream before the deployment ended",
                    Some(format!("check it with `berth deployment show {}`", args.id)),
                ));
            };
            let deployment: Deployment = serde_json::from_str(&end).map_err(|error| {
                CliError::failed(
                    format!("the final event of the log stream is not a deployment: {error}"),
                    None,
                )
            })?;
            if deployment.status != "succeeded" {
                // The log was just printed; only the verdict is missing.
                return Err(failure_error(&deployment, None));
            }
            if !context.console.is_json() {
                context.console.eprintln(&format!("deployment {} succeeded", deployment.id))?;
            }
        }
    }
    Ok(())
}

/// POST `/cancel`. A queued deployment is cancelled at once; a running one is asked to stop
/// and is usually still `running` in the answer (steps from `route` on cannot be cancelled,
/// so one that reaches them first still succeeds). The server refuses (409, its message is
/// the error) a deployment that already ended or already switched traffic.
async fn cancel(context: &mut Context<'_>, id: &str) -> Result<(), CliError> {
    let path = paths::deployment_cancel(id)?;
    if !context.console.is_json() {
        context.console.println(&format!("cancelling deployment {id}"))?;
    }
    let deployment: Fetched<Deployment> = context.client.post_empty(&path).await?;
    if context.console.is_json() {
        context.console.print_json(&deployment.raw)?;
        return Ok(());
    }
    let deployment = deployment.value;
    let status = &deployment.status;
    let text = if is_finished(status) {
        format!("deployment {} {status}", deployment.id)
    } else {
        format!(
            "deployment {} {status}: cancellation requested; it stops at its current step unless it \
             is already switching traffic, and the previous version keeps serving; check it with \
             `berth deployment show {}`",
            deployment.id, deployment.id
        )
    };
    context.console.println(&text)?;
    Ok(())
}

fn duration(deployment: &Deployment, now: OffsetDateTime) -> String {
    let Some(started) = &deployment.started_at else { return "-".into() };
    match elapsed_ms(started, deployment.finished_at.as_deref(), now) {
        Some(ms) if deployment.finished_at.is_some() => format_duration_ms(ms),
        Some(ms) => format!("{} so far", format_duration_ms(ms)),
        None => "-".into(),
    }
}

fn deployments_table(deployments: &[Deployment], now: OffsetDateTime) -> String {
    let mut table = Table::new(&["ID", "STATUS", "APPLICATION", "TRIGGER", "CREATED", "DURATION"]);
    for deployment in deployments {
        table.row(vec![
            deployment.id.clone(),
            deployment.status.clone(),
            deployment.application.clone().unwrap_or_else(|| "(all)".into()),
            deployment.trigger.clone(),
            format_timestamp(&deployment.created_at),
            duration(deployment, now),
        ]);
    }
    table.render()
}

fn deployment_details(deployment: &Deployment, now: OffsetDateTime) -> String {
    let mut fields = vec![
        ("id", deployment.id.clone()),
        ("project", deployment.project.clone()),
        ("environment", deployment.environment.clone()),
        ("application", deployment.application.clone().unwrap_or_else(|| "(all)".into())),
        ("status", deployment.status.clone()),
        ("trigger", deployment.trigger.clone()),
        ("created", format_timestamp(&deployment.created_at)),
        ("duration", duration(deployment, now)),
    ];
    if let Some(failure) = &deployment.failure {
        let at = match &failure.application {
            Some(application) => format!("{} {application}", failure.step),
            None => failure.step.clone(),
        };
        fields.push(("failed at", at));
        fields.push(("reason", failure.message.clone()));
    }
    for service in &deployment.services {
        let revision = match (&service.commit, &service.image) {
            (Some(commit), _) => format!("commit {}", crate::output::short_commit(commit)),
            (None, Some(image)) => format!("image {image}"),
            (None, None) => "-".into(),
        };
        fields.push(("deployed", format!("{} ({revision})", service.application)));
    }
    let mut text = render_fields(&fields);
    if !deployment.steps.is_empty() {
        let mut steps = Table::new(&["STEP", "STATUS", "DURATION", "MESSAGE"]);
        for step in &deployment.steps {
            steps.row(vec![
                step_label(step),
                step.status.clone(),
                step.duration_ms.map(format_duration_ms).unwrap_or_else(|| "-".into()),
                or_dash(step.message.as_ref()),
            ]);
        }
        text.push('\n');
        text.push_str(&steps.render());
    }
    text
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::commands::deploy::tests::{deployment_json, failed_deployment_json};
    use crate::commands::testing::run_cli;
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    const HISTORY: &str = "GET /api/v1/projects/shop/environments/prod/deployments";

    #[tokio::test]
    async fn list_of_one_application() {
        let mut rollback = deployment_json("succeeded");
        rollback["id"] = serde_json::json!("d5");
        rollback["application"] = serde_json::json!("web");
        rollback["trigger"] = serde_json::json!("user:admin (rollback to d1)");
        let web = format!("{HISTORY}?application=web");
        let api = format!("{HISTORY}?application=api");
        let stub = StubServer::start(vec![
            (
                web.as_str(),
                vec![Reply::value(200, &serde_json::json!([rollback, failed_deployment_json()]))],
            ),
            (api.as_str(), vec![Reply::value(200, &serde_json::json!([]))]),
            (HISTORY, vec![Reply::value(200, &serde_json::json!([]))]),
        ])
        .await;
        let args = ["deployment", "list", "-p", "shop", "-e", "prod", "--application", "web"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            ID   STATUS      APPLICATION   TRIGGER                       CREATED               DURATION
            d5   succeeded   web           user:admin (rollback to d1)   2024-05-01 10:00:00   12.5s
            d2   failed      web           user:admin                    2024-05-01 10:00:00   4.0s
        "#]]
        .assert_eq(&outcome.transcript());
        let args = ["deployment", "list", "-p", "shop", "-e", "prod", "-a", "api"];
        let none_of_api = run_cli(&stub.url, &args, "", Terminals::default()).await;
        let args = ["deployment", "list", "-p", "shop", "-e", "prod"];
        let none = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            no deployments of application api in environment prod of project shop yet: start one with `berth deploy --project shop --environment prod --application api`
            no deployments in environment prod of project shop yet: start one with `berth deploy --project shop --environment prod`
        "#]]
        .assert_eq(&(none_of_api.transcript() + &none.transcript()));
        expect![[r#"
            GET /api/v1/projects/shop/environments/prod/deployments?application=web
            GET /api/v1/projects/shop/environments/prod/deployments?application=api
            GET /api/v1/projects/shop/environments/prod/deployments
        "#]]
        .assert_eq(&stub.request_lines());
    }

    #[tokio::test]
    async fn cancel_queued_running_and_ended_deployments() {
        let mut queued = deployment_json("cancelled");
        queued["id"] = serde_json::json!("d7");
        let mut running = deployment_json("running");
        running["id"] = serde_json::json!("d8");
        let ended = serde_json::json!({"error": {"code": "conflict",
            "message": "deployment d1 already ended (succeeded); nothing to cancel"}});
        let switched = serde_json::json!({"error": {"code": "conflict",
            "message": "the deployment already switched traffic; roll back with `berth rollback --to` instead"}});
        let stub = StubServer::start(vec![
            ("POST /api/v1/deployments/d7/cancel", vec![Reply::value(202, &queued)]),
            ("POST /api/v1/deployments/d8/cancel", vec![Reply::value(202, &running)]),
            ("POST /api/v1/deployments/d1/cancel", vec![Reply::value(409, &ended)]),
            ("POST /api/v1/deployments/d9/cancel", vec![Reply::value(409, &switched)]),
        ])
        .await;
        let mut transcripts = String::new();
        for id in ["d7", "d8", "d1", "d9"] {
            let outcome =
                run_cli(&stub.url, &["deployment", "cancel", id], "", Terminals::default()).await;
            transcripts.push_str(&format!("# {id}\n{}", outcome.transcript()));
        }
        expect![[r#"
            # d7
            cancelling deployment d7
            deployment d7 cancelled
            # d8
            cancelling deployment d8
            deployment d8 running: cancellation requested; it stops at its current step unless it is already switching traffic, and the previous version keeps serving; check it with `berth deployment show d8`
            # d1
            cancelling deployment d1
            --- stderr
            error: deployment d1 already ended (succeeded); nothing to cancel
            --- failed
            # d9
            cancelling deployment d9
            --- stderr
            error: the deployment already switched traffic; roll back with `berth rollback --to` instead
            --- failed
        "#]]
        .assert_eq(&transcripts);
        assert_eq!(stub.bodies("POST /api/v1/deployments/d7"), [""], "no request body");

        let args = ["deployment", "cancel", "d7", "-o", "json"];
        let json = run_cli(&stub.url, &args, "", Terminals::default()).await;
        let printed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(printed["status"], "cancelled", "stdout is only the deployment's JSON");
    }

    #[test]
    fn list_and_details() {
        let now = OffsetDateTime::parse(
            "2024-05-01T10:01:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let ok: Deployment = serde_json::from_value(deployment_json("succeeded")).unwrap();
        let failed: Deployment = serde_json::from_value(failed_deployment_json()).unwrap();
        let mut running: Deployment = serde_json::from_value(deployment_json("running")).unwrap();
        running.id = "d3".into();
        running.finished_at = None;
        expect![[r#"
            ID   STATUS      APPLICATION   TRIGGER      CREATED               DURATION
            d3   running     (all)         user:admin   2024-05-01 10:00:00   59.5s so far
            d1   succeeded   (all)         user:admin   2024-05-01 10:00:00   12.5s
            d2   failed      web           user:admin   2024-05-01 10:00:00   4.0s
        "#]]
        .assert_eq(&deployments_table(&[running, ok, failed.clone()], now));
        expect![[r#"
            id:          d2
            project:     shop
            environment: prod
            application: web
            status:      failed
            trigger:     user:admin
            created:     2024-05-01 10:00:00
            duration:    4.0s
            failed at:   build web
            reason:      the Dockerfile's RUN step exited with code 127

            STEP        STATUS      DURATION   MESSAGE
            clone web   succeeded   800ms      -
            build web   failed      3.1s       exit code 127
        "#]]
        .assert_eq(&deployment_details(&failed, now));
    }
}
