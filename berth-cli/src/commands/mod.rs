//! Dispatch of the CLI's commands, one module per resource, and the error every command
//! returns ([`CliError`]), printed as `error: ...` plus a `hint: ...` of what to do next.

mod application;
mod database;
mod database_connect;
mod database_credentials;
mod delete;
mod deploy;
mod deployment;
mod env_var;
mod environment;
mod exec;
mod login;
mod logs;
mod preview;
mod project;
mod rollback;
mod status;
mod webhook;

pub(crate) use deploy::run as deploy;

use std::io;

use crate::args::{Command, GlobalArgs};
use crate::client::{ApiClient, ClientError};
use crate::config::{resolve_connection, ConfigError, ProcessEnv};
use crate::output::Console;
use crate::paths::InvalidName;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A failure the command explains itself; `details` are printed after the message.
    #[error("{message}")]
    Failed { message: String, details: String, hint: Option<String> },
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// The remote command of `berth exec` exited with this code (never 0); its output
    /// already said what went wrong, so nothing is printed.
    #[error("the command exited with code {0}")]
    CommandExited(u8),
}

impl CliError {
    pub(crate) fn failed(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError::Failed { message: message.into(), details: String::new(), hint }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CliError::Client(error) => error.hint(),
            CliError::Config(error) => error.hint(),
            CliError::Failed { hint, .. } => hint.clone(),
            CliError::InvalidName(_) | CliError::Output(_) | CliError::CommandExited(_) => None,
        }
    }

    /// The process's exit code for this error: the remote command's for `berth exec`,
    /// 1 for everything else.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::CommandExited(code) => *code,
            _ => 1,
        }
    }
}

/// What every command needs: the API client and the console.
pub(crate) struct Context<'a> {
    pub(crate) client: ApiClient,
    pub(crate) console: &'a mut Console,
}

pub(crate) async fn execute(
    global: &GlobalArgs,
    command: Command,
    env: &ProcessEnv,
    console: &mut Console,
) -> Result<(), CliError> {
    if let Command::Login(args) = command {
        return login::run(global, &args, env, console).await;
    }
    if let Command::Import(command) = command {
        return crate::spec::import::run(console, command);
    }
    let connection = resolve_connection(global, env)?;
    let token_source = connection.token_source;
    let client = ApiClient::new(connection.url, connection.token)?;
    let mut context = Context { client, console };
    dispatch(&mut context, command).await.map_err(|error| match error {
        CliError::Client(ClientError::Api { status: 401, message, .. }) => CliError::failed(
            message,
            Some(format!(
                "the token came from {token_source}; run `berth login --url URL --token TOKEN` with a valid one, or pass --token"
            )),
        ),
        other => other,
    })
}

async fn dispatch(context: &mut Context<'_>, command: Command) -> Result<(), CliError> {
    match command {
        Command::Login(_) => Ok(()),
        Command::Project(command) => project::run(context, command).await,
        Command::Webhook(command) => webhook::run(context, command).await,
        Command::Environment(command) => environment::run(context, command).await,
        Command::Application(command) => application::run(context, command).await,
        Command::EnvVar(command) => env_var::run(context, command).await,
        Command::Database(command) => database::run(context, command).await,
        Command::Deploy(args) => deploy::run(context, args).await,
        Command::Rollback(args) => rollback::run(context, args).await,
        Command::Deployment(command) => deployment::run(context, command).await,
        Command::Status(args) => status::run(context, args).await,
        Command::Logs(args) => logs::run(context, args).await,
        Command::Exec(args) => exec::run(context, args).await,
        Command::Apply(args) => crate::spec::apply::run(context, args).await,
        Command::Export(args) => crate::spec::export::run(context, args).await,
        // Handled in `execute`: it needs no server.
        Command::Import(_) => Ok(()),
    }
}

/// Prints an error on stderr: `error: ...`, details, `hint: ...`. A closed stdout (`| head`)
/// is not worth a message, nor is the non-zero exit of a command run by `berth exec`.
pub(crate) fn report(console: &mut Console, error: &CliError) {
    match error {
        CliError::Output(io_error) if io_error.kind() == io::ErrorKind::BrokenPipe => return,
        CliError::CommandExited(_) => return,
        _ => {}
    }
    let mut text = format!("error: {error}\n");
    if let CliError::Failed { details, .. } = error {
        text.push_str(details);
    }
    if let Some(hint) = error.hint() {
        text.push_str(&format!("hint: {hint}\n"));
    }
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = console.eprint(&text);
}

