//! `berth webhook show|rotate|deliveries --project P`: the URLs and secret to paste into
//! GitHub, GitLab or Gitea, rotating the secret, and the record of deliveries received.

use berth_api::{WebhookDelivery, WebhookSettings};

use super::{CliError, Context};
use crate::args::WebhookCommand;
use crate::client::Fetched;
use crate::output::{format_timestamp, Table};
use crate::paths;

pub(crate) async fn run(
    context: &mut Context<'_>,
    command: WebhookCommand,
) -> Result<(), CliError> {
    match command {
        WebhookCommand::Show(args) => {
            let path = format!("{}/webhook", paths::project(&args.project)?);
            let settings: Fetched<WebhookSettings> = context.client.get(&path).await?;
            print_settings(context, &settings)?;
        }
        WebhookCommand::Rotate(args) => {
            let path = format!("{}/webhook/rotate", paths::project(&args.project)?);
            let settings: Fetched<WebhookSettings> = context.client.post_empty(&path).await?;
            if !context.console.is_json() {
                context.console.println(
                    "rotated the webhook secret: update it in the Git host, deliveries signed with the old one are now refused",
                )?;
            }
            print_settings(context, &settings)?;
        }
        WebhookCommand::Deliveries(args) => {
            let path = format!(
                "{}/webhook/deliveries?limit={}",
                paths::project(&args.project)?,
                args.limit
            );
            let deliveries: Fetched<Vec<WebhookDelivery>> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&deliveries.raw)?;
            } else {
                context.console.print(&deliveries_table(&args.project, &deliveries.value))?;
            }
        }
    }
    Ok(())
}

fn print_settings(
    context: &mut Context<'_>,
    settings: &Fetched<WebhookSettings>,
) -> Result<(), CliError> {
    if context.console.is_json() {
        context.console.print_json(&settings.raw)?;
        return Ok(());
    }
    let text = settings_text(context.client.base_url(), &settings.value);
    context.console.print(&text)?;
    Ok(())
}

fn settings_text(base_url: &str, settings: &WebhookSettings) -> String {
    let mut table = Table::new(&["HOST", "PAYLOAD URL", "EVENTS"]);
    for endpoint in &settings.endpoints {
        table.row(vec![
            endpoint.provider.clone(),
            format!("{base_url}{}", endpoint.path),
            endpoint.events.clone(),
        ]);
    }
    format!(
        "{}\nsecret: {}\n(GitHub and Gitea: \"Secret\"; GitLab: \"Secret token\". Rotate it with `berth webhook rotate --project {}`.)\n",
        table.render(),
        settings.secret,
        settings.project
    )
}

fn deliveries_table(project: &str, deliveries: &[WebhookDelivery]) -> String {
    if deliveries.is_empty() {
        return format!(
            "no deliveries yet for project {project}: configure the Git host with `berth webhook show --project {project}`\n"
        );
    }
    let mut table = Table::new(&["RECEIVED", "HOST", "EVENT", "VERDICT", "REASON", "TRIGGERED"]);
    for delivery in deliveries {
        table.row(vec![
            format_timestamp(&delivery.received_at),
            delivery.provider.clone(),
            if delivery.event.is_empty() { "-".to_owned() } else { delivery.event.clone() },
            delivery.verdict.clone(),
            delivery.reason.clone(),
            if delivery.triggered.is_empty() { "-".to_owned() } else { delivery.triggered.clone() },
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

    #[test]
    fn show_prints_full_urls_and_the_secret() {
        let settings: berth_api::WebhookSettings = serde_json::from_value(json!({
            "project": "shop",
            "secret": "5ecre7",
            "endpoints": [
                {"provider": "github", "path": "/api/v1/webhooks/github?project=shop", "events": "push, pull_request"},
                {"provider": "gitlab", "path": "/api/v1/webhooks/gitlab?project=shop", "events": "Push events"}
            ]
        }))
        .unwrap();
        expect![[r#"
            HOST     PAYLOAD URL                                                     EVENTS
            github   http://berth.example:7080/api/v1/webhooks/github?project=shop   push, pull_request
            gitlab   http://berth.example:7080/api/v1/webhooks/gitlab?project=shop   Push events

            secret: 5ecre7
            (GitHub and Gitea: "Secret"; GitLab: "Secret token". Rotate it with `berth webhook rotate --project shop`.)
        "#]].assert_eq(&super::settings_text("http://berth.example:7080", &settings));
    }

    #[tokio::test]
    async fn deliveries_as_a_table() {
        let deliveries = json!([
            {"id": 2, "project": "shop", "provider": "github", "event": "push", "verdict": "refused",
             "reason": "the x-hub-signature-256 header does not match the project's webhook secret",
             "triggered": "", "received_at": "2024-05-01T10:00:00Z"},
            {"id": 1, "project": "shop", "provider": "gitlab", "event": "Push Hook", "verdict": "accepted",
             "reason": "signature verified", "triggered": "deployment d1 of production (web)",
             "received_at": "2024-05-01T09:00:00Z"}
        ]);
        let stub = StubServer::start(vec![(
            "GET /api/v1/projects/shop/webhook/deliveries?limit=20",
            vec![Reply::value(200, &deliveries)],
        )])
        .await;
        let listed = run_cli(
            &stub.url,
            &["webhook", "deliveries", "--project", "shop"],
            "",
            Terminals::default(),
        )
        .await;
        expect![[r#"
            RECEIVED              HOST     EVENT       VERDICT    REASON                                                                       TRIGGERED
            2024-05-01 10:00:00   github   push        refused    the x-hub-signature-256 header does not match the project's webhook secret   -
            2024-05-01 09:00:00   gitlab   Push Hook   accepted   signature verified                                                           deployment d1 of production (web)
        "#]]
        .assert_eq(&listed.transcript());
    }
}
