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

/// POST `/cancel`. A queued deployment is cancelled at once; a running one stops at its
/// current step (the server refuses once traffic has switched, and for a deployment that
/// already ended: its 409 message is the error).
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
            "deployment {} {status}: it stops before it switches traffic and the previous version keeps serving; \
             follow it with `berth deployment show {}`",
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
