//! Long-lived background processes (the `berth proxy` that `berth server` starts): started
//! in their own process group so they outlive a restart of the server and are not hit by
//! signals aimed at it, with stdout and stderr appended to a log file.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::Stdio;

use rustix::process::{kill_process_group, test_kill_process, Pid, Signal};

use crate::{ProcessError, ProcessSpec};

/// Starts `spec` in the background and returns its pid, which is also its process-group
/// id. `spec.timeout` does not apply (the process runs until stopped) and its output is
/// appended to `log_file` unredacted, so a detached process must not print secrets.
///
/// A thread waits for the process so that it never lingers as a zombie while this
/// process lives; if Berth exits first, init adopts it and it keeps running.
pub fn spawn_detached(spec: &ProcessSpec, log_file: &Path) -> Result<u32, ProcessError> {
    let program = spec.program_name();
    let log_error = |cause| ProcessError::LogFile { path: log_file.to_owned(), cause };
    let stdout = OpenOptions::new().create(true).append(true).open(log_file).map_err(log_error)?;
    let stderr = stdout.try_clone().map_err(log_error)?;

    let mut command = spec.command();
    command.stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
    tracing::debug!(?spec, log_file = %log_file.display(), "starting detached process");
    let mut child =
        command.spawn().map_err(|cause| ProcessError::Spawn { program: program.clone(), cause })?;
    let pid = child.id();
    let reaper = std::thread::Builder::new().name(format!("reap-{pid}")).spawn(move || {
        let status = child.wait();
        tracing::info!(pid, program, ?status, "detached process exited");
    });
    if let Err(cause) = reaper {
        // Without a reaper the process still runs; it only stays a zombie after exiting.
        tracing::warn!(pid, %cause, "could not start the thread that reaps a detached process");
    }
    Ok(pid)
}

/// Whether a process with this pid exists (a zombie counts). Pids are reused, so this is
/// only meaningful for a pid this process started and still reaps.
pub fn is_alive(pid: u32) -> bool {
    checked_pid(pid).is_some_and(|pid| test_kill_process(pid).is_ok())
}

/// Sends SIGTERM to the process group led by `pid` (as started by [`spawn_detached`]).
/// A group that no longer exists is success: the goal, "not running", holds.
pub fn terminate_group(pid: u32) -> Result<(), ProcessError> {
    let Some(group) = checked_pid(pid) else {
        return Err(ProcessError::Signal {
            pid,
            cause: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a process group Berth started",
            ),
        });
    };
    match kill_process_group(group, Signal::TERM) {
        Ok(()) => Ok(()),
        Err(errno) if errno == rustix::io::Errno::SRCH => Ok(()),
        Err(errno) => Err(ProcessError::Signal { pid, cause: errno.into() }),
    }
}

/// Pids 0 and 1 have special meanings for kill(2) ("my group", "everyone"): never used.
fn checked_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().filter(|pid| *pid > 1).and_then(Pid::from_raw)
}
