//! The engine: the reconciler and deployment executor that turn desired state in the
//! store into running containers and routes, through the adapter traits (`adapters`).
//! It knows no adapter library (bollard, kube, git): only the traits.

pub mod adapters;
pub mod config;
mod engine;
mod executor;
mod logsink;
pub mod naming;
mod reconcile;
mod routes;
pub mod secrets;

pub use engine::{Adapters, Engine, EngineError, ObservedApplication};
