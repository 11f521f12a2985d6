//! Deleting a project, environment or application: confirmation, the DELETE request, and
//! waiting until the server has removed everything.
//!
//! Expected flow: without `--yes` the user confirms on a terminal (no terminal: refused);
//! `DELETE` answers 202 with the resource in status `deleting`; the CLI polls `GET` until
//! it answers 404, showing progress, then prints `deleted <kind> <name>`.
//!
//! Guarantees: nothing is sent before confirmation. Caveats: when the deadline passes, the
//! server keeps deleting in the background; the CLI says so and exits 1. A DELETE with a
//! query asks the server for work before it accepts (a database's final backup), so its
//! answer may take as long as that work.

use std::time::{Duration, Instant};

use berth_api::Project;

use super::{CliError, Context};
use crate::client::LONG_REQUEST_TIMEOUT;
use crate::progress::{DeleteProgress, ProgressStyle};

const POLL_INTERVAL: Duration = Duration::from_millis(300);
const DEADLINE: Duration = Duration::from_secs(600);

/// One resource to delete.
pub(crate) struct Deletion {
    /// `project`, `environment`, `application`.
    pub(crate) kind: &'static str,
    pub(crate) name: String,
    /// The question, e.g. `Delete project "shop" and everything in it?`.
    pub(crate) question: String,
    /// The resource's URL path (DELETE, then GET until 404).
    pub(crate) path: String,
    /// Query of the DELETE request only, e.g. `final_backup=true`.
    pub(crate) query: Option<&'static str>,
    /// Text to print (table output) once the server accepted the deletion, from its
    /// answer, e.g. where a final backup is kept.
    pub(crate) on_accepted: Option<fn(&serde_json::Value) -> Option<String>>,
    pub(crate) confirmed: bool,
    /// The command to list what is left, for the hint when the deadline passes.
    pub(crate) list_command: String,
}

