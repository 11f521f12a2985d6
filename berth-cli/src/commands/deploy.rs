//! `berth deploy --project P --environment E [--application A] [--wait]`, and the waiting
//! that `berth rollback` shares with it ([`follow`]).
//!
//! Expected flow: POST a deployment (202) and print its id. With `--wait`, poll
//! `GET /deployments/{id}` every 250 ms, showing progress on stderr, until the deployment
//! ends; on success print the URLs of what was deployed (from the environment's status);
//! on failure exit 1 with the failing step, the application, the reason and the last lines
//! of that step's log.
//!
//! Caveats: the deployment runs on the server; interrupting the CLI or losing the
//! connection does not stop it (the error says how to look at it again;
//! `berth deployment cancel ID` stops it).

use std::time::{Duration, Instant};

use berth_api::{CreateDeployment, Deployment, DeploymentPlan, EnvironmentStatus, LogLine};

use super::logs::log_line_text;
use super::{CliError, Context};
use crate::args::DeployArgs;
use crate::client::Fetched;
use crate::output::{elapsed_ms, format_duration_ms, Table};
use crate::paths;
use crate::progress::{DeployProgress, ProgressStyle};

const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Every server-side step has its own deadline; this only guards against a server that
/// never finishes a deployment.
const WAIT_DEADLINE: Duration = Duration::from_secs(2 * 60 * 60);
const FAILURE_LOG_LINES: usize = 20;

pub(crate) async fn run(context: &mut Context<'_>, args: DeployArgs) -> Result<(), CliError> {
    let (project, environment) = (&args.environment.project, &args.environment.environment);
    if args.dry_run {
        let path = paths::deployment_plan(project, environment, args.application.as_deref())?;
        let plan: Fetched<DeploymentPlan> = context.client.get(&path).await?;
        if context.console.is_json() {
            context.console.print_json(&plan.raw)?;
        } else {
            context.console.print(&plan_table(&plan.value))?;
            context.console.println("dry run: nothing was deployed")?;
        }
        return Ok(());
    }
    let body = CreateDeployment { application: args.application.clone() };
    let started = Instant::now();
    let path = paths::environment_deployments(project, environment)?;
    let created: Fetched<Deployment> = context.client.post(&path, &body).await?;
    follow(context, created, args.wait, started).await
}

/// The dry-run plan as a table: one row per service, waves in order.
pub(crate) fn plan_table(plan: &DeploymentPlan) -> String {
    let mut table = Table::new(&["WAVE", "SERVICE", "KIND", "ACTION", "DETAIL"]);
    for wave in &plan.waves {
        for service in &wave.services {
            table.row(vec![
                wave.wave.to_string(),
                service.name.clone(),
                service.kind.clone(),
                service.action.clone(),
                service.detail.clone(),
            ]);
        }
    }
    table.render()
}

