//! Acting on Git events: a push deploys the applications that follow the pushed branch of
//! that repository with auto-deploy on (one deployment per environment), creates or
//! deletes branch environments, and pull-request events go to the previews
//! (`previews.rs`). Webhooks and the polling fallback both end up in
//! [`Engine::dispatch_git_event`], so they behave the same.
//!
//! Expected flow of a push: a deleted branch deletes the environments created for it; a
//! branch matching the project's branch-environment glob that no environment follows yet
//! gets one cloned from the blueprint and deployed; then every active environment's
//! applications are matched (normalised repository URL, effective branch, auto-deploy)
//! and those not already serving the pushed commit are deployed: the whole environment
//! when every application matched, else each matched application.
//!
//! Guarantees: dispatches run one at a time, so a webhook and a poll seeing the same
//! commit queue it once; a commit already served, or already queued or running for that
//! application, queues nothing.
//!
//! Caveats: the polling fallback sees moved and deleted branches it already knows, not
//! new branches (so branch environments need webhooks).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_domain::branch_environments::{branch_environment_name, BranchGlob};
use berth_domain::deployment::DeploymentStatus;
use berth_domain::git_events::{GitEvent, PushEvent};
use berth_domain::spec::{effective_branch, ApplicationSource, GitSource};
use berth_domain::webhook_payloads::{normalize_repository_url, repository_matches};
use berth_domain::{BranchName, DeploymentId, ProjectId, ResourceName};
use berth_store::{ApplicationRecord, EnvironmentRecord, Lifecycle, ProjectRecord, StoreError};
use tokio_util::sync::CancellationToken;

use crate::adapters::{LogSink, SourceError};
use crate::engine::{Engine, EngineError};
use crate::environments::{CloneEnvironment, EnvironmentError};
use crate::previews::PreviewOutcome;

/// One Git event at a time (webhooks and polls), so duplicates are seen as such.
static DISPATCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often the poller looks for projects whose interval has elapsed.
const POLL_TICK: Duration = Duration::from_secs(1);

/// What an event caused, for the delivery record and the webhook's answer.
#[derive(Debug, Clone, Default)]
pub struct DispatchReport {
    pub deployments: Vec<QueuedDeployment>,
    pub created_environments: Vec<ResourceName>,
    pub deleted_environments: Vec<ResourceName>,
    /// Why something was not done (already deployed, environment stopped...).
    pub notes: Vec<String>,
}

/// A deployment queued by an event.
#[derive(Debug, Clone)]
pub struct QueuedDeployment {
    pub environment: ResourceName,
    pub deployment: DeploymentId,
    /// Empty when it covers the whole environment.
    pub applications: Vec<ResourceName>,
}

impl DispatchReport {
    /// One line: what was triggered, or why nothing was.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for created in &self.created_environments {
            parts.push(format!("created environment {created}"));
        }
        for deleted in &self.deleted_environments {
            parts.push(format!("deleting environment {deleted}"));
        }
        for queued in &self.deployments {
            let what = if queued.applications.is_empty() {
                "all applications".to_owned()
            } else {
                queued.applications.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            };
            parts.push(format!(
                "deployment {} of {} ({what})",
                queued.deployment, queued.environment
            ));
        }
        if parts.is_empty() {
            parts.push(match self.notes.is_empty() {
                true => "nothing follows this branch of this repository".to_owned(),
                false => format!("nothing to do: {}", self.notes.join("; ")),
            });
        }
        parts.join("; ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
}

/// Where the poller's `ls-remote` lines go: nowhere but the debug log.
struct PollLog;

impl LogSink for PollLog {
    fn line(&self, line: &str) {
        tracing::debug!(target: "berth::poll", "{line}");
    }
}

/// A branch the poller watches, with an application whose credentials can read it.
struct PollTarget {
    application: ApplicationRecord,
    git: GitSource,
    environment_branch: BranchName,
    branch: BranchName,
}

