//! `Builder` for the Docker engine: builds with the engine's legacy builder from an
//! in-memory context archive, and makes images available locally ("the local image if
//! present, else pull").
//!
//! Expected flow of a build: check that the Dockerfile exists, archive the context (see
//! `context`), POST it to `/build` with `pull=false` (a base image present locally is used
//! as is, so offline machines build from their local base images), stream every output
//! line to the deployment's log while remembering the last `Step N/M : ...` line, and turn
//! an error line into `BuildError::Failed` naming that step.
//!
//! Guarantees: intermediate containers are removed even when a step fails (`forcerm`);
//! when the deadline passes the request is dropped, which makes the engine cancel the
//! build.
//!
//! BuildKit: the 20.10 engine can build with BuildKit through the API (`version=2`), but
//! that needs a gRPC session from the client (bollard's `buildkit` feature, which pulls in
//! tonic and more). The legacy builder works on every engine here, so it is the only one
//! used; `BUILDER_VERSION` is the switch to revisit together with that feature.

use std::time::Duration;

use async_trait::async_trait;
use berth_domain::source::ImageReference;
use berth_engine::adapters::{BuildError, BuildRequest, Builder, LogSink};
use bollard::errors::Error as EngineError;
use bollard::image::{BuildImageOptions, BuilderVersion, CreateImageOptions};
use bollard::models::{BuildInfo, CreateImageInfo};
use futures_util::StreamExt;

use crate::context::{self, ContextError, ContextSource};
use crate::convert::{engine_message, is_not_found, to_hash_map, LineSplitter};
use crate::DockerEngine;

const BUILDER_VERSION: BuilderVersion = BuilderVersion::BuilderV1;

/// How long a pull may take before it is reported as failed.
const PULL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Extra time given to the HTTP request over the build's own deadline, so the deadline
/// (and its clear error) always fires first.
const REQUEST_MARGIN: Duration = Duration::from_secs(30);

/// What a failure is reported "at" before the first step started.
const BEFORE_FIRST_STEP: &str = "the Dockerfile";

#[async_trait]
impl Builder for DockerEngine {
    async fn image_exists(&self, tag: &str) -> Result<bool, BuildError> {
        match self.docker.inspect_image(tag).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(BuildError::Engine(format!(
                "inspecting image {tag}: {}",
                engine_message(&error)
            ))),
        }
    }

    async fn build(&self, request: &BuildRequest, log: &dyn LogSink) -> Result<(), BuildError> {
        let seconds = request.timeout.as_secs();
        match tokio::time::timeout(request.timeout, self.build_without_deadline(request, log)).await
        {
            Ok(result) => result,
            Err(_elapsed) => {
                log.line(&format!("build stopped: it did not finish within {seconds} s"));
                Err(BuildError::Timeout { seconds })
            }
        }
    }

    async fn ensure_image(
        &self,
        reference: &ImageReference,
        log: &dyn LogSink,
    ) -> Result<(), BuildError> {
        let reference = reference.as_str();
        if self.image_exists(reference).await? {
            log.line(&format!("using the local image {reference}"));
            return Ok(());
        }
        log.line(&format!("{reference} is not present locally; pulling it"));
        let pull_failed =
            |message: String| BuildError::PullFailed { reference: reference.to_owned(), message };
        match tokio::time::timeout(PULL_TIMEOUT, self.pull(reference, log)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(pull_failed(engine_message(&error))),
            Err(_elapsed) => {
                return Err(pull_failed(format!(
                    "the pull did not finish within {} s",
                    PULL_TIMEOUT.as_secs()
                )))
            }
        }
        if self.image_exists(reference).await? {
            Ok(())
        } else {
            Err(pull_failed("the engine reported success but the image is not present".to_owned()))
        }
    }
}

