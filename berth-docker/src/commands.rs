//! Commands and restart policy: a one-off container run to completion (release commands,
//! `berth exec`), a command run inside a running container (`docker exec`), and switching
//! Docker's own restarts of a container on or off.
//!
//! One-off containers are made like the service's containers (same image, environment,
//! labels, network, limits, init, log cap) but publish no port and take no network alias,
//! so they receive none of the service's traffic. Output is read by attaching before the
//! start (as `docker run` does), so no early line is lost; the exit code comes from the
//! engine's wait. The container is removed afterwards whatever happened: explicitly on
//! every path that returns, and by a drop guard when the caller drops the future (a
//! cancelled deployment), since such a container holds its name and its memory.
//!
//! Caveats:
//! - A slow reader of `output` slows the command: attached output is not buffered by the
//!   engine, so the command blocks writing once the channel is full. A receiver that is
//!   dropped is ignored (its lines are discarded and the command runs on).
//! - Each output chunk is decoded as UTF-8 on its own, like `container_logs`: a multi-byte
//!   character split across two writes of the command shows as replacement characters.

use std::pin::pin;
use std::time::{Duration, Instant};

use berth_domain::plan::ObjectKind;
use berth_engine::adapters::{ContainerSpec, RuntimeError};
use bollard::container::{
    AttachContainerOptions, CreateContainerOptions, LogOutput, UpdateContainerOptions,
    WaitContainerOptions,
};
use bollard::errors::Error as EngineError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{RestartPolicy, RestartPolicyNameEnum};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::Sender;

use crate::convert::{is_not_found, runtime_error, LineSplitter};
use crate::runtime::{check_object_name, container_config, Role};
use crate::DockerEngine;

/// How long the output of a one-off container may still flow after the engine reported its
/// exit (the attach stream normally ends with the container).
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long after an exec's output ended the engine may take to record its exit code.
const EXEC_EXIT_GRACE: Duration = Duration::from_secs(10);
const EXEC_EXIT_POLL: Duration = Duration::from_millis(25);