pub(crate) async fn delete(context: &mut Context<'_>, deletion: Deletion) -> Result<(), CliError> {
    if !deletion.confirmed && !confirm(context, &deletion.question)? {
        return Err(CliError::failed(
            format!("cancelled: {} {:?} was not deleted", deletion.kind, deletion.name),
            None,
        ));
    }
    let accepted = match deletion.query {
        Some(query) => {
            let path = format!("{}?{query}", deletion.path);
            context.client.delete_within(&path, LONG_REQUEST_TIMEOUT).await?
        }
        None => context.client.delete(&deletion.path).await?,
    };
    if let Some(text) = deletion.on_accepted.and_then(|describe| describe(&accepted)) {
        if !context.console.is_json() {
            context.console.print(&text)?;
        }
    }
    let style = if context.console.stderr_is_terminal() {
        ProgressStyle::UpdatingLine
    } else {
        ProgressStyle::LinePerChange
    };
    let what = format!("{} {:?}", deletion.kind, deletion.name);
    let mut progress = DeleteProgress::new(style, what);
    let started = Instant::now();
    loop {
        // Every resource has the `status` field; `Project` is enough to read it.
        match context.client.get::<serde_json::Value>(&deletion.path).await {
            Err(error) if error.is_not_found() => break,
            Err(error) => {
                context.console.eprint(progress.finish())?;
                return Err(error.into());
            }
            Ok(resource) => {
                let status = serde_json::from_value::<Project>(resource)
                    .map(|r| r.status)
                    .unwrap_or_else(|_| "deleting".to_owned());
                if status != "deleting" {
                    context.console.eprint(progress.finish())?;
                    return Err(CliError::failed(
                        format!(
                            "the server stopped deleting {} {:?}: its status is {status:?}",
                            deletion.kind, deletion.name
                        ),
                        Some("look at the server's log, then try again".into()),
                    ));
                }
            }
        }
        if started.elapsed() > DEADLINE {
            context.console.eprint(progress.finish())?;
            return Err(CliError::failed(
                format!(
                    "{} {:?} is still being deleted after {} minutes",
                    deletion.kind,
                    deletion.name,
                    DEADLINE.as_secs() / 60
                ),
                Some(format!(
                    "the server keeps deleting in the background; check with `{}`",
                    deletion.list_command
                )),
            ));
        }
        context.console.eprint(&progress.update(started.elapsed()))?;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    context.console.eprint(progress.finish())?;
    if context.console.is_json() {
        context.console.print_json(&accepted)?;
    } else {
        context.console.println(&format!("deleted {} {}", deletion.kind, deletion.name))?;
    }
    Ok(())
}

/// Asks `question [y/N]` on a terminal; without one, refuses.
fn confirm(context: &mut Context<'_>, question: &str) -> Result<bool, CliError> {
    if !context.console.stdin_is_terminal() {
        return Err(super::unconfirmed("delete"));
    }
    Ok(super::ask(context.console, question)?)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;
    use serde_json::json;

    use crate::commands::testing::run_cli;
    use crate::output::Terminals;
    use crate::test_server::{Reply, StubServer};

    fn project(status: &str) -> serde_json::Value {
        json!({"id": "p1", "name": "shop", "status": status, "created_at": "2024-05-01T10:00:00Z"})
    }

    #[tokio::test]
    async fn delete_waits_until_the_resource_is_gone() {
        let stub = StubServer::start(vec![
            ("DELETE /api/v1/projects/shop", vec![Reply::value(202, &project("deleting"))]),
            (
                "GET /api/v1/projects/shop",
                vec![
                    Reply::value(200, &project("deleting")),
                    Reply::value(200, &project("deleting")),
                    Reply::not_found("project \"shop\" does not exist"),
                ],
            ),
        ])
        .await;
        let outcome =
            run_cli(&stub.url, &["project", "delete", "shop", "--yes"], "", Terminals::default())
                .await;
        expect![[r#"
            deleted project shop
            --- stderr
            deleting project "shop"...
        "#]]
        .assert_eq(&outcome.transcript());
        expect![[r#"
            DELETE /api/v1/projects/shop
            GET /api/v1/projects/shop (x3)
        "#]]
        .assert_eq(&stub.request_lines());
    }

    #[tokio::test]
    async fn without_a_terminal_and_without_yes_nothing_is_deleted() {
        let stub = StubServer::start(vec![]).await;
        let outcome =
            run_cli(&stub.url, &["project", "delete", "shop"], "y\n", Terminals::default()).await;
        expect![[r#"
            --- stderr
            error: refusing to delete without confirmation: pass --yes
            hint: standard input is not a terminal, so there is no one to ask
            --- failed
        "#]]
        .assert_eq(&outcome.transcript());
        assert_eq!(stub.request_lines(), "");
    }

    #[tokio::test]
    async fn on_a_terminal_the_user_is_asked() {
        let stub = StubServer::start(vec![
            ("DELETE /api/v1/projects/shop/environments/prod", vec![Reply::value(202, &json!({}))]),
            ("GET /api/v1/projects/shop/environments/prod", vec![Reply::not_found("gone")]),
        ])
        .await;
        let terminal = Terminals { stdin: true, stderr: false };
        let declined =
            run_cli(&stub.url, &["environment", "delete", "-p", "shop", "prod"], "n\n", terminal)
                .await;
        expect![[r#"
            --- stderr
            Delete environment "prod" of project "shop" and everything in it? [y/N] error: cancelled: environment "prod" was not deleted
            --- failed
        "#]]
        .assert_eq(&declined.transcript());
        assert_eq!(stub.request_lines(), "");

        let accepted =
            run_cli(&stub.url, &["environment", "delete", "-p", "shop", "prod"], "y\n", terminal)
                .await;
        assert!(accepted.success, "{}", accepted.transcript());
        assert_eq!(accepted.stdout, "deleted environment prod\n");
    }

    #[tokio::test]
    async fn a_deletion_the_server_gives_up_is_reported() {
        let stub = StubServer::start(vec![
            ("DELETE /api/v1/projects/shop", vec![Reply::value(202, &project("deleting"))]),
            ("GET /api/v1/projects/shop", vec![Reply::value(200, &project("active"))]),
        ])
        .await;
        let outcome =
            run_cli(&stub.url, &["project", "delete", "shop", "-y"], "", Terminals::default())
                .await;
        expect![[r#"
            --- stderr
            error: the server stopped deleting project "shop": its status is "active"
            hint: look at the server's log, then try again
            --- failed
        "#]]
        .assert_eq(&outcome.transcript());
    }
}