impl Engine {
    /// Acts on one Git event for `project` (see the module doc). `via` names where it
    /// came from in deployment triggers (e.g. `github`, `poll`).
    pub async fn dispatch_git_event(
        &self,
        project: &ProjectRecord,
        event: &GitEvent,
        via: &str,
    ) -> Result<DispatchReport, DispatchError> {
        let _one_at_a_time = DISPATCH.lock().await;
        match event {
            GitEvent::Push(push) => self.dispatch_push(project, push, via).await,
            GitEvent::PullRequest(request) => {
                let outcome = self.handle_pull_request(project, request).await?;
                let mut report = DispatchReport::default();
                match outcome {
                    PreviewOutcome::Created { environment, deployment } => {
                        report.created_environments.push(environment.name.clone());
                        report.deployments.extend(deployment.map(|deployment| QueuedDeployment {
                            environment: environment.name,
                            deployment,
                            applications: Vec::new(),
                        }));
                    }
                    PreviewOutcome::Redeployed { environment, deployment } => {
                        report.deployments.extend(deployment.map(|deployment| QueuedDeployment {
                            environment: environment.name,
                            deployment,
                            applications: Vec::new(),
                        }));
                    }
                    PreviewOutcome::Deleted { environment } => {
                        report.deleted_environments.push(environment.name)
                    }
                    PreviewOutcome::Refused { blueprint, reason } => report
                        .notes
                        .push(format!("preview from {} refused: {reason}", blueprint.name)),
                    PreviewOutcome::Ignored { reason } => report.notes.push(reason),
                }
                Ok(report)
            }
        }
    }

    async fn dispatch_push(
        &self,
        project: &ProjectRecord,
        push: &PushEvent,
        via: &str,
    ) -> Result<DispatchReport, DispatchError> {
        let mut report = DispatchReport::default();
        if project.lifecycle != Lifecycle::Active {
            report.notes.push(format!("project {} is being deleted", project.name));
            return Ok(report);
        }
        if push.deleted {
            for id in self.store.branch_environments(project.id, &push.branch).await? {
                let Some(environment) = self.store.environment(id).await? else { continue };
                if environment.lifecycle != Lifecycle::Active
                    || !self.builds_from(&environment, &push.repository_urls).await?
                {
                    continue;
                }
                self.delete_environment(project, &environment, false).await?;
                report.deleted_environments.push(environment.name);
            }
            if report.deleted_environments.is_empty() {
                report.notes.push(format!("branch {} was deleted", push.branch));
            }
            return Ok(report);
        }
        let Some(head) = push.head_commit.as_deref() else {
            report.notes.push("the push names no commit".to_owned());
            return Ok(report);
        };
        let short: String = head.chars().take(7).collect();
        let environments: Vec<EnvironmentRecord> = self
            .store
            .list_environments(project.id)
            .await?
            .into_iter()
            .filter(|e| e.lifecycle == Lifecycle::Active)
            .collect();
        match self.create_branch_environment(project, push, &environments, &short).await {
            Ok(Some(created)) => {
                report.created_environments.push(created.name.clone());
                report.deployments.extend(created.deployment);
            }
            Ok(None) => {}
            // The clone removed what it created; the push still deploys the others.
            Err(DispatchError::Environment(error)) => {
                report.notes.push(format!("no branch environment for {}: {error}", push.branch))
            }
            Err(other) => return Err(other),
        }
        let trigger = format!("push {}@{short} ({via})", push.branch);
        for environment in &environments {
            self.deploy_followers(project, environment, push, head, &trigger, &mut report).await?;
        }
        Ok(report)
    }

