//! The Git `Source` adapter: [`GitCli`] fetches the head of one branch of a repository
//! with the `git` program (through berth-process), after re-checking that nothing in the
//! request can make git or ssh run a command, and with credentials that never appear on a
//! command line, in the log or in an error message.
//!
//! Code map: `validate` (checks before anything runs), `session` (the private environment
//! and credentials of one fetch), `cli` (the git commands and the `Source` impl),
//! `classify` (git's error output → `SourceError`).

mod classify;
mod cli;
mod session;
mod validate;

pub use cli::GitCli;