impl DockerEngine {
    /// `Runtime::set_restart_on_failure`: restart policy `unless-stopped` (restarted after a
    /// crash, with Docker's backoff doubling from 100 ms, and after a restart of the Docker
    /// daemon; not after `docker stop` or Berth's own stop) or `no`.
    ///
    /// Caveat: the engine applies a new policy to the container's next exit. Disabling while
    /// the container waits out a restart backoff does not cancel that pending restart.
    pub(crate) async fn update_restart_policy(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<(), RuntimeError> {
        let operation = format!(
            "{} restarts of container {name}",
            if enabled { "enabling" } else { "disabling" }
        );
        check_object_name(&operation, name)?;
        if !self.present_and_owned(ObjectKind::Container, name, &operation).await? {
            return Err(RuntimeError::NotFound(format!("container {name}")));
        }
        let policy =
            if enabled { RestartPolicyNameEnum::UNLESS_STOPPED } else { RestartPolicyNameEnum::NO };
        let update = UpdateContainerOptions::<String> {
            restart_policy: Some(RestartPolicy { name: Some(policy), maximum_retry_count: None }),
            ..Default::default()
        };
        match self.docker.update_container(name, update).await {
            Ok(()) => Ok(()),
            Err(error) if is_not_found(&error) => {
                Err(RuntimeError::NotFound(format!("container {name}")))
            }
            Err(error) => Err(runtime_error(operation, &error)),
        }
    }

    /// `Runtime::run_to_completion`. A container of the same name left by an earlier run
    /// (Berth's, by its label) is replaced; someone else's is refused.
    pub(crate) async fn run_one_off(
        &self,
        spec: &ContainerSpec,
        command: &[String],
        timeout: Duration,
        output: Sender<String>,
    ) -> Result<i64, RuntimeError> {
        let name = spec.name.as_str();
        let operation = format!("running one-off container {name}");
        check_object_name(&operation, name)?;
        if command.is_empty() {
            return Err(RuntimeError::Engine { operation, message: "no command given".to_owned() });
        }
        if self.present_and_owned(ObjectKind::Container, name, &operation).await? {
            self.force_remove(name).await?;
        }
        let mut config = container_config(spec, Role::OneOff);
        config.cmd = Some(command.to_vec());
        let create = CreateContainerOptions { name: name.to_owned(), platform: None };
        self.docker
            .create_container(Some(create), config)
            .await
            .map_err(|error| runtime_error(&operation, &error))?;
        let guard = RemoveOnDrop { engine: Some(self.clone()), name: name.to_owned() };

        let run = self.attach_start_wait(name, &operation, &output);
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RuntimeError::Engine {
                operation: operation.clone(),
                message: format!("timed out after {}", seconds(timeout)),
            }),
        };
        // Kills it if it still runs (after a timeout or a failure on the way).
        let removed = self.force_remove(name).await;
        guard.disarm();
        if let Err(error) = removed {
            // Labelled, so the next garbage collection (or run of the same name) removes it;
            // the command's outcome matters more to the caller.
            tracing::warn!(container = name, %error, "cannot remove the one-off container");
        }
        outcome
    }

    /// Attaches to the created container, starts it, forwards its output and waits for its
    /// exit code.
    async fn attach_start_wait(
        &self,
        name: &str,
        operation: &str,
        output: &Sender<String>,
    ) -> Result<i64, RuntimeError> {
        let attach = AttachContainerOptions::<String> {
            stdout: Some(true),
            stderr: Some(true),
            stream: Some(true),
            ..Default::default()
        };
        let attached = self
            .docker
            .attach_container(name, Some(attach))
            .await
            .map_err(|error| runtime_error(operation, &error))?;
        self.docker
            .start_container::<String>(name, None)
            .await
            .map_err(|error| runtime_error(operation, &error))?;

        let mut forward = pin!(forward_output(attached.output, output));
        let mut wait = pin!(self.wait_exit(name, operation));
        let mut forwarded = false;
        let code = loop {
            tokio::select! {
                code = &mut wait => break code?,
                () = &mut forward, if !forwarded => forwarded = true,
            }
        };
        if !forwarded && tokio::time::timeout(OUTPUT_DRAIN_GRACE, forward).await.is_err() {
            tracing::warn!(
                container = name,
                "the output did not end with the container; the rest is dropped"
            );
        }
        Ok(code)
    }

    /// The exit code of a started container, once it no longer runs.
    async fn wait_exit(&self, name: &str, operation: &str) -> Result<i64, RuntimeError> {
        // "not-running", not "next-exit": the container may already have exited.
        let options = WaitContainerOptions { condition: "not-running" };
        match self.docker.wait_container(name, Some(options)).next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard turns every non-zero exit into this error; a message means the
            // engine itself failed the container.
            Some(Err(EngineError::DockerContainerWaitError { error, code })) => {
                if error.trim().is_empty() {
                    Ok(code)
                } else {
                    Err(RuntimeError::Engine {
                        operation: operation.to_owned(),
                        message: format!("the container ended with code {code}: {}", error.trim()),
                    })
                }
            }
            Some(Err(error)) => Err(runtime_error(operation, &error)),
            None => Err(RuntimeError::Engine {
                operation: operation.to_owned(),
                message: "the engine ended the wait without an exit code".to_owned(),
            }),
        }
    }

    /// `Runtime::exec_in_container`.
    pub(crate) async fn exec_command(
        &self,
        name: &str,
        command: &[String],
        output: Sender<String>,
    ) -> Result<i64, RuntimeError> {
        let operation = format!("running a command in container {name}");
        check_object_name(&operation, name)?;
        if command.is_empty() {
            return Err(RuntimeError::Engine { operation, message: "no command given".to_owned() });
        }
        if !self.present_and_owned(ObjectKind::Container, name, &operation).await? {
            return Err(RuntimeError::NotFound(format!("container {name}")));
        }
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = match self.docker.create_exec(name, options).await {
            Ok(exec) => exec,
            Err(error) if is_not_found(&error) => {
                return Err(RuntimeError::NotFound(format!("container {name}")))
            }
            // 409 when the container does not run: the engine's message says so.
            Err(error) => return Err(runtime_error(operation, &error)),
        };
        let start = StartExecOptions { detach: false, tty: false, output_capacity: None };
        match self.docker.start_exec(&exec.id, Some(start)).await {
            Ok(StartExecResults::Attached { output: stream, .. }) => {
                forward_output(stream, &output).await;
            }
            Ok(StartExecResults::Detached) => {}
            Err(error) => return Err(runtime_error(operation, &error)),
        }
        self.exec_exit_code(&exec.id, &operation).await
    }

    /// The exit code of an exec whose output ended. The engine records it when it handles
    /// the process's exit event, which may come a moment after the output closed.
    pub(crate) async fn exec_exit_code(
        &self,
        id: &str,
        operation: &str,
    ) -> Result<i64, RuntimeError> {
        let deadline = Instant::now() + EXEC_EXIT_GRACE;
        loop {
            let inspected = self
                .docker
                .inspect_exec(id)
                .await
                .map_err(|error| runtime_error(operation, &error))?;
            if inspected.running != Some(true) {
                if let Some(code) = inspected.exit_code {
                    return Ok(code);
                }
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Engine {
                    operation: operation.to_owned(),
                    message: format!(
                        "the command's output ended but it did not exit within {} (did it close \
                         its output and keep running?)",
                        seconds(EXEC_EXIT_GRACE)
                    ),
                });
            }
            tokio::time::sleep(EXEC_EXIT_POLL).await;
        }
    }
}

