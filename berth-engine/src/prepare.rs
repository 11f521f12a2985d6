//! Preparing one application's release: fetch its branch head and build (or reuse, or
//! share) its image, or take the image and configuration snapshot of the deployment a
//! rollback returns to.
//!
//! Monorepos: for a push-triggered deployment, the `clone` step compares the new head with
//! the commit the application serves and ends as `skipped` when no changed file matches
//! its watch paths; the application then keeps its current version. Shared builds:
//! applications of one deployment with the same repository, commit, root path,
//! Dockerfile and build arguments build once (the builder designated in
//! `shared_builds.rs` builds, the others wait for it and record "shared build with APP")
//! and run the same image.

use berth_domain::deploy_plan::{short_commit, BuildIdentity};
use berth_domain::deployment::{StepName, StepStatus};
use berth_domain::labels;
use berth_domain::spec::{effective_branch, ApplicationSource, GitCredentialKind, GitSource};
use berth_store::ApplicationRecord;

use crate::adapters::{BuildRequest, FetchRequest, GitCredentials, LogSink, SecretString};
use crate::engine::{Engine, EngineError};
use crate::executor::{Run, StepFailure, StepResult};
use crate::naming;
use crate::shared_builds::wait_for_build;
use crate::snapshot::ServiceSnapshot;

/// What one application is deployed with: built now, or taken from an earlier deployment.
pub(crate) struct Release {
    pub(crate) image: String,
    pub(crate) commit: Option<String>,
    pub(crate) snapshot: ServiceSnapshot,
}

/// The result of preparing an application.
pub(crate) enum Prepared {
    Release(Box<Release>),
    /// A push changed none of its watched files: it keeps serving its current version.
    Unchanged,
}

/// What the clone step found.
enum Fetched {
    Commit(String),
    Unchanged,
}

/// The commit an application serves now (its current deployment's), if built from Git.
pub(crate) async fn serving_commit(
    engine: &Engine,
    application: &ApplicationRecord,
) -> Result<Option<String>, EngineError> {
    let Some(current) = application.current_deployment_id else { return Ok(None) };
    Ok(engine
        .store
        .deployment_services(current)
        .await?
        .into_iter()
        .find(|s| s.application_id == application.id)
        .and_then(|s| s.git_commit))
}

/// The decrypted credential of an application's Git source.
pub(crate) fn git_credentials(
    engine: &Engine,
    application: &ApplicationRecord,
    kind: GitCredentialKind,
) -> Result<Option<GitCredentials>, String> {
    let decrypt = || -> Result<SecretString, String> {
        let sealed = application.credential_ciphertext.as_deref().ok_or_else(|| {
            "the Git credential is missing; set it again with `berth application update`".to_owned()
        })?;
        engine.key.decrypt_string(sealed).map(SecretString::new).map_err(|e| e.to_string())
    };
    Ok(match kind {
        GitCredentialKind::None => None,
        GitCredentialKind::Token => Some(GitCredentials::Token(decrypt()?)),
        GitCredentialKind::SshKey => Some(GitCredentials::SshKey {
            private_key: decrypt()?,
            known_hosts: engine.config.known_hosts_file(),
        }),
    })
}

/// The fetch request of an application's branch in an environment.
pub(crate) fn fetch_request(
    engine: &Engine,
    application: &ApplicationRecord,
    git: &GitSource,
    environment_branch: &berth_domain::BranchName,
) -> Result<FetchRequest, String> {
    Ok(FetchRequest {
        repository: git.repository.clone(),
        branch: effective_branch(git, environment_branch),
        credentials: git_credentials(engine, application, git.credential)?,
        allow_local: engine.config.allow_local_repositories,
        timeout: engine.config.deadlines.clone,
    })
}

