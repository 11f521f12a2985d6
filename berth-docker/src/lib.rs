//! The Docker adapter: [`DockerEngine`] implements the engine's `Builder` (image builds
//! with the legacy builder, "local image first, else pull") and `Runtime` (labelled
//! containers, networks, volumes and images) traits against the local Docker engine,
//! through bollard.
//!
//! This crate owns everything that names a bollard or Docker API type; the rest of Berth
//! sees only the traits in `berth_engine::adapters`.
//!
//! Invariants:
//! - No port is published on anything but 127.0.0.1.
//! - Nothing without the label `berth.managed-by=berth` is listed, replaced or removed:
//!   `start_container` and `run_to_completion` (which replace a container of the same
//!   name), `remove_container`, `remove_object`, `set_restart_on_failure` and
//!   `exec_in_container` inspect the object first and refuse an unlabelled one.
//! - No volume is removed as a side effect of removing a container (`v=false`).
//! - The API version is negotiated at connection time (Debian's engine speaks 1.41, older
//!   than bollard's default).

mod builder;
mod commands;
mod context;
mod convert;
mod runtime;
mod streams;

use std::time::Duration;

use bollard::Docker;

/// How long a request may wait for the engine's response headers, unless an operation
/// asks for longer (builds, stops with a long grace period).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Why [`DockerEngine::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot use the Docker socket {socket}: {message}; is dockerd running? start it with scripts/setup-host.sh")]
    Socket { socket: String, message: String },
    #[error("the Docker engine at {socket} does not answer: {message}; is dockerd running? start it with scripts/setup-host.sh")]
    Unreachable { socket: String, message: String },
}

/// A connection to one Docker engine. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
}

impl DockerEngine {
    /// Connects to the engine at `socket` (a path or `unix://` URL), or by default to
    /// `$DOCKER_HOST` when it is a `unix://` URL, else `/var/run/docker.sock`; then
    /// negotiates the API version, which also proves the engine answers.
    pub async fn connect(socket: Option<&str>) -> Result<DockerEngine, DockerError> {
        let timeout = DEFAULT_REQUEST_TIMEOUT.as_secs();
        let (described, connected) = match socket {
            Some(path) => (
                path.to_owned(),
                Docker::connect_with_socket(path, timeout, bollard::API_DEFAULT_VERSION),
            ),
            None => (
                std::env::var("DOCKER_HOST")
                    .ok()
                    .filter(|host| host.starts_with("unix://"))
                    .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
                Docker::connect_with_local_defaults(),
            ),
        };
        let docker = connected
            .map_err(|error| DockerError::Socket {
                socket: described.clone(),
                message: error.to_string(),
            })?
            .with_timeout(DEFAULT_REQUEST_TIMEOUT);
        let docker = docker.negotiate_version().await.map_err(|error| {
            DockerError::Unreachable { socket: described, message: error.to_string() }
        })?;
        Ok(DockerEngine { docker })
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }
}