/// Sends every line of attached output (stdout and stderr, each split on its own so a
/// partial line of one is not glued to the other) to `output` until the stream ends. A
/// closed receiver is ignored: the stream is still drained so the command never blocks on it.
async fn forward_output<S>(mut stream: S, output: &Sender<String>)
where
    S: Stream<Item = Result<LogOutput, EngineError>> + Unpin,
{
    let mut stdout = LineSplitter::default();
    let mut stderr = LineSplitter::default();
    while let Some(item) = stream.next().await {
        let lines = match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                stdout.push(&String::from_utf8_lossy(&message))
            }
            Ok(LogOutput::StdErr { message }) => stderr.push(&String::from_utf8_lossy(&message)),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(error) => {
                tracing::warn!(%error, "reading a command's output failed; the rest of it is lost");
                break;
            }
        };
        send_lines(output, lines).await;
    }
    send_lines(output, stdout.finish().into_iter().chain(stderr.finish())).await;
}

async fn send_lines(output: &Sender<String>, lines: impl IntoIterator<Item = String>) {
    if output.is_closed() {
        return;
    }
    for line in lines {
        if output.send(line).await.is_err() {
            return;
        }
    }
}

/// `1 s`, `1.5 s`.
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// Removes a one-off container if the future running it is dropped before its own cleanup
/// ran; `disarm` once that cleanup is done.
struct RemoveOnDrop {
    engine: Option<DockerEngine>,
    name: String,
}

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.engine = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(engine) = self.engine.take() else { return };
        let name = std::mem::take(&mut self.name);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(error) = engine.force_remove(&name).await {
                        tracing::warn!(container = %name, %error, "cannot remove the one-off container");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(container = %name, "the one-off container was left behind (no runtime to remove it)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_seconds() {
        assert_eq!(seconds(Duration::from_secs(1)), "1 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_secs(3600)), "3600 s");
    }

    #[tokio::test]
    async fn output_lines_are_split_per_stream_and_a_closed_receiver_is_ignored() {
        let chunk = |stderr: bool, text: &str| {
            let message = bytes::Bytes::from(text.to_owned());
            Ok(if stderr { LogOutput::StdErr { message } } else { LogOutput::StdOut { message } })
        };
        let items = vec![
            chunk(false, "hel"),
            chunk(true, "err\n"),
            chunk(false, "lo\nwor"),
            chunk(true, "tail"),
            chunk(false, "ld"),
        ];
        let (sender, mut receiver) = tokio::sync::mpsc::channel(16);
        forward_output(futures_util::stream::iter(items), &sender).await;
        drop(sender);
        let mut lines = Vec::new();
        while let Some(line) = receiver.recv().await {
            lines.push(line);
        }
        assert_eq!(lines, ["err", "hello", "world", "tail"]);

        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        drop(receiver);
        let many = (0..100).map(|i| chunk(false, &format!("line {i}\n")));
        forward_output(futures_util::stream::iter(many.collect::<Vec<_>>()), &sender).await;
    }
}
