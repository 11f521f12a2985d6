//! [`run_interactive`]: a program the user drives from their terminal (the database client
//! that `berth database connect` runs): it inherits the terminal, stays in the caller's
//! process group (so it is the terminal's foreground job and Ctrl-C reaches it), and has
//! no timeout: it runs until the user leaves it.

use std::process::ExitStatus;

use crate::{ProcessError, ProcessSpec};

/// Runs `spec` with the caller's stdin, stdout and stderr and waits for it to exit.
/// `spec.timeout` and `spec.keep_last_lines` do not apply; nothing is read or redacted
/// (the output goes straight to the user's terminal), so secrets belong in `spec.env`,
/// never in the arguments.
///
/// Guarantees: if the returned future is dropped before the program exited, it is killed.
pub async fn run_interactive(spec: &ProcessSpec) -> Result<ExitStatus, ProcessError> {
    let program = spec.program_name();
    let mut command = tokio::process::Command::from(spec.plain_command());
    command.kill_on_drop(true);
    tracing::debug!(?spec, "starting interactive process");
    let mut child =
        command.spawn().map_err(|cause| ProcessError::Spawn { program: program.clone(), cause })?;
    child.wait().await.map_err(|cause| ProcessError::Wait { program, cause })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_exit_status_and_the_environment_are_the_programs() {
        let spec = ProcessSpec::new("sh", Duration::from_secs(1))
            .args(["-c", "test \"$SECRET_FOR_TEST\" = s3cret && exit 7"])
            .env("SECRET_FOR_TEST", "s3cret");
        let status = run_interactive(&spec).await.unwrap();
        assert_eq!(status.code(), Some(7));
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let spec = ProcessSpec::new("berth-no-such-program", Duration::from_secs(1));
        let error = run_interactive(&spec).await.unwrap_err();
        assert!(error.to_string().starts_with("could not start berth-no-such-program"), "{error}");
    }
}
