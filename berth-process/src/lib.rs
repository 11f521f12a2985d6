//! The one place where Berth starts subprocesses (`git`, `ssh` through git, the detached
//! `berth proxy`). Every process gets an argument vector (never a shell command line), a
//! null stdin, a timeout that kills its whole process group, and output that is split into
//! lines and redacted (each secret replaced by `********`) before anyone sees it.
//!
//! clippy.toml bans `Command::new` everywhere else so these guarantees hold for every
//! subprocess: callers describe the process with a [`ProcessSpec`] and call [`run`] or
//! [`spawn_detached`]. The one exception to the null stdin and the timeout is
//! [`run_interactive`]: a program the user drives on their own terminal (the database
//! client of `berth database connect`), whose secrets travel in its environment.

mod detached;
mod interactive;
mod redact;
mod run;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub use detached::{is_alive, spawn_detached, terminate_group};
pub use interactive::run_interactive;
pub use redact::{redact, REDACTION_MASK};
pub use run::run;

/// Which variables of the parent's environment the child inherits (the variables in
/// [`ProcessSpec::env`] are always set on top).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InheritEnv {
    /// The whole environment of the Berth process.
    All,
    /// Only these variables (those that are set); everything else is cleared. Used for
    /// `git` so that `GIT_*` or `SSH_*` variables of the server cannot change what it does.
    Only(Vec<OsString>),
    /// Nothing: the child sees only [`ProcessSpec::env`].
    Nothing,
}

/// Everything needed to start one process. Build it with [`ProcessSpec::new`] and the
/// chaining methods, or fill the public fields directly.
#[derive(Clone)]
pub struct ProcessSpec {
    /// The executable: a path, or a name looked up in `PATH`.
    pub program: OsString,
    /// Arguments, passed as a vector: nothing is interpreted by a shell.
    pub args: Vec<OsString>,
    /// Variables set in the child's environment (after [`ProcessSpec::inherit_env`]).
    pub env: Vec<(OsString, OsString)>,
    pub inherit_env: InheritEnv,
    /// Working directory; the parent's when `None`.
    pub cwd: Option<PathBuf>,
    /// How long [`run`] lets the process run before killing its process group.
    pub timeout: Duration,
    /// Secrets to replace by [`REDACTION_MASK`] in every output line and error message.
    pub redact: Vec<String>,
    /// How many of the last output lines [`ProcessOutput::last_lines`] keeps.
    pub keep_last_lines: usize,
}

impl std::fmt::Debug for ProcessSpec {
    // Hand-written so that environment values (which may hold a secret header) and the
    // redaction list never reach a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<_> = self.env.iter().map(|(name, _)| name).collect();
        f.debug_struct("ProcessSpec")
            .field("program", &self.program)
            .field("args", &redact::redact_os_list(&self.args, &self.redact))
            .field("env_names", &env_names)
            .field("inherit_env", &self.inherit_env)
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("redact", &format_args!("[{} secret(s)]", self.redact.len()))
            .finish()
    }
}

impl ProcessSpec {
    /// Default number of output lines kept in [`ProcessOutput::last_lines`].
    pub const DEFAULT_KEEP_LAST_LINES: usize = 100;

    /// A process with no arguments, the parent's environment and working directory.
    pub fn new(program: impl Into<OsString>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            inherit_env: InheritEnv::All,
            cwd: None,
            timeout,
            redact: Vec::new(),
            keep_last_lines: Self::DEFAULT_KEEP_LAST_LINES,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn inherit_env(mut self, inherit: InheritEnv) -> Self {
        self.inherit_env = inherit;
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Adds a secret to redact; empty strings are ignored.
    pub fn redact(mut self, secret: impl Into<String>) -> Self {
        let secret = secret.into();
        if !secret.is_empty() {
            self.redact.push(secret);
        }
        self
    }

    pub fn keep_last_lines(mut self, count: usize) -> Self {
        self.keep_last_lines = count;
        self
    }

    /// The program as shown in errors and logs (never the arguments: they are the
    /// caller's business, and the program name is never a secret).
    pub fn program_name(&self) -> String {
        display_os(&self.program)
    }

    /// The base command, shared by [`run`] and [`spawn_detached`]: arguments, environment,
    /// working directory, its own process group and a null stdin.
    fn command(&self) -> std::process::Command {
        let mut command = self.plain_command();
        // Its own process group: a timeout kills git and everything git started (ssh,
        // remote helpers), and a Ctrl-C aimed at the server's group does not reach it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.stdin(std::process::Stdio::null());
        command
    }

    /// Arguments, environment and working directory only (what [`run_interactive`] adds
    /// nothing to). The only `Command::new` in Berth.
    fn plain_command(&self) -> std::process::Command {
        // The single sanctioned call site: clippy.toml bans `Command::new` elsewhere so
        // that every subprocess goes through this crate's timeout, redaction and
        // argument-vector rules.
        #[allow(clippy::disallowed_methods)]
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        match &self.inherit_env {
            InheritEnv::All => {}
            InheritEnv::Only(names) => {
                command.env_clear();
                for name in names {
                    if let Some(value) = std::env::var_os(name) {
                        command.env(name, value);
                    }
                }
            }
            InheritEnv::Nothing => {
                command.env_clear();
            }
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        command
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line of output, already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: OutputStream,
    pub text: String,
}

/// How a finished process ended.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    /// The program, as in [`ProcessSpec::program_name`].
    pub program: String,
    pub status: ExitStatus,
    /// The last [`ProcessSpec::keep_last_lines`] lines of stdout and stderr, interleaved
    /// in the order they were read, redacted.
    pub last_lines: Vec<OutputLine>,
}

impl ProcessOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The kept lines of one stream.
    pub fn lines_of(&self, stream: OutputStream) -> impl DoubleEndedIterator<Item = &str> {
        self.last_lines
            .iter()
            .filter(move |line| line.stream == stream)
            .map(|line| line.text.as_str())
    }

    /// `Ok(self)` when the process exited with status 0, else [`ProcessError::Failed`]
    /// carrying the last non-empty line of stderr (or stdout).
    pub fn check_success(self) -> Result<Self, ProcessError> {
        if self.success() {
            return Ok(self);
        }
        let last_line = self
            .lines_of(OutputStream::Stderr)
            .rfind(|line| !line.trim().is_empty())
            .or_else(|| self.lines_of(OutputStream::Stdout).rfind(|line| !line.trim().is_empty()))
            .unwrap_or("(no output)")
            .to_owned();
        Err(ProcessError::Failed { program: self.program.clone(), status: self.status, last_line })
    }
}

/// Why a process could not be run to completion. Messages name the program, never its
/// arguments or environment, and any output they quote is redacted.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start {program}: {cause}")]
    Spawn { program: String, cause: std::io::Error },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    TimedOut { program: String, timeout: Duration },
    #[error("lost track of {program} while waiting for it: {cause}")]
    Wait { program: String, cause: std::io::Error },
    #[error("{program} failed ({status}): {last_line}")]
    Failed { program: String, status: ExitStatus, last_line: String },
    #[error("could not open the log file {path}: {cause}")]
    LogFile { path: PathBuf, cause: std::io::Error },
    #[error("could not signal process {pid}: {cause}")]
    Signal { pid: u32, cause: std::io::Error },
}

fn display_os(value: &OsStr) -> String {
    value.to_string_lossy().into_owned()
}
