//! `berth database connect --project P --environment E NAME [--local-port N] [--no-client]
//! [--show-password] [-- CLIENT_ARGS...]`: a tunnel from 127.0.0.1 on this machine to the
//! database, through the Berth API, so it works from anywhere the API is reachable.
//!
//! Expected flow: read the database's credentials (`GET .../credentials`, an admin-only
//! endpoint) and its status (a container database must be running), listen on
//! `127.0.0.1:PORT` (`--local-port`, or a free port), and for every local connection open
//! one tunnel (`GET .../tunnel` upgraded to `berth-database-tunnel`) and copy bytes both
//! ways. Then, by default, run the engine's client (`psql`, `mariadb`/`mysql`,
//! `redis-cli`) against the tunnel with the credentials, and close the tunnel when it
//! exits (the CLI exits with the client's code). Without that client on `PATH`, or with
//! `--no-client`, print the connection details (and the command to run) and keep the
//! tunnel open until Ctrl-C.
//!
//! Guarantees: the password goes to the client in its environment variable (`PGPASSWORD`,
//! `MYSQL_PWD`, `REDISCLI_AUTH`), never on a command line that `ps` shows, and is printed
//! only with `--show-password`. The listener binds 127.0.0.1 only. A failed tunnel (the
//! database stopped, the server went away) is reported on stderr and closes only that
//! local connection; the others keep working.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::{Database, DatabaseCredentials, DATABASE_TUNNEL_PROTOCOL};
use berth_process::ProcessSpec;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::{CliError, Context};
use crate::args::ConnectDatabaseArgs;
use crate::client::ApiClient;
use crate::output::render_fields;
use crate::paths;

/// Where the tunnel listens: loopback only, never another interface.
const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

pub(crate) async fn run(
    context: &mut Context<'_>,
    args: ConnectDatabaseArgs,
) -> Result<(), CliError> {
    let (project, environment) = (&args.environment.project, &args.environment.environment);
    let database_path = paths::database(project, environment, &args.name)?;
    let credentials: DatabaseCredentials =
        context.client.get(&format!("{database_path}/credentials")).await?;
    let database: Database = context.client.get(&database_path).await?;
    if database.mode == "container" && database.runtime_status != "running" {
        return Err(CliError::failed(
            format!("database {:?} is not running ({})", args.name, database.runtime_status),
            Some(format!(
                "deploy the environment first: berth deploy --project {project} --environment {environment} --wait"
            )),
        ));
    }
    // Registered before anything can be interrupted: from here on Ctrl-C closes the
    // tunnel cleanly (and, while a client runs, is the client's business).
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|error| CliError::failed(format!("cannot handle Ctrl-C: {error}"), None))?;
    let mut tunnel =
        open_tunnel(context.client.clone(), format!("{database_path}/tunnel"), args.local_port)
            .await?;
    let client = client_command(&credentials, tunnel.address.port(), &args.client_args)?;
    let program =
        if args.no_client { None } else { find_on_path(client.programs, path_variable()) };
    let Some(program) = program else {
        print_details(context, &credentials, tunnel.address, &args)?;
        let command_line = client.display(client.programs[0], args.show_password, &credentials);
        if !args.no_client {
            context.console.eprintln(&format!(
                "{} is not on PATH; connect with another client, or install it and run:",
                client.programs.join(" or ")
            ))?;
        } else {
            context.console.eprintln("connect with:")?;
        }
        context.console.eprintln(&format!("  {command_line}"))?;
        context.console.eprintln("The tunnel stays open until Ctrl-C.")?;
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                Some(failure) = tunnel.failures.recv() => {
                    context.console.eprintln(&format!("error: tunnel connection failed: {failure}"))?;
                }
            }
        }
        context.console.eprintln("tunnel closed")?;
        return Ok(());
    };
    let spec = client.process_spec(&program, &credentials);
    let mut session = Box::pin(berth_process::run_interactive(&spec));
    let status = loop {
        tokio::select! {
            status = &mut session => break status,
            // The client is in the terminal's foreground group too: Ctrl-C cancels its
            // query; only the client's exit ends the tunnel.
            _ = interrupt.recv() => {}
            Some(failure) = tunnel.failures.recv() => {
                context.console.eprintln(&format!("error: tunnel connection failed: {failure}"))?;
            }
        }
    };
    let status = status.map_err(|error| {
        CliError::failed(error.to_string(), Some("check that the client runs on its own".into()))
    })?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(CliError::CommandExited(u8::try_from(code).unwrap_or(u8::MAX))),
        // Killed by a signal: a failure, already visible on the terminal.
        None => Err(CliError::CommandExited(1)),
    }
}

/// The local end of the tunnel: its address and the failures of individual connections.
struct Tunnel {
    address: SocketAddr,
    failures: mpsc::UnboundedReceiver<String>,
}

/// Listens on 127.0.0.1 and forwards every accepted connection through its own upgraded
/// API request, in a task that lives as long as the process.
async fn open_tunnel(
    client: ApiClient,
    tunnel_path: String,
    local_port: Option<u16>,
) -> Result<Tunnel, CliError> {
    let wanted = SocketAddr::from((LOOPBACK, local_port.unwrap_or(0)));
    let listener = TcpListener::bind(wanted).await.map_err(|error| {
        CliError::failed(
            format!("cannot listen on {wanted}: {error}"),
            Some("choose another --local-port, or leave it out to use a free port".into()),
        )
    })?;
    let address = listener.local_addr().map_err(|error| {
        CliError::failed(format!("cannot read the tunnel's port: {error}"), None)
    })?;
    let (sender, failures) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(error) => {
                    let _ = sender.send(format!("cannot accept a local connection: {error}"));
                    // Out of file descriptors, typically: give connections time to close.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (client, path, sender) = (client.clone(), tunnel_path.clone(), sender.clone());
            tokio::spawn(async move {
                if let Err(message) = forward(socket, &client, &path).await {
                    let _ = sender.send(message);
                }
            });
        }
    });
    Ok(Tunnel { address, failures })
}