/// What `deploy` and `rollback` do with the deployment they just queued: print its id, or
/// (`wait`) show its progress until it ends, then its URLs or why it failed.
pub(crate) async fn follow(
    context: &mut Context<'_>,
    created: Fetched<Deployment>,
    wait: bool,
    started: Instant,
) -> Result<(), CliError> {
    let id = created.value.id.clone();
    if !wait {
        if context.console.is_json() {
            context.console.print_json(&created.raw)?;
        } else {
            context.console.println(&format!("deployment {id} {}", created.value.status))?;
            context
                .console
                .println(&format!("follow it with `berth deployment logs {id} --follow`"))?;
        }
        return Ok(());
    }
    if !context.console.is_json() {
        context.console.println(&format!("deployment {id} {}", created.value.status))?;
    }
    let finished = wait_until_finished(context, &id, started).await?;
    if context.console.is_json() {
        context.console.print_json(&finished.raw)?;
    }
    let deployment = finished.value;
    if deployment.status == "succeeded" {
        if !context.console.is_json() {
            let took = elapsed_ms(
                deployment.started_at.as_deref().unwrap_or(&deployment.created_at),
                deployment.finished_at.as_deref(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap_or_else(|| u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            context
                .console
                .println(&format!("deployment {id} succeeded in {}", format_duration_ms(took)))?;
            print_urls(context, &deployment).await?;
        }
        return Ok(());
    }
    let logs = if deployment.status == "failed" {
        let logs_path = paths::deployment_logs(&id, false)?;
        Some(
            context.client.get::<Vec<LogLine>>(&logs_path).await.map_err(|error| error.to_string()),
        )
    } else {
        None
    };
    Err(failure_error(&deployment, logs))
}

async fn wait_until_finished(
    context: &mut Context<'_>,
    id: &str,
    started: Instant,
) -> Result<Fetched<Deployment>, CliError> {
    let style = if context.console.stderr_is_terminal() {
        ProgressStyle::UpdatingLine
    } else {
        ProgressStyle::LinePerChange
    };
    let mut progress = DeployProgress::new(style);
    let path = paths::deployment(id)?;
    let lost = |message: String| {
        CliError::failed(
            message,
            Some(format!("the deployment goes on without the CLI: check it with `berth deployment show {id}`")),
        )
    };
    loop {
        let polled = context.client.get::<Fetched<Deployment>>(&path).await;
        let deployment = match polled {
            Ok(deployment) => deployment,
            Err(error) => {
                context.console.eprint(progress.finish())?;
                return Err(lost(error.to_string()));
            }
        };
        context.console.eprint(&progress.update(&deployment.value, started.elapsed()))?;
        if is_finished(&deployment.value.status) {
            context.console.eprint(progress.finish())?;
            return Ok(deployment);
        }
        if started.elapsed() > WAIT_DEADLINE {
            context.console.eprint(progress.finish())?;
            return Err(lost(format!(
                "deployment {id} is still {} after {} minutes",
                deployment.value.status,
                WAIT_DEADLINE.as_secs() / 60
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

pub(crate) fn is_finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled" | "superseded")
}

/// `web   http://web.prod.shop.localhost:8000` for each deployed application.
async fn print_urls(context: &mut Context<'_>, deployment: &Deployment) -> Result<(), CliError> {
    let path = paths::environment_status(&deployment.project, &deployment.environment)?;
    let status = match context.client.get::<EnvironmentStatus>(&path).await {
        Ok(status) => status,
        Err(error) => {
            context.console.eprintln(&format!("(could not read the URLs: {error})"))?;
            return Ok(());
        }
    };
    let deployed: Vec<&str> = match &deployment.application {
        Some(application) => vec![application.as_str()],
        None => deployment.services.iter().map(|s| s.application.as_str()).collect(),
    };
    let mut table = crate::output::Table::new(&["APPLICATION", "URL"]);
    for application in &status.applications {
        if !deployed.is_empty() && !deployed.contains(&application.name.as_str()) {
            continue;
        }
        let url = application.url.clone().unwrap_or_else(|| "- (private or no port)".into());
        table.row(vec![application.name.clone(), url]);
    }
    context.console.print(&table.render())?;
    Ok(())
}

/// The error of a deployment that did not succeed: what failed, where, why, and (when
/// `logs` is given) the last lines of the log of the failing step, or what went wrong
/// fetching them.
pub(crate) fn failure_error(
    deployment: &Deployment,
    logs: Option<Result<Vec<LogLine>, String>>,
) -> CliError {
    let id = &deployment.id;
    let failed_step = deployment.steps.iter().rev().find(|step| step.status == "failed");
    let (step, application, reason) = match (&deployment.failure, failed_step) {
        (Some(failure), _) => {
            (Some(failure.step.clone()), failure.application.clone(), Some(failure.message.clone()))
        }
        (None, Some(step)) => {
            (Some(step.name.clone()), step.application.clone(), step.message.clone())
        }
        (None, None) => (None, None, None),
    };
    let message = match deployment.status.as_str() {
        "failed" => {
            let mut message = format!("deployment {id} failed");
            if let Some(step) = &step {
                message.push_str(&format!(" at step {step}"));
            }
            if let Some(application) = &application {
                message.push_str(&format!(" of application {application}"));
            }
            if let Some(reason) = &reason {
                message.push_str(&format!(": {}", crate::output::sanitize(reason, false)));
            }
            message
        }
        "cancelled" => format!("deployment {id} was cancelled"),
        "superseded" => format!("deployment {id} was superseded by a newer deployment"),
        other => format!("deployment {id} ended with status {other:?}"),
    };
    let mut details = String::new();
    if let Some(logs) = logs {
        match logs {
            Ok(logs) => {
                let lines = last_lines(&logs, application.as_deref(), step.as_deref());
                if lines.is_empty() {
                    details.push_str("(the deployment log is empty)\n");
                } else {
                    let of = match (&step, &application) {
                        (Some(step), Some(application)) => format!(" of {step} {application}"),
                        (Some(step), None) => format!(" of {step}"),
                        _ => String::new(),
                    };
                    details.push_str(&format!("last log lines{of}:\n"));
                    for line in lines {
                        details.push_str(&format!("  {}\n", log_line_text(line)));
                    }
                }
            }
            Err(error) => {
                details.push_str(&format!("(could not read the deployment log: {error})\n"))
            }
        }
    }
    let hint = match deployment.status.as_str() {
        "superseded" => format!(
            "see the newer one with `berth deployment list --project {} --environment {}`",
            deployment.project, deployment.environment
        ),
        _ => format!("read the whole log with `berth deployment logs {id}`"),
    };
    CliError::Failed { message, details, hint: Some(hint) }
}

/// The last lines of the failing step of the failing application; all of that
/// application's lines when its step logged nothing.
fn last_lines<'a>(
    logs: &'a [LogLine],
    application: Option<&str>,
    step: Option<&str>,
) -> Vec<&'a LogLine> {
    let of_application: Vec<&LogLine> = logs
        .iter()
        .filter(|line| application.is_none() || line.application.as_deref() == application)
        .collect();
    let of_step: Vec<&LogLine> = of_application
        .iter()
        .copied()
        .filter(|line| step.is_some() && line.step.as_deref() == step)
        .collect();
    let chosen = if of_step.is_empty() { of_application } else { of_step };
    let skip = chosen.len().saturating_sub(FAILURE_LOG_LINES);
    chosen.into_iter().skip(skip).collect()
}

#[cfg(test)]
#[path = "deploy_tests.rs"]
pub(crate) mod tests;
