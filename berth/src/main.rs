//! The `berth` binary: `berth server` and `berth proxy` run the control plane and the edge
//! proxy; every other subcommand is the CLI talking to a server's REST API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Berth: build, deploy and run applications from Git on your own machines"
)]
struct Berth {
    #[command(flatten)]
    global: berth_cli::GlobalArgs,
    #[command(subcommand)]
    command: TopCommand,
}

#[derive(Debug, Subcommand)]
enum TopCommand {
    /// Run the control plane: REST API, engine, and (started as its own process) the edge proxy.
    Server(Box<berth_server::ServerArgs>),
    /// Run the edge proxy (normally started by `berth server`).
    Proxy(berth_server::ProxyArgs),
    #[command(flatten)]
    Cli(Box<berth_cli::Command>),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let berth = Berth::parse();
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("error: cannot start the async runtime: {error}");
                return ExitCode::FAILURE;
            }
        };
    let served = match berth.command {
        TopCommand::Cli(command) => {
            return runtime.block_on(berth_cli::run_command(berth.global, *command))
        }
        TopCommand::Server(args) => {
            init_logging();
            runtime.block_on(berth_server::run_server(*args))
        }
        TopCommand::Proxy(args) => {
            init_logging();
            runtime.block_on(berth_server::run_proxy(args))
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
