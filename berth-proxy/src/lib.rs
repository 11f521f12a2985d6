//! `berth-proxy` owns the edge proxy that runs as its own process (`berth proxy`), so that
//! applications stay reachable while the control plane restarts or crashes: the HTTP
//! listener that routes requests by Host header to upstream instances, the lock-free route
//! snapshot it reads, the admin API on a Unix socket through which the control plane
//! replaces the route table, the persisted copy of that table, and the client of that
//! admin API used by `berth server`.
//!
//! It does not decide routes: `berth-engine` computes the [`RouteTable`] and pushes it with
//! [`ProxyAdminClient::put_routes`]. It never touches the store.
//!
//! Lifecycle: [`run`] binds as configured and serves until SIGINT or SIGTERM. For other
//! stop conditions (tests, an embedding binary), [`ProxyServer::bind`] then
//! [`ProxyServer::serve`] with any future: when it completes, the proxy stops accepting,
//! lets in-flight requests finish for at most [`ProxyConfig::drain_timeout`], cuts the
//! rest, removes its admin socket and returns.
//!
//! [`RouteTable`]: berth_domain::routes::RouteTable

mod admin;
mod client;
mod config;
mod forward;
mod server;
mod state;
mod table;
mod wire;

pub use client::{ApplyOutcome, ProxyAdminClient, ProxyClientError};
pub use config::{ProxyConfig, ADMIN_SOCKET_FILE_NAME, DEFAULT_LISTEN_ADDR, STATE_FILE_NAME};
pub use server::{run, ProxyError, ProxyServer};
pub use wire::ProxyHealth;

/// An error and its causes on one line, for log fields and messages sent to a person.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
