//! Child processes of the harness: the CLI and scripts run with a deadline and captured
//! output, and the server's and proxy's pids, signalled only after checking that they
//! still belong to the test's data directory.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What one CLI invocation did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// `berth`, or the program that ran.
    pub program: String,
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Standard output and standard error, as a user at a terminal sees them.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command succeeded; returns `self`.
    #[track_caller]
    pub fn expect_success(self) -> CliOutput {
        assert!(
            self.success(),
            "`{} {}` failed ({}):\n{}",
            self.program,
            self.args.join(" "),
            self.status,
            self
        );
        self
    }

    /// Panics with the whole output if the command succeeded; returns `self`.
    #[track_caller]
    pub fn expect_failure(self) -> CliOutput {
        assert!(
            !self.success(),
            "`{} {}` succeeded but should fail:\n{}",
            self.program,
            self.args.join(" "),
            self
        );
        self
    }

    /// Standard output parsed as JSON (for `--output json`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!("`{} {}` printed no JSON ({error}):\n{self}", self.program, self.args.join(" "))
        })
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--- stdout ---\n{}--- stderr ---\n{}", self.stdout, self.stderr)
    }
}

/// Runs `program ARGS` in `cwd` with `envs` added to an environment without `BERTH_*`
/// variables, panicking if it has not finished within `timeout` (for scripts such as
/// `scripts/quickstart.sh`).
pub fn run_program(
    program: &Path,
    args: &[&str],
    cwd: &Path,
    envs: &[(&str, String)],
    timeout: Duration,
) -> CliOutput {
    // Dev-only harness: runs the project's own scripts the way a user does.
    #[allow(clippy::disallowed_methods)]
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BERTH_") {
            command.env_remove(name);
        }
    }
    command.args(args).current_dir(cwd);
    for (name, value) in envs {
        command.env(name, value);
    }
    let args = args.iter().map(|arg| (*arg).to_owned()).collect();
    run_with_deadline(command, &program.display().to_string(), args, None, timeout)
}

/// Runs `command` with `stdin` (or none), capturing its output; kills it and panics at
/// `timeout`.
pub(crate) fn run_with_deadline(
    mut command: Command,
    program: &str,
    args: Vec<String>,
    stdin: Option<&str>,
    timeout: Duration,
) -> CliOutput {
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child =
        command.spawn().unwrap_or_else(|error| panic!("cannot run {program} {args:?}: {error}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{program} {}` did not finish within {timeout:?}; stdout so far:\n{}\nstderr:\n{}",
                args.join(" "),
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    CliOutput {
        program: program.to_owned(),
        args,
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn terminate(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn process_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

pub(crate) fn command_line_contains(pid: u32, needle: &str) -> bool {
    proc_entries_contain(pid, "cmdline", needle)
}

pub(crate) fn environment_contains(pid: u32, entry: &str) -> bool {
    proc_entries_contain(pid, "environ", entry)
}

/// Whether one of the NUL-separated entries of `/proc/<pid>/<file>` is exactly `needle`.
fn proc_entries_contain(pid: u32, file: &str, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .map(|bytes| bytes.split(|byte| *byte == 0).any(|part| part == needle.as_bytes()))
        .unwrap_or(false)
}