    /// Deploys the applications of `environment` that follow the pushed branch.
    async fn deploy_followers(
        &self,
        project: &ProjectRecord,
        environment: &EnvironmentRecord,
        push: &PushEvent,
        head: &str,
        trigger: &str,
        report: &mut DispatchReport,
    ) -> Result<(), DispatchError> {
        let applications: Vec<ApplicationRecord> = self
            .store
            .list_applications(environment.id)
            .await?
            .into_iter()
            .filter(|a| a.lifecycle == Lifecycle::Active)
            .collect();
        let mut wanted: Vec<&ApplicationRecord> = Vec::new();
        for application in &applications {
            let ApplicationSource::Git(git) = &application.spec.source else { continue };
            if effective_branch(git, &environment.branch) != push.branch
                || !repository_matches(&push.repository_urls, git.repository.as_str())
            {
                continue;
            }
            let name = format!("{}/{}", environment.name, application.name);
            if !application.spec.auto_deploy {
                report.notes.push(format!("{name} has auto-deploy off"));
                continue;
            }
            if crate::prepare::serving_commit(self, application).await?.as_deref() == Some(head) {
                report.notes.push(format!("{name} already serves {head}"));
                continue;
            }
            if self.already_queued(environment, application, trigger).await? {
                report.notes.push(format!("{name} is already being deployed at this commit"));
                continue;
            }
            wanted.push(application);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // The whole environment when every application follows the push, so the queue
        // and shared builds treat it as one deployment; else each application.
        let targets: Vec<Option<&ApplicationRecord>> =
            if wanted.len() == applications.len() && applications.len() > 1 {
                vec![None]
            } else {
                wanted.iter().copied().map(Some).collect()
            };
        for target in targets {
            let created = self
                .store
                .create_deployment(project.id, environment.id, target.map(|a| a.id), trigger, None)
                .await;
            match created {
                Ok(deployment) => report.deployments.push(QueuedDeployment {
                    environment: environment.name.clone(),
                    deployment: deployment.id,
                    applications: target.map(|a| vec![a.name.clone()]).unwrap_or_default(),
                }),
                // A stopped environment refuses deployments: say so, carry on.
                Err(StoreError::Conflict(message)) => report.notes.push(message),
                Err(other) => return Err(other.into()),
            }
        }
        self.notify();
        Ok(())
    }

    /// Whether an application of `environment` is built from one of `urls`: a branch of
    /// another repository with the same name neither creates nor deletes it.
    async fn builds_from(
        &self,
        environment: &EnvironmentRecord,
        urls: &[String],
    ) -> Result<bool, StoreError> {
        Ok(self.store.list_applications(environment.id).await?.iter().any(|a| {
            matches!(&a.spec.source, ApplicationSource::Git(git)
                if repository_matches(urls, git.repository.as_str()))
        }))
    }

    /// Whether a queued or running deployment already covers `application` for this push.
    async fn already_queued(
        &self,
        environment: &EnvironmentRecord,
        application: &ApplicationRecord,
        trigger: &str,
    ) -> Result<bool, StoreError> {
        // The trigger without its `(via)`: a webhook and a poll of one commit are one push.
        let same_push = trigger.split(" (").next().unwrap_or(trigger);
        for status in [DeploymentStatus::Queued, DeploymentStatus::Running] {
            for deployment in self.store.deployments_with_status(status).await? {
                if deployment.environment_id == environment.id
                    && deployment.application_id.is_none_or(|only| only == application.id)
                    && deployment.trigger.starts_with(same_push)
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Clones the blueprint for a branch matching the project's glob that no environment
    /// follows yet, and queues its first deployment.
    async fn create_branch_environment(
        &self,
        project: &ProjectRecord,
        push: &PushEvent,
        environments: &[EnvironmentRecord],
        short: &str,
    ) -> Result<Option<CreatedBranchEnvironment>, DispatchError> {
        let settings = self.store.project_git_settings(project.id).await?;
        let (Some(glob), Some(blueprint)) =
            (&settings.branch_environments_glob, &settings.branch_blueprint)
        else {
            return Ok(None);
        };
        let matches = BranchGlob::parse(glob).map(|g| g.matches(&push.branch)).unwrap_or(false);
        if !matches || environments.iter().any(|e| e.branch == push.branch) {
            return Ok(None);
        }
        let Some(blueprint) = environments.iter().find(|e| e.name.as_str() == blueprint) else {
            tracing::warn!(project = %project.name, %blueprint, "the branch-environment blueprint does not exist");
            return Ok(None);
        };
        // Only for the blueprint's own repository: a push elsewhere creates nothing.
        if !self.builds_from(blueprint, &push.repository_urls).await? {
            return Ok(None);
        }
        let taken: Vec<ResourceName> =
            self.store.list_environments(project.id).await?.into_iter().map(|e| e.name).collect();
        let name = branch_environment_name(&push.branch, &taken);
        let request = CloneEnvironment {
            name,
            branch: Some(push.branch.clone()),
            mode: None,
            with_data: settings.branch_environments_with_data,
            deploy: false,
        };
        let environment = self.clone_environment(project, blueprint, request).await?;
        self.store.record_branch_environment(project.id, environment.id, &push.branch).await?;
        // Not a `push` trigger: a new environment deploys everything, images included.
        let trigger = format!("branch {} created@{short}", push.branch);
        let deployment = self
            .queue_environment_deployment(project, &environment, &trigger)
            .await?
            .map(|d| QueuedDeployment {
                environment: environment.name.clone(),
                deployment: d.id,
                applications: Vec::new(),
            });
        Ok(Some(CreatedBranchEnvironment { name: environment.name, deployment }))
    }

    /// The polling fallback: every second, polls the projects whose interval elapsed.
    pub(crate) async fn poll_git_heads(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_polled: HashMap<ProjectId, tokio::time::Instant> = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_TICK) => {}
            }
            let projects = match self.store.projects_with_polling().await {
                Ok(projects) => projects,
                Err(error) => {
                    tracing::warn!(%error, "cannot list the projects to poll");
                    continue;
                }
            };
            for (project, interval) in projects {
                let due = last_polled
                    .get(&project)
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(interval.max(1)));
                if !due {
                    continue;
                }
                last_polled.insert(project, tokio::time::Instant::now());
                if let Err(error) = self.poll_project(project).await {
                    tracing::warn!(%project, %error, "polling the followed branches failed");
                }
            }
        }
    }

