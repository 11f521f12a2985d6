//! Berth's command-line client: every `berth` subcommand except `server` and `proxy`. It
//! parses the command line ([`Cli`], [`Command`], [`GlobalArgs`]), finds the server and a
//! token (flags, environment, the `berth login` config file, the local admin token), calls
//! the REST API with the wire types of `berth-api`, and shows the answers as aligned
//! tables or as the API's JSON (`--output json`).
//!
//! Code map:
//! - `args`: the clap definitions (no IO);
//! - `config`: where the URL and the token come from, and the config file `login` writes;
//! - `paths`: the API's URL paths, with every name percent-encoded;
//! - `client`: HTTP, the one error shape, server-sent events (`sse` parses them);
//! - `output`: console, tables, JSON, sanitizing of server-provided text;
//! - `progress`: what is shown while waiting for a deployment or a deletion;
//! - `dotenv`: the `.env` format of `env-var import`;
//! - `commands`: one module per resource.
//!
//! Invariants: the CLI never prints a secret value it did not read itself (the server only
//! returns masked values); it never sends a token to a URL other than the one it was given
//! or saved for; every byte of server-provided text is sanitized before reaching a
//! terminal; no `unwrap()` on user or network input.

mod args;
mod client;
mod commands;
mod config;
mod dotenv;
mod output;
mod paths;
mod progress;
mod spec;
mod sse;
#[cfg(test)]
mod test_server;

use std::process::ExitCode;

pub use args::{
    AliasVariableArgs, ApplicationCommand, ApplicationNameArgs, ApplyArgs, Cli, CloneDatabaseArgs,
    Command, ConfirmArgs, CreateApplicationArgs, CreateDatabaseArgs, CreateEnvironmentArgs,
    DatabaseCommand, DatabaseNameArgs, DeleteApplicationArgs, DeleteDatabaseArgs,
    DeleteEnvironmentArgs, DeleteProjectArgs, DeleteVariableArgs, DeployArgs, DeploymentCommand,
    DeploymentIdArg, DeploymentListArgs, DeploymentLogsArgs, EnvVarCommand, EnvironmentArgs,
    EnvironmentCommand, ExecArgs, ExportArgs, GitSourceArgs, GlobalArgs, ImportCommand,
    ImportComposeArgs, ImportVariablesArgs, LoginArgs, LogsArgs, NameArg, OutputFormat, ProjectArg,
    ProjectCommand, RestoreDatabaseArgs, RollbackArgs, RuntimeArgs, ScopeArgs, SetVariableArgs,
    UpdateApplicationArgs, DEFAULT_URL,
};

/// Runs a parsed command line: prints results on stdout, progress and errors on stderr.
/// Exit code 0 on success, 1 on any failure (including a failed deployment); `berth exec`
/// exits with the remote command's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    run_command(cli.global, cli.command).await
}

/// Runs one CLI command with the global options; for binaries that embed [`Command`] in
/// their own parser (`berth` adds `server` and `proxy`).
pub async fn run_command(global: GlobalArgs, command: Command) -> ExitCode {
    let mut console = output::Console::from_process(global.output);
    let env = config::ProcessEnv::from_process();
    match commands::execute(&global, command, &env, &mut console).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            commands::report(&mut console, &error);
            ExitCode::from(error.exit_code())
        }
    }
}
