//! Tests of `DockerEngine` against the real local Docker engine (started by
//! scripts/setup-host.sh): builds, pulls from a local registry, containers with published
//! loopback ports, limits, logs, one-off commands, exec, restarts, and label-scoped listing
//! and removal. Every test uses names of its own and removes what it created, so the tests
//! run concurrently.

// Test code: a failed set-up step should panic (clippy's allow-unwrap-in-tests covers
// only #[test] functions, not their helpers).
#![allow(clippy::unwrap_used)]

mod commands;
mod connection;
mod containers;
mod images;
mod support;
