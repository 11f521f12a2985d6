//! `berth status --project P --environment E`: one row per application (status, running
//! and expected instances, URL, commit, restarts summed over its instances, why it is not
//! running) and the last deployment.

use berth_api::EnvironmentStatus;

use super::{CliError, Context};
use crate::args::EnvironmentArgs;
use crate::client::Fetched;
use crate::output::{format_timestamp, or_dash, short_commit, Table};
use crate::paths;

pub(crate) async fn run(context: &mut Context<'_>, args: EnvironmentArgs) -> Result<(), CliError> {
    let path = paths::environment_status(&args.project, &args.environment)?;
    let status: Fetched<EnvironmentStatus> = context.client.get(&path).await?;
    if context.console.is_json() {
        context.console.print_json(&status.raw)?;
    } else {
        context.console.print(&status_text(&status.value))?;
    }
    Ok(())
}

fn status_text(status: &EnvironmentStatus) -> String {
    let (project, environment) = (&status.project, &status.environment);
    let mut text = if status.applications.is_empty() {
        format!(
            "no applications in environment {environment} of project {project} yet: create one with \
             `berth application create --project {project} --environment {environment} NAME --git URL --port PORT`\n"
        )
    } else {
        let mut table =
            Table::new(&["NAME", "STATUS", "INSTANCES", "URL", "COMMIT", "RESTARTS", "MESSAGE"]);
        for application in &status.applications {
            table.row(vec![
                application.name.clone(),
                application.status.clone(),
                format!("{}/{}", application.instances_running, application.instances),
                or_dash(application.url.as_ref()),
                application.commit.as_deref().map(short_commit).unwrap_or_else(|| "-".into()),
                application.restart_count.to_string(),
                application.message.clone().unwrap_or_default(),
            ]);
        }
        table.render()
    };
    if let Some(last) = &status.last_deployment {
        text.push_str(&format!(
            "\nlast deployment: {} {} (created {}, {})\n",
            last.id,
            last.status,
            format_timestamp(&last.created_at),
            last.trigger
        ));
        if let Some(failure) = &last.failure {
            let at = match &failure.application {
                Some(application) => format!("{} {application}", failure.step),
                None => failure.step.clone(),
            };
            text.push_str(&format!("failed at {at}: {}\n", failure.message));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use serde_json::json;

    use crate::commands::deploy::tests::failed_deployment_json;
    use crate::commands::testing::run_cli;
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    #[tokio::test]
    async fn status_table() {
        let status = json!({"project": "shop", "environment": "prod", "last_deployment": failed_deployment_json(),
            "applications": [
                {"name": "web", "status": "running", "url": "http://web.prod.shop.localhost:8000",
                 "commit": "0123456789abcdef", "deployment": "d1", "instances": 2, "instances_running": 2, "restart_count": 0, "message": null},
                {"name": "api", "status": "degraded", "url": "http://api.prod.shop.localhost:8000",
                 "commit": "0123456789abcdef", "deployment": "d1", "instances": 3, "instances_running": 2,
                 "restart_count": 4, "message": "instance 1 failed its health check: HTTP 503"},
                {"name": "hog", "status": "crashed", "url": null, "commit": null, "deployment": "d1",
                 "instances": 1, "instances_running": 0,
                 "restart_count": 3, "message": "killed: out of memory (limit 64 MiB)"}]});
        let stub = StubServer::start(vec![(
            "GET /api/v1/projects/shop/environments/prod/status",
            vec![Reply::value(200, &status)],
        )])
        .await;
        let outcome =
            run_cli(&stub.url, &["status", "-p", "shop", "-e", "prod"], "", Terminals::default())
                .await;
        expect![[r#"
            NAME   STATUS     INSTANCES   URL                                   COMMIT    RESTARTS   MESSAGE
            web    running    2/2         http://web.prod.shop.localhost:8000   0123456   0
            api    degraded   2/3         http://api.prod.shop.localhost:8000   0123456   4          instance 1 failed its health check: HTTP 503
            hog    crashed    0/1         -                                     -         3          killed: out of memory (limit 64 MiB)

            last deployment: d2 failed (created 2024-05-01 10:00:00, user:admin)
            failed at build web: the Dockerfile's RUN step exited with code 127
        "#]]
        .assert_eq(&outcome.transcript());
    }
}