/// Carries one local connection through one tunnel request until both sides closed.
async fn forward(mut socket: TcpStream, client: &ApiClient, path: &str) -> Result<(), String> {
    let mut upstream =
        client.upgrade(path, DATABASE_TUNNEL_PROTOCOL).await.map_err(|error| error.to_string())?;
    // Interactive protocols send small packets: do not hold them back.
    let _ = socket.set_nodelay(true);
    // A reset by either side is how many clients say goodbye: not worth a message.
    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
    Ok(())
}

/// How to run an engine's client against the tunnel.
#[derive(Debug, PartialEq, Eq)]
struct ClientCommand {
    /// Program names to look for on PATH, preferred first.
    programs: &'static [&'static str],
    args: Vec<String>,
    /// The variable the client reads the password from.
    password_variable: &'static str,
}

fn client_command(
    credentials: &DatabaseCredentials,
    port: u16,
    extra_args: &[String],
) -> Result<ClientCommand, CliError> {
    let host = "127.0.0.1".to_owned();
    let port = port.to_string();
    let user = credentials.user.clone();
    let database = credentials.database.clone();
    let mut command = match credentials.engine.as_str() {
        "postgresql" => ClientCommand {
            programs: &["psql"],
            args: vec![
                "-h".into(),
                host,
                "-p".into(),
                port,
                "-U".into(),
                user,
                "-d".into(),
                database,
            ],
            password_variable: "PGPASSWORD",
        },
        "mariadb" | "mysql" => ClientCommand {
            programs: &["mariadb", "mysql"],
            args: vec![
                "-h".into(),
                host,
                "-P".into(),
                port,
                "--protocol=TCP".into(),
                "-u".into(),
                user,
                database,
            ],
            password_variable: "MYSQL_PWD",
        },
        "redis" => {
            let mut args = vec!["-h".into(), host, "-p".into(), port, "-n".into(), database];
            if !user.is_empty() && user != "default" {
                args.extend(["--user".into(), user]);
            }
            ClientCommand { programs: &["redis-cli"], args, password_variable: "REDISCLI_AUTH" }
        }
        other => {
            return Err(CliError::failed(
                format!("this berth does not know a client for the engine {other:?}"),
                Some("upgrade berth, or use --no-client and connect with your own client".into()),
            ))
        }
    };
    command.args.extend(extra_args.iter().cloned());
    Ok(command)
}

impl ClientCommand {
    /// The client as a process: the password only in its environment.
    fn process_spec(&self, program: &Path, credentials: &DatabaseCredentials) -> ProcessSpec {
        // The client runs as long as the user keeps it open; `run_interactive` ignores it.
        let mut spec = ProcessSpec::new(program.as_os_str(), Duration::MAX).args(&self.args);
        if !credentials.password.is_empty() {
            spec = spec.env(self.password_variable, &credentials.password);
        }
        spec
    }

    /// The command line to show a user: `VARIABLE=... program args`, with the password
    /// itself only when asked for.
    fn display(
        &self,
        program: &str,
        show_password: bool,
        credentials: &DatabaseCredentials,
    ) -> String {
        let password =
            if show_password { shell_quote(&credentials.password) } else { "PASSWORD".to_owned() };
        let mut words = vec![format!("{}={password}", self.password_variable), program.to_owned()];
        words.extend(self.args.iter().map(|arg| shell_quote(arg)));
        words.join(" ")
    }
}

/// Single-quotes a word for a POSIX shell when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn path_variable() -> Option<OsString> {
    std::env::var_os("PATH")
}

/// The first of `programs` found as an executable file in a directory of `path`.
fn find_on_path(programs: &[&str], path: Option<OsString>) -> Option<PathBuf> {
    let path = path?;
    programs.iter().find_map(|program| {
        std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

/// `--output json` form of the connection details.
#[derive(Debug, Serialize)]
struct ConnectionDetails<'a> {
    database_name: &'a str,
    engine: &'a str,
    host: &'a str,
    port: u16,
    user: &'a str,
    database: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
}

fn print_details(
    context: &mut Context<'_>,
    credentials: &DatabaseCredentials,
    address: SocketAddr,
    args: &ConnectDatabaseArgs,
) -> Result<(), CliError> {
    let host = address.ip().to_string();
    let password = args.show_password.then_some(credentials.password.as_str());
    if context.console.is_json() {
        context.console.print_json(&ConnectionDetails {
            database_name: &credentials.database_name,
            engine: &credentials.engine,
            host: &host,
            port: address.port(),
            user: &credentials.user,
            database: &credentials.database,
            password,
        })?;
        return Ok(());
    }
    let text = details_text(credentials, address, password);
    context.console.print(&text)?;
    Ok(())
}

fn details_text(
    credentials: &DatabaseCredentials,
    address: SocketAddr,
    password: Option<&str>,
) -> String {
    let mut text = format!(
        "Tunnel to database {:?} ({}) open on {address}\n",
        credentials.database_name, credentials.engine
    );
    text.push_str(&render_fields(&[
        ("host", address.ip().to_string()),
        ("port", address.port().to_string()),
        ("user", credentials.user.clone()),
        ("database", credentials.database.clone()),
        (
            "password",
            password.map_or_else(|| "(hidden: add --show-password)".to_owned(), str::to_owned),
        ),
    ]));
    text
}

#[cfg(test)]
#[path = "database_connect_tests.rs"]
mod tests;