    /// Asks the remote for the head of every (repository, branch) that auto-deploying
    /// applications of the project follow, and dispatches a push for each that moved (or
    /// disappeared).
    async fn poll_project(&self, project_id: ProjectId) -> Result<(), DispatchError> {
        let Some(project) = self.store.project(project_id).await? else { return Ok(()) };
        let mut targets: BTreeMap<(String, String), PollTarget> = BTreeMap::new();
        for environment in self.store.list_environments(project.id).await? {
            if environment.lifecycle != Lifecycle::Active {
                continue;
            }
            for application in self.store.list_applications(environment.id).await? {
                let ApplicationSource::Git(git) = &application.spec.source else { continue };
                if application.lifecycle != Lifecycle::Active || !application.spec.auto_deploy {
                    continue;
                }
                let branch = effective_branch(git, &environment.branch);
                let key = (normalize_repository_url(git.repository.as_str()), branch.to_string());
                targets.entry(key).or_insert_with(|| PollTarget {
                    git: git.clone(),
                    application: application.clone(),
                    environment_branch: environment.branch.clone(),
                    branch,
                });
            }
        }
        for ((repository_key, _), target) in targets {
            let request = crate::prepare::fetch_request(
                self,
                &target.application,
                &target.git,
                &target.environment_branch,
            )
            .map_err(EngineError::Internal)?;
            // "" records a branch seen deleted.
            let previous = self
                .store
                .polled_head(project.id, &repository_key, &target.branch)
                .await?
                .filter(|commit| !commit.is_empty());
            let head = match self.adapters.source.head_commit(&request, &PollLog).await {
                Ok(head) => Some(head),
                Err(SourceError::BranchNotFound { .. }) => None,
                Err(error) => {
                    tracing::warn!(project = %project.name, repository = %target.git.repository, branch = %target.branch, %error, "cannot read the branch head");
                    continue;
                }
            };
            if head == previous {
                continue;
            }
            let push = PushEvent {
                repository_urls: vec![target.git.repository.to_string()],
                branch: target.branch.clone(),
                head_commit: head.clone(),
                previous_commit: previous,
                created: false,
                deleted: head.is_none(),
            };
            let report = self.dispatch_git_event(&project, &GitEvent::Push(push), "poll").await?;
            tracing::info!(project = %project.name, branch = %target.branch, summary = %report.summary(), "polled a moved branch");
            let seen = head.as_deref().unwrap_or_default();
            self.store.set_polled_head(project.id, &repository_key, &target.branch, seen).await?;
        }
        Ok(())
    }
}

/// A branch environment made for a push.
struct CreatedBranchEnvironment {
    name: ResourceName,
    deployment: Option<QueuedDeployment>,
}
