//! [`run`]: start a process, stream its redacted output line by line, and kill its whole
//! process group when it outlives its timeout or when the caller stops waiting.

use std::collections::VecDeque;
use std::process::Stdio;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::redact::Redactor;
use crate::{OutputLine, OutputStream, ProcessError, ProcessOutput, ProcessSpec};

/// Lines longer than this are cut (after redaction) and marked `[line truncated]`.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// Runs `spec` to completion and returns how it ended.
///
/// Each line of stdout and stderr (split on `\n` and on the `\r` of progress output) is
/// redacted and passed to `on_line` as it arrives. A non-zero exit status is not an
/// error here (see [`ProcessOutput::check_success`]): the caller decides what it means.
///
/// Guarantees: the process runs with a null stdin in its own process group; when the
/// timeout passes, or when the returned future is dropped before the process ended, the
/// whole group is sent SIGKILL, so helpers it started (ssh, git remote helpers) die too.
pub async fn run(
    spec: &ProcessSpec,
    mut on_line: impl FnMut(&str),
) -> Result<ProcessOutput, ProcessError> {
    let program = spec.program_name();
    let redactor = Redactor::new(&spec.redact);
    let mut command = tokio::process::Command::from(spec.command());
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    tracing::debug!(?spec, "starting process");

    let mut child =
        command.spawn().map_err(|cause| ProcessError::Spawn { program: program.clone(), cause })?;
    // Declared after `child` so that it is dropped first: the group is killed while the
    // child is not yet reaped, so its process-group id cannot have been reused.
    let mut group = GroupGuard::new(child.id());

    // The reader keeps a little more than the line limit so that a secret starting just
    // before the limit is still seen whole by the redactor.
    let keep_bytes = MAX_LINE_BYTES + redactor.longest() + 1;
    let (sender, mut receiver) = mpsc::channel::<RawLine>(256);
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            stdout,
            OutputStream::Stdout,
            keep_bytes,
            sender.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(
            stderr,
            OutputStream::Stderr,
            keep_bytes,
            sender.clone(),
        )));
    }
    drop(sender);

    let now = tokio::time::Instant::now();
    // A timeout too large to represent means "no practical limit".
    let deadline = now.checked_add(spec.timeout).unwrap_or(now + FAR_FUTURE);
    let mut last_lines = VecDeque::with_capacity(spec.keep_last_lines.min(1024));
    let finished = tokio::time::timeout_at(deadline, async {
        while let Some(line) = receiver.recv().await {
            let text = redactor.redact(&line.bytes, MAX_LINE_BYTES);
            on_line(&text);
            if spec.keep_last_lines > 0 {
                if last_lines.len() == spec.keep_last_lines {
                    last_lines.pop_front();
                }
                last_lines.push_back(OutputLine { stream: line.stream, text });
            }
        }
        child.wait().await
    })
    .await;

    match finished {
        Ok(Ok(status)) => {
            // Reaped normally: the group id may be reused from now on, so never signal it.
            group.disarm();
            tracing::debug!(program, %status, "process finished");
            Ok(ProcessOutput { program, status, last_lines: last_lines.into() })
        }
        Ok(Err(cause)) => Err(ProcessError::Wait { program, cause }),
        Err(_elapsed) => {
            group.kill();
            // The group kill reached the child too; reap it so no zombie is left behind.
            let _ = child.start_kill();
            let _ = child.wait().await;
            for reader in readers {
                reader.abort();
            }
            tracing::debug!(program, timeout = ?spec.timeout, "process timed out and was killed");
            Err(ProcessError::TimedOut { program, timeout: spec.timeout })
        }
    }
}

const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// Kills the child's process group when dropped while armed.
struct GroupGuard {
    group: Option<Pid>,
}

impl GroupGuard {
    fn new(child_pid: Option<u32>) -> Self {
        // The child was started with `process_group(0)`: its group id is its pid. Pid 1
        // would mean "every process we may signal", so it is never used.
        let group = child_pid
            .and_then(|pid| i32::try_from(pid).ok())
            .filter(|pid| *pid > 1)
            .and_then(Pid::from_raw);
        Self { group }
    }

    fn disarm(&mut self) {
        self.group = None;
    }

    fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            // ESRCH (already gone) is the expected outcome when everything exited.
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

struct RawLine {
    stream: OutputStream,
    bytes: Vec<u8>,
}

/// Splits a stream into lines on `\n`, `\r` and `\r\n`, keeping at most `keep_bytes` of
/// each line, and sends them until EOF, a read error, or the receiver going away.
async fn read_lines(
    mut reader: impl AsyncRead + Unpin,
    stream: OutputStream,
    keep_bytes: usize,
    sender: mpsc::Sender<RawLine>,
) {
    let mut chunk = vec![0_u8; 8192];
    let mut line = Vec::new();
    let mut after_cr = false;
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for &byte in &chunk[..read] {
            match byte {
                b'\n' if after_cr => after_cr = false,
                b'\n' | b'\r' => {
                    after_cr = byte == b'\r';
                    let bytes = std::mem::take(&mut line);
                    if sender.send(RawLine { stream, bytes }).await.is_err() {
                        return;
                    }
                }
                _ => {
                    after_cr = false;
                    if line.len() < keep_bytes {
                        line.push(byte);
                    }
                }
            }
        }
    }
    if !line.is_empty() {
        let _ = sender.send(RawLine { stream, bytes: line }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_on_newlines_and_carriage_returns() {
        let input: &[u8] = b"one\r\ntwo\rthree\nfour";
        let (sender, mut receiver) = mpsc::channel(16);
        read_lines(input, OutputStream::Stdout, 100, sender).await;
        let mut lines = Vec::new();
        while let Some(line) = receiver.recv().await {
            lines.push(String::from_utf8(line.bytes).unwrap());
        }
        assert_eq!(lines, ["one", "two", "three", "four"]);
    }
}
