//! `berth environment preview enable|disable|list --project P ENV`: preview environments of
//! pull requests, cloned from ENV (the blueprint). The previews themselves are created and
//! deleted by the server on pull-request webhooks; this command sets them up and shows them.

use berth_api::{EnablePreviews, PreviewList};

use super::{CliError, Context};
use crate::args::PreviewCommand;
use crate::client::Fetched;
use crate::output::{format_timestamp, Table};
use crate::paths;

pub(crate) async fn run(
    context: &mut Context<'_>,
    command: PreviewCommand,
) -> Result<(), CliError> {
    match command {
        PreviewCommand::Enable(args) => {
            let environment = &args.environment;
            let path = previews_path(&environment.project.project, &environment.name)?;
            let body = EnablePreviews {
                with_data: args.with_data,
                max_previews: args.max_previews,
                expire_after: args.expire_after.clone(),
                allow_forks: args.allow_forks,
            };
            let list: Fetched<PreviewList> = context.client.put(&path, &body).await?;
            if context.console.is_json() {
                context.console.print_json(&list.raw)?;
            } else {
                context.console.println(&format!(
                    "previews enabled on {}: each pull request opened against its branch gets an environment pr-<number> cloned from it",
                    environment.name
                ))?;
                context.console.print(&render(&list.value))?;
            }
        }
        PreviewCommand::Disable(args) => {
            let path = previews_path(&args.project.project, &args.name)?;
            let response = context.client.delete(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&response)?;
            } else {
                context.console.println(&format!(
                    "previews disabled on {}; existing previews stay until their pull requests close or they expire",
                    args.name
                ))?;
            }
        }
        PreviewCommand::List(args) => {
            let path = previews_path(&args.project.project, &args.name)?;
            let list: Fetched<PreviewList> = context.client.get(&path).await?;
            if context.console.is_json() {
                context.console.print_json(&list.raw)?;
            } else {
                context.console.print(&render(&list.value))?;
            }
        }
    }
    Ok(())
}

fn previews_path(project: &str, environment: &str) -> Result<String, CliError> {
    Ok(format!("{}/previews", paths::environment(project, environment)?))
}

fn render(list: &PreviewList) -> String {
    let mut text = String::new();
    match &list.settings {
        Some(settings) => text.push_str(&format!(
            "settings: max {} preview(s), expire after {} s without activity, with data: {}, forks: {}\n",
            settings.max_previews,
            settings.expire_after_seconds,
            if settings.with_data { "yes" } else { "no" },
            if settings.allow_forks { "allowed" } else { "refused" },
        )),
        None => text.push_str(&format!(
            "previews are disabled on {}; enable them with `berth environment preview enable --project {} {}`\n",
            list.environment, list.project, list.environment
        )),
    }
    if list.previews.is_empty() {
        text.push_str("no active previews\n");
    } else {
        let mut table = Table::new(&["ENVIRONMENT", "PR", "BRANCH", "COMMIT", "IDLE", "CREATED"]);
        for preview in &list.previews {
            table.row(vec![
                preview.environment.clone(),
                format!("#{}", preview.number),
                preview.head_branch.clone(),
                preview.head_commit.chars().take(12).collect(),
                format!("{} s", preview.idle_seconds),
                format_timestamp(&preview.created_at),
            ]);
        }
        text.push_str(&table.render());
    }
    if !list.refusals.is_empty() {
        text.push_str("refused pull requests:\n");
        let mut table = Table::new(&["PR", "BRANCH", "WHEN", "REASON"]);
        for refusal in &list.refusals {
            table.row(vec![
                format!("#{}", refusal.number),
                refusal.head_branch.clone(),
                format_timestamp(&refusal.created_at),
                refusal.reason.clone(),
            ]);
        }
        text.push_str(&table.render());
    }
    text
}