impl DockerEngine {
    async fn build_without_deadline(
        &self,
        request: &BuildRequest,
        log: &dyn LogSink,
    ) -> Result<(), BuildError> {
        let root = request.root_path.as_str();
        let dockerfile = request.dockerfile_path.as_str();
        let context_dir = request.checkout_dir.join(root);
        let dockerfile_in_repository =
            if root == "." { dockerfile.to_owned() } else { format!("{root}/{dockerfile}") };
        if !context_dir.join(dockerfile).is_file() {
            return Err(BuildError::DockerfileMissing { path: dockerfile_in_repository });
        }

        let started = std::time::Instant::now();
        let checkout_dir = request.checkout_dir.clone();
        let dockerfile_owned = dockerfile.to_owned();
        let image_labels = request.labels.clone();
        let archived = tokio::task::spawn_blocking(move || {
            context::archive(&ContextSource {
                checkout_dir: &checkout_dir,
                context_dir: &context_dir,
                dockerfile: &dockerfile_owned,
                image_labels: &image_labels,
            })
        })
        .await
        .map_err(|error| BuildError::Engine(format!("archiving the build context: {error}")))?
        .map_err(|error| match error {
            ContextError::OutsideCheckout(_) => BuildError::Failed {
                step: "sending the build context".to_owned(),
                message: format!("the root path {root} leads outside the repository"),
            },
            error @ ContextError::DockerfileOutsideCheckout(_) => BuildError::Failed {
                step: "sending the build context".to_owned(),
                message: error.to_string(),
            },
            ContextError::Io(error) => BuildError::Engine(format!(
                "cannot read the build context {root} in the checkout: {error}"
            )),
        })?;
        log.line(&format!(
            "sending the build context ({} entries, {} KiB, archived in {} ms)",
            archived.entries,
            archived.tar.len().div_ceil(1024),
            started.elapsed().as_millis()
        ));

        let options = BuildImageOptions {
            // The labels are in the generated Dockerfile (see `context`).
            dockerfile: context::GENERATED_DOCKERFILE.to_owned(),
            t: request.tag.clone(),
            buildargs: to_hash_map(&request.build_args),
            rm: true,
            forcerm: true,
            pull: false,
            version: BUILDER_VERSION,
            ..Default::default()
        };
        let docker = self.docker.clone().with_timeout(request.timeout + REQUEST_MARGIN);
        let mut stream = docker.build_image(options, None, Some(archived.tar.into()));
        let mut progress = BuildProgress::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => progress.record(info, log)?,
                Err(EngineError::DockerStreamError { error }) => {
                    return Err(progress.failure(error, log))
                }
                // The engine refuses some builds before streaming anything (for instance
                // a Dockerfile it cannot parse) with a 4xx status: the user's to fix.
                Err(EngineError::DockerResponseServerError { status_code, message })
                    if (400..500).contains(&status_code) =>
                {
                    return Err(progress.failure(message, log))
                }
                Err(error) => return Err(BuildError::Engine(engine_message(&error))),
            }
        }
        progress.flush(log);
        if !self.image_exists(&request.tag).await? {
            return Err(BuildError::Engine(format!(
                "the build ended without producing {}; the engine may have dropped the connection",
                request.tag
            )));
        }
        Ok(())
    }

    async fn pull(&self, reference: &str, log: &dyn LogSink) -> Result<(), EngineError> {
        let options =
            CreateImageOptions { from_image: with_default_tag(reference), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let CreateImageInfo { id, status, progress, .. } = item?;
            // Progress bars change many times a second; log the status changes only.
            if let (Some(status), None) = (status, progress) {
                match id {
                    Some(id) => log.line(&format!("{id}: {status}")),
                    None => log.line(&status),
                }
            }
        }
        Ok(())
    }
}

/// Without a tag or digest the pull API fetches every tag of a repository; ask for
/// `latest` like the Docker CLI does.
fn with_default_tag(reference: &str) -> String {
    let last_component = reference.rsplit('/').next().unwrap_or(reference);
    if reference.contains('@') || last_component.contains(':') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

/// Follows the build output: complete lines go to the log, and the last `Step` line is
/// remembered so a failure can say where it happened.
#[derive(Default)]
struct BuildProgress {
    lines: LineSplitter,
    step: Option<String>,
}

impl BuildProgress {
    fn record(&mut self, info: BuildInfo, log: &dyn LogSink) -> Result<(), BuildError> {
        if let Some(chunk) = info.stream {
            for line in self.lines.push(&chunk) {
                self.note_step(&line);
                log.line(&line);
            }
        }
        if let Some(status) = info.status {
            match info.id {
                Some(id) if info.progress.is_none() => log.line(&format!("{id}: {status}")),
                None => log.line(&status),
                Some(_) => {}
            }
        }
        let message = info.error_detail.and_then(|detail| detail.message).or(info.error);
        match message {
            Some(message) => Err(self.failure(message, log)),
            None => Ok(()),
        }
    }

    /// `Step 2/4 : RUN make` → `RUN make`.
    fn note_step(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("Step ") {
            if let Some((_, instruction)) = rest.split_once(" : ") {
                self.step = Some(instruction.trim().to_owned());
            }
        }
    }

    fn flush(&mut self, log: &dyn LogSink) {
        if let Some(line) = std::mem::take(&mut self.lines).finish() {
            self.note_step(&line);
            log.line(&line);
        }
    }

    fn failure(&mut self, message: String, log: &dyn LogSink) -> BuildError {
        self.flush(log);
        let message = message.trim().to_owned();
        log.line(&format!("error: {message}"));
        BuildError::Failed {
            step: self.step.clone().unwrap_or_else(|| BEFORE_FIRST_STEP.to_owned()),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl LogSink for Lines {
        fn line(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    fn stream(text: &str) -> BuildInfo {
        BuildInfo { stream: Some(text.to_owned()), ..Default::default() }
    }

    #[test]
    fn a_failure_names_the_last_step() {
        let log = Lines::default();
        let mut progress = BuildProgress::default();
        for chunk in
            ["Step 1/3 : FROM berth/busybox:1\n ---> 613a3bc5c6b2\n", "Step 2/3 : RUN ", "false\n"]
        {
            progress.record(stream(chunk), &log).unwrap();
        }
        progress.record(stream(" ---> Running in 5e1f\n"), &log).unwrap();
        let error = progress
            .record(
                BuildInfo {
                    error: Some(
                        "The command '/bin/sh -c false' returned a non-zero code: 1".into(),
                    ),
                    ..Default::default()
                },
                &log,
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the build failed at RUN false: The command '/bin/sh -c false' returned a non-zero code: 1"
        );
        assert_eq!(log.0.lock().unwrap()[2], "Step 2/3 : RUN false");
    }

    #[test]
    fn pulls_ask_for_latest_only_without_tag_or_digest() {
        assert_eq!(with_default_tag("berth/busybox"), "berth/busybox:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/team/app"), "127.0.0.1:5000/team/app:latest");
        assert_eq!(with_default_tag("127.0.0.1:5000/team/app:1.0"), "127.0.0.1:5000/team/app:1.0");
        assert_eq!(with_default_tag("app@sha256:abc"), "app@sha256:abc");
    }
}
