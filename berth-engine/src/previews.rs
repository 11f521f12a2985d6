//! Preview environments: a pull request opened against the branch of an environment with
//! previews enabled (the blueprint) gets `pr-<number>`, cloned from the blueprint
//! (optionally with its data) and following the pull request's head; new commits redeploy
//! it; closing or merging the pull request deletes it with everything it created; previews
//! without activity for longer than the blueprint's expiry are deleted by a background
//! task.
//!
//! Guarantees: at most `max_previews` previews per blueprint, and a pull request from a
//! fork gets none unless the blueprint allows forks (it would receive the blueprint's
//! secrets and data); every refusal is recorded with its reason, and so is a preview that
//! could not be created (its clone failed and was removed). Events are handled one at
//! a time, so an `opened` racing a `synchronize` cannot create two previews.

use std::sync::Arc;
use std::time::Duration;

use berth_domain::deployment::EnvironmentMode;
use berth_domain::git_events::{PullRequestAction, PullRequestEvent};
use berth_domain::source::RepositoryUrl;
use berth_domain::spec::ApplicationSource;
use berth_domain::{DeploymentId, ResourceName};
use berth_store::{EnvironmentRecord, Lifecycle, PreviewRecord, ProjectRecord};
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::environments::{CloneEnvironment, EnvironmentError};

/// One pull-request event at a time, across blueprints (they are rare and short).
static PREVIEW_EVENTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often the expiry task looks for previews without recent activity.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

/// What a pull-request event did.
#[derive(Debug, Clone)]
pub enum PreviewOutcome {
    /// A new preview environment, with its first deployment queued.
    Created { environment: EnvironmentRecord, deployment: Option<DeploymentId> },
    /// The existing preview got a new deployment of the pull request's head.
    Redeployed { environment: EnvironmentRecord, deployment: Option<DeploymentId> },
    /// The preview is being deleted with everything it created.
    Deleted { environment: EnvironmentRecord },
    /// No preview, for a reason recorded in `preview list` (limit, fork).
    Refused { blueprint: EnvironmentRecord, reason: String },
    /// The event concerns no preview (no blueprint follows the base branch, nothing to delete).
    Ignored { reason: String },
}

/// The name of pull request `number`'s preview environment.
pub fn preview_environment_name(number: u64) -> Result<ResourceName, EnvironmentError> {
    ResourceName::parse(&format!("pr-{number}"))
        .map_err(|e| EnvironmentError::Conflict(format!("pull request #{number}: {e}")))
}

/// A repository URL reduced to host and path, so the https, SSH and web URLs a Git host
/// sends compare equal to the one an application was created with.
pub(crate) fn normalize_repository_url(url: &str) -> String {
    let mut rest = url.trim().to_ascii_lowercase();
    if let Some((_, after)) = rest.split_once("://") {
        rest = after.to_owned();
    } else if let Some((host, path)) = rest.split_once(':') {
        // scp-like `git@host:owner/repo`.
        if !host.contains('/') {
            rest = format!("{host}/{path}");
        }
    }
    if let Some((userinfo, after)) = rest.split_once('@') {
        if !userinfo.contains('/') {
            rest = after.to_owned();
        }
    }
    let rest = rest.trim_end_matches('/');
    rest.strip_suffix(".git").unwrap_or(rest).trim_end_matches('/').to_owned()
}

impl Engine {
    /// Acts on a pull-request event for `project` (see the module doc).
    pub async fn handle_pull_request(
        &self,
        project: &ProjectRecord,
        event: &PullRequestEvent,
    ) -> Result<PreviewOutcome, EnvironmentError> {
        let _one_at_a_time = PREVIEW_EVENTS.lock().await;
        let blueprints = self.preview_blueprints(project, event).await?;
        // The preview of this pull request, if any; previews outlive `preview disable`, so
        // the settings are not consulted to find one.
        let mut existing = None;
        for blueprint in &blueprints {
            if let Some(preview) = self.store.preview_by_number(blueprint.id, event.number).await? {
                existing = self
                    .store
                    .environment(preview.environment_id)
                    .await?
                    .filter(|e| e.lifecycle == Lifecycle::Active)
                    .map(|environment| (preview, environment));
                if existing.is_some() {
                    break;
                }
            }
        }
        match (event.action, existing) {
            (PullRequestAction::Closed, Some((_, environment))) => {
                self.delete_environment(project, &environment, false).await?;
                tracing::info!(preview = %environment.name, "pull request closed: preview deleted");
                Ok(PreviewOutcome::Deleted { environment })
            }
            (PullRequestAction::Closed, None) => Ok(PreviewOutcome::Ignored {
                reason: format!("pull request #{} has no preview", event.number),
            }),
            (_, Some((_, environment))) => {
                self.store.touch_preview(environment.id, &event.head_commit).await?;
                let trigger =
                    format!("pull request #{} at {}", event.number, short(&event.head_commit));
                let deployment =
                    self.queue_environment_deployment(project, &environment, &trigger).await?;
                Ok(PreviewOutcome::Redeployed { environment, deployment: deployment.map(|d| d.id) })
            }
            (_, None) => {
                for blueprint in &blueprints {
                    if self.store.preview_settings(blueprint.id).await?.is_some() {
                        return self.create_preview(project, blueprint, event).await;
                    }
                }
                Ok(PreviewOutcome::Ignored {
                    reason: format!(
                        "no environment of project {} with previews enabled follows branch {} of this repository",
                        project.name, event.base_branch
                    ),
                })
            }
        }
    }