/// The build identity and image tag of an application at a commit.
pub(crate) fn build_identity(
    project: berth_domain::ProjectId,
    application: &ApplicationRecord,
    git: &GitSource,
    commit: &str,
) -> (BuildIdentity, String) {
    let tag = naming::image_tag(&naming::BuildInputs {
        project,
        application: application.id,
        commit,
        root_path: git.root_path.as_str(),
        dockerfile_path: git.dockerfile_path.as_str(),
        build_args: &git.build_args,
    });
    let identity = BuildIdentity {
        repository: git.repository.to_string(),
        commit: commit.to_owned(),
        root_path: git.root_path.as_str().to_owned(),
        dockerfile_path: git.dockerfile_path.as_str().to_owned(),
        build_args: git.build_args.clone(),
    };
    (identity, tag)
}

/// What applications sharing a build have in common before their branch is fetched
/// (`shared_builds.rs` groups by it): repository, branch, root path, Dockerfile, build
/// arguments.
pub(crate) fn shared_build_key(
    git: &GitSource,
    environment_branch: &berth_domain::BranchName,
) -> String {
    let arguments: Vec<String> = git.build_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    [
        git.repository.to_string(),
        effective_branch(git, environment_branch).to_string(),
        git.root_path.as_str().to_owned(),
        git.dockerfile_path.as_str().to_owned(),
        arguments.join("\n"),
    ]
    .join("\0")
}

/// Whether this deployment was triggered by a push (webhook or polling).
pub(crate) fn is_push_trigger(trigger: &str) -> bool {
    trigger.starts_with("push")
}