/// Asks `question [y/N]` on stderr and reads the answer from stdin: `y` or `yes` (any case)
/// is a yes, anything else (an empty line, end of input) a no.
pub(crate) fn ask(console: &mut Console, question: &str) -> io::Result<bool> {
    console.eprint(&format!("{question} [y/N] "))?;
    let answer = console.read_line()?.unwrap_or_default();
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// The refusal of a destructive command (`verb`: delete, restore) that has no `--yes` and
/// no terminal to ask on.
pub(crate) fn unconfirmed(verb: &str) -> CliError {
    CliError::failed(
        format!("refusing to {verb} without confirmation: pass --yes"),
        Some("standard input is not a terminal, so there is no one to ask".into()),
    )
}

/// Reads a secret from stdin: the whole input when piped (one trailing newline removed),
/// one line after a prompt on a terminal. Empty input is refused.
pub(crate) fn read_secret(
    console: &mut Console,
    prompt: &str,
    what: &str,
) -> Result<String, CliError> {
    let value = if console.stdin_is_terminal() {
        console.eprint(prompt)?;
        console.read_line()?.unwrap_or_default()
    } else {
        console.read_all()?
    };
    if value.is_empty() {
        return Err(CliError::failed(format!("no {what} on standard input"), None));
    }
    Ok(value)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Runs a command line against the stand-in server with captured streams.

    use std::io::{self, Write};
    use std::sync::{Arc, Mutex, PoisonError};

    use clap::Parser;

    use super::*;
    use crate::args::Cli;
    use crate::output::Terminals;

    /// A captured stream that a test can also read while the command still runs.
    #[derive(Clone, Default)]
    pub(crate) struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl SharedBuffer {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned()
        }
    }

    /// What the user saw: exit status, stdout and stderr.
    pub(crate) struct Outcome {
        pub(crate) success: bool,
        /// The process's exit code (what `run_command` returns).
        pub(crate) exit_code: u8,
        pub(crate) stdout: String,
        pub(crate) stderr: String,
    }

    impl Outcome {
        /// `stdout`, then `--- stderr` and its text when there is any, then `--- failed`
        /// when the command failed with exit code 1 (`--- exit code N` for another code):
        /// one string for a snapshot.
        pub(crate) fn transcript(&self) -> String {
            let mut text = self.stdout.clone();
            if !self.stderr.is_empty() {
                text.push_str("--- stderr\n");
                text.push_str(&self.stderr);
            }
            match self.exit_code {
                _ if self.success => {}
                1 => text.push_str("--- failed\n"),
                code => text.push_str(&format!("--- exit code {code}\n")),
            }
            text
        }
    }

    /// Runs `berth ARGS --url STUB --token t0ken` with `stdin` as standard input.
    pub(crate) async fn run_cli(
        url: &str,
        args: &[&str],
        stdin: &str,
        terminals: Terminals,
    ) -> Outcome {
        run_cli_into(url, args, stdin, terminals, SharedBuffer::default()).await
    }

    /// [`run_cli`] with stdout written to `out` as the command runs.
    pub(crate) async fn run_cli_into(
        url: &str,
        args: &[&str],
        stdin: &str,
        terminals: Terminals,
        out: SharedBuffer,
    ) -> Outcome {
        let argv =
            ["berth", "--url", url, "--token", "t0ken"].into_iter().chain(args.iter().copied());
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|error| panic!("{error}"));
        run_parsed_into(cli, stdin, terminals, &ProcessEnv::default(), out).await
    }

    pub(crate) async fn run_parsed(
        cli: Cli,
        stdin: &str,
        terminals: Terminals,
        env: &ProcessEnv,
    ) -> Outcome {
        run_parsed_into(cli, stdin, terminals, env, SharedBuffer::default()).await
    }

    async fn run_parsed_into(
        cli: Cli,
        stdin: &str,
        terminals: Terminals,
        env: &ProcessEnv,
        out: SharedBuffer,
    ) -> Outcome {
        let err = SharedBuffer::default();
        let input = Box::new(io::Cursor::new(stdin.as_bytes().to_vec()));
        let mut console = Console::new(
            cli.global.output,
            Box::new(out.clone()),
            Box::new(err.clone()),
            input,
            terminals,
        );
        let result = execute(&cli.global, cli.command, env, &mut console).await;
        let exit_code = match &result {
            Ok(()) => 0,
            Err(error) => {
                report(&mut console, error);
                error.exit_code()
            }
        };
        Outcome { success: result.is_ok(), exit_code, stdout: out.text(), stderr: err.text() }
    }
}
