//! `berth exec --project P --environment E --application A [--instance N] -- CMD [ARGS...]`.
//!
//! Expected flow: POST `/exec` with the command; the answer is a `text/event-stream`. Each
//! line of the command's output (stdout and stderr together, in the order the server read
//! them) is a default event whose data is the line; the stream ends with `event: exit`
//! (data: `ExecExit` JSON) or `event: error` (data: a message). Lines are printed on stdout
//! as they arrive; the CLI then exits with the command's exit code (0 to 255 as is, any
//! other value as 255 so that it never reads as success), or with 1 and the message on
//! stderr after an `error` event or a stream that ends without a verdict. A non-zero exit
//! of the command prints nothing more: its output said what went wrong.
//!
//! Caveats: the output is text lines. Like every server-provided text it is sanitized
//! (escape sequences such as colours and control characters other than tabs are removed);
//! `\r` arrives as a line break; a last line without a newline gains one; `--output json`
//! does not change what is printed. Standard input is not forwarded. Interrupting the CLI
//! closes the stream; what happens to the command then is up to the server.

use berth_api::{ExecExit, ExecRequest};

use super::{CliError, Context};
use crate::args::ExecArgs;
use crate::client::EventStream;
use crate::output::sanitize;
use crate::paths;
use crate::sse::SseEvent;

pub(crate) async fn run(context: &mut Context<'_>, args: ExecArgs) -> Result<(), CliError> {
    let (project, environment) = (&args.environment.project, &args.environment.environment);
    let path = paths::application_exec(project, environment, &args.application)?;
    let body = ExecRequest { command: args.command, instance: args.instance };
    let mut stream = context.client.post_events(&path, &body).await?;
    match print_output(context, &mut stream).await? {
        0 => Ok(()),
        code => Err(CliError::CommandExited(code)),
    }
}

/// What one event of an exec stream means.
#[derive(Debug, PartialEq, Eq)]
enum ExecEvent {
    /// A line of output, sanitized, without a line ending.
    Output(String),
    /// The command ended with this process exit code.
    Exited(u8),
    /// The command could not run (or its end could not be read): this message.
    Failed(String),
    /// An event this CLI does not know (a newer server's); skipped.
    Other,
}

fn interpret(event: &SseEvent) -> ExecEvent {
    match event.event.as_deref() {
        None | Some("message") => ExecEvent::Output(sanitize(&event.data, true).into_owned()),
        Some("exit") => match serde_json::from_str::<ExecExit>(&event.data) {
            Ok(exit) => ExecEvent::Exited(exit_status(exit.exit_code)),
            Err(error) => ExecEvent::Failed(format!(
                "the server's exit event does not carry an exit code ({error}): {}",
                sanitize(&event.data, false)
            )),
        },
        Some("error") => ExecEvent::Failed(sanitize(&event.data, false).into_owned()),
        Some(_) => ExecEvent::Other,
    }
}

/// The process exit code for a command's exit code: 0 to 255 as is; anything else (a
/// negative code, or one too large for a process exit status) is 255, a failure.
fn exit_status(code: i64) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}

/// Prints output lines as they arrive; returns the command's exit status.
async fn print_output(context: &mut Context<'_>, stream: &mut EventStream) -> Result<u8, CliError> {
    while let Some(event) = stream.next().await? {
        match interpret(&event) {
            ExecEvent::Output(mut line) => {
                line.push('\n');
                context.console.print(&line)?;
            }
            ExecEvent::Exited(code) => return Ok(code),
            ExecEvent::Failed(message) => return Err(CliError::failed(message, None)),
            ExecEvent::Other => {}
        }
    }
    Err(CliError::failed(
        "the server closed the stream before the command finished; its exit code is unknown",
        None,
    ))
}

#[cfg(test)]
#[path = "exec_tests.rs"]
mod tests;