impl Run<'_> {
    /// Clone and build (or pull) for a normal deployment.
    pub(crate) async fn new_release(
        &self,
        application: &ApplicationRecord,
    ) -> Result<Result<Prepared, StepFailure>, EngineError> {
        let engine = self.engine;
        let deadlines = &engine.config.deadlines;
        let app_name = application.name.as_str();
        let push = is_push_trigger(&self.deployment.trigger);
        if let (true, ApplicationSource::Image { reference }) = (push, &application.spec.source) {
            let message =
                format!("skipped: runs the image {reference}, which a push does not change");
            self.record_skipped(app_name, &message).await?;
            return Ok(Ok(Prepared::Unchanged));
        }
        // Database coordinates first, so a user variable of the same name wins; aliases
        // follow them.
        let mut variables = match engine.database_variables(self.environment.id).await {
            Ok(variables) => variables,
            Err(error) => return Ok(Err(StepFailure::new(StepName::Start, error.to_string()))),
        };
        let env = match self.resolve_variables(application, &variables).await {
            Ok(env) => env,
            Err(failure) => return Ok(Err(failure)),
        };
        variables.extend(env);
        let snapshot = ServiceSnapshot { spec: application.spec.clone(), variables };
        match &application.spec.source {
            ApplicationSource::Git(git) => {
                let checkout = engine
                    .config
                    .checkouts_dir()
                    .join(self.deployment.id.to_string())
                    .join(app_name);
                // A push redeploys only what it changed: compare with what serves now.
                let previous = if push { serving_commit(engine, application).await? } else { None };
                let fetched = self
                    .step_with_status(
                        app_name,
                        StepName::Clone,
                        deadlines.clone,
                        self.clone_source(application, git, &checkout, previous.as_deref()),
                    )
                    .await?;
                let commit = match fetched {
                    Ok(Fetched::Commit(commit)) => commit,
                    Ok(Fetched::Unchanged) => {
                        remove_dir(&checkout).await;
                        return Ok(Ok(Prepared::Unchanged));
                    }
                    Err(failure) => {
                        remove_dir(&checkout).await;
                        return Ok(Err(failure));
                    }
                };
                let (identity, tag) = build_identity(self.project.id, application, git, &commit);
                let request = BuildRequest {
                    checkout_dir: checkout.clone(),
                    root_path: git.root_path.clone(),
                    dockerfile_path: git.dockerfile_path.clone(),
                    build_args: git.build_args.clone(),
                    tag,
                    labels: labels::image_labels(engine.organization, self.project.id),
                    timeout: deadlines.build,
                };
                let built = self
                    .step(
                        app_name,
                        StepName::Build,
                        deadlines.build,
                        self.build_or_share(identity, request, app_name),
                    )
                    .await?;
                remove_dir(&checkout).await;
                Ok(built.map(|image| {
                    Prepared::Release(Box::new(Release { image, commit: Some(commit), snapshot }))
                }))
            }
            ApplicationSource::Image { reference } => {
                let sink = self.log.for_step(Some(app_name), StepName::Build.as_str());
                let pulled = self
                    .step(app_name, StepName::Build, deadlines.build, async {
                        engine
                            .adapters
                            .builder
                            .ensure_image(reference, &sink)
                            .await
                            .map(|()| ((), Some(format!("using image {reference}"))))
                            .map_err(|e| StepFailure::new(StepName::Build, e.to_string()))
                    })
                    .await?;
                Ok(pulled.map(|()| {
                    Prepared::Release(Box::new(Release {
                        image: reference.to_string(),
                        commit: None,
                        snapshot,
                    }))
                }))
            }
        }
    }

    /// The image and configuration of an earlier deployment, for a rollback.
    /// The image and configuration of an earlier deployment, for a rollback.
    pub(crate) async fn rollback_release(
        &self,
        application: &ApplicationRecord,
        target: berth_domain::DeploymentId,
    ) -> Result<Result<Release, StepFailure>, EngineError> {
        let engine = self.engine;
        let service = engine
            .store
            .deployment_services(target)
            .await?
            .into_iter()
            .find(|s| s.application_id == application.id);
        let work = async {
            let fail = |message: String| StepFailure::new(StepName::Build, message);
            let service = service.ok_or_else(|| {
                fail(format!("deployment {target} did not deploy {}", application.name))
            })?;
            let image = service
                .image
                .clone()
                .ok_or_else(|| fail(format!("deployment {target} recorded no image")))?;
            let sealed = service.config_snapshot.as_deref().ok_or_else(|| {
                fail(format!("deployment {target} has no configuration snapshot"))
            })?;
            let mut snapshot =
                ServiceSnapshot::open(&engine.key, sealed).map_err(|e| fail(e.to_string()))?;
            // Database credentials may have changed since (`database_credentials.rs`):
            // the old ones would no longer open the database.
            let current = engine
                .database_variables(self.environment.id)
                .await
                .map_err(|e| fail(e.to_string()))?;
            crate::database_credentials::refresh_database_credentials(
                &mut snapshot.variables,
                &current,
            );
            let exists = engine
                .adapters
                .builder
                .image_exists(&image)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !exists {
                return Err(fail(format!(
                    "the image of deployment {target} was pruned (Berth keeps the images of the last {} successful deployments); deploy its commit again instead",
                    engine.config.keep_successful_images
                )));
            }
            let message = format!("rolling back to deployment {target}: reusing {image}");
            Ok((Release { image, commit: service.git_commit.clone(), snapshot }, Some(message)))
        };
        self.step(application.name.as_str(), StepName::Build, engine.config.deadlines.build, work)
            .await
    }

    /// Fetches the branch head; for a push, ends `skipped` when no watched file changed
    /// since `previous` (the commit the application serves).
    async fn clone_source(
        &self,
        application: &ApplicationRecord,
        git: &GitSource,
        checkout: &std::path::Path,
        previous: Option<&str>,
    ) -> Result<(Fetched, StepStatus, Option<String>), StepFailure> {
        let engine = self.engine;
        let fail = |message: String| StepFailure::new(StepName::Clone, message);
        let request =
            fetch_request(engine, application, git, &self.environment.branch).map_err(fail)?;
        let branch = request.branch.clone();
        remove_dir(checkout).await;
        if let Some(parent) = checkout.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        }
        let sink = self.log.for_step(Some(application.name.as_str()), StepName::Clone.as_str());
        sink.line(&format!("fetching {} at branch {branch}", git.repository));
        let fetched = engine
            .adapters
            .source
            .fetch(&request, checkout, &sink)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let commit = fetched.commit;
        let mut message = format!("{branch} is at {}", short_commit(&commit));
        let Some(previous) = previous else {
            return Ok((Fetched::Commit(commit), StepStatus::Succeeded, Some(message)));
        };
        let changed = if previous == commit {
            Some(Vec::new())
        } else {
            match engine
                .adapters
                .source
                .changed_files(&request, checkout, previous, &commit, &sink)
                .await
            {
                Ok(changed) => changed,
                // Not knowing what changed must not block a deployment: deploy.
                Err(error) => {
                    sink.line(&format!("could not list the changed files ({error}); deploying"));
                    None
                }
            }
        };
        let since = short_commit(previous);
        match changed {
            None => message.push_str(&format!("; cannot compare with {since}, deploying")),
            Some(files) => {
                let watched = berth_domain::watch::first_watched_file(
                    &application.spec.watch_paths,
                    git.root_path.as_str(),
                    &files,
                );
                match watched {
                    Some(file) => message.push_str(&format!("; {file} changed since {since}")),
                    None => {
                        let skipped = format!("skipped: no watched file changed since {since}");
                        sink.line(&skipped);
                        return Ok((Fetched::Unchanged, StepStatus::Skipped, Some(skipped)));
                    }
                }
            }
        }
        Ok((Fetched::Commit(commit), StepStatus::Succeeded, Some(message)))
    }

    /// Waits for this application's designated builder (`shared_builds.rs`) and uses
    /// its image when it built the same identity; otherwise builds (or reuses) its own
    /// and, as a designated builder, tells its waiters.
    async fn build_or_share(
        &self,
        identity: BuildIdentity,
        request: BuildRequest,
        application: &str,
    ) -> StepResult<String> {
        if let Some((builder, receiver)) = self.shared_builds.builder_for(application) {
            let sink = self.log.for_step(Some(application), StepName::Build.as_str());
            sink.line(&format!("waiting for the build of {builder} (same sources and settings)"));
            if let Some(image) = wait_for_build(receiver, &identity).await {
                return Ok((image.clone(), Some(format!("shared build with {builder} ({image})"))));
            }
            sink.line(&format!("{builder} built nothing to share; building here"));
        }
        let image = request.tag.clone();
        let ((), message) = self.build_image(request, application).await?;
        self.shared_builds.publish_built(application, identity, &image);
        Ok((image, message))
    }

    async fn build_image(&self, request: BuildRequest, application: &str) -> StepResult<()> {
        let builder = &self.engine.adapters.builder;
        let as_failure =
            |e: crate::adapters::BuildError| StepFailure::new(StepName::Build, e.to_string());
        if builder.image_exists(&request.tag).await.map_err(as_failure)? {
            return Ok((
                (),
                Some(format!("reused {} (same commit and build settings)", request.tag)),
            ));
        }
        let sink = self.log.for_step(Some(application), StepName::Build.as_str());
        match builder.build(&request, &sink).await {
            // A cached layer removed while the build used it (image cleanup by another Berth
            // sharing the engine, or by hand): the engine rebuilds it on a second try.
            Err(error) if is_vanished_layer(&error) => {
                sink.line("a cached layer disappeared during the build; building once more");
                builder.build(&request, &sink).await.map_err(as_failure)?;
            }
            result => result.map_err(as_failure)?,
        }
        Ok(((), Some(format!("built {}", request.tag))))
    }

    /// Project, environment and application variables, secrets decrypted.
    async fn resolve_variables(
        &self,
        application: &ApplicationRecord,
        builtins: &[(String, String)],
    ) -> Result<Vec<(String, String)>, StepFailure> {
        crate::snapshot::resolve_application_variables(
            self.engine,
            self.project.id,
            self.environment.id,
            application.id,
            builtins,
        )
        .await
        .map_err(|message| StepFailure::new(StepName::Start, message))
    }
}

/// Whether a build failed because a layer it was reusing vanished under it.
fn is_vanished_layer(error: &crate::adapters::BuildError) -> bool {
    let text = error.to_string();
    text.contains("failed to get digest")
        || text.contains("unknown parent image")
        || text.contains("No such image")
}

async fn remove_dir(path: &std::path::Path) {
    if tokio::fs::metadata(path).await.is_ok() {
        if let Err(error) = tokio::fs::remove_dir_all(path).await {
            tracing::warn!(path = %path.display(), %error, "could not remove a checkout");
        }
    }
}
