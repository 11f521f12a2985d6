//! The engine: the reconciler and deployment executor that turn desired state in the
//! store into running containers and routes, through the adapter traits (`adapters`).
//! It knows no adapter library (bollard, kube, git): only the traits.

pub mod adapters;
pub mod backup_schedule;
pub mod backup_store;
pub mod backups;
pub mod config;
pub mod database_access;
pub mod database_credentials;
mod databases;
mod dry_run;
mod engine;
pub mod environments;
mod exec;
mod exec_pipe;
mod executor;
pub mod git_dispatch;
mod logsink;
mod monitor;
pub mod naming;
pub mod physical_clone;
mod prepare;
pub mod previews;
mod probe;
mod reconcile;
mod rollout;
mod routes;
pub mod secrets;
mod shared_builds;
mod snapshot;

pub use dry_run::PlanError;
pub use engine::{Adapters, Engine, EngineError, ObservedApplication};
pub use exec::{ExecError, EXEC_TIMEOUT};
