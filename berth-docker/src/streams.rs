//! Byte streams through `docker exec`: a command inside a running container with its
//! standard input fed from a channel and its standard output sent, unchanged, to another.
//! Database dumps and restores go through it, so no byte of a dump is reinterpreted as
//! text; standard error is kept as lines for error messages.

use berth_domain::plan::ObjectKind;
use berth_engine::adapters::{RuntimeError, StreamedExit};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{Receiver, Sender};

use crate::convert::{is_not_found, runtime_error};
use crate::runtime::check_object_name;
use crate::DockerEngine;

/// How many lines of standard error are kept for messages.
const STDERR_LINES: usize = 30;

impl DockerEngine {
    pub(crate) async fn exec_with_streams(
        &self,
        name: &str,
        command: &[String],
        stdin: Option<Receiver<Bytes>>,
        stdout: Sender<Bytes>,
    ) -> Result<StreamedExit, RuntimeError> {
        let operation = format!("streaming a command in container {name}");
        check_object_name(&operation, name)?;
        if command.is_empty() {
            return Err(RuntimeError::Engine { operation, message: "no command given".to_owned() });
        }
        if !self.present_and_owned(ObjectKind::Container, name, &operation).await? {
            return Err(RuntimeError::NotFound(format!("container {name}")));
        }
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = match self.docker.create_exec(name, options).await {
            Ok(exec) => exec,
            Err(error) if is_not_found(&error) => {
                return Err(RuntimeError::NotFound(format!("container {name}")))
            }
            Err(error) => return Err(runtime_error(operation, &error)),
        };
        let start = StartExecOptions { detach: false, tty: false, output_capacity: None };
        let (mut output, mut input) = match self.docker.start_exec(&exec.id, Some(start)).await {
            Ok(StartExecResults::Attached { output, input }) => (output, input),
            Ok(StartExecResults::Detached) => {
                return Err(RuntimeError::Engine {
                    operation,
                    message: "the engine did not attach to the command".to_owned(),
                })
            }
            Err(error) => return Err(runtime_error(operation, &error)),
        };
        // Feed standard input concurrently: a command may write output before it has read
        // all of its input, and neither side may wait for the other.
        let feeder = async move {
            if let Some(mut stdin) = stdin {
                while let Some(chunk) = stdin.recv().await {
                    input.write_all(&chunk).await?;
                }
                input.flush().await?;
                // End of input: the command (psql, mariadb) finishes when it reads EOF.
                input.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let reader = async {
            let mut stderr: Vec<String> = Vec::new();
            let mut partial = String::new();
            let mut receiver_gone = false;
            while let Some(item) = output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) => {
                        if !receiver_gone && stdout.send(message).await.is_err() {
                            // Keep draining so the command does not block on a full pipe.
                            receiver_gone = true;
                        }
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        partial.push_str(&String::from_utf8_lossy(&message));
                        while let Some(end) = partial.find('\n') {
                            let line: String = partial.drain(..=end).collect();
                            stderr.push(line.trim_end().to_owned());
                            if stderr.len() > STDERR_LINES {
                                stderr.remove(0);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(error) => return Err(runtime_error(operation.clone(), &error)),
                }
            }
            if !partial.trim().is_empty() {
                stderr.push(partial.trim_end().to_owned());
            }
            Ok(stderr)
        };
        let (fed, read) = tokio::join!(feeder, reader);
        let stderr = read?;
        if let Err(error) = fed {
            return Err(RuntimeError::Engine {
                operation,
                message: format!(
                    "the command stopped reading its input: {error}; {}",
                    stderr.join("; ")
                ),
            });
        }
        let exit_code = self.exec_exit_code(&exec.id, &operation).await?;
        Ok(StreamedExit { exit_code, stderr_tail: stderr })
    }
}
