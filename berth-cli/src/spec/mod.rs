//! Declarative spec files (`berth.toml`): `berth apply`, `berth export` and
//! `berth import compose`. The schema is documented in `docs/spec.md`.
//!
//! Code map:
//! - `model`: the serde types of the file (unknown keys refused), shared by both sides of a
//!   diff;
//! - `load`: parsing with key paths and lines, validation with `berth-domain`'s rules,
//!   normalization (defaults written out);
//! - `remote`: the server's current state read into the model, and one API call per
//!   planned change;
//! - `diff`: the pure plan (create / update with field changes / delete, in dependency
//!   order); `diff_application` its application part (create and PATCH requests);
//! - `apply`, `export`, `import`: the commands; `compose`: the pure docker-compose → spec
//!   conversion.
//!
//! Invariant: no secret value passes through this module. Secrets are references by name;
//! the only value read is an external database's URL, from the environment variable the
//! file names, sent once to the API when that database is created.

pub(crate) mod apply;
mod compose;
mod diff;
mod diff_application;
pub(crate) mod export;
pub(crate) mod import;
mod load;
mod model;
mod remote;
