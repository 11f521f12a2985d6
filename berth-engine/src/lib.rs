//! The engine: the reconciler and deployment executor that turn desired state in the
//! store into running containers and routes, through the adapter traits (`adapters`).
//! It knows no adapter library (bollard, kube, git): only the traits.

pub mod adapters;
pub mod backups;
pub mod config;
mod databases;
mod engine;
mod exec;
mod executor;
mod logsink;
mod monitor;
pub mod naming;
mod probe;
mod reconcile;
mod routes;
pub mod secrets;
mod snapshot;

pub use engine::{Adapters, Engine, EngineError, ObservedApplication};
pub use exec::{ExecError, EXEC_TIMEOUT};
