//! The Berth server: wiring of store, engine and adapters, configuration, the axum REST
//! API and its handlers, and the supervision of the edge proxy process.

pub mod api;
mod auth;
mod backup_store;
mod bootstrap;
pub mod config;
mod error;
mod proxy_supervisor;
mod run;
pub mod state;

pub use config::{ProxyArgs, ServerArgs};
pub use run::{run_proxy, run_server};
