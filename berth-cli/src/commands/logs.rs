//! `berth logs --project P --environment E --application A [--follow] [--tail N]`, and the
//! printing of log lines and log streams shared with `berth deployment logs`.
//!
//! With `--output json`, a list of lines is printed as the API's JSON array, and a stream
//! as one JSON object per line (NDJSON).

use berth_api::LogLine;

use super::{CliError, Context};
use crate::args::LogsArgs;
use crate::client::{ClientError, EventStream, Fetched};
use crate::output::{format_timestamp, sanitize};
use crate::paths;

pub(crate) async fn run(context: &mut Context<'_>, args: LogsArgs) -> Result<(), CliError> {
    let (project, environment) = (&args.environment.project, &args.environment.environment);
    let path =
        paths::application_logs(project, environment, &args.application, args.tail, args.follow)?;
    if !args.follow {
        let lines: Fetched<Vec<LogLine>> = context.client.get(&path).await?;
        return print_lines(context, &lines);
    }
    let mut stream = context.client.events(&path).await?;
    // Application streams have no `end` event: the server closes them when the container
    // stops (or is replaced by a new deployment) or when it shuts down.
    print_stream(context, &mut stream).await?;
    context.console.eprintln(
        "the log stream ended: the container stopped or was replaced, or the server closed it",
    )?;
    Ok(())
}

/// `2024-05-01 10:00:00 [build web] Step 1/4 : FROM busybox`.
pub(crate) fn log_line_text(line: &LogLine) -> String {
    let label: Vec<&str> =
        [line.step.as_deref(), line.application.as_deref()].into_iter().flatten().collect();
    let label = if label.is_empty() { String::new() } else { format!("[{}] ", label.join(" ")) };
    format!(
        "{} {}{}",
        format_timestamp(&line.timestamp),
        sanitize(&label, false),
        sanitize(&line.line, true)
    )
}

pub(crate) fn print_lines(
    context: &mut Context<'_>,
    lines: &Fetched<Vec<LogLine>>,
) -> Result<(), CliError> {
    if context.console.is_json() {
        context.console.print_json(&lines.raw)?;
    } else {
        for line in &lines.value {
            context.console.println(&log_line_text(line))?;
        }
    }
    Ok(())
}

/// Prints log events until an `end` event (its data is returned) or until the server
/// closes the stream (`None`).
pub(crate) async fn print_stream(
    context: &mut Context<'_>,
    stream: &mut EventStream,
) -> Result<Option<String>, CliError> {
    while let Some(event) = stream.next().await? {
        match event.event.as_deref() {
            None | Some("message") => {
                let line: Fetched<LogLine> =
                    serde_json::from_str(&event.data).map_err(|error| ClientError::Transport {
                        detail: format!("a log event is not a log line: {error}"),
                    })?;
                if context.console.is_json() {
                    context.console.print_json_line(&line.raw)?;
                } else {
                    context.console.println(&log_line_text(&line.value))?;
                }
            }
            Some("end") => return Ok(Some(event.data)),
            Some(_) => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use crate::commands::testing::run_cli;
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    const LOGS: &str = "/api/v1/projects/shop/environments/prod/applications/web/logs";

    #[tokio::test]
    async fn tail_and_follow() {
        let lines = r#"[{"timestamp":"2024-05-01T10:00:00Z","application":"web","step":null,"line":"listening on :3000"},
                        {"timestamp":"2024-05-01T10:00:01Z","application":"web","step":null,"line":"\u001b[31mGET /\u001b[0m\t200"}]"#;
        let events = "data: {\"timestamp\":\"2024-05-01T10:00:02Z\",\"application\":\"web\",\"step\":null,\"line\":\"GET /health\"}\n\n";
        let tail = format!("GET {LOGS}?tail=5");
        let follow = format!("GET {LOGS}?tail=100&follow=true");
        let stub = StubServer::start(vec![
            (tail.as_str(), vec![Reply::json(200, lines)]),
            (follow.as_str(), vec![Reply::events(events)]),
        ])
        .await;
        let args = ["logs", "-p", "shop", "-e", "prod", "-a", "web", "--tail", "5"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            2024-05-01 10:00:00 [web] listening on :3000
            2024-05-01 10:00:01 [web] GET /	200
        "#]]
        .assert_eq(&outcome.transcript());

        let args = ["logs", "-p", "shop", "-e", "prod", "-a", "web", "--follow"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            2024-05-01 10:00:02 [web] GET /health
            --- stderr
            the log stream ended: the container stopped or was replaced, or the server closed it
        "#]]
        .assert_eq(&outcome.transcript());

        let args = ["logs", "-p", "shop", "-e", "prod", "-a", "web", "--follow", "-o", "json"];
        let outcome = run_cli(&stub.url, &args, "", Terminals::default()).await;
        expect![[r#"
            {"application":"web","line":"GET /health","step":null,"timestamp":"2024-05-01T10:00:02Z"}
        "#]]
        .assert_eq(&outcome.stdout);
    }
}