    /// The active environments of `project` that follow the event's base branch and deploy
    /// the event's repository (when they deploy any Git source): the possible blueprints.
    async fn preview_blueprints(
        &self,
        project: &ProjectRecord,
        event: &PullRequestEvent,
    ) -> Result<Vec<EnvironmentRecord>, EnvironmentError> {
        let event_urls: Vec<String> =
            event.repository_urls.iter().map(|u| normalize_repository_url(u)).collect();
        let mut blueprints = Vec::new();
        for environment in self.store.list_environments(project.id).await? {
            if environment.lifecycle != Lifecycle::Active
                || environment.branch != event.base_branch
                || environment.mode == EnvironmentMode::Preview
            {
                continue;
            }
            let repositories: Vec<String> = self
                .store
                .list_applications(environment.id)
                .await?
                .iter()
                .filter_map(|a| match &a.spec.source {
                    ApplicationSource::Git(git) => {
                        Some(normalize_repository_url(git.repository.as_str()))
                    }
                    ApplicationSource::Image { .. } => None,
                })
                .collect();
            let matches = repositories.is_empty()
                || event_urls.is_empty()
                || repositories.iter().any(|r| event_urls.contains(r));
            if matches {
                blueprints.push(environment);
            }
        }
        Ok(blueprints)
    }

    async fn create_preview(
        &self,
        project: &ProjectRecord,
        blueprint: &EnvironmentRecord,
        event: &PullRequestEvent,
    ) -> Result<PreviewOutcome, EnvironmentError> {
        let settings = self.store.preview_settings(blueprint.id).await?.ok_or_else(|| {
            EnvironmentError::Conflict(format!("previews are not enabled on {}", blueprint.name))
        })?;
        let refusal = if event.from_fork && !settings.allow_forks {
            Some(format!(
                "pull request #{} comes from a fork ({}); forks get no preview unless allowed with `berth environment preview enable --allow-forks`, since a preview receives the blueprint's secrets and data",
                event.number, event.head_repository_url
            ))
        } else {
            let active = self.store.list_previews(blueprint.id).await?.len();
            (active >= settings.max_previews as usize).then(|| {
                format!(
                    "the limit of {} concurrent preview(s) of {} is reached; close a pull request or raise --max-previews",
                    settings.max_previews, blueprint.name
                )
            })
        };
        if let Some(reason) = refusal {
            return self.refuse(blueprint, event, reason).await;
        }
        let name = preview_environment_name(event.number)?;
        if let Some(other) = self.store.environment_by_name(project.id, name.as_str()).await? {
            let reason = format!(
                "environment {} already exists ({}); the next commit pushed to the pull request creates its preview once the name is free",
                other.name,
                if other.lifecycle == Lifecycle::Deleting { "still being deleted" } else { "not a preview" },
            );
            return self.refuse(blueprint, event, reason).await;
        }
        let request = CloneEnvironment {
            name,
            branch: Some(event.head_branch.clone()),
            mode: Some(EnvironmentMode::Preview),
            with_data: settings.with_data,
            deploy: false,
        };
        let environment = match self.clone_environment(project, blueprint, request).await {
            Ok(environment) => environment,
            // Recorded like a refusal, so `preview list` says why the pull request has no
            // preview (e.g. the blueprint is stopped and previews copy its data).
            Err(error @ (EnvironmentError::Conflict(_) | EnvironmentError::CloneFailed(_))) => {
                let reason = format!("the preview could not be created: {error}");
                return self.refuse(blueprint, event, reason).await;
            }
            Err(error) => return Err(error),
        };
        let finished = async {
            self.follow_pull_request_head(&environment, event).await?;
            self.store
                .record_preview(&PreviewRecord {
                    environment_id: environment.id,
                    blueprint_id: blueprint.id,
                    number: event.number,
                    head_branch: event.head_branch.clone(),
                    head_commit: event.head_commit.clone(),
                    head_repository_url: event.head_repository_url.clone(),
                    from_fork: event.from_fork,
                    created_at: berth_store::now_rfc3339(),
                    last_activity_unix: berth_store::now_unix_seconds(),
                })
                .await?;
            let trigger =
                format!("pull request #{} at {}", event.number, short(&event.head_commit));
            self.queue_environment_deployment(project, &environment, &trigger).await
        }
        .await;
        match finished {
            Ok(deployment) => {
                tracing::info!(preview = %environment.name, "preview created");
                Ok(PreviewOutcome::Created { environment, deployment: deployment.map(|d| d.id) })
            }
            Err(error) => {
                self.delete_environment(project, &environment, false).await?;
                let reason = format!("the preview could not be created: {error}");
                self.refuse(blueprint, event, reason).await
            }
        }
    }

    /// Records that the pull request gets no preview, and why.
    async fn refuse(
        &self,
        blueprint: &EnvironmentRecord,
        event: &PullRequestEvent,
        reason: String,
    ) -> Result<PreviewOutcome, EnvironmentError> {
        self.store
            .record_preview_refusal(blueprint.id, event.number, event.head_branch.as_str(), &reason)
            .await?;
        tracing::info!(pull_request = event.number, %reason, "no preview");
        Ok(PreviewOutcome::Refused { blueprint: blueprint.clone(), reason })
    }

    /// Points the preview's applications built from the base repository at the pull
    /// request's head: they follow the environment's branch (the head branch), and for an
    /// allowed fork they are fetched from the fork, without the blueprint's Git credential.
    async fn follow_pull_request_head(
        &self,
        environment: &EnvironmentRecord,
        event: &PullRequestEvent,
    ) -> Result<(), EnvironmentError> {
        let base_urls: Vec<String> =
            event.repository_urls.iter().map(|u| normalize_repository_url(u)).collect();
        let fork_url = if event.from_fork {
            Some(RepositoryUrl::parse(&event.head_repository_url).map_err(|e| {
                EnvironmentError::Conflict(format!("the fork's repository URL is refused: {e}"))
            })?)
        } else {
            None
        };
        for application in self.store.list_applications(environment.id).await? {
            let mut spec = application.spec.clone();
            let ApplicationSource::Git(git) = &mut spec.source else { continue };
            let from_base = base_urls.is_empty()
                || base_urls.contains(&normalize_repository_url(git.repository.as_str()));
            if !from_base {
                continue;
            }
            git.branch = None;
            let credential = match &fork_url {
                Some(url) => {
                    git.repository = url.clone();
                    git.credential = berth_domain::spec::GitCredentialKind::None;
                    None
                }
                None => application.credential_ciphertext.clone(),
            };
            self.store.update_application(application.id, &spec, credential.as_deref()).await?;
        }
        Ok(())
    }

    /// Deletes previews without activity for longer than their blueprint's expiry.
    pub async fn expire_previews(&self) -> Result<usize, EnvironmentError> {
        let _one_at_a_time = PREVIEW_EVENTS.lock().await;
        let expired =
            self.store.expired_previews(self.organization, berth_store::now_unix_seconds()).await?;
        let mut deleted = 0;
        for preview in expired {
            let Some(environment) = self.store.environment(preview.environment_id).await? else {
                continue;
            };
            let Some(project) = self.store.project(environment.project_id).await? else {
                continue;
            };
            self.delete_environment(&project, &environment, false).await?;
            tracing::info!(preview = %environment.name, "preview expired without activity: deleted");
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The expiry task, started by `Engine::run`.
    pub(crate) async fn preview_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(EXPIRY_INTERVAL) => {}
            }
            if let Err(error) = self.expire_previews().await {
                tracing::warn!(%error, "preview expiry pass failed; retrying");
            }
        }
    }
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::normalize_repository_url;

    #[test]
    fn repository_urls_of_one_repository_compare_equal() {
        let expected = "github.com/acme/shop";
        for url in [
            "https://github.com/acme/shop.git",
            "https://github.com/Acme/shop",
            "git@github.com:acme/shop.git",
            "ssh://git@github.com/acme/shop.git",
            "https://token@github.com/acme/shop/",
        ] {
            assert_eq!(normalize_repository_url(url), expected, "{url}");
        }
        assert_eq!(
            normalize_repository_url("http://127.0.0.1:3000/repos/app.git"),
            "127.0.0.1:3000/repos/app"
        );
    }
}
